//! On a Redis Cluster of its own (3 primaries), whatever `WHARF_TEST_REDIS`
//! says: what only a cluster can show. (`scripts/test.sh` also runs the
//! flow and reliability tests on one.)

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::harness::{Client, Options, TestRedis, Wharf};

const SETTLE: Duration = Duration::from_secs(60);
const ADMIN: &str = "cluster-admin-token-0123456789abcdef";

/// The keys of `pattern` on the primary at `port`, counted by SCAN.
fn keys_on(port: u16, pattern: &str) -> usize {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap().get_connection().unwrap();
    redis::Commands::scan_match::<_, String>(&mut c, pattern).unwrap().count()
}

/// 1,000 products and 2,000 orders: inventory's and payment's keys land on
/// every primary, none holding more than half of either component's; so
/// do the streams' partitions (one per primary by default), each order's
/// events stay in one partition, and every event is handled once.
#[tokio::test(flavor = "multi_thread")]
async fn a_components_keys_and_streams_spread_over_every_primary() {
    let w = Wharf::start_with(Options {
        components: vec!["inventory", "payment"],
        redis: Some(TestRedis::start_cluster(3, 0)),
        env: vec![("WHARF_ADMIN_TOKEN".into(), ADMIN.into())],
        ..Default::default()
    })
    .await;
    let w = &w;
    let products: Vec<String> = futures::stream::iter(0..1_000)
        .map(|i| async move { w.create_product(&format!("spread {i}"), 1.0, 100).await })
        .buffer_unordered(32)
        .collect()
        .await;
    let products = &products;
    let answers: Vec<(u16, Value)> = futures::stream::iter(0..2_000)
        .map(|i| async move { w.order(&products[i % products.len()], 1).await })
        .buffer_unordered(32)
        .collect()
        .await;
    let refused: Vec<&(u16, Value)> = answers.iter().filter(|(s, _)| *s != 201).collect();
    assert!(refused.is_empty(), "{} of {} refused, the first: {:?}", refused.len(), answers.len(), refused.first());
    w.wait_events_handled(SETTLE).await;

    let cluster = w.redis.cluster.as_ref().unwrap();
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3);
    for ns in ["inventory", "payment"] {
        let per: HashMap<u16, usize> =
            primaries.iter().map(|p| (*p, keys_on(*p, &format!("wharf:{{{ns}*:kv:*")))).collect();
        let total: usize = per.values().sum();
        eprintln!("{ns}: {total} keys, per primary {per:?}");
        assert!(total >= 3_000, "{ns}: {total} keys");
        for (port, n) in &per {
            assert!(*n > 0 && *n <= total / 2, "{ns}: the primary at {port} holds {n} of {total} keys");
        }
    }
    // Every order and product is still listed once, in order, across partitions.
    let (s, listed) = w.call("GET", "/products", None).await;
    assert_eq!(s, 200);
    let mut ids: Vec<&str> = listed.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1_000);
    let sorted = {
        let mut s = ids.clone();
        s.sort();
        s
    };
    assert_eq!(ids, sorted, "in id order");
    ids.dedup();
    assert_eq!(ids.len(), 1_000, "each once");
    let (s, page) = w.call("GET", "/orders?limit=500", None).await;
    assert_eq!((s, page.as_array().unwrap().len()), (200, 500));
    let (_, all) = w.call("GET", "/orders", None).await;
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2_000);
    assert!(all.iter().all(|o| o["status"] == json!("completed")), "every order settled");
    let stocks: Vec<i64> =
        futures::stream::iter(products.iter()).map(|p| w.stock(p)).buffer_unordered(32).collect().await;
    assert!(stocks.iter().all(|s| *s == 98), "two orders each took their stock once: {stocks:?}");

    // Streams: one partition per primary, each on its own, each with a
    // fair share of the entries, every order's events in one partition.
    let mut c = w.redis.conn();
    let mut partition_of_order: HashMap<String, usize> = HashMap::new();
    for (stream, entries) in [("payment_settle", 2_000), ("order_completed", 2_000), ("product_changed", 1_000)] {
        let keys = w.stream_keys(stream);
        assert_eq!(keys.len(), 3, "{stream}: one partition per primary");
        let homes: Vec<u16> = keys
            .iter()
            .map(|k| *primaries.iter().find(|p| keys_on(**p, &k.replace('{', "[{]")) == 1).unwrap())
            .collect();
        let mut distinct = homes.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "{stream}: partitions on {homes:?}");
        let mut per = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            type Entries = Vec<(String, HashMap<String, String>)>;
            let part: Entries = redis::cmd("XRANGE").arg(key).arg("-").arg("+").query(&mut c).unwrap();
            per.push(part.len());
            if stream == "product_changed" {
                continue;
            }
            for (_, fields) in part {
                let event: serde_json::Value = serde_json::from_str(&fields["payload"]).unwrap();
                let order = event["id"].as_str().unwrap().to_string();
                let home = *partition_of_order.entry(order.clone()).or_insert(index);
                assert_eq!(home, index, "order {order}'s {stream} event is in partition {index}, its others in {home}");
            }
        }
        eprintln!("{stream}: {per:?} entries per partition");
        assert_eq!(per.iter().sum::<usize>(), entries, "{stream}: each event appended once");
        assert!(per.iter().all(|n| *n >= entries / 6), "{stream}: {per:?}");
        // Every group read every partition to its end and acknowledged all.
        for key in &keys {
            let groups: Vec<HashMap<String, redis::Value>> =
                redis::cmd("XINFO").arg("GROUPS").arg(key).query(&mut c).unwrap();
            assert!(!groups.is_empty(), "{key}: no group");
            for g in groups {
                assert_eq!(g["pending"], redis::Value::Int(0), "{key}: {g:?}");
                assert_eq!(g["lag"], redis::Value::Int(0), "{key}: {g:?}");
            }
        }
        assert_eq!(w.dead_letters(stream), 0, "{stream}");
    }
    // The admin view shows each stream's partitions and their sum.
    let admin = [("authorization", format!("Bearer {ADMIN}"))];
    let admin: Vec<(&str, &str)> = admin.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (s, view) = w.http.call_with("GET", "/admin/streams", &admin, None).await;
    assert_eq!(s, 200, "{view}");
    let completed = &view["streams"]["order_completed"];
    let parts = completed["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3, "{completed}");
    let lengths: u64 = parts.iter().map(|p| p["length"].as_u64().unwrap()).sum();
    assert_eq!((completed["length"].as_u64(), lengths), (Some(2_000), 2_000), "{completed}");
    // `/metrics` has each group's pending and lag on every partition, each on its own node.
    for partition in 0..3 {
        let labels = format!(r#"{{stream="order_completed",group="inventory-group",partition="{partition}"}}"#);
        assert_eq!(w.counter(&format!("wharf_consumer_pending{labels}")).await, 0);
        assert_eq!(w.counter(&format!("wharf_consumer_lag{labels}")).await, 0);
    }
}

/// A primary killed under order load, its replica promoted: the host
/// follows the failover by itself (no restart), answers nothing but 201 and
/// 503 meanwhile (a careful client retries with its `Idempotency-Key`), and
/// the pipeline carries on. With `local` durability a write the primary
/// acknowledged but had not yet sent to its replica can be lost (see
/// docs/SCALING.md): the orders answered once the cluster served again
/// cannot be, and must all be there and settled.
#[tokio::test(flavor = "multi_thread")]
async fn a_primary_killed_under_load_fails_over_without_a_restart() {
    let (answered, lost) = failover_under_load("local").await;
    eprintln!("{answered} orders answered 201; {lost} answered before the failover are gone (local durability)");
}

/// The same with `redis_durability = "replicated"` and two replicas per
/// primary: no order answered 201 is lost. Writes are answered 503 until the
/// replica left has synced with the promoted one.
#[tokio::test(flavor = "multi_thread")]
async fn with_replicated_durability_a_failover_loses_no_answered_order() {
    let (answered, lost) = failover_under_load("replicated").await;
    assert_eq!(lost, 0, "of {answered} orders answered 201, {lost} are gone");
}

/// Orders from 8 careful clients, a primary killed after 1 s, the cluster
/// serving again, 2 s more of orders. Asserts what holds with either durability; returns
/// the orders answered 201 and how many of those are not stored.
async fn failover_under_load(durability: &str) -> (usize, usize) {
    let w = Wharf::start_with(Options {
        components: vec!["inventory", "payment"],
        // With `replicated`, two replicas each: the one left follows the
        // promoted one, so writes can be confirmed again after the failover.
        redis: Some(TestRedis::start_cluster(3, if durability == "replicated" { 2 } else { 1 })),
        env: vec![("WHARF_REDIS_DURABILITY".into(), durability.into())],
        ..Default::default()
    })
    .await;
    let (_, products) = crate::reliability::stock_up(&w, "failover", 20, 1_000_000).await;
    let running = Arc::new(AtomicBool::new(true));
    let clients = careful_clients(&w, "failover", &products, &running);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cluster = w.redis.cluster.clone().unwrap();
    let victim = cluster.primaries()[0];
    cluster.kill_node(victim);
    let killed = Instant::now();
    let waiting = cluster.clone();
    tokio::task::spawn_blocking(move || waiting.wait_until_serving(3, Duration::from_secs(30))).await.unwrap();
    let serving = Instant::now();
    eprintln!("{durability}: serving again {:?} after the primary was killed", serving - killed);
    // The host follows on its own: fresh orders are answered 201 again
    // (with `replicated`, once the replica left has synced with its new primary).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, o) = w.order(&products[0], 1).await;
        if s == 201 {
            break;
        }
        assert!(matches!(s, 503 | 504), "{s}: {o}");
        assert!(
            Instant::now() < deadline,
            "the host did not recover without a restart; last answer {s}: {o}\n{}",
            crate::harness::tail(&w.logs(), 60)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("the host answered 201 again {:?} after that", serving.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.store(false, Ordering::Relaxed);
    let mut answered = Vec::new();
    for c in clients {
        answered.extend(c.await.unwrap());
    }
    // Ready again, every primary answering through the host's connections
    // (they follow the new primaries within about a second: `storage::topology`).
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.http.call_with("GET", "/readyz", &[], None).await.0 != 200 {
        let logs = w.logs();
        let topology: Vec<&str> = logs.lines().filter(|l| l.contains("topology") || l.contains("primaries")).collect();
        assert!(
            Instant::now() < deadline,
            "not ready {:?} after serving again; the host's topology lines:\n{}\n...\n{}",
            serving.elapsed(),
            topology.join("\n"),
            crate::harness::tail(&logs, 30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = w.logs();
    let followed =
        logs.lines().filter(|l| l.contains("primaries changed") || l.contains("every primary answers")).count();
    eprintln!("ready {:?} after serving again ({followed} topology lines)", serving.elapsed());
    w.wait_events_handled(SETTLE).await;
    let status = order_status(&w).await;
    let after: Vec<&String> = answered.iter().filter(|(_, at)| *at > serving).map(|(id, _)| id).collect();
    assert!(!after.is_empty(), "orders were answered after the failover");
    for id in &after {
        assert_eq!(status.get(*id).map(String::as_str), Some("completed"), "order {id}, answered after the failover");
    }
    assert!(status.values().all(|s| s == "completed"), "every stored order settles");
    let lost = answered.iter().filter(|(id, _)| !status.contains_key(id)).count();
    (answered.len(), lost)
}

/// `replicated` waits on every primary: on a cluster without replicas no
/// write can be confirmed, so none is answered as done.
#[tokio::test(flavor = "multi_thread")]
async fn replicated_durability_without_replicas_answers_503() {
    let w = Wharf::start_with(Options {
        components: vec!["inventory"],
        redis: Some(TestRedis::start_cluster(3, 0)),
        env: vec![
            ("WHARF_REDIS_DURABILITY".into(), "replicated".into()),
            ("WHARF_REDIS_REPLICA_WAIT_MS".into(), "200".into()),
        ],
        ..Default::default()
    })
    .await;
    let (s, e) = w.call("POST", "/products", Some(json!({"name": "unconfirmed", "price": 1.0, "quantity": 1}))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (503, Some("unavailable")), "{e}");
}

/// Slots 0-2999 migrated from one primary to another under order load
/// (`redis-cli --cluster reshard`): about three of each component's 16
/// shards, and the first partitions of `payment_settle` and `order_stream`. Nothing but 201 and 503
/// is answered meanwhile, and every order answered 201 is stored and
/// settles.
#[tokio::test(flavor = "multi_thread")]
async fn slots_migrated_under_load_lose_nothing() {
    let w = Wharf::start_with(Options {
        components: vec!["inventory", "payment"],
        redis: Some(TestRedis::start_cluster(3, 0)),
        ..Default::default()
    })
    .await;
    let (_, products) = crate::reliability::stock_up(&w, "reshard", 20, 1_000_000).await;
    let running = Arc::new(AtomicBool::new(true));
    let clients = careful_clients(&w, "reshard", &products, &running);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cluster = w.redis.cluster.clone().unwrap();
    let id = |port: u16| -> String {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap().get_connection().unwrap();
        redis::cmd("CLUSTER").arg("MYID").query(&mut c).unwrap()
    };
    // The primary that owns slot 0, and another.
    let owner_of_0 = {
        let mut c =
            redis::Client::open(format!("redis://127.0.0.1:{}", cluster.ports[0])).unwrap().get_connection().unwrap();
        let slots: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
        let first = slots.iter().find(|r| r[0] == redis::Value::Int(0)).unwrap();
        match &first[2] {
            redis::Value::Array(node) => match node[1] {
                redis::Value::Int(port) => port as u16,
                _ => panic!("{node:?}"),
            },
            other => panic!("{other:?}"),
        }
    };
    let to = cluster.primaries().into_iter().find(|p| *p != owner_of_0).unwrap();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{owner_of_0}")])
            .args([
                "--cluster-from",
                &id(owner_of_0),
                "--cluster-to",
                &id(to),
                "--cluster-slots",
                "3000",
                "--cluster-yes",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "reshard failed: {}", String::from_utf8_lossy(&out.stdout));
    eprintln!("3,000 slots moved in {:?} under load", started.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.store(false, Ordering::Relaxed);
    let mut answered = Vec::new();
    for c in clients {
        answered.extend(c.await.unwrap());
    }
    w.wait_events_handled(SETTLE).await;
    let status = order_status(&w).await;
    for (id, _) in &answered {
        assert_eq!(status.get(id).map(String::as_str), Some("completed"), "order {id}, answered 201");
    }
    assert_eq!(status.len(), answered.len(), "no order stored twice or unanswered");
    eprintln!("{} orders answered 201 during the migration, all stored and completed", answered.len());
}

/// Eight careful clients (`reliability::place_order`: an `Idempotency-Key`
/// each, retried on 503 and 504, any other answer a failure) ordering the
/// products in turn until `running` is false; each returns the orders
/// answered 201 and when.
fn careful_clients(
    w: &Wharf,
    tag: &'static str,
    products: &Arc<Vec<String>>,
    running: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<(String, Instant)>>> {
    (0..8u64)
        .map(|c| {
            let (products, running, port) = (products.clone(), running.clone(), w.port);
            tokio::spawn(async move {
                let client = Client::new(port);
                let mut answered = Vec::new();
                while running.load(Ordering::Relaxed) {
                    let product = &products[answered.len() % products.len()];
                    let key = format!("{tag}-{c}-{}", answered.len());
                    let order = crate::reliability::place_order(&client, &key, product, 1).await;
                    answered.push((order["id"].as_str().unwrap().to_string(), Instant::now()));
                }
                answered
            })
        })
        .collect()
}

/// Every stored order's status, by id.
async fn order_status(w: &Wharf) -> HashMap<String, String> {
    let (s, all) = w.call("GET", "/orders", None).await;
    assert_eq!(s, 200);
    all.as_array()
        .unwrap()
        .iter()
        .map(|o| (o["id"].as_str().unwrap().to_string(), o["status"].as_str().unwrap().to_string()))
        .collect()
}

/// Three hosts on one cluster, orders sprayed over them, one host killed
/// (`kill -9`) mid-run for good: its clients go on through the others with
/// the same `Idempotency-Key`, its events are claimed by the others, and
/// afterwards nothing is pending, nothing is dead-lettered, and every
/// product's stock is its start less its completed orders.
#[tokio::test(flavor = "multi_thread")]
async fn three_hosts_on_a_cluster_survive_one_killed() {
    let streams = "[streams]\nclaim_idle_ms = 1500\nretry_base_ms = 100\n[limits]\ncall_timeout_ms = 1000\n";
    let host = |redis: TestRedis| Options {
        components: vec!["inventory", "payment"],
        redis: Some(redis),
        toml: streams.into(),
        ..Default::default()
    };
    let mut a = Wharf::start_with(host(TestRedis::start_cluster(3, 0))).await;
    let b = Wharf::start_with(host(a.redis.borrow())).await;
    let c = Wharf::start_with(host(a.redis.borrow())).await;
    let (start, products) = crate::reliability::stock_up(&b, "spray", 10, 500).await;
    let ports = Arc::new(vec![a.port, b.port, c.port]);
    let running = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..6usize)
        .map(|n| {
            let (ports, products, running) = (ports.clone(), products.clone(), running.clone());
            tokio::spawn(async move {
                let mut answered = Vec::new();
                let mut at = n;
                while running.load(Ordering::Relaxed) {
                    let body = json!({"product_id": products[answered.len() % products.len()], "quantity": 1});
                    let key = format!("spray-{n}-{}", answered.len());
                    let headers = [("content-type", "application/json"), ("idempotency-key", key.as_str())];
                    let deadline = Instant::now() + Duration::from_secs(30);
                    // The same order through the next host until one answers 201.
                    loop {
                        let client = Client::new(ports[at % ports.len()]);
                        match client.send("POST", "/orders", &headers, body.to_string().into_bytes()).await {
                            Ok(r) if r.status == 201 => {
                                answered.push(r.json()["id"].as_str().unwrap().to_string());
                                break;
                            }
                            Ok(r) if !matches!(r.status, 503 | 504) => panic!("order answered {}", r.status),
                            _ => {
                                assert!(Instant::now() < deadline, "no host took the order");
                                at += 1;
                            }
                        }
                    }
                    at += 1;
                }
                answered
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.crash();
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.store(false, Ordering::Relaxed);
    let mut answered = Vec::new();
    for client in clients {
        answered.extend(client.await.unwrap());
    }
    b.wait_events_handled(SETTLE).await;
    let status = order_status(&b).await;
    for id in &answered {
        assert!(
            matches!(status.get(id).map(String::as_str), Some("completed" | "refunded")),
            "order {id} answered 201: {:?}",
            status.get(id)
        );
    }
    for stream in ["payment_settle", "order_completed", "refund_order", "order_stream"] {
        assert_eq!(b.dead_letters(stream), 0, "{stream}");
    }
    let (_, all) = c.call("GET", "/orders", None).await;
    crate::reliability::assert_stock_invariant(&c, &start, all.as_array().unwrap()).await;
    eprintln!("{} orders answered 201 over three hosts, one killed mid-run; all settled", answered.len());
}
