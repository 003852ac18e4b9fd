//! The order flow through Redis Streams: settle, take stock, refund, and the
//! stock invariant under concurrency and redelivery.

use std::collections::HashMap;
use std::time::Duration;

use crate::harness::layout;
use crate::harness::{Rng, Wharf};
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn paid_order_takes_stock_and_short_stock_refunds() {
    let w = Wharf::start().await;
    let id = w.create_product("Lamp", 12.5, 5).await;
    let (_, ok) = w.order(&id, 3).await;
    w.wait_events_handled(SETTLE).await;
    let (_, short) = w.order(&id, 3).await;
    w.wait_events_handled(SETTLE).await;
    assert_eq!(w.order_status(ok["id"].as_str().unwrap()).await, "completed");
    assert_eq!(w.order_status(short["id"].as_str().unwrap()).await, "refunded");
    assert_eq!(w.stock(&id).await, 2);
    assert_eq!(w.dead_letters("order_completed"), 0);

    // A product deleted before its order settles: refunded, not an error.
    let gone = w.create_product("Ghost", 1.0, 5).await;
    let (_, o) = w.order(&gone, 1).await;
    w.call("DELETE", &format!("/products/{gone}"), None).await;
    w.wait_events_handled(SETTLE).await;
    let status = w.order_status(o["id"].as_str().unwrap()).await;
    // It may have settled before the delete: either way it is final and consistent.
    assert!(status == "refunded" || status == "completed", "{status}");
}

/// Payment prices orders from its own copy of the prices, which
/// `product_changed` keeps current: a new price reaches the next orders, a
/// late, repeated or forged announcement never changes it, and a deleted
/// product cannot be ordered.
#[tokio::test(flavor = "multi_thread")]
async fn orders_follow_price_changes_and_deletions() {
    let w = Wharf::start().await;
    let id = w.create_product("Kettle", 10.0, 100).await;
    let (s, o) = w.order(&id, 1).await;
    assert_eq!((s, o["price"].as_f64()), (201, Some(10.0)), "{o}");

    let (s, _) = w.call("PATCH", &format!("/products/{id}"), Some(json!({"price": 12.5}))).await;
    assert_eq!(s, 200);
    w.wait_events_handled(SETTLE).await;
    let (_, o) = w.order(&id, 2).await;
    assert_eq!((o["price"].as_f64(), o["total"].as_f64()), (Some(12.5), Some(30.0)), "{o}");

    // Version 1 again, as a late or repeated delivery would bring it.
    let stale = json!({"id": id, "version": 1, "name": "Kettle", "price": 10.0}).to_string();
    w.publish_raw("product_changed", &stale, "inventory");
    // A newer version, but not from inventory.
    let forged = json!({"id": id, "version": 99, "name": "Kettle", "price": 0.01}).to_string();
    w.publish_raw("product_changed", &forged, "payment");
    w.wait_events_handled(SETTLE).await;
    let (_, o) = w.order(&id, 1).await;
    assert_eq!(o["price"].as_f64(), Some(12.5), "{o}");
    assert_eq!(w.dead_letters("product_changed"), 1, "the forged announcement is dead-lettered");

    let (s, _) = w.call("DELETE", &format!("/products/{id}"), None).await;
    assert_eq!(s, 204);
    w.wait_events_handled(SETTLE).await;
    let (s, e) = w.order(&id, 1).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")), "{e}");
}

/// A product's name or price change and its deletion are announced in the
/// same atomic step as the write, and nothing else is: not a stock change,
/// nor a write that did not happen.
#[tokio::test(flavor = "multi_thread")]
async fn product_changes_are_announced_with_their_writes_only() {
    let w = Wharf::start().await;
    let id = w.create_product("Mug", 3.0, 5).await;
    let path = format!("/products/{id}");
    assert_eq!(w.call("PATCH", &path, Some(json!({"quantity": 9}))).await.0, 200);
    assert_eq!(w.call("PATCH", &path, Some(json!({"price": 4}))).await.0, 200);
    assert_eq!(w.call("PATCH", &path, Some(json!({"price": 0.001}))).await.0, 422);
    assert_eq!(w.call("DELETE", &path, None).await.0, 204);
    assert_eq!(w.call("DELETE", &path, None).await.0, 404);
    assert_eq!(w.call("PATCH", &path, Some(json!({"price": 5}))).await.0, 404);
    w.wait_events_handled(SETTLE).await;

    let announced = announcements(&w);
    assert_eq!(
        announced,
        vec![
            json!({"id": id, "version": 1, "name": "Mug", "price": 3}),
            json!({"id": id, "version": 2, "name": "Mug", "price": 4}),
            json!({"id": id, "deleted": true}),
        ]
    );
}

/// Every `product_changed` payload so far, in stream order (partition by
/// partition: one product's are in one), checking each came from
/// inventory. One host's outbox publishes in write order.
fn announcements(w: &Wharf) -> Vec<serde_json::Value> {
    let entries: Vec<(String, HashMap<String, String>)> = w.entries("product_changed", "");
    entries
        .iter()
        .map(|(_, fields)| {
            assert_eq!(fields["origin"], "inventory");
            serde_json::from_str(&fields["payload"]).unwrap()
        })
        .collect()
}

/// Concurrent price changes: each one that succeeded is announced once,
/// with the version it wrote, in the order they were written, and the last
/// one is the price kept.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_price_changes_are_announced_once_each_in_version_order() {
    let w = Wharf::start().await;
    let id = w.create_product("Vase", 1.0, 1).await;
    let path = format!("/products/{id}");
    let answers = futures_join(8, |i| w.call("PATCH", &path, Some(json!({"price": 2 + i})))).await;
    let changed = answers.iter().filter(|(s, _)| *s == 200).count();
    assert!(changed >= 1 && answers.iter().all(|(s, _)| *s == 200 || *s == 409), "{answers:?}");
    w.wait_events_handled(SETTLE).await;

    let announced = announcements(&w);
    let versions: Vec<u64> = announced.iter().map(|a| a["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, (1..=1 + changed as u64).collect::<Vec<_>>(), "{announced:?}");
    let (_, now) = w.call("GET", &path, None).await;
    assert_eq!(announced.last().unwrap()["price"], now["price"]);
    let (_, o) = w.order(&id, 1).await;
    assert_eq!(o["price"], now["price"], "orders take the price that was kept");
}

/// A product payment holds no copy of (created before payment subscribed,
/// say) is asked of inventory, and the answer is remembered at inventory's
/// version; an id nobody created leaves nothing behind.
#[tokio::test(flavor = "multi_thread")]
async fn a_product_payment_has_no_copy_of_is_asked_of_inventory_once() {
    let w = Wharf::start().await;
    let id = w.create_product("Lens", 7.5, 10).await;
    assert_eq!(w.call("PATCH", &format!("/products/{id}"), Some(json!({"name": "Wide lens"}))).await.0, 200);
    w.wait_events_handled(SETTLE).await;
    let key = layout::kv_key("payment", &format!("price:{{{id}}}"));
    let copy = |c: &mut crate::harness::Conn| -> Option<serde_json::Value> {
        let raw: Option<String> = redis::cmd("HGET").arg(&key).arg("v").query(c).unwrap();
        raw.map(|r| serde_json::from_str(&r).unwrap())
    };
    let mut c = w.redis.conn();
    assert_eq!(copy(&mut c).unwrap()["version"], 2, "the announcements left version 2");
    let _: () = redis::cmd("DEL").arg(&key).query(&mut c).unwrap();

    let (s, o) = w.order(&id, 2).await;
    assert_eq!((s, o["price"].as_f64(), o["total"].as_f64()), (201, Some(7.5), Some(18.0)), "{o}");
    let fresh = w.send("GET", &format!("/products/{id}"), &[("cache-control", "no-cache")], vec![]).await.unwrap();
    let version: u64 = fresh.headers["x-product-version"].to_str().unwrap().parse().unwrap();
    assert_eq!(version, 2);
    let remembered = copy(&mut c).expect("the answer is remembered");
    assert_eq!((remembered["version"].as_u64(), remembered["price"].as_f64()), (Some(version), Some(7.5)));

    let guess = "01M8D1N5DW74RAMYRXKVZRV1TZ";
    let (s, e) = w.order(guess, 1).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")));
    let guessed = layout::kv_key("payment", &format!("price:{{{guess}}}"));
    let left: bool = redis::cmd("EXISTS").arg(guessed).query(&mut c).unwrap();
    assert!(!left, "a guessed id is not remembered");
}

/// Two hosts share one Redis and one consumer group: whichever handles a
/// price announcement, orders on both take the new price, since Redis
/// invalidates the other host's cached copy.
#[tokio::test(flavor = "multi_thread")]
async fn a_price_change_reaches_orders_on_every_host() {
    let a = Wharf::start().await;
    let b = Wharf::start_with(crate::harness::Options { redis: Some(a.redis.borrow()), ..Default::default() }).await;
    let id = a.create_product("Shared", 5.0, 1000).await;
    a.wait_events_handled(SETTLE).await;
    // Both hosts read the copy, so both cache it.
    for w in [&a, &b] {
        for _ in 0..3 {
            let (s, o) = w.order(&id, 1).await;
            assert_eq!((s, o["price"].as_f64()), (201, Some(5.0)), "{o}");
        }
    }
    for round in 1..=5 {
        let price = 5.0 + round as f64;
        assert_eq!(a.call("PATCH", &format!("/products/{id}"), Some(json!({"price": price}))).await.0, 200);
        a.wait_events_handled(SETTLE).await;
        for w in [&a, &b] {
            // Redis's invalidation may trail the handled announcement by a moment.
            let start = std::time::Instant::now();
            loop {
                let (_, o) = w.order(&id, 1).await;
                if o["price"].as_f64() == Some(price) {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(2), "round {round}: a host still prices {o}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// A price written, or a product deleted, without an announcement (as an
/// inventory build from before announcements would, after a rollback)
/// reaches orders once payment's copy has gone unconfirmed for
/// `price_max_age_ms`.
#[tokio::test(flavor = "multi_thread")]
async fn a_price_changed_without_an_announcement_is_caught_by_age() {
    let w = Wharf::start_with(crate::harness::Options {
        env: vec![("WHARF_PAYMENT_PRICE_MAX_AGE_MS".into(), "2000".into())],
        ..Default::default()
    })
    .await;
    let id = w.create_product("Scale", 10.0, 100).await;
    w.wait_events_handled(SETTLE).await;
    let (_, o) = w.order(&id, 1).await;
    assert_eq!(o["price"].as_f64(), Some(10.0), "{o}");

    let key = layout::kv_key("inventory", &format!("product:{{{id}}}"));
    let mut c = w.redis.conn();
    let stored: String = redis::cmd("HGET").arg(&key).arg("v").query(&mut c).unwrap();
    let mut product: serde_json::Value = serde_json::from_str(&stored).unwrap();
    product["price"] = json!(11);
    // One step, as a component's write is (a script: a cluster has no MULTI across connections).
    let _: () = redis::cmd("EVAL")
        .arg("redis.call('HSET', KEYS[1], 'v', ARGV[1]); redis.call('HINCRBY', KEYS[1], 'ver', 1)")
        .arg(1)
        .arg(&key)
        .arg(product.to_string())
        .query(&mut c)
        .unwrap();
    let (_, o) = w.order(&id, 1).await;
    assert_eq!(o["price"].as_f64(), Some(10.0), "the copy is still trusted: {o}");

    tokio::time::sleep(Duration::from_millis(2300)).await;
    let (_, o) = w.order(&id, 1).await;
    assert_eq!(o["price"].as_f64(), Some(11.0), "an unconfirmed copy is asked again: {o}");
    assert!(announcements(&w).iter().all(|a| a["price"] != json!(11)), "nothing announced it");

    // Deleted without an announcement: caught the same way, and remembered.
    let _: () = redis::cmd("DEL").arg(&key).query(&mut c).unwrap();
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let (s, e) = w.order(&id, 1).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")), "{e}");
    let copy: String =
        redis::cmd("HGET").arg(layout::kv_key("payment", &format!("price:{{{id}}}"))).arg("v").query(&mut c).unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&copy).unwrap()["price"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn customer_refund_gives_stock_back_once() {
    let w = Wharf::start().await;
    let id = w.create_product("Chair", 40.0, 10).await;
    let (_, o) = w.order(&id, 4).await;
    let oid = o["id"].as_str().unwrap().to_string();
    w.wait_events_handled(SETTLE).await;
    assert_eq!(w.stock(&id).await, 6);

    let (s, body) = w.call("POST", &format!("/orders/{oid}/refund"), None).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["status"], "refunded");
    let (s, e) = w.call("POST", &format!("/orders/{oid}/refund"), None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("already_refunded")));
    w.wait_events_handled(SETTLE).await;
    assert_eq!(w.stock(&id).await, 10);

    // Replaying the refund message does not give the stock back twice.
    let msg = json!({"type": "refund_requested", "id": oid, "product_id": id, "quantity": 4}).to_string();
    for _ in 0..3 {
        w.publish_raw("order_stream", &msg, "payment");
    }
    w.wait_events_handled(SETTLE).await;
    assert_eq!(w.stock(&id).await, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn refund_of_a_pending_order_is_a_conflict() {
    let w = Wharf::start_with(crate::harness::Options {
        env: vec![("WHARF_PAYMENT_SETTLE_DELAY_MS".into(), "60000".into())],
        ..Default::default()
    })
    .await;
    let id = w.create_product("Slow", 1.0, 1).await;
    let (_, o) = w.order(&id, 1).await;
    let order = o["id"].as_str().unwrap();
    let (s, e) = w.call("POST", &format!("/orders/{order}/refund"), None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("not_completed")));
    // The settle event waits, durable, in Redis: in the outbox beside the order.
    let mut c = w.redis.conn();
    let outbox = layout::outbox("payment", &format!("order:{{{order}}}"));
    let due: i64 = redis::cmd("ZCARD").arg(outbox).query(&mut c).unwrap();
    assert_eq!(due, 1);
}

/// An order is stored with its settle event in one step (payment's
/// transactional outbox): the event waits beside the order until due, a
/// retried request adds none, and an entry published twice (a host that died
/// after publishing, before clearing it) still takes the stock once.
#[tokio::test(flavor = "multi_thread")]
async fn an_order_and_its_settle_event_are_one_step() {
    let w = Wharf::start_with(crate::harness::Options {
        env: vec![("WHARF_PAYMENT_SETTLE_DELAY_MS".into(), "60000".into())],
        ..Default::default()
    })
    .await;
    let product = w.create_product("Outbox", 4.0, 10).await;
    let key = [("idempotency-key", "outbox-1"), ("content-type", "application/json")];
    let body = serde_json::to_vec(&json!({"product_id": product, "quantity": 2})).unwrap();
    let first = w.send("POST", "/orders", &key, body.clone()).await.unwrap();
    assert_eq!(first.status, 201);
    let order = first.json()["id"].as_str().unwrap().to_string();
    let again = w.send("POST", "/orders", &key, body).await.unwrap();
    assert_eq!((again.status, again.json()["id"].as_str()), (201, Some(order.as_str())));

    let mut c = w.redis.conn();
    let outbox = &layout::outbox("payment", &format!("order:{{{order}}}"));
    let entries: Vec<(Vec<u8>, f64)> =
        redis::cmd("ZRANGE").arg(outbox).arg(0).arg(-1).arg("WITHSCORES").query(&mut c).unwrap();
    assert_eq!(entries.len(), 1, "one settle event for one order, however often it is asked for");
    let (entry, due) = &entries[0];
    let text = String::from_utf8_lossy(entry);
    // Its stream, with the route of the order's key (`stream_partition::route`).
    assert!(text.contains("\npayment_settle@") && text.contains("\npayment\n") && text.contains(&order), "{text}");
    assert!(*due > (now_ms() + 50_000) as f64, "due after the settle delay: {due}");
    let settle_len = |c: &mut crate::harness::Conn| -> i64 {
        w.stream_keys("payment_settle").iter().map(|k| redis::cmd("XLEN").arg(k).query::<i64>(c).unwrap()).sum()
    };
    assert_eq!(settle_len(&mut c), 0, "nothing published before it is due");
    assert_eq!(w.order_status(&order).await, "pending");

    // Due now: a host publishes it within a poll, and clears it.
    let _: () = redis::cmd("ZADD").arg(outbox).arg(0).arg(entry).query(&mut c).unwrap();
    w.wait_order_status(&order, "completed", SETTLE).await;
    w.wait_events_handled(SETTLE).await;
    assert_eq!(w.stock(&product).await, 8);
    let left: i64 = redis::cmd("ZCARD").arg(outbox).query(&mut c).unwrap();
    assert_eq!(left, 0);
    assert_eq!(settle_len(&mut c), 1);

    // The same entry again, as a host that died before clearing it leaves
    // it, and an entry no host wrote: published again, and dropped.
    let _: () = redis::cmd("ZADD").arg(outbox).arg(0).arg(entry).arg(0).arg("not an entry").query(&mut c).unwrap();
    let deadline = std::time::Instant::now() + SETTLE;
    while redis::cmd("ZCARD").arg(outbox).query::<i64>(&mut c).unwrap() > 0 {
        assert!(std::time::Instant::now() < deadline, "the outbox is never cleared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(settle_len(&mut c), 2);
    w.wait_events_handled(SETTLE).await;
    assert_eq!(w.stock(&product).await, 8, "the stock is taken once");
    assert_eq!(w.order_status(&order).await, "completed");
    assert!(w.logs().contains("dropping a malformed outbox entry"), "{}", crate::harness::tail(&w.logs(), 20));
}

/// An outbox write due at once: on a single Redis server its own script
/// appends the event, so the settle event is in its stream when the `201`
/// comes back, and no write of the flow (inventory's product with its
/// `product_changed`, payment's order with its settle event) made an outbox
/// entry: no outbox was ever numbered. On a cluster the stream is in
/// another slot, so the events wait in the outbox for the publisher, which
/// numbers them. Either way the stock is taken once.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_due_now_leaves_with_its_write_on_one_redis() {
    let w = Wharf::start().await;
    let on_cluster = w.redis.cluster.is_some();
    let product = w.create_product("Direct", 2.0, 5).await;
    let (status, o) = w.order(&product, 1).await;
    assert_eq!(status, 201, "{o}");
    let mut c = w.redis.conn();
    if !on_cluster {
        let appended: i64 = w
            .stream_keys("payment_settle")
            .iter()
            .map(|k| redis::cmd("XLEN").arg(k).query::<i64>(&mut c).unwrap())
            .sum();
        assert_eq!(appended, 1, "the settle event went out with the order, before the answer");
    }
    w.wait_order_status(o["id"].as_str().unwrap(), "completed", SETTLE).await;
    w.wait_events_handled(SETTLE).await;
    assert_eq!(w.stock(&product).await, 4);
    let numbered = crate::harness::keys(&mut c, "wharf:{*}:outbox:seq");
    assert_eq!(numbered.is_empty(), !on_cluster, "outboxes numbered: {numbered:?} (on a cluster: {on_cluster})");
    let published = w.counter("wharf_outbox_published_total").await;
    assert!(published >= 2, "product_changed and payment_settle, at least: {published}");
}

/// A server that enforces hash slots though the host does not use it as a
/// cluster (a one-primary cluster named by a plain `redis://` URL, as a
/// sharding proxy would present itself): the first write that would append
/// its event at once is refused (`CROSSSLOT`) before it runs; the host
/// writes it again through the outbox, and every later one too. Nothing is
/// lost and the flow completes.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_enforces_slots_gets_its_events_through_the_outbox() {
    let redis = crate::harness::TestRedis::start_cluster(1, 0);
    let port = redis.cluster.as_ref().unwrap().primaries()[0];
    let w = Wharf::start_with(crate::harness::Options {
        env: vec![("REDIS_URL".into(), format!("redis://127.0.0.1:{port}"))],
        redis: Some(redis),
        ..Default::default()
    })
    .await;
    let product = w.create_product("Slots", 2.0, 5).await;
    let (status, o) = w.order(&product, 1).await;
    assert_eq!(status, 201, "{o}");
    w.wait_order_status(o["id"].as_str().unwrap(), "completed", SETTLE).await;
    w.wait_events_handled(SETTLE).await;
    assert_eq!(w.stock(&product).await, 4);
    let logs = w.logs();
    assert_eq!(logs.matches("Redis enforces hash slots").count(), 1, "{}", crate::harness::tail(&logs, 20));
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_orders_never_oversell() {
    let w = Wharf::start().await;
    let id = w.create_product("Limited", 1.0, 20).await;
    let orders = futures_join(100, |_| w.order(&id, 1)).await;
    let ids: Vec<String> = orders
        .iter()
        .map(|(s, o)| {
            assert_eq!(*s, 201, "{o}");
            o["id"].as_str().unwrap().to_string()
        })
        .collect();
    w.wait_events_handled(SETTLE).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for oid in &ids {
        *counts.entry(w.order_status(oid).await).or_default() += 1;
    }
    assert_eq!(counts.get("completed"), Some(&20), "{counts:?}");
    assert_eq!(counts.get("refunded"), Some(&80), "{counts:?}");
    assert_eq!(w.stock(&id).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn random_orders_and_refunds_keep_the_stock_invariant() {
    let w = Wharf::start().await;
    let mut rng = Rng::seeded();
    let mut start = HashMap::new();
    for i in 0..5 {
        let q = rng.below(30) as i64;
        start.insert(w.create_product(&format!("p{i}"), 1.25, q).await, q);
    }
    let products: Vec<String> = start.keys().cloned().collect();
    let mut ids = Vec::new();
    for round in 0..6 {
        let picks: Vec<(String, i64)> =
            (0..25).map(|_| (products[rng.below(5) as usize].clone(), 1 + rng.below(5) as i64)).collect();
        let placed = futures_join(picks.len(), |i| w.order(&picks[i].0, picks[i].1)).await;
        for (s, o) in placed {
            assert_eq!(s, 201, "{o}");
            ids.push(o["id"].as_str().unwrap().to_string());
        }
        // Refund some orders while others are still flowing.
        if round % 2 == 1 {
            for oid in ids.iter().step_by(7) {
                let (s, _) = w.call("POST", &format!("/orders/{oid}/refund"), None).await;
                assert!([202, 409].contains(&s), "refund answered {s}");
            }
        }
    }
    w.wait_events_handled(SETTLE).await;
    let (_, orders) = w.call("GET", "/orders", None).await;
    let orders = orders.as_array().unwrap();
    assert_eq!(orders.len(), ids.len());
    let mut taken: HashMap<String, i64> = HashMap::new();
    for o in orders {
        match o["status"].as_str().unwrap() {
            "completed" => {
                *taken.entry(o["product_id"].as_str().unwrap().to_string()).or_default() +=
                    o["quantity"].as_i64().unwrap()
            }
            "refunded" => {}
            other => panic!("order ended {other}: {o}"),
        }
    }
    for (p, q0) in &start {
        let now = w.stock(p).await;
        assert!(now >= 0);
        assert_eq!(now, q0 - taken.get(p).copied().unwrap_or(0), "product {p}");
    }
    for s in ["order_completed", "refund_order", "order_stream", "payment_settle"] {
        assert_eq!(w.dead_letters(s), 0, "{s}");
    }

    // Analytics, reading the same streams in its own groups, agrees.
    let (s, sales) = w.call("GET", "/analytics/sales", None).await;
    assert_eq!(s, 200);
    for row in sales.as_array().unwrap() {
        let p = row["product_id"].as_str().unwrap();
        assert_eq!(row["units"].as_i64().unwrap(), taken.get(p).copied().unwrap_or(0), "analytics units of {p}");
    }
    let refunded = orders.iter().find(|o| o["status"] == "refunded").expect("some order was refunded");
    let (s, t) = w.call("GET", &format!("/analytics/orders/{}/timeline", refunded["id"].as_str().unwrap()), None).await;
    assert_eq!(s, 200, "{t}");
    let steps: Vec<&str> = t["steps"].as_array().unwrap().iter().map(|s| s["event"].as_str().unwrap()).collect();
    assert_eq!(steps[0], "completed", "{steps:?}");
    assert!(steps.len() >= 2, "a refund step follows: {steps:?}");
}

/// Streams are not ordered with respect to each other: a refund may reach
/// analytics before its sale. The sale, when it comes (and again, when
/// redelivered), is counted and taken back, once. Both keep their step on
/// the order's timeline, though their entries have one id (each the first
/// of one millisecond on its stream).
#[tokio::test(flavor = "multi_thread")]
async fn analytics_takes_back_a_sale_whose_refund_came_first() {
    use crate::harness::Options;
    let w = Wharf::start_with(Options { components: vec!["analytics"], ..Default::default() }).await;
    let sales_of = async |product: &str| {
        let (s, sales) = w.call("GET", "/analytics/sales", None).await;
        assert_eq!(s, 200, "{sales}");
        let row = sales.as_array().unwrap().iter().find(|r| r["product_id"] == product).cloned();
        row.map(|r| (r["units"].as_i64().unwrap(), r["revenue"].as_f64().unwrap()))
    };
    let same_id = "1700000000000-0";
    let refund = json!({"id": "early", "reason": "out of stock"});
    w.publish_raw_at("refund_order", same_id, refund.to_string(), "inventory");
    // Its mark is stored before the sale comes.
    w.wait_events_handled(SETTLE).await;
    let early = json!({"id": "early", "product_id": "p1", "quantity": 3, "total": 3.6});
    w.publish_raw_at("order_completed", same_id, early.to_string(), "payment");
    let late = json!({"id": "late", "product_id": "p1", "quantity": 2, "total": 2.4});
    w.publish_raw("order_completed", late.to_string(), "payment");
    w.wait_events_handled(SETTLE).await;
    assert_eq!(sales_of("p1").await, Some((2, 2.4)), "the early sale was taken back");
    // A redelivered sale changes nothing.
    w.publish_raw("order_completed", early.to_string(), "payment");
    w.wait_events_handled(SETTLE).await;
    assert_eq!(sales_of("p1").await, Some((2, 2.4)));
    let (_, t) = w.call("GET", "/analytics/orders/early/timeline", None).await;
    let steps: Vec<&str> = t["steps"].as_array().unwrap().iter().map(|s| s["event"].as_str().unwrap()).collect();
    assert_eq!(steps, ["completed", "completed", "refused_by_inventory"], "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicated_order_completed_event_takes_stock_once() {
    let w = Wharf::start().await;
    let id = w.create_product("Once", 3.0, 10).await;
    let (_, o) = w.order(&id, 3).await;
    w.wait_events_handled(SETTLE).await;
    assert_eq!(w.stock(&id).await, 7);

    // XRANGE: [(entry id, [(field, value)])]
    type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;
    let entries: Entries = w.entries("order_completed", "");
    assert_eq!(entries.len(), 1);
    let payload = entries[0].1.iter().find(|(k, _)| k == "payload").unwrap().1.clone();
    let sent: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(sent["id"], o["id"]);
    // Published with the order id as its key: the entry carries that key's
    // route, by which a canary takes its share of events (`engine::canary`).
    let split = entries[0].1.iter().find(|(k, _)| k == "split").map(|(_, v)| String::from_utf8_lossy(v).into_owned());
    let order_id = o["id"].as_str().unwrap();
    assert_eq!(split, Some(crate::harness::layout::slot(order_id).to_string()), "{entries:?}");
    for _ in 0..2 {
        w.publish_raw("order_completed", &payload, "payment");
    }
    w.wait_events_handled(SETTLE).await;
    assert_eq!(w.stock(&id).await, 7);
    assert_eq!(w.order_status(o["id"].as_str().unwrap()).await, "completed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_event_is_dead_lettered_and_the_stream_moves_on() {
    let w = Wharf::start().await;
    w.publish_raw("order_completed", "not json", "payment");
    let id = w.create_product("After poison", 1.0, 3).await;
    w.order(&id, 1).await;
    w.wait_events_handled(SETTLE).await;
    assert_eq!(w.stock(&id).await, 2);
    // One dead letter per consumer group of the stream (inventory and analytics).
    assert_eq!(w.dead_letters("order_completed"), 2);
    let dead: Vec<(String, HashMap<String, String>)> = w.entries("order_completed", ":dead");
    let mut groups: Vec<&str> = dead.iter().map(|d| d.1["group"].as_str()).collect();
    groups.sort();
    assert_eq!(groups, vec!["analytics-group", "inventory-group"]);
    assert!(dead.iter().all(|d| d.1["error"].contains("rejected")), "{dead:?}");
}

/// Runs `n` futures concurrently and collects their outputs in order.
async fn futures_join<F, Fut, T>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    futures::future::join_all((0..n).map(f)).await
}

/// Redis going away: requests fail fast with 503 JSON; when it comes back
/// (empty: it kept nothing), the host recovers by itself, consumer groups
/// included, and orders flow again.
#[tokio::test(flavor = "multi_thread")]
async fn the_host_recovers_when_redis_comes_back_empty() {
    let mut w = Wharf::start().await;
    w.create_product("before", 1.0, 1).await;
    w.redis.stop();
    let started = std::time::Instant::now();
    let (s, e) = w.call("GET", "/products", None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (503, Some("unavailable")), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered in {:?}", started.elapsed());
    let (s, body) = w.call("GET", "/readyz", None).await;
    assert_eq!((s, body["redis"].as_str()), (503, Some("unreachable")));

    w.redis.restart();
    w.http.wait_ready().await;
    let deadline = std::time::Instant::now() + SETTLE;
    let id = loop {
        let (s, p) = w.call("POST", "/products", Some(json!({"name": "after", "price": 2, "quantity": 5}))).await;
        if s == 201 {
            break p["id"].as_str().unwrap().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "writes never recovered: {s} {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (s, o) = w.order(&id, 2).await;
    assert_eq!(s, 201, "{o}");
    // The groups come back as the readers notice they are gone (NOGROUP), so
    // wait on the order itself rather than on the groups.
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    w.wait_order_status(o["id"].as_str().unwrap(), "completed", left).await;
    w.wait_events_handled(SETTLE).await;
    assert_eq!(w.stock(&id).await, 3);
    assert!(w.logs().contains("creating it again") || w.logs().contains("consumer group lost"));
}

/// Streams are trimmed by policy, but never past an entry some group has
/// not acknowledged (or not yet been delivered).
#[tokio::test(flavor = "multi_thread")]
async fn streams_are_trimmed_but_never_past_unacknowledged_entries() {
    let w = Wharf::start_with(crate::harness::Options {
        // One partition per stream, on a cluster too: the rule is the same
        // per partition, and one key is simpler to watch.
        toml: "[streams]\nclaim_idle_ms = 3000\ntrim_max_len = 5\ntrim_interval_ms = 200\npartitions = 1\n[limits]\ncall_timeout_ms = 2000\n"
            .into(),
        ..Default::default()
    })
    .await;
    // A slow group, there from the start: it will take the first
    // order_completed entry and never acknowledge it.
    let key = "wharf:stream:{order_completed}";
    let mut c = w.redis.conn();
    let _: () =
        redis::cmd("XGROUP").arg("CREATE").arg(key).arg("laggard").arg("0").arg("MKSTREAM").query(&mut c).unwrap();
    let id = w.create_product("Trim", 1.0, 100).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(w.order(&id, 1).await.1["id"].as_str().unwrap().to_string());
    }
    for oid in &ids {
        w.wait_order_status(oid, "completed", SETTLE).await;
    }
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("laggard")
        .arg("me")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(key)
        .arg(">")
        .query(&mut c)
        .unwrap();
    w.wait_events_handled_except("laggard", SETTLE).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let len = |c: &mut crate::harness::Conn, k: &str| redis::cmd("XLEN").arg(k).query::<u64>(c).unwrap();
    assert!(len(&mut c, "wharf:stream:{payment_settle}") <= 5, "acknowledged entries are trimmed");
    assert_eq!(len(&mut c, key), 20, "nothing the laggard still needs is trimmed");

    let _: () = redis::cmd("XGROUP").arg("DESTROY").arg(key).arg("laggard").query(&mut c).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while len(&mut c, key) > 5 {
        assert!(std::time::Instant::now() < deadline, "not trimmed after the laggard left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(w.stock(&id).await, 80);
}
