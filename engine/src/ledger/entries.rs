//! Ledger entries: what one journal record amounts to, line by line. Every money
//! movement of the record is on exactly one entry, so the entries of an account add up
//! to its balance.

use rust_decimal::Decimal;
use serde::Serialize;
use smallvec::SmallVec;

use crate::format::charges::{ChargeDetail, Charges};
use crate::journal::{JournalEntry, RecordKind};
use crate::model::{AccountId, BucketId, SubscriptionId};
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

/// An entry as the builder writes it, borrowing the decoded journal record: nothing is
/// copied or formatted on the way from the journal to the ledger's frames.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Draft<'a> {
    pub(crate) lsn: u64,
    pub(crate) posted_at: i64,
    pub(crate) kind: EntryKind,
    pub(crate) account: AccountId,
    pub(crate) amount: Decimal,
    pub(crate) currency: Option<&'a str>,
    pub(crate) subscription: Option<SubscriptionId>,
    /// The identity's type (1 MSISDN, 2 IMSI, 3 SIP URI, 4 NAI) and value.
    pub(crate) identity: Option<(u8, &'a str)>,
    pub(crate) service: Option<&'a str>,
    pub(crate) rating_group: Option<u32>,
    pub(crate) called: Option<&'a str>,
    pub(crate) prefix_len: Option<u8>,
    pub(crate) destination: Option<&'a str>,
    pub(crate) band: Option<&'a str>,
    pub(crate) started_at: Option<i64>,
    pub(crate) units: u64,
    pub(crate) charged_units: u64,
    pub(crate) allowance_units: u64,
    pub(crate) draws: &'a [(BucketId, u64)],
    pub(crate) plan: Option<(&'a str, u32, u32)>,
    pub(crate) key: Option<&'a str>,
    /// A mediated record's key: its 128-bit digest.
    pub(crate) key_digest: Option<u128>,
    pub(crate) note: Option<&'a str>,
    /// A grant's or renewal's validity `[from, until)`.
    pub(crate) validity: Option<(i64, i64)>,
    pub(crate) bucket: Option<BucketId>,
}

impl<'a> Draft<'a> {
    fn new(lsn: u64, posted_at: i64, kind: EntryKind, account: AccountId, amount: Decimal) -> Draft<'a> {
        Draft {
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
            prefix_len: None,
            destination: None,
            band: None,
            started_at: None,
            units: 0,
            charged_units: 0,
            allowance_units: 0,
            draws: &[],
            plan: None,
            key: None,
            key_digest: None,
            note: None,
            validity: None,
            bucket: None,
        }
    }

    /// The entry a reader gets.
    pub(crate) fn entry(&self) -> LedgerEntry {
        let mut entry = LedgerEntry::new(self.lsn, self.posted_at, self.kind, self.account, self.amount);
        entry.currency = self.currency.map(str::to_owned);
        entry.subscription = self.subscription;
        entry.identity = self.identity.map(|(kind, value)| identity_text(kind, value));
        entry.service = self.service.map(str::to_owned);
        entry.rating_group = self.rating_group;
        entry.called = self.called.map(str::to_owned);
        entry.prefix = self.prefix_len.and_then(|len| prefix_of(self.called, len));
        entry.destination = self.destination.map(str::to_owned);
        entry.band = self.band.map(str::to_owned);
        entry.started_at = self.started_at;
        entry.units = self.units;
        entry.charged_units = self.charged_units;
        entry.allowance_units = self.allowance_units;
        entry.draws = self.draws.to_vec();
        if let Some((plan, version, line)) = self.plan {
            entry.plan = Some(plan.to_owned());
            entry.plan_version = Some(version);
            entry.rate_line = Some(line);
        }
        entry.key = match (self.key, self.key_digest) {
            (Some(key), _) => Some(key.to_owned()),
            (None, Some(digest)) => Some(format!("{digest:032x}")),
            (None, None) => None,
        };
        entry.note = match (self.note, self.validity) {
            (Some(note), _) => Some(note.to_owned()),
            (None, Some((from, until))) => Some(format!("valid {from}..{until}")),
            (None, None) => None,
        };
        entry.bucket = self.bucket;
        entry
    }
}

/// Calls `sink` with each entry of a journal record of `kind`, in order.
pub(crate) fn drafts_of(
    lsn: u64,
    kind: RecordKind,
    payload: &[u8],
    sink: &mut dyn FnMut(&Draft<'_>),
) -> Result<(), String> {
    match kind {
        RecordKind::Effects => drafts_of_effects(lsn, &JournalEntry::decode(payload)?, sink),
        RecordKind::CompactEffects => drafts_of_effects(lsn, &crate::format::effects::decode(payload)?, sink),
        RecordKind::Charges => drafts_of_charges(lsn, &crate::format::charges::decode_charges(payload)?, sink),
        RecordKind::CompactCharges => {
            drafts_of_charges(lsn, &crate::format::charges::decode_compact_charges(payload)?, sink)
        }
    }
    Ok(())
}

/// The entries of a journal record of `kind`, as a reader gets them.
pub(crate) fn entries_of(lsn: u64, kind: RecordKind, payload: &[u8]) -> Result<Vec<LedgerEntry>, String> {
    let mut out = Vec::new();
    drafts_of(lsn, kind, payload, &mut |draft| out.push(draft.entry()))?;
    Ok(out)
}

pub(crate) fn identity_text(kind: u8, value: &str) -> String {
    let tag = match kind {
        1 => "msisdn",
        2 => "imsi",
        3 => "sip",
        _ => "nai",
    };
    format!("{tag}:{value}")
}

/// The leading `prefix_len` digits of the called number.
pub(crate) fn prefix_of(called: Option<&str>, prefix_len: u8) -> Option<String> {
    let called = called?;
    let digits: String = called.chars().filter(char::is_ascii_digit).take(usize::from(prefix_len)).collect();
    (prefix_len > 0).then_some(digits)
}

fn drafts_of_effects<'r>(lsn: u64, record: &'r JournalEntry, sink: &mut dyn FnMut(&Draft<'_>)) {
    let at = record.decided_at;
    let key = record.effects.iter().find_map(|effect| match effect {
        Effect::Remembered { key, .. } => Some(key.as_str()),
        _ => None,
    });
    // Σ charges of the record per account, against Σ of its itemised amounts.
    let mut unitemised: SmallVec<[(AccountId, Decimal); 2]> = SmallVec::new();
    let mut add = |account: AccountId, amount: Decimal| match unitemised.iter_mut().find(|(a, _)| *a == account) {
        Some((_, total)) => *total += amount,
        None => unitemised.push((account, amount)),
    };
    let mut emit = |mut draft: Draft<'r>| {
        draft.key = key;
        sink(&draft);
    };
    for effect in &record.effects {
        match effect {
            Effect::Money { account, bucket, delta, kind } => {
                let (kind, note) = match kind {
                    MoneyKind::Charge => {
                        add(*account, *delta);
                        continue;
                    }
                    MoneyKind::Opening => (EntryKind::Opening, None),
                    MoneyKind::TopUp { reference } => (EntryKind::TopUp, Some(reference)),
                    MoneyKind::Refund { reason } => (EntryKind::Refund, Some(reason)),
                    MoneyKind::Adjustment { reason } => (EntryKind::Adjustment, Some(reason)),
                    MoneyKind::Rerate { record } if delta.is_sign_positive() => (EntryKind::RerateRefund, Some(record)),
                    MoneyKind::Rerate { record } => (EntryKind::RerateCharge, Some(record)),
                };
                let mut draft = Draft::new(lsn, at, kind, *account, *delta);
                draft.note = note.map(String::as_str);
                draft.bucket = Some(*bucket);
                emit(draft);
            }
            Effect::Rated(detail) => {
                add(detail.account, detail.amount);
                emit(rated_draft(lsn, at, detail));
            }
            Effect::SubscriptionCreated { subscription, buckets } => {
                for bucket in buckets {
                    emit(grant(lsn, at, subscription.account, bucket));
                }
            }
            Effect::BucketsGranted { account, buckets } => {
                for bucket in buckets {
                    emit(grant(lsn, at, *account, bucket));
                }
            }
            Effect::BucketRenewed { account, bucket, valid_from_at, valid_until_at } => {
                let mut draft = Draft::new(lsn, at, EntryKind::Renewal, *account, Decimal::ZERO);
                draft.bucket = Some(*bucket);
                draft.validity = Some((*valid_from_at, *valid_until_at));
                emit(draft);
            }
            _ => {}
        }
    }
    for (account, rest) in unitemised {
        if !rest.is_zero() {
            emit(Draft::new(lsn, at, EntryKind::Charge, account, rest));
        }
    }
}

fn grant<'a>(lsn: u64, at: i64, account: AccountId, bucket: &crate::model::UnitBucket) -> Draft<'a> {
    let mut draft = Draft::new(lsn, at, EntryKind::Grant, account, Decimal::ZERO);
    draft.subscription = Some(bucket.subscription);
    draft.bucket = Some(bucket.id);
    draft.units = bucket.remaining;
    draft.validity = Some((bucket.valid_from_at, bucket.valid_until_at));
    draft
}

fn rated_draft<'a>(lsn: u64, at: i64, d: &'a RatedDetail) -> Draft<'a> {
    let mut draft = Draft::new(lsn, at, EntryKind::Usage, d.account, -d.amount);
    draft.currency = Some(&d.currency);
    draft.subscription = Some(d.subscription);
    draft.identity = d.identity.as_ref().map(crate::bulk::identity_parts);
    draft.service = Some(&d.service);
    draft.rating_group = d.rating_group;
    draft.called = d.called.as_deref();
    draft.prefix_len = Some(d.prefix_len);
    draft.destination = d.destination.as_deref();
    draft.band = Some(&d.band);
    draft.started_at = Some(d.started_at);
    draft.units = d.units;
    draft.charged_units = d.charged_units;
    draft.allowance_units = d.allowance_units;
    draft.draws = &d.draws;
    draft.plan = Some((&d.plan, d.plan_version, d.rate_line));
    draft
}

fn drafts_of_charges(lsn: u64, batch: &Charges<'_>, sink: &mut dyn FnMut(&Draft<'_>)) {
    for (index, charge) in batch.charges.iter().enumerate() {
        let moved: Decimal = charge.moves.iter().map(|(_, delta)| *delta).sum();
        let detail = batch.details.get(index).and_then(Option::as_ref);
        let kind = if detail.is_some() { EntryKind::Usage } else { EntryKind::Charge };
        let mut draft = Draft::new(lsn, batch.decided_at, kind, charge.account, moved);
        draft.service = Some(charge.service.as_str());
        draft.charged_units = charge.memo.charged_units;
        draft.allowance_units = charge.memo.allowance_units;
        draft.draws = &charge.draws;
        draft.key_digest = Some(charge.key.0);
        if let Some(d) = detail {
            itemise(&mut draft, d);
        }
        sink(&draft);
    }
}

fn itemise<'a>(draft: &mut Draft<'a>, d: &ChargeDetail<'a>) {
    draft.subscription = Some(d.subscription);
    draft.identity = d.identity;
    draft.rating_group = d.rating_group;
    draft.called = d.called;
    draft.prefix_len = Some(d.prefix_len);
    draft.destination = d.destination;
    draft.band = Some(d.band);
    draft.started_at = Some(d.started_at);
    draft.units = d.units;
    draft.plan = Some((d.plan, d.plan_version, d.rate_line));
    draft.currency = Some(d.currency);
}
