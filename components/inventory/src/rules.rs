//! Inventory's business rules as plain functions: validation of product
//! input, and what to do with each outcome of taking or returning stock.
//! No host calls here, so all of it unit-tests natively.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
pub use shop_events::{CompletedOrder, OrderMessage, PRODUCT_CHANGED, ProductChanged, RefundOrder};
use wharf_sdk::ApiError;
use wharf_sdk::money::Cents;
use wharf_sdk::prelude::*;

/// A product as stored (stock lives in its own counter key, `stock:<id>`,
/// so that taking stock is one atomic increment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub price: Cents,
}

/// A product as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProductView {
    pub id: String,
    pub name: String,
    pub price: Cents,
    pub quantity: i64,
}

impl ProductView {
    pub fn new(p: Product, quantity: i64) -> Self {
        ProductView { id: p.id, name: p.name, price: p.price, quantity }
    }
}

/// The `product_changed` event of `product` as stored at `version`.
pub fn announce(product: &Product, version: u64) -> ProductChanged {
    ProductChanged::stored(&product.id, &product.name, product.price, version)
}

/// The response header that carries a product's stored version on a read
/// that went to Redis (`Cache-Control: no-cache`): the `version` a later
/// `product_changed` event will exceed.
pub const VERSION_HEADER: &str = "x-product-version";

/// Fields a PATCH may change; `None` leaves a field as it is.
#[derive(Debug, Default, PartialEq)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub price: Option<Cents>,
    pub quantity: Option<i64>,
}

pub const MAX_NAME_CHARS: usize = 200;
/// What a blank name is made of; `schema::NAME_PATTERN` says the same.
pub const BLANKS: &[char] = &[' ', '\t', '\n', '\r'];
/// Bounded so that any order total stays exact (see `money::MAX_CENTS`).
pub const MAX_QUANTITY: i64 = 1_000_000_000;

/// Validates a POST body: every field required. Unknown fields are ignored.
pub fn parse_create(body: &[u8]) -> Result<(String, Cents, i64), ApiError> {
    let obj = object(body)?;
    let patch = parse_fields(&obj)?;
    let missing = |f: &str| ApiError::unprocessable("invalid_field", format!("`{f}` is required"));
    Ok((
        patch.name.ok_or_else(|| missing("name"))?,
        patch.price.ok_or_else(|| missing("price"))?,
        patch.quantity.ok_or_else(|| missing("quantity"))?,
    ))
}

/// Validates a PATCH body: any subset of the fields, at least one.
pub fn parse_patch(body: &[u8]) -> Result<ProductPatch, ApiError> {
    let obj = object(body)?;
    let patch = parse_fields(&obj)?;
    if patch == ProductPatch::default() {
        return Err(ApiError::unprocessable("invalid_body", "give at least one of `name`, `price`, `quantity`"));
    }
    Ok(patch)
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match wharf_sdk::parse_json::<Value>(body)? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::unprocessable("invalid_body", "the body must be a JSON object")),
    }
}

fn parse_fields(obj: &Map<String, Value>) -> Result<ProductPatch, ApiError> {
    let bad = |f: &str, why: &str| ApiError::unprocessable("invalid_field", format!("`{f}` {why}"));
    let mut patch = ProductPatch::default();
    if let Some(v) = obj.get("name") {
        // One rule the schema states exactly: 1 to 200 characters as sent
        // (`minLength`/`maxLength` count characters), not all blanks
        // (`pattern`); the blanks around it are then dropped.
        let name = v.as_str().ok_or_else(|| bad("name", "must be a string"))?;
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(bad("name", &format!("must have 1 to {MAX_NAME_CHARS} characters")));
        }
        let name = name.trim_matches(BLANKS);
        if name.is_empty() {
            return Err(bad("name", "must not be blank"));
        }
        patch.name = Some(name.to_string());
    }
    if let Some(v) = obj.get("price") {
        let x = v.as_f64().ok_or_else(|| bad("price", "must be a number"))?;
        if x < 0.0 {
            return Err(bad("price", "must be >= 0"));
        }
        patch.price = Some(Cents::from_decimal(x).map_err(|why| bad("price", &why))?);
    }
    if let Some(v) = obj.get("quantity") {
        let q = v.as_i64().ok_or_else(|| bad("quantity", "must be an integer"))?;
        if !(0..=MAX_QUANTITY).contains(&q) {
            return Err(bad("quantity", &format!("must be between 0 and {MAX_QUANTITY}")));
        }
        patch.quantity = Some(q);
    }
    Ok(patch)
}

/// The per-order marker `taken:<order>` records what happened to the order's
/// stock, so every decision below survives redelivery:
/// a decimal delta (stock taken), `refused` (not enough stock: refund sent),
/// or `cancelled` (refunded before the stock was taken: never take it).
pub const REFUSED: &str = "refused";
pub const CANCELLED: &str = "cancelled";

/// Every key of a product is in the product's partition (`{<id>}`): its
/// record, its stock and the markers of the orders that take it change
/// together, and products spread over a cluster's nodes.
pub fn taken_marker(product_id: &str, order_id: &str) -> String {
    format!("taken:{{{product_id}}}:{order_id}")
}

pub fn returned_marker(product_id: &str, order_id: &str) -> String {
    format!("returned:{{{product_id}}}:{order_id}")
}

pub fn stock_key(product_id: &str) -> String {
    format!("stock:{{{product_id}}}")
}

/// Where products are listed from: `product:{<id>}`.
pub const PRODUCT: &str = "product:";

pub fn product_key(product_id: &str) -> String {
    format!("{PRODUCT}{{{product_id}}}")
}

/// What a `taken:<order>` marker says.
#[derive(Debug, PartialEq)]
pub enum Marker {
    Taken,
    Refused,
    Cancelled,
}

pub fn read_marker(value: &[u8]) -> Marker {
    match value {
        b"refused" => Marker::Refused,
        b"cancelled" => Marker::Cancelled,
        _ => Marker::Taken,
    }
}

/// After a customer refund finds the marker already set: give stock back?
pub fn give_back_on_refund(marker: &Marker) -> bool {
    *marker == Marker::Taken
}

/// After `order_completed` finds the marker already set: (re)send the refund?
/// Re-sending is safe: payment ignores a refund for a refunded order.
pub fn resend_refund(marker: &Marker) -> bool {
    *marker == Marker::Refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_requires_every_field() {
        let (name, price, qty) = parse_create(br#"{"name":" Tea ","price":0.1,"quantity":3}"#).unwrap();
        assert_eq!((name.as_str(), price, qty), ("Tea", Cents(10), 3));
        assert_eq!(parse_create(br#"{"name":"Tea","price":1}"#).unwrap_err().status, 422);
        assert_eq!(parse_create(br#"{"name":"Tea","price":1,"quantity":3,"extra":true}"#).unwrap().2, 3);
    }

    #[test]
    fn rejects_bad_fields() {
        for body in [
            r#"{"name":"","price":1,"quantity":1}"#,
            r#"{"name":"   ","price":1,"quantity":1}"#,
            r#"{"name":5,"price":1,"quantity":1}"#,
            r#"{"name":"a","price":-1,"quantity":1}"#,
            r#"{"name":"a","price":"1","quantity":1}"#,
            r#"{"name":"a","price":1.001,"quantity":1}"#,
            r#"{"name":"a","price":1,"quantity":-1}"#,
            r#"{"name":"a","price":1,"quantity":1.5}"#,
            r#"{"name":"a","price":1,"quantity":1e12}"#,
            r#"[1,2]"#,
        ] {
            assert_eq!(parse_create(body.as_bytes()).unwrap_err().status, 422, "{body}");
        }
        let long = format!(r#"{{"name":"{}","price":1,"quantity":1}}"#, "é".repeat(201));
        assert_eq!(parse_create(long.as_bytes()).unwrap_err().status, 422);
        let ok = format!(r#"{{"name":"{}","price":1,"quantity":1}}"#, "é".repeat(200));
        assert!(parse_create(ok.as_bytes()).is_ok());
        assert_eq!(parse_create(b"{nope").unwrap_err().status, 400);
    }

    #[test]
    fn patch_needs_a_field() {
        assert_eq!(parse_patch(b"{}").unwrap_err().status, 422);
        assert_eq!(
            parse_patch(br#"{"quantity":7}"#).unwrap(),
            ProductPatch { quantity: Some(7), ..Default::default() }
        );
    }

    #[test]
    fn markers_decide_redeliveries() {
        assert_eq!(read_marker(b"-3"), Marker::Taken);
        assert!(give_back_on_refund(&read_marker(b"-3")));
        assert!(!give_back_on_refund(&read_marker(b"refused")));
        assert!(!give_back_on_refund(&read_marker(b"cancelled")));
        assert!(resend_refund(&read_marker(b"refused")));
        assert!(!resend_refund(&read_marker(b"-1")));
        assert!(!resend_refund(&read_marker(b"cancelled")));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// JSON-ish bodies: objects with the real field names and values of
        /// every type, plus arbitrary bytes.
        fn body() -> impl Strategy<Value = Vec<u8>> {
            let value = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
                "\\PC{0,300}".prop_map(Value::from),
            ];
            let field = prop_oneof![Just("name"), Just("price"), Just("quantity"), Just("extra")];
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200),
                proptest::collection::btree_map(field, value, 0..4).prop_map(|m| serde_json::to_vec(&m).unwrap()),
            ]
        }

        proptest! {
            #[test]
            fn create_never_panics_and_accepts_only_valid_products(b in body()) {
                if let Ok((name, price, quantity)) = parse_create(&b) {
                    let chars = name.chars().count();
                    prop_assert!((1..=MAX_NAME_CHARS).contains(&chars));
                    prop_assert!(price.0 >= 0);
                    prop_assert!((0..=MAX_QUANTITY).contains(&quantity));
                }
            }

            #[test]
            fn patch_never_panics_and_changes_something(b in body()) {
                if let Ok(p) = parse_patch(&b) {
                    prop_assert!(p != ProductPatch::default());
                    prop_assert!(p.quantity.is_none_or(|q| (0..=MAX_QUANTITY).contains(&q)));
                }
            }
        }
    }
}
