//! Batch ingest with Keen's enrichment add-ons: the benchmark's events, each extended the way
//! keen-tracking's auto-collector sends a pageview — `ip_address`, `user_agent`, `url.full`,
//! `referrer.full`, `local_time_full` and its five add-ons (ua_parser, url_parser twice, date_time_parser
//! twice, ip_to_geo) — POSTed to a server with a MaxMind-format database, next to the plain ingest.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
];
const REFERRERS: [&str; 3] = [
    "https://www.google.com/search?q=analytics",
    "https://m.facebook.com/",
    "https://newsletter.example.org/issue/12",
];
const IPS: [&str; 3] = ["81.2.69.142", "81.2.69.160", "127.0.0.1"];

fn auto_collector_addons() -> Value {
    json!([
        {"name": "keen:ua_parser", "input": {"ua_string": "user_agent"}, "output": "tech"},
        {"name": "keen:url_parser", "input": {"url": "url.full"}, "output": "url.info"},
        {"name": "keen:url_parser", "input": {"url": "referrer.full"}, "output": "referrer.info"},
        {"name": "keen:date_time_parser", "input": {"date_time": "keen.timestamp"}, "output": "time.utc"},
        {"name": "keen:date_time_parser", "input": {"date_time": "local_time_full"}, "output": "time.local"},
        {"name": "keen:ip_to_geo", "input": {"ip": "ip_address", "remove_ip_property": false}, "output": "geo"},
    ])
}

/// Writes `plain`'s events, extended as the auto-collector's pageviews, to `out`.
pub fn write_auto_collector_ndjson(plain: &Path, out: &Path) -> anyhow::Result<()> {
    let reader = std::io::BufReader::new(
        std::fs::File::open(plain).with_context(|| format!("open {}", plain.display()))?,
    );
    let mut writer = std::io::BufWriter::new(std::fs::File::create(out)?);
    let addons = auto_collector_addons();
    for (index, line) in reader.lines().enumerate() {
        let mut event: Value = serde_json::from_str(&line?)?;
        let timestamp = event["keen"]["timestamp"].clone();
        event["ip_address"] = json!(IPS[index % IPS.len()]);
        event["user_agent"] = json!(USER_AGENTS[index % USER_AGENTS.len()]);
        event["url"] = json!({"full": format!("https://shop.example.com/products/{}?utm_source=mail", index % 500)});
        event["referrer"] = json!({"full": REFERRERS[index % REFERRERS.len()]});
        event["local_time_full"] = timestamp;
        event["keen"]["addons"] = addons.clone();
        serde_json::to_writer(&mut writer, &event)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()?;
    Ok(())
}

/// Writes the test GeoIP database the add-on run uses (`sdk-tests/python/write_geoip_db.py`).
pub fn write_geoip_db(python: &str, out: &Path) -> anyhow::Result<()> {
    let status = std::process::Command::new(python)
        .arg("sdk-tests/python/write_geoip_db.py")
        .arg(out)
        .status()
        .context("run write_geoip_db.py")?;
    anyhow::ensure!(
        status.success(),
        "write_geoip_db.py failed (is mmdb-writer installed?)"
    );
    Ok(())
}
