//! The compact JWS form (RFC 7515 §7.1) of a bearer token and its JOSE header: from the
//! `Authorization` value to three base64url segments, and from the decoded header to the
//! algorithm and key id.

use std::ops::Range;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, MapAccess};

use super::error::JwtError;
use super::json::{self, Ignored, Members, WithStr};
use super::policy::Algorithm;
use crate::constants::JWT_TOKEN_BYTES_MAX;

/// The three segments of a compact JWS, still base64url-encoded.
#[derive(Debug, Clone, Copy)]
pub(super) struct Compact<'t> {
    pub header: &'t [u8],
    pub claims: &'t [u8],
    pub signature: &'t [u8],
    /// `header.claims`: the bytes the signature covers.
    pub signing_input: &'t [u8],
}

/// The token of an `Authorization` value `Bearer <token>`: the scheme is matched without
/// regard to case (RFC 9110 §11.1), spaces around the token are dropped.
pub(super) fn bearer_token(authorization: &[u8]) -> Result<&[u8], JwtError> {
    const SCHEME: &[u8] = b"bearer";
    let value = authorization.trim_ascii();
    let (scheme, token) = value.split_at_checked(SCHEME.len()).ok_or(JwtError::Missing)?;
    if !scheme.eq_ignore_ascii_case(SCHEME) || !token.first().is_some_and(|&byte| byte == b' ' || byte == b'\t') {
        return Err(JwtError::Missing);
    }
    let token = token.trim_ascii_start();
    if token.is_empty() {
        return Err(JwtError::Missing);
    }
    Ok(token)
}

/// Splits a token into exactly three segments; more (a JWE has five) or fewer is
/// `Malformed`, a token longer than `JWT_TOKEN_BYTES_MAX` is `TooLarge`. The segments'
/// characters are checked when they are decoded.
pub(super) fn split(token: &[u8]) -> Result<Compact<'_>, JwtError> {
    if token.len() > JWT_TOKEN_BYTES_MAX {
        return Err(JwtError::TooLarge);
    }
    let mut dots = memchr::memchr_iter(b'.', token);
    let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
        return Err(JwtError::Malformed);
    };
    Ok(Compact {
        header: &token[..first],
        claims: &token[first + 1..second],
        signature: &token[second + 1..],
        signing_input: &token[..second],
    })
}

/// Decodes one segment into `out` (cleared first): base64url without padding and
/// without stray trailing bits, so every segment has exactly one encoding. Reuses
/// `out`'s capacity; allocates only if it is below the segment's decoded size.
pub(super) fn decode(segment: &[u8], out: &mut Vec<u8>) -> Result<(), JwtError> {
    out.clear();
    URL_SAFE_NO_PAD.decode_vec(segment, out).map_err(|_| JwtError::Malformed)
}

/// Decodes the signature segment: like [`decode`], a non-canonical encoding (base64
/// padding, stray trailing bits) is `Malformed` (docs/DECISIONS.md § JWT); bytes that are
/// not base64url at all, or of an impossible length, are a signature that does not
/// verify (`SignatureInvalid`), as a wrong signature is.
pub(super) fn decode_signature(segment: &[u8], out: &mut Vec<u8>) -> Result<(), JwtError> {
    out.clear();
    match URL_SAFE_NO_PAD.decode_vec(segment, out) {
        Ok(()) => Ok(()),
        Err(base64::DecodeError::InvalidPadding | base64::DecodeError::InvalidLastSymbol(..)) => Err(JwtError::Malformed),
        Err(base64::DecodeError::InvalidByte(_, b'=')) => Err(JwtError::Malformed),
        Err(_) => Err(JwtError::SignatureInvalid),
    }
}

/// What sluice reads from a JOSE header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Header {
    pub algorithm: Algorithm,
    /// Where the decoded `kid` sits in the scratch text.
    pub kid: Option<Range<usize>>,
}

/// Reads a decoded JOSE header: `alg` is required and must be one of the algorithms
/// sluice verifies (`AlgorithmNotAllowed` otherwise, `none` and `HS*` included); `kid`
/// is appended to `text`. A `crit` header is `Malformed`: sluice understands no
/// extension (RFC 7515 §4.1.11). Key-carrying headers (`jwk`, `jku`, `x5u`, `x5c`) are
/// ignored: keys come from the configured JWKS only.
pub(super) fn parse_header(bytes: &[u8], text: &mut String) -> Result<Header, JwtError> {
    let fields = json::parse_object(bytes, HeaderReader { text, alg: None, kid: None }).ok_or(JwtError::Malformed)?;
    match fields.alg {
        None => Err(JwtError::Malformed),
        Some(None) => Err(JwtError::AlgorithmNotAllowed),
        Some(Some(algorithm)) => Ok(Header { algorithm, kid: fields.kid }),
    }
}

struct HeaderReader<'t> {
    text: &'t mut String,
    /// `Some(None)`: present but not an algorithm sluice verifies.
    alg: Option<Option<Algorithm>>,
    kid: Option<Range<usize>>,
}

impl<'de> Members<'de> for HeaderReader<'_> {
    fn member<A: MapAccess<'de>>(&mut self, name: &'de str, map: &mut A) -> Result<(), A::Error> {
        match name {
            "alg" => self.alg = Some(map.next_value_seed(WithStr(Algorithm::from_name))?),
            "kid" => self.kid = Some(map.next_value_seed(WithStr(|kid: &str| json::append(self.text, kid)))?),
            "crit" => return Err(de::Error::custom("no crit extension is supported")),
            _ => map.next_value_seed(Ignored { depth: 2 })?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: &str) -> Result<(Header, String), JwtError> {
        let mut text = String::new();
        parse_header(json.as_bytes(), &mut text).map(|header| (header, text))
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        assert_eq!(bearer_token(b"Bearer a.b.c"), Ok(&b"a.b.c"[..]));
        assert_eq!(bearer_token(b" bEaReR \t a.b.c "), Ok(&b"a.b.c"[..]));
        for value in [&b""[..], b"Bearer", b"Bearer   ", b"Bearera.b.c", b"Basic dXNlcjpwYXNz", b"Token a.b.c"] {
            assert_eq!(bearer_token(value), Err(JwtError::Missing), "{value:?}");
        }
    }

    #[test]
    fn exactly_three_segments_and_a_size_limit() {
        let compact = split(b"h.c.s").unwrap();
        assert_eq!(
            (compact.header, compact.claims, compact.signature, compact.signing_input),
            (&b"h"[..], &b"c"[..], &b"s"[..], &b"h.c"[..])
        );
        assert_eq!(split(b"h.c.").unwrap().signature, b"");
        for token in [&b"h.c"[..], b"h.c.s.x", b"a.b.c.d.e", b"nodots"] {
            assert_eq!(split(token).err(), Some(JwtError::Malformed), "{token:?}");
        }
        let long = vec![b'a'; JWT_TOKEN_BYTES_MAX - 4];
        let token = [&long[..], b".b.c"].concat();
        assert!(split(&token).is_ok());
        let token = [&long[..], b".bb.c"].concat();
        assert_eq!(split(&token).err(), Some(JwtError::TooLarge));
    }

    #[test]
    fn segments_are_strict_base64url() {
        let mut out = Vec::new();
        assert_eq!(decode(b"eyJhIjoxfQ", &mut out), Ok(()));
        assert_eq!(out, br#"{"a":1}"#);
        // Padding, the standard alphabet, whitespace, and non-zero trailing bits.
        for segment in [&b"eyJhIjoxfQ=="[..], b"ey+h", b"ey/h", b"eyJh Ijox", b"eyJhIjoxfR"] {
            assert_eq!(decode(segment, &mut out), Err(JwtError::Malformed), "{segment:?}");
        }
    }

    #[test]
    fn header_alg_and_kid() {
        let (parsed, text) = header(r#"{"alg":"ES256","typ":"JWT","kid":"k\u00fc1"}"#).unwrap();
        assert_eq!(parsed.algorithm, Algorithm::Es256);
        assert_eq!(&text[parsed.kid.unwrap()], "kü1");
        assert_eq!(header(r#"{"alg":"EdDSA"}"#).unwrap().0.kid, None);
        for alg in ["none", "HS256", "HS512", "RS512", "PS256", "rs256"] {
            assert_eq!(header(&format!(r#"{{"alg":"{alg}"}}"#)).err(), Some(JwtError::AlgorithmNotAllowed), "{alg}");
        }
    }

    #[test]
    fn header_strictness() {
        for json in [
            r#"{"typ":"JWT"}"#,
            r#"{"alg":"RS256","alg":"none"}"#,
            r#"{"alg":"none","alg":"RS256"}"#,
            r#"{"alg":"RS256","crit":["b64"],"b64":false}"#,
            r#"{"alg":["RS256"]}"#,
            r#"{"alg":"RS256","kid":7}"#,
            r#"["RS256"]"#,
            r#"{"alg":"RS256"}x"#,
        ] {
            assert_eq!(header(json).err(), Some(JwtError::Malformed), "{json}");
        }
    }
}
