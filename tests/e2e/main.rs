//! End-to-end tests: a real `latch` process on a free port with a temporary data dir,
//! real components built from `plugins/`, real HTTP. This target runs them on sled;
//! `postgres.rs` runs the same on PostgreSQL.

include!("modules.rs");
