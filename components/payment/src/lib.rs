//! Payment: orders over HTTP, and the money side of the order flow.
//!
//! A new order is pending; a durable delayed event on `payment_settle` settles
//! it after the configured delay (completed, then `order_completed`). Orders
//! are priced from payment's own copy of the catalogue's prices, which
//! `product_changed` keeps current; a price it has no copy of, or none
//! confirmed lately, it asks inventory for. Inventory answers on
//! `refund_order` when it cannot take the stock; customer refunds go out on
//! `order_stream`. Status changes are compare-and-swap on the order's
//! version, so concurrent and redelivered events cannot lose an update.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

// No std: two WASI imports instead of two dozen per instance (wharf_sdk::rt).
wharf_sdk::no_std_runtime!();

pub mod rules;
mod schema;

use rules::*;
use serde_json::json;
use shop_events::{ORDER_COMPLETED, ORDER_STREAM, PRODUCT_CHANGED, REFUND_ORDER};
use wharf_sdk::kv::{self, CasOutcome};
use wharf_sdk::money::Cents;
use wharf_sdk::prelude::*;
use wharf_sdk::{
    ApiError, App, Component, Event, EventError, Reply, Req, Role, calls, clock, config, events, ids, log,
};

pub struct Payment;

impl Component for Payment {
    fn app() -> App {
        App::new("payment")
            .post("/orders", create_order)
            .doc(
                "Order a product (header Idempotency-Key makes retries safe)",
                Some(schema::new_order),
                Some(schema::order),
            )
            .answers(&[
                (201, "Ordered (or the order an earlier try with the same Idempotency-Key made)"),
                (400, "The body is not JSON"),
                (401, "No credentials"),
                (403, "Neither admin nor customer, or another caller's Idempotency-Key"),
                (404, "No such product"),
                (409, "An order with this Idempotency-Key is being made"),
                (415, "The body is not application/json"),
                (422, "A field is missing or out of bounds, or the total is too large"),
            ])
            .get("/orders", list_orders)
            .doc(
                "List orders in creation order (a customer's own); ?limit=N&after=ID for one page, Link header to the next",
                None,
                Some(|| json!({"type": "array", "items": schema::order()})),
            )
            .answers(&[(200, "The orders"), (401, "No credentials"), (403, "Neither admin nor customer"), (422, "A bad limit or after")])
            .paged(MAX_PAGE)
            .get("/orders/{id}", get_order)
            .doc("Get one order", None, Some(schema::order))
            .answers(&[(200, "The order"), (401, "No credentials"), (403, "Neither admin nor customer"), (404, "No such order of this caller's")])
            .post("/orders/{id}/refund", refund_order)
            .doc("Refund a completed order; its stock is given back", None, Some(schema::order))
            .answers(&[
                (202, "Refunded; the stock goes back through order_stream"),
                (401, "No credentials"),
                (403, "Neither admin nor customer"),
                (404, "No such order of this caller's"),
                (409, "The order is not completed, or changed meanwhile"),
            ])
            .subscribe("payment_settle", "payment-settle", settle)
            .subscribe(REFUND_ORDER, "payment-group", on_refund_order)
            .subscribe(ORDER_STREAM, "payment-refunds", on_order_stream)
            .subscribe(PRODUCT_CHANGED, "payment-prices", on_product_changed)
            .publishes("payment_settle")
            .publishes(ORDER_COMPLETED)
            .publishes(ORDER_STREAM)
    }
}

wharf_sdk::export_component!(Payment);

/// The largest page `GET /orders?limit=` serves.
const MAX_PAGE: u32 = 1000;
/// Who may send which event: a refund is believed only from inventory, and
/// settle and customer-refund events only from payment itself.
const PAYMENT: &str = "payment";
const INVENTORY: &str = "inventory";

/// How long a call to inventory may take before the order fails with 503.
const INVENTORY_TIMEOUT_MS: u32 = 2_000;
/// A copy of a price inventory has not confirmed for this long (config
/// `price_max_age_ms`) is asked again: one call per product per minute
/// repairs a lost announcement.
const PRICE_MAX_AGE_MS: u64 = 60_000;
/// Idempotency keys are remembered this long.
const IDEMPOTENCY_TTL_MS: u64 = 24 * 3600 * 1000;
/// Looks for an order its settle event did not find: after 0.2 s, then five
/// times longer each time (1 s, 5 s, 25 s, 125 s: config
/// `settle_recheck_ms` is the first), which ends far past any request's
/// deadline.
const SETTLE_RECHECKS: u32 = 5;
const SETTLE_RECHECK_MS: u64 = 200;

#[derive(serde::Deserialize)]
struct ProductPrice {
    price: Cents,
}

/// The header inventory's fresh product reads carry its version in.
const VERSION_HEADER: &str = "x-product-version";

fn load(id: &str) -> Result<Option<(Order, u64)>, ApiError> {
    if !ids::is_valid(id) {
        return Ok(None);
    }
    Ok(kv::get_json_versioned::<Order>(&order_key(id))?)
}

/// An order this caller may see: 404 if there is none, and 404 too if it
/// is someone else's, so that no answer tells a customer which ids exist.
fn load_for(req: &Req, id: &str) -> Result<(Order, u64), ApiError> {
    match load(id)? {
        Some((order, version)) if may_access(&order, req.role(), req.subject()) => Ok((order, version)),
        _ => Err(ApiError::not_found(format!("order {id} not found"))),
    }
}

fn create_order(req: &Req) -> Result<Reply, ApiError> {
    req.require(&[Role::Admin, Role::Customer])?;
    let input = parse_order(req.json_body()?)?;
    let idem = match req.header("idempotency-key") {
        Some(k) if k.is_empty() || k.len() > 200 => {
            return Err(ApiError::unprocessable("invalid_header", "Idempotency-Key must have 1 to 200 characters"));
        }
        // Scoped to the caller: two customers may pick the same key. The
        // subject's length first, so no subject/key split is ambiguous.
        Some(k) => {
            let subject = req.subject().unwrap_or("");
            Some(idempotency_key(&format!("{}:{subject}:{k}", subject.len())))
        }
        None => None,
    };
    if let Some(idem) = &idem
        && let Some(existing) = replay(req, idem)?
    {
        return Ok(existing);
    }
    let unit_price = product_price(&input.product_id)?;
    let (fee, total) = price_order(unit_price, input.quantity, fee_rate_bp(config::get("fee_rate").as_deref()))?;
    // A retry with the same key reuses the id the first attempt claimed, so a
    // retry after a crash completes that order instead of making a second one.
    let id = match &idem {
        Some(idem) => claim_order_id(idem)?,
        None => ids::new_id(),
    };
    let order = Order {
        id,
        product_id: input.product_id,
        price: unit_price,
        fee,
        total,
        quantity: input.quantity,
        status: Status::Pending,
        customer: req.subject().map(str::to_string),
    };
    // A customer's orders are listed from an index of their own. Its entry
    // goes first: one without its order lists nothing, while an order
    // without its entry would be missing from the customer's list.
    if req.role() == Role::Customer
        && let Some(subject) = req.subject()
    {
        kv::set(&customer_order_key(subject, &order.id), b"1")?;
    }
    // The order and its settle event in one atomic step: no order is ever
    // stored without one, nor an event sent for an order that was not.
    let delay = config::get_or("settle_delay_ms", 1000u64);
    // The event carries the order: settling it needs no read (`settled_copy`).
    let settle = Settle { id: order.id.clone(), checks: 0, order: Some(order.clone()) };
    if !kv::set_if_absent_and_publish(
        &order_key(&order.id),
        &kv::encode(&order)?,
        None,
        "payment_settle",
        &settle,
        delay,
    )? {
        // The same Idempotency-Key got here first: answer with its order.
        return match load(&order.id)? {
            Some((stored, _)) => Reply::json(201, &stored),
            None => Err(ApiError::conflict("in_progress", "an order with this Idempotency-Key is being changed")),
        };
    }
    log::info("order created", &[("order_id", &order.id), ("product_id", &order.product_id)]);
    Reply::json(201, &order)
}

/// The order id bound to an idempotency key: a new one, or the one an earlier
/// attempt with the same key bound.
fn claim_order_id(idem: &str) -> Result<String, ApiError> {
    let id = ids::new_id();
    if kv::set_if_absent(idem, id.as_bytes(), Some(IDEMPOTENCY_TTL_MS))? {
        return Ok(id);
    }
    match kv::get(idem)? {
        Some(existing) => Ok(String::from_utf8_lossy(&existing).into_owned()),
        None => Err(ApiError::conflict("in_progress", "an order with this Idempotency-Key is being created")),
    }
}

/// The order an idempotency key already produced, if any.
fn replay(req: &Req, idem: &str) -> Result<Option<Reply>, ApiError> {
    let Some(id) = kv::get(idem)? else { return Ok(None) };
    let id = String::from_utf8_lossy(&id).into_owned();
    match load(&id)? {
        Some((order, _)) if may_access(&order, req.role(), req.subject()) => Reply::json(201, &order).map(Some),
        Some(_) => Err(ApiError::forbidden("this Idempotency-Key belongs to another caller's order")),
        None => Ok(None),
    }
}

/// The product's unit price now: from payment's own copy, which
/// `product_changed` keeps current (it trails inventory by the time an
/// event takes, milliseconds), else from inventory, which is then
/// remembered. Service discovery is the host's: inventory is called by name.
fn product_price(product_id: &str) -> Result<Cents, ApiError> {
    let not_found = || ApiError::not_found(format!("product {product_id} not found"));
    if !ids::is_valid(product_id) {
        return Err(not_found());
    }
    let key = price_key(product_id);
    let now = clock::now_ms();
    // The copy changes only with the catalogue, so the host's read cache
    // (coherent through Redis) almost always answers without a round trip.
    let copy = match kv::get_many_cached(core::slice::from_ref(&key))?.first() {
        Some(Some(stored)) => Some(kv::decode::<KnownPrice>(&key, stored)?),
        _ => None,
    };
    let max_age = config::get_or("price_max_age_ms", PRICE_MAX_AGE_MS);
    if let Some(known) = &copy
        && !known.is_stale(now, max_age)
    {
        return known.price.ok_or_else(not_found);
    }
    // No copy, or one not confirmed for a while: ask the owner.
    let owner = Source::Owner { max_age_ms: max_age };
    match ask_inventory(product_id)? {
        Some((price, Some(version))) => {
            remember_quietly(&key, &KnownPrice { price: Some(price), version, checked_ms: now }, owner);
            Ok(price)
        }
        // An inventory from before versions (mid-upgrade): its price is
        // right for this order, but without a version it cannot be ordered
        // against announcements, so it is not remembered.
        Some((price, None)) => Ok(price),
        // Deleted without an announcement reaching us. No copy: nothing to
        // remember, or any caller could fill the namespace with guesses.
        None => {
            if copy.is_some() {
                remember_quietly(&key, &KnownPrice::gone(now), owner);
            }
            Err(not_found())
        }
    }
}

/// [`remember`] for a read-through fill: the order has its price either way,
/// so a failed fill is logged, not answered with an error.
fn remember_quietly(key: &str, known: &KnownPrice, source: Source) {
    if let Err(e) = remember(key, known, source) {
        log::warn("could not remember a price", &[("key", key), ("error", &format!("{e:?}"))]);
    }
}

/// Writes `incoming` over payment's copy if it `replaces` it.
fn remember(key: &str, incoming: &KnownPrice, source: Source) -> Result<(), EventError> {
    for _ in 0..16 {
        let stored = kv::get_json_versioned::<KnownPrice>(key)?;
        if !replaces(incoming, stored.as_ref().map(|(known, _)| known), source) {
            return Ok(());
        }
        if let CasOutcome::Swapped(_) = kv::compare_and_swap_json(key, stored.map(|(_, v)| v), incoming)? {
            return Ok(());
        }
    }
    Err(EventError::Retry(format!("{key} kept changing")))
}

/// The product's price and version from inventory itself, read from Redis
/// (`Cache-Control: no-cache`); none if there is no such product.
fn ask_inventory(product_id: &str) -> Result<Option<(Cents, Option<u64>)>, ApiError> {
    let fresh = [("cache-control", "no-cache")];
    let path = format!("/products/{product_id}");
    let resp = calls::call_with_headers(INVENTORY, "GET", &path, &fresh, b"", Some(INVENTORY_TIMEOUT_MS))?;
    match resp.status {
        200 => {
            let p: ProductPrice = serde_json::from_slice(&resp.body)
                .map_err(|e| ApiError::internal(format!("inventory answered an unexpected product: {e}")))?;
            let version = resp
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(VERSION_HEADER))
                .and_then(|(_, v)| v.parse::<u64>().ok());
            Ok(Some((p.price, version)))
        }
        404 => Ok(None),
        s => Err(ApiError::unavailable(format!("inventory answered {s}"))),
    }
}

/// `product_changed`: keep payment's copy of the price at the newest version seen.
fn on_product_changed(ev: &Event) -> Result<(), EventError> {
    ev.require_origin(INVENTORY)?;
    let change: ProductChanged = ev.json()?;
    if !ids::is_valid(&change.id) {
        return Err(EventError::Reject(format!("product_changed for an invalid id {:?}", change.id)));
    }
    let incoming = known_price(&change, clock::now_ms()).map_err(EventError::Reject)?;
    remember(&price_key(&change.id), &incoming, Source::Event)
}

fn get_order(req: &Req) -> Result<Reply, ApiError> {
    req.require(&[Role::Admin, Role::Customer])?;
    let (order, _) = load_for(req, req.param("id"))?;
    Reply::json(200, &order)
}

/// All orders for an admin; a customer's own for a customer, read from
/// that customer's index (never by filtering everyone's). Page by page in
/// id (creation) order: the whole list streamed by the host, or with
/// `?limit=N` one page and a `Link` to the next. The cursor is always one of
/// the caller's own orders: ids are unguessable, and paging must not hand
/// out another customer's.
fn list_orders(req: &Req) -> Result<Reply, ApiError> {
    req.require(&[Role::Admin, Role::Customer])?;
    let page = req.page(MAX_PAGE)?;
    let (ids, next) = match (req.role(), req.subject()) {
        (Role::Admin, _) => kv::list_partitions_for(ORDER, &page)?,
        (_, Some(subject)) => {
            let prefix = customer_index_prefix(subject);
            let (keys, next) = kv::list_keys_for(&prefix, &page)?;
            (keys.iter().map(|k| k[prefix.len()..].to_string()).collect(), next)
        }
        (_, None) => return Reply::list(&page, "/orders", &[] as &[Order], None),
    };
    let orders: Vec<String> = ids.iter().map(|id| order_key(id)).collect();
    Reply::list(&page, "/orders", &visible_orders(req, &orders)?, next.as_deref())
}

/// The orders stored under `keys` that the caller may see, in key order. An
/// index entry whose order was never written (its instance died in
/// between) has nothing to show.
fn visible_orders(req: &Req, keys: &[String]) -> Result<Vec<Order>, ApiError> {
    let mut visible = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(200) {
        for value in kv::get_many(chunk)?.into_iter().flatten() {
            let order: Order = kv::decode("order", &value)?;
            if may_access(&order, req.role(), req.subject()) {
                visible.push(order);
            }
        }
    }
    Ok(visible)
}

/// A customer refund. Publishing to `order_stream` commits it: inventory
/// gives the stock back (at most once) and payment's own consumer of that
/// stream marks the order refunded, even if this instance dies right after.
/// Marking it here as well only makes the answer show the new status.
fn refund_order(req: &Req) -> Result<Reply, ApiError> {
    req.require(&[Role::Admin, Role::Customer])?;
    let (mut order, _) = load_for(req, req.param("id"))?;
    check_refundable(order.status)?;
    let msg = OrderMessage::RefundRequested {
        id: order.id.clone(),
        product_id: order.product_id.clone(),
        quantity: order.quantity,
    };
    events::publish_keyed(ORDER_STREAM, &order.id, &msg)?;
    log::info("order refunded by customer", &[("order_id", &order.id)]);
    match transition(&order.id, Status::Completed, Status::Refunded) {
        Ok(Some(now)) => order = now,
        // Changing meanwhile: the stream consumer finishes the job.
        _ => order.status = Status::Refunded,
    }
    Reply::json(202, &order)
}

/// Moves an order from `from` to `to`, retrying on concurrent writers.
/// Returns the order as it ends up, or `None` if it does not exist.
fn transition(id: &str, from: Status, to: Status) -> Result<Option<Order>, EventError> {
    for _ in 0..16 {
        let Some((mut order, version)) = kv::get_json_versioned::<Order>(&order_key(id))? else { return Ok(None) };
        if order.status != from {
            return Ok(Some(order));
        }
        order.status = to;
        if let CasOutcome::Swapped(_) = kv::compare_and_swap_json(&order_key(id), Some(version), &order)? {
            return Ok(Some(order));
        }
    }
    Err(EventError::Retry(format!("order {id} kept changing")))
}

/// `payment_settle`: the settle delay passed. Complete the order and announce
/// it. A redelivery of a completed order announces it again; inventory
/// de-duplicates by order id.
fn settle(ev: &Event) -> Result<(), EventError> {
    ev.require_origin(PAYMENT)?;
    let msg: Settle = ev.json()?;
    let id = msg.id.as_str();
    // Most events: the order is as stored with this event, and one
    // compare-and-swap settles it. A conflict (a redelivery after it was
    // settled, say) goes the way below, which reads first. The announcement
    // is an append of its own, not `compare-and-swap-and-publish`: that
    // appends at once only while the order's outbox shard is empty, and
    // under a settle delay the shards hold the waiting settle events, so
    // most announcements would wait for the outbox's publisher.
    if let Some(completed) = settled_copy(&msg)
        && let CasOutcome::Swapped(_) = kv::compare_and_swap_json(&order_key(id), Some(FIRST_VERSION), &completed)?
    {
        events::publish_keyed(ORDER_COMPLETED, id, &completed)?;
        log::info("order completed", &[("order_id", id)]);
        return Ok(());
    }
    match transition(id, Status::Pending, Status::Completed)? {
        // Orders are stored with their settle event in one step, so this is
        // an event from an earlier payment version, which published it just
        // before storing the order (and may still be storing it, mid hot
        // swap), or failed first (its client then never heard of the order).
        // Look again later, at growing intervals that end far past any
        // request's deadline; each look is a new event, so this costs no
        // delivery attempts and never ends in the dead-letter stream.
        None if msg.checks < SETTLE_RECHECKS => {
            let base = config::get_or("settle_recheck_ms", SETTLE_RECHECK_MS);
            let delay = base.saturating_mul(5u64.pow(msg.checks));
            let again = Settle { id: msg.id.clone(), checks: msg.checks + 1, order: None };
            events::publish_after_keyed("payment_settle", id, &again, delay)?;
            Ok(())
        }
        None => {
            log::warn("settle event for an order that was never stored; dropped", &[("order_id", id)]);
            Ok(())
        }
        Some(order) if order.status == Status::Completed => {
            events::publish_keyed(ORDER_COMPLETED, id, &order)?;
            log::info("order completed", &[("order_id", id)]);
            Ok(())
        }
        Some(_) => Ok(()), // refunded meanwhile: nothing to announce
    }
}

/// `order_stream`, in payment's own group: a customer refund marks the order
/// refunded here too, so a host that dies between publishing the refund and
/// storing the new status still ends with the order refunded.
fn on_order_stream(ev: &Event) -> Result<(), EventError> {
    ev.require_origin(PAYMENT)?;
    let msg: OrderMessage = ev.json()?;
    match msg {
        OrderMessage::RefundRequested { id, .. } => match transition(&id, Status::Completed, Status::Refunded)? {
            None => Err(EventError::Reject(format!("order {id} does not exist"))),
            Some(_) => Ok(()),
        },
    }
}

/// `refund_order`: inventory could not take the stock; refund the order.
fn on_refund_order(ev: &Event) -> Result<(), EventError> {
    ev.require_origin(INVENTORY)?;
    let msg: RefundOrder = ev.json()?;
    match transition(&msg.id, Status::Completed, Status::Refunded)? {
        None => Err(EventError::Reject(format!("order {} does not exist", msg.id))),
        Some(order) if order.status == Status::Pending => {
            Err(EventError::Retry(format!("order {} is still pending", msg.id)))
        }
        Some(_) => {
            log::info("order refunded", &[("order_id", &msg.id), ("reason", &msg.reason)]);
            Ok(())
        }
    }
}
