//! JSON Schemas of inventory's bodies, for the API docs: exactly what
//! `rules::parse_fields` accepts, bounds included (a test checks them).

use serde_json::{Value, json};
use wharf_sdk::money::MAX_CENTS;

use crate::rules::{MAX_NAME_CHARS, MAX_QUANTITY};

/// Not only blanks (`rules::BLANKS`).
pub const NAME_PATTERN: &str = "[^ \t\n\r]";

/// A price: whole cents, so a multiple of 0.01 (see `wharf_sdk::money`).
fn price() -> Value {
    json!({"type": "number", "minimum": 0, "maximum": MAX_CENTS / 100, "multipleOf": 0.01})
}

pub fn product() -> Value {
    json!({
        "type": "object",
        "required": ["id", "name", "price", "quantity"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "price": price(),
            "quantity": {"type": "integer", "minimum": 0, "maximum": MAX_QUANTITY}
        }
    })
}

pub fn new_product() -> Value {
    json!({
        "type": "object",
        "required": ["name", "price", "quantity"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS, "pattern": NAME_PATTERN},
            "price": price(),
            "quantity": {"type": "integer", "minimum": 0, "maximum": MAX_QUANTITY}
        }
    })
}

pub fn patch() -> Value {
    let mut p = new_product();
    p["required"] = json!([]);
    p["minProperties"] = json!(1);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse_create;

    /// The bounds the schema publishes are the ones the rules enforce, on
    /// both sides of each.
    #[test]
    fn the_schema_states_what_the_rules_accept() {
        let s = new_product();
        let p = &s["properties"];
        let max_price = p["price"]["maximum"].as_f64().unwrap();
        let max_quantity = p["quantity"]["maximum"].as_i64().unwrap();
        let max_name = p["name"]["maxLength"].as_u64().unwrap() as usize;
        let body = |name: &str, price: f64, quantity: i64| {
            json!({"name": name, "price": price, "quantity": quantity}).to_string().into_bytes()
        };
        assert!(parse_create(&body(&"é".repeat(max_name), max_price, max_quantity)).is_ok());
        assert!(parse_create(&body(&"é".repeat(max_name + 1), 1.0, 1)).is_err());
        assert!(parse_create(&body("a", max_price + 0.01, 1)).is_err());
        assert!(parse_create(&body("a", 1.0, max_quantity + 1)).is_err());
        assert!(parse_create(&body("a", 0.0, 0)).is_ok());
        // Blank is what the pattern calls blank.
        assert_eq!(NAME_PATTERN, "[^ \t\n\r]");
        assert!(parse_create(&body(" \t\r\n", 1.0, 1)).is_err());
        assert!(parse_create(&body("\u{a0}", 1.0, 1)).is_ok());
    }
}
