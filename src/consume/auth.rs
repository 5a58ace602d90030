//! Who reads (SPEC §6): a consumer authenticates with
//!
//! 1. `Authorization: Bearer <token>` where the key ring lists the token's SHA-256
//!    (`[[tokens]]`, compared in constant time against every token), or
//! 2. `Authorization: Bearer <JWT>` from a configured issuer, whose subject names the
//!    partner and whose `consume:<topic>` / `consume:*` scopes narrow what it reads, or
//! 3. a verified client certificate listed in a partner's `tls_identities`.
//!
//! Then the partner's transport rules (address allow-list, required certificate, no
//! certificate of another partner) apply as for producers, and a topic is readable only
//! if the partner's `consume_topics` lists it (or `"*"`) and, for a JWT, its scopes do.

use crate::http::Request;
use crate::ingest::handle::{Core, Peer};
use crate::ingest::refusal::Reject;
use crate::perimeter::admit::authorize;

/// A consumer that passed authentication and the partner's transport rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reader {
    pub partner: usize,
    /// Authenticated by a JWT: its `consume:` scopes (in `ConsumeCore::scopes`) apply too.
    pub jwt: bool,
    /// When the credential stops being valid (a JWT's `exp`, a token's `not_after`): a
    /// stream opened with it ends then.
    pub expires_ms: Option<i64>,
}

/// The `consume:<topic>` scopes of the current request's JWT, copied out of the
/// verifier's scratch into a reused buffer.
#[derive(Debug, Default)]
pub struct TopicScopes {
    all: bool,
    /// Topic names, each followed by a space.
    topics: String,
}

impl TopicScopes {
    fn set<'s>(&mut self, scopes: impl Iterator<Item = &'s str>) {
        self.all = false;
        self.topics.clear();
        for scope in scopes {
            match scope.strip_prefix("consume:") {
                Some("*") => self.all = true,
                Some(topic) if !topic.is_empty() => {
                    self.topics.push_str(topic);
                    self.topics.push(' ');
                }
                _ => {}
            }
        }
    }

    pub fn allows(&self, topic: &str) -> bool {
        self.all || self.topics.split(' ').any(|allowed| !allowed.is_empty() && allowed == topic)
    }
}

/// Why a consumer is not let in: the reason and the message.
pub type Denied = (Reject, &'static str);

const NO_CREDENTIALS: Denied =
    (Reject::TokenMissing, "a consumer authenticates with Authorization: Bearer <token> or a client certificate of a partner");
const TOKEN_UNKNOWN: Denied = (Reject::TokenInvalid, "the bearer token is not known, or has expired");
const NOT_BEARER: Denied = (Reject::TokenMalformed, "the Authorization header must be Bearer <token>");
const JWT_NOT_CONFIGURED: Denied = (Reject::TokenInvalid, "JWT bearer tokens are not accepted by this server");
const SUBJECT_UNKNOWN: Denied = (Reject::TokenInvalid, "the token's subject is no partner of this server");
pub const TOPIC_NOT_ALLOWED: Denied = (Reject::TopicNotAllowed, "the partner may not read this topic (consume_topics, token scopes)");

/// The token of `Bearer <token>` (scheme case-insensitive, one space or more).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// A JWT is three base64url parts joined by two dots; an opaque token has none.
fn looks_like_jwt(token: &[u8]) -> bool {
    token.iter().filter(|b| **b == b'.').count() == 2
}

impl Core {
    /// Authenticates a consumer request and applies the partner's transport rules.
    pub fn admit_reader(&mut self, request: &Request<'_>, peer: Peer<'_>) -> Result<Reader, Denied> {
        let reader = match request.authorization {
            Some(value) => {
                let token = bearer(value).ok_or(NOT_BEARER)?;
                if looks_like_jwt(token) {
                    let verifier = self.jwt.as_ref().ok_or(JWT_NOT_CONFIGURED)?;
                    let verified = verifier
                        .verify(value, self.now_ms, &mut self.jwt_scratch)
                        .map_err(|error| (Reject::from(error), error.message()))?;
                    let partner = self.keyring.partner_by_jwt_subject(verified.subject).ok_or(SUBJECT_UNKNOWN)?;
                    self.consume.scopes.set(verified.scopes.iter());
                    Reader { partner, jwt: true, expires_ms: Some(verified.expires_at_ms) }
                } else {
                    let token = self.keyring.token_by_secret(token, self.now_ms).ok_or(TOKEN_UNKNOWN)?;
                    Reader { partner: token.partner_index, jwt: false, expires_ms: token.not_after_ms }
                }
            }
            None => {
                let partner =
                    peer.tls_identity.and_then(|identity| self.keyring.partner_by_tls_identity(identity)).ok_or(NO_CREDENTIALS)?;
                Reader { partner, jwt: false, expires_ms: None }
            }
        };
        authorize(&self.keyring, reader.partner, peer.ip, peer.tls_identity).map_err(|refusal| (refusal.reason, refusal.message))?;
        Ok(reader)
    }

    /// Whether `reader` may read `topic`.
    pub fn may_read(&self, reader: Reader, topic: &str) -> bool {
        self.keyring.partner(reader.partner).may_consume(topic) && (!reader.jwt || self.consume.scopes.allows(topic))
    }
}

impl Core {
    /// Whether the partner of an open stream may still read what it streams: after a
    /// key ring reload it may be gone or have lost the topic (its stream then ends).
    pub fn still_allowed(&self, stream: &super::stream::Stream) -> bool {
        if stream.expires_ms.is_some_and(|expires| self.now_ms >= expires) {
            return false;
        }
        let Some(partner) = self.keyring.partner_by_name(stream.partner.as_bytes()) else { return false };
        let partner = self.keyring.partner(partner);
        match &stream.kind {
            super::stream::Kind::Sse(sse) => partner.may_consume(&self.topology.topic(sse.topic).name),
            super::stream::Kind::Subscription(subscription) => self
                .consume
                .subscriptions
                .topics_of(&subscription.name)
                .is_some_and(|(topics, owner)| owner == partner.name && topics.iter().all(|topic| partner.may_consume(topic))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer   abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Bearerabc"), None);
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert!(looks_like_jwt(b"a.b.c") && !looks_like_jwt(b"sltk_abc"));
    }

    #[test]
    fn topic_scopes() {
        let mut scopes = TopicScopes::default();
        scopes.set(["ingest:bet", "consume:wallet", "consume:"].into_iter());
        assert!(scopes.allows("wallet") && !scopes.allows("events") && !scopes.allows(""));
        scopes.set(["consume:*"].into_iter());
        assert!(scopes.allows("events"));
    }
}
