//! A tenant's usage, as `GET …/tenants` and `GET …/tenants/{id}` show it: what its keys did (events
//! written, queries, by UTC day, from the keys' usage counters) and what the project holds of it (events
//! stored and their bytes, counted by the tenancy property in every collection).
//!
//! Design: the counts of stored events are ordinary count queries grouped by the tenancy property and
//! filtered to the page's tenants, run through the administrator's reader (the project's master scope),
//! one per collection, so a page costs as many queries as the project has collections, not one per
//! tenant. Bytes are the tenant's share of each collection's Parquet bytes, in proportion to its events
//! there (events not yet flushed have no bytes yet); a collection holds every tenant's events in the same
//! files, so this is an estimate, said so in docs/tenants.md.

use std::collections::{BTreeMap, HashMap};

use keyhole_meta::{KeyUsage, Tenant, TenantActivity};
use keyhole_model::query::{AnalysisType, Query, now_millis};
use keyhole_model::tenant::Tenancy;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::access::administrator::ProjectAdministrator;
use crate::errors::ApiError;

/// Days the usage series covers, today (UTC) included.
const USAGE_DAYS: i64 = 30;

/// Events and bytes one tenant has stored.
#[derive(Clone, Copy, Debug, Default)]
struct Stored {
    events: u64,
    bytes: f64,
}

/// The `YYYY-MM-DD` UTC days of the series, oldest first.
fn series_days() -> Vec<String> {
    let today = chrono::Utc::now().date_naive();
    (0..USAGE_DAYS)
        .rev()
        .map(|back| (today - chrono::Duration::days(back)).to_string())
        .collect()
}

/// Events stored per tenant of `tenant_ids`, across the project's collections.
async fn stored_by_tenant(
    admin: &ProjectAdministrator,
    tenancy: &Tenancy,
    tenant_ids: &[String],
) -> Result<HashMap<String, Stored>, ApiError> {
    let reader = admin.reader();
    let mut stored: HashMap<String, Stored> = HashMap::new();
    for collection in reader.collection_names() {
        let mut params = Map::new();
        params.insert("event_collection".into(), json!(collection));
        params.insert("group_by".into(), json!(tenancy.property));
        params.insert(
            "filters".into(),
            json!([{"property_name": tenancy.property, "operator": "in", "property_value": tenant_ids}]),
        );
        let query = Query::parse(AnalysisType::Count, &params)?;
        let answer = reader.run(&query, now_millis()).await?;
        let (file_rows, file_bytes) = reader.stored_file_totals(&collection);
        let bytes_per_event = if file_rows == 0 {
            0.0
        } else {
            file_bytes as f64 / file_rows as f64
        };
        for group in answer["result"].as_array().into_iter().flatten() {
            let (Some(tenant_id), Some(events)) = (
                group[tenancy.property.as_str()].as_str(),
                group["result"].as_u64(),
            ) else {
                continue;
            };
            let entry = stored.entry(tenant_id.to_string()).or_default();
            entry.events += events;
            entry.bytes += events as f64 * bytes_per_event;
        }
    }
    Ok(stored)
}

fn usage_json(days: &[String], activity: Option<&TenantActivity>, stored: Stored) -> Value {
    let empty = BTreeMap::new();
    let by_day = activity.map_or(&empty, |activity| &activity.days);
    let mut total = KeyUsage::default();
    let series: Vec<Value> = days
        .iter()
        .map(|day| {
            let usage = by_day.get(day).copied().unwrap_or_default();
            total.add(&usage);
            json!({"day": day, "events_written": usage.events, "queries": usage.queries})
        })
        .collect();
    json!({
        "since": days.first(),
        "events_written": total.events,
        "queries": total.queries,
        "events_stored": stored.events,
        "bytes_stored": stored.bytes.round() as u64,
        "last_activity": activity.and_then(|activity| activity.last_activity.clone()),
        "days": series,
    })
}

/// The usage of each tenant of a page (sorted by id, as the store lists them), by tenant id.
pub(crate) async fn usage_of_tenants(
    state: &AppState,
    admin: &ProjectAdministrator,
    tenants: &[Tenant],
) -> Result<HashMap<String, Value>, ApiError> {
    let (Some(first), Some(last)) = (tenants.first(), tenants.last()) else {
        return Ok(HashMap::new());
    };
    let tenancy = state
        .meta
        .tenancy(&admin.project_id)
        .await?
        .ok_or_else(|| ApiError::internal("tenants without a tenancy"))?;
    // This node's counts not yet stored are stored first, so its own latest requests are in the answer.
    state.meter.flush().await;
    let days = series_days();
    let activity = state
        .meta
        .tenants_activity(&admin.project_id, &first.id, &last.id, &days[0])
        .await?;
    let ids: Vec<String> = tenants.iter().map(|tenant| tenant.id.clone()).collect();
    let stored = stored_by_tenant(admin, &tenancy, &ids).await?;
    Ok(tenants
        .iter()
        .map(|tenant| {
            let usage = usage_json(
                &days,
                activity.get(&tenant.id),
                stored.get(&tenant.id).copied().unwrap_or_default(),
            );
            (tenant.id.clone(), usage)
        })
        .collect())
}
