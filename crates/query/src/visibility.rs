//! Which properties of a collection a scope can see, for the schema endpoints: in a restricted scope
//! (forced filters or a look-back window), a
//! property (physical column) is visible only if some event the scope can read has a value in it, so a
//! tenant's key never learns the names of properties that only other tenants' events carry.

use std::collections::BTreeSet;

use datafusion::functions_aggregate::expr_fn::count;
use datafusion::prelude::*;
use keyhole_model::ValueKind;

use crate::columns::column;
use crate::plan::{EventSource, filtered_frame};
use crate::render::cell;
use crate::{Result, Scope};

/// What of a collection's schema a scope may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// An unrestricted scope: the whole schema.
    Everything,
    /// The scope sees no event of the collection.
    Nothing,
    /// These physical columns hold a value in at least one visible event.
    Columns(BTreeSet<String>),
}

pub(crate) async fn visible_columns(
    source: &EventSource,
    scope: &Scope,
    collection: &str,
) -> Result<Visibility> {
    if !scope.is_restricted() {
        return Ok(Visibility::Everything);
    }
    let filtered = filtered_frame(source, scope, collection, None, &[]).await?;
    let typed: Vec<String> = filtered
        .schema
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .filter(|name| ValueKind::split_column_name(name).is_some())
        .collect();
    let mut aggregates = vec![count(lit(1i64)).alias("__rows")];
    aggregates.extend(
        typed
            .iter()
            .map(|name| count(column(name)).alias(name.as_str())),
    );
    let batches = filtered
        .frame
        .aggregate(vec![], aggregates)?
        .collect()
        .await?;
    let Some(batch) = batches.first() else {
        return Ok(Visibility::Nothing);
    };
    if batch.num_rows() == 0
        || cell(batch.column(0).as_ref(), 0, None)
            .as_u64()
            .unwrap_or(0)
            == 0
    {
        return Ok(Visibility::Nothing);
    }
    let mut visible = BTreeSet::new();
    for (index, name) in typed.iter().enumerate() {
        if cell(batch.column(index + 1).as_ref(), 0, None)
            .as_u64()
            .unwrap_or(0)
            > 0
        {
            visible.insert(name.clone());
        }
    }
    Ok(Visibility::Columns(visible))
}
