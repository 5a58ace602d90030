//! The man pages and shell completions are generated from the CLI definition itself.

use sluice_test_support::*;

#[test]
fn man_prints_a_roff_page_and_writes_one_per_command() {
    let output = run_sluice(&["man"]);
    assert!(output.status.success());
    let page = String::from_utf8(output.stdout).unwrap();
    assert!(page.contains(".TH sluice 1"), "{page}");
    assert!(page.contains("\\-\\-log\\-level"), "global options are documented: {page}");

    let dir = tempfile::tempdir().unwrap();
    let output = run_sluice(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for name in ["sluice.1", "sluice-serve.1", "sluice-keys.1", "sluice-bench.1", "sluice-completions.1", "sluice-tune.1"] {
        let page = std::fs::read_to_string(dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(page.starts_with(".ie"), "{name} is not roff");
    }
    let serve = std::fs::read_to_string(dir.path().join("sluice-serve.1")).unwrap();
    assert!(serve.contains("SLUICE_CONFIG"), "the environment variable is documented: {serve}");
}

#[test]
fn completions_for_each_shell_name_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let output = run_sluice(&["completions", shell]);
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8(output.stdout).unwrap();
        for command in ["serve", "check-config", "keys", "quarantine", "bench", "tune"] {
            assert!(script.contains(command), "{shell} completion lacks {command}");
        }
    }
    let output = run_sluice(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(2), "an unknown shell is a usage error");
}
