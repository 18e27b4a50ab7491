//! Metadata store tests on a real SQLite file.

use super::*;

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The grant a presented credential resolves to, `None` when refused.
async fn grant_of(store: &MetaStore, presented: &str) -> Option<std::sync::Arc<Grant>> {
    match store
        .resolve_credential(presented, now_millis())
        .await
        .unwrap()
    {
        Resolution::Granted(grant) => Some(grant),
        Resolution::Refused(_) => None,
    }
}

async fn refusal_of(store: &MetaStore, presented: &str) -> Option<Refusal> {
    match store
        .resolve_credential(presented, now_millis())
        .await
        .unwrap()
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

async fn store() -> (tempfile::TempDir, MetaStore) {
    let directory = tempfile::tempdir().unwrap();
    let store = MetaStore::open_sqlite(&directory.path().join("meta.sqlite"))
        .await
        .unwrap();
    (directory, store)
}

#[tokio::test]
async fn organization_key_is_generated_once_or_taken_from_config() {
    let (directory, store) = store().await;
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
    let reopened = MetaStore::open_sqlite(&directory.path().join("meta.sqlite"))
        .await
        .unwrap();
    assert_eq!(reopened.organization_id().await.unwrap(), Some(first.id));
}

#[tokio::test]
async fn projects_keep_only_key_hashes() {
    let (directory, store) = store().await;
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
    drop(store);
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(directory.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let text = String::from_utf8_lossy(&bytes);
    for secret in [&keys.master, &keys.write, &keys.read] {
        assert!(!text.contains(secret.as_str()));
    }
}

#[tokio::test]
async fn cached_key_lookups_see_every_change_made_through_the_store() {
    let (_directory, store) = store().await;
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

#[tokio::test]
async fn a_key_whose_stored_filters_no_longer_parse_is_refused_not_widened() {
    let (_directory, store) = store().await;
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
    sqlx::query("UPDATE project_keys SET options = ? WHERE kind = 'access'")
        .bind(options.to_string())
        .execute(&store.pool)
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

#[tokio::test]
async fn embed_tokens_resolve_to_their_narrowed_key_until_revoked() {
    let (_directory, store) = store().await;
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

#[tokio::test]
async fn the_audit_log_records_changes_and_refusals_without_secrets() {
    let (_directory, store) = store().await;
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

#[tokio::test]
async fn usage_adds_up_per_key_and_day() {
    let (_directory, store) = store().await;
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
