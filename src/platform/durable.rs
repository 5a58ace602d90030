//! Replacing a small file so that a crash leaves either the old or the new contents,
//! never half of one: write a temporary file beside it, fsync it, rename it over the
//! file, fsync the directory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `contents` through `temporary` (in the same directory, so the
/// rename is atomic). On error `path` is unchanged; `temporary` may be left behind and
/// is overwritten by the next call.
pub fn replace_file(path: &Path, temporary: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = File::create(temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(temporary, path)?;
    let directory = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let (path, temporary) = (dir.path().join("f"), dir.path().join("f.tmp"));
        replace_file(&path, &temporary, b"one").unwrap();
        replace_file(&path, &temporary, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert!(!temporary.exists());
    }

    #[test]
    fn a_failed_replace_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        replace_file(&path, &dir.path().join("f.tmp"), b"kept").unwrap();
        let missing = dir.path().join("no-such-dir/f.tmp");
        assert!(replace_file(&path, &missing, b"lost").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"kept");
    }
}
