//! JSON Schemas of analytics' answers, for the API docs.

use serde_json::{Value, json};

pub fn sales() -> Value {
    json!({"type": "array", "items": {
        "type": "object",
        "required": ["product_id", "units", "revenue"],
        "properties": {
            "product_id": {"type": "string"},
            "units": {"type": "integer", "description": "sold, refunds deducted"},
            "revenue": {"type": "number", "description": "totals of those orders, refunds deducted"}
        }
    }})
}

pub fn timeline() -> Value {
    json!({
        "type": "object",
        "required": ["id", "steps"],
        "properties": {
            "id": {"type": "string"},
            "steps": {"type": "array", "items": {
                "type": "object",
                "required": ["event", "stream", "entry"],
                "properties": {
                    "event": {"type": "string"},
                    "stream": {"type": "string"},
                    "entry": {"type": "string", "description": "stream entry id: ms since the epoch, then a sequence"}
                }
            }}
        }
    })
}
