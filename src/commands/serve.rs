//! `tollgate serve`: the charging engine as a long-running process with its network
//! front-ends (Diameter Gy/Ro so far), until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tollgate_engine::fs::RealFs;
use tollgate_oss_adapters::diameter::server::{serve, DiameterConfig};
use tollgate_oss_adapters::nchf;

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
    /// apiRoot for Location headers (default: http:// and the listening address).
    #[arg(long)]
    nchf_api_root: Option<String>,
    /// Where the operations endpoint listens: GET /health/live and /health/ready (503
    /// while a shard has failed).
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
}

pub(crate) fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
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
    let config = Arc::new(DiameterConfig {
        origin_host: args.origin_host.clone(),
        origin_realm: args.origin_realm.clone(),
        allowed_peers: args.peers.clone(),
        ..DiameterConfig::default()
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.diameter_listen).await?;
        tracing::info!(listen = %listener.local_addr()?, origin_host = %config.origin_host, "diameter server listening");
        let http = tokio::net::TcpListener::bind(args.nchf_listen).await?;
        let http_address = http.local_addr()?;
        let api_root = args.nchf_api_root.clone().unwrap_or_else(|| format!("http://{http_address}"));
        let router = nchf::server::router(Arc::clone(&engine), api_root)?;
        tracing::info!(listen = %http_address, "nchf server listening");
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
        let http_server = tokio::spawn(nchf::server::serve(http, router, wait(stopped.clone())));
        let admin = tokio::net::TcpListener::bind(args.admin_listen).await?;
        tracing::info!(listen = %admin.local_addr()?, "admin server listening");
        let admin_router = tollgate_oss_adapters::admin::router(Arc::clone(&engine));
        let admin_server = tokio::spawn(tollgate_oss_adapters::admin::serve(admin, admin_router, wait(stopped.clone())));
        serve(listener, Arc::clone(&engine), config, wait(stopped)).await;
        http_server.await??;
        grpc_server.await??;
        admin_server.await??;
        anyhow::Ok(())
    })?;
    tracing::info!("stopping: closing connections and syncing journals");
    runtime.shutdown_timeout(Duration::from_secs(5));
    match Arc::try_unwrap(engine) {
        Ok(engine) => engine.shutdown()?,
        // A connection task still holds it: dropping the engine stops and syncs the shards.
        Err(engine) => drop(engine),
    }
    Ok(ExitCode::SUCCESS)
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
