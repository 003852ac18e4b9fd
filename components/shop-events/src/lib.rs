//! The demo shop's events: the streams inventory and payment talk through,
//! and each payload in one place, so a publisher and its consumers cannot
//! drift apart. Consumers ignore fields they do not read, so a payload may
//! grow; a field may not change meaning.

#![no_std]

extern crate alloc;

use alloc::string::String;
use serde::{Deserialize, Serialize};
use wharf_sdk::money::Cents;

/// Inventory announces a product's name and price, or its deletion.
pub const PRODUCT_CHANGED: &str = "product_changed";
/// Payment: an order was settled; inventory takes its stock.
pub const ORDER_COMPLETED: &str = "order_completed";
/// Inventory: an order's stock could not be taken; payment refunds it.
pub const REFUND_ORDER: &str = "refund_order";
/// Payment: a customer asked for a refund; inventory gives the stock back.
pub const ORDER_STREAM: &str = "order_stream";

/// `product_changed`: sent in the same atomic step as the write it
/// announces: a product's name and price as of `version` (its stored
/// version: 1 when created, one more on each change), or its deletion.
/// Stock changes are not announced. Consumers keep the highest version they
/// saw: events may come twice or out of order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductChanged {
    pub id: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Cents>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ProductChanged {
    /// A product's name and price as stored at `version`.
    pub fn stored(id: &str, name: &str, price: Cents, version: u64) -> Self {
        ProductChanged {
            id: id.into(),
            deleted: false,
            version: Some(version),
            name: Some(name.into()),
            price: Some(price),
        }
    }

    /// The product is gone for good (ids are never reused).
    pub fn deleted(id: &str) -> Self {
        ProductChanged { id: id.into(), deleted: true, version: None, name: None, price: None }
    }
}

/// `order_completed`, the part inventory reads (payment sends the whole order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletedOrder {
    pub id: String,
    pub product_id: String,
    pub quantity: i64,
}

/// `refund_order`: inventory could not take the stock for this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundOrder {
    pub id: String,
    #[serde(default)]
    pub reason: String,
}

/// `order_stream` messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OrderMessage {
    /// The customer asked for a refund: give the stock back if it was taken.
    RefundRequested { id: String, product_id: String, quantity: i64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire forms the streams carry, which hosts and stored events of
    /// earlier versions also hold.
    #[test]
    fn payloads_keep_their_wire_form() {
        let changed = ProductChanged::stored("P1", "Tea", Cents(150), 2);
        assert_eq!(serde_json::to_string(&changed).unwrap(), r#"{"id":"P1","version":2,"name":"Tea","price":1.5}"#);
        assert_eq!(serde_json::to_string(&ProductChanged::deleted("P1")).unwrap(), r#"{"id":"P1","deleted":true}"#);
        let msg = OrderMessage::RefundRequested { id: "O1".into(), product_id: "P1".into(), quantity: 2 };
        assert_eq!(
            serde_json::to_string(&msg).unwrap(),
            r#"{"type":"refund_requested","id":"O1","product_id":"P1","quantity":2}"#
        );
        let refund: RefundOrder = serde_json::from_str(r#"{"id":"O1"}"#).unwrap();
        assert_eq!(refund.reason, "");
    }
}
