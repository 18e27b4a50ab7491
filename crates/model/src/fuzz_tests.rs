//! Property-based fuzzing of everything that parses untrusted input in this crate: event validation,
//! query parsing (with timeframe resolution and interval buckets), the GET-parameter decoder, filters and
//! access-key definitions. Inputs mix arbitrary JSON with the names and shapes the parsers look for, so
//! the interesting paths are reached, not only the first refusal. The properties: nothing panics, and what
//! is accepted is consistent (a prepared event reloads to itself; a resolved timeframe is ordered and in
//! range). Cases that once failed are kept by proptest in `proptest-regressions/`.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::event::{EventContext, prepare_event, reload_event};
use crate::query::{AnalysisType, Filter, Query, Timezone, params_from_query_string};
use crate::timestamp::{MAX_INSTANT, MIN_INSTANT};

/// Strings the parsers treat specially, mixed with arbitrary text.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z_]{0,12}",
        1 => any::<String>().prop_map(|s| s.chars().take(40).collect()),
        1 => prop::sample::select(vec![
            "keen", "timestamp", "uniqueness_token", "uniqueness_scope", "addons", "location", "created_at",
            "id", "${keen.ip}", "${keen.user_agent}", "a.b", "$x", "_private", "\u{202E}", "\u{0}", "", " ",
            "this_7_days", "previous_4294967295_years", "this_99999999999_minutes", "2024-01-01T00:00:00Z",
            "+200000-01-01", "0000-12-31T23:59:59Z", "9999-12-31T23:59:59.999Z", "every_0_days",
            "minutely", "every_4294967295_years", "Europe/Berlin", "-86400", "86401", "or", "in", "eq",
            "regex", "(a+)+$", "within", "exists",
        ]).prop_map(str::to_string),
        1 => (0usize..3).prop_map(|n| "x".repeat(9_999 + n)),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        (-10i64..10).prop_map(|n| json!(n)),
    ]
}

/// Arbitrary JSON, with the keys parsers look for over-represented.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            btree_map(text(), inner, 0..8).prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn filter_value() -> impl Strategy<Value = Value> {
    let condition = (
        text(),
        prop::sample::select(vec![
            "eq", "ne", "lt", "lte", "gt", "gte", "exists", "in", "contains", "not_contains",
            "within", "regex", "like",
        ]),
        json_value(),
    )
        .prop_map(|(property, operator, value)| {
            json!({"property_name": property, "operator": operator, "property_value": value})
        });
    condition.prop_recursive(4, 64, 6, |inner| {
        vec(inner, 0..6).prop_map(|operands| json!({"operator": "or", "operands": operands}))
    })
}

/// A query parameter object over the names `Query::parse` reads.
fn query_params() -> impl Strategy<Value = Map<String, Value>> {
    let names = prop::sample::select(vec![
        "event_collection",
        "target_property",
        "percentile",
        "timeframe",
        "timezone",
        "interval",
        "filters",
        "group_by",
        "order_by",
        "limit",
        "include_metadata",
        "latest",
        "property_names",
        "email",
        "steps",
        "analyses",
    ]);
    let value = prop_oneof![
        2 => json_value(),
        1 => vec(filter_value(), 0..4).prop_map(Value::Array),
        1 => (any::<bool>(), any::<u64>(), prop::sample::select(vec!["minutes", "hours", "days", "weeks", "months", "years"]))
            .prop_map(|(this, count, unit)| json!(format!("{}_{count}_{unit}", if this { "this" } else { "previous" }))),
        1 => (any::<u32>(), prop::sample::select(vec!["minutes", "hours", "days", "weeks", "months", "years"]))
            .prop_map(|(count, unit)| json!(format!("every_{count}_{unit}"))),
    ];
    btree_map(names.prop_map(str::to_string), value, 0..8).prop_map(|map| map.into_iter().collect())
}

fn context() -> EventContext {
    EventContext {
        received_at: "2026-11-29T12:00:00Z".parse().expect("a valid instant"),
        client_ip: Some("127.0.0.1".into()),
        user_agent: Some("proptest".into()),
        uniqueness_scope: Some("scope".into()),
        autofill: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn event_validation_never_panics_and_what_it_accepts_reloads(event in json_value()) {
        let sent = event.clone();
        if let Ok(prepared) = prepare_event(event, &context()) {
            let (flat, token) = reload_event(&prepared.json).expect("a prepared event reloads");
            prop_assert_eq!(&flat, &prepared.flat);
            prop_assert_eq!(token, prepared.uniqueness_token);
            // Parsed straight from the text, the event holds what flattening the sent JSON gives.
            let placeholders = sent.to_string().contains("${keen.");
            if let (Value::Object(mut sent), false) = (sent, placeholders) {
                sent.remove("keen");
                let mut expected = crate::flat::flatten_properties(sent);
                expected.sort_by(|left, right| crate::flat_edit::path_order(&left.0, &right.0));
                let parsed: Vec<_> = flat.properties.into_iter().filter(|(path, _)| !path.starts_with("keen.")).collect();
                prop_assert_eq!(parsed, expected);
            }
        }
    }

    #[test]
    fn event_objects_with_keen_namespaces_never_panic(
        properties in btree_map(text(), json_value(), 0..6),
        keen in btree_map(text(), json_value(), 0..4),
    ) {
        let mut event: Map<String, Value> = properties.into_iter().collect();
        event.insert("keen".into(), Value::Object(keen.into_iter().collect()));
        let _ = prepare_event(Value::Object(event), &context());
    }

    #[test]
    fn query_parsing_and_time_resolution_never_panic(
        params in query_params(),
        analysis in prop::sample::select(AnalysisType::ALL.to_vec()),
        now in MIN_INSTANT..MAX_INSTANT,
    ) {
        if let Ok(query) = Query::parse(analysis, &params)
            && let Some(timeframe) = &query.timeframe
            && let Ok(range) = timeframe.resolve(now, query.timezone)
        {
            prop_assert!(range.start <= range.end);
            prop_assert!(range.start >= MIN_INSTANT && range.end <= MAX_INSTANT);
            if let Some(interval) = query.interval {
                let _ = interval.boundaries(range, query.timezone, 10_000);
            }
        }
    }

    #[test]
    fn the_get_parameter_decoder_never_panics(query in any::<String>(), raw in vec(any::<u8>(), 0..200)) {
        let _ = params_from_query_string(&query);
        let lossy = String::from_utf8_lossy(&raw);
        if let Ok(params) = params_from_query_string(&lossy) {
            let _ = Query::parse(AnalysisType::Count, &params);
        }
        let _ = crate::query_string::percent_decode(&lossy, true);
    }

    #[test]
    fn get_parameters_built_from_json_never_panic(params in query_params()) {
        let query: String = params
            .iter()
            .map(|(name, value)| {
                let text = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                format!("{name}={}&{name}[start]={}", encode(&text), encode(&text))
            })
            .collect::<Vec<_>>()
            .join("&");
        if let Ok(decoded) = params_from_query_string(&query) {
            let _ = Query::parse(AnalysisType::Funnel, &decoded);
            let _ = Query::parse(AnalysisType::MultiAnalysis, &decoded);
        }
    }

    #[test]
    fn filters_and_key_definitions_never_panic(filters in vec(filter_value(), 0..5), options in json_value()) {
        let _ = Filter::parse_list(&Value::Array(filters.clone()));
        let definition = json!({"name": "k", "permitted": ["queries"], "options": {"queries": {"filters": filters}}});
        let _ = crate::access::AccessKeyDefinition::parse(&definition);
        let _ = crate::access::AccessKeyDefinition::parse(&json!({"name": "k", "options": options}));
        let _ = crate::key_options::KeyOptions::parse(&options);
        let _ = crate::strict_json::parse(options.to_string().as_bytes());
    }

    #[test]
    fn time_zones_never_panic(zone in json_value(), now in MIN_INSTANT..MAX_INSTANT) {
        if let Ok(zone) = Timezone::parse(&zone) {
            let timeframe = crate::query::Timeframe::parse(&json!("this_3_weeks")).expect("valid");
            let _ = timeframe.resolve(now, zone);
        }
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// A dotted path over a small alphabet (so it collides with autofills), sometimes hostile: thousands of
/// segments, empty or over-long segments, names the rules refuse.
fn addon_path() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => vec(prop::sample::select(vec!["a", "b", "c", "keen", "timestamp"]), 1..5).prop_map(|segments| segments.join(".")),
        1 => (1usize..12_000).prop_map(|depth| vec!["d"; depth].join(".")),
        1 => prop::sample::select(vec!["", ".", "a..b", "a.$b", "a.\u{202E}", " "]).prop_map(str::to_string),
        1 => (250usize..300).prop_map(|length| format!("a.{}", "n".repeat(length))),
        1 => text(),
    ]
}

/// One `keen.addons` entry: mostly well-formed with random paths, sometimes arbitrary JSON.
fn addon_declaration() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "keen:ip_to_geo",
        "keen:ua_parser",
        "keen:url_parser",
        "keen:referrer_parser",
        "keen:date_time_parser",
        "keen:weather",
    ]);
    let parameter = prop::sample::select(vec![
        "ip",
        "ua_string",
        "url",
        "referrer_url",
        "page_url",
        "date_time",
        "remove_ip_property",
        "extra",
    ]);
    let input = btree_map(
        parameter,
        prop_oneof![
            addon_path().prop_map(Value::String),
            any::<bool>().prop_map(Value::Bool),
            json_value()
        ],
        0..4,
    );
    prop_oneof![
        5 => (names, input, addon_path()).prop_map(|(name, input, output)| json!({
            "name": name, "input": input.into_iter().map(|(name, value)| (name.to_string(), value)).collect::<Map<String, Value>>(), "output": output})),
        1 => json_value(),
    ]
}

/// An autofill object over the same alphabet.
fn autofill_tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![Just(json!("tenant")), Just(json!(7)), Just(json!({}))];
    let value = leaf.prop_recursive(3, 12, 3, |inner| {
        btree_map(
            prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_string),
            inner,
            1..3,
        )
        .prop_map(|members| Value::Object(members.into_iter().collect()))
    });
    btree_map(
        prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_string),
        value,
        1..3,
    )
    .prop_map(|members| Value::Object(members.into_iter().collect()))
}

fn value_at<'a>(event: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(event, |value, segment| value.get(segment))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Add-on declarations, hostile ones included, never panic or overflow the stack; what is accepted
    /// reloads as prepared; and every autofilled path holds the key's value.
    #[test]
    fn add_on_declarations_never_panic_and_never_move_an_autofilled_value(
        autofill in autofill_tree(),
        properties in btree_map(prop::sample::select(vec!["a", "b", "c", "u"]).prop_map(str::to_string), json_value(), 0..4),
        addons in vec(addon_declaration(), 0..4),
    ) {
        let autofill = crate::autofill::Autofill::parse(&autofill).expect("the strategy makes valid autofills");
        let mut event: Map<String, Value> = properties.into_iter().collect();
        event.insert("keen".into(), json!({"addons": addons}));
        let context = EventContext { autofill: Some(std::sync::Arc::new(autofill.clone())), ..context() };
        if let Ok(prepared) = prepare_event(Value::Object(event), &context) {
            let (flat, _) = reload_event(&prepared.json).expect("a prepared event reloads");
            prop_assert_eq!(&flat, &prepared.flat);
            let stored: Value = serde_json::from_slice(&prepared.json).expect("prepared JSON parses");
            let filled = Value::Object(autofill.source().clone());
            for leaf in autofill.leaves() {
                let expected = value_at(&filled, leaf);
                prop_assert_eq!(value_at(&stored, leaf), expected, "{} in {}", leaf, stored);
            }
        }
    }

    /// Signature headers of any shape never panic, never pass without the secret's signature, and are
    /// looked at in time independent of how many signatures they name.
    #[test]
    fn webhook_signature_headers_never_panic_or_pass_unsigned(
        header in prop_oneof![
            any::<String>(),
            (any::<i64>(), vec("[0-9a-f]{0,70}", 0..2_000)).prop_map(|(t, candidates)| format!(
                "t={t},{}", candidates.iter().map(|c| format!("v1={c}")).collect::<Vec<_>>().join(","))),
            "sha256=[0-9a-f]{0,80}",
        ],
        scheme in prop::sample::select(vec!["github", "stripe", "hmac-sha256"]),
        body in vec(any::<u8>(), 0..512),
    ) {
        let key_secret = "0f3c6b1d2e4a59687766554433221100ffeeddccbbaa99887766554433221100";
        let mut definition = json!({"signature": scheme, "secret": "whsec_fuzz_0123456789abcdef"});
        if scheme == "hmac-sha256" {
            definition["header"] = json!("X-Signature");
        }
        let sealed = crate::webhook::seal_options(&json!({"writes": {"webhook": definition}}), key_secret).expect("seals");
        let rule = crate::webhook::parse_webhook(&sealed["writes"]["webhook"]).expect("parses").expect("a rule").opened(Some(key_secret));
        let now = 1_800_000_000;
        prop_assert!(rule.verify(Some(&header), &body, now).is_err());
        let _ = rule.precheck(Some(&header), now);
    }
}
