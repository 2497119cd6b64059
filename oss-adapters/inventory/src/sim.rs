//! A SIM vendor's output file, read and checked naming the line and field. The accepted
//! variant of the common ".out" format is documented byte by byte in the crate's README
//! (with `tests/fixtures/vendor-output.txt`): `*` comment lines, `Name: value` header
//! lines, one `Var_Out:` line naming the columns (`ICCID/IMSI/KI/OPC/…`), then one line per
//! card with the columns' values separated by spaces or tabs.
//!
//! - ICCID: 19 or 20 digits, starting `89` (ITU-T E.118), the last a Luhn check digit;
//! - IMSI: 14 or 15 digits: MCC (3 digits, 200–799, or 001 and 999 for test networks),
//!   then MNC and MSIN; with a home network given (`plmn`, MCC and MNC), it must start
//!   with it;
//! - KI, OPC (optional columns): 32 hex digits each, kept as [`SimKey`]s;
//! - any other column (PIN1, PUK1, ADM1, …) is read and thrown away: never stored.
//!
//! A card's ICCID or IMSI twice in one file, a `Quantity` header that disagrees with the
//! card lines, more than [`MAX_SIM_CARDS`] cards or more than [`MAX_SIM_FILE_BYTES`]
//! bytes are refused.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::error::{InventoryError, Result};
use crate::secret::SimKey;

/// Bytes a vendor file may have.
pub const MAX_SIM_FILE_BYTES: usize = 256 * 1024 * 1024;
/// Cards one file may hold.
pub const MAX_SIM_CARDS: usize = 1_000_000;
/// Header lines one file may have.
pub const MAX_HEADER_LINES: usize = 100;
/// Columns the `Var_Out` line may name.
const MAX_COLUMNS: usize = 32;

/// One card of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCard {
    /// Its line in the file (from 1).
    pub line: usize,
    pub iccid: String,
    pub imsi: String,
    pub ki: Option<SimKey>,
    pub opc: Option<SimKey>,
}

/// A vendor file, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFile {
    /// The batch name (the `Batch` header).
    pub batch: String,
    /// The header lines as written, in order (names that mention a key have their value
    /// replaced by `<redacted>`).
    pub header: Vec<(String, String)>,
    /// The `Var_Out` columns, upper case.
    pub columns: Vec<String>,
    pub cards: Vec<SimCard>,
}

impl SimFile {
    /// The header as a JSON object, for the batch's record.
    pub fn header_json(&self) -> Value {
        let mut object = Map::new();
        for (name, value) in &self.header {
            object.insert(name.clone(), Value::String(value.clone()));
        }
        object.insert("Var_Out".into(), Value::String(self.columns.join("/")));
        Value::Object(object)
    }

    /// Whether the cards carry keys.
    pub fn has_keys(&self) -> bool {
        self.columns.iter().any(|column| column == "KI" || column == "OPC")
    }
}

/// Checks a home network: MCC and MNC, 5 or 6 digits.
pub fn parse_plmn(text: &str) -> Result<String> {
    if !(5..=6).contains(&text.len()) || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(InventoryError::invalid("plmn", format!("{text:?} is not an MCC and MNC (5 or 6 digits)")));
    }
    Ok(text.to_owned())
}

/// Whether the digits pass the Luhn check (the last digit is the check digit).
pub fn luhn_valid(digits: &str) -> bool {
    let Some((payload, check)) = digits.split_at_checked(digits.len().saturating_sub(1)) else { return false };
    check.parse::<u32>().ok() == Some(luhn_check_digit(payload))
}

/// The Luhn check digit of `payload` (ASCII digits).
pub fn luhn_check_digit(payload: &str) -> u32 {
    let sum: u32 = payload
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 0 {
                let doubled = digit * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                digit
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// Checks an ICCID (see the module documentation), for `line`.
pub fn check_iccid(line: usize, iccid: &str) -> Result<()> {
    if !(19..=20).contains(&iccid.len()) || !iccid.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(InventoryError::line(line, "ICCID", format!("{iccid:?} is not 19 or 20 digits")));
    }
    if !iccid.starts_with("89") {
        return Err(InventoryError::line(
            line,
            "ICCID",
            format!("{iccid} does not start with 89 (telecom, ITU-T E.118)"),
        ));
    }
    if !luhn_valid(iccid) {
        let (payload, check) = iccid.split_at(iccid.len() - 1);
        return Err(InventoryError::line(
            line,
            "ICCID",
            format!(
                "{iccid}: the check digit is {check}, the Luhn digit of {payload} is {}",
                luhn_check_digit(payload)
            ),
        ));
    }
    Ok(())
}

/// Checks an IMSI (see the module documentation), for `line`.
pub fn check_imsi(line: usize, imsi: &str, plmn: Option<&str>) -> Result<()> {
    if !(14..=15).contains(&imsi.len()) || !imsi.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(InventoryError::line(line, "IMSI", format!("{imsi:?} is not 14 or 15 digits")));
    }
    let mcc: u32 = imsi[..3].parse().unwrap_or(0);
    if !((200..=799).contains(&mcc) || mcc == 1 || mcc == 999) {
        return Err(InventoryError::line(line, "IMSI", format!("{imsi}: MCC {:03} is not a mobile country code", mcc)));
    }
    if let Some(plmn) = plmn {
        if !imsi.starts_with(plmn) {
            return Err(InventoryError::line(
                line,
                "IMSI",
                format!("{imsi} is not of the home network {plmn} (MCC {}, MNC {})", &plmn[..3], &plmn[3..]),
            ));
        }
    }
    Ok(())
}

/// Whether a header line's value may be key material, never kept: its name mentions a
/// key or a secret, or is one of the card keys' names (Ki, OP, OPc, K4).
fn secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["key", "secret", "password"].iter().any(|word| name.contains(word))
        || name.split(|c: char| !c.is_ascii_alphanumeric()).any(|word| matches!(word, "ki" | "op" | "opc" | "k4"))
}

/// Reads a vendor file (its text), checking every card; `plmn`, if given, is the home
/// network every IMSI belongs to.
pub fn parse_sim_file(text: &str, plmn: Option<&str>) -> Result<SimFile> {
    if text.len() > MAX_SIM_FILE_BYTES {
        return Err(InventoryError::invalid("file", format!("more than {MAX_SIM_FILE_BYTES} bytes")));
    }
    // A byte order mark (editors on some systems write one) is not part of the first line.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut header: Vec<(String, String)> = Vec::new();
    let mut quantity: Option<(usize, usize)> = None;
    let mut columns: Option<Vec<String>> = None;
    let mut cards = Vec::new();
    let mut seen_iccid: HashMap<String, usize> = HashMap::new();
    let mut seen_imsi: HashMap<String, usize> = HashMap::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let content = raw.strip_suffix('\r').unwrap_or(raw).trim();
        if content.is_empty() || content.starts_with('*') {
            continue;
        }
        let Some(columns) = &columns else {
            let Some((name, value)) = content.split_once(':') else {
                return Err(InventoryError::line(
                    line,
                    "header",
                    "a header line is `Name: value`; Var_Out: ends the header",
                ));
            };
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b' ')) {
                return Err(InventoryError::line(line, "header", format!("{name:?} is not a header name")));
            }
            if name.eq_ignore_ascii_case("var_out") {
                columns = Some(parse_columns(line, value)?);
                continue;
            }
            if header.len() == MAX_HEADER_LINES {
                return Err(InventoryError::line(line, "header", format!("at most {MAX_HEADER_LINES} header lines")));
            }
            if header.iter().any(|(seen, _)| seen.eq_ignore_ascii_case(name)) {
                return Err(InventoryError::line(line, name, "given twice"));
            }
            if name.eq_ignore_ascii_case("quantity") {
                let count = value
                    .parse()
                    .map_err(|_| InventoryError::line(line, name, format!("{value:?} is not a number")))?;
                quantity = Some((line, count));
            }
            let secret = secret_header(name);
            header.push((name.to_owned(), if secret { crate::secret::REDACTED.to_owned() } else { value.to_owned() }));
            continue;
        };
        if cards.len() == MAX_SIM_CARDS {
            return Err(InventoryError::line(line, "file", format!("more than {MAX_SIM_CARDS} cards")));
        }
        let values: Vec<&str> = content.split_ascii_whitespace().collect();
        if values.len() != columns.len() {
            return Err(InventoryError::line(
                line,
                "Var_Out",
                format!("{} values, the Var_Out line names {} columns", values.len(), columns.len()),
            ));
        }
        let mut card = SimCard { line, iccid: String::new(), imsi: String::new(), ki: None, opc: None };
        for (column, value) in columns.iter().zip(values) {
            match column.as_str() {
                "ICCID" => {
                    check_iccid(line, value)?;
                    card.iccid = value.to_owned();
                }
                "IMSI" => {
                    check_imsi(line, value, plmn)?;
                    card.imsi = value.to_owned();
                }
                "KI" | "OPC" => {
                    let key = SimKey::from_hex(value)
                        .ok_or_else(|| InventoryError::line(line, column.clone(), "is not 32 hex digits"))?;
                    if column == "KI" {
                        card.ki = Some(key);
                    } else {
                        card.opc = Some(key);
                    }
                }
                _ => {}
            }
        }
        if let Some(first) = seen_iccid.insert(card.iccid.clone(), line) {
            return Err(InventoryError::line(line, "ICCID", format!("{} is also on line {first}", card.iccid)));
        }
        if let Some(first) = seen_imsi.insert(card.imsi.clone(), line) {
            return Err(InventoryError::line(line, "IMSI", format!("{} is also on line {first}", card.imsi)));
        }
        cards.push(card);
    }
    let Some(columns) = columns else {
        return Err(InventoryError::invalid("Var_Out", "the file has no Var_Out line naming its columns"));
    };
    let Some(batch) = header.iter().find(|(name, _)| name.eq_ignore_ascii_case("batch")).map(|(_, v)| v.clone()) else {
        return Err(InventoryError::invalid("Batch", "the header names no Batch"));
    };
    if batch.is_empty() || batch.chars().count() > 64 {
        return Err(InventoryError::invalid("Batch", "a batch name has 1 to 64 characters"));
    }
    if cards.is_empty() {
        return Err(InventoryError::invalid("file", "the file has no card lines"));
    }
    if let Some((line, count)) = quantity {
        if count != cards.len() {
            return Err(InventoryError::line(
                line,
                "Quantity",
                format!("says {count}, the file has {} cards", cards.len()),
            ));
        }
    }
    Ok(SimFile { batch, header, columns, cards })
}

fn parse_columns(line: usize, value: &str) -> Result<Vec<String>> {
    let columns: Vec<String> = value.split('/').map(|name| name.trim().to_ascii_uppercase()).collect();
    if columns.len() > MAX_COLUMNS || columns.iter().any(|name| name.is_empty()) {
        return Err(InventoryError::line(line, "Var_Out", format!("1 to {MAX_COLUMNS} column names separated by /")));
    }
    for required in ["ICCID", "IMSI"] {
        if !columns.iter().any(|name| name == required) {
            return Err(InventoryError::line(line, "Var_Out", format!("names no {required} column")));
        }
    }
    if let Some(name) =
        columns.iter().enumerate().find(|(index, name)| columns[..*index].contains(name)).map(|(_, n)| n)
    {
        return Err(InventoryError::line(line, "Var_Out", format!("names {name} twice")));
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICCID with its Luhn digit appended.
    fn iccid(payload: &str) -> String {
        format!("{payload}{}", luhn_check_digit(payload))
    }

    #[test]
    fn luhn_as_iso_iec_7812_computes_it() {
        // The classic worked example: 7992739871 has check digit 3.
        assert_eq!(luhn_check_digit("7992739871"), 3);
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("79927398710"));
        assert!(!luhn_valid(""));
        assert!(check_iccid(4, &iccid("894410000000000001")).is_ok());
    }

    fn check(text: &str) -> std::result::Result<SimFile, (usize, String)> {
        parse_sim_file(text, Some("23415")).map_err(|error| match error {
            InventoryError::Line { line, field, .. } => (line, field),
            InventoryError::Invalid { field, .. } => (0, field),
            other => panic!("{other}"),
        })
    }

    #[test]
    fn every_bad_line_is_named_with_its_field() {
        let good = iccid("894410000000000001");
        let head = "* vendor file\nBatch: B1\nQuantity: 1\nVar_Out: ICCID/IMSI/KI/OPC/PIN1\n";
        let ki = "00112233445566778899aabbccddeeff";
        let card = |iccid: &str, imsi: &str, ki: &str| format!("{head}{iccid} {imsi} {ki} {ki} 1234\n");
        let parsed = check(&card(&good, "234150000000001", ki)).expect("a good file");
        assert_eq!((parsed.batch.as_str(), parsed.cards.len(), parsed.cards[0].line), ("B1", 1, 5));
        assert!(parsed.has_keys() && parsed.cards[0].ki.is_some());
        let bad_luhn = format!("{}{}", &good[..18], (good.as_bytes()[18] - b'0' + 1) % 10);
        let cases = [
            (card(&bad_luhn, "234150000000001", ki), (5, "ICCID")),
            (card("8944100000000001", "234150000000001", ki), (5, "ICCID")),
            (card(&iccid("994410000000000001"), "234150000000001", ki), (5, "ICCID")),
            (card(&good, "23415000000001X", ki), (5, "IMSI")),
            (card(&good, "234160000000001", ki), (5, "IMSI")),
            (card(&good, "000150000000001", ki), (5, "IMSI")),
            (card(&good, "234150000000001", "0011"), (5, "KI")),
            (format!("{head}{good} 234150000000001 {ki}\n"), (5, "Var_Out")),
            (
                head.replace("Quantity: 1", "Quantity: 2") + &format!("{good} 234150000000001 {ki} {ki} 1\n"),
                (3, "Quantity"),
            ),
            (head.replace("ICCID/", "") + "234150000000001 x y z\n", (4, "Var_Out")),
            (head.replace("Batch: B1\n", "") + &format!("{good} 234150000000001 {ki} {ki} 1\n"), (0, "Batch")),
            (format!("Batch: B1\nVar_Out: ICCID/IMSI\n{good} 234150000000001\n{good} 234150000000002\n"), (4, "ICCID")),
            (
                format!(
                    "Batch: B1\nVar_Out: ICCID/IMSI\n{good} 234150000000001\n{} 234150000000001\n",
                    iccid("894410000000000002")
                ),
                (4, "IMSI"),
            ),
            ("Batch: B1\nno colon here\n".to_owned(), (2, "header")),
            ("Batch: B1\n".to_owned(), (0, "Var_Out")),
        ];
        for (text, expected) in cases {
            let found = check(&text).err();
            assert_eq!(found.as_ref().map(|(l, f)| (*l, f.as_str())), Some(expected), "{text}");
        }
    }

    #[test]
    fn header_values_that_name_a_key_are_not_kept() {
        let text = format!(
            "Batch: B2\nTransport_Key: 0F0E0D\nVar_Out: ICCID/IMSI\n{} 234150000000009\n",
            iccid("894410000000000009")
        );
        let parsed = check(&text).expect("a good file");
        assert_eq!(parsed.header_json()["Transport_Key"], "<redacted>");
        assert!(!parsed.has_keys());
        // Regression: `Ki` and `Secret` header values were kept as written (and shown in
        // the batch and the audit trail); a byte order mark made the first line refused.
        let text = format!(
            "\u{feff}Batch: B3\nKi : 00112233445566778899AABBCCDDEEFF\nSecret: ABCD\nVar_Out: ICCID/IMSI\n{} 234150000000009\n",
            iccid("894410000000000009")
        );
        let parsed = check(&text).expect("a good file");
        assert_eq!(parsed.header_json()["Ki"], "<redacted>", "{}", parsed.header_json());
        assert_eq!(parsed.header_json()["Secret"], "<redacted>");
        assert_eq!(parsed.batch, "B3");
    }
}
