//! Conformance tests of dashboards (run on SQLite and PostgreSQL by `tests::conformance_suite!`): definitions
//! stored, replaced, listed by name and deleted per project, and the origins that may frame a key's embeds,
//! found by the key's public embed key id.

use crate::MetaStore;

pub(crate) async fn dashboards_round_trip_and_keys_tell_who_may_frame_them(store: MetaStore) {
    let (project, _) = store.create_project("dashboards").await.unwrap();
    let other = store.create_project("other").await.unwrap().0;
    let definition = serde_json::json!({"title": "Shop", "tiles": [{"title": "Orders", "chart": "metric", "width": 12, "saved_query": "orders"}],
                                        "controls": {"timeframes": [], "intervals": []}, "theme": {}});
    let (created, stored) = store
        .put_dashboard(&project.id, "shop", &definition)
        .await
        .unwrap();
    assert!(created);
    assert_eq!(stored.definition, definition);
    let mut changed = definition.clone();
    changed["title"] = serde_json::json!("Shop, again");
    let (created, replaced) = store
        .put_dashboard(&project.id, "shop", &changed)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(replaced.created_at, stored.created_at);
    assert_eq!(
        store
            .dashboard(&project.id, "shop")
            .await
            .unwrap()
            .unwrap()
            .definition["title"],
        "Shop, again"
    );
    store
        .put_dashboard(&project.id, "a-first", &definition)
        .await
        .unwrap();
    let names: Vec<String> = store
        .dashboards(&project.id)
        .await
        .unwrap()
        .into_iter()
        .map(|dashboard| dashboard.name)
        .collect();
    assert_eq!(names, ["a-first", "shop"]);
    assert!(store.dashboards(&other.id).await.unwrap().is_empty());
    assert_eq!(store.dashboard(&other.id, "shop").await.unwrap(), None);
    assert!(store.delete_dashboard(&project.id, "shop").await.unwrap());
    assert!(!store.delete_dashboard(&project.id, "shop").await.unwrap());

    // Who may frame a key's embeds: its origins, found by its public embed key id, revoked or not.
    let bound = keyhole_model::access::AccessKeyDefinition::parse(&serde_json::json!({
        "name": "bound", "permitted": ["queries"], "options": {"origins": ["https://app.example.com"]}}))
    .unwrap();
    let (key, secret) = store
        .create_access_key(&project.id, &bound, "test")
        .await
        .unwrap();
    let kid = keyhole_model::embed_token::key_id_of_secret(&secret);
    assert_eq!(key.embed_key_id.as_deref(), Some(kid.as_str()));
    assert_eq!(
        store.embed_key_origins(&project.id, &kid).await.unwrap(),
        Some(vec!["https://app.example.com".to_string()])
    );
    store
        .set_access_key_active(&project.id, &secret, false, "test")
        .await
        .unwrap();
    assert_eq!(
        store.embed_key_origins(&project.id, &kid).await.unwrap(),
        Some(vec!["https://app.example.com".to_string()])
    );
    assert_eq!(
        store.embed_key_origins(&other.id, &kid).await.unwrap(),
        None
    );
    let open = keyhole_model::access::AccessKeyDefinition::parse(&serde_json::json!({
        "name": "open", "permitted": ["queries"]}))
    .unwrap();
    let (_, open_secret) = store
        .create_access_key(&project.id, &open, "test")
        .await
        .unwrap();
    let open_kid = keyhole_model::embed_token::key_id_of_secret(&open_secret);
    assert_eq!(
        store
            .embed_key_origins(&project.id, &open_kid)
            .await
            .unwrap(),
        Some(Vec::new())
    );
    assert_eq!(
        store.embed_key_origins(&project.id, "nope").await.unwrap(),
        None
    );
}
