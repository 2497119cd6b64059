//! What the engine holds: accounts with money and unit buckets, subscriptions,
//! reservations and usage accumulators. Every type here is archived with rkyv for
//! snapshots and journal records.

use rkyv::rancor::{Fallible, Source};
use rkyv::ser::Writer;
use rkyv::string::{ArchivedString, StringResolver};
use rkyv::with::{ArchiveWith, DeserializeWith, SerializeWith};
use rkyv::{Archive, Deserialize as RkyvDeserialize, Place, Serialize as RkyvSerialize};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use tollgate_tariffs::plan::{Period, RkyvDecimal};
use tollgate_tariffs::AllowanceId;

pub type AccountId = u64;
pub type SubscriptionId = u64;
pub type BucketId = u32;

/// "Never expires".
pub(crate) const FOREVER: i64 = i64::MAX;

/// How an account pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    /// Pays in advance; the balance never goes below zero.
    Prepaid,
    /// Billed later; the balance may go down to minus the credit limit.
    Postpaid,
    /// Prepaid money first, then a postpaid credit limit.
    Hybrid,
}

impl AccountKind {
    pub fn name(self) -> &'static str {
        match self {
            AccountKind::Prepaid => "prepaid",
            AccountKind::Postpaid => "postpaid",
            AccountKind::Hybrid => "hybrid",
        }
    }
}

/// A money balance with a validity window. Bucket 0 of every account is its main bucket:
/// valid forever, the last to be drawn, and the only one that may go negative (down to
/// minus the credit limit).
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct MoneyBucket {
    pub id: BucketId,
    #[rkyv(with = RkyvDecimal)]
    pub balance: Decimal,
    pub valid_from_at: i64,
    pub valid_until_at: i64,
    /// Lower is drawn first.
    pub priority: u32,
}

impl MoneyBucket {
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.valid_from_at <= now && now < self.valid_until_at
    }
}

/// Units of one of a plan's allowances, granted to one subscription for one cycle.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct UnitBucket {
    pub id: BucketId,
    pub subscription: SubscriptionId,
    pub allowance: AllowanceId,
    /// Units a full cycle grants.
    pub granted: u64,
    pub remaining: u64,
    /// Of `remaining`, units held by open reservations.
    pub reserved: u64,
    pub valid_from_at: i64,
    pub valid_until_at: i64,
    pub period: Period,
}

impl UnitBucket {
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.valid_from_at <= now && now < self.valid_until_at
    }

    pub fn available(&self) -> u64 {
        self.remaining - self.reserved
    }
}

/// Rated usage of one service in one billing cycle, for billing later.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct UsageTotal {
    pub cycle_start_at: i64,
    pub service: std::sync::Arc<str>,
    pub events: u64,
    pub units: u64,
    #[rkyv(with = RkyvDecimal)]
    pub amount: Decimal,
}

/// The money buckets of an account; most accounts have only the main one, kept inline.
pub type MoneyBuckets = SmallVec<[MoneyBucket; 1]>;

/// The usage totals of an account. The first is kept inline, in the account's own cache
/// lines: charging a record adds to it without following a pointer. (Archived as a
/// `Vec` is, so snapshots did not change with it.)
pub type UsageTotals = SmallVec<[UsageTotal; 1]>;

#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Account {
    pub id: AccountId,
    pub kind: AccountKind,
    pub currency: [u8; 3],
    #[rkyv(with = RkyvDecimal)]
    pub credit_limit: Decimal,
    pub money: MoneyBuckets,
    /// Money held by open reservations.
    #[rkyv(with = RkyvDecimal)]
    pub reserved: Decimal,
    pub units: Vec<UnitBucket>,
    pub usage: UsageTotals,
    pub next_bucket: BucketId,
    /// Start of the account's current billing cycle (monthly from its creation).
    pub cycle_anchor_at: i64,
}

impl Account {
    /// Money that may be spent or reserved at `now`: valid buckets plus the credit limit,
    /// less what reservations hold.
    pub fn available(&self, now: i64) -> Decimal {
        self.spendable(now) - self.reserved
    }

    /// Valid buckets plus the credit limit.
    pub fn spendable(&self, now: i64) -> Decimal {
        let valid: Decimal = self.money.iter().filter(|b| b.is_valid_at(now)).map(|b| b.balance).sum();
        valid + self.credit_limit
    }

    /// Sum of all money buckets, expired ones included.
    pub fn balance(&self) -> Decimal {
        self.money.iter().map(|b| b.balance).sum()
    }

    pub fn currency_code(&self) -> &str {
        std::str::from_utf8(&self.currency).unwrap_or("???")
    }
}

/// A subscriber identity, as the network names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Identity {
    Msisdn(String),
    Imsi(String),
    SipUri(String),
    Nai(String),
}

impl Identity {
    /// The lookup key: type-tagged and normalized (`+` dropped from numbers, URIs and
    /// NAIs lower-cased), so `+4917…` and `4917…` are the same subscriber.
    pub fn key(&self) -> String {
        let (tag, value, lower) = self.key_parts();
        let mut key = String::with_capacity(tag.len() + value.len());
        key.push_str(tag);
        key.push_str(value);
        if lower {
            key[tag.len()..].make_ascii_lowercase();
        }
        key
    }

    /// Calls `f` with [`Identity::key`], built on the stack when it is short (lookups on
    /// the bulk path allocate nothing).
    pub fn with_key<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        let (tag, value, lower) = self.key_parts();
        let mut buffer = [0u8; 64];
        let len = tag.len() + value.len();
        if len > buffer.len() {
            return f(&self.key());
        }
        buffer[..tag.len()].copy_from_slice(tag.as_bytes());
        buffer[tag.len()..len].copy_from_slice(value.as_bytes());
        if lower {
            buffer[tag.len()..len].make_ascii_lowercase();
        }
        // Whole UTF-8 pieces, and ASCII lower-casing keeps UTF-8 whole.
        match std::str::from_utf8(&buffer[..len]) {
            Ok(key) => f(key),
            Err(_) => f(&self.key()),
        }
    }

    /// The key's type tag, the value to normalize, and whether it is lower-cased.
    fn key_parts(&self) -> (&'static str, &str, bool) {
        match self {
            Identity::Msisdn(number) => ("msisdn:", number.trim_start_matches('+'), false),
            Identity::Imsi(imsi) => ("imsi:", imsi, false),
            Identity::SipUri(uri) => ("sip:", uri.trim_start_matches("sip:"), true),
            Identity::Nai(nai) => ("nai:", nai, true),
        }
    }

    /// Parses `msisdn:…`, `imsi:…`, `sip:…`, `nai:…`, or a bare number as an MSISDN.
    pub fn parse(text: &str) -> Option<Identity> {
        let (kind, value) = text.split_once(':').unwrap_or(("msisdn", text));
        let value = value.to_owned();
        let digits = |v: &str| !v.is_empty() && v.trim_start_matches('+').bytes().all(|b| b.is_ascii_digit());
        match kind {
            "msisdn" | "tel" if digits(&value) => Some(Identity::Msisdn(value)),
            "imsi" if digits(&value) => Some(Identity::Imsi(value)),
            "sip" | "sips" if !value.is_empty() => Some(Identity::SipUri(value)),
            "nai" if value.contains('@') => Some(Identity::Nai(value)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub account: AccountId,
    /// Plan id; the version in force at the time of each usage is used. A shard holds
    /// one copy of each id, shared by its subscriptions ([`crate::ShardState::apply`]),
    /// so reading it on the hot path hits the cache. Archived as a `String` is.
    #[rkyv(with = SharedText)]
    pub plan: std::sync::Arc<str>,
    pub identities: Vec<Identity>,
    pub started_at: i64,
}

/// `#[rkyv(with = SharedText)]` on an `Arc<str>`: archived exactly as a `String` field
/// is, so archives written when the field was a `String` read back unchanged.
#[derive(Debug)]
pub struct SharedText;

impl ArchiveWith<std::sync::Arc<str>> for SharedText {
    type Archived = ArchivedString;
    type Resolver = StringResolver;

    fn resolve_with(field: &std::sync::Arc<str>, resolver: StringResolver, out: Place<ArchivedString>) {
        ArchivedString::resolve_from_str(field, resolver, out);
    }
}

impl<S: Fallible + Writer + ?Sized> SerializeWith<std::sync::Arc<str>, S> for SharedText
where
    S::Error: Source,
{
    fn serialize_with(field: &std::sync::Arc<str>, serializer: &mut S) -> Result<StringResolver, S::Error> {
        ArchivedString::serialize_from_str(field, serializer)
    }
}

impl<D: Fallible + ?Sized> DeserializeWith<ArchivedString, std::sync::Arc<str>, D> for SharedText {
    fn deserialize_with(field: &ArchivedString, _: &mut D) -> Result<std::sync::Arc<str>, D::Error> {
        Ok(std::sync::Arc::from(field.as_str()))
    }
}

/// Credit held for one rating group of one session.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Reservation {
    pub session: String,
    pub rating_group: u32,
    pub subscription: SubscriptionId,
    pub account: AccountId,
    /// When the reserved usage may start (usage reported against it is rated from here).
    pub started_at: i64,
    pub granted_units: u64,
    #[rkyv(with = RkyvDecimal)]
    pub money: Decimal,
    /// Units held in unit buckets: (bucket, units).
    pub bucket_units: Vec<(BucketId, u64)>,
    pub expires_at: i64,
    pub destination: Option<String>,
}

/// What changed about a subscription after it was created; most never have one, and the
/// shard keeps them apart so charging a record reads nothing more for the others.
#[derive(Debug, Clone, Default, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Lifecycle {
    /// Since when its service is stopped.
    pub suspended_at: Option<i64>,
    /// When it ended for good (its identities were freed).
    pub terminated_at: Option<i64>,
    /// Plans that took over after the one it was created with, each from an instant,
    /// in order: usage is priced by the plan in force at its start.
    pub plans: Vec<(i64, String)>,
}

impl Lifecycle {
    /// The plan in force at `at`, when it is not the subscription's first.
    pub fn plan_at(&self, at: i64) -> Option<&str> {
        self.plans.iter().rev().find(|(from, _)| *from <= at).map(|(_, plan)| plan.as_str())
    }

    pub fn is_default(&self) -> bool {
        self.suspended_at.is_none() && self.terminated_at.is_none() && self.plans.is_empty()
    }
}

/// An allowance's units in one of its periods that ended (renewed or retired).
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct AllowancePeriod {
    pub subscription: SubscriptionId,
    pub allowance: AllowanceId,
    pub bucket: BucketId,
    pub valid_from_at: i64,
    pub valid_until_at: i64,
    pub granted: u64,
    pub used: u64,
}

/// An online charging session the engine knows: open, or quiet since its reservations
/// expired (a tombstone, kept until `forget_at` so late usage is still charged once).
/// A session the engine never knew, or one that was terminated or forgotten, is unknown:
/// usage reported on it is refused, not charged.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct SessionRecord {
    pub session: String,
    pub account: AccountId,
    pub subscription: SubscriptionId,
    pub opened_at: i64,
    /// When the network last sent a request of this session.
    pub reported_at: i64,
    /// When the record is dropped if nothing more is heard.
    pub forget_at: i64,
    /// The rating groups seen, each with the start of its usage not yet reported.
    pub groups: Vec<SessionGroup>,
}

/// One rating group of a [`SessionRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct SessionGroup {
    pub rating_group: u32,
    /// When its last grant was made or its usage last reported: usage reported later
    /// without a reservation to settle is dated from here.
    pub usage_since_at: i64,
    /// The called number of its last grant, for services priced by destination.
    pub destination: Option<String>,
}

impl SessionRecord {
    pub fn group(&self, rating_group: u32) -> Option<&SessionGroup> {
        self.groups.iter().find(|g| g.rating_group == rating_group)
    }

    /// Records that `rating_group`'s unreported usage starts at `at`.
    pub fn mark_group(&mut self, rating_group: u32, at: i64, destination: Option<&str>) {
        match self.groups.iter_mut().find(|g| g.rating_group == rating_group) {
            Some(group) => {
                group.usage_since_at = at;
                if let Some(destination) = destination {
                    group.destination = Some(destination.to_owned());
                }
            }
            None => self.groups.push(SessionGroup {
                rating_group,
                usage_since_at: at,
                destination: destination.map(str::to_owned),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Identity;

    #[test]
    fn keys_are_normalized_and_built_alike_on_the_stack_and_on_the_heap() {
        let cases = [
            (Identity::Msisdn("+491700000001".into()), "msisdn:491700000001"),
            (Identity::Imsi("262010000000001".into()), "imsi:262010000000001"),
            (Identity::SipUri("sip:Alice@Example.COM".into()), "sip:alice@example.com"),
            (Identity::Nai("Ülrich@Example.org".into()), "nai:Ülrich@example.org"),
            (Identity::Nai(format!("{}@example.org", "A".repeat(80))), ""),
        ];
        for (identity, expected) in cases {
            let key = identity.key();
            if !expected.is_empty() {
                assert_eq!(key, expected);
            }
            assert_eq!(identity.with_key(str::to_owned), key, "{identity:?}");
        }
    }
}
