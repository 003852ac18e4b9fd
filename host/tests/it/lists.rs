//! Big lists: 100,000 orders answer `GET /orders` whole (the seed's
//! contract), streamed page by page, with no instance and not the host
//! holding them all; a customer's list reads that customer's index, not
//! every order in the system.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::harness::{Options, Wharf};
use serde_json::{Value, json};

const ADMIN: &str = "k-admin-lists-000000000";
const ALICE: &str = "k-alice-lists-000000000";
const BOB: &str = "k-bob-lists-00000000000";

const ORDERS: usize = 100_000;
const PRODUCTS: usize = 30_000;

/// A ULID-shaped id that sorts by `n`, as the components' ids do.
fn id(prefix: char, n: usize) -> String {
    format!("{prefix}{n:0>25}")
}

/// Writes `pairs` as component `ns`'s values (and index entries) the way
/// the host's `kv.set` stores them: seeding through the API would take
/// minutes, and the listing is what is under test.
fn seed(c: &mut crate::harness::Conn, ns: &str, pairs: impl Iterator<Item = (String, String)>) {
    let mut pipe = redis::pipe();
    let mut n = 0;
    for (key, value) in pairs {
        if n == 0 && key.contains('{') {
            // As the host notes a namespace's first partitioned write.
            let _: () = redis::cmd("SADD").arg("wharf:partitioned").arg(ns).query(c).unwrap();
        }
        let full = crate::harness::layout::kv_key(ns, &key);
        pipe.hset_multiple(full, &[("v", value.as_str()), ("ver", "1")]).ignore();
        pipe.zadd(crate::harness::layout::kv_index(ns, &key), &key, 0).ignore();
        n += 1;
        if n % 5_000 == 0 {
            pipe.query::<()>(c).unwrap();
            pipe = redis::pipe();
        }
    }
    if n % 5_000 != 0 {
        pipe.query::<()>(c).unwrap();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn zrangebylex_calls(c: &mut crate::harness::Conn) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_zrangebylex:calls="))
        .and_then(|v| v.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// The whole list at `path` for `key`: it must be one JSON array (the
/// host streams its pages) within `within`.
async fn whole(w: &Wharf, key: &str, path: &str, within: Duration) -> Vec<Value> {
    let auth = format!("Bearer {key}");
    let started = Instant::now();
    let r = w.send("GET", path, &[("authorization", &auth)], Vec::new()).await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{path}: {}", String::from_utf8_lossy(&r.body[..r.body.len().min(500)]));
    assert!(took < within, "{path} took {took:?}");
    assert!(r.headers.get("x-wharf-continue").is_none(), "the paging header is the host's, never the client's");
    match r.json() {
        Value::Array(items) => items,
        other => panic!("{path}: not an array: {other}"),
    }
}

fn ids(items: &[Value], field: &str) -> Vec<String> {
    items.iter().map(|o| o[field].as_str().unwrap().to_string()).collect()
}

/// Every id once, in order.
fn assert_each_once_in_order(got: &[String], expected: &[String], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: count");
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "{what}: an item came twice");
    assert!(got == expected, "{what}: not every item, or not in id order");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_list_route_answers_100k_items_whole_with_memory_bounded() {
    let env =
        vec![("WHARF_API_KEYS".to_string(), format!("{ADMIN}:admin:ops,{ALICE}:customer:alice,{BOB}:customer:bob"))];
    let w =
        Wharf::start_with(Options { components: vec!["inventory", "payment", "analytics"], env, ..Default::default() })
            .await;
    let mut redis = w.redis.conn();

    // Bob's 100,000 orders, with the index entries payment keeps per customer.
    let order = |n: usize| {
        json!({"id": id('0', n), "product_id": id('P', n % 7), "price": 1.5, "fee": 0.3, "total": 1.8,
               "quantity": 1, "status": "completed", "customer": "bob"})
        .to_string()
    };
    seed(&mut redis, "payment", (0..ORDERS).map(|n| (format!("order:{{{}}}", id('0', n)), order(n))));
    seed(&mut redis, "payment", (0..ORDERS).map(|n| (format!("customer:{{bob}}:{}", id('0', n)), "1".to_string())));
    let products = |n: usize| json!({"id": id('P', n), "name": format!("p{n}"), "price": 2}).to_string();
    seed(&mut redis, "inventory", (0..PRODUCTS).map(|n| (format!("product:{{{}}}", id('P', n)), products(n))));
    seed(&mut redis, "analytics", (0..PRODUCTS).map(|n| (format!("units:{{{}}}", id('P', n)), "3".to_string())));
    seed(&mut redis, "analytics", (0..PRODUCTS).map(|n| (format!("revenue:{{{}}}", id('P', n)), "540".to_string())));

    // Alice orders through the API: her index entries are payment's own.
    let auth = |k: &str| format!("Bearer {k}");
    let (s, p) = w
        .http
        .call_with(
            "POST",
            "/products",
            &[("authorization", &auth(ADMIN))],
            Some(json!({"name": "tea", "price": 1, "quantity": 100})),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let mut alice = Vec::new();
    for _ in 0..3 {
        let body = Some(json!({"product_id": p["id"], "quantity": 1}));
        let (s, o) = w.http.call_with("POST", "/orders", &[("authorization", &auth(ALICE))], body).await;
        assert_eq!(s, 201, "{o}");
        alice.push(o["id"].as_str().unwrap().to_string());
    }
    // Lists are in id order; ids made in the same millisecond sort by their
    // random part, not by which came first.
    alice.sort();

    let pid = w.pid();
    let rss_before = rss_kib(pid);
    let within = Duration::from_secs(60);

    // An admin: every order once, in creation (id) order.
    let mut expected: Vec<String> = (0..ORDERS).map(|n| id('0', n)).collect();
    expected.extend(alice.iter().cloned());
    expected.sort();
    let all = whole(&w, ADMIN, "/orders", within).await;
    assert_each_once_in_order(&ids(&all, "id"), &expected, "admin's orders");

    // Bob: his 100,000, through his index.
    let bob = whole(&w, BOB, "/orders", within).await;
    let expected_bob: Vec<String> = (0..ORDERS).map(|n| id('0', n)).collect();
    assert_each_once_in_order(&ids(&bob, "id"), &expected_bob, "bob's orders");

    // Alice: her three, read from her index in one page, not by going
    // through the 100,000 others (one index read, where a scan needs 100+).
    let reads = zrangebylex_calls(&mut redis);
    let mine = whole(&w, ALICE, "/orders", within).await;
    assert_eq!(ids(&mine, "id"), alice);
    assert_eq!(zrangebylex_calls(&mut redis) - reads, 1, "alice's list read more than her own index");
    // Paged, too: each page is hers, and the pages add up.
    let (s, page) = w.http.call_with("GET", "/orders?limit=2", &[("authorization", &auth(ALICE))], None).await;
    assert_eq!((s, ids(page.as_array().unwrap(), "id")), (200, alice[..2].to_vec()));

    // The whole list from a point on (`after` without `limit`).
    let rest = whole(&w, ADMIN, &format!("/orders?after={}", id('0', ORDERS - 10)), within).await;
    assert_eq!(rest.len(), 9 + alice.len());

    let mut expected_products: Vec<String> = (0..PRODUCTS).map(|n| id('P', n)).collect();
    expected_products.push(p["id"].as_str().unwrap().to_string());
    expected_products.sort();
    let products = whole(&w, ADMIN, "/products", within).await;
    assert_each_once_in_order(&ids(&products, "id"), &expected_products, "products");

    let sales = whole(&w, ADMIN, "/analytics/sales", within).await;
    let expected_sales: Vec<String> = (0..PRODUCTS).map(|n| id('P', n)).collect();
    // Alice's product shows once her orders' events are through, or not yet.
    let mut sold = ids(&sales, "product_id");
    sold.retain(|id| id != p["id"].as_str().unwrap());
    assert_each_once_in_order(&sold, &expected_sales, "sales");
    assert_eq!(sales[0]["units"], json!(3));
    assert!(sales[0]["revenue"].is_number(), "{}", sales[0]);

    // The host held a few pages at a time, not the lists (about 20 MB of
    // orders went through it twice).
    let grew_mib = rss_kib(pid).saturating_sub(rss_before) / 1024;
    assert!(grew_mib < 48, "the host's memory grew by {grew_mib} MiB while streaming");
    assert!(!w.logs().contains("list stopped half-way"), "{}", w.logs());
}

/// A list that fails half-way is cut, never passed off as whole: the client
/// sees a broken body rather than a short, well-formed array.
#[tokio::test(flavor = "multi_thread")]
async fn a_list_that_fails_half_way_is_cut_not_shortened() {
    let w = Wharf::start_with(Options { components: vec!["inventory"], ..Default::default() }).await;
    let mut redis = w.redis.conn();
    let products = |n: usize| json!({"id": id('P', n), "name": format!("p{n}"), "price": 2}).to_string();
    seed(&mut redis, "inventory", (0..2_000).map(|n| (format!("product:{{{}}}", id('P', n)), products(n))));
    // A value past the first page that is not a product: the page that
    // reads it fails (500), after the first page went out.
    let bad = crate::harness::layout::kv_key("inventory", &format!("product:{{{}}}", id('P', 1_500)));
    redis::cmd("HSET").arg(&bad).arg("v").arg("not json").query::<()>(&mut redis).unwrap();

    let result = w.send("GET", "/products", &[], Vec::new()).await;
    match result {
        Err(_) => {}
        Ok(r) => panic!("a cut list arrived whole: status {} with {} bytes", r.status, r.body.len()),
    }
    // The log line follows the cut (it is written as the body is aborted).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !w.logs().contains("list stopped half-way") {
        assert!(Instant::now() < deadline, "{}", w.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One page still answers, with the error, and the host serves on.
    let (s, _) = w.call("GET", "/products?limit=10", None).await;
    assert_eq!(s, 200);
}
