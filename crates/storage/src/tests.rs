//! The storage suite (`testsuite`) declared for this crate's backends: the local WAL with Parquet files in
//! the data directory, the same in a real S3-compatible bucket, and the journal in a shared log (the
//! in-memory one, `memory_log`) as several nodes run — so shared mode has the whole suite. The server
//! crate declares it for the PostgreSQL log.

use std::sync::Arc;

use crate::shared::SharedLogHandle;
use crate::testsuite::Backend;

pub(crate) use crate::testsuite::{count, id, prepared};

mod data_dir {
    async fn backend() -> Option<super::Backend> {
        Some(super::Backend::data_dir())
    }
    crate::storage_test_suite!(backend);
}

mod s3 {
    async fn backend() -> Option<super::Backend> {
        super::Backend::s3()
    }
    crate::storage_test_suite!(backend);
}

mod shared_memory_log {
    use super::{Arc, Backend, SharedLogHandle};

    /// A fresh in-memory log; after the test, a check that the engine journaled there.
    async fn backend() -> Option<Backend> {
        let log = crate::memory_log::MemoryLog::new();
        let mut backend = Backend::shared_log(SharedLogHandle(Arc::new(log.clone())));
        backend.after = Some(Box::new(move || {
            assert!(log.appended() > 0, "the engine journaled in the shared log");
        }));
        Some(backend)
    }
    crate::storage_test_suite!(backend);
}
