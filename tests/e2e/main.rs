//! End-to-end tests: a real `latch` process on a free port with a temporary data dir,
//! real components built from `plugins/`, real HTTP.

mod acknowledged;
mod auth;
mod cancel;
mod crash;
mod durability;
mod exhaustion;
mod harness;
mod hostile;
mod ingress;
mod languages;
mod ledger;
mod limits;
mod retries;
mod rules;
mod runs;
mod steps;
mod time;
mod triggers;
mod uploads;
mod vendor;
mod waits;
