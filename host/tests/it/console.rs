//! The console at `/console`: its session and headers over plain HTTP, then
//! the page itself in headless Chromium (log in, a product and an order
//! through the forms, a `.wasm` deployed from the page, a dead letter
//! replayed, a script in a product's name that stays text). The browser run
//! saves a screenshot of each view to `docs/console/`.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use fantoccini::Locator;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::browser::Browser;
use crate::harness::{Options, Wharf, wasm_dir};

const TOKEN: &str = "console-admin-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(20);

fn host() -> Options {
    let env = vec![
        ("WHARF_ADMIN_TOKEN".to_string(), TOKEN.to_string()),
        ("WHARF_PAYMENT_SETTLE_DELAY_MS".to_string(), "300".to_string()),
    ];
    Options { components: vec!["inventory", "payment", "analytics"], env, ..Default::default() }
}

/// The session cookie's `name=value`, from a login's answer.
fn session_cookie(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_session_is_an_http_only_cookie_that_the_admin_api_takes_only_from_the_console() {
    let w = Wharf::start_with(host()).await;
    let page = w.send("GET", "/console", &[], Vec::new()).await.unwrap();
    assert_eq!(page.status, 200);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains("/console/app.js") && !html.contains("<script>"), "no inline script");

    let json = [("content-type", "application/json"), ("x-wharf-console", "1")];
    // A wrong token, and a login another site's form could send (no header, not JSON).
    let r = w.send("POST", "/console/login", &json, br#"{"token":"wrong"}"#.to_vec()).await.unwrap();
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (403, Some("forbidden")));
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let r = w.send("POST", "/console/login", &form, format!("token={TOKEN}").into_bytes()).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(!r.headers.contains_key("set-cookie"));

    let body = serde_json::json!({"token": TOKEN}).to_string().into_bytes();
    let r = w.send("POST", "/console/login", &json, body).await.unwrap();
    assert_eq!(r.status, 200);
    let set = r.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"), "{set}");
    assert!(!set.contains("Secure"), "plain HTTP: a browser would drop a Secure cookie: {set}");
    let cookie = session_cookie(&set);
    // Behind a proxy that ends TLS, the cookie never travels in clear.
    let proxied = [json[0], json[1], ("x-forwarded-proto", "https")];
    let body = serde_json::json!({"token": TOKEN}).to_string().into_bytes();
    let r = w.send("POST", "/console/login", &proxied, body).await.unwrap();
    assert!(r.headers["set-cookie"].to_str().unwrap().ends_with("; Secure"), "{:?}", r.headers);

    // An admin-role API key opens a session too; a customer's does not.
    let mut opts = host();
    opts.env.push((
        "WHARF_API_KEYS".into(),
        "ops-key-0123456789abcdef:admin:ops,cust-key-0123456789abcdef:customer:c".into(),
    ));
    let keyed = Wharf::start_with(opts).await;
    for (key, want) in [("ops-key-0123456789abcdef", 200), ("cust-key-0123456789abcdef", 403)] {
        let body = serde_json::json!({"token": key}).to_string().into_bytes();
        let r = keyed.send("POST", "/console/login", &json, body).await.unwrap();
        assert_eq!(r.status, want, "{key}");
    }
    drop(keyed);

    // The admin API takes the cookie only with the console's header.
    let r = w.send("GET", "/admin/components", &[("cookie", &cookie)], Vec::new()).await.unwrap();
    assert_eq!(r.status, 401, "a cookie alone is what a forged cross-site request would carry");
    let r =
        w.send("GET", "/admin/components", &[("cookie", &cookie), ("x-wharf-console", "1")], Vec::new()).await.unwrap();
    assert_eq!(r.status, 200);
    let forged = format!("{}0", &cookie);
    let r =
        w.send("GET", "/admin/components", &[("cookie", &forged), ("x-wharf-console", "1")], Vec::new()).await.unwrap();
    assert_eq!(r.status, 401);
    let r = w.send("GET", "/console/session", &[("cookie", &cookie)], Vec::new()).await.unwrap();
    assert_eq!(r.status, 200);
    let r = w.send("GET", "/console/live", &[], Vec::new()).await.unwrap();
    assert_eq!(r.status, 401);

    // The live stream: server-sent events, a snapshot with the components.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", w.port)).await.unwrap();
    let ask = format!("GET /console/live HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\n\r\n");
    s.write_all(ask.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 65536];
    let until = std::time::Instant::now() + WAIT;
    while !String::from_utf8_lossy(&seen).contains("\"components\"") {
        assert!(std::time::Instant::now() < until, "no snapshot: {}", String::from_utf8_lossy(&seen));
        let n = tokio::time::timeout(WAIT, s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("text/event-stream") && text.contains("\"inventory\""), "{text}");

    // Logging out clears the cookie in the browser.
    let r =
        w.send("POST", "/console/logout", &[("cookie", &cookie), ("x-wharf-console", "1")], Vec::new()).await.unwrap();
    assert!(r.headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
}

/// Where the screenshots go: `docs/console/` of the repository with
/// `WHARF_SAVE_SCREENSHOTS=1` (how the README's are made), else a scratch
/// directory, so that a test run leaves the tree as it was.
fn shots() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| match std::env::var("WHARF_SAVE_SCREENSHOTS").as_deref() {
        Ok("1") => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/console"),
        _ => crate::harness::scratch_dir("console-shots"),
    })
    .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_runs_the_shop_deploys_and_replays_a_dead_letter_from_the_console() {
    let mut w = Wharf::start_with(host()).await;
    let b = Browser::start().await;
    let c = &b.client;
    let url = |path: &str| format!("{}{path}", w.url());
    c.goto(&url("/console")).await.unwrap();

    // A wrong token is refused, and nothing behind the login shows.
    b.wait_text("#login h2", WAIT, |t| t == "Log in").await;
    b.screenshot(&shots().join("login.png")).await;
    c.find(Locator::Css("#token")).await.unwrap().send_keys("not-the-token").await.unwrap();
    c.find(Locator::Css("#login-form button")).await.unwrap().click().await.unwrap();
    b.wait_text("#login-error", WAIT, |t| t.contains("not valid")).await;
    assert!(!c.find(Locator::Css("#tabs")).await.unwrap().is_displayed().await.unwrap());

    // By keyboard: the token field has the focus, Enter logs in.
    let focused = c.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("token"), "the login form takes the focus");
    focused.send_keys(&format!("{TOKEN}\u{E007}")).await.unwrap();
    b.wait_text("[data-component=inventory] h3", WAIT, |t| t == "inventory").await;
    let cookies = c.execute("return document.cookie", vec![]).await.unwrap();
    assert!(!cookies.as_str().unwrap_or_default().contains("wharf_console"), "the session is HttpOnly: {cookies}");
    // The live numbers arrive without a reload.
    b.wait_text("#link", WAIT, |t| t.starts_with("live")).await;
    b.screenshot(&shots().join("components.png")).await;

    // The shop: a product whose name is a script stays text; an order moves to completed on screen.
    // The views switch by keyboard too: focus a tab, press Enter.
    let shop_tab = c.find(Locator::Css("#tabs [data-view=shop]")).await.unwrap();
    c.execute("arguments[0].focus()", vec![serde_json::to_value(&shop_tab).unwrap()]).await.unwrap();
    c.active_element().await.unwrap().send_keys("\u{E007}").await.unwrap();
    b.wait_text("#shop h2", WAIT, |t| t == "Shop").await;
    let hostile = r#"<img src=x onerror="document.title='pwned'">"#;
    for (name, quantity) in [(hostile, "3"), ("Lamp", "5")] {
        c.find(Locator::Css("#product-name")).await.unwrap().send_keys(name).await.unwrap();
        c.find(Locator::Css("#product-price")).await.unwrap().send_keys("12.5").await.unwrap();
        c.find(Locator::Css("#product-quantity")).await.unwrap().send_keys(quantity).await.unwrap();
        c.find(Locator::Css("#product-form button")).await.unwrap().click().await.unwrap();
        b.wait_text("#shop-status", WAIT, |t| t.contains("Created")).await;
        b.wait_text("#products tbody", WAIT, |t| t.contains(name)).await;
    }
    assert!(c.find_all(Locator::Css("#products img")).await.unwrap().is_empty(), "the name became an element");
    assert_ne!(c.title().await.unwrap(), "pwned");
    let lamp = c.find(Locator::XPath("//table[@id='products']//tr[td[1]='Lamp']")).await.unwrap();
    let lamp_id = lamp.attr("data-product").await.unwrap().unwrap();
    c.find(Locator::Css(&format!("#order-product option[value='{lamp_id}']"))).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("#order-form button")).await.unwrap().click().await.unwrap();
    let placed = b.wait_text("#shop-status", WAIT, |t| t.starts_with("Placed order")).await;
    let order = placed.trim_start_matches("Placed order ").trim_end_matches('.').to_string();
    let badge = format!("[data-order='{order}'] .badge");
    b.wait_text(&badge, WAIT, |t| t == "completed").await;
    assert_eq!(w.order_status(&order).await, "completed");
    b.wait_text(&format!("#products [data-product='{lamp_id}'] td:nth-child(3)"), WAIT, |t| t == "4").await;
    // Its timeline: every stream hop of its request, and who is done with it.
    c.find(Locator::Css(&format!("[data-order='{order}'] button.secondary"))).await.unwrap().click().await.unwrap();
    b.wait_text(&format!("[data-order='{order}'] [data-hop=payment_settle]"), WAIT, |t| {
        t.contains("payment-settle done")
    })
    .await;
    b.wait_text(&format!("[data-order='{order}'] [data-hop=order_completed]"), WAIT, |t| {
        t.contains("inventory-group done") && t.contains("analytics-group done")
    })
    .await;
    b.screenshot(&shots().join("shop.png")).await;
    // A refund from the page: the status moves on to refunded, live.
    c.find(Locator::Css(&format!("[data-order='{order}'] button.refund"))).await.unwrap().click().await.unwrap();
    b.wait_text(&badge, WAIT, |t| t == "refunded").await;
    assert_eq!(w.order_status(&order).await, "refunded");

    // A .wasm chosen on a component's card swaps it; the card shows the new version.
    c.find(Locator::Css("#tabs [data-view=components]")).await.unwrap().click().await.unwrap();
    // Payment's card counts what it answered: latency and instantiation.
    let card = "[data-component=payment] dd";
    b.wait_text(&format!("{card}:nth-of-type(7)"), WAIT, |t| t.starts_with("< ") && t.contains(" / ")).await;
    b.wait_text(&format!("{card}:nth-of-type(8)"), WAIT, |t| t.ends_with("µs")).await;
    b.wait_text(&format!("{card}:nth-of-type(6)"), WAIT, |t| t == "0.0").await;
    // chromedriver takes only a canonical path (no `..`).
    let variant = wasm_dir().join("inventory-variant.wasm").canonicalize().unwrap();
    let sha = hex::encode(Sha256::digest(std::fs::read(&variant).unwrap()));
    // Dropped on the card: a drop event carrying the file, as a desktop drag would.
    let wasm = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&variant).unwrap());
    let drop = r#"
        const bytes = Uint8Array.from(atob(arguments[0]), (ch) => ch.charCodeAt(0));
        const moved = new DataTransfer();
        moved.items.add(new File([bytes], 'inventory-variant.wasm', { type: 'application/wasm' }));
        const card = document.querySelector('[data-component=inventory]');
        card.dispatchEvent(new DragEvent('dragover', { dataTransfer: moved, bubbles: true, cancelable: true }));
        card.dispatchEvent(new DragEvent('drop', { dataTransfer: moved, bubbles: true, cancelable: true }));
    "#;
    c.execute(drop, vec![serde_json::json!(wasm)]).await.unwrap();
    b.wait_text("#deploy-status", WAIT, |t| t.contains("now runs")).await;
    b.wait_text("[data-component=inventory] dd", WAIT, |t| t == &sha[..12]).await;
    let first = hex::encode(Sha256::digest(std::fs::read(wasm_dir().join("inventory.wasm")).unwrap()));
    c.find(Locator::Css("[data-component=inventory] button.secondary")).await.unwrap().click().await.unwrap();
    b.wait_text("#deploy-status", WAIT, |t| t.contains("rolled back")).await;
    b.wait_text("[data-component=inventory] dd", WAIT, |t| t == &first[..12]).await;
    // Or chosen with the card's button.
    let input = c.find(Locator::Css("[data-component=inventory] input[type=file]")).await.unwrap();
    input.send_keys(variant.to_str().unwrap()).await.unwrap();
    b.wait_text("#deploy-status", WAIT, |t| t.contains("now runs")).await;
    b.wait_text("[data-component=inventory] dd", WAIT, |t| t == &sha[..12]).await;
    // And one button takes it back.
    c.find(Locator::Css("[data-component=inventory] button.secondary")).await.unwrap().click().await.unwrap();
    b.wait_text("#deploy-status", WAIT, |t| t.contains("rolled back")).await;
    b.wait_text("[data-component=inventory] dd", WAIT, |t| t == &first[..12]).await;

    // A poison event's dead letter, replayed from the page.
    w.publish_raw("order_completed", "not json", "payment");
    c.find(Locator::Css("#tabs [data-view=streams]")).await.unwrap().click().await.unwrap();
    let show = "[data-stream=order_completed] .actions button";
    let until = std::time::Instant::now() + WAIT;
    while !c.find(Locator::Css(show)).await.unwrap().is_displayed().await.unwrap() {
        assert!(std::time::Instant::now() < until, "no dead letters shown");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.find(Locator::Css(show)).await.unwrap().click().await.unwrap();
    let row = "#dead-table tbody tr";
    b.wait_text(row, WAIT, |t| t.contains("not json")).await;
    let dead_id = c.find(Locator::Css(row)).await.unwrap().attr("data-dead-letter").await.unwrap().unwrap();
    // Charted: the stream's dead letters, and each component's outbox.
    let dead_line = c.find(Locator::Css("[data-stream=order_completed] h3 polyline.dead")).await.unwrap();
    assert!(!dead_line.attr("points").await.unwrap().unwrap_or_default().is_empty());
    b.wait_text("[data-outbox=payment]", WAIT, |t| t.starts_with("payment")).await;
    b.screenshot(&shots().join("streams.png")).await;
    c.find(Locator::Css(&format!("[data-dead-letter='{dead_id}'] button"))).await.unwrap().click().await.unwrap();
    b.wait_text("#dead-status", WAIT, |t| t == format!("Replayed {dead_id}.")).await;
    let (status, listed) = w
        .http
        .call_with("GET", "/admin/dead-letters/order_completed", &[("authorization", &format!("Bearer {TOKEN}"))], None)
        .await;
    assert_eq!(status, 200);
    assert!(listed["entries"].as_array().unwrap().iter().all(|d| d["id"] != dead_id.as_str()), "{listed}");

    // A restart of the host: the page comes back by itself, no reload.
    c.find(Locator::Css("#tabs [data-view=components]")).await.unwrap().click().await.unwrap();
    let loaded = || async {
        let dd = c.find(Locator::Css("[data-component=payment] dd:nth-of-type(3)")).await.unwrap();
        dd.attr("data-ms").await.unwrap().unwrap_or_default()
    };
    let before = loaded().await;
    assert!(!before.is_empty());
    w.crash_and_restart().await;
    let until = std::time::Instant::now() + WAIT;
    while loaded().await == before {
        assert!(std::time::Instant::now() < until, "the page did not come back after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.wait_text("#link", WAIT, |t| t.starts_with("live")).await;

    // Readable on a phone-sized window too.
    c.set_window_size(390, 844).await.unwrap();
    b.screenshot(&shots().join("components-phone.png")).await;
    b.client.clone().close().await.unwrap();
}

/// `/docs` sends what it documents: a write without credentials is refused,
/// the same after "Authorize" with an API key is served, and a path
/// parameter fills the path.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_page_sends_each_operation_with_the_bearer_token_set_on_it() {
    let key = "docs-writer-key-0123456789abcdef";
    let mut opts = host();
    opts.env.push(("WHARF_API_KEYS".into(), format!("{key}:admin:docs")));
    let w = Wharf::start_with(opts).await;
    let page = w.send("GET", "/docs", &[], Vec::new()).await.unwrap();
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");

    let b = Browser::start().await;
    let c = &b.client;
    c.goto(&format!("{}/docs", w.url())).await.unwrap();
    let create = "[data-op='POST /products']";
    b.wait_text(&format!("{create} summary"), WAIT, |t| t.contains("/products")).await;
    c.find(Locator::Css(&format!("{create} summary"))).await.unwrap().click().await.unwrap();
    let body = c.find(Locator::Css(&format!("{create} textarea"))).await.unwrap();
    body.clear().await.unwrap();
    body.send_keys(r#"{"name": "From the docs", "price": 3.25, "quantity": 7}"#).await.unwrap();
    let send = format!("{create} button.send");
    c.find(Locator::Css(&send)).await.unwrap().click().await.unwrap();
    b.wait_text(&format!("{create} .answer .status"), WAIT, |t| t == "401").await;

    c.find(Locator::Css("#bearer")).await.unwrap().send_keys(key).await.unwrap();
    c.find(Locator::Css("#auth-form button[type=submit]")).await.unwrap().click().await.unwrap();
    b.wait_text("#auth-status", WAIT, |t| t.contains("Bearer")).await;
    c.find(Locator::Css(&send)).await.unwrap().click().await.unwrap();
    b.wait_text(&format!("{create} .answer .status"), WAIT, |t| t == "201").await;
    let answer = b.wait_text(&format!("{create} .answer pre"), WAIT, |t| t.contains("From the docs")).await;
    let id = serde_json::from_str::<serde_json::Value>(&answer).unwrap()["id"].as_str().unwrap().to_string();

    let read = "[data-op='GET /products/{id}']";
    c.find(Locator::Css(&format!("{read} summary"))).await.unwrap().click().await.unwrap();
    c.find(Locator::Css(&format!("{read} input[aria-label=id]"))).await.unwrap().send_keys(&id).await.unwrap();
    c.find(Locator::Css(&format!("{read} button.send"))).await.unwrap().click().await.unwrap();
    b.wait_text(&format!("{read} .answer pre"), WAIT, |t| t.contains("From the docs") && t.contains("\"quantity\": 7"))
        .await;
    b.screenshot(&shots().join("docs.png")).await;
    assert_eq!(w.stock(&id).await, 7, "the page's write is in the store");
}

/// Markup in a component's manifest (a route, its summary) shows as text in
/// the console and on `/docs`, and never runs.
#[tokio::test(flavor = "multi_thread")]
async fn markup_in_a_manifest_stays_text_in_the_console_and_the_docs() {
    let w = Wharf::start_with(host()).await;
    let r = w.deploy("hostile", "hostile-scripted", TOKEN).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let b = Browser::start().await;
    let c = &b.client;
    c.goto(&format!("{}/console", w.url())).await.unwrap();
    b.wait_text("#login h2", WAIT, |t| t == "Log in").await;
    c.find(Locator::Css("#token")).await.unwrap().send_keys(TOKEN).await.unwrap();
    c.find(Locator::Css("#login-form button")).await.unwrap().click().await.unwrap();
    let route = "GET /hostile/<img/src=x/onerror=document.title='pwned'>";
    b.wait_text("[data-component=hostile] ul", WAIT, |t| t.contains(route)).await;
    assert!(c.find_all(Locator::Css("[data-component=hostile] img")).await.unwrap().is_empty());
    assert_eq!(c.title().await.unwrap(), "Wharf console");

    c.goto(&format!("{}/docs", w.url())).await.unwrap();
    let op = "[data-op=\"GET /hostile/<img/src=x/onerror=document.title='pwned'>\"] summary";
    b.wait_text(op, WAIT, |t| t.contains("<script>document.title='pwned'</script>")).await;
    assert!(c.find_all(Locator::Css("#ops img, #ops script")).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.title().await.unwrap(), "Wharf API");
}
