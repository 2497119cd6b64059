//! A subscriptions file: one row is a subscription of an imported billing account (named
//! by its external id) on a tariff plan the engine has loaded (and, optionally, the
//! catalogue's product offering it was sold as), under an MSISDN and optionally an IMSI,
//! `active` or `suspended`. A batch at a time it is checked against the store: the account
//! must exist and pay in the plan's currency, the offering must be one, no identity may
//! belong to another subscription; an external id imported before with the same content is
//! a duplicate, with other content a reject naming the field.

use std::collections::HashMap;

use tollgate_customers::{ordering_key, subscription_key, EngineOperation};
use tollgate_store::{NewOutboxItem, ProductPeriod, SubscriptionRow, Tx};

use crate::batch::{check_external_id, entity_id, Batch, Outcome, RunContext};
use crate::error::Result;
use crate::mapping::{Columns, Reject};

/// Why an imported subscription is suspended in the engine.
pub const SUSPENDED_REASON: &str = "suspended in the legacy system at import";

/// A subscriptions row, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionData {
    pub external_id: String,
    /// The billing account's external id.
    pub billing_account: String,
    pub plan: String,
    pub offering: Option<String>,
    /// Digits only (a leading `+` dropped).
    pub msisdn: String,
    pub imsi: Option<String>,
    /// `active` or `suspended`.
    pub status: &'static str,
}

fn digits(field: &str, value: &str, low: usize, high: usize) -> Result<String, Reject> {
    let number = value.strip_prefix('+').unwrap_or(value);
    if number.len() < low || number.len() > high || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reject::new(field, format!("{value:?} is not {low} to {high} digits")));
    }
    Ok(number.to_owned())
}

/// Checks one row of a subscriptions file.
pub fn parse_row(columns: &Columns, record: &csv::ByteRecord) -> Result<SubscriptionData, Reject> {
    columns.check_width(record)?;
    let get = |index: usize| columns.get(record, index);
    let external_id = check_external_id("external_id", &columns.required(record, 0)?)?;
    let billing_account = check_external_id("billing_account", &columns.required(record, 1)?)?;
    let plan = crate::batch::text("plan", &columns.required(record, 2)?, 200)?;
    let offering = get(3)?.map(|value| crate::batch::text("offering", &value, 64)).transpose()?;
    let msisdn = digits("msisdn", &columns.required(record, 4)?, 1, 15)?;
    let imsi = get(5)?.map(|value| digits("imsi", &value, 6, 15)).transpose()?;
    let status = match get(6)?.map(|value| value.to_ascii_lowercase()) {
        None => "active",
        Some(value) if value == "active" => "active",
        Some(value) if value == "suspended" => "suspended",
        Some(value) => return Err(Reject::new("status", format!("{value:?} is not active or suspended"))),
    };
    Ok(SubscriptionData { external_id, billing_account, plan, offering, msisdn, imsi, status })
}

impl SubscriptionData {
    /// The engine identity keys, MSISDN first.
    pub fn identities(&self) -> Vec<String> {
        let mut identities = vec![format!("msisdn:{}", self.msisdn)];
        if let Some(imsi) = &self.imsi {
            identities.push(format!("imsi:{imsi}"));
        }
        identities
    }

    /// What a stored subscription says, in a row's terms; `account` is its billing
    /// account's external id.
    fn from_stored(stored: &SubscriptionRow, account: String) -> SubscriptionData {
        let identity = |tag: &str| stored.identities.iter().find_map(|key| key.strip_prefix(tag)).map(str::to_owned);
        SubscriptionData {
            external_id: stored.external_id.clone().unwrap_or_default(),
            billing_account: account,
            plan: stored.plan_id.clone(),
            offering: stored.offering_id.clone(),
            msisdn: identity("msisdn:").unwrap_or_default(),
            imsi: identity("imsi:"),
            status: if stored.state == "suspended" {
                "suspended"
            } else if stored.state == "active" {
                "active"
            } else {
                "terminated"
            },
        }
    }
}

impl Batch for SubscriptionData {
    fn external_id(&self) -> &str {
        &self.external_id
    }

    fn differs_from(&self, other: &Self) -> Option<&'static str> {
        [
            ("billing_account", self.billing_account != other.billing_account),
            ("plan", self.plan != other.plan),
            ("offering", self.offering != other.offering),
            ("msisdn", self.msisdn != other.msisdn),
            ("imsi", self.imsi != other.imsi),
            ("status", self.status != other.status),
        ]
        .into_iter()
        .find_map(|(field, differs)| differs.then_some(field))
    }

    async fn apply(tx: &mut Tx, rows: Vec<(i64, SubscriptionData)>, context: &mut RunContext) -> Result<Outcome> {
        let mut wanted: Vec<&str> = rows.iter().map(|(_, row)| row.external_id.as_str()).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let stored: HashMap<String, SubscriptionRow> = tx
            .subscriptions_by_external_id(&wanted)
            .await?
            .into_iter()
            .filter_map(|found| Some((found.value.external_id.clone()?, found.value)))
            .collect();
        let mut account_ids: Vec<&str> = rows.iter().map(|(_, row)| row.billing_account.as_str()).collect();
        account_ids.sort_unstable();
        account_ids.dedup();
        let accounts = tx.billing_accounts_by_external_id(&account_ids).await?;
        let external_of: HashMap<&str, &str> =
            accounts.iter().map(|(external, account)| (account.id.as_str(), external.as_str())).collect();
        let identities: Vec<String> = rows.iter().flat_map(|(_, row)| row.identities()).collect();
        let identity_refs: Vec<&str> = identities.iter().map(String::as_str).collect();
        let mut taken: HashMap<String, String> = tx
            .identities_in_use(&identity_refs)
            .await?
            .into_iter()
            .map(|(identity, subscription)| (identity, format!("subscription {subscription}")))
            .collect();
        for offering in rows.iter().filter_map(|(_, row)| row.offering.as_deref()) {
            if !context.offerings.contains_key(offering) {
                let found = tx.catalogue_item(offering).await?;
                let is_offering = found.is_some_and(|item| item.value.kind == "ProductOffering");
                context.offerings.insert(offering.to_owned(), is_offering);
            }
        }

        let mut outcome = Outcome::default();
        let mut seen: HashMap<String, (i64, SubscriptionData)> = HashMap::new();
        let mut new: Vec<SubscriptionRow> = Vec::new();
        let mut accounts_of_new = Vec::new();
        for (number, row) in rows {
            if let Some(found) = stored.get(&row.external_id) {
                let account = external_of
                    .get(found.billing_account_id.as_str())
                    .map_or_else(|| format!("(billing account {})", found.billing_account_id), |e| (*e).to_owned());
                let before = SubscriptionData::from_stored(found, account);
                outcome.same_or_reject(number, &row, &before, "an earlier import");
                continue;
            }
            if let Some((first, before)) = seen.get(&row.external_id) {
                let earlier = format!("row {first}");
                outcome.same_or_reject(number, &row, before, &earlier);
                continue;
            }
            let Some(account) = accounts.get(&row.billing_account) else {
                let reason = format!("no billing account with external id {:?}", row.billing_account);
                outcome.reject(number, "billing_account", &reason);
                continue;
            };
            match context.plans.get(&row.plan) {
                None => {
                    let mut known: Vec<&str> = context.plans.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    let reason = format!("no tariff plan {:?} is loaded (loaded: {})", row.plan, known.join(", "));
                    outcome.reject(number, "plan", &reason);
                    continue;
                }
                Some(currency) if *currency != account.currency => {
                    let reason = format!(
                        "plan {} is in {currency}, billing account {} in {}",
                        row.plan, row.billing_account, account.currency
                    );
                    outcome.reject(number, "plan", &reason);
                    continue;
                }
                Some(_) => {}
            }
            if let Some(offering) = &row.offering {
                if context.offerings.get(offering) != Some(&true) {
                    outcome.reject(number, "offering", &format!("no product offering {offering:?} in the catalogue"));
                    continue;
                }
            }
            let keys = row.identities();
            if let Some((field, holder)) =
                keys.iter().zip(["msisdn", "imsi"]).find_map(|(key, field)| Some((field, taken.get(key)?)))
            {
                let value = if field == "msisdn" { &row.msisdn } else { row.imsi.as_deref().unwrap_or_default() };
                outcome.reject(number, field, &format!("{value} is already an identity of {holder}"));
                continue;
            }
            for key in &keys {
                taken.insert(key.clone(), format!("the subscription of row {number}"));
            }
            new.push(SubscriptionRow {
                id: entity_id(context, 3, number),
                engine_subscription_id: 0,
                external_id: Some(row.external_id.clone()),
                billing_account_id: account.id.clone(),
                offering_id: row.offering.clone(),
                plan_id: row.plan.clone(),
                state: row.status.to_owned(),
                identities: keys,
            });
            accounts_of_new.push(account.engine_account_id);
            outcome.created.push(number);
            seen.insert(row.external_id.clone(), (number, row));
        }
        let engine_ids = tx.insert_subscriptions(&new, context.now).await?;
        // Each imported line's history starts with the import, in the state it came in.
        let periods: Vec<ProductPeriod> = new
            .iter()
            .map(|subscription| ProductPeriod {
                product_id: subscription.id.clone(),
                subscription_id: subscription.id.clone(),
                offering_id: subscription.offering_id.clone(),
                state: if subscription.state == "suspended" { "suspended" } else { "active" }.to_owned(),
                opened_by: "import".to_owned(),
                order_id: None,
                from: context.now,
                until: None,
                closed_by: None,
            })
            .collect();
        tx.insert_product_periods(&periods).await?;
        let mut operations = Vec::with_capacity(new.len());
        for ((subscription, engine_id), account) in new.iter().zip(&engine_ids).zip(&accounts_of_new) {
            let ordering = ordering_key(&subscription.billing_account_id);
            let create = EngineOperation::CreateSubscription {
                account: *account,
                subscription: *engine_id,
                plan: subscription.plan_id.clone(),
                identities: subscription.identities.clone(),
            };
            operations.push((subscription_key(&subscription.id, 1, "create"), ordering.clone(), create));
            if subscription.state == "suspended" {
                let suspend =
                    EngineOperation::SuspendSubscription { subscription: *engine_id, reason: SUSPENDED_REASON.into() };
                operations.push((subscription_key(&subscription.id, 1, "suspend"), ordering, suspend));
            }
            context.digest_line(&[
                &subscription.id,
                subscription.external_id.as_deref().unwrap_or_default(),
                &engine_id.to_string(),
                &subscription.billing_account_id,
                &subscription.plan_id,
                subscription.offering_id.as_deref().unwrap_or("-"),
                &subscription.state,
            ]);
        }
        let payloads: Vec<_> = operations.iter().map(|(_, _, operation)| operation.payload()).collect();
        let items: Vec<NewOutboxItem<'_>> = operations
            .iter()
            .zip(&payloads)
            .map(|((key, ordering, operation), payload)| NewOutboxItem {
                idempotency_key: key,
                kind: operation.kind(),
                ordering_key: Some(ordering),
                payload,
            })
            .collect();
        tx.enqueue_many(&items, context.now).await?;
        outcome.entities = vec![("Subscription", new.len())];
        Ok(outcome)
    }
}
