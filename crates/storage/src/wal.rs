//! The write-ahead log: every accepted batch of events (and every collection delete) is appended here
//! and fsync'd before the client hears 2xx.
//!
//! Layout: a directory of segment files named by the sequence number of their first record
//! (`00000000000000000042.wal`). A segment starts with an 8-byte header, `KHWAL\0` and the format
//! version as u16 LE (format 1); segments without it are format 0 (records from the first byte), which
//! this version still reads. A segment of a newer format is refused. A record is `[payload length: u32 LE][CRC32C of payload: u32 LE][payload]`,
//! the payload being `[sequence: u64 LE][entry kind: u8][entry body]`. Sequence numbers rise by one per
//! record across segments. Segments whose records are all flushed to Parquet are deleted.
//!
//! Recovery rules. Replay reads segments in order. A record that is short or fails its checksum is either
//! the tail a crash left half-written (never acknowledged) or corruption of acknowledged data; replay looks
//! past it for the next intact record (a header whose sequence number follows the last good one and whose
//! checksum matches). If there is one, the bad bytes were corruption: the segment is copied aside to
//! `wal/quarantine/`, rewritten with its intact records only, every intact record is replayed, and the loss
//! is reported (error log, [`ReplayReport`]). If there is none, the bad bytes are a torn tail and are
//! truncated away so later appends never follow garbage.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::wal_entry::RECORD_HEADER_BYTES;
pub use crate::wal_entry::WalEntry;

/// The start of every segment this version writes.
const SEGMENT_MAGIC: &[u8; 6] = b"KHWAL\0";
/// The segment format this version writes and the newest it reads. Format 2 adds the event and property
/// delete records; format 1 segments hold only events and collection deletes and read alike.
pub const SEGMENT_FORMAT: u16 = 2;
const SEGMENT_HEADER_BYTES: usize = 8;
/// A record larger than this is treated as corruption (batches are at most 10 MB of JSON).
const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// The open tail of the log. Appends are buffered until [`Wal::commit`] writes and fsyncs them.
pub(crate) struct Wal {
    directory: PathBuf,
    segment: File,
    next_sequence: u64,
    pending: Vec<u8>,
    /// Length of the segment through its last successful commit.
    committed_len: u64,
    /// `next_sequence` as of the last successful commit.
    committed_next_sequence: u64,
    /// False once a failed commit could not be undone: what the segment holds past `committed_len` is
    /// unknown, so nothing more may be appended until a restart replays it.
    consistent: bool,
}

impl Wal {
    /// Starts a fresh segment whose first record will carry `next_sequence`.
    pub(crate) fn create(directory: &Path, next_sequence: u64) -> io::Result<Wal> {
        fs::create_dir_all(directory)?;
        let segment = create_segment(directory, next_sequence)?;
        let committed_len = segment.metadata()?.len();
        Ok(Wal {
            directory: directory.to_path_buf(),
            segment,
            next_sequence,
            pending: Vec::new(),
            committed_len,
            committed_next_sequence: next_sequence,
            consistent: true,
        })
    }

    /// Buffers one entry; returns its sequence number.
    pub(crate) fn append(&mut self, entry: &WalEntry) -> u64 {
        let sequence = self.next_sequence;
        entry.encode(sequence, &mut self.pending);
        self.next_sequence += 1;
        sequence
    }

    /// Writes everything appended since the last commit and waits until it is on disk. On failure (a
    /// full disk, an I/O error) the appended records are dropped and the segment is cut back to its last
    /// commit and synced again, so the log stays exactly what was acknowledged and later commits may
    /// succeed (once space is freed); if even that fails, [`Wal::is_consistent`] turns false.
    pub(crate) fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = self
            .segment
            .write_all(&self.pending)
            .and_then(|()| self.segment.sync_data());
        if let Err(error) = written {
            self.discard_pending();
            let undone = self
                .segment
                .set_len(self.committed_len)
                .and_then(|()| self.segment.sync_all());
            if let Err(undo_error) = undone {
                tracing::error!(%error, %undo_error, "wal commit failed and could not be undone; refusing writes until restart");
                self.consistent = false;
            }
            return Err(error);
        }
        self.committed_len += self.pending.len() as u64;
        self.committed_next_sequence = self.next_sequence;
        self.pending.clear();
        Ok(())
    }

    /// Forgets appended records that were not committed (their sequence numbers are reused).
    pub(crate) fn discard_pending(&mut self) {
        self.pending.clear();
        self.next_sequence = self.committed_next_sequence;
    }

    /// Whether the segment holds exactly the committed records (see [`Wal::commit`]).
    pub(crate) fn is_consistent(&self) -> bool {
        self.consistent
    }

    /// Sequence number of the last committed record (0 when none was ever written).
    pub(crate) fn last_sequence(&self) -> u64 {
        self.next_sequence - 1
    }

    /// Closes the current segment and starts a new one; returns the last sequence of the old ones.
    pub(crate) fn rotate(&mut self) -> io::Result<u64> {
        self.commit()?;
        self.segment = create_segment(&self.directory, self.next_sequence)?;
        self.committed_len = self.segment.metadata()?.len();
        Ok(self.last_sequence())
    }
}

fn segment_path(directory: &Path, first_sequence: u64) -> PathBuf {
    directory.join(format!("{first_sequence:020}.wal"))
}

fn create_segment(directory: &Path, first_sequence: u64) -> io::Result<File> {
    let path = segment_path(directory, first_sequence);
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    if file.metadata()?.len() == 0 {
        let mut header = SEGMENT_MAGIC.to_vec();
        header.extend_from_slice(&SEGMENT_FORMAT.to_le_bytes());
        file.write_all(&header)?;
        file.sync_all()?;
    }
    sync_directory(directory)?;
    Ok(file)
}

/// Where a segment's records start: after the header, or at 0 for a format-0 segment. A segment of a
/// newer format than this version reads is an error.
fn records_start(path: &Path, bytes: &[u8]) -> io::Result<usize> {
    if bytes.len() < SEGMENT_HEADER_BYTES || !bytes.starts_with(SEGMENT_MAGIC) {
        return Ok(0);
    }
    let format = u16::from_le_bytes([bytes[6], bytes[7]]);
    if format > SEGMENT_FORMAT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "WAL segment {} is format {format}, written by a newer keyhole; this version reads up to format {SEGMENT_FORMAT}",
                path.display()
            ),
        ));
    }
    Ok(SEGMENT_HEADER_BYTES)
}

/// Makes a directory's entries (created, renamed or removed files) durable.
pub(crate) fn sync_directory(directory: &Path) -> io::Result<()> {
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

/// What replay found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Highest sequence number seen (0 for an empty log).
    pub highest_sequence: u64,
    /// Segments in which corruption was followed by intact records.
    pub corrupt_segments: Vec<CorruptSegment>,
    /// Every segment read, in order.
    pub segments: Vec<SegmentSpan>,
    /// Intact records read.
    pub records: usize,
}

/// One segment's first sequence number (from its name) and its last intact record's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSpan {
    /// The sequence the segment starts at (from its name).
    pub first_sequence: u64,
    /// The sequence of its last intact record, if any.
    pub last_record: Option<u64>,
}

/// A segment with corruption in the middle: what was lost and where the original was kept.
#[derive(Debug)]
pub struct CorruptSegment {
    /// The segment that was damaged.
    pub segment: PathBuf,
    /// Where its original was set aside.
    pub quarantined_to: PathBuf,
    /// Bytes that held no intact record.
    pub unreadable_bytes: usize,
    /// Intact records kept and replayed.
    pub intact_records: usize,
}

/// Farthest a record's sequence number may jump past the last intact one when looking for the next
/// intact record behind corruption (bounds the search; one corrupt record skips one number).
const MAX_SEQUENCE_GAP: u64 = 1 << 20;

/// Reads every intact record in order, calling `apply` for each, under the recovery rules above.
pub fn replay(directory: &Path, mut apply: impl FnMut(u64, WalEntry)) -> io::Result<ReplayReport> {
    let mut report = ReplayReport::default();
    for (first_sequence, path) in list_segments(directory)? {
        let mut span = SegmentSpan {
            first_sequence,
            last_record: None,
        };
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        let header_len = records_start(&path, &bytes)?;
        let mut offset = header_len;
        let mut intact = Vec::new();
        let mut unreadable_bytes = 0;
        loop {
            let after = report.highest_sequence;
            match read_record(&bytes[offset..]).filter(|(_, sequence, _)| *sequence > after) {
                Some((record_len, sequence, entry)) => {
                    report.highest_sequence = sequence;
                    span.last_record = Some(sequence);
                    report.records += 1;
                    apply(sequence, entry);
                    intact.push(offset..offset + record_len);
                    offset += record_len;
                }
                None if offset == bytes.len() => break,
                None => match next_intact_record(&bytes, offset + 1, report.highest_sequence) {
                    Some(next) => {
                        tracing::error!(segment = %path.display(), offset, unreadable_bytes = next - offset, after_sequence = report.highest_sequence, "corrupt wal record followed by intact ones; the corrupt bytes are lost");
                        unreadable_bytes += next - offset;
                        offset = next;
                    }
                    None => break,
                },
            }
        }
        report.segments.push(span);
        if unreadable_bytes > 0 {
            report.corrupt_segments.push(set_aside_and_rewrite(
                directory,
                &path,
                &bytes,
                header_len,
                &intact,
                unreadable_bytes,
            )?);
        } else if offset < bytes.len() {
            tracing::warn!(segment = %path.display(), valid_bytes = offset, torn_bytes = bytes.len() - offset, "truncating torn wal tail");
            let file = OpenOptions::new().write(true).open(&path)?;
            file.set_len(offset as u64)?;
            file.sync_all()?;
        }
    }
    Ok(report)
}

/// The offset of the next intact record at or after `from` whose sequence number follows `after`.
fn next_intact_record(bytes: &[u8], from: usize, after: u64) -> Option<usize> {
    (from..bytes.len().saturating_sub(RECORD_HEADER_BYTES + 8)).find(|&candidate| {
        // The sequence number sits right after the header: checking it first keeps the search linear,
        // since the checksum is computed only where the sequence fits.
        let sequence_at = candidate + RECORD_HEADER_BYTES;
        let sequence = u64::from_le_bytes(
            bytes[sequence_at..sequence_at + 8]
                .try_into()
                .expect("eight bytes"),
        );
        sequence > after
            && sequence - after <= MAX_SEQUENCE_GAP
            && read_record(&bytes[candidate..]).is_some()
    })
}

/// Copies a corrupt segment to `quarantine/`, then replaces it (atomically) with its intact records.
fn set_aside_and_rewrite(
    directory: &Path,
    path: &Path,
    bytes: &[u8],
    header_len: usize,
    intact: &[std::ops::Range<usize>],
    unreadable_bytes: usize,
) -> io::Result<CorruptSegment> {
    let quarantine = directory.join("quarantine");
    fs::create_dir_all(&quarantine)?;
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("segment.wal");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    let quarantined_to = quarantine.join(format!("{name}.{stamp}.corrupt"));
    fs::write(&quarantined_to, bytes)?;
    File::open(&quarantined_to)?.sync_all()?;
    sync_directory(&quarantine)?;
    let rewritten = path.with_extension("wal.rewrite");
    let mut file = File::create(&rewritten)?;
    file.write_all(&bytes[..header_len])?;
    for range in intact {
        file.write_all(&bytes[range.clone()])?;
    }
    file.sync_all()?;
    fs::rename(&rewritten, path)?;
    sync_directory(directory)?;
    tracing::error!(segment = %path.display(), quarantined_to = %quarantined_to.display(), unreadable_bytes, intact_records = intact.len(), "wal segment was corrupt: intact records kept and replayed, the original set aside");
    Ok(CorruptSegment {
        segment: path.to_path_buf(),
        quarantined_to,
        unreadable_bytes,
        intact_records: intact.len(),
    })
}

/// Entries in the WAL's record encoding (numbered from 1), for a record of the shared log (`shared`).
pub(crate) fn encode_entries(entries: &[WalEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        entry.encode(index as u64 + 1, &mut out);
    }
    out
}

/// The entries of [`encode_entries`]' bytes; an error if any record is cut short or fails its checksum.
pub(crate) fn decode_entries(mut bytes: &[u8]) -> io::Result<Vec<WalEntry>> {
    let mut entries = Vec::new();
    while !bytes.is_empty() {
        let (length, _, entry) = read_record(bytes).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "a shared log record does not decode",
            )
        })?;
        entries.push(entry);
        bytes = &bytes[length..];
    }
    Ok(entries)
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
pub(crate) fn remove_flushed_segments(directory: &Path, flushed_through: u64) -> io::Result<()> {
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
                .map(|i| format!("{{\"i\":{i}}}").into_bytes().into())
                .collect(),
        }
    }

    fn replay_all(directory: &Path) -> Vec<(u64, WalEntry)> {
        replay_with_report(directory).0
    }

    fn replay_with_report(directory: &Path) -> (Vec<(u64, WalEntry)>, ReplayReport) {
        let mut entries = Vec::new();
        let report = replay(directory, |sequence, entry| entries.push((sequence, entry))).unwrap();
        (entries, report)
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
        let deletes = [
            WalEntry::DeleteEvents {
                project: "q".into(),
                collection: "c".into(),
                ids: vec!["id-1".into(), "id-2".into()],
                earliest: -5,
                latest: 1_700_000_000_000,
            },
            WalEntry::DeleteProperty {
                project: "q".into(),
                collection: "c".into(),
                property: "user.email".into(),
            },
        ];
        for delete in &deletes {
            wal.append(delete);
        }
        wal.commit().unwrap();
        let entries = replay_all(directory.path());
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[0], (1, events("p", 2)));
        assert_eq!(entries[2], (3, events("q", 1)));
        assert_eq!(entries[3], (4, deletes[0].clone()));
        assert_eq!(entries[4], (5, deletes[1].clone()));
        remove_flushed_segments(directory.path(), 2).unwrap();
        let entries = replay_all(directory.path());
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0], (3, events("q", 1)));
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
        // A flipped byte inside the last record of a segment is a torn tail: cut off.
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        assert_eq!(replay_all(directory.path()).len(), 1);
    }

    /// One segment of `records` single-event records; answers its path and each record's offset.
    fn segment_of(directory: &Path, records: usize) -> (PathBuf, Vec<usize>) {
        let mut wal = Wal::create(directory, 1).unwrap();
        let mut offsets = Vec::new();
        for _ in 0..records {
            offsets.push(SEGMENT_HEADER_BYTES + wal.pending.len());
            wal.append(&events("p", 1));
        }
        wal.commit().unwrap();
        (segment_path(directory, 1), offsets)
    }

    #[test]
    fn a_discarded_append_gives_its_sequence_number_back() {
        let directory = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(directory.path(), 1).unwrap();
        assert_eq!(wal.append(&events("p", 1)), 1);
        wal.commit().unwrap();
        assert_eq!(wal.append(&events("p", 1)), 2);
        wal.discard_pending();
        assert_eq!(wal.append(&events("p", 1)), 2);
        wal.commit().unwrap();
        let sequences: Vec<u64> = replay_all(directory.path())
            .iter()
            .map(|(sequence, _)| *sequence)
            .collect();
        assert_eq!(sequences, [1, 2]);
    }

    #[test]
    fn corruption_followed_by_intact_records_loses_only_the_corrupt_record() {
        for (what, record, byte) in [
            ("a byte in the middle record's payload", 50, 20),
            ("the first record's length", 0, 1),
            ("the first record's checksum", 0, 5),
        ] {
            let directory = tempfile::tempdir().unwrap();
            let (path, offsets) = segment_of(directory.path(), 100);
            let mut bytes = fs::read(&path).unwrap();
            bytes[offsets[record] + byte] ^= 0x10;
            fs::write(&path, &bytes).unwrap();
            let (entries, report) = replay_with_report(directory.path());
            assert_eq!(entries.len(), 99, "{what}");
            assert_eq!(report.corrupt_segments.len(), 1, "{what}");
            assert_eq!(report.highest_sequence, 100, "{what}");
            let corrupt = &report.corrupt_segments[0];
            assert_eq!(
                fs::read(&corrupt.quarantined_to).unwrap(),
                bytes,
                "{what}: the original is kept"
            );
            // The segment now holds the intact records only: a second replay reports nothing.
            let (again, report) = replay_with_report(directory.path());
            assert_eq!(again, entries, "{what}");
            assert!(report.corrupt_segments.is_empty(), "{what}");
        }
    }

    #[test]
    fn a_damaged_segment_header_loses_no_record_and_a_newer_format_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let (path, _) = segment_of(directory.path(), 10);
        let mut bytes = fs::read(&path).unwrap();
        bytes[2] ^= 0x10;
        fs::write(&path, &bytes).unwrap();
        let (entries, report) = replay_with_report(directory.path());
        assert_eq!(entries.len(), 10);
        assert_eq!(report.corrupt_segments.len(), 1);

        let directory = tempfile::tempdir().unwrap();
        let (path, _) = segment_of(directory.path(), 1);
        let mut bytes = fs::read(&path).unwrap();
        bytes[6..8].copy_from_slice(&(SEGMENT_FORMAT + 1).to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        let error = replay(directory.path(), |_, _| {}).unwrap_err();
        assert!(error.to_string().contains("newer keyhole"), "{error}");
    }
}
