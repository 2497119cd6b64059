//! Discounts and credits, and how an amount taken off is shared over the charges it
//! applies to. A [`Discount`] is a percentage or a fixed amount per cycle, for one product,
//! one account or a whole hierarchy, valid over a [`DateSpan`]: it is prorated by the days
//! of the cycle it is valid on, like a recurring charge. A [`Credit`] is an amount owed to
//! the account. Neither ever takes a charge below zero: each is capped at what is left of
//! the charges it applies to, and a credit's unused part is reported for the next invoice.
//!
//! The amount taken off is shared over the charge lines in proportion to what is left of
//! each, in minor units by the largest remainder (each line gets the whole minor units of
//! its exact share, and the units left over go one each to the lines with the largest
//! fractional parts, the first in invoice order on a tie), so the shares add up to the
//! amount exactly and each line's tax follows its own service class.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::cycle::DateSpan;
use crate::error::{BillingError, Result};

/// What a discount applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiscountScope {
    /// The lines of one product of the account it is listed under.
    Product { product_id: String },
    /// Every charge of the account it is listed under.
    Account,
    /// Every charge of every section of the invoice; listed under the invoiced account.
    Hierarchy,
}

/// How much a discount takes off in a full cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiscountValue {
    /// A percentage (10 for 10 %, above 0 and at most 100) of the charges it applies to.
    Percent(Decimal),
    /// A fixed amount in `currency`, taken off the charges in that currency.
    Fixed { amount: Decimal, currency: String },
}

/// A discount, applied in the order product, account, hierarchy, then by `id`, each to
/// what earlier ones left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discount {
    pub id: String,
    pub description: String,
    /// The charge type its lines are posted under (a contra-revenue account).
    pub charge_type: String,
    pub scope: DiscountScope,
    pub value: DiscountValue,
    /// The days it is valid on (`until` excluded; [`jiff::civil::Date::MAX`] for no end).
    pub valid: DateSpan,
}

/// An amount owed to an account (a goodwill gesture, a refund of an earlier bill), taken
/// off its charges in `currency` after the discounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    pub id: String,
    pub description: String,
    pub charge_type: String,
    pub amount: Decimal,
    pub currency: String,
}

impl Discount {
    /// Checks its value (`field` names it in the error): a percentage above 0 and at most
    /// 100, or a fixed amount not negative in a known currency.
    pub fn validate(&self, field: &str) -> Result<()> {
        match &self.value {
            DiscountValue::Percent(percent) => {
                if *percent <= Decimal::ZERO || *percent > Decimal::ONE_HUNDRED {
                    return Err(BillingError::invalid(
                        format!("{field}.value"),
                        format!("{percent} % is not above 0 and at most 100"),
                    ));
                }
            }
            DiscountValue::Fixed { amount, currency } => {
                crate::currency::minor_units(&format!("{field}.value.currency"), currency)?;
                if amount.is_sign_negative() {
                    return Err(BillingError::invalid(format!("{field}.value.amount"), "is negative"));
                }
            }
        }
        Ok(())
    }

    /// The rank of its scope in the order discounts are applied.
    pub(crate) fn rank(&self) -> u8 {
        match self.scope {
            DiscountScope::Product { .. } => 0,
            DiscountScope::Account => 1,
            DiscountScope::Hierarchy => 2,
        }
    }
}

/// `amount` (minor units) shared over `remaining` (minor units, each above zero, summing
/// to at least `amount`) in proportion, by the largest remainder; the shares sum to
/// `amount` and none exceeds its line's remaining.
pub(crate) fn share(field: &str, amount: i128, remaining: &[i128]) -> Result<Vec<i128>> {
    let base: i128 = remaining.iter().sum();
    if amount < 0 || amount > base || remaining.iter().any(|left| *left <= 0) {
        return Err(BillingError::invalid(field, format!("cannot share {amount} over {base}")));
    }
    let mut shares = Vec::with_capacity(remaining.len());
    let mut fractions = Vec::with_capacity(remaining.len());
    for (index, left) in remaining.iter().enumerate() {
        let product = amount.checked_mul(*left).ok_or_else(|| BillingError::overflow(field))?;
        shares.push(product / base);
        fractions.push((product % base, index));
    }
    let leftover = amount - shares.iter().sum::<i128>();
    // Largest fractional part first, the earlier line on a tie.
    fractions.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, index) in fractions.iter().take(usize::try_from(leftover).unwrap_or(0)) {
        shares[*index] += 1;
    }
    Ok(shares)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_the_largest_remainder() {
        // 100 over 1:1:1 → exact 33.33 each; 33 each and the 1 left goes to the first.
        assert_eq!(share("d", 100, &[1000, 1000, 1000]), Ok(vec![34, 33, 33]));
        // 10 over 5:3:2 → exactly 5, 3, 2.
        assert_eq!(share("d", 10, &[50, 30, 20]), Ok(vec![5, 3, 2]));
        // 7 over 1:2 → 2.33 and 4.67: 2 and 4, the 1 left to the larger fraction (.67).
        assert_eq!(share("d", 7, &[100, 200]), Ok(vec![2, 5]));
        // The whole base: each line to zero.
        assert_eq!(share("d", 17, &[9, 8]), Ok(vec![9, 8]));
        assert!(share("d", 18, &[9, 8]).is_err());
    }
}
