//! The log capability (`wharf:plugin/log`): a component's lines in the
//! host's log (target `wharf::guest`), within `limits.log_lines_per_second`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::{HasSelf, Linker};

use crate::capability::budget::Budget;
use crate::capability::refusals::Refusals;
use crate::engine::bindings::wharf::plugin::log;

/// One component version's log budget.
pub struct LogGrant {
    budget: Budget,
    /// Lines dropped over budget since the last one that went out.
    dropped: AtomicU64,
    refusals: Arc<Refusals>,
}

/// One call's log context: its version's budget, shared by all its calls.
pub struct LogCtx(Arc<LogGrant>);

impl LogGrant {
    pub fn new(lines_per_second: u32, refusals: Arc<Refusals>) -> Arc<LogGrant> {
        Arc::new(LogGrant { budget: Budget::new(lines_per_second), dropped: AtomicU64::new(0), refusals })
    }
}

impl LogCtx {
    pub fn new(grant: &Arc<LogGrant>) -> LogCtx {
        LogCtx(grant.clone())
    }
}

/// Puts `log` in `linker`; `get` finds the call's context.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut LogCtx,
) -> wasmtime::Result<()> {
    log::add_to_linker::<T, HasSelf<LogCtx>>(linker, get)
}

impl log::Host for LogCtx {
    async fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) -> wasmtime::Result<()> {
        use log::Level;
        let g = &self.0;
        let component = g.refusals.component();
        // Over its budget a line is dropped and counted; the next line that
        // goes out says how many were.
        if !g.budget.try_take() {
            if g.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                g.refusals.count("log");
            }
            return Ok(());
        }
        let dropped = g.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(target: "wharf::sandbox", component, dropped, "log lines dropped: over limits.log_lines_per_second");
        }
        // A guest's line break or control character would forge host log lines.
        let message = escape_controls(&message);
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{}={}", escape_controls(k), escape_controls(v)))
            .collect::<Vec<_>>()
            .join(" ");
        match level {
            Level::Trace => tracing::trace!(target: "wharf::guest", component, %fields, "{message}"),
            Level::Debug => tracing::debug!(target: "wharf::guest", component, %fields, "{message}"),
            Level::Info => tracing::info!(target: "wharf::guest", component, %fields, "{message}"),
            Level::Warn => tracing::warn!(target: "wharf::guest", component, %fields, "{message}"),
            Level::Error => tracing::error!(target: "wharf::guest", component, %fields, "{message}"),
        }
        Ok(())
    }
}

/// `text` with control characters (line breaks included) written as
/// escapes, so one guest log call is one host log line.
fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_break_in_a_guest_line_stays_in_its_line() {
        assert_eq!(escape_controls("plain"), "plain");
        assert_eq!(escape_controls("forged\nINFO admin"), "forged\\nINFO admin");
    }
}
