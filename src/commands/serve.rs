//! `tollgate serve`: the charging engine as a long-running process. Front-ends (Diameter,
//! Nchf, gRPC) attach here as they are built; until then it recovers, runs the reaper and
//! snapshots, and shuts down cleanly on SIGINT or SIGTERM.

use std::process::ExitCode;

use super::engine_setup::EngineArgs;

pub(crate) fn run(args: &EngineArgs) -> anyhow::Result<ExitCode> {
    let engine = args.open()?;
    let report = engine.report();
    tracing::info!(
        data_dir = %args.data_dir.display(),
        shards = args.shards,
        plans = engine.plans().len(),
        accounts = report.accounts,
        subscriptions = report.subscriptions,
        replayed = report.shards.iter().map(|s| s.replayed_records).sum::<u64>(),
        "engine ready"
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    })?;
    tracing::info!("stopping: syncing journals");
    engine.shutdown()?;
    Ok(ExitCode::SUCCESS)
}
