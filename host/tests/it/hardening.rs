//! What a hostile caller, a hostile component and a restart could still do
//! (issue "Hardening"), each shown to be stopped against a real host and
//! Redis: a restart that served an old build, credentials handed to
//! components, load-time capabilities, the deploy history, trust in `data/`,
//! the admin API, and the resource limits.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{Client, Options, Wharf};
use serde_json::{Value, json};

const TOKEN: &str = "hardening-admin-token-0123456789abcdef";

fn admin_env() -> Vec<(String, String)> {
    vec![("WHARF_ADMIN_TOKEN".into(), TOKEN.into())]
}

async fn admin(w: &Wharf, method: &str, path: &str) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    let r = w.send(method, path, &[("authorization", &auth)], Vec::new()).await.unwrap();
    let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, body)
}

async fn serving(w: &Wharf) -> String {
    let (s, v) = w.call("GET", "/version", None).await;
    assert_eq!(s, 200, "{v}");
    v["version"].as_str().unwrap().to_string()
}

/// `versioned`'s entry in `GET /admin/components`.
async fn versioned_entry(w: &Wharf) -> Value {
    let (_, list) = admin(w, "GET", "/admin/components").await;
    list.as_array().unwrap().iter().find(|c| c["name"] == "versioned").cloned().unwrap()
}

/// A wasm that behaves as `file` but is another build (another sha256): a
/// custom section appended, as a rebuild with other debug info would give.
fn rebuilt(file: &str) -> Vec<u8> {
    let mut wasm = std::fs::read(crate::harness::wasm_dir().join(format!("{file}.wasm"))).unwrap();
    let (name, data) = (b"rebuilt", b"at another time");
    wasm.push(0); // custom section
    wasm.push((1 + name.len() + data.len()) as u8);
    wasm.push(name.len() as u8);
    wasm.extend_from_slice(name);
    wasm.extend_from_slice(data);
    wasm
}

/// A host serving `versioned` from a file of its own, which the test rewrites.
async fn host_with_own_file(file: &Path) -> Wharf {
    let dir = file.parent().unwrap();
    let config = dir.join("wharf.toml");
    std::fs::write(&config, format!("[components.versioned]\nwasm = {file:?}\n[streams]\nclaim_idle_ms = 3000\n[limits]\ncall_timeout_ms = 2000\n")).unwrap();
    Wharf::start_with(Options { config: Some(config), env: admin_env(), ..Default::default() }).await
}

/// Developers hit this first: edit a component, start the host again, and
/// the rebuilt file must serve, not the version last loaded. A version an
/// operator deployed stays until the configured file itself changes, and
/// `wharf components` says where each version came from.
#[tokio::test(flavor = "multi_thread")]
async fn a_rebuilt_file_wins_over_an_older_deployment_and_a_deploy_stays_until_it_changes() {
    let dir = crate::harness::scratch_dir("own-file");
    let file = dir.join("versioned.wasm");
    std::fs::copy(crate::harness::wasm_dir().join("versioned-v1.wasm"), &file).unwrap();
    let mut w = host_with_own_file(&file).await;
    assert_eq!(serving(&w).await, "v1");
    assert_eq!(versioned_entry(&w).await["source"], "file");

    // Rebuilt (v2) and started again: the new file serves.
    std::fs::copy(crate::harness::wasm_dir().join("versioned-v2.wasm"), &file).unwrap();
    w.crash_and_restart().await;
    assert_eq!(serving(&w).await, "v2", "the rebuilt file was ignored:\n{}", crate::harness::tail(&w.logs(), 20));
    assert!(w.logs().contains("the configured file changed since it was last loaded"), "the log says why");

    // An operator deploys v1; a restart with the file unchanged keeps it.
    let r = w.deploy("versioned", "versioned-v1", TOKEN).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    w.crash_and_restart().await;
    assert_eq!(serving(&w).await, "v1");
    assert_eq!(versioned_entry(&w).await["source"], "deploy");
    assert!(w.logs().contains("the configured file is unchanged since it was loaded"));

    // The CLI shows the source.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("components")
        .env("WHARF_URL", w.url())
        .env("WHARF_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("SOURCE") && text.contains("deploy"), "{text}");

    // Now the file changes (another build of v2): it wins over the deployment.
    std::fs::write(&file, rebuilt("versioned-v2")).unwrap();
    w.crash_and_restart().await;
    assert_eq!(serving(&w).await, "v2");
    assert_eq!(versioned_entry(&w).await["source"], "file");
}

/// A rollback that is refused (the older version's artifact no longer holds
/// what its name says) changes nothing: the running version stays in the
/// history, and a later rollback still works from there.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_rollback_keeps_the_history() {
    let w = Wharf::start_with(Options {
        components: vec!["versioned=versioned-v1"],
        env: admin_env(),
        ..Default::default()
    })
    .await;
    let v1 = versioned_entry(&w).await["version"].as_str().unwrap().to_string();
    assert_eq!(w.deploy("versioned", "versioned-v2", TOKEN).await.status, 200);
    let v2 = versioned_entry(&w).await["version"].as_str().unwrap().to_string();

    let artifact = w.data_dir().join("artifacts").join(format!("{v1}.wasm"));
    let good = std::fs::read(&artifact).unwrap();
    std::fs::write(&artifact, rebuilt("versioned-v1")).unwrap();
    let (s, e) = admin(&w, "POST", "/admin/components/versioned/rollback").await;
    assert_eq!(s, 422, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("changed"), "{e}");
    assert_eq!(serving(&w).await, "v2");
    let history: Vec<Value> = versioned_entry(&w).await["history"].as_array().unwrap().clone();
    let shas: Vec<&str> = history.iter().map(|h| h["version"].as_str().unwrap()).collect();
    assert_eq!(shas, [v1.as_str(), v2.as_str()], "the running version is still in the history");

    std::fs::write(&artifact, good).unwrap();
    let (s, e) = admin(&w, "POST", "/admin/components/versioned/rollback").await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(serving(&w).await, "v1");

    // Deploys and rollbacks at once: their steps never interleave, so the
    // history ends with what runs, each version once.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let client = w.http.clone();
        tasks.push(tokio::spawn(async move {
            let auth = format!("Bearer {TOKEN}");
            let (method, path, body) = if i % 2 == 0 {
                let wasm = std::fs::read(crate::harness::wasm_dir().join("versioned-v2.wasm")).unwrap();
                ("PUT", "/admin/components/versioned", wasm)
            } else {
                ("POST", "/admin/components/versioned/rollback", Vec::new())
            };
            client.send(method, path, &[("authorization", &auth)], body).await.unwrap().status
        }));
    }
    for t in tasks {
        let s = t.await.unwrap();
        assert!(s == 200 || s == 422, "{s}");
    }
    let entry = versioned_entry(&w).await;
    let history: Vec<&str> =
        entry["history"].as_array().unwrap().iter().map(|h| h["version"].as_str().unwrap()).collect();
    assert_eq!(history.last(), Some(&entry["version"].as_str().unwrap()), "{entry}");
    let mut unique = history.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), history.len(), "{entry}");
}

/// No component sees a caller's credentials: the host's identity headers
/// say who called.
#[tokio::test(flavor = "multi_thread")]
async fn callers_credentials_never_reach_a_component() {
    let alice = "k-alice-hardening-000000";
    let w = Wharf::start_with(Options {
        components: vec!["inventory", "payment", "hostile"],
        toml: "[components.hostile.grants]\npublish = [\"hostile_events\"]\n".into(),
        env: vec![("WHARF_API_KEYS".into(), format!("{alice}:customer:alice"))],
        ..Default::default()
    })
    .await;
    let bearer = format!("Bearer {alice}");
    let headers = [("authorization", bearer.as_str()), ("x-api-key", alice), ("cookie", "session=s3cret")];
    let r = w.send("GET", "/hostile/headers", &headers, Vec::new()).await.unwrap();
    let v = r.json();
    assert_eq!(r.status, 200, "{v}");
    assert_eq!(v["refused"], true, "credentials reached the component: {v}");
    assert!(v["detail"].as_str().unwrap().ends_with("caller: alice"), "{v}");
}

/// A component's log line stays one line (no forged host lines), and a
/// value over `limits.value_bytes` is refused as `invalid`, not stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_component_forges_no_log_line_and_stores_nothing_huge() {
    let w = Wharf::start_with(Options {
        components: vec!["hostile"],
        toml: "[components.hostile.grants]\npublish = [\"hostile_events\"]\n".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(w.send("GET", "/hostile/forge-log", &[], Vec::new()).await.unwrap().status, 200);
    // Log lines are written by a batching thread: wait for this one.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !w.logs().contains("innocent") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logs = w.logs();
    assert!(!logs.lines().any(|l| l.starts_with("FORGED")), "a forged line:\n{}", crate::harness::tail(&logs, 10));
    assert!(logs.contains("innocent\\nFORGED"), "the message, escaped:\n{}", crate::harness::tail(&logs, 10));
    let (s, v) = w.call("GET", "/hostile/big-value", None).await;
    assert_eq!((s, &v["refused"]), (200, &json!(true)), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("at most 1048576"), "{v}");
    assert!(crate::harness::keys(&mut w.redis.conn(), "wharf:{hostile}:kv:big").is_empty());
}

/// An identity provider's `sub=alice` is not the API key `alice`.
#[tokio::test(flavor = "multi_thread")]
async fn a_tokens_subject_is_never_an_api_keys_subject() {
    let (admin_key, alice) = ("k-admin-hardening-00000", "k-alice-hardening-00000");
    let secret = "jwt-secret-for-the-hardening-tests-0123";
    let w = Wharf::start_with(Options {
        components: vec!["inventory", "payment"],
        env: vec![
            ("WHARF_API_KEYS".into(), format!("{admin_key}:admin:ops,{alice}:customer:alice")),
            ("WHARF_JWT_SECRET".into(), secret.into()),
        ],
        ..Default::default()
    })
    .await;
    let call = |key: String, method: &'static str, path: String, body: Option<Value>| {
        let client = w.http.clone();
        async move {
            let auth = format!("Bearer {key}");
            let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
            let r = client
                .send(method, &path, &[("authorization", &auth), ("content-type", "application/json")], bytes)
                .await
                .unwrap();
            (r.status, serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null))
        }
    };
    let (_, p) =
        call(admin_key.into(), "POST", "/products".into(), Some(json!({"name": "x", "price": 1, "quantity": 5}))).await;
    let (s, order) =
        call(alice.into(), "POST", "/orders".into(), Some(json!({"product_id": p["id"], "quantity": 1}))).await;
    assert_eq!(s, 201, "{order}");
    let claims = json!({"sub": "alice", "role": "customer", "exp": 4_000_000_000u64});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let (s, _) = call(token.clone(), "GET", format!("/orders/{}", order["id"].as_str().unwrap()), None).await;
    assert_eq!(s, 404, "the token's alice saw the API key alice's order");
    let (s, mine) = call(token, "POST", "/orders".into(), Some(json!({"product_id": p["id"], "quantity": 1}))).await;
    assert_eq!((s, mine["customer"].as_str()), (201, Some("jwt#alice")), "{mine}");
}

/// `describe` runs before the grants are checked: its instance may log and
/// read config, nothing else. The sneaky build's write and call never happen
/// and the load is refused, saying why.
#[tokio::test(flavor = "multi_thread")]
async fn the_manifest_call_may_do_nothing() {
    let w =
        Wharf::start_with(Options { components: vec!["inventory", "payment"], env: admin_env(), ..Default::default() })
            .await;
    let payment_requests = |list: &Value| {
        list.as_array().unwrap().iter().find(|c| c["name"] == "payment").unwrap()["requests"].as_u64().unwrap()
    };
    let before = payment_requests(&admin(&w, "GET", "/admin/components").await.1);
    let r = w.deploy("hostile", "hostile-sneaky", TOKEN).await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("describe may only log and read config"));
    let after = payment_requests(&admin(&w, "GET", "/admin/components").await.1);
    assert_eq!(before, after, "the ungranted call reached payment");
    let written = crate::harness::keys(&mut w.redis.conn(), "*sneaked*");
    assert!(written.is_empty(), "{written:?}");
    // The well-behaved build of the same component loads.
    assert_eq!(w.deploy("hostile", "hostile", TOKEN).await.status, 200);
}

/// `data/` is private, and a precompiled artifact is native code: one that
/// was swapped (here: another component's, under inventory's name) fails
/// its tag and is compiled again from the wasm. A data directory others may
/// write is refused at start-up.
#[tokio::test(flavor = "multi_thread")]
async fn precompiled_artifacts_are_authenticated_and_data_is_private() {
    let mut w = Wharf::start_with(Options { components: vec!["inventory", "payment"], ..Default::default() }).await;
    let data = w.data_dir();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("artifacts")), 0o700);
    assert_eq!(mode(&data.join("artifact.key")), 0o600);
    let product = w.create_product("kept", 1.0, 4).await;

    let compiled = |name: &str| {
        let sha = std::fs::read_to_string(data.join("deployed").join(name)).unwrap();
        data.join("artifacts").join(format!("{}.cwasm", &sha[..64]))
    };
    std::fs::copy(compiled("payment"), compiled("inventory")).unwrap();
    w.crash_and_restart().await;
    assert!(w.logs().contains("failed its integrity check"), "{}", crate::harness::tail(&w.logs(), 20));
    assert_eq!(w.stock(&product).await, 4, "inventory serves, compiled again from its wasm");

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["serve", "--config"])
        .arg(data.parent().unwrap().join("wharf.toml"))
        .env("REDIS_URL", w.redis.url())
        .env("WHARF_LISTEN", format!("127.0.0.1:{}", crate::harness::free_port()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("may be written by other users"), "{stderr}");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// Wrong admin tokens are throttled per client (then even the right one
/// waits), the admin API can have a listener of its own, and `/metrics` can
/// want the admin token.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_throttles_guesses_and_can_listen_apart() {
    let admin_port = crate::harness::free_port();
    let mut env = admin_env();
    env.push(("WHARF_ADMIN_LISTEN".into(), format!("127.0.0.1:{admin_port}")));
    env.push(("WHARF_METRICS_ADMIN_ONLY".into(), "true".into()));
    let w = Wharf::start_with(Options { components: vec!["inventory"], env, ..Default::default() }).await;
    let apart = Client::new(admin_port);
    let auth = format!("Bearer {TOKEN}");

    // The public listener has no admin API; the admin listener nothing else.
    let r = w.send("GET", "/admin/components", &[("authorization", &auth)], Vec::new()).await.unwrap();
    assert_eq!(r.status, 404);
    let r = apart.send("GET", "/admin/components", &[("authorization", &auth)], Vec::new()).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(apart.send("GET", "/products", &[], Vec::new()).await.unwrap().status, 404);

    // /metrics wants the token.
    assert_eq!(w.send("GET", "/metrics", &[], Vec::new()).await.unwrap().status, 401);
    assert_eq!(w.send("GET", "/metrics", &[("authorization", &auth)], Vec::new()).await.unwrap().status, 200);

    for _ in 0..5 {
        let r = apart.send("GET", "/admin/components", &[("authorization", "Bearer guess")], Vec::new()).await.unwrap();
        assert_eq!(r.status, 403);
    }
    let r = apart.send("GET", "/admin/components", &[("authorization", &auth)], Vec::new()).await.unwrap();
    assert_eq!(r.status, 429, "after five wrong tokens, even the right one waits");
    assert!(r.headers.get("retry-after").is_some());
}

/// With authentication off every caller is admin: a public address is
/// refused unless the operator says so.
#[test]
fn anonymous_mode_refuses_a_public_address() {
    let serve = |allow: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.args(["serve", "--config", "/dev/null"])
            .env("REDIS_URL", "redis://127.0.0.1:1")
            .env("WHARF_LISTEN", format!("0.0.0.0:{}", crate::harness::free_port()))
            .env("WHARF_DATA_DIR", crate::harness::scratch_dir("anon"));
        if allow {
            cmd.env("WHARF_ALLOW_ANONYMOUS", "true");
        }
        cmd
    };
    let out = serve(false).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("WHARF_ALLOW_ANONYMOUS"), "{stderr}");
    let mut allowed =
        serve(true).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(allowed.try_wait().unwrap().is_none(), "with WHARF_ALLOW_ANONYMOUS=true it serves");
    let _ = allowed.kill();
    let _ = allowed.wait();
}

/// A body trickled in is cut off with 408; past `max_connections` a new
/// connection gets 503 with Retry-After; a 405 names the allowed methods,
/// the host's own paths included.
#[tokio::test(flavor = "multi_thread")]
async fn slow_bodies_and_too_many_connections_get_clear_answers() {
    let w = Wharf::start_with(Options {
        components: vec!["inventory"],
        toml: "[limits]\ncall_timeout_ms = 2000\nbody_timeout_ms = 500\nmax_connections = 3\n".into(),
        ..Default::default()
    })
    .await;
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", w.port)).unwrap();
    slow.write_all(
        b"POST /products HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = slow.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        let _ = slow.write_all(b" ");
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let r = w.send("TRACE", "/readyz", &[], Vec::new()).await.unwrap();
    assert_eq!((r.status, r.headers.get("allow").map(|v| v.to_str().unwrap().to_string())), (405, Some("GET".into())));
    let r = w.send("PUT", "/products", &[], Vec::new()).await.unwrap();
    assert_eq!(
        (r.status, r.headers.get("allow").map(|v| v.to_str().unwrap().to_string())),
        (405, Some("GET, POST".into()))
    );

    let held: Vec<std::net::TcpStream> =
        (0..3).map(|_| std::net::TcpStream::connect(("127.0.0.1", w.port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = std::net::TcpStream::connect(("127.0.0.1", w.port)).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut text = String::new();
    let _ = extra.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 503") && text.to_lowercase().contains("retry-after: 1"), "{text}");
    // More refusals: counted, and one warning in the log, not one per connection.
    for _ in 0..5 {
        let mut again = std::net::TcpStream::connect(("127.0.0.1", w.port)).unwrap();
        again.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = again.read_to_string(&mut String::new());
    }
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let refused = w.counter("wharf_connections_refused_total").await;
    assert!(refused >= 6, "{refused} refusals counted");
    assert_eq!(w.logs().matches("refusing connections").count(), 1);
}

/// The CLI speaks https: a host behind a TLS proxy (here `openssl
/// s_server`) is verified against `--ca-file`, and refused without it.
#[test]
fn the_cli_speaks_https_and_verifies_the_host() {
    let dir = crate::harness::scratch_dir("cli-tls");
    crate::harness::make_certificates(&dir);
    let port = crate::harness::free_port();
    let mut server = std::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept", &format!("127.0.0.1:{port}")])
        .args(["-cert", "server.crt", "-key", "server.key"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl must be installed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let components = |ca: Option<&Path>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("components").env("WHARF_URL", format!("https://127.0.0.1:{port}")).env("WHARF_ADMIN_TOKEN", TOKEN);
        if let Some(ca) = ca {
            cmd.env("WHARF_CA_FILE", ca);
        }
        cmd.output().unwrap()
    };
    let trusted = components(Some(&dir.join("ca.crt")));
    assert!(trusted.status.success(), "{}", String::from_utf8_lossy(&trusted.stderr));
    assert!(String::from_utf8_lossy(&trusted.stdout).contains("NAME"));
    let untrusted = components(None);
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(!untrusted.status.success() && stderr.contains("cannot reach"), "{stderr}");
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Streams no group reads (here: `hostile_events`, which no one consumes)
/// and dead-letter streams are bounded by `trim_max_len` too.
#[tokio::test(flavor = "multi_thread")]
async fn unread_and_dead_letter_streams_are_trimmed() {
    let w = Wharf::start_with(Options {
        components: vec!["hostile"],
        toml: "[components.hostile.grants]\npublish = [\"hostile_events\"]\n[streams]\nclaim_idle_ms = 3000\ntrim_max_len = 10\ntrim_interval_ms = 100\n".into(),
        ..Default::default()
    })
    .await;
    let mut c = w.redis.conn();
    for key in ["wharf:stream:{hostile_events}", "wharf:stream:{hostile_events}:dead"] {
        for i in 0..30 {
            let _: String = redis::cmd("XADD").arg(key).arg("*").arg("payload").arg(i).query(&mut c).unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lens: Vec<u64> = ["wharf:stream:{hostile_events}", "wharf:stream:{hostile_events}:dead"]
            .iter()
            .map(|k| redis::cmd("XLEN").arg(k).query(&mut c).unwrap())
            .collect();
        if lens.iter().all(|&n| n <= 10) {
            break;
        }
        assert!(Instant::now() < deadline, "still {lens:?} entries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every list answers 200 on a fresh store (analytics sent Redis an empty
/// batch and answered 500 with Redis's text).
#[tokio::test(flavor = "multi_thread")]
async fn every_list_answers_on_a_fresh_store() {
    let w = Wharf::start().await;
    for path in ["/analytics/sales", "/products", "/orders"] {
        let (s, v) = w.call("GET", path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
}

/// A component that floods the log or the streams is held to its budget:
/// lines past `log_lines_per_second` are dropped and counted (the next line
/// that goes out says how many), publishes past `publishes_per_second` are
/// refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_flooding_component_is_held_to_its_budget() {
    let w = Wharf::start_with(Options {
        components: vec!["hostile"],
        toml: "[components.hostile.grants]\npublish = [\"hostile_events\"]\n[limits]\ncall_timeout_ms = 2000\nlog_lines_per_second = 10\npublishes_per_second = 10\n".into(),
        ..Default::default()
    })
    .await;
    let (s, v) = w.call("GET", "/hostile/flood", None).await;
    assert_eq!((s, &v["refused"]), (200, &json!(true)), "{v}");
    let published: usize = v["detail"].as_str().unwrap().trim_start_matches("published ").parse().unwrap();
    assert!((10..=12).contains(&published), "{v}");
    let entries: u64 = redis::cmd("XLEN").arg("wharf:stream:{hostile_events}").query(&mut w.redis.conn()).unwrap();
    assert_eq!(entries as usize, published);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(w.send("GET", "/hostile/forge-log", &[], Vec::new()).await.unwrap().status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !w.logs().contains("log lines dropped") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logs = w.logs();
    let lines = logs.lines().filter(|l| l.contains("flood line")).count();
    assert!((10..=12).contains(&lines), "{lines} flood lines went out");
    let dropped = format!("dropped={}", 1000 - lines);
    assert!(logs.contains("log lines dropped") && logs.contains(&dropped), "{}", crate::harness::tail(&logs, 5));
}

/// An HTTP flood that fills the instance pool does not cost events their
/// attempts: requests past the pool get 503 `busy` with `Retry-After`,
/// while every event waits for a slot and is handled once, none
/// dead-lettered (a full pool is not an attempt).
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_that_fills_the_pool_dead_letters_no_event() {
    let w = Wharf::start_with(Options {
        components: vec!["faulty"],
        toml: "[streams]\nmax_attempts = 2\nretry_base_ms = 50\n[limits]\nmax_instances = 3\ncall_timeout_ms = 5000\n"
            .into(),
        ..Default::default()
    })
    .await;
    let port = w.port;
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (flooding, busy) = (flooding.clone(), busy.clone());
            tokio::spawn(async move {
                let client = Client::new(port);
                while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = client.send("GET", "/faulty/slow?ms=100", &[], Vec::new()).await.unwrap();
                    if r.status == 503 {
                        assert_eq!(r.json()["error"]["code"], "busy");
                        assert!(r.headers.contains_key("retry-after"));
                        busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    } else {
                        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    const EVENTS: usize = 30;
    for i in 0..EVENTS {
        w.publish_raw("faulty_events", json!({"key": format!("flood{i}"), "mode": "ok"}).to_string(), "test");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert!(busy.load(std::sync::atomic::Ordering::Relaxed) > 0, "the flood never filled the pool");
    w.wait_events_handled(Duration::from_secs(20)).await;
    let mut redis = w.redis.conn();
    for i in 0..EVENTS {
        let n: Option<String> = redis::cmd("HGET")
            .arg(format!("wharf:{{faulty}}:kv:deliveries:flood{i}"))
            .arg("v")
            .query(&mut redis)
            .unwrap();
        assert_eq!(n.as_deref(), Some("1"), "event flood{i} was not handled exactly once");
    }
    assert_eq!(w.dead_letters("faulty_events"), 0, "a full pool cost an event its attempts");
}

/// The faulty fixture, its events one at a time, writes held back past 3
/// events waiting for at most `wait_ms`.
async fn faulty_with_backlog_of_3(wait_ms: u64) -> Wharf {
    let toml = format!("[streams]\nconcurrency = 1\n[limits]\nmax_backlog = 3\nbacklog_wait_ms = {wait_ms}\n");
    Wharf::start_with(Options { components: vec!["faulty"], toml, ..Default::default() }).await
}

/// Waits for the pipeline, then checks the event of each accepted faulty
/// write (keyed as in `/faulty/work/{key}`) was handled exactly once.
async fn each_handled_once(w: &Wharf, accepted: &[String]) {
    w.wait_events_handled(Duration::from_secs(30)).await;
    let mut redis = w.redis.conn();
    for key in accepted {
        let n: Option<String> =
            redis::cmd("HGET").arg(format!("wharf:{{faulty}}:kv:deliveries:{key}")).arg("v").query(&mut redis).unwrap();
        assert_eq!(n.as_deref(), Some("1"), "the event of accepted write {key} was not handled once");
    }
}

/// Backpressure: past `limits.max_backlog` events waiting, a write to a
/// component that publishes waits `backlog_wait_ms`, then is answered 503
/// `backlogged` with `Retry-After` (and nothing of it is accepted), reads
/// still pass, and once the pipeline catches up writes are taken again.
/// Every accepted write's event is handled, once.
#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_past_its_bound_makes_writers_wait_and_loses_nothing() {
    let w = faulty_with_backlog_of_3(100).await;
    let mut accepted = Vec::new();
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    // Each event takes 500 ms, one at a time: the backlog passes 3 soon,
    // and room for one more write comes only every 500 ms, so a write that
    // waits 100 ms finds none sooner or later.
    while refused == 0 && Instant::now() < deadline {
        let key = format!("work{}", accepted.len());
        let sent = Instant::now();
        let r = w.send("POST", &format!("/faulty/work/{key}?ms=500"), &[], Vec::new()).await.unwrap();
        match r.status {
            202 => accepted.push(key),
            503 => {
                assert!(sent.elapsed() >= Duration::from_millis(100), "refused without waiting: {:?}", sent.elapsed());
                assert_eq!(r.json()["error"]["code"], "backlogged", "{}", String::from_utf8_lossy(&r.body));
                assert_eq!(r.headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
                refused += 1;
            }
            s => panic!("POST answered {s}: {}", String::from_utf8_lossy(&r.body)),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refused, 1, "the backlog never made a writer wait");
    assert!(accepted.len() >= 3, "writes were refused before the backlog reached its bound: {}", accepted.len());
    // Reads are never refused for the backlog.
    assert_eq!(w.send("GET", "/faulty/ok", &[], Vec::new()).await.unwrap().status, 200);
    let waiting = w.counter("wharf_event_backlog").await;
    assert!(waiting >= 3, "{waiting} events waiting");

    // The pipeline catches up, and writers are taken again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = w.send("POST", "/faulty/work/after?ms=0", &[], Vec::new()).await.unwrap();
        if r.status == 202 {
            accepted.push("after".into());
            break;
        }
        assert_eq!(r.status, 503);
        assert!(Instant::now() < deadline, "writes still refused 30 s later");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    each_handled_once(&w, &accepted).await;
}

/// A write held back by the backlog goes in by itself once the backlog
/// falls under the bound within `backlog_wait_ms`: the client sees a slow
/// answer, not a refusal, and its event is handled once.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_held_back_by_the_backlog_goes_in_when_it_falls() {
    let w = faulty_with_backlog_of_3(20_000).await;
    let mut accepted = Vec::new();
    let mut held = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    // Events of 150 ms, one at a time: the backlog passes 3 soon, and a
    // write then waits for it to fall, about 150 ms an event.
    while held.is_none() && Instant::now() < deadline {
        let key = format!("work{}", accepted.len());
        let sent = Instant::now();
        let r = w.send("POST", &format!("/faulty/work/{key}?ms=150"), &[], Vec::new()).await.unwrap();
        assert_eq!(r.status, 202, "a write was refused instead of waiting: {}", String::from_utf8_lossy(&r.body));
        if sent.elapsed() >= Duration::from_millis(140) {
            held = Some(sent.elapsed());
        }
        accepted.push(key);
    }
    let held = held.expect("no write was held back by the backlog");
    assert!(held < Duration::from_secs(15), "{held:?}");
    assert!(accepted.len() > 3, "writes were held before the backlog passed its bound: {}", accepted.len());
    each_handled_once(&w, &accepted).await;
}
