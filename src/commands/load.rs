//! `tollgate load diameter`: drives a running server over loopback with concurrent
//! credit-control sessions (CCR-I, CCR-U…, CCR-T over rating group 30), bounded in count
//! and time, and prints throughput, latency percentiles (HdrHistogram) and errors.
//! Subscribers are `49170NNNNNNNN` for N in 1..=--subscribers, as `tollgate serve
//! --demo-subscribers` and `tollgate demo` create them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};
use tollgate_oss_adapters::diameter::codec::{frame, FLAG_PROXIABLE, FLAG_REQUEST};
use tollgate_oss_adapters::diameter::dictionary::code;
use tollgate_oss_adapters::diameter::{Avp, Frame, Message};

#[derive(Debug, Subcommand)]
pub(crate) enum LoadCommand {
    /// Diameter Gy credit-control sessions.
    Diameter(DiameterLoad),
    /// Nchf_ConvergedCharging sessions over HTTP/2 (create, updates, release).
    Nchf(NchfLoad),
    /// gRPC debits (tollgate.v1.Charging/Debit).
    Grpc(GrpcLoad),
    /// GETs on the management API (TMF paths), over HTTP/1.1 keep-alive connections.
    Api(super::load_bss::ApiLoad),
    /// Product orders placed on the management API and followed until final.
    Orders(super::load_bss::OrdersLoad),
}

/// How much load, shared by every protocol.
#[derive(Debug, Clone, Args)]
pub(crate) struct Shape {
    /// Connections to open.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Concurrent sessions (or callers) in all.
    #[arg(long, default_value_t = 256)]
    sessions: usize,
    /// Subscribers to spread the sessions over.
    #[arg(long, default_value_t = 10_000)]
    subscribers: u64,
    /// Stop after this many seconds…
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// …or after this many requests, whichever comes first.
    #[arg(long, default_value_t = 10_000_000)]
    requests: u64,
    /// Threads of the load generator. It shares the machine with the server it
    /// measures: every thread it adds competes with the server's.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// Tells this run's session ids and references from an earlier run's against the same
/// server (otherwise its requests would be retransmissions, answered from the window).
fn run_nonce() -> u32 {
    static NONCE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *NONCE.get_or_init(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        (nanos as u32) ^ std::process::id().rotate_left(16)
    })
}

impl Shape {
    fn check(&self, target: SocketAddr) -> anyhow::Result<()> {
        loopback(target)?;
        if self.connections == 0 || self.sessions == 0 || self.subscribers == 0 || self.threads == 0 {
            bail!("--connections, --sessions, --subscribers and --threads must be at least 1");
        }
        Ok(())
    }

    fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread().worker_threads(self.threads).enable_all().build()
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct NchfLoad {
    /// The server to drive (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    target: SocketAddr,
    #[command(flatten)]
    shape: Shape,
    /// Updates per session between its create and release requests.
    #[arg(long, default_value_t = 2)]
    updates: u32,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct GrpcLoad {
    /// The server to drive (loopback only).
    #[arg(long, default_value = "127.0.0.1:50051")]
    target: SocketAddr,
    /// File holding the bearer token (as `tollgate serve` writes it).
    #[arg(long, default_value = "tollgate-data/grpc.token")]
    token_file: std::path::PathBuf,
    #[command(flatten)]
    shape: Shape,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DiameterLoad {
    /// The server to drive (loopback only).
    #[arg(long, default_value = "127.0.0.1:3868")]
    target: SocketAddr,
    #[command(flatten)]
    shape: Shape,
    /// Updates per session between its initial and termination requests.
    #[arg(long, default_value_t = 2)]
    updates: u32,
}

type Pending = Arc<Mutex<std::collections::HashMap<u32, oneshot::Sender<Message>>>>;

struct Connection {
    outbox: mpsc::Sender<Bytes>,
    pending: Pending,
    next_hop: std::sync::atomic::AtomicU32,
}

impl Connection {
    async fn request(&self, command: u32, application: u32, avps: Vec<Avp>) -> anyhow::Result<Message> {
        let hop = self.next_hop.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let message = Message {
            flags: FLAG_REQUEST | FLAG_PROXIABLE,
            command,
            application,
            hop_by_hop: hop,
            end_to_end: hop,
            avps,
        };
        let (sender, receiver) = oneshot::channel();
        self.pending.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(hop, sender);
        self.outbox.send(message.encode()).await.context("connection closed")?;
        receiver.await.context("connection closed before the answer")
    }
}

async fn connect(target: SocketAddr, index: usize) -> anyhow::Result<Arc<Connection>> {
    loopback(target)?;
    let stream = tokio::net::TcpStream::connect(target).await.with_context(|| format!("connecting to {target}"))?;
    stream.set_nodelay(true)?;
    let (mut reader, writer) = stream.into_split();
    let (outbox, _writer) = tollgate_oss_adapters::diameter::server::spawn_writer(writer, 4096);
    let pending: Pending = Arc::default();
    let dispatch = Arc::clone(&pending);
    tokio::spawn(async move {
        let mut buffer = BytesMut::with_capacity(1 << 16);
        loop {
            while let Ok(Frame::Message(length)) = frame(&buffer) {
                let bytes = buffer.split_to(length).freeze();
                if let Ok(message) = Message::decode(bytes) {
                    let waiter = dispatch.lock().ok().and_then(|mut p| p.remove(&message.hop_by_hop));
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(message);
                    }
                }
            }
            match reader.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if let Ok(mut pending) = dispatch.lock() {
            pending.clear();
        }
    });
    let connection = Arc::new(Connection { outbox, pending, next_hop: std::sync::atomic::AtomicU32::new(1) });
    let origin = format!("load{index}.load.test");
    let cea = connection
        .request(
            257,
            0,
            vec![
                Avp::utf8(code::ORIGIN_HOST, 0, &origin),
                Avp::utf8(code::ORIGIN_REALM, 0, "load.test"),
                Avp::new(code::HOST_IP_ADDRESS, 0, vec![0, 1, 127, 0, 0, 1]),
                Avp::u32(code::VENDOR_ID, 0, 0),
                Avp::utf8(code::PRODUCT_NAME, 0, "tollgate-load"),
                Avp::u32(code::AUTH_APPLICATION_ID, 0, 4),
            ],
        )
        .await?;
    let result = cea.avp(code::RESULT_CODE, 0).and_then(Avp::as_u32);
    if result != Some(2001) {
        bail!("capabilities exchange refused: Result-Code {result:?}");
    }
    Ok(connection)
}

fn ccr(
    session: &str,
    request_type: u32,
    number: u32,
    msisdn: &str,
    requested: Option<u64>,
    used: Option<u64>,
) -> Vec<Avp> {
    let mut mscc = vec![Avp::u32(code::RATING_GROUP, 0, 30)];
    if let Some(units) = requested {
        mscc.push(Avp::grouped(code::REQUESTED_SERVICE_UNIT, 0, &[Avp::u64(code::CC_TOTAL_OCTETS, 0, units)]));
    }
    if let Some(units) = used {
        mscc.push(Avp::grouped(code::USED_SERVICE_UNIT, 0, &[Avp::u64(code::CC_TOTAL_OCTETS, 0, units)]));
    }
    vec![
        Avp::utf8(code::SESSION_ID, 0, session),
        Avp::utf8(code::ORIGIN_HOST, 0, "load.load.test"),
        Avp::utf8(code::ORIGIN_REALM, 0, "load.test"),
        Avp::utf8(code::DESTINATION_REALM, 0, "local"),
        Avp::u32(code::AUTH_APPLICATION_ID, 0, 4),
        Avp::utf8(code::SERVICE_CONTEXT_ID, 0, "32251@3gpp.org"),
        Avp::u32(code::CC_REQUEST_TYPE, 0, request_type),
        Avp::u32(code::CC_REQUEST_NUMBER, 0, number),
        Avp::grouped(
            code::SUBSCRIPTION_ID,
            0,
            &[Avp::u32(code::SUBSCRIPTION_ID_TYPE, 0, 0), Avp::utf8(code::SUBSCRIPTION_ID_DATA, 0, msisdn)],
        ),
        Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0, &mscc),
    ]
}

pub(super) struct Tally {
    pub(super) latency: Histogram<u64>,
    pub(super) results: BTreeMap<u32, u64>,
    pub(super) failures: u64,
}

impl Tally {
    pub(super) fn new() -> Tally {
        Tally { latency: histogram(), results: BTreeMap::new(), failures: 0 }
    }
}

pub(crate) fn run(command: LoadCommand) -> anyhow::Result<ExitCode> {
    match command {
        LoadCommand::Diameter(args) => diameter(args),
        LoadCommand::Nchf(args) => nchf(args),
        LoadCommand::Grpc(args) => grpc(args),
        LoadCommand::Api(args) => super::load_bss::api(args),
        LoadCommand::Orders(args) => super::load_bss::orders(args),
    }
}

pub(super) fn loopback(target: SocketAddr) -> anyhow::Result<()> {
    if !target.ip().is_loopback() {
        bail!("--target must be a loopback address: the load generator only drives this machine");
    }
    Ok(())
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits: valid bounds, so this cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Takes one request from the shared budget; false when it is spent.
pub(super) fn take(budget: &std::sync::atomic::AtomicU64) -> bool {
    budget
        .fetch_update(std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed, |b| b.checked_sub(1))
        .is_ok()
}

/// Waits for every load task and prints throughput, latency percentiles and result codes.
async fn finish(
    kind: &str,
    unit: &str,
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
    started: Instant,
    shape: &Shape,
) -> anyhow::Result<ExitCode> {
    let mut tallies = Vec::with_capacity(tasks.len());
    for task in tasks {
        tallies.push(task.await?);
    }
    Ok(report(kind, unit, tallies, started.elapsed(), shape.connections, shape.sessions))
}

pub(super) fn report(
    kind: &str,
    unit: &str,
    tallies: Vec<Tally>,
    elapsed: Duration,
    connections: usize,
    sessions: usize,
) -> ExitCode {
    let mut latency = histogram();
    let mut results: BTreeMap<u32, u64> = BTreeMap::new();
    let mut failures = 0;
    for tally in tallies {
        latency.add(&tally.latency).ok();
        for (code, count) in tally.results {
            *results.entry(code).or_default() += count;
        }
        failures += tally.failures;
    }
    let answered: u64 = results.values().sum();
    println!(
        "{kind} load: {answered} answers in {elapsed:.2?} over {connections} connections, {sessions} sessions: {} {unit}/s",
        u128::from(answered) * 1000 / elapsed.as_millis().max(1)
    );
    println!(
        "latency µs: p50 {}  p99 {}  p99.9 {}  max {}",
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.99),
        latency.value_at_quantile(0.999),
        latency.max()
    );
    let codes: Vec<String> = results.iter().map(|(code, count)| format!("{code}: {count}")).collect();
    println!("result codes: {}; transport failures: {failures}", codes.join(", "));
    if failures == 0 && answered > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn nchf(args: NchfLoad) -> anyhow::Result<ExitCode> {
    use http_body_util::{BodyExt, Full};
    args.shape.check(args.target)?;
    let runtime = args.shape.runtime()?;
    runtime.block_on(async move {
        let mut senders = Vec::new();
        for _ in 0..args.shape.connections {
            let stream = tokio::net::TcpStream::connect(args.target).await.with_context(|| format!("connecting to {}", args.target))?;
            stream.set_nodelay(true)?;
            let (sender, connection) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            senders.push(sender);
        }
        let deadline = Instant::now() + Duration::from_secs(args.shape.seconds);
        let budget = Arc::new(std::sync::atomic::AtomicU64::new(args.shape.requests));
        let started = Instant::now();
        let authority = args.target.to_string();
        let mut tasks = Vec::new();
        for worker in 0..args.shape.sessions {
            let mut sender = senders[worker % senders.len()].clone();
            let (budget, args, authority) = (Arc::clone(&budget), args.clone(), authority.clone());
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::new();
                let mut round = 0u64;
                'sessions: while Instant::now() < deadline {
                    round += 1;
                    let subscriber = 1 + (worker as u64 * 7919 + round * 104_729) % args.shape.subscribers;
                    let mut path = "/nchf-convergedcharging/v3/chargingdata".to_owned();
                    for number in 0..args.updates + 2 {
                        if !take(&budget) {
                            break 'sessions;
                        }
                        let last = number == args.updates + 1;
                        let mut usage = serde_json::json!({"ratingGroup": 30});
                        if !last {
                            usage["requestedUnit"] = serde_json::json!({"totalVolume": 1 << 20});
                        }
                        if number > 0 {
                            usage["usedUnitContainer"] = serde_json::json!([{"localSequenceNumber": number, "totalVolume": 1 << 19}]);
                        }
                        let body = serde_json::json!({
                            "subscriberIdentifier": format!("msisdn-49170{subscriber:08}"),
                            "nfConsumerIdentification": {"nodeFunctionality": "SMF", "nFName": format!("{:08x}-0000-4000-8000-{worker:012x}", run_nonce())},
                            "invocationTimeStamp": format!("2026-11-23T10:00:{:02}Z", round % 60),
                            "invocationSequenceNumber": number,
                            "multipleUnitUsage": [usage]
                        });
                        let uri = match number {
                            0 => path.clone(),
                            _ if last => format!("{path}/release"),
                            _ => format!("{path}/update"),
                        };
                        let request = hyper::Request::post(format!("http://{authority}{uri}"))
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body.to_string())));
                        let Ok(request) = request else { break 'sessions };
                        let sent = Instant::now();
                        match sender.send_request(request).await {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
                                let _ = response.into_body().collect().await;
                                let _ = tally.latency.record(sent.elapsed().as_micros().max(1) as u64);
                                *tally.results.entry(u32::from(status)).or_default() += 1;
                                if number == 0 {
                                    match location.and_then(|l| l.find("/nchf-").map(|at| l[at..].to_owned())) {
                                        Some(found) if status == 201 => path = found,
                                        _ => continue 'sessions,
                                    }
                                }
                            }
                            Err(_) => {
                                tally.failures += 1;
                                break 'sessions;
                            }
                        }
                    }
                }
                tally
            }));
        }
        finish("nchf", "req", tasks, started, &args.shape).await
    })
}

fn grpc(args: GrpcLoad) -> anyhow::Result<ExitCode> {
    use tollgate_oss_adapters::grpc::proto::{self, charging_client::ChargingClient, subscriber::Id};
    args.shape.check(args.target)?;
    let token =
        std::fs::read_to_string(&args.token_file).with_context(|| format!("reading {}", args.token_file.display()))?;
    let header: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
        format!("Bearer {}", token.trim()).parse().context("the token is not valid header text")?;
    let runtime = args.shape.runtime()?;
    runtime.block_on(async move {
        let mut clients = Vec::new();
        for _ in 0..args.shape.connections {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", args.target))?
                .tcp_nodelay(true)
                .connect()
                .await?;
            clients.push(ChargingClient::new(channel));
        }
        let deadline = Instant::now() + Duration::from_secs(args.shape.seconds);
        let budget = Arc::new(std::sync::atomic::AtomicU64::new(args.shape.requests));
        let started = Instant::now();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let mut tasks = Vec::new();
        for worker in 0..args.shape.sessions {
            let mut client = clients[worker % clients.len()].clone();
            let (budget, header, subscribers) = (Arc::clone(&budget), header.clone(), args.shape.subscribers);
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::new();
                let mut round = 0u64;
                while Instant::now() < deadline && take(&budget) {
                    round += 1;
                    let subscriber = 1 + (worker as u64 * 7919 + round * 104_729) % subscribers;
                    let usage = proto::UsageRequest {
                        key: format!("load;{worker};{round};{now}"),
                        subscriber: Some(proto::Subscriber { id: Some(Id::Msisdn(format!("49170{subscriber:08}"))) }),
                        service: "sms".into(),
                        units: 1,
                        start_utc_seconds: now,
                        ..Default::default()
                    };
                    let mut request = tonic::Request::new(usage);
                    request.metadata_mut().insert("authorization", header.clone());
                    let sent = Instant::now();
                    match client.debit(request).await {
                        Ok(reply) => {
                            let _ = tally.latency.record(sent.elapsed().as_micros().max(1) as u64);
                            *tally.results.entry(reply.into_inner().outcome as u32).or_default() += 1;
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
        finish("grpc", "req", tasks, started, &args.shape).await
    })
}

fn diameter(args: DiameterLoad) -> anyhow::Result<ExitCode> {
    args.shape.check(args.target)?;
    let runtime = args.shape.runtime()?;
    runtime.block_on(async move {
        let mut connections = Vec::with_capacity(args.shape.connections);
        for index in 0..args.shape.connections {
            connections.push(connect(args.target, index).await?);
        }
        let deadline = Instant::now() + Duration::from_secs(args.shape.seconds);
        let budget = Arc::new(std::sync::atomic::AtomicU64::new(args.shape.requests));
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(args.shape.sessions);
        for worker in 0..args.shape.sessions {
            let connection = Arc::clone(&connections[worker % connections.len()]);
            let (budget, args) = (Arc::clone(&budget), args.clone());
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::new();
                let mut round = 0u64;
                'sessions: while Instant::now() < deadline {
                    round += 1;
                    let subscriber = 1 + (worker as u64 * 7919 + round * 104_729) % args.shape.subscribers;
                    let msisdn = format!("49170{subscriber:08}");
                    let session = format!("load-{:08x};{worker};{round}", run_nonce());
                    let steps = args.updates + 2;
                    for number in 0..steps {
                        if !take(&budget) {
                            break 'sessions;
                        }
                        let (kind, requested, used) = match number {
                            0 => (1, Some(1 << 20), None),
                            n if n == steps - 1 => (3, None, Some(1 << 19)),
                            _ => (2, Some(1 << 20), Some(1 << 20)),
                        };
                        let sent = Instant::now();
                        match connection.request(272, 4, ccr(&session, kind, number, &msisdn, requested, used)).await {
                            Ok(answer) => {
                                let micros = sent.elapsed().as_micros().max(1) as u64;
                                let _ = tally.latency.record(micros);
                                let code = answer.avp(code::RESULT_CODE, 0).and_then(Avp::as_u32).unwrap_or(0);
                                *tally.results.entry(code).or_default() += 1;
                            }
                            Err(_) => {
                                tally.failures += 1;
                                break 'sessions;
                            }
                        }
                    }
                }
                tally
            }));
        }
        finish("diameter", "CCR", tasks, started, &args.shape).await
    })
}
