//! HTTP: the gateway every request comes through, and what it checks
//! before a component runs.

pub mod admin;
pub mod auth;
pub mod console;
pub mod gateway;
pub mod openapi;
pub mod pages;
pub mod response;
pub mod server;
pub mod throttle;
