//! CORS preflights of origin-bound keys. A browser asks `OPTIONS` before a cross-origin request that
//! sends `Authorization` or JSON; the preflight carries no `Authorization` header, but a key sent as
//! `api_key` in the query string (keen-analysis's GETs of saved queries and datasets) is in its URL. Such
//! a preflight from an origin outside the key's `options.origins` is refused here, before the CORS layer
//! would allow it, so the browser never sends the request. Preflights without a key in their URL are
//! answered as usual: the request that follows is checked by `auth::authorize` like any other.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyhole_meta::{Refusal, Resolution};

use crate::AppState;
use crate::auth::{origin_not_allowed, presented_key, request_origin};

pub(crate) async fn refuse_foreign_preflights(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let is_preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(axum::http::header::ACCESS_CONTROL_REQUEST_METHOD);
    let Some(origin) = request_origin(request.headers()).filter(|_| is_preflight) else {
        return next.run(request).await;
    };
    let Some(key) = presented_key(&axum::http::HeaderMap::new(), request.uri().query()) else {
        return next.run(request).await;
    };
    let now = keyhole_model::query::now_millis();
    let grant = match state.meta.resolve_credential(&key, now).await {
        Ok(resolved) => match resolved.resolution {
            Resolution::Granted(grant) => grant,
            Resolution::Refused(_) => return next.run(request).await,
        },
        _ => return next.run(request).await,
    };
    if grant.check_origin(Some(&origin)).is_ok() {
        return next.run(request).await;
    }
    state.metrics.refused(Refusal::OriginNotAllowed.as_str());
    state.meta.record_refusal(
        grant.project_id(),
        Refusal::OriginNotAllowed,
        Some(grant.key_prefix()),
        grant.token_id(),
        format!("OPTIONS {}", crate::loggable_path(request.uri().path())),
    );
    origin_not_allowed(Some(&origin)).into_response()
}
