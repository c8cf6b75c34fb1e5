//! The end-to-end suite of `main.rs`, with every server on a fresh PostgreSQL database
//! (`harness::on_postgres` tells the harness which target it is in).

include!("modules.rs");
// Several nodes on one database: PostgreSQL only.
mod cluster;
// Faults of the store injected with SQL: PostgreSQL only.
mod faults;
