//! Embedded dashboards: a stored definition (`PUT …/dashboards/{name}`, validated), and the same dashboard
//! drawn for two tenants in Chromium — in iframes of the embed page and through the `<keyhole-dashboard>`
//! component, on a page of another origin that the tenants' keys list — showing each tenant exactly what
//! its own key's queries answer; expired and revoked tokens show the expired panel; a token without
//! `saved_queries` fails closed on the saved-query tile alone; a page on an origin the keys do not list
//! cannot frame the dashboard (`sdk-tests/node/embedded_dashboards.js`). Screenshots go to `artifacts/`.

use serde_json::{Value, json};

use crate::support::{BinaryServer, ProjectKeys, client, send};

/// Every number as an `f64`, so `30` and `30.0` compare equal (JSON from the browser loses the difference).
fn normalized(value: &Value) -> Value {
    match value {
        Value::Number(number) => json!(number.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(name, inner)| (name.clone(), normalized(inner)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn tiles() -> Value {
    json!([
        {"title": "Orders", "chart": "metric", "width": 3,
         "query": {"analysis_type": "count", "event_collection": "orders", "timeframe": "this_30_days"}},
        {"title": "Revenue", "chart": "metric", "width": 3,
         "query": {"analysis_type": "sum", "event_collection": "orders", "target_property": "amount", "timeframe": "this_30_days"}},
        {"title": "By item", "chart": "bar", "width": 6,
         "query": {"analysis_type": "count", "event_collection": "orders", "group_by": "item", "timeframe": "this_30_days"}},
        {"title": "Buyers", "chart": "metric", "width": 12, "saved_query": "buyers"},
    ])
}

struct Project<'a> {
    server: &'a BinaryServer,
    keys: ProjectKeys,
}

impl Project<'_> {
    fn url(&self, rest: &str) -> String {
        format!(
            "{}/3.0/projects/{}{rest}",
            self.server.base_url, self.keys.id
        )
    }

    async fn put(&self, rest: &str, body: &Value) -> (u16, Value) {
        send(
            client()
                .put(self.url(rest))
                .header("Authorization", &self.keys.master)
                .json(body),
        )
        .await
    }

    /// Writes `events` to `orders` with the project's write key.
    async fn write_orders(&self, events: Vec<Value>) {
        let written = send(
            client()
                .post(self.url("/events"))
                .header("Authorization", &self.keys.write)
                .json(&json!({"orders": events})),
        )
        .await;
        assert_eq!(written.0, 200, "{}", written.1);
    }

    /// Saves `buyers`: the distinct buyers of the last 30 days.
    async fn save_buyers(&self) {
        let saved = self
            .put(
                "/queries/saved/buyers",
                &json!({"query": {"analysis_type": "count_unique", "event_collection": "orders", "target_property": "buyer", "timeframe": "this_30_days"}}),
            )
            .await;
        assert_eq!(saved.0, 201, "{}", saved.1);
    }

    /// A key of the vendor's, bound to `origins` (none: any origin).
    async fn key(&self, vendor: &str, origins: &[String]) -> String {
        let mut definition = json!({
            "name": format!("{vendor} dashboard"),
            "permitted": ["queries", "saved_queries"],
            "options": {
                "queries": {"filters": [{"property_name": "vendor", "operator": "eq", "property_value": vendor}]},
            },
        });
        if !origins.is_empty() {
            definition["options"]["origins"] = json!(origins);
        }
        let created = send(
            client()
                .post(self.url("/keys"))
                .header("Authorization", &self.keys.master)
                .json(&definition),
        )
        .await;
        assert_eq!(created.0, 201, "{}", created.1);
        created.1["key"].as_str().unwrap().to_string()
    }

    /// Each tile's result as the key's own queries answer it (sent with an allowed origin).
    async fn expected(&self, key: &str, origin: &str) -> Vec<Value> {
        let mut results = Vec::new();
        for tile in tiles().as_array().unwrap() {
            let answer = if let Some(saved) = tile["saved_query"].as_str() {
                send(
                    client()
                        .get(self.url(&format!("/queries/saved/{saved}/result")))
                        .header("Authorization", key)
                        .header("Origin", origin),
                )
                .await
            } else {
                let mut body = tile["query"].clone();
                let analysis = body["analysis_type"].as_str().unwrap().to_string();
                body.as_object_mut().unwrap().remove("analysis_type");
                send(
                    client()
                        .post(self.url(&format!("/queries/{analysis}")))
                        .header("Authorization", key)
                        .header("Origin", origin)
                        .json(&body),
                )
                .await
            };
            assert_eq!(answer.0, 200, "{}", answer.1);
            results.push(normalized(&answer.1["result"]));
        }
        results
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dashboard_definition_is_validated_when_stored() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let project = Project {
        server: &server,
        keys: server.printed_project(),
    };
    let dashboard = json!({"title": "Shop", "tiles": tiles()});
    // The saved query a tile names must exist.
    let missing = project.put("/dashboards/shop", &dashboard).await;
    crate::support::assert_keen_error(&missing, 400, "InvalidDashboardDefinitionError");
    assert!(missing.1["message"].as_str().unwrap().contains("buyers"));
    project.save_buyers().await;
    let created = project.put("/dashboards/shop", &dashboard).await;
    assert_eq!(created.0, 201, "{}", created.1);
    assert_eq!(created.1["tiles"][3]["saved_query"], "buyers");
    let mut bad_chart = dashboard.clone();
    bad_chart["tiles"][0]["chart"] = json!("gauge");
    let mut bad_query = dashboard.clone();
    bad_query["tiles"][1]["query"]["timeframe"] = json!("the other day");
    for bad in [bad_chart, bad_query, json!({"title": "Shop", "tiles": []})] {
        crate::support::assert_keen_error(
            &project.put("/dashboards/shop", &bad).await,
            400,
            "InvalidDashboardDefinitionError",
        );
    }
    let replaced = project.put("/dashboards/shop", &dashboard).await;
    assert_eq!(replaced.0, 200, "{}", replaced.1);
    let listed = send(
        client()
            .get(project.url("/dashboards"))
            .header("Authorization", &project.keys.master),
    )
    .await;
    assert_eq!(listed.1["dashboards"][0]["name"], "shop");
    // The definition is the master key's to change; a read key may view it, a write key may not.
    crate::support::assert_keen_error(
        &send(
            client()
                .put(project.url("/dashboards/shop"))
                .header("Authorization", &project.keys.read)
                .json(&dashboard),
        )
        .await,
        401,
        "AdminOnlyEndpointError",
    );
    let viewed = send(
        client()
            .get(project.url("/dashboards/shop/view"))
            .header("Authorization", &project.keys.read),
    )
    .await;
    assert_eq!(viewed.0, 200, "{}", viewed.1);
    assert_eq!(viewed.1["title"], "Shop");
    let by_writer = send(
        client()
            .get(project.url("/dashboards/shop/view"))
            .header("Authorization", &project.keys.write),
    )
    .await;
    assert_eq!(by_writer.0, 401, "{}", by_writer.1);
    // The embed page frames nowhere without a key that names origins.
    let page = client()
        .get(format!(
            "{}/embed/{}/shop",
            server.base_url, project.keys.id
        ))
        .send()
        .await
        .unwrap();
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let deleted = client()
        .delete(project.url("/dashboards/shop"))
        .header("Authorization", &project.keys.master)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
}

#[test]
fn a_dashboard_embedded_for_two_tenants_shows_each_its_own_numbers_and_fails_closed() {
    if !crate::support::has_browser() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let page_port = crate::browser::free_port();
    let allowed_origin = format!("http://127.0.0.1:{page_port}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let project = Project {
        server: &server,
        keys: server.printed_project(),
    };
    let (frames, expected) = runtime.block_on(async {
        let events: Vec<Value> = (0..40)
            .map(|index| {
                let vendor = ["acme", "globex", "acme", "initech"][index % 4];
                let item = ["lamp", "desk", "chair"][index % 3];
                json!({"vendor": vendor, "amount": index, "item": item, "buyer": format!("b{}", index % 9)})
            })
            .collect();
        project.write_orders(events).await;
        // Two of acme's orders twelve days ago: in this_30_days, not in this_7_days.
        let earlier = keyhole_model::timestamp::format_timestamp(
            (chrono::Utc::now() - chrono::Duration::days(12)).timestamp_millis(),
        );
        let older: Vec<Value> = (0..2)
            .map(|_| json!({"vendor": "acme", "amount": 100, "item": "lamp", "buyer": "b0", "keen": {"timestamp": earlier}}))
            .collect();
        project.write_orders(older).await;
        project.save_buyers().await;
        let stored = project
            .put(
                "/dashboards/shop",
                &json!({"title": "Your orders", "tiles": tiles(),
                        "controls": {"timeframes": ["this_7_days", "this_30_days"]},
                        "theme": {"accent": "#7a3cc8", "font": "Georgia, serif"}}),
            )
            .await;
        assert_eq!(stored.0, 201, "{}", stored.1);
        let origins = [allowed_origin.clone()];
        let acme = project.key("acme", &origins).await;
        let globex = project.key("globex", &origins).await;
        let initech = project.key("initech", &origins).await;
        let acme_this_7_days = send(
            client()
                .post(project.url("/queries/count"))
                .header("Authorization", &acme)
                .header("Origin", &allowed_origin)
                .json(&json!({"event_collection": "orders", "timeframe": "this_7_days"})),
        )
        .await;
        let expected = json!({
            "acme": project.expected(&acme, &allowed_origin).await,
            "globex": project.expected(&globex, &allowed_origin).await,
            "acme_this_7_days": normalized(&acme_this_7_days.1["result"]),
        });
        let now = chrono::Utc::now().timestamp();
        let token = |secret: &str, claims: Value| {
            let mut claims = claims;
            claims["jti"] = json!("embed");
            keyhole_model::embed_token::mint(secret, &claims)
        };
        let frame = |name: &str, secret: &str, token: String| {
            json!({"name": name, "kid": keyhole_model::embed_token::key_id_of_secret(secret), "token": token})
        };
        let revoked_token = token(&initech, json!({"exp": now + 600}));
        let revoked = send(
            client()
                .post(project.url(&format!("/keys/{initech}/revoke")))
                .header("Authorization", &project.keys.master),
        )
        .await;
        assert_eq!(revoked.0, 200, "{}", revoked.1);
        let frames = json!([
            frame("acme", &acme, token(&acme, json!({"exp": now + 600}))),
            frame("globex", &globex, token(&globex, json!({"exp": now + 600}))),
            frame("expired", &acme, token(&acme, json!({"exp": now - 60}))),
            frame("revoked", &initech, revoked_token),
            frame("queries_only", &acme, token(&acme, json!({"exp": now + 600, "permitted": ["queries"]}))),
        ]);
        (frames, expected)
    });
    let embed = json!({"project": project.keys.id, "dashboard": "shop", "frames": frames});
    let results = crate::support::run_node_script(
        "embedded_dashboards.js",
        &[
            ("KEYHOLE_URL", server.base_url.as_str()),
            ("PAGE_PORT", &page_port.to_string()),
            ("EMBED", &embed.to_string()),
        ],
    );
    let shown = |dashboard: &Value| -> Vec<Value> {
        dashboard["tiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tile| {
                assert_eq!(tile["state"], "ready", "{dashboard}");
                normalized(&tile["result"])
            })
            .collect()
    };
    for tenant in ["acme", "globex"] {
        let expected: Vec<Value> = expected[tenant].as_array().unwrap().clone();
        for way in ["frames", "components"] {
            let dashboard = &results[way][tenant];
            assert_eq!(dashboard["state"], "ready", "{way} {tenant}: {results}");
            assert_eq!(dashboard["title"], "Your orders");
            assert_eq!(shown(dashboard), expected, "{way} {tenant}: {results}");
        }
    }
    assert_ne!(
        expected["acme"], expected["globex"],
        "the tenants' numbers differ"
    );
    // The timeframe control: the count tile over this_7_days, which leaves out acme's older orders.
    let chosen = normalized(&results["acme_this_7_days"]["tiles"][0]["result"]);
    assert_eq!(chosen, expected["acme_this_7_days"], "{results}");
    assert_ne!(chosen, expected["acme"][0], "{results}");
    for case in ["expired", "revoked"] {
        for way in ["frames", "components"] {
            let dashboard = &results[way][case];
            assert_eq!(dashboard["state"], "expired", "{way} {case}: {results}");
            assert!(
                dashboard["panel"]
                    .as_str()
                    .unwrap()
                    .contains("This link has expired"),
                "{results}"
            );
        }
    }
    for way in ["frames", "components"] {
        let tiles = results[way]["queries_only"]["tiles"].as_array().unwrap();
        let states: Vec<&str> = tiles
            .iter()
            .map(|tile| tile["state"].as_str().unwrap())
            .collect();
        assert_eq!(
            states,
            ["ready", "ready", "ready", "not-permitted"],
            "{way}: {results}"
        );
        assert_eq!(
            normalized(&tiles[0]["result"]),
            expected["acme"][0],
            "{results}"
        );
        assert_eq!(tiles[3]["result"], Value::Null);
    }
    assert_eq!(results["other_origin"]["drawn"], false, "{results}");
    assert_eq!(results["page_errors"], json!([]));
}

#[test]
fn the_console_builds_a_dashboard_from_a_saved_query_and_the_explorer_and_previews_it_as_a_tenant()
{
    if !crate::support::has_browser() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let project = Project {
        server: &server,
        keys: server.printed_project(),
    };
    let (token, expected) = runtime.block_on(async {
        let events: Vec<Value> = (0..12)
            .map(|index| {
                let vendor = ["acme", "globex", "acme"][index % 3];
                json!({"vendor": vendor, "buyer": format!("b{}", index % 5)})
            })
            .collect();
        project.write_orders(events).await;
        project.save_buyers().await;
        let acme = project.key("acme", &[]).await;
        let count = send(
            client()
                .post(project.url("/queries/count"))
                .header("Authorization", &acme)
                .json(&json!({"event_collection": "orders", "timeframe": "this_30_days"})),
        )
        .await;
        let buyers = send(
            client()
                .get(project.url("/queries/saved/buyers/result"))
                .header("Authorization", &acme),
        )
        .await;
        let exp = chrono::Utc::now().timestamp() + 600;
        let token = keyhole_model::embed_token::mint(&acme, &json!({"exp": exp, "jti": "preview"}));
        (
            token,
            vec![
                normalized(&count.1["result"]),
                normalized(&buyers.1["result"]),
            ],
        )
    });
    let results = crate::support::run_node_script(
        "console_dashboards.js",
        &[
            ("KEYHOLE_URL", server.base_url.as_str()),
            ("KEYHOLE_MASTER_KEY", &project.keys.master),
            ("PREVIEW_TOKEN", &token),
        ],
    );
    let stored = runtime.block_on(send(
        client()
            .get(project.url("/dashboards/console-made"))
            .header("Authorization", &project.keys.master),
    ));
    assert_eq!(stored.0, 200, "{}", stored.1);
    let tiles = &stored.1["tiles"];
    assert_eq!(tiles[0]["title"], "Orders", "{}", stored.1);
    assert_eq!(tiles[0]["query"]["analysis_type"], "count");
    assert_eq!(tiles[1]["saved_query"], "buyers");
    assert_eq!(tiles[1]["width"], 12);
    assert_eq!(
        stored.1["controls"]["timeframes"],
        json!(["this_7_days", "this_30_days"])
    );
    assert_eq!(stored.1["theme"]["accent"], "#7a3cc8");
    assert_eq!(results["preview"]["state"], "ready", "{results}");
    assert_eq!(results["preview"]["title"], "Made in the console");
    let shown: Vec<Value> = results["preview"]["tiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tile| normalized(&tile["result"]))
        .collect();
    assert_eq!(
        shown, expected,
        "the preview shows the tenant's own numbers: {results}"
    );
    let snippet = results["snippet"].as_str().unwrap();
    assert!(
        snippet.contains(&format!("/embed/{}/console-made?kid=", project.keys.id))
            && snippet.contains("#token="),
        "{results}"
    );
    assert_eq!(results["page_errors"], json!([]));
}
