//! The official browser SDKs in a real browser: Debian's `chromium`, driven by `playwright-core` (both
//! installed by `.ci/run`; nothing is downloaded at run time), opens the pages of `sdk-tests/browser/`
//! served from another origin than Keyhole's (`sdk-tests/node/browser_pages.js`). Vendor dashboards
//! (keen-analysis + keen-dataviz) show each vendor exactly its own numbers (asserted against the master
//! key); revoked, expired and origin-bound keys show a clear message; keen-tracking's writes (recordEvent,
//! recordEvents, sendBeacon, the image pixel, the auto-collector) land in the vendor's scope with its
//! autofill; stored queries and datasets read with a customer's key. Screenshots go to `artifacts/`
//! (ignored by git).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{BinaryServer, client, repo_root, send, with_now_redacted};

/// A port nothing listens on now (for the pages' origin, which keys are bound to before it serves).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Opens `visits` (`[{"name", "path"}]`) in Chromium from `http://localhost:{page_port}`; answers each
/// page's `window.__results` by visit name.
fn visit_pages(page_port: u16, visits: &Value) -> Value {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "install Debian's chromium (as .ci/run does)"
    );
    let node_dir = repo_root().join("sdk-tests/node");
    assert!(
        node_dir.join("node_modules/playwright-core").exists(),
        "run `npm ci` in sdk-tests/node (as .ci/run does)"
    );
    let artifacts = repo_root().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let output = Command::new("node")
        .arg("browser_pages.js")
        .arg(visits.to_string())
        .current_dir(&node_dir)
        .env("PAGE_PORT", page_port.to_string())
        .env("SCREENSHOT_DIR", &artifacts)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the browser run failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `keyhole serve` in `directory`, with a test GeoIP database where 127.0.0.1 is in "Testville".
fn start_with_geoip(directory: &std::path::Path) -> BinaryServer {
    let geo_db = directory.join("geo.mmdb");
    crate::enrichment::write_geoip_db(&geo_db, "Testville");
    BinaryServer::start(
        &directory.join("data"),
        &["--geoip-db", geo_db.to_str().unwrap()],
        &[],
    )
}

fn page(
    name: &str,
    file: &str,
    server: &BinaryServer,
    project: &str,
    key: &str,
    vendor: &str,
) -> Value {
    let host = server.base_url.trim_start_matches("http://");
    json!({"name": name, "path": format!("/{file}?project={project}&key={key}&host={host}&vendor={vendor}")})
}

fn vendor_filter(vendor: &str) -> Value {
    json!({"property_name": "vendor_id", "operator": "eq", "property_value": vendor})
}

#[test]
fn vendor_dashboards_and_tracking_in_chromium_stay_in_their_vendor() {
    if !crate::support::has_browser() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    // The auto-collector asks for ip_to_geo on every pageview, which needs a GeoIP database.
    let server = start_with_geoip(data_dir.path());
    let project = server.printed_project();
    let page_port = free_port();
    let page_origin = format!("http://localhost:{page_port}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = |path: &str| format!("{}/3.0/projects/{}{path}", server.base_url, project.id);
    let master = project.master.clone();
    let master_query = |analysis: &'static str, body: Value| {
        let url = url(&format!("/queries/{analysis}"));
        let master = master.clone();
        async move {
            let answer = send(
                client()
                    .post(url)
                    .header("Authorization", master)
                    .json(&body),
            )
            .await;
            assert_eq!(answer.0, 200, "{}", answer.1);
            answer.1["result"].clone()
        }
    };
    let (keys, expected) = runtime.block_on(async {
        let now = chrono::Utc::now().timestamp_millis();
        let events: Vec<Value> = (0..90i64)
            .map(|index| {
                let at = keyhole_model::timestamp::format_timestamp(now - (index % 10) * 86_400_000);
                json!({"vendor_id": (["acme", "globex", "initech"][(index % 3) as usize]), "total": index,
                       "keen": {"timestamp": at}})
            })
            .collect();
        let written = send(client().post(url("/events")).header("Authorization", &project.write).json(&json!({"orders": events}))).await;
        assert_eq!(written.0, 200);
        let key = |definition: Value| {
            let url = url("/keys");
            let master = master.clone();
            async move {
                let created = send(client().post(url).header("Authorization", master).json(&definition)).await;
                assert_eq!(created.0, 201, "{}", created.1);
                created.1["key"].as_str().unwrap().to_string()
            }
        };
        let vendor_key = |vendor: &str, extra: Value| {
            let mut definition = json!({"name": format!("{vendor} dashboard"), "permitted": ["queries", "writes"],
                "options": {"queries": {"filters": [vendor_filter(vendor)]}, "writes": {"autofill": {"vendor_id": vendor}}}});
            for (name, value) in extra.as_object().unwrap() {
                definition[name] = value.clone();
            }
            definition
        };
        let acme = key(vendor_key("acme", json!({"options": {"queries": {"filters": [vendor_filter("acme")]},
            "writes": {"autofill": {"vendor_id": "acme"}}, "origins": [page_origin]}}))).await;
        let globex = key(vendor_key("globex", json!({}))).await;
        let revoked = key(vendor_key("initech", json!({}))).await;
        let revoke = send(client().post(url(&format!("/keys/{revoked}/revoke"))).header("Authorization", &master)).await;
        assert_eq!(revoke.0, 200);
        let expired = key(vendor_key("initech", json!({"expires_at": "2021-01-01T00:00:00Z"}))).await;
        let elsewhere = key(vendor_key("initech", json!({"options": {"origins": ["https://dashboards.example.com"]}}))).await;
        let mut expected = serde_json::Map::new();
        for vendor in ["acme", "globex"] {
            let scope = json!({"event_collection": "orders", "timeframe": "this_14_days", "timezone": "UTC", "filters": [vendor_filter(vendor)]});
            let mut sum = scope.clone();
            sum["target_property"] = json!("total");
            let mut daily = scope.clone();
            daily["interval"] = json!("daily");
            expected.insert(vendor.to_string(), json!({
                "revenue": master_query("sum", sum).await,
                "orders": master_query("count", scope).await,
                "daily": master_query("count", daily).await,
            }));
        }
        (json!({"acme": acme, "globex": globex, "revoked": revoked, "expired": expired, "elsewhere": elsewhere}), expected)
    });
    let key = |name: &str| keys[name].as_str().unwrap().to_string();
    let visits = json!([
        page(
            "dashboard-acme",
            "dashboard.html",
            &server,
            &project.id,
            &key("acme"),
            "Acme"
        ),
        page(
            "dashboard-globex",
            "dashboard.html",
            &server,
            &project.id,
            &key("globex"),
            "Globex"
        ),
        page(
            "dashboard-revoked-key",
            "dashboard.html",
            &server,
            &project.id,
            &key("revoked"),
            "Initech"
        ),
        page(
            "dashboard-expired-key",
            "dashboard.html",
            &server,
            &project.id,
            &key("expired"),
            "Initech"
        ),
        page(
            "dashboard-other-origin",
            "dashboard.html",
            &server,
            &project.id,
            &key("elsewhere"),
            "Initech"
        ),
        page(
            "tracking-acme",
            "tracking.html",
            &server,
            &project.id,
            &key("acme"),
            "Acme"
        ),
    ]);
    let results = visit_pages(page_port, &visits);
    for vendor in ["acme", "globex"] {
        assert_eq!(
            with_now_redacted(&results[format!("dashboard-{vendor}")]),
            with_now_redacted(&expected[vendor]),
            "{vendor}"
        );
    }
    assert_ne!(expected["acme"], expected["globex"]);
    let refusal = |name: &str| {
        (
            results[name]["status"].clone(),
            results[name]["error_code"].clone(),
            results[name]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let (status, code, message) = refusal("dashboard-revoked-key");
    assert_eq!((status, code), (json!(401), json!("InvalidApiKeyError")));
    assert!(message.contains("revoked"), "{message}");
    let (status, code, message) = refusal("dashboard-expired-key");
    assert_eq!((status, code), (json!(401), json!("InvalidApiKeyError")));
    assert!(message.contains("expired"), "{message}");
    let (status, code, message) = refusal("dashboard-other-origin");
    assert_eq!((status, code), (json!(401), json!("OriginNotAllowedError")));
    assert!(message.contains(&page_origin), "{message}");
    let tracking = &results["tracking-acme"];
    assert_eq!(
        tracking["recordEvent"],
        json!({"created": true}),
        "{tracking}"
    );
    assert_eq!(
        tracking["recordEvents"]["orders"],
        json!([{"success": true}, {"success": true}])
    );
    assert_eq!(tracking["pixel"], "sent");

    // Every way keen-tracking sends landed in acme's scope, stamped by its key's autofill.
    runtime.block_on(async {
        let by_source = json!({"event_collection": "orders", "group_by": "source", "filters": [vendor_filter("acme")]});
        let expected_sources = json!([
            {"source": "pixel", "result": 1}, {"source": "recordEvent", "result": 1},
            {"source": "recordEvents", "result": 2}, {"source": "sendBeacon", "result": 1},
        ]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut sources = master_query("count", by_source.clone()).await;
            sources.as_array_mut().unwrap().retain(|row| !row["source"].is_null());
            let pageviews = master_query("count", json!({"event_collection": "pageviews", "filters": [vendor_filter("acme")]})).await;
            if sources == expected_sources && pageviews.as_i64() >= Some(1) {
                break;
            }
            assert!(Instant::now() < deadline, "tracked events: {sources} pageviews: {pageviews}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let elsewhere = master_query("count", json!({"event_collection": "orders",
            "filters": [{"property_name": "source", "operator": "exists", "property_value": true}, {"property_name": "vendor_id", "operator": "ne", "property_value": "acme"}]})).await;
        assert_eq!(elsewhere, 0, "no tracked event outside acme");
    });
}

#[test]
fn keen_analysis_in_chromium_reads_saved_cached_and_dataset_results() {
    if !crate::support::has_browser() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let project = server.printed_project();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = |path: &str| format!("{}/3.0/projects/{}{path}", server.base_url, project.id);
    let master = project.master.clone();
    let (keys, expected) = runtime.block_on(async {
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
        let pinned = created.1["key"].as_str().unwrap().to_string();
        // A tenant key with no options.datasets: its forced filter alone pins the index value it reads.
        let created = send(client().post(url("/keys")).header("Authorization", &master).json(&json!({
            "name": "acme tenant",
            "permitted": ["saved_queries", "cached_queries", "datasets"],
            "options": {"queries": {"filters": [acme]}}
        }))).await;
        let tenant = created.1["key"].as_str().unwrap().to_string();
        // The cached query's first read stores acme's result; the browser's read is served from it.
        for key in [&pinned, &tenant] {
            let first = send(client().get(url("/queries/saved/revenue-cached/result")).header("Authorization", key)).await;
            assert_eq!(first.0, 200, "{}", first.1);
        }
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
        ([pinned, tenant], expected)
    });
    let visits: Vec<Value> = ["pinned", "tenant"]
        .iter()
        .zip(&keys)
        .map(|(name, key)| {
            page(
                name,
                "stored_results.html",
                &server,
                &project.id,
                key,
                "Acme",
            )
        })
        .collect();
    let results = visit_pages(free_port(), &Value::Array(visits));
    for name in ["pinned", "tenant"] {
        assert_eq!(
            with_now_redacted(&results[name]),
            with_now_redacted(&expected),
            "{name}"
        );
    }
}

#[test]
fn keen_analysis_del_in_chromium_deletes_exactly_what_it_selects() {
    if !crate::support::has_browser() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let project = server.printed_project();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = |path: &str| format!("{}/3.0/projects/{}{path}", server.base_url, project.id);
    let count_where = |filters: Value| {
        let url = url("/queries/count");
        let master = project.master.clone();
        async move {
            let answer = send(client().post(url).header("Authorization", master)
                .json(&json!({"event_collection": "orders", "timeframe": "this_30_days", "filters": filters}))).await;
            assert_eq!(answer.0, 200, "{}", answer.1);
            answer.1["result"].as_u64().unwrap()
        }
    };
    let small_acme = json!([{"property_name": "vendor", "operator": "eq", "property_value": "acme"},
                            {"property_name": "amount", "operator": "lt", "property_value": 10}]);
    let before = runtime.block_on(async {
        let events: Vec<Value> = (0..40i64)
            .map(|index| json!({"vendor": (["acme", "globex"][(index % 2) as usize]), "amount": index}))
            .collect();
        let written = send(client().post(url("/events")).header("Authorization", &project.write).json(&json!({"orders": events}))).await;
        assert_eq!(written.0, 200);
        (count_where(json!([])).await, count_where(small_acme.clone()).await)
    });
    assert_eq!(before, (40, 5));
    let visits = json!([page(
        "keen-analysis-del",
        "delete.html",
        &server,
        &project.id,
        &project.master,
        "Acme"
    )]);
    let results = visit_pages(free_port(), &visits);
    assert_eq!(results["keen-analysis-del"]["deleted"], true, "{results}");
    let after =
        runtime.block_on(async { (count_where(json!([])).await, count_where(small_acme).await) });
    assert_eq!(after, (35, 0), "exactly acme's five small orders are gone");
}

#[test]
fn the_console_signs_in_explores_creates_a_key_opens_its_dashboard_and_revokes_it() {
    if !crate::support::has_browser() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let project = server.printed_project();
    let organization_key = server.printed_organization_key();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = |path: &str| format!("{}/3.0/projects/{}{path}", server.base_url, project.id);
    // Not the demo's data: another collection and other property names, so nothing can be hard-wired.
    let (acme_total, acme_buyers, acme_kinds) = runtime.block_on(async {
        let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).date_naive();
        let events: Vec<Value> = (0..30i64)
            .map(|index| {
                let at = yesterday.and_hms_opt(if index < 20 { 3 } else { 15 }, 0, 0).unwrap().and_utc();
                json!({"vendor_id": (["acme", "globex", "acme"][(index % 3) as usize]),
                       "buyer": {"id": format!("b{}", index % 7)}, "item": {"kind": (["lamp", "desk"][(index % 2) as usize])},
                       "keen": {"timestamp": keyhole_model::timestamp::format_timestamp(at.timestamp_millis())}})
            })
            .collect();
        let visits = vec![json!({"page": "/"}), json!({"page": "/about"})];
        let written = send(client().post(url("/events")).header("Authorization", &project.write)
            .json(&json!({"purchases": events, "visits": visits}))).await;
        assert_eq!(written.0, 200);
        let acme = |analysis: &str, extra: Value| {
            let mut body = json!({"event_collection": "purchases", "timeframe": "this_30_days", "filters": [vendor_filter("acme")]});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            send(client().post(url(&format!("/queries/{analysis}"))).header("Authorization", &project.master).json(&body))
        };
        let total = acme("count", json!({})).await.1["result"].clone();
        let buyers = acme("count_unique", json!({"target_property": "buyer.id"})).await.1["result"].clone();
        let kinds = acme("count", json!({"group_by": "item.kind"})).await.1["result"].clone();
        (total, buyers, kinds)
    });
    let artifacts = repo_root().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let output = Command::new("node")
        .arg("console_flow.js")
        .current_dir(repo_root().join("sdk-tests/node"))
        .env("KEYHOLE_URL", &server.base_url)
        .env("KEYHOLE_MASTER_KEY", &project.master)
        .env("KEYHOLE_ORG_KEY", &organization_key)
        .env("SCREENSHOT_DIR", &artifacts)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the console run failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        results["who"].as_str().unwrap().contains(&project.id),
        "{results}"
    );
    let wrong_key = results["wrong_key"].as_str().unwrap_or_default();
    assert!(
        wrong_key.contains("master key") && wrong_key.contains("organization key"),
        "a refused sign-in says what was tried: {results}"
    );
    assert_eq!(results["collections"], json!(["purchases", "visits"]));
    assert_eq!(results["event_counts"], json!(["30 events", "2 events"]));
    let geo_off = results["geo_off"].as_str().unwrap_or_default();
    assert!(
        geo_off.contains("keen:ip_to_geo") && geo_off.contains("--geoip-db"),
        "the console says geo enrichment is off and how to turn it on: {results}"
    );
    assert_eq!(
        results["explorer"],
        json!([["20", "acme"], ["10", "globex"]]),
        "{results}"
    );
    assert!(
        results["invalid_origin"]
            .as_str()
            .unwrap()
            .contains("is not an origin"),
        "{results}"
    );
    assert_eq!(results["secret"].as_str().unwrap().len(), 64);
    assert_eq!(results["keys"], json!(["acme dashboard"]));
    // Yesterday in halves: 20 events at 03:00 UTC, 10 at 15:00 UTC; Asia/Kolkata is UTC+05:30.
    let day = (chrono::Utc::now() - chrono::Duration::days(1)).date_naive();
    let row = |index: usize| {
        results["times_utc"][index]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let browser_row = |index: usize| {
        results["times_browser"][index]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        row(0).contains(&format!("{day}T00:00:00.000Z"))
            && row(0).contains(&format!("{day}T12:00:00.000Z"))
            && row(0).contains("20"),
        "{results}"
    );
    assert!(row(1).contains("10"), "{results}");
    assert!(
        browser_row(0).contains(&format!("{day}T05:30:00.000+05:30"))
            && browser_row(0).contains(&format!("{day}T17:30:00.000+05:30")),
        "{results}"
    );
    assert_eq!(results["dashboard"]["total"], acme_total, "{results}");
    assert_eq!(results["dashboard"]["users"], acme_buyers, "{results}");
    assert_eq!(results["dashboard"]["by_kind"], acme_kinds, "{results}");
    let weeks = results["dashboard"]["daily"].as_array().map_or(0, Vec::len);
    assert!(
        (5..=6).contains(&weeks),
        "weekly buckets of 30 days: {results}"
    );
    assert_eq!(results["after_revoke"], json!(["revoked"]));
    assert_eq!(
        results["dashboard_after_revoke"]["error_code"],
        "InvalidApiKeyError"
    );
    assert_eq!(results["page_errors"], json!([]));
}

#[test]
fn keyhole_demo_serves_each_vendor_a_dashboard_of_its_own_orders() {
    if !crate::support::has_browser() {
        return;
    }
    let args: Vec<String> = ["demo", "--listen", "127.0.0.1:0", "--events", "1200"]
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    let server = BinaryServer::start_raw(&args, &[]);
    let lines = server.stdout_lines.join("\n");
    let master = server
        .stdout_lines
        .iter()
        .find_map(|line| line.split("master key: ").nth(1))
        .unwrap_or_else(|| panic!("{lines}"))
        .trim()
        .to_string();
    let dashboards: Vec<(String, String)> = server
        .stdout_lines
        .iter()
        .filter_map(|line| {
            let (vendor, url) = line.split_once(" http://")?;
            url.contains("dashboard.html").then(|| {
                (
                    vendor.trim().trim_end_matches(':').to_lowercase(),
                    format!("http://{url}"),
                )
            })
        })
        .collect();
    assert_eq!(dashboards.len(), 3, "{lines}");
    let console = send_blocking_status(&format!("{}/console/", server.base_url));
    assert_eq!(console, 200);
    // The key travels in the fragment, which no request, log or Referer carries.
    for (_, url) in &dashboards {
        let (request_part, fragment) = url.split_once('#').unwrap_or_else(|| panic!("{url}"));
        assert!(!request_part.contains("key="), "{url}");
        assert!(fragment.contains("key="), "{url}");
    }
    let mut visits: Vec<Value> = dashboards
        .iter()
        .map(
            |(vendor, url)| json!({"name": format!("demo-{vendor}"), "url": url, "settle_ms": 600}),
        )
        .collect();
    visits.push(json!({"name": "demo-key-in-query", "url": dashboards[0].1.replacen('#', "?", 1)}));
    let results = visit_pages(free_port(), &Value::Array(visits));
    assert_eq!(
        results["demo-key-in-query"]["error_code"], "KeyInQueryString",
        "{}",
        results["demo-key-in-query"]
    );
    let project = dashboards[0]
        .1
        .split("project=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut totals = Vec::new();
    for (vendor, _) in &dashboards {
        let expected = runtime.block_on(send(
            client()
                .post(format!("{}/3.0/projects/{project}/queries/count", server.base_url))
                .header("Authorization", &master)
                .json(&json!({"event_collection": "orders", "timeframe": "this_30_days", "timezone": "UTC",
                              "filters": [vendor_filter(vendor)]})),
        ));
        let shown = &results[format!("demo-{vendor}")];
        assert_eq!(shown["total"], expected.1["result"], "{vendor}: {shown}");
        totals.push(expected.1["result"].as_i64().unwrap());
    }
    assert!(totals.iter().all(|total| *total > 100), "{totals:?}");
    assert!(
        totals[0] > totals[1] && totals[1] > totals[2],
        "vendors have different shares: {totals:?}"
    );
}

fn send_blocking_status(url: &str) -> u16 {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async { client().get(url).send().await.unwrap().status().as_u16() })
}

/// One pageview of keen-tracking's auto-collector (its default add-ons: ip_to_geo, ua_parser,
/// url_parser, referrer_parser), sent from Chromium with an autofilling key, as stored.
fn autocollected_pageview(server: &BinaryServer) -> Value {
    let project = server.printed_project();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = |path: &str| format!("{}/3.0/projects/{}{path}", server.base_url, project.id);
    let key = runtime.block_on(async {
        let created = send(
            client()
                .post(url("/keys"))
                .header("Authorization", &project.master)
                .json(&json!({
            "name": "acme tracking", "permitted": ["writes"],
            "options": {"writes": {"autofill": {"vendor_id": "acme"}}}})),
        )
        .await;
        created.1["key"].as_str().unwrap().to_string()
    });
    let mut visit = page(
        "autotrack-acme",
        "autotrack.html",
        server,
        &project.id,
        &key,
        "Acme",
    );
    visit["referer"] = json!("https://www.google.com/search?q=keyhole+analytics");
    visit["settle_ms"] = json!(500);
    let page_port = free_port();
    let results = visit_pages(page_port, &json!([visit]));
    assert_eq!(results["autotrack-acme"]["recorded"], true);
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = send(
                client()
                    .post(url("/queries/extraction"))
                    .header("Authorization", &project.master)
                    .json(&json!({"event_collection": "pageviews"})),
            )
            .await;
            if let Some(first) = answer.1["result"]
                .as_array()
                .and_then(|events| events.first())
            {
                return first.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no pageview stored: {}",
                answer.1
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// What the auto-collector's pageview carries whatever the GeoIP set-up: the key's autofill and the three
/// add-ons that need no database.
fn assert_pageview_enriched(pageview: &Value, project_id: &str) {
    assert_eq!(pageview["vendor_id"], "acme", "{pageview}");
    assert!(
        pageview["tech"]["browser"]["family"]
            .as_str()
            .unwrap()
            .contains("Chrome"),
        "{pageview}"
    );
    assert_eq!(pageview["tech"]["os"]["family"], "Linux");
    assert!(
        pageview["tech"]["profile"].is_object(),
        "the SDK's own tech.profile is kept"
    );
    assert_eq!(pageview["url"]["info"]["domain"], "localhost");
    assert_eq!(pageview["url"]["info"]["path"], "/autotrack.html");
    assert_eq!(
        pageview["url"]["info"]["query_string"]["project"],
        project_id
    );
    assert_eq!(pageview["referrer"]["info"]["domain"], "www.google.com");
    assert_eq!(
        pageview["referrer"]["info"]["query_string"]["q"],
        "keyhole analytics"
    );
    for part in ["utc", "local"] {
        let time = &pageview["time"][part];
        for field in [
            "year",
            "month",
            "day_of_month",
            "day_of_week",
            "day_of_week_string",
            "hour_of_day",
            "minute",
            "second",
            "millisecond",
        ] {
            assert!(!time[field].is_null(), "time.{part}.{field}: {pageview}");
        }
    }
    assert_eq!(
        pageview["ip_address"], "127.0.0.1",
        "collectIpAddress defaults to keeping it"
    );
}

#[test]
fn the_auto_collectors_pageviews_are_stored_with_all_five_add_ons_filled() {
    if !crate::support::has_browser() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let server = start_with_geoip(data_dir.path());
    let pageview = autocollected_pageview(&server);
    assert_pageview_enriched(&pageview, &server.printed_project().id);
    assert_eq!(pageview["geo"]["city"], "Testville", "{pageview}");
    assert_eq!(pageview["geo"]["country_code"], "TL");
    assert_eq!(pageview["geo"]["coordinates"], json!([13.4, 52.5]));
}

#[test]
fn without_a_geoip_database_the_auto_collectors_pageviews_are_stored_without_geo() {
    if !crate::support::has_browser() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let pageview = autocollected_pageview(&server);
    assert_pageview_enriched(&pageview, &server.printed_project().id);
    // The SDK sends `geo: {}` itself; without a database nothing is added to it.
    assert!(
        pageview
            .get("geo")
            .is_none_or(|geo| geo.as_object().is_some_and(serde_json::Map::is_empty)),
        "{pageview}"
    );
}
