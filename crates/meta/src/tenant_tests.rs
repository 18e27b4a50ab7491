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
