//! Keen's data enrichment add-ons (`keen.addons: [{"name", "input", "output"}]`), applied to an event at
//! write time, before it is stored: `input` maps each parameter to a dotted property path of the same event,
//! `output` is the dotted path the result object is written to (never under `keen.`), and the add-on list
//! itself is not stored.
//!
//! The parsers that need no data live here: `keen:url_parser` (`url` → `{protocol, domain, path, anchor,
//! query_string}`, absent parts left out) and `keen:date_time_parser` (`date_time` → date parts). Those that
//! need data — `keen:ip_to_geo` (a MaxMind database), `keen:ua_parser` (a user-agent regex set) and the source
//! list of `keen:referrer_parser` — go through the [`Enricher`] the server provides.
//!
//! Every input is capped in length before it is parsed ([`MAX_USER_AGENT_BYTES`], [`MAX_URL_BYTES`],
//! [`MAX_SHORT_INPUT_BYTES`]) and every parser takes time linear in its input, so one add-on's cost is
//! bounded whatever the event holds; the server runs them off its async workers under a per-request
//! budget.
//!
//! Design: Keen's `date_time_parser` field names were not recovered from any public source; Keyhole writes
//! `{year, month, day_of_month, day_of_week (1 = Monday … 7 = Sunday), day_of_week_string, hour_of_day,
//! minute, second, millisecond}` of the instant as given (an offset in the text is kept: `time.local`
//! receives the browser's local time), documented in README. An input path that is missing or not a
//! string leaves that add-on's output out (Keen wrote blank values; an absent property is what queries
//! treat as blank). An object already at the output path keeps its other members (keen-tracking's
//! auto-collector sends `tech: {profile: …}` and `geo: {}`). A bad spec — unknown name, missing input
//! parameter, output under `keen.` or not a path — refuses the event.

use chrono::{Datelike, Timelike};
use serde_json::{Map, Value, json};

use crate::event::EventError;
use crate::flat::FlatValue;
use crate::flat_edit::{remove_at_or_under, string_at, write_at};

/// Most add-ons one event may name.
pub(crate) const MAX_ADDONS: usize = 16;
/// Longest user agent parsed: a longer one is parsed by its first this many bytes (the browser, engine and
/// device tokens come first; uap-core's thousand regexes then cost a bounded time).
pub(crate) const MAX_USER_AGENT_BYTES: usize = 512;
/// Longest URL the URL and referrer parsers look at; a longer one is treated as malformed.
pub(crate) const MAX_URL_BYTES: usize = 4096;
/// Longest IP address or date-time text looked at; a longer one is treated as malformed.
pub(crate) const MAX_SHORT_INPUT_BYTES: usize = 64;
/// Most labels of a referring host looked up in the referrer list (its longest entries have four): the
/// lookup tries the host and its parents, so a host of thousands of labels costs no more than this.
const MAX_REFERRER_LABELS: usize = 5;

/// The add-ons Keen documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddonKind {
    /// `keen:ip_to_geo`.
    IpToGeo,
    /// `keen:ua_parser`.
    UaParser,
    /// `keen:url_parser`.
    UrlParser,
    /// `keen:referrer_parser`.
    ReferrerParser,
    /// `keen:date_time_parser`.
    DateTimeParser,
}

impl AddonKind {
    const ALL: [(AddonKind, &'static str, &'static [&'static str]); 5] = [
        (AddonKind::IpToGeo, "keen:ip_to_geo", &["ip"]),
        (AddonKind::UaParser, "keen:ua_parser", &["ua_string"]),
        (AddonKind::UrlParser, "keen:url_parser", &["url"]),
        (
            AddonKind::ReferrerParser,
            "keen:referrer_parser",
            &["referrer_url", "page_url"],
        ),
        (
            AddonKind::DateTimeParser,
            "keen:date_time_parser",
            &["date_time"],
        ),
    ];

    fn parse(name: &str) -> Option<(AddonKind, &'static [&'static str])> {
        AddonKind::ALL
            .iter()
            .find(|(_, known, _)| *known == name)
            .map(|(kind, _, inputs)| (*kind, *inputs))
    }

    /// The names of every add-on, as events declare them.
    pub fn names() -> impl Iterator<Item = &'static str> {
        AddonKind::ALL.iter().map(|(_, name, _)| *name)
    }

    /// The add-on's name as events declare it (`keen:url_parser`).
    pub fn name(self) -> &'static str {
        AddonKind::ALL
            .iter()
            .find(|(kind, _, _)| *kind == self)
            .map_or("keen:addon", |(_, name, _)| *name)
    }
}

/// One parsed add-on spec.
#[derive(Clone, Debug, PartialEq)]
pub struct AddonSpec {
    /// Which add-on.
    pub kind: AddonKind,
    /// Parameter name → dotted input path.
    pub input: Vec<(String, String)>,
    /// The property path the add-on writes its output to.
    pub output: String,
    /// `ip_to_geo`'s `remove_ip_property`: drop the input property once used.
    pub remove_input: bool,
}

/// What the server provides to the add-ons that need data.
pub trait Enricher {
    /// `keen:ip_to_geo`'s output for `ip`, `Ok(None)` when the database does not know it; `Err` with a
    /// message when no database is configured.
    fn ip_to_geo(&self, ip: &str) -> Result<Option<Value>, String>;
    /// `keen:ua_parser`'s output.
    fn user_agent(&self, ua: &str) -> Value;
    /// The (medium, source) of a referring host, when the referrer list knows it.
    fn referrer_source(&self, host: &str) -> Option<(String, String)>;
    /// Why `kind` cannot run here (the data it needs is not installed), when it cannot; such an add-on
    /// refuses its event rather than storing an empty answer.
    fn unavailable(&self, _kind: AddonKind) -> Option<String> {
        None
    }
}

/// The enricher of callers that have no data: the add-ons needing it are refused with a clear message.
pub(crate) struct WithoutData;

impl Enricher for WithoutData {
    fn ip_to_geo(&self, _ip: &str) -> Result<Option<Value>, String> {
        Err("no GeoIP database is configured".into())
    }
    fn user_agent(&self, _ua: &str) -> Value {
        Value::Null
    }
    fn referrer_source(&self, _host: &str) -> Option<(String, String)> {
        None
    }
}

fn refused(message: String) -> EventError {
    EventError::InvalidKeenNamespaceProperty(message)
}

/// A path an add-on reads or writes, checked as event property paths are (see `names::path_problem`).
fn checked_path<'a>(
    name: &str,
    role: &str,
    path: Option<&'a Value>,
) -> Result<&'a str, EventError> {
    let Some(path) = path.and_then(Value::as_str) else {
        return Err(refused(format!(
            "{name} needs {role}: the path of a property of the event."
        )));
    };
    match crate::names::path_problem(path) {
        None => Ok(path),
        Some(problem) => Err(EventError::InvalidPropertyName(format!(
            "{name}'s {role}: {problem}"
        ))),
    }
}

thread_local! {
    /// The add-on list last parsed on this thread, with its specs: keen-tracking's auto-collector (and a
    /// webhook key's autofill) sends the same list with every event, and comparing it is cheaper than
    /// parsing it again.
    static LAST_PARSED: std::cell::RefCell<Option<(Value, std::sync::Arc<[AddonSpec]>)>> =
        const { std::cell::RefCell::new(None) };
}

/// [`parse_addons`], answered from the last list parsed on this thread when `value` is the same.
pub(crate) fn parse_addons_cached(
    value: &Value,
) -> Result<std::sync::Arc<[AddonSpec]>, EventError> {
    let cached = LAST_PARSED.with(|last| {
        last.borrow()
            .as_ref()
            .filter(|(seen, _)| seen == value)
            .map(|(_, specs)| specs.clone())
    });
    if let Some(specs) = cached {
        return Ok(specs);
    }
    let specs: std::sync::Arc<[AddonSpec]> = parse_addons(value)?.into();
    LAST_PARSED.with(|last| *last.borrow_mut() = Some((value.clone(), specs.clone())));
    Ok(specs)
}

/// Parses `keen.addons`.
pub(crate) fn parse_addons(value: &Value) -> Result<Vec<AddonSpec>, EventError> {
    let items = value
        .as_array()
        .filter(|items| items.len() <= MAX_ADDONS)
        .ok_or_else(|| {
            refused(format!(
                "keen.addons must be a list of at most {MAX_ADDONS} add-on objects."
            ))
        })?;
    items.iter().map(parse_addon).collect()
}

fn parse_addon(item: &Value) -> Result<AddonSpec, EventError> {
    let object = item
        .as_object()
        .ok_or_else(|| refused("keen.addons must be a list of add-on objects.".into()))?;
    let name = object
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (kind, parameters) = AddonKind::parse(name).ok_or_else(|| {
        refused(format!(
            "'{}' is not an add-on; Keyhole has keen:ip_to_geo, keen:ua_parser, keen:url_parser, keen:referrer_parser and keen:date_time_parser.",
            name.chars().take(100).collect::<String>()
        ))
    })?;
    let input = object
        .get("input")
        .and_then(Value::as_object)
        .ok_or_else(|| refused(format!("{name} needs an input object.")))?;
    let mut inputs = Vec::new();
    for parameter in parameters {
        let path = checked_path(name, &format!("input.{parameter}"), input.get(*parameter))?;
        inputs.push((parameter.to_string(), path.to_string()));
    }
    let remove_input = match input.get("remove_ip_property") {
        None => false,
        Some(Value::Bool(flag)) if kind == AddonKind::IpToGeo => *flag,
        Some(_) => {
            return Err(refused(format!(
                "{name}: remove_ip_property must be true or false, and only for keen:ip_to_geo."
            )));
        }
    };
    if let Some(unknown) = input
        .keys()
        .find(|key| !parameters.contains(&key.as_str()) && key.as_str() != "remove_ip_property")
    {
        return Err(refused(format!(
            "{name} has no input parameter '{unknown}'."
        )));
    }
    let output = checked_path(name, "output", object.get("output"))?;
    if output == "keen" || output.starts_with("keen.") {
        return Err(refused(format!("{name}'s output may not be inside keen.")));
    }
    Ok(AddonSpec {
        kind,
        input: inputs,
        output: output.to_string(),
        remove_input,
    })
}

/// Applies one add-on to an event's flattened properties (`keen` holds the event's `keen.*` properties,
/// for inputs such as `keen.timestamp`): its output is written at its output path (`flat_edit::write_at`:
/// an object already there keeps its other members, the result's win) and, with `remove_ip_property`,
/// its input is removed.
pub(crate) fn apply_addon(
    properties: &mut Vec<(String, FlatValue)>,
    keen: &[(String, FlatValue)],
    spec: &AddonSpec,
    enricher: &dyn Enricher,
) -> Result<(), EventError> {
    let events_own: &[(String, FlatValue)] = properties;
    let text = |parameter: &str| -> Option<&str> {
        let path = &spec.input.iter().find(|(name, _)| name == parameter)?.1;
        if path.starts_with("keen.") {
            string_at(keen, path)
        } else {
            string_at(events_own, path)
        }
    };
    fn at_most(text: Option<&str>, limit: usize) -> Option<&str> {
        text.filter(|text| text.len() <= limit)
    }
    if let Some(reason) = enricher.unavailable(spec.kind) {
        return Err(refused(format!("{}: {reason}", spec.kind.name())));
    }
    let output = match spec.kind {
        AddonKind::IpToGeo => match at_most(text("ip"), MAX_SHORT_INPUT_BYTES) {
            Some(ip) => enricher
                .ip_to_geo(ip)
                .map_err(|message| refused(format!("keen:ip_to_geo: {message}")))?,
            None => None,
        },
        AddonKind::UaParser => {
            text("ua_string").map(|ua| enricher.user_agent(truncated(ua, MAX_USER_AGENT_BYTES)))
        }
        AddonKind::UrlParser => at_most(text("url"), MAX_URL_BYTES).and_then(parse_url),
        AddonKind::ReferrerParser => text("referrer_url").map(|referrer| {
            let page = at_most(text("page_url"), MAX_URL_BYTES);
            match at_most(Some(referrer), MAX_URL_BYTES) {
                Some(referrer) => parse_referrer(referrer, page, enricher),
                None => blank_referrer(),
            }
        }),
        AddonKind::DateTimeParser => {
            at_most(text("date_time"), MAX_SHORT_INPUT_BYTES).and_then(date_parts)
        }
    };
    if let Some(output) = output {
        write_at(properties, &spec.output, output);
    }
    if spec.remove_input
        && let Some((_, path)) = spec.input.first()
        && !path.starts_with("keen.")
    {
        remove_at_or_under(properties, path);
    }
    Ok(())
}

/// The longest prefix of `text` of at most `limit` bytes that ends on a character boundary.
fn truncated(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `keen:url_parser`.
pub(crate) fn parse_url(text: &str) -> Option<Value> {
    let url = url::Url::parse(text).ok()?;
    let mut out = Map::new();
    out.insert("protocol".into(), json!(url.scheme()));
    if let Some(domain) = url.host_str() {
        out.insert("domain".into(), json!(domain));
    }
    out.insert("path".into(), json!(url.path()));
    if let Some(anchor) = url.fragment().filter(|anchor| !anchor.is_empty()) {
        out.insert("anchor".into(), json!(anchor));
    }
    // Parameters whose names could not be property names (`utm.source`, `a[b]`, …) are left out.
    let query: Map<String, Value> = url
        .query_pairs()
        .filter(|(name, _)| crate::names::property_name_problem(name).is_none())
        .map(|(name, value)| (name.into_owned(), Value::String(value.into_owned())))
        .collect();
    if !query.is_empty() {
        out.insert("query_string".into(), Value::Object(query));
    }
    Some(Value::Object(out))
}

/// Query parameters that carry a search term, in the order they are tried.
const SEARCH_TERM_PARAMETERS: [&str; 8] = [
    "q", "query", "p", "wd", "text", "search", "keywords", "term",
];

/// `keen:referrer_parser`: `{medium, source, term}`. INTERNAL when the referrer's host is the page's,
/// the referrer list's medium (SEARCH, SOCIAL, EMAIL, PAID, …) when it knows the host (or a parent
/// domain), else UNKNOWN; malformed input gives blank values.
pub(crate) fn parse_referrer(referrer: &str, page: Option<&str>, enricher: &dyn Enricher) -> Value {
    let Ok(referrer) = url::Url::parse(referrer) else {
        return blank_referrer();
    };
    let host = referrer.host_str().unwrap_or_default().to_ascii_lowercase();
    let page_host = page
        .and_then(|page| url::Url::parse(page).ok())
        .and_then(|page| page.host_str().map(str::to_ascii_lowercase));
    if page_host.as_deref() == Some(host.as_str()) {
        return json!({"medium": "INTERNAL", "source": null, "term": null});
    }
    let bare = host.strip_prefix("www.").unwrap_or(&host);
    // Only the last labels can name a listed host: start from them, so a host of thousands of labels
    // costs a handful of lookups.
    let mut candidate = bare
        .rmatch_indices('.')
        .nth(MAX_REFERRER_LABELS - 1)
        .map_or(bare, |(dot, _)| &bare[dot + 1..]);
    let known = loop {
        if let Some(found) = enricher.referrer_source(candidate) {
            break Some(found);
        }
        match candidate.split_once('.') {
            Some((_, parent)) if parent.contains('.') => candidate = parent,
            _ => break None,
        }
    };
    let Some((medium, source)) = known else {
        return json!({"medium": "UNKNOWN", "source": null, "term": null});
    };
    let medium = medium.to_ascii_uppercase();
    let term = (medium == "SEARCH")
        .then(|| {
            SEARCH_TERM_PARAMETERS.iter().find_map(|parameter| {
                referrer
                    .query_pairs()
                    .find(|(name, value)| name == parameter && !value.is_empty())
                    .map(|(_, value)| value.into_owned())
            })
        })
        .flatten();
    json!({"medium": medium, "source": source, "term": term})
}

/// The referrer parser's answer for a referrer it cannot read.
fn blank_referrer() -> Value {
    json!({"medium": null, "source": null, "term": null})
}

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// `keen:date_time_parser`: the date parts of an ISO-8601 date-time, in the offset it was written in.
pub(crate) fn date_parts(text: &str) -> Option<Value> {
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|date| date.naive_local())
        .or_else(|| {
            [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
            ]
            .iter()
            .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok())
        })?;
    Some(json!({
        "year": parsed.year(),
        "month": parsed.month(),
        "day_of_month": parsed.day(),
        "day_of_week": parsed.weekday().number_from_monday(),
        "day_of_week_string": WEEKDAYS[parsed.weekday().num_days_from_monday() as usize],
        "hour_of_day": parsed.hour(),
        "minute": parsed.minute(),
        "second": parsed.second(),
        "millisecond": parsed.nanosecond() / 1_000_000 % 1000,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TestData;

    impl Enricher for TestData {
        fn ip_to_geo(&self, ip: &str) -> Result<Option<Value>, String> {
            Ok((ip == "81.2.69.142").then(|| json!({"city": "London"})))
        }
        fn user_agent(&self, ua: &str) -> Value {
            json!({"raw": ua})
        }
        fn referrer_source(&self, host: &str) -> Option<(String, String)> {
            match host {
                "google.com" => Some(("search".into(), "Google".into())),
                "facebook.com" => Some(("social".into(), "Facebook".into())),
                _ => None,
            }
        }
    }

    #[test]
    fn a_repeated_list_is_parsed_once_per_thread() {
        let list = json!([{"name": "keen:url_parser", "input": {"url": "u"}, "output": "o"}]);
        let first = parse_addons_cached(&list).unwrap();
        let second = parse_addons_cached(&list).unwrap();
        assert!(std::sync::Arc::ptr_eq(&first, &second));
        let other = json!([{"name": "keen:url_parser", "input": {"url": "v"}, "output": "o"}]);
        assert_eq!(parse_addons_cached(&other).unwrap()[0].input[0].1, "v");
        assert!(parse_addons_cached(&json!([{"name": "keen:nope"}])).is_err());
        assert!(
            parse_addons_cached(&json!([{"name": "keen:nope"}])).is_err(),
            "errors are not cached"
        );
    }

    #[test]
    fn specs_are_checked() {
        let good = json!([{"name": "keen:ip_to_geo", "input": {"ip": "ip_address", "remove_ip_property": true}, "output": "geo"}]);
        assert!(parse_addons(&good).unwrap()[0].remove_input);
        for bad in [
            json!([{"name": "keen:weather", "input": {}, "output": "w"}]),
            json!([{"name": "keen:url_parser", "input": {}, "output": "u"}]),
            json!([{"name": "keen:url_parser", "input": {"url": "page"}, "output": "keen.u"}]),
            json!([{"name": "keen:url_parser", "input": {"url": "page"}, "output": "a..b"}]),
            json!([{"name": "keen:url_parser", "input": {"url": "page", "extra": "x"}, "output": "u"}]),
            json!([{"name": "keen:url_parser", "input": {"url": "page", "remove_ip_property": true}, "output": "u"}]),
            json!({"name": "keen:url_parser"}),
        ] {
            assert!(parse_addons(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn add_ons_write_their_outputs() {
        let event = json!({
            "ip_address": "81.2.69.142",
            "page": {"url": "https://shop.example.com/cart/items?id=7&tab=2&utm.source=x#top", "ref": "https://www.google.com/search?q=red+shoes"},
            "local": "2026-11-29T18:45:12.250+01:00",
        });
        let mut properties = crate::flat::flatten_properties(event.as_object().cloned().unwrap());
        let keen = vec![(
            "keen.timestamp".to_string(),
            FlatValue::Str("2026-11-29T17:45:12.250Z".into()),
        )];
        let specs = parse_addons(&json!([
            {"name": "keen:ip_to_geo", "input": {"ip": "ip_address", "remove_ip_property": true}, "output": "geo"},
            {"name": "keen:url_parser", "input": {"url": "page.url"}, "output": "page.info"},
            {"name": "keen:referrer_parser", "input": {"referrer_url": "page.ref", "page_url": "page.url"}, "output": "referrer.info"},
            {"name": "keen:date_time_parser", "input": {"date_time": "keen.timestamp"}, "output": "time.utc"},
            {"name": "keen:date_time_parser", "input": {"date_time": "local"}, "output": "time.local"},
            {"name": "keen:ua_parser", "input": {"ua_string": "missing"}, "output": "tech"},
        ]))
        .unwrap();
        for spec in &specs {
            apply_addon(&mut properties, &keen, spec, &TestData).unwrap();
        }
        let leaves = properties
            .iter()
            .map(|(path, value)| (path.as_str(), value))
            .collect();
        let event: Value =
            serde_json::from_slice(&crate::flat_edit::write_json(leaves, 0)).unwrap();
        assert_eq!(event["geo"], json!({"city": "London"}));
        assert!(event.get("ip_address").is_none());
        assert_eq!(
            event["page"]["info"],
            json!({"protocol": "https", "domain": "shop.example.com", "path": "/cart/items", "anchor": "top", "query_string": {"id": "7", "tab": "2"}})
        );
        assert_eq!(
            event["referrer"]["info"],
            json!({"medium": "SEARCH", "source": "Google", "term": "red shoes"})
        );
        assert_eq!(event["time"]["utc"]["hour_of_day"], 17);
        assert_eq!(event["time"]["local"]["hour_of_day"], 18);
        assert_eq!(event["time"]["local"]["day_of_week_string"], "Sunday");
        assert_eq!(event["time"]["local"]["millisecond"], 250);
        assert!(
            event.get("tech").is_none(),
            "a missing input leaves the output out"
        );
        let internal = parse_referrer(
            "https://shop.example.com/a",
            Some("https://shop.example.com/b"),
            &TestData,
        );
        assert_eq!(internal["medium"], "INTERNAL");
        assert_eq!(
            parse_referrer("https://m.facebook.com/x", None, &TestData)["medium"],
            "SOCIAL"
        );
        assert_eq!(
            parse_referrer("https://blog.example.org/", None, &TestData)["medium"],
            "UNKNOWN"
        );
        // A host of thousands of labels costs a handful of lookups, and a listed parent is still found.
        let deep = format!("https://{}www.google.com/search?q=x", "a.".repeat(4_000));
        assert_eq!(parse_referrer(&deep, None, &TestData)["medium"], "SEARCH");
        let long_ua = "Mozilla/5.0 ".repeat(2_000);
        assert!(truncated(&long_ua, MAX_USER_AGENT_BYTES).len() <= MAX_USER_AGENT_BYTES);
        assert_eq!(
            truncated("é".repeat(300).as_str(), 5),
            "éé",
            "cut on a character boundary"
        );
        assert_eq!(
            parse_referrer("not a url", None, &TestData)["medium"],
            Value::Null
        );
    }
}
