//! The Python the interoperability tests drive (PyJWT, the Standard Webhooks package):
//! a venv made once per target directory (`target/test-python/`) from the packages
//! pinned in `tests/support/python-requirements.txt`, fetched from PyPI. Nothing needs to
//! be installed by hand but `python3` with its `venv` module; a test that cannot get its
//! packages fails and says why, it never skips.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Every package a test drives, in one place.
pub const REQUIREMENTS: &str = include_str!("../python-requirements.txt");

/// The venv's interpreter, created (or brought up to date with [`REQUIREMENTS`]) on
/// first use. `SLUICE_TEST_PYTHON` names an interpreter to use instead, as it is.
///
/// # Panics
/// When `python3` or its `venv` module is missing, or the packages cannot be installed,
/// with what to do about it.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| match std::env::var_os("SLUICE_TEST_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => venv(),
    })
}

/// `target/` of the running test binary (`target/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors().nth(3).expect("target/<profile>/deps/<test>").to_owned()
}

fn venv() -> PathBuf {
    let target = target_dir();
    fs::create_dir_all(&target).expect("create the target directory");
    let dir = target.join("test-python");
    let interpreter = dir.join("bin").join("python");
    let stamp = dir.join("requirements.installed");
    // Test binaries may run at once (cargo nextest): one makes the venv, the others wait.
    let lock = File::create(target.join("test-python.lock")).expect("create target/test-python.lock");
    lock.lock().expect("lock target/test-python.lock");
    if fs::read_to_string(&stamp).is_ok_and(|installed| installed == REQUIREMENTS) && interpreter.exists() {
        return interpreter;
    }
    let _ = fs::remove_dir_all(&dir);
    let created = Command::new("python3").args(["-m", "venv"]).arg(&dir).output().unwrap_or_else(|error| {
        panic!("cannot run python3 ({error}): the interoperability tests need Python 3 with venv: apt-get install python3 python3-venv")
    });
    assert!(
        created.status.success(),
        "python3 -m venv failed: install the venv module (apt-get install python3-venv):\n{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let requirements = dir.join("requirements.txt");
    fs::write(&requirements, REQUIREMENTS).expect("write the requirements into the venv");
    let installed = Command::new(&interpreter)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input", "-r"])
        .arg(&requirements)
        .output()
        .expect("run pip in the test venv");
    assert!(
        installed.status.success(),
        "pip could not install tests/support/python-requirements.txt from PyPI into {} (is PyPI reachable?):\n{}",
        dir.display(),
        String::from_utf8_lossy(&installed.stderr)
    );
    fs::write(&stamp, REQUIREMENTS).expect("record the installed requirements");
    interpreter
}

/// Runs `script` with `args` under [`python()`] and returns its stdout.
///
/// # Panics
/// If the script fails, with its stderr.
pub fn run(script: &str, args: &[&str]) -> String {
    let output = Command::new(python()).arg("-c").arg(script).args(args).output().expect("run the test Python");
    assert!(output.status.success(), "the Python script failed:\n{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("the script prints UTF-8")
}
