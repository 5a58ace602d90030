//! The transport under HTTP: the shards' listeners, connection slots and their states,
//! the PROXY protocol of load balancers in front, and TLS.

pub mod conn;
pub mod listener;
pub mod proxy;
pub mod tls;
