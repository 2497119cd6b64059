//! The API's error: a status and a TMF error body (`{code, reason, message, status,
//! @type: "Error"}`, TMF630) whose `reason` names the offending field. The domain crates'
//! (catalogue, customers, inventory, hub) and the store's errors map to statuses here and
//! only here (an engine that cannot answer is 503 with `Retry-After`); a store failure is
//! logged and answered 500 without its detail.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tollgate_catalogue::CatalogueError;
use tollgate_customers::CustomersError;
use tollgate_hub::HubError;
use tollgate_inventory::InventoryError;
use tollgate_orders::OrdersError;
use tollgate_store::StoreError;

/// An error answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[error("{status}: {reason}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    /// What went wrong in one word-ish: `invalidField`, `notFound`, …
    pub code: &'static str,
    /// The field or header concerned, or a short reason.
    pub reason: String,
    pub message: String,
    /// Extra headers (`WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError { status, code, reason: reason.into(), message: message.into(), headers: Vec::new() }
    }

    pub(crate) fn bad_request(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalidField", field, message)
    }

    pub(crate) fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }
}

/// A request that declares a body over [`crate::MAX_BODY_BYTES`] is answered 413 at once,
/// before its body is waited for (a client that never sends it holds nothing).
pub(crate) async fn refuse_declared_too_large(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|bytes| bytes > crate::MAX_BODY_BYTES as u64) {
        let message = format!("a body has at most {} bytes", crate::MAX_BODY_BYTES);
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payloadTooLarge", "body", message).into_response();
    }
    next.run(request).await
}

/// Axum's own refusals (a path, query or body its extractors cannot read, a body over the
/// limit) are plain text; every error of the API is a TMF error body, naming what was
/// wrong as well as the text tells.
pub(crate) async fn tmf_body(response: Response) -> Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|media| media.starts_with("text/plain"));
    if !plain || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => status.canonical_reason().unwrap_or("refused").to_owned(),
    };
    let lower = text.to_ascii_lowercase();
    let reason = if lower.contains("url") || lower.contains("path") {
        "path"
    } else if lower.contains("query") {
        "query"
    } else {
        "body"
    };
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payloadTooLarge",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupportedMediaType",
        status if status.is_server_error() => "internal",
        _ => "invalidField",
    };
    let mut answer = ApiError::new(status, code, reason, text).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// Characters of an error's reason or message shown at most: they may quote what the
/// request sent (an id of any length in a path), and an answer stays small.
const MAX_ERROR_TEXT_CHARS: usize = 1024;

/// `text` cut to [`MAX_ERROR_TEXT_CHARS`] characters, marked with `…` where it was cut.
fn bounded(text: String) -> String {
    match text.char_indices().nth(MAX_ERROR_TEXT_CHARS) {
        None => text,
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.code,
            "reason": bounded(self.reason),
            "message": bounded(self.message),
            "status": self.status.as_u16().to_string(),
            "@type": "Error",
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<CatalogueError> for ApiError {
    fn from(error: CatalogueError) -> Self {
        let message = error.to_string();
        match error {
            CatalogueError::Invalid { field, .. } => ApiError::bad_request(field, message),
            CatalogueError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "notFound", "id", message),
            CatalogueError::InvalidTransition { .. } => {
                ApiError::new(StatusCode::CONFLICT, "invalidTransition", "lifecycleStatus", message)
            }
            CatalogueError::Frozen { field, .. } => ApiError::new(StatusCode::CONFLICT, "frozen", field, message),
            CatalogueError::Conflict { field, .. } => ApiError::new(StatusCode::CONFLICT, "conflict", field, message),
            CatalogueError::StaleVersion { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "staleVersion", "If-Match", message)
            }
            CatalogueError::PlanRejected { field, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "tariffPlanRejected", field, message)
            }
            CatalogueError::Store(error) => ApiError::from(error),
            other => internal(&other),
        }
    }
}

impl From<CustomersError> for ApiError {
    fn from(error: CustomersError) -> Self {
        let message = error.to_string();
        match error {
            CustomersError::Invalid { field, .. } => ApiError::bad_request(field, message),
            CustomersError::Forbidden { .. } => ApiError::new(StatusCode::FORBIDDEN, "forbidden", "id", message),
            CustomersError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "notFound", "id", message),
            CustomersError::Conflict { field, .. } => ApiError::new(StatusCode::CONFLICT, "conflict", field, message),
            CustomersError::StaleVersion { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "staleVersion", "If-Match", message)
            }
            CustomersError::EngineUnavailable { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "engineUnavailable", "engine", message)
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            }
            CustomersError::Store(error) => ApiError::from(error),
            other => internal(&other),
        }
    }
}

impl From<InventoryError> for ApiError {
    fn from(error: InventoryError) -> Self {
        let message = error.to_string();
        match error {
            InventoryError::Invalid { field, .. } => ApiError::bad_request(field, message),
            InventoryError::Line { line, field, .. } => ApiError::bad_request(format!("line {line}: {field}"), message),
            InventoryError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "notFound", "id", message),
            InventoryError::InvalidTransition { .. } => {
                ApiError::new(StatusCode::CONFLICT, "invalidTransition", "state", message)
            }
            InventoryError::Conflict { field, .. } => ApiError::new(StatusCode::CONFLICT, "conflict", field, message),
            InventoryError::StaleVersion { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "staleVersion", "If-Match", message)
            }
            InventoryError::Store(error) => ApiError::from(error),
            other => internal(&other),
        }
    }
}

impl From<OrdersError> for ApiError {
    fn from(error: OrdersError) -> Self {
        let message = error.to_string();
        match error {
            OrdersError::Invalid { field, .. } => ApiError::bad_request(field, message),
            OrdersError::Forbidden { .. } => ApiError::new(StatusCode::FORBIDDEN, "forbidden", "id", message),
            OrdersError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "notFound", "id", message),
            OrdersError::InvalidTransition { .. } => {
                ApiError::new(StatusCode::CONFLICT, "invalidTransition", "state", message)
            }
            OrdersError::Conflict { field, .. } => ApiError::new(StatusCode::CONFLICT, "conflict", field, message),
            OrdersError::StaleVersion { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "staleVersion", "If-Match", message)
            }
            OrdersError::KeyReused { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotencyKeyReused", "Idempotency-Key", message)
            }
            OrdersError::Store(error) => ApiError::from(error),
            other => internal(&other),
        }
    }
}

impl From<HubError> for ApiError {
    fn from(error: HubError) -> Self {
        let message = error.to_string();
        match error {
            HubError::Invalid { field, .. } => ApiError::bad_request(field, message),
            HubError::Forbidden { .. } => ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Authorization", message),
            HubError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "notFound", "id", message),
            HubError::Store(error) => ApiError::from(error),
            other => internal(&other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "notFound", "id", error.to_string()),
            StoreError::StaleVersion { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "staleVersion", "If-Match", error.to_string())
            }
            StoreError::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "conflict", "id", error.to_string()),
            StoreError::Invalid { field, .. } => ApiError::bad_request(field, error.to_string()),
            // Rolled back by a collision with a concurrent change: nothing was kept, and
            // the same request sent again will go through.
            ref transient if transient.is_transient() => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "contended", "concurrency", error.to_string())
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            }
            other => internal(&other),
        }
    }
}

fn internal(error: &dyn std::error::Error) -> ApiError {
    tracing::error!(%error, "api: the store failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "store", "the request could not be completed")
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "notFound", "path", "no such resource")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "methodNotAllowed",
        "method",
        "the resource does not support this method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a 404 for a path id of 100,000 characters quoted the whole id.
    #[test]
    fn an_error_quotes_at_most_a_bounded_text() {
        let long = "x".repeat(100_000);
        assert_eq!(bounded(long).chars().count(), MAX_ERROR_TEXT_CHARS + 1);
        assert_eq!(bounded("short".to_owned()), "short");
        let wide = "é".repeat(MAX_ERROR_TEXT_CHARS + 5);
        assert!(bounded(wide).ends_with("é…"), "cut at a character boundary");
    }
}
