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

/// Each page shows its synopsis as it is typed (`sluice tail`, not `sluice-tail`), and no
/// page refers to a page that is not generated (clap's `help` subcommand and nested
/// subcommands had none).
#[test]
fn pages_refer_only_to_generated_pages_and_show_typed_synopses() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_sluice(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let pages: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    for name in ["sluice-keys-gen.1", "sluice-quarantine-replay.1"] {
        assert!(pages.contains(&name.to_owned()), "{name} missing from {pages:?}");
    }
    for page in &pages {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        for word in text.split(|c: char| c.is_whitespace()) {
            if let Some(name) = word.strip_suffix("(1)") {
                let file = format!("{}.1", name.replace("\\-", "-"));
                assert!(pages.contains(&file), "{page} refers to {file}, which is not generated");
            }
        }
        if let Some(command) = page.strip_prefix("sluice-").and_then(|rest| rest.strip_suffix(".1")) {
            let typed = format!(
                "\\fBsluice {}\\fR",
                command
                    .replace('-', " ")
                    .replace("check config", "check-config")
                    .replace("check log", "check-log")
                    .replace("read log", "read-log")
            );
            assert!(text.replace("\\-", "-").contains(&typed), "{page}: no synopsis {typed:?}");
        }
    }
}
