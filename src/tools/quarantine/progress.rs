//! How far `sluice quarantine replay` got in one quarantine file: `<file>.replayed`.
//!
//! A quarantine file is per shard, so it interleaves partners, and a replay may be
//! limited to one partner (`--partner`) or stop for one partner (refused, see
//! `tools::quarantine`) while the others go on. One offset per file cannot say that, so
//! progress is a floor for every partner plus one offset per partner that got past it:
//! a record of partner P at offset `o` was sent iff `o < all` or `o < partners[P]`.
//!
//! Why this and not a bitmap of records: it stays an offset (a run resumes where it
//! stopped, as before), it is bounded by the partners in the file rather than by its
//! records, and when nothing is pending past the floor (every unfiltered run that was not
//! blocked) the map is empty and the file is the old format, a single decimal offset,
//! which older versions of sluice read too. A file in the old format means what it
//! always meant: every record before that offset was sent, whatever its partner.
//!
//! With partner offsets the file is JSON, `{"all":N,"partners":{"P":M}}`. It is replaced
//! whole (temporary file, fsync, rename, fsync of the directory), so after a crash it
//! holds either the old or the new progress; both only ever grow.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::constants::{PARTNER_BYTES_MAX, PARTNERS_PER_RING_MAX};

/// The sidecar next to `<file>`.
pub const PROGRESS_SUFFIX: &str = ".replayed";
/// Partner offsets one progress file may hold: the partners of one key ring. Entries at or
/// below the floor are dropped, so only partners pending in this file count.
pub const PROGRESS_PARTNERS_MAX: usize = PARTNERS_PER_RING_MAX;
/// Largest progress file read: the braces and floor, then per partner a name escaped at
/// worst 6 bytes per byte (`\u00XX`), quotes, colon, comma and a 20-digit offset.
const PROGRESS_BYTES_MAX: usize = 64 + PROGRESS_PARTNERS_MAX * (6 * PARTNER_BYTES_MAX + 2 + 1 + 1 + 20);
const _: () = assert!(PROGRESS_BYTES_MAX <= 1 << 20, "a progress file is read whole");

/// Why a progress file cannot be used. The replay stops rather than guess: sending a
/// file again from its start would rely on dedup, whose window may have passed.
#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    #[error("cannot read or write replay progress {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "replay progress {path} is neither an offset nor the expected JSON (at most {PROGRESS_BYTES_MAX} bytes); move it aside only if you accept that its file is replayed again"
    )]
    Damaged { path: PathBuf },
    #[error(
        "replay progress {path} already tracks {PROGRESS_PARTNERS_MAX} partners; run `sluice quarantine replay` without --partner to fold them into one offset"
    )]
    Full { path: PathBuf },
}

/// Replay progress of one quarantine file.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Every record before this byte offset was sent, whatever its partner.
    all: u64,
    /// Per partner: every record of that partner before this offset was sent. Only
    /// offsets above `all`; at most `PROGRESS_PARTNERS_MAX`.
    #[serde(default)]
    partners: BTreeMap<String, u64>,
}

impl Progress {
    /// The progress of `file` (none yet if there is no sidecar).
    pub fn load(file: &Path) -> Result<Progress, ProgressError> {
        let path = progress_path(file);
        let mut text = String::new();
        match File::open(&path) {
            Ok(opened) => opened.take(PROGRESS_BYTES_MAX as u64 + 1).read_to_string(&mut text),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Progress::default()),
            Err(error) => Err(error),
        }
        .map_err(|source| ProgressError::Io { path: path.clone(), source })?;
        Progress::parse(&text).ok_or(ProgressError::Damaged { path })
    }

    fn parse(text: &str) -> Option<Progress> {
        if text.len() > PROGRESS_BYTES_MAX {
            return None;
        }
        if let Ok(all) = text.trim().parse::<u64>() {
            return Some(Progress { all, partners: BTreeMap::new() });
        }
        let progress: Progress = serde_json::from_str(text).ok()?;
        (progress.partners.len() <= PROGRESS_PARTNERS_MAX).then_some(progress)
    }

    /// The offset before which every record was sent: where a replay of the file starts.
    pub fn all(&self) -> u64 {
        self.all
    }

    /// True if the record of `partner` at `offset` was sent.
    pub fn is_replayed(&self, offset: u64, partner: &str) -> bool {
        offset < self.all || self.partners.get(partner).is_some_and(|&to| offset < to)
    }

    /// Records that every record of `partner` before `end` was sent. The caller vouches
    /// that it sent them in order (a partner's offset never jumps over its own records).
    pub fn mark_partner(&mut self, file: &Path, partner: &str, end: u64) -> Result<(), ProgressError> {
        debug_assert!(partner.len() <= PARTNER_BYTES_MAX, "only key ring partners are sent");
        if end <= self.all {
            return Ok(());
        }
        let full = self.partners.len() >= PROGRESS_PARTNERS_MAX;
        match self.partners.get_mut(partner) {
            Some(to) => *to = (*to).max(end),
            None if full => return Err(ProgressError::Full { path: progress_path(file) }),
            None => {
                self.partners.insert(partner.to_owned(), end);
            }
        }
        Ok(())
    }

    /// Records that every record before `end` was sent, and drops the partner offsets
    /// it covers.
    pub fn mark_all(&mut self, end: u64) {
        if end > self.all {
            self.all = end;
            self.partners.retain(|_, to| *to > end);
        }
    }

    /// Replaces the sidecar of `file` with this progress, durably.
    pub fn store(&self, file: &Path) -> Result<(), ProgressError> {
        let path = progress_path(file);
        let io_error = |source| ProgressError::Io { path: path.clone(), source };
        let text = if self.partners.is_empty() {
            format!("{}\n", self.all)
        } else {
            let mut json = serde_json::to_string(self).map_err(|error| io_error(io::Error::other(error)))?;
            json.push('\n');
            json
        };
        let mut temporary = path.clone().into_os_string();
        temporary.push(".tmp");
        crate::platform::durable::replace_file(&path, Path::new(&temporary), text.as_bytes()).map_err(io_error)
    }
}

/// `<file>.replayed`.
pub fn progress_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(PROGRESS_SUFFIX);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn the_old_format_means_every_partner_up_to_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shard-0-1.quarantine");
        assert_eq!(Progress::load(&file).unwrap(), Progress::default(), "no sidecar: nothing sent");
        fs::write(progress_path(&file), "120\n").unwrap();
        let progress = Progress::load(&file).unwrap();
        assert_eq!(progress.all(), 120);
        for partner in ["a", "b", "never-seen"] {
            assert!(progress.is_replayed(0, partner) && progress.is_replayed(119, partner));
            assert!(!progress.is_replayed(120, partner));
        }
    }

    #[test]
    fn partner_offsets_are_kept_apart_and_folded_into_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shard-0-1.quarantine");
        let mut progress = Progress::default();
        progress.mark_partner(&file, "a", 30).unwrap();
        progress.mark_partner(&file, "a", 20).unwrap();
        progress.store(&file).unwrap();
        let read = Progress::load(&file).unwrap();
        assert_eq!(read, progress);
        assert!(read.is_replayed(25, "a") && !read.is_replayed(25, "b") && !read.is_replayed(30, "a"));

        progress.mark_partner(&file, "b", 50).unwrap();
        progress.mark_all(40);
        assert!(progress.is_replayed(35, "b") && progress.is_replayed(45, "b") && !progress.is_replayed(45, "a"));
        progress.mark_all(50);
        progress.store(&file).unwrap();
        assert_eq!(fs::read_to_string(progress_path(&file)).unwrap(), "50\n", "nothing pending past the floor: the old format");
        let tmp = dir.path().join("shard-0-1.quarantine.replayed.tmp");
        assert!(!tmp.exists());
    }

    #[test]
    fn the_partner_map_is_bounded_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shard-0-1.quarantine");
        let mut progress = Progress::default();
        for index in 0..PROGRESS_PARTNERS_MAX {
            progress.mark_partner(&file, &format!("p{index:04}-{}", "x".repeat(PARTNER_BYTES_MAX - 6)), 10).unwrap();
        }
        assert!(matches!(progress.mark_partner(&file, "one-more", 10), Err(ProgressError::Full { .. })));
        progress.store(&file).unwrap();
        assert_eq!(Progress::load(&file).unwrap(), progress, "a full map reads back within PROGRESS_BYTES_MAX");

        for damaged in ["", "12 apples", "{\"all\":1,\"extra\":2}", "-5"] {
            fs::write(progress_path(&file), damaged).unwrap();
            assert!(matches!(Progress::load(&file), Err(ProgressError::Damaged { .. })), "{damaged:?}");
        }
    }
}
