//! The ledger's files: one per shard and calendar month (UTC) of posting,
//! `ledger/{YYYY-MM}/shard-{S}.ledger`, appended in journal order, in checksummed frames
//! whose hot columns (account, amount, posting time, kind) are fixed-width so that a
//! scan aggregating a period reads no more than it needs.
//!
//! # Byte format (integers little-endian)
//!
//! A 16-byte header: magic `TGLEDG\r\n` (8 bytes), format version (4, [`LEDGER_FORMAT_VERSION`]),
//! shard (4). Then frames, each:
//!
//! | size | field |
//! |---|---|
//! | 4 | payload length `N` (at most [`MAX_FRAME_BYTES`]) |
//! | 4 | CRC-32 (IEEE) of the payload |
//! | N | payload |
//!
//! A payload holds `C` entries, column by column:
//!
//! | size | field |
//! |---|---|
//! | 4 | `C` |
//! | 8 | first LSN: the journal position of the first entry's record |
//! | 8 | last LSN: of the last entry's record |
//! | 8 × C | accounts |
//! | 16 × C | amounts (rust_decimal `serialize()` bytes) |
//! | 8 × C | posting times (Unix seconds) |
//! | 1 × C | kinds (0 usage, 1 opening, 2 top-up, 3 refund, 4 adjustment, 5 rerate refund, 6 rerate charge, 7 charge, 8 grant, 9 renewal) |
//! | … | the details, entry after entry, to the end of the payload |
//!
//! A detail is `lsn - first LSN` (*v*), a presence mask (*v*, bit *i* for field *i*
//! below), then the present fields in order. *v* is a LEB128 varint, *z* a zigzag one,
//! *t* a text (length *v* and UTF-8 bytes), *n* a name: a varint index into the frame's
//! table of names, the next index meaning a new name whose length (*v*) and UTF-8 bytes
//! follow (names repeat: services, bands, zones, plans, currencies; texts do not).
//!
//! | bit | field |
//! |---|---|
//! | 0 | currency *n* |
//! | 1 | subscription *v* |
//! | 2 | identity: type (1 byte: 1 MSISDN, 2 IMSI, 3 SIP URI, 4 NAI), value *t* |
//! | 3 | service *n* |
//! | 4 | rating group *v* |
//! | 5 | called number *t* |
//! | 6 | digits of the called number the plan's prefix matched (1 byte) |
//! | 7 | destination *n* |
//! | 8 | band *n* |
//! | 9 | started at *z* |
//! | 10 | units, charged units, allowance units *v v v* |
//! | 11 | draws: count *v*, then (bucket *v*, units *v*) each |
//! | 12 | plan *n*, plan version *v*, rate line *v* |
//! | 13 | key *t* |
//! | 14 | note *t* |
//! | 15 | bucket *v* |
//! | 16 | key digest (16 bytes: a mediated record's 128-bit key digest) |
//! | 17 | validity from, until *z z* |
//!
//! A reader stops at the first frame that is torn or fails its checksum; the builder's
//! cursor (`ledger/shard-{S}.cursor`) records how long each file was when its entries
//! were last made durable, and readers read no further than that.

use rust_decimal::Decimal;

use crate::format::wire::{unzigzag, varint, zigzag, Reader};
use crate::ledger::entries::{identity_text, prefix_of, Draft, EntryKind, LedgerEntry};

pub(crate) const LEDGER_MAGIC: [u8; 8] = *b"TGLEDG\r\n";
pub const LEDGER_FORMAT_VERSION: u32 = 1;
pub(crate) const HEADER_BYTES: usize = 16;
/// Largest frame payload.
pub(crate) const MAX_FRAME_BYTES: usize = 16 << 20;
/// Entries a frame holds at most (the builder starts a new frame after them).
pub(crate) const FRAME_ENTRIES: usize = 4096;
const FIXED_BYTES_PER_ENTRY: usize = 8 + 16 + 8 + 1;
const FRAME_HEADER_BYTES: usize = 4 + 8 + 8;

pub(crate) fn header(shard: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES);
    out.extend_from_slice(&LEDGER_MAGIC);
    out.extend_from_slice(&LEDGER_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&shard.to_le_bytes());
    out
}

/// Checks a file's header; the error says what is wrong.
pub(crate) fn check_header(bytes: &[u8], shard: u32) -> Result<(), String> {
    if bytes.len() < HEADER_BYTES {
        return Err("torn ledger header".to_owned());
    }
    if bytes[..8] != LEDGER_MAGIC {
        return Err("not a ledger file (bad magic)".to_owned());
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != LEDGER_FORMAT_VERSION {
        return Err(format!("ledger format version {version}; this build reads {LEDGER_FORMAT_VERSION}"));
    }
    let owner = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if owner != shard {
        return Err(format!("ledger file of shard {owner}, not {shard}"));
    }
    Ok(())
}

/// Builds one frame from drafts, column by column (ledger entries are never
/// materialised on the way from the journal to the file).
#[derive(Debug, Default)]
pub(crate) struct FrameBuilder {
    accounts: Vec<u8>,
    amounts: Vec<u8>,
    posted: Vec<u8>,
    kinds: Vec<u8>,
    details: Vec<u8>,
    count: usize,
    first_lsn: u64,
    last_lsn: u64,
    names: std::collections::HashMap<Box<str>, u32, foldhash::fast::FixedState>,
}

impl FrameBuilder {
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn push(&mut self, d: &Draft<'_>) {
        if self.count == 0 {
            self.first_lsn = d.lsn;
        }
        self.last_lsn = d.lsn;
        self.count += 1;
        self.accounts.extend_from_slice(&d.account.to_le_bytes());
        self.amounts.extend_from_slice(&d.amount.serialize());
        self.posted.extend_from_slice(&d.posted_at.to_le_bytes());
        self.kinds.push(d.kind.code());
        let out = &mut self.details;
        varint(out, d.lsn - self.first_lsn);
        let present = [
            d.currency.is_some(),
            d.subscription.is_some(),
            d.identity.is_some(),
            d.service.is_some(),
            d.rating_group.is_some(),
            d.called.is_some(),
            d.prefix_len.is_some(),
            d.destination.is_some(),
            d.band.is_some(),
            d.started_at.is_some(),
            d.units != 0 || d.charged_units != 0 || d.allowance_units != 0,
            !d.draws.is_empty(),
            d.plan.is_some(),
            d.key.is_some(),
            d.note.is_some(),
            d.bucket.is_some(),
            d.key_digest.is_some(),
            d.validity.is_some(),
        ];
        let mask = present.iter().enumerate().fold(0u64, |mask, (bit, on)| mask | (u64::from(*on) << bit));
        varint(out, mask);
        if let Some(v) = d.currency {
            self.name(v);
        }
        if let Some(v) = d.subscription {
            varint(&mut self.details, v);
        }
        if let Some((kind, value)) = d.identity {
            self.details.push(kind);
            text(&mut self.details, value);
        }
        if let Some(v) = d.service {
            self.name(v);
        }
        if let Some(v) = d.rating_group {
            varint(&mut self.details, u64::from(v));
        }
        if let Some(v) = d.called {
            text(&mut self.details, v);
        }
        if let Some(v) = d.prefix_len {
            self.details.push(v);
        }
        if let Some(v) = d.destination {
            self.name(v);
        }
        if let Some(v) = d.band {
            self.name(v);
        }
        let out = &mut self.details;
        if let Some(v) = d.started_at {
            varint(out, zigzag(v));
        }
        if present[10] {
            varint(out, d.units);
            varint(out, d.charged_units);
            varint(out, d.allowance_units);
        }
        if !d.draws.is_empty() {
            varint(out, d.draws.len() as u64);
            for (bucket, units) in d.draws {
                varint(out, u64::from(*bucket));
                varint(out, *units);
            }
        }
        if let Some((plan, version, line)) = d.plan {
            self.name(plan);
            varint(&mut self.details, u64::from(version));
            varint(&mut self.details, u64::from(line));
        }
        let out = &mut self.details;
        if let Some(v) = d.key {
            text(out, v);
        }
        if let Some(v) = d.note {
            text(out, v);
        }
        if let Some(v) = d.bucket {
            varint(out, u64::from(v));
        }
        if let Some(v) = d.key_digest {
            out.extend_from_slice(&v.to_le_bytes());
        }
        if let Some((from, until)) = d.validity {
            varint(out, zigzag(from));
            varint(out, zigzag(until));
        }
    }

    fn name(&mut self, name: &str) {
        match self.names.get(name) {
            Some(index) => varint(&mut self.details, u64::from(*index)),
            None => {
                let index = self.names.len() as u32;
                varint(&mut self.details, u64::from(index));
                text(&mut self.details, name);
                self.names.insert(Box::from(name), index);
            }
        }
    }

    /// Appends the frame (length, checksum, payload) to `out` and starts the next.
    pub(crate) fn finish_into(&mut self, out: &mut Vec<u8>) {
        if self.count == 0 {
            return;
        }
        let len = FRAME_HEADER_BYTES
            + self.accounts.len()
            + self.amounts.len()
            + self.posted.len()
            + self.kinds.len()
            + self.details.len();
        let start = out.len();
        out.reserve(len + 8);
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(self.count as u32).to_le_bytes());
        out.extend_from_slice(&self.first_lsn.to_le_bytes());
        out.extend_from_slice(&self.last_lsn.to_le_bytes());
        for column in [&self.accounts, &self.amounts, &self.posted, &self.kinds, &self.details] {
            out.extend_from_slice(column);
        }
        let crc = crc32fast::hash(&out[start + 8..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        for column in [&mut self.accounts, &mut self.amounts, &mut self.posted, &mut self.kinds, &mut self.details] {
            column.clear();
        }
        self.names.clear();
        self.count = 0;
    }
}

fn text(out: &mut Vec<u8>, value: &str) {
    varint(out, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}

/// One frame of a file, its columns borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame<'a> {
    pub(crate) count: usize,
    pub(crate) first_lsn: u64,
    pub(crate) last_lsn: u64,
    payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// A checksummed payload's frame: its header and column sizes checked.
    pub(crate) fn parse(payload: &'a [u8]) -> Result<Frame<'a>, String> {
        if payload.len() < FRAME_HEADER_BYTES {
            return Err(format!("payload of {} bytes is shorter than a frame header", payload.len()));
        }
        let count = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
        if count == 0 || count.saturating_mul(FIXED_BYTES_PER_ENTRY) > payload.len() - FRAME_HEADER_BYTES {
            return Err(format!("entry count {count} does not fit"));
        }
        let word = |from: usize| u64::from_le_bytes(payload[from..from + 8].try_into().unwrap_or([0; 8]));
        Ok(Frame { count, first_lsn: word(4), last_lsn: word(12), payload })
    }

    pub(crate) fn account(&self, index: usize) -> u64 {
        let at = FRAME_HEADER_BYTES + index * 8;
        u64::from_le_bytes(self.payload[at..at + 8].try_into().unwrap_or([0; 8]))
    }

    pub(crate) fn amount(&self, index: usize) -> Decimal {
        let at = FRAME_HEADER_BYTES + self.count * 8 + index * 16;
        Decimal::deserialize(self.payload[at..at + 16].try_into().unwrap_or([0; 16]))
    }

    pub(crate) fn posted_at(&self, index: usize) -> i64 {
        let at = FRAME_HEADER_BYTES + self.count * 24 + index * 8;
        i64::from_le_bytes(self.payload[at..at + 8].try_into().unwrap_or([0; 8]))
    }

    pub(crate) fn kind(&self, index: usize) -> u8 {
        self.payload[FRAME_HEADER_BYTES + self.count * 32 + index]
    }

    /// Every entry, decoded; `wanted` picks which to build (the others are skipped
    /// without allocating). The error names the byte offset within the payload.
    pub(crate) fn entries(&self, mut wanted: impl FnMut(usize) -> bool) -> Result<Vec<LedgerEntry>, String> {
        let mut reader = Reader { bytes: self.payload, at: FRAME_HEADER_BYTES + self.count * FIXED_BYTES_PER_ENTRY };
        let mut names: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for index in 0..self.count {
            let kind_code = self.kind(index);
            let kind = EntryKind::of_code(kind_code)
                .ok_or_else(|| format!("unknown entry kind {kind_code} of entry {index}"))?;
            let lsn = self.first_lsn.saturating_add(reader.varint()?);
            let build = wanted(index);
            let mut entry = LedgerEntry::new(lsn, self.posted_at(index), kind, self.account(index), self.amount(index));
            read_detail(&mut reader, &mut names, &mut entry, build)?;
            if build {
                out.push(entry);
            }
        }
        if reader.at != self.payload.len() {
            return Err(format!("{} bytes after the last entry", self.payload.len() - reader.at));
        }
        Ok(out)
    }
}

fn name<'a>(reader: &mut Reader<'a>, names: &mut Vec<&'a str>) -> Result<&'a str, String> {
    let at = reader.at;
    let index = usize::try_from(reader.varint()?).unwrap_or(usize::MAX);
    if let Some(known) = names.get(index) {
        return Ok(known);
    }
    if index != names.len() {
        return Err(format!("name {index} at byte {at} is neither known nor the next"));
    }
    let name = read_text(reader)?;
    names.push(name);
    Ok(name)
}

fn read_text<'a>(reader: &mut Reader<'a>) -> Result<&'a str, String> {
    let at = reader.at;
    let len = usize::try_from(reader.varint()?).unwrap_or(usize::MAX);
    std::str::from_utf8(reader.take(len)?).map_err(|_| format!("text at byte {at} is not UTF-8"))
}

fn read_detail<'a>(
    reader: &mut Reader<'a>,
    names: &mut Vec<&'a str>,
    entry: &mut LedgerEntry,
    build: bool,
) -> Result<(), String> {
    let at = reader.at;
    let mask = reader.varint()?;
    if mask >> 18 != 0 {
        return Err(format!("unknown fields {mask:#x} at byte {at}"));
    }
    let has = |bit: u32| mask & (1 << bit) != 0;
    // Texts of an entry not built are read, not copied.
    let own = |text: &str| build.then(|| text.to_owned());
    if has(0) {
        entry.currency = own(name(reader, names)?);
    }
    if has(1) {
        entry.subscription = Some(reader.varint()?);
    }
    if has(2) {
        let kind = reader.u8()?;
        let value = read_text(reader)?;
        entry.identity = build.then(|| identity_text(kind, value));
    }
    if has(3) {
        entry.service = own(name(reader, names)?);
    }
    if has(4) {
        entry.rating_group = Some(reader.narrow("rating group")?);
    }
    if has(5) {
        entry.called = own(read_text(reader)?);
    }
    if has(6) {
        let prefix_len = reader.u8()?;
        if build {
            entry.prefix = prefix_of(entry.called.as_deref(), prefix_len);
        }
    }
    if has(7) {
        entry.destination = own(name(reader, names)?);
    }
    if has(8) {
        entry.band = own(name(reader, names)?);
    }
    if has(9) {
        entry.started_at = Some(unzigzag(reader.varint()?));
    }
    if has(10) {
        entry.units = reader.varint()?;
        entry.charged_units = reader.varint()?;
        entry.allowance_units = reader.varint()?;
    }
    if has(11) {
        let count_at = reader.at;
        let count = usize::try_from(reader.varint()?).unwrap_or(usize::MAX);
        if count > reader.bytes.len() - reader.at {
            return Err(format!("draw count {count} at byte {count_at} does not fit"));
        }
        for _ in 0..count {
            let draw = (reader.narrow("bucket")?, reader.varint()?);
            if build {
                entry.draws.push(draw);
            }
        }
    }
    if has(12) {
        entry.plan = own(name(reader, names)?);
        entry.plan_version = Some(reader.narrow("plan version")?);
        entry.rate_line = Some(reader.narrow("rate line")?);
    }
    if has(13) {
        entry.key = own(read_text(reader)?);
    }
    if has(14) {
        entry.note = own(read_text(reader)?);
    }
    if has(15) {
        entry.bucket = Some(reader.narrow("bucket")?);
    }
    if has(16) {
        let digest = reader.u128()?;
        if build && entry.key.is_none() {
            entry.key = Some(format!("{digest:032x}"));
        }
    }
    if has(17) {
        let (from, until) = (unzigzag(reader.varint()?), unzigzag(reader.varint()?));
        if build && entry.note.is_none() {
            entry.note = Some(format!("valid {from}..{until}"));
        }
    }
    Ok(())
}

/// The frames of a file's bytes (header included) up to `len`; stops at the first torn
/// or damaged frame, whose byte offset comes back with the reason.
pub(crate) struct Frames<'a> {
    bytes: &'a [u8],
    at: usize,
    pub(crate) stopped: Option<(usize, String)>,
}

impl<'a> Frames<'a> {
    pub(crate) fn new(bytes: &'a [u8], shard: u32) -> Result<Frames<'a>, String> {
        check_header(bytes, shard)?;
        Ok(Frames { bytes, at: HEADER_BYTES, stopped: None })
    }

    /// Where the next frame starts: after [`Iterator::next`] returns `None` with nothing
    /// stopped, the end of the good frames.
    pub(crate) fn offset(&self) -> usize {
        self.at
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        if self.at == self.bytes.len() || self.stopped.is_some() {
            return None;
        }
        let at = self.at;
        let stop = |frames: &mut Frames<'a>, reason: String| {
            frames.stopped = Some((at, reason));
            None
        };
        let Some(head) = self.bytes.get(at..at + 8) else {
            return stop(self, format!("torn frame header at byte {at}"));
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if !(FRAME_HEADER_BYTES..=MAX_FRAME_BYTES).contains(&len) {
            return stop(self, format!("frame length {len} at byte {at} is out of range"));
        }
        let Some(payload) = self.bytes.get(at + 8..at + 8 + len) else {
            return stop(self, format!("torn frame at byte {at}"));
        };
        if crc32fast::hash(payload) != crc {
            return stop(self, format!("checksum mismatch in the frame at byte {at}"));
        }
        match Frame::parse(payload) {
            Ok(frame) => {
                self.at = at + 8 + len;
                Some(frame)
            }
            Err(reason) => stop(self, format!("frame at byte {at}: {reason}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(lsn: u64, account: u64, amount: &str, key: &'a str) -> Draft<'a> {
        Draft {
            lsn,
            posted_at: 1_764_547_200 + lsn as i64,
            kind: EntryKind::Usage,
            account,
            amount: amount.parse().expect("d"),
            currency: Some("EUR"),
            subscription: Some(account * 10),
            identity: Some((1, "491700000001")),
            service: Some("voice"),
            rating_group: Some(10),
            called: Some("+4930123456"),
            prefix_len: Some(4),
            destination: Some("germany_fixed"),
            band: Some("peak"),
            started_at: Some(1_764_547_100),
            units: 61,
            charged_units: 120,
            allowance_units: 60,
            draws: &[(3, 60)],
            plan: Some(("basic", 2, 17)),
            key: Some(key),
            key_digest: None,
            note: None,
            validity: None,
            bucket: None,
        }
    }

    #[test]
    fn frames_round_trip_and_every_cut_or_flipped_byte_is_caught() {
        let mut top_up = sample(9, 1, "5.00", "top");
        top_up.kind = EntryKind::TopUp;
        top_up.note = Some("voucher 1");
        top_up.bucket = Some(0);
        let mut record = sample(9, 2, "-0.5", "");
        record.key = None;
        record.key_digest = Some(u128::MAX - 7);
        record.identity = None;
        let mut grant = sample(10, 2, "0", "");
        grant.kind = EntryKind::Grant;
        grant.key = None;
        grant.validity = Some((-5, i64::MAX));
        let drafts = [
            sample(5, 1, "-0.12", "ccr-1"),
            sample(5, 2, "-3.4500", "ccr-2"),
            sample(7, 1, "10", "ccr-3"),
            top_up,
            record,
            grant,
        ];
        let entries: Vec<LedgerEntry> = drafts.iter().map(Draft::entry).collect();
        assert_eq!(entries[0].prefix.as_deref(), Some("4930"));
        assert_eq!(entries[0].identity.as_deref(), Some("msisdn:491700000001"));
        assert_eq!(entries[4].key, Some(format!("{:032x}", u128::MAX - 7)));
        let mut builder = FrameBuilder::default();
        for draft in &drafts {
            builder.push(draft);
        }
        let mut file = header(3);
        builder.finish_into(&mut file);
        assert_eq!(builder.len(), 0, "the builder starts the next frame");
        let mut frames = Frames::new(&file, 3).expect("header");
        let read = frames.next().expect("one frame");
        assert_eq!((read.first_lsn, read.last_lsn, read.count), (5, 10, 6));
        assert_eq!(read.entries(|_| true).expect("decodes"), entries);
        assert_eq!(read.entries(|i| i == 1).expect("decodes"), vec![entries[1].clone()]);
        assert!(frames.next().is_none() && frames.stopped.is_none());
        assert_eq!(frames.offset(), file.len());
        for cut in HEADER_BYTES + 1..file.len() {
            let mut frames = Frames::new(&file[..cut], 3).expect("header");
            assert!(frames.next().is_none(), "a frame cut at {cut} is not read");
            assert!(frames.stopped.is_some());
        }
        for flip in HEADER_BYTES..file.len() {
            let mut damaged = file.clone();
            damaged[flip] ^= 0x40;
            let mut frames = Frames::new(&damaged, 3).expect("header");
            let read = frames.next();
            assert!(read.is_none_or(|f| f.entries(|_| true).ok() != Some(entries.clone())), "flip at {flip}");
        }
        assert!(Frames::new(&file, 4).is_err(), "another shard's file is refused");
    }
}
