//! Guest SDK for Wharf components.
//!
//! It hides the `wit-bindgen` boilerplate so a component is plain Rust:
//! declare an [`App`] (routes, subscriptions, published streams), write
//! handlers that return `Result<Reply, ApiError>` or `Result<(), EventError>`,
//! and call [`export_component!`]. Host capabilities are in [`kv`], [`events`],
//! [`calls`], [`log`] and [`config`].
//!
//! ```ignore
//! struct Hello;
//! impl wharf_sdk::Component for Hello {
//!     fn app() -> wharf_sdk::App {
//!         wharf_sdk::App::new("hello").get("/hello/{name}", |req| {
//!             wharf_sdk::Reply::json(200, &serde_json::json!({"hi": req.param("name")}))
//!         })
//!     }
//! }
//! wharf_sdk::export_component!(Hello);
//! ```

// Generated code names the runtime as `wharf_sdk::...`, in this crate too.
extern crate self as wharf_sdk;

mod app;
pub mod calls;
pub mod config;
mod error;
pub mod events;
mod http;
pub mod ids;
pub mod kv;
pub mod log;
pub mod money;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "component",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "wharf_sdk::bindings",
        runtime_path: "wharf_sdk::__wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use app::{App, Component, EventHandler, Handler, Schema};
pub use bindings::wharf::plugin::types::{Event, EventOutcome, Request, Response};
pub use error::{ApiError, EventError, HostError};
pub use http::{Reply, Req, Role, parse_json};

/// Exports a type implementing [`Component`] as the component's entry points.
#[macro_export]
macro_rules! export_component {
    ($ty:ty) => {
        // Only a wasm build exports anything: native builds (unit tests) link
        // without the component's export symbols.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WharfExport;
            impl $crate::bindings::exports::wharf::plugin::manifest::Guest for __WharfExport {
                fn describe() -> $crate::bindings::wharf::plugin::types::Manifest {
                    <$ty as $crate::Component>::app().manifest()
                }
            }
            impl $crate::bindings::exports::wharf::plugin::http::Guest for __WharfExport {
                fn handle(req: $crate::Request) -> $crate::Response {
                    <$ty as $crate::Component>::app().handle_request(req)
                }
            }
            impl $crate::bindings::exports::wharf::plugin::events_handler::Guest for __WharfExport {
                fn handle(ev: $crate::Event) -> $crate::EventOutcome {
                    <$ty as $crate::Component>::app().handle_event(ev)
                }
            }
            $crate::bindings::__export_world!(__WharfExport);
        };
    };
}
