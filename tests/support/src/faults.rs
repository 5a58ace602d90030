//! Fault injection for the storage tests: `sync_fault.so`, an `LD_PRELOAD` library that
//! fails chosen fdatasync/fsync calls with EIO (see `faults/sync_fault.c` for its
//! environment variables). Built once per target dir with the system C compiler, which
//! the Rust toolchain already needs for linking; a missing compiler fails the test with
//! a message that says what to install.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Path of the built `sync_fault.so`.
pub fn sync_fault_library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("faults/sync_fault.c");
        let out_dir = crate::bin().parent().expect("target/<profile>").join("test-faults");
        std::fs::create_dir_all(&out_dir).expect("create the fault library directory");
        // Per process, then renamed: concurrent test binaries never see a half-written file.
        let partial = out_dir.join(format!("sync_fault.so.{}", std::process::id()));
        let library = out_dir.join("sync_fault.so");
        let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
        let status = Command::new(&compiler)
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&partial)
            .arg(&source)
            .arg("-ldl")
            .status()
            .unwrap_or_else(|error| panic!("cannot run the C compiler {compiler:?} ({error}): install gcc (apt-get install gcc)"));
        assert!(status.success(), "{compiler} failed to build {}", source.display());
        std::fs::rename(&partial, &library).expect("install the fault library");
        library
    })
}
