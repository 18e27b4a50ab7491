//! The only way route code reaches events. [`EventEngines`] holds the storage engine and the query
//! engine, and nothing outside this module can reach either: its fields are private here. A route reads
//! through a [`ScopedReader`], writes through an [`EventWriter`] and deletes through an [`EventDeleter`],
//! and all three are constructed only in this module, from a resolved grant — by the
//! [`auth::Authorized`] extractor (a child module, so it may call the private constructors) for the
//! policies that allow the access. A route cannot name a storage handle, cannot build a
//! [`keyhole_query::Scope`] itself (it is built here, from the reader's grant, for every read), and so
//! cannot skip the key's filters.
//!
//! Design: a reader keeps its grant rather than a scope: the scope depends on the time of each read (a
//! key's look-back window), so it is rebuilt per read. Results a key asked to keep (cached queries) are
//! refreshed later through the reader of the request that stored them, so background work has no other
//! way in either.

pub(crate) mod administrator;
pub mod auth;

use std::sync::Arc;

use keyhole_model::Grant;
use keyhole_model::PreparedEvent;
use keyhole_model::query::Query;
use keyhole_model::timestamp::EpochMillis;
use keyhole_query::{ExecError, MatchedEvents, QueryEngine, Scope, Visibility};
use keyhole_storage::{CollectionId, CollectionSchema, Storage, StorageError, WriteOutcome};
use serde_json::Value;

/// The engines behind every read, write and delete of events; reachable only through the handles below.
/// Shared behind one `Arc`: every authorized request takes a copy.
#[derive(Clone)]
pub(crate) struct EventEngines {
    shared: Arc<Engines>,
}

struct Engines {
    storage: Storage,
    queries: QueryEngine,
}

impl EventEngines {
    pub(crate) fn new(storage: Storage, queries: QueryEngine) -> EventEngines {
        EventEngines {
            shared: Arc::new(Engines { storage, queries }),
        }
    }

    /// Orders `project_id`'s future Parquet files by the properties its usable access keys filter on
    /// (`model::grant::clustering_properties`), so that a key's scoped reads skip other tenants' data.
    pub(crate) fn set_clustering(&self, project_id: &str, grants: &[Grant]) {
        let properties = keyhole_model::grant::clustering_properties(grants);
        tracing::debug!(project_id, ?properties, "clustering set");
        self.shared.storage.set_clustering(project_id, properties);
    }
}

/// Which of a grant's filters a read applies: a query's, or a saved query's (which adds
/// `options.saved_queries.filters`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadPurpose {
    Queries,
    SavedQueries,
}

/// Reads of one project's events as one grant sees them. Every read builds its [`Scope`] from the grant
/// at the time of the read; nothing here reads without one.
#[derive(Clone)]
pub(crate) struct ScopedReader {
    grant: Arc<Grant>,
    purpose: ReadPurpose,
    engines: EventEngines,
}

impl ScopedReader {
    fn new(grant: Arc<Grant>, purpose: ReadPurpose, engines: &EventEngines) -> ScopedReader {
        ScopedReader {
            grant,
            purpose,
            engines: engines.clone(),
        }
    }

    /// The same grant, reading as a saved query does.
    #[must_use]
    pub(crate) fn for_saved_queries(&self) -> ScopedReader {
        ScopedReader {
            purpose: ReadPurpose::SavedQueries,
            ..self.clone()
        }
    }

    /// Whether the grant sees every event of the project (no forced filter, no look-back window): only
    /// such a grant may delete a whole collection or a property, and its schema needs no narrowing.
    fn sees_everything(&self) -> bool {
        !self
            .scope(keyhole_model::query::now_millis())
            .is_restricted()
    }

    fn scope(&self, now: EpochMillis) -> Scope {
        match self.purpose {
            ReadPurpose::Queries => Scope::for_grant(&self.grant, now),
            ReadPurpose::SavedQueries => Scope::for_saved_query(&self.grant, now),
        }
    }

    pub(crate) fn grant(&self) -> &Arc<Grant> {
        &self.grant
    }

    pub(crate) fn project_id(&self) -> &str {
        self.grant.project_id()
    }

    /// The earliest event time the grant may read at `now`, when it limits how far back reads look.
    pub(crate) fn window_start(&self, now: EpochMillis) -> Option<EpochMillis> {
        self.scope(now).earliest_millis()
    }

    fn collection_id(&self, collection: &str) -> CollectionId {
        CollectionId {
            project: self.project_id().to_string(),
            collection: collection.to_string(),
        }
    }

    /// Runs `query` at `now` (the whole Keen response body).
    pub(crate) async fn run(&self, query: &Query, now: EpochMillis) -> Result<Value, ExecError> {
        self.engines
            .shared
            .queries
            .run(query, &self.scope(now), now)
            .await
    }

    /// Up to `limit` events `selection` matches, as the grant sees them (for deletes).
    pub(crate) async fn matching_events(
        &self,
        selection: &Query,
        now: EpochMillis,
        limit: usize,
    ) -> Result<MatchedEvents, ExecError> {
        let scope = self.scope(now);
        self.engines
            .shared
            .queries
            .matching_events(selection, &scope, now, limit)
            .await
    }

    /// The rows and bytes of a collection's Parquet files (events not yet flushed are in neither): what
    /// the whole collection occupies, so told only to a grant that sees every event (zero otherwise).
    pub(crate) fn stored_file_totals(&self, collection: &str) -> (u64, u64) {
        if !self.sees_everything() {
            return (0, 0);
        }
        let files = self
            .engines
            .shared
            .storage
            .data_files(&self.collection_id(collection));
        files.iter().fold((0, 0), |(rows, bytes), file| {
            (rows + file.rows as u64, bytes + file.bytes as u64)
        })
    }

    /// The names of the project's collections (each one's schema is told by [`ScopedReader::schema`],
    /// which hides collections the grant sees no event of).
    pub(crate) fn collection_names(&self) -> Vec<String> {
        let collections = self.engines.shared.storage.collections(self.project_id());
        collections.into_iter().map(|(name, _)| name).collect()
    }

    /// A collection's schema as the grant may see it: in a restricted scope, only the properties that
    /// events visible to it carry; `None` when it sees none of the collection's events, or there are none.
    pub(crate) async fn schema(
        &self,
        collection: &str,
    ) -> Result<Option<CollectionSchema>, ExecError> {
        let id = self.collection_id(collection);
        let Some(mut schema) = self.engines.shared.storage.collection_schema(&id) else {
            return Ok(None);
        };
        let scope = self.scope(keyhole_model::query::now_millis());
        // An unrestricted grant sees the whole schema: no query slot is taken to learn so.
        if !scope.is_restricted() {
            return Ok(Some(schema));
        }
        let visible = match self
            .engines
            .shared
            .queries
            .visible_columns(&scope, collection)
            .await?
        {
            Visibility::Everything => return Ok(Some(schema)),
            Visibility::Nothing => return Ok(None),
            Visibility::Columns(columns) => columns,
        };
        schema.properties.retain(|path, property| {
            property
                .kinds
                .retain(|kind| visible.contains(&kind.column_name(path)));
            let Some(first_visible) = property.kinds.iter().next().copied() else {
                return false;
            };
            if !property.kinds.contains(&property.latest) {
                property.latest = first_visible;
            }
            true
        });
        Ok(Some(schema))
    }

    /// The storage's change version (see `Storage::change_version`), for results kept between reads.
    pub(crate) fn change_version(&self) -> u64 {
        self.engines.shared.storage.change_version()
    }

    /// The earliest event time of `collection` changed after `version` (see
    /// `Storage::earliest_change_since`).
    pub(crate) fn earliest_change_since(&self, collection: &str, version: u64) -> Option<i64> {
        let id = self.collection_id(collection);
        self.engines
            .shared
            .storage
            .earliest_change_since(&id, version)
    }
}

/// Writes of events into one project, for one grant.
#[derive(Clone)]
pub(crate) struct EventWriter {
    grant: Arc<Grant>,
    engines: EventEngines,
}

impl EventWriter {
    fn new(grant: Arc<Grant>, engines: &EventEngines) -> EventWriter {
        EventWriter {
            grant,
            engines: engines.clone(),
        }
    }

    pub(crate) fn grant(&self) -> &Arc<Grant> {
        &self.grant
    }

    /// Stores prepared events in `collection` of the grant's project (see `Storage::append`).
    pub(crate) async fn append(
        &self,
        collection: &str,
        events: Vec<PreparedEvent>,
    ) -> Result<Vec<WriteOutcome>, StorageError> {
        let id = CollectionId {
            project: self.grant.project_id().to_string(),
            collection: collection.to_string(),
        };
        self.engines.shared.storage.append(id, events).await
    }

    /// The most property columns a collection may hold.
    pub(crate) fn max_columns_per_collection(&self) -> usize {
        self.engines.shared.storage.max_columns_per_collection()
    }
}

/// Deletes in one project, for one grant. Which events a delete removes is decided by its reader
/// ([`EventDeleter::reader`]): a scoped key deletes only what it can see.
#[derive(Clone)]
pub(crate) struct EventDeleter {
    reader: ScopedReader,
}

impl EventDeleter {
    fn new(grant: Arc<Grant>, engines: &EventEngines) -> EventDeleter {
        EventDeleter {
            reader: ScopedReader::new(grant, ReadPurpose::Queries, engines),
        }
    }

    /// The reads that select what to delete.
    pub(crate) fn reader(&self) -> &ScopedReader {
        &self.reader
    }

    fn storage(&self) -> &Storage {
        &self.reader.engines.shared.storage
    }

    /// Deletes the events of `collection` with these ids, found by [`ScopedReader::matching_events`].
    pub(crate) async fn delete_events(
        &self,
        collection: &str,
        matched: MatchedEvents,
    ) -> Result<usize, StorageError> {
        let id = self.reader.collection_id(collection);
        self.storage()
            .delete_events(id, matched.ids, matched.earliest, matched.latest)
            .await
    }

    /// Deletes a whole collection; only a grant that sees every event may (the master key).
    pub(crate) async fn delete_collection(&self, collection: &str) -> Result<bool, StorageError> {
        if !self.reader.sees_everything() {
            return Ok(false);
        }
        let id = self.reader.collection_id(collection);
        self.storage().delete_collection(id).await?;
        Ok(true)
    }

    /// Writes the events in memory to Parquet files and retires the write-ahead log up to now, so the
    /// log keeps no deleted event; only a grant that sees every event may.
    pub(crate) async fn flush_retiring_log(&self) -> Result<bool, StorageError> {
        if !self.reader.sees_everything() {
            return Ok(false);
        }
        self.storage().flush_retiring_log().await?;
        Ok(true)
    }

    /// Deletes a property from every event of `collection`; only a grant that sees every event may.
    pub(crate) async fn delete_property(
        &self,
        collection: &str,
        property: String,
    ) -> Result<bool, StorageError> {
        if !self.reader.sees_everything() {
            return Ok(false);
        }
        let id = self.reader.collection_id(collection);
        self.storage().delete_property(id, property).await
    }
}

#[cfg(test)]
mod tests {
    /// Module privacy already keeps route code away from the engines (their fields and the handles'
    /// constructors are private to this module); this also keeps it from naming them, so a route added
    /// later cannot take a `Storage` or build a `Scope` of its own by a new constructor either.
    #[test]
    fn only_this_module_names_the_event_engines_or_builds_a_scope() {
        let source_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let forbidden = [
            "keyhole_storage::Storage",
            "Storage::",
            "QueryEngine",
            "Scope::for_",
            "Scope {",
        ];
        // The crate root constructs the engines once, at start, and hands them to `EventEngines::new`.
        let allowed_files = ["lib.rs"];
        let mut offenders = Vec::new();
        for entry in std::fs::read_dir(&source_dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() || allowed_files.contains(&name.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for needle in forbidden {
                // A needle ending in a name matches that name only (`StorageConfig` is no `Storage`).
                let whole_name = needle.ends_with(|last: char| last.is_alphanumeric());
                let named = text.match_indices(needle).any(|(at, _)| {
                    let next = text[at + needle.len()..].chars().next();
                    !whole_name || !next.is_some_and(|next| next.is_alphanumeric() || next == '_')
                });
                if named {
                    offenders.push(format!("{name}: {needle}"));
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "route code must read through access::ScopedReader: {offenders:?}"
        );
    }
}
