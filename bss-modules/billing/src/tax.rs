//! Taxes: a [`TaxProfile`] holds rates by jurisdiction and service class, says whether
//! prices include the tax or not ([`PriceBasis`]) and whether tax is rounded per line or
//! per invoice ([`TaxRounding`]) with which [`RoundingMode`].
//!
//! Every line ends with a net, a tax and a gross amount in its currency's minor units, and
//! net + tax = gross on the line by construction (the rounded side is the tax; the other
//! side is the difference). Per invoice, the lines of one currency and tax code are taxed
//! together: their exact taxes are summed and rounded once, each line shows its own exact
//! tax rounded, and the difference (at most half a minor unit per line) is carried on the
//! line with the largest exact tax, the first in invoice order on a tie (the tariffs'
//! `money::round_lines`), so the lines add up to the rounded group tax.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tollgate_tariffs::money::round_lines;
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
pub struct TaxRate {
    /// The code the tax is reported and posted under (`FR-VAT-20`).
    pub code: String,
    pub jurisdiction: String,
    pub service_class: Option<String>,
    pub rate: Decimal,
}

/// How an account's charges are taxed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxProfile {
    pub id: String,
    pub basis: PriceBasis,
    pub rounding: TaxRounding,
    pub rounding_mode: RoundingMode,
    pub rates: Vec<TaxRate>,
}

impl TaxProfile {
    /// Checks the profile: bounded, codes and jurisdictions named, each rate from 0 to 1,
    /// one rate per jurisdiction and service class.
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

    /// Taxes `lines` in place by the profile's basis and rounding.
    pub(crate) fn apply(&self, lines: &mut [Taxed]) -> Result<()> {
        let exact = |line: &Taxed| -> Result<Decimal> {
            let tax = match self.basis {
                PriceBasis::Exclusive => line.amount.checked_mul(line.rate),
                PriceBasis::Inclusive => {
                    line.amount.checked_mul(line.rate).and_then(|product| product.checked_div(Decimal::ONE + line.rate))
                }
            };
            tax.ok_or_else(|| BillingError::overflow(line.field.clone()))
        };
        match self.rounding {
            TaxRounding::PerLine => {
                for line in lines.iter_mut() {
                    line.tax = line.rounding(self.rounding_mode).apply(exact(line)?);
                }
            }
            TaxRounding::PerInvoice => {
                let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
                for (index, line) in lines.iter().enumerate() {
                    groups.entry((&line.currency, &line.code)).or_default().push(index);
                }
                let groups: Vec<Vec<usize>> = groups.into_values().collect();
                for members in groups {
                    let mut pairs = members
                        .iter()
                        .map(|index| Ok((exact(&lines[*index])?, Decimal::ZERO)))
                        .collect::<Result<Vec<_>>>()?;
                    let first = &lines[members[0]];
                    round_lines(first.rounding(self.rounding_mode), &mut pairs)
                        .ok_or_else(|| BillingError::overflow(first.field.clone()))?;
                    for (index, (_, tax)) in members.iter().zip(pairs) {
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
