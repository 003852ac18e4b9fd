//! Structured logging into the host's log, tagged with the component's name.

use crate::bindings::wharf::plugin::log as wit;
pub use crate::bindings::wharf::plugin::log::Level;
use crate::prelude::*;

pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    wit::log(level, message, &fields);
}

pub fn debug(message: &str, fields: &[(&str, &str)]) {
    log(Level::Debug, message, fields)
}

pub fn info(message: &str, fields: &[(&str, &str)]) {
    log(Level::Info, message, fields)
}

pub fn warn(message: &str, fields: &[(&str, &str)]) {
    log(Level::Warn, message, fields)
}

pub fn error(message: &str, fields: &[(&str, &str)]) {
    log(Level::Error, message, fields)
}
