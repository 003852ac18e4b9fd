//! Wharf's integration tests, one binary: each test starts its own
//! `redis-server` and `wharf` on free loopback ports (see `harness`) and
//! talks to them as a client would. A module per concern.

mod harness;

mod api;
mod bad_input;
mod cluster;
mod conformance;
mod console;
mod developer;
mod fleet;
mod flow;
mod hardening;
mod languages;
mod lists;
mod observability;
mod reliability;
mod sandbox;
mod security;
mod swap;
