//! Payment: orders over HTTP, and the money side of the order flow.
//!
//! A new order is pending; a durable delayed event on `payment_settle` settles
//! it after the configured delay (completed, then `order_completed`). Inventory
//! answers on `refund_order` when it cannot take the stock; customer refunds go
//! out on `order_stream`. Status changes are compare-and-swap on the order's
//! version, so concurrent and redelivered events cannot lose an update.

pub mod rules;
mod schema;

use rules::*;
use serde_json::json;
use wharf_sdk::kv::{self, CasOutcome};
use wharf_sdk::money::Cents;
use wharf_sdk::{ApiError, App, Component, Event, EventError, Reply, Req, calls, config, events, ids, log};

pub struct Payment;

impl Component for Payment {
    fn app() -> App {
        App::new("payment")
            .post("/orders", create_order)
            .doc(
                "Order a product (header Idempotency-Key makes retries safe)",
                Some(schema::new_order()),
                Some(schema::order()),
            )
            .get("/orders", list_orders)
            .doc("List orders in creation order", None, Some(json!({"type": "array", "items": schema::order()})))
            .get("/orders/{id}", get_order)
            .doc("Get one order", None, Some(schema::order()))
            .post("/orders/{id}/refund", refund_order)
            .doc("Refund a completed order; its stock is given back", None, Some(schema::order()))
            .subscribe("payment_settle", "payment-settle", settle)
            .subscribe("refund_order", "payment-group", on_refund_order)
            .publishes("payment_settle")
            .publishes("order_completed")
            .publishes("order_stream")
    }
}

wharf_sdk::export_component!(Payment);

/// How long a call to inventory may take before the order fails with 503.
const INVENTORY_TIMEOUT_MS: u32 = 2_000;
/// Idempotency keys are remembered this long.
const IDEMPOTENCY_TTL_MS: u64 = 24 * 3600 * 1000;

#[derive(serde::Deserialize)]
struct ProductPrice {
    price: Cents,
}

fn load(id: &str) -> Result<Option<(Order, u64)>, ApiError> {
    if !ids::is_valid(id) {
        return Ok(None);
    }
    Ok(kv::get_json_versioned::<Order>(&order_key(id))?)
}

fn create_order(req: &Req) -> Result<Reply, ApiError> {
    let input = parse_order(req.body())?;
    let idem = match req.header("idempotency-key") {
        Some(k) if k.is_empty() || k.len() > 200 => {
            return Err(ApiError::unprocessable("invalid_header", "Idempotency-Key must have 1 to 200 characters"));
        }
        Some(k) => Some(idempotency_key(k)),
        None => None,
    };
    if let Some(idem) = &idem {
        if let Some(existing) = replay(idem)? {
            return Ok(existing);
        }
    }
    let unit_price = product_price(&input.product_id)?;
    let (fee, total) = price_order(unit_price, input.quantity, fee_rate_bp(config::get("fee_rate").as_deref()))?;
    let order = Order {
        id: ids::new_id(),
        product_id: input.product_id,
        price: unit_price,
        fee,
        total,
        quantity: input.quantity,
        status: Status::Pending,
    };
    if let Some(idem) = &idem {
        if !kv::set_if_absent(idem, order.id.as_bytes(), Some(IDEMPOTENCY_TTL_MS))? {
            // A concurrent retry with the same key won the race.
            return replay(idem)?.ok_or_else(|| {
                ApiError::conflict("in_progress", "an order with this Idempotency-Key is being created")
            });
        }
    }
    let key = order_key(&order.id);
    kv::set_json(&key, &order)?;
    let delay = config::get_or("settle_delay_ms", 1000u64);
    if let Err(e) = events::publish_after("payment_settle", &Settle { id: order.id.clone() }, delay) {
        // Without its settle event the order would stay pending forever: undo it.
        let _ = kv::delete(&key);
        if let Some(idem) = &idem {
            let _ = kv::delete(idem);
        }
        return Err(e.into());
    }
    log::info("order created", &[("order_id", &order.id), ("product_id", &order.product_id)]);
    Reply::json(201, &order)
}

/// The order an idempotency key already produced, if any.
fn replay(idem: &str) -> Result<Option<Reply>, ApiError> {
    let Some(id) = kv::get(idem)? else { return Ok(None) };
    let id = String::from_utf8_lossy(&id).into_owned();
    match load(&id)? {
        Some((order, _)) => Reply::json(201, &order).map(Some),
        None => Ok(None),
    }
}

/// Asks inventory for the product's unit price: our service discovery is the host.
fn product_price(product_id: &str) -> Result<Cents, ApiError> {
    let not_found = || ApiError::not_found(format!("product {product_id} not found"));
    if !ids::is_valid(product_id) {
        return Err(not_found());
    }
    let resp = calls::call("inventory", "GET", &format!("/products/{product_id}"), b"", Some(INVENTORY_TIMEOUT_MS))?;
    match resp.status {
        200 => {
            let p: ProductPrice = serde_json::from_slice(&resp.body)
                .map_err(|e| ApiError::internal(format!("inventory answered an unexpected product: {e}")))?;
            Ok(p.price)
        }
        404 => Err(not_found()),
        s => Err(ApiError::unavailable(format!("inventory answered {s}"))),
    }
}

fn get_order(req: &Req) -> Result<Reply, ApiError> {
    let id = req.param("id");
    match load(id)? {
        Some((order, _)) => Reply::json(200, &order),
        None => Err(ApiError::not_found(format!("order {id} not found"))),
    }
}

fn list_orders(_req: &Req) -> Result<Reply, ApiError> {
    let keys = kv::list_keys("order:")?;
    let mut all: Vec<Order> = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(200) {
        for value in kv::get_many(chunk)?.into_iter().flatten() {
            all.push(kv::decode("order", &value)?);
        }
    }
    Reply::json(200, &all)
}

/// A customer refund: tell inventory first (it gives stock back at most once,
/// so a repeated message is harmless), then mark the order refunded.
fn refund_order(req: &Req) -> Result<Reply, ApiError> {
    let id = req.param("id");
    let Some((mut order, version)) = load(id)? else {
        return Err(ApiError::not_found(format!("order {id} not found")));
    };
    check_refundable(order.status)?;
    let msg = OrderMessage::RefundRequested { id: &order.id, product_id: &order.product_id, quantity: order.quantity };
    events::publish("order_stream", &msg)?;
    order.status = Status::Refunded;
    match kv::compare_and_swap_json(&order_key(&order.id), Some(version), &order)? {
        CasOutcome::Swapped(_) => {
            log::info("order refunded by customer", &[("order_id", &order.id)]);
            Reply::json(202, &order)
        }
        CasOutcome::Conflict(_) => {
            let current = load(id)?.map(|(o, _)| o.status).unwrap_or(Status::Refunded);
            check_refundable(current)?;
            Err(ApiError::conflict("conflict", "the order changed meanwhile; try again"))
        }
    }
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
    let Settle { id } = ev.json()?;
    match transition(&id, Status::Pending, Status::Completed)? {
        None => Err(EventError::Retry(format!("order {id} is not stored yet"))),
        Some(order) if order.status == Status::Completed => {
            events::publish("order_completed", &order)?;
            log::info("order completed", &[("order_id", &id)]);
            Ok(())
        }
        Some(_) => Ok(()), // refunded meanwhile: nothing to announce
    }
}

/// `refund_order`: inventory could not take the stock; refund the order.
fn on_refund_order(ev: &Event) -> Result<(), EventError> {
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
