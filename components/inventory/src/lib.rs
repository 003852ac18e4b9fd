//! Inventory: products CRUD over HTTP, and the stock side of the order flow.
//!
//! Consumes `order_completed` (take the order's stock, or ask payment for a
//! refund on `refund_order`) and `order_stream` (a customer refund: give the
//! stock back). Every stock change is one atomic `kv.increment` guarded by a
//! per-order marker, so redelivered events change nothing twice.
//!
//! Publishes `product_changed` with every change of a product's name or
//! price and with its deletion, so that payment prices orders from its own
//! copy instead of calling inventory each time.
//!
//! Only an `admin` writes products. Reading them is open to any caller, and
//! to anonymous ones too unless config `anonymous_read` is `false`.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

// No std: two WASI imports instead of two dozen per instance (wharf_sdk::rt).
wharf_sdk::no_std_runtime!();

pub mod rules;
mod schema;

use rules::*;
use serde_json::json;
use shop_events::{ORDER_COMPLETED, ORDER_STREAM, REFUND_ORDER};
use wharf_sdk::kv::{self, IncrementOutcome};
use wharf_sdk::prelude::*;
use wharf_sdk::{ApiError, App, Component, Event, EventError, Reply, Req, Role, config, events, ids, log};

pub struct Inventory;

impl Component for Inventory {
    fn app() -> App {
        App::new("inventory")
            .post("/products", create_product)
            .doc("Create a product", Some(schema::new_product), Some(schema::product))
            .answers(&[
                (201, "Created"),
                (400, "The body is not JSON"),
                (401, "No credentials"),
                (403, "Not an admin"),
                (415, "The body is not application/json"),
                (422, "A field is missing or out of bounds"),
            ])
            .get("/products", list_products)
            .doc(
                "List products in creation order; ?limit=N&after=ID for one page, Link header to the next",
                None,
                Some(|| json!({"type": "array", "items": schema::product()})),
            )
            .answers(&[(200, "The products"), (401, "Anonymous reads are off"), (422, "A bad limit or after")])
            .paged(MAX_PAGE)
            .get("/products/{id}", get_product)
            .doc("Get one product", None, Some(schema::product))
            .answers(&[(200, "The product"), (401, "Anonymous reads are off"), (404, "No such product")])
            .patch("/products/{id}", update_product)
            .doc("Change any of name, price, quantity", Some(schema::patch), Some(schema::product))
            .answers(&[
                (200, "Changed"),
                (400, "The body is not JSON"),
                (401, "No credentials"),
                (403, "Not an admin"),
                (404, "No such product"),
                (409, "Changed too often at once; retry"),
                (415, "The body is not application/json"),
                (422, "No field given, or one out of bounds"),
            ])
            .delete("/products/{id}", delete_product)
            .doc("Delete a product", None, None)
            .answers(&[(204, "Deleted"), (401, "No credentials"), (403, "Not an admin"), (404, "No such product")])
            .subscribe(ORDER_COMPLETED, "inventory-group", take_stock)
            .subscribe(ORDER_STREAM, "inventory-group", on_order_message)
            .publishes(REFUND_ORDER)
            .publishes(PRODUCT_CHANGED)
    }
}

wharf_sdk::export_component!(Inventory);

/// The largest page `GET /products?limit=` serves.
const MAX_PAGE: u32 = 1000;
/// The only component whose order events inventory believes: an order's
/// quantity decides how much stock goes.
const PAYMENT: &str = "payment";

fn product_id(req: &Req) -> Result<&str, ApiError> {
    let id = req.param("id");
    // Ids come from the URL: anything that is not one of ours cannot exist.
    if ids::is_valid(id) { Ok(id) } else { Err(ApiError::not_found(format!("product {id:?} not found"))) }
}

fn load(id: &str) -> Result<Option<ProductView>, ApiError> {
    view(id, &kv::get_many(&[product_key(id), stock_key(id)])?)
}

/// The product read from Redis with its stored version (of name and price).
fn load_versioned(id: &str) -> Result<Option<(ProductView, u64)>, ApiError> {
    let Some(stored) = kv::get_versioned(&product_key(id))? else { return Ok(None) };
    let product: Product = kv::decode(id, &stored.value)?;
    let stock = kv::get(&stock_key(id))?;
    Ok(Some((ProductView::new(product, parse_stock(stock.as_deref())), stored.version)))
}

/// The product as shown to a reader: may come from the host's read cache
/// (coherent through Redis; see `kv::get_many_cached`).
fn load_for_reading(id: &str) -> Result<Option<ProductView>, ApiError> {
    view(id, &kv::get_many_cached(&[product_key(id), stock_key(id)])?)
}

fn view(id: &str, values: &[Option<Vec<u8>>]) -> Result<Option<ProductView>, ApiError> {
    let (Some(Some(product)), Some(stock)) = (values.first(), values.get(1)) else { return Ok(None) };
    let product: Product = kv::decode(id, product)?;
    Ok(Some(ProductView::new(product, parse_stock(stock.as_deref()))))
}

fn parse_stock(v: Option<&[u8]>) -> i64 {
    v.and_then(|b| core::str::from_utf8(b).ok()).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn may_read(req: &Req) -> Result<(), ApiError> {
    if req.role() == Role::Anonymous && config::get("anonymous_read").is_some_and(|v| v == "false") {
        return Err(ApiError::unauthenticated("reading products needs an API key or a token"));
    }
    Ok(())
}

fn create_product(req: &Req) -> Result<Reply, ApiError> {
    req.require(&[Role::Admin])?;
    let (name, price, quantity) = parse_create(req.json_body()?)?;
    let product = Product { id: ids::new_id(), name, price };
    // Stock first: a crash in between leaves an orphan counter, never a product without stock.
    kv::set(&stock_key(&product.id), quantity.to_string().as_bytes())?;
    let announce = announce(&product, 1);
    if !kv::set_if_absent_and_publish(
        &product_key(&product.id),
        &kv::encode(&product)?,
        None,
        PRODUCT_CHANGED,
        &announce,
        0,
    )? {
        return Err(ApiError::internal(format!("product id {} is taken", product.id)));
    }
    log::info("product created", &[("product_id", &product.id)]);
    Reply::json(201, &ProductView::new(product, quantity))
}

/// Every product, page by page (the host streams the pages out as one
/// array); with `?limit=N` one page, in id order, and a `Link` to the next.
fn list_products(req: &Req) -> Result<Reply, ApiError> {
    may_read(req)?;
    let page = req.page(MAX_PAGE)?;
    let (ids, next) = kv::list_partitions_for(PRODUCT, &page)?;
    let mut all = Vec::with_capacity(ids.len());
    for ids in ids.chunks(100) {
        let mut wanted: Vec<String> = ids.iter().map(|id| product_key(id)).collect();
        wanted.extend(ids.iter().map(|id| stock_key(id)));
        let values = kv::get_many(&wanted)?;
        let (products, stocks) = values.split_at(ids.len());
        for (p, s) in products.iter().zip(stocks) {
            if let Some(p) = p {
                let product: Product = kv::decode("product", p)?;
                all.push(ProductView::new(product, parse_stock(s.as_deref())));
            }
        }
    }
    Reply::list(&page, "/products", &all, next.as_deref())
}

fn get_product(req: &Req) -> Result<Reply, ApiError> {
    may_read(req)?;
    let id = product_id(req)?;
    // `Cache-Control: no-cache` (payment's price lookup sends it) asks for
    // Redis itself, and the answer carries the product's version.
    let fresh = req.header("cache-control").is_some_and(|v| v.to_ascii_lowercase().contains("no-cache"));
    let not_found = || ApiError::not_found(format!("product {id} not found"));
    if fresh {
        let (view, version) = load_versioned(id)?.ok_or_else(not_found)?;
        return Ok(Reply::json(200, &view)?.with_header(VERSION_HEADER, version.to_string()));
    }
    Reply::json(200, &load_for_reading(id)?.ok_or_else(not_found)?)
}

fn update_product(req: &Req) -> Result<Reply, ApiError> {
    req.require(&[Role::Admin])?;
    let id = product_id(req)?;
    let patch = parse_patch(req.json_body()?)?;
    let key = product_key(id);
    // Optimistic update of name/price: retry on a concurrent writer.
    for _ in 0..16 {
        let Some((mut product, version)) = kv::get_json_versioned::<Product>(&key)? else {
            return Err(ApiError::not_found(format!("product {id} not found")));
        };
        if let Some(name) = &patch.name {
            product.name = name.clone();
        }
        if let Some(price) = patch.price {
            product.price = price;
        }
        // Name and price change with their announcement, in one step.
        if (patch.name.is_some() || patch.price.is_some())
            && let kv::CasOutcome::Conflict(_) = kv::compare_and_swap_and_publish(
                &key,
                Some(version),
                &kv::encode(&product)?,
                PRODUCT_CHANGED,
                &announce(&product, version + 1),
            )?
        {
            continue;
        }
        if let Some(q) = patch.quantity {
            kv::set(&stock_key(id), q.to_string().as_bytes())?;
        }
        let view = load(id)?.ok_or_else(|| ApiError::not_found(format!("product {id} not found")))?;
        return Reply::json(200, &view);
    }
    Err(ApiError::conflict("conflict", "the product changed too often; try again"))
}

fn delete_product(req: &Req) -> Result<Reply, ApiError> {
    req.require(&[Role::Admin])?;
    let id = product_id(req)?;
    if !kv::delete_and_publish(&product_key(id), PRODUCT_CHANGED, &ProductChanged::deleted(id))? {
        return Err(ApiError::not_found(format!("product {id} not found")));
    }
    kv::delete(&stock_key(id))?;
    Reply::no_content()
}

/// `order_completed`: take the stock once, or send the order back for a refund.
fn take_stock(ev: &Event) -> Result<(), EventError> {
    ev.require_origin(PAYMENT)?;
    let order: CompletedOrder = ev.json()?;
    let taken = taken_marker(&order.product_id, &order.id);
    let stock = stock_key(&order.product_id);
    if order.quantity < 1 {
        return refuse(&order.id, &taken, "invalid quantity");
    }
    match kv::increment(&stock, -order.quantity, Some(0), None, Some(&taken))? {
        IncrementOutcome::Applied(left) => {
            log::info(
                "stock taken",
                &[("order_id", &order.id), ("product_id", &order.product_id), ("left", &left.to_string())],
            );
            Ok(())
        }
        IncrementOutcome::AlreadyApplied(marker) => {
            if resend_refund(&read_marker(&marker)) {
                send_refund(&order.id, "insufficient stock")?;
            }
            Ok(())
        }
        IncrementOutcome::OutOfRange(have) => {
            let reason = if kv::get(&product_key(&order.product_id))?.is_none() {
                "product not found".to_string()
            } else {
                format!("insufficient stock: {have} left, {} wanted", order.quantity)
            };
            refuse(&order.id, &taken, &reason)
        }
    }
}

/// Marks the order refused (so a later redelivery cannot take stock after
/// all) and asks payment to refund it.
fn refuse(order_id: &str, taken: &str, reason: &str) -> Result<(), EventError> {
    if kv::set_if_absent(taken, REFUSED.as_bytes(), None)? {
        log::warn("stock refused", &[("order_id", order_id), ("reason", reason)]);
        return send_refund(order_id, reason);
    }
    // Someone decided first (a duplicate delivery, or a customer refund): follow the marker.
    let marker = kv::get(taken)?.unwrap_or_default();
    if resend_refund(&read_marker(&marker)) { send_refund(order_id, reason) } else { Ok(()) }
}

fn send_refund(order_id: &str, reason: &str) -> Result<(), EventError> {
    events::publish_keyed(
        REFUND_ORDER,
        order_id,
        &RefundOrder { id: order_id.to_string(), reason: reason.to_string() },
    )?;
    Ok(())
}

/// `order_stream`: a customer refund gives the stock back, once, and only if it was taken.
fn on_order_message(ev: &Event) -> Result<(), EventError> {
    ev.require_origin(PAYMENT)?;
    let OrderMessage::RefundRequested { id, product_id, quantity } = ev.json()?;
    let taken = taken_marker(&product_id, &id);
    // Claim the marker first: if the stock was never taken, it now never will be.
    if kv::set_if_absent(&taken, CANCELLED.as_bytes(), None)? {
        log::info("refund before stock was taken", &[("order_id", &id)]);
        return Ok(());
    }
    let marker = kv::get(&taken)?.unwrap_or_default();
    if give_back_on_refund(&read_marker(&marker)) {
        let returned = returned_marker(&product_id, &id);
        kv::increment(&stock_key(&product_id), quantity, None, None, Some(&returned))?;
        log::info("stock returned", &[("order_id", &id), ("product_id", &product_id)]);
    }
    Ok(())
}
