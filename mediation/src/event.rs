//! The one shape every reader normalizes a record into, what makes a record itself (its
//! identity), and why a record is refused.

use tollgate_engine::{Identity, ServiceRef, SmolStr};

/// One usage event read from a file, before identification and rating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// The id the file gives the record, as the outputs show it (CSV: the mapped column;
    /// BER: a digest of the CDR and the container index).
    pub record_id: SmolStr,
    /// What makes the record itself, built by its reader with [`RecordIdentityText`]
    /// (`csv:SOURCE:ID:SUBSCRIBER`, `pgw:NODE:…:SUBSCRIBER`, …; see the mediation README).
    /// The exactly-once key is its digest (`RecordKey::of`). It always ends with the
    /// subscriber the record is charged to, so a record and its key belong to one account
    /// and one shard whatever the shard count.
    pub record_identity: String,
    pub subscriber: Identity,
    pub service: ServiceRef,
    pub rating_group: Option<u32>,
    pub destination: Option<SmolStr>,
    pub start_utc_seconds: i64,
    pub units: u64,
}

/// Builds a record identity: `KIND:FIELD:…:FIELD:SUBSCRIBER`. Each reader defines its
/// kinds and their fields, always the same number per kind. A `%` or `:` inside a field
/// is written `%25` or `%3A`, so two different lists of fields never give the same text;
/// an absent field is empty. The subscriber comes last, as the engine's identity key
/// (`msisdn:491700000001`, `imsi:…`, `sip:…`, `nai:…`: normalized, so `+4917…` and
/// `4917…` are one subscriber).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordIdentityText {
    text: String,
}

impl RecordIdentityText {
    pub fn new(kind: &str) -> RecordIdentityText {
        let mut text = String::with_capacity(64);
        text.push_str(kind);
        RecordIdentityText { text }
    }

    /// Appends a text field (`None` or empty: absent).
    pub fn text(&mut self, field: Option<&str>) -> &mut RecordIdentityText {
        self.text.push(':');
        for c in field.unwrap_or("").chars() {
            match c {
                '%' => self.text.push_str("%25"),
                ':' => self.text.push_str("%3A"),
                c => self.text.push(c),
            }
        }
        self
    }

    /// Appends a number field (`None`: absent).
    pub fn number(&mut self, field: Option<u64>) -> &mut RecordIdentityText {
        self.text.push(':');
        if let Some(n) = field {
            self.text.push_str(itoa::Buffer::new().format(n));
        }
        self
    }

    /// The identity: the fields so far, then the subscriber's identity key.
    pub fn finish(self, subscriber: &Identity) -> String {
        let mut text = self.text;
        text.push(':');
        subscriber.with_key(|key| text.push_str(key));
        text
    }
}

/// Why a record was not rated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RejectReason {
    /// The record cannot be read or misses a field.
    Malformed,
    UnknownSubscriber,
    /// Its id was charged before (in this file or an earlier one).
    Duplicate,
    RatingFailed,
    /// The prepaid balance or credit limit does not cover it.
    CreditLimitReached,
    /// Its time is outside the accepted window (too old or in the future).
    OutOfWindow,
    /// The subscription was suspended before the usage started.
    Suspended,
}

impl RejectReason {
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::UnknownSubscriber => "unknown_subscriber",
            RejectReason::Duplicate => "duplicate",
            RejectReason::RatingFailed => "rating_failed",
            RejectReason::CreditLimitReached => "credit_limit_reached",
            RejectReason::OutOfWindow => "out_of_window",
            RejectReason::Suspended => "suspended",
        }
    }
}

/// A record a reader could not turn into a [`UsageRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub reason: RejectReason,
    /// Names the field, column or byte offset.
    pub message: String,
}

impl Unreadable {
    pub fn malformed(message: impl Into<String>) -> Unreadable {
        Unreadable { reason: RejectReason::Malformed, message: message.into() }
    }
}

/// One item from a reader: a record (or why it could not be read), where it is, and
/// where the next one starts (the resume point once this one is done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// 1-based position of the record in the file.
    pub number: u64,
    /// Byte offset of the record in the file.
    pub offset: u64,
    /// Byte offset just past the record.
    pub next_offset: u64,
    /// Whether the file can be resumed at `next_offset` once this item is done. False for
    /// all but the last usage event taken from one CDR (a PGW-CDR with several rating
    /// groups): a checkpoint never falls inside a CDR.
    pub resumable_after: bool,
    /// The record as read, for the rejects file.
    pub raw: Raw,
    pub record: Result<UsageRecord, Unreadable>,
}

/// A record as read, for the rejects file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    /// The bytes of its CDR, shared by the events of one CDR, turned into bounded hex only
    /// if the record is rejected.
    Binary(std::sync::Arc<[u8]>),
    /// Nothing kept: its bytes are in the input file between [`Item::offset`] and
    /// [`Item::next_offset`], read back only if the record is rejected (a CSV line,
    /// exactly as the file has it).
    InFile,
}

impl Raw {
    /// Hex digits shown of a binary record.
    pub const MAX_HEX_BYTES: usize = 512;

    /// The record as a reject shows it; `None` when it is to be read back from the file.
    pub fn text(&self) -> Option<String> {
        match self {
            Raw::Binary(bytes) => Some(crate::readers::hex_prefix(bytes, Raw::MAX_HEX_BYTES)),
            Raw::InFile => None,
        }
    }
}

/// What every reader offers the pipeline: records in order, and a restart point.
pub trait Reader {
    /// The next item, `Ok(None)` at the end. An `Err` means the rest of the file cannot
    /// be read at all (every record up to it was returned).
    fn next_item(&mut self) -> Result<Option<Item>, crate::MediationError>;

    /// CDRs read so far from the start of the file, for a format whose file header counts
    /// them (TS 32.297): a checkpoint keeps it so a resumed reader checks that count
    /// against the whole file. `None` for other formats, or when not known.
    fn cdrs_read(&self) -> Option<u32> {
        None
    }
}
