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
//! *s* a string: a varint index into the frame's table of strings, the next index
//! meaning a new string whose length (*v*) and UTF-8 bytes follow.
//!
//! | bit | field |
//! |---|---|
//! | 0 | currency *s* |
//! | 1 | subscription *v* |
//! | 2 | identity *s* |
//! | 3 | service *s* |
//! | 4 | rating group *v* |
//! | 5 | called number *s* |
//! | 6 | prefix matched *s* |
//! | 7 | destination *s* |
//! | 8 | band *s* |
//! | 9 | started at *z* |
//! | 10 | units, charged units, allowance units *v v v* |
//! | 11 | draws: count *v*, then (bucket *v*, units *v*) each |
//! | 12 | plan *s*, plan version *v*, rate line *v* |
//! | 13 | key *s* |
//! | 14 | note *s* |
//! | 15 | bucket *v* |
//!
//! A reader stops at the first frame that is torn or fails its checksum; the builder's
//! cursor (`ledger/shard-{S}.cursor`) records how long each file was when its entries
//! were last made durable, and readers read no further than that.

use rust_decimal::Decimal;

use crate::format::wire::{unzigzag, varint, zigzag, Reader};
use crate::ledger::entries::{EntryKind, LedgerEntry};

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

/// Encodes `entries` (at least one, in LSN order) as one frame, header included.
pub(crate) fn encode_frame(entries: &[LedgerEntry]) -> Vec<u8> {
    let count = entries.len();
    let first = entries.first().map_or(0, |e| e.lsn);
    let last = entries.last().map_or(0, |e| e.lsn);
    let mut payload = Vec::with_capacity(FRAME_HEADER_BYTES + count * (FIXED_BYTES_PER_ENTRY + 24));
    payload.extend_from_slice(&(count as u32).to_le_bytes());
    payload.extend_from_slice(&first.to_le_bytes());
    payload.extend_from_slice(&last.to_le_bytes());
    for e in entries {
        payload.extend_from_slice(&e.account.to_le_bytes());
    }
    for e in entries {
        payload.extend_from_slice(&e.amount.serialize());
    }
    for e in entries {
        payload.extend_from_slice(&e.posted_at.to_le_bytes());
    }
    for e in entries {
        payload.push(e.kind.code());
    }
    let mut details = DetailWriter { out: payload, strings: Vec::new() };
    for e in entries {
        details.entry(e, first);
    }
    let payload = details.out;
    let mut frame = Vec::with_capacity(payload.len() + 8);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
}

struct DetailWriter<'e> {
    out: Vec<u8>,
    strings: Vec<&'e str>,
}

impl<'e> DetailWriter<'e> {
    fn s(&mut self, text: &'e str) {
        if let Some(index) = self.strings.iter().rposition(|known| *known == text) {
            varint(&mut self.out, index as u64);
            return;
        }
        varint(&mut self.out, self.strings.len() as u64);
        varint(&mut self.out, text.len() as u64);
        self.out.extend_from_slice(text.as_bytes());
        self.strings.push(text);
    }

    fn entry(&mut self, e: &'e LedgerEntry, first_lsn: u64) {
        varint(&mut self.out, e.lsn - first_lsn);
        let present = [
            e.currency.is_some(),
            e.subscription.is_some(),
            e.identity.is_some(),
            e.service.is_some(),
            e.rating_group.is_some(),
            e.called.is_some(),
            e.prefix.is_some(),
            e.destination.is_some(),
            e.band.is_some(),
            e.started_at.is_some(),
            e.units != 0 || e.charged_units != 0 || e.allowance_units != 0,
            !e.draws.is_empty(),
            e.plan.is_some(),
            e.key.is_some(),
            e.note.is_some(),
            e.bucket.is_some(),
        ];
        let mask = present.iter().enumerate().fold(0u64, |mask, (bit, on)| mask | (u64::from(*on) << bit));
        varint(&mut self.out, mask);
        if let Some(v) = &e.currency {
            self.s(v);
        }
        if let Some(v) = e.subscription {
            varint(&mut self.out, v);
        }
        if let Some(v) = &e.identity {
            self.s(v);
        }
        if let Some(v) = &e.service {
            self.s(v);
        }
        if let Some(v) = e.rating_group {
            varint(&mut self.out, u64::from(v));
        }
        if let Some(v) = &e.called {
            self.s(v);
        }
        if let Some(v) = &e.prefix {
            self.s(v);
        }
        if let Some(v) = &e.destination {
            self.s(v);
        }
        if let Some(v) = &e.band {
            self.s(v);
        }
        if let Some(v) = e.started_at {
            varint(&mut self.out, zigzag(v));
        }
        if present[10] {
            varint(&mut self.out, e.units);
            varint(&mut self.out, e.charged_units);
            varint(&mut self.out, e.allowance_units);
        }
        if !e.draws.is_empty() {
            varint(&mut self.out, e.draws.len() as u64);
            for (bucket, units) in &e.draws {
                varint(&mut self.out, u64::from(*bucket));
                varint(&mut self.out, *units);
            }
        }
        if let Some(v) = &e.plan {
            self.s(v);
            varint(&mut self.out, u64::from(e.plan_version.unwrap_or(0)));
            varint(&mut self.out, u64::from(e.rate_line.unwrap_or(0)));
        }
        if let Some(v) = &e.key {
            self.s(v);
        }
        if let Some(v) = &e.note {
            self.s(v);
        }
        if let Some(v) = e.bucket {
            varint(&mut self.out, u64::from(v));
        }
    }
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
        let mut strings: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for index in 0..self.count {
            let kind_code = self.kind(index);
            let kind = EntryKind::of_code(kind_code)
                .ok_or_else(|| format!("unknown entry kind {kind_code} of entry {index}"))?;
            let lsn = self.first_lsn.saturating_add(reader.varint()?);
            let build = wanted(index);
            let mut entry = LedgerEntry::new(lsn, self.posted_at(index), kind, self.account(index), self.amount(index));
            read_detail(&mut reader, &mut strings, &mut entry, build)?;
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

fn s<'a>(reader: &mut Reader<'a>, strings: &mut Vec<&'a str>) -> Result<&'a str, String> {
    let at = reader.at;
    let index = usize::try_from(reader.varint()?).unwrap_or(usize::MAX);
    if let Some(known) = strings.get(index) {
        return Ok(known);
    }
    if index != strings.len() {
        return Err(format!("string {index} at byte {at} is neither known nor the next"));
    }
    let len = usize::try_from(reader.varint()?).unwrap_or(usize::MAX);
    let text = std::str::from_utf8(reader.take(len)?).map_err(|_| format!("string at byte {at} is not UTF-8"))?;
    strings.push(text);
    Ok(text)
}

fn read_detail<'a>(
    reader: &mut Reader<'a>,
    strings: &mut Vec<&'a str>,
    entry: &mut LedgerEntry,
    build: bool,
) -> Result<(), String> {
    let at = reader.at;
    let mask = reader.varint()?;
    if mask >> 16 != 0 {
        return Err(format!("unknown fields {mask:#x} at byte {at}"));
    }
    let has = |bit: u32| mask & (1 << bit) != 0;
    // Strings of an entry not built are read (they may join the table), not copied.
    let mut text = |reader: &mut Reader<'a>| s(reader, strings).map(|t| build.then(|| t.to_owned()));
    if has(0) {
        entry.currency = text(reader)?;
    }
    if has(1) {
        entry.subscription = Some(reader.varint()?);
    }
    if has(2) {
        entry.identity = text(reader)?;
    }
    if has(3) {
        entry.service = text(reader)?;
    }
    if has(4) {
        entry.rating_group = Some(reader.narrow("rating group")?);
    }
    if has(5) {
        entry.called = text(reader)?;
    }
    if has(6) {
        entry.prefix = text(reader)?;
    }
    if has(7) {
        entry.destination = text(reader)?;
    }
    if has(8) {
        entry.band = text(reader)?;
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
        entry.plan = text(reader)?;
        entry.plan_version = Some(reader.narrow("plan version")?);
        entry.rate_line = Some(reader.narrow("rate line")?);
    }
    if has(13) {
        entry.key = text(reader)?;
    }
    if has(14) {
        entry.note = text(reader)?;
    }
    if has(15) {
        entry.bucket = Some(reader.narrow("bucket")?);
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

    fn sample(lsn: u64, account: u64, amount: &str) -> LedgerEntry {
        let mut e =
            LedgerEntry::new(lsn, 1_764_547_200 + lsn as i64, EntryKind::Usage, account, amount.parse().expect("d"));
        e.currency = Some("EUR".into());
        e.subscription = Some(account * 10);
        e.identity = Some("msisdn:491700000001".into());
        e.service = Some("voice".into());
        e.rating_group = Some(10);
        e.called = Some("4930123456".into());
        e.prefix = Some("4930".into());
        e.destination = Some("germany_fixed".into());
        e.band = Some("peak".into());
        e.started_at = Some(1_764_547_100);
        e.units = 61;
        e.charged_units = 120;
        e.allowance_units = 60;
        e.draws = vec![(3, 60)];
        e.plan = Some("basic".into());
        e.plan_version = Some(2);
        e.rate_line = Some(17);
        e.key = Some(format!("ccr-{lsn}"));
        e
    }

    #[test]
    fn frames_round_trip_and_every_cut_or_flipped_byte_is_caught() {
        let mut entries = vec![sample(5, 1, "-0.12"), sample(5, 2, "-3.4500"), sample(7, 1, "10")];
        let mut top_up = LedgerEntry::new(9, 1_764_547_300, EntryKind::TopUp, 1, "5.00".parse().expect("d"));
        top_up.note = Some("voucher 1".into());
        top_up.bucket = Some(0);
        entries.push(top_up);
        let mut file = header(3);
        let frame = encode_frame(&entries);
        file.extend_from_slice(&frame);
        let mut frames = Frames::new(&file, 3).expect("header");
        let read = frames.next().expect("one frame");
        assert_eq!((read.first_lsn, read.last_lsn, read.count), (5, 9, 4));
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
