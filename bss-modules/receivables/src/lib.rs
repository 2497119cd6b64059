//! Tollgate's receivables (issue 18): payments recorded through the API, the CLI or a bank
//! statement (ISO 20022 `camt.053`), allocated to the account's final invoices, the
//! accounts' aging, and dunning steps taken through the order flow; and the discounts and
//! credits a bill run applies, recorded from the CLI or the API (`reductions.rs`).
//!
//! Invariants:
//! - **A payment is recorded once** per source and reference (the API's request id, the
//!   bank's entry reference): a statement imported twice records nothing new.
//! - **Amounts add up**: what a payment paid plus what it has left is the payment; an
//!   invoice is never paid beyond what it owes (allocations of one account are made one
//!   transaction at a time, its billing account row locked).
//! - **Every change is audited** in the transaction that makes it (a payment with its
//!   allocations, a dunning step with its orders).
//! - **A dunning step is taken once per invoice**; a suspension by dunning goes through the
//!   order flow (a suspend order per account of the hierarchy), and is lifted (resume
//!   orders) once the hierarchy owes nothing overdue.
//!
//! The rules are `tollgate-billing`'s ([`allocate`], [`age`], [`DunningPolicy`]); the rows are
//! the store's. This crate reads, decides with the former and writes with the latter.
#![forbid(unsafe_code)]

mod error;
mod reductions;

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tollgate_billing::{
    age, allocate, days_overdue, minor_units, Aging, DunningAction, DunningPolicy, OpenInvoice, Statement,
};
use tollgate_customers::Principal;
use tollgate_orders::{OrderState, Orders};
use tollgate_store::{
    new_entity_id, renewal_key, AllocationRow, AuditRecord, DunningActionRow, NewEvent, OpenInvoiceRow, OutboxState,
    PaymentRow, ProductEntry, ProductFilter, RenewalRow, RenewalState, Store, Tx,
};

pub use error::{ReceivablesError, Result};
pub use reductions::{add_credit, add_discount, change_credit, credit_doc, discount_doc, discount_of, end_discount};

/// Where the payment API (shaped after TMF676) lives.
pub const PAYMENT_BASE_PATH: &str = "/tmf-api/paymentManagement/v4";
/// The customer bill API's root: dunning reminders are its events.
const BILL_BASE_PATH: &str = "/tmf-api/customerBillManagement/v4";
/// The event a payment publishes.
pub const PAYMENT_EVENT: &str = "PaymentCreateEvent";
/// The event a dunning reminder publishes: the operator's listener sends the letter.
pub const REMINDER_EVENT: &str = "CustomerBillDunningEvent";
/// The audit trail's entity types.
const PAYMENT_ENTITY: &str = "payment";
const DUNNING_ENTITY: &str = "dunning";
/// The payment methods a payment may name.
pub const PAYMENT_METHODS: [&str; 5] = ["bankTransfer", "card", "cash", "directDebit", "other"];
/// The source of payments imported from bank statements.
pub const STATEMENT_SOURCE: &str = "bank-statement";
/// The longest reference or remittance kept.
const MAX_REFERENCE_CHARS: usize = 140;

/// A payment to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    pub billing_account_id: String,
    pub amount: Decimal,
    pub currency: String,
    pub method: String,
    /// `api`, `cli`, [`STATEMENT_SOURCE`].
    pub source: String,
    /// Unique per source: a retried request with the same reference records nothing new.
    pub reference: String,
    /// The bill the payer named (bill number or invoice id).
    pub remittance: Option<String>,
    pub received_on: Date,
}

/// A recorded payment and what it paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub payment: PaymentRow,
    pub allocations: Vec<AllocationRow>,
    /// `false`: recorded before under the same reference; nothing was written.
    pub created: bool,
}

/// What importing a statement did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatementImport {
    pub recorded: u64,
    /// Credits recorded by an earlier import.
    pub already_recorded: u64,
    pub amount_recorded: BTreeMap<String, Decimal>,
    /// Credits that could not be matched or recorded: (byte offset, bank reference, why).
    pub rejects: Vec<(u64, String, String)>,
}

/// An account's aging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountAging {
    pub billing_account_id: String,
    pub currency: String,
    pub aging: Aging,
    pub invoices: usize,
}

/// What a dunning run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DunningReport {
    /// (invoice, step, action, orders placed).
    pub taken: Vec<(String, String, DunningAction, Vec<String>)>,
    /// (invoice, step, resume orders placed).
    pub lifted: Vec<(String, String, Vec<String>)>,
    /// What the prepaid renewals run beside it did ([`Receivables::dun_periodically`]).
    pub renewals: RenewalReport,
}

/// What a prepaid renewal run did, each entry (statement, billing account, …).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RenewalReport {
    /// Unpaid renewals whose debit was tried again: the new attempt's number.
    pub retried: Vec<(String, String, i64)>,
    /// Unpaid past their grace: the suspend orders placed.
    pub suspended: Vec<(String, String, Vec<String>)>,
    /// Paid after a suspension: the resume orders placed.
    pub lifted: Vec<(String, String, Vec<String>)>,
    /// Unpaid, refused on or after `as_of` with no money since: tried on a later day.
    pub waiting: Vec<(String, String)>,
}

/// The receivables of one store.
#[derive(Debug, Clone)]
pub struct Receivables {
    store: Store,
}

/// What a bank credit's remittance information names ([`Receivables::import_statement`]).
enum Remitted {
    /// A final invoice's number, and the account it bills.
    Bill { account: String, number: String },
    /// One billing account.
    Account(String),
    /// More than one billing account and no bill: the reason it is rejected.
    Ambiguous(String),
}

impl Receivables {
    pub fn new(store: Store) -> Receivables {
        Receivables { store }
    }

    /// Records a payment and allocates what the account has unallocated (this payment's
    /// and any earlier credit) to its open invoices, audited, in one transaction. A
    /// partner reaches its own hierarchy's accounts only.
    pub async fn record(&self, who: &Principal, mut new: NewPayment, now: Timestamp) -> Result<Recorded> {
        // Kept with exactly the currency's decimals (1.0000 KWD is 1.000), as invoices are.
        new.amount.rescale(check_payment(&new)?);
        // Money is not received in the future (a day of slack for the time zones of banks
        // ahead of UTC): a date in 2099 would age and dun nothing until then.
        let today = jiff::tz::Offset::UTC.to_datetime(now).date();
        if today.tomorrow().is_ok_and(|tomorrow| new.received_on > tomorrow) {
            return Err(ReceivablesError::invalid(
                "paymentDate",
                format!("{} is after today ({today}): a payment is recorded once received", new.received_on),
            ));
        }
        let mut tx = self.store.begin().await?;
        let Some(account) = tx.billing_account(&new.billing_account_id).await? else {
            return Err(ReceivablesError::invalid(
                "account.id",
                format!("no billing account {}", new.billing_account_id),
            ));
        };
        let account = account.value;
        if who.scope_root.as_deref().is_some_and(|root| root != account.root_id) {
            return Err(ReceivablesError::invalid(
                "account.id",
                format!("no billing account {}", new.billing_account_id),
            ));
        }
        if account.currency != new.currency {
            return Err(ReceivablesError::invalid(
                "amount.unit",
                format!("the account bills in {}, not {}", account.currency, new.currency),
            ));
        }
        // A hierarchy is invoiced at its root (one invoice, a section per account): a
        // payment for one of its other accounts pays that invoice, so it is the root's
        // (the remittance keeps what it named). Left on the child it stayed unallocated
        // while the root's invoice aged.
        let account = if account.root_id == account.id {
            account
        } else {
            tx.billing_account(&account.root_id).await?.map_or(account, |root| root.value)
        };
        tx.lock_receivables(&account.id).await?;
        let row = PaymentRow {
            id: new_entity_id()?,
            billing_account_id: account.id.clone(),
            amount: new.amount,
            currency: new.currency,
            method: new.method,
            source: new.source,
            reference: new.reference,
            remittance: new.remittance,
            received_on: new.received_on,
            created_at: now,
        };
        let (payment, created) = tx.insert_payment(&row).await?;
        if !created {
            drop(tx);
            // The same reference again is the same payment (a request or a file repeated);
            // with another account or amount it is another one under a taken reference.
            if (payment.billing_account_id.as_str(), payment.amount, payment.currency.as_str())
                != (account.id.as_str(), row.amount, row.currency.as_str())
            {
                return Err(ReceivablesError::invalid(
                    "correlatorId",
                    format!(
                        "reference {} was recorded before for {} {} to {}",
                        payment.reference, payment.amount, payment.currency, payment.billing_account_id
                    ),
                ));
            }
            let (payment, allocations) = self
                .store
                .payment(&payment.id)
                .await?
                .ok_or_else(|| ReceivablesError::NotFound { entity: "payment", id: payment.id.clone() })?;
            return Ok(Recorded { payment, allocations, created: false });
        }
        let allocated = settle_in(&mut tx, &account.id, now).await?;
        let allocations: Vec<AllocationRow> =
            allocated.iter().filter(|part| part.payment_id == payment.id).cloned().collect();
        let doc = payment_doc(&payment, &allocations);
        tx.audit(
            AuditRecord {
                actor: &who.actor,
                action: "create",
                entity_type: PAYMENT_ENTITY,
                entity_id: &payment.id,
                before: None,
                after: Some(&doc),
            },
            now,
        )
        .await?;
        audit_earlier(&mut tx, &who.actor, &allocated, &payment.id, now).await?;
        tx.publish_event(
            NewEvent {
                api: PAYMENT_BASE_PATH,
                event_type: PAYMENT_EVENT,
                entity_type: "payment",
                entity_id: &payment.id,
                entity: &doc,
            },
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Recorded { payment, allocations, created: true })
    }

    /// Allocates billing account `id`'s unallocated payments to its open invoices (a bill
    /// run calls it after making invoices final). Returns what it allocated.
    pub async fn settle(&self, actor: &str, id: &str, now: Timestamp) -> Result<Vec<AllocationRow>> {
        let mut tx = self.store.begin().await?;
        let allocated = settle_account(&mut tx, actor, id, now).await?;
        if !allocated.is_empty() {
            tx.commit().await?;
        }
        Ok(allocated)
    }

    /// Records the booked credits of a bank statement. A credit is matched by what the
    /// payer wrote: a bill number (`issuer/series/number`) of a final invoice, else a
    /// billing account id; it pays that account, the named invoice first. A credit that
    /// matches nothing, names two accounts and no bill, comes under a reference recorded
    /// for another payment, or whose currency is not the account's, is rejected with its
    /// reason, and the import goes on.
    pub async fn import_statement(
        &self,
        actor: &str,
        statement: &Statement,
        now: Timestamp,
    ) -> Result<StatementImport> {
        let who = Principal::admin(actor);
        let mut report = StatementImport::default();
        for reject in &statement.rejects {
            report.rejects.push((reject.offset, reject.reference.clone(), reject.reason.clone()));
        }
        for credit in &statement.credits {
            let (account, named) = match self.match_remittance(&credit.remittance).await? {
                Some(Remitted::Bill { account, number }) => (account, Some(number)),
                Some(Remitted::Account(account)) => (account, None),
                Some(Remitted::Ambiguous(reason)) => {
                    report.rejects.push((credit.offset, credit.reference.clone(), reason));
                    continue;
                }
                None => {
                    report.rejects.push((
                        credit.offset,
                        credit.reference.clone(),
                        "no bill number or billing account id in the remittance information".into(),
                    ));
                    continue;
                }
            };
            let new = NewPayment {
                billing_account_id: account,
                amount: credit.amount,
                currency: credit.currency.clone(),
                method: "bankTransfer".into(),
                source: STATEMENT_SOURCE.into(),
                reference: credit.reference.chars().take(MAX_REFERENCE_CHARS).collect(),
                remittance: named,
                received_on: credit.value_date,
            };
            match self.record(&who, new, now).await {
                Ok(recorded) if recorded.created => {
                    report.recorded += 1;
                    *report.amount_recorded.entry(credit.currency.clone()).or_default() += credit.amount;
                }
                Ok(_) => report.already_recorded += 1,
                Err(ReceivablesError::Invalid { field, reason }) => {
                    report.rejects.push((credit.offset, credit.reference.clone(), format!("{field}: {reason}")));
                }
                // An unknown currency is this credit's fault, not the statement's.
                Err(ReceivablesError::Billing(error)) => {
                    report.rejects.push((credit.offset, credit.reference.clone(), error.to_string()));
                }
                Err(other) => return Err(other),
            }
        }
        Ok(report)
    }

    /// What a remittance names: a bill (its account and number; the first bill number that
    /// is one), else one billing account; two accounts and no bill are no answer.
    async fn match_remittance(&self, remittance: &[String]) -> Result<Option<Remitted>> {
        let tokens = remittance.iter().flat_map(|text| {
            text.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '[' | ']'))
                .map(|token| token.trim_matches(|c: char| matches!(c, '.' | ':' | '#')))
                .filter(|token| !token.is_empty())
        });
        let mut accounts = Vec::new();
        for token in tokens.take(64) {
            let parts: Vec<&str> = token.split('/').collect();
            if let [issuer, series, number] = parts.as_slice() {
                if let Ok(number) = number.parse::<i64>() {
                    if let Some((_, account)) = self.store.invoice_by_number(issuer, series, number).await? {
                        return Ok(Some(Remitted::Bill { account, number: token.to_owned() }));
                    }
                }
            }
            accounts.push(token.to_owned());
        }
        let mut named: Vec<String> = Vec::new();
        for token in accounts {
            if token.len() <= 64 && !named.contains(&token) && self.store.billing_account(&token).await?.is_some() {
                named.push(token);
            }
        }
        match named.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(Remitted::Account(one.clone()))),
            [first, second, ..] => Ok(Some(Remitted::Ambiguous(format!(
                "the remittance names billing accounts {first} and {second}: which one is paid is not told"
            )))),
        }
    }

    /// Every account's aging on `as_of` (of the hierarchy under `root`, or of all).
    pub async fn aging(&self, as_of: Date, root: Option<&str>) -> Result<Vec<AccountAging>> {
        // What was owed at the end of that day: a payment or credit note of a later day
        // did not lower it, an invoice issued later was not owed.
        let open = self.store.receivables(root, Some(as_of)).await?;
        let mut by_account: BTreeMap<(String, String), Vec<OpenInvoice>> = BTreeMap::new();
        for row in open {
            by_account
                .entry((row.billing_account_id.clone(), row.currency.clone()))
                .or_default()
                .push(open_invoice(&row));
        }
        Ok(by_account
            .into_iter()
            .map(|((billing_account_id, currency), invoices)| {
                // In the currency's minor units (an unknown code, which no invoice has: as summed).
                let aging = age(as_of, &invoices);
                let aging = minor_units("currency", &currency).map_or(aging, |decimals| aging.with_decimals(decimals));
                AccountAging { billing_account_id, currency, aging, invoices: invoices.len() }
            })
            .collect())
    }

    /// Runs [`dunning`](Self::dunning), then [`renewals`](Self::renewals), at once and then every `every` until `stop`
    /// resolves, on the day and instant `today` gives; each run's result goes to
    /// `outcome` (the server logs it and raises or clears an alarm). A step is taken once,
    /// so running often only takes what became due since, and a server that was down
    /// catches up at its next run.
    #[allow(clippy::too_many_arguments)]
    pub async fn dun_periodically<Fut: std::future::Future<Output = ()>>(
        &self,
        orders: &Orders,
        policy: &DunningPolicy,
        every: std::time::Duration,
        actor: &str,
        today: impl Fn() -> (Date, Timestamp),
        mut outcome: impl FnMut(Result<DunningReport>) -> Fut,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = ticks.tick() => {}
            }
            let (as_of, now) = today();
            let result = tokio::select! {
                () = &mut stop => return,
                result = async {
                    // Each runs whatever the other did: a failing dunning run does not
                    // stop the renewals, nor the reverse (either failure is reported).
                    let dunning = self.dunning(orders, policy, as_of, actor, now).await;
                    let renewals = self.renewals(orders, as_of, actor, now).await;
                    let mut report = dunning?;
                    report.renewals = renewals?;
                    Ok(report)
                } => result,
            };
            outcome(result).await;
        }
    }

    /// Works the prepaid renewals left open (`tollgate bill-run` records one per account
    /// whose statement has fees): an unpaid one past its grace (`as_of` after its
    /// `grace_until`) gets a suspend order for its account's active lines, and is tried
    /// again (a new attempt through the outbox: the engine debits it once the balance
    /// allows, all or nothing); a paid one whose lines were suspended gets a resume order
    /// for the lines its suspension stopped. Orders are placed as `actor` under keys
    /// derived from the renewal, so a run replayed after a crash places none twice.
    pub async fn renewals(&self, orders: &Orders, as_of: Date, actor: &str, now: Timestamp) -> Result<RenewalReport> {
        let mut report = RenewalReport::default();
        let mut open = self.store.renewals_open().await?;
        let mut unanswered = BTreeSet::new();
        // An attempt whose outbox row failed for good (the engine unreachable through
        // every retry, or the row refused) is not answered and never will be: unpaid.
        for renewal in &mut open {
            if renewal.state != RenewalState::Pending {
                continue;
            }
            let key = renewal_key(&renewal.invoice_id, &renewal.billing_account_id, renewal.attempts);
            let Some(id) = self.store.outbox_id(&key).await? else { continue };
            let Some(entry) = self.store.outbox_entry(id).await? else { continue };
            if entry.state != OutboxState::Failed {
                continue;
            }
            let reason = format!("the engine operation failed for good: {}", entry.last_error.unwrap_or_default());
            let (invoice, account) = (renewal.invoice_id.as_str(), renewal.billing_account_id.as_str());
            let mut tx = self.store.begin().await?;
            if tx.settle_renewal(invoice, account, renewal.attempts, Some(&reason), now).await? {
                let after = json!({"action": "failed", "attempt": renewal.attempts, "reason": reason});
                audit_renewal(&mut tx, actor, "update", &format!("{invoice}/{account}"), &after, now).await?;
            }
            tx.commit().await?;
            renewal.state = RenewalState::Unpaid;
            renewal.reason = Some(reason);
            // Not refused by the engine (it never answered): tried again now.
            unanswered.insert((renewal.invoice_id.clone(), renewal.billing_account_id.clone()));
        }
        // Accounts with a renewal unpaid past its grace stay suspended, whatever their other
        // renewals (a second unpaid month found the lines suspended by the first already).
        let overdue: BTreeSet<String> = open
            .iter()
            .filter(|renewal| renewal.state != RenewalState::Paid && as_of > renewal.grace_until)
            .map(|renewal| renewal.billing_account_id.clone())
            .collect();
        for renewal in open {
            let (invoice, account) = (renewal.invoice_id.as_str(), renewal.billing_account_id.as_str());
            let entity = format!("{invoice}/{account}");
            let key = format!("renewal:{invoice}:{account}");
            if renewal.state == RenewalState::Paid {
                if overdue.contains(account) {
                    continue;
                }
                let ids = renewal.suspend_order_ids.clone().unwrap_or_default();
                // Lines a suspend order still under way would stop are not suspended yet:
                // lifted before it ends, they would stay suspended. The next run lifts.
                if !self.orders_ended(orders, actor, &ids).await? {
                    continue;
                }
                let suspended = self.suspended_by(orders, actor, &ids).await?;
                let resumed = self
                    .place_for(
                        orders,
                        actor,
                        &renewal.root_id,
                        Some(account),
                        "suspended",
                        "active",
                        Some(&suspended),
                        &format!("{key}:lift"),
                        now,
                    )
                    .await?;
                let mut tx = self.store.begin().await?;
                if tx.lift_renewal(invoice, account, &resumed.join(","), now).await? {
                    let after = json!({"action": "resume",
                        "productOrder": resumed.iter().map(|id| json!({"id": id})).collect::<Vec<_>>()});
                    audit_renewal(&mut tx, actor, "update", &entity, &after, now).await?;
                    tx.commit().await?;
                    report.lifted.push((invoice.to_owned(), account.to_owned(), resumed));
                }
                continue;
            }
            if as_of > renewal.grace_until && renewal.suspended_at.is_none() {
                let placed = self
                    .place_for(
                        orders,
                        actor,
                        &renewal.root_id,
                        Some(account),
                        "active",
                        "suspended",
                        None,
                        &format!("{key}:suspend"),
                        now,
                    )
                    .await?;
                let mut tx = self.store.begin().await?;
                if tx.suspend_renewal(invoice, account, &placed.join(","), now).await? {
                    let after = json!({"action": "suspend", "graceUntil": renewal.grace_until.to_string(),
                        "reason": renewal.reason,
                        "productOrder": placed.iter().map(|id| json!({"id": id})).collect::<Vec<_>>()});
                    audit_renewal(&mut tx, actor, "update", &entity, &after, now).await?;
                    tx.commit().await?;
                    report.suspended.push((invoice.to_owned(), account.to_owned(), placed));
                }
            }
            if renewal.state != RenewalState::Unpaid {
                continue;
            }
            // Tried again once a day (the first run whose `as_of` is a later day than its
            // last refusal, UTC), or at once when money reached the balance since (a
            // top-up): a refused debit is not repeated at every run for nothing.
            let refused_on = jiff::tz::Offset::UTC.to_datetime(renewal.updated_at).date();
            let answered = !unanswered.contains(&(invoice.to_owned(), account.to_owned()));
            if answered && refused_on >= as_of && !self.store.credited_since(account, renewal.updated_at).await? {
                report.waiting.push((invoice.to_owned(), account.to_owned()));
                continue;
            }
            let Some(statement) = self.store.invoice(invoice).await? else { continue };
            let bill_no = match statement.number {
                Some(number) => format!("{}/{}/{number}", statement.issuer, statement.series),
                None => statement.id.clone(),
            };
            let mut tx = self.store.begin().await?;
            let Some(attempt) = tx.retry_renewal(invoice, account, now).await? else { continue };
            let operation = tollgate_customers::EngineOperation::RenewalFee {
                account: renewal.engine_account_id,
                amount: renewal.amount,
                statement: bill_no,
            };
            tollgate_customers::enqueue_operation(
                &mut tx,
                &operation,
                &renewal_key(invoice, account, attempt),
                account,
                now,
            )
            .await?;
            let after = json!({"action": "retry", "attempt": attempt, "reason": renewal.reason});
            audit_renewal(&mut tx, actor, "update", &entity, &after, now).await?;
            tx.commit().await?;
            report.retried.push((invoice.to_owned(), account.to_owned(), attempt));
        }
        Ok(report)
    }

    /// Takes the dunning steps due on `as_of` under `policy`, and lifts the suspensions of
    /// hierarchies that owe nothing overdue any more. Orders are placed as `actor`.
    pub async fn dunning(
        &self,
        orders: &Orders,
        policy: &DunningPolicy,
        as_of: Date,
        actor: &str,
        now: Timestamp,
    ) -> Result<DunningReport> {
        policy.validate()?;
        let mut report = DunningReport::default();
        let open = self.store.receivables(None, None).await?;
        let ids: Vec<&str> = open.iter().map(|row| row.invoice_id.as_str()).collect();
        let taken = self.store.dunning_taken(&ids).await?;
        let none = BTreeSet::new();
        // Hierarchies with something overdue still (they stay suspended).
        let mut overdue_roots = BTreeSet::new();
        // Hierarchies suspended by a step not lifted yet, or by one taken in this run: a
        // later invoice's suspend step is recorded without orders (its lines are, or are
        // being, suspended). Placed again, the orders failed on lines already suspended,
        // and their lift resumed lines they never suspended.
        let mut suspended_roots: BTreeSet<String> =
            self.store.dunning_suspensions().await?.into_iter().map(|step| step.billing_account_id).collect();
        for invoice in &open {
            let days = days_overdue(as_of, invoice.due_on);
            if days > 0 && invoice.outstanding >= policy.minimum_outstanding {
                overdue_roots.insert(invoice.root_id.clone());
            }
            let done = taken.get(&invoice.invoice_id).unwrap_or(&none);
            for step in policy.due_steps(days, invoice.outstanding, done) {
                let order_ids = match step.action {
                    DunningAction::Reminder => Vec::new(),
                    DunningAction::Suspend if suspended_roots.contains(&invoice.root_id) => Vec::new(),
                    DunningAction::Suspend => {
                        let key = format!("dunning:{}:{}", invoice.invoice_id, step.name);
                        let placed =
                            self.place(orders, actor, &invoice.root_id, "active", "suspended", &key, now).await?;
                        suspended_roots.insert(invoice.root_id.clone());
                        placed
                    }
                };
                let row = DunningActionRow {
                    invoice_id: invoice.invoice_id.clone(),
                    step: step.name.clone(),
                    action: match step.action {
                        DunningAction::Reminder => "reminder".into(),
                        DunningAction::Suspend => "suspend".into(),
                    },
                    billing_account_id: invoice.billing_account_id.clone(),
                    order_ids: order_ids.join(","),
                    taken_on: as_of,
                    taken_at: now,
                    lifted_order_ids: None,
                    lifted_at: None,
                };
                let doc = json!({
                    "customerBill": {"id": invoice.invoice_id, "billNo": invoice.bill_no,
                        "href": format!("{BILL_BASE_PATH}/customerBill/{}", invoice.invoice_id)},
                    "billingAccount": {"id": invoice.billing_account_id},
                    "step": step.name,
                    "action": row.action,
                    "daysOverdue": days,
                    "remainingAmount": {"unit": invoice.currency, "value": invoice.outstanding.to_string()},
                    "dueDate": invoice.due_on.to_string(),
                    "productOrder": order_ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
                });
                let mut tx = self.store.begin().await?;
                if !tx.insert_dunning_action(&row).await? {
                    continue;
                }
                let key = format!("{}/{}", row.invoice_id, row.step);
                tx.audit(
                    AuditRecord {
                        actor,
                        action: "create",
                        entity_type: DUNNING_ENTITY,
                        entity_id: &key,
                        before: None,
                        after: Some(&doc),
                    },
                    now,
                )
                .await?;
                if step.action == DunningAction::Reminder {
                    tx.publish_event(
                        NewEvent {
                            api: BILL_BASE_PATH,
                            event_type: REMINDER_EVENT,
                            entity_type: "customerBill",
                            entity_id: &invoice.invoice_id,
                            entity: &doc,
                        },
                        now,
                    )
                    .await?;
                }
                tx.commit().await?;
                report.taken.push((row.invoice_id, row.step, step.action, order_ids));
            }
        }
        for suspension in self.store.dunning_suspensions().await? {
            let Some(invoice) = self.store.invoice(&suspension.invoice_id).await? else { continue };
            if overdue_roots.contains(&invoice.root_id) {
                continue;
            }
            // A step recorded with no order by a replay before the orders were looked up
            // by their keys: its orders are found by those keys now.
            let order_ids = if suspension.order_ids.is_empty() {
                let prefix = format!("dunning:{}:{}:", suspension.invoice_id, suspension.step);
                self.store.product_order_ids_keyed_per_account(&invoice.root_id, &prefix).await?.join(",")
            } else {
                suspension.order_ids.clone()
            };
            // Lines a suspend order still under way would stop are not suspended yet:
            // lifted before it ends, they would stay suspended. The next run lifts.
            if !self.orders_ended(orders, actor, &order_ids).await? {
                continue;
            }
            let suspended: BTreeSet<String> = self.suspended_by(orders, actor, &order_ids).await?;
            let key = format!("dunning:{}:{}:lift", suspension.invoice_id, suspension.step);
            let resumed = self
                .place_for(orders, actor, &invoice.root_id, None, "suspended", "active", Some(&suspended), &key, now)
                .await?;
            let mut tx = self.store.begin().await?;
            let key = format!("{}/{}", suspension.invoice_id, suspension.step);
            if !tx.lift_dunning_suspension(&suspension.invoice_id, &suspension.step, &resumed.join(","), now).await? {
                continue;
            }
            let after = json!({"step": suspension.step, "action": "resume",
                "productOrder": resumed.iter().map(|id| json!({"id": id})).collect::<Vec<_>>()});
            tx.audit(
                AuditRecord {
                    actor,
                    action: "update",
                    entity_type: DUNNING_ENTITY,
                    entity_id: &key,
                    before: None,
                    after: Some(&after),
                },
                now,
            )
            .await?;
            tx.commit().await?;
            report.lifted.push((suspension.invoice_id, suspension.step, resumed));
        }
        Ok(report)
    }

    /// Places, per account of hierarchy `root`, one order moving its lines in status `from`
    /// to status `to`, under idempotency key `key` and the account's id, so a run replayed
    /// after a crash finds the orders it placed instead of placing more. Returns the
    /// orders' ids.
    #[allow(clippy::too_many_arguments)]
    async fn place(
        &self,
        orders: &Orders,
        actor: &str,
        root: &str,
        from: &str,
        to: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<Vec<String>> {
        self.place_for(orders, actor, root, None, from, to, None, key, now).await
    }

    /// As [`place`](Self::place), only for billing account `account` of the hierarchy
    /// when given, and only for the products in `only` when given (none when it is empty).
    #[allow(clippy::too_many_arguments)]
    async fn place_for(
        &self,
        orders: &Orders,
        actor: &str,
        root: &str,
        account: Option<&str>,
        from: &str,
        to: &str,
        only: Option<&BTreeSet<String>>,
        key: &str,
        now: Timestamp,
    ) -> Result<Vec<String>> {
        let filter = ProductFilter {
            status: Some(from.to_owned()),
            billing_account_id: account.map(str::to_owned),
            root_id: Some(root.to_owned()),
        };
        let mut by_account: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut offset = 0;
        loop {
            let page = self.store.product_list(&filter, offset, 500).await?;
            let count = page.items.len();
            for entry in page.items {
                if let ProductEntry::Line(line) = entry.value {
                    let line = line.value;
                    if only.is_none_or(|only| only.contains(&line.subscription.id)) {
                        by_account
                            .entry(line.subscription.billing_account_id.clone())
                            .or_default()
                            .push(line.subscription.id);
                    }
                }
            }
            offset += count as u64;
            if count == 0 || offset >= u64::try_from(page.total).unwrap_or(0) {
                break;
            }
        }
        let who = Principal::admin(actor);
        // A run replayed after a crash: the orders it placed before are its orders even
        // when they completed meanwhile and their lines are no longer in status `from`
        // (without them, a later lift would know no lines and move every one).
        let mut placed = self.store.product_order_ids_keyed_per_account(root, &format!("{key}:")).await?;
        for (account, products) in by_account {
            let items: Vec<Value> = products
                .iter()
                .enumerate()
                .map(|(i, product)| {
                    json!({"id": (i + 1).to_string(), "action": "modify", "product": {"id": product, "status": to}})
                })
                .collect();
            let doc = json!({
                "billingAccount": {"id": account},
                "category": "dunning",
                "description": format!("dunning: {from} to {to}"),
                "productOrderItem": items,
            });
            let order = orders.create_once(&who, doc, &format!("{key}:{account}"), now).await?;
            if let Some(id) = order.value.get("id").and_then(Value::as_str) {
                if !placed.iter().any(|known| known == id) {
                    placed.push(id.to_owned());
                }
            }
        }
        Ok(placed)
    }

    /// Whether the orders `ids` (comma-separated) have all ended (completed, failed,
    /// partial or cancelled).
    async fn orders_ended(&self, orders: &Orders, actor: &str, ids: &str) -> Result<bool> {
        let who = Principal::admin(actor);
        for id in ids.split(',').filter(|id| !id.is_empty()) {
            let order = orders.get(&who, id).await?;
            let state = order.value.get("state").and_then(Value::as_str).and_then(OrderState::parse);
            if !state.is_some_and(OrderState::is_final) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The products the orders `ids` (comma-separated) suspended.
    async fn suspended_by(&self, orders: &Orders, actor: &str, ids: &str) -> Result<BTreeSet<String>> {
        let who = Principal::admin(actor);
        let mut products = BTreeSet::new();
        for id in ids.split(',').filter(|id| !id.is_empty()) {
            let order = orders.get(&who, id).await?;
            // Only what the order did suspended a line: all its items when it completed,
            // the completed ones of a partly done order, none of a failed or cancelled
            // one (the line was suspended already, or ended: not the dunning's to lift).
            let completed = Some(OrderState::Completed.as_str());
            let whole = order.value.get("state").and_then(Value::as_str) == completed;
            for item in order.value.get("productOrderItem").and_then(Value::as_array).into_iter().flatten() {
                if !whole && item.get("state").and_then(Value::as_str) != completed {
                    continue;
                }
                if let Some(product) = item.pointer("/product/id").and_then(Value::as_str) {
                    products.insert(product.to_owned());
                }
            }
        }
        Ok(products)
    }
}

/// Records the renewals of a prepaid statement being made final (numbered `statement_no`),
/// in the caller's transaction, each with its first debit in the outbox: the statement,
/// its renewals and their debits commit together, once (a renewal recorded before is
/// left as it is). Returns how many were recorded.
pub async fn open_renewals(tx: &mut Tx, renewals: &[RenewalRow], statement_no: &str, now: Timestamp) -> Result<usize> {
    let mut opened = 0;
    for renewal in renewals {
        let renewal = RenewalRow { attempts: 1, created_at: now, updated_at: now, ..renewal.clone() };
        if !tx.insert_renewal(&renewal).await? {
            continue;
        }
        let operation = tollgate_customers::EngineOperation::RenewalFee {
            account: renewal.engine_account_id,
            amount: renewal.amount,
            statement: statement_no.to_owned(),
        };
        let key = renewal_key(&renewal.invoice_id, &renewal.billing_account_id, 1);
        tollgate_customers::enqueue_operation(tx, &operation, &key, &renewal.billing_account_id, now).await?;
        let after = json!({"action": "open", "statement": statement_no, "amount": renewal.amount.to_string(),
            "currency": renewal.currency, "renewalOn": renewal.renewal_on.to_string(),
            "graceUntil": renewal.grace_until.to_string()});
        let entity = format!("{}/{}", renewal.invoice_id, renewal.billing_account_id);
        audit_renewal(tx, SYSTEM_ACTOR, "create", &entity, &after, now).await?;
        opened += 1;
    }
    Ok(opened)
}

/// The audit actor of the renewals a bill run opens.
const SYSTEM_ACTOR: &str = "system:bill-run";

/// Records a step of a prepaid renewal (`STATEMENT/ACCOUNT`) in the audit trail.
async fn audit_renewal(
    tx: &mut Tx,
    actor: &str,
    action: &str,
    entity: &str,
    after: &Value,
    now: Timestamp,
) -> Result<()> {
    let record = AuditRecord {
        actor,
        action,
        entity_type: tollgate_customers::RENEWAL_ENTITY,
        entity_id: entity,
        before: None,
        after: Some(after),
    };
    tx.audit(record, now).await?;
    Ok(())
}

/// [`Receivables::settle`] inside the caller's transaction: a bill run settles an account in
/// the transaction that makes its invoice final, so the two commit together. Locks the
/// account's receivables, allocates, audits; returns the allocations written.
pub async fn settle_account(tx: &mut Tx, actor: &str, id: &str, now: Timestamp) -> Result<Vec<AllocationRow>> {
    tx.lock_receivables(id).await?;
    let allocated = settle_in(tx, id, now).await?;
    audit_earlier(tx, actor, &allocated, "", now).await?;
    Ok(allocated)
}

/// Allocates every unallocated payment of account `id` to its open invoices, oldest
/// payment first. Returns the allocations written.
async fn settle_in(tx: &mut Tx, id: &str, now: Timestamp) -> Result<Vec<AllocationRow>> {
    let mut open: Vec<OpenInvoice> = tx.open_invoices(id).await?.iter().map(open_invoice).collect();
    let mut written = Vec::new();
    for unallocated in tx.unallocated_payments(id).await? {
        if open.iter().all(|invoice| invoice.outstanding <= Decimal::ZERO) {
            break;
        }
        let payment = unallocated.payment;
        let allocation = allocate(unallocated.left, &open, payment.remittance.as_deref())?;
        tx.insert_allocations(&payment.id, &allocation.parts, now).await?;
        for (invoice_id, amount) in allocation.parts {
            if let Some(invoice) = open.iter_mut().find(|invoice| invoice.invoice_id == invoice_id) {
                invoice.outstanding -= amount;
            }
            written.push(AllocationRow { payment_id: payment.id.clone(), invoice_id, amount, allocated_at: now });
        }
    }
    Ok(written)
}

/// The `source` of a payment a document gave the customer ([`carry_credit`]).
pub const CARRIED_CREDIT_SOURCE: &str = "carried-credit";

/// Credit a document gives the customer rather than asks of them: a final invoice whose
/// total is below zero (fees paid in advance given back after a termination, more than
/// the cycle's charges), or a credit note for more than its invoice still owed (it was
/// paid). Recorded once per document (`reference`, its id) on billing account `account`
/// as a payment from it (source [`CARRIED_CREDIT_SOURCE`], method `other`), audited; the
/// caller settles the account, so the credit pays what it owes now or next, as any credit
/// on account does. Before, such a credit stayed on its document: the account was aged
/// and dunned for the invoice the credit should have paid. Returns the payment when it
/// was recorded now.
#[allow(clippy::too_many_arguments, reason = "one credit's parts")]
pub async fn carry_credit(
    tx: &mut Tx,
    actor: &str,
    account: &str,
    currency: &str,
    amount: Decimal,
    reference: &str,
    received_on: Date,
    now: Timestamp,
) -> Result<Option<PaymentRow>> {
    if amount <= Decimal::ZERO {
        return Ok(None);
    }
    tx.lock_receivables(account).await?;
    let row = PaymentRow {
        id: new_entity_id()?,
        billing_account_id: account.to_owned(),
        amount,
        currency: currency.to_owned(),
        method: "other".to_owned(),
        source: CARRIED_CREDIT_SOURCE.to_owned(),
        reference: reference.to_owned(),
        remittance: None,
        received_on,
        created_at: now,
    };
    let (payment, created) = tx.insert_payment(&row).await?;
    if !created {
        return Ok(None);
    }
    let doc = payment_doc(&payment, &[]);
    let record = AuditRecord {
        actor,
        action: "create",
        entity_type: PAYMENT_ENTITY,
        entity_id: &payment.id,
        before: None,
        after: Some(&doc),
    };
    tx.audit(record, now).await?;
    Ok(Some(payment))
}

/// Audits the allocations of earlier payments (credit on account) other than `except`.
async fn audit_earlier(
    tx: &mut Tx,
    actor: &str,
    allocated: &[AllocationRow],
    except: &str,
    now: Timestamp,
) -> Result<()> {
    for part in allocated.iter().filter(|part| part.payment_id != except) {
        let key = format!("{}/{}", part.payment_id, part.invoice_id);
        let after = json!({"payment": {"id": part.payment_id}, "customerBill": {"id": part.invoice_id},
            "amount": part.amount.to_string()});
        tx.audit(
            AuditRecord {
                actor,
                action: "allocate",
                entity_type: PAYMENT_ENTITY,
                entity_id: &key,
                before: None,
                after: Some(&after),
            },
            now,
        )
        .await?;
    }
    Ok(())
}

fn open_invoice(row: &OpenInvoiceRow) -> OpenInvoice {
    OpenInvoice {
        invoice_id: row.invoice_id.clone(),
        bill_no: row.bill_no.clone(),
        due_on: row.due_on,
        outstanding: row.outstanding,
    }
}

/// A payment's own checks: an amount above zero in the currency's minor units, a known
/// method, a reference and remittance of bounded length.
/// Checks a payment; the minor-unit digits of its currency.
fn check_payment(new: &NewPayment) -> Result<u32> {
    let units = minor_units("amount.unit", &new.currency)?;
    if new.amount <= Decimal::ZERO {
        return Err(ReceivablesError::invalid("amount.value", format!("{} is not more than zero", new.amount)));
    }
    let digits = tollgate_billing::significant_digits(new.amount);
    if digits > tollgate_customers::MAX_MONEY_DIGITS {
        return Err(ReceivablesError::invalid(
            "amount.value",
            format!("{} has more than {} digits", new.amount, tollgate_customers::MAX_MONEY_DIGITS),
        ));
    }
    if new.amount.normalize().scale() > units {
        return Err(ReceivablesError::invalid(
            "amount.value",
            format!("{} has more decimals than {}'s {units}", new.amount, new.currency),
        ));
    }
    if !PAYMENT_METHODS.contains(&new.method.as_str()) {
        return Err(ReceivablesError::invalid("paymentMethod", format!("one of {}", PAYMENT_METHODS.join(", "))));
    }
    if new.reference.is_empty() || new.reference.chars().count() > MAX_REFERENCE_CHARS {
        return Err(ReceivablesError::invalid("correlatorId", format!("1 to {MAX_REFERENCE_CHARS} characters")));
    }
    if new.remittance.as_ref().is_some_and(|text| text.chars().count() > MAX_REFERENCE_CHARS) {
        return Err(ReceivablesError::invalid("description", format!("at most {MAX_REFERENCE_CHARS} characters")));
    }
    Ok(units)
}

/// A payment as TMF676 shows it (money as JSON numbers with their exact digits):
/// `paymentItem` holds what it paid, `unallocatedAmount` what it has left as credit on the
/// account.
pub fn payment_doc(payment: &PaymentRow, allocations: &[AllocationRow]) -> Value {
    let money = |value: Decimal| json!({"unit": payment.currency, "value": tollgate_customers::money_json(value)});
    let allocated: Decimal = allocations.iter().map(|part| part.amount).sum();
    json!({
        "id": payment.id,
        "href": format!("{PAYMENT_BASE_PATH}/payment/{}", payment.id),
        "@type": "Payment",
        "status": "succeeded",
        "account": {"id": payment.billing_account_id, "@referredType": "BillingAccount",
            "href": format!("/tmf-api/accountManagement/v4/billingAccount/{}", payment.billing_account_id)},
        "amount": money(payment.amount),
        "totalAmount": money(payment.amount),
        "unallocatedAmount": money(payment.amount - allocated),
        "paymentDate": format!("{}T00:00:00Z", payment.received_on),
        "paymentMethod": {"@type": payment.method},
        "channel": {"name": payment.source},
        "correlatorId": payment.reference,
        "description": payment.remittance,
        "paymentItem": allocations.iter().map(|part| json!({
            "amount": money(part.amount),
            "item": {"id": part.invoice_id, "@referredType": "CustomerBill",
                "href": format!("{BILL_BASE_PATH}/customerBill/{}", part.invoice_id)},
        })).collect::<Vec<_>>(),
    })
}
