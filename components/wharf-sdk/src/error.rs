//! Typed errors: `ApiError` becomes the JSON error shape
//! `{"error":{"code","message"}}`; `EventError` becomes retry or reject.

use crate::Response;
use crate::bindings::wharf::plugin::types::Error as WitError;
use crate::prelude::*;

/// A failed host capability call.
#[derive(Debug, Clone, PartialEq)]
pub enum HostError {
    /// The host refused the argument.
    Invalid(String),
    /// Redis or a called component is unreachable right now.
    Unavailable(String),
    Internal(String),
}

impl From<WitError> for HostError {
    fn from(e: WitError) -> Self {
        match e {
            WitError::Invalid(m) => HostError::Invalid(m),
            WitError::Unavailable(m) => HostError::Unavailable(m),
            WitError::Internal(m) => HostError::Internal(m),
        }
    }
}

impl core::fmt::Display for HostError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HostError::Invalid(m) => write!(f, "invalid: {m}"),
            HostError::Unavailable(m) => write!(f, "unavailable: {m}"),
            HostError::Internal(m) => write!(f, "internal: {m}"),
        }
    }
}

/// An HTTP error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { status, code: code.into(), message: message.into() }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }
    pub fn unprocessable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(422, code, message)
    }
    pub fn conflict(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(409, code, message)
    }
    /// No credentials where some are needed.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(401, "unauthenticated", message)
    }
    /// Credentials, but not allowed to do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "forbidden", message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "unavailable", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal", message)
    }

    pub(crate) fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        Response {
            status: self.status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }
}

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        match e {
            HostError::Unavailable(m) => ApiError::unavailable(m),
            HostError::Invalid(m) => ApiError::new(400, "invalid", m),
            HostError::Internal(m) => ApiError::internal(m),
        }
    }
}

/// Why an event was not handled.
#[derive(Debug, Clone, PartialEq)]
pub enum EventError {
    /// Deliver it again later.
    Retry(String),
    /// Never: dead-letter it.
    Reject(String),
}

impl From<HostError> for EventError {
    fn from(e: HostError) -> Self {
        match e {
            HostError::Invalid(m) => EventError::Reject(m),
            other => EventError::Retry(other.to_string()),
        }
    }
}
