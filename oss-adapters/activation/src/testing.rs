//! A fake network element for tests: a real HTTP server (axum, on 127.0.0.1 with a free
//! port, optionally over TLS) that implements the gateway side of the HTTP contract. It
//! records every request, executes each request id once (a repeat answers `Completed`
//! with the first reference; the same id with another command is refused with 422), and
//! can be scripted to refuse, fail, be slow, hang or drop the connection for the next N
//! requests or for all of them. Used by this crate's tests and by the order workflow's.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

use crate::{
    ActivationRequest, ElementKind, Iccid, Imsi, Msisdn, NetworkElement, Operation, RequestId, Secret, ServiceProfile,
    SimSecrets, Subscriber,
};

/// The path commands are POSTed to.
pub const COMMAND_PATH: &str = "/activation/v1/commands";

/// What the fake does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Execute (once per request id) and answer `Completed`.
    Execute,
    /// Refuse with `status` and a body `{"state":"InError","code","reason"}`; not executed.
    /// With status 200 it is a business refusal inside a success answer.
    Refuse { status: u16, code: String, reason: String },
    /// Answer `status` with an empty body and, if given, `Retry-After`; not executed.
    Fail { status: u16, retry_after_seconds: Option<u64> },
    /// Execute, wait `delay_ms`, then answer (a client that gave up meanwhile finds the
    /// command done on its next attempt).
    Slow { delay_ms: u64 },
    /// Execute and answer 202 `InProgress`; the next request with the id finds it done.
    Accept,
    /// Answer `status` with `bytes` bytes of filler; not executed.
    Babble { status: u16, bytes: usize },
    /// Never answer; not executed.
    Hang,
    /// Close the connection without answering; not executed.
    Drop,
}

/// How many requests a scripted behaviour applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Times {
    Count(u32),
    Always,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// `X-Request-Id`.
    pub request_id: Option<String>,
    /// `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// `Authorization`, verbatim (so a test can check what was sent).
    pub authorization: Option<String>,
    /// The body, parsed (`Value::Null` when it is not JSON).
    pub command: Value,
    /// What the fake did with it.
    pub behaviour: Behaviour,
}

/// A command the fake carried out, once per request id.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    pub request_id: String,
    pub reference: String,
    pub command: Value,
}

#[derive(Debug, Default)]
struct Script {
    steps: VecDeque<(Behaviour, Times)>,
    received: Vec<Received>,
    executed: Vec<Executed>,
    by_id: HashMap<String, usize>,
    authorization: Option<String>,
}

impl Script {
    fn next(&mut self) -> Behaviour {
        let Some((behaviour, times)) = self.steps.front_mut() else { return Behaviour::Execute };
        let behaviour = behaviour.clone();
        if let Times::Count(left) = times {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.steps.pop_front();
            }
        }
        behaviour
    }
}

type Shared = Arc<Mutex<Script>>;

fn lock(script: &Shared) -> MutexGuard<'_, Script> {
    // A test that panicked while holding the lock has failed already.
    script.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Per-connection handle a handler uses to drop its connection.
#[derive(Clone)]
struct Kill(Arc<Notify>);

/// The running fake; it stops when dropped.
#[derive(Debug)]
pub struct FakeNetworkElement {
    address: SocketAddr,
    scheme: &'static str,
    script: Shared,
    connections: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl Drop for FakeNetworkElement {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeNetworkElement {
    /// Starts a plain HTTP fake.
    pub async fn start() -> std::io::Result<FakeNetworkElement> {
        FakeNetworkElement::launch(None).await
    }

    /// Starts a fake over TLS with this server configuration.
    pub async fn start_tls(config: Arc<rustls::ServerConfig>) -> std::io::Result<FakeNetworkElement> {
        FakeNetworkElement::launch(Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    async fn launch(tls: Option<tokio_rustls::TlsAcceptor>) -> std::io::Result<FakeNetworkElement> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let script = Shared::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let router = Router::new().route(COMMAND_PATH, post(command)).with_state(Arc::clone(&script));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let server = tokio::spawn(serve(listener, tls, router, Arc::clone(&connections)));
        Ok(FakeNetworkElement { address, scheme, script, connections, server })
    }

    /// The URL to configure the HTTP adapter with (`http://127.0.0.1:PORT/activation/v1/commands`;
    /// `https://localhost:PORT/…` over TLS, the name a test certificate is for).
    pub fn url(&self) -> String {
        let host = if self.scheme == "https" { "localhost" } else { "127.0.0.1" };
        format!("{}://{host}:{}{COMMAND_PATH}", self.scheme, self.address.port())
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Applies `behaviour` to the next `times` requests, after what was scripted before;
    /// once the script runs out, requests are executed.
    pub fn script(&self, behaviour: Behaviour, times: Times) {
        lock(&self.script).steps.push_back((behaviour, times));
    }

    /// Forgets what is scripted and not yet applied: from now on requests are executed
    /// (a broken gateway repaired).
    pub fn heal(&self) {
        lock(&self.script).steps.clear();
    }

    /// Requires this exact `Authorization` header; any other gets 401 (before the script).
    pub fn require_authorization(&self, value: &str) {
        lock(&self.script).authorization = Some(value.to_owned());
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.script).received.clone()
    }

    /// Every command carried out, in order, once per request id.
    pub fn executed(&self) -> Vec<Executed> {
        lock(&self.script).executed.clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    connections: Arc<AtomicUsize>,
) {
    // Dropped (with every connection task) when the fake is.
    let mut tasks = JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        connections.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        let (router, tls) = (router.clone(), tls.clone());
        tasks.spawn(async move {
            match tls {
                None => serve_connection(tcp, router).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        serve_connection(stream, router).await;
                    }
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
}

/// Serves HTTP/1.1 on one connection until the client closes it or a handler drops it.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S, router: Router) {
    let kill = Kill(Arc::new(Notify::new()));
    let service = {
        let kill = kill.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(kill.clone());
            tower_service::Service::call(&mut router.clone(), request)
        })
    };
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        () = kill.0.notified() => {}
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned)
}

async fn command(
    State(script): State<Shared>,
    Extension(kill): Extension<Kill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let command: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let request_id = header(&headers, "x-request-id");
    let behaviour = {
        let mut script = lock(&script);
        let authorized =
            script.authorization.as_ref().is_none_or(|a| header(&headers, "authorization").as_ref() == Some(a));
        let behaviour = if authorized {
            script.next()
        } else {
            Behaviour::Refuse { status: 401, code: "UNAUTHORIZED".into(), reason: "bad credentials".into() }
        };
        script.received.push(Received {
            request_id: request_id.clone(),
            idempotency_key: header(&headers, "idempotency-key"),
            authorization: header(&headers, "authorization"),
            command: command.clone(),
            behaviour: behaviour.clone(),
        });
        behaviour
    };
    // A command names its id `requestId`; a short message (`SmsGateway`) `reference`.
    let body_id = command.get("requestId").or_else(|| command.get("reference")).and_then(Value::as_str);
    let Some(id) = request_id.filter(|id| Some(id.as_str()) == body_id) else {
        let reason = "X-Request-Id missing or not the body's requestId";
        return (StatusCode::BAD_REQUEST, Json(json!({"code": "BAD_COMMAND", "reason": reason}))).into_response();
    };
    match behaviour {
        Behaviour::Execute => execute(&script, id, command, false),
        Behaviour::Accept => execute(&script, id, command, true),
        Behaviour::Slow { delay_ms } => {
            let answer = execute(&script, id, command, false);
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            answer
        }
        Behaviour::Refuse { status, code, reason } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            (status, Json(json!({"state": "InError", "code": code, "reason": reason}))).into_response()
        }
        Behaviour::Fail { status, retry_after_seconds } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            match retry_after_seconds {
                Some(seconds) => (status, [("retry-after", seconds.to_string())]).into_response(),
                None => status.into_response(),
            }
        }
        Behaviour::Babble { status, bytes } => {
            (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), "x".repeat(bytes)).into_response()
        }
        Behaviour::Hang => std::future::pending().await,
        Behaviour::Drop => {
            kill.0.notify_one();
            std::future::pending().await
        }
    }
}

/// Carries out `command` unless its id was carried out before; `accept`: answer 202.
fn execute(script: &Shared, id: String, command: Value, accept: bool) -> Response {
    let mut script = lock(script);
    if let Some(&index) = script.by_id.get(&id) {
        let first = &script.executed[index];
        if first.command != command {
            let reason = "request id reused with another command";
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"code": "ID_REUSED", "reason": reason})))
                .into_response();
        }
        let answer = json!({"id": first.reference, "state": "Completed", "alreadyDone": true});
        return (StatusCode::OK, Json(answer)).into_response();
    }
    let reference = format!("ne-{}", script.executed.len() + 1);
    let index = script.executed.len();
    script.executed.push(Executed { request_id: id.clone(), reference: reference.clone(), command });
    script.by_id.insert(id, index);
    if accept {
        (StatusCode::ACCEPTED, Json(json!({"id": reference, "state": "InProgress"}))).into_response()
    } else {
        (StatusCode::CREATED, Json(json!({"id": reference, "state": "Completed", "@type": "Monitor"}))).into_response()
    }
}

/// A directory under the system's temporary directory, removed (with its contents) when
/// dropped.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A fresh, empty directory whose name holds `name`, the process id and a counter.
    pub fn new(name: &str) -> std::io::Result<ScratchDir> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let sequence = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("tollgate-activation-{name}-{}-{sequence}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(ScratchDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A valid request for tests: subscriber 4915112345678 / 262011234567890 /
/// 89490200001234567890 on one HSS and one PCRF; `Activate` carries the profile `gold`
/// and SIM keys (Ki `000102…0f`, OPc `f0f1…ff`), `ChangeProfile` the profile `silver`.
pub fn sample_request(id: &str, operation: Operation) -> ActivationRequest {
    let subscriber = Subscriber {
        msisdn: Msisdn::new("4915112345678").expect("msisdn"),
        imsi: Imsi::new("262011234567890").expect("imsi"),
        iccid: Iccid::new("89490200001234567890").expect("iccid"),
    };
    let targets = vec![
        NetworkElement::new(ElementKind::Hss, "hss-1", "hss1.example.net:3868").expect("hss"),
        NetworkElement::new(ElementKind::Pcrf, "pcrf-1", "pcrf1.example.net:3868").expect("pcrf"),
    ];
    let profile = match operation {
        Operation::Activate => {
            Some(ServiceProfile::new("gold").and_then(|p| p.with("apn", "internet")).expect("profile"))
        }
        Operation::ChangeProfile => Some(ServiceProfile::new("silver").expect("profile")),
        _ => None,
    };
    let activate = operation == Operation::Activate;
    let request =
        ActivationRequest::new(RequestId::new(id).expect("request id"), operation, subscriber, profile, targets)
            .expect("request");
    if !activate {
        return request;
    }
    let keys = SimSecrets::new(Secret::new(SAMPLE_KI), Some(Secret::new(SAMPLE_OPC))).expect("keys");
    request.with_sim_secrets(keys).expect("keys go with activate")
}

/// The Ki of [`sample_request`]'s activations.
pub const SAMPLE_KI: &str = "000102030405060708090a0b0c0d0e0f";
/// The OPc of [`sample_request`]'s activations.
pub const SAMPLE_OPC: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
