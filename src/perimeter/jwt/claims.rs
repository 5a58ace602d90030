//! The claims set of an access token (RFC 7519 §4.1, RFC 9068): read in one strict pass
//! that resolves `iss` and `aud` against the configured issuers as it goes, copies the
//! caller's names and scopes into the scratch text, and keeps nothing else.

use std::ops::Range;

use serde::de::MapAccess;

use super::error::JwtError;
use super::json::{self, Form, Ignored, Members, NumericDate, WithStr, WithStrs};
use super::policy::IssuerPolicy;

/// What sluice reads from a claims set. Text lives in the scratch text at the ranges.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Claims {
    /// Index of the configured issuer `iss` names; `None` if absent or unknown.
    pub issuer: Option<usize>,
    /// Bit `i` is set when `aud` contains issuer `i`'s audience.
    pub audiences: u64,
    pub expires_ms: Option<i64>,
    pub not_before_ms: Option<i64>,
    pub issued_ms: Option<i64>,
    pub sub: Option<Range<usize>>,
    pub client_id: Option<Range<usize>>,
    pub azp: Option<Range<usize>>,
    /// The valid scope tokens of `scope` and of `scp`, each list space-separated.
    pub scope: Range<usize>,
    pub scp: Range<usize>,
}

/// Reads a decoded claims set; any JSON fault or a registered claim of the wrong type
/// is `Malformed`.
pub(super) fn parse(bytes: &[u8], issuers: &[IssuerPolicy], text: &mut String) -> Result<Claims, JwtError> {
    let reader = json::parse_object(bytes, ClaimsReader { issuers, text, claims: Claims::default() });
    reader.map(|reader| reader.claims).ok_or(JwtError::Malformed)
}

impl Claims {
    /// The time checks of RFC 7519 §4.1.4-6 with `leeway_secs` of skew either way:
    /// `exp` is required and returned; `nbf` and `iat` are checked when present.
    pub fn check_times(&self, now_ms: i64, leeway_secs: u64) -> Result<i64, JwtError> {
        let leeway_ms = i64::try_from(leeway_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let expires_ms = self.expires_ms.ok_or(JwtError::ClaimMissing)?;
        if now_ms >= expires_ms.saturating_add(leeway_ms) {
            return Err(JwtError::Expired);
        }
        let latest_ms = now_ms.saturating_add(leeway_ms);
        if self.not_before_ms.is_some_and(|not_before_ms| not_before_ms > latest_ms) {
            return Err(JwtError::NotYetValid);
        }
        if self.issued_ms.is_some_and(|issued_ms| issued_ms > latest_ms) {
            return Err(JwtError::IssuedInFuture);
        }
        Ok(expires_ms)
    }

    /// Who the token speaks for: `sub`, else `client_id`, else `azp` (client-credentials
    /// tokens of some issuers carry no `sub`); empty values do not count.
    pub fn subject(&self) -> Option<Range<usize>> {
        [&self.sub, &self.client_id, &self.azp].into_iter().flatten().find(|range| !range.is_empty()).cloned()
    }
}

/// An OAuth2 scope token (RFC 6749 §3.3): printable ASCII except space, `"` and `\`.
/// Anything else is dropped, so a list joined with spaces splits back into the same
/// tokens (an `scp` element `"ingest:bet ingest:*"` must not grant `ingest:*`).
fn is_scope_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|byte| matches!(byte, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// Appends the valid tokens of a scope value to the list that starts at `start` in
/// `text`: a string is a space-separated list, an array element is one token.
fn append_scopes(text: &mut String, start: usize, value: &str, form: Form) {
    let mut append = |token: &str| {
        if is_scope_token(token) {
            if text.len() > start {
                text.push(' ');
            }
            text.push_str(token);
        }
    };
    match form {
        Form::String => value.split(' ').for_each(append),
        Form::Element => append(value),
    }
}

struct ClaimsReader<'p, 't> {
    issuers: &'p [IssuerPolicy],
    text: &'t mut String,
    claims: Claims,
}

impl<'de> Members<'de> for ClaimsReader<'_, '_> {
    fn member<A: MapAccess<'de>>(&mut self, name: &'de str, map: &mut A) -> Result<(), A::Error> {
        let (issuers, text, claims) = (self.issuers, &mut *self.text, &mut self.claims);
        let mut text_of = |map: &mut A| map.next_value_seed(WithStr(|value: &str| json::append(text, value))).map(Some);
        match name {
            "iss" => claims.issuer = map.next_value_seed(WithStr(|iss: &str| issuers.iter().position(|policy| policy.issuer == iss)))?,
            "aud" => map.next_value_seed(WithStrs(|aud: &str, _| claims.audiences |= audience_bits(issuers, aud)))?,
            "exp" => claims.expires_ms = Some(map.next_value_seed(NumericDate)?),
            "nbf" => claims.not_before_ms = Some(map.next_value_seed(NumericDate)?),
            "iat" => claims.issued_ms = Some(map.next_value_seed(NumericDate)?),
            "sub" => claims.sub = text_of(map)?,
            "client_id" => claims.client_id = text_of(map)?,
            "azp" => claims.azp = text_of(map)?,
            "scope" | "scp" => {
                let start = text.len();
                map.next_value_seed(WithStrs(|value: &str, form| append_scopes(text, start, value, form)))?;
                *(if name == "scope" { &mut claims.scope } else { &mut claims.scp }) = start..text.len();
            }
            _ => map.next_value_seed(Ignored { depth: 2 })?,
        }
        Ok(())
    }
}

/// The bits of the issuers whose audience is `aud`.
fn audience_bits(issuers: &[IssuerPolicy], aud: &str) -> u64 {
    issuers.iter().enumerate().filter(|(_, policy)| policy.audience == aud).fold(0, |bits, (index, _)| bits | 1 << index)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::perimeter::jwt::policy::Algorithm;

    const NOW_MS: i64 = 1_700_000_000_000;

    fn issuers() -> Vec<IssuerPolicy> {
        ["https://a.example", "https://b.example"]
            .iter()
            .zip(["api-a", "api-b"])
            .map(|(issuer, audience)| IssuerPolicy {
                issuer: (*issuer).to_owned(),
                audience: audience.to_owned(),
                algorithms: vec![Algorithm::EdDsa],
                jwks_file: PathBuf::new(),
            })
            .collect()
    }

    fn claims(json: &str) -> Result<(Claims, String), JwtError> {
        let mut text = String::new();
        parse(json.as_bytes(), &issuers(), &mut text).map(|claims| (claims, text))
    }

    fn times(exp: Option<i64>, nbf: Option<i64>, iat: Option<i64>) -> Checked {
        Checked(Claims { expires_ms: exp, not_before_ms: nbf, issued_ms: iat, ..Claims::default() })
    }

    /// `check_times` without the returned expiry.
    struct Checked(Claims);

    impl Checked {
        fn check_times(&self, now_ms: i64, leeway_secs: u64) -> Result<(), JwtError> {
            self.0.check_times(now_ms, leeway_secs).map(|_| ())
        }
    }

    #[test]
    fn issuer_and_audience_resolve_against_the_policy() {
        let (parsed, _) = claims(r#"{"aud":["x","api-b"],"iss":"https://b.example"}"#).unwrap();
        assert_eq!((parsed.issuer, parsed.audiences), (Some(1), 0b10));
        let (parsed, _) = claims(r#"{"iss":"https:\/\/a.example","aud":"api-a"}"#).unwrap();
        assert_eq!((parsed.issuer, parsed.audiences), (Some(0), 0b01));
        let (parsed, _) = claims(r#"{"iss":"https://A.example","aud":[]}"#).unwrap();
        assert_eq!((parsed.issuer, parsed.audiences), (None, 0));
        for json in [r#"{"iss":1}"#, r#"{"aud":{"a":1}}"#, r#"{"aud":[1]}"#, r#"{"iss":"a","iss":"b"}"#, r#"{"exp":"1"}"#, "[]"] {
            assert_eq!(claims(json).err(), Some(JwtError::Malformed), "{json}");
        }
    }

    #[test]
    fn subject_prefers_sub_then_client_id_then_azp() {
        let subject = |json: &str| claims(json).map(|(parsed, text)| parsed.subject().map(|range| text[range].to_owned())).unwrap();
        assert_eq!(subject(r#"{"azp":"c","client_id":"b","sub":"a"}"#).as_deref(), Some("a"));
        assert_eq!(subject(r#"{"azp":"c","client_id":"b"}"#).as_deref(), Some("b"));
        assert_eq!(subject(r#"{"azp":"c","sub":""}"#).as_deref(), Some("c"));
        assert_eq!(subject(r#"{"sub":"\u00e9"}"#).as_deref(), Some("é"));
        assert_eq!(subject(r#"{"iss":"x"}"#), None);
    }

    #[test]
    fn scopes_from_scope_string_and_scp_array_or_string() {
        let (parsed, text) =
            claims(r#"{"scope":"ingest:bet  openid ingest:\u00fc","scp":["ingest:a b","ingest:login","x\"y","a\u0000b"]}"#).unwrap();
        assert_eq!(&text[parsed.scope], "ingest:bet openid");
        assert_eq!(&text[parsed.scp], "ingest:login");
        let (parsed, text) = claims(r#"{"scp":"ingest:* read"}"#).unwrap();
        assert_eq!((&text[parsed.scope.clone()], &text[parsed.scp]), ("", "ingest:* read"));
        assert_eq!(claims(r#"{"scope":["a",1]}"#).err(), Some(JwtError::Malformed));
    }

    #[test]
    fn expiry_is_required_and_leeway_applies_at_the_edges() {
        let leeway_ms = 60_000;
        assert_eq!(times(None, None, None).check_times(NOW_MS, 60), Err(JwtError::ClaimMissing));
        assert_eq!(times(Some(NOW_MS - leeway_ms + 1), None, None).check_times(NOW_MS, 60), Ok(()));
        assert_eq!(times(Some(NOW_MS - leeway_ms), None, None).check_times(NOW_MS, 60), Err(JwtError::Expired));
        assert_eq!(times(Some(NOW_MS), None, None).check_times(NOW_MS, 0), Err(JwtError::Expired));
        let exp = Some(NOW_MS + 3_600_000);
        assert_eq!(times(exp, Some(NOW_MS + leeway_ms), None).check_times(NOW_MS, 60), Ok(()));
        assert_eq!(times(exp, Some(NOW_MS + leeway_ms + 1), None).check_times(NOW_MS, 60), Err(JwtError::NotYetValid));
        assert_eq!(times(exp, None, Some(NOW_MS + leeway_ms)).check_times(NOW_MS, 60), Ok(()));
        assert_eq!(times(exp, None, Some(NOW_MS + leeway_ms + 1)).check_times(NOW_MS, 60), Err(JwtError::IssuedInFuture));
        // Saturating arithmetic at the extremes: no overflow panic.
        assert_eq!(times(Some(i64::MAX), Some(i64::MIN), None).check_times(i64::MAX, u64::MAX), Err(JwtError::Expired));
        assert_eq!(times(Some(i64::MAX), Some(i64::MAX), None).check_times(i64::MIN, u64::MAX), Err(JwtError::NotYetValid));
    }

    #[test]
    fn numeric_dates_in_claims() {
        let (parsed, _) = claims(r#"{"exp":1700000000.999,"nbf":1699999999,"iat":1.6999e9}"#).unwrap();
        assert_eq!(
            (parsed.expires_ms, parsed.not_before_ms, parsed.issued_ms),
            (Some(1_700_000_000_999), Some(1_699_999_999_000), Some(1_699_900_000_000))
        );
    }
}
