//! The component sandbox: what `[components.<name>.grants]` allows and
//! nothing more. A hostile component (`components/hostile`) tries to read
//! another component's keys, escape its namespace, publish to streams and
//! call components it was not granted, read the environment, files and
//! network, and exhaust memory and time. Each attempt is refused, the host
//! logs and counts it, and keeps serving everyone else.

use std::time::{Duration, Instant};

use crate::harness::{Options, Wharf};
use serde_json::{Value, json};

const TOKEN: &str = "sandbox-admin-token-0123456789abcdef";
const SETTLE: Duration = Duration::from_secs(20);

/// inventory and payment under their shipped grants, plus `hostile` granted
/// only its own stream, 8 MiB and 300 ms.
async fn host_with_hostile() -> Wharf {
    Wharf::start_with(Options {
        components: vec!["inventory", "payment", "hostile"],
        toml: "[components.hostile.grants]\npublish = [\"hostile_events\"]\nmemory_bytes = 8388608\ntimeout_ms = 300\n"
            .into(),
        env: vec![
            ("WHARF_ADMIN_TOKEN".into(), TOKEN.into()),
            // A secret in the host's environment that no component may see.
            ("DATABASE_PASSWORD".into(), "a-secret-no-component-may-read".into()),
        ],
        ..Default::default()
    })
    .await
}

async fn attempt(w: &Wharf, path: &str) -> (u16, Value) {
    let r = w.send("GET", path, &[], Vec::new()).await.expect("the host answers");
    let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, body)
}

fn refusals(page: &str, capability: &str) -> f64 {
    let series = format!("wharf_sandbox_refusals_total{{component=\"hostile\",capability=\"{capability}\"}} ");
    page.lines().find_map(|l| l.strip_prefix(&series)).map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_component_is_refused_everything_it_was_not_granted() {
    let w = host_with_hostile().await;
    let product = w.create_product("Target", 2.5, 10).await;
    let (_, order) = w.order(&product, 3).await;
    let order = order["id"].as_str().unwrap().to_string();
    w.wait_events_handled(SETTLE).await;
    assert!(!w.logs().contains("wharf::sandbox"), "well-behaved components are never refused:\n{}", w.logs());
    let orders_before: i64 = redis::cmd("XLEN").arg("wharf:stream:{order_stream}").query(&mut w.redis.conn()).unwrap();

    let attacks = [
        format!("/hostile/read-other?id={order}"),
        "/hostile/crafted-keys".to_string(),
        "/hostile/write-many-escape".to_string(),
        format!("/hostile/publish?id={order}&product={product}"),
        "/hostile/publish-later".to_string(),
        "/hostile/publish-with-write".to_string(),
        "/hostile/call".to_string(),
        "/hostile/env".to_string(),
        "/hostile/files".to_string(),
        format!("/hostile/network?port={}", w.redis.port),
    ];
    for path in &attacks {
        let (status, v) = attempt(&w, path).await;
        assert_eq!(status, 200, "{path}: {v}");
        assert_eq!(v["refused"], true, "{path} got through: {v}");
    }

    // Memory and time: cut off, answered with a JSON error, and the next request is fine.
    let (status, v) = attempt(&w, "/hostile/memory").await;
    assert_eq!((status, v["error"]["code"].as_str()), (500, Some("component_failed")), "{v}");
    let started = Instant::now();
    let (status, v) = attempt(&w, "/hostile/spin").await;
    assert_eq!(status, 504, "{v}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "its 300 ms grant, not the host's 2 s: {:?}",
        started.elapsed()
    );

    // Nothing changed: payment's order, the stock, the order stream.
    w.wait_events_handled(SETTLE).await;
    assert_eq!(w.order_status(&order).await, "completed");
    assert_eq!(w.stock(&product).await, 7);
    let orders_after: i64 = redis::cmd("XLEN").arg("wharf:stream:{order_stream}").query(&mut w.redis.conn()).unwrap();
    assert_eq!(orders_after, orders_before);
    let crafted = crate::harness::keys(&mut w.redis.conn(), "*pwned*");
    assert!(crafted.is_empty(), "{crafted:?}");
    let hostile_keys = crate::harness::keys(&mut w.redis.conn(), "wharf:{hostile*");
    assert!(hostile_keys.is_empty(), "no crafted key was written anywhere: {hostile_keys:?}");

    // A key whose partition is named like another namespace is written,
    // into one of its own namespace's shards: payment's order is untouched.
    let (status, v) = attempt(&w, "/hostile/partition-named-payment").await;
    assert_eq!((status, &v["detail"]), (200, &json!("written")), "{v}");
    let landed = crate::harness::keys(&mut w.redis.conn(), "wharf:{hostile*:kv:*");
    assert_eq!(landed.len(), 1, "{landed:?}");
    assert!(landed[0].starts_with("wharf:{hostile:") && landed[0].ends_with("}:kv:{payment}:kv:order:x"), "{landed:?}");
    assert!(crate::harness::keys(&mut w.redis.conn(), "wharf:{payment}:kv:order:x").is_empty());

    // Logged and counted, one line per refusal, with the component's name.
    let logs = w.logs();
    for capability in ["key", "publish", "call", "memory", "files", "network"] {
        assert!(
            logs.lines().any(|l| l.contains("wharf::sandbox") && l.contains("hostile") && l.contains(capability)),
            "no {capability} refusal logged:\n{}",
            crate::harness::tail(&logs, 40)
        );
    }
    let page = String::from_utf8(w.send("GET", "/metrics", &[], Vec::new()).await.unwrap().body).unwrap();
    // Six crafted keys one by one, and a write-many over two partitions.
    assert_eq!(refusals(&page, "key"), 7.0, "{page}");
    assert_eq!(refusals(&page, "publish"), 3.0);
    assert_eq!(refusals(&page, "call"), 1.0);
    assert!(refusals(&page, "memory") >= 1.0);
    for capability in ["files", "network"] {
        assert!(refusals(&page, capability) >= 1.0, "{capability}: {page}");
    }
    assert!(logs.contains("the limit is 8388608"), "the grant's 8 MiB, not the host's 64 MiB, stopped it");
    // The secrets in the host's environment never reached a log line either.
    assert!(!logs.contains("a-secret-no-component-may-read"));

    // And the host is healthy: everyone else is served.
    assert_eq!(w.send("GET", "/readyz", &[], Vec::new()).await.unwrap().status, 200);
    let (status, v) = attempt(&w, &format!("/products/{product}")).await;
    assert_eq!((status, v["quantity"].as_i64()), (200, Some(7)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_asking_for_ungranted_streams_is_not_loaded() {
    let w = host_with_hostile().await;
    let r = w.deploy("hostile", "hostile-greedy", TOKEN).await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("order_stream") && message.contains("grants"), "{message}");
    // The granted version keeps serving.
    let (status, v) = attempt(&w, "/hostile/env").await;
    assert_eq!((status, &v["refused"]), (200, &json!(true)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_cannot_join_another_components_consumer_group() {
    let w = Wharf::start_with(Options {
        components: vec!["inventory", "payment", "hostile"],
        toml: "[components.hostile.grants]\npublish = [\"hostile_events\"]\nconsume = [\"order_stream\"]\n".into(),
        env: vec![("WHARF_ADMIN_TOKEN".into(), TOKEN.into())],
        ..Default::default()
    })
    .await;
    // Granted the stream, it still may not read it in payment's group.
    let r = w.deploy("hostile", "hostile-poacher", TOKEN).await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("payment-refunds"), "{message}");
}

/// With `require_grants`, a component uploaded under a name the
/// configuration does not grant gets nothing: its manifest's streams are refused.
#[tokio::test(flavor = "multi_thread")]
async fn with_require_grants_an_ungranted_upload_gets_nothing() {
    let w = Wharf::start_with(Options {
        components: vec!["inventory", "payment"],
        env: vec![("WHARF_ADMIN_TOKEN".into(), TOKEN.into()), ("WHARF_REQUIRE_GRANTS".into(), "true".into())],
        ..Default::default()
    })
    .await;
    let r = w.deploy("hostile", "hostile", TOKEN).await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("hostile_events"));
    // The granted components are unaffected.
    let id = w.create_product("Still served", 1.0, 1).await;
    assert_eq!(w.stock(&id).await, 1);
}

/// Without grants a component gets what its manifest declares, so the greedy
/// build may publish on `order_stream`. Its forged refund then fails at the
/// consumers, which believe only events whose host-stamped origin is payment.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_business_event_is_dead_lettered_by_its_consumers() {
    let w = Wharf::start_with(Options {
        components: vec!["inventory", "payment", "analytics", "hostile=hostile-greedy"],
        ..Default::default()
    })
    .await;
    assert!(w.logs().contains("no [components.hostile.grants]"), "the host warns about the ungoverned component");
    let product = w.create_product("Target", 1.0, 10).await;
    let (_, order) = w.order(&product, 4).await;
    let order = order["id"].as_str().unwrap().to_string();
    w.wait_order_status(&order, "completed", SETTLE).await;
    w.wait_events_handled(SETTLE).await;
    assert_eq!(w.stock(&product).await, 6);

    let (status, v) = w.call("GET", &format!("/hostile/publish?id={order}&product={product}"), None).await;
    assert_eq!((status, &v["refused"]), (200, &json!(false)), "without grants the publish goes out: {v}");
    w.wait_events_handled(SETTLE).await;

    // The order is still completed, no stock came back, and each consumer
    // group dead-lettered the forgery with its origin in the reason.
    assert_eq!(w.order_status(&order).await, "completed");
    assert_eq!(w.stock(&product).await, 6);
    assert_eq!(w.dead_letters("order_stream"), 3, "inventory, payment and analytics each refused it");
    let dead: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg("wharf:stream:{order_stream}:dead")
        .arg("-")
        .arg("+")
        .query(&mut w.redis.conn())
        .unwrap();
    assert!(dead.iter().all(|d| d.1["error"].contains("came from hostile") && d.1["origin"] == "hostile"), "{dead:?}");
}

/// An outbox write publishes its event once, however often the key is
/// written, and an entry Redis will not append (its stream key is not a
/// stream) waits in the outbox until it can be appended, instead of being
/// lost.
#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_entry_is_published_once_and_waits_out_redis_errors() {
    let w = host_with_hostile().await;
    let mut c = w.redis.conn();
    let stream = "wharf:stream:{hostile_events}";
    let outbox = "wharf:{hostile}:outbox";
    let _: () = redis::cmd("SET").arg(stream).arg("not a stream").query(&mut c).unwrap();

    let (status, v) = attempt(&w, "/hostile/outbox-twice").await;
    assert_eq!((status, &v["refused"]), (200, &json!(true)), "{v}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !w.logs().contains("publishing an outbox entry failed") {
        assert!(Instant::now() < deadline, "the append never failed:\n{}", crate::harness::tail(&w.logs(), 20));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waiting: i64 = redis::cmd("ZCARD").arg(outbox).query(&mut c).unwrap();
    assert_eq!(waiting, 1, "one entry for two writes of one key, kept after the failure");
    assert!(w.counter("wharf_outbox_failures_total").await > 0);

    let _: () = redis::cmd("DEL").arg(stream).query(&mut c).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis::cmd("ZCARD").arg(outbox).query::<i64>(&mut c).unwrap() > 0 {
        assert!(Instant::now() < deadline, "the entry never left the outbox");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let published: i64 = redis::cmd("XLEN").arg(stream).query(&mut c).unwrap();
    assert_eq!(published, 1);
    assert_eq!(w.counter("wharf_outbox_published_total").await, 1);
    let auth = format!("Bearer {TOKEN}");
    let r = w.send("GET", "/admin/streams", &[("authorization", &auth)], Vec::new()).await.unwrap();
    assert_eq!((r.status, &r.json()["outboxes"]["hostile"]), (200, &json!(0)), "{:?}", r.json());
}

/// `batch.write-many`: each write answers as its own function would (a
/// key already present, a `once` marker already there, an increment out of
/// range skip that write only), a batch that both sets and increments one
/// key is refused whole, one counter incremented twice (or after its delete)
/// in a batch sees each step, and the writes land in the caller's
/// namespace, indexed for listing unless they expire.
#[tokio::test(flavor = "multi_thread")]
async fn write_many_answers_as_each_write_would_in_one_step() {
    let w = host_with_hostile().await;
    let (status, v) = attempt(&w, "/hostile/write-many-outcomes").await;
    assert_eq!((status, &v["refused"]), (200, &json!(true)), "{v}");
    let mut c = w.redis.conn();
    let indexed: Vec<String> = redis::cmd("ZRANGE").arg("wharf:{hostile}:index").arg(0).arg(-1).query(&mut c).unwrap();
    // `wm:c` was deleted and written again; `wm:ttl-set` lost its expiry.
    for key in ["wm:a", "wm:b", "wm:n", "wm:once", "wm:c", "wm:ttl-set"] {
        assert!(indexed.iter().any(|k| k == key), "{key} not indexed: {indexed:?}");
    }
    // Incremented, but it still expires: not listed.
    assert!(!indexed.iter().any(|k| k == "wm:ttl-n"), "an expiring counter is listed: {indexed:?}");
    let n: Option<String> = redis::cmd("HGET").arg("wharf:{hostile}:kv:wm:n").arg("v").query(&mut c).unwrap();
    assert_eq!(n.as_deref(), Some("5"));
}
