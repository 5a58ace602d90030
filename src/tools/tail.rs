//! `sluice tail`: prints stored events as `{"topic":T,"partition":P,"offset":O,"event":{...}}`
//! lines, topic by topic. It only reads: segments are mapped read-only and records are taken only up to
//! the last whole one, so it is safe to run while `sluice serve` writes. Offsets it
//! cannot read (damage, a segment cut short or missing, retention overtaking it) are
//! reported on stderr, one line per gap, and without `--follow` make it exit 1.

use std::io::{self, Write};
use std::time::Duration;

use crate::log::{DataDir, LogReader, StartAt, StorageError};

/// How long `--follow` sleeps when every partition is at its end.
const FOLLOW_POLL_MS: u64 = 50;
/// Idle polls between two looks past the end of each partition's active segment under
/// `--follow` (about every 5 s; each look reads the rest of the segment).
const FOLLOW_LOOK_PAST_END_POLLS: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("partition {partition} does not exist (topic {topic:?} has {partitions})")]
    NoSuchPartition { topic: String, partition: u32, partitions: u32 },
    #[error("cannot write output: {0}")]
    Output(io::Error),
    #[error("{records} records in {gaps} gaps could not be read (listed above); `sluice check-log` verifies the whole data dir")]
    Gaps { gaps: usize, records: u64 },
}

/// `--from`: `earliest`, `latest` or an offset.
pub fn parse_start(text: &str) -> Result<StartAt, String> {
    match text {
        "earliest" => Ok(StartAt::Earliest),
        "latest" => Ok(StartAt::Latest),
        offset => offset.parse().map(StartAt::Offset).map_err(|_| format!("--from takes earliest, latest or an offset, not {offset:?}")),
    }
}

pub struct TailOptions {
    pub partition: Option<u32>,
    pub start: StartAt,
    pub follow: bool,
}

/// Writes one record line. Raw CR/LF can only be insignificant whitespace in valid JSON
/// (strings cannot hold them unescaped), so turning them into spaces keeps one line per
/// event without changing the event's meaning.
/// The same line as a consumer read answers (`consume::read::write_line`).
pub fn write_line(out: &mut impl Write, topic: &str, partition: u32, offset: u64, event: &[u8]) -> io::Result<()> {
    let mut line = Vec::with_capacity(event.len() + 64);
    crate::consume::read::write_line(&mut line, topic, partition, offset, event);
    out.write_all(&line)
}

/// Runs tail until the logs are exhausted (or forever with `follow`). A closed stdout
/// (`sluice tail | head`) ends it quietly. Gaps go to `errors` as they are found.
pub fn run(topics: &[(String, DataDir)], options: &TailOptions, out: &mut impl Write, errors: &mut impl Write) -> Result<(), TailError> {
    let mut readers = Vec::new();
    for (topic, dir) in topics {
        let partitions: Vec<u32> = match options.partition {
            Some(partition) if partition >= dir.partitions() => {
                return Err(TailError::NoSuchPartition { topic: topic.clone(), partition, partitions: dir.partitions() });
            }
            Some(partition) => vec![partition],
            None => (0..dir.partitions()).collect(),
        };
        for partition in partitions {
            readers.push((topic.as_str(), partition, LogReader::open(dir, partition, options.start)?));
        }
    }
    let (mut gaps, mut lost, mut idle_polls) = (0usize, 0u64, 0u64);
    loop {
        let mut printed = false;
        for (topic, partition, reader) in &mut readers {
            // Bounded: each pass prints records or passes a gap later in the log.
            loop {
                while let Some(record) = reader.next()? {
                    printed = true;
                    match write_line(out, topic, *partition, record.offset, record.event) {
                        Ok(()) => {}
                        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
                        Err(error) => return Err(TailError::Output(error)),
                    }
                }
                // A follower looks past unwritten space now and then (a zeroed block
                // inside the active segment would otherwise stop it until the next roll).
                let look = !options.follow || idle_polls % FOLLOW_LOOK_PAST_END_POLLS == FOLLOW_LOOK_PAST_END_POLLS - 1;
                if !look || !reader.look_past_end() {
                    break;
                }
            }
            for gap in reader.take_gaps() {
                gaps += 1;
                lost += gap.to - gap.from;
                let _ = writeln!(errors, "sluice tail: topic {topic} partition {partition}: {gap}");
            }
        }
        match out.flush() {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(error) => return Err(TailError::Output(error)),
        }
        if !options.follow {
            return if gaps == 0 { Ok(()) } else { Err(TailError::Gaps { gaps, records: lost }) };
        }
        if printed {
            idle_polls = 0;
        } else {
            idle_polls += 1;
            std::thread::sleep(Duration::from_millis(FOLLOW_POLL_MS));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_single_line_json() {
        let mut out = Vec::new();
        write_line(&mut out, "events", 3, 7, b"{\"a\":\r\n 1}").unwrap();
        assert_eq!(out, b"{\"topic\":\"events\",\"partition\":3,\"offset\":7,\"event\":{\"a\":   1}}\n");
    }
}
