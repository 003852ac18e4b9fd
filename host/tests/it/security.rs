//! Who may do what: API keys and JWTs, roles, identities the client cannot
//! forge, customers confined to their own orders, and a rate limit that
//! several hosts share through Redis.

use std::time::Duration;

use crate::harness::{Options, TestRedis, Wharf};
use serde_json::{Value, json};

const ADMIN: &str = "k-admin-0000000000000";
const ALICE: &str = "k-alice-0000000000000";
const BOB: &str = "k-bob-000000000000000";
const SECRET: &str = "jwt-secret-for-the-tests-0123456789";

fn secured(extra: &[(&str, &str)]) -> Options {
    let mut env = vec![
        ("WHARF_API_KEYS".to_string(), format!("{ADMIN}:admin:ops,{ALICE}:customer:alice,{BOB}:customer:bob")),
        ("WHARF_JWT_SECRET".to_string(), SECRET.to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Options { components: vec!["inventory", "payment"], env, ..Default::default() }
}

async fn call(w: &Wharf, key: Option<&str>, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call_with(w, key, &[], method, path, body).await
}

async fn call_with(
    w: &Wharf,
    key: Option<&str>,
    extra: &[(&str, &str)],
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    headers.extend_from_slice(extra);
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let r = w.send(method, path, &headers, bytes).await.unwrap();
    let json = if r.body.is_empty() { Value::Null } else { r.json() };
    (r.status, json)
}

fn token(sub: &str, role: &str, exp: u64, secret: &str) -> String {
    let claims = json!({"sub": sub, "role": role, "exp": exp});
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_decide_who_may_do_what() {
    let w = Wharf::start_with(secured(&[])).await;
    let product = json!({"name": "Guarded", "price": 1.5, "quantity": 10});

    let (s, e) = call(&w, None, "POST", "/products", Some(product.clone())).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("unauthenticated")), "{e}");
    let (s, e) = call(&w, Some(ALICE), "POST", "/products", Some(product.clone())).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("forbidden")), "{e}");
    let (s, e) = call(&w, Some("k-not-a-key-000000000"), "POST", "/products", Some(product.clone())).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_credentials")), "{e}");
    // A client cannot make itself admin with the headers the host sets.
    let forged = [("x-wharf-role", "admin"), ("x-wharf-subject", "ops")];
    let (s, _) = call_with(&w, Some(ALICE), &forged, "POST", "/products", Some(product.clone())).await;
    assert_eq!(s, 403);
    let (s, p) = call(&w, Some(ADMIN), "POST", "/products", Some(product.clone())).await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_string();

    // Products are public to read by default.
    let (s, _) = call(&w, None, "GET", &format!("/products/{id}"), None).await;
    assert_eq!(s, 200);

    // Orders: a customer's own.
    let order = json!({"product_id": id, "quantity": 1});
    let (s, _) = call(&w, None, "POST", "/orders", Some(order.clone())).await;
    assert_eq!(s, 401);
    let (s, mine) = call_with(&w, Some(ALICE), &forged, "POST", "/orders", Some(order.clone())).await;
    assert_eq!((s, &mine["customer"]), (201, &json!("alice")), "{mine}");
    let oid = mine["id"].as_str().unwrap().to_string();
    let (s, _) = call(&w, Some(BOB), "POST", "/orders", Some(order.clone())).await;
    assert_eq!(s, 201);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while call(&w, Some(ADMIN), "GET", &format!("/orders/{oid}"), None).await.1["status"] != "completed" {
        assert!(std::time::Instant::now() < deadline, "order never completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Another customer's order is not found, as if it did not exist.
    let (s, e) = call(&w, Some(BOB), "GET", &format!("/orders/{oid}"), None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, e) = call(&w, Some(BOB), "POST", &format!("/orders/{oid}/refund"), None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, _) = call(&w, Some(ALICE), "GET", &format!("/orders/{oid}"), None).await;
    assert_eq!(s, 200);
    let count = |v: &Value| v.as_array().map(Vec::len).unwrap_or(usize::MAX);
    let (_, list) = call(&w, Some(ALICE), "GET", "/orders", None).await;
    assert_eq!(count(&list), 1, "{list}");
    let (_, list) = call(&w, Some(ADMIN), "GET", "/orders", None).await;
    assert_eq!(count(&list), 2, "{list}");
    let (s, r) = call(&w, Some(ALICE), "POST", &format!("/orders/{oid}/refund"), None).await;
    assert_eq!(s, 202, "{r}");

    // JWTs: signed with the secret and not expired.
    let carol = token("carol", "customer", 4_000_000_000, SECRET);
    let (s, o) = call(&w, Some(&carol), "POST", "/orders", Some(order.clone())).await;
    assert_eq!((s, &o["customer"]), (201, &json!("jwt#carol")), "a JWT subject is qualified by its issuer: {o}");
    for bad in [
        token("carol", "customer", 1_000, SECRET),
        token("carol", "admin", 4_000_000_000, "another-secret-of-32-characters-x"),
    ] {
        let (s, e) = call(&w, Some(&bad), "POST", "/orders", Some(order.clone())).await;
        assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_credentials")), "{e}");
    }
    assert!(!w.logs().contains(SECRET) && !w.logs().contains(ALICE), "a secret reached the logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_reads_can_be_turned_off() {
    let w = Wharf::start_with(secured(&[("WHARF_INVENTORY_ANONYMOUS_READ", "false")])).await;
    let (s, e) = call(&w, None, "GET", "/products", None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("unauthenticated")));
    let (s, _) = call(&w, Some(ALICE), "GET", "/products", None).await;
    assert_eq!(s, 200);
}

/// Two hosts on one Redis: a client's budget is one, whichever host it hits.
#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_is_shared_by_every_host() {
    let limits = [("WHARF_RATE_LIMIT_PER_SECOND", "1"), ("WHARF_RATE_LIMIT_BURST", "5")];
    let a = Wharf::start_with(secured(&limits)).await;
    let b = Wharf::start_with(Options { redis: Some(a.redis.borrow()), ..secured(&limits) }).await;
    let (mut ok, mut limited) = (0, 0);
    for i in 0..12 {
        let host = if i % 2 == 0 { &a } else { &b };
        let r = host.send("GET", "/products", &[("authorization", &format!("Bearer {ALICE}"))], Vec::new()).await;
        let r = r.unwrap();
        match r.status {
            200 => ok += 1,
            429 => {
                limited += 1;
                assert_eq!(r.json()["error"]["code"], "rate_limited");
                let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=2).contains(&wait), "Retry-After {wait}");
            }
            s => panic!("answered {s}"),
        }
    }
    // The burst of 5, plus at most what 1/s refills while the loop runs.
    assert!((5..=7).contains(&ok), "{ok} allowed, {limited} limited");
    assert_eq!(ok + limited, 12);
    // Another client has its own budget.
    let r = b.send("GET", "/products", &[("authorization", &format!("Bearer {BOB}"))], Vec::new()).await.unwrap();
    assert_eq!(r.status, 200);
    // Guessing keys spends the address's budget: 401s, then 429s.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let r = a.send("GET", "/products", &[("authorization", "Bearer k-guess-0000000000000")], Vec::new()).await;
        statuses.push(r.unwrap().status);
    }
    assert!(statuses.contains(&401) && statuses.contains(&429), "{statuses:?}");
}

/// RS256 tokens from an identity provider, checked against a JWKS file.
#[tokio::test(flavor = "multi_thread")]
async fn rs256_tokens_are_checked_against_the_jwks_file() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let jwks = fixtures.join("jwks.json").display().to_string();
    let w = Wharf::start_with(secured(&[("WHARF_JWT_JWKS_FILE", &jwks)])).await;
    let product = json!({"name": "Signed", "price": 2.0, "quantity": 5});
    let (_, p) = call(&w, Some(ADMIN), "POST", "/products", Some(product)).await;

    let claims = json!({"sub": "erin", "role": "customer", "exp": 4_000_000_000u64});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("wharf-test-1".into());
    let sign = |file: &str| {
        let key = jsonwebtoken::EncodingKey::from_rsa_der(&std::fs::read(fixtures.join(file)).unwrap());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let order = json!({"product_id": p["id"], "quantity": 1});
    let (s, o) = call(&w, Some(&sign("rs256-test-key.der")), "POST", "/orders", Some(order.clone())).await;
    assert_eq!((s, o["customer"].as_str()), (201, Some("jwt#erin")), "{o}");
    let (s, e) = call(&w, Some(&sign("rs256-other-key.der")), "POST", "/orders", Some(order)).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_credentials")), "{e}");
}

/// Lists page with `?limit=N&after=<id>` and a `Link` to the next page:
/// every item exactly once, in id order; a customer's pages hold only its
/// own orders; bad paging is a 422.
#[tokio::test(flavor = "multi_thread")]
async fn lists_page_through_every_item_once() {
    let w = Wharf::start_with(secured(&[])).await;
    let mut products = Vec::new();
    for i in 0..7 {
        let (s, p) = call(
            &w,
            Some(ADMIN),
            "POST",
            "/products",
            Some(json!({"name": format!("p{i}"), "price": 1, "quantity": 100})),
        )
        .await;
        assert_eq!(s, 201, "{p}");
        products.push(p["id"].as_str().unwrap().to_string());
    }
    let mut alice = Vec::new();
    for (i, who) in [ALICE, BOB, ALICE, ALICE, BOB, ALICE].iter().enumerate() {
        let (s, o) =
            call(&w, Some(who), "POST", "/orders", Some(json!({"product_id": products[i], "quantity": 1}))).await;
        assert_eq!(s, 201, "{o}");
        if *who == ALICE {
            alice.push(o["id"].as_str().unwrap().to_string());
        }
    }

    // Follows the `Link` headers from `first`; returns the ids in order, the
    // pages' sizes and the cursors the links carried.
    let walk = async |key: &str, first: &str| {
        let (mut ids, mut sizes, mut next) = (Vec::new(), Vec::new(), Some(first.to_string()));
        let mut cursors = Vec::new();
        while let Some(path) = next.take() {
            let auth = format!("Bearer {key}");
            let r = w.send("GET", &path, &[("authorization", &auth)], Vec::new()).await.unwrap();
            assert_eq!(r.status, 200, "{path}: {}", r.json());
            let page = r.json();
            sizes.push(page.as_array().unwrap().len());
            ids.extend(page.as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_string()));
            next = r.headers.get("link").map(|l| {
                let l = l.to_str().unwrap();
                assert!(l.ends_with(r#">; rel="next""#), "{l}");
                let link = l[1..l.find('>').unwrap()].to_string();
                cursors.push(link.split("after=").nth(1).unwrap().to_string());
                link
            });
            assert!(sizes.len() < 20, "the pages never end");
        }
        (ids, sizes, cursors)
    };
    let mut sorted = products.clone();
    sorted.sort();
    let (ids, sizes, _) = walk(ADMIN, "/products?limit=3").await;
    assert_eq!(ids, sorted, "every product once, in id order");
    assert_eq!(sizes, [3, 3, 1]);
    let (ids, ..) = walk(ADMIN, "/products").await;
    assert_eq!(ids.len(), 7, "no limit: everything, as before");

    // Six orders: a full last page, then an empty one ends the walk.
    let (ids, sizes, _) = walk(ADMIN, "/orders?limit=2").await;
    assert_eq!((ids.len(), sizes), (6, vec![2, 2, 2, 0]));
    // Alice's four orders lie between Bob's two: her pages are full pages of
    // her own, and no link hands her one of Bob's ids.
    alice.sort();
    for limit in [1, 2, 3] {
        let (ids, sizes, cursors) = walk(ALICE, &format!("/orders?limit={limit}")).await;
        assert_eq!(ids, alice, "alice pages through her own orders only, in id order (limit {limit})");
        assert!(sizes[..sizes.len() - 1].iter().all(|s| *s == limit), "{sizes:?}");
        assert!(cursors.iter().all(|c| alice.contains(c)), "a cursor names an order that is not hers: {cursors:?}");
    }

    for bad in ["limit=0", "limit=1001", "limit=two", "after=../x", "limit=2&after=../x"] {
        for route in ["/products", "/orders"] {
            let (s, e) = call(&w, Some(ADMIN), "GET", &format!("{route}?{bad}"), None).await;
            assert_eq!((s, e["error"]["code"].as_str()), (422, Some("invalid_query")), "{route}?{bad}: {e}");
        }
    }
}

/// Key rotation without a restart: the identity provider's new key set
/// replaces the file, and within a poll the host trusts the new key and no
/// longer the retired one; a half-written file changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_jwks_file_is_trusted_without_a_restart() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = crate::harness::scratch_dir("jwks-rotation");
    let file = dir.join("jwks.json");
    std::fs::copy(fixtures.join("jwks.json"), &file).unwrap();
    let path = file.display().to_string();
    let w = Wharf::start_with(secured(&[("WHARF_JWT_JWKS_FILE", &path), ("WHARF_JWT_JWKS_POLL_MS", "100")])).await;
    let sign = |der: &str, kid: &str| {
        let claims = json!({"sub": "frank", "role": "customer", "exp": 4_000_000_000u64});
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.into());
        let key = jsonwebtoken::EncodingKey::from_rsa_der(&std::fs::read(fixtures.join(der)).unwrap());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let (old, new) = (sign("rs256-test-key.der", "wharf-test-1"), sign("rs256-other-key.der", "wharf-test-2"));
    assert_eq!(call(&w, Some(&old), "GET", "/orders", None).await.0, 200);
    assert_eq!(call(&w, Some(&new), "GET", "/orders", None).await.0, 401);

    // Written beside and renamed over, as secret mounts and careful tools do.
    let tmp = dir.join("jwks.json.tmp");
    std::fs::copy(fixtures.join("jwks-other.json"), &tmp).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while call(&w, Some(&new), "GET", "/orders", None).await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "the new key was never trusted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, e) = call(&w, Some(&old), "GET", "/orders", None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_credentials")), "{e}");

    std::fs::write(&file, b"{\"keys\": [").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(call(&w, Some(&new), "GET", "/orders", None).await.0, 200, "a broken file keeps the keys");
    assert!(w.logs().contains("the JWKS file is not usable"), "the broken file is reported");
    assert_eq!(w.logs().matches("the JWKS file is not usable").count(), 1, "once, not every poll");
}

/// Redis over TLS (client certificates required), logged in as an ACL user
/// limited to Wharf's keys and no dangerous commands: the whole order flow
/// works, and the password never reaches the logs.
#[tokio::test(flavor = "multi_thread")]
async fn redis_over_tls_as_a_least_privilege_acl_user() {
    let redis = TestRedis::start_secured("wharf", "redis-pass-for-tls-test", true);
    let env = redis.tls_env();
    let plain = format!("redis://wharf:redis-pass-for-tls-test@127.0.0.1:{}", redis.port);
    let w = Wharf::start_with(Options {
        components: vec!["inventory", "payment", "analytics"],
        env,
        redis: Some(redis),
        ..Default::default()
    })
    .await;
    let id = w.create_product("Over TLS", 1.5, 5).await;
    let (status, order) = w.order(&id, 2).await;
    assert_eq!(status, 201, "{order}");
    w.wait_order_status(order["id"].as_str().unwrap(), "completed", Duration::from_secs(20)).await;
    w.wait_events_handled(Duration::from_secs(20)).await;
    assert_eq!(w.stock(&id).await, 3);
    // It really is TLS: the same port refuses a plain-text client.
    let refused = redis::Client::open(plain)
        .unwrap()
        .get_connection()
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(refused.is_err());
    assert!(!w.logs().contains("redis-pass-for-tls-test"), "the password leaked into the logs");
    assert!(w.logs().contains("rediss://***@127.0.0.1"), "the URL is logged redacted");
}

/// A wrong Redis password: the host still starts, is not ready, and says
/// why, without printing the password it was given.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_redis_password_is_reported_without_the_password() {
    let redis = TestRedis::start_secured("wharf", "the-right-password", false);
    let dir = crate::harness::scratch_dir("wrongpass");
    let port = crate::harness::free_port();
    let log = dir.join("wharf.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("serve")
        .current_dir(&dir)
        .env("REDIS_URL", format!("redis://wharf:a-wrong-password@127.0.0.1:{}", redis.port))
        .env("WHARF_LISTEN", format!("127.0.0.1:{port}"))
        .env("NO_COLOR", "1")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let client = crate::harness::Client::new(port);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let ready = loop {
        let answer = tokio::time::timeout(Duration::from_secs(3), client.send("GET", "/readyz", &[], Vec::new())).await;
        if let Ok(Ok(r)) = answer {
            break (r.status, String::from_utf8_lossy(&r.body).into_owned());
        }
        assert!(std::time::Instant::now() < deadline, "wharf never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ready.0, 503, "{}", ready.1);
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!logs.contains("a-wrong-password") && !ready.1.contains("a-wrong-password"), "{logs}");
    assert!(logs.contains("redis://***@127.0.0.1"), "{logs}");
    let _ = std::fs::remove_dir_all(&dir);
}
