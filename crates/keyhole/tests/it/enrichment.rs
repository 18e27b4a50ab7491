//! Data enrichment add-ons over the real binary: the five Keen add-ons fill their outputs (asserted field by
//! field) from a MaxMind-format database the test writes (`sdk-tests/python/write_geoip_db.py`, mmdb-writer),
//! the embedded uap-core regexes and referrer list; bad specs refuse their event only; a key's autofill can
//! carry add-ons; without a database ip_to_geo leaves its output absent (the event is stored, one warning is
//! logged, `/metrics` counts it, the console says how to turn it on); the flat layout of ip-location-db's
//! free databases is read too; a changed database file is picked up while the server runs.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{BinaryServer, client, repo_root, send};

pub fn write_geoip_db(path: &std::path::Path, local_city: &str) {
    write_geoip_db_with(path, local_city, &[]);
}

/// Writes the test database with `write_geoip_db.py`'s extra arguments (`--flat`: ip-location-db's layout).
fn write_geoip_db_with(path: &std::path::Path, local_city: &str, extra: &[&str]) {
    let status = Command::new("python3")
        .arg(repo_root().join("sdk-tests/python/write_geoip_db.py"))
        .arg(path)
        .arg(local_city)
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success(), "install mmdb-writer as .ci/run does");
}

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

fn all_five() -> Value {
    json!([
        {"name": "keen:ip_to_geo", "input": {"ip": "ip_address"}, "output": "geo"},
        {"name": "keen:ua_parser", "input": {"ua_string": "user_agent"}, "output": "tech"},
        {"name": "keen:url_parser", "input": {"url": "page.url"}, "output": "page.info"},
        {"name": "keen:referrer_parser", "input": {"referrer_url": "page.referrer", "page_url": "page.url"}, "output": "referrer.info"},
        {"name": "keen:date_time_parser", "input": {"date_time": "keen.timestamp"}, "output": "time.utc"},
    ])
}

async fn extraction(
    server: &BinaryServer,
    project: &str,
    master: &str,
    collection: &str,
) -> Vec<Value> {
    let answer = send(
        client()
            .post(format!(
                "{}/3.0/projects/{project}/queries/extraction",
                server.base_url
            ))
            .header("Authorization", master)
            .json(&json!({"event_collection": collection})),
    )
    .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    answer.1["result"].as_array().unwrap().clone()
}

#[test]
fn the_five_add_ons_enrich_events_before_they_are_stored() {
    if !(crate::support::has_python_sdk() && crate::support::has_third_party_assets()) {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let geo_db = data_dir.path().join("geo.mmdb");
    write_geoip_db(&geo_db, "Testville");
    let geo_arg = geo_db.to_str().unwrap().to_string();
    let server = BinaryServer::start(
        &data_dir.path().join("data"),
        &["--geoip-db", &geo_arg],
        &[],
    );
    let project = server.printed_project();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = |path: &str| format!("{}/3.0/projects/{}{path}", server.base_url, project.id);
    runtime.block_on(async {
        let event = json!({
            "ip_address": "81.2.69.142", "user_agent": CHROME,
            "page": {"url": "https://shop.example.com/cart?item=42&color=red#pay", "referrer": "https://www.google.com/search?q=red+shoes"},
            "keen": {"timestamp": "2026-11-27T09:05:07.123Z", "addons": all_five()},
        });
        let bad = |addon: Value| json!({"keen": {"addons": [addon]}});
        let batch = json!({"visits": [
            event,
            bad(json!({"name": "keen:weather", "input": {}, "output": "w"})),
            bad(json!({"name": "keen:url_parser", "input": {}, "output": "u"})),
            bad(json!({"name": "keen:url_parser", "input": {"url": "u"}, "output": "keen.u"})),
        ]});
        let written = send(client().post(url("/events")).header("Authorization", &project.write).json(&batch)).await;
        assert_eq!(written.0, 200, "{}", written.1);
        let results = written.1["visits"].as_array().unwrap();
        assert_eq!(results[0], json!({"success": true}));
        for refused in &results[1..] {
            assert_eq!(refused["success"], false);
            assert_eq!(refused["error"]["name"], "InvalidKeenNamespaceProperty", "{refused}");
        }
        let stored = extraction(&server, &project.id, &project.master, "visits").await;
        assert_eq!(stored.len(), 1);
        let visit = &stored[0];
        assert_eq!(visit["geo"], json!({"city": "London", "province": "England", "country": "United Kingdom",
            "country_code": "GB", "continent": "Europe", "postal_code": "SW1A", "coordinates": [-0.1278, 51.5074]}));
        assert_eq!(visit["tech"]["browser"]["family"], "Chrome");
        assert_eq!(visit["tech"]["browser"]["major"], "126");
        assert_eq!(visit["tech"]["os"]["family"], "Windows");
        assert_eq!(visit["tech"]["device"]["family"], "Other");
        assert_eq!(visit["page"]["info"], json!({"protocol": "https", "domain": "shop.example.com", "path": "/cart",
            "anchor": "pay", "query_string": {"item": "42", "color": "red"}}));
        assert_eq!(visit["referrer"]["info"], json!({"medium": "SEARCH", "source": "Google", "term": "red shoes"}));
        assert_eq!(visit["time"]["utc"], json!({"year": 2026, "month": 11, "day_of_month": 27, "day_of_week": 5,
            "day_of_week_string": "Friday", "hour_of_day": 9, "minute": 5, "second": 7, "millisecond": 123}));
        assert!(visit["keen"].get("addons").is_none());

        // A webhook-style key: its autofill carries the add-ons, so every event it writes is enriched.
        let key = send(client().post(url("/keys")).header("Authorization", &project.master).json(&json!({
            "name": "tracker", "permitted": ["writes"],
            "options": {"writes": {"autofill": {"vendor_id": "acme", "keen": {"addons": [
                {"name": "keen:ua_parser", "input": {"ua_string": "ua"}, "output": "tech"}]}}}}}))).await;
        assert_eq!(key.0, 201, "{}", key.1);
        let secret = key.1["key"].as_str().unwrap();
        let one = send(client().post(url("/events/tracked")).header("Authorization", secret).json(&json!({"ua": CHROME}))).await;
        assert_eq!(one.0, 201, "{}", one.1);
        let tracked = extraction(&server, &project.id, &project.master, "tracked").await;
        assert_eq!(tracked[0]["tech"]["browser"]["family"], "Chrome");
        assert_eq!(tracked[0]["vendor_id"], "acme");
        let bad_key = send(client().post(url("/keys")).header("Authorization", &project.master).json(&json!({
            "name": "bad", "permitted": ["writes"],
            "options": {"writes": {"autofill": {"keen": {"addons": [{"name": "keen:nope", "input": {}, "output": "x"}]}}}}}))).await;
        assert_eq!(bad_key.0, 400, "{}", bad_key.1);

        // The database file changes: later events see the new data.
        write_geoip_db(&geo_db, "Newtown");
        tokio::time::sleep(Duration::from_secs(6)).await;
        let local = json!({"ip": "127.0.0.1", "keen": {"addons": [{"name": "keen:ip_to_geo", "input": {"ip": "ip", "remove_ip_property": true}, "output": "geo"}]}});
        let written = send(client().post(url("/events/local")).header("Authorization", &project.write).json(&local)).await;
        assert_eq!(written.0, 201, "{}", written.1);
        let local = extraction(&server, &project.id, &project.master, "local").await;
        assert_eq!(local[0]["geo"]["city"], "Newtown");
        assert!(local[0].get("ip").is_none(), "remove_ip_property");
    });
}

#[test]
fn without_a_geoip_database_ip_to_geo_leaves_geo_absent_logs_once_and_counts() {
    let data_dir = tempfile::tempdir().unwrap();
    let (server, log_path) = BinaryServer::start_logging_to_file(data_dir.path(), &[]);
    let project = server.printed_project();
    let organization_key = server.printed_organization_key();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for visit in 0..3 {
            let event = json!({"visit": visit, "ip": "81.2.69.142", "keen": {"addons": [
                {"name": "keen:ip_to_geo", "input": {"ip": "ip", "remove_ip_property": true}, "output": "geo"},
                {"name": "keen:url_parser", "input": {"url": "page"}, "output": "page_info"}]},
                "page": "https://shop.example/cart?step=2"});
            let answer = send(
                client()
                    .post(format!("{}/3.0/projects/{}/events/visits", server.base_url, project.id))
                    .header("Authorization", &project.write)
                    .json(&event),
            )
            .await;
            assert_eq!(answer.0, 201, "{}", answer.1);
        }
        let stored = extraction(&server, &project.id, &project.master, "visits").await;
        assert_eq!(stored.len(), 3);
        for event in &stored {
            assert!(event.get("geo").is_none(), "no geo output, not an empty one: {event}");
            assert!(event.get("ip").is_none(), "remove_ip_property still applies: {event}");
            assert_eq!(event["page_info"]["domain"], "shop.example", "the other add-ons run: {event}");
        }
        let metrics = client()
            .get(format!("{}/metrics", server.base_url))
            .header("Authorization", &organization_key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("keyhole_ip_to_geo_skipped_total 3"), "{metrics}");
        let status = send(client().get(format!("{}/console/server.json", server.base_url))).await;
        assert_eq!(status.1["ip_to_geo"]["enabled"], false);
        assert!(status.1["ip_to_geo"]["how_to_enable"].as_str().unwrap().contains("--geoip-db"));
    });
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(
        logged.matches("no GeoIP database is configured").count(),
        1,
        "one warning, not one per event: {logged}"
    );
}

#[test]
fn the_flat_layout_of_ip_location_db_fills_what_it_holds() {
    if !crate::support::has_python_sdk() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let geo_db = data_dir.path().join("dbip-city-ipv4.mmdb");
    write_geoip_db_with(&geo_db, "Testville", &["--flat"]);
    let geo_arg = geo_db.display().to_string();
    let server = BinaryServer::start(
        &data_dir.path().join("data"),
        &["--geoip-db", &geo_arg],
        &[],
    );
    let project = server.printed_project();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let event = json!({"ip": "81.2.69.142", "keen": {"addons": [
            {"name": "keen:ip_to_geo", "input": {"ip": "ip"}, "output": "geo"}]}});
        let answer = send(
            client()
                .post(format!(
                    "{}/3.0/projects/{}/events/visits",
                    server.base_url, project.id
                ))
                .header("Authorization", &project.write)
                .json(&event),
        )
        .await;
        assert_eq!(answer.0, 201, "{}", answer.1);
        let stored = extraction(&server, &project.id, &project.master, "visits").await;
        assert_eq!(
            stored[0]["geo"],
            json!({"city": "London", "province": "England", "country_code": "GB",
                   "postal_code": "SW1A", "coordinates": [-0.1278, 51.5074]}),
            "{}",
            stored[0]
        );
        let status = send(client().get(format!("{}/console/server.json", server.base_url))).await;
        assert_eq!(status.1["ip_to_geo"]["enabled"], true);
    });
}
