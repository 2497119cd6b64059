//! The operations endpoint of `tollgate serve`: liveness and readiness for a supervisor
//! or load balancer (Kubernetes probes, systemd, HAProxy checks).
//!
//! - `GET /health/live` → 200 while the process runs.
//! - `GET /health/ready` → 200 when every shard serves, 503 when any has failed (a journal
//!   write failure it is recovering from); the body lists each shard's state, why it
//!   failed, since when, and how many requests it refused, and each dependency's state
//!   (the Diameter peers, and what the [`HealthSource`]s given check: the BSS store, the
//!   activation gateway). A dependency charging needs (`required`) that is down makes the
//!   server unavailable (503); one it does not need makes it `degraded` (still 200:
//!   charging goes on while, say, the BSS database is unreachable).
//! - `GET /metrics` → the Prometheus text format (`exposition.rs`): requests by interface
//!   and result code with their latency (`crate::metrics`), and per shard the engine's
//!   requests, rated events, journal fsync latency, queue depth, open reservations and
//!   state (`Engine::metrics`), Diameter peers connected and lost (`diameter/peers.rs`),
//!   then whatever the [`MetricsSource`]s given add (the BSS
//!   store's queues, alarms). The names are listed in the crate README.
//!
//! It holds no secret and changes nothing, and listens on loopback by default.

mod exposition;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tollgate_engine::Engine;

pub use exposition::{Exposition, Kind, CONTENT_TYPE};

use crate::AdapterError;

/// Figures the admin server reads from elsewhere at each scrape (the BSS store's queues,
/// the alarms): each source writes its own metric families.
pub trait MetricsSource: Send + Sync {
    fn write<'a>(&'a self, page: &'a mut Exposition) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// A dependency's state as `/health/ready` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dependency {
    /// What it is: `bss-store`, `activation-gateway/HOST:PORT`, `diameter-peer/HOST`.
    pub name: String,
    /// `up` or `down`.
    pub state: &'static str,
    /// Whether charging needs it: down makes the server unavailable (503).
    pub required: bool,
    /// Why it is down (or what was last seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Dependency {
    /// A dependency that is up.
    pub fn up(name: impl Into<String>, required: bool) -> Dependency {
        Dependency { name: name.into(), state: "up", required, detail: None }
    }

    /// A dependency that is down, and why.
    pub fn down(name: impl Into<String>, required: bool, why: impl Into<String>) -> Dependency {
        Dependency { name: name.into(), state: "down", required, detail: Some(why.into()) }
    }
}

/// Dependencies the readiness check asks about at each probe (each answers quickly: a
/// probe waits for them).
pub trait HealthSource: Send + Sync {
    fn check<'a>(&'a self) -> Pin<Box<dyn Future<Output = Vec<Dependency>> + Send + 'a>>;
}

struct Admin {
    engine: Arc<Engine>,
    sources: Vec<Arc<dyn MetricsSource>>,
    health: Vec<Arc<dyn HealthSource>>,
}

/// The router with the engine's and the interfaces' metrics only.
pub fn router(engine: Arc<Engine>) -> Router {
    router_with(engine, Vec::new())
}

/// The router, with `sources` adding to `/metrics`.
pub fn router_with(engine: Arc<Engine>, sources: Vec<Arc<dyn MetricsSource>>) -> Router {
    router_with_health(engine, sources, Vec::new())
}

/// The router, with `sources` adding to `/metrics` and `health` to `/health/ready`.
pub fn router_with_health(
    engine: Arc<Engine>,
    sources: Vec<Arc<dyn MetricsSource>>,
    health: Vec<Arc<dyn HealthSource>>,
) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(Admin { engine, sources, health }))
}

async fn live() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "up"}))
}

async fn ready(State(admin): State<Arc<Admin>>) -> Response {
    let shards = admin.engine.health();
    let serving = shards.iter().all(|s| s.state == "serving");
    // The Diameter peers that ever connected: a lost one is the network's problem, not
    // this server's, so it degrades without making the server unavailable.
    // One that left in order (Disconnect-Peer-Request) is no dependency any more.
    let mut dependencies: Vec<Dependency> = crate::diameter::peers::peers()
        .into_iter()
        .filter_map(|peer| {
            let name = format!("diameter-peer/{}", peer.origin_host);
            match (peer.connections, peer.lost) {
                (0, Some(why)) => Some(Dependency::down(name, false, why)),
                (0, None) => None,
                _ => Some(Dependency::up(name, false)),
            }
        })
        .collect();
    for source in &admin.health {
        dependencies.extend(source.check().await);
    }
    let required_down = dependencies.iter().any(|d| d.required && d.state != "up");
    let any_down = dependencies.iter().any(|d| d.state != "up");
    let (status, word) = if !serving || required_down {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else if any_down {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ready")
    };
    json(status, &serde_json::json!({"status": word, "shards": shards, "dependencies": dependencies}))
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    let mut page = Exposition::default();
    write_interfaces(&mut page);
    write_engine(&mut page, &admin.engine);
    for source in &admin.sources {
        source.write(&mut page).await;
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], page.finish()).into_response()
}

fn write_interfaces(page: &mut Exposition) {
    let interfaces = crate::metrics::interfaces().map(|interface| interface.snapshot());
    page.family(
        "tollgate_requests_total",
        Kind::Counter,
        "Requests answered, by interface and result code (Diameter: the CCA's Result-Code; nchf: the HTTP status; grpc: the status code).",
    );
    for interface in &interfaces {
        for (code, count) in &interface.requests {
            page.sample("tollgate_requests_total", &[("interface", interface.name), ("code", code)], *count);
        }
    }
    let peers = crate::diameter::peers::peers();
    page.family(
        "tollgate_diameter_peers",
        Kind::Gauge,
        "Diameter peers (by Origin-Host) connected, and lost: gone without a Disconnect-Peer-Request and not back.",
    );
    let connected = peers.iter().filter(|peer| peer.connections > 0).count() as u64;
    let lost = peers.iter().filter(|peer| peer.connections == 0).count() as u64;
    page.sample("tollgate_diameter_peers", &[("state", "connected")], connected);
    page.sample("tollgate_diameter_peers", &[("state", "lost")], lost);
    page.family(
        "tollgate_request_duration_seconds",
        Kind::Histogram,
        "Time from a request's arrival (parsed) to its answer, by interface.",
    );
    for interface in &interfaces {
        page.histogram("tollgate_request_duration_seconds", &[("interface", interface.name)], &interface.latency);
    }
}

/// A per-shard family: name, type, help, and how to read it from a shard's figures.
type ShardFigure = (&'static str, Kind, &'static str, fn(&tollgate_engine::metrics::ShardMetricsView) -> u64);

fn write_engine(page: &mut Exposition, engine: &Engine) {
    let shards = engine.metrics();
    let labels: Vec<String> = shards.iter().map(|shard| shard.shard.to_string()).collect();
    let counters: [ShardFigure; 8] = [
        (
            "tollgate_shard_up",
            Kind::Gauge,
            "1 while the shard serves, 0 while it refuses requests after a journal failure.",
            |s| u64::from(s.serving),
        ),
        ("tollgate_engine_requests_total", Kind::Counter, "Requests the shard decided (online path).", |s| s.requests),
        ("tollgate_rated_events_total", Kind::Counter, "Rated events charged (online usage and bulk records).", |s| {
            s.rated_events
        }),
        (
            "tollgate_unrated_events_total",
            Kind::Counter,
            "Usage answered rating_failed (online requests and grants, bulk records).",
            |s| s.unrated_events,
        ),
        ("tollgate_engine_queue_depth", Kind::Gauge, "Messages waiting in the shard's request channel.", |s| {
            s.queue_depth
        }),
        ("tollgate_open_reservations", Kind::Gauge, "Reservations open after the shard's last pass.", |s| {
            s.open_reservations
        }),
        ("tollgate_journal_failures_total", Kind::Counter, "Journal write or sync failures.", |s| s.journal_failures),
        ("tollgate_refused_requests_total", Kind::Counter, "Requests refused while the shard was failed.", |s| {
            s.refused
        }),
    ];
    for (name, kind, help, value) in counters {
        page.family(name, kind, help);
        for (shard, label) in shards.iter().zip(&labels) {
            page.sample(name, &[("shard", label)], value(shard));
        }
    }
    page.family(
        "tollgate_journal_fsync_duration_seconds",
        Kind::Histogram,
        "Time a journal sync (fdatasync) took, by shard.",
    );
    for (shard, label) in shards.iter().zip(&labels) {
        page.histogram("tollgate_journal_fsync_duration_seconds", &[("shard", label)], &shard.fsync);
    }
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
