//! An in-memory cache of whole data files in front of the object store that queries read from.
//!
//! Queries open every Parquet file of a collection; on the local filesystem each `head` and each range read
//! is a blocking-thread hop with open/pread/close, and in profiles those hops, not decoding, are most of a
//! small query's time. Data files are immutable and never reuse a name, so a file's bytes can be
//! kept once read: the first access of a path (a `head` or any range) reads the whole file, later ones are
//! served from memory. Files are also put in the cache as they are written (`ObjectFiles::put_durable`),
//! so freshly flushed or compacted data is read without touching the disk. Deleting a file evicts it.
//!
//! Design: a byte budget (`StorageConfig::file_cache_bytes`); a file larger than a quarter of the budget is
//! never cached (it is served by the underlying store). A written file evicts the oldest-inserted files
//! beyond the budget (new data is the hottest). A file *read* is admitted only into free room and never
//! evicts: a query scans every file of its range in the same order each time, and with a collection larger
//! than the budget, evicting on reads made every query miss every file (each miss reading a whole file);
//! without eviction the files that fit stay and the rest are read by range from the underlying store. Requests with
//! conditions or versions go straight to the underlying store. Everything else (writes, listing, copies)
//! is delegated unchanged.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use keyhole_model::memory_budget::{MemoryBudget, MemoryConsumer};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, Result,
};

#[derive(Default)]
struct CacheState {
    files: HashMap<Path, (Bytes, ObjectMeta)>,
    order: VecDeque<Path>,
    bytes: usize,
    /// Told what the cache holds after every change (`MemoryConsumer::FileCache`).
    budget: Option<MemoryBudget>,
}

impl CacheState {
    fn report(&self) {
        if let Some(budget) = &self.budget {
            budget.set_used(MemoryConsumer::FileCache, self.bytes as u64);
        }
    }
}

pub(crate) struct FileCacheStore {
    inner: Arc<dyn ObjectStore>,
    budget_bytes: usize,
    state: Arc<Mutex<CacheState>>,
    hits: prometheus_client::metrics::counter::Counter,
    misses: prometheus_client::metrics::counter::Counter,
}

impl fmt::Debug for FileCacheStore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "FileCacheStore({})", self.inner)
    }
}

impl fmt::Display for FileCacheStore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "FileCacheStore({})", self.inner)
    }
}

impl FileCacheStore {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, budget_bytes: usize) -> FileCacheStore {
        FileCacheStore {
            inner,
            budget_bytes,
            state: Arc::new(Mutex::new(CacheState::default())),
            hits: prometheus_client::metrics::counter::Counter::default(),
            misses: prometheus_client::metrics::counter::Counter::default(),
        }
    }

    /// Counts whole-file reads answered from memory (`hits`) and from the store (`misses`).
    pub(crate) fn with_counters(
        self,
        hits: prometheus_client::metrics::counter::Counter,
        misses: prometheus_client::metrics::counter::Counter,
    ) -> FileCacheStore {
        FileCacheStore {
            hits,
            misses,
            ..self
        }
    }

    /// Reports the bytes held to `budget` (its `FileCache` share is what the server sizes the cache by).
    pub(crate) fn reporting_to(self, budget: MemoryBudget) -> FileCacheStore {
        self.lock().budget = Some(budget);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        lock(&self.state)
    }

    fn cached(&self, location: &Path) -> Option<(Bytes, ObjectMeta)> {
        self.lock().files.get(location).cloned()
    }

    /// Keeps a file's bytes (written or read whole) under the path it is asked for by, evicting the oldest
    /// files beyond the budget. The path is the caller's, not the store's metadata: an S3 store behind a
    /// prefix (object_store's `PrefixStore`) answers `head` with the prefix still in the location, so nothing
    /// cached was ever found again.
    pub(crate) fn insert(&self, location: &Path, mut meta: ObjectMeta, bytes: Bytes) {
        if bytes.len() > self.budget_bytes / 4 {
            return;
        }
        let mut state = self.lock();
        let location = location.clone();
        meta.location = location.clone();
        if let Some((old, _)) = state.files.insert(location.clone(), (bytes.clone(), meta)) {
            state.bytes -= old.len();
            state.order.retain(|path| path != &location);
        }
        state.bytes += bytes.len();
        state.order.push_back(location);
        while state.bytes > self.budget_bytes {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            if let Some((evicted, _)) = state.files.remove(&oldest) {
                state.bytes -= evicted.len();
            }
        }
        state.report();
    }

    /// Caches a file just written, with the metadata the underlying store reports for it.
    pub(crate) async fn insert_written(&self, location: &Path, bytes: Bytes) -> Result<()> {
        let meta = self.inner.head(location).await?;
        self.insert(location, meta, bytes);
        Ok(())
    }

    /// Whether a written file of `size` bytes would be kept.
    pub(crate) fn would_keep(&self, size: u64) -> bool {
        size as usize <= self.budget_bytes / 4
    }

    pub(crate) fn evict(&self, location: &Path) {
        evict(&self.state, location);
    }

    /// The whole file from memory, reading it once if it fits in the free room; `None` when it is not
    /// cached and does not fit (the caller reads from the underlying store).
    async fn whole_file(&self, location: &Path) -> Result<Option<(Bytes, ObjectMeta)>> {
        if let Some(hit) = self.cached(location) {
            self.hits.inc();
            return Ok(Some(hit));
        }
        self.misses.inc();
        let meta = self.inner.head(location).await?;
        let size = meta.size as usize;
        let fits = size <= self.budget_bytes / 4 && self.lock().bytes + size <= self.budget_bytes;
        if !fits {
            return Ok(None);
        }
        let bytes = self
            .inner
            .get_opts(location, GetOptions::default())
            .await?
            .bytes()
            .await?;
        let mut meta = meta;
        meta.location = location.clone();
        self.insert(location, meta.clone(), bytes.clone());
        Ok(Some((bytes, meta)))
    }
}

fn lock(state: &Mutex<CacheState>) -> std::sync::MutexGuard<'_, CacheState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn evict(state: &Mutex<CacheState>, location: &Path) {
    let mut state = lock(state);
    if let Some((evicted, _)) = state.files.remove(location) {
        state.bytes -= evicted.len();
        state.order.retain(|path| path != location);
    }
    state.report();
}

fn has_conditions(options: &GetOptions) -> bool {
    options.if_match.is_some()
        || options.if_none_match.is_some()
        || options.if_modified_since.is_some()
        || options.if_unmodified_since.is_some()
        || options.version.is_some()
}

fn slice(bytes: &Bytes, range: &Range<u64>) -> Bytes {
    let end = range.end.min(bytes.len() as u64) as usize;
    let start = (range.start as usize).min(end);
    bytes.slice(start..end)
}

#[async_trait]
impl ObjectStore for FileCacheStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.evict(location);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.evict(location);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if has_conditions(&options) {
            return self.inner.get_opts(location, options).await;
        }
        let Some((bytes, meta)) = self.whole_file(location).await? else {
            return self.inner.get_opts(location, options).await;
        };
        let range = match &options.range {
            Some(range) => {
                range
                    .as_range(meta.size)
                    .map_err(|error| object_store::Error::Generic {
                        store: "FileCacheStore",
                        source: Box::new(error),
                    })?
            }
            None => 0..meta.size,
        };
        let body = if options.head {
            Bytes::new()
        } else {
            slice(&bytes, &range)
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(
                futures::stream::once(async move { Ok(body) }).boxed(),
            ),
            meta,
            range,
            attributes: object_store::Attributes::default(),
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        match self.whole_file(location).await? {
            Some((bytes, _)) => Ok(ranges.iter().map(|range| slice(&bytes, range)).collect()),
            None => self.inner.get_ranges(location, ranges).await,
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // Evicted as each delete is requested; a path whose delete then fails only costs a re-read.
        let state = self.state.clone();
        let evicting = locations
            .map(move |location| {
                if let Ok(path) = &location {
                    evict(&state, path);
                }
                location
            })
            .boxed();
        self.inner.delete_stream(evicting)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.evict(to);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.evict(from);
        self.evict(to);
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::local::LocalFileSystem;

    use super::*;

    #[tokio::test]
    async fn files_are_served_from_memory_once_read_and_evicted_on_delete() {
        let directory = tempfile::tempdir().unwrap();
        let local: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(directory.path()).unwrap());
        let cache = FileCacheStore::new(local, 1 << 20);
        let path = Path::from("day/file.parquet");
        cache
            .put(&path, PutPayload::from_static(b"0123456789"))
            .await
            .unwrap();
        assert_eq!(cache.get_range(&path, 2..5).await.unwrap(), "234");
        // Gone from disk behind the cache's back: still served, because files never change.
        std::fs::remove_file(directory.path().join("day/file.parquet")).unwrap();
        assert_eq!(cache.head(&path).await.unwrap().size, 10);
        assert_eq!(
            cache.get_ranges(&path, &[0..1, 8..10]).await.unwrap(),
            vec![Bytes::from("0"), Bytes::from("89")]
        );
        let _ = cache.delete(&path).await;
        assert!(cache.get_range(&path, 0..1).await.is_err());
    }

    #[tokio::test]
    async fn the_budget_evicts_the_oldest_files() {
        let directory = tempfile::tempdir().unwrap();
        let local: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(directory.path()).unwrap());
        let cache = FileCacheStore::new(local.clone(), 40);
        for name in ["a", "b", "c", "d", "e"] {
            let path = Path::from(name);
            local
                .put(&path, PutPayload::from_static(b"0123456789"))
                .await
                .unwrap();
            cache
                .insert_written(&path, Bytes::from_static(b"0123456789"))
                .await
                .unwrap();
        }
        let state = cache.lock();
        assert_eq!(state.bytes, 40);
        assert!(!state.files.contains_key(&Path::from("a")));
        assert!(state.files.contains_key(&Path::from("e")));
    }

    #[tokio::test]
    async fn what_the_cache_holds_is_reported_to_the_memory_budget() {
        let directory = tempfile::tempdir().unwrap();
        let local: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(directory.path()).unwrap());
        let budget = MemoryBudget::default();
        let cache = FileCacheStore::new(local.clone(), 40).reporting_to(budget.clone());
        for name in ["a", "b", "c", "d", "e"] {
            let path = Path::from(name);
            local
                .put(&path, PutPayload::from_static(b"0123456789"))
                .await
                .unwrap();
            cache
                .insert_written(&path, Bytes::from_static(b"0123456789"))
                .await
                .unwrap();
        }
        assert_eq!(budget.used(MemoryConsumer::FileCache), 40);
        let _ = cache.delete(&Path::from("e")).await;
        assert_eq!(budget.used(MemoryConsumer::FileCache), 30);
    }

    #[tokio::test]
    async fn reads_fill_free_room_and_never_evict() {
        let directory = tempfile::tempdir().unwrap();
        let local: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(directory.path()).unwrap());
        let cache = FileCacheStore::new(local.clone(), 40);
        let names = ["a", "b", "c", "d", "e", "f"];
        for name in names {
            local
                .put(&Path::from(name), PutPayload::from_static(b"0123456789"))
                .await
                .unwrap();
        }
        // Two passes over more files than fit, as repeated scans of a large collection do.
        for _ in 0..2 {
            for name in names {
                let bytes = cache.get_range(&Path::from(name), 3..6).await.unwrap();
                assert_eq!(bytes, "345");
            }
        }
        let state = cache.lock();
        assert_eq!(state.bytes, 40);
        for name in ["a", "b", "c", "d"] {
            assert!(state.files.contains_key(&Path::from(name)), "{name} kept");
        }
        assert!(!state.files.contains_key(&Path::from("e")));
        drop(state);
        assert_eq!(
            cache.hits.get(),
            4,
            "the second pass hits the four kept files"
        );
    }
}
