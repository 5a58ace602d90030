//! What the black-box tests (`tests/*.rs`) and the benches share, compiled once: a
//! sandbox with a known key ring and a real `sluice serve` process ([`Sandbox`],
//! [`Server`]), a raw HTTP/1.1 client ([`Client`]), an independent v1 signer
//! ([`sign_v1`]), `sluice tail` and segment readers, and, in modules of their own,
//! certificates ([`pki`]), token minting ([`jwt`]), a fake systemd ([`fake_systemd`]), an fdatasync fault injector ([`faults`]),
//! a counting allocator ([`counting_alloc`]), bench inputs ([`bench_inputs`]) and the
//! Python venv of the interoperability tests ([`python`]).
//!
//! `use sluice_test_support::*` brings the everyday helpers; the rest by module.

pub mod bench_inputs;
pub mod consumer;
pub mod counting_alloc;
pub mod fake_systemd;
pub mod faults;
pub mod http;
pub mod json;
pub mod jwt;
pub mod kafka;
pub mod pki;
pub mod process;
pub mod python;
pub mod replay;
pub mod sandbox;
pub mod sign;
pub mod tail;

pub use http::*;
pub use json::{Json, ParseJson};
pub use process::{EXIT_TIMEOUT_MS, READY_TIMEOUT_MS, Server, StoppedThread, bin, kill, run_sluice, thread_named};
pub use sandbox::*;
pub use sign::*;
pub use tail::*;
