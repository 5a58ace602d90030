//! The transport under HTTP: connection slots and their states, the PROXY protocol of
//! load balancers in front, and TLS.

pub mod conn;
pub mod proxy;
pub mod tls;
