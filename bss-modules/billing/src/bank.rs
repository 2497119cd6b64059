//! Bank statements: the credits of an ISO 20022 `camt.053` statement (BankToCustomerStatement,
//! any version from .001.02, which banks in SEPA countries send daily), read as payments
//! to match. Namespaces and versions are not checked: the element names are the same in
//! all of them; the statements are `BkToCstmrStmt/Stmt` (a camt.054 notification is not
//! one), nothing but comments may follow the document element, and character references
//! (`&#252;`) are their characters.
//!
//! Each booked credit entry (`Ntry` with `CdtDbtInd` = `CRDT`, status `BOOK`, not a
//! reversal) gives one [`StatementCredit`] per transaction detail (`NtryDtls/TxDtls`; an
//! entry without details is one credit): its amount (the detail's own `Amt`, or the
//! entry's when the entry has one detail), currency, value date (else booking date), the
//! bank's reference (what makes an import idempotent: the detail's `Refs/AcctSvcrRef`,
//! else the entry's `AcctSvcrRef`, else `Refs/EndToEndId`, else the statement's id and
//! the entry's position) and the remittance texts (`RmtInf/Ustrd` and
//! `RmtInf/Strd/CdtrRefInf/Ref`) the payer quoted. Debits are counted, not returned. The
//! payer's name and account are not read: the store keeps no personal data it does not
//! need.
//!
//! An entry that cannot be read (no amount, an amount that is not a decimal, no date)
//! is returned as a [`StatementReject`] naming the byte offset of its `Ntry` and the
//! element; a document that is not XML, or not a statement, is an error naming the
//! offset. Input is bounded: at most [`MAX_STATEMENT_ENTRIES`] credits and
//! [`MAX_TEXT_CHARS`] characters of text per element.

use std::str::FromStr;

use jiff::civil::Date;
use quick_xml::events::Event;
use quick_xml::Reader;
use rust_decimal::Decimal;

use crate::error::{BillingError, Result};

/// The most credits one statement file may hold.
pub const MAX_STATEMENT_ENTRIES: usize = 1_000_000;
/// The most characters of an element's text that are kept.
pub(crate) const MAX_TEXT_CHARS: usize = 1024;

/// A credit to the operator's bank account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementCredit {
    /// Byte offset of its entry (`Ntry`) in the file.
    pub offset: u64,
    /// The bank's reference for it: the key an import is idempotent by.
    pub reference: String,
    pub amount: Decimal,
    pub currency: String,
    pub value_date: Date,
    /// What the payer wrote: unstructured remittance lines and creditor references.
    pub remittance: Vec<String>,
}

/// An entry that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementReject {
    pub offset: u64,
    /// The entry's `AcctSvcrRef`, empty without one.
    pub reference: String,
    pub reason: String,
}

/// What a statement held.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Statement {
    /// The statement's `Stmt/Id`s, in order.
    pub ids: Vec<String>,
    pub credits: Vec<StatementCredit>,
    pub rejects: Vec<StatementReject>,
    /// Debit entries, and entries not booked or reversed: not payments.
    pub skipped: u64,
}

/// The entry being read.
#[derive(Default)]
struct Entry {
    offset: u64,
    amount: Option<String>,
    currency: Option<String>,
    /// `CdtDbtInd` as written.
    credit: Option<String>,
    status: Option<String>,
    reversal: bool,
    booking: Option<String>,
    value: Option<String>,
    reference: Option<String>,
    details: Vec<Detail>,
}

#[derive(Default)]
struct Detail {
    amount: Option<String>,
    currency: Option<String>,
    bank_reference: Option<String>,
    end_to_end: Option<String>,
    remittance: Vec<String>,
}

/// Reads a `camt.053` statement.
pub fn read_camt053(xml: &str) -> Result<Statement> {
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut statement = Statement::default();
    let mut entry: Option<Entry> = None;
    let mut text = String::new();
    let mut currency_attr: Option<String> = None;
    let mut seen_statement = false;
    // The document element has ended: nothing but comments and white space may follow.
    let mut ended = false;
    loop {
        let offset = reader.buffer_position();
        let event = reader.read_event().map_err(|e| invalid(offset, format!("not XML: {e}")))?;
        match event {
            Event::Start(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                currency_attr = None;
                if name == "Amt" {
                    for attribute in start.attributes().flatten() {
                        if attribute.key.local_name().as_ref() == b"Ccy" {
                            currency_attr = Some(String::from_utf8_lossy(&attribute.value).into_owned());
                        }
                    }
                }
                if ended {
                    return Err(invalid(offset, "an element after the document's end".into()));
                }
                // A statement is `BkToCstmrStmt/Stmt` (a camt.054 notification's
                // `BkToCstmrDbtCdtNtfctn/Ntfctn` is not one).
                let in_statement = path.len() >= 2 && path[path.len() - 2] == "BkToCstmrStmt";
                match name.as_str() {
                    "Stmt" if parent_is(&path, "BkToCstmrStmt") => seen_statement = true,
                    "Ntry" if parent_is(&path, "Stmt") && in_statement => {
                        entry = Some(Entry { offset, ..Entry::default() })
                    }
                    "TxDtls" => {
                        if let Some(entry) = entry.as_mut() {
                            entry.details.push(Detail::default());
                        }
                    }
                    _ => {}
                }
                path.push(name);
                text.clear();
                if path.len() > 64 {
                    return Err(invalid(offset, "elements nested more than 64 deep".into()));
                }
            }
            Event::Text(chunk) => {
                let decoded = chunk.decode().map_err(|e| invalid(offset, format!("text: {e}")))?;
                if ended && !decoded.trim().is_empty() {
                    return Err(invalid(offset, "text after the document's end".into()));
                }
                push_text(&mut text, &decoded);
            }
            Event::Empty(_) if ended => return Err(invalid(offset, "an element after the document's end".into())),
            Event::GeneralRef(reference) => {
                // A character reference (`&#252;`, `&#xFC;`), which banks write for
                // what their character set lacks, is its character (a legal XML one).
                if reference.is_char_ref() {
                    let character =
                        reference.resolve_char_ref().ok().flatten().filter(|c| xml_char(*c)).ok_or_else(|| {
                            invalid(offset, format!("&{}; is not a character", String::from_utf8_lossy(&reference)))
                        })?;
                    push_text(&mut text, character.encode_utf8(&mut [0; 4]));
                    continue;
                }
                let name = reference.decode().map_err(|e| invalid(offset, format!("entity: {e}")))?;
                let resolved = match name.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    other => return Err(invalid(offset, format!("unknown entity &{other};"))),
                };
                push_text(&mut text, resolved);
            }
            Event::CData(data) => push_text(&mut text, &String::from_utf8_lossy(&data)),
            Event::End(_) => {
                let Some(name) = path.pop() else {
                    return Err(invalid(offset, "an end tag without its start".into()));
                };
                ended = path.is_empty();
                let value = text.trim().to_owned();
                text.clear();
                if name == "Id" && parent_is(&path, "Stmt") {
                    statement.ids.push(value.clone());
                }
                if name == "Ntry" {
                    if let Some(done) = entry.take() {
                        finish(done, &mut statement)?;
                    }
                    continue;
                }
                if let Some(entry) = entry.as_mut() {
                    take(entry, &path, &name, value, currency_attr.take());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_statement {
        return Err(invalid(0, "no BkToCstmrStmt/Stmt element: not a camt.053 statement".into()));
    }
    if !path.is_empty() {
        return Err(invalid(reader.buffer_position(), format!("the file ends inside <{}>", path.join("/"))));
    }
    Ok(statement)
}

/// A character XML allows in a document (XML 1.0 §2.2, `Char`).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

fn push_text(text: &mut String, more: &str) {
    let room = MAX_TEXT_CHARS.saturating_sub(text.chars().count());
    text.extend(more.chars().take(room));
}

fn parent_is(path: &[String], name: &str) -> bool {
    path.last().is_some_and(|last| last == name)
}

fn invalid(offset: u64, reason: String) -> BillingError {
    BillingError::invalid(format!("byte {offset}"), reason)
}

/// Keeps an element's text where the entry needs it. `path` is the element's ancestors.
fn take(entry: &mut Entry, path: &[String], name: &str, value: String, currency: Option<String>) {
    let parent = path.last().map(String::as_str).unwrap_or("");
    let in_detail = path.iter().any(|p| p == "TxDtls");
    if in_detail {
        let Some(detail) = entry.details.last_mut() else { return };
        match (parent, name) {
            // The detail's own amount: `TxDtls/Amt` or `TxDtls/AmtDtls/TxAmt/Amt`.
            ("TxDtls" | "TxAmt", "Amt") if detail.amount.is_none() => {
                detail.amount = Some(value);
                detail.currency = currency;
            }
            ("Refs", "AcctSvcrRef") => detail.bank_reference = Some(value),
            ("Refs", "EndToEndId") if value != "NOTPROVIDED" => detail.end_to_end = Some(value),
            ("RmtInf", "Ustrd") | ("CdtrRefInf", "Ref") if detail.remittance.len() < 16 => {
                detail.remittance.push(value)
            }
            _ => {}
        }
        return;
    }
    match (parent, name) {
        ("Ntry", "Amt") => {
            entry.amount = Some(value);
            entry.currency = currency;
        }
        ("Ntry", "CdtDbtInd") => entry.credit = Some(value),
        ("Ntry", "RvslInd") => entry.reversal = value == "true",
        // `Sts` holds the code directly up to version .07, in `Sts/Cd` from .08.
        ("Ntry", "Sts") if !value.is_empty() => entry.status = Some(value),
        ("Sts", "Cd") => entry.status = Some(value),
        ("BookgDt", "Dt") => entry.booking = Some(value),
        ("BookgDt", "DtTm") => entry.booking = Some(value.chars().take(10).collect()),
        ("ValDt", "Dt") => entry.value = Some(value),
        ("ValDt", "DtTm") => entry.value = Some(value.chars().take(10).collect()),
        ("Ntry", "AcctSvcrRef") => entry.reference = Some(value),
        _ => {}
    }
}

/// Turns a read entry into its credits, or a reject.
fn finish(entry: Entry, statement: &mut Statement) -> Result<()> {
    // A reject names the entry's reference, else its (first) transaction's: what the
    // operator looks it up by.
    let reject_reference = entry
        .reference
        .clone()
        .or_else(|| entry.details.iter().find_map(|detail| detail.bank_reference.clone()))
        .unwrap_or_default();
    let reject = |statement: &mut Statement, reason: String| {
        let reference = reject_reference.clone();
        statement.rejects.push(StatementReject { offset: entry.offset, reference, reason });
    };
    match entry.credit.as_deref() {
        Some("CRDT") => {}
        Some("DBIT") => {
            statement.skipped += 1;
            return Ok(());
        }
        Some(other) => {
            reject(statement, format!("Ntry/CdtDbtInd: {other:?} is neither CRDT nor DBIT"));
            return Ok(());
        }
        None => {
            reject(statement, "Ntry: no CdtDbtInd".into());
            return Ok(());
        }
    }
    if entry.reversal || entry.status.as_deref().is_some_and(|s| s != "BOOK") {
        statement.skipped += 1;
        return Ok(());
    }
    let Some(date) = entry.value.as_deref().or(entry.booking.as_deref()) else {
        reject(statement, "Ntry: neither ValDt nor BookgDt".into());
        return Ok(());
    };
    let Ok(value_date) = Date::from_str(date) else {
        reject(statement, format!("Ntry/ValDt: {date:?} is not a date"));
        return Ok(());
    };
    let entry_amount = match entry.amount.as_deref().map(parse_amount) {
        Some(Ok(amount)) => amount,
        Some(Err(reason)) => {
            reject(statement, format!("Ntry/Amt: {reason}"));
            return Ok(());
        }
        None => {
            reject(statement, "Ntry: no Amt".into());
            return Ok(());
        }
    };
    let Some(entry_currency) = entry.currency.clone().filter(|c| !c.is_empty()) else {
        reject(statement, "Ntry/Amt: no Ccy".into());
        return Ok(());
    };
    let position = statement.credits.len() + statement.rejects.len() + usize::try_from(statement.skipped).unwrap_or(0);
    let statement_id = statement.ids.last().cloned().unwrap_or_default();
    let details = if entry.details.is_empty() { vec![Detail::default()] } else { entry.details };
    let single = details.len() == 1;
    let mut credits = Vec::with_capacity(details.len());
    let mut sum = Decimal::ZERO;
    for (i, detail) in details.into_iter().enumerate() {
        let (amount, currency) = match detail.amount.as_deref().map(parse_amount) {
            Some(Ok(amount)) => (amount, detail.currency.unwrap_or_else(|| entry_currency.clone())),
            Some(Err(reason)) => {
                reject(statement, format!("Ntry/NtryDtls/TxDtls[{i}]/Amt: {reason}"));
                return Ok(());
            }
            None if single => (entry_amount, entry_currency.clone()),
            None => {
                reject(statement, format!("Ntry/NtryDtls/TxDtls[{i}]: no Amt in an entry of several transactions"));
                return Ok(());
            }
        };
        // Amounts of at most MAX_AMOUNT_DIGITS digits: a sum of them never overflows, but
        // an entry is refused rather than the run ended if one did.
        let Some(added) = sum.checked_add(amount) else {
            reject(statement, "Ntry: the transactions' amounts overflow".into());
            return Ok(());
        };
        sum = added;
        let reference = detail
            .bank_reference
            .or_else(|| if single { entry.reference.clone() } else { None })
            .or(detail.end_to_end)
            .unwrap_or_else(|| format!("{statement_id}#{position}.{i}"));
        credits.push(StatementCredit {
            offset: entry.offset,
            reference,
            amount,
            currency,
            value_date,
            remittance: detail.remittance,
        });
    }
    if sum != entry_amount {
        reject(statement, format!("Ntry: the transactions add up to {sum}, the entry says {entry_amount}"));
        return Ok(());
    }
    if statement.credits.len() + credits.len() > MAX_STATEMENT_ENTRIES {
        return Err(BillingError::TooMany { field: "Ntry".into(), limit: MAX_STATEMENT_ENTRIES });
    }
    statement.credits.extend(credits);
    Ok(())
}

/// Significant digits an amount of a statement may have (a trillion euros to the cent).
const MAX_AMOUNT_DIGITS: u32 = 15;

/// An `Amt` as ISO 20022 writes it: digits with at most one decimal point (no sign, no
/// exponent, no thousands separator), above zero, at most [`MAX_AMOUNT_DIGITS`]
/// significant digits, read exactly.
fn parse_amount(text: &str) -> std::result::Result<Decimal, String> {
    let plain = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().filter(|b| *b == b'.').count() <= 1
        && text.bytes().any(|b| b.is_ascii_digit());
    let amount = plain
        .then(|| Decimal::from_str_exact(text).ok())
        .flatten()
        .ok_or_else(|| format!("{text:?} is not a decimal amount (digits and a decimal point)"))?;
    if amount <= Decimal::ZERO {
        return Err(format!("{text} is not more than zero"));
    }
    let digits = crate::significant_digits(amount);
    if digits > MAX_AMOUNT_DIGITS {
        return Err(format!("{text} has more than {MAX_AMOUNT_DIGITS} significant digits"));
    }
    Ok(amount)
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    const STATEMENT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
 <BkToCstmrStmt>
  <GrpHdr><MsgId>MSG-1</MsgId><CreDtTm>2026-12-02T06:00:00</CreDtTm></GrpHdr>
  <Stmt>
   <Id>STMT-2026-12-01</Id>
   <Acct><Id><IBAN>FR7630006000011234567890189</IBAN></Id></Acct>
   <Ntry>
    <Amt Ccy="EUR">120.50</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
    <BookgDt><Dt>2026-12-01</Dt></BookgDt><ValDt><Dt>2026-12-01</Dt></ValDt>
    <AcctSvcrRef>BANK-REF-1</AcctSvcrRef>
    <NtryDtls><TxDtls>
      <Refs><EndToEndId>E2E-1</EndToEndId></Refs>
      <RltdPties><Dbtr><Nm>Jane Payer</Nm></Dbtr></RltdPties>
      <RmtInf><Ustrd>Invoice acme/INV/7 &amp; thanks</Ustrd></RmtInf>
    </TxDtls></NtryDtls>
   </Ntry>
   <Ntry>
    <Amt Ccy="EUR">30.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
    <BookgDt><Dt>2026-12-01</Dt></BookgDt>
    <NtryDtls>
     <TxDtls><Refs><AcctSvcrRef>B-2a</AcctSvcrRef></Refs><Amt Ccy="EUR">10.00</Amt>
       <RmtInf><Strd><CdtrRefInf><Ref>RF18BA42</Ref></CdtrRefInf></Strd></RmtInf></TxDtls>
     <TxDtls><Refs><AcctSvcrRef>B-2b</AcctSvcrRef></Refs><Amt Ccy="EUR">20.00</Amt></TxDtls>
    </NtryDtls>
   </Ntry>
   <Ntry>
    <Amt Ccy="EUR">99.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
    <BookgDt><Dt>2026-12-01</Dt></BookgDt>
   </Ntry>
   <Ntry>
    <Amt Ccy="EUR">12,00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
    <BookgDt><Dt>2026-12-01</Dt></BookgDt>
   </Ntry>
   <Ntry>
    <Amt Ccy="EUR">5.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>PDNG</Sts>
    <BookgDt><Dt>2026-12-01</Dt></BookgDt>
   </Ntry>
  </Stmt>
 </BkToCstmrStmt>
</Document>"#;

    #[test]
    fn booked_credits_are_read_with_their_references_and_remittance() {
        let statement = read_camt053(STATEMENT).expect("a statement");
        assert_eq!(statement.ids, ["STMT-2026-12-01"]);
        let credits: Vec<(&str, String, &str)> = statement
            .credits
            .iter()
            .map(|c| (c.reference.as_str(), c.amount.to_string(), c.currency.as_str()))
            .collect();
        assert_eq!(
            credits,
            [
                ("BANK-REF-1", "120.50".to_owned(), "EUR"),
                ("B-2a", "10.00".to_owned(), "EUR"),
                ("B-2b", "20.00".to_owned(), "EUR")
            ]
        );
        assert_eq!(statement.credits[0].remittance, ["Invoice acme/INV/7 & thanks"]);
        assert_eq!(statement.credits[0].value_date, date(2026, 12, 1));
        assert_eq!(statement.credits[1].remittance, ["RF18BA42"]);
        // The debit and the pending entry are not payments.
        assert_eq!(statement.skipped, 2);
        // "12,00" is no decimal: rejected naming its entry's offset.
        assert_eq!(statement.rejects.len(), 1);
        let offset = usize::try_from(statement.rejects[0].offset).expect("offset");
        assert!(STATEMENT[offset..].starts_with("<Ntry>"), "{}", &STATEMENT[offset..offset + 20]);
        assert!(statement.rejects[0].reason.contains("Ntry/Amt"), "{}", statement.rejects[0].reason);
    }

    /// Regression: `1e3` was read as 1000, an amount of 29 digits overflowed the import's
    /// sums (a panic), and a `CdtDbtInd` other than CRDT was skipped as a debit.
    #[test]
    fn amounts_are_plain_bounded_decimals_and_an_unknown_indicator_is_rejected() {
        for (from, to, why) in [
            ("120.50</Amt>", "1e3</Amt>", "1e3"),
            ("120.50</Amt>", "79228162514264337593543950335</Amt>", "significant digits"),
            ("120.50</Amt>", "-5</Amt>", "-5"),
            ("<CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>\n    <BookgDt><Dt>2026-12-01</Dt></BookgDt><ValDt>", "<CdtDbtInd>crdt</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>\n    <BookgDt><Dt>2026-12-01</Dt></BookgDt><ValDt>", "CdtDbtInd"),
        ] {
            let xml = STATEMENT.replacen(from, to, 1);
            assert_ne!(xml, STATEMENT, "{to}");
            let statement = read_camt053(&xml).expect("a statement");
            assert_eq!(statement.credits.len(), 2, "{to}: the first entry is not a credit");
            assert!(statement.rejects.iter().any(|r| r.reason.contains(why)), "{to}: {:?}", statement.rejects);
        }
    }

    #[test]
    fn transactions_that_do_not_add_up_to_their_entry_are_rejected() {
        let xml = STATEMENT.replace(r#"<Amt Ccy="EUR">20.00</Amt>"#, r#"<Amt Ccy="EUR">21.00</Amt>"#);
        let statement = read_camt053(&xml).expect("a statement");
        assert_eq!(statement.credits.len(), 1);
        assert!(statement.rejects.iter().any(|r| r.reason.contains("add up to 31.00")), "{:?}", statement.rejects);
        // Regression: a reject of an entry without a reference of its own had none; its
        // transaction's is what the operator looks it up by.
        let unreadable = STATEMENT.replace(r#"<Amt Ccy="EUR">30.00</Amt>"#, r#"<Amt Ccy="EUR">thirty</Amt>"#);
        let statement = read_camt053(&unreadable).expect("a statement");
        let reject = statement.rejects.iter().find(|r| r.reason.contains("thirty")).expect("the unreadable amount");
        assert_eq!(reject.reference, "B-2a");
    }

    #[test]
    fn what_is_not_a_statement_is_an_error_naming_the_offset() {
        match read_camt053("<Document><Other/></Document>") {
            Err(BillingError::Invalid { reason, .. }) => assert!(reason.contains("Stmt"), "{reason}"),
            other => panic!("{other:?}"),
        }
        match read_camt053("<Document><Stmt><Ntry></Stmt></Document>") {
            Err(BillingError::Invalid { field, .. }) => assert!(field.starts_with("byte "), "{field}"),
            other => panic!("{other:?}"),
        }
        match read_camt053("<Document><BkToCstmrStmt><Stmt><Id>x</Id>") {
            Err(BillingError::Invalid { reason, .. }) => assert!(reason.contains("ends inside"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Regression: a camt.054 notification holding `Stmt`-like entries was read as a
        // statement, and what followed the document's end was ignored.
        let notification = STATEMENT.replace("BkToCstmrStmt", "BkToCstmrDbtCdtNtfctn");
        assert!(read_camt053(&notification).is_err(), "not a camt.053 statement");
        for trailing in ["<Document><BkToCstmrStmt/></Document>", "more text", "<Ntry/>"] {
            let appended = format!("{STATEMENT}\n{trailing}");
            match read_camt053(&appended) {
                Err(BillingError::Invalid { reason, .. }) => assert!(reason.contains("document's end"), "{reason}"),
                other => panic!("{trailing}: {other:?}"),
            }
        }
        assert!(read_camt053(&format!("{STATEMENT}\n<!-- signed -->\n")).is_ok(), "a comment may follow");
    }

    /// Regression: a character reference (`&#252;` for ü, which banks write) made the
    /// whole statement unreadable ("unknown entity"): it is its character.
    #[test]
    fn character_references_are_their_characters() {
        let referenced = STATEMENT
            .replace("<Nm>Jane Payer</Nm>", "<Nm>M&#252;ller</Nm>")
            .replace("Invoice acme/INV/7 &amp; thanks", "Invoice acme&#x2F;INV&#47;7 &amp; thanks");
        let statement = read_camt053(&referenced).expect("a statement");
        assert_eq!(statement.credits[0].remittance, ["Invoice acme/INV/7 & thanks"]);
        for bad in ["&#0;", "&#xD800;", "&#x110000;", "&#xFFFE;"] {
            let broken = STATEMENT.replace("Jane Payer", &format!("Jane{bad}"));
            assert!(read_camt053(&broken).is_err(), "{bad}");
        }
    }
}
