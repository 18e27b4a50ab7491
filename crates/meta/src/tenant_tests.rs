//! Conformance tests of tenants (run on SQLite and PostgreSQL by `tests::conformance_suite!`): the tenancy
//! property, a tenant created with its two keys in one step, conflicts, and paging in byte order.

use keyhole_model::tenant::{Tenancy, TenantChange, TenantDefinition};

use crate::{MetaError, MetaStore};

fn tenant(body: &str) -> TenantDefinition {
    TenantDefinition::parse_bytes(body.as_bytes()).unwrap()
}

pub(crate) async fn tenants_own_two_keys_and_hold_the_tenancy_property_in_place(
    store: MetaStore,
    now_millis: i64,
) {
    let (project, _) = store.create_project("tenants").await.unwrap();
    assert_eq!(store.tenancy(&project.id).await.unwrap(), None);
    let before_tenancy = store
        .create_tenant(&project.id, &tenant(r#"{"id": "acme"}"#), "test")
        .await;
    assert!(matches!(before_tenancy, Err(MetaError::Conflict(_))));

    let tenancy = Tenancy::new("customer.id").unwrap();
    store.set_tenancy(&project.id, &tenancy).await.unwrap();
    // Changing it is allowed while there are no tenants.
    store
        .set_tenancy(&project.id, &Tenancy::new("account").unwrap())
        .await
        .unwrap();
    store.set_tenancy(&project.id, &tenancy).await.unwrap();
    assert_eq!(
        store.tenancy(&project.id).await.unwrap(),
        Some(tenancy.clone())
    );

    let created = store
        .create_tenant(
            &project.id,
            &tenant(
                r#"{"id": "acme", "name": "Acme Inc.", "options": {"max_lookback": "30 days"}}"#,
            ),
            "test",
        )
        .await
        .unwrap();
    assert_eq!(created.tenant.name, "Acme Inc.");
    assert!(!created.tenant.suspended);
    let (read_key, read_secret) = &created.read_key;
    let (write_key, write_secret) = &created.write_key;
    assert_ne!(read_secret, write_secret);
    assert_eq!(
        read_key.options["queries"]["filters"][0]["property_value"],
        "acme"
    );
    assert_eq!(
        write_key.options["writes"]["autofill"],
        serde_json::json!({"customer": {"id": "acme"}})
    );
    // The secrets open grants like any access key's.
    for secret in [read_secret, write_secret] {
        let resolved = store.resolve_credential(secret, now_millis).await.unwrap();
        assert!(
            matches!(resolved.resolution, crate::Resolution::Granted(_)),
            "{:?}",
            resolved.resolution
        );
    }
    // Suspending refuses both keys in the grant lookup itself, past a cached grant; resuming restores them.
    let cached = store
        .resolve_credential(read_secret, now_millis)
        .await
        .unwrap();
    if let (crate::Resolution::Granted(grant), Some(ticket)) =
        (cached.resolution, cached.cache_ticket)
    {
        store.cache_grant(ticket, grant);
    }
    let suspend = TenantChange {
        name: None,
        suspended: Some(true),
        options: None,
    };
    let suspended = store
        .update_tenant(&project.id, "acme", &suspend, "test")
        .await
        .unwrap()
        .unwrap();
    assert!(suspended.suspended);
    for secret in [read_secret, write_secret] {
        let resolved = store.resolve_credential(secret, now_millis).await.unwrap();
        assert!(
            matches!(
                resolved.resolution,
                crate::Resolution::Refused(crate::Refusal::TenantSuspended)
            ),
            "{:?}",
            resolved.resolution
        );
    }
    let resume = TenantChange {
        name: Some("Acme".into()),
        suspended: Some(false),
        options: None,
    };
    let resumed = store
        .update_tenant(&project.id, "acme", &resume, "test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((resumed.name.as_str(), resumed.suspended), ("Acme", false));
    let resolved = store
        .resolve_credential(read_secret, now_millis)
        .await
        .unwrap();
    assert!(matches!(resolved.resolution, crate::Resolution::Granted(_)));
    assert!(
        store
            .update_tenant(&project.id, "nobody", &suspend, "test")
            .await
            .unwrap()
            .is_none()
    );

    // Rotating keeps the old keys until their new expiry and adds two without one.
    let rotated = store
        .rotate_tenant_keys(&project.id, "acme", 60_000, "test")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(&rotated.read_key.1, read_secret);
    let after_rotation = store.tenant_keys(&project.id, "acme").await.unwrap();
    assert_eq!(after_rotation.len(), 4);
    assert_eq!(
        after_rotation
            .iter()
            .filter(|key| key.expires_at.is_some())
            .count(),
        2
    );
    assert!(
        store
            .rotate_tenant_keys(&project.id, "nobody", 0, "test")
            .await
            .unwrap()
            .is_none()
    );

    let keys = store.tenant_keys(&project.id, "acme").await.unwrap();
    let mut prefixes: Vec<&str> = keys.iter().map(|key| key.key_prefix.as_str()).collect();
    prefixes.sort_unstable();
    let mut expected = vec![
        read_key.key_prefix.as_str(),
        write_key.key_prefix.as_str(),
        rotated.read_key.0.key_prefix.as_str(),
        rotated.write_key.0.key_prefix.as_str(),
    ];
    expected.sort_unstable();
    assert_eq!(prefixes, expected);
    // They are the project's access keys too.
    assert_eq!(store.access_keys(&project.id).await.unwrap().len(), 4);

    let again = store
        .create_tenant(&project.id, &tenant(r#"{"id": "acme"}"#), "test")
        .await;
    assert!(matches!(again, Err(MetaError::Conflict(_))));
    assert_eq!(store.access_keys(&project.id).await.unwrap().len(), 4);
    let changed = store
        .set_tenancy(&project.id, &Tenancy::new("account").unwrap())
        .await;
    assert!(matches!(changed, Err(MetaError::Conflict(_))));
    // Options the key rules refuse leave nothing behind.
    let refused = store
        .create_tenant(
            &project.id,
            &tenant(r#"{"id": "bad", "options": {"max_lookback": "forever"}}"#),
            "test",
        )
        .await;
    assert!(matches!(refused, Err(MetaError::InvalidDefinition(_))));
    assert_eq!(store.tenant(&project.id, "bad").await.unwrap(), None);

    for id in ["b", "B", "a-1", "a.1", "a_1"] {
        store
            .create_tenant(
                &project.id,
                &tenant(&format!(r#"{{"id": "{id}"}}"#)),
                "test",
            )
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = store.tenants_page(&project.id, &after, 2).await.unwrap();
        let Some(last) = page.last() else {
            break;
        };
        after.clone_from(&last.id);
        seen.extend(page.into_iter().map(|tenant| tenant.id));
    }
    assert_eq!(seen, ["B", "a-1", "a.1", "a_1", "acme", "b"]);
    let other_project = store.create_project("other").await.unwrap().0;
    assert!(
        store
            .tenants_page(&other_project.id, "", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.tenant(&other_project.id, "acme").await.unwrap(), None);
}

/// New options make both keys again (secrets kept, a rotation's retirement kept); deleting revokes and
/// unties the keys and frees the id; erase receipts and usage by tenant round-trip.
pub(crate) async fn a_tenant_changes_options_is_deleted_and_keeps_its_receipts(
    store: MetaStore,
    now_millis: i64,
) {
    use keyhole_model::KeyHash;
    let (project, _) = store.create_project("lifecycle").await.unwrap();
    store
        .set_tenancy(&project.id, &Tenancy::new("customer.id").unwrap())
        .await
        .unwrap();
    let created = store
        .create_tenant(&project.id, &tenant(r#"{"id": "acme"}"#), "test")
        .await
        .unwrap();
    let (_, read_secret) = &created.read_key;
    let rotated = store
        .rotate_tenant_keys(&project.id, "acme", 60_000, "test")
        .await
        .unwrap()
        .unwrap();
    let options = serde_json::json!({
        "filters": [{"property_name": "plan", "operator": "eq", "property_value": "pro"}],
        "expires_at": "2099-01-01T00:00:00Z",
    });
    let change = TenantChange {
        options: Some(options.as_object().unwrap().clone()),
        ..TenantChange::default()
    };
    let changed = store
        .update_tenant(&project.id, "acme", &change, "test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changed.options["filters"][0]["property_name"], "plan");
    let keys = store.tenant_keys(&project.id, "acme").await.unwrap();
    assert_eq!(keys.len(), 4);
    for key in &keys {
        let filters = &key.options["queries"]["filters"];
        let is_write = key.options["writes"]["autofill"].is_object();
        if !is_write {
            assert_eq!(filters[1]["property_name"], "plan", "{}", key.options);
        }
        let is_new = key.key_prefix == rotated.read_key.0.key_prefix
            || key.key_prefix == rotated.write_key.0.key_prefix;
        let expiry = key.expires_at.as_deref().unwrap();
        assert_eq!(expiry.starts_with("2099"), is_new, "{expiry}");
    }
    // The old read key's secret still opens it, now with the new filter.
    let resolved = store
        .resolve_credential(read_secret, now_millis)
        .await
        .unwrap();
    let crate::Resolution::Granted(grant) = resolved.resolution else {
        panic!("{:?}", resolved.resolution);
    };
    assert_eq!(grant.forced_query_filters().len(), 2);
    let refused = TenantChange {
        options: Some(
            serde_json::json!({"max_lookback": "forever"})
                .as_object()
                .unwrap()
                .clone(),
        ),
        ..TenantChange::default()
    };
    assert!(matches!(
        store
            .update_tenant(&project.id, "acme", &refused, "test")
            .await,
        Err(MetaError::InvalidDefinition(_))
    ));
    assert_eq!(
        store
            .tenant(&project.id, "acme")
            .await
            .unwrap()
            .unwrap()
            .options,
        changed.options
    );

    // Usage of the tenant's keys adds up by tenant and day.
    let day = chrono::Utc::now().date_naive().to_string();
    let usage = crate::KeyUsage {
        events: 5,
        queries: 2,
        ..crate::KeyUsage::default()
    };
    store
        .add_key_usage(&[(KeyHash::of_secret(read_secret), day.clone(), usage)])
        .await
        .unwrap();
    let activity = store
        .tenants_activity(&project.id, "acme", "acme", "2000-01-01")
        .await
        .unwrap();
    assert_eq!(activity["acme"].days[&day], usage);
    assert!(activity["acme"].last_activity.is_some());

    // Deleting revokes every key, unties them and frees the id.
    let revoked = store
        .delete_tenant(&project.id, "acme", "test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.len(), 4);
    assert!(revoked.iter().all(|key| !key.is_active));
    assert_eq!(store.tenant(&project.id, "acme").await.unwrap(), None);
    assert!(
        store
            .tenant_keys(&project.id, "acme")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .delete_tenant(&project.id, "acme", "test")
            .await
            .unwrap(),
        None
    );
    let resolved = store
        .resolve_credential(read_secret, now_millis)
        .await
        .unwrap();
    if let crate::Resolution::Granted(grant) = resolved.resolution {
        assert!(!grant.is_active());
    }
    store
        .create_tenant(&project.id, &tenant(r#"{"id": "acme"}"#), "test")
        .await
        .unwrap();
    assert_eq!(
        store.tenant_keys(&project.id, "acme").await.unwrap().len(),
        2
    );

    // A receipt is kept as given, per project, and in the audit log.
    let receipt_id = store.new_erasure_receipt_id();
    let receipt = serde_json::json!({
        "receipt_id": receipt_id, "tenant": "acme", "collections": {"orders": 3},
        "completed_at": "2026-12-07T00:00:00.000Z",
    });
    store
        .record_tenant_erasure(&project.id, &receipt, "organization")
        .await
        .unwrap();
    assert_eq!(
        store
            .tenant_erasure(&project.id, &receipt_id)
            .await
            .unwrap(),
        Some(receipt.clone())
    );
    let other = store.create_project("other").await.unwrap().0;
    assert_eq!(
        store.tenant_erasure(&other.id, &receipt_id).await.unwrap(),
        None
    );
    let audit = store.audit_log(&project.id, 10, None).await.unwrap();
    let erase = audit
        .entries
        .iter()
        .find(|entry| entry.action == "erase")
        .unwrap();
    assert_eq!(erase.after.as_ref(), Some(&receipt));
    assert_eq!(erase.key_prefix, None);
    // The master grant is the project's own.
    let master = store
        .project_master_grant(&project.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(master.project_id(), project.id);
    assert_eq!(master.kind(), keyhole_model::KeyKind::Master);
    assert!(store.project_master_grant("nope").await.unwrap().is_none());
}
