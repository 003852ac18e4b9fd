//! On a Redis Cluster of its own (3 primaries), whatever `WHARF_TEST_REDIS`
//! says: what only a cluster can show. (`scripts/test.sh` also runs the
//! flow and reliability tests on one.)

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use crate::harness::{Options, TestRedis, Wharf};

const SETTLE: Duration = Duration::from_secs(60);

/// The keys of `pattern` on the primary at `port`, counted by SCAN.
fn keys_on(port: u16, pattern: &str) -> usize {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap().get_connection().unwrap();
    redis::Commands::scan_match::<_, String>(&mut c, pattern).unwrap().count()
}

/// 1,000 products and 2,000 orders: inventory's and payment's keys land on
/// every primary, none holding more than half of either component's.
#[tokio::test(flavor = "multi_thread")]
async fn a_components_keys_spread_over_every_primary() {
    let w = Wharf::start_with(Options {
        components: vec!["inventory", "payment"],
        redis: Some(TestRedis::start_cluster(3, 0)),
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
    let answers: Vec<u16> = futures::stream::iter(0..2_000)
        .map(|i| async move { w.order(&products[i % products.len()], 1).await.0 })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(answers.iter().all(|s| *s == 201), "{:?}", answers.iter().filter(|s| **s != 201).collect::<Vec<_>>());
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
    for p in products.iter().take(20) {
        assert_eq!(w.stock(p).await, 98, "two orders each took their stock once");
    }
}
