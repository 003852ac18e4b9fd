//! The config capability (`wharf:plugin/config`): the values the operator
//! set for a component (`[components.<name>.config]`), read-only.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use crate::engine::bindings::wharf::plugin::config;

/// One call's config context: its version's values, shared.
pub struct ConfigCtx(Arc<BTreeMap<String, String>>);

impl ConfigCtx {
    pub fn new(values: &Arc<BTreeMap<String, String>>) -> ConfigCtx {
        ConfigCtx(values.clone())
    }
}

/// Puts `config` in `linker`; `get` finds the call's context.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut ConfigCtx,
) -> wasmtime::Result<()> {
    config::add_to_linker::<T, HasSelf<ConfigCtx>>(linker, get)
}

impl config::Host for ConfigCtx {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.0.get(&key).cloned())
    }
}
