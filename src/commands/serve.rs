//! `tollgate serve`: the charging engine as a long-running process with its network
//! front-ends (Diameter Gy/Ro so far), until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
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
        shards = args.engine.shards,
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
        let router = nchf::server::router(Arc::clone(&engine), api_root).map_err(anyhow::Error::msg)?;
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
        let http_server = tokio::spawn(nchf::server::serve(http, router, wait(stopped.clone())));
        serve(listener, Arc::clone(&engine), config, wait(stopped)).await;
        http_server.await??;
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
