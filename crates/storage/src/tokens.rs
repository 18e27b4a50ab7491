//! Rebuilding the uniqueness-token index at start-up from the Parquet files (the WAL replay adds the
//! unflushed rest), and keeping it to Keen's window: a token older than [`UNIQUENESS_WINDOW_MILLIS`]
//! blocks nothing, so it is dropped at start-up and at every flush ([`prune_tokens`]), and the index
//! holds at most a month of tokens. Only collections that ever stored a token are read, and only their
//! token, scope and creation-time columns, by range (never a whole file in memory). A file that cannot be
//! read is reported, not fatal: the engine sets it aside and starts.

use std::collections::HashMap;

use arrow::array::{Array, StringArray, TimestampMillisecondArray};
use futures::StreamExt;
use parquet::arrow::ProjectionMask;

use crate::config::Result;
use crate::manifest::{CollectionId, DataFile};
use crate::objects::ObjectFiles;
use crate::state::State;
use keyhole_model::ValueKind;
use keyhole_model::event::{UNIQUENESS_SCOPE_PATH, uniqueness_key};
use keyhole_model::flat::CREATED_AT_COLUMN;

/// How long a uniqueness token blocks duplicates (Keen: 31 days).
pub(crate) const UNIQUENESS_WINDOW_MILLIS: i64 = 31 * 24 * 3600 * 1000;
/// Uniqueness tokens seen per collection, with the `keen.created_at` of the event that used each.
pub(crate) type TokenIndex = HashMap<CollectionId, HashMap<String, i64>>;

const TOKEN_PATH: &str = "keen.uniqueness_token";

/// The index, and the files that could not be read (each with why): the caller sets those aside, so one
/// damaged file never keeps the engine from starting.
pub(crate) async fn load_tokens_from_files(
    objects: &ObjectFiles,
    state: &State,
) -> Result<(TokenIndex, Vec<(CollectionId, DataFile, String)>)> {
    let mut index = TokenIndex::new();
    let mut unreadable = Vec::new();
    for (id, collection) in &state.collections {
        if !collection.schema().properties.contains_key(TOKEN_PATH) {
            continue;
        }
        let tokens = index.entry(id.clone()).or_default();
        for file in &collection.files {
            if let Err(error) = read_file_tokens(objects, file, tokens).await {
                unreadable.push((id.clone(), file.clone(), error.to_string()));
            }
        }
    }
    prune_tokens(&mut index, chrono::Utc::now().timestamp_millis());
    Ok((index, unreadable))
}

/// Adds the tokens of one file, reading only the token, scope and creation-time columns.
async fn read_file_tokens(
    objects: &ObjectFiles,
    file: &DataFile,
    tokens: &mut std::collections::HashMap<String, i64>,
) -> std::result::Result<(), parquet::errors::ParquetError> {
    let token_column = ValueKind::Str.column_name(TOKEN_PATH);
    let scope_column = ValueKind::Str.column_name(UNIQUENESS_SCOPE_PATH);
    let builder = crate::parquet_reader::stream_builder(objects, file).await?;
    // Column names contain dots, so the projection goes by root index, not by dotted name.
    let arrow_schema = builder.schema().clone();
    let (Ok(token_index), Ok(created_index)) = (
        arrow_schema.index_of(&token_column),
        arrow_schema.index_of(CREATED_AT_COLUMN),
    ) else {
        return Ok(());
    };
    let mut roots = vec![token_index, created_index];
    roots.extend(arrow_schema.index_of(&scope_column).ok());
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut stream = builder.with_projection(mask).build()?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let (Some(token_values), Some(created_values)) = (
            batch
                .column_by_name(&token_column)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>()),
            batch
                .column_by_name(CREATED_AT_COLUMN)
                .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>()),
        ) else {
            continue;
        };
        let scope_values = batch
            .column_by_name(&scope_column)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>());
        for row in 0..batch.num_rows() {
            if token_values.is_null(row) {
                continue;
            }
            let scope = scope_values
                .filter(|scopes| scopes.is_valid(row))
                .map(|scopes| scopes.value(row));
            let created_at = created_values.value(row);
            let entry = tokens
                .entry(uniqueness_key(scope, token_values.value(row)))
                .or_insert(created_at);
            *entry = (*entry).max(created_at);
        }
    }
    Ok(())
}

/// Drops tokens first seen more than the uniqueness window before `now_millis` (and collections left
/// with none); answers how many were dropped.
pub(crate) fn prune_tokens(index: &mut TokenIndex, now_millis: i64) -> usize {
    let oldest_kept = now_millis.saturating_sub(UNIQUENESS_WINDOW_MILLIS);
    let mut dropped = 0;
    index.retain(|_, tokens| {
        let before = tokens.len();
        tokens.retain(|_, first_seen| *first_seen >= oldest_kept);
        dropped += before - tokens.len();
        !tokens.is_empty()
    });
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_past_the_window_are_dropped() {
        let now = 100 * UNIQUENESS_WINDOW_MILLIS;
        let id = |name: &str| CollectionId {
            project: "p".into(),
            collection: name.into(),
        };
        let mut index = TokenIndex::new();
        index.entry(id("a")).or_default().extend([
            ("fresh".to_string(), now - 1_000),
            ("edge".to_string(), now - UNIQUENESS_WINDOW_MILLIS),
            ("stale".to_string(), now - UNIQUENESS_WINDOW_MILLIS - 1),
        ]);
        index
            .entry(id("b"))
            .or_default()
            .insert("stale".to_string(), 0);
        assert_eq!(prune_tokens(&mut index, now), 2);
        assert_eq!(index.len(), 1);
        let mut kept: Vec<&String> = index[&id("a")].keys().collect();
        kept.sort();
        assert_eq!(kept, ["edge", "fresh"]);
    }
}
