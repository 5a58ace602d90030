//! Schema versions: `MAJOR.MINOR.PATCH` (semver 2.0.0 without pre-release or build
//! parts, which a registry cannot order usefully). The major decides the stream version
//! of the topic an event goes to (`registry.rs`).

#![forbid(unsafe_code)]

use std::fmt;

/// Longest version text accepted (`65535.65535.65535` is 17).
pub const VERSION_BYTES_MAX: usize = 32;

/// A schema version, ordered as semver orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl SchemaVersion {
    /// Parses `MAJOR.MINOR.PATCH`: decimal numbers without leading zeros (semver §2).
    pub fn parse(text: &[u8]) -> Option<SchemaVersion> {
        if text.is_empty() || text.len() > VERSION_BYTES_MAX {
            return None;
        }
        let mut parts = text.split(|byte| *byte == b'.');
        let mut number = || -> Option<u32> {
            let part = parts.next()?;
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) || (part.len() > 1 && part[0] == b'0') {
                return None;
            }
            std::str::from_utf8(part).ok()?.parse().ok()
        };
        let version = SchemaVersion { major: number()?, minor: number()?, patch: number()? };
        if parts.next().is_some() {
            return None;
        }
        Some(version)
    }

    /// The stream version of the topic that events of this major go to: major 0 and 1
    /// go to the topic itself (stream version 1), major `m` ≥ 2 to `<topic>.v<m>`.
    pub fn stream_version(self) -> u32 {
        self.major.max(1)
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_like_semver() {
        let v = |text: &str| SchemaVersion::parse(text.as_bytes()).unwrap();
        assert_eq!(v("1.3.0"), SchemaVersion { major: 1, minor: 3, patch: 0 });
        assert!(v("1.10.0") > v("1.9.9"));
        assert!(v("2.0.0") > v("1.99.99"));
        assert_eq!(v("0.1.0").stream_version(), 1);
        assert_eq!(v("3.0.1").stream_version(), 3);
        assert_eq!(v("10.2.3").to_string(), "10.2.3");
    }

    #[test]
    fn refuses_what_is_not_three_plain_numbers() {
        for bad in ["", "1", "1.2", "1.2.3.4", "01.2.3", "1.2.3-rc.1", "1.2.3+b", "a.b.c", "1..3", "99999999999.0.0", " 1.2.3"] {
            assert_eq!(SchemaVersion::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
