//! Alarms in the binary: `tollgate alarm list|show|raise|ack|clear` on the store (through
//! the same `tollgate_alarms::Alarms` as the API, audited as `cli:<user>`), and what
//! `tollgate serve` adds: SNMP trap forwarding (`--alarm-trap-target`), the store's figures
//! on `/metrics` (open alarms by severity, the outbox's and the hub's backlogs), and its
//! first alarm sources, a shard that stops serving after a journal failure (critical) and a
//! Diameter peer lost (major), each cleared when the fault is gone, watched once a second
//! off the engine's threads.

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
/// The probable cause of a Diameter peer lost.
const PEER_CAUSE: &str = "communicationsSubsystemFailure";

/// A fault a watcher follows: its alarmed object, and what to raise while it lasts (`None`
/// once it is gone).
struct Fault {
    object: String,
    cause: &'static str,
    raise: Option<AlarmReport>,
}

/// Watches, once a second until `stop`, the faults `serve` can see for itself and keeps
/// their alarms: a shard that stops serving (a journal write or sync failure) raises a
/// critical alarm, cleared when it serves again; a Diameter peer lost (gone without a
/// Disconnect-Peer-Request, or silent past the watchdog timeout) a major one, cleared when
/// it connects again. An alarm is raised or cleared when its fault changes; at start, an
/// open alarm of a fault found gone is cleared (it went away while no server watched).
pub(crate) async fn watch_faults(engine: Arc<Engine>, alarms: Alarms, stop: impl std::future::Future<Output = ()>) {
    const ACTOR: &str = "system:tollgate";
    tokio::pin!(stop);
    let mut known: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {}
        }
        for fault in faults(&engine) {
            let faulty = fault.raise.is_some();
            if known.get(&fault.object) == Some(&faulty) {
                continue;
            }
            let done = match fault.raise {
                Some(report) => alarms.raise(report, ACTOR, now_ms()).await.map(|_| ()),
                None => alarms.clear_open(&fault.object, fault.cause, ACTOR, now_ms()).await.map(|_| ()),
            };
            match done {
                Ok(()) => {
                    known.insert(fault.object, faulty);
                }
                // Tried again on the next tick.
                Err(err) => tracing::warn!(object = %fault.object, error = %err, "alarm not recorded"),
            }
        }
    }
}

/// The shards' and the Diameter peers' faults now.
fn faults(engine: &Engine) -> Vec<Fault> {
    let report = |object: &str, object_type: &str, alarm_type, cause: &str, problem: String, severity| AlarmReport {
        alarmed_object: object.to_owned(),
        alarmed_object_type: object_type.to_owned(),
        alarm_type,
        probable_cause: cause.to_owned(),
        specific_problem: problem,
        perceived_severity: severity,
        source_system_id: "tollgate".to_owned(),
    };
    let shards = engine.health().into_iter().map(|status| {
        let object = format!("shard/{}", status.shard);
        let raise = (status.state != "serving").then(|| {
            let problem = status.reason.clone().unwrap_or_else(|| "journal failed".to_owned());
            report(&object, "shard", AlarmType::ProcessingError, SHARD_CAUSE, problem, PerceivedSeverity::Critical)
        });
        Fault { object, cause: SHARD_CAUSE, raise }
    });
    let peers = tollgate_oss_adapters::diameter::peers::peers().into_iter().map(|peer| {
        let object = format!("diameter-peer/{}", peer.origin_host);
        let raise = match (peer.connections, peer.lost) {
            (0, Some(why)) => Some(report(
                &object,
                "diameterPeer",
                AlarmType::Communications,
                PEER_CAUSE,
                format!("the Diameter peer {}: {why}", peer.origin_host),
                PerceivedSeverity::Major,
            )),
            _ => None,
        };
        Fault { object, cause: PEER_CAUSE, raise }
    });
    shards.chain(peers).collect()
}
