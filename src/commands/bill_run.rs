//! `tollgate bill-run`: bills every hierarchy whose cycle closes in a month. For each
//! invoiced account (a hierarchy's root, postpaid or hybrid) it reads the products with
//! their catalogue prices (the store), the usage of each account of the hierarchy (the
//! engine's rated-event ledger) and what was billed already, lets `tollgate-billing`
//! decide and compose (`plan_invoice`), and writes the draft invoice, its lines and its
//! billed items in one transaction, audited. Then it numbers the run's drafts, one
//! transaction each, in account order. A rerun (after a kill too) skips the hierarchies
//! that have their invoice and numbers the drafts left, so it ends with the invoices and
//! numbers of an uninterrupted run. `bill-run show` prints a run's invoices; `bill-run
//! reconcile` what its cycles' rated usage became (billed or carried over, the entries
//! behind each difference); `bill-run export-gl` its general-ledger journal as CSV;
//! `bill-run pdf` an invoice, or every invoice of a run, as PDFs (`tollgate-invoice-pdf`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tollgate_billing::{
    closing_cycle, lookup_keys, parse_cycle, plan_invoice, reconcile, usage_window_start, AccountInput, ChargeTiming,
    Credit, Discount, Invoice, Journal, PriceKind, PriceKindOrUsage, ProductInput, RatedEntry, RunConfig, UsageInput,
    GRACE_TERM,
};
use tollgate_engine::ledger::{self, EntryKind};
use tollgate_store::{
    AuditRecord, BillRunState, BillableAccount, BilledItem, BilledKind, CreditRow, DiscountRow, InvoiceFilter,
    InvoiceKind, InvoiceLineRow, InvoiceRow, InvoiceState, Store, StoreError, INVOICE_PAGE_MAX,
};

use super::bss::{actor, runtime, DatabaseArgs};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct BillRunArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(subcommand)]
    command: Option<BillRunCommand>,
    /// The month the billed cycles close in, YYYY-MM.
    #[arg(long, required = true)]
    cycle: Option<String>,
    /// Compose and print the invoices (one JSON object per line); write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Bill cycles that have not closed yet (their last day is still to come): to bill a
    /// customer who leaves early, or in tests. Without it such a run is refused before it
    /// writes anything (a dry run is not).
    #[arg(long)]
    open_cycles: bool,
    /// Only these invoiced accounts (hierarchy roots), comma-separated.
    #[arg(long, value_delimiter = ',')]
    accounts: Vec<String>,
    /// The run's configuration (JSON: time_zone, issuer, series, rounding_mode,
    /// jurisdiction, tax_profiles, default_tax_profile, chart, suspended_days); defaults
    /// without it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The engine's shard count (default: the data directory's).
    #[arg(long)]
    shards: Option<usize>,
    /// Documents written, and then made final, per transaction: a crash rolls back the
    /// batch under way whole, which the rerun makes again (same invoices, same numbers).
    /// On SQLite a batch holds the database's write lock while it is written: keep it
    /// well under the busy timeout other writers wait (10 s; a batch of 100 takes a
    /// fraction of a second).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1_000))]
    batch: u16,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BillRunCommand {
    /// A run's state and invoices, one JSON object per line (the run first).
    Show {
        #[arg(long)]
        run: String,
    },
    /// A run's reconciliation: per invoiced account, the usage rated in its cycle =
    /// billed + carried over, with the entries behind every difference; then mediation
    /// against the engine: per usage file, records in = rated + rejected + duplicates, and
    /// every record mediation rated is in the engine's ledger with the same amount (and
    /// every mediated ledger entry of those accounts in a rated file), naming the records
    /// lost either way (JSON lines, a summary last).
    Reconcile {
        #[arg(long)]
        run: String,
        /// As for the run (the time zone, the lookback).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The engine's shard count (default: the data directory's).
        #[arg(long)]
        shards: Option<usize>,
        /// Where mediation wrote its outputs (repeatable; default DATA_DIR/mediation/out
        /// when it exists).
        #[arg(long = "mediation-out")]
        mediation_out: Vec<PathBuf>,
    },
    /// Invoices as PDFs: one (`--invoice` with its id or its number `ISSUER/SERIES/N`,
    /// `--out`) or every invoice of a run (`--run`, `--out-dir`, one `ID.pdf` each).
    Pdf {
        #[arg(long, conflicts_with = "run", required_unless_present = "run", requires = "out")]
        invoice: Option<String>,
        #[arg(long, requires = "out_dir")]
        run: Option<String>,
        /// The document template (TOML; the built-in one without it).
        #[arg(long)]
        template: Option<PathBuf>,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Days from the issue date (the day it was made final, UTC) to the due date, for
        /// invoices made final before due dates were stored (others print their own).
        #[arg(long, default_value_t = 30)]
        due_days: u16,
    },
    /// Give a billing account a discount: a percentage (`--percent`) or a fixed amount per
    /// cycle (`--amount` with `--currency`) off one product's charges (`--product`), the
    /// account's, or its whole hierarchy's (`--hierarchy`, on the root), from `--from` up
    /// to `--until` (excluded), days YYYY-MM-DD in the run's time zone; prints it.
    Discount {
        #[arg(long)]
        account: String,
        #[arg(long)]
        id: String,
        #[arg(long, conflicts_with = "amount", required_unless_present = "amount")]
        percent: Option<rust_decimal::Decimal>,
        #[arg(long, requires = "currency")]
        amount: Option<rust_decimal::Decimal>,
        #[arg(long)]
        currency: Option<String>,
        #[arg(long, conflicts_with = "hierarchy")]
        product: Option<String>,
        #[arg(long)]
        hierarchy: bool,
        #[arg(long)]
        from: jiff::civil::Date,
        #[arg(long)]
        until: Option<jiff::civil::Date>,
        #[arg(long, default_value = "Discount")]
        description: String,
        /// The charge type its lines are posted under (a contra-revenue GL account).
        #[arg(long, default_value = "discount")]
        charge_type: String,
    },
    /// Move a discount's end: withdrawn from `--until` on (excluded), or no end with
    /// `--no-end`; invoices made final keep what they took. Prints it.
    EndDiscount {
        #[arg(long)]
        id: String,
        #[arg(long, required_unless_present = "no_end", conflicts_with = "no_end")]
        until: Option<jiff::civil::Date>,
        #[arg(long)]
        no_end: bool,
    },
    /// Change a credit's amount, never below what invoices used of it (that much takes
    /// its unused rest back). Prints it.
    ChangeCredit {
        #[arg(long)]
        id: String,
        #[arg(long)]
        amount: rust_decimal::Decimal,
    },
    /// Give a billing account a credit: taken off its next invoices' charges in its
    /// currency until used up; prints it.
    Credit {
        #[arg(long)]
        account: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        amount: rust_decimal::Decimal,
        #[arg(long)]
        currency: String,
        #[arg(long, default_value = "Credit")]
        description: String,
        #[arg(long, default_value = "credit")]
        charge_type: String,
    },
    /// Issue the credit note that cancels a final invoice whole (every line with its sign
    /// turned), in the credit-note series, final at once; prints it. Issued once per
    /// invoice: asked again, prints the one issued. A part of an invoice is credited with
    /// `bill-run credit` (taken off the next invoice) instead.
    CreditNote {
        /// The invoice: its id or its number (ISSUER/SERIES/N).
        #[arg(long)]
        invoice: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
        /// The credit-note series and the rest (as for the run).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// A run's general-ledger journal (its final invoices) as CSV.
    ExportGl {
        #[arg(long)]
        run: String,
        /// Account codes and the rest (as for the run).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to write the CSV (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// The largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

pub(crate) fn load_config(path: Option<&Path>) -> anyhow::Result<RunConfig> {
    let Some(path) = path else { return Ok(RunConfig::default()) };
    let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    if size > MAX_CONFIG_BYTES {
        bail!("{}: larger than {MAX_CONFIG_BYTES} bytes", path.display());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config: RunConfig = serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    config.validate().with_context(|| format!("{}", path.display()))?;
    Ok(config)
}

pub(crate) fn run(args: &BillRunArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = args.database.open().await?;
        match &args.command {
            Some(BillRunCommand::Show { run }) => show(&store, run).await,
            Some(BillRunCommand::Reconcile { run, config, shards, mediation_out }) => {
                let data_dir = &args.database.data_dir;
                let mut outs = mediation_out.clone();
                if outs.is_empty() && data_dir.join("mediation").join("out").is_dir() {
                    outs.push(data_dir.join("mediation").join("out"));
                }
                reconcile_run(&store, data_dir, run, &load_config(config.as_deref())?, *shards, &outs).await
            }
            Some(BillRunCommand::Pdf { invoice, run, template, out, out_dir, due_days }) => {
                let template = match template {
                    Some(path) => tollgate_invoice_pdf::Template::from_file(path)?,
                    None => tollgate_invoice_pdf::Template::default(),
                };
                let target = match (invoice, run, out, out_dir) {
                    (Some(invoice), _, Some(out), _) => PdfTarget::One { invoice, out },
                    (None, Some(run), _, Some(dir)) => PdfTarget::Run { run, dir },
                    _ => bail!("give --invoice with --out, or --run with --out-dir"),
                };
                pdf(&store, target, &template, *due_days).await
            }
            Some(command @ (BillRunCommand::Discount { .. } | BillRunCommand::Credit { .. })) => {
                add_reduction(&store, command).await
            }
            Some(BillRunCommand::EndDiscount { id, until, no_end: _ }) => {
                let until = until.map(|day| day.to_string());
                let now = jiff::Timestamp::now();
                let changed = tollgate_receivables::end_discount(&store, &actor(), id, None, until, now).await?;
                println!("{}", changed.value);
                Ok(ExitCode::SUCCESS)
            }
            Some(BillRunCommand::ChangeCredit { id, amount }) => {
                let now = jiff::Timestamp::now();
                let changed = tollgate_receivables::change_credit(&store, &actor(), id, None, *amount, now).await?;
                println!("{}", changed.value);
                Ok(ExitCode::SUCCESS)
            }
            Some(BillRunCommand::CreditNote { invoice, reason, config }) => {
                credit_note(&store, invoice, reason, &load_config(config.as_deref())?).await
            }
            Some(BillRunCommand::ExportGl { run, config, output }) => {
                export_gl(&store, run, &load_config(config.as_deref())?, output.as_deref()).await
            }
            None => {
                let cycle = args.cycle.clone().context("--cycle is required")?;
                // A configuration that does not load fails the run, alarm included.
                let config = match load_config(args.config.as_deref()) {
                    Ok(config) => config,
                    Err(error) => {
                        let failed: anyhow::Result<ExitCode> = Err(error);
                        if !args.dry_run {
                            record_outcome(&store, &run_id(&cycle, &args.accounts).0, &failed).await;
                        }
                        return failed;
                    }
                };
                let request = BillRequest {
                    cycle,
                    accounts: args.accounts.clone(),
                    dry_run: args.dry_run,
                    open_cycles: args.open_cycles,
                    config,
                    data_dir: args.database.data_dir.clone(),
                    shards: args.shards,
                    batch: usize::from(args.batch),
                    actor: actor(),
                };
                let log = RunLog::default();
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                let billed = bill(&store, &request, &log, &mut out).await;
                if !request.dry_run {
                    record_outcome(&store, &request.run_id().0, &billed).await;
                }
                billed.map(|()| ExitCode::SUCCESS)
            }
        }
    })
}

/// What a bill run is asked to do, from the command line or the API.
#[derive(Debug, Clone)]
pub(crate) struct BillRequest {
    /// The month the billed cycles close in, `YYYY-MM`.
    pub(crate) cycle: String,
    /// The invoiced accounts (hierarchy roots) billed; empty: every one.
    pub(crate) accounts: Vec<String>,
    /// Compose the documents and write them to the output as JSON lines; store nothing.
    pub(crate) dry_run: bool,
    /// Bill cycles that have not closed yet; without it such a run is refused.
    pub(crate) open_cycles: bool,
    pub(crate) config: RunConfig,
    pub(crate) data_dir: PathBuf,
    /// The engine's shard count (`None`: the data directory's).
    pub(crate) shards: Option<usize>,
    /// Documents written, and then made final, per transaction.
    pub(crate) batch: usize,
    /// Who the audit trail names.
    pub(crate) actor: String,
}

impl BillRequest {
    /// The run's id and scope ([`run_id`]).
    pub(crate) fn run_id(&self) -> (String, String) {
        run_id(&self.cycle, &self.accounts)
    }
}

/// Where a bill run tells what it does, a line at a time: standard error on the command
/// line, the log in `tollgate serve`, whose API and `/metrics` read the counts.
#[derive(Debug, Default)]
pub(crate) struct RunLog {
    /// Lines go to the log (`tracing`) rather than standard error.
    pub(crate) to_log: bool,
    /// Documents drafted (composed, in a dry run), statements among them, hierarchies
    /// billed before (by an earlier or a concurrent run), documents finalised.
    pub(crate) drafted: AtomicU64,
    pub(crate) statements: AtomicU64,
    pub(crate) already: AtomicU64,
    pub(crate) finalised: AtomicU64,
    /// Set to stop the run between two batches ([`Stopped`]); what it wrote stays, and a
    /// rerun resumes it.
    pub(crate) stop: std::sync::atomic::AtomicBool,
}

/// A run ended because it was asked to stop ([`RunLog::stop`]), not because it failed.
#[derive(Debug)]
pub(crate) struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the bill run was stopped between two batches (the server is stopping); started again, it resumes")
    }
}

impl std::error::Error for Stopped {}

impl RunLog {
    /// [`Stopped`] once the run was asked to stop.
    fn check_stop(&self) -> anyhow::Result<()> {
        if self.stop.load(Relaxed) {
            return Err(Stopped.into());
        }
        Ok(())
    }

    fn say(&self, line: std::fmt::Arguments<'_>) {
        if self.to_log {
            tracing::info!(target: "tollgate::bill_run", "{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

/// A run that fails records why on its row ([`Store::fail_bill_run`]: every server and
/// `bill-run show` tell it, until an attempt gets further) and raises an alarm on
/// `bill-run/RUN` (major; the error is the specific problem); a later run of the same
/// cycle and accounts that ends clears it. A run that could not open its store records
/// nothing, nor does a dry run.
pub(crate) async fn record_outcome<T>(store: &Store, run: &str, billed: &anyhow::Result<T>) {
    use super::alarm::source::BILL_RUN;
    if let Err(error) = billed {
        let why = format!("{error:#}");
        if let Err(store_error) = store.fail_bill_run(run, &why, jiff::Timestamp::now()).await {
            tracing::error!(%run, error = %store_error, "the bill run's failure could not be recorded");
        }
    }
    let object = format!("bill-run/{run}");
    let raise = billed.as_ref().err().map(|error| {
        let problem = format!("bill run {run} failed: {error:#}");
        BILL_RUN.report(&object, tollgate_alarms::PerceivedSeverity::Major, &problem)
    });
    let alarms = tollgate_alarms::Alarms::new(store.clone());
    super::alarm::record(&alarms, &object, BILL_RUN, raise).await;
}

/// `--shards`, else the data directory's recorded count, else the default.
fn shard_count(data_dir: &Path, given: Option<usize>) -> anyhow::Result<usize> {
    let recorded = tollgate_engine::layout::read(data_dir)
        .with_context(|| format!("reading the layout of {}", data_dir.display()))?;
    Ok(given.or(recorded.map(|layout| layout.shards)).unwrap_or(super::engine_setup::DEFAULT_SHARDS))
}

/// The longest account list a run's id spells out; a longer one is named by its digest.
const MAX_SCOPE_IN_ID: usize = 200;

/// The run's id and scope: the cycle, and the accounts (sorted, comma-separated) when not
/// all; past [`MAX_SCOPE_IN_ID`] characters the id names them by their digest
/// (`2026-11:#` and 32 hex digits), so the id stays a short key (the scope column keeps
/// the list), and the same accounts always make the same id.
/// When the last of the cycles closing in `year`-`month` with `cycle_days` (the bill
/// cycle days of the hierarchies' roots) ends, if that is after `now`.
pub(crate) fn open_until(
    cycle_days: impl IntoIterator<Item = u8>,
    year: i16,
    month: i8,
    zone: &jiff::tz::TimeZone,
    now: jiff::Timestamp,
) -> anyhow::Result<Option<jiff::Timestamp>> {
    let mut latest = None;
    let days: BTreeSet<u8> = cycle_days.into_iter().collect();
    for day in days {
        let end = closing_cycle(year, month, day, zone.clone())?.ends_at()?;
        if end > now && latest.is_none_or(|latest| end > latest) {
            latest = Some(end);
        }
    }
    Ok(latest)
}

/// Why a run of `cycle` is refused while a cycle it bills ends at `end`, still to come.
pub(crate) fn not_closed(cycle: &str, end: jiff::Timestamp) -> String {
    format!(
        "cycle {cycle} has not closed: a cycle it bills ends at {end}, so its invoices would bill days still to come"
    )
}

fn run_id(cycle: &str, accounts: &[String]) -> (String, String) {
    if accounts.is_empty() {
        return (cycle.to_owned(), "all".to_owned());
    }
    let mut sorted = accounts.to_vec();
    sorted.sort();
    sorted.dedup();
    let scope = sorted.join(",");
    if scope.len() > MAX_SCOPE_IN_ID {
        let digest = tollgate_engine::RecordKey::of(&scope).0;
        return (format!("{cycle}:#{digest:032x}"), scope);
    }
    (format!("{cycle}:{scope}"), scope)
}

/// The hierarchies of `accounts` (root first), in root order.
fn hierarchies(accounts: Vec<BillableAccount>) -> Vec<Vec<BillableAccount>> {
    let mut out: Vec<Vec<BillableAccount>> = Vec::new();
    for account in accounts {
        match out.last_mut() {
            Some(group) if group[0].root_id == account.root_id => group.push(account),
            _ => out.push(vec![account]),
        }
    }
    out
}

/// Bills `request`'s cycle (or, a dry run, writes the composed documents to `out`),
/// telling `log` what it does.
pub(crate) async fn bill(
    store: &Store,
    request: &BillRequest,
    log: &RunLog,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let cycle_text = request.cycle.clone();
    let (year, month) = parse_cycle(&cycle_text)?;
    let config = &request.config;
    let zone = config.zone()?;
    let data_dir = &request.data_dir;
    let shards = shard_count(data_dir, request.shards)?;
    let (run, scope) = request.run_id();
    let roots = (!request.accounts.is_empty()).then_some(request.accounts.as_slice());
    let groups = hierarchies(store.billable_accounts(roots).await?);
    if let Some(roots) = roots {
        for root in roots {
            if !groups.iter().any(|group| &group[0].id == root) {
                bail!("--accounts: {root} is not the root of a hierarchy");
            }
        }
    }
    // Final invoices for days still to come cannot be taken back: a cycle that has not
    // closed (a mistyped year, the current month) is billed only when asked to.
    if !request.dry_run && !request.open_cycles {
        let days = groups.iter().map(|group| group[0].bill_cycle_day);
        if let Some(end) = open_until(days, year, month, &zone, jiff::Timestamp::now())? {
            bail!("{} (pass --open-cycles to bill it now)", not_closed(&cycle_text, end));
        }
    }
    let mut done_already = false;
    if !request.dry_run {
        let mut tx = store.begin().await?;
        let opened = tx.open_bill_run(&run, &cycle_text, &scope, jiff::Timestamp::now()).await?;
        tx.commit().await?;
        if opened.state == BillRunState::Done {
            log.say(format_args!("bill run {run} is done already"));
            done_already = true;
        }
    }
    super::usage::catch_up_ledger(data_dir, shards)?;
    let mut mixed = 0u64;
    // The hierarchies to bill, each with its cycle and the start of its usage window
    // (usage is read from a few cycles before: what their runs did not bill, because it
    // arrived late, is billed now).
    let roots: Vec<String> = groups.iter().map(|group| group[0].id.clone()).collect();
    let invoiced = if request.dry_run { BTreeSet::new() } else { store.invoiced_accounts(&roots, &cycle_text).await? };
    let mut pending = Vec::with_capacity(groups.len());
    for group in &groups {
        let root = &group[0];
        if invoiced.contains(&root.id) {
            log.already.fetch_add(1, Relaxed);
            continue;
        }
        let cycle = closing_cycle(year, month, root.bill_cycle_day, zone.clone())
            .with_context(|| format!("account {}", root.id))?;
        let from = usage_window_start(year, month, root.bill_cycle_day, config.usage_lookback_cycles, zone.clone())?;
        pending.push((group.as_slice(), cycle, from));
    }
    let spans = pending.iter().map(|(_, cycle, from)| Ok((*from, cycle.ends_at()?)));
    let mut ledger = LedgerChunks::new(data_dir, shards, covering(spans)?, &pending, |(group, _, _)| group)?;
    let batch_size = request.batch.max(1);
    let mut batch = Vec::with_capacity(batch_size);
    // A batch of hierarchies at a time: what the store has for them read in a few queries,
    // their documents composed, then written in one transaction.
    for (number, chunk) in pending.chunks(batch_size).enumerate() {
        log.check_stop()?;
        let accounts: Vec<String> =
            chunk.iter().flat_map(|(group, _, _)| group.iter().map(|account| account.id.clone())).collect();
        let stored = Stored::load(store, &accounts).await?;
        let mut composed = Vec::with_capacity(chunk.len());
        for (offset, (group, cycle, from)) in chunk.iter().enumerate() {
            let root = &group[0];
            // A prepaid root with accounts that pay otherwise: neither a statement (their
            // usage would never become a receivable) nor an invoice (its fees are debited
            // at renewal). Left, saying so, until the hierarchy is consistent.
            if root.account_type == "prepaid" && group.iter().any(|account| account.account_type != "prepaid") {
                log.say(format_args!(
                    "hierarchy {}: a prepaid root with accounts that are not prepaid is not billed",
                    root.id
                ));
                mixed += 1;
                continue;
            }
            let entries = ledger.of(&pending, number * batch_size + offset, |(group, _, _)| group)?;
            let inputs = account_inputs(&stored, group, cycle, *from, entries)?;
            let keys = lookup_keys(cycle, &inputs)?;
            composed.push((offset, inputs, keys));
        }
        let all_keys: Vec<String> = composed.iter().flat_map(|(_, _, keys)| keys.iter().cloned()).collect();
        let amounts = store.billed_amounts(&all_keys).await?;
        for (offset, mut inputs, keys) in composed {
            let (group, cycle, _) = &chunk[offset];
            let root = &group[0];
            // A prepaid hierarchy gets a statement: the same document in its own series,
            // with nothing to pay; its fees are debited from the prepaid balances when it
            // is made final.
            let statement = root.account_type == "prepaid";
            let billed: BTreeSet<String> = keys.iter().filter(|key| amounts.contains_key(*key)).cloned().collect();
            // What in-advance prices charged for this cycle, which their corrections need.
            let charged: std::collections::BTreeMap<String, rust_decimal::Decimal> = billed
                .iter()
                .filter(|key| key.starts_with("recurring:"))
                .map(|key| (key.clone(), amounts[key]))
                .collect();
            for input in &mut inputs {
                input.billed_amounts = charged.clone();
            }
            let Some(planned) = plan_invoice(cycle, config, root.tax_profile_id.as_deref(), &inputs, &billed)
                .with_context(|| format!("account {}", root.id))?
            else {
                continue;
            };
            let id = format!("{}-{cycle_text}-{}", if statement { "st" } else { "inv" }, root.id);
            let row = invoice_row(&id, &run, root, &cycle_text, config, &planned.invoice, statement)?;
            if request.dry_run {
                writeln!(
                    out,
                    "{}",
                    json!({"id": id, "account": root.id, "contentHash": row.content_hash,
                    "currency": row.currency, "net": row.net.to_string(), "tax": row.tax.to_string(),
                    "gross": row.gross.to_string(), "invoice": row.doc})
                )?;
                log.drafted.fetch_add(1, Relaxed);
                log.statements.fetch_add(u64::from(statement), Relaxed);
                continue;
            }
            let items: Vec<BilledItem> = planned
                .billed
                .iter()
                .map(|key| BilledItem {
                    item_key: key.key.clone(),
                    kind: match key.kind {
                        PriceKindOrUsage::Recurring => BilledKind::Recurring,
                        PriceKindOrUsage::OneOff => BilledKind::OneOff,
                        PriceKindOrUsage::Usage => BilledKind::Usage,
                    },
                    billing_account_id: key.account_id.clone(),
                    amount: key.amount,
                    currency: key.currency.clone(),
                })
                .collect();
            let after = json!({"id": id, "account": root.id, "cycle": cycle_text, "contentHash": row.content_hash,
                "gross": row.gross.to_string(), "currency": row.currency});
            let lines = lines_of(&planned.invoice)?;
            batch.push(NewDraft {
                root: root.id.clone(),
                row,
                lines,
                items,
                credits_used: planned.credits_used,
                after,
            });
        }
        write_drafts(store, &run, &request.actor, log, &mut batch).await?;
    }
    let (drafted, statements, already) =
        (log.drafted.load(Relaxed), log.statements.load(Relaxed), log.already.load(Relaxed));
    out.flush()?;
    if request.dry_run {
        log.say(format_args!(
            "bill run {run} (dry run): {drafted} documents composed, {statements} of them prepaid statements, {mixed} mixed hierarchies left"
        ));
        return Ok(());
    }
    // A run done already that drafted nothing now (no hierarchy joined its cycle since)
    // has nothing to number: it stays done, never shown finalising again.
    let finalised = if done_already && drafted == 0 {
        0
    } else {
        let finalised = finalise(store, &run, config, batch_size, &request.actor, log).await?;
        let mut tx = store.begin().await?;
        tx.save_bill_run(&run, BillRunState::Done, None, jiff::Timestamp::now()).await?;
        tx.commit().await?;
        finalised
    };
    log.say(format_args!(
        "bill run {run}: {drafted} drafted ({statements} prepaid statements), {already} billed before, {finalised} finalised, {mixed} mixed hierarchies left"
    ));
    Ok(())
}

/// A composed draft, waiting for its batch's transaction.
struct NewDraft {
    root: String,
    row: InvoiceRow,
    lines: Vec<InvoiceLineRow>,
    items: Vec<BilledItem>,
    credits_used: std::collections::BTreeMap<String, rust_decimal::Decimal>,
    /// Its audit record's document.
    after: Value,
}

/// Writes the `drafts` waiting (and empties it) in one transaction, audited, the run's
/// progress with them. If another run drafted one of them meanwhile (a conflict), the
/// batch is rolled back and written one draft a transaction, that one left out: its
/// invoice stands.
async fn write_drafts(
    store: &Store,
    run: &str,
    actor: &str,
    log: &RunLog,
    drafts: &mut Vec<NewDraft>,
) -> anyhow::Result<()> {
    let written = |draft: &NewDraft| {
        log.drafted.fetch_add(1, Relaxed);
        log.statements.fetch_add(u64::from(draft.row.statement), Relaxed);
        log.say(format_args!("drafted {}", draft.row.id));
    };
    match write_draft_batch(store, run, actor, drafts).await {
        Ok(()) => drafts.iter().for_each(written),
        Err(StoreError::Conflict { .. }) => {
            for draft in drafts.iter() {
                match write_draft_batch(store, run, actor, std::slice::from_ref(draft)).await {
                    Ok(()) => written(draft),
                    Err(StoreError::Conflict { .. }) => {
                        log.already.fetch_add(1, Relaxed);
                    }
                    Err(error) => return Err(draft_error(error)),
                }
            }
        }
        Err(error) => return Err(draft_error(error)),
    }
    drafts.clear();
    Ok(())
}

/// A batch's drafts not written: a credit lowered (`bill-run change-credit`, the API)
/// after the batch read it leaves less than an invoice took, which the store refuses;
/// the run fails with that said (its batch written not at all), and started again it
/// composes with the credit as it is now.
fn draft_error(error: StoreError) -> anyhow::Error {
    match error {
        StoreError::Invalid { field: "used", reason } => anyhow::anyhow!(
            "a credit changed while the run composed its invoices ({reason}): nothing of the batch was written; \
             start the run again, it resumes with the credit as it is now"
        ),
        other => other.into(),
    }
}

async fn write_draft_batch(store: &Store, run: &str, actor: &str, drafts: &[NewDraft]) -> Result<(), StoreError> {
    let Some(last) = drafts.last() else { return Ok(()) };
    let now = jiff::Timestamp::now();
    let mut tx = store.begin().await?;
    for draft in drafts {
        tx.insert_draft_invoice(&draft.row, &draft.lines, &draft.items, now).await?;
        // What the invoice took of each credit, with it.
        for (credit, used) in &draft.credits_used {
            tx.use_credit(credit, *used).await?;
        }
        let record = AuditRecord {
            actor,
            action: "create",
            entity_type: "CustomerBill",
            entity_id: &draft.row.id,
            before: None,
            after: Some(&draft.after),
        };
        tx.audit(record, now).await?;
    }
    tx.save_bill_run(run, BillRunState::Drafting, Some(&last.root), now).await?;
    tx.commit().await
}

/// Numbers the run's drafts, `batch` a transaction, in account order. A crash rolls
/// back the batch under way whole (numbers included), and the rerun numbers the same
/// drafts in the same order: the numbers stay gap-free and as an uninterrupted run's.
async fn finalise(
    store: &Store,
    run: &str,
    config: &RunConfig,
    batch: usize,
    actor: &str,
    log: &RunLog,
) -> anyhow::Result<u64> {
    let mut tx = store.begin().await?;
    tx.save_bill_run(run, BillRunState::Finalising, None, jiff::Timestamp::now()).await?;
    tx.commit().await?;
    let filter =
        InvoiceFilter { bill_run_id: Some(run.to_owned()), state: Some("draft".into()), ..InvoiceFilter::default() };
    let mut finalised = 0;
    loop {
        let (mut drafts, _) = store.invoice_list(&filter, 0, INVOICE_PAGE_MAX).await?;
        if drafts.is_empty() {
            return Ok(finalised);
        }
        drafts.sort_by(|a, b| a.billing_account_id.cmp(&b.billing_account_id));
        for batch in drafts.chunks(batch) {
            log.check_stop()?;
            // What each draft's finalising writes, read first: the transaction only writes.
            let now = jiff::Timestamp::now();
            let invoices: Vec<String> =
                batch.iter().filter(|draft| !draft.statement).map(|draft| draft.id.clone()).collect();
            let billed = store.billed_items_of_invoices(&invoices).await?;
            let mut reads = Vec::with_capacity(batch.len());
            for draft in batch {
                // A statement's items were not read: it releases nothing.
                let releases = billed.get(&draft.id).map(|items| releases(items)).transpose()?.unwrap_or_default();
                let (renewals, credits) =
                    if draft.statement { renewals(store, draft, config, log, now).await? } else { Default::default() };
                reads.push((releases, renewals, credits));
            }
            let mut tx = store.begin().await?;
            let series = batch.iter().map(|draft| (draft.issuer.clone(), draft.series.clone())).collect();
            tx.lock_invoice_series(&series).await?;
            let accounts: Vec<String> = batch
                .iter()
                .filter(|draft| !draft.statement)
                .map(|draft| draft.billing_account_id.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let paying = tx.lock_receivables_of(&accounts).await?;
            // The batch's numbers in a few statements, in its order.
            let ids: Vec<&str> = batch.iter().map(|draft| draft.id.as_str()).collect();
            let numbers = tx.finalise_invoices(&ids, now).await?;
            let mut done = Vec::with_capacity(batch.len());
            for ((draft, (releases, renewals, credits)), (number, now_final)) in batch.iter().zip(&reads).zip(numbers) {
                // Made final by another run since this one listed the drafts: that run
                // released its usage and audited it in the same transaction; nothing to
                // do or to report here.
                if !now_final {
                    continue;
                }
                finalise_one(&mut tx, actor, draft, number, releases, renewals, credits, now).await?;
                // An invoice below zero owes nothing: what it gives back is credit on the
                // account, which pays what the account owes (settled below).
                let carried = !draft.statement
                    && draft.gross < rust_decimal::Decimal::ZERO
                    && tollgate_receivables::carry_credit(
                        &mut tx,
                        actor,
                        &draft.billing_account_id,
                        &draft.currency,
                        -draft.gross,
                        &draft.id,
                        jiff::tz::TimeZone::UTC.to_datetime(now).date(),
                        now,
                    )
                    .await?
                    .is_some();
                // Credit on the account (payments received before) pays the new invoice, in
                // the same transaction; a statement owes nothing, nor does an account
                // that never paid anything have credit.
                let settled = if draft.statement || !(carried || paying.contains(&draft.billing_account_id)) {
                    Vec::new()
                } else {
                    tollgate_receivables::settle_account(&mut tx, actor, &draft.billing_account_id, now).await?
                };
                done.push((draft, number, settled));
            }
            tx.commit().await?;
            for (draft, number, settled) in done {
                if !settled.is_empty() {
                    let paid: rust_decimal::Decimal = settled.iter().map(|part| part.amount).sum();
                    log.say(format_args!("{}: {paid} {} of credit on account applied", draft.id, draft.currency));
                }
                finalised += 1;
                log.finalised.fetch_add(1, Relaxed);
                log.say(format_args!("finalised {} as {}/{}/{number}", draft.id, draft.issuer, draft.series));
            }
        }
    }
}

/// What follows `draft`'s being made final as `number` in `tx`: the usage it bills
/// released from the engine's running balances, or (a statement) its renewals opened and
/// what its fee lines owe given back, all through the outbox, audited.
#[allow(clippy::too_many_arguments, reason = "one finalisation's parts")]
async fn finalise_one(
    tx: &mut tollgate_store::Tx,
    actor: &str,
    draft: &InvoiceRow,
    number: i64,
    releases: &std::collections::BTreeMap<(String, u64), rust_decimal::Decimal>,
    renewals: &[tollgate_store::RenewalRow],
    credits: &[(String, u64, rust_decimal::Decimal)],
    now: jiff::Timestamp,
) -> anyhow::Result<()> {
    // The usage it bills leaves the engine's running balance for the receivable, through
    // the outbox, in the finalising transaction: the credit limit frees up exactly once
    // per invoice and account.
    let bill_no = format!("{}/{}/{number}", draft.issuer, draft.series);
    for ((billing_account, engine_account), amount) in releases {
        let operation = tollgate_customers::EngineOperation::BillRelease {
            account: *engine_account,
            amount: *amount,
            invoice: bill_no.clone(),
        };
        let key = format!("bss:invoice:{}:release:{engine_account}", draft.id);
        tollgate_customers::enqueue_operation(tx, &operation, &key, billing_account, now).await?;
    }
    let after =
        json!({"id": draft.id, "state": "final", "issuer": draft.issuer, "series": draft.series, "number": number});
    let record = AuditRecord {
        actor,
        action: "finalise",
        entity_type: "CustomerBill",
        entity_id: &draft.id,
        before: None,
        after: Some(&after),
    };
    tx.audit(record, now).await?;
    // A statement's fees are debited from each account's prepaid balance by the engine,
    // through the outbox, in the finalising transaction: once per statement and account
    // (the renewal row and its first attempt commit together).
    tollgate_receivables::open_renewals(tx, renewals, &bill_no, now).await?;
    for (billing_account, engine_account, amount) in credits {
        let operation = tollgate_customers::EngineOperation::StatementCredit {
            account: *engine_account,
            amount: *amount,
            statement: bill_no.clone(),
        };
        let key = format!("bss:statement-credit:{}:{billing_account}", draft.id);
        tollgate_customers::enqueue_operation(tx, &operation, &key, billing_account, now).await?;
    }
    Ok(())
}

/// The fees of prepaid statement `draft` per account (its lines that are not usage or
/// allowances, tax included), each a renewal due when the next cycle starts (or `now`,
/// if later) with the
/// grace of the account's offerings (the shortest [`GRACE_TERM`] term among them), else
/// the configuration's.
///
/// An account whose fee lines add up below zero (an in-advance fee corrected, a credit or
/// discount larger than its fees) is owed that much: it is in the second list, as (billing
/// account, engine account, amount), given back to its prepaid balance.
async fn renewals(
    store: &Store,
    draft: &InvoiceRow,
    config: &RunConfig,
    log: &RunLog,
    now: jiff::Timestamp,
) -> anyhow::Result<(Vec<tollgate_store::RenewalRow>, Vec<(String, u64, rust_decimal::Decimal)>)> {
    let mut fees: std::collections::BTreeMap<String, rust_decimal::Decimal> = Default::default();
    for line in store.invoice_lines(&draft.id).await? {
        if matches!(line.kind.as_str(), "usage" | "allowance") {
            continue;
        }
        // The prepaid balance is in the statement's currency; lines in another (a price
        // in another currency) cannot be debited from it, and are shown only.
        if line.currency != draft.currency {
            log.say(format_args!(
                "statement {}: a {} line of account {} in {} is not debited from the prepaid balance in {}",
                draft.id, line.kind, line.account_id, line.currency, draft.currency
            ));
            continue;
        }
        *fees.entry(line.account_id.clone()).or_default() += line.gross;
    }
    let mut credits = Vec::new();
    for (account, amount) in &fees {
        if *amount < rust_decimal::Decimal::ZERO {
            let Some(row) = store.billing_account(account).await? else {
                bail!("statement {}: no billing account {account}", draft.id)
            };
            credits.push((account.clone(), row.value.engine_account_id, -*amount));
        }
    }
    fees.retain(|_, amount| *amount > rust_decimal::Decimal::ZERO);
    // Due when the cycle after the statement's starts (its in-advance fees pay for that
    // cycle), or on the day the statement is made final if that is later: the grace is
    // counted from the first time the balance is asked for the fees.
    let period_end: jiff::civil::Date =
        draft.period_until.parse().with_context(|| format!("statement {}: period_until", draft.id))?;
    let renewal_on = period_end.max(jiff::tz::Offset::UTC.to_datetime(now).date());
    let accounts: Vec<String> = fees.keys().cloned().collect();
    let prices = store.product_prices(&accounts).await?;
    let mut renewals = Vec::with_capacity(fees.len());
    for (account, amount) in fees {
        let Some(row) = store.billing_account(&account).await? else {
            bail!("statement {}: no billing account {account}", draft.id)
        };
        let offerings: BTreeSet<&str> = prices
            .iter()
            .filter(|price| price.billing_account_id == account)
            .map(|price| price.offering_id.as_str())
            .collect();
        let mut grace = None::<u16>;
        for offering in offerings {
            if let Some(item) = store.catalogue_item(offering).await? {
                // A malformed term is the catalogue's mistake: the run goes on with the
                // configured grace for it rather than stop every later document.
                match grace_term(&item.value.doc) {
                    Ok(Some(days)) => grace = Some(grace.map_or(days, |known| known.min(days))),
                    Ok(None) => {}
                    Err(error) => {
                        log.say(format_args!("offering {offering}: {error:#}; its grace is prepaid_grace_days"))
                    }
                }
            }
        }
        let grace = grace.unwrap_or(config.prepaid_grace_days);
        let grace_until = renewal_on
            .checked_add(jiff::Span::new().days(i64::from(grace)))
            .with_context(|| format!("statement {}: {grace} days of grace", draft.id))?;
        renewals.push(tollgate_store::RenewalRow {
            invoice_id: draft.id.clone(),
            billing_account_id: account,
            root_id: draft.root_id.clone(),
            engine_account_id: row.value.engine_account_id,
            currency: draft.currency.clone(),
            amount,
            renewal_on,
            grace_until,
            state: tollgate_store::RenewalState::Pending,
            attempts: 1,
            reason: None,
            paid_at: None,
            suspend_order_ids: None,
            suspended_at: None,
            lifted_order_ids: None,
            lifted_at: None,
            created_at: draft.created_at,
            updated_at: draft.created_at,
        });
    }
    Ok((renewals, credits))
}

/// An offering's prepaid grace in days: its `productOfferingTerm` named [`GRACE_TERM`],
/// whose `duration` is whole days (`{"amount": 3, "units": "days"}`), 0 to
/// [`tollgate_billing::MAX_GRACE_DAYS`].
fn grace_term(offering: &Value) -> anyhow::Result<Option<u16>> {
    let terms = offering.get("productOfferingTerm").and_then(Value::as_array);
    let Some(term) =
        terms.into_iter().flatten().find(|term| term.get("name").and_then(Value::as_str) == Some(GRACE_TERM))
    else {
        return Ok(None);
    };
    let duration = term.get("duration").context("productOfferingTerm prepaidGracePeriod: no duration")?;
    let units = duration.get("units").and_then(Value::as_str).unwrap_or_default();
    if !matches!(units, "day" | "days" | "Day" | "Days") {
        bail!("productOfferingTerm {GRACE_TERM}: duration.units {units:?} is not days");
    }
    let days = duration
        .get("amount")
        .and_then(Value::as_u64)
        .and_then(|days| u16::try_from(days).ok())
        .filter(|days| *days <= tollgate_billing::MAX_GRACE_DAYS)
        .with_context(|| {
            format!(
                "productOfferingTerm {GRACE_TERM}: duration.amount is not 0 to {} days",
                tollgate_billing::MAX_GRACE_DAYS
            )
        })?;
    Ok(Some(days))
}

/// The usage an invoice bills (`items`), per billing account and engine account (the
/// engine charged it: positive), from its billed items' keys `usage:{engine account}:{lsn}:{n}`.
fn releases(items: &[BilledItem]) -> anyhow::Result<std::collections::BTreeMap<(String, u64), rust_decimal::Decimal>> {
    let mut releases: std::collections::BTreeMap<(String, u64), rust_decimal::Decimal> = Default::default();
    for item in items {
        if item.kind != tollgate_store::BilledKind::Usage {
            continue;
        }
        let engine = item
            .item_key
            .split(':')
            .nth(1)
            .and_then(|account| account.parse::<u64>().ok())
            .with_context(|| format!("billed item {:?}: no engine account in its key", item.item_key))?;
        *releases.entry((item.billing_account_id.clone(), engine)).or_default() += item.amount;
    }
    releases.retain(|_, amount| !amount.is_zero());
    Ok(releases)
}

/// The smallest `[from, until)` (Unix seconds) that covers every span; `(0, 0)` for none.
fn covering(
    spans: impl Iterator<Item = anyhow::Result<(jiff::Timestamp, jiff::Timestamp)>>,
) -> anyhow::Result<(i64, i64)> {
    let mut window: Option<(i64, i64)> = None;
    for span in spans {
        let (from, until) = span?;
        let (from, until) = (from.as_second(), until.as_second());
        window = Some(window.map_or((from, until), |(a, b)| (a.min(from), b.max(until))));
    }
    Ok(window.unwrap_or_default())
}

/// Hierarchies read from the ledger at once at most: a bill run of a million accounts
/// cannot scan the period's files once per account.
const LEDGER_CHUNK: usize = 1_000;
/// Ledger entries held at once at most (a chunk ends before it would pass this, unless
/// one hierarchy alone has more): heavy users must not make a chunk gigabytes.
const LEDGER_CHUNK_ENTRIES: u64 = 1_000_000;

/// Where each chunk of items of `sizes` (entries each) starts: at most `max_items` items
/// and `max_entries` entries a chunk, but never an empty chunk (an item larger than
/// `max_entries` is a chunk of its own).
fn chunk_starts(sizes: impl Iterator<Item = u64>, max_items: usize, max_entries: u64) -> Vec<usize> {
    let mut starts = vec![0];
    let (mut held, mut entries) = (0usize, 0u64);
    for (index, size) in sizes.enumerate() {
        if held > 0 && (held == max_items || entries.saturating_add(size) > max_entries) {
            starts.push(index);
            (held, entries) = (0, 0);
        }
        held += 1;
        entries = entries.saturating_add(size);
    }
    starts
}

/// The ledger entries of a run's hierarchies, read a chunk at a time (one pass over the
/// period's files of their shards each), over the run's whole window: up to
/// [`LEDGER_CHUNK`] hierarchies and [`LEDGER_CHUNK_ENTRIES`] entries, as counted first
/// from the files' fixed-width columns (`ledger::totals`).
struct LedgerChunks<'a> {
    data_dir: &'a Path,
    shards: usize,
    window: (i64, i64),
    /// The index of each chunk's first item, ascending, from 0.
    starts: Vec<usize>,
    chunk: Option<usize>,
    entries: std::collections::HashMap<u64, Vec<tollgate_engine::ledger::LedgerEntry>>,
}

impl<'a> LedgerChunks<'a> {
    fn new<T>(
        data_dir: &'a Path,
        shards: usize,
        window: (i64, i64),
        items: &[T],
        group: impl Fn(&T) -> &[BillableAccount],
    ) -> anyhow::Result<LedgerChunks<'a>> {
        let counts = ledger::totals(data_dir, shards, window.0, window.1)?;
        let sizes = items.iter().map(|item| {
            group(item)
                .iter()
                .map(|account| counts.get(&account.engine_account_id).map_or(0, |totals| totals.entries))
                .sum::<u64>()
        });
        let starts = chunk_starts(sizes, LEDGER_CHUNK, LEDGER_CHUNK_ENTRIES);
        Ok(LedgerChunks { data_dir, shards, window, starts, chunk: None, entries: Default::default() })
    }

    /// The entries of the chunk that holds `items[index]` (whose hierarchy `group` gives),
    /// by engine account.
    fn of<T>(
        &mut self,
        items: &[T],
        index: usize,
        group: impl Fn(&T) -> &[BillableAccount],
    ) -> anyhow::Result<&std::collections::HashMap<u64, Vec<tollgate_engine::ledger::LedgerEntry>>> {
        let chunk = self.starts.partition_point(|start| *start <= index).saturating_sub(1);
        if self.chunk != Some(chunk) {
            let start = self.starts[chunk];
            let end = self.starts.get(chunk + 1).copied().unwrap_or(items.len()).min(items.len());
            let accounts: std::collections::HashSet<u64> = items[start..end]
                .iter()
                .flat_map(|item| group(item).iter().map(|account| account.engine_account_id))
                .collect();
            let (from, until) = self.window;
            self.entries = ledger::accounts_entries(self.data_dir, self.shards, &accounts, from, until)?;
            self.chunk = Some(chunk);
        }
        Ok(&self.entries)
    }
}

/// What each account of a hierarchy has: products with prices, and usage entries (from
/// `ledger`, by engine account) posted from `from` to the cycle's end.
fn account_inputs(
    stored: &Stored,
    group: &[BillableAccount],
    cycle: &tollgate_billing::BillingCycle,
    from: jiff::Timestamp,
    ledger: &std::collections::HashMap<u64, Vec<tollgate_engine::ledger::LedgerEntry>>,
) -> anyhow::Result<Vec<AccountInput>> {
    let until = cycle.ends_at()?;
    let mut inputs = Vec::with_capacity(group.len());
    for account in group {
        let products = Stored::of(&stored.prices, &account.id)
            .iter()
            .map(|price| {
                let field = format!("price {} chargeTiming", price.price_id);
                Ok(ProductInput {
                    product_id: price.product_id.clone(),
                    order_id: price.order_id.clone(),
                    price_id: price.price_id.clone(),
                    description: price.price_name.clone(),
                    kind: PriceKind::from_tmf(&price.price_type),
                    amount: price.amount,
                    currency: price.currency.clone(),
                    started_at: price.started_at,
                    terminated_at: price.terminated_at,
                    changed_at: price.changed_at,
                    suspended: price.suspended,
                    timing: ChargeTiming::from_tmf(price.charge_timing.as_deref(), &field)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut usage = Vec::new();
        let (mut last_lsn, mut n) = (None, 0u32);
        let window = from.as_second()..until.as_second();
        let entries = ledger.get(&account.engine_account_id).map(Vec::as_slice).unwrap_or_default();
        for entry in entries.iter().filter(|entry| window.contains(&entry.posted_at)) {
            // The key numbers the entries of one journal record of this account.
            n = if last_lsn == Some(entry.lsn) { n + 1 } else { 0 };
            last_lsn = Some(entry.lsn);
            if !matches!(entry.kind, EntryKind::Usage | EntryKind::Charge) {
                continue;
            }
            usage.push(UsageInput {
                key: format!("usage:{}:{}:{n}", account.engine_account_id, entry.lsn),
                posted_at: jiff::Timestamp::from_second(entry.posted_at)?,
                service: entry.service.clone(),
                charged: -entry.amount,
                currency: entry.currency.clone().unwrap_or_else(|| account.currency.clone()),
                units: entry.charged_units,
                allowance_units: entry.allowance_units,
            });
        }
        inputs.push(AccountInput {
            account_id: account.id.clone(),
            currency: account.currency.clone(),
            products,
            usage,
            billed_amounts: Default::default(),
            discounts: Stored::of(&stored.discounts, &account.id)
                .iter()
                .map(discount_of)
                .collect::<anyhow::Result<Vec<_>>>()?,
            credits: Stored::of(&stored.credits, &account.id)
                .iter()
                .filter(|row| row.used < row.amount)
                .map(|row| Credit {
                    id: row.id.clone(),
                    description: row.description.clone(),
                    charge_type: row.charge_type.clone(),
                    amount: row.amount - row.used,
                    currency: row.currency.clone(),
                })
                .collect(),
        });
    }
    Ok(inputs)
}

/// What the store holds for a batch of accounts that their invoices need, by account.
#[derive(Debug, Default)]
struct Stored {
    prices: std::collections::HashMap<String, Vec<tollgate_store::ProductPrice>>,
    discounts: std::collections::HashMap<String, Vec<DiscountRow>>,
    credits: std::collections::HashMap<String, Vec<CreditRow>>,
}

impl Stored {
    async fn load(store: &Store, accounts: &[String]) -> anyhow::Result<Stored> {
        let mut stored = Stored::default();
        for price in store.product_prices(accounts).await? {
            stored.prices.entry(price.billing_account_id.clone()).or_default().push(price);
        }
        for discount in store.discounts_of(accounts).await? {
            stored.discounts.entry(discount.billing_account_id.clone()).or_default().push(discount);
        }
        for credit in store.credits_of(accounts).await? {
            stored.credits.entry(credit.billing_account_id.clone()).or_default().push(credit);
        }
        Ok(stored)
    }

    /// `account`'s rows of `rows`, in the store's order.
    fn of<'a, T>(rows: &'a std::collections::HashMap<String, Vec<T>>, account: &str) -> &'a [T] {
        rows.get(account).map(Vec::as_slice).unwrap_or_default()
    }
}

/// A stored discount as the billing core takes it.
fn discount_of(row: &DiscountRow) -> anyhow::Result<Discount> {
    tollgate_receivables::discount_of(row).with_context(|| format!("discount {}", row.id))
}

/// `bill-run discount` and `bill-run credit`: the row recorded and audited in one
/// transaction, printed.
async fn add_reduction(store: &Store, command: &BillRunCommand) -> anyhow::Result<ExitCode> {
    let now = jiff::Timestamp::now();
    let doc = match command {
        BillRunCommand::Discount {
            account,
            id,
            percent,
            amount,
            currency,
            product,
            hierarchy,
            from,
            until,
            description,
            charge_type,
        } => {
            let scope = match (product, hierarchy) {
                (Some(_), _) => "product",
                (None, true) => "hierarchy",
                (None, false) => "account",
            };
            let row = DiscountRow {
                id: id.clone(),
                billing_account_id: account.clone(),
                scope: scope.to_owned(),
                product_id: product.clone(),
                percent: *percent,
                amount: amount.zip(currency.clone()),
                description: description.clone(),
                charge_type: charge_type.clone(),
                valid_from: from.to_string(),
                valid_until: until.map(|day| day.to_string()),
                created_at: now,
            };
            tollgate_receivables::add_discount(store, &actor(), &row, now).await?.0
        }
        BillRunCommand::Credit { account, id, amount, currency, description, charge_type } => {
            let row = CreditRow {
                id: id.clone(),
                billing_account_id: account.clone(),
                amount: *amount,
                currency: currency.clone(),
                description: description.clone(),
                charge_type: charge_type.clone(),
                used: rust_decimal::Decimal::ZERO,
                created_at: now,
            };
            tollgate_receivables::add_credit(store, &actor(), &row, now).await?.0
        }
        _ => bail!("not a discount or a credit"),
    };
    println!("{doc}");
    Ok(ExitCode::SUCCESS)
}

fn invoice_row(
    id: &str,
    run: &str,
    root: &BillableAccount,
    cycle: &str,
    config: &RunConfig,
    invoice: &Invoice,
    statement: bool,
) -> anyhow::Result<InvoiceRow> {
    let zero = rust_decimal::Decimal::ZERO;
    let (net, tax, gross) = invoice.total(&root.currency).map_or((zero, zero, zero), |t| (t.net, t.tax, t.gross));
    Ok(InvoiceRow {
        id: id.to_owned(),
        kind: InvoiceKind::Invoice,
        statement,
        bill_run_id: Some(run.to_owned()),
        billing_account_id: root.id.clone(),
        root_id: root.root_id.clone(),
        cycle: cycle.to_owned(),
        period_from: invoice.period.from.to_string(),
        period_until: invoice.period.until.to_string(),
        issuer: config.issuer.clone(),
        series: if statement { config.statement_series.clone() } else { config.series.clone() },
        state: InvoiceState::Draft,
        number: None,
        corrects_invoice_id: None,
        currency: root.currency.clone(),
        net,
        tax,
        gross,
        content_hash: invoice.content_hash()?,
        doc: serde_json::to_value(invoice)?,
        created_at: jiff::Timestamp::now(),
        finalised_at: None,
    })
}

fn lines_of(invoice: &Invoice) -> anyhow::Result<Vec<InvoiceLineRow>> {
    let mut rows = Vec::new();
    for section in &invoice.sections {
        for line in &section.lines {
            let kind = serde_json::to_value(line.kind)?;
            rows.push(InvoiceLineRow {
                position: i64::try_from(rows.len())?,
                account_id: section.account_id.clone(),
                kind: kind.as_str().unwrap_or_default().to_owned(),
                charge_type: line.charge_type.clone(),
                product_id: line.product_id.clone(),
                reference: line.reference.clone(),
                description: line.description.clone(),
                period_from: line.period.map(|span| span.from.to_string()),
                period_until: line.period.map(|span| span.until.to_string()),
                currency: line.currency.clone(),
                quantity: line.quantity,
                unit: line.unit.clone(),
                amount: line.amount,
                net: line.net,
                tax: line.tax,
                gross: line.gross,
                tax_code: line.tax_code.clone(),
                tax_rate: line.tax_rate,
            });
        }
    }
    Ok(rows)
}

/// Every invoice of a run, in account order.
/// What `bill-run pdf` renders where.
enum PdfTarget<'a> {
    One { invoice: &'a str, out: &'a Path },
    Run { run: &'a str, dir: &'a Path },
}

/// An invoice's number as the API prints it (`billNo`): issuer, series, number.
fn invoice_number(row: &InvoiceRow) -> Option<String> {
    row.number.map(|number| format!("{}/{}/{number}", row.issuer, row.series))
}

/// The invoice with this id, else the one with this number (a scan of the invoices).
async fn find_invoice(store: &Store, wanted: &str) -> anyhow::Result<InvoiceRow> {
    if let Some(row) = store.invoice(wanted).await? {
        return Ok(row);
    }
    let filter = InvoiceFilter::default();
    let mut offset = 0u64;
    loop {
        let (page, total) = store.invoice_list(&filter, offset, INVOICE_PAGE_MAX).await?;
        if page.is_empty() {
            bail!("no invoice with the id or number {wanted:?}");
        }
        offset += page.len() as u64;
        if let Some(row) = page.into_iter().find(|row| invoice_number(row).as_deref() == Some(wanted)) {
            return Ok(row);
        }
        if offset as i64 >= total {
            bail!("no invoice with the id or number {wanted:?}");
        }
    }
}

/// One invoice's PDF: the composed document the store keeps, the billing account's name
/// as the customer, the run's issuer, the number if final (a draft prints as such), issued
/// the day it was made final (UTC; a draft: the day it was composed).
/// The API's renderer of customer bills as PDFs: the same document as `bill-run pdf`.
#[derive(Debug)]
pub(crate) struct BillPdfRenderer {
    store: Store,
    template: tollgate_invoice_pdf::Template,
}

impl BillPdfRenderer {
    pub(crate) fn new(store: Store, template: tollgate_invoice_pdf::Template) -> BillPdfRenderer {
        BillPdfRenderer { store, template }
    }
}

impl tollgate_api::BillPdf for BillPdfRenderer {
    fn render<'a>(
        &'a self,
        bill: &'a InvoiceRow,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, String>> + Send + 'a>> {
        Box::pin(async move {
            invoice_pdf(&self.store, bill, &self.template, DEFAULT_DUE_DAYS).await.map_err(|error| format!("{error:#}"))
        })
    }
}

/// Days to the due date of an invoice made final before due dates were stored.
const DEFAULT_DUE_DAYS: u16 = 30;

async fn invoice_pdf(
    store: &Store,
    row: &InvoiceRow,
    template: &tollgate_invoice_pdf::Template,
    due_days: u16,
) -> anyhow::Result<Vec<u8>> {
    let invoice: Invoice =
        serde_json::from_value(row.doc.clone()).with_context(|| format!("invoice {}: the stored document", row.id))?;
    // The name it was issued to; a draft (or one made final before that was kept): the
    // account's name now.
    let customer = match store.bill_to(&row.id).await? {
        Some(name) => Some(name),
        None => store.billing_account(&row.billing_account_id).await?.map(|account| account.value.name),
    };
    let issued = jiff::tz::TimeZone::UTC.to_datetime(row.finalised_at.unwrap_or(row.created_at)).date();
    // The due date stored when it was made final; else the given terms from its issue day.
    let stored = store.due_dates(&[row.id.as_str()]).await?.get(&row.id).copied();
    // A statement and a credit note have nothing due.
    let credit_note = row.kind == InvoiceKind::CreditNote;
    let due = stored
        .or_else(|| issued.checked_add(jiff::Span::new().days(i64::from(due_days))).ok())
        .filter(|_| !row.statement && !credit_note && row.gross >= rust_decimal::Decimal::ZERO);
    // A credit note names the invoice it cancels where an invoice says how to pay; an
    // invoice below zero says its credit went to the account.
    let payment_terms = match (&row.corrects_invoice_id, credit_note) {
        (Some(corrected), true) => {
            let number = store.invoice(corrected).await?.and_then(|invoice| invoice_number(&invoice));
            Some(format!("This credit note cancels invoice {}.", number.as_deref().unwrap_or(corrected)))
        }
        _ if !row.statement && row.gross < rust_decimal::Decimal::ZERO => Some(format!(
            "Nothing to pay: the credit of {} {} is carried to your account and pays what it owes.",
            -row.gross, row.currency
        )),
        _ => None,
    };
    let meta = tollgate_invoice_pdf::DocumentMeta {
        issuer: tollgate_invoice_pdf::Party { name: row.issuer.clone(), ..Default::default() },
        customer: tollgate_invoice_pdf::Party { name: customer.unwrap_or_default(), ..Default::default() },
        number: invoice_number(row),
        issue_date: issued,
        due_date: due,
        payment_terms,
    };
    let variant;
    let template = if row.statement {
        variant = template.for_statement();
        &variant
    } else if credit_note {
        variant = template.for_credit_note();
        &variant
    } else {
        template
    };
    tollgate_invoice_pdf::render(&invoice, &meta, template).with_context(|| format!("invoice {}", row.id))
}

async fn pdf(
    store: &Store,
    target: PdfTarget<'_>,
    template: &tollgate_invoice_pdf::Template,
    due_days: u16,
) -> anyhow::Result<ExitCode> {
    match target {
        PdfTarget::One { invoice, out } => {
            let row = find_invoice(store, invoice).await?;
            let pdf = invoice_pdf(store, &row, template, due_days).await?;
            std::fs::write(out, &pdf).with_context(|| format!("writing {}", out.display()))?;
            println!("{}", json!({"invoice": row.id, "number": invoice_number(&row), "file": out, "bytes": pdf.len()}));
        }
        PdfTarget::Run { run, dir } => {
            if store.bill_run(run).await?.is_none() {
                bail!("no bill run {run}");
            }
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for row in run_invoices(store, run).await? {
                let pdf = invoice_pdf(store, &row, template, due_days).await?;
                let file = dir.join(format!("{}.pdf", row.id.replace(['/', '\\'], "_")));
                std::fs::write(&file, &pdf).with_context(|| format!("writing {}", file.display()))?;
                println!(
                    "{}",
                    json!({"invoice": row.id, "number": invoice_number(&row), "file": file, "bytes": pdf.len()})
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_invoices(store: &Store, run: &str) -> anyhow::Result<Vec<InvoiceRow>> {
    let filter = InvoiceFilter { bill_run_id: Some(run.to_owned()), ..InvoiceFilter::default() };
    let mut all = Vec::new();
    loop {
        let (page, total) = store.invoice_list(&filter, all.len() as u64, INVOICE_PAGE_MAX).await?;
        let done = page.is_empty();
        all.extend(page);
        if done || all.len() as i64 >= total {
            break;
        }
    }
    all.sort_by(|a, b| a.billing_account_id.cmp(&b.billing_account_id));
    Ok(all)
}

async fn show(store: &Store, run: &str) -> anyhow::Result<ExitCode> {
    let Some(state) = store.bill_run(run).await? else { bail!("no bill run {run}") };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    writeln!(
        out,
        "{}",
        json!({"run": state.id, "cycle": state.cycle, "scope": state.scope,
        "state": state.state.as_str(), "checkpoint": state.checkpoint,
        "updatedAt": state.updated_at.to_string(), "finishedAt": state.finished_at.map(|at| at.to_string()),
        "error": state.failure.as_ref().map(|(error, _)| error),
        "failedAt": state.failure.as_ref().map(|(_, at)| at.to_string())})
    )?;
    for invoice in run_invoices(store, run).await? {
        writeln!(
            out,
            "{}",
            json!({"id": invoice.id, "account": invoice.billing_account_id,
            "periodFrom": invoice.period_from, "periodUntil": invoice.period_until, "state": invoice.state.as_str(),
            "issuer": invoice.issuer, "series": invoice.series, "number": invoice.number,
            "currency": invoice.currency, "net": invoice.net.to_string(), "tax": invoice.tax.to_string(),
            "gross": invoice.gross.to_string(), "contentHash": invoice.content_hash,
            "lines": store.invoice_lines(&invoice.id).await?.len(),
            "billedItems": store.billed_items_of(&invoice.id).await?.len()})
        )?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn reconcile_run(
    store: &Store,
    data_dir: &Path,
    run: &str,
    config: &RunConfig,
    shards: Option<usize>,
    mediation_outs: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let Some(state) = store.bill_run(run).await? else { bail!("no bill run {run}") };
    let (year, month) = parse_cycle(&state.cycle)?;
    let shards = shard_count(data_dir, shards)?;
    super::usage::catch_up_ledger(data_dir, shards)?;
    let roots: Vec<String> = state.scope.split(',').map(str::to_owned).collect();
    let roots = (state.scope != "all").then_some(roots.as_slice());
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut rated, mut billed, mut carried, mut mismatched) = (0u64, 0u64, 0usize, 0usize);
    let groups = hierarchies(store.billable_accounts(roots).await?);
    let mut cycles = Vec::with_capacity(groups.len());
    for group in &groups {
        cycles.push(closing_cycle(year, month, group[0].bill_cycle_day, config.zone()?)?);
    }
    let spans = cycles.iter().map(|cycle| Ok((cycle.starts_at()?, cycle.ends_at()?)));
    let mut ledger = LedgerChunks::new(data_dir, shards, covering(spans)?, &groups, Vec::as_slice)?;
    for (index, (group, cycle)) in groups.iter().zip(&cycles).enumerate() {
        let root = &group[0];
        let entries = ledger.of(&groups, index, Vec::as_slice)?;
        // Only the usage is reconciled: no prices, discounts or credits are read.
        let inputs = account_inputs(&Stored::default(), group, cycle, cycle.starts_at()?, entries)?;
        let entries: Vec<RatedEntry> = inputs
            .iter()
            .flat_map(|input| {
                input.usage.iter().map(|usage| RatedEntry {
                    key: usage.key.clone(),
                    account_id: input.account_id.clone(),
                    charged: usage.charged,
                    currency: usage.currency.clone(),
                })
            })
            .collect();
        let keys: Vec<String> = entries.iter().map(|entry| entry.key.clone()).collect();
        let report = reconcile(&entries, &store.billed_amounts(&keys).await?);
        let amounts: serde_json::Map<String, Value> = report
            .amounts
            .iter()
            .map(|(currency, [rated, billed, carried])| {
                (
                    currency.clone(),
                    json!({"rated": rated.to_string(), "billed": billed.to_string(),
                    "carriedOver": carried.to_string()}),
                )
            })
            .collect();
        writeln!(
            out,
            "{}",
            json!({"account": root.id, "periodFrom": cycle.span().from.to_string(),
            "periodUntil": cycle.span().until.to_string(), "rated": report.rated, "billed": report.billed,
            "amounts": amounts,
            "carriedOver": report.carried_over.iter().map(|entry| json!({"key": entry.key,
                "account": entry.account_id, "charged": entry.charged.to_string()})).collect::<Vec<_>>(),
            "mismatched": report.mismatched.iter().map(|(entry, amount)| json!({"key": entry.key,
                "charged": entry.charged.to_string(), "billed": amount.to_string()})).collect::<Vec<_>>()})
        )?;
        rated += report.rated;
        billed += report.billed;
        carried += report.carried_over.len();
        mismatched += report.mismatched.len();
    }
    let mediation = reconcile_mediation(data_dir, shards, mediation_outs, &mut out)?;
    writeln!(
        out,
        "{}",
        json!({"run": run, "rated": rated, "billed": billed, "carriedOver": carried,
        "mismatched": mismatched, "mediationFiles": mediation.files,
        "mediationUnbalanced": mediation.unbalanced, "mediatedNotCharged": mediation.not_charged,
        "chargedNotMediated": mediation.not_mediated, "amountDiffers": mediation.amount_differs,
        "chargedMoreThanOnce": mediation.charged_again})
    )?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// What the mediation half of a reconciliation found.
#[derive(Debug, Default)]
struct MediationCheck {
    files: usize,
    unbalanced: usize,
    not_charged: usize,
    not_mediated: usize,
    amount_differs: usize,
    /// Records the engine charged more than once under their key.
    charged_again: usize,
}

/// Mediation against the engine, over the outputs in `outs`: each file's summary adds up
/// (in = rated + rejected + duplicates, and as many rated lines as it says); each rated
/// line's record (its identity's digest, the engine's exactly-once key) is a usage entry
/// of its account in the ledger with the amount mediation wrote; each usage entry of
/// those accounts with a record key is a rated line. One JSON line per file, then one for
/// the cross-check naming every record behind a difference.
fn reconcile_mediation(
    data_dir: &Path,
    shards: usize,
    outs: &[PathBuf],
    out: &mut impl Write,
) -> anyhow::Result<MediationCheck> {
    use std::collections::BTreeMap;
    let mut check = MediationCheck::default();
    // Record key → (file, record number, account, amount, currency).
    let mut rated: BTreeMap<String, (String, u64, u64, rust_decimal::Decimal, String)> = BTreeMap::new();
    let mut money: BTreeMap<String, [rust_decimal::Decimal; 2]> = BTreeMap::new();
    for dir in outs {
        let mut summaries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("--mediation-out {}", dir.display()))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.to_string_lossy().ends_with(".summary.json"))
            .collect();
        summaries.sort();
        for summary_path in summaries {
            let name = summary_path.to_string_lossy().trim_end_matches(".summary.json").to_owned();
            let summary: Value = serde_json::from_slice(&std::fs::read(&summary_path)?)
                .with_context(|| format!("{}", summary_path.display()))?;
            let count = |field: &str| summary.get(field).and_then(Value::as_u64).unwrap_or(0);
            let (records_in, records_rated, rejected, duplicates) =
                (count("records_in"), count("rated"), count("rejected"), count("duplicates"));
            let mut lines = 0u64;
            let rated_path = PathBuf::from(format!("{name}.rated.jsonl"));
            if let Ok(file) = std::fs::File::open(&rated_path) {
                for line in BufReader::new(file).lines() {
                    let line = line?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let value: Value =
                        serde_json::from_str(&line).with_context(|| format!("{}", rated_path.display()))?;
                    lines += 1;
                    let text = |field: &str| value.get(field).and_then(Value::as_str).unwrap_or("").to_owned();
                    let identity = value
                        .get("record_identity")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| text("record_id"));
                    let key = format!("{:032x}", tollgate_engine::RecordKey::of(&identity).0);
                    let amount: rust_decimal::Decimal = match value.get("amount") {
                        Some(Value::String(text)) => text.parse().unwrap_or_default(),
                        Some(Value::Number(number)) => number.to_string().parse().unwrap_or_default(),
                        _ => rust_decimal::Decimal::ZERO,
                    };
                    let currency = text("currency");
                    money.entry(currency.clone()).or_default()[0] += amount;
                    let account = value.get("account").and_then(Value::as_u64).unwrap_or(0);
                    let number = value.get("record_number").and_then(Value::as_u64).unwrap_or(0);
                    rated.insert(key, (name.clone(), number, account, amount, currency));
                }
            }
            let balanced = records_in == records_rated + rejected + duplicates && lines == records_rated;
            check.files += 1;
            if !balanced {
                check.unbalanced += 1;
            }
            writeln!(
                out,
                "{}",
                json!({"mediationFile": name, "in": records_in, "rated": records_rated, "rejected": rejected,
                "duplicates": duplicates, "ratedLines": lines, "balanced": balanced})
            )?;
        }
    }
    if check.files == 0 {
        return Ok(check);
    }
    // The ledger's usage entries of the accounts mediation charged, by record key.
    let accounts: std::collections::BTreeSet<u64> = rated.values().map(|entry| entry.2).collect();
    let until = jiff::Timestamp::now().as_second() + 366 * 86_400;
    // Record key → (account, amount charged in all, currency, times charged): a record
    // the engine charged twice under its key (a resumed run whose records had left the
    // engine's window) shows as charged more than once, with both amounts.
    let mut charged: BTreeMap<String, (u64, rust_decimal::Decimal, String, u32)> = BTreeMap::new();
    for account in accounts {
        for entry in ledger::account_entries(data_dir, shards, account, 0, until)? {
            let entry = entry?;
            let Some(key) = entry.key.clone() else { continue };
            let is_record = key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit());
            if entry.kind == EntryKind::Usage && is_record {
                let currency = entry.currency.clone().unwrap_or_default();
                money.entry(currency.clone()).or_default()[1] -= entry.amount;
                let found = charged.entry(key).or_insert((account, rust_decimal::Decimal::ZERO, currency, 0));
                found.1 -= entry.amount;
                found.3 += 1;
            }
        }
    }
    let mut not_charged = Vec::new();
    let mut differs = Vec::new();
    for (key, (file, number, account, amount, currency)) in &rated {
        match charged.get(key) {
            None => not_charged.push(json!({"key": key, "file": file, "record": number, "account": account,
                "amount": amount.to_string(), "currency": currency})),
            Some((_, engine, _, _)) if engine != amount => differs.push(json!({"key": key, "file": file,
                "record": number, "account": account, "mediated": amount.to_string(), "charged": engine.to_string()})),
            Some(_) => {}
        }
    }
    let not_mediated: Vec<Value> = charged
        .iter()
        .filter(|(key, _)| !rated.contains_key(*key))
        .map(|(key, (account, amount, currency, _))| {
            json!({"key": key, "account": account, "amount": amount.to_string(), "currency": currency})
        })
        .collect();
    let charged_again: Vec<Value> = charged
        .iter()
        .filter(|(_, (_, _, _, times))| *times > 1)
        .map(|(key, (account, amount, currency, times))| {
            let source = rated.get(key).map(|(file, number, ..)| json!({"file": file, "record": number}));
            json!({"key": key, "account": account, "times": times, "amount": amount.to_string(),
                "currency": currency, "mediated": source})
        })
        .collect();
    check.not_charged = not_charged.len();
    check.not_mediated = not_mediated.len();
    check.charged_again = charged_again.len();
    check.amount_differs = differs.len();
    let money: serde_json::Map<String, Value> = money
        .into_iter()
        .map(|(currency, [mediated, engine])| {
            (currency, json!({"mediated": mediated.to_string(), "charged": engine.to_string()}))
        })
        .collect();
    writeln!(
        out,
        "{}",
        json!({"mediation": "cross-check", "rated": rated.len(), "charged": charged.len(), "amounts": money,
        "mediatedNotCharged": not_charged, "chargedNotMediated": not_mediated, "amountDiffers": differs,
        "chargedMoreThanOnce": charged_again})
    )?;
    Ok(check)
}

/// The most characters of a credit note's reason.
const MAX_REASON_CHARS: usize = 500;

/// Issues the credit note that cancels final invoice `wanted` (its id or number) whole:
/// its document turned ([`Invoice::reversal`]), in `config`'s credit-note series, with
/// the invoice's run, issuer, account and period, final at once (numbered gap-free like
/// any document), audited with `reason`; prints it. One per invoice (`cn-` and the
/// invoice's id): asked again, prints the one issued, nothing written. What the invoice
/// still owes drops by it (receivables count final credit notes); the run's journal
/// (`export-gl`) posts it as the invoice's reversal.
async fn credit_note(store: &Store, wanted: &str, reason: &str, config: &RunConfig) -> anyhow::Result<ExitCode> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
        bail!("--reason: 1 to {MAX_REASON_CHARS} characters, none of them a control character");
    }
    config.validate()?;
    let corrected = find_invoice(store, wanted).await?;
    let name = invoice_number(&corrected).unwrap_or_else(|| corrected.id.clone());
    if corrected.kind != InvoiceKind::Invoice {
        bail!("{name} is a credit note: a credit note cancels an invoice");
    }
    if corrected.statement {
        bail!("{name} is a prepaid statement: nothing is owed on it to credit");
    }
    if corrected.state != InvoiceState::Final {
        bail!("{name} is a draft: its bill run makes it final, and a credit note corrects a final invoice");
    }
    if corrected.gross <= rust_decimal::Decimal::ZERO {
        bail!(
            "{name} owes nothing (its total is {} {}): what it gives back was carried to the account as credit",
            corrected.gross,
            corrected.currency
        );
    }
    let id = format!("cn-{}", corrected.id);
    let print = |row: &InvoiceRow| {
        let doc = json!({"id": row.id, "kind": "creditNote", "corrects": corrected.id, "correctsNumber": name,
            "number": invoice_number(row), "currency": row.currency, "net": row.net.to_string(),
            "tax": row.tax.to_string(), "gross": row.gross.to_string()});
        println!("{doc}");
    };
    if let Some(issued) = store.invoice(&id).await? {
        eprintln!("{name} was cancelled by {id} before: nothing written");
        print(&issued);
        return Ok(ExitCode::SUCCESS);
    }
    let invoice: Invoice = serde_json::from_value(corrected.doc.clone())
        .with_context(|| format!("invoice {}: the stored document", corrected.id))?;
    let reversed = invoice.reversal();
    let zero = rust_decimal::Decimal::ZERO;
    let (net, tax, gross) =
        reversed.total(&corrected.currency).map_or((zero, zero, zero), |totals| (totals.net, totals.tax, totals.gross));
    let now = jiff::Timestamp::now();
    let row = InvoiceRow {
        id: id.clone(),
        kind: InvoiceKind::CreditNote,
        statement: false,
        bill_run_id: corrected.bill_run_id.clone(),
        billing_account_id: corrected.billing_account_id.clone(),
        root_id: corrected.root_id.clone(),
        cycle: corrected.cycle.clone(),
        period_from: corrected.period_from.clone(),
        period_until: corrected.period_until.clone(),
        issuer: corrected.issuer.clone(),
        series: config.credit_note_series.clone(),
        state: InvoiceState::Draft,
        number: None,
        corrects_invoice_id: Some(corrected.id.clone()),
        currency: corrected.currency.clone(),
        net,
        tax,
        gross,
        content_hash: reversed.content_hash()?,
        doc: serde_json::to_value(&reversed)?,
        created_at: now,
        finalised_at: None,
    };
    let mut tx = store.begin().await?;
    match tx.insert_draft_invoice(&row, &lines_of(&reversed)?, &[], now).await {
        Ok(()) => {}
        // Issued meanwhile by another: that one stands.
        Err(StoreError::Conflict { .. }) => {
            drop(tx);
            let issued = store.invoice(&id).await?.with_context(|| format!("credit note {id}"))?;
            print(&issued);
            return Ok(ExitCode::SUCCESS);
        }
        Err(error) => return Err(error.into()),
    }
    let number = tx.finalise_invoice(&id, now).await?;
    // Credited more than it still owed (it was paid): the difference is credit on the
    // account, which pays what the account owes.
    let remaining = tx.invoice_remaining(&corrected.id).await?;
    if remaining < rust_decimal::Decimal::ZERO {
        let day = jiff::tz::TimeZone::UTC.to_datetime(now).date();
        let account = &corrected.billing_account_id;
        tollgate_receivables::carry_credit(&mut tx, &actor(), account, &row.currency, -remaining, &id, day, now)
            .await?;
        tollgate_receivables::settle_account(&mut tx, &actor(), account, now).await?;
    }
    let after = json!({"id": id, "kind": "creditNote", "corrects": corrected.id, "issuer": row.issuer,
        "series": row.series, "number": number, "currency": row.currency, "gross": gross.to_string(),
        "reason": reason});
    let record = AuditRecord {
        actor: &actor(),
        action: "credit-note",
        entity_type: "CustomerBill",
        entity_id: &id,
        before: None,
        after: Some(&after),
    };
    tx.audit(record, now).await?;
    tx.commit().await?;
    let issued = store.invoice(&id).await?.with_context(|| format!("credit note {id}"))?;
    eprintln!("{name} cancelled by credit note {}/{}/{number}", row.issuer, row.series);
    print(&issued);
    Ok(ExitCode::SUCCESS)
}

async fn export_gl(store: &Store, run: &str, config: &RunConfig, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    if store.bill_run(run).await?.is_none() {
        bail!("no bill run {run}");
    }
    let mut posted = Vec::new();
    for row in run_invoices(store, run).await? {
        let Some(number) = row.number else { bail!("invoice {} is not final yet: finish the run first", row.id) };
        let invoice: Invoice =
            serde_json::from_value(row.doc.clone()).with_context(|| format!("invoice {}'s document", row.id))?;
        posted.push((format!("{}/{}/{number}", row.issuer, row.series), invoice, row.statement));
    }
    let references: Vec<(&str, &Invoice, bool)> =
        posted.iter().map(|(reference, invoice, statement)| (reference.as_str(), invoice, *statement)).collect();
    let journal = Journal::post_documents(run, &references, &config.chart)?;
    let csv = journal.to_csv()?;
    match output {
        Some(path) => std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().write_all(&csv)?,
    }
    let known: BTreeSet<&str> = references.iter().map(|(reference, _, _)| *reference).collect();
    eprintln!("bill run {run}: {} invoices, {} journal entries", known.len(), journal.entries.len());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::{chunk_starts, draft_error, run_id, MAX_SCOPE_IN_ID};
    use tollgate_store::StoreError;

    #[test]
    fn a_credit_lowered_under_a_run_fails_the_batch_saying_the_run_can_be_started_again() {
        let over = draft_error(StoreError::Invalid { field: "used", reason: "credit c1: 50 used of 20 EUR".into() });
        let text = over.to_string();
        assert!(text.contains("credit c1: 50 used of 20 EUR") && text.contains("start the run again"), "{text}");
        let other = draft_error(StoreError::Invalid { field: "number", reason: "taken".into() });
        assert!(!other.to_string().contains("start the run again"), "{other}");
    }

    #[test]
    fn a_run_id_spells_out_a_few_accounts_and_names_many_by_their_digest() {
        assert_eq!(run_id("2026-11", &[]), ("2026-11".to_owned(), "all".to_owned()));
        let few = ["b".to_owned(), "a".to_owned(), "b".to_owned()];
        assert_eq!(run_id("2026-11", &few), ("2026-11:a,b".to_owned(), "a,b".to_owned()));
        let many: Vec<String> = (0..1000).map(|n| format!("{n:032x}")).collect();
        let (id, scope) = run_id("2026-11", &many);
        assert!(id.starts_with("2026-11:#") && id.len() == "2026-11:#".len() + 32, "{id}");
        assert!(scope.len() > MAX_SCOPE_IN_ID && scope.split(',').count() == 1000);
        let mut reversed = many.clone();
        reversed.reverse();
        assert_eq!(run_id("2026-11", &reversed).0, id, "the same accounts, the same id");
        assert_ne!(run_id("2026-11", &many[1..]).0, id);
    }

    #[test]
    fn ledger_chunks_end_at_their_item_or_entry_limit_and_are_never_empty() {
        // By count: three items a chunk.
        assert_eq!(chunk_starts([1, 1, 1, 1, 1, 1, 1].into_iter(), 3, 100), [0, 3, 6]);
        // By entries: 60 + 30 fit in 100, 20 more would not; an item of 500 alone.
        assert_eq!(chunk_starts([60, 30, 20, 500, 10].into_iter(), 10, 100), [0, 2, 3, 4]);
        // Nothing to read: one empty chunk starting at 0.
        assert_eq!(chunk_starts(std::iter::empty(), 10, 100), [0]);
        assert_eq!(chunk_starts([u64::MAX, u64::MAX].into_iter(), 10, 100), [0, 1]);
    }
}
