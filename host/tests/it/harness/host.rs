//! A real `wharf serve` process per test, with its own config and data.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Client, Conn, Resp, TestRedis, free_port, keys, scratch_dir, tail, wasm_dir};

/// The `instance_reuse(_for)` and `[components.<name>.grants]` of the
/// repository's `wharf.toml`, if it has them: every test runs the shipped
/// components under the settings and grants that ship.
fn shipped_settings(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wharf.toml");
    let shipped: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let Some(component) = shipped.get("components").and_then(|c| c.get(name)) else { return String::new() };
    let mut out = String::new();
    for setting in ["instance_reuse", "instance_reuse_for"] {
        if let Some(value) = component.get(setting) {
            out.push_str(&format!("{setting} = {value}\n"));
        }
    }
    if let Some(grants) = component.get("grants") {
        out.push_str(&format!("[components.{name}.grants]\n{}", toml::to_string(grants).unwrap()));
    }
    out
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
            toml.push_str(&shipped_settings(name));
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
        // A Python or JavaScript component is compiled on its first load
        // (an interpreter: seconds of Cranelift), while other tests compile too.
        let deadline = Instant::now() + Duration::from_secs(120);
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
        self.publish_raw_at(stream, "*", payload, origin)
    }

    /// Like `publish_raw`, with the entry id `id` (`<ms>-<seq>`, above the
    /// stream's last).
    pub fn publish_raw_at(&self, stream: &str, id: &str, payload: impl redis::ToRedisArgs, origin: &str) -> String {
        redis::cmd("XADD")
            .arg(format!("wharf:stream:{{{stream}}}"))
            .arg(id)
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
    /// `kill -9`, for good.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

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

    /// A counter (or a gauge) from `GET /metrics`: `name` with its labels, as the page
    /// writes them (`wharf_x_total{component="inventory"}`).
    pub async fn counter(&self, name: &str) -> u64 {
        self.counter_if_listed(name).await.unwrap_or_else(|text| panic!("no {name} in\n{text}"))
    }

    /// [`Self::counter`], or the page when it lists no such series (a
    /// labelled counter is listed from its first increment).
    pub async fn counter_if_listed(&self, name: &str) -> Result<u64, String> {
        let r = self.send("GET", "/metrics", &[], Vec::new()).await.unwrap();
        let text = String::from_utf8_lossy(&r.body).into_owned();
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).ok_or(text)
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
        // Quiet on two looks in a row, 50 ms apart, with nothing added to any
        // stream or outbox between them: a delayed or outbox set created
        // after a look listed the keys is in the next look, and on a cluster
        // (where a look is not one snapshot) an event that moved between
        // keys during a look changed a counter.
        let mut last: Option<Vec<String>> = None;
        loop {
            let now = self.events_handled(skip);
            if now.is_some() && now == last {
                return;
            }
            last = now;
            assert!(
                Instant::now() < deadline,
                "events still in flight after {timeout:?}; log tail:\n{}",
                tail(&self.logs(), 40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether every event has been handled: `Some` (the last id of every
    /// stream and the count of every outbox, to compare looks by) if so.
    /// On one server the look is one atomic snapshot (`MULTI`) of every
    /// stream's groups and every delayed and outbox set: looks taken one key
    /// at a time could miss an event (a handler of a stream looked at later
    /// publishes to one looked at earlier, then acks, between the two
    /// looks); in one snapshot an event is always somewhere: waiting in a
    /// set, undelivered, or pending. A cluster has no such snapshot: there
    /// the counters, equal in two looks, show nothing moved.
    fn events_handled(&self, skip: &str) -> Option<Vec<String>> {
        let mut c = self.redis.conn();
        let streams: Vec<String> = keys(&mut c, "wharf:stream:{*}");
        let mut waiting: Vec<String> = keys(&mut c, "wharf:stream:*:delayed");
        waiting.extend(keys(&mut c, "wharf:{*}:outbox"));
        let counters: Vec<String> = keys(&mut c, "wharf:{*}:outbox:seq");
        let mut cmds = Vec::new();
        for s in &streams {
            cmds.push(redis::cmd("XINFO").arg("STREAM").arg(s).to_owned());
            cmds.push(redis::cmd("XINFO").arg("GROUPS").arg(s).to_owned());
        }
        for w in &waiting {
            cmds.push(redis::cmd("ZCARD").arg(w).to_owned());
        }
        for k in &counters {
            cmds.push(redis::cmd("GET").arg(k).to_owned());
        }
        let replies: Vec<redis::Value> = match &mut c {
            Conn::Node(_) => {
                let mut snapshot = redis::pipe();
                snapshot.atomic();
                for cmd in cmds {
                    snapshot.add_command(cmd);
                }
                snapshot.query(&mut c).unwrap()
            }
            Conn::Cluster(..) => cmds.iter().map(|cmd| cmd.query(&mut c).unwrap()).collect(),
        };
        let (stream_replies, rest) = replies.split_at(streams.len() * 2);
        let (waiting_replies, counter_replies) = rest.split_at(waiting.len());
        let text = |v: Option<&redis::Value>| match v {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => String::new(),
        };
        let mut seen = Vec::new();
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
                    return None;
                }
            }
            seen.push(last_id);
        }
        if !waiting_replies.iter().all(|n| matches!(n, redis::Value::Int(0))) {
            return None;
        }
        seen.extend(counter_replies.iter().map(|v| text(Some(v))));
        Some(seen)
    }

    /// Dead letters of `stream`, over its partitions.
    pub fn dead_letters(&self, stream: &str) -> i64 {
        let mut c = self.redis.conn();
        let dead = self.stream_keys(stream).into_iter().map(|k| format!("{k}:dead"));
        dead.map(|k| redis::cmd("XLEN").arg(k).query::<i64>(&mut c).unwrap()).sum()
    }

    /// The keys of `stream`'s partitions, as many as Redis records (one
    /// when it records none).
    pub fn stream_keys(&self, stream: &str) -> Vec<String> {
        let n: Option<u16> =
            redis::cmd("HGET").arg("wharf:stream-partitions").arg(stream).query(&mut self.redis.conn()).unwrap();
        super::layout::stream_keys(stream, n.unwrap_or(1))
    }

    /// Every entry of `stream` (`suffix` ""), or of its dead letters
    /// (":dead"), partition by partition, each in order: `(entry id, fields)`.
    pub fn entries<T: redis::FromRedisValue>(&self, stream: &str, suffix: &str) -> Vec<(String, T)> {
        let mut c = self.redis.conn();
        let mut all = Vec::new();
        for k in self.stream_keys(stream) {
            let part: Vec<(String, T)> =
                redis::cmd("XRANGE").arg(format!("{k}{suffix}")).arg("-").arg("+").query(&mut c).unwrap();
            all.extend(part);
        }
        all
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
