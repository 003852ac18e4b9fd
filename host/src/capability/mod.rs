//! The host's side of the WIT interfaces components import, with what each
//! keeps beside it (the read cache, the outbox, the budgets).

pub mod budget;
pub mod events;
pub mod kv;
pub mod kv_cache;
pub mod outbox;
