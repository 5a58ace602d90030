//! Ed25519 signer keys for replay runbooks: a person's private key file and the public
//! half that the verifier's list of signers holds.
//!
//! A private key file is one line, `sluice-signer-v1 <name> <role> <base64 PKCS#8>\n`,
//! the PKCS#8 v2 document `Ed25519KeyPair::generate_pkcs8` writes (v1 documents, as
//! `openssl genpkey -algorithm ED25519` writes them, load too). The name and role sit in
//! the file so that a signature always carries the role its key was issued for; the
//! verifier still checks both against its own list, never trusting the file's word.
//! A public key is written `ed25519:<base64 of its 32 bytes>`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::constants::{SIGNER_FILE_BYTES_MAX, SIGNER_NAME_BYTES_MAX};

/// First word of a private key file; a later format gets a new word.
pub const SIGNER_FILE_TAG: &str = "sluice-signer-v1";
/// Prefix of a public key's text form.
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";
/// Ed25519 public key and signature lengths in bytes (RFC 8032 §5.1.5, §5.1.6).
pub const PUBLIC_KEY_BYTES: usize = 32;
pub const SIGNATURE_BYTES: usize = 64;
/// Permission bits a private key file must not have: any access by group or other.
const FILE_MODE_SHARED_BITS: u32 = 0o077;
/// Mode `write_private` creates a private key file with.
const FILE_MODE_PRIVATE: u32 = 0o600;

/// What a signer may do with a runbook: plan and sign it as its requester, or approve
/// someone else's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Requester,
    Approver,
}

impl Role {
    /// `"requester"` or `"approver"`; anything else is `None`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "requester" => Some(Role::Requester),
            "approver" => Some(Role::Approver),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Requester => "requester",
            Role::Approver => "approver",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The public half of a signer, as the verifier's list of signers holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicSigner {
    pub name: String,
    pub role: Role,
    pub public_key: [u8; PUBLIC_KEY_BYTES],
}

impl PublicSigner {
    /// The key as `ed25519:<base64>`, what `parse_public_key` reads.
    pub fn key_text(&self) -> String {
        format_public_key(&self.public_key)
    }
}

/// A private key loaded for signing. `Debug` shows the name and role, never the key.
pub struct Signer {
    name: String,
    role: Role,
    key_pair: Ed25519KeyPair,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer").field("name", &self.name).field("role", &self.role).finish_non_exhaustive()
    }
}

impl Signer {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The public half, for the verifier's list of signers.
    pub fn public(&self) -> PublicSigner {
        PublicSigner { name: self.name.clone(), role: self.role, public_key: public_key_of(&self.key_pair) }
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_BYTES] {
        let mut signature = [0; SIGNATURE_BYTES];
        signature.copy_from_slice(self.key_pair.sign(message).as_ref());
        signature
    }
}

/// Why a signer key could not be made, read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("signer name {name:?} must be 1..={SIGNER_NAME_BYTES_MAX} characters of [a-z0-9_.-]")]
    Name { name: String },
    #[error("cannot read signer key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write signer key file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("signer key file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("signer key file {path} has mode {mode:04o}; a private key must not be readable by group or other (chmod 600 it)")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("signer key file {path} is {bytes} bytes, more than the {max_bytes} a key file can be")]
    TooLarge { path: PathBuf, bytes: u64, max_bytes: u64 },
    #[error("signer key file {path} is not a {SIGNER_FILE_TAG} key: {problem}")]
    Malformed { path: PathBuf, problem: &'static str },
    #[error("public key {problem}; expected {PUBLIC_KEY_PREFIX}<base64 of 32 bytes>")]
    PublicKey { problem: &'static str },
    #[error("the system random generator failed; no key was made")]
    Random,
}

/// Whether `name` is a signer name: 1..=64 of `[a-z0-9_.-]`.
pub fn valid_name(name: &str) -> bool {
    let allowed = |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'_' | b'.' | b'-');
    (1..=SIGNER_NAME_BYTES_MAX).contains(&name.len()) && name.bytes().all(allowed)
}

/// A new key for `name` in `role`: the private key file's text (to store with
/// `write_private`, mode 0600) and the public half for the verifier's list.
pub fn generate(name: &str, role: Role) -> Result<(String, PublicSigner), SignerError> {
    if !valid_name(name) {
        return Err(SignerError::Name { name: name.to_owned() });
    }
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| SignerError::Random)?;
    let key_pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| SignerError::Random)?;
    let text = format!("{SIGNER_FILE_TAG} {name} {role} {}\n", STANDARD.encode(pkcs8.as_ref()));
    let public = PublicSigner { name: name.to_owned(), role, public_key: public_key_of(&key_pair) };
    Ok((text, public))
}

/// Writes a private key file's `text` to a new file at `path` with mode 0600; an
/// existing file is never replaced (a key overwritten by mistake is lost for good).
pub fn write_private(path: &Path, text: &str) -> Result<(), SignerError> {
    let write_error = |source| SignerError::Write { path: path.to_owned(), source };
    let mut file = OpenOptions::new().write(true).create_new(true).mode(FILE_MODE_PRIVATE).open(path).map_err(write_error)?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(write_error)
}

/// Loads the private key file at `path`. Refuses a file group or other may access
/// (`mode & 0o077 != 0`), one that is not a regular file, one over
/// `SIGNER_FILE_BYTES_MAX`, and anything but one well-formed key line.
pub fn load_private(path: &Path) -> Result<Signer, SignerError> {
    let read_error = |source| SignerError::Read { path: path.to_owned(), source };
    let file = File::open(path).map_err(read_error)?;
    // The opened file's metadata, not the path's: what is checked is what is read.
    let metadata = file.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        return Err(SignerError::NotAFile { path: path.to_owned() });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & FILE_MODE_SHARED_BITS != 0 {
        return Err(SignerError::Exposed { path: path.to_owned(), mode });
    }
    let mut bytes = Vec::new();
    // One byte past the limit tells an oversized file from one of exactly the limit.
    file.take(SIGNER_FILE_BYTES_MAX + 1).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() as u64 > SIGNER_FILE_BYTES_MAX {
        return Err(SignerError::TooLarge { path: path.to_owned(), bytes: metadata.len(), max_bytes: SIGNER_FILE_BYTES_MAX });
    }
    parse_private(&bytes).map_err(|problem| SignerError::Malformed { path: path.to_owned(), problem })
}

/// The signer of one key line, or what is wrong with it.
fn parse_private(bytes: &[u8]) -> Result<Signer, &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text")?;
    let line = text.strip_suffix('\n').unwrap_or(text);
    if line.contains(['\n', '\r']) {
        return Err("it must hold exactly one line");
    }
    let mut words = line.split(' ');
    let (Some(tag), Some(name), Some(role), Some(key), None) = (words.next(), words.next(), words.next(), words.next(), words.next())
    else {
        return Err("the line must be `sluice-signer-v1 <name> <role> <base64 key>`, one space apart");
    };
    if tag != SIGNER_FILE_TAG {
        return Err("the line does not start with sluice-signer-v1");
    }
    if !valid_name(name) {
        return Err("the name must be 1..=64 characters of [a-z0-9_.-]");
    }
    let role = Role::parse(role).ok_or("the role must be requester or approver")?;
    let pkcs8 = STANDARD.decode(key).map_err(|_| "the key is not base64")?;
    let key_pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| "the key is not an Ed25519 PKCS#8 document")?;
    Ok(Signer { name: name.to_owned(), role, key_pair })
}

/// The 32 key bytes of `ed25519:<base64>`.
pub fn parse_public_key(text: &str) -> Result<[u8; PUBLIC_KEY_BYTES], SignerError> {
    let encoded = text.strip_prefix(PUBLIC_KEY_PREFIX).ok_or(SignerError::PublicKey { problem: "does not start with ed25519:" })?;
    let bytes = STANDARD.decode(encoded).map_err(|_| SignerError::PublicKey { problem: "is not base64" })?;
    bytes.try_into().map_err(|_| SignerError::PublicKey { problem: "is not 32 bytes long" })
}

/// `ed25519:<base64>` of `key`.
pub fn format_public_key(key: &[u8; PUBLIC_KEY_BYTES]) -> String {
    format!("{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(key))
}

fn public_key_of(key_pair: &Ed25519KeyPair) -> [u8; PUBLIC_KEY_BYTES] {
    let mut key = [0; PUBLIC_KEY_BYTES];
    key.copy_from_slice(key_pair.public_key().as_ref());
    key
}

#[cfg(test)]
mod tests {
    use std::fs::{self, Permissions};

    use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};

    use super::*;

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("key");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_generated_key_loads_and_signs_for_its_public_half() {
        let dir = tempfile::tempdir().unwrap();
        let (text, public) = generate("alice", Role::Requester).unwrap();
        assert!(text.starts_with("sluice-signer-v1 alice requester ") && text.ends_with('\n'));
        let path = dir.path().join("alice.key");
        write_private(&path, &text).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(write_private(&path, &text), Err(SignerError::Write { .. })), "an existing key is never replaced");
        let signer = load_private(&path).unwrap();
        assert_eq!((signer.name(), signer.role()), ("alice", Role::Requester));
        assert_eq!(signer.public(), public);
        let signature = signer.sign(b"message");
        assert!(UnparsedPublicKey::new(&ED25519, public.public_key).verify(b"message", &signature).is_ok());
        assert!(!format!("{signer:?}").contains(text.split(' ').nth(3).unwrap().trim_end()));
    }

    #[test]
    fn a_private_key_file_readable_by_group_or_other_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (text, _) = generate("alice", Role::Approver).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o610] {
            let error = load_private(&write(dir.path(), &text, mode)).unwrap_err();
            assert!(matches!(error, SignerError::Exposed { mode: found, .. } if found == mode), "{mode:o}: {error}");
            assert!(error.to_string().contains("chmod 600"), "{error}");
        }
        assert!(load_private(&write(dir.path(), &text, 0o400)).is_ok());
    }

    #[test]
    fn oversized_and_malformed_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (text, _) = generate("alice", Role::Approver).unwrap();
        let padded = format!("{text}{}", " ".repeat(SIGNER_FILE_BYTES_MAX as usize));
        assert!(matches!(load_private(&write(dir.path(), &padded, 0o600)), Err(SignerError::TooLarge { .. })));
        let key = text.split(' ').nth(3).unwrap().trim_end();
        for (bad, expected) in [
            (format!("sluice-signer-v2 alice approver {key}\n"), "does not start"),
            (format!("sluice-signer-v1 Alice approver {key}\n"), "name"),
            (format!("sluice-signer-v1 alice admin {key}\n"), "role"),
            (format!("sluice-signer-v1 alice approver {key}\n\n"), "one line"),
            (format!("sluice-signer-v1 alice  approver {key}\n"), "one space apart"),
            ("sluice-signer-v1 alice approver !!!!\n".to_owned(), "not base64"),
            ("sluice-signer-v1 alice approver AAAA\n".to_owned(), "not an Ed25519"),
        ] {
            let error = load_private(&write(dir.path(), &bad, 0o600)).unwrap_err().to_string();
            assert!(error.contains(expected), "{bad:?}: {error}");
        }
        assert!(matches!(load_private(dir.path()), Err(SignerError::NotAFile { .. } | SignerError::Read { .. })));
    }

    #[test]
    fn public_keys_round_trip_and_bad_ones_say_why() {
        let (_, public) = generate("bob", Role::Approver).unwrap();
        assert_eq!(parse_public_key(&public.key_text()).unwrap(), public.public_key);
        for (bad, expected) in [("ed448:AAAA", "ed25519:"), ("ed25519:!!", "base64"), ("ed25519:AAAA", "32 bytes")] {
            assert!(parse_public_key(bad).unwrap_err().to_string().contains(expected), "{bad}");
        }
    }

    #[test]
    fn names_and_roles() {
        for good in ["a", "alice", "ops.on-call_2", &"a".repeat(64)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "Alice", "al ice", "al/ice", "ålice", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
            assert!(matches!(generate(bad, Role::Requester), Err(SignerError::Name { .. })));
        }
        assert_eq!(Role::parse("requester"), Some(Role::Requester));
        assert_eq!(Role::parse("approver"), Some(Role::Approver));
        assert_eq!(Role::parse("Approver"), None);
        assert_eq!(Role::Approver.to_string(), "approver");
    }
}
