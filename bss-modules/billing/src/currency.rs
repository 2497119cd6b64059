//! Currencies and rounding: the ISO 4217 currencies that have minor units, each with its
//! exponent (JPY 0, EUR 2, KWD 3), and the rule an amount in a currency is rounded with: the
//! currency's decimals and a named [`RoundingMode`] the caller chooses. Nothing here picks a
//! rounding mode by itself; an unknown currency is an error that names it.
//!
//! The exponents come from the tariffs' `money::currency_minor_units`, so the rating engine
//! and billing never disagree on a currency's decimals; this module adds the list of codes
//! that exist, which the tariffs do not need.

use rust_decimal::Decimal;
use tollgate_tariffs::money::currency_minor_units;
use tollgate_tariffs::{Rounding, RoundingMode};

use crate::error::{BillingError, Result};

/// The active ISO 4217 currencies with minor units (funds codes included; precious metals,
/// SDR and the testing codes, which have none, left out), sorted for a binary search.
#[rustfmt::skip]
const CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN",
    "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF",
    "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK",
    "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF",
    "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD",
    "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN",
    "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP",
    "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD",
    "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP",
    "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// The significant digits of `amount` (`1.50` has 2, `0` has 1): the one measure the
/// money checks bound an amount by.
pub fn significant_digits(amount: Decimal) -> u32 {
    amount.normalize().mantissa().unsigned_abs().checked_ilog10().map_or(1, |log| log + 1)
}

/// The number of decimals of `code`'s minor unit (JPY 0, EUR 2, KWD 3), or
/// [`BillingError::UnknownCurrency`] naming `field` and the code.
pub fn minor_units(field: &str, code: &str) -> Result<u32> {
    if CURRENCIES.binary_search(&code).is_ok() {
        Ok(currency_minor_units(code))
    } else {
        Err(BillingError::UnknownCurrency { field: field.to_owned(), code: code.to_owned() })
    }
}

/// The rule an amount in `code` is rounded with: the currency's decimals and `mode`.
pub fn currency_rounding(field: &str, code: &str, mode: RoundingMode) -> Result<Rounding> {
    Ok(Rounding { mode, decimals: minor_units(field, code)? })
}

/// `amount` in minor units (cents), for an amount already rounded to `decimals`.
pub(crate) fn to_minor(field: &str, amount: Decimal, decimals: u32) -> Result<i128> {
    let mut scaled = amount;
    scaled.rescale(decimals);
    if scaled != amount {
        return Err(BillingError::invalid(field, format!("{amount} has more than {decimals} decimals")));
    }
    Ok(scaled.mantissa())
}

/// An amount of minor units back as money with `decimals` decimals.
pub(crate) fn from_minor(field: &str, minor: i128, decimals: u32) -> Result<Decimal> {
    Decimal::try_from_i128_with_scale(minor, decimals).map_err(|_| BillingError::overflow(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_of_three_capital_letters() {
        assert!(CURRENCIES.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(CURRENCIES.iter().all(|code| code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())));
    }

    #[test]
    fn common_currencies_have_their_iso_exponent() {
        for (code, decimals) in
            [("JPY", 0), ("KRW", 0), ("EUR", 2), ("USD", 2), ("GBP", 2), ("CHF", 2), ("KWD", 3), ("BHD", 3), ("CLF", 4)]
        {
            assert_eq!(minor_units("currency", code), Ok(decimals), "{code}");
        }
    }

    #[test]
    fn an_unknown_currency_is_named() {
        for code in ["XYZ", "eur", "", "EURO", "XAU"] {
            let error = minor_units("lines[3].currency", code).expect_err(code);
            assert_eq!(error.to_string(), format!("lines[3].currency: unknown currency {code:?}"));
        }
    }

    #[test]
    fn minor_units_refuse_an_unrounded_amount() {
        assert_eq!(to_minor("x", Decimal::new(1234, 2), 2), Ok(1234));
        assert_eq!(to_minor("x", Decimal::new(12, 0), 3), Ok(12_000));
        assert!(matches!(to_minor("x", Decimal::new(12345, 3), 2), Err(BillingError::Invalid { .. })));
    }
}
