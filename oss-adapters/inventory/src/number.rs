//! MSISDNs, number ranges and golden numbers, checked naming the field.
//!
//! - An MSISDN is an international E.164 number: [`MIN_MSISDN_DIGITS`] to
//!   [`MAX_MSISDN_DIGITS`] digits, no leading zero (a leading `+` is dropped), so its
//!   digits and its value as an integer say the same and ranges compare as integers.
//! - A range is `first..last` or a prefix with start and end suffixes of one length
//!   (`4477009` + `00000`..`09999`); both ends have the same number of digits and it holds
//!   at most [`MAX_RANGE_NUMBERS`] numbers.
//! - A golden rule is `PATTERN=CUR:AMOUNT`. A pattern of digits alone names one number; `?`
//!   is any digit; a letter `A`–`Z` is a digit variable (one letter, one digit; two
//!   letters, two different digits); a leading `*` lets the pattern match the end of the
//!   number (`*0000`, `*AAAA`, `*ABAB`, `*1234`), otherwise it matches the whole number.
//!   A number named by an explicit rule takes that rule's price; otherwise the first
//!   matching pattern's. Golden numbers are never the next free number: they are reserved
//!   by naming them, and carry their one-time price.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::error::{InventoryError, Result};

/// Digits an MSISDN has at least.
pub const MIN_MSISDN_DIGITS: usize = 7;
/// Digits an MSISDN has at most (E.164).
pub const MAX_MSISDN_DIGITS: usize = 15;
/// Numbers one range holds at most.
pub const MAX_RANGE_NUMBERS: u64 = 10_000_000;
/// Golden patterns (rules with a wildcard) one range load may have.
pub const MAX_GOLDEN_PATTERNS: usize = 64;
/// Golden rules one range load may have in all (explicit numbers and patterns).
pub const MAX_GOLDEN_RULES: usize = 100_000;
/// Golden numbers one range may have.
pub const MAX_GOLDEN_NUMBERS: usize = 1_000_000;
/// Significant digits a price may have (so its JSON number reads back exactly).
pub const MAX_PRICE_DIGITS: u32 = 15;
/// Decimal places a price may have.
pub const MAX_PRICE_SCALE: u32 = 4;

/// Exact money: an amount in a currency (ISO 4217).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub amount: Decimal,
    pub currency: String,
}

impl Money {
    /// A positive amount in `currency`, checked for `field`.
    pub fn new(field: &str, amount: Decimal, currency: &str) -> Result<Money> {
        if currency.len() != 3 || !currency.bytes().all(|byte| byte.is_ascii_uppercase()) {
            return Err(InventoryError::invalid(
                format!("{field}.unit"),
                format!("{currency:?} is not an ISO 4217 code such as EUR"),
            ));
        }
        let amount = amount.normalize();
        if amount <= Decimal::ZERO {
            return Err(InventoryError::invalid(format!("{field}.value"), "a price is more than zero"));
        }
        let digits = amount.mantissa().unsigned_abs().checked_ilog10().map_or(1, |log| log + 1);
        if digits > MAX_PRICE_DIGITS || amount.scale() > MAX_PRICE_SCALE {
            return Err(InventoryError::invalid(
                format!("{field}.value"),
                format!("at most {MAX_PRICE_DIGITS} digits and {MAX_PRICE_SCALE} decimal places"),
            ));
        }
        Ok(Money { amount, currency: currency.to_owned() })
    }

    /// `{unit, value}` as TMF money: the value a JSON number or a decimal string.
    pub fn from_json(field: &str, value: &Value) -> Result<Money> {
        let Value::Object(money) = value else {
            return Err(InventoryError::invalid(field, "must be {unit, value}"));
        };
        if let Some(key) = money.keys().find(|key| *key != "unit" && *key != "value") {
            return Err(InventoryError::invalid(format!("{field}.{key}"), "is not a field of money"));
        }
        let Some(Value::String(unit)) = money.get("unit") else {
            return Err(InventoryError::invalid(format!("{field}.unit"), "must be an ISO 4217 code such as EUR"));
        };
        let text = match money.get("value") {
            Some(Value::Number(number)) => number.to_string(),
            Some(Value::String(text)) => text.clone(),
            _ => return Err(InventoryError::invalid(format!("{field}.value"), "must be a number")),
        };
        Money::new(field, decimal(&format!("{field}.value"), &text)?, unit)
    }

    /// `CUR:AMOUNT`, as the CLI takes it (`EUR:49.99`).
    pub fn parse(field: &str, text: &str) -> Result<Money> {
        let Some((currency, amount)) = text.split_once(':') else {
            return Err(InventoryError::invalid(field, format!("{text:?} is not CUR:AMOUNT (EUR:49.99)")));
        };
        Money::new(field, decimal(field, amount.trim())?, currency.trim())
    }

    /// TMF money `{unit, value}`, the value a JSON number (exact within the digit limit).
    pub fn to_json(&self) -> Value {
        let value = serde_json::from_str::<Value>(&self.amount.to_string()).unwrap_or(Value::Null);
        json!({"unit": self.currency, "value": value})
    }
}

fn decimal(field: &str, text: &str) -> Result<Decimal> {
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| InventoryError::invalid(field, format!("{text:?} is not a decimal amount")))
}

/// An MSISDN's digits as a number, checked for `field`.
pub fn parse_msisdn(field: &str, text: &str) -> Result<u64> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    check_digits(field, digits, MIN_MSISDN_DIGITS)?;
    digits.parse().map_err(|_| InventoryError::invalid(field, "is not a number"))
}

fn check_digits(field: &str, digits: &str, min: usize) -> Result<()> {
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(InventoryError::invalid(field, format!("{digits:?} is not a string of digits")));
    }
    if !(min..=MAX_MSISDN_DIGITS).contains(&digits.len()) {
        return Err(InventoryError::invalid(
            field,
            format!("an MSISDN has {min} to {MAX_MSISDN_DIGITS} digits, not {}", digits.len()),
        ));
    }
    if digits.starts_with('0') {
        return Err(InventoryError::invalid(field, "an international (E.164) number does not start with 0"));
    }
    Ok(())
}

/// A range of MSISDNs, `first..=last`, of one length and at most [`MAX_RANGE_NUMBERS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberRange {
    pub first: u64,
    pub last: u64,
}

impl NumberRange {
    /// `first..last` (both included).
    pub fn parse(text: &str) -> Result<NumberRange> {
        let Some((first, last)) = text.split_once("..") else {
            return Err(InventoryError::invalid("range", format!("{text:?} is not FIRST..LAST")));
        };
        NumberRange::new(first.trim(), last.trim())
    }

    /// The range from `first` to `last`, given as digits.
    pub fn new(first: &str, last: &str) -> Result<NumberRange> {
        let first_value = parse_msisdn("first", first)?;
        let last_value = parse_msisdn("last", last)?;
        let (first_digits, last_digits) = (first.trim_start_matches('+').len(), last.trim_start_matches('+').len());
        if first_digits != last_digits {
            return Err(InventoryError::invalid(
                "last",
                format!("has {last_digits} digits and first {first_digits}: a range's numbers have one length"),
            ));
        }
        if last_value < first_value {
            return Err(InventoryError::invalid("last", format!("{last} is below first {first}")));
        }
        let range = NumberRange { first: first_value, last: last_value };
        if range.len() > MAX_RANGE_NUMBERS {
            return Err(InventoryError::invalid(
                "last",
                format!("the range holds {} numbers, at most {MAX_RANGE_NUMBERS}", range.len()),
            ));
        }
        Ok(range)
    }

    /// `prefix` followed by every suffix from `start` to `end` (of one length).
    pub fn from_prefix(prefix: &str, start: &str, end: &str) -> Result<NumberRange> {
        let prefix = prefix.strip_prefix('+').unwrap_or(prefix);
        if prefix.is_empty() || !prefix.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(InventoryError::invalid("prefix", format!("{prefix:?} is not a string of digits")));
        }
        for (field, suffix) in [("start", start), ("end", end)] {
            if suffix.is_empty() || !suffix.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(InventoryError::invalid(field, format!("{suffix:?} is not a string of digits")));
            }
        }
        if start.len() != end.len() {
            return Err(InventoryError::invalid("end", "start and end have one length (leading zeros count)"));
        }
        NumberRange::new(&format!("{prefix}{start}"), &format!("{prefix}{end}")).map_err(|error| match error {
            InventoryError::Invalid { field, reason } if field == "first" || field == "last" => {
                InventoryError::invalid(
                    if field == "first" { "start" } else { "end" },
                    format!("prefix + {field}: {reason}"),
                )
            }
            other => other,
        })
    }

    /// How many numbers it holds.
    #[allow(clippy::len_without_is_empty, reason = "a range holds one number at least")]
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Whether `number` is in it.
    pub fn contains(&self, number: u64) -> bool {
        (self.first..=self.last).contains(&number)
    }

    /// How many digits its numbers have.
    pub fn digits(&self) -> usize {
        self.first.checked_ilog10().map_or(1, |log| log as usize + 1)
    }
}

/// A golden pattern (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    suffix: bool,
    cells: Vec<Cell>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    Digit(u8),
    Any,
    Var(u8),
}

impl Pattern {
    /// Parses `text`, checked for `field`.
    pub fn parse(field: &str, text: &str) -> Result<Pattern> {
        let (suffix, body) = match text.strip_prefix('*') {
            Some(body) => (true, body),
            None => (false, text),
        };
        if body.is_empty() || body.len() > MAX_MSISDN_DIGITS {
            return Err(InventoryError::invalid(field, format!("a pattern has 1 to {MAX_MSISDN_DIGITS} cells")));
        }
        let cells = body
            .bytes()
            .map(|byte| match byte {
                b'0'..=b'9' => Ok(Cell::Digit(byte - b'0')),
                b'?' => Ok(Cell::Any),
                b'A'..=b'Z' => Ok(Cell::Var(byte - b'A')),
                _ => Err(InventoryError::invalid(
                    field,
                    format!("{text:?}: a pattern has digits, ?, letters A-Z and a leading *"),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Pattern { text: text.to_owned(), suffix, cells })
    }

    /// The number it names, if it is one number (digits only, no `*`).
    pub fn exact(&self) -> Option<u64> {
        if self.suffix || !self.cells.iter().all(|cell| matches!(cell, Cell::Digit(_))) {
            return None;
        }
        self.text.parse().ok()
    }

    /// Whether `digits` (a number's, most significant first) matches.
    pub fn matches(&self, digits: &[u8]) -> bool {
        if digits.len() < self.cells.len() || (!self.suffix && digits.len() != self.cells.len()) {
            return false;
        }
        let tail = &digits[digits.len() - self.cells.len()..];
        let mut bound: [Option<u8>; 26] = [None; 26];
        for (cell, &digit) in self.cells.iter().zip(tail) {
            match *cell {
                Cell::Digit(wanted) if wanted != digit => return false,
                Cell::Var(var) => match bound[usize::from(var)] {
                    Some(value) if value != digit => return false,
                    Some(_) => {}
                    None => {
                        if bound.contains(&Some(digit)) {
                            return false;
                        }
                        bound[usize::from(var)] = Some(digit);
                    }
                },
                _ => {}
            }
        }
        true
    }

    /// As written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// One golden rule: a pattern and the one-time price of the numbers it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenRule {
    pub pattern: Pattern,
    pub price: Money,
}

impl GoldenRule {
    /// `PATTERN=CUR:AMOUNT`, checked for `field`.
    pub fn parse(field: &str, text: &str) -> Result<GoldenRule> {
        let Some((pattern, price)) = text.split_once('=') else {
            return Err(InventoryError::invalid(field, format!("{text:?} is not PATTERN=CUR:AMOUNT")));
        };
        Ok(GoldenRule { pattern: Pattern::parse(field, pattern.trim())?, price: Money::parse(field, price.trim())? })
    }
}

/// A range's golden rules, checked: at most [`MAX_GOLDEN_RULES`], of which at most
/// [`MAX_GOLDEN_PATTERNS`] patterns; an explicit number once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoldenRules {
    explicit: HashMap<u64, Money>,
    patterns: Vec<GoldenRule>,
    written: Vec<(String, Money)>,
}

impl GoldenRules {
    /// The rules, in order; `field` names them in errors (`golden[3]`).
    pub fn new(rules: Vec<GoldenRule>, field: &str) -> Result<GoldenRules> {
        if rules.len() > MAX_GOLDEN_RULES {
            return Err(InventoryError::invalid(field, format!("at most {MAX_GOLDEN_RULES} golden rules")));
        }
        let mut golden = GoldenRules::default();
        for (index, rule) in rules.into_iter().enumerate() {
            golden.written.push((rule.pattern.as_str().to_owned(), rule.price.clone()));
            match rule.pattern.exact() {
                Some(number) => {
                    if golden.explicit.insert(number, rule.price).is_some() {
                        return Err(InventoryError::invalid(
                            format!("{field}[{index}]"),
                            format!("{number} is named twice"),
                        ));
                    }
                }
                None => {
                    if golden.patterns.len() == MAX_GOLDEN_PATTERNS {
                        return Err(InventoryError::invalid(
                            format!("{field}[{index}]"),
                            format!("at most {MAX_GOLDEN_PATTERNS} patterns"),
                        ));
                    }
                    golden.patterns.push(rule);
                }
            }
        }
        Ok(golden)
    }

    /// The golden numbers of `range` and their prices, in number order. An explicit number
    /// outside the range, or more than [`MAX_GOLDEN_NUMBERS`] golden numbers, is refused.
    pub fn numbers_in(&self, range: &NumberRange) -> Result<Vec<(u64, Money)>> {
        if let Some(number) = self.explicit.keys().find(|number| !range.contains(**number)) {
            return Err(InventoryError::invalid("golden", format!("{number} is not in the range")));
        }
        let mut found: Vec<(u64, Money)> = self.explicit.iter().map(|(n, price)| (*n, price.clone())).collect();
        if !self.patterns.is_empty() {
            let width = range.digits();
            let mut digits = vec![0u8; width];
            for number in range.first..=range.last {
                if self.explicit.contains_key(&number) {
                    continue;
                }
                let mut rest = number;
                for slot in digits.iter_mut().rev() {
                    *slot = (rest % 10) as u8;
                    rest /= 10;
                }
                if let Some(rule) = self.patterns.iter().find(|rule| rule.pattern.matches(&digits)) {
                    if found.len() == MAX_GOLDEN_NUMBERS {
                        return Err(InventoryError::invalid(
                            "golden",
                            format!("the rules make more than {MAX_GOLDEN_NUMBERS} numbers of the range golden"),
                        ));
                    }
                    found.push((number, rule.price.clone()));
                }
            }
        }
        found.sort_by_key(|(number, _)| *number);
        Ok(found)
    }

    /// The rules as written, for the record.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.written.iter().map(|(pattern, price)| json!({"pattern": pattern, "price": price.to_json()})).collect(),
        )
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(number: &str) -> Vec<u8> {
        number.bytes().map(|b| b - b'0').collect()
    }

    #[test]
    fn patterns_match_as_documented() {
        let cases = [
            ("*0000", "447700900000", true),
            ("*0000", "447700900100", false),
            ("*AAAA", "447700907777", true),
            ("*AAAA", "447700907771", false),
            ("*ABAB", "447700901212", true),
            ("*ABAB", "447700901111", false),
            ("*AB?", "447700900125", true),
            ("*AB?", "447700900115", false),
            ("447700900123", "447700900123", true),
            ("447700900123", "447700900124", false),
            ("4477009001??", "447700900123", true),
            ("477009001??", "447700900123", false),
            ("*1234", "447700901234", true),
        ];
        for (pattern, number, expected) in cases {
            let parsed = Pattern::parse("golden", pattern).expect("a pattern");
            assert_eq!(parsed.matches(&digits(number)), expected, "{pattern} vs {number}");
        }
        for bad in ["", "*", "12a4", "*12 3", "+123", "*1234567890123456"] {
            assert!(Pattern::parse("golden", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ranges_are_bounded_and_named_by_field() {
        let range = NumberRange::parse("447700900000..447700909999").expect("a range");
        assert_eq!((range.len(), range.digits()), (10_000, 12));
        assert_eq!(NumberRange::from_prefix("+4477009", "00000", "09999").ok(), Some(range));
        let field = |result: Result<NumberRange>| match result {
            Err(InventoryError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        };
        assert_eq!(field(NumberRange::parse("447700900000")), "range");
        assert_eq!(field(NumberRange::parse("047700900000..047700900009")), "first");
        assert_eq!(field(NumberRange::parse("447700900000..44770090000")), "last");
        assert_eq!(field(NumberRange::parse("447700909999..447700900000")), "last");
        assert_eq!(field(NumberRange::parse("447700000000..447710000000")), "last", "more than 10 M numbers");
        assert!(NumberRange::parse("447700000000..447709999999").is_ok(), "exactly 10 M numbers");
        assert_eq!(field(NumberRange::from_prefix("4477009", "0000", "09999")), "end");
        assert_eq!(field(NumberRange::from_prefix("4477x09", "0000", "0999")), "prefix");
        assert_eq!(field(NumberRange::parse("1234..1239")), "first", "too short for an MSISDN");
    }

    #[test]
    fn golden_numbers_of_a_range_with_their_prices() {
        let rules = ["447700900123=EUR:250", "*AAAA=EUR:100", "*000=EUR:20.50"]
            .iter()
            .map(|text| GoldenRule::parse("golden", text).expect("a rule"))
            .collect();
        let rules = GoldenRules::new(rules, "golden").expect("rules");
        let range = NumberRange::parse("447700900000..447700901999").expect("a range");
        let golden = rules.numbers_in(&range).expect("golden numbers");
        let shown: Vec<(u64, String)> =
            golden.iter().map(|(number, price)| (*number, format!("{}:{}", price.currency, price.amount))).collect();
        assert_eq!(
            shown,
            vec![
                (447700900000, "EUR:100".to_owned()),
                (447700900123, "EUR:250".to_owned()),
                (447700901000, "EUR:20.5".to_owned()),
                (447700901111, "EUR:100".to_owned()),
            ]
        );
        let outside =
            GoldenRules::new(vec![GoldenRule::parse("golden", "447700999999=EUR:1").expect("rule")], "golden")
                .expect("rules");
        assert!(outside.numbers_in(&range).is_err());
        for bad in ["*AAAA", "*AAAA=EUR", "*AAAA=eur:1", "*AAAA=EUR:0", "*AAAA=EUR:-1", "*AAAA=EUR:1.23456"] {
            assert!(GoldenRule::parse("golden", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn money_is_exact_and_bounded() {
        let money = Money::from_json("price", &json!({"unit": "EUR", "value": "99.90"})).expect("money");
        assert_eq!(money.amount.to_string(), "99.9");
        assert_eq!(money.to_json(), json!({"unit": "EUR", "value": 99.9}));
        assert!(Money::from_json("price", &json!({"unit": "EUR", "value": 1e20})).is_err());
        assert!(Money::from_json("price", &json!({"unit": "EUR", "value": 1, "x": 1})).is_err());
    }
}
