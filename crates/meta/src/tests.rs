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
    store
        .ensure_organization(Some("configured-org-key"))
        .await
        .unwrap();
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
