//! Compact effects: the journal record (kind 3) of the online path's requests.
//!
//! A session step writes five or six effects (the reservation released and taken again,
//! the money and usage it cost, the session's report, the remembered answer). As an
//! rkyv archive that is about 720 bytes a CCR: every enum is as large as its largest
//! variant, every string and vector carries an 8-byte relative pointer, and the session
//! id is spelled out four times. This layout writes the same effects in about a quarter
//! of that. A record holding an effect it does not cover (an account or subscription
//! created, a money bucket added, a rerate) is written as an rkyv archive (kind 0), as
//! before.
//!
//! # Byte format
//!
//! Integers are LEB128 varints (`v`), signed ones zigzag-encoded first (`z`); a decimal
//! is one byte of sign (bit 7) and scale, then its magnitude as a LEB128 varint (`d`). A
//! string (`s`) is a varint index into the record's table of strings: the next index
//! means a new string, its byte length (`v`) and UTF-8 bytes follow and it joins the
//! table; a smaller index repeats an earlier string. An optional value (`o`) is a byte 0
//! (none) or 1 followed by the value. A list is its length (`v`) and its items.
//!
//! ```text
//! record   = decided_at:z count:v effect*
//! effect   = tag:u8 fields
//!   1 Released         session:s rating_group:v
//!   2 Money            account:v bucket:v delta:d kind
//!        kind = 0 Opening | 1 Charge | 2 TopUp reference:s | 3 Refund reason:s
//!             | 4 Adjustment reason:s | 5 Rerate record:s
//!   3 Usage            account:v cycle_start_at:z service:s units:v amount:d
//!   4 Reserved         session:s rating_group:v subscription:v account:v started_at:z
//!                      granted_units:v money:d [bucket:v units:v] expires_at:z destination:o(s)
//!   5 Units            account:v bucket:v consumed:v
//!   6 BucketRenewed    account:v bucket:v valid_from_at:z valid_until_at:z
//!   7 SessionOpened    session:s account:v subscription:v opened_at:z reported_at:z forget_at:z
//!                      [rating_group:v usage_since_at:z destination:o(s)]
//!   8 SessionReported  session:s at:z forget_at:z [rating_group:v]
//!   9 SessionEnded     session:s
//!  10 Remembered       key:s answer
//!  11 RecordRefused    refusal key (16 bytes, little-endian) origin:v outcome:v
//!  12 Rated            account:v subscription:v identity service:s rating_group:o(v)
//!                      called:o(s) prefix_len:u8 destination:o(s) band:s plan:s
//!                      plan_version:v rate_line:v started_at:z units:v charged_units:v
//!                      allowance_units:v [bucket:v units:v] amount:d currency:s
//!        identity = 0 none | 1 MSISDN value:s | 2 IMSI value:s | 3 SIP URI value:s | 4 NAI value:s
//! answer   = outcome body repeated:u8
//! outcome  = 0 Success | 1 CreditLimitReached | 2 UnknownSubscriber | 3 UnknownAccount
//!          | 4 UnknownSession | 5 RatingFailed code:s | 6 AlreadyExists | 7 Invalid text:s
//!          | 8 UnknownRecord | 9 ServiceDenied text:s
//! body     = 0 None | 1 Session [grant] | 2 Charged charged | 3 Money balance_after:d
//! grant    = rating_group:v outcome granted_units:v validity_seconds:v final_unit:u8
//!            used_units:v charged:d
//! charged  = amount:d currency:s plan:s plan_version:v service:s destination:o(s) band:s
//!            charged_units:v allowance_units:v balance_after:d
//! ```
//!
//! Decoding checks every field and names the byte offset of the first bad one.

use std::sync::Arc;

use rust_decimal::Decimal;

use crate::api::{Answer, Body, Charged, Grant, Outcome};
use crate::format::wire::{decimal, unzigzag, varint, zigzag, Reader};
use crate::journal::JournalEntry;
use crate::model::{Identity, Reservation, SessionGroup, SessionRecord};
use crate::records::Memo;
use crate::state::{Effect, MoneyKind, RatedDetail, RefusedRecord};

/// Most distinct strings one record may hold (a bound for the decoder).
const MAX_STRINGS: usize = 1 << 16;

/// Encodes `effects` decided at `decided_at`; `None` when one of them is not covered
/// (the record is then written as an rkyv archive).
pub fn encode(decided_at: i64, effects: &[Effect]) -> Option<Vec<u8>> {
    let mut out = Writer { bytes: Vec::with_capacity(256), strings: Vec::new() };
    varint(&mut out.bytes, zigzag(decided_at));
    varint(&mut out.bytes, effects.len() as u64);
    for effect in effects {
        out.effect(effect)?;
    }
    Some(out.bytes)
}

struct Writer<'e> {
    bytes: Vec<u8>,
    strings: Vec<&'e str>,
}

impl<'e> Writer<'e> {
    fn v(&mut self, value: u64) {
        varint(&mut self.bytes, value);
    }

    fn z(&mut self, value: i64) {
        varint(&mut self.bytes, zigzag(value));
    }

    fn d(&mut self, value: Decimal) {
        decimal(&mut self.bytes, value);
    }

    fn s(&mut self, text: &'e str) {
        if let Some(index) = self.strings.iter().position(|known| *known == text) {
            self.v(index as u64);
            return;
        }
        self.v(self.strings.len() as u64);
        self.v(text.len() as u64);
        self.bytes.extend_from_slice(text.as_bytes());
        self.strings.push(text);
    }

    fn ov(&mut self, value: Option<u64>) {
        match value {
            None => self.bytes.push(0),
            Some(value) => {
                self.bytes.push(1);
                self.v(value);
            }
        }
    }

    fn o(&mut self, text: Option<&'e str>) {
        match text {
            None => self.bytes.push(0),
            Some(text) => {
                self.bytes.push(1);
                self.s(text);
            }
        }
    }

    fn effect(&mut self, effect: &'e Effect) -> Option<()> {
        match effect {
            Effect::Released { session, rating_group } => {
                self.bytes.push(1);
                self.s(session);
                self.v(u64::from(*rating_group));
            }
            Effect::Money { account, bucket, delta, kind } => {
                self.bytes.push(2);
                self.v(*account);
                self.v(u64::from(*bucket));
                self.d(*delta);
                match kind {
                    MoneyKind::Opening => self.bytes.push(0),
                    MoneyKind::Charge => self.bytes.push(1),
                    MoneyKind::TopUp { reference } => {
                        self.bytes.push(2);
                        self.s(reference);
                    }
                    MoneyKind::Refund { reason } => {
                        self.bytes.push(3);
                        self.s(reason);
                    }
                    MoneyKind::Adjustment { reason } => {
                        self.bytes.push(4);
                        self.s(reason);
                    }
                    MoneyKind::Rerate { record } => {
                        self.bytes.push(5);
                        self.s(record);
                    }
                }
            }
            Effect::Usage { account, cycle_start_at, service, units, amount } => {
                self.bytes.push(3);
                self.v(*account);
                self.z(*cycle_start_at);
                self.s(service);
                self.v(*units);
                self.d(*amount);
            }
            Effect::Reserved(r) => {
                self.bytes.push(4);
                self.s(&r.session);
                self.v(u64::from(r.rating_group));
                self.v(r.subscription);
                self.v(r.account);
                self.z(r.started_at);
                self.v(r.granted_units);
                self.d(r.money);
                self.v(r.bucket_units.len() as u64);
                for (bucket, units) in &r.bucket_units {
                    self.v(u64::from(*bucket));
                    self.v(*units);
                }
                self.z(r.expires_at);
                self.o(r.destination.as_deref());
            }
            Effect::Units { account, bucket, consumed } => {
                self.bytes.push(5);
                self.v(*account);
                self.v(u64::from(*bucket));
                self.v(*consumed);
            }
            Effect::BucketRenewed { account, bucket, valid_from_at, valid_until_at } => {
                self.bytes.push(6);
                self.v(*account);
                self.v(u64::from(*bucket));
                self.z(*valid_from_at);
                self.z(*valid_until_at);
            }
            Effect::SessionOpened(record) => {
                self.bytes.push(7);
                self.s(&record.session);
                self.v(record.account);
                self.v(record.subscription);
                self.z(record.opened_at);
                self.z(record.reported_at);
                self.z(record.forget_at);
                self.v(record.groups.len() as u64);
                for group in &record.groups {
                    self.v(u64::from(group.rating_group));
                    self.z(group.usage_since_at);
                    self.o(group.destination.as_deref());
                }
            }
            Effect::SessionReported { session, at, forget_at, reported } => {
                self.bytes.push(8);
                self.s(session);
                self.z(*at);
                self.z(*forget_at);
                self.v(reported.len() as u64);
                for rating_group in reported {
                    self.v(u64::from(*rating_group));
                }
            }
            Effect::SessionEnded { session } => {
                self.bytes.push(9);
                self.s(session);
            }
            Effect::Remembered { key, answer } => {
                self.bytes.push(10);
                self.s(key);
                self.answer(answer)?;
            }
            Effect::RecordRefused(refused) => {
                refused.memo.refused()?;
                self.bytes.push(11);
                self.bytes.extend_from_slice(&refused.key.to_le_bytes());
                self.v(refused.memo.origin);
                self.v(refused.memo.allowance_units);
            }
            Effect::Rated(r) => {
                self.bytes.push(12);
                self.v(r.account);
                self.v(r.subscription);
                match &r.identity {
                    None => self.bytes.push(0),
                    Some(identity) => {
                        let (tag, value) = match identity {
                            Identity::Msisdn(v) => (1, v),
                            Identity::Imsi(v) => (2, v),
                            Identity::SipUri(v) => (3, v),
                            Identity::Nai(v) => (4, v),
                        };
                        self.bytes.push(tag);
                        self.s(value);
                    }
                }
                self.s(&r.service);
                self.ov(r.rating_group.map(u64::from));
                self.o(r.called.as_deref());
                self.bytes.push(r.prefix_len);
                self.o(r.destination.as_deref());
                self.s(&r.band);
                self.s(&r.plan);
                self.v(u64::from(r.plan_version));
                self.v(u64::from(r.rate_line));
                self.z(r.started_at);
                self.v(r.units);
                self.v(r.charged_units);
                self.v(r.allowance_units);
                self.v(r.draws.len() as u64);
                for (bucket, units) in &r.draws {
                    self.v(u64::from(*bucket));
                    self.v(*units);
                }
                self.d(r.amount);
                self.s(&r.currency);
            }
            // Rare changes: the record is written as an rkyv archive.
            Effect::AccountCreated(_)
            | Effect::SubscriptionCreated { .. }
            | Effect::MoneyBucketAdded { .. }
            | Effect::RecordRerated(_)
            | Effect::PlanScheduled { .. }
            | Effect::BucketsRetired { .. }
            | Effect::BucketsGranted { .. }
            | Effect::Suspended { .. }
            | Effect::Resumed { .. }
            | Effect::Terminated { .. }
            | Effect::IdentityAdded { .. }
            | Effect::IdentityRemoved { .. }
            | Effect::CreditLimitSet { .. }
            | Effect::AccountKindChanged { .. }
            | Effect::AccountClosed { .. }
            | Effect::AccountSuspended { .. }
            | Effect::AccountResumed { .. } => return None,
        }
        Some(())
    }

    fn outcome(&mut self, outcome: &'e Outcome) {
        match outcome {
            Outcome::Success => self.bytes.push(0),
            Outcome::CreditLimitReached => self.bytes.push(1),
            Outcome::UnknownSubscriber => self.bytes.push(2),
            Outcome::UnknownAccount => self.bytes.push(3),
            Outcome::UnknownSession => self.bytes.push(4),
            Outcome::RatingFailed(code) => {
                self.bytes.push(5);
                self.s(code);
            }
            Outcome::AlreadyExists => self.bytes.push(6),
            Outcome::Invalid(text) => {
                self.bytes.push(7);
                self.s(text);
            }
            Outcome::UnknownRecord => self.bytes.push(8),
            Outcome::ServiceDenied(text) => {
                self.bytes.push(9);
                self.s(text);
            }
        }
    }

    fn answer(&mut self, answer: &'e Answer) -> Option<()> {
        self.outcome(&answer.outcome);
        match &answer.body {
            Body::None => self.bytes.push(0),
            Body::Session { grants } => {
                self.bytes.push(1);
                self.v(grants.len() as u64);
                for grant in grants {
                    self.v(u64::from(grant.rating_group));
                    self.outcome(&grant.outcome);
                    self.v(grant.granted_units);
                    self.v(u64::from(grant.validity_seconds));
                    self.bytes.push(u8::from(grant.final_unit));
                    self.v(grant.used_units);
                    self.d(grant.charged);
                }
            }
            Body::Charged(c) => {
                self.bytes.push(2);
                self.d(c.amount);
                self.s(&c.currency);
                self.s(&c.plan);
                self.v(u64::from(c.plan_version));
                self.s(&c.service);
                self.o(c.destination.as_deref());
                self.s(&c.band);
                self.v(c.charged_units);
                self.v(c.allowance_units);
                self.d(c.balance_after);
            }
            Body::Money { balance_after } => {
                self.bytes.push(3);
                self.d(*balance_after);
            }
            Body::Balance(_) | Body::Rerated(_) | Body::Totals(_) => return None,
        }
        self.bytes.push(u8::from(answer.repeated));
        Some(())
    }
}

/// Decodes a compact effects record; the error names the byte offset that is wrong.
pub fn decode(payload: &[u8]) -> Result<JournalEntry, String> {
    let mut input = Input { reader: Reader { bytes: payload, at: 0 }, strings: Vec::new() };
    let decided_at = input.z()?;
    let count_at = input.reader.at;
    let count = input.v()? as usize;
    // Every effect takes at least two bytes.
    if count > payload.len() / 2 {
        return Err(format!("effect count {count} at byte {count_at} does not fit in {} bytes", payload.len()));
    }
    let mut effects = Vec::with_capacity(count);
    for _ in 0..count {
        effects.push(input.effect()?);
    }
    if input.reader.at != payload.len() {
        return Err(format!("{} bytes after the last effect", payload.len() - input.reader.at));
    }
    Ok(JournalEntry { decided_at, effects })
}

struct Input<'a> {
    reader: Reader<'a>,
    strings: Vec<&'a str>,
}

impl<'a> Input<'a> {
    fn v(&mut self) -> Result<u64, String> {
        self.reader.varint()
    }

    fn narrow<T: TryFrom<u64>>(&mut self, what: &str) -> Result<T, String> {
        self.reader.narrow(what)
    }

    fn z(&mut self) -> Result<i64, String> {
        self.reader.varint().map(unzigzag)
    }

    fn d(&mut self) -> Result<Decimal, String> {
        self.reader.compact_decimal()
    }

    fn u8(&mut self) -> Result<u8, String> {
        self.reader.u8()
    }

    fn flag(&mut self) -> Result<bool, String> {
        let at = self.reader.at;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("byte {other} at byte {at} is neither 0 nor 1")),
        }
    }

    fn s(&mut self) -> Result<&'a str, String> {
        let at = self.reader.at;
        let index = self.v()? as usize;
        if let Some(known) = self.strings.get(index) {
            return Ok(known);
        }
        if index != self.strings.len() || index >= MAX_STRINGS {
            return Err(format!("string {index} at byte {at} is neither known nor the next"));
        }
        let len = self.v()? as usize;
        let bytes = self.reader.take(len)?;
        let text = std::str::from_utf8(bytes).map_err(|_| format!("string at byte {at} is not UTF-8"))?;
        self.strings.push(text);
        Ok(text)
    }

    fn o(&mut self) -> Result<Option<&'a str>, String> {
        if self.flag()? {
            self.s().map(Some)
        } else {
            Ok(None)
        }
    }

    /// A list's length, refused when that many items of at least one byte cannot fit.
    fn len(&mut self) -> Result<usize, String> {
        let at = self.reader.at;
        let len = self.v()? as usize;
        if len > self.reader.bytes.len() - self.reader.at {
            return Err(format!("list of {len} at byte {at} does not fit in the record"));
        }
        Ok(len)
    }

    fn effect(&mut self) -> Result<Effect, String> {
        let at = self.reader.at;
        Ok(match self.u8()? {
            1 => Effect::Released { session: self.s()?.to_owned(), rating_group: self.narrow("rating group")? },
            2 => {
                let (account, bucket, delta) = (self.v()?, self.narrow("bucket")?, self.d()?);
                let kind_at = self.reader.at;
                let kind = match self.u8()? {
                    0 => MoneyKind::Opening,
                    1 => MoneyKind::Charge,
                    2 => MoneyKind::TopUp { reference: self.s()?.to_owned() },
                    3 => MoneyKind::Refund { reason: self.s()?.to_owned() },
                    4 => MoneyKind::Adjustment { reason: self.s()?.to_owned() },
                    5 => MoneyKind::Rerate { record: self.s()?.to_owned() },
                    other => return Err(format!("unknown money kind {other} at byte {kind_at}")),
                };
                Effect::Money { account, bucket, delta, kind }
            }
            3 => Effect::Usage {
                account: self.v()?,
                cycle_start_at: self.z()?,
                service: Arc::from(self.s()?),
                units: self.v()?,
                amount: self.d()?,
            },
            4 => {
                let session = self.s()?.to_owned();
                let rating_group = self.narrow("rating group")?;
                let (subscription, account, started_at) = (self.v()?, self.v()?, self.z()?);
                let (granted_units, money) = (self.v()?, self.d()?);
                let count = self.len()?;
                let mut bucket_units = Vec::with_capacity(count);
                for _ in 0..count {
                    bucket_units.push((self.narrow("bucket")?, self.v()?));
                }
                let expires_at = self.z()?;
                let destination = self.o()?.map(str::to_owned);
                Effect::Reserved(Box::new(Reservation {
                    session,
                    rating_group,
                    subscription,
                    account,
                    started_at,
                    granted_units,
                    money,
                    bucket_units,
                    expires_at,
                    destination,
                }))
            }
            5 => Effect::Units { account: self.v()?, bucket: self.narrow("bucket")?, consumed: self.v()? },
            6 => Effect::BucketRenewed {
                account: self.v()?,
                bucket: self.narrow("bucket")?,
                valid_from_at: self.z()?,
                valid_until_at: self.z()?,
            },
            7 => {
                let session = self.s()?.to_owned();
                let (account, subscription) = (self.v()?, self.v()?);
                let (opened_at, reported_at, forget_at) = (self.z()?, self.z()?, self.z()?);
                let count = self.len()?;
                let mut groups = Vec::with_capacity(count);
                for _ in 0..count {
                    groups.push(SessionGroup {
                        rating_group: self.narrow("rating group")?,
                        usage_since_at: self.z()?,
                        destination: self.o()?.map(str::to_owned),
                    });
                }
                Effect::SessionOpened(Box::new(SessionRecord {
                    session,
                    account,
                    subscription,
                    opened_at,
                    reported_at,
                    forget_at,
                    groups,
                }))
            }
            8 => {
                let session = self.s()?.to_owned();
                let (at, forget_at) = (self.z()?, self.z()?);
                let count = self.len()?;
                let mut reported = Vec::with_capacity(count);
                for _ in 0..count {
                    reported.push(self.narrow("rating group")?);
                }
                Effect::SessionReported { session, at, forget_at, reported }
            }
            9 => Effect::SessionEnded { session: self.s()?.to_owned() },
            10 => {
                let key = self.s()?.to_owned();
                Effect::Remembered { key, answer: Arc::new(self.answer()?) }
            }
            11 => {
                let key = u128::from_le_bytes(self.reader.array()?);
                let (origin, code) = (self.v()?, self.v()?);
                let memo = Memo::refusal_of_code(code, origin)
                    .ok_or_else(|| format!("refusal code {code} at byte {at} is unknown"))?;
                Effect::RecordRefused(Box::new(RefusedRecord { key, memo }))
            }
            12 => {
                let (account, subscription) = (self.v()?, self.v()?);
                let identity_at = self.reader.at;
                let identity = match self.u8()? {
                    0 => None,
                    1 => Some(Identity::Msisdn(self.s()?.to_owned())),
                    2 => Some(Identity::Imsi(self.s()?.to_owned())),
                    3 => Some(Identity::SipUri(self.s()?.to_owned())),
                    4 => Some(Identity::Nai(self.s()?.to_owned())),
                    other => return Err(format!("unknown identity type {other} at byte {identity_at}")),
                };
                let service = Arc::from(self.s()?);
                let rating_group = if self.flag()? { Some(self.narrow("rating group")?) } else { None };
                let called = self.o()?.map(str::to_owned);
                let prefix_len = self.u8()?;
                let destination = self.o()?.map(Arc::from);
                let (band, plan) = (Arc::from(self.s()?), Arc::from(self.s()?));
                let (plan_version, rate_line) = (self.narrow("plan version")?, self.narrow("rate line")?);
                let started_at = self.z()?;
                let (units, charged_units, allowance_units) = (self.v()?, self.v()?, self.v()?);
                let count = self.len()?;
                let mut draws = Vec::with_capacity(count);
                for _ in 0..count {
                    draws.push((self.narrow("bucket")?, self.v()?));
                }
                let amount = self.d()?;
                let currency = Arc::from(self.s()?);
                Effect::Rated(Box::new(RatedDetail {
                    account,
                    subscription,
                    identity,
                    service,
                    rating_group,
                    called,
                    prefix_len,
                    destination,
                    band,
                    plan,
                    plan_version,
                    rate_line,
                    started_at,
                    units,
                    charged_units,
                    allowance_units,
                    draws,
                    amount,
                    currency,
                }))
            }
            other => return Err(format!("unknown effect {other} at byte {at}")),
        })
    }

    fn outcome(&mut self) -> Result<Outcome, String> {
        let at = self.reader.at;
        Ok(match self.u8()? {
            0 => Outcome::Success,
            1 => Outcome::CreditLimitReached,
            2 => Outcome::UnknownSubscriber,
            3 => Outcome::UnknownAccount,
            4 => Outcome::UnknownSession,
            5 => Outcome::RatingFailed(self.s()?.to_owned()),
            6 => Outcome::AlreadyExists,
            7 => Outcome::Invalid(self.s()?.to_owned()),
            8 => Outcome::UnknownRecord,
            9 => Outcome::ServiceDenied(self.s()?.to_owned()),
            other => return Err(format!("unknown outcome {other} at byte {at}")),
        })
    }

    fn answer(&mut self) -> Result<Answer, String> {
        let outcome = self.outcome()?;
        let at = self.reader.at;
        let body = match self.u8()? {
            0 => Body::None,
            1 => {
                let count = self.len()?;
                let mut grants = Vec::with_capacity(count);
                for _ in 0..count {
                    grants.push(Grant {
                        rating_group: self.narrow("rating group")?,
                        outcome: self.outcome()?,
                        granted_units: self.v()?,
                        validity_seconds: self.narrow("validity")?,
                        final_unit: self.flag()?,
                        used_units: self.v()?,
                        charged: self.d()?,
                    });
                }
                Body::Session { grants }
            }
            2 => Body::Charged(Charged {
                amount: self.d()?,
                currency: Arc::from(self.s()?),
                plan: Arc::from(self.s()?),
                plan_version: self.narrow("plan version")?,
                service: Arc::from(self.s()?),
                destination: self.o()?.map(Arc::from),
                band: Arc::from(self.s()?),
                charged_units: self.v()?,
                allowance_units: self.v()?,
                balance_after: self.d()?,
            }),
            3 => Body::Money { balance_after: self.d()? },
            other => return Err(format!("unknown answer body {other} at byte {at}")),
        };
        Ok(Answer { outcome, body, repeated: self.flag()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Reservation;

    fn d(text: &str) -> Decimal {
        text.parse().unwrap_or_default()
    }

    /// The effects of a CCR-Update, as the engine emits them.
    fn update_effects() -> Vec<Effect> {
        let session = "pgw.operator.net;1876543210;42;4f2a".to_owned();
        vec![
            Effect::Released { session: session.clone(), rating_group: 30 },
            Effect::Money { account: 4711, bucket: 0, delta: d("-0.10"), kind: MoneyKind::Charge },
            Effect::Usage {
                account: 4711,
                cycle_start_at: 1_772_000_000,
                service: Arc::from("video"),
                units: 1 << 20,
                amount: d("0.10"),
            },
            Effect::Reserved(Box::new(Reservation {
                session: session.clone(),
                rating_group: 30,
                subscription: 47110,
                account: 4711,
                started_at: 1_772_445_600,
                granted_units: 1 << 20,
                money: d("0.10"),
                bucket_units: vec![(3, 1000)],
                expires_at: 1_772_446_260,
                destination: Some("4930123456".to_owned()),
            })),
            Effect::SessionReported {
                session: session.clone(),
                at: 1_772_445_600,
                forget_at: 1_772_449_860,
                reported: vec![30],
            },
            Effect::Remembered {
                key: format!("dia;{session};1"),
                answer: Arc::new(Answer::new(
                    Outcome::Success,
                    Body::Session {
                        grants: vec![Grant {
                            rating_group: 30,
                            outcome: Outcome::Success,
                            granted_units: 1 << 20,
                            validity_seconds: 600,
                            final_unit: false,
                            used_units: 1 << 20,
                            charged: d("0.10"),
                        }],
                    },
                )),
            },
        ]
    }

    #[test]
    fn a_session_step_round_trips_in_under_a_third_of_its_archive() {
        let effects = update_effects();
        let bytes = encode(1_772_445_600, &effects).expect("covered");
        let archived = JournalEntry { decided_at: 1_772_445_600, effects: effects.clone() }.encode();
        assert!(bytes.len() * 3 < archived.len(), "{} compact bytes against {} archived", bytes.len(), archived.len());
        assert_eq!(decode(&bytes).expect("decodes"), JournalEntry { decided_at: 1_772_445_600, effects });
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_refused() {
        let bytes = encode(-5, &update_effects()).expect("covered");
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "a record cut at {len} bytes decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer).expect_err("trailing byte"), "1 bytes after the last effect");
    }

    #[test]
    fn records_it_does_not_cover_fall_back() {
        let rerated = Effect::RecordRerated(Box::new(crate::state::RecordRerated {
            key: 1,
            memo: crate::records::Memo {
                amount: d("1"),
                charged_units: 1,
                allowance_units: 0,
                origin: 0,
                service: 0,
                band: 0,
                destination: 0,
            },
        }));
        assert!(encode(0, &[rerated]).is_none());
        let balance = Effect::Remembered {
            key: "k".into(),
            answer: Arc::new(Answer::new(Outcome::Success, Body::Money { balance_after: d("-12.3456") })),
        };
        let bytes = encode(0, std::slice::from_ref(&balance)).expect("a money answer is covered");
        assert_eq!(decode(&bytes).expect("decodes").effects, vec![balance]);
    }

    #[test]
    fn bad_fields_are_refused_by_offset() {
        let bytes = encode(0, &update_effects()).expect("covered");
        // The first effect's tag is at byte 2 (decided_at 0 and the count take a byte each).
        let mut unknown = bytes.clone();
        unknown[2] = 99;
        assert_eq!(decode(&unknown).expect_err("unknown tag"), "unknown effect 99 at byte 2");
        let mut string = bytes;
        string[3] = 7;
        assert!(decode(&string).expect_err("bad string index").contains("at byte 3"));
    }
}
