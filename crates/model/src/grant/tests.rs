use serde_json::{Value, json};

use super::*;
use crate::embed_token::TokenClaims;
use crate::keys::KeyHash;

fn access_grant(permitted: &[&str], options: Value) -> Result<Grant, KeyDefinitionError> {
    let permitted: Vec<String> = permitted
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    Grant::from_stored_access_key(&StoredAccessKey {
        project_id: "p1",
        key_hash: KeyHash::of_secret("secret"),
        key_prefix: "secret",
        name: "k",
        is_active: true,
        expires_at: None,
        permitted: &permitted,
        options: &options,
        presented_secret: Some("secret"),
    })
}

#[test]
fn a_stored_key_that_no_longer_parses_is_no_grant() {
    for options in [
        json!({"queries": {"filters": [{"property_name": "tenant", "operator": "eq"}]}}),
        json!({"queries": {"filters": "tenant = a"}}),
        json!({"queries": {"filters": [{"property_name": "t", "operator": "in", "property_value": vec![0; 10_001]}]}}),
        json!({"queries": {"filterz": []}}),
        json!("not options"),
    ] {
        assert!(
            access_grant(&["queries"], options.clone()).is_err(),
            "{options}"
        );
    }
    assert!(access_grant(&["queries", "everything"], Value::Null).is_err());
    let grant = access_grant(&["queries"], Value::Null).unwrap();
    assert!(grant.permits(Operation::Queries));
    assert!(!grant.permits(Operation::Writes));
}

#[test]
fn write_rules_and_uniqueness_scope() {
    let grant = access_grant(
        &["writes"],
        json!({"writes": {"collections": ["orders"], "autofill": {"tenant": "a"}}}),
    )
    .unwrap();
    assert!(grant.may_write_to("orders"));
    assert!(!grant.may_write_to("payments"));
    let same_tenant = access_grant(&[], json!({"writes": {"autofill": {"tenant": "a"}}})).unwrap();
    let other_tenant = access_grant(&[], json!({"writes": {"autofill": {"tenant": "b"}}})).unwrap();
    assert!(grant.uniqueness_scope().is_some());
    assert_eq!(grant.uniqueness_scope(), same_tenant.uniqueness_scope());
    assert_ne!(grant.uniqueness_scope(), other_tenant.uniqueness_scope());
    assert!(
        access_grant(&[], Value::Null)
            .unwrap()
            .may_write_to("anything")
    );
    assert_eq!(
        access_grant(&[], Value::Null).unwrap().uniqueness_scope(),
        None
    );
}

#[test]
fn stored_query_and_dataset_rules() {
    let grant = access_grant(&[], json!({
        "saved_queries": {"allowed": ["q1", "q2"], "blocked": ["q2"], "filters": [{"property_name": "a", "operator": "eq", "property_value": 1}]},
        "cached_queries": {"blocked": ["c9"]},
        "queries": {"filters": [{"property_name": "vendor", "operator": "eq", "property_value": "acme"}]},
        "datasets": {"operations": ["read"], "allowed": {"ds1": {"index_by": {"customer.id": ["acme"]}}, "ds2": {}}, "blocked": ["ds2"]},
    }))
    .unwrap();
    assert!(grant.allows_stored_query(StoredQueryKind::Saved, "q1"));
    assert!(
        !grant.allows_stored_query(StoredQueryKind::Saved, "q2"),
        "blocked wins"
    );
    assert!(!grant.allows_stored_query(StoredQueryKind::Saved, "q3"));
    assert!(grant.allows_stored_query(StoredQueryKind::Cached, "c1"));
    assert!(!grant.allows_stored_query(StoredQueryKind::Cached, "c9"));
    assert_eq!(grant.stored_query_filters().len(), 2);
    assert!(grant.allows_dataset(DatasetOperation::Read, Some("ds1")));
    assert!(!grant.allows_dataset(DatasetOperation::Read, Some("ds2")));
    assert!(!grant.allows_dataset(DatasetOperation::Read, Some("ds3")));
    assert!(!grant.allows_dataset(DatasetOperation::List, None));
    assert_eq!(
        grant.dataset_index_restriction("ds1").unwrap()["customer.id"],
        json!(["acme"])
    );
    let unrestricted = access_grant(&[], Value::Null).unwrap();
    assert!(unrestricted.allows_stored_query(StoredQueryKind::Saved, "anything"));
    assert!(unrestricted.allows_dataset(DatasetOperation::List, None));
}

#[test]
fn expiry_and_lookback() {
    let mut grant =
        access_grant(&["queries"], json!({"queries": {"max_lookback": "1 day"}})).unwrap();
    assert_eq!(
        grant.read_window_start(100_000_000),
        Some(100_000_000 - 86_400_000)
    );
    assert!(grant.is_usable_at(i64::MAX));
    grant.expires_at = Some(1_000);
    assert!(grant.is_usable_at(999));
    assert!(!grant.is_usable_at(1_000));
    grant.is_active = false;
    assert!(!grant.is_usable_at(0));
}

#[test]
fn a_token_narrows_its_key_and_never_widens_it() {
    let key = access_grant(
        &["queries", "schema"],
        json!({"queries": {"filters": [{"property_name": "tenant", "operator": "eq", "property_value": "a"}], "max_lookback": "30 days"}}),
    )
    .unwrap();
    let claims = TokenClaims {
        token_id: "t1".into(),
        expires_at_secs: 2_000_000_000,
        permitted: Some(vec![Operation::Queries]),
        filters: crate::query::Filter::parse_list(
            &json!([{"property_name": "user", "operator": "eq", "property_value": "u1"}]),
        )
        .unwrap(),
        max_lookback_millis: Some(90 * 86_400_000),
    };
    let token = key.narrowed_by_token(&claims).unwrap();
    assert_eq!(token.operations(), [Operation::Queries]);
    assert_eq!(token.forced_query_filters().len(), 2);
    assert_eq!(
        token.max_lookback_millis(),
        Some(30 * 86_400_000),
        "the shorter look-back"
    );
    assert_eq!(token.expires_at(), Some(2_000_000_000_000));
    assert_eq!(token.token_id(), Some("t1"));
    let wider = TokenClaims {
        permitted: Some(vec![Operation::Writes]),
        ..claims.clone()
    };
    assert!(key.narrowed_by_token(&wider).is_err());
    let mut expiring = key.clone();
    expiring.expires_at = Some(5);
    assert_eq!(
        expiring.narrowed_by_token(&claims).unwrap().expires_at(),
        Some(5)
    );
}

#[test]
fn clustering_follows_the_most_used_eq_filters_of_keys() {
    let tenant = |value: &str| {
        access_grant(
            &[],
            json!({"queries": {"filters": [
            {"property_name": "tenant_id", "operator": "eq", "property_value": value},
            {"property_name": "amount", "operator": "gt", "property_value": 5}]}}),
        )
        .unwrap()
    };
    let region = access_grant(
        &[],
        json!({"queries": {"filters": [
        {"property_name": "region", "operator": "eq", "property_value": "eu"},
        {"property_name": "region", "operator": "eq", "property_value": "eu"}]}}),
    )
    .unwrap();
    let keys = [
        tenant("a"),
        tenant("b"),
        region,
        access_grant(&[], json!({})).unwrap(),
        access_grant(&[], json!({"queries": null})).unwrap(),
    ];
    assert_eq!(clustering_properties(&keys), vec!["tenant_id", "region"]);
    assert!(clustering_properties(&[access_grant(&[], json!({})).unwrap()]).is_empty());
}
