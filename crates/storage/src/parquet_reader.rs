//! Reading a data file by range through the object store, for the engine's own streaming reads (the
//! token index at start-up, compaction): only the column chunks asked for are fetched, one row group at
//! a time, never the whole file unless the file cache already holds it.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStream};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::manifest::DataFile;
use crate::objects::ObjectFiles;

/// One data file of a known size on the engine's object store.
pub(crate) struct ObjectFileReader {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    size: u64,
}

impl ObjectFileReader {
    pub(crate) fn new(objects: &ObjectFiles, file: &DataFile) -> ObjectFileReader {
        ObjectFileReader {
            store: objects.store(),
            path: ObjectPath::from(file.path.as_str()),
            size: file.bytes as u64,
        }
    }
}

fn external(error: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(error))
}

impl AsyncFileReader for ObjectFileReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// A stream builder over `file` (its footer read).
pub(crate) async fn stream_builder(
    objects: &ObjectFiles,
    file: &DataFile,
) -> Result<ParquetRecordBatchStreamBuilder<ObjectFileReader>> {
    ParquetRecordBatchStreamBuilder::new(ObjectFileReader::new(objects, file)).await
}

/// What the rows of a file take once decoded, from the footer's size statistics: the bytes of every
/// string value before encoding (a column of repeated long strings is a few bytes of dictionary indices on
/// disk and megabytes decoded), plus a 4-byte offset per string, plus the encoded size of the other
/// columns; without those statistics, the worst case, every row as wide as the largest event.
pub(crate) fn decoded_bytes(metadata: &ParquetMetaData) -> u64 {
    let mut bytes = 0i64;
    for group in metadata.row_groups() {
        for column in group.columns() {
            let is_byte_array = column.column_type() == parquet::basic::Type::BYTE_ARRAY;
            bytes += match (is_byte_array, column.unencoded_byte_array_data_bytes()) {
                (true, Some(values)) => values + 4 * column.num_values(),
                (true, None) => return rows_of(metadata).saturating_mul(WORST_ROW_BYTES as u64),
                (false, _) => column.uncompressed_size(),
            };
        }
    }
    bytes.max(0) as u64
}

fn rows_of(metadata: &ParquetMetaData) -> u64 {
    let rows: i64 = metadata
        .row_groups()
        .iter()
        .map(parquet::file::metadata::RowGroupMetaData::num_rows)
        .sum();
    rows.max(0) as u64
}

/// The rows per batch that keep one decoded batch near `target_bytes` (events differ in width by four
/// orders of magnitude, so a fixed row count is no bound), from [`decoded_bytes`].
pub(crate) fn rows_per_batch(metadata: &ParquetMetaData, target_bytes: usize) -> usize {
    let rows = rows_of(metadata);
    if rows == 0 {
        return 8192;
    }
    let row_bytes = (decoded_bytes(metadata) / rows).max(1) as usize;
    (target_bytes / row_bytes).clamp(1, 8192)
}

/// The stream of a file whose footer `builder` read, in batches of about `target_bytes` decoded.
pub(crate) fn batch_stream(
    builder: ParquetRecordBatchStreamBuilder<ObjectFileReader>,
    target_bytes: usize,
) -> Result<ParquetRecordBatchStream<ObjectFileReader>> {
    let batch_rows = rows_per_batch(builder.metadata(), target_bytes);
    builder.with_batch_size(batch_rows).build()
}

/// The most one decoded row can take: the largest event, plus a null entry in each of the most columns
/// a collection may have.
const WORST_ROW_BYTES: usize = keyhole_model::event::MAX_EVENT_BYTES + 16 * 1024;
