//! keen-analysis in a real browser: Debian's `chromium`, driven by `playwright-core` (both installed by
//! `.ci/run`; nothing is downloaded at run time), loads a page from another origin that reads a saved
//! query, a cached query and a cached dataset with a customer's key — the answers must equal the master
//! key's with the customer's filter. Screenshots go to `artifacts/` in the repository (ignored by git).

use std::process::Command;

use serde_json::{Value, json};

use crate::support::{BinaryServer, client, repo_root, send};

#[test]
fn keen_analysis_in_chromium_reads_saved_cached_and_dataset_results() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "install Debian's chromium (as .ci/run does)"
    );
    let node_dir = repo_root().join("sdk-tests/node");
    assert!(
        node_dir.join("node_modules/playwright-core").exists(),
        "run `npm ci` in sdk-tests/node (as .ci/run does)"
    );
    let data_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let project = server.printed_project();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = |path: &str| format!("{}/3.0/projects/{}{path}", server.base_url, project.id);
    let master = project.master.clone();
    let (key, expected) = runtime.block_on(async {
        let now = chrono::Utc::now().timestamp_millis();
        let events: Vec<Value> = (0..40i64)
            .map(|index| {
                let at = keyhole_model::timestamp::format_timestamp(now - (index % 4) * 86_400_000);
                json!({"vendor": (["acme", "globex"][(index % 2) as usize]), "amount": index, "keen": {"timestamp": at}})
            })
            .collect();
        let written = send(client().post(url("/events")).header("Authorization", &project.write).json(&json!({"orders": events}))).await;
        assert_eq!(written.0, 200);
        let sum = json!({"analysis_type": "sum", "event_collection": "orders", "target_property": "amount"});
        for (name, refresh_rate) in [("revenue", 0), ("revenue-cached", 14_400)] {
            let saved = send(client().put(url(&format!("/queries/saved/{name}"))).header("Authorization", &master)
                .json(&json!({"query": sum, "refresh_rate": refresh_rate}))).await;
            assert_eq!(saved.0, 201, "{}", saved.1);
        }
        let mut daily = sum.clone();
        daily["timeframe"] = json!("this_7_days");
        daily["interval"] = json!("daily");
        daily["timezone"] = json!("UTC");
        let dataset = send(client().put(url("/datasets/daily-revenue")).header("Authorization", &master)
            .json(&json!({"query": daily, "index_by": "vendor", "display_name": "Daily revenue"}))).await;
        assert_eq!(dataset.0, 201, "{}", dataset.1);
        let acme = json!({"property_name": "vendor", "operator": "eq", "property_value": "acme"});
        let created = send(client().post(url("/keys")).header("Authorization", &master).json(&json!({
            "name": "acme dashboard",
            "permitted": ["saved_queries", "cached_queries", "datasets"],
            "options": {"queries": {"filters": [acme]},
                        "datasets": {"operations": ["read"], "allowed": {"daily-revenue": {"index_by": {"vendor": ["acme"]}}}}}
        }))).await;
        let key = created.1["key"].as_str().unwrap().to_string();
        // The cached query's first read stores acme's result; the browser's read is served from it.
        let first = send(client().get(url("/queries/saved/revenue-cached/result")).header("Authorization", &key)).await;
        assert_eq!(first.0, 200, "{}", first.1);
        let mut filtered = sum.clone();
        filtered["filters"] = json!([acme]);
        let total = send(client().post(url("/queries/sum")).header("Authorization", &master).json(&filtered)).await;
        daily["filters"] = json!([acme]);
        let buckets = send(client().post(url("/queries/sum")).header("Authorization", &master).json(&daily)).await;
        let expected = json!({
            "saved": total.1["result"],
            "cached": total.1["result"],
            "cached_from_store": true,
            "dataset": buckets.1["result"],
            "other_vendor": {"status": 401, "error_code": "RequestForbiddenError",
                             "message": "This key may not read that index value of the dataset 'daily-revenue'."},
        });
        (key, expected)
    });
    let artifacts = repo_root().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("keen-analysis-stored-results.png");
    let output = Command::new("node")
        .arg("browser_stored_results.js")
        .current_dir(&node_dir)
        .env(
            "KEYHOLE_HOST",
            server.base_url.trim_start_matches("http://"),
        )
        .env("KEYHOLE_PROJECT_ID", &project.id)
        .env("KEYHOLE_KEY", &key)
        .env("KEYHOLE_SCREENSHOT", &screenshot)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the browser run failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results, expected);
    assert!(screenshot.exists());
}
