//! Analytics rules: what each stream event means for the figures. Plain
//! functions, unit-tested natively.

use serde::{Deserialize, Serialize};
use wharf_sdk::money::Cents;
use wharf_sdk::prelude::*;

/// The part of an `order_completed` event analytics keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sale {
    pub id: String,
    pub product_id: String,
    pub quantity: i64,
    pub total: Cents,
}

/// Any event that names an order by `id` (`refund_order`, `order_stream`).
#[derive(Debug, Deserialize)]
pub struct OrderRef {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// One line of an order's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub event: String,
    pub stream: String,
    /// Stream entry id: milliseconds since the epoch, then a sequence number.
    pub entry: String,
}

/// Sales figures of one product.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProductSales {
    pub product_id: String,
    pub units: i64,
    pub revenue: Cents,
}

/// The timeline label of an event on `stream`.
pub fn step_name(stream: &str, kind: Option<&str>) -> String {
    match (stream, kind) {
        ("order_completed", _) => "completed".into(),
        ("refund_order", _) => "refused_by_inventory".into(),
        ("order_stream", Some(k)) => k.to_string(),
        (s, _) => s.to_string(),
    }
}

/// How a refund changes a product's figures: the sale is taken back.
pub fn refund_deltas(sale: &Sale) -> (i64, i64) {
    (-sale.quantity, -sale.total.0)
}

pub fn units_key(product: &str) -> String {
    format!("units:{product}")
}
pub fn revenue_key(product: &str) -> String {
    format!("revenue:{product}")
}
/// Set when a refund of the order is seen, whether or not its sale was yet.
pub fn refund_key(order: &str) -> String {
    format!("refunded:{order}")
}

pub fn sale_key(order: &str) -> String {
    format!("sale:{order}")
}
pub fn timeline_key(order: &str, entry: &str) -> String {
    format!("timeline:{order}:{entry}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_steps() {
        assert_eq!(step_name("order_completed", None), "completed");
        assert_eq!(step_name("order_stream", Some("refund_requested")), "refund_requested");
        assert_eq!(step_name("refund_order", None), "refused_by_inventory");
    }

    #[test]
    fn refunds_take_the_sale_back() {
        let sale = Sale { id: "o".into(), product_id: "p".into(), quantity: 3, total: Cents(360) };
        assert_eq!(refund_deltas(&sale), (-3, -360));
    }

    #[test]
    fn timeline_keys_sort_by_entry() {
        assert!(timeline_key("o", "1700000000000-0") < timeline_key("o", "1700000000001-0"));
    }
}
