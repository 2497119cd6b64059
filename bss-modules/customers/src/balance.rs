//! Prepaid balances in the shape of TM Forum's TMF654 (Prepay Balance Management v4): a
//! top-up (`TopupBalance_Create`) or an adjustment (`AdjustBalance_Create`) checked from
//! the request's bytes, and the documents shown for a request, a bucket and an account's
//! accumulated balance. The amount is read from the JSON text itself, never through a
//! float: a plain decimal (`12.50`, as a JSON number or string), at most
//! [`MAX_MONEY_DIGITS`] significant digits and [`MAX_MONEY_SCALE`] decimals; an exponent
//! (`1e3`) is refused naming the field. The subset kept is listed in the API's README.

use std::collections::BTreeMap;
use std::str::FromStr;

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tollgate_store::{BalanceActionKind, BalanceActionRow, BalanceActionStatus, BillingAccountRow};

use crate::account::{MAX_MONEY_DIGITS, MAX_MONEY_SCALE};
use crate::error::{CustomersError, Result};
use crate::port::{AllowanceBucket, EngineAccount, MoneyBucket};

/// Where TMF654 hrefs start.
pub const PREPAY_BASE_PATH: &str = "/tmf-api/prepayBalanceManagement/v4";

/// Characters a request id may have at most (and which: letters, digits, `.`, `_`, `:`, `-`).
pub const MAX_REQUEST_ID_CHARS: usize = 64;
/// Bytes a description or reason may have.
pub const MAX_NOTE_BYTES: usize = 500;

const COMMON_FIELDS: [&str; 10] = [
    "id",
    "@type",
    "@baseType",
    "@schemaLocation",
    "amount",
    "partyAccount",
    "bucket",
    "usageType",
    "channel",
    "description",
];

/// A top-up or adjustment request as the server understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceRequest {
    pub kind: BalanceActionKind,
    /// The client's id: the same id with the same request is a repeat.
    pub id: String,
    pub account_id: String,
    /// Positive for a top-up; signed, not zero, for an adjustment.
    pub amount: Decimal,
    pub units: String,
    /// The adjustment's reason (required there), or the top-up's optional one.
    pub reason: Option<String>,
    pub voucher: Option<String>,
    /// Everything kept, normalised (a repeat must be equal to it).
    pub normalised: Value,
}

/// The TMF654 resource name of a kind (`topupBalance`, `adjustBalance`).
pub(crate) fn resource_of(kind: BalanceActionKind) -> &'static str {
    match kind {
        BalanceActionKind::TopUp => "topupBalance",
        BalanceActionKind::Adjust => "adjustBalance",
    }
}

fn type_of(kind: BalanceActionKind) -> &'static str {
    match kind {
        BalanceActionKind::TopUp => "TopupBalance",
        BalanceActionKind::Adjust => "AdjustBalance",
    }
}

/// The id of a bucket in TMF654 documents: `{billingAccountId}-{engineBucketId}`.
pub fn bucket_id(account_id: &str, bucket: u32) -> String {
    format!("{account_id}-{bucket}")
}

/// A bucket id's billing account and engine bucket, if it is one.
pub fn parse_bucket_id(id: &str) -> Option<(&str, u32)> {
    let (account, bucket) = id.rsplit_once('-')?;
    (!account.is_empty() && bucket.bytes().all(|b| b.is_ascii_digit())).then_some(())?;
    Some((account, bucket.parse().ok()?))
}

/// Money as TMF shows it, a JSON number; one with more digits than a JSON number carries
/// exactly is shown as a string instead (never rounded).
pub fn money_json(amount: Decimal) -> Value {
    let digits = tollgate_billing::significant_digits(amount);
    if digits <= MAX_MONEY_DIGITS {
        if let Ok(number) = Value::from_str(&amount.normalize().to_string()) {
            return number;
        }
    }
    Value::String(amount.to_string())
}

fn quantity(amount: Decimal, units: &str) -> Value {
    json!({"amount": money_json(amount), "units": units})
}

/// The text of `amount.amount` (or `amount.value`) as the client wrote it, and which of
/// the two it was; `None` when the body does not have that shape (the document's
/// validation then says what is wrong).
fn raw_amount(body: &[u8]) -> Option<(&'static str, String)> {
    let top: BTreeMap<String, &RawValue> = serde_json::from_slice(body).ok()?;
    let amount: BTreeMap<String, &RawValue> = serde_json::from_str(top.get("amount")?.get()).ok()?;
    let (field, raw) = match (amount.get("amount"), amount.get("value")) {
        (Some(raw), None) => ("amount.amount", raw),
        (None, Some(raw)) => ("amount.value", raw),
        _ => return None,
    };
    let text = raw.get().trim();
    if text.starts_with('"') {
        Some((field, serde_json::from_str::<String>(text).ok()?))
    } else {
        Some((field, text.to_owned()))
    }
}

/// Whether `text` is a plain decimal: an optional `-`, digits (no leading zero), an
/// optional point and decimals.
fn plain_decimal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    let whole_ok =
        !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()) && (whole == "0" || !whole.starts_with('0'));
    let fraction_ok = fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    whole_ok && fraction_ok
}

fn parse_amount(field: &str, text: &str) -> Result<Decimal> {
    if !plain_decimal(text) {
        return Err(CustomersError::invalid(
            field,
            format!("{text:?} is not a plain decimal amount (digits, optionally a point and decimals; no exponent)"),
        ));
    }
    let amount = Decimal::from_str_exact(text)
        .map_err(|_| CustomersError::invalid(field, format!("{text} is out of range")))?
        .normalize();
    let digits = tollgate_billing::significant_digits(amount);
    if digits > MAX_MONEY_DIGITS || amount.scale() > MAX_MONEY_SCALE {
        return Err(CustomersError::invalid(
            field,
            format!("{text}: at most {MAX_MONEY_DIGITS} significant digits and {MAX_MONEY_SCALE} decimal places"),
        ));
    }
    Ok(amount)
}

fn text_field(object: &Map<String, Value>, field: &str, max_bytes: usize) -> Result<Option<String>> {
    match object.get(field) {
        None => Ok(None),
        Some(Value::String(text)) if !text.trim().is_empty() && text.len() <= max_bytes => Ok(Some(text.clone())),
        Some(_) => Err(CustomersError::invalid(field, format!("must be text of 1 to {max_bytes} bytes"))),
    }
}

fn reference_id(value: &Value, field: &str) -> Result<String> {
    match value.get("id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 64 => Ok(id.clone()),
        _ => Err(CustomersError::invalid(format!("{field}.id"), "is required (1 to 64 characters)")),
    }
}

/// Checks a top-up (`TopupBalance_Create`) or adjustment (`AdjustBalance_Create`) body.
pub fn parse_balance_request(kind: BalanceActionKind, body: &[u8]) -> Result<BalanceRequest> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|error| CustomersError::invalid("body", format!("not JSON: {error}")))?;
    let Value::Object(object) = &doc else { return Err(CustomersError::invalid("body", "must be a JSON object")) };
    let extra: &[&str] = match kind {
        BalanceActionKind::TopUp => &["reason", "voucher", "isAutoTopup"],
        BalanceActionKind::Adjust => &["reason", "adjustType"],
    };
    if let Some(field) =
        object.keys().find(|key| !COMMON_FIELDS.contains(&key.as_str()) && !extra.contains(&key.as_str()))
    {
        return Err(CustomersError::invalid(field.clone(), "is not supported"));
    }
    if object.get("@type").is_some_and(|value| value != type_of(kind)) {
        return Err(CustomersError::invalid("@type", format!("must be {}", type_of(kind))));
    }
    let id = match object.get("id") {
        Some(Value::String(id))
            if !id.is_empty()
                && id.chars().count() <= MAX_REQUEST_ID_CHARS
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b)) =>
        {
            id.clone()
        }
        _ => {
            return Err(CustomersError::invalid(
                "id",
                format!(
                    "is required: the client's request id, 1 to {MAX_REQUEST_ID_CHARS} letters, digits, '.', ':', '_' or '-'"
                ),
            ))
        }
    };
    let account_id = match (object.get("partyAccount"), object.get("bucket")) {
        (Some(party), bucket) => {
            let account = reference_id(party, "partyAccount")?;
            if let Some(bucket) = bucket {
                let bucket = reference_id(bucket, "bucket")?;
                if parse_bucket_id(&bucket) != Some((account.as_str(), 0)) {
                    return Err(CustomersError::invalid(
                        "bucket.id",
                        format!("must be the account's main money bucket, {}", bucket_id(&account, 0)),
                    ));
                }
            }
            account
        }
        (None, Some(bucket)) => {
            let bucket = reference_id(bucket, "bucket")?;
            match parse_bucket_id(&bucket) {
                Some((account, 0)) => account.to_owned(),
                _ => {
                    return Err(CustomersError::invalid(
                        "bucket.id",
                        "must be an account's main money bucket, {account}-0",
                    ))
                }
            }
        }
        (None, None) => {
            return Err(CustomersError::invalid(
                "partyAccount",
                "is required: the billing account whose balance changes",
            ))
        }
    };
    if object.get("usageType").is_some_and(|value| value != "monetary") {
        return Err(CustomersError::invalid("usageType", "must be monetary (allowances are granted by plans)"));
    }
    if object.get("isAutoTopup").is_some_and(|value| value != &Value::Bool(false)) {
        return Err(CustomersError::invalid("isAutoTopup", "recurring top-ups are not offered"));
    }
    if object.get("adjustType").is_some_and(|value| value != "oneTime") {
        return Err(CustomersError::invalid("adjustType", "must be oneTime"));
    }
    let Some(Value::Object(money)) = object.get("amount") else {
        return Err(CustomersError::invalid("amount", "is required: {amount, units}"));
    };
    if let Some(key) = money.keys().find(|key| !["amount", "value", "units"].contains(&key.as_str())) {
        return Err(CustomersError::invalid(format!("amount.{key}"), "is not a field of a quantity"));
    }
    let units = match money.get("units") {
        Some(Value::String(unit)) if unit.len() == 3 && unit.bytes().all(|b| b.is_ascii_uppercase()) => unit.clone(),
        _ => return Err(CustomersError::invalid("amount.units", "must be an ISO 4217 currency code such as EUR")),
    };
    if money.contains_key("amount") && money.contains_key("value") {
        return Err(CustomersError::invalid("amount.value", "give amount.amount or amount.value, not both"));
    }
    let (field, text) = match (money.get("amount"), money.get("value")) {
        (Some(Value::Number(_) | Value::String(_)), None) | (None, Some(Value::Number(_) | Value::String(_))) => {
            raw_amount(body).ok_or_else(|| CustomersError::invalid("amount.amount", "must be a decimal amount"))?
        }
        (_, Some(_)) => return Err(CustomersError::invalid("amount.value", "must be a decimal amount")),
        _ => return Err(CustomersError::invalid("amount.amount", "is required: a decimal amount")),
    };
    let amount = parse_amount(field, &text)?;
    match kind {
        BalanceActionKind::TopUp if amount <= Decimal::ZERO => {
            return Err(CustomersError::invalid(field, format!("{text}: a top-up must be positive")))
        }
        BalanceActionKind::Adjust if amount.is_zero() => {
            return Err(CustomersError::invalid(field, "an adjustment is not zero"))
        }
        _ => {}
    }
    let reason = text_field(object, "reason", MAX_NOTE_BYTES)?;
    if kind == BalanceActionKind::Adjust && reason.is_none() {
        return Err(CustomersError::invalid("reason", "is required: why the balance is adjusted"));
    }
    let description = text_field(object, "description", MAX_NOTE_BYTES)?;
    let voucher = text_field(object, "voucher", 64)?;
    let channel = match object.get("channel") {
        None => None,
        Some(Value::Object(channel)) => {
            if let Some(key) =
                channel.keys().find(|key| !["id", "name", "href", "@type", "@referredType"].contains(&key.as_str()))
            {
                return Err(CustomersError::invalid(format!("channel.{key}"), "is not a field of a channel reference"));
            }
            for field in ["id", "name", "href", "@type", "@referredType"] {
                text_field(channel, field, 200).map_err(|_| {
                    CustomersError::invalid(format!("channel.{field}"), "must be text of 1 to 200 bytes")
                })?;
            }
            Some(Value::Object(channel.clone()))
        }
        Some(_) => return Err(CustomersError::invalid("channel", "must be a reference {id, name}")),
    };
    let mut normalised = json!({
        "id": id,
        "partyAccount": account_id,
        "amount": amount.to_string(),
        "units": units,
    });
    for (name, value) in [
        ("channel", channel),
        ("description", description.map(Value::String)),
        ("reason", reason.clone().map(Value::String)),
        ("voucher", voucher.clone().map(Value::String)),
    ] {
        if let Some(value) = value {
            normalised[name] = value;
        }
    }
    Ok(BalanceRequest { kind, id, account_id, amount, units, reason, voucher, normalised })
}

fn instant(at: Timestamp) -> Value {
    Value::String(at.to_string())
}

fn valid_for(from_s: i64, until_s: i64) -> Option<Value> {
    let start = Timestamp::from_second(from_s).ok().filter(|at| *at > Timestamp::UNIX_EPOCH);
    let end = Timestamp::from_second(until_s).ok().filter(|at| *at < Timestamp::MAX);
    let mut period = Map::new();
    if let Some(start) = start {
        period.insert("startDateTime".into(), instant(start));
    }
    if let Some(end) = end {
        period.insert("endDateTime".into(), instant(end));
    }
    (!period.is_empty()).then_some(Value::Object(period))
}

/// The documents' paths: where TMF654, billing account and customer hrefs start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Roots {
    pub(crate) prepay: String,
    pub(crate) account: String,
    pub(crate) customer: String,
}

impl Roots {
    fn account_ref(&self, account: &str, name: Option<&str>) -> Value {
        let mut reference = json!({
            "id": account,
            "href": format!("{}/billingAccount/{account}", self.account),
            "@referredType": "BillingAccount",
        });
        if let Some(name) = name {
            reference["name"] = Value::String(name.to_owned());
        }
        reference
    }

    fn bucket_ref(&self, account: &str, bucket: u32, name: &str) -> Value {
        let id = bucket_id(account, bucket);
        json!({"id": id, "href": format!("{}/bucket/{id}", self.prepay), "name": name})
    }

    /// A top-up or adjustment as TMF654 shows it.
    pub(crate) fn action_doc(&self, row: &BalanceActionRow) -> Value {
        let resource = resource_of(row.kind);
        let mut doc = json!({
            "id": row.id,
            "href": format!("{}/{resource}/{}", self.prepay, row.id),
            "@type": type_of(row.kind),
            "status": row.status.as_str(),
            "requestedDate": instant(row.requested_at),
            "amount": quantity(row.amount, &row.currency),
            "usageType": "monetary",
            "partyAccount": self.account_ref(&row.billing_account_id, None),
            "bucket": self.bucket_ref(&row.billing_account_id, 0, "main"),
        });
        if row.kind == BalanceActionKind::Adjust {
            doc["adjustType"] = json!("oneTime");
        }
        for field in ["channel", "description", "reason", "voucher"] {
            if let Some(value) = row.request.get(field) {
                doc[field] = value.clone();
            }
        }
        if let Some(at) = row.confirmed_at {
            doc["confirmationDate"] = instant(at);
        }
        match row.status {
            BalanceActionStatus::Completed => {
                if let Some(after) = row.balance_after {
                    doc["balanceAfter"] = quantity(after, &row.currency);
                }
            }
            BalanceActionStatus::Failed => {
                doc["failureReason"] = json!(row.failure_reason.as_deref().unwrap_or("refused by the engine"));
            }
            BalanceActionStatus::Created => {}
        }
        doc
    }

    fn money_bucket(
        &self,
        account: &BillingAccountRow,
        engine: &EngineAccount,
        bucket: &MoneyBucket,
        now: Timestamp,
    ) -> Value {
        let name = if bucket.id == 0 { "main".to_owned() } else { format!("credit {}", bucket.id) };
        let mut doc = self.bucket_ref(&account.id, bucket.id, &name);
        doc["@type"] = json!("Bucket");
        doc["usageType"] = json!("monetary");
        doc["isShared"] = json!(true);
        doc["description"] = json!(if bucket.id == 0 {
            "the account's main money balance, shared by its subscriptions"
        } else {
            "money spendable only within its validity (a bonus, promotional credit)"
        });
        doc["remainingValue"] = quantity(bucket.balance, &engine.currency);
        doc["reservedValue"] = quantity(bucket.reserved, &engine.currency);
        doc["status"] = json!(status(engine, bucket.valid_until_s, now));
        doc["partyAccount"] = self.account_ref(&account.id, Some(&account.name));
        if let Some(period) = valid_for(bucket.valid_from_s, bucket.valid_until_s) {
            doc["validFor"] = period;
        }
        doc
    }

    fn allowance_bucket(
        &self,
        account: &BillingAccountRow,
        engine: &EngineAccount,
        bucket: &AllowanceBucket,
        now: Timestamp,
    ) -> Value {
        let mut doc = self.bucket_ref(&account.id, bucket.id, &bucket.name);
        doc["@type"] = json!("Bucket");
        doc["usageType"] = json!(match bucket.unit.as_str() {
            "seconds" => "voice",
            "bytes" => "data",
            _ => "other",
        });
        doc["isShared"] = json!(false);
        doc["description"] = json!(format!(
            "allowance {} of subscription {} for {} ({} granted per period)",
            bucket.name, bucket.subscription, bucket.service, bucket.granted
        ));
        doc["remainingValue"] = json!({"amount": bucket.remaining, "units": bucket.unit});
        doc["reservedValue"] = json!({"amount": bucket.reserved, "units": bucket.unit});
        doc["status"] = json!(status(engine, bucket.valid_until_s, now));
        doc["partyAccount"] = self.account_ref(&account.id, Some(&account.name));
        doc["subscriptionId"] = json!(bucket.subscription);
        if let Some(period) = valid_for(bucket.valid_from_s, bucket.valid_until_s) {
            doc["validFor"] = period;
        }
        doc
    }

    /// An account's buckets as TMF654 shows them: money first, then allowances.
    pub(crate) fn buckets(&self, account: &BillingAccountRow, engine: &EngineAccount, now: Timestamp) -> Vec<Value> {
        let money = engine.money.iter().map(|bucket| self.money_bucket(account, engine, bucket, now));
        let units = engine.allowances.iter().map(|bucket| self.allowance_bucket(account, engine, bucket, now));
        money.chain(units).collect()
    }

    /// An account's accumulated balance (TMF654 `AccumulatedBalance`): its money buckets
    /// together, with what is available and reserved and its credit limit as extensions.
    pub(crate) fn accumulated(&self, account: &BillingAccountRow, engine: &EngineAccount) -> Value {
        let buckets: Vec<Value> = engine
            .money
            .iter()
            .map(|bucket| self.bucket_ref(&account.id, bucket.id, if bucket.id == 0 { "main" } else { "credit" }))
            .collect();
        json!({
            "id": account.id,
            "href": format!("{}/accumulatedBalance/{}", self.prepay, account.id),
            "@type": "AccumulatedBalance",
            "name": account.name,
            "description": "the account's money buckets together, as the charging engine holds them",
            "totalBalance": quantity(engine.balance, &engine.currency),
            "availableBalance": quantity(engine.available, &engine.currency),
            "reservedBalance": quantity(engine.reserved, &engine.currency),
            "creditLimit": quantity(engine.credit_limit, &engine.currency),
            "accountType": engine.account_type.as_str(),
            "bucket": buckets,
            "partyAccount": self.account_ref(&account.id, Some(&account.name)),
            "relatedParty": [{
                "id": account.customer_id,
                "href": format!("{}/customer/{}", self.customer, account.customer_id),
                "role": "Customer",
                "@referredType": "Customer",
            }],
        })
    }
}

fn status(engine: &EngineAccount, valid_until_s: i64, now: Timestamp) -> &'static str {
    if engine.closed || valid_until_s <= now.as_second() {
        "expired"
    } else if engine.suspended {
        "suspended"
    } else {
        "active"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: BalanceActionKind, body: Value) -> std::result::Result<BalanceRequest, (String, String)> {
        parse_balance_request(kind, body.to_string().as_bytes()).map_err(|error| match error {
            CustomersError::Invalid { field, reason } => (field, reason),
            other => panic!("{other:?}"),
        })
    }

    fn topup(amount: Value) -> Value {
        json!({"id": "t-1", "partyAccount": {"id": "a1"}, "amount": amount})
    }

    #[test]
    fn amounts_are_exact_decimals_and_refusals_name_the_field() {
        let cases: [(Value, Option<&str>, &str); 12] = [
            (json!({"amount": 10.5, "units": "EUR"}), None, "10.5"),
            (json!({"amount": "0.0001", "units": "EUR"}), None, "0.0001"),
            (json!({"value": "12.30", "units": "EUR"}), None, "12.3"),
            (json!({"amount": 123_456_789_012_345_u64, "units": "EUR"}), None, "123456789012345"),
            (json!({"amount": "+5", "units": "EUR"}), Some("amount.amount"), "plain decimal"),
            (json!({"amount": "1e3", "units": "EUR"}), Some("amount.amount"), "plain decimal"),
            (json!({"amount": -5, "units": "EUR"}), Some("amount.amount"), "positive"),
            (json!({"amount": 0, "units": "EUR"}), Some("amount.amount"), "positive"),
            (json!({"amount": "1234567890123456", "units": "EUR"}), Some("amount.amount"), "15 significant"),
            (json!({"amount": "0.00001", "units": "EUR"}), Some("amount.amount"), "4 decimal"),
            (json!({"amount": 5, "units": "euro"}), Some("amount.units"), "ISO 4217"),
            (json!({"amount": 5, "value": 5, "units": "EUR"}), Some("amount.value"), "not both"),
        ];
        for (amount, refused, expected) in cases {
            match (check(BalanceActionKind::TopUp, topup(amount.clone())), refused) {
                (Ok(request), None) => assert_eq!(request.amount.to_string(), expected, "{amount}"),
                (Err((field, reason)), Some(named)) => {
                    assert_eq!(field, named, "{amount}: {reason}");
                    assert!(reason.contains(expected), "{amount}: {reason}");
                }
                (other, _) => panic!("{amount}: {other:?}"),
            }
        }
        // A float-looking number written in the body with an exponent is refused even
        // though it parses as a whole number.
        let bodies: [(&[u8], &str); 3] = [
            (
                br#"{"id": "t-2", "partyAccount": {"id": "a1"}, "amount": {"amount": 1E3, "units": "EUR"}}"#,
                "amount.amount",
            ),
            (
                br#"{"id": "t-2", "partyAccount": {"id": "a1"}, "amount": {"value": 1e3, "units": "EUR"}}"#,
                "amount.value",
            ),
            (br#"{"id": "t-2", "partyAccount": {"id": "a1"}, "amount": {"amount": 010, "units": "EUR"}}"#, "body"),
        ];
        for (body, named) in bodies {
            match parse_balance_request(BalanceActionKind::TopUp, body) {
                Err(CustomersError::Invalid { field, .. }) => assert_eq!(field, named),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn an_adjustment_is_signed_and_needs_a_reason() {
        let adjust = |amount: Value, reason: Option<&str>| {
            let mut body =
                json!({"id": "a-1", "partyAccount": {"id": "a1"}, "amount": {"amount": amount, "units": "EUR"}});
            if let Some(reason) = reason {
                body["reason"] = json!(reason);
            }
            check(BalanceActionKind::Adjust, body)
        };
        assert_eq!(adjust(json!("-2.5"), Some("goodwill")).expect("valid").amount.to_string(), "-2.5");
        assert_eq!(adjust(json!(-2.5), None).expect_err("no reason").0, "reason");
        assert_eq!(adjust(json!(0), Some("x")).expect_err("zero").0, "amount.amount");
    }

    #[test]
    fn the_request_shape_is_checked_field_by_field() {
        let base = || json!({"id": "t-1", "partyAccount": {"id": "a1"}, "amount": {"amount": 1, "units": "EUR"}});
        let cases: [(&str, Value, &str); 8] = [
            ("id", json!("has space"), "id"),
            ("usageType", json!("data"), "usageType"),
            ("isAutoTopup", json!(true), "isAutoTopup"),
            ("bucket", json!({"id": "a1-3"}), "bucket.id"),
            ("channel", json!({"id": "web", "colour": "red"}), "channel.colour"),
            ("surprise", json!(1), "surprise"),
            ("@type", json!("AdjustBalance"), "@type"),
            ("partyAccount", json!({"name": "x"}), "partyAccount.id"),
        ];
        for (field, value, named) in cases {
            let mut body = base();
            body[field] = value;
            assert_eq!(check(BalanceActionKind::TopUp, body).expect_err(field).0, named);
        }
        let mut by_bucket = base();
        by_bucket.as_object_mut().expect("object").remove("partyAccount");
        by_bucket["bucket"] = json!({"id": "a1-0"});
        assert_eq!(check(BalanceActionKind::TopUp, by_bucket).expect("valid").account_id, "a1");
        // The same request written differently is the same request.
        let mut other = base();
        other["amount"] = json!({"value": "1.00", "units": "EUR"});
        assert_eq!(
            check(BalanceActionKind::TopUp, other).expect("valid").normalised,
            check(BalanceActionKind::TopUp, base()).expect("valid").normalised
        );
    }

    #[test]
    fn bucket_ids_name_the_account_and_the_engine_bucket() {
        assert_eq!(parse_bucket_id(&bucket_id("9f00", 12)), Some(("9f00", 12)));
        assert_eq!(parse_bucket_id("9f00"), None);
        assert_eq!(parse_bucket_id("-3"), None);
        assert_eq!(parse_bucket_id("a-x"), None);
        assert_eq!(money_json(Decimal::from_str("10.50").expect("decimal")), json!(10.5));
        let long = Decimal::from_str("1234567890123456.5").expect("decimal");
        assert_eq!(money_json(long), json!("1234567890123456.5"));
    }
}
