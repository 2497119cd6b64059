//! Discounts and credits a bill run applies (issue 18), recorded from the CLI (`tollgate
//! bill-run discount|credit`) or the API (`/tmf-api/billing/v1/discount` and `/credit`)
//! through the same functions: checked as the bill run will take them (a percentage above
//! 0 and at most 100, an amount in its currency's minor units, a validity of whole days
//! that ends after it starts), the billing account checked to exist (a hierarchy's
//! discount on its root, a product's on the account the product is billed to), written and audited
//! in one transaction. A taken id is the store's `Conflict`.
//!
//! Given, a discount's end can be moved ([`end_discount`]: withdrawn from a day on, or
//! its end changed) and a credit's amount changed, never below what invoices used of it
//! ([`change_credit`]: its unused rest taken back). Invoices made final keep what they
//! took; the change reaches the invoices drafted after it. Each change is checked as a
//! new one is, made on the version the caller read (the store's `StaleVersion` if it
//! moved since) and audited with the row before and after.

use jiff::Timestamp;
use serde_json::{json, Value};
use tollgate_billing::{DateSpan, Discount, DiscountScope, DiscountValue};
use tollgate_store::{AuditRecord, CreditRow, DiscountRow, Store, Tx, Version, Versioned};

use crate::error::{ReceivablesError, Result};

/// The bill run's discount for a stored one; a row that does not make one is refused,
/// naming the field.
pub fn discount_of(row: &DiscountRow) -> Result<Discount> {
    let scope = match (row.scope.as_str(), &row.product_id) {
        ("product", Some(product_id)) => DiscountScope::Product { product_id: product_id.clone() },
        ("product", None) => return Err(ReceivablesError::invalid("product", "a product discount names its product")),
        ("account", _) => DiscountScope::Account,
        ("hierarchy", _) => DiscountScope::Hierarchy,
        (other, _) => {
            return Err(ReceivablesError::invalid("scope", format!("{other:?} is not product, account or hierarchy")))
        }
    };
    let value = match (&row.percent, &row.amount) {
        (Some(percent), None) => DiscountValue::Percent(*percent),
        (None, Some((amount, currency))) => DiscountValue::Fixed { amount: *amount, currency: currency.clone() },
        (Some(_), Some(_)) => {
            return Err(ReceivablesError::invalid("percent", "a discount is a percentage or an amount, not both"))
        }
        (None, None) => return Err(ReceivablesError::invalid("percent", "a discount is a percentage or an amount")),
    };
    let day = |field: &str, text: &str| {
        text.parse::<jiff::civil::Date>()
            .map_err(|error| ReceivablesError::invalid(field, format!("{text:?} is not a day, YYYY-MM-DD: {error}")))
    };
    let until = match row.valid_until.as_deref() {
        Some(text) => day("validUntil", text)?,
        None => jiff::civil::Date::MAX,
    };
    Ok(Discount {
        id: row.id.clone(),
        description: row.description.clone(),
        charge_type: row.charge_type.clone(),
        scope,
        value,
        valid: DateSpan::new("valid", day("validFrom", &row.valid_from)?, until)?,
    })
}

/// A discount as the CLI prints it and the API answers it.
pub fn discount_doc(row: &DiscountRow) -> Value {
    json!({"id": row.id, "billingAccount": row.billing_account_id, "scope": row.scope, "product": row.product_id,
        "percent": row.percent.map(|p| p.to_string()), "amount": row.amount.as_ref().map(|(a, _)| a.to_string()),
        "currency": row.amount.as_ref().map(|(_, c)| c), "validFrom": row.valid_from, "validUntil": row.valid_until,
        "description": row.description, "chargeType": row.charge_type})
}

/// A credit as the CLI prints it and the API answers it (with what invoices used of it).
pub fn credit_doc(row: &CreditRow) -> Value {
    json!({"id": row.id, "billingAccount": row.billing_account_id, "amount": row.amount.to_string(),
        "currency": row.currency, "used": row.used.to_string(), "description": row.description,
        "chargeType": row.charge_type})
}

/// Records `row` (checked as the bill run takes it) and its audit record, by `actor`; its
/// document and whether it was made now. The same discount given again under its id (a
/// request repeated) is answered with the one recorded, nothing written; another under a
/// taken id is the store's `Conflict`.
pub async fn add_discount(store: &Store, actor: &str, row: &DiscountRow, now: Timestamp) -> Result<(Value, bool)> {
    if let Some(found) = store.discount(&row.id).await? {
        if found.value == (DiscountRow { created_at: found.value.created_at, ..row.clone() }) {
            return Ok((discount_doc(&found.value), false));
        }
    }
    discount_of(row).and_then(|discount| Ok(discount.validate("discount")?)).map_err(named_as_given)?;
    let mut row = row.clone();
    if let Some((amount, currency)) = &mut row.amount {
        check_credit_amount(*amount, currency, smallest_unit(currency)?)?;
        // Kept with exactly the currency's decimals, as invoices are.
        amount.rescale(tollgate_billing::minor_units("currency", currency)?);
    }
    Ok((record(store, actor, Reduction::Discount(&row), now).await?, true))
}

/// Records `row` (an amount above zero in its currency's minor units, nothing used yet)
/// and its audit record, by `actor`; its document and whether it was made now (a credit
/// given again under its id, as [`add_discount`]: what invoices used of it since aside).
pub async fn add_credit(store: &Store, actor: &str, row: &CreditRow, now: Timestamp) -> Result<(Value, bool)> {
    if let Some(found) = store.credit(&row.id).await? {
        if found.value == (CreditRow { created_at: found.value.created_at, used: found.value.used, ..row.clone() }) {
            return Ok((credit_doc(&found.value), false));
        }
    }
    check_credit_amount(row.amount, &row.currency, smallest_unit(&row.currency)?)?;
    if row.used != rust_decimal::Decimal::ZERO {
        return Err(ReceivablesError::invalid("used", "a new credit has used nothing"));
    }
    // Kept with exactly the currency's decimals (100 EUR is 100.00), as invoices are.
    let mut row = row.clone();
    row.amount.rescale(tollgate_billing::minor_units("currency", &row.currency)?);
    Ok((record(store, actor, Reduction::Credit(&row), now).await?, true))
}

/// A discount or a credit, checked, to record.
enum Reduction<'a> {
    Discount(&'a DiscountRow),
    Credit(&'a CreditRow),
}

/// Records `reduction` of an existing billing account with its audit record, in one
/// transaction; its document.
async fn record(store: &Store, actor: &str, reduction: Reduction<'_>, now: Timestamp) -> Result<Value> {
    let (account, id, kind, doc) = match reduction {
        Reduction::Discount(row) => (&row.billing_account_id, &row.id, "Discount", discount_doc(row)),
        Reduction::Credit(row) => (&row.billing_account_id, &row.id, "Credit", credit_doc(row)),
    };
    let Some(found) = store.billing_account(account).await? else {
        return Err(ReceivablesError::invalid("billingAccount", format!("no billing account {account}")));
    };
    let currency = match reduction {
        Reduction::Discount(row) => row.amount.as_ref().map(|(_, currency)| currency),
        Reduction::Credit(row) => Some(&row.currency),
    };
    if let Some(currency) = currency.filter(|currency| **currency != found.value.currency) {
        return Err(ReceivablesError::invalid(
            "currency",
            format!("billing account {account} bills in {}, not {currency}", found.value.currency),
        ));
    }
    if let Reduction::Discount(row) = reduction {
        match (row.scope.as_str(), &row.product_id) {
            // Listed under its root, where the bill run looks for it.
            ("hierarchy", _) if found.value.root_id != *account => {
                return Err(ReceivablesError::invalid(
                    "hierarchy",
                    format!("a hierarchy's discount is given on its root, {}", found.value.root_id),
                ));
            }
            // On the account the product's charges are billed to.
            ("product", Some(product)) => {
                let owner = match store.subscription(product).await? {
                    Some(line) => Some(line.value.billing_account_id),
                    None => store.addon(product).await?.map(|(_, owner, _)| owner),
                };
                match owner {
                    Some(owner) if owner == *account => {}
                    Some(owner) => {
                        return Err(ReceivablesError::invalid(
                            "product",
                            format!("product {product} is billed to {owner}, not to {account}"),
                        ))
                    }
                    None => return Err(ReceivablesError::invalid("product", format!("no product {product}"))),
                }
            }
            _ => {}
        }
    }
    let mut tx = store.begin().await?;
    match reduction {
        Reduction::Discount(row) => tx.insert_discount(row).await?,
        Reduction::Credit(row) => tx.insert_credit(row).await?,
    }
    let change = Change { action: "create", kind, id, before: None, after: doc };
    change.commit(tx, actor, now).await
}

/// Moves discount `id`'s end to `valid_until` (excluded; `None`: no end), by `actor`, at
/// version `expected` (`None`: the one it has); the discount as it is now.
pub async fn end_discount(
    store: &Store,
    actor: &str,
    id: &str,
    expected: Option<Version>,
    valid_until: Option<String>,
    now: Timestamp,
) -> Result<Versioned<Value>> {
    let mut tx = store.begin().await?;
    let Some(found) = tx.discount_locked(id).await? else {
        return Err(ReceivablesError::NotFound { entity: "discount", id: id.to_owned() });
    };
    let changed = DiscountRow { valid_until, ..found.value.clone() };
    // Only its end changed: whatever is wrong now is that end.
    let wrong_end = |error: String| ReceivablesError::invalid("validUntil", error);
    let discount = discount_of(&changed).map_err(|error| match error {
        ReceivablesError::Billing(error) => wrong_end(error.to_string()),
        other => other,
    })?;
    discount.validate("discount").map_err(|error| wrong_end(error.to_string()))?;
    let version = tx.set_discount_until(id, expected.unwrap_or(found.version), changed.valid_until.as_deref()).await?;
    let (before, after) = (Some(discount_doc(&found.value)), discount_doc(&changed));
    let change = Change { action: "update", kind: "Discount", id, before, after };
    Ok(Versioned { value: change.commit(tx, actor, now).await?, version })
}

/// Sets credit `id`'s amount to `amount` (at least what invoices used of it, in its
/// currency's minor units; what they used leaves it used up), by `actor`, at version
/// `expected` (`None`: the one it has); the credit as it is now.
pub async fn change_credit(
    store: &Store,
    actor: &str,
    id: &str,
    expected: Option<Version>,
    amount: rust_decimal::Decimal,
    now: Timestamp,
) -> Result<Versioned<Value>> {
    let mut tx = store.begin().await?;
    let Some(found) = tx.credit_locked(id).await? else {
        return Err(ReceivablesError::NotFound { entity: "credit", id: id.to_owned() });
    };
    check_credit_amount(amount, &found.value.currency, rust_decimal::Decimal::ZERO)?;
    let mut amount = amount;
    amount.rescale(tollgate_billing::minor_units("currency", &found.value.currency)?);
    let version = tx.set_credit_amount(&found.value, expected.unwrap_or(found.version), amount).await?;
    let changed = CreditRow { amount, ..found.value.clone() };
    let (before, after) = (Some(credit_doc(&found.value)), credit_doc(&changed));
    let change = Change { action: "update", kind: "Credit", id, before, after };
    Ok(Versioned { value: change.commit(tx, actor, now).await?, version })
}

/// `error` of checking a new discount, naming the field as a discount is given (the bill
/// run's names: `discount.value` is the percentage, `valid` its validity).
fn named_as_given(error: ReceivablesError) -> ReceivablesError {
    let ReceivablesError::Billing(billing) = &error else { return error };
    let field = match billing {
        tollgate_billing::BillingError::UnknownCurrency { .. } => "currency",
        tollgate_billing::BillingError::Invalid { field, .. } => match field.as_str() {
            "discount.value" => "percent",
            "discount.value.amount" => "amount",
            "discount.value.currency" => "currency",
            "valid" => "validUntil",
            _ => return error,
        },
        _ => return error,
    };
    ReceivablesError::invalid(field, billing.to_string())
}

/// The smallest amount of `currency` (0.01 for EUR), the field `currency` named when the
/// currency is unknown.
fn smallest_unit(currency: &str) -> Result<rust_decimal::Decimal> {
    Ok(rust_decimal::Decimal::new(1, tollgate_billing::minor_units("currency", currency)?))
}

/// `amount` of a credit or a fixed discount in `currency`: in its minor units, at least
/// `least`, of at most [`tollgate_customers::MAX_MONEY_DIGITS`] digits.
fn check_credit_amount(amount: rust_decimal::Decimal, currency: &str, least: rust_decimal::Decimal) -> Result<()> {
    let decimals = tollgate_billing::minor_units("currency", currency)?;
    let normal = amount.normalize();
    let digits = tollgate_billing::significant_digits(normal);
    if digits > tollgate_customers::MAX_MONEY_DIGITS {
        return Err(ReceivablesError::invalid(
            "amount",
            format!("{amount} has more than {} digits", tollgate_customers::MAX_MONEY_DIGITS),
        ));
    }
    // What a bill run takes: a larger one would stop every run of the cycle.
    if amount > rust_decimal::Decimal::from(tollgate_billing::MAX_AMOUNT_UNITS) {
        return Err(ReceivablesError::invalid(
            "amount",
            format!("{amount} is more than {}, the most a bill run takes", tollgate_billing::MAX_AMOUNT_UNITS),
        ));
    }
    if amount < least || normal.scale() > decimals {
        return Err(ReceivablesError::invalid(
            "amount",
            format!("{amount} is not an amount of at least {least} in {currency}'s minor units"),
        ));
    }
    Ok(())
}

/// A discount or a credit given or changed, to audit.
struct Change<'a> {
    /// `create` or `update`.
    action: &'a str,
    kind: &'a str,
    id: &'a str,
    before: Option<Value>,
    after: Value,
}

impl Change<'_> {
    /// Audits the change by `actor` and commits `tx`; the document as it is now.
    async fn commit(self, mut tx: Tx, actor: &str, now: Timestamp) -> Result<Value> {
        let record = AuditRecord {
            actor,
            action: self.action,
            entity_type: self.kind,
            entity_id: self.id,
            before: self.before.as_ref(),
            after: Some(&self.after),
        };
        tx.audit(record, now).await?;
        tx.commit().await?;
        Ok(self.after)
    }
}
