//! Names the commit the binary was built from (`sluice --version`): `$SLUICE_COMMIT` when
//! the builder sets it (a release tarball has no .git), else `git rev-parse`, with
//! `-dirty` when the work tree has changes, else "unknown".

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=SLUICE_COMMIT");
    let commit = match std::env::var("SLUICE_COMMIT") {
        Ok(commit) if !commit.is_empty() => commit,
        _ => match git(&["rev-parse", "--short=12", "HEAD"]) {
            Some(hash) => {
                let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|changes| !changes.is_empty());
                if dirty { format!("{hash}-dirty") } else { hash }
            }
            None => "unknown".to_owned(),
        },
    };
    println!("cargo:rustc-env=SLUICE_COMMIT={commit}");
    // Rebuild the version when HEAD moves or the index changes (a commit, a checkout).
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        let git_dir = Path::new(&git_dir);
        for file in ["HEAD", "index", "packed-refs"] {
            println!("cargo:rerun-if-changed={}", git_dir.join(file).display());
        }
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={}", git_dir.join(reference).display());
        }
    }
}
