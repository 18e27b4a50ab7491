//! Physical columns: the Arrow type of each value kind, the in-memory row buffer that appends flattened
//! events into Arrow builders, and normalization of batches with different column sets to one schema.
//!
//! Every collection has three fixed columns (`keen.timestamp`, `keen.created_at` as UTC millisecond
//! timestamps, `keen.id` as text) followed by one column per (property path, value kind), named
//! `{path}#{kind}` and sorted by name. A batch holds only the columns its events used; readers widen it to
//! the collection's full schema, filling absent columns with nulls.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, BooleanBuilder, Float64Builder, ListBuilder, StringBuilder,
    TimestampMillisecondArray, new_null_array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use keyhole_model::ValueKind;
use keyhole_model::flat::{CREATED_AT_COLUMN, FlatEvent, FlatValue, ID_COLUMN, TIMESTAMP_COLUMN};

pub(crate) fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The Arrow type that holds values of one kind.
pub(crate) fn data_type_of(kind: ValueKind) -> DataType {
    let list_of = |item: DataType| DataType::List(Arc::new(Field::new("item", item, true)));
    match kind {
        ValueKind::Num => DataType::Float64,
        ValueKind::Str => DataType::Utf8,
        ValueKind::Bool | ValueKind::Null | ValueKind::EmptyObject => DataType::Boolean,
        ValueKind::NumList => list_of(DataType::Float64),
        ValueKind::StrList | ValueKind::MixedList => list_of(DataType::Utf8),
        ValueKind::BoolList => list_of(DataType::Boolean),
    }
}

/// The three fixed fields every collection's schema starts with.
pub(crate) fn fixed_fields() -> Vec<Field> {
    vec![
        Field::new(TIMESTAMP_COLUMN, timestamp_type(), false),
        Field::new(CREATED_AT_COLUMN, timestamp_type(), false),
        Field::new(ID_COLUMN, DataType::Utf8, false),
    ]
}

/// A schema with the fixed fields and the given `{path}#{kind}` columns (in name order).
pub(crate) fn schema_with_columns<'a>(columns: impl IntoIterator<Item = &'a String>) -> SchemaRef {
    let mut fields = fixed_fields();
    let mut names: Vec<&String> = columns.into_iter().collect();
    names.sort();
    names.dedup();
    for name in names {
        let Some((_, kind)) = ValueKind::split_column_name(name) else {
            continue;
        };
        fields.push(Field::new(name.as_str(), data_type_of(kind), true));
    }
    Arc::new(Schema::new(fields))
}

/// Widens (or narrows) a batch to `schema`: columns are matched by name, absent ones become nulls.
pub(crate) fn conform_batch(batch: &RecordBatch, schema: &SchemaRef) -> RecordBatch {
    if batch.schema() == *schema {
        return batch.clone();
    }
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => column.clone(),
            _ => new_null_array(field.data_type(), batch.num_rows()),
        })
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
        .expect("columns were built to match the schema")
}

enum ColumnBuilder {
    Num(Float64Builder),
    Str(StringBuilder),
    Bool(BooleanBuilder),
    NumList(ListBuilder<Float64Builder>),
    StrList(ListBuilder<StringBuilder>),
    BoolList(ListBuilder<BooleanBuilder>),
}

impl ColumnBuilder {
    fn new(kind: ValueKind) -> ColumnBuilder {
        match kind {
            ValueKind::Num => ColumnBuilder::Num(Float64Builder::new()),
            ValueKind::Str => ColumnBuilder::Str(StringBuilder::new()),
            ValueKind::Bool | ValueKind::Null | ValueKind::EmptyObject => {
                ColumnBuilder::Bool(BooleanBuilder::new())
            }
            ValueKind::NumList => ColumnBuilder::NumList(ListBuilder::new(Float64Builder::new())),
            ValueKind::StrList | ValueKind::MixedList => {
                ColumnBuilder::StrList(ListBuilder::new(StringBuilder::new()))
            }
            ValueKind::BoolList => ColumnBuilder::BoolList(ListBuilder::new(BooleanBuilder::new())),
        }
    }

    fn len(&self) -> usize {
        match self {
            ColumnBuilder::Num(builder) => builder.len(),
            ColumnBuilder::Str(builder) => builder.len(),
            ColumnBuilder::Bool(builder) => builder.len(),
            ColumnBuilder::NumList(builder) => builder.len(),
            ColumnBuilder::StrList(builder) => builder.len(),
            ColumnBuilder::BoolList(builder) => builder.len(),
        }
    }

    fn append_nulls(&mut self, count: usize) {
        for _ in 0..count {
            match self {
                ColumnBuilder::Num(builder) => builder.append_null(),
                ColumnBuilder::Str(builder) => builder.append_null(),
                ColumnBuilder::Bool(builder) => builder.append_null(),
                ColumnBuilder::NumList(builder) => builder.append_null(),
                ColumnBuilder::StrList(builder) => builder.append_null(),
                ColumnBuilder::BoolList(builder) => builder.append_null(),
            }
        }
    }

    fn append(&mut self, value: &FlatValue) {
        match (self, value) {
            (ColumnBuilder::Num(builder), FlatValue::Num(number)) => builder.append_value(*number),
            (ColumnBuilder::Str(builder), FlatValue::Str(text)) => builder.append_value(text),
            (ColumnBuilder::Bool(builder), FlatValue::Bool(flag)) => builder.append_value(*flag),
            (ColumnBuilder::Bool(builder), FlatValue::Null | FlatValue::EmptyObject) => {
                builder.append_value(true);
            }
            (ColumnBuilder::NumList(builder), FlatValue::NumList(items)) => {
                builder.append_value(items.elements());
            }
            (ColumnBuilder::StrList(builder), FlatValue::StrList(items)) => {
                builder.append_value(items.iter().map(|item| item.as_deref()));
            }
            (ColumnBuilder::StrList(builder), FlatValue::MixedList(items)) => {
                builder.append_value(items.iter().map(Some));
            }
            (ColumnBuilder::BoolList(builder), FlatValue::BoolList(items)) => {
                builder.append_value(items.iter().copied());
            }
            (builder, _) => unreachable!(
                "column builders are chosen by value kind; got a mismatch at length {}",
                builder.len()
            ),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Num(builder) => Arc::new(builder.finish()),
            ColumnBuilder::Str(builder) => Arc::new(builder.finish()),
            ColumnBuilder::Bool(builder) => Arc::new(builder.finish()),
            ColumnBuilder::NumList(builder) => Arc::new(builder.finish()),
            ColumnBuilder::StrList(builder) => Arc::new(builder.finish()),
            ColumnBuilder::BoolList(builder) => Arc::new(builder.finish()),
        }
    }
}

/// Events of one collection not yet turned into an immutable batch.
///
/// Columns live in a vector in the order they first appeared, found by name through a hash map (the
/// writer thread looks up every property of every event here; a B-tree of names spent most of that time
/// comparing strings). `take_batch` puts them in name order, the schema's.
#[derive(Default)]
pub(crate) struct RowBuffer {
    timestamps: Vec<i64>,
    created_ats: Vec<i64>,
    ids: Vec<String>,
    column_index: hashbrown::HashMap<String, usize>,
    columns: Vec<(String, ColumnBuilder)>,
    /// About how many bytes the buffered values take (see [`stored_bytes`]).
    bytes: usize,
}

/// About how many bytes a value takes in its column: what sealing by size counts.
fn stored_bytes(value: &FlatValue) -> usize {
    match value {
        FlatValue::Num(_) => 8,
        FlatValue::Str(text) => text.len() + 4,
        FlatValue::Bool(_) | FlatValue::Null | FlatValue::EmptyObject => 1,
        FlatValue::NumList(numbers) => numbers.len() * 8 + 4,
        FlatValue::StrList(texts) => {
            texts
                .iter()
                .map(|text| text.as_ref().map_or(0, String::len) + 4)
                .sum::<usize>()
                + 4
        }
        FlatValue::BoolList(flags) => flags.len() + 4,
        FlatValue::MixedList(texts) => texts.text_len() + texts.len() * 4 + 4,
    }
}

impl RowBuffer {
    pub(crate) fn len(&self) -> usize {
        self.timestamps.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// About how many bytes the buffered rows take.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn append(&mut self, event: &FlatEvent) {
        let row_count_before = self.len();
        // One reused buffer for `{path}#{kind}`: the column is looked up by `&str` and a name is allocated
        // only for a new column (this runs on the writer thread for every property of every event).
        let mut column_name = String::with_capacity(64);
        for (path, value) in &event.properties {
            column_name.clear();
            column_name.push_str(path);
            column_name.push('#');
            column_name.push_str(value.kind().suffix());
            let position = if let Some(position) = self.column_index.get(column_name.as_str()) {
                *position
            } else {
                let mut builder = ColumnBuilder::new(value.kind());
                builder.append_nulls(row_count_before);
                self.columns.push((column_name.clone(), builder));
                self.column_index
                    .insert(column_name.clone(), self.columns.len() - 1);
                self.columns.len() - 1
            };
            self.columns[position].1.append(value);
            self.bytes += stored_bytes(value);
        }
        self.bytes += 16 + event.id.len();
        self.timestamps.push(event.timestamp_millis);
        self.created_ats.push(event.created_at_millis);
        self.ids.push(event.id.clone());
        let row_count = self.len();
        for (_, builder) in &mut self.columns {
            let missing = row_count - builder.len();
            builder.append_nulls(missing);
        }
    }

    /// Turns the buffered rows into a batch (only the columns they use) and empties the buffer.
    pub(crate) fn take_batch(&mut self) -> Option<RecordBatch> {
        if self.is_empty() {
            return None;
        }
        self.column_index.clear();
        self.bytes = 0;
        let mut columns = std::mem::take(&mut self.columns);
        columns.sort_by(|left, right| left.0.cmp(&right.0));
        let schema = schema_with_columns(columns.iter().map(|(name, _)| name));
        let timestamps = std::mem::take(&mut self.timestamps);
        let created_ats = std::mem::take(&mut self.created_ats);
        let ids = std::mem::take(&mut self.ids);
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(TimestampMillisecondArray::from(timestamps).with_timezone("UTC")),
            Arc::new(TimestampMillisecondArray::from(created_ats).with_timezone("UTC")),
            Arc::new(arrow::array::StringArray::from(ids)),
        ];
        for (_, builder) in &mut columns {
            arrays.push(builder.finish());
        }
        Some(RecordBatch::try_new(schema, arrays).expect("buffer columns match their schema"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use keyhole_model::FlatValue;

    /// A flattened event with these properties (fixed times and id).
    pub(crate) fn event(properties: Vec<(&str, FlatValue)>) -> FlatEvent {
        FlatEvent {
            timestamp_millis: 1,
            created_at_millis: 2,
            id: "id".into(),
            properties: properties
                .into_iter()
                .map(|(path, value)| (path.to_string(), value))
                .collect(),
        }
    }

    #[test]
    fn buffer_backfills_nulls_for_columns_that_appear_later() {
        let mut buffer = RowBuffer::default();
        buffer.append(&event(vec![("a", FlatValue::Num(1.0))]));
        buffer.append(&event(vec![
            ("a", FlatValue::Str("x".into())),
            ("b", FlatValue::Null),
        ]));
        let batch = buffer.take_batch().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let names: Vec<_> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            [
                "keen.timestamp",
                "keen.created_at",
                "keen.id",
                "a#num",
                "a#str",
                "b#null"
            ]
        );
        assert_eq!(batch.column_by_name("a#num").unwrap().null_count(), 1);
        assert_eq!(batch.column_by_name("a#str").unwrap().null_count(), 1);
        assert!(buffer.take_batch().is_none());
    }

    #[test]
    fn conform_fills_missing_columns_with_nulls() {
        let mut buffer = RowBuffer::default();
        buffer.append(&event(vec![("a", FlatValue::Num(1.0))]));
        let batch = buffer.take_batch().unwrap();
        let wide = schema_with_columns(&["a#num".to_string(), "z#str".to_string()]);
        let conformed = conform_batch(&batch, &wide);
        assert_eq!(conformed.schema(), wide);
        assert_eq!(conformed.column_by_name("z#str").unwrap().null_count(), 1);
    }
}
