//! Hot-swap: replacing a component while traffic flows loses nothing, and a
//! bad version never replaces a good one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::harness::{Options, Wharf};
use serde_json::json;

const TOKEN: &str = "swap-test-admin-token-0123456789abcd";

fn with_admin(components: Vec<&'static str>) -> Options {
    Options { components, env: vec![("WHARF_ADMIN_TOKEN".into(), TOKEN.into())], ..Default::default() }
}

async fn serving(w: &Wharf) -> String {
    let (s, v) = w.call("GET", "/version", None).await;
    assert_eq!(s, 200, "{v}");
    v["version"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn swapping_under_load_fails_no_request() {
    let w = Arc::new(Wharf::start_with(with_admin(vec!["versioned=versioned-v1"])).await);
    assert_eq!(serving(&w).await, "v1");
    let stop = Arc::new(AtomicBool::new(false));
    // Each client its own connection, kept busy back to back.
    let clients: Vec<_> = (0..8).map(|_| crate::harness::load(w.port, "/version", stop.clone())).collect();
    let mut swap_ms = Vec::new();
    for _ in 0..10 {
        for file in ["versioned-v2", "versioned-v1"] {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let r = w.deploy("versioned", file, TOKEN).await;
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            swap_ms.push(r.json()["swap_ms"].as_f64().unwrap());
        }
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total: HashMap<String, usize> = HashMap::new();
    for c in clients {
        for (k, n) in c.await.unwrap() {
            *total.entry(k).or_default() += n;
        }
    }
    let v1 = json!({"version": "v1"}).to_string();
    let v2 = json!({"version": "v2"}).to_string();
    let unexpected: Vec<_> = total.iter().filter(|(k, _)| **k != v1 && **k != v2).collect();
    assert!(unexpected.is_empty(), "answers other than v1/v2: {unexpected:?}");
    assert!(total.get(&v1).copied().unwrap_or(0) > 0 && total.get(&v2).copied().unwrap_or(0) > 0, "{total:?}");
    eprintln!("answers: {total:?}; swap ms: {swap_ms:?}");
    assert_eq!(serving(&w).await, "v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_versions_are_refused_and_the_old_one_keeps_serving() {
    let w = Wharf::start_with(with_admin(vec!["versioned=versioned-v1", "inventory"])).await;
    let auth = format!("Bearer {TOKEN}");
    // Not wasm at all.
    let r = w
        .send("PUT", "/admin/components/versioned", &[("authorization", &auth)], b"\0asm garbage".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status, 422);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("not a valid WebAssembly component"));
    // A component of another world.
    let r = w.deploy("versioned", "alien", TOKEN).await;
    assert_eq!(r.status, 422);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("wharf:plugin world"), "{}", r.json());
    // A manifest the host refuses.
    let r = w.deploy("versioned", "versioned-bad", TOKEN).await;
    assert_eq!(r.status, 422);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("manifest"), "{}", r.json());
    // A component that claims another's name.
    let r = w.deploy("versioned", "inventory", TOKEN).await;
    assert_eq!(r.status, 422);
    assert_eq!(serving(&w).await, "v1");
    assert!(w.logs().contains("deployment rejected"));
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_needs_its_token() {
    let w = Wharf::start_with(with_admin(vec!["versioned=versioned-v1"])).await;
    let r = w.send("GET", "/admin/components", &[], Vec::new()).await.unwrap();
    assert_eq!((r.status, r.json()["error"]["code"].as_str().map(String::from)), (401, Some("unauthorized".into())));
    let r = w.send("GET", "/admin/components", &[("authorization", "Bearer wrong")], Vec::new()).await.unwrap();
    assert_eq!(r.status, 403);
    let r = w.deploy("versioned", "versioned-v2", "wrong").await;
    assert_eq!(r.status, 403);
    assert_eq!(serving(&w).await, "v1");

    // Without a configured token the admin API does not exist.
    let off = Wharf::start_with(Options { components: vec!["versioned=versioned-v1"], ..Default::default() }).await;
    let r = off.deploy("versioned", "versioned-v2", TOKEN).await;
    assert_eq!(r.status, 404);
    assert_eq!(serving(&off).await, "v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_are_listed_rolled_back_and_survive_a_restart() {
    let mut w = Wharf::start_with(with_admin(vec!["versioned=versioned-v1"])).await;
    let auth = format!("Bearer {TOKEN}");
    serving(&w).await;
    let v2 = w.deploy("versioned", "versioned-v2", TOKEN).await.json()["version"].as_str().unwrap().to_string();
    assert_eq!(serving(&w).await, "v2");

    let list = w.send("GET", "/admin/components", &[("authorization", &auth)], Vec::new()).await.unwrap().json();
    let c = &list[0];
    assert_eq!(c["name"], "versioned");
    assert_eq!(c["version"], json!(v2));
    assert_eq!(c["requests"], json!(1), "requests are counted per version");
    assert_eq!(c["subscriptions"], json!([{"stream": "versioned_events", "group": "versioned-v2"}]));
    assert_eq!(c["history"].as_array().unwrap().len(), 2);
    assert_eq!(c["history"][0]["requests"], json!(1), "v1 served one request before the swap");

    // The API docs follow the swap.
    let (_, doc) = w.call("GET", "/openapi.json", None).await;
    assert_eq!(doc["paths"]["/version"]["get"]["tags"], json!(["versioned"]));

    // The new subscription is live: its group exists.
    let mut redis = w.redis.conn();
    let groups: Vec<HashMap<String, redis::Value>> =
        redis::cmd("XINFO").arg("GROUPS").arg("wharf:stream:{versioned_events}").query(&mut redis).unwrap();
    assert_eq!(groups.len(), 1);

    // A restart comes back with the last deployed version, not the configured file.
    w.crash_and_restart().await;
    assert_eq!(serving(&w).await, "v2");

    let r =
        w.send("POST", "/admin/components/versioned/rollback", &[("authorization", &auth)], Vec::new()).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(serving(&w).await, "v1");
    let r =
        w.send("POST", "/admin/components/versioned/rollback", &[("authorization", &auth)], Vec::new()).await.unwrap();
    assert_eq!(r.status, 422, "nothing older than v1");
    assert_eq!(serving(&w).await, "v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_keep_flowing_while_inventory_is_swapped() {
    let w = Arc::new(Wharf::start_with(with_admin(vec!["inventory", "payment"])).await);
    let mut start = HashMap::new();
    for i in 0..3 {
        start.insert(w.create_product(&format!("p{i}"), 2.0, 60).await, 60i64);
    }
    let products: Vec<String> = start.keys().cloned().collect();
    let orderer = {
        let (w, products) = (w.clone(), products.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..240 {
                let (s, o) = w.order(&products[i % 3], 1 + (i % 2) as i64).await;
                assert_eq!(s, 201, "{o}");
                ids.push(o["id"].as_str().unwrap().to_string());
            }
            ids
        })
    };
    for _ in 0..5 {
        for file in ["inventory-variant", "inventory"] {
            let r = w.deploy("inventory", file, TOKEN).await;
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }
    let ids = orderer.await.unwrap();
    w.wait_events_handled(Duration::from_secs(60)).await;
    let mut taken: HashMap<String, i64> = HashMap::new();
    for id in &ids {
        let (_, o) = w.call("GET", &format!("/orders/{id}"), None).await;
        match o["status"].as_str().unwrap() {
            "completed" => {
                *taken.entry(o["product_id"].as_str().unwrap().into()).or_default() += o["quantity"].as_i64().unwrap()
            }
            "refunded" => {}
            s => panic!("order {id} ended {s}"),
        }
    }
    for (p, q0) in &start {
        assert_eq!(w.stock(p).await, q0 - taken.get(p).copied().unwrap_or(0), "product {p}");
    }
    for s in ["order_completed", "refund_order", "payment_settle"] {
        assert_eq!(w.dead_letters(s), 0, "{s}");
    }
    assert!(w.logs().contains("component swapped"));
}

/// `wharf:plugin@<version>` of `wit/wharf.wit`, as (minor, patch): "0.2", 1.
fn contract_version() -> (String, u32) {
    let wit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/wharf.wit")).unwrap();
    let version = wit.split("package wharf:plugin@").nth(1).unwrap().split(';').next().unwrap();
    let (minor, patch) = version.rsplit_once('.').unwrap();
    (minor.to_string(), patch.parse().unwrap())
}

/// A built fixture as if built for contract patch `patch`: each
/// `wharf:plugin/...@<ours>` name in the binary rewritten (same length, so
/// the binary stays valid). A component built for an earlier patch is just
/// that, when it uses nothing the later patch added.
fn built_for_patch(file: &str, patch: u32) -> Vec<u8> {
    let (minor, ours) = contract_version();
    let (from, to) = (format!("@{minor}.{ours}"), format!("@{minor}.{patch}"));
    assert_eq!(from.len(), to.len(), "the rewrite must keep the binary's length");
    let mut wasm = std::fs::read(crate::harness::wasm_dir().join(format!("{file}.wasm"))).unwrap();
    let mut rewritten = 0;
    for i in 0..wasm.len().saturating_sub(from.len() + 1) {
        // Only a `wharf:plugin/<name>@` version, whole: `wasi:io/poll@0.2.12` is not ours.
        let ours_before = wasm[i.saturating_sub(48)..i].windows(13).any(|w| w == b"wharf:plugin/");
        let whole = !matches!(wasm[i + from.len()], b'0'..=b'9' | b'.');
        if ours_before && whole && wasm[i..].starts_with(from.as_bytes()) {
            wasm[i..i + to.len()].copy_from_slice(to.as_bytes());
            rewritten += 1;
        }
    }
    assert!(rewritten > 0, "no contract version in {file}");
    wasm
}

/// A component built for an earlier patch of the contract (a patch only
/// adds functions) is served; one built for a later patch, which may
/// import what this host lacks, is refused with both versions named.
#[tokio::test(flavor = "multi_thread")]
async fn a_component_built_for_an_earlier_patch_of_the_contract_is_served() {
    let (minor, ours) = contract_version();
    assert!(ours > 0, "no earlier patch to try");
    let w = Wharf::start_with(with_admin(vec!["versioned=versioned-v1"])).await;
    let auth = format!("Bearer {TOKEN}");
    let headers = [("authorization", auth.as_str())];
    let put = |wasm| w.send("PUT", "/admin/components/versioned", &headers, wasm);
    let r = put(built_for_patch("versioned-v2", ours - 1)).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(serving(&w).await, "v2");

    let r = put(built_for_patch("versioned-v1", ours + 1)).await.unwrap();
    assert_eq!(r.status, 422);
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains(&format!("wharf:plugin@{minor}.{}", ours + 1)), "{message}");
    assert!(message.contains(&format!("wharf:plugin@{minor}.{ours}")), "{message}");
    assert_eq!(serving(&w).await, "v2", "the refused build did not replace the one serving");
}
