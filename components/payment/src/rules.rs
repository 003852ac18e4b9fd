//! Payment's business rules as plain functions: order input, exact money,
//! and which status changes are allowed. No host calls; unit-tested natively.

use serde::{Deserialize, Serialize};
use serde_json::Value;
pub use shop_events::{OrderMessage, ProductChanged, RefundOrder};
use wharf_sdk::ApiError;
use wharf_sdk::money::{Cents, MAX_CENTS};
use wharf_sdk::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Completed,
    Refunded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub product_id: String,
    pub price: Cents,
    pub fee: Cents,
    pub total: Cents,
    pub quantity: i64,
    pub status: Status,
    /// Who placed it (the caller's subject): a customer sees and refunds
    /// only its own orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}

/// May this caller see and refund `order`? An admin any, a customer its own.
pub fn may_access(order: &Order, role: wharf_sdk::Role, subject: Option<&str>) -> bool {
    match role {
        wharf_sdk::Role::Admin => true,
        wharf_sdk::Role::Customer => subject.is_some() && order.customer.as_deref() == subject,
        wharf_sdk::Role::Anonymous => false,
    }
}

/// A validated `POST /orders` body.
#[derive(Debug, PartialEq)]
pub struct OrderRequest {
    pub product_id: String,
    pub quantity: i64,
}

pub const MAX_QUANTITY: i64 = 1_000_000;

/// Accepts `{"product_id", "quantity"}` and the original demo's `{"id", "quantity"}`.
pub fn parse_order(body: &[u8]) -> Result<OrderRequest, ApiError> {
    let Value::Object(obj) = wharf_sdk::parse_json::<Value>(body)? else {
        return Err(ApiError::unprocessable("invalid_body", "the body must be a JSON object"));
    };
    let bad = |f: &str, why: &str| ApiError::unprocessable("invalid_field", format!("`{f}` {why}"));
    // Both names, when both are sent, must be valid (as the schema says);
    // `product_id` wins.
    let mut product_id = None;
    for field in ["id", "product_id"] {
        match obj.get(field) {
            Some(Value::String(s)) if !s.is_empty() => product_id = Some(s.clone()),
            Some(_) => return Err(bad(field, "must be a non-empty string")),
            None => {}
        }
    }
    let Some(product_id) = product_id else { return Err(bad("product_id", "is required")) };
    let quantity = match obj.get("quantity") {
        Some(v) => v.as_i64().ok_or_else(|| bad("quantity", "must be an integer"))?,
        None => return Err(bad("quantity", "is required")),
    };
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(bad("quantity", &format!("must be between 1 and {MAX_QUANTITY}")));
    }
    Ok(OrderRequest { product_id, quantity })
}

/// Price, fee and total of `quantity` units at `unit_price`, fee at `fee_bp`
/// basis points of the subtotal, all exact to the cent. A total past
/// `MAX_CENTS` is refused: an order is stored only if it can be read back
/// (amounts over it are refused as input, so a stored one would be corrupt).
pub fn price_order(unit_price: Cents, quantity: i64, fee_bp: i64) -> Result<(Cents, Cents), ApiError> {
    let overflow = || {
        let max = MAX_CENTS / 100;
        ApiError::unprocessable("invalid_field", format!("order total is too large (at most {max})"))
    };
    let subtotal = unit_price.times(quantity).ok_or_else(overflow)?;
    let fee = subtotal.percent_bp(fee_bp).ok_or_else(overflow)?;
    let total = subtotal.plus(fee).filter(|t| t.0 <= MAX_CENTS).ok_or_else(overflow)?;
    Ok((fee, total))
}

/// Parses the fee rate from config (`0.2` = 20%) into basis points.
pub fn fee_rate_bp(config: Option<&str>) -> i64 {
    config
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|r| r.is_finite() && (0.0..=10.0).contains(r))
        .map(|r| wharf_sdk::money::round(r * 10_000.0) as i64)
        .unwrap_or(2_000)
}

/// May a customer refund an order in `status`? Only a completed one.
pub fn check_refundable(status: Status) -> Result<(), ApiError> {
    match status {
        Status::Completed => Ok(()),
        Status::Pending => Err(ApiError::conflict("not_completed", "the order is still pending")),
        Status::Refunded => Err(ApiError::conflict("already_refunded", "the order is already refunded")),
    }
}

/// Event payload on `payment_settle`: settle this order.
#[derive(Debug, Serialize, Deserialize)]
pub struct Settle {
    pub id: String,
    /// How many times the order was looked for and not found yet.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub checks: u32,
    /// The order as it was stored with this event, at version 1: settling
    /// it is then one compare-and-swap, with no read first. Absent from the
    /// events of earlier payment versions, and from the looks again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
}

/// The version an order has when it is stored with its settle event.
pub const FIRST_VERSION: u64 = 1;

/// The order to swap in at [`FIRST_VERSION`] without reading it first:
/// the event's own copy, completed, when it is a pending copy of the order
/// the event names. `None`: read the order and decide (the old way).
pub fn settled_copy(msg: &Settle) -> Option<Order> {
    let stored = msg.order.as_ref().filter(|o| o.id == msg.id && o.status == Status::Pending)?;
    Some(Order { status: Status::Completed, ..stored.clone() })
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Payment's copy of a product's price, as of inventory's `version` of it;
/// no price once the product is deleted (for good: ids are never reused).
/// `checked_ms`: when inventory last told payment (wall clock, ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnownPrice {
    pub price: Option<Cents>,
    pub version: u64,
    #[serde(default)]
    pub checked_ms: u64,
}

impl KnownPrice {
    /// A deletion outranks every version.
    pub fn gone(now_ms: u64) -> Self {
        KnownPrice { price: None, version: u64::MAX, checked_ms: now_ms }
    }

    /// A price inventory has not confirmed for longer than `max_age_ms` is
    /// asked again: an announcement can be lost (dead-lettered after its
    /// retries) or never sent (an inventory build from before announcements,
    /// after a rollback). A deletion is final and never stale.
    pub fn is_stale(&self, now_ms: u64, max_age_ms: u64) -> bool {
        self.price.is_some() && now_ms.saturating_sub(self.checked_ms) > max_age_ms
    }
}

/// Who tells payment a price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A `product_changed` announcement: may come twice or out of order.
    Event,
    /// Inventory's own answer to payment's question, read from Redis, when
    /// copies unconfirmed for `max_age_ms` are asked again.
    Owner { max_age_ms: u64 },
}

/// Whether `incoming` replaces what payment knows. Only a newer version
/// does, so a late or repeated event never rolls a price back; inventory's
/// own answer also renews the same version (its `checked_ms`), but only a
/// copy that is still stale: of the orders that found it stale at once, the
/// first renews it and the rest leave it be. Nothing replaces a deletion.
pub fn replaces(incoming: &KnownPrice, stored: Option<&KnownPrice>, source: Source) -> bool {
    stored.is_none_or(|s| {
        incoming.version > s.version
            || match source {
                Source::Event => false,
                Source::Owner { max_age_ms } => {
                    incoming.version == s.version && s.is_stale(incoming.checked_ms, max_age_ms)
                }
            }
    })
}

/// What a `product_changed` event tells payment, or why it is malformed.
pub fn known_price(change: &ProductChanged, now_ms: u64) -> Result<KnownPrice, String> {
    match (change.deleted, change.version, change.price) {
        (true, _, _) => Ok(KnownPrice::gone(now_ms)),
        (false, Some(version), Some(price)) if version >= 1 => {
            Ok(KnownPrice { price: Some(price), version, checked_ms: now_ms })
        }
        _ => Err(format!("product_changed for {} lacks a version or a price", change.id)),
    }
}

/// Where payment keeps its copy of a product's price: in the product's
/// partition. Each key names its partition (`{...}`), so orders, prices
/// and customers spread over a cluster's nodes.
pub fn price_key(product_id: &str) -> String {
    format!("price:{{{product_id}}}")
}

/// Where orders are listed from: `order:{<id>}`, each order its own partition.
pub const ORDER: &str = "order:";

pub fn order_key(id: &str) -> String {
    format!("{ORDER}{{{id}}}")
}

/// Where a customer's index of their own orders starts, in the customer's
/// partition: the subject is escaped as in [`idempotency_key`], `:` too, so
/// one customer's prefix is never the start of another's.
pub fn customer_index_prefix(subject: &str) -> String {
    let mut out = String::from("customer:{");
    escape_into(&mut out, subject, &[':']);
    out.push_str("}:");
    out
}

/// A customer's index entry for one of their orders.
pub fn customer_order_key(subject: &str, order_id: &str) -> String {
    format!("{}{order_id}", customer_index_prefix(subject))
}

/// `key` is the caller's own text (their subject and `Idempotency-Key`):
/// the host refuses braces and control characters in keys, so those (and
/// `%`, to keep the mapping one-to-one) are percent-encoded.
pub fn idempotency_key(key: &str) -> String {
    let mut out = String::from("idempotency:{");
    escape_into(&mut out, key, &[]);
    out.push('}');
    out
}

/// Appends `text` with braces, control characters, `%` and `also`
/// percent-encoded.
fn escape_into(out: &mut String, text: &str, also: &[char]) {
    for c in text.chars() {
        if c == '{' || c == '}' || c == '%' || c.is_control() || also.contains(&c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    fn pending(id: &str) -> Order {
        Order {
            id: id.into(),
            product_id: "p".into(),
            price: Cents(100),
            fee: Cents(1),
            total: Cents(101),
            quantity: 1,
            status: Status::Pending,
            customer: None,
        }
    }

    #[test]
    fn a_settle_event_with_its_pending_order_is_settled_from_its_copy() {
        let msg = Settle { id: "o1".into(), checks: 0, order: Some(pending("o1")) };
        assert_eq!(settled_copy(&msg), Some(Order { status: Status::Completed, ..pending("o1") }));
    }

    #[test]
    fn a_settle_event_without_a_usable_copy_reads_the_order() {
        assert_eq!(settled_copy(&Settle { id: "o1".into(), checks: 0, order: None }), None, "an older payment's event");
        let other = Settle { id: "o1".into(), checks: 0, order: Some(pending("o2")) };
        assert_eq!(settled_copy(&other), None, "a copy of another order");
        let done =
            Settle { id: "o1".into(), checks: 0, order: Some(Order { status: Status::Completed, ..pending("o1") }) };
        assert_eq!(settled_copy(&done), None, "a copy that is not pending");
        let old: Settle = serde_json::from_str(r#"{"id":"o1"}"#).unwrap();
        assert_eq!(settled_copy(&old), None, "the payload of an earlier payment version");
    }

    use super::*;

    #[test]
    fn no_customer_index_holds_another() {
        assert_eq!(customer_order_key("jwt#alice", "01A"), "customer:{jwt#alice}:01A");
        // `a` and `a:b` are two customers: neither prefix starts the other.
        let (a, ab) = (customer_index_prefix("a"), customer_index_prefix("a:b"));
        assert!(!ab.starts_with(&a) && !a.starts_with(&ab), "{a} {ab}");
        assert_eq!(customer_index_prefix("x{%}"), "customer:{x%7B%25%7D}:");
    }

    fn known(cents: i64, version: u64) -> KnownPrice {
        KnownPrice { price: Some(Cents::from_decimal(cents as f64 / 100.0).unwrap()), version, checked_ms: 7 }
    }

    #[test]
    fn only_a_newer_version_replaces_a_known_price() {
        for source in [Source::Event, Source::Owner { max_age_ms: 1000 }] {
            assert!(replaces(&known(100, 1), None, source));
            assert!(replaces(&known(120, 2), Some(&known(100, 1)), source));
            // A late or repeated event never rolls the price back.
            assert!(!replaces(&known(100, 1), Some(&known(120, 2)), source));
            // A deletion is final: nothing replaces it, and it replaces everything.
            assert!(replaces(&KnownPrice::gone(7), Some(&known(120, 7)), source));
            assert!(!replaces(&known(130, 8), Some(&KnownPrice::gone(7)), source));
            assert!(!replaces(&KnownPrice::gone(8), Some(&KnownPrice::gone(7)), source));
        }
        // The same version again: a repeated event changes nothing; the
        // owner's answer renews a stale copy (checked at 7), once.
        let owner = Source::Owner { max_age_ms: 1000 };
        let answer = KnownPrice { checked_ms: 2000, ..known(120, 2) };
        assert!(!replaces(&answer, Some(&known(120, 2)), Source::Event));
        assert!(replaces(&answer, Some(&known(120, 2)), owner));
        assert!(!replaces(&answer, Some(&answer), owner), "already renewed");
    }

    #[test]
    fn a_price_is_asked_again_once_unconfirmed_for_too_long() {
        let p = known(100, 1); // checked at 7
        assert!(!p.is_stale(7 + 1000, 1000));
        assert!(p.is_stale(7 + 1001, 1000));
        assert!(!p.is_stale(0, 1000), "a clock that went back is not staleness");
        assert!(!KnownPrice::gone(7).is_stale(u64::MAX, 1000), "a deletion is final");
    }

    #[test]
    fn product_changed_events_are_read_strictly() {
        let parse = |s: &str| known_price(&serde_json::from_str::<ProductChanged>(s).unwrap(), 7);
        assert_eq!(parse(r#"{"id":"a","version":3,"name":"tea","price":1.5}"#), Ok(known(150, 3)));
        assert_eq!(parse(r#"{"id":"a","deleted":true}"#), Ok(KnownPrice::gone(7)));
        assert!(parse(r#"{"id":"a","version":3}"#).is_err());
        assert!(parse(r#"{"id":"a","price":1.5}"#).is_err());
        assert!(parse(r#"{"id":"a","version":0,"price":1.5}"#).is_err());
    }

    #[test]
    fn idempotency_keys_never_hold_braces_or_control_characters() {
        assert_eq!(idempotency_key("4:anna:k-1"), "idempotency:{4:anna:k-1}");
        assert_eq!(idempotency_key("0::{a}%\t"), "idempotency:{0::%7Ba%7D%25%09}");
        // One-to-one: an encoded form typed literally stays distinct.
        assert_ne!(idempotency_key("%7B"), idempotency_key("{"));
    }

    #[test]
    fn accepts_both_body_shapes() {
        let want = OrderRequest { product_id: "P1".into(), quantity: 2 };
        assert_eq!(parse_order(br#"{"product_id":"P1","quantity":2}"#).unwrap(), want);
        assert_eq!(parse_order(br#"{"id":"P1","quantity":2}"#).unwrap(), want);
    }

    #[test]
    fn rejects_bad_orders() {
        for body in [
            r#"{"product_id":"P1","quantity":0}"#,
            r#"{"product_id":"P1","quantity":-1}"#,
            r#"{"product_id":"P1","quantity":"2"}"#,
            r#"{"product_id":"P1"}"#,
            r#"{"quantity":1}"#,
            r#"{"product_id":7,"quantity":1}"#,
            r#"{"product_id":"P1","quantity":1.5}"#,
            "3",
        ] {
            assert_eq!(parse_order(body.as_bytes()).unwrap_err().status, 422, "{body}");
        }
        assert_eq!(parse_order(b"{").unwrap_err().status, 400);
    }

    #[test]
    fn money_is_exact() {
        assert_eq!(price_order(Cents(10), 3, 2000).unwrap(), (Cents(6), Cents(36)));
        assert_eq!(price_order(Cents(1999), 1, 2000).unwrap(), (Cents(400), Cents(2399)));
        assert_eq!(price_order(Cents(0), 5, 2000).unwrap(), (Cents(0), Cents(0)));
        assert!(price_order(Cents(i64::MAX / 2), 3, 2000).is_err());
        // Every input in bounds, yet a total no order could be read back with.
        assert!(price_order(Cents(MAX_CENTS), 1_000, 2000).is_err());
        assert_eq!(price_order(Cents(MAX_CENTS / 12 * 10), 1, 2000).unwrap().1, Cents(MAX_CENTS / 12 * 12));
    }

    #[test]
    fn fee_rate_from_config() {
        assert_eq!(fee_rate_bp(None), 2000);
        assert_eq!(fee_rate_bp(Some("0.2")), 2000);
        assert_eq!(fee_rate_bp(Some("0.075")), 750);
        assert_eq!(fee_rate_bp(Some("nonsense")), 2000);
        assert_eq!(fee_rate_bp(Some("-1")), 2000);
    }

    #[test]
    fn only_completed_orders_refund() {
        assert!(check_refundable(Status::Completed).is_ok());
        assert_eq!(check_refundable(Status::Pending).unwrap_err().status, 409);
        assert_eq!(check_refundable(Status::Refunded).unwrap_err().status, 409);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn body() -> impl Strategy<Value = Vec<u8>> {
            let value = prop_oneof![
                Just(Value::Null),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
                "\\PC{0,80}".prop_map(Value::from),
            ];
            let field = prop_oneof![Just("product_id"), Just("id"), Just("quantity"), Just("extra")];
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200),
                proptest::collection::btree_map(field, value, 0..4).prop_map(|m| serde_json::to_vec(&m).unwrap()),
            ]
        }

        proptest! {
            #[test]
            fn order_input_never_panics_and_is_bounded(b in body()) {
                if let Ok(o) = parse_order(&b) {
                    prop_assert!(!o.product_id.is_empty());
                    prop_assert!((1..=MAX_QUANTITY).contains(&o.quantity));
                }
            }

            #[test]
            fn money_never_overflows_silently(price in 0i64..=wharf_sdk::money::MAX_CENTS, q in 1i64..=MAX_QUANTITY, bp in 0i64..=100_000) {
                if let Ok((fee, total)) = price_order(Cents(price), q, bp) {
                    prop_assert!(fee.0 >= 0);
                    prop_assert_eq!(total.0, price * q + fee.0);
                    prop_assert!(total.0 <= MAX_CENTS, "a total that could not be read back");
                }
            }
        }
    }
}
