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

//! ## no_std
//!
//! The SDK needs only `alloc`. A component that is `no_std` too and calls
//! [`no_std_runtime!`] imports nothing from WASI but the clock and the
//! random source (for [`ids`]), which makes each instance cheaper to create
//! (docs/PERFORMANCE.md). A component that uses std (files, `std::time`)
//! simply does not call it.

#![no_std]

extern crate alloc;
// Natively (unit tests, `cargo test`) std is there anyway.
#[cfg(not(target_arch = "wasm32"))]
extern crate std;

// Generated code names the runtime as `wharf_sdk::...`, in this crate too.
extern crate self as wharf_sdk;

/// What std's prelude would give a `no_std` crate: `use wharf_sdk::prelude::*;`.
pub mod prelude {
    pub use alloc::borrow::ToOwned;
    pub use alloc::boxed::Box;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec::Vec;
    pub use alloc::{format, vec};
}

mod app;
pub mod calls;
pub mod clock;
pub mod config;
mod error;
pub mod events;
mod http;
pub mod ids;
pub mod kv;
pub mod log;
pub mod money;
mod page;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod rt;

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
pub use page::{CONTINUE_HEADER, MAX_LIST, Page, STREAM_PAGE};

/// Installs the runtime of a `no_std` component: its heap, its panic handler
/// (the message goes to the host's log) and `cabi_realloc`. Call it once, in
/// a crate that is `#![cfg_attr(target_arch = "wasm32", no_std)]`.
#[macro_export]
macro_rules! no_std_runtime {
    () => {
        #[cfg(target_arch = "wasm32")]
        mod __wharf_runtime {
            // core calls memcmp, memcpy and friends; wasi-libc has them, and
            // nothing else of it is linked unless something asks for it.
            #[link(name = "c")]
            unsafe extern "C" {}

            #[global_allocator]
            static ALLOCATOR: $crate::rt::InstanceAllocator = $crate::rt::InstanceAllocator::new();

            #[panic_handler]
            fn panic(info: &::core::panic::PanicInfo) -> ! {
                $crate::rt::panic(info)
            }

            #[unsafe(export_name = "cabi_realloc")]
            unsafe extern "C" fn cabi_realloc(old: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
                // SAFETY: called by the host under the canonical ABI's rules.
                unsafe { $crate::rt::cabi_realloc(old, old_len, align, new_len) }
            }
        }
    };
}

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
