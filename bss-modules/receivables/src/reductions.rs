//! Discounts and credits a bill run applies (issue 18), recorded from the CLI (`tollgate
//! bill-run discount|credit`) or the API (`/tmf-api/billing/v1/discount` and `/credit`)
//! through the same functions: checked as the bill run will take them (a percentage above
//! 0 and at most 100, an amount in its currency's minor units, a validity of whole days
//! that ends after it starts), the billing account checked to exist (a hierarchy's
//! discount on its root, a product's on the account the product is billed to), written and audited
//! in one transaction. A taken id is the store's `Conflict`.

use jiff::Timestamp;
use serde_json::{json, Value};
use tollgate_billing::{DateSpan, Discount, DiscountScope, DiscountValue};
use tollgate_store::{AuditRecord, CreditRow, DiscountRow, Store};

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

/// Records `row` (checked as the bill run takes it) and its audit record, by `actor`.
pub async fn add_discount(store: &Store, actor: &str, row: &DiscountRow, now: Timestamp) -> Result<Value> {
    discount_of(row)?.validate("discount")?;
    record(store, actor, Reduction::Discount(row), now).await
}

/// Records `row` (an amount above zero in its currency's minor units, nothing used yet)
/// and its audit record, by `actor`.
pub async fn add_credit(store: &Store, actor: &str, row: &CreditRow, now: Timestamp) -> Result<Value> {
    let decimals = tollgate_billing::minor_units("currency", &row.currency)?;
    if row.amount <= rust_decimal::Decimal::ZERO || row.amount.normalize().scale() > decimals {
        return Err(ReceivablesError::invalid(
            "amount",
            format!("{} is not an amount above zero in {}'s minor units", row.amount, row.currency),
        ));
    }
    if row.used != rust_decimal::Decimal::ZERO {
        return Err(ReceivablesError::invalid("used", "a new credit has used nothing"));
    }
    record(store, actor, Reduction::Credit(row), now).await
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
    // A hierarchy's discount is listed under its root, where the bill run looks for it.
    if let Reduction::Discount(row) = reduction {
        if row.scope == "hierarchy" && found.value.root_id != *account {
            return Err(ReceivablesError::invalid(
                "hierarchy",
                format!("a hierarchy's discount is given on its root, {}", found.value.root_id),
            ));
        }
    }
    // A product's discount is on the account the product's charges are billed to.
    if let Reduction::Discount(DiscountRow { scope, product_id: Some(product), .. }) = reduction {
        if scope == "product" {
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
    }
    let mut tx = store.begin().await?;
    match reduction {
        Reduction::Discount(row) => tx.insert_discount(row).await?,
        Reduction::Credit(row) => tx.insert_credit(row).await?,
    }
    let record =
        AuditRecord { actor, action: "create", entity_type: kind, entity_id: id, before: None, after: Some(&doc) };
    tx.audit(record, now).await?;
    tx.commit().await?;
    Ok(doc)
}
