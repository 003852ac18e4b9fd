//! Refused uses of a capability: logged (target `wharf::sandbox`) and
//! counted (`wharf_sandbox_refusals_total`) for the operator, a plain
//! `invalid` error for the guest, so a hostile or confused component shows
//! and the host carries on.

use std::sync::Arc;

use crate::engine::bindings::CapError;
use crate::telemetry::{Metrics, RefusalLabels};

/// Where one component version's refusals go.
pub struct Refusals {
    component: String,
    metrics: Arc<Metrics>,
}

impl Refusals {
    pub fn new(component: &str, metrics: Arc<Metrics>) -> Arc<Refusals> {
        Arc::new(Refusals { component: component.to_string(), metrics })
    }

    /// Refuses a use the component was not granted: `invalid` for the guest.
    pub fn refuse(&self, capability: &'static str, why: String) -> CapError {
        self.note(capability, &why);
        CapError::Invalid(why)
    }

    /// Logs and counts a refusal the caller answers in its own terms
    /// (a WASI error code, a failed `memory.grow`, a dropped log line).
    pub fn note(&self, capability: &'static str, why: &str) {
        let component = self.component.as_str();
        tracing::warn!(target: "wharf::sandbox", component, capability, "refused: {why}");
        self.count(capability);
    }

    /// Counts a refusal without a log line (the caller logs it its own way).
    pub fn count(&self, capability: &'static str) {
        let labels = RefusalLabels { component: self.component.clone(), capability };
        self.metrics.sandbox_refusals.get_or_create(&labels).inc();
    }

    pub fn component(&self) -> &str {
        &self.component
    }
}
