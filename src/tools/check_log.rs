//! `sluice check-log`: verifies every record's CRC and the offset sequence of a data
//! dir, read-only, and lists every range of offsets that cannot be read back. Exit 0
//! when every partition is whole, 1 when any offset is damaged or missing.

use std::io::{self, Write};

use crate::log::{DataDir, PartitionCheck, StorageError, verify_partition};

#[derive(Debug, thiserror::Error)]
pub enum CheckLogError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
    #[error("{offsets} offsets in {ranges} ranges are damaged or missing (listed above)")]
    Damaged { ranges: usize, offsets: u64 },
}

/// Checks `partition` (or every partition) of `dir`, one line per partition and one per
/// damaged range on `out`.
pub fn run(topics: &[(String, DataDir)], partition: Option<u32>, out: &mut impl Write) -> Result<(), CheckLogError> {
    let (mut ranges, mut offsets) = (0usize, 0u64);
    for (topic, dir) in topics {
        let partitions: Vec<u32> = match partition {
            Some(partition) => vec![partition],
            None => (0..dir.partitions()).collect(),
        };
        for partition in partitions {
            let check = verify_partition(dir, partition)?;
            write_partition(out, topic, partition, &check)?;
            ranges += check.damage.len();
            offsets += check.damage.iter().map(|range| range.count()).sum::<u64>();
        }
    }
    if ranges == 0 { Ok(()) } else { Err(CheckLogError::Damaged { ranges, offsets }) }
}

fn write_partition(out: &mut impl Write, topic: &str, partition: u32, check: &PartitionCheck) -> io::Result<()> {
    let damaged: u64 = check.damage.iter().map(|range| range.count()).sum();
    let verdict = if damaged == 0 { "ok" } else { "DAMAGED" };
    writeln!(
        out,
        "topic {topic} partition {partition}: {verdict}: {} segments, {} records, offsets {}..{}, {damaged} damaged",
        check.segments, check.records, check.start_offset, check.end_offset
    )?;
    for range in &check.damage {
        writeln!(
            out,
            "topic {topic} partition {partition}: offsets {}..{} damaged in {}: {}",
            range.from,
            range.to,
            range.path.display(),
            range.reason
        )?;
    }
    if let Some((path, position, reason)) = &check.torn_tail {
        writeln!(
            out,
            "topic {topic} partition {partition}: torn tail at byte {position} of {} ({reason}): not acknowledged data; the next start cuts it",
            path.display()
        )?;
    }
    Ok(())
}
