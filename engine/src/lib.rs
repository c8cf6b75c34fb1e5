//! Latch: a durable workflow engine whose workflows are WebAssembly components.
//!
//! Data flows one way: `http` persists what arrived (through `store`) and notifies
//! `executor`; `executor` drives `runtime`; `runtime` records every host call through
//! `store`.

pub mod auth;
pub mod clock;
pub mod executor;
pub mod http;
pub mod ids;
pub mod json;
pub mod metrics;
pub mod rules;
pub mod runtime;
pub mod store;
