//! Metadata store tests on a real SQLite file.

use super::*;

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
    let resolved = store.resolve_key(&keys.write).await.unwrap().unwrap();
    assert_eq!(
        (resolved.project_id.as_str(), resolved.kind),
        (project.id.as_str(), KeyKind::Write)
    );
    assert_eq!(
        store.resolve_key(&keys.read).await.unwrap().unwrap().kind,
        KeyKind::Read
    );
    assert_eq!(store.resolve_key("nope").await.unwrap(), None);
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
    let definition = |filter_value: &str| {
        keyhole_model::access::AccessKeyDefinition::parse(&serde_json::json!({
            "name": "tenant", "permitted": ["queries"],
            "options": {"queries": {"filters": [
                {"property_name": "tenant", "operator": "eq", "property_value": filter_value}]}}
        }))
        .unwrap()
    };
    let (_, secret) = store
        .create_access_key(&project.id, &definition("a"))
        .await
        .unwrap();
    // Twice: the second answer comes from the cache.
    for _ in 0..2 {
        let key = store.resolve_key(&secret).await.unwrap().unwrap();
        assert!(key.is_active);
        assert_eq!(key.options["queries"]["filters"][0]["property_value"], "a");
    }
    store
        .update_access_key(&project.id, &secret, &definition("b"))
        .await
        .unwrap();
    let key = store.resolve_key(&secret).await.unwrap().unwrap();
    assert_eq!(key.options["queries"]["filters"][0]["property_value"], "b");
    store
        .set_access_key_active(&project.id, &secret, false)
        .await
        .unwrap();
    assert!(!store.resolve_key(&secret).await.unwrap().unwrap().is_active);
    store
        .set_access_key_active(&project.id, &secret, true)
        .await
        .unwrap();
    assert!(store.resolve_key(&secret).await.unwrap().unwrap().is_active);
    assert!(store.delete_access_key(&project.id, &secret).await.unwrap());
    assert!(store.resolve_key(&secret).await.unwrap().is_none());
    assert!(store.resolve_key(&keys.write).await.unwrap().is_some());
    assert!(store.resolve_key("made-up").await.unwrap().is_none());
}

#[tokio::test]
async fn a_key_whose_stored_filters_no_longer_parse_is_refused_not_widened() {
    let (_directory, store) = store().await;
    store.ensure_organization(None).await.unwrap();
    let (project, _) = store.create_project("limits").await.unwrap();
    let definition = keyhole_model::access::AccessKeyDefinition::parse(&serde_json::json!({
        "name": "tenant", "permitted": ["queries"],
        "options": {"queries": {"filters": [
            {"property_name": "tenant", "operator": "eq", "property_value": "a"}]}}
    }))
    .unwrap();
    let (_, secret) = store
        .create_access_key(&project.id, &definition)
        .await
        .unwrap();
    // As if a limit had tightened since the key was made: an `in` list past today's maximum.
    let values: Vec<usize> = (0..=keyhole_model::query::MAX_IN_VALUES).collect();
    let options = serde_json::json!({"queries": {"filters": [
        {"property_name": "tenant", "operator": "in", "property_value": values}]}});
    sqlx::query("UPDATE project_keys SET options = ? WHERE kind = 'access'")
        .bind(options.to_string())
        .execute(&store.pool)
        .await
        .unwrap();
    assert_eq!(store.resolve_key(&secret).await.unwrap(), None);
}
