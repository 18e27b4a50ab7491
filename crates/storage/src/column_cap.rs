//! The per-collection column cap (`StorageConfig::max_columns_per_collection`): which events of one group
//! commit may be stored without giving their collection more `{path}#{kind}` columns than the cap.
//!
//! Design: decided once per group, under one short hold of the state lock, before anything is logged (a
//! refused event is never written). A collection whose current columns plus every property of the group's
//! events stays within the cap — the usual case — is admitted whole without a lookup per property; only a
//! collection near its cap is checked event by event, counting the columns earlier events of the group add.
//! A collection deleted earlier in the same group is counted with its old columns, which can only refuse
//! an event that a later group would admit.

use std::collections::{HashMap, HashSet};

use keyhole_model::PreparedEvent;

use crate::manifest::{CollectionId, CollectionSchema};
use crate::state::{CollectionState, State};

/// For each write of a group (in order), which of its events fit under the cap.
pub(crate) fn admit_group(
    state: &State,
    writes: &[(&CollectionId, &[PreparedEvent])],
    max_columns: usize,
) -> Vec<Vec<bool>> {
    // Per collection: the columns it has, and at most how many the group could add.
    let mut counts: HashMap<&CollectionId, (usize, usize)> = HashMap::new();
    for (collection, events) in writes {
        let (_, bound) = counts.entry(collection).or_insert_with(|| {
            let existing = column_count(
                state
                    .collections
                    .get(*collection)
                    .map(CollectionState::schema),
            );
            (existing, existing)
        });
        *bound += events
            .iter()
            .map(|event| event.flat.properties.len())
            .sum::<usize>();
    }
    let mut pending: HashMap<&CollectionId, HashSet<String>> = HashMap::new();
    writes
        .iter()
        .map(|(collection, events)| {
            let (existing_columns, bound) = counts[collection];
            if bound <= max_columns {
                return vec![true; events.len()];
            }
            let existing = state.collections.get(*collection);
            let room = max_columns.saturating_sub(existing_columns);
            let pending = pending.entry(collection).or_default();
            events
                .iter()
                .map(|event| admit_event(existing, event, pending, room))
                .collect()
        })
        .collect()
}

fn column_count(schema: Option<&CollectionSchema>) -> usize {
    schema.map_or(0, |schema| {
        schema
            .properties
            .values()
            .map(|property| property.kinds.len())
            .sum()
    })
}

/// Whether `event` fits in the `room` for new columns the collection has, given the columns `pending`
/// earlier events of the group add (extended when it fits).
fn admit_event(
    existing: Option<&CollectionState>,
    event: &PreparedEvent,
    pending: &mut HashSet<String>,
    room: usize,
) -> bool {
    let mut new_columns = Vec::new();
    for (path, value) in &event.flat.properties {
        let kind = value.kind();
        let known = existing.is_some_and(|collection| collection.has_column(path, kind));
        if known {
            continue;
        }
        let name = kind.column_name(path);
        if !pending.contains(&name) {
            new_columns.push(name);
        }
    }
    if pending.len() + new_columns.len() > room {
        return false;
    }
    pending.extend(new_columns);
    true
}
