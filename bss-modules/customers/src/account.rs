//! A billing account document (TMF666 `BillingAccount`) checked, and built back from its
//! row. Kept: `name`, `accountType` (`prepaid`, `postpaid`, `hybrid`), `state` (`Active`
//! when created, then `Suspended` or `Closed`: [`crate::AccountState`]), `creditLimit`
//! (`{unit, value}`: the unit is the account's currency, the value exact money),
//! `relatedParty` (exactly one entry with `@referredType` `Customer`: the owner), and the
//! extensions `parentAccount` (`{id}`; `null` in a patch: no parent), `billCycleDay`
//! (1–28), `paymentTermsDays` (0–365), `taxProfileId`, and, read-only, `engineAccountId`.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use tollgate_store::BillingAccountRow;

use crate::engine::AccountType;
use crate::error::{CustomersError, Result};
use crate::lifecycle::AccountState;

/// Significant digits a credit limit may have (so its JSON number reads back exactly).
pub const MAX_MONEY_DIGITS: u32 = 15;
/// Decimal places a credit limit may have.
pub const MAX_MONEY_SCALE: u32 = 4;
/// Levels below a hierarchy's root an account may be (a root is at 0).
pub const MAX_DEPTH: i64 = 4;

const FIELDS: [&str; 15] = [
    "id",
    "href",
    "@type",
    "@baseType",
    "@schemaLocation",
    "name",
    "accountType",
    "state",
    "creditLimit",
    "relatedParty",
    "parentAccount",
    "billCycleDay",
    "paymentTermsDays",
    "taxProfileId",
    "engineAccountId",
];

/// What a valid billing account document says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidAccount {
    pub name: String,
    pub account_type: AccountType,
    pub currency: String,
    pub credit_limit: Decimal,
    pub customer_id: String,
    pub parent_id: Option<String>,
    pub bill_cycle_day: i64,
    pub payment_terms_days: i64,
    pub tax_profile_id: Option<String>,
}

fn integer(object: &Map<String, Value>, field: &str, low: i64, high: i64, default: i64) -> Result<i64> {
    match object.get(field) {
        None => Ok(default),
        Some(value) => value
            .as_i64()
            .filter(|n| (low..=high).contains(n))
            .ok_or_else(|| CustomersError::invalid(field, format!("must be an integer from {low} to {high}"))),
    }
}

/// The credit limit `{unit, value}`: an ISO 4217 code and a non-negative exact amount.
pub fn parse_credit_limit(value: &Value) -> Result<(Decimal, String)> {
    let Value::Object(money) = value else {
        return Err(CustomersError::invalid("creditLimit", "must be {unit, value}"));
    };
    if let Some(key) = money.keys().find(|key| *key != "unit" && *key != "value") {
        return Err(CustomersError::invalid(format!("creditLimit.{key}"), "is not a field of money"));
    }
    let (unit, decimals) = match money.get("unit") {
        Some(Value::String(unit)) => match tollgate_billing::minor_units("creditLimit.unit", unit) {
            Ok(decimals) => (unit.clone(), decimals),
            Err(_) => {
                return Err(CustomersError::invalid(
                    "creditLimit.unit",
                    "must be an ISO 4217 currency code such as EUR",
                ))
            }
        },
        _ => return Err(CustomersError::invalid("creditLimit.unit", "must be an ISO 4217 currency code such as EUR")),
    };
    let text = match money.get("value") {
        Some(Value::Number(number)) => number.to_string(),
        Some(Value::String(text)) => text.clone(),
        _ => return Err(CustomersError::invalid("creditLimit.value", "must be a number")),
    };
    let amount = Decimal::from_str_exact(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| CustomersError::invalid("creditLimit.value", format!("{text:?} is not a decimal amount")))?
        .normalize();
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(CustomersError::invalid("creditLimit.value", "must not be negative"));
    }
    // An amount of the currency: no finer than its minor unit (a JPY limit of 1.5 is
    // no amount of yen).
    if amount.scale() > decimals {
        return Err(CustomersError::invalid(
            "creditLimit.value",
            format!("{amount} has more decimals than {unit}'s {decimals}"),
        ));
    }
    let digits = tollgate_billing::significant_digits(amount);
    if digits > MAX_MONEY_DIGITS || amount.scale() > MAX_MONEY_SCALE {
        return Err(CustomersError::invalid(
            "creditLimit.value",
            format!("at most {MAX_MONEY_DIGITS} digits and {MAX_MONEY_SCALE} decimal places"),
        ));
    }
    Ok((amount.abs(), unit))
}

fn id_of<'a>(field: &str, value: &'a Value) -> Result<&'a str> {
    match value.get("id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 64 => Ok(id),
        _ => Err(CustomersError::invalid(format!("{field}.id"), "is required (1 to 64 characters)")),
    }
}

/// Checks a billing account document.
pub fn validate_account(doc: &Value) -> Result<ValidAccount> {
    let Value::Object(object) = doc else { return Err(CustomersError::invalid("body", "must be a JSON object")) };
    if let Some(field) = object.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err(CustomersError::invalid(field.clone(), "is not supported"));
    }
    if object.get("@type").is_some_and(|value| value != "BillingAccount") {
        return Err(CustomersError::invalid("@type", "must be BillingAccount"));
    }
    let name = match object.get("name") {
        Some(Value::String(name))
            if !name.trim().is_empty() && name.chars().count() <= 200 && !name.chars().any(char::is_control) =>
        {
            name.clone()
        }
        None => return Err(CustomersError::invalid("name", "is required")),
        Some(_) => return Err(CustomersError::invalid("name", "must be 1 to 200 characters, no control characters")),
    };
    let account_type = match object.get("accountType") {
        None => AccountType::Postpaid,
        Some(value) => value
            .as_str()
            .and_then(AccountType::parse)
            .ok_or_else(|| CustomersError::invalid("accountType", "must be prepaid, postpaid or hybrid"))?,
    };
    if object.get("state").is_some_and(|state| state.as_str().and_then(AccountState::parse).is_none()) {
        return Err(CustomersError::invalid("state", "must be Active, Suspended or Closed"));
    }
    let (credit_limit, currency) = match object.get("creditLimit") {
        Some(value) => parse_credit_limit(value)?,
        None => return Err(CustomersError::invalid("creditLimit", "is required: its unit is the account's currency")),
    };
    if account_type == AccountType::Prepaid && !credit_limit.is_zero() {
        return Err(CustomersError::invalid("creditLimit.value", "a prepaid account's credit limit is 0"));
    }
    let Some(Value::Array(parties)) = object.get("relatedParty") else {
        return Err(CustomersError::invalid("relatedParty", "is required: the customer the account belongs to"));
    };
    let mut customers =
        parties.iter().enumerate().filter(|(_, party)| party.get("@referredType") == Some(&json!("Customer")));
    let customer_id = match (customers.next(), customers.next()) {
        (Some((index, party)), None) => id_of(&format!("relatedParty[{index}]"), party)?.to_owned(),
        _ => {
            return Err(CustomersError::invalid(
                "relatedParty",
                "must name exactly one party with @referredType Customer",
            ))
        }
    };
    let parent_id = match object.get("parentAccount") {
        None | Some(Value::Null) => None,
        Some(parent) => Some(id_of("parentAccount", parent)?.to_owned()),
    };
    let tax_profile_id = match object.get("taxProfileId") {
        None => None,
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 64 => Some(id.clone()),
        Some(_) => return Err(CustomersError::invalid("taxProfileId", "must be 1 to 64 characters")),
    };
    Ok(ValidAccount {
        name,
        account_type,
        currency,
        credit_limit,
        customer_id,
        parent_id,
        bill_cycle_day: integer(object, "billCycleDay", 1, 28, 1)?,
        payment_terms_days: integer(object, "paymentTermsDays", 0, 365, 30)?,
        tax_profile_id,
    })
}

/// The document the API shows for a row. Money is a JSON number as TMF666 has it; with at
/// most [`MAX_MONEY_DIGITS`] digits it reads back exactly.
pub fn account_doc(row: &BillingAccountRow, account_root: &str, customer_root: &str) -> Value {
    let value = Value::from_str(&row.credit_limit.to_string()).unwrap_or(Value::Null);
    let mut doc = json!({
        "id": row.id,
        "href": format!("{account_root}/billingAccount/{}", row.id),
        "@type": "BillingAccount",
        "name": row.name,
        "accountType": row.account_type,
        "state": row.state,
        "creditLimit": {"unit": row.currency, "value": value},
        "relatedParty": [{
            "id": row.customer_id,
            "href": format!("{customer_root}/customer/{}", row.customer_id),
            "role": "Customer",
            "@referredType": "Customer",
        }],
        "billCycleDay": row.bill_cycle_day,
        "paymentTermsDays": row.payment_terms_days,
        "engineAccountId": row.engine_account_id,
    });
    if let Value::Object(object) = &mut doc {
        if let Some(parent) = &row.parent_id {
            object.insert(
                "parentAccount".into(),
                json!({"id": parent, "href": format!("{account_root}/billingAccount/{parent}")}),
            );
        }
        if let Some(tax) = &row.tax_profile_id {
            object.insert("taxProfileId".into(), Value::String(tax.clone()));
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::parse_credit_limit;

    /// Regression: a JPY credit limit of 1.123 was taken (the catalogue refuses such an
    /// amount); an amount finer than its currency's minor unit is refused.
    #[test]
    fn a_credit_limit_is_an_amount_of_its_currency() {
        let limit = |unit: &str, value: &str| parse_credit_limit(&json!({"unit": unit, "value": value}));
        assert_eq!(limit("JPY", "1000").expect("yen").0.to_string(), "1000");
        assert_eq!(limit("EUR", "10.50").expect("euro").0.to_string(), "10.5");
        assert_eq!(limit("KWD", "1.125").expect("dinar").0.to_string(), "1.125");
        for (unit, value) in [("JPY", "1.5"), ("EUR", "0.001"), ("KWD", "1.0001")] {
            let refused = limit(unit, value).expect_err("finer than the minor unit");
            assert!(refused.to_string().contains("creditLimit.value"), "{refused}");
        }
    }
}
