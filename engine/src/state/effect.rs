//! The changes of shard state a decision emits ([`Effect`]): what a journal record holds
//! and what recovery applies again.

use rust_decimal::Decimal;
use tollgate_tariffs::plan::RkyvDecimal;

use crate::api::Answer;
use crate::model::{
    Account, AccountId, AccountKind, BucketId, Identity, MoneyBucket, Reservation, SessionRecord, Subscription,
    SubscriptionId, UnitBucket,
};
use crate::records::Memo;
use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};

/// Why money moved.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub enum MoneyKind {
    Opening,
    Charge,
    TopUp {
        reference: String,
    },
    Refund {
        reason: String,
    },
    Adjustment {
        reason: String,
    },
    /// A rerate of the named record: a positive delta refunds its old charge, a negative
    /// one takes its new charge. Counted in the charged total.
    Rerate {
        record: String,
    },
}

/// One change of state. Applying the effects of a journal record in order reproduces it.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub enum Effect {
    AccountCreated(Box<Account>),
    SubscriptionCreated {
        subscription: Box<Subscription>,
        buckets: Vec<UnitBucket>,
    },
    Money {
        account: AccountId,
        bucket: BucketId,
        #[rkyv(with = RkyvDecimal)]
        delta: Decimal,
        kind: MoneyKind,
    },
    /// A money bucket is added (empty; a `Money` effect fills it).
    MoneyBucketAdded {
        account: AccountId,
        bucket: Box<MoneyBucket>,
    },
    /// Units consumed from a unit bucket.
    Units {
        account: AccountId,
        bucket: BucketId,
        consumed: u64,
    },
    /// A unit bucket starts a new cycle, full again.
    BucketRenewed {
        account: AccountId,
        bucket: BucketId,
        valid_from_at: i64,
        valid_until_at: i64,
    },
    Reserved(Box<Reservation>),
    Released {
        session: String,
        rating_group: u32,
    },
    Usage {
        account: AccountId,
        cycle_start_at: i64,
        service: std::sync::Arc<str>,
        units: u64,
        #[rkyv(with = RkyvDecimal)]
        amount: Decimal,
    },
    Remembered {
        key: String,
        answer: std::sync::Arc<Answer>,
    },
    /// A charged record's memo after a rerate (boxed: the effect stays as small as before).
    RecordRerated(Box<RecordRerated>),
    /// An online session opened (its record, with no rating group yet).
    SessionOpened(Box<SessionRecord>),
    /// A request of the session was decided `at`: the usage of the `reported` rating
    /// groups is settled up to `at`, and the record lives at least until `forget_at`.
    SessionReported {
        session: String,
        at: i64,
        forget_at: i64,
        reported: Vec<u32>,
    },
    /// The session ended (terminated, or its tombstone expired): unknown from now on.
    SessionEnded {
        session: String,
    },
    /// A subscription moves to `plan` from `effective_at` (now, or a cycle boundary).
    PlanScheduled {
        subscription: SubscriptionId,
        effective_at: i64,
        plan: String,
    },
    /// The subscription's unit buckets end at `at` and renew no more (a plan change).
    BucketsRetired {
        subscription: SubscriptionId,
        at: i64,
    },
    /// New unit buckets for a subscription (the next plan's allowances).
    BucketsGranted {
        account: AccountId,
        buckets: Vec<UnitBucket>,
    },
    Suspended {
        subscription: SubscriptionId,
        at: i64,
    },
    Resumed {
        subscription: SubscriptionId,
    },
    /// The subscription ended for good; its identities are free for others.
    Terminated {
        subscription: SubscriptionId,
        at: i64,
    },
    IdentityAdded {
        subscription: SubscriptionId,
        identity: Identity,
    },
    IdentityRemoved {
        subscription: SubscriptionId,
        identity: Identity,
    },
    CreditLimitSet {
        account: AccountId,
        #[rkyv(with = RkyvDecimal)]
        credit_limit: Decimal,
    },
    AccountKindChanged {
        account: AccountId,
        kind: AccountKind,
    },
    AccountClosed {
        account: AccountId,
        at: i64,
    },
    /// A record refused on the bulk path, remembered under its refusal key
    /// ([`crate::records::RecordKey::refusal`]): sent again with the same origin after a
    /// later record charged its key, it gets its refusal, not "duplicate".
    /// (Boxed: an archived enum is as large as its largest variant, and growing it would
    /// change how every older record reads.)
    RecordRefused(Box<RefusedRecord>),
    /// The itemisation of a rated event, after the effects that settled it (its draws,
    /// money and usage total): what the rated-event ledger shows. Changes no state.
    Rated(Box<RatedDetail>),
    /// The account's subscriptions are refused usage from `at` (journal format 9).
    AccountSuspended {
        account: AccountId,
        at: i64,
    },
    /// The account's suspension ended.
    AccountResumed {
        account: AccountId,
    },
}

/// Where and how one usage was priced: the ledger's line for it
/// ([`crate::ledger::LedgerEntry`]).
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct RatedDetail {
    pub account: AccountId,
    pub subscription: SubscriptionId,
    /// The subscription's first identity when it was charged.
    pub identity: Option<Identity>,
    pub service: std::sync::Arc<str>,
    pub rating_group: Option<u32>,
    /// The called number as reported.
    pub called: Option<String>,
    /// How many leading digits of `called` the plan's prefix matched.
    pub prefix_len: u8,
    /// The plan's destination (zone) name.
    pub destination: Option<std::sync::Arc<str>>,
    pub band: std::sync::Arc<str>,
    pub plan: std::sync::Arc<str>,
    pub plan_version: u32,
    /// The plan file's line of the opening rate.
    pub rate_line: u32,
    pub started_at: i64,
    /// Units reported, charged (after first interval and increments), and of those paid
    /// by allowances.
    pub units: u64,
    pub charged_units: u64,
    pub allowance_units: u64,
    /// Units drawn from each unit bucket.
    pub draws: Vec<(BucketId, u64)>,
    /// Money charged (positive; the balance moved by minus this).
    #[rkyv(with = RkyvDecimal)]
    pub amount: Decimal,
    pub currency: std::sync::Arc<str>,
}

/// A refused record's memo under its refusal key.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct RefusedRecord {
    pub key: u128,
    pub memo: Memo,
}

/// How long a session is remembered after its last reservation expires, when the record
/// was rebuilt from a reservation journaled before sessions had records of their own.
pub(crate) const LEGACY_TOMBSTONE_SECONDS: i64 = 3600;

/// The new memo of a rerated record.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct RecordRerated {
    /// The record key's digest ([`RecordKey`]).
    pub key: u128,
    pub memo: Memo,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archived enum is as large as its largest variant: a new variant that grew it
    /// would change how every record written before reads (box its fields instead).
    #[test]
    fn an_archived_effect_keeps_its_size() {
        assert_eq!(std::mem::size_of::<ArchivedEffect>(), ARCHIVED_EFFECT_BYTES);
    }

    const ARCHIVED_EFFECT_BYTES: usize = 56;
}
