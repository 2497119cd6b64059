//! What the API's in-process tests share: a token made in the store, one request through
//! the router (tower's `oneshot`) with its answer read back as JSON, every error checked
//! to have a TMF error body.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tollgate_store::{NewToken, Role, Store};
use tower::ServiceExt;

/// A response: status, headers, JSON body (Null when empty).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) body: Value,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

pub(crate) async fn token(store: &Store, role: Role, scope: Option<&str>) -> String {
    let mut tx = store.begin().await.expect("begin");
    let (secret, _) = tx
        .create_token(
            NewToken { name: role.as_str(), role, scope_account_id: scope, expires_at: None },
            jiff::Timestamp::now(),
        )
        .await
        .expect("create a token");
    tx.commit().await.expect("commit");
    secret.expose().to_owned()
}

/// One request: `extra` headers beside the bearer token; a JSON body as application/json
/// for POST and application/merge-patch+json for PATCH unless `extra` says otherwise.
pub(crate) async fn call(
    app: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> Answer {
    call_raw(app, method, path, token, body.map(|body| body.to_string()), extra).await
}

/// [`call`] with the body's text as given (a number written as `1e3`, say).
pub(crate) async fn call_raw(
    app: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if !extra.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) && body.is_some() {
        let media = if method == "PATCH" { "application/merge-patch+json" } else { "application/json" };
        request = request.header(header::CONTENT_TYPE, media);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let body = body.map(Body::from).unwrap_or_else(Body::empty);
    let response = app.clone().oneshot(request.body(body).expect("a request")).await.expect("an answer");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.expect("the body").to_bytes();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("a JSON body") };
    if !status.is_success() {
        assert_eq!(body["@type"], "Error", "an error has a TMF error body: {body}");
        assert_eq!(body["status"], status.as_u16().to_string());
    }
    Answer { status, headers, body }
}
