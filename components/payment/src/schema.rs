//! JSON Schemas of payment's bodies, for the API docs: exactly what
//! `rules::parse_order` accepts.

use serde_json::{Value, json};

use crate::rules::MAX_QUANTITY;

pub fn order() -> Value {
    json!({
        "type": "object",
        "required": ["id", "product_id", "price", "fee", "total", "quantity", "status"],
        "properties": {
            "id": {"type": "string"},
            "product_id": {"type": "string"},
            "price": {"type": "number", "description": "unit price at order time"},
            "fee": {"type": "number", "description": "fee_rate (default 20%) of price x quantity, to the cent"},
            "total": {"type": "number", "description": "price x quantity + fee"},
            "quantity": {"type": "integer", "minimum": 1},
            "status": {"type": "string", "enum": ["pending", "completed", "refunded"]},
            "customer": {"type": "string", "description": "who placed it (absent when anonymous)"}
        }
    })
}

pub fn new_order() -> Value {
    json!({
        "type": "object",
        "required": ["quantity"],
        "anyOf": [{"required": ["product_id"]}, {"required": ["id"]}],
        "properties": {
            "product_id": {"type": "string", "minLength": 1},
            "id": {"type": "string", "minLength": 1, "description": "the original demo's name for `product_id`, read when that is absent"},
            "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY}
        }
    })
}
