//! Taxes: a [`TaxProfile`] holds rates by jurisdiction and service class, says whether
//! prices include the tax or not ([`PriceBasis`]) and whether tax is rounded per line or
//! per invoice ([`TaxRounding`]) with which [`RoundingMode`].
//!
//! Every line ends with a net, a tax and a gross amount in its currency's minor units, and
//! net + tax = gross on the line by construction (the rounded side is the tax; the other
//! side is the difference). Per invoice, the lines of one currency and tax code are taxed
//! together: their exact taxes are summed and rounded once, each line shows its own exact
//! tax rounded, and the difference (at most half a minor unit per line) is carried on the
//! line with the largest exact tax, the first in invoice order on a tie (as the tariffs'
//! `money::round_lines` does for a rated event's lines), so the lines add up to the
//! rounded group tax. The group's exact tax is computed from the exact sum of its amounts,
//! so an inclusive rate's division (0.20 / 1.20) is done once per group.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tollgate_tariffs::{Rounding, RoundingMode};

use crate::error::{BillingError, Result};

/// Rates one tax profile may hold.
pub const MAX_TAX_RATES: usize = 1_000;

/// Whether a price is before tax or includes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PriceBasis {
    /// Prices are net; the tax is added on top.
    Exclusive,
    /// Prices are gross; the tax is the part of them that is tax.
    Inclusive,
}

/// Where tax is rounded to the currency's minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaxRounding {
    /// Each line's tax is rounded on its own; the invoice's tax is the sum of the lines'.
    PerLine,
    /// The tax of all lines with one currency and tax code is rounded once.
    PerInvoice,
}

/// One tax rate: `rate` is a fraction (0.20 for 20 %) that applies in `jurisdiction` to
/// `service_class`, or to every class the jurisdiction lists no rate for when `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxRate {
    /// The code the tax is reported and posted under (`FR-VAT-20`).
    pub code: String,
    pub jurisdiction: String,
    pub service_class: Option<String>,
    pub rate: Decimal,
}

/// How an account's charges are taxed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxProfile {
    pub id: String,
    pub basis: PriceBasis,
    pub rounding: TaxRounding,
    pub rounding_mode: RoundingMode,
    pub rates: Vec<TaxRate>,
}

impl TaxProfile {
    /// Checks the profile: bounded, codes and jurisdictions named, each rate from 0 to 1,
    /// one rate per jurisdiction and service class, one rate per code.
    pub fn validate(&self) -> Result<()> {
        if self.id.trim().is_empty() {
            return Err(BillingError::invalid("tax_profile.id", "is empty"));
        }
        if self.rates.len() > MAX_TAX_RATES {
            return Err(BillingError::TooMany { field: "tax_profile.rates".to_owned(), limit: MAX_TAX_RATES });
        }
        let mut seen = BTreeMap::new();
        for (index, rate) in self.rates.iter().enumerate() {
            let field = format!("tax_profile.rates[{index}]");
            if rate.code.trim().is_empty() || rate.jurisdiction.trim().is_empty() {
                return Err(BillingError::invalid(field, "code and jurisdiction must be named"));
            }
            if rate.rate.is_sign_negative() || rate.rate > Decimal::ONE {
                return Err(BillingError::invalid(
                    format!("{field}.rate"),
                    format!("{} is not from 0 to 1", rate.rate),
                ));
            }
            if let Some(first) = seen.insert((&rate.jurisdiction, &rate.service_class), index) {
                return Err(BillingError::invalid(
                    field,
                    format!("repeats the jurisdiction and class of rates[{first}]"),
                ));
            }
            // Per-invoice rounding groups lines by code, so a code has one rate.
            if let Some((first, other)) = self.rates[..index]
                .iter()
                .enumerate()
                .find(|(_, other)| other.code == rate.code && other.rate != rate.rate)
            {
                return Err(BillingError::invalid(
                    format!("{field}.rate"),
                    format!("code {:?} has rate {} in rates[{first}], not {}", rate.code, other.rate, rate.rate),
                ));
            }
        }
        Ok(())
    }

    /// The rate for `service_class` in `jurisdiction`: the class's own, else the
    /// jurisdiction's default; `field` names the line asking in the error.
    pub fn rate_for(&self, field: &str, jurisdiction: &str, service_class: &str) -> Result<&TaxRate> {
        let in_jurisdiction = |rate: &&TaxRate| rate.jurisdiction == jurisdiction;
        let rates = || self.rates.iter().filter(in_jurisdiction);
        rates()
            .find(|rate| rate.service_class.as_deref() == Some(service_class))
            .or_else(|| rates().find(|rate| rate.service_class.is_none()))
            .ok_or_else(|| BillingError::NoTaxRate {
                field: field.to_owned(),
                profile: self.id.clone(),
                jurisdiction: jurisdiction.to_owned(),
                service_class: service_class.to_owned(),
            })
    }

    /// The exact tax of `amount` at `rate` by the profile's basis.
    fn exact_tax(&self, field: &str, amount: Decimal, rate: Decimal) -> Result<Decimal> {
        let tax = match self.basis {
            PriceBasis::Exclusive => amount.checked_mul(rate),
            PriceBasis::Inclusive => {
                amount.checked_mul(rate).and_then(|product| product.checked_div(Decimal::ONE + rate))
            }
        };
        tax.ok_or_else(|| BillingError::overflow(field))
    }

    /// Taxes `lines` in place by the profile's basis and rounding.
    pub(crate) fn apply(&self, lines: &mut [Taxed]) -> Result<()> {
        match self.rounding {
            TaxRounding::PerLine => {
                for line in lines.iter_mut() {
                    line.tax =
                        line.rounding(self.rounding_mode).apply(self.exact_tax(&line.field, line.amount, line.rate)?);
                }
            }
            TaxRounding::PerInvoice => {
                let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
                for (index, line) in lines.iter().enumerate() {
                    groups.entry((&line.currency, &line.code)).or_default().push(index);
                }
                let groups: Vec<Vec<usize>> = groups.into_values().collect();
                for members in groups {
                    let first = &lines[members[0]];
                    let (field, rounding, rate) = (first.field.clone(), first.rounding(self.rounding_mode), first.rate);
                    // The group's tax from the exact sum of its amounts (an inclusive
                    // rate's division done once, not once per line).
                    let mut sum = Decimal::ZERO;
                    let mut exact = Vec::with_capacity(members.len());
                    for index in &members {
                        let line = &lines[*index];
                        sum = sum.checked_add(line.amount).ok_or_else(|| BillingError::overflow(&line.field))?;
                        exact.push(self.exact_tax(&line.field, line.amount, line.rate)?);
                    }
                    let total = rounding.apply(self.exact_tax(&field, sum, rate)?);
                    for (index, tax) in members.iter().zip(carry(rounding, total, &exact)) {
                        lines[*index].tax = tax;
                    }
                }
            }
        }
        for line in lines.iter_mut() {
            let other = match self.basis {
                PriceBasis::Exclusive => line.amount.checked_add(line.tax),
                PriceBasis::Inclusive => line.amount.checked_sub(line.tax),
            };
            let other = other.ok_or_else(|| BillingError::overflow(line.field.clone()))?;
            (line.net, line.gross) = match self.basis {
                PriceBasis::Exclusive => (line.amount, other),
                PriceBasis::Inclusive => (other, line.amount),
            };
        }
        Ok(())
    }
}

/// Each of `exact` rounded with `rounding`, with the difference between `total` and their
/// sum carried on the one of largest magnitude (the first on a tie), so they add up to
/// `total`.
fn carry(rounding: Rounding, total: Decimal, exact: &[Decimal]) -> Vec<Decimal> {
    let mut rounded: Vec<Decimal> = exact.iter().map(|tax| rounding.apply(*tax)).collect();
    let mut largest: Option<usize> = None;
    for (index, tax) in exact.iter().enumerate() {
        if largest.is_none_or(|at| tax.abs() > exact[at].abs()) {
            largest = Some(index);
        }
    }
    if let Some(at) = largest {
        let residue = total - rounded.iter().copied().sum::<Decimal>();
        rounded[at] += residue;
    }
    rounded
}

/// One line being taxed: its amount as priced, in minor units of `currency`
/// (`decimals`), and the rate and code that apply; `net`, `tax` and `gross` are the result.
#[derive(Debug, Clone)]
pub(crate) struct Taxed {
    pub(crate) field: String,
    pub(crate) currency: String,
    pub(crate) decimals: u32,
    pub(crate) code: String,
    pub(crate) rate: Decimal,
    pub(crate) amount: Decimal,
    pub(crate) net: Decimal,
    pub(crate) tax: Decimal,
    pub(crate) gross: Decimal,
}

impl Taxed {
    fn rounding(&self, mode: RoundingMode) -> Rounding {
        Rounding { mode, decimals: self.decimals }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(code: &str, jurisdiction: &str, service_class: Option<&str>, rate: Decimal) -> TaxRate {
        TaxRate {
            code: code.to_owned(),
            jurisdiction: jurisdiction.to_owned(),
            service_class: service_class.map(str::to_owned),
            rate,
        }
    }

    fn profile(rates: Vec<TaxRate>) -> TaxProfile {
        TaxProfile {
            id: "p".to_owned(),
            basis: PriceBasis::Exclusive,
            rounding: TaxRounding::PerLine,
            rounding_mode: RoundingMode::HalfUp,
            rates,
        }
    }

    #[test]
    fn a_class_has_its_own_rate_else_the_jurisdictions_default() {
        let twenty = Decimal::new(20, 2);
        let reduced = Decimal::new(55, 3);
        let profile = profile(vec![rate("FR-20", "FR", None, twenty), rate("FR-5.5", "FR", Some("content"), reduced)]);
        assert_eq!(profile.validate(), Ok(()));
        assert_eq!(profile.rate_for("l", "FR", "content").map(|r| r.rate), Ok(reduced));
        assert_eq!(profile.rate_for("l", "FR", "telecom").map(|r| r.rate), Ok(twenty));
        assert!(matches!(profile.rate_for("l", "DE", "telecom"), Err(BillingError::NoTaxRate { .. })));
    }

    #[test]
    fn a_bad_profile_is_refused_naming_the_rate() {
        let cases = [
            (
                vec![rate("X", "FR", None, Decimal::new(-1, 2))],
                "invalid tax_profile.rates[0].rate: -0.01 is not from 0 to 1",
            ),
            (
                vec![rate("X", "FR", None, Decimal::new(101, 2))],
                "invalid tax_profile.rates[0].rate: 1.01 is not from 0 to 1",
            ),
            (
                vec![rate("X", "FR", None, Decimal::ONE), rate("Y", "FR", None, Decimal::ONE)],
                "invalid tax_profile.rates[1]: repeats the jurisdiction and class of rates[0]",
            ),
            (
                vec![rate("X", "FR", None, Decimal::new(2, 1)), rate("X", "BE", None, Decimal::new(21, 2))],
                "invalid tax_profile.rates[1].rate: code \"X\" has rate 0.2 in rates[0], not 0.21",
            ),
            (
                vec![rate("", "FR", None, Decimal::ONE)],
                "invalid tax_profile.rates[0]: code and jurisdiction must be named",
            ),
        ];
        for (rates, expected) in cases {
            assert_eq!(profile(rates).validate().expect_err(expected).to_string(), expected);
        }
    }
}
