//! The journal payloads of the bulk path: a batch of charged records, compact (kind 2,
//! written) or in the fixed layout of format 3 (kind 1, read only).
//!
//! # Compact charges payload (journal record kind 2, segment format 4)
//!
//! What the bulk path writes. Integers marked *v* are LEB128 varints (7 bits a byte, low
//! first); a *decimal* is one byte (bit 7: negative, bits 0–4: scale ≤ 28) then the
//! 96-bit magnitude as a LEB128 varint. The header is fixed: 8 bytes decided at (Unix
//! seconds, little-endian), 4 bytes number of charges `C` (little-endian). Then `C`
//! charges:
//!
//! | size | field |
//! |---|---|
//! | 1 | flags: bit 0 origin present, bit 1 destination present, bit 2 one money move (bucket 0, minus the amount) instead of a list, bit 3 unit draws present, bit 4 service name spelled out here, bit 5 detail present (journal format 8) |
//! | 16 | key digest (u128, little-endian) |
//! | v | account |
//! | decimal | amount charged |
//! | v | units charged |
//! | v | units paid by allowances |
//! | 8 | origin (little-endian), when bit 0 is set (else 0) |
//! | v | service index in the plan |
//! | v | band index in the plan |
//! | v | destination index in the plan, when bit 1 is set |
//! | v | usage cycle start minus decided at, zigzag-encoded |
//! | … | service name: when bit 4 is set, 1 byte length `L` and `L` bytes of UTF-8, which becomes the payload's next name; else *v*, the index of a name spelled out earlier in the same payload |
//! | … | unless bit 2 is set: 1 byte `M` (≤ [`crate::state::MAX_MONEY_BUCKETS`]), then `M` × (*v* bucket, decimal delta) |
//! | … | when bit 3 is set: 1 byte `D`, then `D` × (*v* bucket, *v* units) |
//! | … | when bit 5 is set, the detail the rated-event ledger itemises, below |
//!
//! The detail (a *name* is a *v* index into the payload's table of names: the next index
//! means a new name, 1 byte length and UTF-8 bytes follow; a smaller one repeats it):
//!
//! | size | field |
//! |---|---|
//! | v | subscription |
//! | v | usage start minus decided at, zigzag-encoded |
//! | v | units reported |
//! | 1 + v | rating group: byte 0 (none) or 1 and the value |
//! | 1 | digits of the called number the plan's prefix matched |
//! | v | plan line of the opening rate |
//! | name | plan id |
//! | v | plan version |
//! | name | currency |
//! | name | band |
//! | name | destination (zone), when bit 1 is set |
//! | 1 + … | identity: 0 none, or its type (1 MSISDN, 2 IMSI, 3 SIP URI, 4 NAI), 1 byte length and UTF-8 |
//! | 1 + … | called number: 1 byte length (0: none) and UTF-8 |
//!
//! The detail adds about 35 bytes to a call's charge (docs/performance.md has what it
//! costs the bulk path).
//!
//! A charge of a call takes about 40 bytes this way, against 108 in the fixed layout
//! below; at millions of records a minute the journal's bytes were a sixth of the bulk
//! path's cost (copying them into the page cache and syncing them).
//!
//! # Fixed charges payload (journal record kind 1, segment format 3; read, no longer written)
//!
//! Integers little-endian. Header: 8 bytes decided at, 4 bytes number of charges `C`.
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
//! | 1 | number of money moves `M` (≤ [`crate::state::MAX_MONEY_BUCKETS`]) |
//! | 1 | number of unit draws `D` |
//! | 1 | length of the service name `L` |
//! | 20 × M | money moves: bucket (u32), delta (16-byte decimal, negative) |
//! | 12 × D | unit draws: bucket (u32), units (u64) |
//! | L | service name (UTF-8) |

use smallvec::SmallVec;

use crate::format::wire::{decimal, unzigzag, varint, zigzag, Reader};
use crate::model::{AccountId, SubscriptionId};
use crate::records::{ChargeEffect, Memo, RecordKey, ServiceName, NO_DESTINATION};

const CHARGE_FIXED_BYTES: usize = 16 + 8 + 16 + 8 + 8 + 8 + 2 + 2 + 4 + 8 + 3;

impl ChargeEffect<'_> {
    /// The fixed layout of kind 1 records, which this build only reads (tests write it to
    /// check the reader).
    #[cfg(test)]
    fn encode_into(&self, out: &mut Vec<u8>) {
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
        out.extend_from_slice(&self.cycle_start_at.to_le_bytes());
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

impl<'a> ChargeEffect<'a> {
    /// A charge read from the journal, before its money moves and unit draws.
    fn read(key: RecordKey, account: AccountId, memo: Memo, cycle_start_at: i64, service: &'a str) -> ChargeEffect<'a> {
        ChargeEffect {
            key,
            account,
            memo,
            cycle_start_at,
            moves: SmallVec::new(),
            draws: SmallVec::new(),
            service: ServiceName::Text(service),
        }
    }
}

#[cfg(test)]
fn begin_charges(out: &mut Vec<u8>, decided_at: i64) {
    out.clear();
    out.extend_from_slice(&decided_at.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
}

#[cfg(test)]
fn finish_charges(out: &mut [u8], count: u32) {
    out[8..12].copy_from_slice(&count.to_le_bytes());
}

const ORIGIN: u8 = 1;
const DESTINATION: u8 = 1 << 1;
const ONE_MOVE: u8 = 1 << 2;
const DRAWS: u8 = 1 << 3;
const NEW_NAME: u8 = 1 << 4;
const DETAIL: u8 = 1 << 5;
/// The smallest charge: flags, key and one byte for each of the nine other fields.
const COMPACT_MIN_BYTES: usize = 1 + 16 + 9;

/// Builds one compact charges payload (journal record kind 2; layout above). Its bytes
/// always start with a header: a new writer holds an empty payload decided at 0.
#[derive(Debug)]
pub struct ChargesWriter {
    bytes: Vec<u8>,
    count: u32,
    decided_at: i64,
    /// The service names spelled out in this payload, in order.
    names: SmallVec<[std::sync::Arc<str>; 4]>,
    /// The detail's names spelled out in this payload, in order, and their indexes by
    /// where the name's bytes are (the plans' shared names: one lookup, no comparison of
    /// every name a large plan has).
    detail_names: Vec<Box<str>>,
    detail_index: std::collections::HashMap<(usize, usize), u32, foldhash::fast::FixedState>,
    /// Where a payload ended by [`ChargesWriter::end_part`] stops.
    ended: Option<usize>,
}

impl Default for ChargesWriter {
    fn default() -> ChargesWriter {
        let mut writer = ChargesWriter {
            bytes: Vec::new(),
            count: 0,
            decided_at: 0,
            names: SmallVec::new(),
            detail_names: Vec::new(),
            detail_index: std::collections::HashMap::default(),
            ended: None,
        };
        writer.begin(0);
        writer
    }
}

impl ChargesWriter {
    pub fn new() -> ChargesWriter {
        ChargesWriter::default()
    }

    /// Starts a new payload, dropping what the writer held.
    pub fn begin(&mut self, decided_at: i64) {
        self.bytes.clear();
        self.decided_at = decided_at;
        self.ended = None;
        self.open_payload();
    }

    /// Appends a payload header (count to be written when it ends) and starts counting
    /// charges and spelling names anew.
    fn open_payload(&mut self) {
        self.bytes.extend_from_slice(&self.decided_at.to_le_bytes());
        self.bytes.extend_from_slice(&0u32.to_le_bytes());
        self.count = 0;
        self.names.clear();
        self.detail_names.clear();
        self.detail_index.clear();
    }

    /// Ends the payload so far, when it holds a charge, and starts another after it:
    /// something must be journaled between the two (a bucket renewal). The ended payload
    /// is then [`ChargesWriter::take_ended`]'s.
    pub fn end_part(&mut self) {
        if self.count == 0 || self.ended.is_some() {
            return;
        }
        self.bytes[8..12].copy_from_slice(&self.count.to_le_bytes());
        self.ended = Some(self.bytes.len());
        self.open_payload();
    }

    /// The payload [`ChargesWriter::end_part`] ended, if any; the writer keeps what was
    /// written after it.
    pub fn take_ended(&mut self) -> Option<Vec<u8>> {
        let split = self.ended.take()?;
        let rest = self.bytes.split_off(split);
        Some(std::mem::replace(&mut self.bytes, rest))
    }

    /// Charges written since [`ChargesWriter::begin`].
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes of the payload so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The payload, its count written (after what [`ChargesWriter::take_ended`] took).
    pub fn finish(&mut self) -> &[u8] {
        debug_assert!(self.ended.is_none(), "take the ended payload first");
        self.bytes[8..12].copy_from_slice(&self.count.to_le_bytes());
        &self.bytes
    }

    pub fn push(&mut self, effect: &ChargeEffect<'_>, detail: Option<&ChargeDetail<'_>>) {
        let memo = &effect.memo;
        let one_move = matches!(effect.moves.as_slice(), [(0, delta)] if *delta == -memo.amount);
        let name = self.name_index(effect.service);
        let mut flags = 0;
        flags |= if memo.origin != 0 { ORIGIN } else { 0 };
        flags |= if memo.destination != NO_DESTINATION { DESTINATION } else { 0 };
        flags |= if one_move { ONE_MOVE } else { 0 };
        flags |= if effect.draws.is_empty() { 0 } else { DRAWS };
        flags |= if name.is_none() { NEW_NAME } else { 0 };
        flags |= if detail.is_some() { DETAIL } else { 0 };
        let out = &mut self.bytes;
        out.push(flags);
        out.extend_from_slice(&effect.key.0.to_le_bytes());
        varint(out, effect.account);
        decimal(out, memo.amount);
        varint(out, memo.charged_units);
        varint(out, memo.allowance_units);
        if memo.origin != 0 {
            out.extend_from_slice(&memo.origin.to_le_bytes());
        }
        varint(out, u64::from(memo.service));
        varint(out, u64::from(memo.band));
        if memo.destination != NO_DESTINATION {
            varint(out, u64::from(memo.destination));
        }
        varint(out, zigzag(effect.cycle_start_at.wrapping_sub(self.decided_at)));
        match name {
            Some(index) => varint(out, index as u64),
            None => {
                // Bounded by the tariff compiler's name limit; cut at 255 all the same.
                let text = effect.service.as_str();
                let len = (0..=text.len().min(255)).rev().find(|at| text.is_char_boundary(*at)).unwrap_or(0);
                out.push(len as u8);
                out.extend_from_slice(&text.as_bytes()[..len]);
                self.names.push(effect.service.to_shared());
            }
        }
        if !one_move {
            // At most MAX_MONEY_BUCKETS moves, by construction.
            out.push(effect.moves.len() as u8);
            for (bucket, delta) in &effect.moves {
                varint(out, u64::from(*bucket));
                decimal(out, *delta);
            }
        }
        if !effect.draws.is_empty() {
            // One draw per allowance of the plan, at most.
            out.push(effect.draws.len().min(255) as u8);
            for (bucket, units) in effect.draws.iter().take(255) {
                varint(out, u64::from(*bucket));
                varint(out, *units);
            }
        }
        if let Some(detail) = detail {
            self.push_detail(detail, memo.destination != NO_DESTINATION);
        }
        self.count += 1;
    }

    fn push_detail(&mut self, detail: &ChargeDetail<'_>, has_destination: bool) {
        let out = &mut self.bytes;
        varint(out, detail.subscription);
        varint(out, zigzag(detail.started_at.wrapping_sub(self.decided_at)));
        varint(out, detail.units);
        match detail.rating_group {
            None => out.push(0),
            Some(rating_group) => {
                out.push(1);
                varint(out, u64::from(rating_group));
            }
        }
        out.push(detail.prefix_len);
        varint(out, u64::from(detail.rate_line));
        self.detail_name(detail.plan);
        varint(&mut self.bytes, u64::from(detail.plan_version));
        self.detail_name(detail.currency);
        self.detail_name(detail.band);
        if has_destination {
            self.detail_name(detail.destination.unwrap_or(detail.band));
        }
        let out = &mut self.bytes;
        match detail.identity {
            None => out.push(0),
            Some((kind, value)) => {
                out.push(kind);
                short_text(out, value);
            }
        }
        short_text(out, detail.called.unwrap_or(""));
    }

    fn detail_name(&mut self, name: &str) {
        let at = (name.as_ptr() as usize, name.len());
        let known = self.detail_index.get(&at).copied().filter(|i| *self.detail_names[*i as usize] == *name);
        match known {
            Some(index) => varint(&mut self.bytes, u64::from(index)),
            None => {
                let index = self.detail_names.len();
                varint(&mut self.bytes, index as u64);
                short_text(&mut self.bytes, name);
                self.detail_names.push(Box::from(name));
                self.detail_index.insert(at, index as u32);
            }
        }
    }

    /// The index of `service` among the names this payload spelled out, if it did.
    fn name_index(&self, service: ServiceName<'_>) -> Option<usize> {
        self.names.iter().position(|name| match service {
            ServiceName::Shared(shared) => std::sync::Arc::ptr_eq(name, shared) || **name == **shared,
            ServiceName::Text(text) => **name == *text,
        })
    }
}

/// Writes 1 byte of length and at most 255 bytes of `text` (cut at a character boundary).
fn short_text(out: &mut Vec<u8>, text: &str) {
    let len = (0..=text.len().min(255)).rev().find(|at| text.is_char_boundary(*at)).unwrap_or(0);
    out.push(len as u8);
    out.extend_from_slice(&text.as_bytes()[..len]);
}

/// Reads what [`short_text`] wrote.
fn read_short_text<'a>(reader: &mut Reader<'a>, what: &str) -> Result<&'a str, String> {
    let len = usize::from(reader.u8()?);
    let at = reader.at;
    std::str::from_utf8(reader.take(len)?).map_err(|_| format!("{what} at byte {at} is not UTF-8"))
}

/// Reads a charge's detail (flag bit 5).
fn read_detail<'a>(
    reader: &mut Reader<'a>,
    decided_at: i64,
    has_destination: bool,
    names: &mut Vec<&'a str>,
) -> Result<ChargeDetail<'a>, String> {
    let subscription = reader.varint()?;
    let started_at = decided_at.wrapping_add(unzigzag(reader.varint()?));
    let units = reader.varint()?;
    let flag_at = reader.at;
    let rating_group = match reader.u8()? {
        0 => None,
        1 => Some(reader.narrow::<u32>("rating group")?),
        other => return Err(format!("byte {other} at byte {flag_at} is neither 0 nor 1")),
    };
    let prefix_len = reader.u8()?;
    let rate_line = reader.narrow::<u32>("rate line")?;
    let plan = read_name(reader, names)?;
    let plan_version = reader.narrow::<u32>("plan version")?;
    let currency = read_name(reader, names)?;
    let band = read_name(reader, names)?;
    let destination = if has_destination { Some(read_name(reader, names)?) } else { None };
    let kind_at = reader.at;
    let identity = match reader.u8()? {
        0 => None,
        kind @ 1..=4 => Some((kind, read_short_text(reader, "identity")?)),
        other => return Err(format!("unknown identity type {other} at byte {kind_at}")),
    };
    let called = Some(read_short_text(reader, "called number")?).filter(|called| !called.is_empty());
    Ok(ChargeDetail {
        subscription,
        started_at,
        units,
        rating_group,
        prefix_len,
        rate_line,
        plan,
        plan_version,
        currency,
        band,
        destination,
        identity,
        called,
    })
}

fn read_name<'a>(reader: &mut Reader<'a>, names: &mut Vec<&'a str>) -> Result<&'a str, String> {
    let at = reader.at;
    let index = reader.varint()?;
    let index = usize::try_from(index).unwrap_or(usize::MAX);
    if let Some(known) = names.get(index) {
        return Ok(known);
    }
    if index != names.len() {
        return Err(format!("name {index} at byte {at} is neither known nor the next"));
    }
    let name = read_short_text(reader, "name")?;
    names.push(name);
    Ok(name)
}

/// Reads a compact charges payload (kind 2); the error names the byte offset that is wrong.
pub fn decode_compact_charges(payload: &[u8]) -> Result<Charges<'_>, String> {
    let mut reader = Reader { bytes: payload, at: 0 };
    let (decided_at, count) = reader.charges_header(COMPACT_MIN_BYTES)?;
    let mut names: Vec<&str> = Vec::new();
    let mut detail_names: Vec<&str> = Vec::new();
    let mut charges = Vec::with_capacity(count);
    let mut details = Vec::new();
    for _ in 0..count {
        let flags_at = reader.at;
        let flags = reader.u8()?;
        if flags >> 6 != 0 {
            return Err(format!("unknown flags {flags:#04x} at byte {flags_at}"));
        }
        let key = RecordKey(reader.u128()?);
        let account = reader.varint()?;
        let amount = reader.compact_decimal()?;
        let charged_units = reader.varint()?;
        let allowance_units = reader.varint()?;
        let origin = if flags & ORIGIN != 0 { reader.u64()? } else { 0 };
        let service = reader.narrow::<u16>("service index")?;
        let band = reader.narrow::<u16>("band index")?;
        let destination = if flags & DESTINATION != 0 {
            let at = reader.at;
            Some(reader.narrow::<u32>("destination index")?)
                .filter(|index| *index != NO_DESTINATION)
                .ok_or_else(|| format!("destination index at byte {at} is out of range"))?
        } else {
            NO_DESTINATION
        };
        let cycle_start_at = decided_at.wrapping_add(unzigzag(reader.varint()?));
        let name = if flags & NEW_NAME != 0 {
            let len = usize::from(reader.u8()?);
            let at = reader.at;
            let text = std::str::from_utf8(reader.take(len)?)
                .map_err(|_| format!("service name at byte {at} is not UTF-8"))?;
            names.push(text);
            text
        } else {
            let at = reader.at;
            let index = reader.varint()?;
            *usize::try_from(index)
                .ok()
                .and_then(|index| names.get(index))
                .ok_or_else(|| format!("service name {index} at byte {at} was not spelled out before"))?
        };
        let memo = Memo { amount, charged_units, allowance_units, origin, service, band, destination };
        let mut effect = ChargeEffect::read(key, account, memo, cycle_start_at, name);
        if flags & ONE_MOVE != 0 {
            effect.moves.push((0, -amount));
        } else {
            for _ in 0..reader.u8()? {
                effect.moves.push((reader.narrow::<u32>("bucket")?, reader.compact_decimal()?));
            }
        }
        if flags & DRAWS != 0 {
            for _ in 0..reader.u8()? {
                effect.draws.push((reader.narrow::<u32>("bucket")?, reader.varint()?));
            }
        }
        if flags & DETAIL != 0 {
            if details.len() < charges.len() {
                details.resize(charges.len(), None);
            }
            details.push(Some(read_detail(&mut reader, decided_at, flags & DESTINATION != 0, &mut detail_names)?));
        }
        charges.push(effect);
    }
    if reader.at != payload.len() {
        return Err(format!("{} bytes after the last charge", payload.len() - reader.at));
    }
    if !details.is_empty() {
        details.resize(charges.len(), None);
    }
    Ok(Charges { decided_at, charges, details })
}

/// A decoded charges payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charges<'a> {
    pub decided_at: i64,
    pub charges: Vec<ChargeEffect<'a>>,
    /// Each charge's detail, when written (empty when none was: older records, or
    /// itemisation off).
    pub details: Vec<Option<ChargeDetail<'a>>>,
}

/// What the rated-event ledger itemises of a charge beyond what applying it needs
/// (journal format 8, flag bit 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeDetail<'a> {
    pub subscription: SubscriptionId,
    pub started_at: i64,
    /// Units reported.
    pub units: u64,
    pub rating_group: Option<u32>,
    pub prefix_len: u8,
    pub rate_line: u32,
    pub plan: &'a str,
    pub plan_version: u32,
    pub currency: &'a str,
    pub band: &'a str,
    pub destination: Option<&'a str>,
    /// The identity's type (1 MSISDN, 2 IMSI, 3 SIP URI, 4 NAI) and value.
    pub identity: Option<(u8, &'a str)>,
    pub called: Option<&'a str>,
}

/// Reads a charges payload; the error names the byte offset that is wrong.
pub fn decode_charges(payload: &[u8]) -> Result<Charges<'_>, String> {
    let mut reader = Reader { bytes: payload, at: 0 };
    let (decided_at, count) = reader.charges_header(CHARGE_FIXED_BYTES)?;
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
        let cycle_start_at = reader.u64()? as i64;
        let moves = reader.u8()?;
        let draws = reader.u8()?;
        let service_len = reader.u8()?;
        let mut effect = ChargeEffect::read(key, account, memo, cycle_start_at, "");
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
    Ok(Charges { decided_at, charges, details: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::MoneyMoves;
    use rust_decimal::Decimal;

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
                cycle_start_at: 1_772_323_200,
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
                cycle_start_at: -1,
                moves: SmallVec::new(),
                draws: SmallVec::new(),
                service: ServiceName::Text(""),
            },
        ]);
    }

    /// Writes `effects` compactly, reads them back, and refuses every truncation.
    fn check_compact(decided_at: i64, effects: &[ChargeEffect<'_>]) -> Vec<u8> {
        check_detailed(decided_at, effects, &[])
    }

    /// [`check_compact`] with the charges' details (none past the end of `details`).
    fn check_detailed(decided_at: i64, effects: &[ChargeEffect<'_>], details: &[Option<ChargeDetail<'_>>]) -> Vec<u8> {
        let mut writer = ChargesWriter::new();
        writer.begin(decided_at);
        for (index, effect) in effects.iter().enumerate() {
            writer.push(effect, details.get(index).and_then(Option::as_ref));
        }
        assert_eq!(writer.count() as usize, effects.len());
        let bytes = writer.finish().to_vec();
        let decoded = decode_compact_charges(&bytes).expect("decodes");
        assert_eq!(decoded.decided_at, decided_at);
        assert_eq!(decoded.charges, effects);
        let mut expected = details.to_vec();
        if details.iter().any(Option::is_some) {
            expected.resize(effects.len(), None);
        } else {
            expected.clear();
        }
        assert_eq!(decoded.details, expected);
        for cut in 0..bytes.len() {
            assert!(decode_compact_charges(&bytes[..cut]).is_err(), "a payload cut at {cut} must be refused");
        }
        bytes
    }

    fn call_charge<'a>(key: &str, account: u64, cents: i64, service: ServiceName<'a>) -> ChargeEffect<'a> {
        let mut moves = MoneyMoves::new();
        moves.push((0, Decimal::new(-cents, 2)));
        ChargeEffect {
            key: RecordKey::of(key),
            account,
            memo: Memo {
                amount: Decimal::new(cents, 2),
                charged_units: 60,
                allowance_units: 0,
                origin: 0,
                service: 0,
                band: 1,
                destination: 40_000,
            },
            cycle_start_at: 1_772_323_200,
            moves,
            draws: SmallVec::new(),
            service,
        }
    }

    #[test]
    fn compact_charges_round_trip_and_every_truncation_is_refused() {
        let voice: std::sync::Arc<str> = std::sync::Arc::from("voice");
        let data: std::sync::Arc<str> = std::sync::Arc::from("data");
        let mut odd = call_charge("file-1:3", u64::MAX, 0, ServiceName::Shared(&data));
        // Two money moves, unit draws, an origin, no destination, a cycle after the
        // decision, the largest amount a decimal holds and no moves at all for zero.
        odd.memo.origin = u64::MAX;
        odd.memo.destination = NO_DESTINATION;
        odd.memo.allowance_units = u64::MAX;
        odd.cycle_start_at = i64::MAX;
        odd.draws.push((u32::MAX, u64::MAX));
        odd.draws.push((0, 0));
        odd.moves.clear();
        let mut split = call_charge("file-1:4", 7, 1234, ServiceName::Shared(&voice));
        split.moves.clear();
        split.moves.push((3, Decimal::new(-1000, 2)));
        split.moves.push((0, Decimal::new(-234, 2)));
        let mut huge = call_charge("file-1:5", 9, 0, ServiceName::Text("voice"));
        huge.memo.amount = Decimal::MAX;
        huge.moves.clear();
        huge.moves.push((0, Decimal::MIN));
        huge.cycle_start_at = i64::MIN;
        let mut fine = call_charge("file-1:6", 9, 0, ServiceName::Text("voice"));
        fine.memo.amount = Decimal::new(7, 28);
        fine.moves.clear();
        fine.moves.push((0, Decimal::new(-7, 28)));
        let effects = [
            call_charge("file-1:1", 42, 125, ServiceName::Shared(&voice)),
            call_charge("file-1:2", 43, 99, ServiceName::Shared(&voice)),
            odd,
            split,
            huge,
            fine,
        ];
        let bytes = check_compact(1_772_445_600, &effects);
        // Each name is spelled out once per payload.
        let count = |name: &[u8]| bytes.windows(name.len()).filter(|w| *w == name).count();
        assert_eq!((count(b"voice"), count(b"data")), (1, 1));
        check_compact(-1, &effects[..1]);
        check_compact(0, &[]);
    }

    fn detail<'a>(subscription: u64, called: Option<&'a str>, destination: Option<&'a str>) -> ChargeDetail<'a> {
        ChargeDetail {
            subscription,
            started_at: 1_772_445_000,
            units: 61,
            rating_group: Some(10),
            prefix_len: 4,
            rate_line: 17,
            plan: "basic",
            plan_version: 3,
            currency: "EUR",
            band: "peak",
            destination,
            identity: Some((1, "491700000001")),
            called,
        }
    }

    #[test]
    fn charge_details_round_trip_and_names_are_spelled_once_per_payload() {
        let voice: std::sync::Arc<str> = std::sync::Arc::from("voice");
        let mut no_destination = call_charge("d-3", 9, 1, ServiceName::Shared(&voice));
        no_destination.memo.destination = NO_DESTINATION;
        let effects = [
            call_charge("d-1", 7, 125, ServiceName::Shared(&voice)),
            call_charge("d-2", 8, 99, ServiceName::Shared(&voice)),
            no_destination,
            call_charge("d-4", 9, 5, ServiceName::Shared(&voice)),
        ];
        let mut odd = detail(u64::MAX, None, Some("mobile"));
        odd.identity = None;
        odd.rating_group = None;
        odd.started_at = i64::MIN;
        let details = [
            Some(detail(70, Some("+4930123456"), Some("germany_fixed"))),
            Some(detail(80, Some("4930999"), Some("germany_fixed"))),
            Some(detail(90, Some("110"), None)),
            // A charge without a detail among charges with one.
            None,
        ];
        let bytes = check_detailed(1_772_445_600, &effects, &details);
        let count = |name: &[u8]| bytes.windows(name.len()).filter(|w| *w == name).count();
        assert_eq!((count(b"basic"), count(b"germany_fixed"), count(b"EUR")), (1, 1, 1));
        check_detailed(0, &effects[..1], &[Some(odd)]);
    }

    #[test]
    fn a_compact_call_charge_is_less_than_half_the_fixed_layout() {
        let voice: std::sync::Arc<str> = std::sync::Arc::from("voice");
        let effects: Vec<_> =
            (0..100).map(|n| call_charge(&format!("cdr-{n}"), 500_000 + n, 250, ServiceName::Shared(&voice))).collect();
        let compact = check_compact(1_772_445_600, &effects);
        let mut fixed = Vec::new();
        begin_charges(&mut fixed, 1_772_445_600);
        for effect in &effects {
            effect.encode_into(&mut fixed);
        }
        finish_charges(&mut fixed, effects.len() as u32);
        assert!(compact.len() * 2 < fixed.len(), "{} compact bytes, {} fixed", compact.len(), fixed.len());
    }

    #[test]
    fn an_ended_payload_stands_alone_and_the_next_spells_its_names_again() {
        let voice: std::sync::Arc<str> = std::sync::Arc::from("voice");
        let first =
            [call_charge("a", 1, 5, ServiceName::Shared(&voice)), call_charge("b", 2, 6, ServiceName::Shared(&voice))];
        let second = call_charge("c", 3, 7, ServiceName::Shared(&voice));
        let mut writer = ChargesWriter::new();
        writer.begin(100);
        writer.end_part();
        assert_eq!(writer.take_ended(), None, "nothing to end before a charge");
        for effect in &first {
            writer.push(effect, None);
        }
        writer.end_part();
        writer.push(&second, None);
        let ended = writer.take_ended().expect("ended");
        assert_eq!(decode_compact_charges(&ended).expect("first").charges, first);
        let rest = decode_compact_charges(writer.finish()).expect("second");
        assert_eq!((rest.decided_at, rest.charges), (100, vec![second]));
    }

    #[test]
    fn compact_charges_refuse_bad_fields_by_offset() {
        let voice: std::sync::Arc<str> = std::sync::Arc::from("voice");
        let mut writer = ChargesWriter::new();
        writer.begin(0);
        writer.push(&call_charge("a", 1, 5, ServiceName::Shared(&voice)), None);
        writer.push(&call_charge("b", 1, 5, ServiceName::Shared(&voice)), None);
        let good = writer.finish().to_vec();
        // The first charge's flags (after the 12-byte header): an unknown bit.
        let mut bad = good.clone();
        bad[12] |= 0x80;
        assert!(decode_compact_charges(&bad).expect_err("refused").contains("byte 12"));
        // A name index that was never spelled out: the second charge's reference is
        // its last byte.
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] = 5;
        assert!(decode_compact_charges(&bad).expect_err("refused").contains("was not spelled out"));
        // A count larger than the bytes could hold.
        let mut bad = good;
        bad[8..12].copy_from_slice(&1000u32.to_le_bytes());
        assert!(decode_compact_charges(&bad).expect_err("refused").contains("does not fit"));
    }
}
