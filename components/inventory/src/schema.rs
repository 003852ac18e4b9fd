//! JSON Schemas of inventory's bodies, for the API docs.

use serde_json::{Value, json};

pub fn product() -> Value {
    json!({
        "type": "object",
        "required": ["id", "name", "price", "quantity"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "price": {"type": "number", "minimum": 0, "multipleOf": 0.01},
            "quantity": {"type": "integer", "minimum": 0}
        }
    })
}

pub fn new_product() -> Value {
    json!({
        "type": "object",
        "required": ["name", "price", "quantity"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "price": {"type": "number", "minimum": 0, "multipleOf": 0.01},
            "quantity": {"type": "integer", "minimum": 0}
        }
    })
}

pub fn patch() -> Value {
    let mut p = new_product();
    p["required"] = json!([]);
    p["minProperties"] = json!(1);
    p
}
