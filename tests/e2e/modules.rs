// The suite's modules, shared by both test targets (main.rs on sled, postgres.rs on PostgreSQL).

mod acknowledged;
mod api;
mod auth;
mod cancel;
mod cli;
mod dashboard;
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
mod upgrade;
mod uploads;
mod vendor;
mod waits;
