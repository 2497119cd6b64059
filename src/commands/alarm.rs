//! Alarms in the binary: `tollgate alarm list|show|raise|ack|clear` on the store (through
//! the same `tollgate_alarms::Alarms` as the API, audited as `cli:<user>`), and what
//! `tollgate serve` adds: SNMP trap forwarding (`--alarm-trap-target`), the store's figures
//! on `/metrics` (open alarms by severity, the outbox's and the hub's backlogs), and its
//! first alarm source, a shard
//! that stops serving after a journal failure (raised critical, cleared when it serves
//! again), watched once a second off the engine's threads.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use tollgate_alarms::{AckState, AlarmReport, AlarmType, Alarms, PerceivedSeverity, TrapSender};
use tollgate_engine::Engine;
use tollgate_oss_adapters::admin::{Exposition, Kind, MetricsSource};
use tollgate_store::{AlarmFilter, Store};

use super::bss::{actor, runtime, DatabaseArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum AlarmCommand {
    /// List alarms, newest first (id, severity, state, ack, object, cause, problem).
    List {
        /// Only alarms not cleared.
        #[arg(long)]
        open: bool,
        /// Only alarms of this severity (critical, major, minor, warning, indeterminate, cleared).
        #[arg(long)]
        severity: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one alarm as JSON (TMF642's shape).
    Show { id: i64 },
    /// Raise an alarm (or report the open one of the same object and cause again).
    Raise(RaiseArgs),
    /// Acknowledge an alarm.
    Ack {
        id: i64,
        /// Who acknowledges (default: cli:<user>).
        #[arg(long)]
        user: Option<String>,
    },
    /// Clear an alarm.
    Clear { id: i64 },
}

#[derive(Debug, Args)]
pub(crate) struct RaiseArgs {
    /// What is faulty (`shard/0`, `diameter-peer/pgw1`).
    #[arg(long)]
    object: String,
    /// The kind of object.
    #[arg(long, default_value = "unknown")]
    object_type: String,
    /// communicationsAlarm, processingErrorAlarm, environmentalAlarm, qualityOfServiceAlarm
    /// or equipmentAlarm.
    #[arg(long = "type", default_value = "processingErrorAlarm")]
    alarm_type: String,
    /// The X.733 probable cause (`storageCapacityProblem`).
    #[arg(long)]
    cause: String,
    /// critical, major, minor, warning or indeterminate.
    #[arg(long)]
    severity: String,
    /// What exactly went wrong.
    #[arg(long, default_value = "-")]
    problem: String,
}

/// `tollgate serve`'s alarm flags.
#[derive(Debug, Clone, Args)]
pub(crate) struct AlarmServeArgs {
    /// Send every alarm change as an SNMPv2c trap to this address (`host:162`;
    /// TOLLGATE-ALARM-MIB in oss-adapters/alarms).
    #[arg(long)]
    alarm_trap_target: Option<SocketAddr>,
    /// The community of the traps.
    #[arg(long, default_value = "public")]
    alarm_trap_community: String,
}

impl AlarmServeArgs {
    pub(crate) fn traps(&self) -> anyhow::Result<Option<Arc<TrapSender>>> {
        Ok(match self.alarm_trap_target {
            Some(target) => Some(Arc::new(TrapSender::new(target, &self.alarm_trap_community)?)),
            None => None,
        })
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

pub(crate) fn run(database: &DatabaseArgs, command: AlarmCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = database.open().await?;
        let alarms = Alarms::new(store, None);
        let shown = match command {
            AlarmCommand::List { open, severity, limit } => {
                let mut filter = AlarmFilter { open_only: open, ..AlarmFilter::default() };
                // As the API: `cleared` is the cleared alarms, any other severity open ones'.
                match severity.as_deref().map(|s| PerceivedSeverity::parse(s, "--severity")).transpose()? {
                    Some(PerceivedSeverity::Cleared) => filter.state = Some("cleared".to_owned()),
                    Some(other) => {
                        filter.open_only = true;
                        filter.perceived_severity = Some(other.as_str().to_owned());
                    }
                    None => {}
                }
                let (items, total) = alarms.list(&filter, 0, limit).await?;
                for alarm in &items {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        alarm.id,
                        alarm.severity(),
                        alarm.state,
                        alarm.ack_state,
                        alarm.report.alarmed_object,
                        alarm.report.probable_cause,
                        alarm.report.specific_problem
                    );
                }
                eprintln!("{} of {total} alarms", items.len());
                None
            }
            AlarmCommand::Show { id } => {
                let alarm = alarms.get(id).await?.ok_or_else(|| anyhow::anyhow!("no alarm {id}"))?;
                Some(alarm)
            }
            AlarmCommand::Raise(args) => {
                let report = AlarmReport {
                    alarmed_object: args.object,
                    alarmed_object_type: args.object_type,
                    alarm_type: AlarmType::parse(&args.alarm_type, "--type")?,
                    probable_cause: args.cause,
                    specific_problem: args.problem,
                    perceived_severity: PerceivedSeverity::parse(&args.severity, "--severity")?,
                    source_system_id: actor(),
                };
                Some(alarms.raise(report, &actor(), now_ms()).await?.0)
            }
            AlarmCommand::Ack { id, user } => {
                let user = user.unwrap_or_else(actor);
                Some(alarms.acknowledge(id, AckState::Acknowledged, &user, &actor(), now_ms()).await?.0)
            }
            AlarmCommand::Clear { id } => Some(alarms.clear(id, &actor(), now_ms()).await?.0),
        };
        if let Some(alarm) = shown {
            println!("{}", tollgate_alarms::service::to_tmf(&alarm, tollgate_api::ALARM_BASE_PATH));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The store's figures on `/metrics`: `tollgate_alarms_active{severity}` (every severity
/// listed, zero when none is open), `tollgate_outbox_pending` and
/// `tollgate_hub_deliveries_pending` (each one count on a partial index). A family whose
/// read fails is left out of that scrape, with a WARN.
pub(crate) struct BssMetrics(pub(crate) Store);

impl MetricsSource for BssMetrics {
    fn write<'a>(
        &'a self,
        page: &'a mut Exposition,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            match self.0.open_alarm_counts().await {
                Ok(counts) => {
                    page.family(
                        "tollgate_alarms_active",
                        Kind::Gauge,
                        "Open (not cleared) alarms by perceived severity.",
                    );
                    for severity in PerceivedSeverity::ALL.iter().filter(|s| **s != PerceivedSeverity::Cleared) {
                        let open = counts.iter().find(|(name, _)| name == severity.as_str()).map_or(0, |(_, n)| *n);
                        page.sample("tollgate_alarms_active", &[("severity", severity.as_str())], open.unsigned_abs());
                    }
                }
                Err(err) => tracing::warn!(error = %err, "metrics: open alarms not read"),
            }
            let backlogs = [
                (
                    "tollgate_outbox_pending",
                    "Outbox rows (engine operations the BSS recorded) not yet applied.",
                    self.0.outbox_pending().await,
                ),
                (
                    "tollgate_hub_deliveries_pending",
                    "Event deliveries to hub listeners not yet delivered nor dead-lettered.",
                    self.0.hub_pending().await,
                ),
            ];
            for (name, help, pending) in backlogs {
                match pending {
                    Ok(pending) => {
                        page.family(name, Kind::Gauge, help);
                        page.sample(name, &[], pending.unsigned_abs());
                    }
                    Err(err) => tracing::warn!(metric = name, error = %err, "metrics: backlog not read"),
                }
            }
        })
    }
}

/// The probable cause of a shard stopped by its journal.
const SHARD_CAUSE: &str = "storageCapacityProblem";

/// Raises a critical alarm for each shard that stops serving (a journal write or sync
/// failure) and clears it when the shard serves again, polling the engine's health once a
/// second until `stop`. At start, an open alarm of a shard that serves is cleared: the
/// fault went away while no server watched.
pub(crate) async fn watch_shards(engine: Arc<Engine>, alarms: Alarms, stop: impl std::future::Future<Output = ()>) {
    const ACTOR: &str = "system:engine";
    tokio::pin!(stop);
    let mut known: Vec<Option<bool>> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {}
        }
        let health = engine.health();
        known.resize(health.len(), None);
        for (status, known) in health.iter().zip(known.iter_mut()) {
            let serving = status.state == "serving";
            if *known == Some(serving) {
                continue;
            }
            let object = format!("shard/{}", status.shard);
            let done = if serving {
                alarms.clear_open(&object, SHARD_CAUSE, ACTOR, now_ms()).await.map(|_| ())
            } else {
                let report = AlarmReport {
                    alarmed_object: object,
                    alarmed_object_type: "shard".to_owned(),
                    alarm_type: AlarmType::ProcessingError,
                    probable_cause: SHARD_CAUSE.to_owned(),
                    specific_problem: status.reason.clone().unwrap_or_else(|| "journal failed".to_owned()),
                    perceived_severity: PerceivedSeverity::Critical,
                    source_system_id: "tollgate".to_owned(),
                };
                alarms.raise(report, ACTOR, now_ms()).await.map(|_| ())
            };
            match done {
                Ok(()) => *known = Some(serving),
                // Tried again on the next tick.
                Err(err) => tracing::warn!(shard = status.shard, error = %err, "shard alarm not recorded"),
            }
        }
    }
}
