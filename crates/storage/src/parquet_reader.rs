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
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::manifest::DataFile;
use crate::objects::ObjectFiles;

/// One data file of a known size on the engine's object store.
pub struct ObjectFileReader {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    size: u64,
}

impl ObjectFileReader {
    pub fn new(objects: &ObjectFiles, file: &DataFile) -> ObjectFileReader {
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
pub async fn stream_builder(
    objects: &ObjectFiles,
    file: &DataFile,
) -> Result<ParquetRecordBatchStreamBuilder<ObjectFileReader>> {
    ParquetRecordBatchStreamBuilder::new(ObjectFileReader::new(objects, file)).await
}

/// The rows per batch that keep one decoded batch of `file` near `target_bytes`, from the footer's
/// uncompressed sizes (events differ in width by four orders of magnitude, so a fixed row count is no
/// bound).
pub fn rows_per_batch(metadata: &ParquetMetaData, target_bytes: usize) -> usize {
    let (bytes, rows) = metadata
        .row_groups()
        .iter()
        .fold((0i64, 0i64), |(bytes, rows), group| {
            (bytes + group.total_byte_size(), rows + group.num_rows())
        });
    if rows <= 0 || bytes <= 0 {
        return 8192;
    }
    // Decoded Arrow is larger than Parquet's uncompressed pages (offsets, validity): count double.
    let row_bytes = (2 * bytes / rows).max(1) as usize;
    (target_bytes / row_bytes).clamp(1, 8192)
}
