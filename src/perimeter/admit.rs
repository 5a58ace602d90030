//! Admission of one ingest request before its body is looked at: who sent it
//! (authentication: Standard Webhooks, bearer token, HMAC v1, or a client certificate
//! alone) and whether that partner may send from here (authorization: address
//! allow-list, required client certificate, certificate/key agreement). A genuine
//! request signed outside the timestamp window is kept in quarantine.

use crate::http::Request;
use crate::ingest::handle::{Core, Peer};
use crate::metrics::{PathLabel, Reject};
use crate::perimeter::hmac::{self, AuthError, Credentials, Refused};
use crate::perimeter::keyring::{Key, KeyRing};
use crate::perimeter::partners::ClientCert;
use crate::perimeter::webhooks::{self, WebhookCredentials};
use crate::sidelog::quarantine::{QuarantineStats, QuarantineWriter, Quarantined};

/// An authenticated and authorized request: its partner (index into the key ring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub partner: usize,
    /// Authenticated by a bearer token: its scopes (in [`Core::token_scopes`]) also limit
    /// the event types.
    pub token: bool,
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

impl Core {
    /// Authenticates and authorizes `request` (any ingest path). Allocates nothing.
    pub fn admit(&mut self, request: &Request<'_>, peer: Peer<'_>, path: PathLabel) -> Result<Principal, Refusal> {
        let principal = self.authenticate(request, peer, path)?;
        let ring = &self.keyring;
        let partner = ring.partner(principal.partner);
        if !partner.allows_ip(peer.ip) {
            return Err(IP_NOT_ALLOWED);
        }
        if partner.client_cert == ClientCert::Required && !partner.has_tls_identity(peer.tls_identity) {
            return Err(CERTIFICATE_REQUIRED);
        }
        // A certificate that is some partner's must be the same partner's as the credentials.
        if let Some(owner) = peer.tls_identity.and_then(|identity| ring.partner_by_tls_identity(identity))
            && owner != principal.partner
        {
            return Err(PARTNER_MISMATCH);
        }
        Ok(principal)
    }

    fn authenticate(&mut self, request: &Request<'_>, peer: Peer<'_>, path: PathLabel) -> Result<Principal, Refusal> {
        let ring = &self.keyring;
        if path == PathLabel::Webhooks {
            let source = request.path.strip_prefix(b"/v1/webhooks/").unwrap_or_default();
            let partner = ring.partner_by_name(source).ok_or(SOURCE_UNKNOWN)?;
            if !ring.policy().hmac_sha256 {
                return Err(HMAC_NOT_ALLOWED);
            }
            let credentials =
                WebhookCredentials { id: request.webhook_id, timestamp: request.webhook_timestamp, signature: request.webhook_signature };
            let verified = webhooks::verify_webhook(ring, partner, &credentials, request.body, self.now_ms, self.tolerance_secs);
            let quarantine = Quarantine { ring, writer: &mut self.quarantine, stats: &self.control.quarantine, now_ms: self.now_ms };
            return principal_of(verified, quarantine, request, request.webhook_timestamp, peer);
        }
        if let Some(authorization) = request.authorization {
            return self.authenticate_token(authorization);
        }
        let signed = request.key_id.is_some() || request.timestamp.is_some() || request.signature.is_some();
        if !signed
            && let Some(partner) = peer.tls_identity.and_then(|identity| ring.partner_by_tls_identity(identity))
            && ring.partner(partner).client_cert == ClientCert::Sufficient
        {
            return Ok(Principal { partner, token: false });
        }
        if signed && !ring.policy().hmac_sha256 {
            return Err(HMAC_NOT_ALLOWED);
        }
        let credentials = Credentials { kid: request.key_id, timestamp: request.timestamp, signature: request.signature };
        let verified = hmac::verify_v1_keyed(ring, &credentials, request.body, self.now_ms, self.tolerance_secs);
        let quarantine = Quarantine { ring, writer: &mut self.quarantine, stats: &self.control.quarantine, now_ms: self.now_ms };
        principal_of(verified, quarantine, request, request.timestamp, peer)
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
        Ok(Principal { partner, token: true })
    }
}

const SUBJECT_UNKNOWN: Refusal = Refusal::new(Reject::TokenInvalid, "the token's subject is no partner of this server");

/// Every token error is 401; the metrics label is the token error's own code.
fn token_refusal(error: crate::perimeter::jwt::JwtError) -> Refusal {
    Refusal::new(Reject::from(error), error.message())
}

/// Where a skewed request is kept.
struct Quarantine<'q> {
    ring: &'q KeyRing,
    writer: &'q mut Option<QuarantineWriter>,
    stats: &'q QuarantineStats,
    now_ms: i64,
}

/// The principal of a verified key; a genuine but skewed request goes to quarantine
/// (unless its partner may not send from this address).
fn principal_of(
    verified: Result<&Key, Refused<'_>>,
    quarantine: Quarantine<'_>,
    request: &Request<'_>,
    timestamp: Option<&[u8]>,
    peer: Peer<'_>,
) -> Result<Principal, Refusal> {
    let refused = match verified {
        Ok(key) => return Ok(Principal { partner: key.partner_index, token: false }),
        Err(refused) => refused,
    };
    if let Some(key) = refused.skewed_key
        && quarantine.ring.partner(key.partner_index).allows_ip(peer.ip)
        && let Some(writer) = quarantine.writer.as_mut()
    {
        let timestamp_secs = timestamp.and_then(|text| std::str::from_utf8(text).ok()?.parse().ok()).unwrap_or(0);
        let record = Quarantined {
            received_ms: quarantine.now_ms,
            timestamp_secs,
            partner: &key.partner,
            kid: &key.kid,
            path: request.path,
            content_type: request.content_type.unwrap_or_default(),
            body: request.body,
        };
        writer.keep(&record, quarantine.stats);
    }
    Err(unauthenticated(refused.error))
}
