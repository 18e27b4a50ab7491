//! `keyhole demo`: the whole story in one command. In a throwaway data directory it creates a project,
//! seeds a few thousand orders of three vendors over the last 30 days, mints each vendor a dashboard key
//! (its filter AND-ed into every read, its autofill stamped onto every write), defines a dataset and a
//! saved query, then serves the API, the console and each vendor's dashboard page, printing their URLs.
//!
//! It listens on a free port unless `--listen` names one (so it runs beside a `keyhole serve` on 7070) and
//! prints where. Its data lives in a temporary directory removed on exit, or in `--keep-in` (equally,
//! `--data-dir`), which must not exist yet or be empty, and is kept.
//!
//! Design: the events are generated deterministically (a small xorshift, no randomness crate) and
//! written through the storage engine directly, before the server listens, so the dashboards show them at
//! once. Nothing here is a special code path of the server: the pages use the public API with the keys
//! printed.

use std::path::PathBuf;

use anyhow::Context;
use keyhole_model::access::AccessKeyDefinition;
use keyhole_model::dataset::DatasetDefinition;
use keyhole_model::saved_query::SavedQueryDefinition;
use keyhole_model::{EventContext, prepare_event};
use keyhole_storage::CollectionId;
use serde_json::{Value, json};

use crate::config::{CommonOptions, DemoOptions, Settings};

/// (vendor id, display name, share of the events in percent).
const VENDORS: [(&str, &str, u64); 3] = [
    ("acme", "Acme", 50),
    ("globex", "Globex", 30),
    ("initech", "Initech", 20),
];
const CATEGORIES: [&str; 4] = ["books", "games", "music", "garden"];
const DAY_MILLIS: i64 = 86_400_000;

pub async fn demo(common: &CommonOptions, options: &DemoOptions) -> anyhow::Result<()> {
    let temporary = tempfile::tempdir()?;
    let kept = match (&options.keep_in, &common.settings.data_dir) {
        (Some(keep_in), Some(data_dir)) if keep_in != data_dir => anyhow::bail!(
            "--keep-in and --data-dir name different directories ({} and {}); give one",
            keep_in.display(),
            data_dir.display()
        ),
        (Some(directory), _) | (None, Some(directory)) => Some(directory.clone()),
        (None, None) => None,
    };
    let data_dir: PathBuf = match &kept {
        Some(directory) => {
            let empty =
                std::fs::read_dir(directory).map_or(true, |mut entries| entries.next().is_none());
            anyhow::ensure!(
                empty,
                "{} holds files already; the demo needs a new or empty directory",
                directory.display()
            );
            directory.clone()
        }
        None => temporary.path().join("data"),
    };
    let mut settings = Settings::resolve(common, None)?;
    settings.data_dir = data_dir;
    settings.listen = options.listen.clone();
    std::fs::create_dir_all(&settings.data_dir)?;
    let _data_dir_lock =
        keyhole_storage::lock_data_dir(&settings.data_dir, std::time::Duration::ZERO)
            .await
            .context("cannot take the demo's data directory")?;
    let listener = crate::bind(&settings.listen).await?;
    let parts = crate::ServerParts::open(&settings)?;
    let meta = crate::open_meta(&settings).await?;
    let organization = meta.ensure_organization(None).await?;
    let (project, project_keys) = meta.create_project("demo").await?;
    let storage = crate::open_storage(&settings, &meta, crate::DataFileRemoval::AfterGrace).await?;
    seed_events(&storage, &project.id, options.events).await?;

    let mut dashboards = Vec::new();
    for (vendor, display_name, _) in VENDORS {
        let definition = AccessKeyDefinition::parse(&json!({
            "name": format!("{display_name} dashboard"),
            "permitted": ["queries", "writes", "schema", "datasets", "saved_queries"],
            "options": {
                "queries": {"filters": [{"property_name": "vendor_id", "operator": "eq", "property_value": vendor}]},
                "writes": {"autofill": {"vendor_id": vendor}},
                "datasets": {"allowed": {"daily-orders": {"index_by": {"vendor_id": [vendor]}}}},
            },
        }))
        .map_err(|error| anyhow::anyhow!("demo key definition: {error}"))?;
        let (_, secret) = meta
            .create_access_key(&project.id, &definition, "demo")
            .await?;
        dashboards.push((display_name, secret));
    }
    let daily_orders = DatasetDefinition::parse(
        "daily-orders",
        &json!({"display_name": "Orders per day", "index_by": "vendor_id",
                "query": {"analysis_type": "count", "event_collection": "orders", "timeframe": "this_30_days",
                          "interval": "daily", "timezone": "UTC"}}),
    )
    .map_err(|error| anyhow::anyhow!("demo dataset: {error}"))?;
    meta.put_dataset(&project.id, &daily_orders).await?;
    let by_category = SavedQueryDefinition::parse(
        "revenue-by-category",
        &json!({"query": {"analysis_type": "sum", "event_collection": "orders", "target_property": "total",
                          "group_by": "product.category", "timeframe": "this_30_days"},
                "metadata": {"display_name": "Revenue by category"}}),
    )
    .map_err(|error| anyhow::anyhow!("demo saved query: {error}"))?;
    meta.put_saved_query(&project.id, "revenue-by-category", &by_category)
        .await?;

    let master = project_keys.master.clone();
    let organization_key = organization.generated_key.clone();
    let project_id = project.id.clone();
    let data_dir = kept.map(|directory| directory.display().to_string());
    crate::run_http_server(&settings, listener, meta, storage, parts, organization.id, move |address| {
        println!("keyhole demo: {} orders of three vendors, last 30 days", options.events);
        println!();
        println!("console:   http://{address}/console/");
        println!("           sign in with the demo project's master key: {master}");
        if let Some(key) = &organization_key {
            println!("           (or with the organization key: {key})");
        }
        for (display_name, secret) in &dashboards {
            println!(
                "{:<10} http://{address}/console/dashboard.html#project={project_id}&key={secret}&vendor={display_name}&collection=orders&unique=user.id&group_by=product.category",
                format!("{display_name}:")
            );
        }
        println!();
        println!("Each dashboard shows only its vendor's orders: the key's filter is AND-ed into every query.");
        match &data_dir {
            Some(directory) => println!("Press Ctrl-C to stop; the demo's data stays in {directory}."),
            None => println!("Press Ctrl-C to stop; the demo's data is removed (give --data-dir to keep it)."),
        }
        println!("keyhole listening on http://{address}");
    })
    .await
    .context("demo server")
}

/// Seeds `count` orders over the last 30 days: vendors by their share, users, categories, totals.
async fn seed_events(
    storage: &keyhole_storage::Storage,
    project_id: &str,
    count: usize,
) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let context = EventContext {
        received_at: now,
        client_ip: None,
        user_agent: None,
        uniqueness_scope: None,
        autofill: None,
    };
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        let share = next(100);
        let (vendor, _, _) = VENDORS
            .iter()
            .scan(0, |total, vendor| {
                *total += vendor.2;
                Some((*total, vendor))
            })
            .find(|(total, _)| share < *total)
            .map_or(VENDORS[0], |(_, vendor)| *vendor);
        // More recent days get more orders, as a growing shop's would.
        let age = (next(30) * next(30)) / 30;
        let at = now.timestamp_millis() - age as i64 * DAY_MILLIS - next(DAY_MILLIS as u64) as i64;
        let event: Value = json!({
            "vendor_id": vendor,
            "user": {"id": format!("{vendor}-user-{}", next(60))},
            "product": {"category": CATEGORIES[next(CATEGORIES.len() as u64) as usize]},
            "total": 5 + next(120),
            "keen": {"timestamp": keyhole_model::timestamp::format_timestamp(at)},
        });
        events.push(
            prepare_event(event, &context)
                .map_err(|error| anyhow::anyhow!("demo event: {error}"))?,
        );
    }
    let collection = CollectionId {
        project: project_id.to_string(),
        collection: "orders".into(),
    };
    storage.append(collection, events).await?;
    Ok(())
}
