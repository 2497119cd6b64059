//! Price shapes of a product offering price (TMF620's `priceType`): `recurring` with its
//! period (`recurringChargePeriodType` day, week, month or year and a length), `oneTime`,
//! and `usage`, whose prices are a tariff plan's: the plan's TOML source travels with the
//! price (`tariffPlan: {source, file}`) and is compiled when an offering using the price is
//! activated. A recurring price may say when it is billed with the extension attribute
//! `chargeTiming` (TMF620 has no such field): `inArrears` (the default: the closing cycle's
//! days) or `inAdvance` (the next cycle's, the closing one corrected; the billing README).
//! A one-time price may say what it is charged for with `chargeEvent`: `activation` (the
//! default: once when the product starts) or `simSwap` (once per SIM swap of the line).
//! Money (`price: {unit, value}`) is an exact decimal read from the JSON text,
//! never through a float: at most [`MAX_MONEY_DIGITS`] significant digits, so a JSON
//! number shows it exactly both ways.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::error::{CatalogueError, Result};

/// Significant digits a money value may have (what a JSON number carries exactly).
pub const MAX_MONEY_DIGITS: u32 = 15;

/// Bytes a usage price's tariff plan source may have.
pub const MAX_PLAN_SOURCE_BYTES: usize = 512 * 1024;

/// The period a recurring price repeats over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChargePeriod {
    Day,
    Week,
    Month,
    Year,
}

impl ChargePeriod {
    fn parse(name: &str) -> Option<ChargePeriod> {
        match name {
            "day" => Some(ChargePeriod::Day),
            "week" => Some(ChargePeriod::Week),
            "month" => Some(ChargePeriod::Month),
            "year" => Some(ChargePeriod::Year),
            _ => None,
        }
    }
}

/// What a product offering price is, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceShape {
    /// `amount` every `length` `period`s.
    Recurring { amount: Decimal, unit: String, period: ChargePeriod, length: u32 },
    /// `amount` once.
    OneTime { amount: Decimal, unit: String },
    /// Usage priced by a tariff plan, from its TOML source (`file` names it in problems).
    Usage { source: String, file: String },
}

impl PriceShape {
    /// The `priceType` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            PriceShape::Recurring { .. } => "recurring",
            PriceShape::OneTime { .. } => "oneTime",
            PriceShape::Usage { .. } => "usage",
        }
    }

    /// The amount and currency, for the prices that have one.
    pub fn money(&self) -> Option<(Decimal, String)> {
        match self {
            PriceShape::Recurring { amount, unit, .. } | PriceShape::OneTime { amount, unit } => {
                Some((*amount, unit.clone()))
            }
            PriceShape::Usage { .. } => None,
        }
    }
}

/// A `Money` object (`{unit, value}`) at `field`: a three-letter upper-case currency and a
/// non-negative exact decimal. `value` may be a JSON number or a decimal string; the
/// document is rewritten with it as a number.
pub fn parse_money(field: &str, money: &mut Value) -> Result<(Decimal, String)> {
    let Value::Object(object) = money else {
        return Err(CatalogueError::invalid(field, "must be an object {unit, value}"));
    };
    let unit_field = format!("{field}.unit");
    let (unit, decimals) = match object.get("unit") {
        Some(Value::String(unit)) => match tollgate_billing::minor_units(&unit_field, unit) {
            Ok(decimals) => (unit.clone(), decimals),
            Err(_) => return Err(CatalogueError::invalid(unit_field, "must be an ISO 4217 currency code such as EUR")),
        },
        Some(_) => return Err(CatalogueError::invalid(unit_field, "must be an ISO 4217 currency code such as EUR")),
        None => return Err(CatalogueError::invalid(unit_field, "is required")),
    };
    let value_field = format!("{field}.value");
    let text = match object.get("value") {
        Some(Value::Number(number)) => number.to_string(),
        Some(Value::String(text)) => text.clone(),
        Some(_) => return Err(CatalogueError::invalid(value_field, "must be a number")),
        None => return Err(CatalogueError::invalid(value_field, "is required")),
    };
    let amount = Decimal::from_str_exact(&text)
        .or_else(|_| if text.contains(['e', 'E']) { Decimal::from_scientific(&text) } else { Decimal::from_str(&text) })
        .map_err(|_| CatalogueError::invalid(&value_field, format!("{text:?} is not a decimal amount")))?
        .normalize();
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(CatalogueError::invalid(value_field, format!("{text} is negative")));
    }
    let digits = tollgate_billing::significant_digits(amount);
    if digits > MAX_MONEY_DIGITS {
        return Err(CatalogueError::invalid(
            value_field,
            format!("{text} has more than {MAX_MONEY_DIGITS} significant digits"),
        ));
    }
    if amount.scale() > decimals {
        return Err(CatalogueError::invalid(value_field, format!("{text} has more decimals than {unit}'s {decimals}")));
    }
    // Shown as a JSON number: the shortest text that reads back as this value is its own.
    let shown = amount.to_string().parse::<f64>().ok().and_then(serde_json::Number::from_f64);
    let shown = shown.ok_or_else(|| CatalogueError::invalid(&value_field, format!("{text} is out of range")))?;
    object.insert("value".into(), Value::Number(shown));
    Ok((amount, unit))
}

fn text<'a>(object: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>> {
    match object.get(field) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(CatalogueError::invalid(field, "must be a string")),
    }
}

/// The price shape of a product offering price document.
pub(crate) fn shape(object: &mut Map<String, Value>) -> Result<PriceShape> {
    let price_type = text(object, "priceType")?
        .ok_or_else(|| CatalogueError::invalid("priceType", "is required: recurring, oneTime or usage"))?
        .to_owned();
    let period_type = text(object, "recurringChargePeriodType")?.map(str::to_owned);
    let length = match object.get("recurringChargePeriodLength") {
        None => None,
        Some(Value::Number(number)) => Some(
            number
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n <= 1000)
                .ok_or_else(|| CatalogueError::invalid("recurringChargePeriodLength", "must be 0 to 1000"))?,
        ),
        Some(_) => return Err(CatalogueError::invalid("recurringChargePeriodLength", "must be an integer")),
    };
    let money = match object.get_mut("price") {
        Some(money) => Some(parse_money("price", money)?),
        None => None,
    };
    let has_plan = object.contains_key("tariffPlan");
    match text(object, "chargeTiming")? {
        None => {}
        Some("inAdvance" | "inArrears") if price_type == "recurring" => {}
        Some("inAdvance" | "inArrears") => {
            return Err(CatalogueError::invalid("chargeTiming", "only a recurring price has one"));
        }
        Some(other) => {
            return Err(CatalogueError::invalid("chargeTiming", format!("{other:?} is not inAdvance or inArrears")));
        }
    }
    match text(object, "chargeEvent")? {
        None => {}
        Some("activation" | "simSwap") if price_type == "oneTime" => {}
        Some("activation" | "simSwap") => {
            return Err(CatalogueError::invalid("chargeEvent", "only a one-time price has one"));
        }
        Some(other) => {
            return Err(CatalogueError::invalid("chargeEvent", format!("{other:?} is not activation or simSwap")));
        }
    }
    match price_type.as_str() {
        "recurring" => {
            let period = period_type
                .as_deref()
                .ok_or_else(|| CatalogueError::invalid("recurringChargePeriodType", "a recurring price needs one"))?;
            let period = ChargePeriod::parse(period).ok_or_else(|| {
                CatalogueError::invalid(
                    "recurringChargePeriodType",
                    format!("{period:?} is not day, week, month or year"),
                )
            })?;
            let length = length.unwrap_or(1);
            if length == 0 {
                return Err(CatalogueError::invalid(
                    "recurringChargePeriodLength",
                    "a recurring price repeats: 1 or more",
                ));
            }
            let (amount, unit) =
                money.ok_or_else(|| CatalogueError::invalid("price", "a recurring price needs one"))?;
            if has_plan {
                return Err(CatalogueError::invalid("tariffPlan", "only a usage price has a tariff plan"));
            }
            Ok(PriceShape::Recurring { amount, unit, period, length })
        }
        "oneTime" | "usage" => {
            if period_type.is_some() {
                return Err(CatalogueError::invalid("recurringChargePeriodType", "only a recurring price has one"));
            }
            if length.is_some_and(|length| length != 0) {
                return Err(CatalogueError::invalid("recurringChargePeriodLength", "only a recurring price has one"));
            }
            if price_type == "oneTime" {
                let (amount, unit) =
                    money.ok_or_else(|| CatalogueError::invalid("price", "a one-time price needs one"))?;
                if has_plan {
                    return Err(CatalogueError::invalid("tariffPlan", "only a usage price has a tariff plan"));
                }
                return Ok(PriceShape::OneTime { amount, unit });
            }
            if money.is_some() {
                return Err(CatalogueError::invalid("price", "a usage price is priced by its tariff plan"));
            }
            let Some(Value::Object(plan)) = object.get("tariffPlan") else {
                return Err(CatalogueError::invalid(
                    "tariffPlan",
                    "a usage price needs {\"source\": the plan's TOML, \"file\": its name}",
                ));
            };
            let source = match plan.get("source") {
                Some(Value::String(source)) if !source.trim().is_empty() => source.clone(),
                _ => return Err(CatalogueError::invalid("tariffPlan.source", "must be the plan's TOML text")),
            };
            if source.len() > MAX_PLAN_SOURCE_BYTES {
                return Err(CatalogueError::invalid(
                    "tariffPlan.source",
                    format!("{} bytes, more than the {MAX_PLAN_SOURCE_BYTES} allowed", source.len()),
                ));
            }
            let file = match plan.get("file") {
                None => "plan.toml".to_owned(),
                Some(Value::String(file)) if !file.is_empty() && file.len() <= 200 => file.clone(),
                Some(_) => {
                    return Err(CatalogueError::invalid("tariffPlan.file", "must be a file name (1 to 200 bytes)"))
                }
            };
            Ok(PriceShape::Usage { source, file })
        }
        other => Err(CatalogueError::invalid("priceType", format!("{other:?} is not recurring, oneTime or usage"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn money(value: Value) -> Result<(Decimal, String)> {
        parse_money("price", &mut json!({"unit": "EUR", "value": value}))
    }

    #[test]
    fn money_is_read_exactly_from_numbers_and_strings() {
        assert_eq!(money(json!(9.99)).ok(), Some((Decimal::new(999, 2), "EUR".into())));
        assert_eq!(money(json!("0.10")).ok(), Some((Decimal::new(1, 1), "EUR".into())));
        assert_eq!(money(json!(0)).ok(), Some((Decimal::ZERO, "EUR".into())));
        assert_eq!(money(json!(1e3)).ok(), Some((Decimal::new(1000, 0), "EUR".into())));
        for bad in [json!(-1), json!("x"), json!(true), json!(1e300), json!("12345678901234567"), json!(null)] {
            assert!(money(bad.clone()).is_err(), "{bad} accepted");
        }
        assert!(parse_money("price", &mut json!({"unit": "eur", "value": 1})).is_err());
        // An ISO 4217 currency, in its minor units (they were not checked).
        for (unit, value) in [("ZZZ", json!(1)), ("XXX", json!(1)), ("JPY", json!(1.5)), ("EUR", json!(1e-12))] {
            let refused = parse_money("price", &mut json!({"unit": unit, "value": value}));
            assert!(refused.is_err(), "{unit} {value} accepted");
        }
        assert!(parse_money("price", &mut json!({"unit": "KWD", "value": 1.125})).is_ok());
    }

    #[test]
    fn each_price_type_has_its_shape() {
        let check = |mut doc: Value| match doc.as_object_mut() {
            Some(object) => shape(object).map_err(|e| e.to_string()),
            None => Err("not an object".into()),
        };
        let recurring = check(json!({"priceType": "recurring", "recurringChargePeriodType": "month",
            "price": {"unit": "EUR", "value": 10}}));
        assert!(matches!(recurring, Ok(PriceShape::Recurring { period: ChargePeriod::Month, length: 1, .. })));
        let advance = check(json!({"priceType": "recurring", "recurringChargePeriodType": "month",
            "chargeTiming": "inAdvance", "price": {"unit": "EUR", "value": 10}}));
        assert!(advance.is_ok(), "{advance:?}");
        assert!(check(json!({"priceType": "oneTime", "price": {"unit": "EUR", "value": 5}})).is_ok());
        assert!(check(json!({"priceType": "usage", "tariffPlan": {"source": "x = 1"}})).is_ok());
        for (doc, field) in [
            (json!({"priceType": "recurring", "price": {"unit": "EUR", "value": 1}}), "recurringChargePeriodType"),
            (
                json!({"priceType": "recurring", "recurringChargePeriodType": "fortnight",
                "price": {"unit": "EUR", "value": 1}}),
                "recurringChargePeriodType",
            ),
            (json!({"priceType": "oneTime"}), "price"),
            (json!({"priceType": "usage"}), "tariffPlan"),
            (
                json!({"priceType": "usage", "tariffPlan": {"source": "x"}, "price": {"unit": "EUR", "value": 1}}),
                "price",
            ),
            (json!({"priceType": "discount"}), "priceType"),
            (
                json!({"priceType": "recurring", "recurringChargePeriodType": "month", "chargeTiming": "upfront",
                "price": {"unit": "EUR", "value": 1}}),
                "chargeTiming",
            ),
            (
                json!({"priceType": "oneTime", "chargeTiming": "inAdvance", "price": {"unit": "EUR", "value": 1}}),
                "chargeTiming",
            ),
            (
                json!({"priceType": "oneTime", "chargeEvent": "renewal", "price": {"unit": "EUR", "value": 1}}),
                "chargeEvent",
            ),
            (
                json!({"priceType": "recurring", "recurringChargePeriodType": "month", "chargeEvent": "simSwap",
                "price": {"unit": "EUR", "value": 1}}),
                "chargeEvent",
            ),
            (json!({}), "priceType"),
        ] {
            let error = check(doc.clone()).expect_err("refused");
            assert!(error.starts_with(&format!("invalid {field}")), "{doc}: {error}");
        }
    }
}
