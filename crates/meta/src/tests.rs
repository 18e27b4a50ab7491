//! The metadata conformance suite: every test runs on SQLite (a real file) and on PostgreSQL (a real
//! server), as Quickwit's `metastore_test_suite!` does; `conformance_suite!` at the end lists them.

use super::*;

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The grant a presented credential resolves to, `None` when refused; a grant is cached as the server
/// caches it once a request passed its checks.
async fn grant_of(store: &MetaStore, presented: &str) -> Option<std::sync::Arc<Grant>> {
    let resolved = store
        .resolve_credential(presented, now_millis())
        .await
        .unwrap();
    match resolved.resolution {
        Resolution::Granted(grant) => {
            if let Some(ticket) = resolved.cache_ticket {
                store.cache_grant(ticket, grant.clone());
            }
            Some(grant)
        }
        Resolution::Refused(_) => None,
    }
}

async fn refusal_of(store: &MetaStore, presented: &str) -> Option<Refusal> {
    match store
        .resolve_credential(presented, now_millis())
        .await
        .unwrap()
        .resolution
    {
        Resolution::Granted(_) => None,
        Resolution::Refused(refusal) => Some(refusal),
    }
}

fn tenant_definition(filter_value: &str) -> keyhole_model::access::AccessKeyDefinition {
    keyhole_model::access::AccessKeyDefinition::parse(&serde_json::json!({
        "name": "tenant", "permitted": ["queries"],
        "options": {"queries": {"filters": [
            {"property_name": "tenant", "operator": "eq", "property_value": filter_value}]}}
    }))
    .unwrap()
}

/// The backend a conformance test runs on.
#[derive(Clone, Copy, Debug)]
enum TestBackend {
    Sqlite,
    Postgres,
}

/// Where a test's metadata lives: a SQLite file in a temporary directory, or a fresh PostgreSQL database
/// made on the server `KEYHOLE_TEST_POSTGRES_URL` names (`.ci/run` starts one).
struct TestDatabase {
    url: String,
    directory: Option<tempfile::TempDir>,
}

impl TestDatabase {
    async fn create(backend: TestBackend) -> TestDatabase {
        match backend {
            TestBackend::Sqlite => {
                let directory = tempfile::tempdir().unwrap();
                let url = format!(
                    "sqlite://{}",
                    directory.path().join("meta.sqlite").display()
                );
                TestDatabase {
                    url,
                    directory: Some(directory),
                }
            }
            TestBackend::Postgres => TestDatabase {
                url: fresh_postgres_database().await,
                directory: None,
            },
        }
    }

    async fn open(&self) -> MetaStore {
        MetaStore::open(&self.url).await.unwrap()
    }

    /// Every byte the store keeps: the SQLite files, or every PostgreSQL row as text.
    async fn stored_text(&self, store: &MetaStore) -> String {
        if let Some(directory) = &self.directory {
            let mut bytes = Vec::new();
            for entry in std::fs::read_dir(directory.path()).unwrap() {
                bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        let tables = sqlx::query(
            "SELECT CAST(table_name AS TEXT) AS table_name FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(&store.database.pool)
        .await
        .unwrap();
        let mut text = String::new();
        for table in tables {
            let table: String = table.get("table_name");
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT CAST(row_to_json(t) AS TEXT) AS row_text FROM {table} t"
            )))
            .fetch_all(&store.database.pool)
            .await
            .unwrap();
            for row in rows {
                text.push_str(&row.get::<String, _>("row_text"));
            }
        }
        text
    }
}

/// A new, empty database on the test PostgreSQL server; its URL.
async fn fresh_postgres_database() -> String {
    let server_url = keyhole_test_env::postgres_url()
        .expect("the PostgreSQL tests return early without KEYHOLE_TEST_POSTGRES_URL");
    let name = format!("keyhole_test_{}", keyhole_model::keys::generate_id());
    create_postgres_database(&server_url, &name).await.unwrap()
}

async fn open_store(backend: TestBackend) -> (TestDatabase, MetaStore) {
    let database = TestDatabase::create(backend).await;
    let store = database.open().await;
    (database, store)
}

async fn organization_key_is_generated_once_or_taken_from_config(backend: TestBackend) {
    let (database, store) = open_store(backend).await;
    let first = store.ensure_organization(None).await.unwrap();
    let key = first.generated_key.clone().unwrap();
    assert!(first.created);
    assert!(store.is_organization_key(&key).await.unwrap());
    let again = store.ensure_organization(None).await.unwrap();
    assert_eq!(
        (again.id.as_str(), again.generated_key, again.created),
        (first.id.as_str(), None, false)
    );
    // A different key on a later start is refused, never swapped in.
    assert!(matches!(
        store.ensure_organization(Some("configured-org-key")).await,
        Err(MetaError::OrganizationKeyMismatch)
    ));
    assert!(store.is_organization_key(&key).await.unwrap());
    store.ensure_organization(Some(&key)).await.unwrap();
    // Rotation is the explicit way.
    assert!(
        store
            .rotate_organization_key("configured-org-key")
            .await
            .unwrap()
    );
    assert!(
        store
            .is_organization_key("configured-org-key")
            .await
            .unwrap()
    );
    assert!(!store.is_organization_key(&key).await.unwrap());
    drop(store);
    let reopened = database.open().await;
    assert_eq!(reopened.organization_id().await.unwrap(), Some(first.id));
}

async fn projects_keep_only_key_hashes(backend: TestBackend) {
    let (database, store) = open_store(backend).await;
    let (project, keys) = store.create_project("shop").await.unwrap();
    assert_eq!(project.key_prefixes.master, &keys.master[..8]);
    let resolved = grant_of(&store, &keys.write).await.unwrap();
    assert_eq!(
        (resolved.project_id(), resolved.kind()),
        (project.id.as_str(), KeyKind::Write)
    );
    assert_eq!(
        grant_of(&store, &keys.read).await.unwrap().kind(),
        KeyKind::Read
    );
    assert_eq!(refusal_of(&store, "nope").await, Some(Refusal::UnknownKey));
    assert_eq!(
        store
            .rename_project(&project.id, "shop2")
            .await
            .unwrap()
            .unwrap()
            .name,
        "shop2"
    );
    assert_eq!(store.rename_project("missing", "x").await.unwrap(), None);
    assert_eq!(store.projects().await.unwrap().len(), 1);
    // The database file never holds a secret.
    let text = database.stored_text(&store).await;
    assert!(
        text.contains(&project.key_prefixes.master),
        "the dump reads the keys"
    );
    for secret in [&keys.master, &keys.write, &keys.read] {
        assert!(!text.contains(secret.as_str()));
    }
}

async fn cached_key_lookups_see_every_change_made_through_the_store(backend: TestBackend) {
    let (_database, store) = open_store(backend).await;
    store.ensure_organization(None).await.unwrap();
    let (project, keys) = store.create_project("cache").await.unwrap();
    let changes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = changes.clone();
    store.on_key_change(Box::new(move |project_id, grants| {
        seen.lock()
            .unwrap()
            .push((project_id.to_string(), grants.len()));
    }));
    let (_, secret) = store
        .create_access_key(&project.id, &tenant_definition("a"), "master01")
        .await
        .unwrap();
    let tenant_value = |grant: &Grant| match &grant.forced_query_filters()[0] {
        keyhole_model::query::Filter::Condition { value, .. } => value.clone(),
        other => panic!("{other:?}"),
    };
    // Twice: the second answer comes from the cache.
    for _ in 0..2 {
        let grant = grant_of(&store, &secret).await.unwrap();
        assert!(grant.is_active());
        assert_eq!(tenant_value(&grant), "a");
    }
    store
        .update_access_key(&project.id, &secret, &tenant_definition("b"), "master01")
        .await
        .unwrap();
    assert_eq!(tenant_value(&grant_of(&store, &secret).await.unwrap()), "b");
    store
        .set_access_key_active(&project.id, &secret, false, "master01")
        .await
        .unwrap();
    assert!(!grant_of(&store, &secret).await.unwrap().is_active());
    store
        .set_access_key_active(&project.id, &secret, true, "master01")
        .await
        .unwrap();
    assert!(grant_of(&store, &secret).await.unwrap().is_active());
    assert!(
        store
            .delete_access_key(&project.id, &secret, "master01")
            .await
            .unwrap()
    );
    assert!(grant_of(&store, &secret).await.is_none());
    assert!(grant_of(&store, &keys.write).await.is_some());
    assert!(grant_of(&store, "made-up").await.is_none());
    // One hook call per change, with the project's usable access keys after it.
    let project_id = project.id.clone();
    assert_eq!(
        *changes.lock().unwrap(),
        [
            (project_id.clone(), 1),
            (project_id.clone(), 1),
            (project_id.clone(), 0),
            (project_id.clone(), 1),
            (project_id, 0)
        ]
    );
}

async fn a_key_whose_stored_filters_no_longer_parse_is_refused_not_widened(backend: TestBackend) {
    let (_database, store) = open_store(backend).await;
    store.ensure_organization(None).await.unwrap();
    let (project, _) = store.create_project("limits").await.unwrap();
    let (_, secret) = store
        .create_access_key(&project.id, &tenant_definition("a"), "master01")
        .await
        .unwrap();
    // As if validation had tightened since the key was made: a filter without a value, which older
    // versions read as `eq null`.
    let options = serde_json::json!({"queries": {"filters": [
        {"property_name": "tenant", "operator": "eq"}]}});
    sqlx::query("UPDATE project_keys SET options = $1 WHERE kind = 'access'")
        .bind(options.to_string())
        .execute(&store.database.pool)
        .await
        .unwrap();
    assert_eq!(
        refusal_of(&store, &secret).await,
        Some(Refusal::UnreadableKey)
    );
    assert!(
        store
            .usable_access_key_grants(&project.id)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn embed_tokens_resolve_to_their_narrowed_key_until_revoked(backend: TestBackend) {
    let (_database, store) = open_store(backend).await;
    store.ensure_organization(None).await.unwrap();
    let (project, _) = store.create_project("tokens").await.unwrap();
    let (key, secret) = store
        .create_access_key(&project.id, &tenant_definition("a"), "master01")
        .await
        .unwrap();
    assert_eq!(
        key.embed_key_id,
        Some(keyhole_model::embed_token::key_id_of_secret(&secret))
    );
    let exp = now_millis() / 1000 + 600;
    let token = |jti: &str| {
        keyhole_model::embed_token::mint(
            &secret,
            &serde_json::json!({"exp": exp, "jti": jti,
            "filters": [{"property_name": "user", "operator": "eq", "property_value": "u1"}]}),
        )
    };
    let grant = grant_of(&store, &token("t1")).await.unwrap();
    assert_eq!(grant.forced_query_filters().len(), 2);
    assert_eq!(grant.token_id(), Some("t1"));
    assert_eq!(grant.expires_at(), Some(exp * 1000));
    let widened = keyhole_model::embed_token::mint(
        &secret,
        &serde_json::json!({"exp": exp, "jti": "w", "permitted": ["writes"]}),
    );
    assert_eq!(
        refusal_of(&store, &widened).await,
        Some(Refusal::RefusedTokenClaims)
    );
    let foreign = keyhole_model::embed_token::mint(
        &"f".repeat(64),
        &serde_json::json!({"exp": exp, "jti": "x"}),
    );
    assert_eq!(
        refusal_of(&store, &foreign).await,
        Some(Refusal::UnknownKey)
    );
    assert_eq!(
        refusal_of(&store, "a.b.c").await,
        Some(Refusal::MalformedToken)
    );
    store
        .revoke_token(&project.id, &secret, "t1", "master01")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        refusal_of(&store, &token("t1")).await,
        Some(Refusal::RevokedToken)
    );
    assert!(grant_of(&store, &token("t2")).await.is_some());
    store
        .set_access_key_active(&project.id, &secret, false, "master01")
        .await
        .unwrap();
    assert!(!grant_of(&store, &token("t2")).await.unwrap().is_active());
    assert!(
        store
            .delete_access_key(&project.id, &secret, "master01")
            .await
            .unwrap()
    );
    assert_eq!(
        refusal_of(&store, &token("t2")).await,
        Some(Refusal::UnknownKey)
    );
}

async fn the_audit_log_records_changes_and_refusals_without_secrets(backend: TestBackend) {
    let (_database, store) = open_store(backend).await;
    store.ensure_organization(None).await.unwrap();
    let (project, _) = store.create_project("audit").await.unwrap();
    let (_, secret) = store
        .create_access_key(&project.id, &tenant_definition("a"), "master01")
        .await
        .unwrap();
    store
        .update_access_key(&project.id, &secret, &tenant_definition("b"), "master01")
        .await
        .unwrap();
    store
        .set_access_key_active(&project.id, &secret, false, "master01")
        .await
        .unwrap();
    store
        .revoke_token(&project.id, &secret, "t9", "master01")
        .await
        .unwrap();
    store.record_refusal(
        &project.id,
        Refusal::ExpiredKey,
        Some("abcd1234"),
        None,
        "GET /x".into(),
    );
    store.record_refusal(
        "no-such-project",
        Refusal::UnknownKey,
        None,
        None,
        "GET /y".into(),
    );
    store.flush_audit().await;
    let page = store.audit_log(&project.id, 3, None).await.unwrap();
    let actions: Vec<&str> = page
        .entries
        .iter()
        .map(|entry| entry.action.as_str())
        .collect();
    assert_eq!(actions, ["refused", "revoke_token", "revoke"]);
    assert_eq!(page.entries[0].reason.as_deref(), Some("expired_key"));
    assert_eq!(page.entries[2].before.as_ref().unwrap()["is_active"], true);
    assert_eq!(page.entries[2].after.as_ref().unwrap()["is_active"], false);
    let rest = store
        .audit_log(&project.id, 3, page.next_before.as_deref())
        .await
        .unwrap();
    let actions: Vec<&str> = rest
        .entries
        .iter()
        .map(|entry| entry.action.as_str())
        .collect();
    assert_eq!(actions, ["update", "create"]);
    assert_eq!(rest.next_before, None);
    assert_eq!(
        rest.entries[0].after.as_ref().unwrap()["options"]["queries"]["filters"][0]["property_value"],
        "b"
    );
    let everything = serde_json::to_string(
        &[page, rest]
            .iter()
            .map(|page| &page.entries)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!everything.contains(&secret));
}

async fn usage_adds_up_per_key_and_day(backend: TestBackend) {
    let (_database, store) = open_store(backend).await;
    let key = KeyHash::of_secret("k");
    let counts = KeyUsage {
        reads: 2,
        events: 10,
        ..KeyUsage::default()
    };
    store
        .add_key_usage(&[(key, "2026-11-29".into(), counts)])
        .await
        .unwrap();
    store
        .add_key_usage(&[(key, "2026-11-29".into(), counts)])
        .await
        .unwrap();
    let stored = store.key_usage(&key, "2026-11-29").await.unwrap();
    assert_eq!((stored.reads, stored.events), (4, 20));
    assert!(store.key_usage(&key, "2026-11-30").await.unwrap().is_zero());
}

async fn project_usage_counts_what_the_project_holds_and_its_keys_did(backend: TestBackend) {
    let (_database, store) = open_store(backend).await;
    let (project, keys) = store.create_project("usage").await.unwrap();
    let (other, other_keys) = store.create_project("other").await.unwrap();
    let definition =
        |name: &str, refresh_rate: u64| keyhole_model::saved_query::SavedQueryDefinition {
            name: name.into(),
            query_json: serde_json::json!({"analysis_type": "count", "event_collection": "orders"})
                .as_object()
                .unwrap()
                .clone(),
            metadata: serde_json::json!({}),
            refresh_rate,
        };
    for (name, refresh_rate) in [("live", 0), ("cached", 14_400)] {
        store
            .put_saved_query(&project.id, name, &definition(name, refresh_rate))
            .await
            .unwrap();
    }
    // The other project's saved query and usage are not this project's.
    store
        .put_saved_query(&other.id, "theirs", &definition("theirs", 14_400))
        .await
        .unwrap();
    let counts = KeyUsage {
        events: 7,
        queries: 2,
        ..KeyUsage::default()
    };
    let key = KeyHash::of_secret(&keys.write);
    store
        .add_key_usage(&[
            (key, "2026-10-31".into(), counts),
            (key, "2026-11-02".into(), counts),
            (key, "2026-11-30".into(), counts),
            (
                KeyHash::of_secret(&other_keys.write),
                "2026-11-02".into(),
                counts,
            ),
            (
                KeyHash::of_secret("a key of no project"),
                "2026-11-02".into(),
                counts,
            ),
        ])
        .await
        .unwrap();
    let usage = store
        .project_usage(&project.id, "2026-11-01")
        .await
        .unwrap();
    assert_eq!((usage.saved_queries, usage.cached_queries), (2, 1));
    assert_eq!(usage.datasets, 0);
    assert_eq!((usage.since.events, usage.since.queries), (14, 4));
    let theirs = store.project_usage(&other.id, "2026-11-01").await.unwrap();
    assert_eq!((theirs.saved_queries, theirs.cached_queries), (1, 1));
    assert_eq!((theirs.since.events, theirs.since.queries), (7, 2));
}

async fn saved_queries_and_datasets_round_trip_and_page_in_byte_order(backend: TestBackend) {
    let (_database, store) = open_store(backend).await;
    let (project, _) = store.create_project("saved").await.unwrap();
    let definition = |name: &str, target: &str| keyhole_model::saved_query::SavedQueryDefinition {
        name: name.into(),
        query_json: serde_json::json!({"analysis_type": "count", "event_collection": target})
            .as_object()
            .unwrap()
            .clone(),
        metadata: serde_json::json!({"display_name": name}),
        refresh_rate: 0,
    };
    let (write, stored) = store
        .put_saved_query(&project.id, "daily", &definition("daily", "orders"))
        .await
        .unwrap();
    assert_eq!(write, SavedQueryWrite::Created);
    assert_eq!(stored.unwrap().query["event_collection"], "orders");
    let (write, _) = store
        .put_saved_query(&project.id, "daily", &definition("daily", "visits"))
        .await
        .unwrap();
    assert_eq!(write, SavedQueryWrite::Replaced);
    store
        .put_saved_query(&project.id, "Weekly", &definition("Weekly", "orders"))
        .await
        .unwrap();
    let (write, _) = store
        .put_saved_query(&project.id, "daily", &definition("Weekly", "orders"))
        .await
        .unwrap();
    assert_eq!(write, SavedQueryWrite::NameTaken);
    let names: Vec<String> = store
        .saved_queries(&project.id)
        .await
        .unwrap()
        .into_iter()
        .map(|saved| saved.query_name)
        .collect();
    assert_eq!(names, ["Weekly", "daily"], "byte order: upper case first");
    assert!(
        store
            .delete_saved_query(&project.id, "daily")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_saved_query(&project.id, "daily")
            .await
            .unwrap()
    );
    assert!(
        store
            .saved_query(&project.id, "daily")
            .await
            .unwrap()
            .is_none()
    );

    let dataset = |name: &str| keyhole_model::dataset::DatasetDefinition {
        name: name.into(),
        display_name: name.to_uppercase(),
        query_json: serde_json::json!({"analysis_type": "count", "event_collection": "orders"})
            .as_object()
            .unwrap()
            .clone(),
        index_by: vec!["tenant".into()],
    };
    for name in ["b-set", "B-set", "a_set"] {
        let (created, _) = store
            .put_dataset(&project.id, &dataset(name))
            .await
            .unwrap();
        assert!(created);
    }
    let (created, replaced) = store
        .put_dataset(&project.id, &dataset("a_set"))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(replaced.definition.index_by, ["tenant"]);
    let page = |after: &'static str| {
        let store = store.clone();
        let project_id = project.id.clone();
        async move {
            store
                .datasets_page(&project_id, after, 2)
                .await
                .unwrap()
                .into_iter()
                .map(|dataset| dataset.definition.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page("").await, ["B-set", "a_set"]);
    assert_eq!(page("a_set").await, ["b-set"]);
    assert!(store.delete_dataset(&project.id, "B-set").await.unwrap());
    assert!(store.dataset(&project.id, "B-set").await.unwrap().is_none());
    assert_eq!(
        store
            .dataset(&project.id, "b-set")
            .await
            .unwrap()
            .unwrap()
            .definition
            .display_name,
        "B-SET"
    );
}

/// Nodes starting at once against one database apply each migration once and share one organization.
async fn nodes_starting_together_share_one_organization(backend: TestBackend) {
    let database = TestDatabase::create(backend).await;
    let opened = futures::future::join_all((0..4).map(|_| database.open())).await;
    let bootstraps =
        futures::future::join_all(opened.iter().map(|store| store.ensure_organization(None))).await;
    let bootstraps: Vec<OrganizationBootstrap> = bootstraps
        .into_iter()
        .map(|result| result.unwrap())
        .collect();
    assert_eq!(
        bootstraps
            .iter()
            .filter(|bootstrap| bootstrap.created)
            .count(),
        1
    );
    assert!(
        bootstraps
            .iter()
            .all(|bootstrap| bootstrap.id == bootstraps[0].id)
    );
    let migrations: i64 = sqlx::query("SELECT COUNT(*) AS applied FROM _sqlx_migrations")
        .fetch_one(&opened[0].database.pool)
        .await
        .unwrap()
        .get("applied");
    assert_eq!(
        migrations,
        crate::migrations::MIGRATOR.iter().count() as i64
    );
}

/// The shared log keeps appends in sequence, fences maintenance records by lease, gives a lease to one
/// node at a time, only moves the checkpoint forward and never truncates its newest record.
async fn the_shared_log_orders_fences_and_leases(backend: TestBackend) {
    let database = TestDatabase::create(backend).await;
    let (node_a, node_b) = (database.open().await, database.open().await);
    let (log_a, log_b) = (node_a.cluster_log(), node_b.cluster_log());
    let now = now_millis();
    let appended = futures::future::join_all((0..20).map(|index| {
        let log = if index % 2 == 0 {
            log_a.clone()
        } else {
            log_b.clone()
        };
        async move {
            log.append("entries", &[index as u8], None, now)
                .await
                .unwrap()
                .unwrap()
        }
    }))
    .await;
    let mut sequences = appended.clone();
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=20).collect::<Vec<u64>>());
    let records = log_b.read_after(5, 100).await.unwrap();
    assert_eq!(records.len(), 15);
    assert_eq!(records[0].sequence, 6);
    assert!(
        records
            .windows(2)
            .all(|pair| pair[1].sequence == pair[0].sequence + 1)
    );

    assert!(log_a.try_lease("maintenance", now, 10_000).await.unwrap());
    assert!(!log_b.try_lease("maintenance", now, 10_000).await.unwrap());
    assert!(
        log_a
            .try_lease("maintenance", now + 1, 10_000)
            .await
            .unwrap(),
        "renewed"
    );
    assert_eq!(
        log_b
            .append("flushed", b"x", Some("maintenance"), now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        log_a
            .append("flushed", b"x", Some("maintenance"), now)
            .await
            .unwrap(),
        Some(21)
    );
    // Expired: another node takes it, and the former holder is fenced off.
    assert!(
        log_b
            .try_lease("maintenance", now + 20_000, 10_000)
            .await
            .unwrap()
    );
    assert_eq!(
        log_a
            .append("flushed", b"y", Some("maintenance"), now + 20_001)
            .await
            .unwrap(),
        None
    );
    log_b.release_lease("maintenance").await.unwrap();
    assert!(
        log_a
            .try_lease("maintenance", now + 20_002, 10_000)
            .await
            .unwrap()
    );

    assert!(log_a.store_checkpoint(21, "{\"v\":1}").await.unwrap());
    assert!(!log_b.store_checkpoint(20, "{\"v\":0}").await.unwrap());
    assert_eq!(
        log_b.checkpoint().await.unwrap(),
        Some((21, "{\"v\":1}".to_string()))
    );
    assert_eq!(log_a.truncate_through(100).await.unwrap(), 20);
    assert_eq!(log_a.last_sequence().await.unwrap(), 21);
    assert_eq!(
        log_b.append("entries", b"z", None, now).await.unwrap(),
        Some(22)
    );
    // Reads stop once their payloads pass the byte cap (a record past it still comes alone).
    let large = vec![7u8; crate::cluster::READ_AFTER_MAX_BYTES as usize / 2 + 1];
    for _ in 0..3 {
        log_b
            .append("entries", &large, None, now)
            .await
            .unwrap()
            .unwrap();
    }
    let capped = log_b.read_after(22, 100).await.unwrap();
    assert_eq!(
        capped.len(),
        2,
        "the second record passes the cap, the third is not read"
    );
    assert_eq!(capped[1].sequence, 24);
}

/// Two nodes on one PostgreSQL database: a revocation, an update and a deletion made through one are
/// seen by the other's (cached) lookups within a second, and the other's change hooks run.
#[tokio::test]
async fn postgres_key_changes_reach_other_nodes_within_a_second() {
    if keyhole_test_env::postgres_url().is_none() {
        return;
    }
    let database = TestDatabase::create(TestBackend::Postgres).await;
    let (node_a, node_b) = (database.open().await, database.open().await);
    let (project, _) = node_a.create_project("nodes").await.unwrap();
    let (_, secret) = node_a
        .create_access_key(&project.id, &tenant_definition("a"), "master01")
        .await
        .unwrap();
    let hook_calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hook_calls.clone();
    node_b.on_key_change(Box::new(move |_, _| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    // Node B's listener is up once its cache keeps answers (it bypasses the cache until then).
    wait_until(&node_b, &secret, |grant| {
        grant.is_some_and(keyhole_model::Grant::is_active)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(grant_of(&node_b, &secret).await.unwrap().is_active());

    node_a
        .set_access_key_active(&project.id, &secret, false, "master01")
        .await
        .unwrap();
    let revoked_after = wait_until(&node_b, &secret, |grant| {
        grant.is_some_and(|grant| !grant.is_active())
    })
    .await;
    node_a
        .update_access_key(&project.id, &secret, &tenant_definition("b"), "master01")
        .await
        .unwrap();
    let updated_after = wait_until(&node_b, &secret, |grant| {
        grant.is_some_and(|grant| {
            grant.forced_query_filters().len() == 1
                && format!("{:?}", grant.forced_query_filters()[0]).contains("\"b\"")
        })
    })
    .await;
    node_a
        .delete_access_key(&project.id, &secret, "master01")
        .await
        .unwrap();
    let deleted_after = wait_until(&node_b, &secret, |grant| grant.is_none()).await;
    for (change, delay) in [
        ("revoke", revoked_after),
        ("update", updated_after),
        ("delete", deleted_after),
    ] {
        assert!(
            delay < std::time::Duration::from_secs(1),
            "{change} took {delay:?} to reach node B"
        );
    }
    assert!(
        hook_calls.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "node B's hooks ran for each change"
    );
}

/// Polls `store`'s resolution of `secret` until `accepted` holds (at most 5 s); how long it took.
async fn wait_until(
    store: &MetaStore,
    secret: &str,
    accepted: impl Fn(Option<&Grant>) -> bool,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    loop {
        let grant = grant_of(store, secret).await;
        if accepted(grant.as_deref()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the change never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

async fn a_database_migrated_before_sqlx_opens_without_rerunning(backend: TestBackend) {
    let database = TestDatabase::create(backend).await;
    crate::migration_tests::a_database_migrated_before_sqlx_opens_without_rerunning(
        database.url.clone(),
    )
    .await;
}

async fn tenants_own_two_keys_and_hold_the_tenancy_property_in_place(backend: TestBackend) {
    let (_database, store) = open_store(backend).await;
    crate::tenant_tests::tenants_own_two_keys_and_hold_the_tenancy_property_in_place(
        store,
        now_millis(),
    )
    .await;
}

async fn a_tenant_changes_options_is_deleted_and_keeps_its_receipts(backend: TestBackend) {
    let (_database, store) = open_store(backend).await;
    crate::tenant_tests::a_tenant_changes_options_is_deleted_and_keeps_its_receipts(
        store,
        now_millis(),
    )
    .await;
}

async fn dashboards_round_trip_and_keys_tell_who_may_frame_them(backend: TestBackend) {
    let (_database, store) = open_store(backend).await;
    crate::dashboard_tests::dashboards_round_trip_and_keys_tell_who_may_frame_them(store).await;
}

/// Declares each conformance test once per backend.
macro_rules! conformance_suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::TestBackend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    if keyhole_test_env::postgres_url().is_none() {
                        return;
                    }
                    super::$test(super::TestBackend::Postgres).await
                }
            )*
        }
    };
}

conformance_suite!(
    organization_key_is_generated_once_or_taken_from_config,
    projects_keep_only_key_hashes,
    cached_key_lookups_see_every_change_made_through_the_store,
    a_key_whose_stored_filters_no_longer_parse_is_refused_not_widened,
    embed_tokens_resolve_to_their_narrowed_key_until_revoked,
    the_audit_log_records_changes_and_refusals_without_secrets,
    usage_adds_up_per_key_and_day,
    project_usage_counts_what_the_project_holds_and_its_keys_did,
    saved_queries_and_datasets_round_trip_and_page_in_byte_order,
    nodes_starting_together_share_one_organization,
    the_shared_log_orders_fences_and_leases,
    a_database_migrated_before_sqlx_opens_without_rerunning,
    tenants_own_two_keys_and_hold_the_tenancy_property_in_place,
    a_tenant_changes_options_is_deleted_and_keeps_its_receipts,
    dashboards_round_trip_and_keys_tell_who_may_frame_them,
);
