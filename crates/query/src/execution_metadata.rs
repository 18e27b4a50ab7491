//! Keen's `execution_metadata` (`include_metadata: true`): `events_scanned`, `properties_per_event`,
//! `total_properties_scanned` and `total_processing_time`, all within the caller's scope. A read in a
//! restricted scope counts only the events the scope can see, and only the properties some of those events
//! carry (`visibility`), so a tenant key learns nothing of other tenants' data; an unrestricted read counts
//! every event it looked at and the collection's whole schema.
//!
//! `total_properties_scanned` sums, over the query's reads, the events read times the properties of the
//! collection read; `properties_per_event` is that divided by `events_scanned`, rounded (0 without events).

use keyhole_model::ValueKind;
use keyhole_storage::CollectionId;

use crate::plan::{EventSource, Scanned, filtered_frame};
use crate::visibility::{Visibility, visible_columns};
use crate::{Result, Scope};

/// What a query's reads scanned, as its caller may learn it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counted {
    pub(crate) events_scanned: usize,
    pub(crate) total_properties_scanned: usize,
}

impl Counted {
    /// The properties of an average scanned event.
    pub(crate) fn properties_per_event(&self) -> usize {
        if self.events_scanned == 0 {
            return 0;
        }
        (self.total_properties_scanned + self.events_scanned / 2) / self.events_scanned
    }
}

/// Counts what `scanned`'s reads scanned, as `scope` sees it.
pub(crate) async fn count(
    source: &EventSource,
    scope: &Scope,
    scanned: &Scanned,
) -> Result<Counted> {
    let mut counted = Counted::default();
    for read in &scanned.reads {
        let rows = if let Some(rows) = read.known_rows {
            rows
        } else {
            let filtered = filtered_frame(source, scope, &read.collection, read.range, &[]).await?;
            filtered.frame.count().await?
        };
        let properties = visible_properties(source, scope, &read.collection).await?;
        counted.events_scanned += rows;
        counted.total_properties_scanned += rows * properties;
    }
    Ok(counted)
}

/// How many properties (paths, whatever their kinds) of `collection` the scope may know of.
async fn visible_properties(
    source: &EventSource,
    scope: &Scope,
    collection: &str,
) -> Result<usize> {
    match visible_columns(source, scope, collection).await? {
        Visibility::Everything => {
            let id = CollectionId {
                project: scope.project_id().to_string(),
                collection: collection.to_string(),
            };
            Ok(source
                .storage
                .collection_schema(&id)
                .map_or(0, |schema| schema.properties.len()))
        }
        Visibility::Nothing => Ok(0),
        Visibility::Columns(columns) => {
            let paths: std::collections::BTreeSet<&str> = columns
                .iter()
                .filter_map(|column| ValueKind::split_column_name(column).map(|(path, _)| path))
                .collect();
            Ok(paths.len())
        }
    }
}
