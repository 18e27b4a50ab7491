//! Walks the route table (`keyhole_server::routes::ROUTES`) with every kind of key and checks that
//! exactly the keys the table names get past authentication. "Past" means any answer but 401: a route
//! may still answer 404 or 400 for the placeholder path values used here.

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
}

const CALLERS: [Caller; 7] = [
    Caller::Anonymous,
    Caller::Malformed,
    Caller::Organization,
    Caller::Master,
    Caller::Write,
    Caller::Read,
    Caller::OtherProjectMaster,
];

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
        Requirement::Operation(Operation::Writes) => {
            matches!(caller, Caller::Master | Caller::Write)
        }
        Requirement::Operation(_) => matches!(caller, Caller::Master | Caller::Read),
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

#[tokio::test(flavor = "multi_thread")]
async fn every_route_admits_exactly_the_keys_the_table_names() {
    let server = InProcessServer::start().await;
    let other = server.meta.create_project("other").await.unwrap().1;
    let key_of = |caller: Caller| -> Option<String> {
        match caller {
            Caller::Anonymous => None,
            Caller::Malformed => Some("not a key at all".to_string()),
            Caller::Organization => Some(server.org_key.clone()),
            Caller::Master => Some(server.project.master.clone()),
            Caller::Write => Some(server.project.write.clone()),
            Caller::Read => Some(server.project.read.clone()),
            Caller::OtherProjectMaster => Some(other.master.clone()),
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
            for caller in CALLERS {
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
    assert!(checked >= ROUTES.len() * CALLERS.len());
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
