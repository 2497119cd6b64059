//! `tollgate load api` and `tollgate load orders`: load on the management API over
//! loopback, with the same report as the network loads (throughput, latency percentiles,
//! answers by status). `api` keeps `--sessions` HTTP/1.1 keep-alive connections busy with
//! GETs of the given paths, round robin; `orders` places `--orders` product orders from a
//! JSON template, at most `--concurrency` in flight, and follows each until it is final:
//! orders completed per second, and the time from the POST to the moment the order was
//! seen completed, which bounds order-to-chargeable from above (the engine subscription
//! exists before the order completes). It learns that as an operator's OSS would: from
//! the order's `ProductOrderStateChangeEvent`, delivered by the API's hub to a listener
//! this command registers for the run (a callback server on loopback), or, with
//! `--follow poll`, by reading each order back every `--poll-ms` (64 clients polling every
//! 10 ms are most of the server's SQL: the run measures the polling as much as the orders).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};

use super::load::{loopback, report, take, Tally};

/// The largest answer body read; the rest of a longer one is drained unread.
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Clone, Args)]
pub(crate) struct ApiLoad {
    /// The management API to drive (loopback only).
    #[arg(long, default_value = "127.0.0.1:8081")]
    target: SocketAddr,
    /// File holding a bearer token (`tollgate token create` prints one).
    #[arg(long)]
    token_file: PathBuf,
    /// A path to GET (with its query); repeat for several, taken round robin.
    #[arg(long = "path", required = true)]
    paths: Vec<String>,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    sessions: usize,
    /// Stop after this many seconds…
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// …or after this many requests, whichever comes first.
    #[arg(long, default_value_t = 10_000_000)]
    requests: u64,
    /// Threads of the load generator (it shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct OrdersLoad {
    /// The management API to drive (loopback only).
    #[arg(long, default_value = "127.0.0.1:8081")]
    target: SocketAddr,
    /// File holding a bearer token of a role that may order (admin, care).
    #[arg(long)]
    token_file: PathBuf,
    /// The product order to place, as a TMF622 `ProductOrder_Create` JSON file; each
    /// order is placed as it is (a new line takes the next number and SIM).
    #[arg(long)]
    order_file: PathBuf,
    /// Orders to place.
    #[arg(long, default_value_t = 1000)]
    orders: u64,
    /// Orders in flight at once (placed and not yet final).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How an order is followed to its final state: `hub` (its state change events, to a
    /// listener registered for the run) or `poll` (read back every `--poll-ms`).
    #[arg(long, value_enum, default_value_t = Follow::Hub)]
    follow: Follow,
    /// How often an order in flight is read back (`--follow poll`).
    #[arg(long, default_value_t = 10)]
    poll_ms: u64,
    /// Give up on an order after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_seconds: u64,
    /// Threads of the load generator (it shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// How `load orders` learns that an order is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Follow {
    Hub,
    Poll,
}

/// The product ordering API's root.
const ORDERING: &str = "/tmf-api/productOrderingManagement/v4";

/// Orders' final states as the hub tells them: the tasks waiting by order id, and the
/// states that arrived before their task asked (an order can complete before its POST's
/// answer is read).
#[derive(Default)]
struct Finals {
    waiting: std::collections::HashMap<String, tokio::sync::oneshot::Sender<u32>>,
    arrived: std::collections::HashMap<String, u32>,
}

type SharedFinals = Arc<std::sync::Mutex<Finals>>;

/// The listener's callback: a product order event whose order is final wakes its task.
async fn hub_callback(
    axum::extract::State(finals): axum::extract::State<SharedFinals>,
    body: Bytes,
) -> axum::http::StatusCode {
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return axum::http::StatusCode::BAD_REQUEST;
    };
    let order = &event["event"]["productOrder"];
    let (Some(id), Some(code)) = (order["id"].as_str(), order["state"].as_str().and_then(state_code)) else {
        return axum::http::StatusCode::NO_CONTENT;
    };
    let mut finals = finals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match finals.waiting.remove(id) {
        Some(task) => {
            let _ = task.send(code);
        }
        None => {
            finals.arrived.insert(id.to_owned(), code);
        }
    }
    axum::http::StatusCode::NO_CONTENT
}

/// Starts the callback server on loopback and registers it on the ordering API's hub for
/// state change events: the listener's id (deleted after the run) and the shared states.
async fn follow_by_hub(target: SocketAddr, token: &str) -> anyhow::Result<(String, SharedFinals)> {
    let finals = SharedFinals::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("the hub callback's listener")?;
    let address = listener.local_addr()?;
    let router =
        axum::Router::new().route("/events", axum::routing::post(hub_callback)).with_state(Arc::clone(&finals));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut client = Client::connect(target, token).await?;
    let body = serde_json::json!({"callback": format!("http://{address}/events"),
        "query": "eventType=ProductOrderStateChangeEvent"});
    let (status, answer) = client.send("POST", &format!("{ORDERING}/hub"), Some(Bytes::from(body.to_string()))).await?;
    if status != 201 {
        bail!("registering a hub listener: {status} {}", String::from_utf8_lossy(&answer));
    }
    let registered: serde_json::Value = serde_json::from_slice(&answer)?;
    let id = registered["id"].as_str().context("the hub listener has no id")?.to_owned();
    Ok((id, finals))
}

/// One HTTP/1.1 keep-alive connection to the API.
struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
    authorization: String,
}

impl Client {
    async fn connect(target: SocketAddr, token: &str) -> anyhow::Result<Client> {
        let stream = tokio::net::TcpStream::connect(target).await.with_context(|| format!("connecting to {target}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Client { sender, authority: target.to_string(), authorization: format!("Bearer {token}") })
    }

    /// Sends one request; its status and (at most [`MAX_BODY`] bytes of) its body.
    async fn send(&mut self, method: &str, path: &str, body: Option<Bytes>) -> anyhow::Result<(u16, Bytes)> {
        self.sender.ready().await?;
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.authority))
            .header("host", &self.authority)
            .header("authorization", &self.authorization);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(Full::new(body.unwrap_or_default()))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut read = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if read.len() + data.len() <= MAX_BODY {
                    read.extend_from_slice(&data);
                }
            }
        }
        Ok((status, Bytes::from(read)))
    }
}

fn token(path: &PathBuf) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--token-file {}", path.display()))?;
    let token = text.trim().to_owned();
    if token.is_empty() || token.len() > 512 {
        bail!("--token-file {}: no token in it", path.display());
    }
    Ok(token)
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?)
}

pub(crate) fn api(args: ApiLoad) -> anyhow::Result<ExitCode> {
    loopback(args.target)?;
    if args.sessions == 0 {
        bail!("--sessions must be at least 1");
    }
    let token = token(&args.token_file)?;
    let runtime = runtime(args.threads)?;
    runtime.block_on(async move {
        let mut clients = Vec::with_capacity(args.sessions);
        for _ in 0..args.sessions {
            clients.push(Client::connect(args.target, &token).await?);
        }
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let budget = Arc::new(AtomicU64::new(args.requests));
        let paths: Arc<[String]> = args.paths.clone().into();
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(clients.len());
        for (worker, mut client) in clients.into_iter().enumerate() {
            let (budget, paths) = (Arc::clone(&budget), Arc::clone(&paths));
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::new();
                let mut next = worker;
                while Instant::now() < deadline && take(&budget) {
                    let path = &paths[next % paths.len()];
                    next += 1;
                    let sent = Instant::now();
                    match client.send("GET", path, None).await {
                        Ok((status, _)) => {
                            let _ = tally.latency.record(sent.elapsed().as_micros().max(1) as u64);
                            *tally.results.entry(u32::from(status)).or_default() += 1;
                        }
                        Err(_) => {
                            tally.failures += 1;
                            break;
                        }
                    }
                }
                tally
            }));
        }
        let mut tallies = Vec::with_capacity(tasks.len());
        for task in tasks {
            tallies.push(task.await?);
        }
        Ok(report("api", "req", tallies, started.elapsed(), args.sessions, args.sessions))
    })
}

pub(crate) fn orders(args: OrdersLoad) -> anyhow::Result<ExitCode> {
    loopback(args.target)?;
    if args.concurrency == 0 || args.orders == 0 {
        bail!("--orders and --concurrency must be at least 1");
    }
    let token = token(&args.token_file)?;
    let template =
        std::fs::read(&args.order_file).with_context(|| format!("--order-file {}", args.order_file.display()))?;
    serde_json::from_slice::<serde_json::Value>(&template)
        .with_context(|| format!("--order-file {}: not JSON", args.order_file.display()))?;
    let template = Bytes::from(template);
    let runtime = runtime(args.threads)?;
    runtime.block_on(async move {
        let hub = match args.follow {
            Follow::Hub => Some(follow_by_hub(args.target, &token).await?),
            Follow::Poll => None,
        };
        let budget = Arc::new(AtomicU64::new(args.orders));
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(args.concurrency);
        for _ in 0..args.concurrency {
            let mut client = Client::connect(args.target, &token).await?;
            let (budget, template) = (Arc::clone(&budget), template.clone());
            let timeout = Duration::from_secs(args.timeout_seconds);
            let follow = match &hub {
                Some((_, finals)) => Following::Hub(Arc::clone(finals)),
                None => Following::Poll(Duration::from_millis(args.poll_ms)),
            };
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::new();
                while take(&budget) {
                    let placed = Instant::now();
                    let (state, _) = match place_and_follow(&mut client, &template, &follow, placed + timeout).await {
                        Ok(done) => done,
                        Err(_) => {
                            tally.failures += 1;
                            continue;
                        }
                    };
                    let _ = tally.latency.record(placed.elapsed().as_micros().max(1) as u64);
                    *tally.results.entry(state).or_default() += 1;
                }
                tally
            }));
        }
        let mut tallies = Vec::with_capacity(tasks.len());
        for task in tasks {
            tallies.push(task.await?);
        }
        let elapsed = started.elapsed();
        let code = report("orders", "order", tallies, elapsed, args.concurrency, args.concurrency);
        let seen = match args.follow {
            Follow::Hub => "its final state's event received",
            Follow::Poll => "its final state read back",
        };
        println!("result codes above: 1 completed, 2 failed, 3 partial, 4 cancelled, 5 not final in time; latency: POST to {seen}");
        if let Some((id, _)) = hub {
            let mut client = Client::connect(args.target, &token).await?;
            let (status, _) = client.send("DELETE", &format!("{ORDERING}/hub/{id}"), None).await?;
            if status != 204 {
                eprintln!("the run's hub listener {id} was not deleted: {status}");
            }
        }
        Ok(code)
    })
}

/// Final states as the report counts them.
fn state_code(state: &str) -> Option<u32> {
    match state {
        "completed" => Some(1),
        "failed" => Some(2),
        "partial" => Some(3),
        "cancelled" => Some(4),
        _ => None,
    }
}

/// How one task follows its orders.
enum Following {
    Hub(SharedFinals),
    Poll(Duration),
}

/// Places one order and follows it until it is final: (its state's code, its id).
async fn place_and_follow(
    client: &mut Client,
    template: &Bytes,
    follow: &Following,
    deadline: Instant,
) -> anyhow::Result<(u32, String)> {
    let (status, body) = client.send("POST", &format!("{ORDERING}/productOrder"), Some(template.clone())).await?;
    if status != 201 {
        bail!("placing an order: {status} {}", String::from_utf8_lossy(&body));
    }
    let placed: serde_json::Value = serde_json::from_slice(&body)?;
    let id = placed["id"].as_str().context("the order has no id")?.to_owned();
    let poll = match follow {
        Following::Hub(finals) => return Ok((wait_for_event(finals, &id, deadline).await, id)),
        Following::Poll(poll) => *poll,
    };
    let path = format!("{ORDERING}/productOrder/{id}?fields=state");
    loop {
        let (status, body) = client.send("GET", &path, None).await?;
        if status != 200 {
            bail!("reading order {id}: {status}");
        }
        let order: serde_json::Value = serde_json::from_slice(&body)?;
        if let Some(code) = order["state"].as_str().and_then(state_code) {
            return Ok((code, id));
        }
        if Instant::now() >= deadline {
            return Ok((5, id));
        }
        tokio::time::sleep(poll).await;
    }
}

/// The final state's code the hub tells for order `id`, or 5 (not final in time).
async fn wait_for_event(finals: &SharedFinals, id: &str, deadline: Instant) -> u32 {
    let receiver = {
        let mut finals = finals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(code) = finals.arrived.remove(id) {
            return code;
        }
        let (sender, receiver) = tokio::sync::oneshot::channel();
        finals.waiting.insert(id.to_owned(), sender);
        receiver
    };
    match tokio::time::timeout_at(deadline.into(), receiver).await {
        Ok(Ok(code)) => code,
        _ => {
            finals.lock().unwrap_or_else(std::sync::PoisonError::into_inner).waiting.remove(id);
            5
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_final_states_end_the_wait() {
        let finals: Vec<u32> =
            ["completed", "failed", "partial", "cancelled"].iter().filter_map(|state| state_code(state)).collect();
        assert_eq!(finals, [1, 2, 3, 4]);
        for state in ["acknowledged", "inProgress", "pending", "assessingCancellation", ""] {
            assert_eq!(state_code(state), None, "{state}");
        }
    }
}
