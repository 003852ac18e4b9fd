//! Test harness: a private `redis-server` on a free loopback port and a real
//! `wharf` process in front of it, talked to over HTTP like any client.
//! Nothing here touches a Redis it did not start.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use redis::Commands;
use serde_json::Value;

/// Raises this process's open-file limit to its hard limit (children inherit
/// it): some tests hold thousands of connections.
pub fn raise_fd_limit() -> u64 {
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A new, empty directory of its own. Named by process, a counter and the
/// clock: a free port (as before) can come back for a second directory while
/// the first is still in use, and its owner's clean-up then removed both.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let dir = std::env::temp_dir().join(format!("wharf-test-{tag}-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    dir
}

/// The `[components.<name>.grants]` of the repository's `wharf.toml`, if it
/// has them: every test runs the shipped components under the grants that ship.
fn shipped_grants(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wharf.toml");
    let shipped: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    match shipped.get("components").and_then(|c| c.get(name)).and_then(|c| c.get("grants")) {
        Some(grants) => format!("[components.{name}.grants]\n{}", toml::to_string(grants).unwrap()),
        None => String::new(),
    }
}

/// Where `scripts/test.sh` put the built components.
pub fn wasm_dir() -> PathBuf {
    let dir = std::env::var_os("WHARF_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/component"));
    assert!(
        dir.join("inventory.wasm").exists(),
        "components not built in {}: run scripts/test.sh, which builds them first",
        dir.display()
    );
    dir
}

/// The keys matching `pattern`, by SCAN: `KEYS` is a dangerous command,
/// which the least-privilege ACL user of the secured tests may not run.
pub fn keys(c: &mut redis::Connection, pattern: &str) -> Vec<String> {
    let mut keys: Vec<String> = c.scan_match(pattern).unwrap().collect::<Result<_, _>>().unwrap();
    keys.sort();
    keys
}

/// A throwaway CA, a server certificate for 127.0.0.1 and a client
/// certificate, made with the `openssl` command in `dir`.
pub fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl must be installed");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    openssl(
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=wharf-test-ca"]
            .iter()
            .copied()
            .chain(["-keyout", "ca.key", "-out", "ca.crt"])
            .collect::<Vec<_>>(),
    );
    for (name, ext) in [
        ("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        let (key, csr, crt, ext) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
        let subject = format!("/CN=wharf-test-{name}");
        openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", &subject, "-keyout", &key, "-out", &csr]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &crt,
            "-extfile",
            &ext,
        ]);
    }
}

/// A redis-server of our own; killed on drop.
pub struct TestRedis {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    /// Another test's server, used by a second host: never stopped from here.
    borrowed: bool,
    /// Append-only file on: a graceful stop and start keeps the data.
    persistent: bool,
    /// Only this ACL user may log in (the default user is off).
    pub user: Option<(String, String)>,
    /// TLS only, with certificates made in `dir` (see `make_certificates`).
    pub tls: bool,
}

impl TestRedis {
    fn new(persistent: bool, user: Option<(&str, &str)>, tls: bool) -> TestRedis {
        let user = user.map(|(u, p)| (u.to_string(), p.to_string()));
        let mut redis = TestRedis {
            port: free_port(),
            dir: scratch_dir("redis"),
            child: None,
            borrowed: false,
            persistent,
            user,
            tls,
        };
        if tls {
            make_certificates(&redis.dir);
        }
        redis.spawn();
        redis
    }

    pub fn start() -> TestRedis {
        Self::new(false, None, false)
    }

    /// A server that keeps its data across `stop_gracefully` and `start_again`.
    pub fn start_persistent() -> TestRedis {
        Self::new(true, None, false)
    }

    /// A server where only ACL user `user` may log in, with `password`, and
    /// only to Wharf's keys and the commands Wharf needs; over TLS (client
    /// certificates required) when `tls`.
    pub fn start_secured(user: &str, password: &str, tls: bool) -> TestRedis {
        Self::new(false, Some((user, password)), tls)
    }

    /// The server another `TestRedis` runs, for a second host on the same data.
    pub fn borrow(&self) -> TestRedis {
        TestRedis {
            port: self.port,
            dir: self.dir.clone(),
            child: None,
            borrowed: true,
            persistent: self.persistent,
            user: self.user.clone(),
            tls: self.tls,
        }
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", if self.persistent { "yes" } else { "no" }])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null());
        if self.tls {
            let file = |name: &str| self.dir.join(name).display().to_string();
            cmd.args(["--port", "0", "--tls-port", &port])
                .args(["--tls-cert-file", &file("server.crt"), "--tls-key-file", &file("server.key")])
                .args(["--tls-ca-cert-file", &file("ca.crt")]);
        } else {
            cmd.args(["--port", &port]);
        }
        if let Some((user, password)) = &self.user {
            // Least privilege: Wharf's keys and channels, no admin or dangerous commands.
            cmd.args(["--user", "default", "off"]).args([
                "--user",
                user,
                "on",
                &format!(">{password}"),
                "~wharf:*",
                "&*",
                "+@all",
                "-@dangerous",
            ]);
        }
        self.child = Some(cmd.spawn().expect("redis-server must be installed (scripts/test.sh installs it)"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut c) = self.client().get_connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match &self.user {
            Some((user, password)) => format!("{scheme}://{user}:{password}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// `REDIS_TLS_*` for a host that talks to this server.
    pub fn tls_env(&self) -> Vec<(String, String)> {
        let file = |name: &str| self.dir.join(name).display().to_string();
        vec![
            ("REDIS_TLS_CA_FILE".into(), file("ca.crt")),
            ("REDIS_TLS_CERT_FILE".into(), file("client.crt")),
            ("REDIS_TLS_KEY_FILE".into(), file("client.key")),
        ]
    }

    fn client(&self) -> redis::Client {
        if !self.tls {
            return redis::Client::open(self.url()).unwrap();
        }
        let read = |name: &str| std::fs::read(self.dir.join(name)).unwrap();
        let client_tls = redis::ClientTlsConfig { client_cert: read("client.crt"), client_key: read("client.key") };
        let certs = redis::TlsCertificates { client_tls: Some(client_tls), root_cert: Some(read("ca.crt")) };
        redis::Client::build_with_tls(self.url(), certs).unwrap()
    }

    pub fn conn(&self) -> redis::Connection {
        self.client().get_connection().unwrap()
    }

    /// Stops the server (data is lost: it keeps nothing on disk).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// SIGTERM, as an operator stops it: a persistent server writes its data.
    pub fn stop_gracefully(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers.
    pub fn freeze(&self, frozen: bool) {
        if let Some(c) = &self.child {
            unsafe { libc::kill(c.id() as i32, if frozen { libc::SIGSTOP } else { libc::SIGCONT }) };
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if self.borrowed {
            return;
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Options for a host under test.
pub struct Options {
    pub components: Vec<&'static str>,
    pub env: Vec<(String, String)>,
    /// Extra TOML appended to the generated config.
    pub toml: String,
    /// Use this config file instead of generating one.
    pub config: Option<PathBuf>,
    /// Extra arguments to `wharf serve`.
    pub args: Vec<String>,
    /// Share this Redis (another host's) instead of starting one.
    pub redis: Option<TestRedis>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            components: vec!["inventory", "payment", "analytics", "faulty"],
            env: vec![],
            toml: String::new(),
            config: None,
            args: vec![],
            redis: None,
        }
    }
}

/// A running `wharf serve`; killed on drop.
pub struct Wharf {
    pub redis: TestRedis,
    pub port: u16,
    pub log: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    config: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    pub http: Client,
}

pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Wharf {
    pub async fn start() -> Wharf {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(mut opts: Options) -> Wharf {
        let redis = opts.redis.take().unwrap_or_else(TestRedis::start);
        let dir = scratch_dir("host");
        let wasm = wasm_dir();
        let mut toml = String::new();
        // "name" serves name.wasm; "name=file" serves file.wasm as name.
        for c in &opts.components {
            let (name, file) = c.split_once('=').unwrap_or((c, c));
            toml.push_str(&format!("[components.{name}]\nwasm = {:?}\n", wasm.join(format!("{file}.wasm"))));
            toml.push_str(&shipped_grants(name));
        }
        toml.push_str(&opts.toml);
        // Tests wait for retried events: claim them again sooner than production would.
        if !opts.toml.contains("[streams]") {
            toml.push_str("[streams]\nclaim_idle_ms = 3000\n");
        }
        if !opts.toml.contains("[limits]") {
            toml.push_str("[limits]\ncall_timeout_ms = 2000\n");
        }
        let config = opts.config.clone().unwrap_or_else(|| dir.join("wharf.toml"));
        if opts.config.is_none() {
            std::fs::write(&config, toml).unwrap();
        }
        let port = free_port();
        let mut w = Wharf {
            redis,
            port,
            log: dir.join("wharf.log"),
            dir,
            env: vec![],
            config,
            args: opts.args.clone(),
            child: None,
            http: Client::new(port),
        };
        w.spawn(&opts.env);
        w.wait_ready().await;
        w
    }

    fn spawn(&mut self, env: &[(String, String)]) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .args(&self.args)
            .env("REDIS_URL", self.redis.url())
            .env("WHARF_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("WHARF_PAYMENT_SETTLE_DELAY_MS", "0")
            .env("WHARF_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start wharf"));
        self.env = env.to_vec();
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("wharf exited with {status}; log:\n{}", self.logs());
            }
            if let Ok(r) =
                tokio::time::timeout(Duration::from_secs(1), self.send("GET", "/readyz", &[], Vec::new())).await
                && r.map(|r| r.status == 200).unwrap_or(false)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("wharf did not become ready; log:\n{}", self.logs());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The host's data directory (`data` beside its generated config).
    pub fn data_dir(&self) -> PathBuf {
        self.config.parent().unwrap().join("data")
    }

    /// The host's own listening port: where its HTTP client points.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Appends an event straight to `stream`, stamped as if component
    /// `origin` had published it: how tests replay, duplicate or forge events.
    pub fn publish_raw(&self, stream: &str, payload: impl redis::ToRedisArgs, origin: &str) -> String {
        redis::cmd("XADD")
            .arg(format!("wharf:stream:{{{stream}}}"))
            .arg("*")
            .arg("payload")
            .arg(payload)
            .arg("origin")
            .arg(origin)
            .query(&mut self.redis.conn())
            .unwrap()
    }

    /// Deploys `file` (in the wasm dir) as component `name` through the admin API.
    pub async fn deploy(&self, name: &str, file: &str, token: &str) -> Resp {
        let wasm = std::fs::read(wasm_dir().join(format!("{file}.wasm"))).unwrap();
        let auth = format!("Bearer {token}");
        self.send("PUT", &format!("/admin/components/{name}"), &[("authorization", &auth)], wasm).await.unwrap()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap()
    }

    /// kill -9, then a fresh host on the same Redis and port.
    pub async fn crash_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let env = self.env.clone();
        self.spawn(&env);
        self.wait_ready().await;
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Resp, String> {
        self.http.send(method, path, headers, body).await
    }

    /// A JSON request; panics on transport errors.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.http.call(method, path, body).await
    }

    pub async fn create_product(&self, name: &str, price: f64, quantity: i64) -> String {
        let (s, p) = self
            .call("POST", "/products", Some(serde_json::json!({"name": name, "price": price, "quantity": quantity})))
            .await;
        assert_eq!(s, 201, "{p}");
        p["id"].as_str().unwrap().to_string()
    }

    pub async fn stock(&self, id: &str) -> i64 {
        let (s, p) = self.call("GET", &format!("/products/{id}"), None).await;
        assert_eq!(s, 200, "{p}");
        p["quantity"].as_i64().unwrap()
    }

    pub async fn order(&self, product: &str, quantity: i64) -> (u16, Value) {
        self.call("POST", "/orders", Some(serde_json::json!({"product_id": product, "quantity": quantity}))).await
    }

    pub async fn order_status(&self, id: &str) -> String {
        let (s, o) = self.call("GET", &format!("/orders/{id}"), None).await;
        assert_eq!(s, 200, "{o}");
        o["status"].as_str().unwrap().to_string()
    }

    /// Waits until order `id` has `status`.
    pub async fn wait_order_status(&self, id: &str, status: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.order_status(id).await != status {
            assert!(Instant::now() < deadline, "order {id} never {status}; log:\n{}", tail(&self.logs(), 30));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every consumer group on every stream has read and
    /// acknowledged everything, i.e. all events are handled.
    pub async fn wait_events_handled(&self, timeout: Duration) {
        self.wait_events_handled_except("", timeout).await
    }

    /// Like `wait_events_handled`, ignoring consumer group `skip`.
    pub async fn wait_events_handled_except(&self, skip: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        // Quiet on two looks in a row, 50 ms apart: a delayed or outbox set
        // created after a look listed the keys is in the next look.
        let mut quiet = 0;
        loop {
            quiet = if self.events_handled(skip) { quiet + 1 } else { 0 };
            if quiet == 2 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "events still in flight after {timeout:?}; log tail:\n{}",
                tail(&self.logs(), 40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether every event has been handled, judged from one atomic
    /// snapshot (`MULTI`) of every stream's groups and every delayed and
    /// outbox set. Looks taken one key at a time could miss an event: a
    /// handler of a stream looked at later publishes to one looked at
    /// earlier, then acks, between the two looks. In one snapshot an event
    /// is always somewhere: waiting in a set, undelivered, or pending.
    fn events_handled(&self, skip: &str) -> bool {
        let mut c = self.redis.conn();
        let streams: Vec<String> = keys(&mut c, "wharf:stream:{*}");
        let mut waiting: Vec<String> = keys(&mut c, "wharf:stream:*:delayed");
        waiting.extend(keys(&mut c, "wharf:{*}:outbox"));
        let mut snapshot = redis::pipe();
        snapshot.atomic();
        for s in &streams {
            snapshot.cmd("XINFO").arg("STREAM").arg(s).cmd("XINFO").arg("GROUPS").arg(s);
        }
        for w in &waiting {
            snapshot.cmd("ZCARD").arg(w);
        }
        let replies: Vec<redis::Value> = snapshot.query(&mut c).unwrap();
        let (stream_replies, waiting_replies) = replies.split_at(streams.len() * 2);
        let text = |v: Option<&redis::Value>| match v {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => String::new(),
        };
        for pair in stream_replies.chunks(2) {
            let info: std::collections::HashMap<String, redis::Value> = redis::from_redis_value_ref(&pair[0]).unwrap();
            let groups: Vec<std::collections::HashMap<String, redis::Value>> =
                redis::from_redis_value_ref(&pair[1]).unwrap();
            // The last id ever added, not the last entry left: trimming may
            // have emptied a stream whose every entry was handled.
            let last_id = text(info.get("last-generated-id"));
            for g in groups {
                if text(g.get("name")) == skip {
                    continue;
                }
                let pending = matches!(g.get("pending"), Some(redis::Value::Int(0)));
                if !pending || text(g.get("last-delivered-id")) != last_id {
                    return false;
                }
            }
        }
        waiting_replies.iter().all(|n| matches!(n, redis::Value::Int(0)))
    }

    pub fn dead_letters(&self, stream: &str) -> i64 {
        redis::cmd("XLEN").arg(format!("wharf:stream:{{{stream}}}:dead")).query(&mut self.redis.conn()).unwrap()
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("wharf log ({}):\n{}", self.log.display(), tail(&self.logs(), 80));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An HTTP client for one host port.
#[derive(Clone)]
pub struct Client {
    pub port: u16,
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    pub fn new(port: u16) -> Client {
        Client { port, inner: HyperClient::builder(TokioExecutor::new()).pool_max_idle_per_host(64).build_http() }
    }

    /// Polls /readyz until it answers 200 (30 s at most).
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let probe = self.send("GET", "/readyz", &[], Vec::new());
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(1), probe).await
                && r.status == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no host became ready on port {}", self.port);
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Resp, String> {
        let mut req = hyper::Request::builder().method(method).uri(format!("http://127.0.0.1:{}{path}", self.port));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
        let resp = self.inner.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes().to_vec();
        Ok(Resp { status, headers, body })
    }

    /// A JSON request; panics on transport errors.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(method, path, &[], body).await
    }

    /// A JSON request with extra headers; panics on transport errors.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        let r = self.send(method, path, &all, bytes).await.unwrap();
        let json = if r.body.is_empty() { Value::Null } else { r.json() };
        (r.status, json)
    }
}

/// A tiny deterministic PRNG (xorshift64*), seeded per test and printed so a
/// failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Rng {
        let seed = std::env::var("WHARF_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
        eprintln!("WHARF_TEST_SEED={seed}");
        Rng(seed)
    }
    pub fn with_seed(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
