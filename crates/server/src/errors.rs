//! Every error a client can see, declared once: name → HTTP status → Keen `error_code`. Handlers return
//! [`ApiError`]; domain errors (events, storage, metadata) are mapped here and nowhere else. Internal
//! failures are logged with their detail and answered with a generic message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyhole_model::EventError;
use serde_json::json;

macro_rules! error_codes {
    ($($name:ident => ($status:ident, $keen_code:literal),)*) => {
        /// The error table.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum ErrorCode { $($name,)* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            pub fn status(self) -> StatusCode {
                match self { $(ErrorCode::$name => StatusCode::$status,)* }
            }

            /// The `error_code` string Keen clients branch on.
            pub fn keen_code(self) -> &'static str {
                match self { $(ErrorCode::$name => $keen_code,)* }
            }
        }
    };
}

error_codes! {
    InvalidApiKey => (UNAUTHORIZED, "InvalidApiKeyError"),
    AdminOnlyEndpoint => (UNAUTHORIZED, "AdminOnlyEndpointError"),
    RequestForbidden => (UNAUTHORIZED, "RequestForbiddenError"),
    OriginNotAllowed => (UNAUTHORIZED, "OriginNotAllowedError"),
    // An origin-bound key on a request that names no origin (neither `Origin` nor `Referer`).
    OriginRequired => (FORBIDDEN, "OriginRequiredError"),
    InvalidWebhookSignature => (UNAUTHORIZED, "InvalidWebhookSignatureError"),
    ResourceNotFound => (NOT_FOUND, "ResourceNotFoundError"),
    InvalidEvent => (BAD_REQUEST, "InvalidEventError"),
    EventTooLarge => (PAYLOAD_TOO_LARGE, "InvalidEventError"),
    BatchTooLarge => (PAYLOAD_TOO_LARGE, "InvalidBatchError"),
    InvalidBatch => (BAD_REQUEST, "InvalidBatchError"),
    NamespaceType => (BAD_REQUEST, "NamespaceTypeError"),
    InvalidKeenNamespaceProperty => (BAD_REQUEST, "InvalidKeenNamespaceProperty"),
    ListsOfNonPrimitivesNotAllowed => (BAD_REQUEST, "ListsOfNonPrimitivesNotAllowedError"),
    InvalidPropertyName => (BAD_REQUEST, "InvalidPropertyNameError"),
    InvalidPropertyValue => (BAD_REQUEST, "InvalidPropertyValueError"),
    InvalidCollectionName => (BAD_REQUEST, "InvalidCollectionNameError"),
    // The event's new property names are refused (the collection is at its column cap); a client
    // mistake the SDKs do not retry.
    TooManyProperties => (BAD_REQUEST, "InvalidPropertyNameError"),
    InvalidRequest => (BAD_REQUEST, "InvalidRequestError"),
    RequestTimeout => (REQUEST_TIMEOUT, "RequestTimeoutError"),
    UriTooLong => (URI_TOO_LONG, "InvalidRequestError"),
    HeadersTooLarge => (REQUEST_HEADER_FIELDS_TOO_LARGE, "InvalidRequestError"),
    TimeframeDefinition => (BAD_REQUEST, "TimeframeDefinitionError"),
    InvalidTimezone => (BAD_REQUEST, "InvalidTimezoneError"),
    InvalidInterval => (BAD_REQUEST, "InvalidIntervalError"),
    InvalidFilter => (BAD_REQUEST, "InvalidFilterError"),
    InvalidPropertyNameForGeoFilter => (BAD_REQUEST, "InvalidPropertyNameForGeoFilter"),
    MissingParameter => (BAD_REQUEST, "MissingParameterError"),
    InvalidParameter => (BAD_REQUEST, "InvalidParameterError"),
    LimitExceeded => (BAD_REQUEST, "LimitExceededError"),
    InvalidKeyDefinition => (BAD_REQUEST, "InvalidAccessKeyDefinitionError"),
    InvalidTenantDefinition => (BAD_REQUEST, "InvalidTenantDefinitionError"),
    InvalidDashboardDefinition => (BAD_REQUEST, "InvalidDashboardDefinitionError"),
    // A key or embed token of a suspended tenant (`PATCH …/tenants/{id}` with `"suspended": true`).
    TenantSuspended => (FORBIDDEN, "TenantSuspendedError"),
    // A change that conflicts with what is stored (a tenant id already taken).
    Conflict => (CONFLICT, "ConflictError"),
    NotImplemented => (NOT_IMPLEMENTED, "NotImplementedError"),
    QueryMemoryExceeded => (PAYLOAD_TOO_LARGE, "QueryTooLargeError"),
    // Keen answered query timeouts with 504.
    QueryTimeout => (GATEWAY_TIMEOUT, "QueryTimeoutError"),
    TooManyQueries => (SERVICE_UNAVAILABLE, "TooManyQueriesError"),
    // A key's own limits (`options.limits`, a Keyhole extension); Keen answered its rate limits with 429.
    RateLimited => (TOO_MANY_REQUESTS, "RateLimitedError"),
    QuotaExceeded => (TOO_MANY_REQUESTS, "QuotaExceededError"),
    ServiceUnavailable => (SERVICE_UNAVAILABLE, "ServiceUnavailableError"),
    // The mail server (`--smtp-url`) could not be reached or refused an e-mailed extraction.
    MailDelivery => (BAD_GATEWAY, "MailDeliveryError"),
    // The data directory's disk is full: nothing of the request was stored; retry once space is freed.
    InsufficientStorage => (INSUFFICIENT_STORAGE, "InsufficientStorageError"),
    // Storage failed with an I/O error (not a bug of the request); what was acknowledged is safe.
    StorageUnavailable => (SERVICE_UNAVAILABLE, "StorageUnavailableError"),
    Internal => (INTERNAL_SERVER_ERROR, "InternalServerError"),
}

/// An error answer: `{"message", "error_code"}` with the code's status, and `Retry-After` where
/// retrying soon helps.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// The error with a `Retry-After` of `seconds`.
    #[must_use]
    pub(crate) fn with_retry_after(self, seconds: u64) -> ApiError {
        ApiError {
            retry_after_secs: Some(seconds),
            ..self
        }
    }

    /// Logs `detail` and answers with a message that reveals nothing of it.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            ErrorCode::Internal,
            "An internal error occurred. It has been logged.",
        )
    }

    pub(crate) fn not_found() -> ApiError {
        ApiError::new(ErrorCode::ResourceNotFound, "Resource not found.")
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"message": self.message, "error_code": self.code.keen_code()})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code.status(), Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_secs {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

impl From<EventError> for ApiError {
    fn from(error: EventError) -> ApiError {
        let code = match &error {
            EventError::InvalidEvent(_) => ErrorCode::InvalidEvent,
            EventError::EventTooLarge(_) => ErrorCode::EventTooLarge,
            EventError::NamespaceType(_) => ErrorCode::NamespaceType,
            EventError::InvalidKeenNamespaceProperty(_) => ErrorCode::InvalidKeenNamespaceProperty,
            EventError::ListsOfNonPrimitivesNotAllowed(_) => {
                ErrorCode::ListsOfNonPrimitivesNotAllowed
            }
            EventError::InvalidPropertyName(_) => ErrorCode::InvalidPropertyName,
            EventError::InvalidPropertyValue(_) => ErrorCode::InvalidPropertyValue,
            EventError::InvalidCollectionName(_) => ErrorCode::InvalidCollectionName,
        };
        ApiError::new(code, error.to_string())
    }
}

impl From<keyhole_model::query::QueryError> for ApiError {
    fn from(error: keyhole_model::query::QueryError) -> ApiError {
        use keyhole_model::query::QueryError;
        let code = match &error {
            QueryError::InvalidTimeframe(_) => ErrorCode::TimeframeDefinition,
            QueryError::InvalidTimezone(_) => ErrorCode::InvalidTimezone,
            QueryError::InvalidInterval(_) => ErrorCode::InvalidInterval,
            QueryError::InvalidFilter(_) => ErrorCode::InvalidFilter,
            QueryError::InvalidGeoFilterProperty(_) => ErrorCode::InvalidPropertyNameForGeoFilter,
            QueryError::MissingParameter(_) => ErrorCode::MissingParameter,
            QueryError::InvalidParameter(_) => ErrorCode::InvalidParameter,
            QueryError::UnknownAnalysis(_) => ErrorCode::ResourceNotFound,
            QueryError::LimitExceeded(_) => ErrorCode::LimitExceeded,
        };
        ApiError::new(code, error.to_string())
    }
}

impl From<keyhole_query::ExecError> for ApiError {
    fn from(error: keyhole_query::ExecError) -> ApiError {
        match error {
            keyhole_query::ExecError::Query(error) => error.into(),
            keyhole_query::ExecError::Storage(error) => error.into(),
            keyhole_query::ExecError::Engine(error) => ApiError::internal(error),
            keyhole_query::ExecError::Internal(detail) => ApiError::internal(detail),
            keyhole_query::ExecError::Busy => ApiError::new(
                ErrorCode::TooManyQueries,
                "Too many queries are running; retry shortly.",
            )
            .with_retry_after(1),
            keyhole_query::ExecError::Timeout(limit) => ApiError::new(
                ErrorCode::QueryTimeout,
                format!(
                    "The query took longer than {} seconds; narrow it with a timeframe or filters.",
                    limit.as_secs_f64()
                ),
            ),
            keyhole_query::ExecError::MemoryBusy => ApiError::new(
                ErrorCode::TooManyQueries,
                "The server's memory for queries is in use by other queries; retry shortly.",
            )
            .with_retry_after(1),
            keyhole_query::ExecError::MemoryBudget(bytes) => ApiError::new(
                ErrorCode::QueryMemoryExceeded,
                format!(
                    "The query needs more than its memory budget of {} MiB; narrow it with a timeframe, filters or fewer group_by values.",
                    bytes / (1024 * 1024)
                ),
            ),
        }
    }
}

impl From<keyhole_storage::StorageError> for ApiError {
    fn from(error: keyhole_storage::StorageError) -> ApiError {
        match error {
            keyhole_storage::StorageError::Closed => ApiError::new(
                ErrorCode::ServiceUnavailable,
                "The server is shutting down; retry shortly.",
            )
            .with_retry_after(5),
            full if full.is_disk_full() => {
                tracing::warn!(error = %full, "write refused: the data directory's disk is full");
                ApiError::new(
                    ErrorCode::InsufficientStorage,
                    "The server's disk is full; nothing of this request was stored. Retry later.",
                )
                .with_retry_after(30)
            }
            keyhole_storage::StorageError::BehindLog => ApiError::new(
                ErrorCode::StorageUnavailable,
                "This node is catching up with the shared log and would answer short; retry shortly.",
            )
            .with_retry_after(2),
            keyhole_storage::StorageError::BufferFull => ApiError::new(
                ErrorCode::ServiceUnavailable,
                "The server is at its memory limit for events not yet written to disk; nothing of this request was stored. Retry shortly.",
            )
            .with_retry_after(1),
            keyhole_storage::StorageError::Io(error) => {
                tracing::error!(%error, "storage i/o failed");
                ApiError::new(
                    ErrorCode::StorageUnavailable,
                    "The server's storage failed or cannot be reached; retry later. A write answered so is stored at most once if retried with the same Idempotency-Key header (or keen.uniqueness_token): with several nodes, a commit that answered too late may still be stored.",
                )
                .with_retry_after(10)
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<keyhole_meta::MetaError> for ApiError {
    fn from(error: keyhole_meta::MetaError) -> ApiError {
        match error {
            keyhole_meta::MetaError::InvalidDefinition(message) => {
                ApiError::new(ErrorCode::InvalidKeyDefinition, message)
            }
            keyhole_meta::MetaError::Conflict(message) => {
                ApiError::new(ErrorCode::Conflict, message)
            }
            unavailable if unavailable.is_unavailable() => {
                tracing::warn!(error = %unavailable, "metadata store unreachable; answered 503");
                ApiError::new(
                    ErrorCode::StorageUnavailable,
                    "The metadata store cannot be reached; retry shortly. A write answered so may have been stored: retry it with the same Idempotency-Key header (or keen.uniqueness_token) to store it once.",
                )
                .with_retry_after(2)
            }
            other => ApiError::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_answers_with_message_and_code() {
        for code in ErrorCode::ALL {
            let body = ApiError::new(*code, "m").body();
            assert_eq!(body["message"], "m");
            assert!(
                body["error_code"]
                    .as_str()
                    .unwrap()
                    .chars()
                    .next()
                    .unwrap()
                    .is_ascii_uppercase()
            );
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
    }

    #[test]
    fn storage_failures_are_told_apart_and_retryable() {
        let full = ApiError::from(keyhole_storage::StorageError::Io(
            std::io::Error::from_raw_os_error(28),
        ));
        assert_eq!(
            (full.code.status().as_u16(), full.retry_after_secs),
            (507, Some(30))
        );
        assert_eq!(full.code.keen_code(), "InsufficientStorageError");
        let failed = ApiError::from(keyhole_storage::StorageError::Io(
            std::io::Error::from_raw_os_error(5),
        ));
        assert_eq!(
            (failed.code.status().as_u16(), failed.retry_after_secs),
            (503, Some(10))
        );
        assert!(
            !failed.message.contains("os error"),
            "the detail is logged, not answered"
        );
    }
}
