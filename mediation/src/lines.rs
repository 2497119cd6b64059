//! The rated-event lines, formatted straight into a byte buffer: one CSV row and one JSON
//! line per event, millions of times a run. serde_json and `write!` were a fifth of a
//! run's CPU; this writes the same bytes (a test compares with serde_json) with no
//! formatting machinery: integers through itoa, a text copied as it is unless it needs
//! quoting or escaping, which is rare and takes the general path.

use std::fmt::Write as _;

use crate::pipeline::RatedLine;

/// Formats integers without the formatting machinery.
struct Digits(itoa::Buffer);

impl Digits {
    fn put(&mut self, out: &mut Vec<u8>, n: impl itoa::Integer) {
        out.extend_from_slice(self.0.format(n).as_bytes());
    }
}

impl RatedLine<'_> {
    /// Appends the CSV row (columns as the rated CSV's header) and its newline.
    pub(crate) fn csv_row(&self, out: &mut Vec<u8>) {
        let mut digits = Digits(itoa::Buffer::new());
        csv_text(out, &self.source);
        out.push(b',');
        digits.put(out, self.record_number);
        out.push(b',');
        csv_text(out, &self.record_id);
        out.push(b',');
        digits.put(out, self.account);
        out.push(b',');
        digits.put(out, self.subscription);
        out.push(b',');
        csv_text(out, &self.service);
        out.push(b',');
        if let Some(rg) = self.rating_group {
            digits.put(out, rg);
        }
        out.push(b',');
        csv_text(out, self.destination.as_deref().unwrap_or(""));
        out.push(b',');
        csv_text(out, self.called.as_deref().unwrap_or(""));
        out.push(b',');
        csv_text(out, &self.band);
        out.push(b',');
        digits.put(out, self.start_utc_seconds);
        out.push(b',');
        digits.put(out, self.recorded_units);
        out.push(b',');
        digits.put(out, self.units);
        out.push(b',');
        digits.put(out, self.allowance_units);
        out.push(b',');
        decimal(out, &self.amount);
        out.push(b',');
        out.extend_from_slice(self.currency.as_bytes());
        out.push(b',');
        csv_text(out, &self.plan);
        out.push(b',');
        digits.put(out, self.plan_version);
        out.push(b',');
        csv_text(out, self.record_identity.as_deref().unwrap_or(""));
        out.push(b'\n');
    }

    /// Appends the JSON line (the fields of [`RatedLine`] in order, as serde_json writes
    /// them) and its newline.
    pub(crate) fn json_line(&self, out: &mut Vec<u8>) {
        let mut digits = Digits(itoa::Buffer::new());
        out.extend_from_slice(b"{\"source\":");
        json_text(out, &self.source);
        out.extend_from_slice(b",\"record_number\":");
        digits.put(out, self.record_number);
        out.extend_from_slice(b",\"record_id\":");
        json_text(out, &self.record_id);
        out.extend_from_slice(b",\"account\":");
        digits.put(out, self.account);
        out.extend_from_slice(b",\"subscription\":");
        digits.put(out, self.subscription);
        out.extend_from_slice(b",\"service\":");
        json_text(out, &self.service);
        out.extend_from_slice(b",\"rating_group\":");
        match self.rating_group {
            Some(rg) => digits.put(out, rg),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"destination\":");
        json_option(out, self.destination.as_deref());
        out.extend_from_slice(b",\"called\":");
        json_option(out, self.called.as_deref());
        out.extend_from_slice(b",\"band\":");
        json_text(out, &self.band);
        out.extend_from_slice(b",\"start_utc_seconds\":");
        digits.put(out, self.start_utc_seconds);
        out.extend_from_slice(b",\"recorded_units\":");
        digits.put(out, self.recorded_units);
        out.extend_from_slice(b",\"units\":");
        digits.put(out, self.units);
        out.extend_from_slice(b",\"allowance_units\":");
        digits.put(out, self.allowance_units);
        out.extend_from_slice(b",\"amount\":\"");
        decimal(out, &self.amount);
        out.extend_from_slice(b"\",\"currency\":");
        json_text(out, &self.currency);
        out.extend_from_slice(b",\"plan\":");
        json_text(out, &self.plan);
        out.extend_from_slice(b",\"plan_version\":");
        digits.put(out, self.plan_version);
        out.extend_from_slice(b",\"record_identity\":");
        json_option(out, self.record_identity.as_deref());
        out.extend_from_slice(b"}\n");
    }
}

/// A decimal as its `Display` writes it (and serde writes it, as a string's content).
fn decimal(out: &mut Vec<u8>, amount: &rust_decimal::Decimal) {
    // Writing to a Vec cannot fail.
    let _ = write!(Bytes(out), "{amount}");
}

/// `fmt::Write` straight into a byte buffer, with no intermediate String.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

/// A CSV field, quoted (quotes doubled) when it holds a comma, quote or line break.
fn csv_text(out: &mut Vec<u8>, text: &str) {
    if !text.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    out.push(b'"');
    for b in text.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// A JSON string: copied between quotes when nothing in it needs escaping, otherwise
/// escaped by serde_json.
fn json_text(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing to a Vec cannot fail, and a &str always serializes.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

fn json_option(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => json_text(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use rust_decimal::Decimal;

    use super::*;

    fn line<'a>(text: &'a str, amount: Decimal, optional: bool) -> RatedLine<'a> {
        RatedLine {
            source: Cow::Borrowed(text),
            record_number: u64::MAX,
            record_id: Cow::Borrowed(text),
            account: 7,
            subscription: 0,
            service: Cow::Borrowed("voice"),
            rating_group: optional.then_some(u32::MAX),
            destination: optional.then_some(Cow::Borrowed(text)),
            called: optional.then_some(Cow::Borrowed("+4420")),
            band: Cow::Borrowed(text),
            start_utc_seconds: -1,
            recorded_units: 60,
            units: 0,
            allowance_units: 12,
            amount,
            currency: Cow::Borrowed("EUR"),
            plan: Cow::Borrowed(text),
            plan_version: 3,
            record_identity: optional.then_some(Cow::Borrowed(text)),
        }
    }

    const TEXTS: [&str; 6] = ["plain", "", "a,b", "say \"hi\"\r\n", "tab\there \\ back\u{1}\u{7f}", "ünï ☎ 📞"];

    #[test]
    fn json_lines_are_what_serde_json_writes_and_read_back() {
        for text in TEXTS {
            for (amount, optional) in [(Decimal::new(-12_345, 4), true), (Decimal::ZERO, false), (Decimal::MAX, true)] {
                let rated = line(text, amount, optional);
                let mut ours = Vec::new();
                rated.json_line(&mut ours);
                let mut theirs = serde_json::to_vec(&rated).expect("serializes");
                theirs.push(b'\n');
                assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
                let back: RatedLine<'_> = serde_json::from_slice(&ours).expect("reads back");
                assert_eq!(back, rated);
            }
        }
    }

    #[test]
    fn csv_rows_quote_what_needs_it_and_a_csv_reader_gets_the_fields_back() {
        for text in TEXTS {
            let rated = line(text, Decimal::new(5, 1), true);
            let mut row = Vec::new();
            rated.csv_row(&mut row);
            let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(row.as_slice());
            let record = reader.records().next().expect("a row").expect("well-formed");
            let expected = [
                text,
                "18446744073709551615",
                text,
                "7",
                "0",
                "voice",
                "4294967295",
                text,
                "+4420",
                text,
                "-1",
                "60",
                "0",
                "12",
                "0.5",
                "EUR",
                text,
                "3",
                text,
            ];
            assert_eq!(record.iter().collect::<Vec<_>>(), expected);
            assert!(reader.records().next().is_none(), "one row only");
        }
        let mut row = Vec::new();
        line("x", Decimal::ONE, false).csv_row(&mut row);
        assert_eq!(String::from_utf8_lossy(&row), "x,18446744073709551615,x,7,0,voice,,,,x,-1,60,0,12,1,EUR,x,3,\n");
    }

    #[test]
    fn a_rated_line_written_before_record_identities_reads_back_without_one() {
        let old = r#"{"source":"a.csv","record_number":1,"record_id":"c1","account":1,"subscription":10,"service":"voice","rating_group":null,"destination":"premium","called":"4990012345","band":"peak","start_utc_seconds":1772445600,"recorded_units":60,"units":60,"allowance_units":0,"amount":"2.49","currency":"EUR","plan":"mobile-prepaid-s","plan_version":3}"#;
        let line: RatedLine<'_> = serde_json::from_str(old).expect("an old line reads");
        assert_eq!((line.record_id.as_ref(), line.record_identity), ("c1", None));
    }
}
