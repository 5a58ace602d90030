//! A sandbox for one test: a temp dir with `config.toml`, `keys.toml` (the known test
//! keys) and `data/`, rendered from the knobs of [`Setup`].

use std::path::{Path, PathBuf};

use base64::Engine;

use crate::process::Server;
use crate::tail::TailLine;

/// The key every test signs with.
pub const KID: &str = "test-key-1";
/// 32 secret bytes the test key ring holds (as `whsec_<base64>`).
pub const SECRET: [u8; 32] = *b"sluice-black-box-test-secret-32b";
/// A second partner's key, present in the ring.
pub const KID_OTHER: &str = "test-key-2";
pub const SECRET_OTHER: [u8; 24] = *b"another-partner-secret!!";

/// `whsec_` + standard base64 of `bytes`.
pub fn whsec(bytes: &[u8]) -> String {
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

// ---------------------------------------------------------------------------------------
// Sandbox and configuration
// ---------------------------------------------------------------------------------------

/// The configuration knobs the tests turn; rendered to TOML by [`Sandbox::new`].
#[derive(Debug, Clone)]
pub struct Setup {
    pub shards: usize,
    pub partitions: u32,
    pub durability: &'static str,
    pub body_bytes_max: usize,
    pub segment_bytes: u64,
    pub header_timeout_ms: Option<u64>,
    pub body_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub drain_timeout_ms: Option<u64>,
    /// Extra `[[keys]]` tables appended to the key ring.
    pub extra_keys: String,
    /// Extra TOML appended to the configuration (e.g. `[auth.jwt]` tables).
    pub extra_config: String,
    /// `[ingest] connections_per_ip_max`, when set.
    pub connections_per_ip_max: Option<usize>,
    /// Lines of an `[ingest.tls]` table (`listen = "127.0.0.1:0"` is added), when set.
    pub tls: Option<String>,
    /// Extra lines of the `[ingest]` table (e.g. `proxy_protocol`).
    pub ingest_extra: String,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            shards: 2,
            partitions: 8,
            durability: "os",
            body_bytes_max: 64 * 1024,
            segment_bytes: 1024 * 1024,
            header_timeout_ms: None,
            body_timeout_ms: None,
            idle_timeout_ms: None,
            drain_timeout_ms: None,
            extra_keys: String::new(),
            extra_config: String::new(),
            connections_per_ip_max: None,
            tls: None,
            ingest_extra: String::new(),
        }
    }
}

impl Setup {
    pub fn toml(&self, data_dir: &Path, keys_file: &Path) -> String {
        let mut ingest =
            format!("[ingest]\nlisten = \"127.0.0.1:0\"\nshards = {}\nbody_bytes_max = {}\n", self.shards, self.body_bytes_max);
        if let Some(ms) = self.header_timeout_ms {
            ingest.push_str(&format!("header_timeout_ms = {ms}\n"));
        }
        if let Some(ms) = self.body_timeout_ms {
            ingest.push_str(&format!("body_timeout_ms = {ms}\n"));
        }
        if let Some(ms) = self.idle_timeout_ms {
            ingest.push_str(&format!("idle_timeout_ms = {ms}\n"));
        }
        if let Some(ms) = self.drain_timeout_ms {
            ingest.push_str(&format!("drain_timeout_ms = {ms}\n"));
        }
        if let Some(max) = self.connections_per_ip_max {
            ingest.push_str(&format!("connections_per_ip_max = {max}\n"));
        }
        ingest.push_str(&self.ingest_extra);
        if let Some(tls) = &self.tls {
            ingest.push_str(&format!("\n[ingest.tls]\nlisten = \"127.0.0.1:0\"\n{tls}\n"));
        }
        format!(
            "{ingest}\n[storage]\ndata_dir = {:?}\npartitions = {}\ndurability = \"{}\"\nsegment_bytes = {}\n\n\
             [auth]\nkeys_file = {:?}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
            data_dir.display().to_string(),
            self.partitions,
            self.durability,
            self.segment_bytes,
            keys_file.display().to_string(),
            self.extra_config,
        )
    }
}

/// A temp dir with `config.toml`, `keys.toml` (the known test keys) and `data/`.
/// Removed when dropped.
pub struct Sandbox {
    pub temp: tempfile::TempDir,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub keys: PathBuf,
    pub setup: Setup,
}

impl Sandbox {
    pub fn new(setup: Setup) -> Sandbox {
        let temp = tempfile::Builder::new().prefix("sluice-test-").tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let keys = temp.path().join("keys.toml");
        let config = temp.path().join("config.toml");
        let ring = format!(
            "[[keys]]\nkid = \"{KID}\"\nsecret = \"{}\"\npartner = \"tests\"\n\n\
             [[keys]]\nkid = \"{KID_OTHER}\"\nsecret = \"{}\"\npartner = \"other\"\n\n{}",
            whsec(&SECRET),
            whsec(&SECRET_OTHER),
            setup.extra_keys
        );
        std::fs::write(&keys, ring).expect("write key ring");
        std::fs::write(&config, setup.toml(&data_dir, &keys)).expect("write config");
        Sandbox { temp, config, data_dir, keys, setup }
    }

    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    /// Starts `sluice serve --config <config.toml>` and waits for its ready line.
    pub fn start(&self) -> Server {
        Server::start(&self.config)
    }

    /// `sluice tail` over the whole data dir, from the earliest offset.
    pub fn tail(&self) -> Vec<TailLine> {
        crate::tail::tail(&self.data_dir)
    }
}
