//! The write-ahead log: every accepted batch of events (and every collection delete) is appended here
//! and fsync'd before the client hears 2xx.
//!
//! Layout: a directory of segment files named by the sequence number of their first record
//! (`00000000000000000042.wal`). A record is `[payload length: u32 LE][CRC32C of payload: u32 LE][payload]`,
//! the payload being `[sequence: u64 LE][entry kind: u8][entry body]`. Sequence numbers rise by one per
//! record across segments. Replay reads segments in order and stops a segment at its first short or
//! corrupt record — the tail a crash left half-written, never acknowledged — and truncates it away so
//! later appends never follow garbage. Segments whose records are all flushed to Parquet are deleted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const RECORD_HEADER_BYTES: usize = 8;
const ENTRY_EVENTS: u8 = 1;
const ENTRY_DELETE_COLLECTION: u8 = 2;
/// A record larger than this is treated as corruption (batches are at most 10 MB of JSON).
const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// One logical WAL entry.
#[derive(Clone, Debug, PartialEq)]
pub enum WalEntry {
    /// Events of one collection, each as its final JSON text.
    Events {
        project: String,
        collection: String,
        events: Vec<Vec<u8>>,
    },
    DeleteCollection {
        project: String,
        collection: String,
    },
}

impl WalEntry {
    fn encode(&self, sequence: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
        out.extend_from_slice(&sequence.to_le_bytes());
        match self {
            WalEntry::Events {
                project,
                collection,
                events,
            } => {
                out.push(ENTRY_EVENTS);
                put_str(out, project);
                put_str(out, collection);
                out.extend_from_slice(&(events.len() as u32).to_le_bytes());
                for event in events {
                    out.extend_from_slice(&(event.len() as u32).to_le_bytes());
                    out.extend_from_slice(event);
                }
            }
            WalEntry::DeleteCollection {
                project,
                collection,
            } => {
                out.push(ENTRY_DELETE_COLLECTION);
                put_str(out, project);
                put_str(out, collection);
            }
        }
        let payload_len = out.len() - start - RECORD_HEADER_BYTES;
        let checksum = crc32c::crc32c(&out[start + RECORD_HEADER_BYTES..]);
        out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&checksum.to_le_bytes());
    }

    fn decode(payload: &[u8]) -> Option<(u64, WalEntry)> {
        let mut reader = ByteReader { bytes: payload };
        let sequence = u64::from_le_bytes(reader.take(8)?.try_into().ok()?);
        let kind = reader.take(1)?[0];
        let project = reader.string()?;
        let collection = reader.string()?;
        let entry = match kind {
            ENTRY_EVENTS => {
                let count = reader.u32()? as usize;
                let mut events = Vec::with_capacity(count.min(100_000));
                for _ in 0..count {
                    let length = reader.u32()? as usize;
                    events.push(reader.take(length)?.to_vec());
                }
                WalEntry::Events {
                    project,
                    collection,
                    events,
                }
            }
            ENTRY_DELETE_COLLECTION => WalEntry::DeleteCollection {
                project,
                collection,
            },
            _ => return None,
        };
        Some((sequence, entry))
    }
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

struct ByteReader<'a> {
    bytes: &'a [u8],
}

impl<'a> ByteReader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < count {
            return None;
        }
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let length = self.u32()? as usize;
        String::from_utf8(self.take(length)?.to_vec()).ok()
    }
}

/// The open tail of the log. Appends are buffered until [`Wal::commit`] writes and fsyncs them.
pub struct Wal {
    directory: PathBuf,
    segment: File,
    next_sequence: u64,
    pending: Vec<u8>,
}

impl Wal {
    /// Starts a fresh segment whose first record will carry `next_sequence`.
    pub fn create(directory: &Path, next_sequence: u64) -> io::Result<Wal> {
        fs::create_dir_all(directory)?;
        let segment = create_segment(directory, next_sequence)?;
        Ok(Wal {
            directory: directory.to_path_buf(),
            segment,
            next_sequence,
            pending: Vec::new(),
        })
    }

    /// Buffers one entry; returns its sequence number.
    pub fn append(&mut self, entry: &WalEntry) -> u64 {
        let sequence = self.next_sequence;
        entry.encode(sequence, &mut self.pending);
        self.next_sequence += 1;
        sequence
    }

    /// Writes everything appended since the last commit and waits until it is on disk.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.segment.write_all(&self.pending)?;
        self.segment.sync_data()?;
        self.pending.clear();
        Ok(())
    }

    /// Forgets appended records that were not committed.
    pub fn discard_pending(&mut self) {
        self.pending.clear();
    }

    /// Sequence number of the last committed record (0 when none was ever written).
    pub fn last_sequence(&self) -> u64 {
        self.next_sequence - 1
    }

    /// Closes the current segment and starts a new one; returns the last sequence of the old ones.
    pub fn rotate(&mut self) -> io::Result<u64> {
        self.commit()?;
        self.segment = create_segment(&self.directory, self.next_sequence)?;
        Ok(self.last_sequence())
    }
}

fn segment_path(directory: &Path, first_sequence: u64) -> PathBuf {
    directory.join(format!("{first_sequence:020}.wal"))
}

fn create_segment(directory: &Path, first_sequence: u64) -> io::Result<File> {
    let path = segment_path(directory, first_sequence);
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    sync_directory(directory)?;
    Ok(file)
}

/// Makes a directory's entries (created, renamed or removed files) durable.
pub fn sync_directory(directory: &Path) -> io::Result<()> {
    File::open(directory)?.sync_all()
}

/// Segment files in the directory, by first sequence number.
fn list_segments(directory: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    if !directory.exists() {
        return Ok(segments);
    }
    for entry in fs::read_dir(directory)? {
        let path = entry?.path();
        let Some(stem) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        if path.extension().and_then(|ext| ext.to_str()) != Some("wal") {
            continue;
        }
        if let Ok(first_sequence) = stem.parse::<u64>() {
            segments.push((first_sequence, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Reads every intact record in order, calling `apply` for each; truncates a torn tail.
/// Returns the highest sequence number seen (0 for an empty log).
pub fn replay(directory: &Path, mut apply: impl FnMut(u64, WalEntry)) -> io::Result<u64> {
    let mut highest_sequence = 0;
    for (_, path) in list_segments(directory)? {
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        let mut offset = 0;
        while let Some((record_len, sequence, entry)) = read_record(&bytes[offset..]) {
            highest_sequence = highest_sequence.max(sequence);
            apply(sequence, entry);
            offset += record_len;
        }
        if offset < bytes.len() {
            tracing::warn!(segment = %path.display(), valid_bytes = offset, torn_bytes = bytes.len() - offset, "truncating torn wal tail");
            let file = OpenOptions::new().write(true).open(&path)?;
            file.set_len(offset as u64)?;
            file.sync_all()?;
        }
    }
    Ok(highest_sequence)
}

fn read_record(bytes: &[u8]) -> Option<(usize, u64, WalEntry)> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return None;
    }
    let payload_len = u32::from_le_bytes(bytes[0..4].try_into().ok()?) as usize;
    let checksum = u32::from_le_bytes(bytes[4..8].try_into().ok()?);
    if payload_len > MAX_RECORD_BYTES || bytes.len() < RECORD_HEADER_BYTES + payload_len {
        return None;
    }
    let payload = &bytes[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + payload_len];
    if crc32c::crc32c(payload) != checksum {
        return None;
    }
    let (sequence, entry) = WalEntry::decode(payload)?;
    Some((RECORD_HEADER_BYTES + payload_len, sequence, entry))
}

/// Deletes closed segments whose records all have sequence numbers `<= flushed_through`.
pub fn remove_flushed_segments(directory: &Path, flushed_through: u64) -> io::Result<()> {
    let segments = list_segments(directory)?;
    for pair in segments.windows(2) {
        let (_, path) = &pair[0];
        let (next_first_sequence, _) = pair[1];
        if next_first_sequence <= flushed_through + 1 {
            fs::remove_file(path)?;
        }
    }
    sync_directory(directory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(project: &str, count: usize) -> WalEntry {
        WalEntry::Events {
            project: project.into(),
            collection: "c".into(),
            events: (0..count)
                .map(|i| format!("{{\"i\":{i}}}").into_bytes())
                .collect(),
        }
    }

    fn replay_all(directory: &Path) -> Vec<(u64, WalEntry)> {
        let mut entries = Vec::new();
        replay(directory, |sequence, entry| entries.push((sequence, entry))).unwrap();
        entries
    }

    #[test]
    fn round_trips_and_rotates() {
        let directory = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(directory.path(), 1).unwrap();
        assert_eq!(wal.append(&events("p", 2)), 1);
        assert_eq!(
            wal.append(&WalEntry::DeleteCollection {
                project: "p".into(),
                collection: "c".into()
            }),
            2
        );
        wal.commit().unwrap();
        assert_eq!(wal.rotate().unwrap(), 2);
        wal.append(&events("q", 1));
        wal.commit().unwrap();
        let entries = replay_all(directory.path());
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0], (1, events("p", 2)));
        assert_eq!(entries[2], (3, events("q", 1)));
        remove_flushed_segments(directory.path(), 2).unwrap();
        let entries = replay_all(directory.path());
        assert_eq!(entries, vec![(3, events("q", 1))]);
    }

    #[test]
    fn torn_and_corrupt_tails_are_cut_off() {
        let directory = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(directory.path(), 1).unwrap();
        wal.append(&events("p", 3));
        wal.append(&events("p", 4));
        wal.commit().unwrap();
        drop(wal);
        let path = segment_path(directory.path(), 1);
        let full_len = fs::metadata(&path).unwrap().len();
        // Half of the second record is lost.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(full_len - 10).unwrap();
        assert_eq!(replay_all(directory.path()).len(), 1);
        // The torn tail is gone, so appending in a new segment replays cleanly.
        let mut wal = Wal::create(directory.path(), 3).unwrap();
        wal.append(&events("p", 1));
        wal.commit().unwrap();
        assert_eq!(replay_all(directory.path()).len(), 2);
        // A flipped byte inside a record stops that segment there.
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        assert_eq!(replay_all(directory.path()).len(), 1);
    }
}
