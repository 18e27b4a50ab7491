//! The console's Tenants page in Chromium (`sdk-tests/node/console_tenants.js`): tenancy, tenants with
//! their usage, create, suspend, resume, rotate, and erase after a confirmation that names what goes.

use serde_json::{Value, json};

use crate::support::BinaryServer;

#[test]
fn the_console_tenants_page_creates_suspends_rotates_and_erases_a_tenant() {
    if !crate::support::has_browser() {
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(data_dir.path(), &[], &[]);
    let project = server.printed_project();
    let organization_key = server.printed_organization_key();
    let results = crate::support::run_node_script(
        "console_tenants.js",
        &[
            ("KEYHOLE_URL", server.base_url.as_str()),
            ("KEYHOLE_PROJECT", &project.id),
            ("KEYHOLE_MASTER_KEY", &project.master),
            ("KEYHOLE_ORG_KEY", &organization_key),
        ],
    );
    assert_eq!(results["key_lengths"], json!([64, 64]), "{results}");
    let row = |rows: &Value, index: usize| -> Vec<String> {
        rows[index]
            .as_array()
            .unwrap()
            .iter()
            .map(|cell| cell.as_str().unwrap().to_string())
            .collect()
    };
    // id, name, status, events stored, bytes, written, queries, last activity.
    let acme = row(&results["table"], 0);
    assert_eq!(acme[..4], ["acme", "Acme Inc.", "active", "3"], "{results}");
    assert_eq!(acme[5], "3", "{results}");
    let globex = row(&results["table"], 1);
    assert_eq!(
        globex[..4],
        ["globex", "globex", "active", "2"],
        "{results}"
    );
    assert_eq!(row(&results["suspended"], 0)[2], "suspended", "{results}");
    assert!(
        results["rotated"].as_str().unwrap().contains("in 600 s"),
        "{results}"
    );
    let confirmation = results["confirmation"].as_str().unwrap();
    assert!(
        confirmation.contains("3 stored events")
            && confirmation.contains("customer.id is \"acme\"")
            && confirmation.contains("orders")
            && confirmation.contains("backups are not reached"),
        "the confirmation names what will be deleted: {results}"
    );
    assert!(
        results["wrong_id"]
            .as_str()
            .unwrap()
            .starts_with("Nothing erased"),
        "{results}"
    );
    assert!(
        results["erased"]
            .as_str()
            .unwrap()
            .contains("3 events deleted (orders 3)"),
        "{results}"
    );
    assert_eq!(results["after_erase"].as_array().unwrap().len(), 1);
    assert_eq!(row(&results["after_erase"], 0)[0], "globex");
    assert_eq!(row(&results["after_erase"], 0)[3], "2");
    assert_eq!(results["page_errors"], json!([]));
}
