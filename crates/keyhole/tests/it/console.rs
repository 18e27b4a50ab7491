//! The console's vocabulary: the names its forms offer come from `GET /console/vocabulary.json`, which
//! the server takes from the types that parse them, and the console's script holds no copy of them.

use serde_json::Value;

use crate::support::{InProcessServer, client, send};

#[tokio::test]
async fn the_console_offers_what_the_api_parses_and_repeats_no_list() {
    let server = InProcessServer::start().await;
    let (status, vocabulary) = send(client().get(server.url("/console/vocabulary.json"))).await;
    assert_eq!(status, 200, "{vocabulary}");
    let names = |list: &str| -> Vec<String> {
        vocabulary[list]
            .as_array()
            .unwrap_or_else(|| panic!("{list}: {vocabulary}"))
            .iter()
            .map(|name| name.as_str().unwrap().to_string())
            .collect()
    };
    let analyses = names("analyses");
    assert_eq!(analyses.len(), 13, "{analyses:?}");
    // Every analysis offered is one the query route accepts (an unknown one is 404).
    for analysis in &analyses {
        let (status, answer) = server
            .post_json(
                &format!("/queries/{analysis}"),
                &server.project.master,
                &serde_json::json!({}),
            )
            .await;
        assert_ne!(status, 404, "{analysis}: {answer}");
    }
    assert!(names("operators").contains(&"not_contains".to_string()));
    assert!(!names("operators").contains(&"within".to_string()));
    assert_eq!(
        names("intervals"),
        ["minutely", "hourly", "daily", "weekly", "monthly", "yearly"]
    );
    assert!(names("operations").contains(&"deletes".to_string()));
    assert!(names("addons").contains(&"keen:referrer_parser".to_string()));
    let script =
        std::fs::read_to_string(crate::support::repo_root().join("crates/server/console/app.js"))
            .unwrap();
    for listed in [
        "'count_unique'",
        "'not_contains'",
        "'saved_queries'",
        "'hourly'",
    ] {
        assert!(!script.contains(listed), "app.js lists {listed} itself");
    }
    let _: Value = vocabulary;
}
