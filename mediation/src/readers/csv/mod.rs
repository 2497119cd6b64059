//! Delimited text (CSV, TSV, …) with an operator-written column mapping
//! ([`mapping::Mapping`]). Parsing is the `csv` crate's; this reader maps columns to a
//! [`UsageRecord`], keeps byte offsets for checkpoints, and bounds line length.

pub mod mapping;

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use tollgate_engine::{Identity, ServiceRef, SmolStr};

use self::mapping::{Field, Mapping, TimeFormat};
use super::{LineBound, MAX_RECORD_BYTES};
use crate::event::{Item, Raw, Reader, RecordIdentityText, Unreadable, UsageRecord};
use crate::MediationError;

pub struct CsvReader {
    path: PathBuf,
    mapping: Mapping,
    fields: Vec<Option<Field>>,
    reader: csv::Reader<LineBound<BufReader<File>>>,
    /// Offset in the file of the reader's position 0.
    base: u64,
    number: u64,
    record: csv::ByteRecord,
}

impl std::fmt::Debug for CsvReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvReader").field("path", &self.path).field("number", &self.number).finish()
    }
}

impl CsvReader {
    /// Opens `path` and positions it at byte `offset` whose record is number `number + 1`
    /// (0, 0: the start; the header, if any, is read first either way).
    pub fn open(path: &Path, mapping: Mapping, offset: u64, number: u64) -> Result<CsvReader, MediationError> {
        let open = || File::open(path).map_err(MediationError::io(path));
        let builder = |has_headers| {
            let mut builder = csv::ReaderBuilder::new();
            builder.delimiter(mapping.delimiter).has_headers(has_headers).flexible(true);
            builder
        };
        let bad = |message: String| MediationError::Format { path: path.to_owned(), message };
        let mut header_end = 0;
        let fields = if mapping.header {
            let mut first = builder(true).from_reader(LineBound::new(BufReader::new(open()?), MAX_RECORD_BYTES));
            let header = first.byte_headers().map_err(|err| bad(format!("header: {err}")))?.clone();
            let mut probe = csv::ByteRecord::new();
            // The position after the header is where the first record starts.
            header_end = first.position().byte();
            if first.read_byte_record(&mut probe).unwrap_or(false) {
                header_end = probe.position().map_or(header_end, csv::Position::byte);
            }
            mapping.resolve(Some(&header)).map_err(bad)?
        } else {
            mapping.resolve(None).map_err(bad)?
        };
        let base = offset.max(header_end);
        let mut file = open()?;
        file.seek(SeekFrom::Start(base)).map_err(MediationError::io(path))?;
        let reader =
            builder(false).from_reader(LineBound::new(BufReader::with_capacity(1 << 16, file), MAX_RECORD_BYTES));
        Ok(CsvReader { path: path.to_owned(), mapping, fields, reader, base, number, record: csv::ByteRecord::new() })
    }

    fn field<'r>(&self, record: &'r csv::ByteRecord, index: usize) -> Result<Option<Text<'r>>, Unreadable> {
        match &self.fields[index] {
            None => Ok(None),
            Some(Field::Value(value)) => Ok(Some(Text::Owned(value.clone()))),
            Some(Field::Column(column)) => match record.get(*column) {
                None => Err(Unreadable::malformed(format!(
                    "field `{}`: column {} missing (the record has {})",
                    mapping::FIELDS[index],
                    column + 1,
                    record.len()
                ))),
                Some(bytes) => std::str::from_utf8(bytes)
                    .map(|text| Some(Text::Borrowed(text.trim())))
                    .map_err(|_| Unreadable::malformed(format!("field `{}`: not UTF-8", mapping::FIELDS[index]))),
            },
        }
    }

    fn required<'r>(&self, record: &'r csv::ByteRecord, index: usize) -> Result<Text<'r>, Unreadable> {
        match self.field(record, index)? {
            Some(text) if !text.as_str().is_empty() => Ok(text),
            _ => Err(Unreadable::malformed(format!("field `{}`: empty", mapping::FIELDS[index]))),
        }
    }

    fn decode(&self, record: &csv::ByteRecord) -> Result<UsageRecord, Unreadable> {
        let record_id = SmolStr::new(self.required(record, 0)?.as_str());
        let subscriber = self.required(record, 1)?;
        let kind = self.field(record, 2)?;
        let kind = kind.as_ref().map_or("msisdn", Text::as_str);
        let identity = match kind {
            "msisdn" | "e164" => Identity::Msisdn(subscriber.as_str().trim_start_matches('+').to_owned()),
            "imsi" => Identity::Imsi(subscriber.as_str().to_owned()),
            "sip" | "sip_uri" => Identity::SipUri(subscriber.as_str().to_owned()),
            "nai" => Identity::Nai(subscriber.as_str().to_owned()),
            other => return Err(Unreadable::malformed(format!("field `subscriber_kind`: unknown kind {other:?}"))),
        };
        if let Identity::Msisdn(digits) | Identity::Imsi(digits) = &identity {
            if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Unreadable::malformed(format!("field `subscriber`: {digits:?} is not 1–15 digits")));
            }
        }
        let service = ServiceRef::Name(SmolStr::new(self.required(record, 3)?.as_str()));
        let rating_group = match self.field(record, 4)? {
            Some(text) if !text.as_str().is_empty() => Some(
                text.as_str()
                    .parse::<u32>()
                    .map_err(|_| Unreadable::malformed(format!("field `rating_group`: {:?}", text.as_str())))?,
            ),
            _ => None,
        };
        let destination = match self.field(record, 5)? {
            Some(text) if !text.as_str().is_empty() => Some(SmolStr::new(text.as_str())),
            _ => None,
        };
        let start = self.required(record, 6)?;
        let start_utc_seconds = parse_time(&self.mapping, start.as_str())
            .ok_or_else(|| Unreadable::malformed(format!("field `start`: {:?} is not a time", start.as_str())))?;
        let units = self.required(record, 7)?;
        let raw_units: u64 = units
            .as_str()
            .parse()
            .map_err(|_| Unreadable::malformed(format!("field `units`: {:?} is not a whole number", units.as_str())))?;
        let units = raw_units.div_ceil(self.mapping.units_divisor);
        Ok(UsageRecord {
            record_identity: record_identity(&self.mapping.source, &record_id, &identity),
            record_id,
            subscriber: identity,
            service,
            rating_group,
            destination,
            start_utc_seconds,
            units,
        })
    }
}

impl Reader for CsvReader {
    fn next_item(&mut self) -> Result<Option<Item>, MediationError> {
        let mut record = std::mem::take(&mut self.record);
        let read = self.reader.read_byte_record(&mut record);
        let result = match read {
            Ok(false) => Ok(None),
            Ok(true) => {
                self.number += 1;
                let offset = self.base + record.position().map_or(0, csv::Position::byte);
                let next_offset = self.base + self.reader.position().byte();
                Ok(Some(Item {
                    number: self.number,
                    offset,
                    next_offset,
                    resumable_after: true,
                    // A reject reads the line back from the file; most records are rated.
                    raw: Raw::InFile,
                    record: self.decode(&record),
                }))
            }
            Err(err) => {
                let at = self.base + err.position().map_or(self.reader.position().byte(), csv::Position::byte);
                Err(MediationError::Format { path: self.path.clone(), message: format!("byte {at}: {err}") })
            }
        };
        self.record = record;
        result
    }
}

/// What makes a CSV record itself: `csv:SOURCE:RECORD_ID:SUBSCRIBER`. The id a file
/// gives a record is unique only within its source (a switch numbers its own calls), and
/// it may be reused for another subscriber; the subscriber ties the record to one
/// account, so its exactly-once key lives in that account's shard whatever the number
/// of shards.
pub fn record_identity(source: &str, record_id: &str, subscriber: &Identity) -> String {
    let mut identity = RecordIdentityText::new("csv");
    identity.text(Some(source)).text(Some(record_id));
    identity.finish(subscriber)
}

enum Text<'r> {
    Borrowed(&'r str),
    Owned(String),
}

impl Text<'_> {
    fn as_str(&self) -> &str {
        match self {
            Text::Borrowed(text) => text,
            Text::Owned(text) => text,
        }
    }
}

/// Reads a record time per the mapping; `None` when it is not one.
pub fn parse_time(mapping: &Mapping, text: &str) -> Option<i64> {
    match &mapping.time_format {
        TimeFormat::UnixSeconds => text.parse().ok(),
        TimeFormat::Rfc3339 => text.parse::<jiff::Timestamp>().ok().map(|t| t.as_second()),
        TimeFormat::IsoLocal => {
            let civil = iso_local(text)?;
            mapping.time_zone.to_ambiguous_timestamp(civil).compatible().ok().map(|t| t.as_second())
        }
        TimeFormat::Strftime(pattern) => {
            let parsed = jiff::fmt::strtime::parse(pattern, text).ok()?;
            if let Ok(timestamp) = parsed.to_timestamp() {
                return Some(timestamp.as_second());
            }
            let civil = parsed.to_datetime().ok()?;
            mapping.time_zone.to_ambiguous_timestamp(civil).compatible().ok().map(|t| t.as_second())
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS`, digits checked, range checked by jiff.
fn iso_local(text: &str) -> Option<jiff::civil::DateTime> {
    let b = text.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b' ' || b[10] == b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<i32> {
        b[from..to].iter().try_fold(0i32, |n, d| d.is_ascii_digit().then(|| n * 10 + i32::from(d - b'0')))
    };
    jiff::civil::DateTime::new(
        i16::try_from(number(0, 4)?).ok()?,
        i8::try_from(number(5, 7)?).ok()?,
        i8::try_from(number(8, 10)?).ok()?,
        i8::try_from(number(11, 13)?).ok()?,
        i8::try_from(number(14, 16)?).ok()?,
        i8::try_from(number(17, 19)?).ok()?,
        0,
    )
    .ok()
}
