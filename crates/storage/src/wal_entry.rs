//! One entry of the write-ahead log and of a shared log record (see `wal` for the record framing and
//! recovery, `records` for the shared log): what each kind holds and its byte encoding — `[sequence: u64
//! LE][entry kind: u8][project][collection][body]`, strings as `[length: u32 LE][UTF-8]`. `Rows` (encoded
//! rows, `row_batches`) appears only in the shared log's `rows` records; a local segment never holds one.

/// A record's header: `[payload length: u32 LE][CRC32C of payload: u32 LE]` (see `wal`).
pub(crate) const RECORD_HEADER_BYTES: usize = 8;
const ENTRY_EVENTS: u8 = 1;
const ENTRY_DELETE_COLLECTION: u8 = 2;
const ENTRY_DELETE_EVENTS: u8 = 3;
const ENTRY_DELETE_PROPERTY: u8 = 4;
/// Only in the shared log's `rows` records (see `records`); a local segment never holds one.
const ENTRY_ROWS: u8 = 5;

/// One logical WAL entry.
#[derive(Clone, Debug, PartialEq)]
pub enum WalEntry {
    /// Events of one collection, each as its final JSON text.
    Events {
        /// The project's id.
        project: String,
        /// The collection's name.
        collection: String,
        /// Each event's final JSON text.
        events: Vec<bytes::Bytes>,
    },
    /// A whole collection deleted.
    DeleteCollection {
        /// The project's id.
        project: String,
        /// The collection's name.
        collection: String,
    },
    /// The events with these `keen.id`s, all with `keen.timestamp` in `[earliest, latest]`.
    DeleteEvents {
        /// The project's id.
        project: String,
        /// The collection's name.
        collection: String,
        /// The deleted events' `keen.id`s.
        ids: Vec<String>,
        /// The earliest `keen.timestamp` among them.
        earliest: i64,
        /// The latest `keen.timestamp` among them.
        latest: i64,
    },
    /// Events of one collection as encoded rows (`row_batches`): what the shared log carries.
    Rows {
        /// The project's id.
        project: String,
        /// The collection's name.
        collection: String,
        /// The events' rows, in the order they were written.
        rows: arrow::record_batch::RecordBatch,
        /// Each event's uniqueness token, by row.
        tokens: Vec<(u32, String)>,
    },
    /// A property (and every property nested under it) of every event.
    DeleteProperty {
        /// The project's id.
        project: String,
        /// The collection's name.
        collection: String,
        /// The property deleted.
        property: String,
    },
}

impl WalEntry {
    /// Appends the entry as one framed record (`wal`'s header, then the payload).
    pub(crate) fn encode(&self, sequence: u64, out: &mut Vec<u8>) {
        if let WalEntry::Events {
            project,
            collection,
            events,
        } = self
        {
            // One reservation for the whole record: a group of large events is not copied again as the
            // buffer doubles.
            let body: usize = events.iter().map(|event| 4 + event.len()).sum();
            out.reserve(
                RECORD_HEADER_BYTES + 8 + 1 + 8 + project.len() + collection.len() + 4 + body,
            );
        }
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
            WalEntry::DeleteEvents {
                project,
                collection,
                ids,
                earliest,
                latest,
            } => {
                out.push(ENTRY_DELETE_EVENTS);
                put_str(out, project);
                put_str(out, collection);
                out.extend_from_slice(&earliest.to_le_bytes());
                out.extend_from_slice(&latest.to_le_bytes());
                out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
                for id in ids {
                    put_str(out, id);
                }
            }
            WalEntry::DeleteProperty {
                project,
                collection,
                property,
            } => {
                out.push(ENTRY_DELETE_PROPERTY);
                put_str(out, project);
                put_str(out, collection);
                put_str(out, property);
            }
            WalEntry::Rows {
                project,
                collection,
                rows,
                tokens,
            } => {
                out.push(ENTRY_ROWS);
                put_str(out, project);
                put_str(out, collection);
                out.extend_from_slice(&(tokens.len() as u32).to_le_bytes());
                for (row, token) in tokens {
                    out.extend_from_slice(&row.to_le_bytes());
                    put_str(out, token);
                }
                let encoded = crate::row_batches::encode_batch(rows);
                out.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
                out.extend_from_slice(&encoded);
            }
        }
        let payload_len = out.len() - start - RECORD_HEADER_BYTES;
        let checksum = crc32c::crc32c(&out[start + RECORD_HEADER_BYTES..]);
        out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&checksum.to_le_bytes());
    }

    /// The sequence and entry of a record's payload; `None` if it does not decode.
    pub(crate) fn decode(payload: &[u8]) -> Option<(u64, WalEntry)> {
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
                    events.push(bytes::Bytes::copy_from_slice(reader.take(length)?));
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
            ENTRY_DELETE_EVENTS => {
                let earliest = i64::from_le_bytes(reader.take(8)?.try_into().ok()?);
                let latest = i64::from_le_bytes(reader.take(8)?.try_into().ok()?);
                let count = reader.u32()? as usize;
                let mut ids = Vec::with_capacity(count.min(100_000));
                for _ in 0..count {
                    ids.push(reader.string()?);
                }
                WalEntry::DeleteEvents {
                    project,
                    collection,
                    ids,
                    earliest,
                    latest,
                }
            }
            ENTRY_DELETE_PROPERTY => WalEntry::DeleteProperty {
                project,
                collection,
                property: reader.string()?,
            },
            ENTRY_ROWS => {
                let count = reader.u32()? as usize;
                let mut tokens = Vec::with_capacity(count.min(100_000));
                for _ in 0..count {
                    let row = reader.u32()?;
                    tokens.push((row, reader.string()?));
                }
                let length = reader.u32()? as usize;
                let rows = crate::row_batches::decode_batch(reader.take(length)?)?;
                if tokens
                    .iter()
                    .any(|(row, _)| *row as usize >= rows.num_rows())
                {
                    return None;
                }
                WalEntry::Rows {
                    project,
                    collection,
                    rows,
                    tokens,
                }
            }
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
