//! JSON Schemas of payment's bodies, for the API docs.

use serde_json::{Value, json};

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
            "status": {"type": "string", "enum": ["pending", "completed", "refunded"]}
        }
    })
}

pub fn new_order() -> Value {
    json!({
        "type": "object",
        "required": ["product_id", "quantity"],
        "properties": {
            "product_id": {"type": "string", "description": "also accepted as `id`, as in the original demo"},
            "quantity": {"type": "integer", "minimum": 1}
        }
    })
}
