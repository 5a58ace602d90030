//! Signed replay runbooks: the document that says which stored or dead-lettered events
//! to replay where, and the Ed25519 keys of the people who ask for and approve it.

pub mod runbook;
pub mod signer;
