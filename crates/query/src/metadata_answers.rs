//! Answers the metadata gives without reading any event: a plain `count` (the manifest's row counts plus
//! the rows in memory) and a plain `minimum`/`maximum` of a number property (the Parquet row groups'
//! statistics plus the rows in memory, `Storage::number_range`). "Plain" means no filters, timeframe,
//! group_by or interval, in a scope that hides nothing: a key with forced filters or a look-back always runs
//! the plan, so they apply. Anything the metadata cannot answer (a file without statistics for the column)
//! returns `None` and the plan runs.

use keyhole_model::ValueKind;
use keyhole_model::query::{AnalysisType, Query};
use keyhole_storage::{CollectionId, TimeRange};
use serde_json::{Value, json};

use crate::plan::{EventSource, Scanned};
use crate::render::number;
use crate::{Result, Scope};

/// The body of `query` from metadata alone, with what it counts as scanned; `None` to run the plan.
pub(crate) async fn answer(
    source: &EventSource,
    query: &Query,
    scope: &Scope,
) -> Result<Option<(Value, Scanned)>> {
    let plain = query.filters.is_empty()
        && query.group_by.is_empty()
        && query.interval.is_none()
        && query.timeframe.is_none()
        && !scope.is_restricted();
    let (true, Some(collection)) = (plain, &query.collection) else {
        return Ok(None);
    };
    let id = CollectionId {
        project: scope.project_id().to_string(),
        collection: collection.clone(),
    };
    let result = match (query.analysis, &query.target_property) {
        (AnalysisType::Count, _) => None,
        (AnalysisType::Minimum | AnalysisType::Maximum, Some(target))
            if holds_numbers(source, &id, target) =>
        {
            Some(format!("{target}#{}", ValueKind::Num.suffix()))
        }
        _ => return Ok(None),
    };
    let snapshot = source.storage.snapshot(&id, TimeRange::ALL)?;
    let rows = snapshot.rows();
    let value = match result {
        None => json!(rows),
        Some(column) => {
            let Some((low, high)) = source.storage.number_range(&snapshot, &column).await? else {
                return Ok(None);
            };
            number(if query.analysis == AnalysisType::Minimum {
                low
            } else {
                high
            })
        }
    };
    Ok(Some((
        json!({ "result": value }),
        Scanned::of_rows(collection, rows),
    )))
}

fn holds_numbers(source: &EventSource, id: &CollectionId, target: &str) -> bool {
    source
        .storage
        .collection_schema(id)
        .and_then(|schema| {
            schema
                .properties
                .get(target)
                .map(|property| property.kinds.contains(&ValueKind::Num))
        })
        .unwrap_or(false)
}
