//! One deploy reaches every host on a Redis (`deploy::fleet`): three hosts
//! sharing one Redis follow each other's deploys and rollbacks, a host that
//! was down comes up on what the fleet runs, and the admin view says when
//! they agree.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Options, TestRedis, Wharf};

const TOKEN: &str = "fleet-test-admin-token-0123456789abcd";

fn host(redis: Option<TestRedis>) -> Options {
    Options {
        components: vec!["versioned=versioned-v1"],
        env: vec![("WHARF_ADMIN_TOKEN".into(), TOKEN.into())],
        redis,
        ..Default::default()
    }
}

async fn serving(w: &Wharf) -> String {
    let (s, v) = w.call("GET", "/version", None).await;
    assert_eq!(s, 200, "{v}");
    v["version"].as_str().unwrap().to_string()
}

/// Waits until every host serves `version`; how long that took.
async fn until_all_serve(hosts: &[&Wharf], version: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let mut all = true;
        for w in hosts {
            all &= serving(w).await == version;
        }
        if all {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "not every host serves {version} after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deploys `file` as `versioned` through `through`; then waits until every
/// host of `hosts` serves `version` (within 2 s). The deploy's answer.
async fn deploy_to(through: &Wharf, file: &str, hosts: &[&Wharf], version: &str) -> Value {
    let r = through.deploy("versioned", file, TOKEN).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    until_all_serve(hosts, version, Duration::from_secs(2)).await;
    r.json()
}

async fn admin(w: &Wharf, method: &str, path: &str) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    let r = w.send(method, path, &[("authorization", &auth)], Vec::new()).await.unwrap();
    (r.status, r.json())
}

/// The `versioned` entry of `GET /admin/components` once its fleet view has
/// converged on `sha` over `hosts` live hosts.
async fn converged(w: &Wharf, sha: &str, hosts: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, all) = admin(w, "GET", "/admin/components").await;
        assert_eq!(s, 200, "{all}");
        let c = all.as_array().unwrap().iter().find(|c| c["name"] == "versioned").unwrap().clone();
        let fleet = &c["fleet"];
        if fleet["converged"] == true
            && fleet["desired"]["version"] == sha
            && fleet["hosts"].as_array().map(Vec::len) == Some(hosts)
        {
            return c;
        }
        assert!(Instant::now() < deadline, "the fleet did not converge on {sha}: {c}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_deploy_reaches_every_host_and_a_rollback_too() {
    let a = Wharf::start_with(host(None)).await;
    let mut b = Wharf::start_with(host(Some(a.redis.borrow()))).await;
    let c = Wharf::start_with(host(Some(a.redis.borrow()))).await;
    until_all_serve(&[&a, &b, &c], "v1", Duration::from_secs(1)).await;

    // A deploy on A: served by B and C within 2 s.
    let r = a.deploy("versioned", "versioned-v2", TOKEN).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let deployed = r.json();
    let (v2, first) = (deployed["version"].as_str().unwrap().to_string(), deployed["fleet_revision"].as_u64());
    assert!(first.is_some(), "recorded for the fleet: {deployed}");
    let took = until_all_serve(&[&a, &b, &c], "v2", Duration::from_secs(2)).await;
    eprintln!("a deploy on one host reached all three in {took:?}");
    let view = converged(&c, &v2, 3).await;
    assert!(view["fleet"]["desired"]["revision"].as_u64() >= first, "{view}");

    // A rollback on C: every host goes back.
    let (s, back) = admin(&c, "POST", "/admin/components/versioned/rollback").await;
    assert_eq!(s, 200, "{back}");
    let v1 = back["version"].as_str().unwrap().to_string();
    let took = until_all_serve(&[&a, &b, &c], "v1", Duration::from_secs(2)).await;
    eprintln!("a rollback on one host reached all three in {took:?}");
    converged(&a, &v1, 3).await;

    // B down during a deploy: it comes up on the new version, ready only then.
    b.crash();
    deploy_to(&a, "versioned-v2", &[&a, &c], "v2").await;
    b.crash_and_restart().await;
    assert_eq!(serving(&b).await, "v2", "a host that was down catches up before it is ready");
    // Its configured file (v1) is the one it loaded before: the fleet's record wins.
    assert!(b.logs().contains("following the fleet's deployment"), "{}", crate::harness::tail(&b.logs(), 20));
    // The crashed B's last beat expires; the new B beats: three live hosts again.
    converged(&a, &v2, 3).await;

    // The CLI: `--wait` returns once every live host runs the version, and
    // `wharf components` counts the hosts on the fleet's version.
    let wharf = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .env("WHARF_URL", c.url())
            .env("WHARF_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let v1_file = crate::harness::wasm_dir().join("versioned-v1.wasm");
    let (ok, text) = wharf(&["deploy", "versioned", v1_file.to_str().unwrap(), "--wait", "10"]);
    assert!(ok && text.contains("3 host(s) run"), "{text}");
    for w in [&a, &b, &c] {
        assert_eq!(serving(w).await, "v1", "--wait returned before every host served the version");
    }
    let (ok, text) = wharf(&["components"]);
    assert!(ok && text.contains("FLEET") && text.contains("3/3"), "{text}");
    // Each live host, by address, with its version.
    for w in [&a, &b, &c] {
        assert!(text.contains(&format!("127.0.0.1:{} {}", w.port, &v1[..12])), "{text}");
    }
}

/// A host whose grants refuse the new version (it asks to consume a stream
/// that host does not grant) keeps its own, says why beside the record, and
/// does not try again: the other hosts run the new version, nothing flaps.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_one_host_refuses_is_reported_and_nothing_flaps() {
    let a = Wharf::start_with(host(None)).await;
    // B's operator grants `versioned` nothing: v2's subscription is refused there.
    let strict = Options { toml: "[components.versioned.grants]\n".into(), ..host(Some(a.redis.borrow())) };
    let b = Wharf::start_with(strict).await;
    let c = Wharf::start_with(host(Some(a.redis.borrow()))).await;
    until_all_serve(&[&a, &b, &c], "v1", Duration::from_secs(1)).await;

    deploy_to(&a, "versioned-v2", &[&a, &c], "v2").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let (_, all) = admin(&a, "GET", "/admin/components").await;
        let entry = all.as_array().unwrap().iter().find(|c| c["name"] == "versioned").unwrap().clone();
        if entry["fleet"]["failed"].as_object().is_some_and(|f| !f.is_empty()) {
            break entry;
        }
        assert!(Instant::now() < deadline, "no failure reported: {entry}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reasons: Vec<&str> =
        failed["fleet"]["failed"].as_object().unwrap().values().filter_map(Value::as_str).collect();
    assert_eq!(reasons.len(), 1, "{failed}");
    assert!(reasons[0].contains("versioned_events") && reasons[0].contains("grants"), "{failed}");
    assert_eq!(failed["fleet"]["converged"], false, "{failed}");
    // Past two re-reads of the records: B still serves v1 and tried once.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(serving(&b).await, "v1");
    let tries = b.logs().matches("cannot run the fleet's version").count();
    assert_eq!(tries, 1, "{}", crate::harness::tail(&b.logs(), 20));
    until_all_serve(&[&a, &c], "v2", Duration::from_secs(1)).await;
}

/// Deploys through one host after another while clients load all three:
/// every answer is 200 from one version or the other, none fails.
#[tokio::test(flavor = "multi_thread")]
async fn swaps_on_every_host_under_load_fail_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let a = Wharf::start_with(host(None)).await;
    let b = Wharf::start_with(host(Some(a.redis.borrow()))).await;
    let c = Wharf::start_with(host(Some(a.redis.borrow()))).await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = [a.port, b.port, c.port]
        .into_iter()
        .cycle()
        .take(9)
        .map(|port| crate::harness::load(port, "/version", stop.clone()))
        .collect();
    let hosts = [&a, &b, &c];
    for round in 0..6 {
        let (file, version) = if round % 2 == 0 { ("versioned-v2", "v2") } else { ("versioned-v1", "v1") };
        deploy_to(hosts[round % 3], file, &hosts, version).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total: std::collections::HashMap<String, usize> = Default::default();
    for c in clients {
        for (k, n) in c.await.unwrap() {
            *total.entry(k).or_default() += n;
        }
    }
    let (v1, v2) = (serde_json::json!({"version": "v1"}).to_string(), serde_json::json!({"version": "v2"}).to_string());
    let unexpected: Vec<_> = total.iter().filter(|(k, _)| **k != v1 && **k != v2).collect();
    assert!(unexpected.is_empty(), "answers other than v1/v2: {unexpected:?}");
    let answered: usize = total.values().sum();
    eprintln!("{answered} requests over three hosts through six fleet swaps: {total:?}");
    assert!(total.get(&v1).is_some_and(|n| *n > 0) && total.get(&v2).is_some_and(|n| *n > 0), "{total:?}");
}

/// What wins at start-up, the configured file or the fleet's record: a
/// developer's rebuilt file serves, and the fleet follows it; a host whose
/// file did not change since it loaded it (a stale host) takes the fleet's
/// version instead of reverting the others.
#[tokio::test(flavor = "multi_thread")]
async fn a_rebuilt_file_leads_the_fleet_and_a_stale_one_follows_it() {
    let a = Wharf::start_with(host(None)).await;
    // B serves `versioned` from a file of its own, which the test rewrites.
    let dir = crate::harness::scratch_dir("fleet-file");
    let file = dir.join("versioned.wasm");
    std::fs::copy(crate::harness::wasm_dir().join("versioned-v1.wasm"), &file).unwrap();
    let config = dir.join("wharf.toml");
    std::fs::write(&config, format!("[components.versioned]\nwasm = {file:?}\n")).unwrap();
    let own = Options { config: Some(config), ..host(Some(a.redis.borrow())) };
    let mut b = Wharf::start_with(own).await;
    until_all_serve(&[&a, &b], "v1", Duration::from_secs(1)).await;

    // The developer rebuilds B's file and starts B again: it serves the
    // rebuild, and so does A.
    std::fs::copy(crate::harness::wasm_dir().join("versioned-v2.wasm"), &file).unwrap();
    b.crash_and_restart().await;
    assert_eq!(serving(&b).await, "v2", "{}", crate::harness::tail(&b.logs(), 20));
    until_all_serve(&[&a, &b], "v2", Duration::from_secs(2)).await;

    // An operator goes back to v1 through A; B restarts with its file
    // unchanged (still v2): B follows the fleet, A keeps v1.
    deploy_to(&a, "versioned-v1", &[&a, &b], "v1").await;
    b.crash_and_restart().await;
    assert_eq!(serving(&b).await, "v1", "a stale file reverted its host");
    assert!(b.logs().contains("serving the fleet's recorded version"), "{}", crate::harness::tail(&b.logs(), 20));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(serving(&a).await, "v1", "a stale file reverted the fleet");
}

/// Asks every host in turn for `/version` until `stop`: what each host
/// answered, as (port, status, version or error code).
fn ask_each(
    hosts: &[&Wharf],
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(u16, u16, String)>> {
    let ports: Vec<u16> = hosts.iter().map(|w| w.port).collect();
    tokio::spawn(async move {
        let clients: Vec<_> = ports.iter().map(|p| (*p, crate::harness::Client::new(*p))).collect();
        let mut seen = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for (port, client) in &clients {
                let r = client.send("GET", "/version", &[], Vec::new()).await.unwrap();
                let v = r.json();
                let what = v["version"].as_str().or(v["error"]["code"].as_str()).unwrap_or("?").to_string();
                seen.push((*port, r.status, what));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen
    })
}

/// `wharf deploy --canary 30% --wait`: a build that answers 500 serves its
/// share on every host, is rolled back by the fleet itself well before its
/// window ends, and the record says why with the errors it cost, no more
/// than the clients saw. Then only the current version answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_canary_is_rolled_back_by_itself_with_its_errors_counted() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let a = Wharf::start_with(host(None)).await;
    let b = Wharf::start_with(host(Some(a.redis.borrow()))).await;
    let c = Wharf::start_with(host(Some(a.redis.borrow()))).await;
    until_all_serve(&[&a, &b, &c], "v1", Duration::from_secs(1)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let asking = ask_each(&[&a, &b, &c], stop.clone());
    let failing = crate::harness::wasm_dir().join("versioned-failing.wasm");
    let url = b.url();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["deploy", "versioned", failing.to_str().unwrap(), "--canary", "30%", "--window", "60", "--wait"])
            .env("WHARF_URL", url)
            .env("WHARF_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let decided = started.elapsed();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && text.contains("canary rolled back: more errors"), "{text}");
    assert!(decided < Duration::from_secs(30), "rolled back after {decided:?}, not before its 60 s window");
    eprintln!("the failing canary was rolled back after {decided:?}");
    // Every host drops it within a second or two: then only v1 answers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = asking.await.unwrap();
    let failed: Vec<&(u16, u16, String)> = seen.iter().filter(|(_, s, _)| *s == 500).collect();
    assert!(
        seen.iter().all(|(_, s, what)| (*s, what.as_str()) == (200, "v1") || (*s, what.as_str()) == (500, "internal")),
        "{seen:?}"
    );
    for w in [&a, &b, &c] {
        assert!(failed.iter().any(|(port, _, _)| *port == w.port), "the canary served on every host, {} too", w.port);
    }
    for _ in 0..30 {
        for w in [&a, &b, &c] {
            assert_eq!(serving(w).await, "v1", "the canary still answers after its rollback");
        }
    }
    let (_, all) = admin(&a, "GET", "/admin/components").await;
    let fleet = all.as_array().unwrap().iter().find(|c| c["name"] == "versioned").unwrap()["fleet"].clone();
    let verdict = &fleet["last_canary"];
    assert_eq!((&verdict["decision"], &fleet["canary"]), (&Value::from("rollback"), &Value::Null), "{fleet}");
    let errors: u64 = verdict["errors"].as_str().unwrap().parse().unwrap();
    assert!(verdict["why"].as_str().unwrap().contains(&format!("{errors} errors in {errors} answers")), "{verdict}");
    assert!((20..=failed.len() as u64).contains(&errors), "{errors} counted, {} seen by the clients", failed.len());
    // The record still names the current version, which every host runs.
    converged(&a, fleet["desired"]["version"].as_str().unwrap(), 3).await;
}

/// A healthy canary (v3) takes its share on both hosts, and once its
/// window is over the fleet promotes it: every host then serves only v3,
/// and it is the record's version.
#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_canary_is_promoted_after_its_window() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let a = Wharf::start_with(host(None)).await;
    let b = Wharf::start_with(host(Some(a.redis.borrow()))).await;
    until_all_serve(&[&a, &b], "v1", Duration::from_secs(1)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let asking = ask_each(&[&a, &b], stop.clone());
    let wasm = std::fs::read(crate::harness::wasm_dir().join("versioned-v3.wasm")).unwrap();
    let auth = format!("Bearer {TOKEN}");
    let path = "/admin/components/versioned?canary=50%25&window_ms=3000";
    let r = a.send("PUT", path, &[("authorization", &auth)], wasm).await.unwrap();
    let started = r.json();
    assert_eq!(r.status, 200, "{started}");
    let v3 = started["canary"].as_str().unwrap().to_string();
    let since = Instant::now();
    let view = converged(&b, &v3, 2).await;
    let took = since.elapsed();
    stop.store(true, Ordering::Relaxed);
    let seen = asking.await.unwrap();
    assert!(seen.iter().all(|(_, s, _)| *s == 200), "{seen:?}");
    for w in [&a, &b] {
        let v3_here = seen.iter().filter(|(p, _, v)| *p == w.port && v == "v3").count();
        assert!(v3_here > 0, "the canary took its share on {} too", w.port);
    }
    eprintln!("the healthy canary was promoted on every host {took:?} after it started (3 s window)");
    assert!(took >= Duration::from_millis(2900), "promoted before its window ended");
    assert_eq!(view["fleet"]["last_canary"]["decision"], "promote", "{view}");
    assert!(view["fleet"]["canary"].is_null(), "{view}");
    for _ in 0..20 {
        for w in [&a, &b] {
            assert_eq!(serving(w).await, "v3");
        }
    }
}
