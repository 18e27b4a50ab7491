//! The Parquet files of a collection snapshot as one DataFusion table.
//!
//! `plan::filtered_frame` reads a collection's files through this provider rather than a `ListingTable`:
//! - the file list and sizes come from the storage manifest (the snapshot), so a query makes no listing or
//!   `HEAD` request per file;
//! - each file's footer is cached in the shared runtime's metadata cache *with its page index*. DataFusion's
//!   own reader caches the footer alone and then, for every query whose filters can prune pages (a tenant
//!   key's filter, a time range), reads and decodes the page index of every file again; that was the
//!   largest per-file cost of a scoped query.
//!
//! Filters are not applied here: the plan's `Filter` above the scan is pushed into the Parquet source by
//! DataFusion's physical optimizer (row-group and page pruning, and row filtering with `pushdown_filters`),
//! exactly as for a listing table. `supports_filters_pushdown` answers `Inexact`, so the `Filter` stays in the
//! logical plan and no filter can be lost between the two.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::config::TableParquetOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DataFusionResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::future::BoxFuture;
use keyhole_storage::DataFile;

/// A snapshot's data files, all read with `schema` (columns a file lacks read as nulls).
pub(crate) struct SnapshotFiles {
    pub objects_url: ObjectStoreUrl,
    pub schema: SchemaRef,
    pub files: Vec<DataFile>,
}

impl fmt::Debug for SnapshotFiles {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SnapshotFiles")
            .field("files", &self.files.len())
            .finish()
    }
}

#[async_trait]
impl TableProvider for SnapshotFiles {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DataFusionResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DataFusionResult<Arc<dyn ExecutionPlan>> {
        let runtime = state.runtime_env();
        let store = runtime.object_store(&self.objects_url)?;
        let metadata_cache = runtime.cache_manager.get_file_metadata_cache();
        let readers = PageIndexCachingReaders {
            inner: CachedParquetFileReaderFactory::new(store, metadata_cache),
        };
        let options = TableParquetOptions {
            global: state.config_options().execution.parquet.clone(),
            ..TableParquetOptions::default()
        };
        let source = ParquetSource::new(self.schema.clone())
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(Arc::new(readers));
        // Split as a listing table splits its files; DataFusion's optimizer may repartition by byte ranges.
        let groups = FileGroup::new(
            self.files
                .iter()
                .map(|file| PartitionedFile::new(file.path.clone(), file.bytes as u64))
                .collect(),
        )
        .split_files(state.config().target_partitions());
        let config = FileScanConfigBuilder::new(self.objects_url.clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// DataFusion's cached reader factory, with metadata always read (and so cached) with the page index.
#[derive(Debug)]
struct PageIndexCachingReaders {
    inner: CachedParquetFileReaderFactory,
}

impl ParquetFileReaderFactory for PageIndexCachingReaders {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> DataFusionResult<Box<dyn AsyncFileReader + Send>> {
        let inner = self.inner.create_reader(
            partition_index,
            partitioned_file,
            metadata_size_hint,
            metrics,
        )?;
        Ok(Box::new(PageIndexCachingReader { inner }))
    }
}

struct PageIndexCachingReader {
    inner: Box<dyn AsyncFileReader + Send>,
}

impl AsyncFileReader for PageIndexCachingReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<bytes::Bytes>> {
        self.inner.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<bytes::Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        Box::pin(async move {
            let with_page_index = options
                .cloned()
                .unwrap_or_default()
                .with_page_index_policy(PageIndexPolicy::Optional);
            self.inner.get_metadata(Some(&with_page_index)).await
        })
    }
}
