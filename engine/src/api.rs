//! The one request/answer API every front-end uses: Diameter, Nchf, gRPC, mediation,
//! billing and the command line all build a [`Request`] and get an [`Answer`].

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
pub use smol_str::SmolStr;
use tollgate_tariffs::plan::RkyvDecimal;

use crate::model::{AccountId, AccountKind, BucketId, Identity, SubscriptionId};

/// Whom a request is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Account(AccountId),
    Subscription(SubscriptionId),
    Subscriber(Identity),
}

/// Which of the plan's services a usage is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceRef {
    /// Names are short and kept inline (no allocation up to 23 bytes), as are
    /// destinations: a usage is built and dropped for every record on the bulk path.
    Name(SmolStr),
    RatingGroup(u32),
    ServiceId(u32),
}

/// One usage to price or charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub service: ServiceRef,
    pub rating_group: Option<u32>,
    pub destination: Option<SmolStr>,
    pub start_utc_seconds: i64,
    pub units: u64,
}

/// The stage of an online charging session (Diameter CC-Request-Type, Nchf create /
/// update / release).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStep {
    Initial,
    Update,
    Termination,
}

/// One rating group of a session request (Diameter MSCC, Nchf multipleUnitUsage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRequest {
    /// Keys the reservation within the session (use 0 when the network sends none).
    pub rating_group: u32,
    /// The service to rate with; `None`: the service that owns `rating_group` in the plan.
    #[serde(default)]
    pub service: Option<ServiceRef>,
    /// Units to reserve; `None` asks for the service's default quota (not on termination).
    pub requested_units: Option<u64>,
    /// Units used since the last report, charged against this rating group's reservation.
    pub used_units: Option<u64>,
    /// The called number, for services priced by destination.
    pub destination: Option<SmolStr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    CreateAccount {
        kind: AccountKind,
        currency: String,
        credit_limit: Decimal,
        opening_balance: Decimal,
    },
    CreateSubscription {
        subscription: SubscriptionId,
        plan: String,
        identities: Vec<Identity>,
    },
    BalanceEnquiry,
    PriceEnquiry {
        usage: Usage,
    },
    /// Debit one event now (SMS, one-shot): all or nothing.
    DirectDebit {
        usage: Usage,
    },
    /// Charge one rated CDR (offline charging, mediation): all or nothing, exactly once per key.
    ChargeRecord {
        usage: Usage,
    },
    Session {
        session: String,
        step: SessionStep,
        units: Vec<UnitRequest>,
    },
    Refund {
        amount: Decimal,
        reason: String,
    },
    TopUp {
        amount: Decimal,
        reference: String,
    },
    /// Re-prices a record charged on the bulk path ([`crate::Engine::charge_records`]) with
    /// the plan version now in force for its start: the old charge is refunded and the new
    /// one applied, both journaled with the record's id. The units its first charge took
    /// from allowances stay paid by them; the rest is priced again. A record already at its
    /// current price changes nothing, so running a rerate again is harmless and the request
    /// needs no idempotency key.
    Rerate {
        /// The record's id, as given to [`crate::RecordKey::of`] when it was charged.
        record: String,
        usage: Usage,
    },
    /// A signed manual correction; the reason is kept in the journal.
    Adjust {
        amount: Decimal,
        reason: String,
    },
    /// Money in a bucket of its own that can be spent only inside a validity window
    /// (promotional credit, a bonus); drawn before the main bucket, lowest priority first.
    GrantCredit {
        amount: Decimal,
        #[serde(rename = "valid_from")]
        valid_from_at: i64,
        #[serde(rename = "valid_until")]
        valid_until_at: i64,
        priority: u32,
        reference: String,
    },
    /// Moves a subscription to another plan: now, or at the start of the account's next
    /// bill cycle. Usage dated before the change (open reservations included) stays
    /// priced by the old plan; the old plan's allowances stop at the change and the new
    /// plan's start there, in full or pro rata for the rest of the cycle.
    ChangePlan {
        plan: String,
        when: PlanChangeAt,
        allowances: AllowanceGrant,
    },
    /// Stops a subscription's service: online requests are refused
    /// ([`Outcome::ServiceDenied`]) and charged records are refused unless their usage
    /// happened before. Usage reported on sessions opened before is still charged.
    Suspend {
        reason: String,
    },
    /// Ends a suspension.
    Resume,
    /// Ends a subscription for good: its open sessions are closed (their reservations
    /// released), its identities freed for other subscriptions; its history is kept.
    Terminate {
        reason: String,
    },
    /// Adds an identity (a second number, an IMSI after a SIM swap) to a subscription.
    AddIdentity {
        identity: Identity,
    },
    /// Removes one of a subscription's identities (not its last).
    RemoveIdentity {
        identity: Identity,
    },
    /// Replaces an identity by another (SIM swap, number change) in one step.
    ReplaceIdentity {
        old: Identity,
        new: Identity,
    },
    /// Sets an account's credit limit (zero for a prepaid account; not below what it owes).
    SetCreditLimit {
        credit_limit: Decimal,
    },
    /// Changes how an account pays (prepaid, postpaid, hybrid), with its credit limit.
    ChangeAccountKind {
        kind: AccountKind,
        credit_limit: Decimal,
    },
    /// Closes an account: refused while it has open reservations or subscriptions that
    /// are not terminated, and while money remains unless `settle_reason` is given, in
    /// which case a final adjustment brings the balance to zero first.
    CloseAccount {
        settle_reason: Option<String>,
    },
    /// An account's totals for the bill cycle that holds `at` (default: now): money and
    /// units by service, and each allowance's units granted and used.
    CycleTotals {
        at: Option<i64>,
    },
    /// Stops the service of every subscription of the account, present and future, as
    /// [`Operation::Suspend`] does for one: usage that starts from now is refused
    /// ([`Outcome::ServiceDenied`]); money may still be added or adjusted. Suspending a
    /// suspended account changes nothing.
    SuspendAccount {
        reason: String,
    },
    /// Ends an account's suspension (its subscriptions' own suspensions stay).
    ResumeAccount,
}

/// When a plan change takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanChangeAt {
    Now,
    NextCycle,
}

/// How a new plan's allowances are granted for the cycle it starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllowanceGrant {
    /// The whole allowance.
    Full,
    /// The part of it for the rest of the cycle, rounded down.
    ProRata,
}

impl Operation {
    /// Whether the operation can change state.
    pub fn is_mutating(&self) -> bool {
        !matches!(self, Operation::BalanceEnquiry | Operation::PriceEnquiry { .. } | Operation::CycleTotals { .. })
    }

    /// Whether a request for it must carry an idempotency key: every mutating operation
    /// but a rerate, which is idempotent by itself (it moves a record to its current price).
    pub fn needs_key(&self) -> bool {
        self.is_mutating() && !matches!(self, Operation::Rerate { .. })
    }
}

/// A request. Mutating operations carry an idempotency key (session id + request number,
/// CDR id, top-up id, …): a repeat of the key returns the first answer and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub key: Option<String>,
    pub target: Target,
    pub operation: Operation,
}

/// The typed outcome of a request. Only `Success` changed anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    Success,
    /// Not enough money or allowance (prepaid balance, or postpaid credit limit).
    CreditLimitReached,
    UnknownSubscriber,
    UnknownAccount,
    UnknownSession,
    /// The usage could not be priced; the code says why (`no_rate`, `unknown_destination`, …).
    RatingFailed(String),
    AlreadyExists,
    /// The request is not acceptable as sent; the text names the field.
    Invalid(String),
    /// A rerate names a record the engine does not hold: never charged on the bulk path,
    /// or older than the exactly-once window.
    UnknownRecord,
    /// The subscription's service is stopped (suspended, or its account closed); the text
    /// says why. Diameter 4010 DIAMETER_END_USER_SERVICE_DENIED, Nchf 403.
    ServiceDenied(String),
}

/// What one rating group of a session got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Grant {
    pub rating_group: u32,
    pub outcome: Outcome,
    pub granted_units: u64,
    pub validity_seconds: u32,
    /// Set when this grant is the last the balance can pay for.
    pub final_unit: bool,
    /// Units charged from the reported usage.
    pub used_units: u64,
    #[rkyv(with = RkyvDecimal)]
    pub charged: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct BucketView {
    pub id: BucketId,
    /// `money`, or the allowance's name.
    pub kind: String,
    pub remaining: String,
    pub reserved: String,
    #[serde(rename = "valid_from")]
    pub valid_from_at: i64,
    #[serde(rename = "valid_until")]
    pub valid_until_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct BalanceView {
    pub account: AccountId,
    pub kind: AccountKind,
    pub currency: String,
    #[rkyv(with = RkyvDecimal)]
    pub balance: Decimal,
    #[rkyv(with = RkyvDecimal)]
    pub available: Decimal,
    #[rkyv(with = RkyvDecimal)]
    pub reserved: Decimal,
    #[rkyv(with = RkyvDecimal)]
    pub credit_limit: Decimal,
    pub buckets: Vec<BucketView>,
}

/// An account as a management system reads it ([`crate::Engine::account_view`]): its
/// balance and money buckets, when it was closed or suspended, its subscriptions not
/// terminated, and its allowance buckets with what each is for. Read only, never journaled
/// or remembered (so it may grow fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub balance: BalanceView,
    pub closed_at: Option<i64>,
    pub suspended_at: Option<i64>,
    pub live_subscriptions: Vec<SubscriptionId>,
    pub allowances: Vec<AllowanceView>,
}

/// One allowance bucket: the units of one allowance of one subscription for one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowanceView {
    pub bucket: BucketId,
    pub subscription: SubscriptionId,
    /// The allowance's name in the subscription's plan.
    pub name: String,
    /// The service it pays for, and that service's unit (`seconds`, `bytes`, `events`, `units`).
    pub service: String,
    pub unit: String,
    pub granted: u64,
    pub remaining: u64,
    pub reserved: u64,
    pub valid_from_s: i64,
    pub valid_until_s: i64,
}

/// A name shared with the plan it comes from (cloning it copies no text).
pub type Name = std::sync::Arc<str>;

/// A priced (and, for debits, charged) usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Charged {
    #[rkyv(with = RkyvDecimal)]
    pub amount: Decimal,
    pub currency: Name,
    pub plan: Name,
    pub plan_version: u32,
    pub service: Name,
    pub destination: Option<Name>,
    pub band: Name,
    pub charged_units: u64,
    pub allowance_units: u64,
    /// Money balance after the debit (unchanged for an enquiry).
    #[rkyv(with = RkyvDecimal)]
    pub balance_after: Decimal,
}

/// What a rerate did to one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Rerated {
    /// The money the record was charged before.
    #[rkyv(with = RkyvDecimal)]
    pub previous_amount: Decimal,
    /// The record priced now; `balance_after` is the money balance after the rerate.
    pub charged: Charged,
    /// False when the record was already at this price and nothing changed.
    pub changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    None,
    Balance(BalanceView),
    Charged(Charged),
    Session {
        grants: Vec<Grant>,
    },
    /// New money balance after a top-up, refund or adjustment.
    Money {
        #[rkyv(with = RkyvDecimal)]
        balance_after: Decimal,
    },
    /// A rerated record (archived variants keep their order: new ones go last).
    Rerated(Box<Rerated>),
    /// An account's totals for one bill cycle ([`Operation::CycleTotals`]).
    Totals(Box<CycleTotals>),
}

/// An account's totals for one bill cycle: what a bill run summarises without reading
/// every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct CycleTotals {
    pub account: AccountId,
    pub currency: String,
    #[serde(rename = "cycle_start")]
    pub cycle_start_at: i64,
    #[serde(rename = "cycle_end")]
    pub cycle_end_at: i64,
    /// Money charged and units used, by service, in the cycle.
    pub services: Vec<ServiceTotal>,
    /// Each allowance period that overlaps the cycle: units granted and used.
    pub allowances: Vec<AllowanceUse>,
}

/// One service's usage in a cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct ServiceTotal {
    pub service: String,
    pub events: u64,
    pub units: u64,
    #[rkyv(with = RkyvDecimal)]
    pub amount: Decimal,
}

/// One allowance's units in one of its periods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct AllowanceUse {
    pub subscription: SubscriptionId,
    /// The allowance's name in the plan (or `allowance N` when the plan is not loaded).
    pub allowance: String,
    pub bucket: BucketId,
    #[serde(rename = "valid_from")]
    pub valid_from_at: i64,
    #[serde(rename = "valid_until")]
    pub valid_until_at: i64,
    pub granted: u64,
    pub used: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Answer {
    #[serde(flatten)]
    pub outcome: Outcome,
    pub body: Body,
    /// Set when this answer is the stored answer to an earlier request with the same key.
    pub repeated: bool,
}

impl Answer {
    pub fn new(outcome: Outcome, body: Body) -> Answer {
        Answer { outcome, body, repeated: false }
    }

    pub fn outcome(outcome: Outcome) -> Answer {
        Answer::new(outcome, Body::None)
    }
}
