//! The route table: every route, the operation that unlocks it, and its handler, in one list. The
//! `route_table!` macro turns the list into both [`ROUTES`] (walked by the authorization test) and the
//! router, so the two cannot drift apart. Each handler's extractor type (`Authorized<Writes>`, ...)
//! enforces the same requirement the table names.

use axum::Router;
use axum::routing::{delete, get, patch, post, put};
use keyhole_model::Operation;

use crate::AppState;
use crate::auth::Requirement;
use crate::{
    console, dashboards, datasets, deletes, discovery, embed, inspect, keys, projects, query,
    saved_queries, tenant_erasure, tenants, write,
};

/// One row of the route table.
#[derive(Clone, Copy, Debug)]
pub struct RouteSpec {
    /// Lower-case HTTP method.
    pub method: &'static str,
    /// The route's path, in axum's syntax (`{name}` for a segment).
    pub path: &'static str,
    /// What the route requires of its caller.
    pub requirement: Requirement,
}

macro_rules! route_table {
    ($($method:ident $path:literal => $requirement:expr, $handler:path;)*) => {
        /// Every route with what unlocks it.
        pub const ROUTES: &[RouteSpec] = &[
            $(RouteSpec { method: stringify!($method), path: $path, requirement: $requirement },)*
        ];

        /// The router built from the same rows as [`ROUTES`].
        pub fn routes() -> Router<AppState> {
            let mut router = Router::new();
            $(router = router.route($path, $method($handler));)*
            router
        }
    };
}

const WRITES: Requirement = Requirement::Operation(Operation::Writes);
const SCHEMA: Requirement = Requirement::Operation(Operation::Schema);
const QUERIES: Requirement = Requirement::Operation(Operation::Queries);
const DATASETS: Requirement = Requirement::Operation(Operation::Datasets);
const MASTER: Requirement = Requirement::Master;
const ORGANIZATION: Requirement = Requirement::Organization;
const ADMINISTRATOR: Requirement = Requirement::MasterOrOrganization;

route_table! {
    get "/" => Requirement::Public, discovery::api_root;
    get "/3.0" => Requirement::Public, discovery::api_version;
    get "/health" => Requirement::Public, crate::health;
    get "/console" => Requirement::Public, console::console_root;
    get "/console/" => Requirement::Public, console::console_index;
    get "/console/vocabulary.json" => Requirement::Public, console::vocabulary;
    get "/console/server.json" => Requirement::Public, console::server_status;
    get "/console/{file}" => Requirement::Public, console::console_file;
    get "/embed/{file}" => Requirement::Public, embed::embed_file;
    get "/embed/{project_id}/{name}" => Requirement::Public, embed::embed_page;
    get "/metrics" => ORGANIZATION, crate::metrics::serve_metrics;
    get "/3.0/organizations/{org_id}/projects" => ORGANIZATION, projects::list_organization_projects;
    post "/3.0/organizations/{org_id}/projects" => ORGANIZATION, projects::create_project;
    get "/3.0/organizations/{org_id}/projects/{project_id}" => ORGANIZATION, projects::get_organization_project;
    post "/3.0/organizations/{org_id}/projects/{project_id}" => ORGANIZATION, projects::update_organization_project;
    put "/3.0/organizations/{org_id}/projects/{project_id}" => ORGANIZATION, projects::update_organization_project;
    get "/3.0/projects" => MASTER, projects::list_projects;
    get "/3.0/projects/{project_id}" => MASTER, projects::get_project;
    get "/3.0/projects/{project_id}/events" => SCHEMA, inspect::list_collections;
    post "/3.0/projects/{project_id}/events" => WRITES, write::record_events;
    get "/3.0/projects/{project_id}/events/{collection}" => Requirement::WritesWithDataElseSchema, write::get_collection;
    post "/3.0/projects/{project_id}/events/{collection}" => WRITES, write::record_event;
    delete "/3.0/projects/{project_id}/events/{collection}" => Requirement::Operation(Operation::Deletes), deletes::delete_events;
    get "/3.0/projects/{project_id}/events/{collection}/properties" => SCHEMA, inspect::list_properties;
    get "/3.0/projects/{project_id}/events/{collection}/properties/{property}" => SCHEMA, inspect::get_property;
    delete "/3.0/projects/{project_id}/events/{collection}/properties/{property}" => MASTER, deletes::delete_property;
    get "/3.0/projects/{project_id}/organization-usage" => MASTER, discovery::organization_usage;
    get "/3.0/projects/{project_id}/queries" => QUERIES, discovery::query_resources;
    get "/3.0/projects/{project_id}/queries/saved" => MASTER, saved_queries::list_saved_queries;
    get "/3.0/projects/{project_id}/queries/saved/{name}" => MASTER, saved_queries::get_saved_query;
    put "/3.0/projects/{project_id}/queries/saved/{name}" => MASTER, saved_queries::put_saved_query;
    delete "/3.0/projects/{project_id}/queries/saved/{name}" => MASTER, saved_queries::delete_saved_query;
    get "/3.0/projects/{project_id}/queries/saved/{name}/result" => Requirement::AnyOperation(&[Operation::SavedQueries, Operation::CachedQueries]), saved_queries::saved_query_result;
    get "/3.0/projects/{project_id}/datasets" => DATASETS, datasets::list_datasets;
    get "/3.0/projects/{project_id}/datasets/{name}" => DATASETS, datasets::get_dataset;
    put "/3.0/projects/{project_id}/datasets/{name}" => MASTER, datasets::put_dataset;
    delete "/3.0/projects/{project_id}/datasets/{name}" => MASTER, datasets::delete_dataset;
    get "/3.0/projects/{project_id}/datasets/{name}/results" => DATASETS, datasets::dataset_results;
    get "/3.0/projects/{project_id}/queries/{analysis_type}" => QUERIES, query::run_query_get;
    post "/3.0/projects/{project_id}/queries/{analysis_type}" => QUERIES, query::run_query_post;
    get "/3.0/projects/{project_id}/keys" => MASTER, keys::list_keys;
    get "/3.0/projects/{project_id}/keys/self" => Requirement::AnyKey, keys::key_self;
    get "/3.0/projects/{project_id}/keys/audit" => MASTER, keys::audit_log;
    post "/3.0/projects/{project_id}/keys" => MASTER, keys::create_key;
    get "/3.0/projects/{project_id}/keys/{key}" => MASTER, keys::get_key;
    post "/3.0/projects/{project_id}/keys/{key}" => MASTER, keys::update_key;
    delete "/3.0/projects/{project_id}/keys/{key}" => MASTER, keys::delete_key;
    post "/3.0/projects/{project_id}/keys/{key}/revoke" => MASTER, keys::revoke_key;
    post "/3.0/projects/{project_id}/keys/{key}/unrevoke" => MASTER, keys::unrevoke_key;
    get "/3.0/projects/{project_id}/keys/{key}/usage" => MASTER, keys::key_usage;
    get "/3.0/projects/{project_id}/keys/{key}/deliveries" => MASTER, keys::refused_deliveries;
    post "/3.0/projects/{project_id}/keys/{key}/tokens/{token_id}/revoke" => MASTER, keys::revoke_token;
    get "/3.0/projects/{project_id}/dashboards" => MASTER, dashboards::list_dashboards;
    get "/3.0/projects/{project_id}/dashboards/{name}" => MASTER, dashboards::get_dashboard;
    put "/3.0/projects/{project_id}/dashboards/{name}" => MASTER, dashboards::put_dashboard;
    delete "/3.0/projects/{project_id}/dashboards/{name}" => MASTER, dashboards::delete_dashboard;
    get "/3.0/projects/{project_id}/dashboards/{name}/view" => Requirement::AnyOperation(&[Operation::Queries, Operation::SavedQueries, Operation::CachedQueries]), dashboards::view_dashboard;
    get "/3.0/projects/{project_id}/tenancy" => ADMINISTRATOR, tenants::get_tenancy;
    put "/3.0/projects/{project_id}/tenancy" => ADMINISTRATOR, tenants::put_tenancy;
    get "/3.0/projects/{project_id}/tenants" => ADMINISTRATOR, tenants::list_tenants;
    post "/3.0/projects/{project_id}/tenants" => ADMINISTRATOR, tenants::create_tenant;
    get "/3.0/projects/{project_id}/tenants/erasures/{receipt_id}" => ADMINISTRATOR, tenant_erasure::get_erasure;
    get "/3.0/projects/{project_id}/tenants/{tenant_id}" => ADMINISTRATOR, tenants::get_tenant;
    patch "/3.0/projects/{project_id}/tenants/{tenant_id}" => ADMINISTRATOR, tenants::update_tenant;
    delete "/3.0/projects/{project_id}/tenants/{tenant_id}" => ADMINISTRATOR, tenant_erasure::delete_tenant;
    post "/3.0/projects/{project_id}/tenants/{tenant_id}/rotate-keys" => ADMINISTRATOR, tenants::rotate_tenant_keys;
}
