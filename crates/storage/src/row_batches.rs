//! Events as encoded rows: how the shared log carries a group's events to the other nodes. The node that
//! takes a write parses, validates and flattens each event once, builds one Arrow batch of the write's
//! rows (the same `{path}#{kind}` columns as the row buffer, see `columns`) and appends it to the log as an
//! Arrow IPC stream; every node, the writer included, adds that batch to its memory as it is. Another
//! node never parses the events' JSON: taking a group costs it the IPC decode and one copy.
//!
//! Design: a decoded batch is kept as it is, every column a slice of the one message buffer IPC decoding
//! read (no copy: taking a group costs another node the decode alone). The memory budget counts it by
//! [`batch_memory_bytes`], each allocation once; Arrow's own count would charge the shared buffer once per
//! column buffer. A decoded batch is checked against the column naming rules before it is used; one that
//! does not conform is refused, as a record that does not decode.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{Array, ArrayData};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use keyhole_model::ValueKind;

use crate::columns::{data_type_of, fixed_fields};

/// The batch as an Arrow IPC stream (its schema, then the batch).
pub(crate) fn encode_batch(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() + 1024);
    let mut writer =
        StreamWriter::try_new(&mut out, &batch.schema()).expect("a batch schema encodes");
    writer
        .write(batch)
        .expect("writing to memory does not fail");
    writer.finish().expect("writing to memory does not fail");
    drop(writer);
    out
}

/// The one batch of an [`encode_batch`] stream; `None` if the bytes do not decode or the batch does not
/// follow the column rules.
pub(crate) fn decode_batch(bytes: &[u8]) -> Option<RecordBatch> {
    let mut reader = StreamReader::try_new(Cursor::new(bytes), None).ok()?;
    let batch = reader.next()?.ok()?;
    if reader.next().is_some() || !follows_column_rules(&batch) {
        return None;
    }
    Some(batch)
}

/// The bytes a batch's buffers hold, each allocation counted once (see the module's Design note).
pub(crate) fn batch_memory_bytes(batch: &RecordBatch) -> usize {
    let mut seen = hashbrown::HashSet::new();
    let mut bytes = 0;
    for column in batch.columns() {
        add_allocations(&column.to_data(), &mut seen, &mut bytes);
    }
    bytes
}

fn add_allocations(
    data: &ArrayData,
    seen: &mut hashbrown::HashSet<std::ptr::NonNull<u8>>,
    bytes: &mut usize,
) {
    let nulls = data.nulls().map(arrow::buffer::NullBuffer::buffer);
    for buffer in data.buffers().iter().chain(nulls) {
        if seen.insert(buffer.data_ptr()) {
            *bytes += buffer.capacity();
        }
    }
    for child in data.child_data() {
        add_allocations(child, seen, bytes);
    }
}

/// Whether the batch has the three fixed columns, then only `{path}#{kind}` columns of their kind's type.
fn follows_column_rules(batch: &RecordBatch) -> bool {
    let schema = batch.schema();
    let fixed = fixed_fields();
    if schema.fields().len() < fixed.len() {
        return false;
    }
    let fixed_match = schema.fields().iter().zip(&fixed).all(|(field, expected)| {
        field.name() == expected.name() && field.data_type() == expected.data_type()
    });
    fixed_match
        && schema.fields().iter().skip(fixed.len()).all(|field| {
            ValueKind::split_column_name(field.name())
                .is_some_and(|(_, kind)| field.data_type() == &data_type_of(kind))
        })
}

/// Each `(path, kind)` the batch's columns hold, ordered so that a path's kinds come in the order of
/// their last row: recording them in this order leaves each path's latest kind the kind of its last
/// value, as appending the rows one by one would.
pub(crate) fn kinds_in_row_order(batch: &RecordBatch) -> Vec<(String, ValueKind)> {
    let schema = batch.schema();
    let mut kinds: Vec<(String, ValueKind, &Arc<dyn Array>)> = Vec::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let Some((path, kind)) = ValueKind::split_column_name(field.name()) else {
            continue;
        };
        kinds.push((path.to_string(), kind, column));
    }
    // Columns are in name order, so one path's kinds are next to each other; only a path with several
    // kinds needs its columns' last rows (a scan of the column), and only its run is reordered.
    let mut start = 0;
    while start < kinds.len() {
        let end = start
            + kinds[start..]
                .iter()
                .take_while(|(path, _, _)| *path == kinds[start].0)
                .count();
        if end - start > 1 {
            kinds[start..end].sort_by_key(|(_, _, column)| last_valid_row(column));
        }
        start = end;
    }
    kinds
        .into_iter()
        .map(|(path, kind, _)| (path, kind))
        .collect()
}

fn last_valid_row(column: &Arc<dyn Array>) -> usize {
    match column.nulls() {
        None => column.len(),
        Some(nulls) => (0..column.len())
            .rev()
            .find(|row| nulls.is_valid(*row))
            .map_or(0, |row| row + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::RowBuffer;
    use crate::columns::tests::event;
    use keyhole_model::FlatValue;

    #[test]
    fn a_batch_round_trips_and_counts_its_message_once() {
        let mut buffer = RowBuffer::default();
        for number in 0..100 {
            buffer.append(&event(vec![
                ("n", FlatValue::Num(f64::from(number))),
                ("s", FlatValue::Str(format!("text {number}"))),
            ]));
        }
        let batch = buffer.take_batch().unwrap();
        let bytes = encode_batch(&batch);
        let decoded = decode_batch(&bytes).unwrap();
        assert_eq!(decoded, batch);
        // The message buffer counts once, not once per column buffer.
        let counted = batch_memory_bytes(&decoded);
        assert!(
            counted < bytes.len() * 2,
            "{counted} for {} bytes",
            bytes.len()
        );
        assert!(decoded.get_array_memory_size() > bytes.len() * 2);
        // A batch whose buffers are its own counts each of them (Arrow adds only struct sizes).
        assert!(batch_memory_bytes(&batch) <= batch.get_array_memory_size());
        assert!(batch_memory_bytes(&batch) * 2 > batch.get_array_memory_size());
    }

    #[test]
    fn bytes_that_are_not_a_conforming_batch_are_refused() {
        assert!(decode_batch(b"not arrow").is_none());
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("x", arrow::datatypes::DataType::Int32, false),
        ]));
        let odd = RecordBatch::try_new(
            schema,
            vec![Arc::new(arrow::array::Int32Array::from(vec![1]))],
        )
        .unwrap();
        assert!(decode_batch(&encode_batch(&odd)).is_none());
    }

    #[test]
    fn kinds_come_in_the_order_of_their_last_row() {
        let mut buffer = RowBuffer::default();
        buffer.append(&event(vec![("a", FlatValue::Str("x".into()))]));
        buffer.append(&event(vec![("a", FlatValue::Num(1.0))]));
        buffer.append(&event(vec![
            ("a", FlatValue::Str("y".into())),
            ("b", FlatValue::Null),
        ]));
        let batch = buffer.take_batch().unwrap();
        assert_eq!(
            kinds_in_row_order(&batch),
            [
                ("a".to_string(), ValueKind::Num),
                ("a".to_string(), ValueKind::Str),
                ("b".to_string(), ValueKind::Null),
            ]
        );
    }
}
