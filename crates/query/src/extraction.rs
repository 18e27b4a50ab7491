//! `extraction`: the matching events themselves, rebuilt from the type-drift columns into the JSON they
//! were written as (dotted paths back into nested objects, each value with its own type).
//!
//! Design: events come in `keen.timestamp` order, oldest first; `latest: N` keeps the N most recent (still
//! oldest first). A synchronous extraction returns at most 100,000 events, as Keen's did; past that it is
//! refused with a hint to narrow it. `property_names` keeps only the named paths (a prefix keeps its whole
//! subtree). `email` is the server's to act on (it mails what this returns).

use arrow::array::Array;
use arrow::record_batch::RecordBatch;
use keyhole_model::ValueKind;
use keyhole_model::flat::{CREATED_AT_COLUMN, ID_COLUMN, TIMESTAMP_COLUMN, set_path};
use keyhole_model::query::{Query, QueryError};
use serde_json::{Map, Value, json};

use crate::columns::column;
use crate::plan::{EventSource, Scanned, query_frame};
use crate::render::cell;
use crate::{Result, Scope};

/// Most events one synchronous extraction returns.
pub(crate) const MAX_EXTRACTED_EVENTS: usize = 100_000;

/// Rebuilds the event in `row` of `batch`.
fn event_at(batch: &RecordBatch, row: usize) -> Value {
    let mut event = Map::new();
    for (index, field) in batch.schema().fields().iter().enumerate() {
        let array = batch.column(index);
        if array.is_null(row) {
            continue;
        }
        let name = field.name();
        if matches!(
            name.as_str(),
            TIMESTAMP_COLUMN | CREATED_AT_COLUMN | ID_COLUMN
        ) {
            set_path(&mut event, name, cell(array.as_ref(), row, None));
            continue;
        }
        let Some((path, kind)) = ValueKind::split_column_name(name) else {
            continue;
        };
        if path == keyhole_model::event::UNIQUENESS_SCOPE_PATH {
            continue;
        }
        let value = match kind {
            ValueKind::Null => Value::Null,
            ValueKind::EmptyObject => Value::Object(Map::new()),
            kind => cell(array.as_ref(), row, Some(kind)),
        };
        set_path(&mut event, path, value);
    }
    Value::Object(event)
}

fn select_properties(event: &Value, names: &[String]) -> Value {
    let mut selected = Map::new();
    for name in names {
        let mut current = Some(event);
        for part in name.split('.') {
            current = current.and_then(|value| value.get(part));
        }
        if let Some(value) = current {
            set_path(&mut selected, name, value.clone());
        }
    }
    Value::Object(selected)
}

pub(crate) async fn run(
    source: &EventSource,
    query: &Query,
    scope: &Scope,
    now: i64,
) -> Result<(Value, Scanned)> {
    let (filtered, _) = query_frame(source, scope, query, now).await?;
    let scanned = filtered.scanned.clone();
    let timestamp = column(TIMESTAMP_COLUMN);
    let frame = match query.latest {
        Some(latest) => filtered
            .frame
            .sort(vec![timestamp.sort(false, false)])?
            .limit(0, Some(latest.min(MAX_EXTRACTED_EVENTS)))?,
        None => filtered
            .frame
            .sort(vec![timestamp.sort(true, false)])?
            .limit(0, Some(MAX_EXTRACTED_EVENTS + 1))?,
    };
    let batches = frame.collect().await?;
    let mut events: Vec<Value> = batches
        .iter()
        .flat_map(|batch| (0..batch.num_rows()).map(move |row| event_at(batch, row)))
        .collect();
    if events.len() > MAX_EXTRACTED_EVENTS {
        return Err(QueryError::LimitExceeded(format!(
            "This extraction matches more than {MAX_EXTRACTED_EVENTS} events; narrow it with a timeframe, filters or latest."
        ))
        .into());
    }
    if query.latest.is_some() {
        events.reverse();
    }
    if let Some(names) = &query.property_names {
        events = events
            .iter()
            .map(|event| select_properties(event, names))
            .collect();
    }
    Ok((json!({ "result": events }), scanned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_rebuild_nested_objects_and_selection_keeps_subtrees() {
        let mut event = Map::new();
        set_path(&mut event, "user.address.city", json!("Berlin"));
        set_path(&mut event, "user.id", json!(7));
        set_path(
            &mut event,
            "keen.timestamp",
            json!("2024-01-01T00:00:00.000Z"),
        );
        let event = Value::Object(event);
        assert_eq!(
            event,
            json!({"user": {"address": {"city": "Berlin"}, "id": 7}, "keen": {"timestamp": "2024-01-01T00:00:00.000Z"}})
        );
        assert_eq!(
            select_properties(&event, &["user.address".into(), "nope".into()]),
            json!({"user": {"address": {"city": "Berlin"}}})
        );
    }
}
