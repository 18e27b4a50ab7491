//! Embedded dashboards: `GET /embed/{project_id}/{name}` is a page that draws a stored dashboard
//! (`dashboards`) with the credential in its URL fragment (`#token=…`: an embed token or an access key,
//! never sent to the server with the page), and `GET /embed/keyhole-dashboard.js` defines the
//! `<keyhole-dashboard>` element that draws it inside any page without an iframe. The page is that element
//! and a few lines that hand it the fragment's credential, so both draw alike; the scripts and the
//! keen-dataviz bundle (the console's locked asset) are served from here.
//!
//! Design — who may frame the page: the server never sees the fragment, so the framing rule cannot come
//! from the token. It comes from the key named in the page's query string, `?kid=` — the embed key id of
//! the access key (public: it is in every token's header): the answer's `Content-Security-Policy:
//! frame-ancestors` lists that key's `options.origins`, and is `'none'` for a key without origins or no
//! key at all. The page refuses to use a token minted from another key than the one `kid` names, so a
//! token cannot be shown under a more permissive key's framing rule. An expired or revoked key's origins
//! still apply, so the "this link has expired" panel reaches the customer inside the frame. The page's own
//! queries are same-origin requests to Keyhole (`Referrer-Policy: same-origin` so they carry their
//! origin); an origin-bound key accepts requests from Keyhole's own pages (`auth`), since its origins
//! already decided who may frame them. The component, which runs in the embedding page, sends that page's
//! origin, checked against the key's origins as any browser request is.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyhole_model::dashboard::is_dashboard_name;

use crate::AppState;
use crate::auth::form_urlencoded_pairs;
use crate::errors::ApiError;

/// (file name, content type, bytes) of the embedding scripts.
const FILES: [(&str, &str, &[u8]); 2] = [
    (
        "keyhole-dashboard.js",
        "application/javascript; charset=utf-8",
        include_bytes!("../embed/keyhole-dashboard.js"),
    ),
    (
        "embed-page.js",
        "application/javascript; charset=utf-8",
        include_bytes!("../embed/embed-page.js"),
    ),
];

/// (file name, content type) of the third-party files the dashboards draw with (`crate::third_party`).
const THIRD_PARTY_FILES: [(&str, &str); 2] = [
    (
        "keen-dataviz.min.js",
        "application/javascript; charset=utf-8",
    ),
    ("keen-dataviz.min.css", "text/css; charset=utf-8"),
];

/// The policy of the embed page, before its `frame-ancestors`.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'";

/// `GET /embed/{file}`: the element's script, the page's script, the chart library. Loaded by other
/// origins' pages (the component), so cacheable and without a framing or script policy of its own.
pub(crate) async fn embed_file(Path(file): Path<String>) -> Response {
    let found = FILES
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|(_, content_type, bytes)| (*content_type, *bytes))
        .or_else(|| {
            let (name, content_type) = THIRD_PARTY_FILES.iter().find(|(name, _)| *name == file)?;
            Some((*content_type, crate::third_party::file(name)?))
        });
    let Some((content_type, bytes)) = found else {
        return ApiError::not_found().into_response();
    };
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// The `frame-ancestors` sources of the key whose embed key id is `kid`: its origins, or `'none'`.
async fn frame_ancestors(state: &AppState, project_id: &str, kid: Option<&str>) -> String {
    let Some(kid) = kid else {
        return "'none'".to_string();
    };
    let origins = match state.meta.embed_key_origins(project_id, kid).await {
        Ok(Some(origins)) => origins,
        Ok(None) => Vec::new(),
        Err(error) => {
            tracing::warn!(%error, project_id, "cannot read the key's origins; the embed page is not framable");
            Vec::new()
        }
    };
    // Origins were checked when the key was saved (`model::origins`); a value that could end the
    // directive is dropped all the same.
    let sources: Vec<&str> = origins
        .iter()
        .map(String::as_str)
        .filter(|origin| {
            origin
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '.' | '-' | '*'))
        })
        .collect();
    if sources.is_empty() {
        "'none'".to_string()
    } else {
        sources.join(" ")
    }
}

/// `GET /embed/{project_id}/{name}?kid=…#token=…`: the embed page.
pub(crate) async fn embed_page(
    State(state): State<AppState>,
    Path((project_id, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let project_id_is_plain = !project_id.is_empty()
        && project_id.len() <= 64
        && project_id.bytes().all(|byte| byte.is_ascii_alphanumeric());
    if !project_id_is_plain || !is_dashboard_name(&name) {
        return ApiError::not_found().into_response();
    }
    let kid = form_urlencoded_pairs(query.as_deref().unwrap_or_default())
        .find(|(parameter, _)| parameter == "kid")
        .map(|(_, value)| value)
        .filter(|kid| {
            kid.len() <= 64
                && kid
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_'))
        });
    let ancestors = frame_ancestors(&state, &project_id, kid.as_deref()).await;
    // The project id and name are plain characters (checked above), safe in attributes as they are.
    let page = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>Dashboard</title>\n\
         <script src=\"/embed/keen-dataviz.min.js\"></script>\n<script src=\"/embed/keyhole-dashboard.js\"></script>\n\
         <script src=\"/embed/embed-page.js\" defer></script>\n</head>\n\
         <body style=\"margin:0\">\n<keyhole-dashboard id=\"dashboard\" project=\"{project_id}\" dashboard=\"{name}\"{kid}></keyhole-dashboard>\n</body>\n</html>\n",
        kid = kid.map(|kid| format!(" kid=\"{kid}\"")).unwrap_or_default(),
    );
    let mut response = (StatusCode::OK, page).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Fails closed: a policy that cannot be sent is replaced by one that frames nowhere.
    let policy = HeaderValue::from_str(&format!("{PAGE_POLICY}; frame-ancestors {ancestors}"))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"));
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
