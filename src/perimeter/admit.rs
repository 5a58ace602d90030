//! Admission of one ingest request before its body is looked at: who sent it
//! (authentication: Standard Webhooks, bearer token, HMAC v1, or a client certificate
//! alone) and whether that partner may send from here (authorization: address
//! allow-list, required client certificate, certificate/key agreement).
//!
//! A genuine request signed outside the timestamp window is answered 401 and kept in
//! quarantine, but only if every other rule would have let it in: the partner's
//! transport rules ([`authorize`]) and, for its events, the partner's event types (a
//! request that would store nothing is not kept). Its record carries the connection's
//! client-certificate identity and address, so `sluice quarantine replay` holds it to
//! the same rules (a stolen HMAC key alone cannot get events stored that way).

use std::net::IpAddr;

use crate::constants::BATCH_EVENTS_MAX;
use crate::http::Request;
use crate::ingest::handle::{Core, Peer};
use crate::metrics::{PathLabel, Reject};
use crate::perimeter::hmac::{self, AuthError, Credentials, Refused};
use crate::perimeter::keyring::{Key, KeyRing};
use crate::perimeter::partners::ClientCert;
use crate::perimeter::webhooks::{self, WebhookCredentials};
use crate::policy::health::Failure;
use crate::sidelog::quarantine::{Quarantined, Transport};

/// An authenticated and authorized request: its partner (index into the key ring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub partner: usize,
    /// Authenticated by a bearer token: its scopes (in [`Core::token_scopes`]) also limit
    /// the event types.
    pub token: bool,
    /// Authenticated by an HMAC v1 signature, so `X-Key-Id` is the key that verified it
    /// (the per-kid rate limit counts only such requests).
    pub hmac: bool,
}

/// The `ingest:<event_type>` scopes of the current request's token, copied out of the
/// verifier's scratch into a reused buffer (no allocation once warm).
#[derive(Debug, Default)]
pub struct TokenScopes {
    all: bool,
    /// Event types, each followed by a space.
    types: Vec<u8>,
}

impl TokenScopes {
    fn set(&mut self, scopes: &crate::perimeter::jwt::Scopes<'_>) {
        self.all = false;
        self.types.clear();
        for scope in scopes.iter() {
            match scope.strip_prefix("ingest:") {
                Some("*") => self.all = true,
                Some(event_type) if !event_type.is_empty() => {
                    self.types.extend_from_slice(event_type.as_bytes());
                    self.types.push(b' ');
                }
                _ => {}
            }
        }
    }

    pub fn allows_event_type(&self, event_type: &[u8]) -> bool {
        self.all || self.types.split(|b| *b == b' ').any(|allowed| !allowed.is_empty() && allowed == event_type)
    }
}

/// Why a request is not admitted: the reason (its status comes from the refusal table,
/// `ingest/refusal.rs`) and the message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reject,
    pub message: &'static str,
}

impl Refusal {
    const fn new(reason: Reject, message: &'static str) -> Refusal {
        Refusal { reason, message }
    }
}

const SOURCE_UNKNOWN: Refusal = Refusal::new(Reject::KeyUnknown, "the webhook source names no partner known to this server");
const HMAC_NOT_ALLOWED: Refusal = Refusal::new(Reject::AlgorithmNotAllowed, "HMAC-SHA256 signatures are not allowed by the key policy");
const TOKENS_NOT_CONFIGURED: Refusal = Refusal::new(Reject::TokenInvalid, "bearer tokens are not accepted by this server");
const IP_NOT_ALLOWED: Refusal = Refusal::new(Reject::IpNotAllowed, "the partner may not send from this address");
const CERTIFICATE_REQUIRED: Refusal =
    Refusal::new(Reject::ClientCertificateRequired, "the partner must send over mTLS with one of its client certificates");
const PARTNER_MISMATCH: Refusal =
    Refusal::new(Reject::PartnerMismatch, "the client certificate belongs to another partner than the credentials");

fn unauthenticated(error: AuthError) -> Refusal {
    Refusal::new(Reject::from(error), error.message())
}

/// The partner's transport rules: its address allow-list, a required client
/// certificate, and no certificate of another partner. What admission checks after
/// authentication, the quarantine before it keeps a request, and replay against what
/// the quarantine recorded.
pub fn authorize(ring: &KeyRing, partner: usize, ip: Option<IpAddr>, tls_identity: Option<&str>) -> Result<(), Refusal> {
    if !ring.partner(partner).allows_ip(ip) {
        return Err(IP_NOT_ALLOWED);
    }
    authorize_certificate(ring, partner, tls_identity)
}

/// The client-certificate half of [`authorize`]: one of the partner's certificates where
/// it requires one, and no certificate of another partner.
pub fn authorize_certificate(ring: &KeyRing, partner: usize, tls_identity: Option<&str>) -> Result<(), Refusal> {
    let rules = ring.partner(partner);
    if rules.client_cert == ClientCert::Required && !rules.has_tls_identity(tls_identity) {
        return Err(CERTIFICATE_REQUIRED);
    }
    // A certificate that is some partner's must be the same partner's as the credentials.
    if let Some(owner) = tls_identity.and_then(|identity| ring.partner_by_tls_identity(identity))
        && owner != partner
    {
        return Err(PARTNER_MISMATCH);
    }
    Ok(())
}

/// A genuine request whose only fault is its timestamp: the partner and kid of the key
/// that verified it.
struct Skewed {
    partner: usize,
    kid: Box<str>,
}

/// Why authentication failed, with the key of a genuine but skewed request.
struct Unauthenticated {
    refusal: Refusal,
    skewed: Option<Skewed>,
}

impl From<Refusal> for Unauthenticated {
    fn from(refusal: Refusal) -> Self {
        Unauthenticated { refusal, skewed: None }
    }
}

impl Core {
    /// Authenticates and authorizes `request` (any ingest path). Allocates nothing but
    /// on the rare path of a skewed request.
    pub fn admit(&mut self, request: &Request<'_>, peer: Peer<'_>, path: PathLabel) -> Result<Principal, Refusal> {
        let principal = match self.authenticate(request, peer, path) {
            Ok(principal) => principal,
            Err(Unauthenticated { refusal, skewed }) => {
                if let Some(skewed) = skewed {
                    let skew_secs = self.skew_secs(request, path).unwrap_or(0);
                    let partner = &self.keyring.partner(skewed.partner).name;
                    self.governance.health.failed(partner, Failure::Skew { skew_secs }, self.now_ms);
                    self.quarantine(request, peer, path, &skewed);
                } else if refusal.reason == Reject::SignatureInvalid
                    && let Some(key) = request.key_id.and_then(|kid| KeyRing::get(&self.keyring, kid))
                {
                    let partner = &self.keyring.partner(key.partner_index).name;
                    self.governance.health.failed(partner, Failure::Signature, self.now_ms);
                }
                return Err(refusal);
            }
        };
        if let Some(skew_secs) = self.skew_secs(request, path)
            && skew_secs.unsigned_abs() * 2 > self.tolerance_secs
        {
            self.governance.health.skew_seen(&self.keyring.partner(principal.partner).name, skew_secs, self.now_ms);
        }
        authorize(&self.keyring, principal.partner, peer.ip, peer.tls_identity)?;
        Ok(principal)
    }

    /// The producer's signed clock minus the gateway's, in seconds, when the request
    /// carries one.
    fn skew_secs(&self, request: &Request<'_>, path: PathLabel) -> Option<i64> {
        let timestamp = if path == PathLabel::Webhooks { request.webhook_timestamp } else { request.timestamp }?;
        let secs: i64 = std::str::from_utf8(timestamp).ok()?.parse().ok()?;
        Some(secs - self.now_ms.div_euclid(1000))
    }

    /// Keeps a skewed request if every other rule would have let it in (module docs).
    fn quarantine(&mut self, request: &Request<'_>, peer: Peer<'_>, path: PathLabel, skewed: &Skewed) {
        if (self.quarantine.is_none() && self.dlq.is_none())
            || authorize(&self.keyring, skewed.partner, peer.ip, peer.tls_identity).is_err()
        {
            return;
        }
        if !self.stores_anything(request.body, path == PathLabel::EventsBatch, skewed.partner) {
            return;
        }
        let timestamp = if path == PathLabel::Webhooks { request.webhook_timestamp } else { request.timestamp };
        let timestamp_secs = timestamp.and_then(|text| std::str::from_utf8(text).ok()?.parse().ok()).unwrap_or(0);
        let record = Quarantined {
            received_ms: self.now_ms,
            timestamp_secs,
            partner: &self.keyring.partner(skewed.partner).name,
            kid: &skewed.kid,
            path: request.path,
            content_type: request.content_type.unwrap_or_default(),
            body: request.body,
            transport: Some(Transport { tls_identity: peer.tls_identity, client_ip: peer.ip }),
        };
        if let Some(writer) = self.quarantine.as_mut() {
            writer.keep(&record, &self.control.quarantine);
        }
        // The quarantine is also a reason of the dead-letter queue, replayed only through
        // a signed runbook (`sluice replay plan --dlq-reason timestamp_out_of_window`).
        let skew_secs = timestamp_secs - self.now_ms.div_euclid(1000);
        let detail = format!("genuine signature, producer clock {skew_secs:+} s off the gateway's (tolerance {} s)", self.tolerance_secs);
        let partner = self.keyring.partner(skewed.partner).name.clone();
        let refused = crate::ingest::dead_letters::Refused {
            reason: crate::perimeter::hmac::AuthError::TimestampOutOfWindow.code(),
            detail: &detail,
            partner: &partner,
            kid: &skewed.kid,
            line: None,
            body: request.body,
        };
        self.dead_letter(request, peer, &refused);
    }

    /// Whether `body` would store at least one event for `partner`: a valid envelope of
    /// an event type the partner may send (for a batch, on any of its lines).
    fn stores_anything(&mut self, body: &[u8], batch: bool, partner: usize) -> bool {
        let (validator, ring) = (&mut self.validator, &self.keyring);
        let mut storable =
            |event: &[u8]| validator.validate(event).is_ok_and(|envelope| ring.partner(partner).allows_event_type(envelope.event_type()));
        if !batch {
            return storable(body);
        }
        let mut spans = std::mem::take(&mut self.line_spans);
        let count = crate::ingest::envelope::ndjson_lines(body, &mut spans, BATCH_EVENTS_MAX);
        let any = count <= BATCH_EVENTS_MAX && spans.iter().any(|span| storable(&body[span.clone()]));
        self.line_spans = spans;
        any
    }

    fn authenticate(&mut self, request: &Request<'_>, peer: Peer<'_>, path: PathLabel) -> Result<Principal, Unauthenticated> {
        let ring = &self.keyring;
        if path == PathLabel::Webhooks {
            let source = request.path.strip_prefix(b"/v1/webhooks/").unwrap_or_default();
            let partner = ring.partner_by_name(source).ok_or(SOURCE_UNKNOWN)?;
            if !ring.policy().hmac_sha256 {
                return Err(HMAC_NOT_ALLOWED.into());
            }
            let credentials =
                WebhookCredentials { id: request.webhook_id, timestamp: request.webhook_timestamp, signature: request.webhook_signature };
            let verified = webhooks::verify_webhook(ring, partner, &credentials, request.body, self.now_ms, self.tolerance_secs);
            return principal_of(verified);
        }
        if let Some(authorization) = request.authorization {
            return Ok(self.authenticate_token(authorization)?);
        }
        let signed = request.key_id.is_some() || request.timestamp.is_some() || request.signature.is_some();
        if !signed
            && let Some(partner) = peer.tls_identity.and_then(|identity| ring.partner_by_tls_identity(identity))
            && ring.partner(partner).client_cert == ClientCert::Sufficient
        {
            return Ok(Principal { partner, token: false, hmac: false });
        }
        if signed && !ring.policy().hmac_sha256 {
            return Err(HMAC_NOT_ALLOWED.into());
        }
        let credentials = Credentials { kid: request.key_id, timestamp: request.timestamp, signature: request.signature };
        let verified = hmac::verify_v1_keyed(ring, &credentials, request.body, self.now_ms, self.tolerance_secs);
        principal_of(verified).map(|principal| Principal { hmac: true, ..principal })
    }

    /// A bearer token (OAuth2 client credentials): its subject names the partner, its
    /// scopes narrow the partner's event types.
    fn authenticate_token(&mut self, authorization: &[u8]) -> Result<Principal, Refusal> {
        let Some(verifier) = self.jwt.as_ref() else {
            return Err(TOKENS_NOT_CONFIGURED);
        };
        let verified = verifier.verify(authorization, self.now_ms, &mut self.jwt_scratch).map_err(token_refusal)?;
        let partner = self.keyring.partner_by_jwt_subject(verified.subject).ok_or(SUBJECT_UNKNOWN)?;
        self.token_scopes.set(&verified.scopes);
        Ok(Principal { partner, token: true, hmac: false })
    }
}

const SUBJECT_UNKNOWN: Refusal = Refusal::new(Reject::TokenInvalid, "the token's subject is no partner of this server");

/// Every token error is 401; the metrics label is the token error's own code.
fn token_refusal(error: crate::perimeter::jwt::JwtError) -> Refusal {
    Refusal::new(Reject::from(error), error.message())
}

/// The principal of a verified key; for a genuine but skewed request, its key too.
fn principal_of(verified: Result<&Key, Refused<'_>>) -> Result<Principal, Unauthenticated> {
    match verified {
        Ok(key) => Ok(Principal { partner: key.partner_index, token: false, hmac: false }),
        Err(refused) => Err(Unauthenticated {
            refusal: unauthenticated(refused.error),
            skewed: refused.skewed_key.map(|key| Skewed { partner: key.partner_index, kid: Box::from(key.kid.as_str()) }),
        }),
    }
}
