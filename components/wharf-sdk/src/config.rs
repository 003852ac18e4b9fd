//! Configuration values the operator set for this component.

use crate::bindings::wharf::plugin::config as wit;
use crate::prelude::*;

/// The value of `key`, if set.
pub fn get(key: &str) -> Option<String> {
    wit::get(key)
}

/// The value of `key` parsed as `T`, or `default` when unset or unparsable.
pub fn get_or<T: core::str::FromStr>(key: &str, default: T) -> T {
    get(key).and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}
