//! The events a delete removes: those of the query's collection, timeframe and filters that the
//! caller's scope can see — found through the same `query_frame` (and so the same forced-filter choke
//! point) every read uses, so a key's deletes are confined to what its filters let it read.

use std::collections::HashSet;

use arrow::array::{Array, AsArray};
use keyhole_model::flat::{ID_COLUMN, TIMESTAMP_COLUMN};
use keyhole_model::query::Query;

use crate::columns::column;
use crate::plan::{EventSource, query_frame};
use crate::{ExecError, Result, Scope};

/// Ids and the time span of matched events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MatchedEvents {
    /// The matched events' `keen.id`s.
    pub ids: HashSet<String>,
    /// The earliest `keen.timestamp` among them (milliseconds), so a delete rewrites only the days it touches.
    pub earliest: i64,
    /// The latest `keen.timestamp` among them (milliseconds).
    pub latest: i64,
}

/// Up to `limit` matching events.
pub(crate) async fn matching_events(
    source: &EventSource,
    query: &Query,
    scope: &Scope,
    now: i64,
    limit: usize,
) -> Result<MatchedEvents> {
    let (filtered, _) = query_frame(source, scope, query, now).await?;
    let frame = filtered
        .frame
        .select(vec![column(ID_COLUMN), column(TIMESTAMP_COLUMN)])?
        .limit(0, Some(limit))?;
    let mut matched = MatchedEvents {
        ids: HashSet::new(),
        earliest: i64::MAX,
        latest: i64::MIN,
    };
    for batch in frame.collect().await? {
        let ids = batch.column(0).as_string_opt::<i32>();
        let times = batch
            .column(1)
            .as_primitive_opt::<arrow::datatypes::TimestampMillisecondType>();
        let (Some(ids), Some(times)) = (ids, times) else {
            return Err(ExecError::Internal(
                "keen.id or keen.timestamp has an unexpected type".into(),
            ));
        };
        for row in 0..batch.num_rows() {
            if ids.is_null(row) || times.is_null(row) {
                continue;
            }
            matched.ids.insert(ids.value(row).to_string());
            matched.earliest = matched.earliest.min(times.value(row));
            matched.latest = matched.latest.max(times.value(row));
        }
    }
    Ok(matched)
}
