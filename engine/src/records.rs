//! The bulk path for rated records (mediation, offline charging): many CDRs charged in
//! one message per shard, each exactly once, with compact answers and one hand-encoded
//! journal record per batch.
//!
//! The general API ([`crate::Request`]) keys requests by text and remembers whole answers;
//! at millions of records a minute that costs more than rating itself. Here a record's
//! idempotency key is a 128-bit XXH3 digest of its text ([`RecordKey::of`]), the window
//! remembers only the digest and a fixed-size [`Memo`] of each *charged* record, and a
//! batch's changes are written as fixed-layout [`ChargeEffect`]s (byte format below)
//! rather than an rkyv archive of general effects.
//!
//! A record that is refused (unknown subscriber, rating failed, credit limit) changed
//! nothing and is not remembered: sending it again after a tariff fix or a top-up charges
//! it then, once.
//!
//! # Charges record payload (journal record kind 1; integers little-endian)
//!
//! | size | field |
//! |---|---|
//! | 8 | decided at (Unix seconds) |
//! | 4 | number of charges `C` |
//! | … | `C` charges |
//!
//! Each charge:
//!
//! | size | field |
//! |---|---|
//! | 16 | key digest (u128) |
//! | 8 | account |
//! | 16 | amount charged (rust_decimal `serialize()` bytes) |
//! | 8 | units charged |
//! | 8 | units paid by allowances |
//! | 8 | origin (the caller's tag) |
//! | 2 | service index in the plan |
//! | 2 | band index in the plan |
//! | 4 | destination index in the plan (`0xFFFFFFFF`: none) |
//! | 8 | usage cycle start (Unix seconds) |
//! | 1 | number of money moves `M` (≤ [`crate::shard::MAX_MONEY_BUCKETS`]) |
//! | 1 | number of unit draws `D` |
//! | 1 | length of the service name `L` |
//! | 20 × M | money moves: bucket (u32), delta (16-byte decimal, negative) |
//! | 12 × D | unit draws: bucket (u32), units (u64) |
//! | L | service name (UTF-8) |

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};
use rust_decimal::Decimal;
use smallvec::SmallVec;
use tollgate_tariffs::plan::RkyvDecimal;

use crate::api::Usage;
use crate::model::{AccountId, BucketId, SubscriptionId};

/// The idempotency key of a record: a 128-bit XXH3 digest of its text (for example
/// source + record id). Stable across builds and platforms; collisions are negligible
/// (2⁻⁶⁴ at four billion keys in one window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey(pub u128);

impl RecordKey {
    pub fn of(text: &str) -> RecordKey {
        RecordKey(xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
    }
}

/// One rated record to charge to a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordCharge {
    pub key: RecordKey,
    /// Where the record came from, as the caller tags it (mediation: a digest of source
    /// file and record number). Stored with the charge and returned on a repeat, so a
    /// resumed run can tell its own earlier charge from a duplicate of another record.
    pub origin: u64,
    /// The account the caller found with the subscription ([`crate::Directory::subscriber`]
    /// gives both). The record is routed by it without another directory lookup; one that
    /// does not own `subscription` is answered `UnknownSubscriber`.
    pub account: AccountId,
    pub subscription: SubscriptionId,
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
}

impl RecordOutcome {
    pub fn code(self) -> &'static str {
        match self {
            RecordOutcome::Charged => "charged",
            RecordOutcome::CreditLimitReached => "credit_limit_reached",
            RecordOutcome::UnknownSubscriber => "unknown_subscriber",
            RecordOutcome::RatingFailed(code) => code,
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
    /// The answer this memo stands for; `plan` is the handle of the plan version it was
    /// rated with, when that version is loaded.
    pub fn answer(self, plan: Option<u32>, repeated: bool) -> RecordAnswer {
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
pub const NO_DESTINATION: u32 = u32::MAX;

/// The exactly-once window of record keys: at least the last `window` charged keys
/// (see [`crate::dedupe::Window`]).
pub type RecentRecords = crate::dedupe::Window<RecordKey, Memo>;

/// Money taken from one bucket (`delta` is negative).
pub type MoneyMoves = SmallVec<[(BucketId, Decimal); 2]>;

/// Everything one charged record changes. Applied by [`crate::shard::ShardState::apply_charge`]
/// live and at recovery alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeEffect<'a> {
    pub key: RecordKey,
    pub account: AccountId,
    pub memo: Memo,
    pub cycle_start: i64,
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

const CHARGE_FIXED_BYTES: usize = 16 + 8 + 16 + 8 + 8 + 8 + 2 + 2 + 4 + 8 + 3;

impl ChargeEffect<'_> {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key.0.to_le_bytes());
        out.extend_from_slice(&self.account.to_le_bytes());
        let memo = &self.memo;
        out.extend_from_slice(&memo.amount.serialize());
        out.extend_from_slice(&memo.charged_units.to_le_bytes());
        out.extend_from_slice(&memo.allowance_units.to_le_bytes());
        out.extend_from_slice(&memo.origin.to_le_bytes());
        out.extend_from_slice(&memo.service.to_le_bytes());
        out.extend_from_slice(&memo.band.to_le_bytes());
        out.extend_from_slice(&memo.destination.to_le_bytes());
        out.extend_from_slice(&self.cycle_start.to_le_bytes());
        // Bounded by construction: money buckets ≤ MAX_MONEY_BUCKETS, draws ≤ the plan's
        // allowances, service names ≤ the compiler's name limit.
        out.push(self.moves.len() as u8);
        out.push(self.draws.len() as u8);
        let service = self.service.as_str();
        out.push(service.len().min(255) as u8);
        for (bucket, delta) in &self.moves {
            out.extend_from_slice(&bucket.to_le_bytes());
            out.extend_from_slice(&delta.serialize());
        }
        for (bucket, units) in &self.draws {
            out.extend_from_slice(&bucket.to_le_bytes());
            out.extend_from_slice(&units.to_le_bytes());
        }
        out.extend_from_slice(&service.as_bytes()[..service.len().min(255)]);
    }
}

/// Starts a charges payload; [`finish_charges`] writes the count.
pub fn begin_charges(out: &mut Vec<u8>, decided_at: i64) {
    out.clear();
    out.extend_from_slice(&decided_at.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
}

pub fn finish_charges(out: &mut [u8], count: u32) {
    out[8..12].copy_from_slice(&count.to_le_bytes());
}

/// A decoded charges payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charges<'a> {
    pub decided_at: i64,
    pub charges: Vec<ChargeEffect<'a>>,
}

/// Reads a charges payload; the error names the byte offset that is wrong.
pub fn decode_charges(payload: &[u8]) -> Result<Charges<'_>, String> {
    let mut reader = Reader { bytes: payload, at: 0 };
    let decided_at = reader.u64()? as i64;
    let count = reader.u32()? as usize;
    if count > payload.len() / CHARGE_FIXED_BYTES {
        return Err(format!("charge count {count} does not fit in {} bytes", payload.len()));
    }
    let mut charges = Vec::with_capacity(count);
    for _ in 0..count {
        let key = RecordKey(reader.u128()?);
        let account = reader.u64()?;
        let memo = Memo {
            amount: reader.decimal()?,
            charged_units: reader.u64()?,
            allowance_units: reader.u64()?,
            origin: reader.u64()?,
            service: reader.u16()?,
            band: reader.u16()?,
            destination: reader.u32()?,
        };
        let cycle_start = reader.u64()? as i64;
        let moves = reader.u8()?;
        let draws = reader.u8()?;
        let service_len = reader.u8()?;
        let mut effect = ChargeEffect {
            key,
            account,
            memo,
            cycle_start,
            moves: SmallVec::new(),
            draws: SmallVec::new(),
            service: ServiceName::Text(""),
        };
        for _ in 0..moves {
            effect.moves.push((reader.u32()?, reader.decimal()?));
        }
        for _ in 0..draws {
            effect.draws.push((reader.u32()?, reader.u64()?));
        }
        let at = reader.at;
        effect.service = ServiceName::Text(
            std::str::from_utf8(reader.take(usize::from(service_len))?)
                .map_err(|_| format!("service name at byte {at} is not UTF-8"))?,
        );
        charges.push(effect);
    }
    if reader.at != payload.len() {
        return Err(format!("{} bytes after the last charge", payload.len() - reader.at));
    }
    Ok(Charges { decided_at, charges })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.bytes.len());
        match end {
            Some(end) => {
                let out = &self.bytes[self.at..end];
                self.at = end;
                Ok(out)
            }
            None => Err(format!("charges record ends at byte {} inside a field of {n} bytes", self.bytes.len())),
        }
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }
    fn u128(&mut self) -> Result<u128, String> {
        self.array().map(u128::from_le_bytes)
    }
    fn decimal(&mut self) -> Result<Decimal, String> {
        let at = self.at;
        let bytes: [u8; 16] = self.array()?;
        // `deserialize` accepts any bytes; a scale beyond 28 marks a damaged record.
        if bytes[2] > 28 {
            return Err(format!("decimal at byte {at} has scale {}", bytes[2]));
        }
        Ok(Decimal::deserialize(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(effects: &[ChargeEffect<'_>]) {
        let mut out = Vec::new();
        begin_charges(&mut out, 1_772_445_600);
        for effect in effects {
            effect.encode_into(&mut out);
        }
        finish_charges(&mut out, effects.len() as u32);
        let decoded = decode_charges(&out).expect("decodes");
        assert_eq!(decoded.decided_at, 1_772_445_600);
        assert_eq!(decoded.charges, effects);
        for cut in 0..out.len() {
            assert!(decode_charges(&out[..cut]).is_err(), "a payload cut at {cut} must be refused");
        }
    }

    #[test]
    fn charges_round_trip_and_every_truncation_is_refused() {
        let mut moves = MoneyMoves::new();
        moves.push((3, Decimal::new(-125, 2)));
        moves.push((0, Decimal::new(-7, 4)));
        let mut draws = SmallVec::new();
        draws.push((1, 60));
        check(&[
            ChargeEffect {
                key: RecordKey::of("file-1:17"),
                account: 42,
                memo: Memo {
                    amount: Decimal::new(12507, 4),
                    charged_units: 120,
                    allowance_units: 60,
                    origin: 7,
                    service: 1,
                    band: 2,
                    destination: 40_000,
                },
                cycle_start: 1_772_323_200,
                moves,
                draws,
                service: ServiceName::Text("voice"),
            },
            ChargeEffect {
                key: RecordKey::of("file-1:18"),
                account: u64::MAX,
                memo: Memo {
                    amount: Decimal::ZERO,
                    charged_units: 0,
                    allowance_units: 0,
                    origin: u64::MAX,
                    service: 0,
                    band: 0,
                    destination: NO_DESTINATION,
                },
                cycle_start: -1,
                moves: SmallVec::new(),
                draws: SmallVec::new(),
                service: ServiceName::Text(""),
            },
        ]);
    }

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
