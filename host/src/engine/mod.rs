//! wasmtime: components loaded, linked and called, one fresh instance per
//! request or event (or, for a component that opts in, an idle one kept for
//! that kind of call: `reuse`).

pub mod bindings;
pub mod canary;
pub mod instance;
pub mod outbound;
pub mod proxy;
pub mod registry;
pub mod reuse;
pub mod runtime;
pub mod sandbox;
pub mod state;
pub mod tally;
pub mod version;
