//! Who may send: authentication (HMAC v1, Standard Webhooks, JWT bearer tokens, client
//! certificates), the key ring and its partners, authorization, per-client limits and
//! the request-id memory that turns a retried request into the first one's answer.

pub mod admit;
pub mod hmac;
pub mod jwt;
pub mod keyring;
pub mod limits;
pub mod partners;
pub mod rate;
pub mod request_ids;
pub mod webhooks;
