//! The operations endpoint of `tollgate serve`: liveness and readiness for a supervisor
//! or load balancer (Kubernetes probes, systemd, HAProxy checks).
//!
//! - `GET /health/live` → 200 while the process runs.
//! - `GET /health/ready` → 200 when every shard serves, 503 when any has failed (a journal
//!   write failure it is recovering from); the body lists each shard's state, why it
//!   failed, since when, and how many requests it refused.
//!
//! It holds no secret and changes nothing, and listens on loopback by default.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tollgate_engine::Engine;

use crate::AdapterError;

pub fn router(engine: Arc<Engine>) -> Router {
    Router::new().route("/health/live", get(live)).route("/health/ready", get(ready)).with_state(engine)
}

async fn live() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "up"}))
}

async fn ready(State(engine): State<Arc<Engine>>) -> Response {
    let shards = engine.health();
    let serving = shards.iter().all(|s| s.state == "serving");
    let status = if serving { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json(status, &serde_json::json!({"status": if serving { "ready" } else { "degraded" }, "shards": shards}))
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), AdapterError> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| AdapterError::Io { what: "admin server", source })
}
