//! `tollgate payment record|list|show|import` and `tollgate receivables aging|dunning`:
//! payments and what customers owe, from the shell, on the store (`--database`), through
//! the same `tollgate_receivables::Receivables` as the API, audited as `cli:<user>`.
//!
//! `payment import` reads an ISO 20022 `camt.053` bank statement: each booked credit
//! becomes a payment of the account its remittance names (a bill number, else a billing
//! account id), once per bank reference however often the file is imported; what cannot
//! be matched or read goes to a rejects file (CSV: byte offset, bank reference, reason).
//! `receivables dunning` takes the steps of a dunning policy due on a day: reminders to the
//! hub's listeners, suspend and resume orders that `tollgate serve` carries out.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use jiff::civil::Date;
use jiff::Timestamp;
use rust_decimal::Decimal;
use tollgate_billing::{read_camt053, DunningPolicy};
use tollgate_engine::Plans;
use tollgate_inventory::{Inventory, InventoryConfig};
use tollgate_orders::{InventoryResources, Orders};
use tollgate_receivables::{payment_doc, NewPayment, Receivables};
use tollgate_store::PaymentFilter;

use super::bss::{actor, runtime, DatabaseArgs};
use super::order::PlansOnly;

/// The largest statement file read (a day's statement of a large operator is a few MB).
const MAX_STATEMENT_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Subcommand)]
pub(crate) enum PaymentCommand {
    /// Record a payment and allocate it (the named bill first, then oldest due first).
    Record {
        /// The paying billing account.
        #[arg(long)]
        account: String,
        /// The amount, a decimal in the currency's minor units (`12.50`).
        #[arg(long)]
        amount: String,
        /// ISO 4217 code; must be the account's.
        #[arg(long)]
        currency: String,
        /// The payment's reference (a receipt or transaction id): recorded once per reference.
        #[arg(long)]
        reference: String,
        /// bankTransfer, card, cash, directDebit or other.
        #[arg(long, default_value = "bankTransfer")]
        method: String,
        /// The bill it pays (`ISSUER/SERIES/N` or an invoice id), paid first.
        #[arg(long)]
        bill: Option<String>,
        /// The day it was received (default: today, UTC).
        #[arg(long)]
        date: Option<String>,
    },
    /// List payments (id, account, amount, received, reference), oldest first.
    List {
        #[arg(long)]
        account: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one payment as JSON (TMF676's shape: what it paid, what is left).
    Show { id: String },
    /// Import the booked credits of an ISO 20022 camt.053 bank statement.
    Import {
        file: PathBuf,
        /// Where rejected credits go (CSV: offset,reference,reason); default FILE.rejects.csv.
        #[arg(long)]
        rejects: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReceivablesCommand {
    /// What each account owes by age (current, 1-30, 31-60, 61-90, over 90 days overdue),
    /// one JSON object per account and a total per currency.
    Aging {
        /// The day to age on (default: today, UTC).
        #[arg(long)]
        as_of: Option<String>,
        /// Only the hierarchy under this root account.
        #[arg(long)]
        root: Option<String>,
    },
    /// Take the dunning steps due (reminders, suspend orders) and lift the suspensions of
    /// accounts that owe nothing overdue (resume orders).
    Dunning {
        /// The day to dun on (default: today, UTC).
        #[arg(long)]
        as_of: Option<String>,
        /// The policy (JSON: steps with name, afterDays, action; minimumOutstanding);
        /// default: a reminder after 7 days, a suspension after 21.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Work the prepaid renewals: debit again the fees of statements left unpaid (through
    /// the outbox, which `serve` applies), suspend the lines of accounts unpaid past
    /// their grace, resume them once paid. `serve --dunning-every-seconds` runs it too.
    Renewals {
        /// The day to judge the grace on (default: today, UTC).
        #[arg(long)]
        as_of: Option<String>,
        /// Only list the renewals (one JSON object each: statement, account, state,
        /// attempts, amount, grace, orders), changing nothing.
        #[arg(long)]
        list: bool,
    },
}

fn day(text: Option<&str>, what: &str) -> anyhow::Result<Date> {
    match text {
        Some(text) => Date::from_str(text).with_context(|| format!("{what}: {text:?} is not a date (YYYY-MM-DD)")),
        None => Ok(jiff::tz::Offset::UTC.to_datetime(Timestamp::now()).date()),
    }
}

pub(crate) fn payment(database: &DatabaseArgs, command: PaymentCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = database.open().await?;
        let receivables = Receivables::new(store.clone());
        let who = tollgate_customers::Principal::admin(actor());
        let mut out = std::io::stdout().lock();
        match command {
            PaymentCommand::Record { account, amount, currency, reference, method, bill, date } => {
                let amount =
                    Decimal::from_str(&amount).with_context(|| format!("--amount: {amount:?} is not a decimal"))?;
                let new = NewPayment {
                    billing_account_id: account,
                    amount,
                    currency,
                    method,
                    source: "cli".into(),
                    reference,
                    remittance: bill,
                    received_on: day(date.as_deref(), "--date")?,
                };
                let recorded = receivables.record(&who, new, Timestamp::now()).await?;
                if !recorded.created {
                    eprintln!("payment {} was recorded before under this reference", recorded.payment.id);
                }
                writeln!(out, "{}", payment_doc(&recorded.payment, &recorded.allocations))?;
            }
            PaymentCommand::List { account, limit } => {
                let filter = PaymentFilter { billing_account_id: account, root_id: None };
                let (rows, total) = store.payment_list(&filter, 0, limit).await?;
                for row in &rows {
                    writeln!(
                        out,
                        "{}\t{}\t{} {}\t{}\t{}:{}",
                        row.id,
                        row.billing_account_id,
                        row.amount,
                        row.currency,
                        row.received_on,
                        row.source,
                        row.reference
                    )?;
                }
                eprintln!("{} of {total} payments", rows.len());
            }
            PaymentCommand::Show { id } => {
                let (row, allocations) = store.payment(&id).await?.with_context(|| format!("no payment {id}"))?;
                writeln!(out, "{}", serde_json::to_string_pretty(&payment_doc(&row, &allocations))?)?;
            }
            PaymentCommand::Import { file, rejects } => {
                let size = std::fs::metadata(&file).with_context(|| format!("{}", file.display()))?.len();
                anyhow::ensure!(
                    size <= MAX_STATEMENT_BYTES,
                    "{}: {size} bytes, more than the {MAX_STATEMENT_BYTES} a statement may have",
                    file.display()
                );
                let text = std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
                let statement = read_camt053(&text).with_context(|| format!("{}", file.display()))?;
                let report = receivables.import_statement(&actor(), &statement, Timestamp::now()).await?;
                let rejects_path = rejects.unwrap_or_else(|| {
                    let mut name = file.clone().into_os_string();
                    name.push(".rejects.csv");
                    PathBuf::from(name)
                });
                let mut writer =
                    csv::Writer::from_path(&rejects_path).with_context(|| format!("{}", rejects_path.display()))?;
                writer.write_record(["offset", "reference", "reason"])?;
                for (offset, reference, reason) in &report.rejects {
                    writer.write_record([offset.to_string().as_str(), reference, reason])?;
                }
                writer.flush()?;
                let amounts: Vec<String> =
                    report.amount_recorded.iter().map(|(currency, amount)| format!("{amount} {currency}")).collect();
                writeln!(
                    out,
                    "{}: {} payments recorded ({}), {} recorded before, {} rejected (see {}), {} entries not credits",
                    file.display(),
                    report.recorded,
                    if amounts.is_empty() { "nothing".to_owned() } else { amounts.join(", ") },
                    report.already_recorded,
                    report.rejects.len(),
                    rejects_path.display(),
                    statement.skipped,
                )?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn receivables(database: &DatabaseArgs, command: ReceivablesCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = database.open().await?;
        let receivables = Receivables::new(store.clone());
        let mut out = std::io::stdout().lock();
        match command {
            ReceivablesCommand::Aging { as_of, root } => {
                let as_of = day(as_of.as_deref(), "--as-of")?;
                let accounts = receivables.aging(as_of, root.as_deref()).await?;
                let mut totals: std::collections::BTreeMap<String, tollgate_billing::Aging> = Default::default();
                for account in &accounts {
                    let total = totals.entry(account.currency.clone()).or_default();
                    total.current += account.aging.current;
                    total.days_1_30 += account.aging.days_1_30;
                    total.days_31_60 += account.aging.days_31_60;
                    total.days_61_90 += account.aging.days_61_90;
                    total.days_over_90 += account.aging.days_over_90;
                    let mut doc = serde_json::to_value(account.aging)?;
                    doc["billingAccount"] = account.billing_account_id.clone().into();
                    doc["currency"] = account.currency.clone().into();
                    doc["total"] = account.aging.total().to_string().into();
                    doc["openInvoices"] = account.invoices.into();
                    writeln!(out, "{doc}")?;
                }
                for (currency, total) in totals {
                    let mut doc = serde_json::to_value(total)?;
                    doc["totalFor"] = currency.into();
                    doc["total"] = total.total().to_string().into();
                    doc["asOf"] = as_of.to_string().into();
                    writeln!(out, "{doc}")?;
                }
            }
            ReceivablesCommand::Renewals { list: true, .. } => {
                let mut offset = 0;
                loop {
                    let page = store.renewal_list(offset, 500).await?;
                    for renewal in &page {
                        writeln!(out, "{}", renewal_doc(renewal))?;
                    }
                    if page.len() < 500 {
                        break;
                    }
                    offset += 500;
                }
            }
            ReceivablesCommand::Renewals { as_of, .. } => {
                let as_of = day(as_of.as_deref(), "--as-of")?;
                let report = receivables.renewals(&order_flow(&store), as_of, &actor(), Timestamp::now()).await?;
                for (statement, account, attempt) in &report.retried {
                    writeln!(out, "{statement}\t{account}\tretried\t{attempt}")?;
                }
                for (what, entries) in [("suspended", &report.suspended), ("resumed", &report.lifted)] {
                    for (statement, account, orders) in entries {
                        writeln!(out, "{statement}\t{account}\t{what}\t{}", orders.join(","))?;
                    }
                }
                eprintln!(
                    "renewals on {as_of}: {} retried, {} suspended, {} resumed, {} waiting (refused on or after {as_of}, no top-up since)",
                    report.retried.len(),
                    report.suspended.len(),
                    report.lifted.len(),
                    report.waiting.len()
                );
            }
            ReceivablesCommand::Dunning { as_of, policy } => {
                let as_of = day(as_of.as_deref(), "--as-of")?;
                let policy = dunning_policy(policy.as_deref())?;
                let orders = order_flow(&store);
                let report = receivables.dunning(&orders, &policy, as_of, &actor(), Timestamp::now()).await?;
                for (invoice, step, action, orders) in &report.taken {
                    writeln!(out, "{invoice}\t{step}\t{action:?}\t{}", orders.join(","))?;
                }
                for (invoice, step, orders) in &report.lifted {
                    writeln!(out, "{invoice}\t{step}\tlifted\t{}", orders.join(","))?;
                }
                eprintln!(
                    "dunning on {as_of}: {} steps taken, {} suspensions lifted",
                    report.taken.len(),
                    report.lifted.len()
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// A renewal as `receivables renewals --list` prints it.
fn renewal_doc(renewal: &tollgate_store::RenewalRow) -> serde_json::Value {
    serde_json::json!({
        "statement": renewal.invoice_id, "billingAccount": renewal.billing_account_id,
        "engineAccount": renewal.engine_account_id, "state": renewal.state.as_str(), "attempts": renewal.attempts,
        "amount": renewal.amount.to_string(), "currency": renewal.currency, "renewalOn": renewal.renewal_on.to_string(),
        "graceUntil": renewal.grace_until.to_string(), "reason": renewal.reason,
        "suspendOrders": renewal.suspend_order_ids, "resumeOrders": renewal.lifted_order_ids,
    })
}

/// The order flow the CLI's dunning and renewals place orders through (the engine's
/// operations go through the outbox, which `serve` applies).
fn order_flow(store: &tollgate_store::Store) -> Orders {
    let inventory = Inventory::new(store.clone(), InventoryConfig::default());
    Orders::new(store.clone(), Arc::new(PlansOnly(Plans::new())), Arc::new(InventoryResources::new(inventory, None)))
}

/// The dunning policy in the JSON file `path`, or the default one, checked.
pub(crate) fn dunning_policy(path: Option<&std::path::Path>) -> anyhow::Result<DunningPolicy> {
    let policy = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
            DunningPolicy::from_json(&text).with_context(|| format!("{}", path.display()))?
        }
        None => DunningPolicy::default(),
    };
    policy.validate()?;
    Ok(policy)
}

/// `serve`'s dunning run (`--dunning-every-seconds`): the steps due today (UTC) taken
/// through the order flow; a failed run raises an alarm on `dunning-run/serve`, the next
/// run that succeeds clears it.
pub(crate) struct PeriodicDunning {
    pub(crate) store: tollgate_store::Store,
    pub(crate) orders: Orders,
    pub(crate) policy: DunningPolicy,
    pub(crate) every: std::time::Duration,
    pub(crate) alarms: tollgate_alarms::Alarms,
}

impl PeriodicDunning {
    pub(crate) async fn run(self, stop: impl std::future::Future<Output = ()>) {
        use super::alarm::source::DUNNING_RUN;
        const OBJECT: &str = "dunning-run/serve";
        let receivables = Receivables::new(self.store.clone());
        let today = || {
            let now = Timestamp::now();
            (jiff::tz::Offset::UTC.to_datetime(now).date(), now)
        };
        let alarms = &self.alarms;
        let outcome = |result: tollgate_receivables::Result<tollgate_receivables::DunningReport>| async move {
            let raise = match &result {
                Ok(report) => {
                    if !report.taken.is_empty() || !report.lifted.is_empty() {
                        tracing::info!(
                            steps = report.taken.len(),
                            lifted = report.lifted.len(),
                            "dunning: steps taken and suspensions lifted"
                        );
                    }
                    let renewals = &report.renewals;
                    if !renewals.suspended.is_empty() || !renewals.lifted.is_empty() {
                        tracing::info!(
                            suspended = renewals.suspended.len(),
                            resumed = renewals.lifted.len(),
                            retried = renewals.retried.len(),
                            "prepaid renewals: accounts suspended past their grace and resumed once paid"
                        );
                    }
                    None
                }
                Err(error) => {
                    tracing::error!(%error, "the dunning run failed; it runs again at its next interval");
                    let problem = format!("dunning run failed: {error}");
                    Some(DUNNING_RUN.report(OBJECT, tollgate_alarms::PerceivedSeverity::Major, &problem))
                }
            };
            super::alarm::record(alarms, OBJECT, DUNNING_RUN, raise).await;
        };
        receivables
            .dun_periodically(&self.orders, &self.policy, self.every, "system:dunning", today, outcome, stop)
            .await;
    }
}
