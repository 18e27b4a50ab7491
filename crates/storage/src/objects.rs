//! Where Parquet files live: an `object_store` — the local filesystem by default, or any S3-compatible
//! store (`s3://bucket/prefix`, credentials and endpoint from the usual `AWS_*` environment variables) —
//! plus the durability step object_store does not take on local disk — fsync of the file and of the
//! directories above it — so a file the manifest points to survives a power loss (an S3 `PUT` that
//! succeeded is durable by the store's own contract). Reads go through an in-memory cache of whole files
//! (`file_cache`), which written files also enter, so a node reads a file it wrote, or read before, from
//! memory rather than from the network.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use keyhole_model::memory_budget::MemoryBudget;

use crate::file_cache::FileCacheStore;

/// The part size of uploads of large files to a bucket.
const UPLOAD_PART_BYTES: usize = 8 * 1024 * 1024;

/// Objects set aside by recovery live under this prefix; nothing reads or lists them.
pub(crate) const QUARANTINE_PREFIX: &str = "quarantine/";

#[derive(Clone)]
pub(crate) struct ObjectFiles {
    store: Arc<dyn ObjectStore>,
    cache: Option<Arc<FileCacheStore>>,
    /// Root directory when the store is the local filesystem.
    local_root: Option<PathBuf>,
}

impl ObjectFiles {
    /// A store rooted at a local directory (created if missing), with `cache_bytes` of file cache.
    pub(crate) fn local(
        root: PathBuf,
        cache_bytes: usize,
        metrics: &crate::metrics::StorageMetrics,
        budget: &MemoryBudget,
    ) -> std::io::Result<ObjectFiles> {
        std::fs::create_dir_all(&root)?;
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(&root).map_err(std::io::Error::other)?);
        Ok(ObjectFiles::with_cache(
            store,
            cache_bytes,
            metrics,
            budget,
            Some(root),
        ))
    }

    /// A store at `s3://bucket/prefix` on any S3-compatible service: region, credentials and endpoint
    /// come from the environment (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP` for a plain-HTTP endpoint), as every AWS tool reads them.
    pub(crate) fn s3(
        url: &str,
        cache_bytes: usize,
        metrics: &crate::metrics::StorageMetrics,
        budget: &MemoryBudget,
    ) -> std::io::Result<ObjectFiles> {
        let (bucket, prefix) = parse_s3_url(url).ok_or_else(|| {
            std::io::Error::other(format!(
                "the objects location must look like s3://bucket or s3://bucket/prefix, not {url}"
            ))
        })?;
        // An unreachable store is told within about two seconds (a few quick retries, a short connect
        // timeout) rather than after object_store's default three minutes of retries: a read then answers
        // 503, and a flush that failed is tried again at its next tick with its rows still in memory.
        let retry = object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: std::time::Duration::from_millis(1500),
            ..object_store::RetryConfig::default()
        };
        // Set on the options read from the environment (replacing them would drop AWS_ALLOW_HTTP).
        let connect_timeout = object_store::aws::AmazonS3ConfigKey::Client(
            object_store::ClientConfigKey::ConnectTimeout,
        );
        let s3 = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry)
            .with_config(connect_timeout, "1s")
            .build()
            .map_err(std::io::Error::other)?;
        let store: Arc<dyn ObjectStore> = match prefix {
            "" => Arc::new(s3),
            prefix => Arc::new(PrefixStore::new(s3, prefix)),
        };
        Ok(ObjectFiles::with_cache(
            store,
            cache_bytes,
            metrics,
            budget,
            None,
        ))
    }

    fn with_cache(
        store: Arc<dyn ObjectStore>,
        cache_bytes: usize,
        metrics: &crate::metrics::StorageMetrics,
        budget: &MemoryBudget,
        local_root: Option<PathBuf>,
    ) -> ObjectFiles {
        let cache = (cache_bytes > 0).then(|| {
            Arc::new(
                FileCacheStore::new(store.clone(), cache_bytes)
                    .with_counters(
                        metrics.file_cache_hits.clone(),
                        metrics.file_cache_misses.clone(),
                    )
                    .reporting_to(budget.clone()),
            )
        });
        ObjectFiles {
            store: match &cache {
                Some(cache) => cache.clone(),
                None => store,
            },
            cache,
            local_root,
        }
    }

    pub(crate) fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    pub(crate) async fn put_durable(&self, path: &str, bytes: Bytes) -> std::io::Result<()> {
        let location = ObjectPath::from(path);
        self.store
            .put(&location, PutPayload::from_bytes(bytes.clone()))
            .await
            .map_err(std::io::Error::other)?;
        self.sync_local(path).await?;
        if let Some(cache) = &self.cache {
            cache
                .insert_written(&location, bytes)
                .await
                .map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    /// Stores the local file `local` (written by this process, on the data directory's filesystem) as
    /// the object `path`, durably, without holding it in memory: moved into place on local disk, uploaded
    /// in parts to a bucket. A file small enough for the file cache is read into it. Answers its size.
    pub(crate) async fn put_file_durable(
        &self,
        path: &str,
        local: &std::path::Path,
    ) -> std::io::Result<u64> {
        let size = std::fs::metadata(local)?.len();
        let location = ObjectPath::from(path);
        if let Some(cache) = &self.cache {
            cache.evict(&location);
        }
        if let Some(root) = &self.local_root {
            let target = root.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(local, &target)?;
            self.sync_local(path).await?;
        } else {
            let upload = self
                .store
                .put_multipart(&location)
                .await
                .map_err(std::io::Error::other)?;
            let mut writer =
                object_store::WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART_BYTES);
            let mut file = tokio::fs::File::open(local).await?;
            let mut part = vec![0u8; UPLOAD_PART_BYTES];
            loop {
                let read = tokio::io::AsyncReadExt::read(&mut file, &mut part).await?;
                if read == 0 {
                    break;
                }
                writer
                    .wait_for_capacity(2)
                    .await
                    .map_err(std::io::Error::other)?;
                writer.write(&part[..read]);
            }
            writer.finish().await.map_err(std::io::Error::other)?;
            std::fs::remove_file(local)?;
        }
        if let Some(cache) = &self.cache
            && cache.would_keep(size)
        {
            let bytes = self.get(path).await?;
            cache
                .insert_written(&location, bytes)
                .await
                .map_err(std::io::Error::other)?;
        }
        Ok(size)
    }

    /// fsync of a just-written local file and of the directories above it.
    async fn sync_local(&self, path: &str) -> std::io::Result<()> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        let relative = path.to_string();
        tokio::task::spawn_blocking(move || {
            let file_path = root.join(&relative);
            std::fs::File::open(&file_path)?.sync_all()?;
            let mut directory = file_path.parent().map(PathBuf::from);
            while let Some(current) = directory {
                std::fs::File::open(&current)?.sync_all()?;
                if current == root {
                    break;
                }
                directory = current.parent().map(PathBuf::from);
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)?
    }

    pub(crate) async fn get(&self, path: &str) -> std::io::Result<Bytes> {
        let result = self
            .store
            .get(&ObjectPath::from(path))
            .await
            .map_err(std::io::Error::other)?;
        result.bytes().await.map_err(std::io::Error::other)
    }

    /// The bytes `range` of a file.
    pub(crate) async fn get_range(
        &self,
        path: &str,
        range: std::ops::Range<u64>,
    ) -> std::io::Result<Bytes> {
        self.store
            .get_range(&ObjectPath::from(path), range)
            .await
            .map_err(std::io::Error::other)
    }

    /// Deletes `files` once `grace` has passed, in the background (readers that listed them may still be
    /// reading them until then).
    pub(crate) fn delete_after(
        &self,
        grace: std::time::Duration,
        files: Vec<crate::manifest::DataFile>,
    ) {
        if files.is_empty() {
            return;
        }
        let objects = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            for file in files {
                objects.delete(&file.path).await;
            }
        });
    }

    pub(crate) async fn delete(&self, path: &str) {
        if let Err(error) = self.store.delete(&ObjectPath::from(path)).await {
            tracing::warn!(path, %error, "could not delete data file");
        }
    }

    /// Every object path in the store, except what was set aside (`quarantine/`).
    pub(crate) async fn list_all(&self) -> std::io::Result<Vec<String>> {
        use futures::TryStreamExt;
        let objects: Vec<_> = self
            .store
            .list(None)
            .try_collect()
            .await
            .map_err(std::io::Error::other)?;
        Ok(objects
            .into_iter()
            .map(|object| object.location.to_string())
            .filter(|path| !path.starts_with(QUARANTINE_PREFIX))
            .collect())
    }

    /// Why the data file at `path` cannot be what the manifest says (`expected_bytes` long, Parquet
    /// holding `expected_rows` rows), if it cannot: missing, another size, without Parquet's `PAR1` magic
    /// at both ends, or with a footer that does not decode into metadata agreeing with the manifest (a
    /// damaged footer keeps the size and the magic, and would otherwise fail every read of the file).
    pub(crate) async fn data_file_problem(
        &self,
        path: &str,
        expected_bytes: usize,
        expected_rows: usize,
    ) -> Option<String> {
        let location = ObjectPath::from(path);
        let size = match self.store.head(&location).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => return Some("the file is missing".into()),
            Err(error) => return Some(format!("the file cannot be read: {error}")),
        };
        if size != expected_bytes as u64 {
            return Some(format!(
                "the file holds {size} bytes, the manifest says {expected_bytes}"
            ));
        }
        if size < 8 {
            return Some("the file is too short to be Parquet".into());
        }
        match self
            .store
            .get_ranges(&location, &[0..4, size - 4..size])
            .await
        {
            Ok(parts) if parts.iter().all(|part| part.as_ref() == b"PAR1") => {}
            Ok(_) => return Some("the file is not Parquet (no PAR1 magic)".into()),
            Err(error) => return Some(format!("the file cannot be read: {error}")),
        }
        self.footer_problem(&location, size, expected_rows).await
    }

    /// Whether the footer of a Parquet file of `size` bytes decodes, converts to an Arrow schema, counts
    /// `expected_rows` rows, and places every column chunk inside the file.
    async fn footer_problem(
        &self,
        location: &ObjectPath,
        size: u64,
        expected_rows: usize,
    ) -> Option<String> {
        let tail = match self.store.get_range(location, size - 8..size).await {
            Ok(tail) => tail,
            Err(error) => return Some(format!("the file cannot be read: {error}")),
        };
        let footer_length = u64::from(u32::from_le_bytes(
            tail[..4].try_into().expect("four bytes"),
        ));
        if footer_length + 12 > size {
            return Some(format!(
                "the footer claims {footer_length} bytes, more than the file holds"
            ));
        }
        let footer = match self
            .store
            .get_range(location, size - 8 - footer_length..size - 8)
            .await
        {
            Ok(footer) => footer,
            Err(error) => return Some(format!("the file cannot be read: {error}")),
        };
        let metadata =
            match parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&footer) {
                Ok(metadata) => metadata,
                Err(error) => return Some(format!("the footer does not decode: {error}")),
            };
        if let Err(error) = parquet::arrow::parquet_to_arrow_schema(
            metadata.file_metadata().schema_descr(),
            metadata.file_metadata().key_value_metadata(),
        ) {
            return Some(format!("the footer's schema is unreadable: {error}"));
        }
        let rows = metadata.file_metadata().num_rows();
        if rows != expected_rows as i64 {
            return Some(format!(
                "the footer counts {rows} rows, the manifest says {expected_rows}"
            ));
        }
        let data_end = size - 8 - footer_length;
        for row_group in metadata.row_groups() {
            for column in row_group.columns() {
                let (start, length) = column.byte_range();
                if start.saturating_add(length) > data_end {
                    return Some(format!(
                        "the footer places column {} past the end of the data",
                        column.column_path()
                    ));
                }
            }
        }
        None
    }

    /// Moves an object under `quarantine/` (kept for an operator to inspect, never read or listed);
    /// answers where it went.
    pub(crate) async fn set_aside(&self, path: &str) -> std::io::Result<String> {
        let target = format!("{QUARANTINE_PREFIX}{path}");
        self.store
            .rename(&ObjectPath::from(path), &ObjectPath::from(target.as_str()))
            .await
            .map_err(std::io::Error::other)?;
        Ok(target)
    }
}

/// `s3://bucket/some/prefix` → (`bucket`, `some/prefix`); the prefix may be empty.
fn parse_s3_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    (!bucket.is_empty()).then_some((bucket, prefix))
}

/// Encodes a name for use as one path segment: ASCII letters and digits stay, every other byte
/// becomes `-XX` (hex), so the segment is unambiguous and safe on every object store.
pub(crate) fn encode_segment(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("-{byte:02x}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_name_a_bucket_and_an_optional_prefix() {
        assert_eq!(parse_s3_url("s3://events"), Some(("events", "")));
        assert_eq!(parse_s3_url("s3://events/"), Some(("events", "")));
        assert_eq!(
            parse_s3_url("s3://events/keyhole/prod/"),
            Some(("events", "keyhole/prod"))
        );
        assert_eq!(parse_s3_url("s3:///prefix"), None);
        assert_eq!(parse_s3_url("gs://events"), None);
    }

    #[test]
    fn segments_are_safe_and_distinct() {
        assert_eq!(encode_segment("page views/2"), "page-20views-2f2");
        assert_ne!(encode_segment("a-2d"), encode_segment("a--2d"));
        assert_eq!(encode_segment("abc"), "abc");
    }
}
