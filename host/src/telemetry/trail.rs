//! What a call carries from its cause into what it causes: the request id
//! (for the logs) and, while spans are exported, the W3C `traceparent` of
//! the call's span (so the event's span is its child: `traces`).

use std::sync::Arc;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trail {
    pub request_id: Option<Arc<str>>,
    pub traceparent: Option<Arc<str>>,
}

impl Trail {
    pub fn new(request_id: Option<&str>, traceparent: Option<&str>) -> Trail {
        let keep = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(Arc::from);
        Trail { request_id: keep(request_id), traceparent: keep(traceparent) }
    }

    pub fn is_empty(&self) -> bool {
        self.request_id.is_none() && self.traceparent.is_none()
    }

    /// The one-line form an outbox entry or a delayed event keeps: the
    /// request id, then a space and the `traceparent` when there is one.
    /// Neither has a space of its own (`is_valid_request_id`), and a line
    /// of a host from before traces is a request id alone. `MOVE_DUE`
    /// reads it in Lua.
    pub fn line(&self) -> String {
        let id = self.request_id.as_deref().unwrap_or("");
        match &self.traceparent {
            Some(tp) => format!("{id} {tp}"),
            None => id.to_string(),
        }
    }

    pub fn from_line(line: &str) -> Trail {
        let (id, tp) = line.split_once(' ').unwrap_or((line, ""));
        Trail::new(Some(id), Some(tp))
    }

    /// The entry fields that carry it (`request_id`, `traceparent`), each
    /// name and value handed to `push`.
    pub fn fields(&self, push: &mut impl FnMut(&[u8])) {
        if let Some(id) = &self.request_id {
            push(b"request_id");
            push(id.as_bytes());
        }
        if let Some(tp) = &self.traceparent {
            push(b"traceparent");
            push(tp.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_back_as_written() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        for trail in [Trail::new(Some("req-1"), Some(tp)), Trail::new(Some("req-1"), None), Trail::new(None, Some(tp))]
        {
            assert_eq!(Trail::from_line(&trail.line()), trail);
        }
        assert!(Trail::from_line("").is_empty());
        assert_eq!(Trail::from_line("old-host-id"), Trail::new(Some("old-host-id"), None), "a line from before traces");
    }
}
