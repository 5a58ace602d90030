//! Signed replay runbooks driven through the real commands (`sluice replay keygen|plan|
//! approve|run`): signer keys made once per test in a temp dir, their `[[signers]]`
//! tables for the key ring, and each command's exit status and output.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::process::run_sluice;

/// A requester and an approver (and a second requester key to try self-approval with).
pub struct Signers {
    pub dir: tempfile::TempDir,
    pub requester: PathBuf,
    pub approver: PathBuf,
    /// The requester's own key, registered a second time as an approver under another name.
    pub requester_as_approver: PathBuf,
    /// The `[[signers]]` tables to append to the key ring.
    pub ring: String,
}

fn keygen(dir: &Path, name: &str, role: &str) -> (PathBuf, String) {
    let file = dir.join(format!("{name}.key"));
    let output = run_sluice(&["replay", "keygen", "--name", name, "--role", role, "--out", file.to_str().expect("utf-8")]);
    assert!(output.status.success(), "keygen: {}", String::from_utf8_lossy(&output.stderr));
    (file, String::from_utf8(output.stdout).expect("utf-8"))
}

impl Signers {
    pub fn new() -> Signers {
        let dir = tempfile::Builder::new().prefix("sluice-signers-").tempdir().expect("temp dir");
        let (requester, requester_ring) = keygen(dir.path(), "alice", "requester");
        let (approver, approver_ring) = keygen(dir.path(), "bob", "approver");
        // The same person's key under a second name, as an approver: a self-approval.
        let public = requester_ring.lines().find(|line| line.starts_with("public_key")).expect("public_key line").to_owned();
        let twin = format!("[[signers]]\nname = \"alice2\"\nrole = \"approver\"\n{public}\n");
        let requester_as_approver = dir.path().join("alice2.key");
        let text = std::fs::read_to_string(&requester).expect("read key").replace(" alice requester ", " alice2 approver ");
        write_private(&requester_as_approver, &text);
        let ring = format!("\n{requester_ring}\n{approver_ring}\n{twin}\n");
        Signers { dir, requester, approver, requester_as_approver, ring }
    }
}

impl Default for Signers {
    fn default() -> Self {
        Signers::new()
    }
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).expect("create key file");
    std::io::Write::write_all(&mut file, text.as_bytes()).expect("write key file");
}

/// Runs `sluice replay <args>` with `--config`.
pub fn replay(config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["replay", "--config", config.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    run_sluice(&all)
}

/// The output as text, for assertions.
pub fn said(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}
