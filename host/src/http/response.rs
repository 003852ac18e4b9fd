//! The answers every part of the HTTP side shares: the JSON error shape
//! `{"error":{"code","message"}}`, JSON bodies, and draining a body that
//! will not be read.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde_json::json;

/// A whole answer.
pub type Response = hyper::Response<Full<Bytes>>;

/// An oversized body is read and discarded up to this much (and this long)
/// before the 413 goes out: a client still sending would otherwise get a
/// broken pipe instead of the answer.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads and drops what is left of a body (bounded), then the 413 can be read
/// by the client; the connection is closed after it (`Connection: close`).
pub async fn drain(mut body: Incoming) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(status, &json!({"error": {"code": code, "message": message}}))
}
