//! `funnel`: for each step, the distinct actors (values of its `actor_property`) among the step's events,
//! each step read through the same scoped, filtered frame as every query.
//!
//! Step k counts the actors counted at the previous constraining step who also did step k (order in time
//! is not enforced, as in Keen). An `inverted` step counts those who did *not* do it. An `optional` step is
//! reported but does not constrain later steps. A step without its own timeframe/timezone takes the
//! root's; without either, all time. Response: `{"result": [counts], "steps": [steps with defaults
//! filled], "actors": [...]}` — `actors` only when a step asks `with_actors` (null for the others).

use std::collections::HashMap;

use arrow::array::Array;

use keyhole_model::query::{FunnelStep, GroupBy, Query};
use serde_json::{Value, json};

use crate::plan::{EventSource, Scanned, filtered_frame, group_key_columns};
use crate::render::{cell, compare};
use crate::{Result, Scope};

/// Distinct actors of one step, keyed by their JSON text.
async fn step_actors(
    source: &EventSource,
    query: &Query,
    step: &FunnelStep,
    scope: &Scope,
    now: i64,
) -> Result<(HashMap<String, Value>, Scanned)> {
    let timezone = step.timezone.unwrap_or(query.timezone);
    let range = step
        .timeframe
        .as_ref()
        .or(query.timeframe.as_ref())
        .map(|timeframe| timeframe.resolve(now, timezone))
        .transpose()?;
    let filtered = filtered_frame(source, scope, &step.collection, range, &step.filters).await?;
    let scanned = filtered.scanned.clone();
    let actor = GroupBy::Property(step.actor_property.clone());
    let keys: Vec<_> = group_key_columns(&filtered.schema, &actor)
        .into_iter()
        .map(|(kind, expr)| expr.alias(kind.suffix()))
        .collect();
    let mut actors = HashMap::new();
    if keys.is_empty() {
        return Ok((actors, scanned));
    }
    let batches = filtered.frame.aggregate(keys, vec![])?.collect().await?;
    actors.reserve(
        batches
            .iter()
            .map(arrow::array::RecordBatch::num_rows)
            .sum(),
    );
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let value = (0..batch.num_columns())
                .find(|index| batch.column(*index).is_valid(row))
                .map_or(Value::Null, |index| {
                    let kind =
                        keyhole_model::ValueKind::from_suffix(batch.schema().field(index).name());
                    cell(batch.column(index).as_ref(), row, kind)
                });
            if !value.is_null() {
                actors.insert(value.to_string(), value);
            }
        }
    }
    Ok((actors, scanned))
}

pub(crate) async fn run(
    source: &EventSource,
    query: &Query,
    scope: &Scope,
    now: i64,
) -> Result<(Value, Scanned)> {
    let mut counts = Vec::with_capacity(query.steps.len());
    let mut actor_lists = Vec::with_capacity(query.steps.len());
    let mut constraining: Option<HashMap<String, Value>> = None;
    let mut events_scanned = Scanned::default();
    for step in &query.steps {
        let (actors, scanned) = step_actors(source, query, step, scope, now).await?;
        events_scanned.add(scanned);
        // An optional step must leave the constraining set as it was, so it filters a copy.
        let previous = if step.optional {
            constraining.clone()
        } else {
            constraining.take()
        };
        let matched: HashMap<String, Value> = match previous {
            None => actors,
            Some(mut previous) => {
                previous.retain(|key, _| actors.contains_key(key) != step.inverted);
                previous
            }
        };
        counts.push(json!(matched.len()));
        actor_lists.push(step.with_actors.then(|| {
            let mut values: Vec<Value> = matched.values().cloned().collect();
            values.sort_by(compare);
            Value::Array(values)
        }));
        if !step.optional {
            constraining = Some(matched);
        }
    }
    let mut body = json!({
        "result": counts,
        "steps": query.steps.iter().map(|step| step.echo.clone()).collect::<Vec<_>>(),
    });
    if actor_lists.iter().any(Option::is_some) {
        body["actors"] = Value::Array(
            actor_lists
                .into_iter()
                .map(|list| list.unwrap_or(Value::Null))
                .collect(),
        );
    }
    Ok((body, events_scanned))
}
