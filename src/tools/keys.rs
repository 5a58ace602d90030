//! `sluice keys gen|list|rotate`: the key ring file, edited in place (owner, group and
//! mode kept), secrets never printed.

use std::io::{self, Write};
use std::path::Path;

use crate::perimeter::keyring::{self, KeyRingError};
use crate::tools::cli::KeysAction;

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("{0}")]
    KeyRing(#[from] KeyRingError),
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
}

/// Runs `action` on the key ring at `path` and reports on `out`.
pub fn run(path: &Path, action: &KeysAction, now_ms: i64, out: &mut dyn Write) -> Result<(), KeysError> {
    match action {
        KeysAction::Gen { partner, valid_days } => {
            let key = keyring::gen_key(path, partner, *valid_days, now_ms)?;
            writeln!(out, "created kid {} for partner {} in {}", key.kid, key.partner, key.path.display())?;
        }
        KeysAction::Token { partner, name, valid_days } => {
            let token = keyring::gen_token(path, partner, name.as_deref(), *valid_days, now_ms)?;
            // The token alone on stdout (scripts capture it); what it is on stderr.
            writeln!(out, "{}", token.token)?;
            eprintln!(
                "sluice: created token {:?} for partner {} in {} (only its SHA-256 is kept: this is the one time it is shown)",
                token.name,
                token.partner,
                token.path.display()
            );
        }
        KeysAction::List => {
            for info in keyring::list_keys(path, now_ms)? {
                writeln!(out, "{info}")?;
            }
        }
        KeysAction::Rotate { partner, grace_days } => {
            let key = keyring::rotate_key(path, partner, *grace_days, now_ms)?;
            writeln!(
                out,
                "created kid {} for partner {} in {}; the previous keys stay valid for {} days",
                key.kid,
                key.partner,
                key.path.display(),
                key.grace_days
            )?;
        }
    }
    Ok(())
}
