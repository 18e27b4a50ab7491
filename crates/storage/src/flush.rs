//! Moving rows from memory to Parquet, and merging small files.
//!
//! Flush: the writer rotates the WAL and marks every buffered row "flushing" at one point of the log
//! (sequence S). Those rows are sorted by `keen.timestamp`, split by UTC day, and written as one Parquet
//! file per (collection, day). The manifest listing the new files with `flushed_sequence = S` is stored
//! atomically; then, under the state lock, the files become visible and the flushing rows are dropped in
//! one step; then WAL segments up to S are deleted. A crash at any point leaves either the old manifest
//! (the WAL still holds the rows) or the new one (the WAL records are skipped on replay).
//!
//! Clustering: within a file, rows are ordered by the project's clustering properties (the properties its
//! access keys filter on, set by the server with [`crate::Storage::set_clustering`]) and then by time. A tenant's rows are then contiguous, and the Parquet statistics of
//! row groups and pages let a query scoped to one tenant skip the others' data. Day partitioning still
//! prunes by time; within a day, time order gives way to the clustering order.
//!
//! Compaction: a day of a collection with many files is rewritten as one file, swapped into the manifest
//! the same way. Replaced files are deleted after a grace period, so a scan that listed them still reads.

use std::collections::BTreeMap;
use std::io;

use arrow::array::{Array, TimestampMillisecondArray};
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, lexsort_to_indices, sort_to_indices, take_record_batch,
};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use keyhole_model::ValueKind;
use keyhole_model::flat::TIMESTAMP_COLUMN;
use keyhole_model::timestamp::utc_day;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::columns::{conform_batch, schema_with_columns};
use crate::manifest::{CollectionId, DataFile};
use crate::objects::{ObjectFiles, encode_segment};

const MILLIS_PER_DAY: i64 = 86_400_000;

/// Concatenates batches with possibly different columns under the union of their columns.
pub(crate) fn merge_batches(batches: &[RecordBatch]) -> Option<RecordBatch> {
    let first = batches.first()?;
    let columns: Vec<String> = batches
        .iter()
        .flat_map(|batch| {
            batch
                .schema()
                .fields()
                .iter()
                .map(|field| field.name().clone())
                .collect::<Vec<_>>()
        })
        .collect();
    let schema = schema_with_columns(&columns);
    if batches.len() == 1 {
        return Some(conform_batch(first, &schema));
    }
    let conformed: Vec<RecordBatch> = batches
        .iter()
        .map(|batch| conform_batch(batch, &schema))
        .collect();
    Some(concat_batches(&schema, &conformed).expect("conformed batches concatenate"))
}

fn timestamps(batch: &RecordBatch) -> &TimestampMillisecondArray {
    batch
        .column_by_name(TIMESTAMP_COLUMN)
        .and_then(|column| column.as_any().downcast_ref::<TimestampMillisecondArray>())
        .expect("every batch has a millisecond keen.timestamp column")
}

/// Sorts rows by event time and cuts them into one batch per UTC day.
pub(crate) fn split_by_day(batch: &RecordBatch) -> Vec<(String, RecordBatch)> {
    let order = sort_to_indices(
        batch.column_by_name(TIMESTAMP_COLUMN).expect("timestamp"),
        Some(SortOptions::default()),
        None,
    )
    .expect("timestamps sort");
    let sorted = take_record_batch(batch, &order).expect("take by sort order");
    let times = timestamps(&sorted);
    let mut parts = Vec::new();
    let mut start = 0;
    while start < sorted.num_rows() {
        let day_number = times.value(start).div_euclid(MILLIS_PER_DAY);
        let mut end = start + 1;
        while end < sorted.num_rows() && times.value(end).div_euclid(MILLIS_PER_DAY) == day_number {
            end += 1;
        }
        parts.push((
            utc_day(times.value(start)),
            sorted.slice(start, end - start),
        ));
        start = end;
    }
    parts
}

/// The order rows take within a day file: ascending, nulls last.
pub(crate) const ROW_ORDER: SortOptions = SortOptions {
    descending: false,
    nulls_first: false,
};

/// The names of the columns rows are ordered by within a day file, in order: the scalar columns
/// (strings, numbers, booleans) of the clustering `properties` that `schema` has, then `keen.timestamp`.
pub(crate) fn order_columns(
    schema: &arrow::datatypes::Schema,
    properties: &[String],
) -> Vec<String> {
    let mut names: Vec<String> = properties
        .iter()
        .flat_map(|property| {
            [ValueKind::Str, ValueKind::Num, ValueKind::Bool]
                .into_iter()
                .map(|kind| kind.column_name(property))
        })
        .filter(|name| schema.index_of(name).is_ok())
        .collect();
    names.push(TIMESTAMP_COLUMN.to_string());
    names
}

/// Orders rows by the columns of [`order_columns`].
pub(crate) fn sort_rows(batch: &RecordBatch, properties: &[String]) -> RecordBatch {
    let sort_columns: Vec<SortColumn> = order_columns(&batch.schema(), properties)
        .iter()
        .map(|name| SortColumn {
            values: batch.column_by_name(name).expect("listed").clone(),
            options: Some(ROW_ORDER),
        })
        .collect();
    let order = lexsort_to_indices(&sort_columns, None).expect("order columns sort");
    take_record_batch(batch, &order).expect("take by row order")
}

/// Orders rows by the scalar columns of `properties` (strings, numbers, booleans; nulls last), then by
/// time; a batch without any of them is returned as it is (a flush has already sorted it by time).
pub(crate) fn cluster_rows(batch: &RecordBatch, properties: &[String]) -> RecordBatch {
    if order_columns(&batch.schema(), properties).len() == 1 {
        return batch.clone();
    }
    sort_rows(batch, properties)
}

/// Writes one day's rows as a Parquet file, ordered by `cluster_by` (see the module docs); returns its
/// manifest entry.
pub(crate) async fn write_day_file(
    objects: &ObjectFiles,
    collection: &CollectionId,
    day: &str,
    batch: &RecordBatch,
    name_hint: u64,
    cluster_by: &[String],
) -> io::Result<DataFile> {
    // Sorting and encoding are CPU work: on a blocking thread, so they do not stall the request handlers
    // that share the async runtime's workers.
    let (batch, cluster_by) = (batch.clone(), cluster_by.to_vec());
    let (rows, min_timestamp_millis, max_timestamp_millis, bytes) =
        tokio::task::spawn_blocking(move || {
            let batch = cluster_rows(&batch, &cluster_by);
            let times = timestamps(&batch);
            let min = (0..times.len()).map(|row| times.value(row)).min();
            let max = (0..times.len()).map(|row| times.value(row)).max();
            let bytes = encode_parquet(&batch)?;
            io::Result::Ok((
                batch.num_rows(),
                min.unwrap_or_default(),
                max.unwrap_or_default(),
                bytes,
            ))
        })
        .await
        .map_err(io::Error::other)??;
    let path = day_file_path(collection, day, name_hint);
    let size = bytes.len();
    objects.put_durable(&path, bytes).await?;
    Ok(DataFile {
        path,
        day: day.to_string(),
        min_timestamp_millis,
        max_timestamp_millis,
        rows,
        bytes: size,
    })
}

/// A new data file's path: `<project>/<collection>/<day>/<name_hint:020>-<random>.parquet`.
pub(crate) fn day_file_path(collection: &CollectionId, day: &str, name_hint: u64) -> String {
    let mut random = [0u8; 4];
    rand::fill(&mut random);
    format!(
        "{}/{}/{day}/{name_hint:020}-{:08x}.parquet",
        encode_segment(&collection.project),
        encode_segment(&collection.collection),
        u32::from_be_bytes(random)
    )
}

/// Parquet writer settings, chosen for query speed (measured through HTTP on the benchmark's events):
/// - number and timestamp columns are written PLAIN, without dictionaries: their values are mostly
///   distinct, and dictionary decoding was over a third of a `sum`/`average` scan;
/// - LZ4 (raw) rather than Snappy everywhere: it decodes faster at about the same size. Uncompressed
///   numbers decoded faster still but made the files ~40% larger, so 10M events no longer fit the file
///   cache and every query read from disk;
/// - data pages hold at most 8,192 rows, so the page index of the clustering columns (`tenant_id`, sorted
///   within a day) lets a tenant-scoped read skip the pages of other tenants instead of decoding a whole
///   column chunk that fits in one page;
/// - string columns keep dictionaries (their dictionaries make grouping and comparisons cheap);
/// - row groups of 128Ki rows.
///
/// 10M events, one file per day, 31-day range: sum 17.7 → 16 ms, a tenant key's count 7.9 → 2.5 ms.
pub(crate) fn writer_properties(schema: &arrow::datatypes::Schema) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::LZ4_RAW)
        .set_max_row_group_row_count(Some(128 * 1024))
        .set_data_page_row_count_limit(8192);
    for field in schema.fields() {
        let is_number_or_time = matches!(
            field.data_type(),
            arrow::datatypes::DataType::Float64 | arrow::datatypes::DataType::Timestamp(..)
        );
        if is_number_or_time {
            let path = parquet::schema::types::ColumnPath::from(field.name().as_str());
            builder = builder.set_column_dictionary_enabled(path, false);
        }
    }
    builder.build()
}

fn encode_parquet(batch: &RecordBatch) -> io::Result<Bytes> {
    let properties = writer_properties(&batch.schema());
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, batch.schema(), Some(properties))
        .map_err(io::Error::other)?;
    writer.write(batch).map_err(io::Error::other)?;
    writer.close().map_err(io::Error::other)?;
    Ok(Bytes::from(buffer))
}

/// Reads a data file's rows, conformed to `schema` (columns the file lacks become nulls).
pub(crate) async fn read_data_file(
    objects: &ObjectFiles,
    file: &DataFile,
    schema: &SchemaRef,
) -> io::Result<Vec<RecordBatch>> {
    read_file_conformed(objects, file, schema.clone()).await
}

async fn read_file_conformed(
    objects: &ObjectFiles,
    file: &DataFile,
    schema: SchemaRef,
) -> io::Result<Vec<RecordBatch>> {
    let bytes = objects.get(&file.path).await?;
    tokio::task::spawn_blocking(move || {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|builder| builder.with_batch_size(64 * 1024).build())
            .map_err(io::Error::other)?;
        let mut batches = Vec::new();
        for batch in reader {
            let batch = batch.map_err(io::Error::other)?;
            batches.push(conform_batch(&batch, &schema));
        }
        Ok(batches)
    })
    .await
    .map_err(io::Error::other)?
}

/// Groups a collection's files by day, keeping days with at least `min_files` files.
pub(crate) fn days_to_compact(files: &[DataFile], min_files: usize) -> Vec<Vec<DataFile>> {
    let mut by_day: BTreeMap<&str, Vec<DataFile>> = BTreeMap::new();
    for file in files {
        by_day
            .entry(file.day.as_str())
            .or_default()
            .push(file.clone());
    }
    by_day
        .into_values()
        .filter(|group| group.len() >= min_files)
        .collect()
}
