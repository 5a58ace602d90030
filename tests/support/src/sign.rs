//! Signing (SPEC §1.1) with the hmac and sha2 crates, independent of the server's
//! aws-lc-rs implementation, so a test that passes proves the two agree.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::sandbox::{KID, SECRET};

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`.
pub fn sign_v1(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex(&mac.finalize().into_bytes()))
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// Current Unix seconds, taken in the first half of a second so that a request sent at
/// once is judged by the server within the same second (for window-edge tests).
pub fn now_secs_early() -> u64 {
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
        if now.subsec_millis() < 500 {
            return now.as_secs();
        }
        std::thread::sleep(Duration::from_millis(u64::from(1000 - now.subsec_millis()) + 1));
    }
}

/// The three signing headers for `body` with the test key at the current time.
pub fn auth_headers(body: &[u8]) -> Vec<(String, String)> {
    signing_headers(KID, &SECRET, &now_secs().to_string(), body)
}

/// The three signing headers for `body`, signed by `kid` / `secret` at `timestamp`.
pub fn signing_headers(kid: &str, secret: &[u8], timestamp: &str, body: &[u8]) -> Vec<(String, String)> {
    let signature = sign_v1(secret, timestamp, body);
    vec![("X-Key-Id".into(), kid.into()), ("X-Timestamp".into(), timestamp.into()), ("X-Signature".into(), signature)]
}
