//! The bulk path for rated records (mediation, offline charging): many CDRs charged in
//! one message per shard, each exactly once, with compact answers and one hand-encoded
//! journal record per batch.
//!
//! The general API ([`crate::Request`]) keys requests by text and remembers whole answers;
//! at millions of records a minute that costs more than rating itself. Here a record's
//! idempotency key is a 128-bit XXH3 digest of its text ([`RecordKey::of`]), the window
//! remembers only the digest and a fixed-size [`Memo`] of each *charged* record, and a
//! batch's changes are written as compact [`ChargeEffect`]s (byte format below) rather
//! than an rkyv archive of general effects.
//!
//! A record that is refused (unknown subscriber, rating failed, credit limit) changed
//! nothing and is not remembered: sending it again after a tariff fix or a top-up charges
//! it then, once.
//!
//!
//! The byte formats of the journal records that carry charges are in `crate::format::charges`.

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};
use rust_decimal::Decimal;

use smallvec::SmallVec;
use tollgate_tariffs::plan::RkyvDecimal;

use crate::api::Usage;
use crate::model::{AccountId, BucketId, Identity, SubscriptionId};

/// The idempotency key of a record: a 128-bit XXH3 digest of its text (for example
/// source + record id). Stable across builds and platforms; collisions are negligible
/// (2⁻⁶⁴ at four billion keys in one window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey(pub u128);

impl RecordKey {
    pub fn of(text: &str) -> RecordKey {
        RecordKey(xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
    }

    /// Where the refusal of the record with this key and `origin` is remembered: apart
    /// from the key itself, which a later record with the same key may charge.
    pub(crate) fn refusal(self, origin: u64) -> RecordKey {
        let mut bytes = [0u8; 25];
        bytes[..16].copy_from_slice(&self.0.to_le_bytes());
        bytes[16..24].copy_from_slice(&origin.to_le_bytes());
        bytes[24] = RE_FUSED_TAG;
        RecordKey(xxhash_rust::xxh3::xxh3_128(&bytes))
    }
}

/// The byte that tells a refusal's key from a record key's text.
const RE_FUSED_TAG: u8 = 0xfe;

/// The rating codes a remembered refusal can hold (a memo stores the index).
const RATING_CODES: [&str; 10] = [
    "unknown_service",
    "before_effective",
    "unknown_destination",
    "malformed_destination",
    "no_rate",
    "usage_too_large",
    "amount_overflow",
    "start_too_late",
    "plan_not_loaded",
    "rating_failed",
];

/// A memo whose `charged_units` is this is a refusal, its outcome in `allowance_units`.
const REFUSED: u64 = u64::MAX;

/// One rated record to charge to a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordCharge {
    pub key: RecordKey,
    /// Where the record came from, as the caller tags it (mediation: a digest of source
    /// file and record number). Stored with the charge and returned on a repeat, so a
    /// resumed run can tell its own earlier charge from a duplicate of another record.
    pub origin: u64,
    /// The account the caller found with the subscription (`Directory::subscriber`
    /// gives both). The record is routed by it without another directory lookup; one that
    /// does not own `subscription` is answered `UnknownSubscriber`.
    pub account: AccountId,
    pub subscription: SubscriptionId,
    /// The identity the record named (mediation: its subscriber), for the rated-event
    /// ledger; `None` leaves it out of the ledger's entry.
    pub identity: Option<Identity>,
    pub usage: Usage,
}

/// Why a record was not charged. Nothing changed for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordOutcome {
    Charged,
    /// Not enough money or allowance (prepaid balance or postpaid credit limit).
    CreditLimitReached,
    UnknownSubscriber,
    /// The rating code (`no_rate`, `unknown_destination`, `plan_not_loaded`, …).
    RatingFailed(&'static str),
    /// The subscription was suspended (or its account closed) before the usage started.
    Suspended,
}

impl RecordOutcome {
    pub fn code(self) -> &'static str {
        match self {
            RecordOutcome::Charged => "charged",
            RecordOutcome::CreditLimitReached => "credit_limit_reached",
            RecordOutcome::UnknownSubscriber => "unknown_subscriber",
            RecordOutcome::RatingFailed(code) => code,
            RecordOutcome::Suspended => "suspended",
        }
    }
}

/// What charging one record did. The indexes (`plan`, `service`, `band`, `destination`)
/// resolve through [`crate::Plans::by_handle`] and the plan's names; a repeated record
/// gets its stored answer, its plan looked up again (`None` if no longer loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordAnswer {
    pub outcome: RecordOutcome,
    pub amount: Decimal,
    pub charged_units: u64,
    pub allowance_units: u64,
    pub rated: Option<RatedIndexes>,
    /// The origin stored with the first charge of this key (see [`RecordCharge::origin`]).
    pub origin: u64,
    /// The key was charged before; this is the stored answer and nothing changed now.
    pub repeated: bool,
}

/// Where in its plan a charged record was priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatedIndexes {
    pub plan: u32,
    pub service: u16,
    pub band: u16,
    pub destination: Option<u32>,
}

impl RecordAnswer {
    pub fn refused(outcome: RecordOutcome) -> RecordAnswer {
        RecordAnswer {
            outcome,
            amount: Decimal::ZERO,
            charged_units: 0,
            allowance_units: 0,
            rated: None,
            origin: 0,
            repeated: false,
        }
    }
}

/// What the window keeps of a charged record: enough to answer a repeat as the first
/// answer was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Memo {
    #[rkyv(with = RkyvDecimal)]
    pub amount: Decimal,
    pub charged_units: u64,
    pub allowance_units: u64,
    pub origin: u64,
    pub service: u16,
    pub band: u16,
    /// [`NO_DESTINATION`] when the usage had none.
    pub destination: u32,
}

impl Memo {
    /// The memo of a record refused with `outcome` (not for an unknown subscriber: no
    /// shard holds it).
    pub(crate) fn refusal(outcome: RecordOutcome, origin: u64) -> Option<Memo> {
        let code = match outcome {
            RecordOutcome::CreditLimitReached => 0,
            RecordOutcome::Suspended => 1,
            RecordOutcome::RatingFailed(code) => {
                2 + RATING_CODES.iter().position(|known| *known == code).unwrap_or(RATING_CODES.len() - 1) as u64
            }
            RecordOutcome::Charged | RecordOutcome::UnknownSubscriber => return None,
        };
        Some(Memo {
            amount: Decimal::ZERO,
            charged_units: REFUSED,
            allowance_units: code,
            origin,
            service: 0,
            band: 0,
            destination: NO_DESTINATION,
        })
    }

    /// A refusal's memo from its stored outcome code; `None` for a code never written.
    pub(crate) fn refusal_of_code(code: u64, origin: u64) -> Option<Memo> {
        let memo = Memo {
            amount: Decimal::ZERO,
            charged_units: REFUSED,
            allowance_units: code,
            origin,
            service: 0,
            band: 0,
            destination: NO_DESTINATION,
        };
        (code < 2 + RATING_CODES.len() as u64).then_some(memo)
    }

    /// The outcome of a remembered refusal; `None` for a charge.
    pub(crate) fn refused(&self) -> Option<RecordOutcome> {
        if self.charged_units != REFUSED {
            return None;
        }
        Some(match self.allowance_units {
            0 => RecordOutcome::CreditLimitReached,
            1 => RecordOutcome::Suspended,
            n => RecordOutcome::RatingFailed(RATING_CODES.get(n as usize - 2).copied().unwrap_or("rating_failed")),
        })
    }

    /// The answer this memo stands for; `plan` is the handle of the plan version it was
    /// rated with, when that version is loaded.
    pub fn answer(self, plan: Option<u32>, repeated: bool) -> RecordAnswer {
        if let Some(outcome) = self.refused() {
            return RecordAnswer { repeated, origin: self.origin, ..RecordAnswer::refused(outcome) };
        }
        RecordAnswer {
            outcome: RecordOutcome::Charged,
            amount: self.amount,
            charged_units: self.charged_units,
            allowance_units: self.allowance_units,
            rated: plan.map(|plan| RatedIndexes {
                plan,
                service: self.service,
                band: self.band,
                destination: (self.destination != NO_DESTINATION).then_some(self.destination),
            }),
            origin: self.origin,
            repeated,
        }
    }
}

/// `Memo::destination` of a usage without a destination.
pub(crate) const NO_DESTINATION: u32 = u32::MAX;

/// The exactly-once window of record keys: at least the last `window` charged keys
/// (see [`crate::dedupe::Window`]).
pub(crate) type RecentRecords = crate::dedupe::Window<RecordKey, Memo>;

/// Money taken from one bucket (`delta` is negative).
pub(crate) type MoneyMoves = SmallVec<[(BucketId, Decimal); 2]>;

/// Everything one charged record changes. Applied by [`crate::state::ShardState::apply_charge`]
/// live and at recovery alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeEffect<'a> {
    pub key: RecordKey,
    pub account: AccountId,
    pub memo: Memo,
    pub cycle_start_at: i64,
    pub moves: MoneyMoves,
    pub draws: SmallVec<[(BucketId, u64); 2]>,
    pub service: ServiceName<'a>,
}

/// The service a charge accumulates under: the plan's shared name when charged live, the
/// journal's text when replayed.
#[derive(Debug, Clone, Copy)]
pub enum ServiceName<'a> {
    Shared(&'a std::sync::Arc<str>),
    Text(&'a str),
}

impl ServiceName<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            ServiceName::Shared(name) => name,
            ServiceName::Text(text) => text,
        }
    }

    pub fn to_shared(self) -> std::sync::Arc<str> {
        match self {
            ServiceName::Shared(name) => std::sync::Arc::clone(name),
            ServiceName::Text(text) => std::sync::Arc::from(text),
        }
    }
}

impl PartialEq for ServiceName<'_> {
    fn eq(&self, other: &ServiceName<'_>) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ServiceName<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_are_stable_digests() {
        // XXH3-128 is specified; a digest stored by one build must match the next.
        assert_eq!(RecordKey::of(""), RecordKey(0x99aa_06d3_0147_98d8_6001_c324_468d_497f));
        assert_ne!(RecordKey::of("a"), RecordKey::of("b"));
    }

    #[test]
    fn the_window_keeps_the_first_memo_and_forgets_the_oldest() {
        let memo = |cents| Memo {
            amount: Decimal::new(cents, 2),
            charged_units: 1,
            allowance_units: 0,
            origin: 0,
            service: 0,
            band: 0,
            destination: NO_DESTINATION,
        };
        let mut recent = RecentRecords::new(2);
        recent.insert(RecordKey(1), memo(1));
        recent.insert(RecordKey(1), memo(2));
        assert_eq!(recent.get(&RecordKey(1)), Some(&memo(1)));
        for key in 2..=5 {
            recent.insert(RecordKey(key), memo(key as i64 + 1));
        }
        // Keys 1 and 2 made a generation, 3 and 4 the next; 5 started a third.
        assert_eq!(recent.get(&RecordKey(1)), None);
        assert_eq!(recent.get(&RecordKey(2)), None);
        let mut kept: Vec<u128> = recent.ordered().into_iter().map(|(k, _)| k.0).collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![3, 4, 5]);
    }
}
