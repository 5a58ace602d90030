//! The data directory: `sluice.meta` (format, partition count, dedup key) and one
//! directory per partition.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use super::StorageError;
use crate::constants::{META_FILE_BYTES_MAX, PARTITIONS_MAX};

const META_FILE: &str = "sluice.meta";
const META_TMP_FILE: &str = "sluice.meta.tmp";
const PARTITIONS_DIR: &str = "partitions";
/// The only `format=` value this build understands.
const META_FORMAT: &str = "1";
const DEDUP_KEY_BYTES: usize = 16;

/// An opened data directory. Cheap to clone; holds no file descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
    partitions: u32,
    dedup_key: [u8; DEDUP_KEY_BYTES],
}

impl DataDir {
    /// Opens `data_dir`, creating it, its partition directories and `sluice.meta` (with
    /// a fresh random dedup key) on first start. A data dir made with another partition
    /// count is refused: moving keys between partitions would break per-key order.
    pub fn open_or_init(data_dir: &Path, partitions: u32) -> Result<DataDir, StorageError> {
        Self::check(data_dir, partitions)?;
        let meta = data_dir.join(META_FILE);
        let dir = match read_meta(data_dir, &meta)? {
            Some(dir) if dir.partitions != partitions => {
                return Err(StorageError::PartitionCountMismatch { on_disk: dir.partitions, configured: partitions });
            }
            Some(dir) => dir,
            None if data_dir.join(PARTITIONS_DIR).exists() => {
                // The meta file is written before any partition directory, so this
                // data dir lost it: a new partition count or key would be a guess.
                return Err(StorageError::BadMeta { path: meta, reason: "missing although partition data exists; restore it".to_owned() });
            }
            None => {
                let dir = DataDir { root: data_dir.to_owned(), partitions, dedup_key: random_key()? };
                fs::create_dir_all(data_dir).map_err(|e| StorageError::io(data_dir, "create directory", e))?;
                write_meta(&dir)?;
                dir
            }
        };
        for partition in 0..partitions {
            let path = dir.partition_dir(partition);
            fs::create_dir_all(&path).map_err(|e| StorageError::io(path, "create directory", e))?;
        }
        Ok(dir)
    }

    /// Checks, without changing anything, that [`DataDir::open_or_init`] would accept
    /// `data_dir` for `partitions`: a directory (or a place one can be made) this process
    /// can write, whose `sluice.meta`, if any, is readable and names the same partition
    /// count. `sluice check-config` runs it; `serve` runs it first.
    pub fn check(data_dir: &Path, partitions: u32) -> Result<(), StorageError> {
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(StorageError::InvalidPartitionCount { partitions, max: PARTITIONS_MAX });
        }
        // The directory itself, or the nearest ancestor that exists (`open_or_init` makes the rest).
        let anchor = data_dir.ancestors().find(|dir| dir.as_os_str().is_empty() || dir.exists()).unwrap_or(data_dir);
        let anchor = if anchor.as_os_str().is_empty() { Path::new(".") } else { anchor };
        if !anchor.is_dir() {
            return Err(StorageError::NotADirectory { path: anchor.to_owned() });
        }
        if !crate::platform::sys::dir_writable(anchor) {
            return Err(StorageError::NotWritable { path: data_dir.to_owned(), blocking: anchor.to_owned() });
        }
        if let Some(dir) = read_meta(data_dir, &data_dir.join(META_FILE))?
            && dir.partitions != partitions
        {
            return Err(StorageError::PartitionCountMismatch { on_disk: dir.partitions, configured: partitions });
        }
        Ok(())
    }

    /// Opens a data dir that must already exist (for readers such as `sluice tail`).
    pub fn open_existing(data_dir: &Path) -> Result<DataDir, StorageError> {
        let meta = data_dir.join(META_FILE);
        read_meta(data_dir, &meta)?
            .ok_or_else(|| StorageError::BadMeta { path: meta, reason: "missing: not a sluice data dir, or never started".to_owned() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Key for the dedup hash, fixed for the life of the data dir.
    pub fn dedup_key(&self) -> [u8; DEDUP_KEY_BYTES] {
        self.dedup_key
    }

    /// `<data_dir>/partitions/<partition, 4 digits>`.
    pub fn partition_dir(&self, partition: u32) -> PathBuf {
        self.root.join(PARTITIONS_DIR).join(format!("{partition:04}"))
    }
}

/// Every topic's data dir (in `topology`'s order) under `data_dir`, each made on the
/// topic's first start; topic `events` is `data_dir` itself (the layout from before
/// topics). A data dir holding partitions of `events` that no topic is named for any
/// more is kept as it is and named in a warning.
pub fn open_topics(data_dir: &Path, topology: &crate::topics::Topology) -> Result<Vec<DataDir>, StorageError> {
    check_topics(data_dir, topology)?;
    fs::create_dir_all(data_dir).map_err(|e| StorageError::io(data_dir, "create directory", e))?;
    let mut dirs = Vec::with_capacity(topology.topics().len());
    for topic in topology.topics() {
        let root = crate::topics::Topology::topic_root(data_dir, &topic.name);
        let dir = DataDir::open_or_init(&root, topic.partitions).map_err(|error| error.in_topic(&topic.name))?;
        dirs.push(dir);
    }
    if topology.by_name(crate::topics::DEFAULT_TOPIC.as_bytes()).is_none() && data_dir.join(META_FILE).exists() {
        tracing::warn!(
            data_dir = %data_dir.display(),
            "the data dir holds topic \"events\" (written before [[topics]] or by an earlier configuration) but no [[topics]] \
             table names it: its events are kept, not served; add a topic named \"events\" to serve them"
        );
    }
    Ok(dirs)
}

/// [`DataDir::check`] for every topic of `topology` under `data_dir`.
pub fn check_topics(data_dir: &Path, topology: &crate::topics::Topology) -> Result<(), StorageError> {
    for topic in topology.topics() {
        let root = crate::topics::Topology::topic_root(data_dir, &topic.name);
        DataDir::check(&root, topic.partitions).map_err(|error| error.in_topic(&topic.name))?;
    }
    Ok(())
}

fn random_key() -> Result<[u8; DEDUP_KEY_BYTES], StorageError> {
    let path = Path::new("/dev/urandom");
    let mut key = [0u8; DEDUP_KEY_BYTES];
    File::open(path).and_then(|mut file| file.read_exact(&mut key)).map_err(|e| StorageError::io(path, "read", e))?;
    Ok(key)
}

/// `Ok(None)` when the file does not exist.
fn read_meta(root: &Path, path: &Path) -> Result<Option<DataDir>, StorageError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StorageError::io(path, "open", error)),
    };
    let mut text = String::new();
    file.take(META_FILE_BYTES_MAX + 1).read_to_string(&mut text).map_err(|e| StorageError::io(path, "read", e))?;
    let bad = |reason: String| StorageError::BadMeta { path: path.to_owned(), reason };
    if text.len() as u64 > META_FILE_BYTES_MAX {
        return Err(bad(format!("longer than {META_FILE_BYTES_MAX} bytes")));
    }
    let (partitions, dedup_key) = parse_meta(&text).map_err(bad)?;
    Ok(Some(DataDir { root: root.to_owned(), partitions, dedup_key }))
}

fn parse_meta(text: &str) -> Result<(u32, [u8; DEDUP_KEY_BYTES]), String> {
    let (mut format, mut partitions, mut key) = (None, None, None);
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let (name, value) = line.split_once('=').ok_or_else(|| format!("line {line:?} is not key=value"))?;
        let slot = match name.trim() {
            "format" => &mut format,
            "partitions" => &mut partitions,
            "dedup_key" => &mut key,
            other => return Err(format!("unknown key {other:?}")),
        };
        if slot.replace(value.trim()).is_some() {
            return Err(format!("key {name:?} appears twice"));
        }
    }
    match format {
        Some(META_FORMAT) => {}
        Some(other) => {
            return Err(format!("format {other:?} is not supported (this build reads format 1)"));
        }
        None => return Err("format is missing".to_owned()),
    }
    let partitions = partitions
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|p| (1..=PARTITIONS_MAX).contains(p))
        .ok_or_else(|| format!("partitions must be 1..={PARTITIONS_MAX}"))?;
    let key = key.and_then(decode_hex_key).ok_or("dedup_key must be 32 hex digits")?;
    Ok((partitions, key))
}

fn decode_hex_key(text: &str) -> Option<[u8; DEDUP_KEY_BYTES]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * DEDUP_KEY_BYTES {
        return None;
    }
    let mut key = [0u8; DEDUP_KEY_BYTES];
    for (byte, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = (high * 16 + low) as u8;
    }
    Some(key)
}

/// Writes the meta file through a temporary name so a crash never leaves half of it.
fn write_meta(dir: &DataDir) -> Result<(), StorageError> {
    let hex: String = dir.dedup_key.iter().map(|byte| format!("{byte:02x}")).collect();
    let text = format!("format={META_FORMAT}\npartitions={}\ndedup_key={hex}\n", dir.partitions);
    let meta = dir.root.join(META_FILE);
    crate::platform::durable::replace_file(&meta, &dir.root.join(META_TMP_FILE), text.as_bytes())
        .map_err(|e| StorageError::io(&meta, "write", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialises_once_and_reopens_with_the_same_key() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("data");
        let first = DataDir::open_or_init(&root, 8).unwrap();
        assert!(root.join("partitions/0007").is_dir());
        let text = fs::read_to_string(root.join("sluice.meta")).unwrap();
        assert!(text.starts_with("format=1\npartitions=8\ndedup_key="), "{text}");
        assert_eq!(text.len(), "format=1\npartitions=8\ndedup_key=\n".len() + 32);
        let again = DataDir::open_or_init(&root, 8).unwrap();
        assert_eq!(again.dedup_key(), first.dedup_key());
        assert_eq!(DataDir::open_existing(&root).unwrap(), first);
        assert_eq!(first.partition_dir(12), root.join("partitions").join("0012"));
    }

    #[test]
    fn refuses_another_partition_count() {
        let temp = tempfile::tempdir().unwrap();
        DataDir::open_or_init(temp.path(), 8).unwrap();
        let error = DataDir::open_or_init(temp.path(), 16).unwrap_err();
        assert!(matches!(error, StorageError::PartitionCountMismatch { on_disk: 8, configured: 16 }), "{error}");
    }

    #[test]
    fn open_existing_requires_meta_and_rejects_damage() {
        let temp = tempfile::tempdir().unwrap();
        assert!(matches!(DataDir::open_existing(temp.path()), Err(StorageError::BadMeta { .. })));
        for text in ["format=2\npartitions=1\ndedup_key=00000000000000000000000000000000\n", "format=1\npartitions=1\n"] {
            fs::write(temp.path().join(META_FILE), text).unwrap();
            assert!(matches!(DataDir::open_existing(temp.path()), Err(StorageError::BadMeta { .. })), "{text}");
        }
        fs::write(temp.path().join(META_FILE), "format=1\npartitions=2\ndedup_key=000102030405060708090a0b0c0d0e0f\n").unwrap();
        let dir = DataDir::open_existing(temp.path()).unwrap();
        assert_eq!(dir.dedup_key(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    }
}
