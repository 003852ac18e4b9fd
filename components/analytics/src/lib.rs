//! Analytics: an example component written from docs/PLUGIN_GUIDE.md alone.
//!
//! It reads the order streams in its own consumer groups (so inventory and
//! payment still see every event) and serves what it derives:
//! - `GET /analytics/sales`: units and revenue per product, refunds deducted;
//! - `GET /analytics/orders/{id}/timeline`: every stream event of one order.
//!
//! Each figure changes through `kv.increment` with a `once` marker per order,
//! so a redelivered event never counts twice. Streams are not ordered with
//! respect to each other (a crashed host's events come back later), so a
//! refund seen before its sale is remembered and applied when the sale comes.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

// No std: two WASI imports instead of two dozen per instance (wharf_sdk::rt).
wharf_sdk::no_std_runtime!();

pub mod rules;
mod schema;

use rules::*;
use shop_events::{ORDER_COMPLETED, ORDER_STREAM, REFUND_ORDER};
use wharf_sdk::kv;
use wharf_sdk::money::Cents;
use wharf_sdk::prelude::*;
use wharf_sdk::{ApiError, App, Component, Event, EventError, Reply, Req, Role, ids};

pub struct Analytics;

impl Component for Analytics {
    fn app() -> App {
        App::new("analytics")
            .get("/analytics/sales", sales)
            .doc("Units sold and revenue per product, refunds deducted", None, Some(schema::sales))
            .answers(&[
                (200, "Per product"),
                (401, "No credentials"),
                (403, "Not an admin"),
                (422, "A bad limit or after"),
            ])
            .paged(MAX_PAGE)
            .get("/analytics/orders/{id}/timeline", timeline)
            .doc("Every stream event seen for one order, in order", None, Some(schema::timeline))
            .answers(&[
                (200, "The order's steps"),
                (401, "No credentials"),
                (403, "Not an admin"),
                (404, "No event seen for it"),
            ])
            .subscribe(ORDER_COMPLETED, "analytics-group", on_completed)
            .subscribe(REFUND_ORDER, "analytics-group", on_refund)
            .subscribe(ORDER_STREAM, "analytics-group", on_refund)
    }
}

wharf_sdk::export_component!(Analytics);

/// The timeline entry of `ev` for `order`, added to `writes`. Same key on
/// redelivery: the timeline never shows an event twice (unless an older
/// analytics stored it under its key without the stream, `timeline_key`).
fn record_step(writes: &mut kv::Writes, ev: &Event, order: &str, kind: Option<&str>) -> Result<(), EventError> {
    let step = Step { event: step_name(&ev.stream, kind), stream: ev.stream.clone(), entry: ev.id.clone() };
    writes.set_json(&timeline_key(order, &ev.stream, &ev.id), &step)?;
    Ok(())
}

/// A sale: stored and put on the timeline in one atomic step (the order's
/// partition), which also reads the order's refund mark; counted in another
/// (the product's: the figures with their once-markers); then a refund that
/// came first is applied. A redelivery after either step redoes both, and
/// each changes nothing the second time.
fn on_completed(ev: &Event) -> Result<(), EventError> {
    ev.require_origin("payment")?;
    let sale: Sale = ev.json()?;
    let mut writes = kv::Writes::new();
    writes.set_if_absent(&sale_key(&sale.id), &kv::encode(&sale)?, None);
    record_step(&mut writes, ev, &sale.id, None)?;
    // The refund came first if it left its mark (`REFUND_MARK`),
    // looked for in the same step as the sale is stored, never before: an
    // increment by 0 that must leave at least 1 writes nothing unless the
    // mark is there, and answers whether it is.
    writes.increment(&refund_key(&sale.id), 0, Some(1), None, None);
    let refunded = matches!(writes.apply()?.last(), Some(kv::Written::Increment(kv::IncrementOutcome::Applied(_))));
    let (product, order) = (&sale.product_id, &sale.id);
    kv::Writes::new()
        .increment(&units_key(product), sale.quantity, None, None, Some(&counted_key("units-counted", product, order)))
        .increment(
            &revenue_key(product),
            sale.total.0,
            None,
            None,
            Some(&counted_key("revenue-counted", product, order)),
        )
        .apply()?;
    if refunded {
        take_back(&sale)?;
    }
    Ok(())
}

/// A refund takes the sale back. It marks the order first, then looks for the
/// sale: whichever of the two handlers runs second sees the other's write, so
/// the refund is applied at least once, and the `once` markers make it once.
fn on_refund(ev: &Event) -> Result<(), EventError> {
    // Inventory refuses stock on `refund_order`; customer refunds come from payment.
    ev.require_origin(if ev.stream == REFUND_ORDER { "inventory" } else { "payment" })?;
    let order: OrderRef = ev.json()?;
    let mut writes = kv::Writes::new();
    record_step(&mut writes, ev, &order.id, order.kind.as_deref())?;
    writes.set_if_absent(&refund_key(&order.id), REFUND_MARK, None).apply()?;
    if let Some(sale) = kv::get_json::<Sale>(&sale_key(&order.id))? {
        take_back(&sale)?;
    }
    Ok(())
}

/// What a refund leaves at `refund_key`: an integer of at least 1, which
/// `on_completed` reads with an increment.
const REFUND_MARK: &[u8] = b"1";

fn take_back(sale: &Sale) -> Result<(), EventError> {
    let (units, revenue) = refund_deltas(sale);
    let (product, order) = (&sale.product_id, &sale.id);
    kv::Writes::new()
        .increment(&units_key(product), units, None, None, Some(&counted_key("units-refunded", product, order)))
        .increment(&revenue_key(product), revenue, None, None, Some(&counted_key("revenue-refunded", product, order)))
        .apply()?;
    Ok(())
}

fn number(v: Option<&Vec<u8>>) -> i64 {
    v.and_then(|b| core::str::from_utf8(b).ok()).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The largest page `GET /analytics/sales?limit=` serves.
const MAX_PAGE: u32 = 1000;

/// Figures for the business, not for customers: admins only. Every product
/// sold, page by page in id order (streamed whole by the host), or with
/// `?limit=N` one page and a `Link` to the next.
fn sales(req: &Req) -> Result<Reply, ApiError> {
    req.require(&[Role::Admin])?;
    let page = req.page(MAX_PAGE)?;
    let (products, next) = kv::list_partitions_for("units:", &page)?;
    let mut keys: Vec<String> = products.iter().map(|p| units_key(p)).collect();
    keys.extend(products.iter().map(|p| revenue_key(p)));
    let values = kv::get_many(&keys)?;
    let (units, revenue) = values.split_at(products.len());
    let all: Vec<ProductSales> = products
        .iter()
        .zip(units.iter().zip(revenue))
        .map(|(p, (u, r))| ProductSales {
            product_id: p.clone(),
            units: number(u.as_ref()),
            revenue: Cents(number(r.as_ref())),
        })
        .collect();
    Reply::list(&page, "/analytics/sales", &all, next.as_deref())
}

/// An order's history: admins only (analytics does not know whose order it is).
fn timeline(req: &Req) -> Result<Reply, ApiError> {
    req.require(&[Role::Admin])?;
    let id = req.param("id");
    if !ids::is_valid(id) {
        return Err(ApiError::not_found(format!("order {id} not found")));
    }
    let keys = kv::list_keys(&format!("{}:", timeline_prefix(id)))?;
    if keys.is_empty() {
        return Err(ApiError::not_found(format!("no events seen for order {id}")));
    }
    let mut steps: Vec<Step> =
        kv::get_many(&keys)?.into_iter().flatten().map(|v| kv::decode("step", &v)).collect::<Result<_, _>>()?;
    sort_timeline(&mut steps);
    Reply::json(200, &serde_json::json!({"id": id, "steps": steps}))
}
