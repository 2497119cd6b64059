//! Ledger entries: what one journal record amounts to, line by line. Every money
//! movement of the record is on exactly one entry, so the entries of an account add up
//! to its balance.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::format::charges::{ChargeDetail, Charges};
use crate::journal::{JournalEntry, RecordKind};
use crate::model::{AccountId, BucketId, Identity, SubscriptionId};
use crate::state::{Effect, MoneyKind, RatedDetail};

/// What kind of change an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EntryKind {
    /// Rated usage: an online session's step, a direct debit or a mediated record.
    Usage,
    /// An account's opening balance.
    Opening,
    TopUp,
    Refund,
    Adjustment,
    /// A rerate gives back a record's old charge (positive) …
    RerateRefund,
    /// … and takes its new one (negative).
    RerateCharge,
    /// A charge without itemisation (journaled before the ledger existed, or with
    /// itemisation off).
    Charge,
    /// Units granted: a subscription's or a new plan's allowances.
    Grant,
    /// An allowance renewed for a new cycle.
    Renewal,
}

impl EntryKind {
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::Usage => "usage",
            EntryKind::Opening => "opening",
            EntryKind::TopUp => "top_up",
            EntryKind::Refund => "refund",
            EntryKind::Adjustment => "adjustment",
            EntryKind::RerateRefund => "rerate_refund",
            EntryKind::RerateCharge => "rerate_charge",
            EntryKind::Charge => "charge",
            EntryKind::Grant => "grant",
            EntryKind::Renewal => "renewal",
        }
    }

    pub(crate) const ALL: [EntryKind; 10] = [
        EntryKind::Usage,
        EntryKind::Opening,
        EntryKind::TopUp,
        EntryKind::Refund,
        EntryKind::Adjustment,
        EntryKind::RerateRefund,
        EntryKind::RerateCharge,
        EntryKind::Charge,
        EntryKind::Grant,
        EntryKind::Renewal,
    ];

    pub(crate) fn code(self) -> u8 {
        EntryKind::ALL.iter().position(|k| *k == self).unwrap_or(0) as u8
    }

    pub(crate) fn of_code(code: u8) -> Option<EntryKind> {
        EntryKind::ALL.get(usize::from(code)).copied()
    }
}

/// One line of the rated-event ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    /// The journal position of the record that made the change (per shard).
    pub lsn: u64,
    /// When the engine decided it (Unix seconds): the entry's posting time, which picks
    /// its period.
    pub posted_at: i64,
    pub kind: EntryKind,
    pub account: AccountId,
    /// Money moved on the account's balance: negative for a charge.
    pub amount: Decimal,
    pub currency: Option<String>,
    pub subscription: Option<SubscriptionId>,
    /// The subscription's first identity when charged, `type:value`.
    pub identity: Option<String>,
    pub service: Option<String>,
    pub rating_group: Option<u32>,
    /// The called number as reported.
    pub called: Option<String>,
    /// The leading digits of the called number the plan's prefix matched.
    pub prefix: Option<String>,
    /// The plan's destination (zone) name.
    pub destination: Option<String>,
    pub band: Option<String>,
    /// When the usage started (Unix seconds).
    pub started_at: Option<i64>,
    /// Units reported, charged (after first interval and increments), and paid by
    /// allowances; for a grant, the units granted.
    pub units: u64,
    pub charged_units: u64,
    pub allowance_units: u64,
    /// Units drawn per unit bucket.
    pub draws: Vec<(BucketId, u64)>,
    pub plan: Option<String>,
    pub plan_version: Option<u32>,
    /// The plan file's line of the opening rate.
    pub rate_line: Option<u32>,
    /// The request's idempotency key (a mediated record's: its 128-bit digest in hex).
    pub key: Option<String>,
    /// A top-up's reference, a refund's or adjustment's reason, a rerated record's key,
    /// a grant's validity.
    pub note: Option<String>,
    /// The money or unit bucket the entry is about, where one is.
    pub bucket: Option<BucketId>,
}

impl LedgerEntry {
    pub(crate) fn new(lsn: u64, posted_at: i64, kind: EntryKind, account: AccountId, amount: Decimal) -> LedgerEntry {
        LedgerEntry {
            lsn,
            posted_at,
            kind,
            account,
            amount,
            currency: None,
            subscription: None,
            identity: None,
            service: None,
            rating_group: None,
            called: None,
            prefix: None,
            destination: None,
            band: None,
            started_at: None,
            units: 0,
            charged_units: 0,
            allowance_units: 0,
            draws: Vec::new(),
            plan: None,
            plan_version: None,
            rate_line: None,
            key: None,
            note: None,
            bucket: None,
        }
    }
}

/// The entries of a journal record of `kind`.
pub(crate) fn entries_of(lsn: u64, kind: RecordKind, payload: &[u8]) -> Result<Vec<LedgerEntry>, String> {
    match kind {
        RecordKind::Effects => Ok(entries_of_effects(lsn, &JournalEntry::decode(payload)?)),
        RecordKind::CompactEffects => Ok(entries_of_effects(lsn, &crate::format::effects::decode(payload)?)),
        RecordKind::Charges => Ok(entries_of_charges(lsn, &crate::format::charges::decode_charges(payload)?)),
        RecordKind::CompactCharges => {
            Ok(entries_of_charges(lsn, &crate::format::charges::decode_compact_charges(payload)?))
        }
    }
}

fn identity_text(kind: u8, value: &str) -> String {
    let tag = match kind {
        1 => "msisdn",
        2 => "imsi",
        3 => "sip",
        _ => "nai",
    };
    format!("{tag}:{value}")
}

fn identity_of(identity: &Identity) -> String {
    let (kind, value) = crate::bulk::identity_parts(identity);
    identity_text(kind, value)
}

fn prefix_of(called: Option<&str>, prefix_len: u8) -> Option<String> {
    let called = called?;
    let digits: String = called.chars().filter(char::is_ascii_digit).take(usize::from(prefix_len)).collect();
    (prefix_len > 0).then_some(digits)
}

fn entries_of_effects(lsn: u64, record: &JournalEntry) -> Vec<LedgerEntry> {
    let at = record.decided_at;
    let key = record.effects.iter().find_map(|effect| match effect {
        Effect::Remembered { key, .. } => Some(key.clone()),
        _ => None,
    });
    let mut out = Vec::new();
    // Σ charges of the record per account, against Σ of its itemised amounts.
    let mut unitemised: BTreeMap<AccountId, Decimal> = BTreeMap::new();
    for effect in &record.effects {
        match effect {
            Effect::Money { account, bucket, delta, kind } => {
                let (kind, note) = match kind {
                    MoneyKind::Charge => {
                        *unitemised.entry(*account).or_default() += *delta;
                        continue;
                    }
                    MoneyKind::Opening => (EntryKind::Opening, None),
                    MoneyKind::TopUp { reference } => (EntryKind::TopUp, Some(reference)),
                    MoneyKind::Refund { reason } => (EntryKind::Refund, Some(reason)),
                    MoneyKind::Adjustment { reason } => (EntryKind::Adjustment, Some(reason)),
                    MoneyKind::Rerate { record } if delta.is_sign_positive() => (EntryKind::RerateRefund, Some(record)),
                    MoneyKind::Rerate { record } => (EntryKind::RerateCharge, Some(record)),
                };
                let mut entry = LedgerEntry::new(lsn, at, kind, *account, *delta);
                entry.note = note.cloned();
                entry.bucket = Some(*bucket);
                out.push(entry);
            }
            Effect::Rated(detail) => {
                *unitemised.entry(detail.account).or_default() += detail.amount;
                out.push(rated_entry(lsn, at, detail));
            }
            Effect::SubscriptionCreated { subscription, buckets } => {
                for bucket in buckets {
                    out.push(grant(lsn, at, subscription.account, EntryKind::Grant, bucket));
                }
            }
            Effect::BucketsGranted { account, buckets } => {
                for bucket in buckets {
                    out.push(grant(lsn, at, *account, EntryKind::Grant, bucket));
                }
            }
            Effect::BucketRenewed { account, bucket, valid_from, valid_until } => {
                let mut entry = LedgerEntry::new(lsn, at, EntryKind::Renewal, *account, Decimal::ZERO);
                entry.bucket = Some(*bucket);
                entry.note = Some(format!("valid {valid_from}..{valid_until}"));
                out.push(entry);
            }
            _ => {}
        }
    }
    for (account, rest) in unitemised {
        if !rest.is_zero() {
            out.push(LedgerEntry::new(lsn, at, EntryKind::Charge, account, rest));
        }
    }
    for entry in &mut out {
        entry.key.clone_from(&key);
    }
    out
}

fn grant(lsn: u64, at: i64, account: AccountId, kind: EntryKind, bucket: &crate::model::UnitBucket) -> LedgerEntry {
    let mut entry = LedgerEntry::new(lsn, at, kind, account, Decimal::ZERO);
    entry.subscription = Some(bucket.subscription);
    entry.bucket = Some(bucket.id);
    entry.units = bucket.remaining;
    entry.note = Some(format!("valid {}..{}", bucket.valid_from, bucket.valid_until));
    entry
}

fn rated_entry(lsn: u64, at: i64, d: &RatedDetail) -> LedgerEntry {
    let mut entry = LedgerEntry::new(lsn, at, EntryKind::Usage, d.account, -d.amount);
    entry.currency = Some(d.currency.to_string());
    entry.subscription = Some(d.subscription);
    entry.identity = d.identity.as_ref().map(identity_of);
    entry.service = Some(d.service.to_string());
    entry.rating_group = d.rating_group;
    entry.prefix = prefix_of(d.called.as_deref(), d.prefix_len);
    entry.called.clone_from(&d.called);
    entry.destination = d.destination.as_deref().map(str::to_owned);
    entry.band = Some(d.band.to_string());
    entry.started_at = Some(d.started_at);
    entry.units = d.units;
    entry.charged_units = d.charged_units;
    entry.allowance_units = d.allowance_units;
    entry.draws.clone_from(&d.draws);
    entry.plan = Some(d.plan.to_string());
    entry.plan_version = Some(d.plan_version);
    entry.rate_line = Some(d.rate_line);
    entry
}

fn entries_of_charges(lsn: u64, batch: &Charges<'_>) -> Vec<LedgerEntry> {
    let mut out = Vec::with_capacity(batch.charges.len());
    for (index, charge) in batch.charges.iter().enumerate() {
        let moved: Decimal = charge.moves.iter().map(|(_, delta)| *delta).sum();
        let kind =
            if batch.details.get(index).is_some_and(Option::is_some) { EntryKind::Usage } else { EntryKind::Charge };
        let mut entry = LedgerEntry::new(lsn, batch.decided_at, kind, charge.account, moved);
        entry.service = Some(charge.service.as_str().to_owned());
        entry.charged_units = charge.memo.charged_units;
        entry.allowance_units = charge.memo.allowance_units;
        entry.draws = charge.draws.to_vec();
        entry.key = Some(format!("{:032x}", charge.key.0));
        if let Some(Some(detail)) = batch.details.get(index) {
            itemise(&mut entry, detail);
        }
        out.push(entry);
    }
    out
}

fn itemise(entry: &mut LedgerEntry, d: &ChargeDetail<'_>) {
    entry.subscription = Some(d.subscription);
    entry.identity = d.identity.map(|(kind, value)| identity_text(kind, value));
    entry.rating_group = d.rating_group;
    entry.called = d.called.map(str::to_owned);
    entry.prefix = prefix_of(d.called, d.prefix_len);
    entry.destination = d.destination.map(str::to_owned);
    entry.band = Some(d.band.to_owned());
    entry.started_at = Some(d.started_at);
    entry.units = d.units;
    entry.plan = Some(d.plan.to_owned());
    entry.plan_version = Some(d.plan_version);
    entry.rate_line = Some(d.rate_line);
    entry.currency = Some(d.currency.to_owned());
}
