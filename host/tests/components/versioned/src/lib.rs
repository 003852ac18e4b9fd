//! Test fixture: `GET /version` answers which build is serving, so swap tests
//! can tell every answer came from exactly one version.

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use wharf_sdk::{ApiError, App, Component, Event, EventError, Reply, Req};

struct Versioned;

const NAME: &str = if cfg!(feature = "bad-manifest") { "Not A Valid Name!" } else { "versioned" };
// `developer::editing_a_component...` edits this line: keep it as it is.
const BASE: &str = if cfg!(feature = "v2") { "v2" } else { "v1" };
const VERSION: &str = if cfg!(feature = "v3") {
    "v3"
} else if cfg!(feature = "failing") {
    "v1-failing"
} else {
    BASE
};

impl Component for Versioned {
    fn app() -> App {
        let app = App::new(NAME).get("/version", version);
        if cfg!(feature = "v2") { app.subscribe("versioned_events", "versioned-v2", consume) } else { app }
    }
}

wharf_sdk::export_component!(Versioned);

fn version(_: &Req) -> Result<Reply, ApiError> {
    if cfg!(feature = "failing") {
        return Err(ApiError::internal("this build fails on purpose"));
    }
    Reply::json(200, &serde_json::json!({"version": VERSION}))
}

fn consume(_: &Event) -> Result<(), EventError> {
    Ok(())
}
