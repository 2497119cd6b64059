//! (Feature `ledger`.) The engine's rated-event ledger as detector input:
//! `from_ledger_entry` turns one `tollgate_engine::ledger::LedgerEntry` of kind `usage`
//! into a `UsageEvent`, as the crate README's mapping table says. The ledger knows neither
//! the direction nor the cell: every entry is originating and has no cell (terminating
//! usage and cells come from mediation's records when a reader maps them). Pure.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use tollgate_engine::ledger::{EntryKind, LedgerEntry};

use crate::{Destination, Direction, Outcome, Service, Source, UsageEvent};

/// The most minor-unit digits a currency has (ISO 4217 uses 0 to 4).
pub const MAX_MINOR_DIGITS: u32 = 4;

/// The event of a usage entry, or `None` for another kind of entry, a service other than
/// `voice`, `sms` and `data` (`Service::from_name`), or an entry without a subscription.
/// `minor_digits` is the currency's (2 for EUR; clamped to [`MAX_MINOR_DIGITS`]).
///
/// A mediated record's entry has as key its 128-bit digest in 32 lowercase hex digits;
/// an entry whose key looks like one is taken as `Mediated`, any other as `Online`.
pub fn from_ledger_entry(entry: &LedgerEntry, minor_digits: u32) -> Option<UsageEvent> {
    if entry.kind != EntryKind::Usage {
        return None;
    }
    let service = Service::from_name(entry.service.as_deref()?)?;
    let subscriber = entry.subscription?;
    // The ledger's amount is what the balance moved: negative for a charge.
    let charged = (-entry.amount).max(Decimal::ZERO) * Decimal::from(10u64.pow(minor_digits.min(MAX_MINOR_DIGITS)));
    let charged_minor = charged.round().to_i64().unwrap_or(i64::MAX);
    let started_at = entry.started_at.unwrap_or(entry.posted_at);
    let mediated = entry
        .key
        .as_deref()
        .is_some_and(|key| key.len() == 32 && key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    Some(UsageEvent {
        subscriber,
        at_ms: started_at.saturating_mul(1000),
        direction: Direction::Originating,
        service,
        destination: entry.called.as_deref().and_then(|called| Destination::parse(called).ok()),
        units: entry.units,
        charged_minor,
        cell: None,
        outcome: if charged_minor > 0 { Outcome::Rated } else { Outcome::ZeroPriced },
        source: if mediated { Source::Mediated } else { Source::Online },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(amount: &str, key: &str) -> LedgerEntry {
        LedgerEntry {
            lsn: 1,
            posted_at: 1_800_000_100,
            kind: EntryKind::Usage,
            account: 7,
            amount: amount.parse().expect("a decimal"),
            currency: Some("EUR".to_owned()),
            subscription: Some(42),
            identity: Some("msisdn:491700000001".to_owned()),
            service: Some("voice".to_owned()),
            rating_group: None,
            called: Some("+88212345".to_owned()),
            prefix: Some("882".to_owned()),
            destination: Some("satellite".to_owned()),
            band: Some("peak".to_owned()),
            started_at: Some(1_800_000_000),
            units: 45,
            charged_units: 60,
            allowance_units: 0,
            draws: Vec::new(),
            plan: Some("retail".to_owned()),
            plan_version: Some(1),
            rate_line: Some(12),
            key: Some(key.to_owned()),
            note: None,
            bucket: None,
        }
    }

    #[test]
    fn a_charged_call_becomes_an_originating_rated_event_in_minor_units() {
        let e = from_ledger_entry(&usage("-1.235", "sess-1;2"), 2).expect("a usage entry");
        assert_eq!(e.subscriber, 42);
        assert_eq!(e.at_ms, 1_800_000_000_000, "the usage's start, not its posting");
        assert_eq!(e.charged_minor, 124, "1.235 EUR is 123.5 cents, rounded half to even: 124");
        assert_eq!(e.outcome, Outcome::Rated);
        assert_eq!(e.source, Source::Online);
        assert_eq!(e.units, 45);
        assert_eq!(e.destination.map(|d| d.to_string()), Some("88212345".to_owned()));
        assert_eq!((e.direction, e.service, e.cell), (Direction::Originating, Service::Voice, None));
    }

    #[test]
    fn a_free_mediated_record_is_zero_priced_and_mediated() {
        let e = from_ledger_entry(&usage("0", "0123456789abcdef0123456789abcdef"), 2).expect("a usage entry");
        assert_eq!((e.outcome, e.charged_minor, e.source), (Outcome::ZeroPriced, 0, Source::Mediated));
        let upper = from_ledger_entry(&usage("0", "0123456789ABCDEF0123456789ABCDEF"), 2).expect("usage");
        assert_eq!(upper.source, Source::Online, "the ledger writes digests in lowercase");
    }

    #[test]
    fn other_entries_and_services_are_not_events() {
        let mut top_up = usage("10", "t");
        top_up.kind = EntryKind::TopUp;
        assert!(from_ledger_entry(&top_up, 2).is_none());
        let mut mms = usage("-0.2", "k");
        mms.service = Some("mms".to_owned());
        assert!(from_ledger_entry(&mms, 2).is_none());
        let mut no_number = usage("-0.2", "k");
        no_number.called = Some("anonymous".to_owned());
        assert_eq!(from_ledger_entry(&no_number, 2).map(|e| e.destination), Some(None));
    }
}
