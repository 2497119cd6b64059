//! `UsageEvent`, the compact record every detector consumes, independent of the engine's
//! internals: who (a subscriber key), when (Unix milliseconds of the usage's start), which
//! way, which service, to where (a bounded E.164 number or prefix packed in a `u64`), how
//! much (units and the charged amount in integer minor units), where from (the cell), what
//! became of it (`Outcome`) and which stream reported it (`Source`).
//!
//! How the engine's records map onto it is in the crate README ("Where the events come
//! from"): a rated-event ledger entry (`tollgate_engine::ledger::LedgerEntry`, kind
//! `usage`) is an `Online` or `Mediated` event; a record a mediation reader produced
//! (`tollgate_mediation::UsageRecord`) is a `MediationInput` event.

use crate::FraudError;

/// The longest destination: an E.164 number has at most 15 digits.
pub const MAX_DESTINATION_DIGITS: usize = 15;

/// Which way the usage went, seen from the subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Made by the subscriber (a call or SMS sent, a data session).
    Originating,
    /// Received by the subscriber.
    Terminating,
}

/// What was used; `UsageEvent::units` is in this service's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// Units are seconds.
    Voice,
    /// Units are messages.
    Sms,
    /// Units are bytes.
    Data,
}

impl Service {
    /// From a plan's service name: `voice`, `sms` or `data`; another name is `None` (a
    /// server with other service names maps them itself).
    pub fn from_name(name: &str) -> Option<Service> {
        match name {
            "voice" => Some(Service::Voice),
            "sms" => Some(Service::Sms),
            "data" => Some(Service::Data),
            _ => None,
        }
    }
}

/// What became of the usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Priced above zero and charged.
    Rated,
    /// Priced, at zero (an allowance, a free number, or a tariff mistake).
    ZeroPriced,
    /// Could not be priced (no rate, unknown destination): usage given away unless fixed.
    Unrated,
    /// Refused (no credit, service denied, an unreadable record): nothing was used or the
    /// record is accounted as a reject.
    Rejected,
}

/// Which stream reported the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Charged on the online path (Diameter Gy/Ro, Nchf, gRPC): a ledger entry.
    Online,
    /// A mediated record as charged (a ledger entry) or rejected (a reject line): the
    /// output side of mediation.
    Mediated,
    /// A record as a mediation reader produced it, before charging: the input side. Only
    /// the divergence detector reads these; every other detector skips them so a mediated
    /// usage is not counted twice.
    MediationInput,
}

/// A destination number or prefix: up to [`MAX_DESTINATION_DIGITS`] decimal digits packed
/// four bits each into the top 60 bits, the digit count in the low four. Fixed size, no
/// allocation, and equal prefixes are equal values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination(u64);

impl Destination {
    /// Reads the digits of `text`; a leading `+` is allowed. Anything else than a digit, no
    /// digit at all, or more than 15 digits is an error.
    pub fn parse(text: &str) -> Result<Destination, FraudError> {
        let digits = text.strip_prefix('+').unwrap_or(text).as_bytes();
        if digits.is_empty() || digits.len() > MAX_DESTINATION_DIGITS {
            return Err(FraudError::Event {
                field: "destination",
                problem: format!("{text:?} has {} digits; 1 to {MAX_DESTINATION_DIGITS} are allowed", digits.len()),
            });
        }
        let mut packed = 0u64;
        for (i, byte) in digits.iter().enumerate() {
            if !byte.is_ascii_digit() {
                return Err(FraudError::Event {
                    field: "destination",
                    problem: format!("{text:?} holds {:?}; only digits are allowed", char::from(*byte)),
                });
            }
            packed |= u64::from(byte - b'0') << (60 - 4 * i);
        }
        Ok(Destination(packed | digits.len() as u64))
    }

    /// From a number of at most 15 digits (`491701234567`), or `None` if it has more.
    pub fn from_number(number: u64) -> Option<Destination> {
        let mut digits = [0u8; 20];
        let mut n = number;
        let mut len = 0;
        loop {
            digits[len] = (n % 10) as u8;
            n /= 10;
            len += 1;
            if n == 0 {
                break;
            }
        }
        if len > MAX_DESTINATION_DIGITS {
            return None;
        }
        let mut packed = 0u64;
        for i in 0..len {
            packed |= u64::from(digits[len - 1 - i]) << (60 - 4 * i);
        }
        Some(Destination(packed | len as u64))
    }

    /// How many digits it has (1 to 15).
    pub fn len(self) -> usize {
        (self.0 & 0xF) as usize
    }

    /// Always false: a destination has at least one digit.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Its first `len` digits (all of them if it has fewer).
    pub fn prefix(self, len: usize) -> Destination {
        let len = len.min(self.len());
        let keep = if len == 0 { 0 } else { !0u64 << (64 - 4 * len) };
        Destination((self.0 & keep) | len as u64)
    }

    /// The packed value, a stable 64-bit key for counting distinct destinations.
    pub fn key(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for i in 0..self.len() {
            let digit = (self.0 >> (60 - 4 * i)) & 0xF;
            write!(f, "{digit}")?;
        }
        Ok(())
    }
}

/// One usage as the detectors see it. `Copy`, 64 bytes, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageEvent {
    /// The subscriber: the engine's subscription id (or any stable key of the subscriber).
    pub subscriber: u64,
    /// When the usage started, Unix milliseconds. The detectors' only clock.
    pub at_ms: i64,
    pub direction: Direction,
    pub service: Service,
    /// The called (originating) or calling (terminating) number, if known.
    pub destination: Option<Destination>,
    /// Seconds, messages or bytes (see [`Service`]).
    pub units: u64,
    /// What was charged, in minor units of the account's currency (cents); 0 unless
    /// `Rated`.
    pub charged_minor: i64,
    /// The serving cell (ECGI / NCGI cell identity), if reported.
    pub cell: Option<u32>,
    pub outcome: Outcome,
    pub source: Source,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_fits_in_64_bytes() {
        assert!(std::mem::size_of::<UsageEvent>() <= 64, "{}", std::mem::size_of::<UsageEvent>());
    }

    #[test]
    fn a_destination_reads_digits_and_refuses_anything_else() {
        let d = Destination::parse("+4917012").expect("digits");
        assert_eq!(d.len(), 7);
        assert_eq!(d.to_string(), "4917012");
        assert_eq!(Destination::from_number(4917012), Some(d));
        assert!(Destination::parse("49-170").is_err());
        assert!(Destination::parse("").is_err());
        assert!(Destination::parse("+").is_err());
        assert!(Destination::parse("1234567890123456").is_err(), "16 digits");
        assert_eq!(Destination::parse("123456789012345").map(|d| d.len()).ok(), Some(15));
        assert_eq!(Destination::from_number(1_234_567_890_123_456), None);
        assert_eq!(Destination::from_number(0).map(|d| d.to_string()), Some("0".to_owned()));
    }

    #[test]
    fn a_prefix_equals_the_parsed_prefix() {
        let d = Destination::parse("882345678").expect("digits");
        assert_eq!(d.prefix(3), Destination::parse("882").expect("digits"));
        assert_ne!(d.prefix(3), Destination::parse("883").expect("digits"));
        assert_ne!(d.prefix(2), d.prefix(3), "the length is part of the value");
        assert_eq!(d.prefix(20), d);
        let full = Destination::parse("123456789012345").expect("digits");
        assert_eq!(full.prefix(15), full);
        assert_eq!(full.prefix(1).to_string(), "1");
    }
}
