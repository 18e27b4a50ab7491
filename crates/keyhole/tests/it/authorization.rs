//! Walks the route table (`keyhole_server::routes::ROUTES`) with every kind of key and embed token and
//! checks that exactly the credentials the table names get past authentication. "Past" means any answer
//! but 401: a route may still answer 404 or 400 for the placeholder path values used here. Revoked,
//! expired and unreadable keys (stored options that no longer validate) and expired tokens or tokens of a
//! revoked key must be refused on every route.

use keyhole_model::Operation;
use keyhole_server::auth::Requirement;
use keyhole_server::routes::{ROUTES, RouteSpec};

use crate::support::{InProcessServer, client};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    Anonymous,
    Malformed,
    Organization,
    Master,
    Write,
    Read,
    OtherProjectMaster,
    /// An access key permitting exactly this operation.
    Access(Operation),
    /// An access key permitting everything, revoked.
    RevokedAccess,
    /// An access key permitting everything, past its `expires_at`.
    ExpiredAccess,
    /// An access key permitting everything whose stored options no longer validate.
    UnreadableAccess,
    /// An embed token of a key permitting everything, narrowed to exactly this operation.
    Token(Operation),
    /// An embed token past its `exp`.
    ExpiredToken,
    /// A live embed token of a revoked key.
    TokenOfRevokedKey,
}

fn callers() -> Vec<Caller> {
    let mut callers = vec![
        Caller::Anonymous,
        Caller::Malformed,
        Caller::Organization,
        Caller::Master,
        Caller::Write,
        Caller::Read,
        Caller::OtherProjectMaster,
        Caller::RevokedAccess,
        Caller::ExpiredAccess,
        Caller::UnreadableAccess,
        Caller::ExpiredToken,
        Caller::TokenOfRevokedKey,
    ];
    callers.extend(Operation::ALL.into_iter().map(Caller::Access));
    callers.extend(Operation::ALL.into_iter().map(Caller::Token));
    callers
}

/// Whether `caller` may use a route. On a route without `{project_id}` (`GET /3.0/projects`) any
/// project's master key is a master key: it sees its own project.
fn allowed(route: &RouteSpec, requirement: Requirement, caller: Caller, pixel_write: bool) -> bool {
    if caller == Caller::OtherProjectMaster && !route.path.contains("{project_id}") {
        return allowed(route, requirement, Caller::Master, pixel_write);
    }
    match requirement {
        Requirement::Public => true,
        Requirement::Organization => caller == Caller::Organization,
        Requirement::Master => caller == Caller::Master,
        Requirement::MasterOrOrganization => {
            matches!(caller, Caller::Master | Caller::Organization)
        }
        Requirement::Operation(operation) => match caller {
            Caller::Master => true,
            Caller::Write => operation == Operation::Writes,
            Caller::Read => !matches!(operation, Operation::Writes | Operation::Deletes),
            Caller::Access(permitted) | Caller::Token(permitted) => permitted == operation,
            _ => false,
        },
        Requirement::AnyOperation(operations) => operations.iter().any(|operation| {
            allowed(
                route,
                Requirement::Operation(*operation),
                caller,
                pixel_write,
            )
        }),
        Requirement::AnyKey => matches!(
            caller,
            Caller::Master | Caller::Write | Caller::Read | Caller::Access(_) | Caller::Token(_)
        ),
        Requirement::WritesWithDataElseSchema => {
            let operation = if pixel_write {
                Operation::Writes
            } else {
                Operation::Schema
            };
            allowed(route, Requirement::Operation(operation), caller, false)
        }
    }
}

const EVERYTHING: [&str; 7] = [
    "writes",
    "queries",
    "saved_queries",
    "cached_queries",
    "datasets",
    "schema",
    "deletes",
];

async fn access_key(server: &InProcessServer, definition: serde_json::Value) -> String {
    let definition = keyhole_model::access::AccessKeyDefinition::parse(&definition).unwrap();
    server
        .meta
        .create_access_key(&server.project.id, &definition, "test")
        .await
        .unwrap()
        .1
}

fn token(secret: &str, expires_in_secs: i64, permitted: Option<&[&str]>) -> String {
    let mut claims = serde_json::json!({
        "exp": chrono::Utc::now().timestamp() + expires_in_secs,
        "jti": "walk",
    });
    if let Some(permitted) = permitted {
        claims["permitted"] = serde_json::json!(permitted);
    }
    keyhole_model::embed_token::mint(secret, &claims)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_admits_exactly_the_keys_the_table_names() {
    let server = InProcessServer::start().await;
    let other = server.meta.create_project("other").await.unwrap().1;
    let mut access_keys = std::collections::HashMap::new();
    for operation in Operation::ALL {
        let definition = serde_json::json!({"name": "walk", "permitted": [operation.keen_name()]});
        access_keys.insert(operation, access_key(&server, definition).await);
    }
    let everything = serde_json::json!({"name": "all", "permitted": EVERYTHING});
    let parent = access_key(&server, everything.clone()).await;
    let revoked = access_key(&server, everything.clone()).await;
    let revoked_token = token(&revoked, 600, None);
    server
        .meta
        .set_access_key_active(&server.project.id, &revoked, false, "test")
        .await
        .unwrap();
    let mut expiring = everything.clone();
    expiring["expires_at"] = serde_json::json!("2020-01-01T00:00:00Z");
    let expired = access_key(&server, expiring).await;
    let unreadable = access_key(&server, everything).await;
    server
        .store_key_options(
            &unreadable,
            serde_json::json!({"queries": {"filters": [{"property_name": "tenant", "operator": "eq"}]}}),
        )
        .await;
    let tokens: std::collections::HashMap<Operation, String> = Operation::ALL
        .into_iter()
        .map(|operation| {
            (
                operation,
                token(&parent, 600, Some(&[operation.keen_name()])),
            )
        })
        .collect();
    let key_of = |caller: Caller| -> Option<String> {
        match caller {
            Caller::Anonymous => None,
            Caller::Malformed => Some("not a key at all".to_string()),
            Caller::Organization => Some(server.org_key.clone()),
            Caller::Master => Some(server.project.master.clone()),
            Caller::Write => Some(server.project.write.clone()),
            Caller::Read => Some(server.project.read.clone()),
            Caller::OtherProjectMaster => Some(other.master.clone()),
            Caller::Access(operation) => Some(access_keys[&operation].clone()),
            Caller::RevokedAccess => Some(revoked.clone()),
            Caller::ExpiredAccess => Some(expired.clone()),
            Caller::UnreadableAccess => Some(unreadable.clone()),
            Caller::Token(operation) => Some(tokens[&operation].clone()),
            Caller::ExpiredToken => Some(token(&parent, -5, None)),
            Caller::TokenOfRevokedKey => Some(revoked_token.clone()),
        }
    };
    let mut checked = 0;
    for route in ROUTES {
        let variants: &[bool] = if route.requirement == Requirement::WritesWithDataElseSchema {
            &[false, true]
        } else {
            &[false]
        };
        for &pixel_write in variants {
            for caller in callers() {
                let status = call(&server, route, key_of(caller), pixel_write).await;
                let expected = allowed(route, route.requirement, caller, pixel_write);
                assert_eq!(
                    status != 401,
                    expected,
                    "{} {} (pixel: {pixel_write}) with {caller:?} answered {status}",
                    route.method,
                    route.path
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= ROUTES.len() * callers().len());
}

async fn call(
    server: &InProcessServer,
    route: &RouteSpec,
    key: Option<String>,
    pixel_write: bool,
) -> u16 {
    let path = route
        .path
        .replace("{project_id}", &server.project.id)
        .replace("{org_id}", "default")
        .replace("{collection}", "walk")
        .replace("{property}", "p");
    let mut url = server.url(&path);
    if pixel_write {
        url.push_str("?data=e30=");
    }
    let method = reqwest::Method::from_bytes(route.method.to_uppercase().as_bytes()).unwrap();
    let mut request = client().request(method, url).body("{}");
    if let Some(key) = key {
        request = request.header("Authorization", key);
    }
    request.send().await.unwrap().status().as_u16()
}
