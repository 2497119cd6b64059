//! How numbers, amounts and dates print: an amount with exactly its currency's minor
//! units (JPY `1,234`, EUR `1,234.50`, KWD `1,234.500`), grouped by thousands, with the
//! template's separators; a quantity as it is, without trailing zeros; a tax rate (a
//! fraction) as a percentage; dates and times with the template's strftime formats.

use jiff::civil::Date;
use rust_decimal::Decimal;
use tollgate_billing::minor_units;

use crate::error::{InvoicePdfError, Result};
use crate::template::Template;

/// Groups the digits of `integer` by thousands with `separator`.
fn group(integer: &str, separator: &str) -> String {
    let digits: Vec<char> = integer.chars().collect();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 * separator.len());
    for (index, digit) in digits.iter().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push_str(separator);
        }
        out.push(*digit);
    }
    out
}

/// `value` with `decimals` decimals (rounded half away from zero when it has more),
/// grouped by thousands when `grouped`.
fn number(value: Decimal, decimals: u32, template: &Template, grouped: bool) -> String {
    let value = value.round_dp_with_strategy(decimals, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    let mut value = value;
    value.rescale(decimals);
    let text = value.abs().to_string();
    let (integer, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let separator = if grouped { template.thousands_separator.as_str() } else { "" };
    let mut out = String::new();
    if value.is_sign_negative() && !value.is_zero() {
        out.push('-');
    }
    out.push_str(&group(integer, separator));
    if !fraction.is_empty() {
        out.push_str(&template.decimal_separator);
        out.push_str(fraction);
    }
    out
}

/// `amount` with its currency's minor units; an unknown currency is an error naming
/// `field`.
pub(crate) fn amount(field: &str, amount: Decimal, currency: &str, template: &Template) -> Result<String> {
    let decimals = minor_units(field, currency)?;
    Ok(number(amount, decimals, template, true))
}

/// `amount` and its currency code.
pub(crate) fn money(field: &str, value: Decimal, currency: &str, template: &Template) -> Result<String> {
    Ok(format!("{} {currency}", amount(field, value, currency, template)?))
}

/// A quantity as it is, without trailing zeros.
pub(crate) fn quantity(value: Decimal, template: &Template) -> String {
    let value = value.normalize();
    number(value, value.scale(), template, true)
}

/// A tax rate (0.2) as a percentage (`20 %`).
pub(crate) fn percent(rate: Decimal, template: &Template) -> String {
    let value = (rate * Decimal::ONE_HUNDRED).normalize();
    format!("{} %", number(value, value.scale(), template, false))
}

/// A date with the template's format.
pub(crate) fn date(value: Date, template: &Template) -> Result<String> {
    jiff::fmt::strtime::format(&template.date_format, value)
        .map_err(|e| InvoicePdfError::field("date_format", e.to_string()))
}

/// An instant (Unix seconds) in `time_zone`, with the template's time format.
pub(crate) fn instant(seconds: i64, time_zone: &jiff::tz::TimeZone, template: &Template) -> Result<String> {
    let timestamp = jiff::Timestamp::from_second(seconds)
        .map_err(|e| InvoicePdfError::Document { field: "used_at".to_owned(), reason: e.to_string() })?;
    jiff::fmt::strtime::format(&template.time_format, time_zone.to_datetime(timestamp))
        .map_err(|e| InvoicePdfError::field("time_format", e.to_string()))
}

/// `text` with each `{name}` replaced by its value.
pub(crate) fn fill(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: &str, currency: &str, expected: &str) {
        let value: Decimal = value.parse().expect("a decimal");
        assert_eq!(amount("x", value, currency, &Template::default()).expect("known currency"), expected);
    }

    #[test]
    fn amounts_have_their_currency_minor_units_and_thousands() {
        check("1234", "JPY", "1,234");
        check("1234.5", "EUR", "1,234.50");
        check("1234567.125", "KWD", "1,234,567.125");
        check("-0.5", "EUR", "-0.50");
        check("0", "EUR", "0.00");
        check("999", "USD", "999.00");
        check("1000", "USD", "1,000.00");
    }

    #[test]
    fn an_unknown_currency_is_an_error_naming_the_field() {
        let error = amount("totals[0].currency", Decimal::ONE, "XYZ", &Template::default()).expect_err("unknown");
        assert!(error.to_string().contains("totals[0].currency"), "{error}");
    }

    #[test]
    fn german_separators_quantities_and_rates() {
        let template =
            Template { decimal_separator: ",".to_owned(), thousands_separator: ".".to_owned(), ..Template::default() };
        assert_eq!(amount("x", Decimal::new(123456789, 2), "EUR", &template).expect("EUR"), "1.234.567,89");
        assert_eq!(quantity(Decimal::new(125000, 3), &template), "125");
        assert_eq!(quantity(Decimal::new(15, 1), &template), "1,5");
        assert_eq!(percent(Decimal::new(19, 2), &template), "19 %");
        assert_eq!(percent(Decimal::new(775, 4), &Template::default()), "7.75 %");
    }

    #[test]
    fn placeholders_are_filled() {
        assert_eq!(fill("Page {page} of {pages}", &[("page", "2"), ("pages", "3")]), "Page 2 of 3");
    }
}
