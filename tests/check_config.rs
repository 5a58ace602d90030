//! `check-config` refuses what `serve` would refuse (a data dir that is not a directory
//! or cannot be written, an admin address that is an ingest address) and warns about
//! more shards than cores; every command reads `SLUICE_CONFIG`.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

use sluice_test_support::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin()).args(args).envs(env.iter().copied()).stdin(Stdio::null()).output().expect("run sluice")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_config(dir: &std::path::Path, toml: &str) -> String {
    let path = dir.join("sluice.toml");
    std::fs::write(&path, toml).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_data_dir_serve_cannot_use_is_refused_with_status_2() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    for data_dir in [file.clone(), file.join("below-a-file")] {
        let config = write_config(temp.path(), &format!("[storage]\ndata_dir = {:?}\n", data_dir.display().to_string()));
        for command in ["check-config", "serve"] {
            let output = run(&[command, "--config", &config], &[]);
            assert_eq!(output.status.code(), Some(2), "{command} {data_dir:?}: {}", text(&output.stderr));
            assert!(text(&output.stderr).contains("not a directory"), "{command}: {}", text(&output.stderr));
        }
    }
}

/// Root may write anywhere, so the check runs as `nobody` (setpriv, util-linux) when the
/// test runs as root.
#[test]
fn a_data_dir_this_user_cannot_write_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let locked = temp.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let config = write_config(temp.path(), &format!("[storage]\ndata_dir = {:?}\n", locked.join("data").display().to_string()));
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let root = std::fs::metadata("/proc/self").map(|meta| std::os::unix::fs::MetadataExt::uid(&meta) == 0).unwrap_or(false);
    let output = if root {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin())
            .args(["check-config", "--config", &config])
            .stdin(Stdio::null())
            .output()
            .expect("setpriv (util-linux) runs the check as nobody: apt-get install util-linux")
    } else {
        run(&["check-config", "--config", &config], &[])
    };
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("cannot be written"), "{}", text(&output.stderr));
}

#[test]
fn the_admin_address_must_not_be_an_ingest_address() {
    let temp = tempfile::tempdir().unwrap();
    for (toml, key) in [
        ("[ingest]\nlisten = \"127.0.0.1:18080\"\n[admin]\nlisten = \"127.0.0.1:18080\"\n", "ingest.listen"),
        (
            "[ingest.tls]\nlisten = \"127.0.0.1:18443\"\ncert_file = \"c\"\nkey_file = \"k\"\n[admin]\nlisten = \"127.0.0.1:18443\"\n",
            "ingest.tls.listen",
        ),
    ] {
        let config = write_config(temp.path(), toml);
        let output = run(&["check-config", "--config", &config], &[]);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
        assert!(text(&output.stderr).contains("admin.listen") && text(&output.stderr).contains(key), "{}", text(&output.stderr));
    }
}

#[test]
fn more_shards_than_cores_is_a_warning_not_an_error() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let config = write_config(temp.path(), &format!("[ingest]\nshards = 1000\n[storage]\ndata_dir = {:?}\n", data.display().to_string()));
    let output = run(&["check-config", "--config", &config], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("warning: ingest.shards = 1000 is above the"), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("shards = 1000"));
}

/// Every command that reads a configuration takes it from `SLUICE_CONFIG` too.
#[test]
fn every_command_reads_sluice_config() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("from-env-data");
    let keys = temp.path().join("from-env-keys.toml");
    let config = write_config(
        temp.path(),
        &format!(
            "[storage]\ndata_dir = {:?}\npartitions = 4\n[auth]\nkeys_file = {:?}\n",
            data.display().to_string(),
            keys.display().to_string()
        ),
    );
    let env = [("SLUICE_CONFIG", config.as_str())];
    let output = run(&["keys", "gen", "--partner", "p"], &env);
    assert_eq!(output.status.code(), Some(0), "keys gen: {}", text(&output.stderr));
    assert!(keys.exists(), "keys gen wrote the ring the configuration names");
    let kid = text(&output.stdout).split_whitespace().nth(2).expect("created kid KID ...").to_owned();
    let output = run(&["keys", "list"], &env);
    assert!(text(&output.stdout).contains(&kid), "keys list: {}", text(&output.stdout));
    let output = run(&["check-config"], &env);
    assert_eq!(output.status.code(), Some(0), "check-config: {}", text(&output.stderr));
    assert!(text(&output.stdout).contains("from-env-data"), "{}", text(&output.stdout));
    // tail reads the configuration's data dir (which does not exist yet: a clear error).
    let output = run(&["tail"], &env);
    assert_eq!(output.status.code(), Some(2), "tail: {}", text(&output.stderr));
    assert!(text(&output.stderr).contains("from-env-data"), "tail names the configured data dir: {}", text(&output.stderr));
    let output = run(&["quarantine", "list"], &env);
    assert_eq!(output.status.code(), Some(0), "quarantine list: {}", text(&output.stderr));
    let output = run(&["tune", "--check", "--json"], &env);
    assert!(text(&output.stdout).contains("4 partitions"), "tune reads the configuration: {}", text(&output.stdout));
}

#[test]
fn the_version_names_the_commit() {
    let output = run(&["--version"], &[]);
    assert_eq!(output.status.code(), Some(0));
    let version = text(&output.stdout);
    assert!(version.starts_with("sluice 0.1.0 (commit "), "{version}");
    let commit = version.trim().trim_start_matches("sluice 0.1.0 (commit ").trim_end_matches(')');
    assert!(!commit.is_empty() && commit.chars().all(|c| c.is_ascii_hexdigit() || c == '-' || c.is_ascii_lowercase()), "{version}");
}
