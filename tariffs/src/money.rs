//! Money arithmetic: named rounding modes, currency minor units, and the
//! residue-carrying rounding that keeps the lines of a rated event summing to its total.

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// How an exact amount is brought to the plan's number of decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoundingMode {
    /// 0.125 → 0.13, −0.125 → −0.13 (ties away from zero; "commercial" rounding).
    HalfUp,
    /// 0.125 → 0.12, 0.135 → 0.14 (ties to the even neighbour; banker's rounding).
    HalfEven,
    /// Always away from zero: 0.121 → 0.13. The operator never under-charges.
    Up,
    /// Always towards zero: 0.129 → 0.12. The subscriber never over-pays.
    Down,
}

impl RoundingMode {
    fn strategy(self) -> RoundingStrategy {
        match self {
            RoundingMode::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            RoundingMode::HalfEven => RoundingStrategy::MidpointNearestEven,
            RoundingMode::Up => RoundingStrategy::AwayFromZero,
            RoundingMode::Down => RoundingStrategy::ToZero,
        }
    }

    /// The name used in plan files (`half-up`, `half-even`, `up`, `down`).
    pub fn name(self) -> &'static str {
        match self {
            RoundingMode::HalfUp => "half-up",
            RoundingMode::HalfEven => "half-even",
            RoundingMode::Up => "up",
            RoundingMode::Down => "down",
        }
    }
}

/// A rounding rule: a mode and a number of decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Rounding {
    pub mode: RoundingMode,
    pub decimals: u32,
}

/// Most decimals a plan may round to (rust_decimal keeps 28).
pub const MAX_ROUNDING_DECIMALS: u32 = 12;

impl Rounding {
    /// Rounds `amount` with this rule; the result always carries exactly `decimals`
    /// decimals (0.1 becomes 0.10), as it will be shown on an invoice. A zero result has
    /// no sign.
    pub fn apply(self, amount: Decimal) -> Decimal {
        if let Some(rounded) = self.shorten(amount) {
            return rounded;
        }
        let mut rounded = amount.round_dp_with_strategy(self.decimals, self.mode.strategy());
        rounded.rescale(self.decimals);
        if rounded.is_zero() {
            rounded.set_sign_positive(true);
        }
        rounded
    }

    /// [`Rounding::apply`] for an amount with more decimals than the rule keeps (a
    /// price divided by its unit has up to 28): its mantissa divided once, in 128-bit
    /// integers. rust_decimal's own rounding divides nine digits at a time, twice, and
    /// builds the midpoint by repeated multiplication; it was the largest single cost of
    /// rating an event. `None` when the amount has no more decimals than the rule.
    fn shorten(self, amount: Decimal) -> Option<Decimal> {
        let divisor = 10u128.checked_pow(amount.scale().checked_sub(self.decimals).filter(|drop| *drop > 0)?)?;
        let magnitude = amount.mantissa().unsigned_abs();
        let (quotient, remainder) = (magnitude / divisor, magnitude % divisor);
        // The remainder against what is left to the next multiple of the divisor.
        let rest = divisor - remainder;
        let away = match self.mode {
            RoundingMode::Down => false,
            RoundingMode::Up => remainder != 0,
            RoundingMode::HalfUp => remainder >= rest,
            RoundingMode::HalfEven => remainder > rest || (remainder == rest && quotient % 2 == 1),
        };
        let magnitude = i128::try_from(quotient + u128::from(away)).ok()?;
        let signed = if amount.is_sign_negative() { -magnitude } else { magnitude };
        Decimal::try_from_i128_with_scale(signed, self.decimals).ok()
    }

    /// The smallest amount this rule can express (0.01 for two decimals).
    pub fn minor_unit(self) -> Decimal {
        Decimal::new(1, self.decimals)
    }
}

/// ISO 4217 minor units of the currencies whose exponent is not 2. Every other
/// three-letter code uses 2; a plan may always override with `[rounding] decimals`.
pub fn currency_minor_units(code: &str) -> u32 {
    match code {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND"
        | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// A line of a breakdown that has an exact amount and a rounded one.
pub trait Amounts {
    fn exact(&self) -> Decimal;
    fn rounded_mut(&mut self) -> &mut Decimal;
}

impl Amounts for (Decimal, Decimal) {
    fn exact(&self) -> Decimal {
        self.0
    }
    fn rounded_mut(&mut self) -> &mut Decimal {
        &mut self.1
    }
}

/// Rounds the exact total of `lines` once with `rounding`, rounds every line with the
/// same rule, and carries the difference between the rounded total and the sum of the
/// rounded lines on the line of largest magnitude, so the rounded lines sum exactly to
/// the returned total. Returns `(exact total, rounded total)`, or `None` when a sum does
/// not fit a 96-bit decimal.
///
/// Because the total is rounded once, rounding never drifts with the number of lines;
/// the residue carried is at most half a minor unit per line.
pub fn round_lines<T: Amounts>(rounding: Rounding, lines: &mut [T]) -> Option<(Decimal, Decimal)> {
    if let [line] = lines {
        let exact = line.exact();
        let total = rounding.apply(exact);
        *line.rounded_mut() = total;
        return Some((exact, total));
    }
    let mut exact_total = Decimal::ZERO;
    let mut sum = Decimal::ZERO;
    let mut largest: Option<(usize, Decimal)> = None;
    for (index, line) in lines.iter_mut().enumerate() {
        let exact = line.exact();
        exact_total = exact_total.checked_add(exact)?;
        let rounded = rounding.apply(exact);
        *line.rounded_mut() = rounded;
        sum = sum.checked_add(rounded)?;
        if largest.is_none_or(|(_, magnitude)| exact.abs() > magnitude) {
            largest = Some((index, exact.abs()));
        }
    }
    let total = rounding.apply(exact_total);
    if let Some((index, _)) = largest {
        let carried = lines[index].rounded_mut();
        *carried = carried.checked_add(total.checked_sub(sum)?)?;
    }
    Some((exact_total, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).expect("test decimal")
    }

    proptest::proptest! {
        #[test]
        fn shortening_rounds_as_rust_decimal_does(
            kept in 0i128..1_000_000_000_000,
            negative in proptest::bool::ANY,
            decimals in 0u32..=MAX_ROUNDING_DECIMALS,
            dropped in 1u32..=16,
            fraction in proptest::num::u64::ANY,
            tie in proptest::bool::ANY,
            mode in proptest::sample::select(vec![
                RoundingMode::HalfUp, RoundingMode::HalfEven, RoundingMode::Up, RoundingMode::Down,
            ]),
        ) {
            // `kept` with `decimals` decimals, then `dropped` more digits: an exact half
            // of the last kept digit when `tie`, else any.
            let unit = 10i128.pow(dropped);
            let fraction = if tie { unit / 2 } else { i128::from(fraction) % unit };
            let magnitude = kept * unit + fraction;
            let amount = Decimal::from_i128_with_scale(if negative { -magnitude } else { magnitude }, decimals + dropped);
            let mut expected = amount.round_dp_with_strategy(decimals, mode.strategy());
            expected.rescale(decimals);
            let rounded = Rounding { mode, decimals }.apply(amount);
            proptest::prop_assert_eq!(rounded, expected);
            proptest::prop_assert_eq!(rounded.scale(), decimals);
            if rounded.is_zero() {
                proptest::prop_assert!(rounded.is_sign_positive(), "{amount} rounded to a signed zero");
            } else {
                proptest::prop_assert_eq!(rounded.to_string(), expected.to_string());
            }
        }
    }

    #[test]
    fn each_mode_rounds_as_named() {
        let cases = [
            ("0.125", RoundingMode::HalfUp, "0.13"),
            ("-0.125", RoundingMode::HalfUp, "-0.13"),
            ("0.125", RoundingMode::HalfEven, "0.12"),
            ("0.135", RoundingMode::HalfEven, "0.14"),
            ("0.121", RoundingMode::Up, "0.13"),
            ("0.129", RoundingMode::Down, "0.12"),
            ("0.120", RoundingMode::Up, "0.12"),
        ];
        for (input, mode, expected) in cases {
            let rounding = Rounding { mode, decimals: 2 };
            assert_eq!(rounding.apply(d(input)), d(expected), "{input} {mode:?}");
        }
    }

    #[test]
    fn rounded_lines_sum_to_the_rounded_total() {
        let rounding = Rounding { mode: RoundingMode::HalfUp, decimals: 2 };
        let mut lines = [(d("0.005"), Decimal::ZERO), (d("0.005"), Decimal::ZERO), (d("0.005"), Decimal::ZERO)];
        let (exact, total) = round_lines(rounding, &mut lines).expect("fits");
        assert_eq!((exact, total), (d("0.015"), d("0.02")));
        assert_eq!(lines.iter().map(|line| line.1).sum::<Decimal>(), total);
    }

    #[test]
    fn minor_units_follow_iso_4217() {
        assert_eq!(currency_minor_units("EUR"), 2);
        assert_eq!(currency_minor_units("JPY"), 0);
        assert_eq!(currency_minor_units("KWD"), 3);
    }
}
