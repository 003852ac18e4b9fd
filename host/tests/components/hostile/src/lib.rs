//! Test fixture: a component that tries everything a hostile plugin would.
//!
//! `GET /hostile/{attack}` makes one attempt and answers what it got back:
//! `{"attack", "refused": bool, "detail"}`. The sandbox works when every
//! attempt is refused and the host keeps serving (`tests/sandbox.rs`).
//! The `memory` and `spin` attacks never answer: the host cuts them off.

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use serde_json::json;
use wharf_sdk::{ApiError, App, Component, HostError, Reply, Req, calls, events, kv};

struct Hostile;

impl Component for Hostile {
    fn app() -> App {
        let mut app = App::new("hostile").get("/hostile/{attack}", attack).publishes("hostile_events");
        // The greedy build claims business streams in its manifest.
        if cfg!(feature = "greedy") {
            app = app.publishes("order_stream").publishes("order_completed");
        }
        // The poacher joins payment's consumer group, to take its events.
        if cfg!(feature = "poacher") {
            app = app.subscribe("order_stream", "payment-refunds", |_| Ok(()));
        }
        // The sneaky build acts while it is being loaded, before its grants
        // are checked: a write under no namespace and an ungranted call.
        if cfg!(feature = "sneaky") {
            let _ = kv::set("sneaked", b"during describe");
            let _ = calls::call("payment", "GET", "/orders", b"", None);
        }
        // The scripted build puts markup where people read its manifest (the
        // console, /docs): it must show there as text, never run.
        if cfg!(feature = "scripted") {
            app = app.get("/hostile/<img/src=x/onerror=document.title='pwned'>", attack).doc(
                "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">",
                None,
                None,
            );
        }
        app
    }
}

wharf_sdk::export_component!(Hostile);

fn query<'a>(req: &'a Req, name: &str) -> &'a str {
    req.query().split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')).unwrap_or("")
}

fn attack(req: &Req) -> Result<Reply, ApiError> {
    let name = req.param("attack");
    let (refused, detail) = match name {
        // Payment's record of an order, by the key name payment uses.
        "read-other" => {
            let key = format!("order:{}", query(req, "id"));
            match kv::get(&key) {
                Ok(None) => (true, format!("{key}: absent in my namespace")),
                Ok(Some(v)) => (false, String::from_utf8_lossy(&v).into_owned()),
                Err(e) => (matches!(e, HostError::Invalid(_)), e.to_string()),
            }
        }
        // Keys built to leave the namespace or confuse the key layout.
        "crafted-keys" => {
            let crafted = ["}:kv:x", "x}{payment", "a{b}{c}", "{}:x", "line\nbreak", "nul\0byte"];
            let mut allowed = Vec::new();
            for key in crafted {
                if kv::set(key, b"pwned").is_ok() {
                    allowed.push(key);
                }
            }
            (allowed.is_empty(), format!("written: {allowed:?}"))
        }
        // A partition named like another namespace: a partition of its own
        // namespace all the same (the test looks where it landed).
        "partition-named-payment" => match kv::set("{payment}:kv:order:x", b"mine") {
            Ok(_) => (false, "written".to_string()),
            Err(e) => (true, e.to_string()),
        },
        // A crafted key behind an innocent one in one write-many: the whole
        // batch is refused, the innocent write with it.
        "write-many-escape" => {
            let mut writes = kv::Writes::new();
            writes.set("innocent", b"x").set("{payment}:kv:order:x", b"pwned");
            match writes.apply() {
                Ok(done) => (false, format!("written: {done:?}")),
                Err(e) => (matches!(e, HostError::Invalid(_)), e.to_string()),
            }
        }
        // Not an attack: write-many answers as each write's own function
        // would, and refuses a batch that sets and increments one key.
        // "refused" is true when every answer is the expected one.
        "write-many-outcomes" => write_many_outcomes(),
        // A forged customer refund: would give stock back and refund the order.
        "publish" => {
            let forged = json!({"type": "refund_requested", "id": query(req, "id"),
                                "product_id": query(req, "product"), "quantity": 1000});
            match events::publish("order_stream", &forged) {
                Ok(id) => (false, format!("published as {id}")),
                Err(e) => (matches!(e, HostError::Invalid(_)), e.to_string()),
            }
        }
        "publish-later" => match events::publish_after("order_completed", &json!({"id": "x"}), 10) {
            Ok(()) => (false, "scheduled".to_string()),
            Err(e) => (matches!(e, HostError::Invalid(_)), e.to_string()),
        },
        // A write that smuggles an event to a stream it may not publish to:
        // refused, and the write with it.
        "publish-with-write" => {
            match kv::set_if_absent_and_publish("smuggled", b"x", None, "order_completed", &json!({"id": "x"}), 0) {
                Ok(written) => (false, format!("written: {written}")),
                Err(e) => (matches!(e, HostError::Invalid(_)), e.to_string()),
            }
        }
        // One key written twice through the outbox, hoping for two events
        // (to its own stream): the second write must publish nothing.
        "outbox-twice" => {
            let write = || kv::set_if_absent_and_publish("twice", b"x", None, "hostile_events", &json!({"n": 1}), 0);
            match (write(), write()) {
                (Ok(first), Ok(second)) => (first && !second, format!("written: {first}, then {second}")),
                (a, b) => (false, format!("failed: {a:?}, {b:?}")),
            }
        }
        "call" => match calls::call("payment", "GET", "/orders", b"", None) {
            Ok(resp) => (false, format!("payment answered {}", resp.status)),
            Err(e) => (matches!(e, HostError::Invalid(_)), e.to_string()),
        },
        // The caller's credentials, if the host handed them over; and who
        // the host says the caller is.
        "headers" => {
            let leaked: Vec<&str> = ["authorization", "x-api-key", "cookie", "proxy-authorization"]
                .into_iter()
                .filter(|h| req.header(h).is_some())
                .collect();
            let caller = req.header("x-wharf-subject").unwrap_or("");
            (leaked.is_empty(), format!("leaked: {leaked:?}; caller: {caller}"))
        }
        // A log message that would forge a host log line.
        "forge-log" => {
            wharf_sdk::log::info("innocent\nFORGED wharf: admin token accepted", &[("k", "v\r\nFORGED too")]);
            (true, "logged".to_string())
        }
        // A thousand log lines and a hundred events at once.
        "flood" => {
            for i in 0..1000 {
                wharf_sdk::log::info("flood line", &[("n", &format!("{i}"))]);
            }
            let published =
                (0..100).filter(|_| events::publish("hostile_events", &json!({"flood": true})).is_ok()).count();
            (published < 100, format!("published {published}"))
        }
        // A value and an event far over the host's limits (2 MiB).
        "big-value" => {
            let big = vec![b'x'; 2 << 20];
            match kv::set("big", &big) {
                Ok(_) => (false, "stored 2 MiB".to_string()),
                Err(e) => (matches!(e, HostError::Invalid(_)), e.to_string()),
            }
        }
        "env" => {
            let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
            (vars.is_empty(), format!("variables: {vars:?}"))
        }
        "files" => match std::fs::read_to_string("/etc/passwd").or_else(|_| std::fs::read_to_string("wharf.toml")) {
            Ok(text) => (false, format!("read {} bytes", text.len())),
            Err(e) => (true, e.to_string()),
        },
        "network" => match std::net::TcpStream::connect(("127.0.0.1", query(req, "port").parse().unwrap_or(6379))) {
            Ok(_) => (false, "connected".to_string()),
            Err(e) => (true, e.to_string()),
        },
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "spin" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        other => return Err(ApiError::not_found(format!("no attack {other:?}"))),
    };
    Reply::json(200, &json!({"attack": name, "refused": refused, "detail": detail}))
}

fn write_many_outcomes() -> (bool, String) {
    use kv::{IncrementOutcome, Written};
    let batch = || {
        let mut w = kv::Writes::new();
        w.set_if_absent("wm:a", b"1", None)
            .increment("wm:n", 5, None, Some(7), Some("wm:once"))
            .set("wm:b", b"x")
            .delete("wm:gone");
        w.apply()
    };
    let first = batch();
    let again = batch();
    let over = kv::Writes::new().increment("wm:n", 5, None, Some(7), None).apply();
    let mixed = kv::Writes::new().set("wm:n", b"x").increment("wm:n", 1, None, None, None).apply();
    let expected_first = [
        Written::SetIfAbsent(true),
        Written::Increment(IncrementOutcome::Applied(5)),
        Written::Set(1),
        Written::Delete(false),
    ];
    let expected_again = [
        Written::SetIfAbsent(false),
        Written::Increment(IncrementOutcome::AlreadyApplied(b"5".to_vec())),
        Written::Set(2),
        Written::Delete(false),
    ];
    // One counter twice in a batch, and once more after its delete: each
    // increment sees the one before it. Versions count every write.
    let twice = kv::Writes::new()
        .increment("wm:c", 2, None, None, None)
        .increment("wm:c", 3, None, None, None)
        .delete("wm:c")
        .increment("wm:c", 4, None, None, None)
        .increment("wm:c", 1, None, None, None)
        .apply();
    let applied = |n| Written::Increment(IncrementOutcome::Applied(n));
    let expected_twice = [applied(2), applied(5), Written::Delete(true), applied(4), applied(5)];
    let version = kv::get_versioned("wm:c").ok().flatten().map(|v| (v.value, v.version));
    // Keys that expire are not listed: one that loses its expiry (a set) is,
    // a counter that keeps it (an increment) is not (the test reads the index).
    let expiring = kv::set_if_absent("wm:ttl-set", b"1", Some(600_000)).and_then(|_| kv::set("wm:ttl-set", b"2"));
    let counted =
        kv::set_if_absent("wm:ttl-n", b"1", Some(600_000)).and_then(|_| kv::increment("wm:ttl-n", 1, None, None, None));
    let ok = matches!(&first, Ok(v) if format!("{v:?}") == format!("{expected_first:?}"))
        && matches!(&again, Ok(v) if format!("{v:?}") == format!("{expected_again:?}"))
        && matches!(&over, Ok(v) if format!("{v:?}") == format!("{:?}", [Written::Increment(IncrementOutcome::OutOfRange(5))]))
        && matches!(&mixed, Err(HostError::Invalid(_)))
        && kv::get("wm:n").ok().flatten().as_deref() == Some(b"5".as_slice())
        && matches!(&twice, Ok(v) if format!("{v:?}") == format!("{expected_twice:?}"))
        && version == Some((b"5".to_vec(), 2))
        && matches!(expiring, Ok(2))
        && matches!(counted, Ok(IncrementOutcome::Applied(2)));
    (
        ok,
        format!(
            "first {first:?}; again {again:?}; over {over:?}; mixed {mixed:?}; twice {twice:?} then {version:?}; expiring {expiring:?}; counted {counted:?}"
        ),
    )
}
