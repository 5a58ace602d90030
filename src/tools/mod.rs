//! The commands besides `serve`: the command line itself (`cli.rs`), `check-config`,
//! `keys`, `tail`, the quarantine's list and replay, the load harness (`bench`) and the
//! box check (`tune`).

pub mod admin_client;
pub mod bench;
pub mod check_config;
pub mod check_log;
pub mod cli;
pub mod consume;
pub mod dlq;
pub mod keys;
pub mod quarantine;
pub mod replay;
pub mod schema;
pub mod tail;
pub mod tune;
