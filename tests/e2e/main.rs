//! End-to-end tests: a real `latch` process on a free port with a temporary data dir,
//! real components built from `plugins/`, real HTTP.

mod auth;
mod cancel;
mod durability;
mod harness;
mod ingress;
mod languages;
mod ledger;
mod limits;
mod rules;
mod runs;
mod steps;
mod time;
mod triggers;
mod uploads;
mod vendor;
mod waits;
