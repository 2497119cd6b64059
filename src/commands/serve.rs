//! `tollgate serve`: the charging engine as a long-running process with its network
//! front-ends (Diameter Gy/Ro, optionally also over TLS; Nchf, optionally over TLS with
//! client certificates and NRF access tokens; gRPC; admin; with `--api-listen`, the
//! management API on the BSS store), and, whenever there is a BSS store, the outbox worker
//! that applies the BSS's recorded engine operations and the event hub's delivery worker,
//! until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tollgate_engine::fs::RealFs;
use tollgate_oss_adapters::diameter::server::{serve, serve_tls, DiameterConfig};
use tollgate_oss_adapters::nchf;
use tollgate_oss_adapters::nchf::oauth::AccessTokenVerifier;
use tollgate_oss_adapters::tls::{self, TlsFiles};

use super::engine_setup::EngineArgs;

#[derive(Debug, Clone, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// Where the Diameter server listens (TCP).
    #[arg(long, default_value = "0.0.0.0:3868")]
    diameter_listen: SocketAddr,
    /// Origin-Host of this node.
    #[arg(long, default_value = "tollgate.local")]
    origin_host: String,
    /// Origin-Realm of this node.
    #[arg(long, default_value = "local")]
    origin_realm: String,
    /// Origin-Host of a peer allowed to connect (repeatable; none: any peer).
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Where the 5G CHF (Nchf_ConvergedCharging v3, HTTP/2 and HTTP/1.1) listens.
    #[arg(long, default_value = "0.0.0.0:8080")]
    nchf_listen: SocketAddr,
    /// Nchf connections held at once; past it, new ones wait in the kernel's backlog.
    #[arg(long, default_value_t = tollgate_oss_adapters::limits::ConnectionLimits::default().max_connections)]
    nchf_max_connections: usize,
    /// Seconds an Nchf connection may move no byte before it is closed.
    #[arg(long, default_value_t = tollgate_oss_adapters::limits::ConnectionLimits::default().idle_timeout.as_secs())]
    nchf_idle_seconds: u64,
    /// apiRoot for Location headers (default: http:// or https:// and the listening address).
    #[arg(long)]
    nchf_api_root: Option<String>,
    #[command(flatten)]
    security: Box<SecurityArgs>,
    #[command(flatten)]
    diameter_limits: Box<DiameterLimitArgs>,
    /// Where the operations endpoint listens: GET /health/live, /health/ready (503
    /// while a shard has failed; `degraded` while the BSS store, the activation gateway or
    /// a Diameter peer is down) and /metrics (Prometheus text format).
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,
    /// Where the gRPC API (tollgate.v1.Charging) listens.
    #[arg(long, default_value = "127.0.0.1:50051")]
    grpc_listen: SocketAddr,
    /// File holding the gRPC bearer token; created with a random token (mode 0600) when
    /// missing. Default: DATA_DIR/grpc.token.
    #[arg(long)]
    grpc_token_file: Option<std::path::PathBuf>,
    /// Create demo subscribers 1..=N (MSISDN 49170NNNNNNNN, as `tollgate demo` does) if
    /// they do not exist yet: a ready target for `tollgate load diameter`.
    #[arg(long, default_value_t = 0)]
    demo_subscribers: u64,
    #[command(flatten)]
    api: Box<ApiArgs>,
    #[command(flatten)]
    alarms: Box<super::alarm::AlarmServeArgs>,
    #[command(flatten)]
    fraud: Box<super::fraud::FraudArgs>,
    #[command(flatten)]
    mediation: Box<super::mediate::ServeMediationArgs>,
    /// Threshold notifications' message templates (evaluated whenever there is a store).
    #[command(flatten)]
    threshold_templates: Box<super::threshold::TemplateArgs>,
    /// Threshold messages by SMS (thresholds set with `--sms`): a TOML file with an
    /// `[http]` SMS gateway (URL, credentials, timeouts, retries, TLS, as for
    /// `--activation`; oss-adapters/activation/README.md). Without it those messages wait
    /// in the outbox, retried, then failed.
    #[arg(long, value_name = "CONFIG.toml")]
    sms_gateway: Option<PathBuf>,
}

/// The management API (boxed: `ServeArgs` stays small).
#[derive(Debug, Clone, Args)]
pub(crate) struct ApiArgs {
    /// Where the management API (TMF620 catalogue, TMF629 customers, TMF666 billing
    /// accounts, TMF654 prepaid balances, TMF639 resource inventory, the event hubs, audit
    /// trail; bearer tokens from `tollgate token create`) listens. Off unless given.
    #[arg(long)]
    api_listen: Option<SocketAddr>,
    /// The BSS database: `postgres://…` or an SQLite file (default DATA_DIR/bss.sqlite3,
    /// used when --api-listen is given or the file exists). With a store, the outbox worker
    /// applies its recorded engine operations, whether or not the API is served.
    #[arg(long)]
    database: Option<String>,
    /// The invoice document template (TOML) the API renders customer bills with for
    /// `Accept: application/pdf` (the built-in one without it).
    #[arg(long)]
    invoice_template: Option<std::path::PathBuf>,
    /// The configuration of bill runs started through the API (POST
    /// /tmf-api/billing/v1/billRun): JSON, as `tollgate bill-run --config`; defaults
    /// without it.
    #[arg(long)]
    bill_run_config: Option<std::path::PathBuf>,
    /// Management API connections held at once; past it, new ones wait in the backlog.
    #[arg(long, default_value_t = 1024)]
    api_max_connections: usize,
    /// Seconds a management API connection may move no byte before it is closed.
    #[arg(long, default_value_t = 60)]
    api_idle_seconds: u64,
    /// Requests per second each API token may make on average.
    #[arg(long, default_value_t = tollgate_api::ApiConfig::default().rate_per_second,
          value_parser = clap::value_parser!(u32).range(1..))]
    api_rate: u32,
    /// Requests an API token may make at once after being idle.
    #[arg(long, default_value_t = tollgate_api::ApiConfig::default().burst,
          value_parser = clap::value_parser!(u32).range(1..))]
    api_burst: u32,
    /// Seconds an outbox worker holds a claimed engine operation before another attempt
    /// (after a crash mid-operation, say) may claim it again. Retries are safe (the engine
    /// deduplicates by key), so a short lease only costs repeated calls.
    #[arg(long, default_value_t = tollgate_store::RetryPolicy::default().lease.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    outbox_lease_seconds: u64,
    /// Days a released MSISDN cools off (quarantine) before it may be reserved again.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(0..=3650))]
    number_quarantine_days: u32,
    /// Minutes an MSISDN or SIM reservation holds when the request does not say.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=43200))]
    reservation_hold_minutes: u32,
    /// Attempts at delivering an event to a hub listener before it is dead-lettered (kept,
    /// listed by GET /tmf-api/hub/v1/delivery?state=deadLettered, re-drivable).
    #[arg(long, default_value_t = tollgate_hub::DeliveryConfig::default().retry.max_attempts,
          value_parser = clap::value_parser!(i64).range(1..=100))]
    hub_max_attempts: i64,
    /// Accept hub listeners' http:// callbacks to any host, not only loopback ones (a lab
    /// without TLS: events carry personal data).
    #[arg(long)]
    hub_allow_http: bool,
    /// Network activation for product orders: a TOML file with an `[http]` gateway or a
    /// `[spool]` directory (oss-adapters/activation/README.md). Without it, orders run in
    /// "no network activation" mode: the activation step completes as skipped.
    #[arg(long, value_name = "CONFIG.toml", requires = "api_listen")]
    activation: Option<PathBuf>,
    /// The resource inventory's SIM key (64 hex digits, as given to `tollgate inventory sim
    /// load --sim-key-file`): activations then carry the SIM card's Ki and OPc.
    #[arg(long, value_name = "FILE", requires = "api_listen")]
    sim_key_file: Option<PathBuf>,
    /// Provisioning steps run at once.
    #[arg(long, default_value_t = tollgate_orders::DEFAULT_CONCURRENCY,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    provisioning_concurrency: usize,
    /// Seconds a claimed provisioning step is held before another attempt (after a crash
    /// mid-step) may claim it again; every step is idempotent, so a short lease only costs
    /// repeated calls.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    provisioning_lease_seconds: u64,
    /// Take the dunning steps due (reminders, suspend orders) and lift the suspensions of
    /// accounts paid up, at start and then every this many seconds (3600: hourly), on the
    /// day in UTC; 0: off (`tollgate receivables dunning` from a timer instead). A step is
    /// taken once, so running often is safe. The same run works the prepaid renewals
    /// (`tollgate receivables renewals`). A failed run raises `dunning-run/serve`.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=604_800))]
    dunning_every_seconds: u64,
    /// The dunning policy (JSON, as `receivables dunning --policy`); default: a reminder
    /// after 7 days, a suspension after 21.
    #[arg(long, value_name = "POLICY.json")]
    dunning_policy: Option<std::path::PathBuf>,
}

/// The provisioning workflow's settings, loaded before anything is bound so a bad file
/// stops `serve` at once, naming its flag.
struct Provisioning {
    activator: Option<Arc<dyn tollgate_activation::Activator>>,
    sealer: Option<tollgate_inventory::KeySealer>,
}

impl Provisioning {
    fn load(args: &ApiArgs) -> anyhow::Result<Provisioning> {
        let activator = match &args.activation {
            Some(path) => {
                let config = tollgate_activation::ActivationConfig::load(path).context("--activation")?;
                Some(tollgate_activation::build(&config).with_context(|| format!("--activation {}", path.display()))?)
            }
            None => None,
        };
        let sealer = match &args.sim_key_file {
            Some(path) => {
                let text = super::inventory::read(path, 1024).context("--sim-key-file")?;
                Some(
                    tollgate_inventory::KeySealer::from_hex(&text)
                        .with_context(|| format!("--sim-key-file {}", path.display()))?,
                )
            }
            None => None,
        };
        Ok(Provisioning { activator, sealer })
    }
}

/// What one Diameter peer, or all of them, may hold of the server (boxed: `ServeArgs`
/// stays small). Defaults are `DiameterConfig::default()`'s; see oss-adapters/README.md.
#[derive(Debug, Clone, Args)]
pub(crate) struct DiameterLimitArgs {
    /// Diameter connections open at once per listener; more are closed when accepted.
    #[arg(long, value_name = "N", default_value_t = DiameterConfig::default().max_connections,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    diameter_max_connections: usize,
    /// Diameter connections one remote IP address may hold at once, per listener.
    #[arg(long, value_name = "N", default_value_t = DiameterConfig::default().max_connections_per_address,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    diameter_max_connections_per_address: usize,
    /// Seconds a new Diameter connection has to complete its capabilities exchange.
    #[arg(long = "diameter-capabilities-timeout", value_name = "SECONDS", default_value_t = DiameterConfig::default().capabilities_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    diameter_capabilities_timeout_seconds: u64,
    /// Seconds a Diameter message has to arrive whole once its first byte has.
    #[arg(long = "diameter-message-timeout", value_name = "SECONDS", default_value_t = DiameterConfig::default().message_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    diameter_message_timeout_seconds: u64,
    /// Seconds a Diameter peer may take none of its answers before it is disconnected.
    #[arg(long = "diameter-write-timeout", value_name = "SECONDS", default_value_t = DiameterConfig::default().write_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    diameter_write_timeout_seconds: u64,
    /// Bytes all Diameter connections of a listener may hold together, beyond a reserve of
    /// their own, for messages being received, served and answered.
    #[arg(long, value_name = "BYTES", default_value_t = DiameterConfig::default().max_buffered_bytes)]
    diameter_max_buffered_bytes: usize,
}

impl DiameterLimitArgs {
    /// `config` with these limits, or which flag is out of bounds.
    fn apply(&self, config: DiameterConfig) -> anyhow::Result<DiameterConfig> {
        let config = DiameterConfig {
            max_connections: self.diameter_max_connections,
            max_connections_per_address: self.diameter_max_connections_per_address,
            capabilities_timeout: Duration::from_secs(self.diameter_capabilities_timeout_seconds),
            message_timeout: Duration::from_secs(self.diameter_message_timeout_seconds),
            write_timeout: Duration::from_secs(self.diameter_write_timeout_seconds),
            max_buffered_bytes: self.diameter_max_buffered_bytes,
            ..config
        };
        let least = config.min_buffered_bytes();
        anyhow::ensure!(
            config.max_buffered_bytes >= least,
            "--diameter-max-buffered-bytes must be at least {least} (what one message of the largest size holds)"
        );
        Ok(config)
    }
}

/// TLS and access-token flags (boxed: `ServeArgs` stays small).
#[derive(Debug, Clone, Args)]
pub(crate) struct SecurityArgs {
    /// PEM certificate chain: serve Nchf over TLS (HTTP/2 or HTTP/1.1 by ALPN).
    #[arg(long, value_name = "FILE", requires = "nchf_tls_key")]
    nchf_tls_cert: Option<PathBuf>,
    /// PEM private key of --nchf-tls-cert.
    #[arg(long, value_name = "FILE", requires = "nchf_tls_cert")]
    nchf_tls_key: Option<PathBuf>,
    /// PEM CA certificates: require every Nchf client to present a certificate from them
    /// (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "nchf_tls_cert")]
    nchf_client_ca: Option<PathBuf>,
    /// PEM public key of the NRF (RSA: RS256, or P-256: ES256): require an OAuth2 access
    /// token with scope nchf-convergedcharging for NF type CHF on every Nchf request.
    #[arg(long, value_name = "FILE")]
    nchf_oauth_key: Option<PathBuf>,
    /// NF instance id of the NRF: the `iss` access tokens must carry (default: any).
    #[arg(long, value_name = "ID", requires = "nchf_oauth_key")]
    nchf_oauth_issuer: Option<String>,
    /// NF instance id of this CHF: tokens whose `aud` lists it are accepted as well as
    /// those for NF type CHF.
    #[arg(long, value_name = "ID", requires = "nchf_oauth_key")]
    nchf_oauth_audience: Option<String>,
    /// Where Diameter over TLS (RFC 6733 §13: TLS from the first byte, port 5658 by
    /// convention) listens, besides the TCP listener; needs --diameter-tls-cert,
    /// --diameter-tls-key and --diameter-tls-client-ca.
    #[arg(long, requires_all = ["diameter_tls_cert", "diameter_tls_key", "diameter_tls_client_ca"])]
    diameter_tls_listen: Option<SocketAddr>,
    /// PEM certificate chain of this node for Diameter over TLS.
    #[arg(long, value_name = "FILE", requires = "diameter_tls_listen")]
    diameter_tls_cert: Option<PathBuf>,
    /// PEM private key of this node for Diameter over TLS.
    #[arg(long, value_name = "FILE", requires = "diameter_tls_listen")]
    diameter_tls_key: Option<PathBuf>,
    /// PEM CA certificates a Diameter peer's certificate must chain to; the Origin-Host of
    /// its CER must also be a DNS name of that certificate.
    #[arg(long, value_name = "FILE", requires = "diameter_tls_listen")]
    diameter_tls_client_ca: Option<PathBuf>,
}

/// The outbox's retry policy, with the lease the flags ask for.
fn outbox_policy(api: &ApiArgs) -> tollgate_store::RetryPolicy {
    tollgate_store::RetryPolicy {
        lease: Duration::from_secs(api.outbox_lease_seconds),
        ..tollgate_store::RetryPolicy::default()
    }
}

/// How long open connections may take to finish after SIGTERM or SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub(crate) fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let security = Security::load(&args.security)?;
    let provisioning = Provisioning::load(&args.api)?;
    let alarm_thresholds = args.alarms.thresholds()?;
    let fraud_policy = args.fraud.policy()?;
    let threshold_templates = args.threshold_templates.templates()?;
    let dunning_policy = match args.api.dunning_every_seconds {
        0 => None,
        _ => Some(super::payment::dunning_policy(args.api.dunning_policy.as_deref()).context("--dunning-policy")?),
    };
    let sms_gateway = match &args.sms_gateway {
        Some(path) => Some(Arc::new(
            tollgate_activation::SmsGateway::load(path).with_context(|| format!("--sms-gateway {}", path.display()))?,
        )),
        None => None,
    };
    let config = Arc::new(args.diameter_limits.apply(DiameterConfig {
        origin_host: args.origin_host.clone(),
        origin_realm: args.origin_realm.clone(),
        allowed_peers: args.peers.clone(),
        ..DiameterConfig::default()
    })?);
    let engine = Arc::new(args.engine.open()?);
    if args.demo_subscribers > 0 {
        super::demo::provision(&engine, args.demo_subscribers)?;
    }
    let report = engine.report();
    tracing::info!(
        data_dir = %args.engine.data_dir.display(),
        shards = report.shards.len(),
        plans = engine.plans().len(),
        accounts = report.accounts,
        subscriptions = report.subscriptions,
        replayed = report.shards.iter().map(|s| s.replayed_records).sum::<u64>(),
        "engine ready"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    // The management plane (API, outbox, hub and provisioning workers) runs on a runtime
    // of its own whose threads the kernel schedules after charging's: under API load the
    // network elements keep their throughput (the benchmark in docs/performance.md).
    let bss_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(BSS_WORKER_THREADS)
        .thread_name("tollgate-bss")
        .on_thread_start(lower_thread_priority)
        .enable_all()
        .build()?;
    let bss_handle = bss_runtime.handle().clone();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.diameter_listen).await?;
        tracing::info!(listen = %listener.local_addr()?, origin_host = %config.origin_host, "diameter server listening");
        let diameter_tls = match (args.security.diameter_tls_listen, &security.diameter_tls) {
            (Some(address), Some(tls)) => {
                let listener = tokio::net::TcpListener::bind(address).await?;
                tracing::info!(listen = %listener.local_addr()?, "diameter tls server listening");
                Some((listener, Arc::clone(tls)))
            }
            _ => None,
        };
        let http = tokio::net::TcpListener::bind(args.nchf_listen).await?;
        let nchf_limits = tollgate_oss_adapters::limits::ConnectionLimits {
            max_connections: args.nchf_max_connections,
            idle_timeout: std::time::Duration::from_secs(args.nchf_idle_seconds),
        };
        let http_address = http.local_addr()?;
        let scheme = if security.nchf_tls.is_some() { "https" } else { "http" };
        let api_root = args.nchf_api_root.clone().unwrap_or_else(|| format!("{scheme}://{http_address}"));
        let mut router = nchf::server::router(Arc::clone(&engine), api_root)?;
        if let Some(verifier) = &security.nchf_access_tokens {
            router = nchf::oauth::require_access_tokens(router, Arc::clone(verifier));
        }
        tracing::info!(
            listen = %http_address,
            tls = security.nchf_tls.is_some(),
            client_certificates = args.security.nchf_client_ca.is_some(),
            access_tokens = security.nchf_access_tokens.is_some(),
            "nchf server listening"
        );
        if !http_address.ip().is_loopback() {
            if security.nchf_tls.is_none() {
                tracing::warn!(listen = %http_address, "nchf is served without TLS on a non-loopback address: traffic and any access token travel in clear text (--nchf-tls-cert)");
            }
            if args.security.nchf_client_ca.is_none() && security.nchf_access_tokens.is_none() {
                tracing::warn!(listen = %http_address, "nchf clients are not authenticated: anyone who reaches the port can charge (--nchf-client-ca, --nchf-oauth-key)");
            }
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            let _ = stop.send(true);
        });
        let wait = |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
            let _ = receiver.wait_for(|stopped| *stopped).await;
        };
        let token = grpc_token(args.grpc_token_file.clone().unwrap_or_else(|| args.engine.data_dir.join("grpc.token")))?;
        let grpc = tokio::net::TcpListener::bind(args.grpc_listen).await?;
        tracing::info!(listen = %grpc.local_addr()?, "grpc server listening");
        let grpc_server = tokio::spawn(tollgate_oss_adapters::grpc::server::serve(grpc, Arc::clone(&engine), token, wait(stopped.clone())));
        let http_server = match &security.nchf_tls {
            Some(tls) => {
                tokio::spawn(nchf::server::serve_tls(http, Arc::clone(tls), router, nchf_limits, wait(stopped.clone())))
            }
            None => tokio::spawn(nchf::server::serve(http, router, nchf_limits, wait(stopped.clone()))),
        };
        let diameter_tls_server = diameter_tls.map(|(listener, tls)| {
            tokio::spawn(serve_tls(listener, tls, Arc::clone(&engine), Arc::clone(&config), wait(stopped.clone())))
        });
        // The BSS store: given, needed by the API, or left by earlier BSS commands in the
        // data directory. With one, the outbox worker always runs: what the CLI recorded
        // while no server ran reaches the engine now.
        let default_store = args.engine.data_dir.join(tollgate_store::SQLITE_FILE_NAME);
        let location = match (&args.api.database, args.api.api_listen) {
            (Some(database), _) => Some(database.clone()),
            (None, Some(_)) => Some(default_store.display().to_string()),
            (None, None) => default_store.exists().then(|| default_store.display().to_string()),
        };
        // Opened from a thread at the management plane's priority: the connections'
        // threads (SQLite's) take it.
        let bss = match location {
            Some(location) => {
                let (opened, open) = tokio::sync::oneshot::channel();
                let handle = bss_handle.clone();
                std::thread::Builder::new().name("tollgate-bss-open".into()).spawn(move || {
                    lower_thread_priority();
                    let _ = opened.send(handle.block_on(tollgate_store::Store::open(&location)));
                })?;
                Some(open.await??)
            }
            None => None,
        };
        // The operations endpoint; with a store, /metrics shows the open alarms too.
        // Traps are sent by one forwarder that follows the store's alarm changes, whichever
        // process made them (the CLI, a bill run, a mediation run, this server).
        let trap_sender = args.alarms.traps()?;
        // Where the trap forwarder starts: the audit trail's head now, before anything of
        // this server can change an alarm (an alarm cleared at start is forwarded too).
        let trap_from = match (&bss, &trap_sender) {
            (Some(store), Some(_)) => {
                // On the management plane's runtime, where the store lives.
                let store = store.clone();
                bss_handle.spawn(async move { store.audit_head().await }).await??.seq
            }
            (None, Some(_)) => anyhow::bail!("--alarm-trap-target needs a BSS store for its alarms: --database or --api-listen"),
            _ => 0,
        };
        let admin = tokio::net::TcpListener::bind(args.admin_listen).await?;
        tracing::info!(listen = %admin.local_addr()?, "admin server listening");
        let mut sources: Vec<Arc<dyn tollgate_oss_adapters::admin::MetricsSource>> = Vec::new();
        if let Some(store) = &bss {
            sources.push(Arc::new(super::alarm::BssMetrics(store.clone())));
        }
        let fraud_counters = fraud_policy.as_ref().map(|_| Arc::new(super::fraud::FraudCounters::new(report.shards.len())));
        if let Some(counters) = &fraud_counters {
            sources.push(Arc::new(super::fraud::FraudMetrics(Arc::clone(counters))));
        }
        // Bill runs started through the API, with the run configuration read now: a bad
        // file stops the server naming the flag.
        let bill_run_config = super::bill_run::load_config(args.api.bill_run_config.as_deref())
            .context("--bill-run-config")?;
        let bill_runs = bss.as_ref().map(|store| {
            Arc::new(super::bill_run_api::ServeBillRuns::new(
                store.clone(),
                args.engine.data_dir.clone(),
                report.shards.len(),
                bill_run_config,
            ))
        });
        if let Some(runs) = &bill_runs {
            sources.push(Arc::new(super::bill_run_api::BillRunMetrics(Arc::clone(runs))));
        }
        let mediation_counters = Arc::new(super::mediate::MediationCounters::default());
        if args.mediation.is_watching() {
            sources.push(Arc::new(super::mediate::MediationMetrics {
                counters: Arc::clone(&mediation_counters),
                incoming: args.mediation.incoming(),
            }));
        }
        let threshold_counters = Arc::new(super::threshold::ThresholdCounters::default());
        if bss.is_some() {
            sources.push(Arc::new(super::threshold::ThresholdMetrics(Arc::clone(&threshold_counters))));
        }
        let health: Vec<Arc<dyn tollgate_oss_adapters::admin::HealthSource>> =
            vec![Arc::new(super::alarm::BssHealth { store: bss.clone(), activator: provisioning.activator.clone() })];
        let admin_router = tollgate_oss_adapters::admin::router_with_health(Arc::clone(&engine), sources, health);
        let admin_server = tokio::spawn(tollgate_oss_adapters::admin::serve(admin, admin_router, wait(stopped.clone())));
        let outbox_worker = bss.as_ref().map(|store| {
            // The BSS changes the engine only through its API, via the outbox: this
            // worker applies what committed BSS changes recorded, also after a crash.
            let worker = tollgate_store::OutboxWorker::new(
                store.clone(),
                super::engine_link::EngineLink::new(Arc::clone(&engine), store.clone())
                    .with_sms(sms_gateway.clone())
                    .with_templates(threshold_templates.clone()),
            )
            .with_policy(outbox_policy(&args.api));
            tracing::info!(dialect = ?store.dialect(), "outbox worker running");
            let worker_stop = wait(stopped.clone());
            bss_handle.spawn(async move { worker.run(worker_stop).await })
        });
        // Events committed with BSS changes (by the API or the CLI), delivered to the hubs'
        // listeners.
        let hub_worker = match &bss {
            Some(store) => {
                let mut delivery = tollgate_hub::DeliveryConfig::default();
                delivery.retry.max_attempts = args.api.hub_max_attempts;
                delivery.allow_plain_http = args.api.hub_allow_http;
                let hub_worker = tollgate_hub::HubWorker::new(store.clone(), delivery)?;
                let hub_stop = wait(stopped.clone());
                Some(bss_handle.spawn(async move { hub_worker.run(hub_stop).await }))
            }
            None => None,
        };
        // Product orders: the workflow reaches the engine through its API under each step's
        // key, the resource inventory in the step's transaction, the network through the
        // activator (none: "no network activation", the step skipped). Its worker runs
        // whenever there is a store: orders placed by the CLI are provisioned too.
        let inventory_config = tollgate_inventory::InventoryConfig::default()
            .with_quarantine_days(args.api.number_quarantine_days)
            .with_default_hold_minutes(args.api.reservation_hold_minutes);
        let orders = bss.as_ref().map(|store| {
            let resources = tollgate_orders::InventoryResources::new(
                tollgate_inventory::Inventory::new(store.clone(), inventory_config.clone()),
                provisioning.sealer,
            );
            tollgate_orders::Orders::new(
                store.clone(),
                Arc::new(super::order_link::OrderLink::new(Arc::clone(&engine))),
                Arc::new(resources),
            )
        });
        let provisioning_worker = orders.as_ref().map(|orders| {
            if provisioning.activator.is_none() {
                tracing::info!("no network activation configured (--activation): orders skip the activation step");
            }
            let workflow_policy = tollgate_store::RetryPolicy {
                lease: Duration::from_secs(args.api.provisioning_lease_seconds),
                ..tollgate_store::RetryPolicy::default()
            };
            let worker = tollgate_orders::ProvisioningWorker::new(tollgate_orders::Workflow::new(
                orders.clone(),
                provisioning.activator.clone(),
                workflow_policy,
            ))
            .with_concurrency(args.api.provisioning_concurrency);
            let steps = Arc::clone(worker.workflow().health());
            let stop = wait(stopped.clone());
            (bss_handle.spawn(async move { worker.run(stop).await }), steps)
        });
        // The dunning run, when asked for: through the order flow, like the CLI's.
        let dunning = match (&orders, &bss, args.api.dunning_every_seconds, dunning_policy) {
            (Some(orders), Some(store), seconds, Some(policy)) if seconds > 0 => {
                let run = super::payment::PeriodicDunning {
                    store: store.clone(),
                    orders: orders.clone(),
                    policy,
                    every: Duration::from_secs(seconds),
                    alarms: tollgate_alarms::Alarms::new(store.clone()),
                };
                Some(bss_handle.spawn(run.run(wait(stopped.clone()))))
            }
            (None, _, seconds, _) if seconds > 0 => {
                anyhow::bail!("--dunning-every-seconds needs a BSS store: --database or --api-listen")
            }
            _ => None,
        };
        // With a store, the faults serve sees for itself raise alarms, cleared when the
        // fault is gone: shards stopped or syncing slowly, the data directory filling up,
        // Diameter peers lost, the activation gateway unreachable, provisioning steps
        // failing for good. Watched from the management plane's runtime: it reads the
        // engine's atomics and never makes a shard wait.
        let trap_forwarder = match (&bss, trap_sender) {
            (Some(store), Some(sender)) => Some(bss_handle.spawn(tollgate_alarms::service::forward_traps(
                store.clone(),
                sender,
                trap_from,
                Duration::from_millis(500),
                wait(stopped.clone()),
            ))),
            _ => None,
        };
        let fault_watcher = match &bss {
            Some(store) => {
                let alarms = tollgate_alarms::Alarms::new(store.clone());
                let watched = super::alarm::Watched {
                    engine: Arc::clone(&engine),
                    data_dir: args.engine.data_dir.clone(),
                    thresholds: alarm_thresholds.clone(),
                    activator: provisioning.activator.clone(),
                    steps: provisioning_worker.as_ref().map(|(_, steps)| Arc::clone(steps)),
                };
                Some(bss_handle.spawn(super::alarm::watch_faults(watched, alarms, wait(stopped.clone()))))
            }
            None => None,
        };
        // Usage files rated through this engine, beside online charging: a thread of its
        // own, at the management plane's priority.
        // With fraud detection, what the files charged is held against the ledger.
        let mediated = fraud_policy.as_ref().map(|policy| Arc::new(super::fraud::MediatedVolume::new(policy)));
        let mediation = super::mediate::ServeMediation::start(
            &args.mediation,
            Arc::clone(&engine),
            &args.engine.data_dir,
            bss.as_ref().map(|store| (tollgate_alarms::Alarms::new(store.clone()), bss_handle.clone())),
            mediation_counters,
            mediated.clone().map(|volume| volume as Arc<dyn tollgate_mediation::ChargedVolume>),
        )?;
        // Fraud and leakage detection: a thread of its own follows the rated-event ledger
        // (files the ledger thread wrote; never a shard) and hands findings to a worker
        // here that raises their alarms and places suspend orders.
        let fraud = match (fraud_policy, fraud_counters, &bss) {
            (Some(policy), Some(counters), Some(store)) => Some(super::fraud::Fraud::start(super::fraud::FraudSetup {
                policy,
                data_dir: args.engine.data_dir.clone(),
                shards: report.shards.len(),
                store: store.clone(),
                alarms: tollgate_alarms::Alarms::new(store.clone()),
                orders: orders.clone(),
                runtime: bss_handle.clone(),
                counters,
                engine: Arc::clone(&engine),
                mediated: mediated.filter(|_| mediation.is_some()),
            })?),
            (Some(_), _, None) => anyhow::bail!("--fraud needs a BSS store for its alarms: --database or --api-listen"),
            _ => None,
        };
        // Thresholds: a thread of its own follows the rated-event ledger too and hands the
        // accounts with thresholds it saw charged to a worker here, which reads their state
        // from the engine and records (and publishes) each crossing once.
        let thresholds = match &bss {
            Some(store) => Some(super::threshold::ThresholdEvaluation::start(super::threshold::ThresholdSetup {
                data_dir: args.engine.data_dir.clone(),
                shards: report.shards.len(),
                store: store.clone(),
                templates: threshold_templates.clone(),
                engine: Arc::new(super::engine_link::EnginePortLink::new(
                    Arc::clone(&engine),
                    store.clone(),
                    outbox_policy(&args.api),
                )),
                runtime: bss_handle.clone(),
                counters: threshold_counters,
            })?),
            None => None,
        };
        let provisioning_worker = provisioning_worker.map(|(worker, _)| worker);
        let api_server = match (args.api.api_listen, &bss) {
            (Some(address), Some(store)) => {
                // Bound here, registered with the management plane's runtime in its task.
                let listener = std::net::TcpListener::bind(address)?;
                listener.set_nonblocking(true)?;
                tracing::info!(listen = %listener.local_addr()?, dialect = ?store.dialect(), "management api listening");
                if !listener.local_addr()?.ip().is_loopback() {
                    tracing::warn!("the management API is served without TLS on a non-loopback address: bearer tokens travel in clear text; put it behind a TLS proxy");
                }
                let inventory = inventory_config.clone();
                let hub_options = tollgate_hub::HubOptions { allow_plain_http: args.api.hub_allow_http };
                let port = super::engine_link::EnginePortLink::new(Arc::clone(&engine), store.clone(), outbox_policy(&args.api));
                let mut config = tollgate_api::ApiConfig::with_rate_limit(args.api.api_rate, args.api.api_burst)
                    .with_inventory(inventory)
                    .with_hub(hub_options)
                    .with_engine(Arc::new(port));
                if let Some(orders) = &orders {
                    config = config.with_orders(orders.clone());
                }
                let template = match &args.api.invoice_template {
                    Some(path) => tollgate_invoice_pdf::Template::from_file(path)
                        .with_context(|| format!("--invoice-template {}", path.display()))?,
                    None => tollgate_invoice_pdf::Template::default(),
                };
                config.bill_pdf = Some(Arc::new(super::bill_run::BillPdfRenderer::new(store.clone(), template)));
                config.bill_runs = bill_runs.clone().map(|runs| runs as Arc<dyn tollgate_api::BillRuns>);
                config.threshold_templates = threshold_templates.clone();
                let router = tollgate_api::router(store.clone(), &config);
                let api_limits = tollgate_oss_adapters::limits::ConnectionLimits {
                    max_connections: args.api.api_max_connections,
                    idle_timeout: std::time::Duration::from_secs(args.api.api_idle_seconds),
                };
                let api_stop = wait(stopped.clone());
                Some(bss_handle.spawn(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let listener = tollgate_oss_adapters::limits::LimitedListener::new(listener, api_limits, "api");
                    tollgate_api::serve(listener, router, api_stop).await
                }))
            }
            _ => None,
        };
        let stopping = wait(stopped.clone());
        let servers = async {
            serve(listener, Arc::clone(&engine), config, wait(stopped)).await;
            if let Some(server) = diameter_tls_server {
                server.await?;
            }
            http_server.await??;
            grpc_server.await??;
            admin_server.await??;
            if let Some(server) = api_server {
                server.await??;
            }
            if let Some(watcher) = fault_watcher {
                watcher.await?;
            }
            if let Some(forwarder) = trap_forwarder {
                forwarder.await??;
            }
            if let Some(outbox_worker) = outbox_worker {
                outbox_worker.await?;
            }
            if let Some(hub_worker) = hub_worker {
                hub_worker.await?;
            }
            if let Some(provisioning_worker) = provisioning_worker {
                provisioning_worker.await?;
            }
            if let Some(dunning) = dunning {
                dunning.await?;
            }
            anyhow::Ok(())
        };
        // Once asked to stop, connections get SHUTDOWN_GRACE to finish what is in flight;
        // an idle HTTP/2 client that keeps its connection open must not keep the process.
        tokio::pin!(servers);
        tokio::select! {
            result = &mut servers => result?,
            () = async { stopping.await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period; closing them");
            }
        }
        if let Some(mediation) = mediation {
            // The file under way stops after the batch in the engine, before the shards do.
            mediation.stop();
        }
        if let Some(runs) = &bill_runs {
            // Before the management runtime goes down: the runs under way end between
            // two batches and resume when started again.
            runs.stop(BILL_RUN_STOP_WAIT);
        }
        if let Some(fraud) = fraud {
            fraud.stop();
        }
        if let Some(thresholds) = thresholds {
            thresholds.stop();
        }
        anyhow::Ok(())
    })?;
    tracing::info!("stopping: closing connections and syncing journals");
    runtime.shutdown_timeout(Duration::from_secs(1));
    bss_runtime.shutdown_timeout(Duration::from_secs(1));
    match Arc::try_unwrap(engine) {
        Ok(engine) => engine.shutdown()?,
        // A connection task still holds it: dropping the engine stops and syncs the shards.
        Err(engine) => drop(engine),
    }
    Ok(ExitCode::SUCCESS)
}

/// The TLS configurations and access-token verifier the flags ask for, loaded before any
/// socket is bound so a bad file stops `serve` at once, naming the flag and the file.
struct Security {
    nchf_tls: Option<Arc<tls::ServerConfig>>,
    nchf_access_tokens: Option<Arc<AccessTokenVerifier>>,
    diameter_tls: Option<Arc<tls::ServerConfig>>,
}

impl Security {
    fn load(args: &SecurityArgs) -> anyhow::Result<Security> {
        let nchf_tls = match (&args.nchf_tls_cert, &args.nchf_tls_key) {
            (Some(cert), Some(key)) => {
                let files = TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: args.nchf_client_ca.clone() };
                Some(
                    tls::server_config(&files, tls::ALPN_HTTP)
                        .context("--nchf-tls-cert/--nchf-tls-key/--nchf-client-ca")?,
                )
            }
            _ => None,
        };
        let nchf_access_tokens = match &args.nchf_oauth_key {
            Some(path) => Some(Arc::new(
                AccessTokenVerifier::from_pem_file(
                    path,
                    args.nchf_oauth_issuer.clone(),
                    args.nchf_oauth_audience.clone(),
                )
                .context("--nchf-oauth-key")?,
            )),
            None => None,
        };
        let diameter_tls = match (&args.diameter_tls_cert, &args.diameter_tls_key, &args.diameter_tls_client_ca) {
            (Some(cert), Some(key), Some(client_ca)) => {
                let files = TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: Some(client_ca.clone()) };
                Some(
                    tls::server_config(&files, &[])
                        .context("--diameter-tls-cert/--diameter-tls-key/--diameter-tls-client-ca")?,
                )
            }
            _ => None,
        };
        Ok(Security { nchf_tls, nchf_access_tokens, diameter_tls })
    }
}

/// Reads the gRPC bearer token, creating a random one (readable by the owner only) when
/// the file does not exist. The token itself is never logged. A new token is written
/// durably (temporary file, fsync, rename, fsync of the directory), so a power cut leaves
/// either no file or the whole token; an empty file (left by a build before that) is
/// replaced as if missing, since nobody can hold an empty token.
fn grpc_token(path: std::path::PathBuf) -> anyhow::Result<Arc<str>> {
    use std::io::Read;
    if let Ok(mut file) = std::fs::File::open(&path) {
        let mut token = String::new();
        file.read_to_string(&mut token)?;
        let token = token.trim().to_owned();
        if !token.is_empty() {
            anyhow::ensure!(token.len() >= 16, "{}: the gRPC token must be at least 16 characters", path.display());
            return Ok(Arc::from(token));
        }
        tracing::warn!(path = %path.display(), "the gRPC token file is empty; writing a new token");
    }
    if let Some(parent) = path.parent() {
        tollgate_engine::durable::create_dir_all(&RealFs::new(), parent)?;
    }
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    tollgate_engine::durable::replace_file(&RealFs::new(), &path, token.as_bytes(), 0o600)
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "created a gRPC bearer token");
    Ok(Arc::from(token))
}

/// The management plane's worker threads: the API's requests and the BSS workers share
/// them; the store's queries run on the database driver's own threads. More than the
/// cores: a store transaction (on SQLite, holding the one write permit) resumes after
/// each statement on whichever of these threads is free, so with few of them it waits
/// behind HTTP work between statements. 8 rather than 2 took product orders from 33 to
/// 42 a second on 2 cores (docs/performance.md); they run at the lower priority, after
/// charging.
const BSS_WORKER_THREADS: usize = 8;

/// How much lower than charging the management plane's threads are scheduled (added to
/// the nice value, which Linux keeps per thread).
const BSS_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority by [`BSS_NICE`] (on Linux the nice value
/// of "this process", pid 0, is the calling thread's; 19 is the lowest). Where that fails it
/// stays as it was, which only costs the isolation.
/// How long a stop waits for the bill runs under way to reach the end of a batch.
const BILL_RUN_STOP_WAIT: Duration = Duration::from_secs(30);

pub(crate) fn lower_thread_priority() {
    let lowered = rustix::process::getpriority_process(None)
        .and_then(|nice| rustix::process::setpriority_process(None, (nice + BSS_NICE).min(19)));
    if let Err(error) = lowered {
        tracing::debug!(%error, "management plane thread priority left as it was");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_management_plane_threads_run_at_a_lower_priority_than_the_thread_that_made_them() {
        let charging = rustix::process::getpriority_process(None).expect("nice value");
        let management = std::thread::spawn(|| {
            lower_thread_priority();
            rustix::process::getpriority_process(None).expect("nice value")
        })
        .join()
        .expect("thread");
        assert_eq!(management, (charging + BSS_NICE).min(19));
        assert!(charging == 19 || management > charging, "lowered: {charging} -> {management}");
        // Only that thread: this one keeps its priority.
        assert_eq!(rustix::process::getpriority_process(None).expect("nice value"), charging);
    }
}
