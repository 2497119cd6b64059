//! [`Customers`]: customer and billing account operations on the store, each one
//! transaction that checks the caller's reach, validates, writes the row, records the
//! engine operation the change implies in the outbox (creating an account, changing its
//! credit limit, its kind or its state) and appends the audit record, so a change is never
//! committed unaudited or half done. The API (and a CLI) call these; neither has rules of
//! its own. Balances are `prepay.rs`'s.

use std::sync::Arc;

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tollgate_store::{
    new_entity_id, AuditRecord, BillingAccountFilter, BillingAccountRow, CustomerFilter, CustomerRow, NewEvent,
    NewOutboxItem, Role, Store, Tx, Version, Versioned,
};

use crate::account::{account_doc, validate_account, ValidAccount, MAX_DEPTH};
use crate::balance::{Roots, MAX_NOTE_BYTES, PREPAY_BASE_PATH};
use crate::customer::{anonymised, redacted, validate_customer};
use crate::engine::{idempotency_key, ordering_key, AccountType, EngineOperation, Revert, RevertField};
use crate::error::{CustomersError, Result};
use crate::lifecycle::{transition, AccountState};
use crate::port::EnginePort;

/// Where customer hrefs start when no absolute root is configured.
pub const CUSTOMER_BASE_PATH: &str = "/tmf-api/customerManagement/v4";
/// Where billing account hrefs start when no absolute root is configured.
pub const ACCOUNT_BASE_PATH: &str = "/tmf-api/accountManagement/v4";

/// The events customerManagement publishes to its hub's listeners (TMF629).
pub const CUSTOMER_EVENTS: [&str; 4] =
    ["CustomerCreateEvent", "CustomerAttributeValueChangeEvent", "CustomerStateChangeEvent", "CustomerDeleteEvent"];
/// The events accountManagement publishes to its hub's listeners (TMF666's
/// `BillingAccountAttributeValueChangeEvent`, and a create event after TMF629's pattern:
/// TMF666 v4 defines none; an account's state does not change through the API yet), and
/// Tollgate's own `BillingAccountThresholdEvent`: a threshold of the account was crossed.
pub const ACCOUNT_EVENTS: [&str; 4] = [
    "BillingAccountCreateEvent",
    "BillingAccountAttributeValueChangeEvent",
    "BillingAccountStateChangeEvent",
    crate::threshold::THRESHOLD_EVENT,
];

/// The attributes a customer list may be filtered on.
pub const CUSTOMER_FILTERS: [&str; 2] = ["name", "status"];
/// The attributes a billing account list may be filtered on.
pub const ACCOUNT_FILTERS: [&str; 5] = ["name", "state", "creditLimit.unit", "relatedParty.id", "parentAccount.id"];

/// The name an anonymised customer's accounts take.
const ANONYMISED: &str = "anonymised";

/// The fields finance may change on a billing account.
const FINANCE_FIELDS: [&str; 2] = ["creditLimit", "paymentTermsDays"];

/// What a partner (a corporate customer's administrator) does not change on its
/// hierarchy's accounts: they are the operator's terms (a partner that resumed an
/// account the operator suspended, or lengthened its own payment terms, would grant
/// itself what only the operator grants). Its children's credit limits it shares out,
/// within its root's.
const PARTNER_FIXED: [&str; 4] = ["state", "paymentTermsDays", "taxProfileId", "accountType"];

/// Who asks: the audit actor, the role and, for a partner, the root of its hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub actor: String,
    pub role: Role,
    /// A partner's root billing account: it reaches that hierarchy only.
    pub scope_root: Option<String>,
}

impl Principal {
    /// A principal reaching everything (the CLI, an admin).
    pub fn admin(actor: impl Into<String>) -> Principal {
        Principal { actor: actor.into(), role: Role::Admin, scope_root: None }
    }

    pub(crate) fn root(&self) -> Result<Option<&str>> {
        match (self.role, self.scope_root.as_deref()) {
            (Role::Partner, None) => Err(CustomersError::forbidden("a partner token without a hierarchy")),
            (Role::Partner, Some(root)) => Ok(Some(root)),
            _ => Ok(None),
        }
    }

    /// The error for `what` that does not exist: to a partner the same refusal as
    /// another hierarchy's (it learns nothing of the ids of others), else `otherwise`.
    pub(crate) fn unknown(&self, what: &str, otherwise: CustomersError) -> CustomersError {
        match self.root() {
            Ok(None) => otherwise,
            Ok(Some(_)) => CustomersError::forbidden(format!("{what} is outside the partner's hierarchy")),
            Err(error) => error,
        }
    }

    /// [`Principal::unknown`] for an entity of `kind` looked up by its `id` (`NotFound`).
    pub(crate) fn missing(&self, kind: &'static str, id: &str) -> CustomersError {
        self.unknown(&format!("{kind} {id}"), CustomersError::NotFound { kind, id: id.to_owned() })
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Versioned<Value>>,
    /// How many match in all.
    pub total: i64,
}

/// Customers and billing accounts on a store, and, with an [`EnginePort`], their balances.
#[derive(Debug, Clone)]
pub struct Customers {
    pub(crate) store: Store,
    customer_root: String,
    account_root: String,
    /// The engine, for reads and for applying a change at once; without it (the CLI) the
    /// outbox worker of a later `tollgate serve` applies what is recorded.
    pub(crate) engine: Option<Arc<dyn EnginePort>>,
    /// The messages of the notifications a settled engine answer sends (a refused
    /// prepaid renewal's).
    pub(crate) templates: Arc<crate::Templates>,
}

fn filter_value<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    allowed: &[&str],
) -> Result<Vec<(&'a str, String)>> {
    let mut seen: Vec<(&str, String)> = Vec::new();
    for (name, value) in pairs {
        if !allowed.contains(&name) {
            return Err(CustomersError::invalid(
                name,
                format!("cannot filter on {name:?} (only {})", allowed.join(", ")),
            ));
        }
        if seen.iter().any(|(seen, _)| *seen == name) {
            return Err(CustomersError::invalid(name, "given twice"));
        }
        seen.push((name, value.to_owned()));
    }
    Ok(seen)
}

fn take(pairs: &[(&str, String)], name: &str) -> Option<String> {
    pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| value.clone())
}

impl Customers {
    /// On `store`, hrefs under [`CUSTOMER_BASE_PATH`] and [`ACCOUNT_BASE_PATH`].
    pub fn new(store: Store) -> Customers {
        Customers {
            store,
            customer_root: CUSTOMER_BASE_PATH.into(),
            account_root: ACCOUNT_BASE_PATH.into(),
            engine: None,
            templates: Arc::default(),
        }
    }

    /// With `templates` for the notifications it sends (built-in English and German
    /// otherwise).
    pub fn with_templates(mut self, templates: crate::Templates) -> Customers {
        self.templates = Arc::new(templates);
        self
    }

    /// With the engine: balances can be read, a change the engine could refuse is checked
    /// against it before it is recorded, and a balance request is applied at once.
    pub fn with_engine(mut self, engine: Arc<dyn EnginePort>) -> Customers {
        self.engine = Some(engine);
        self
    }

    /// The paths documents' hrefs start with.
    pub(crate) fn roots(&self) -> Roots {
        Roots {
            prepay: PREPAY_BASE_PATH.into(),
            account: self.account_root.clone(),
            customer: self.customer_root.clone(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn customer_href(&self, id: &str) -> String {
        format!("{}/customer/{id}", self.customer_root)
    }

    pub(crate) fn doc(&self, row: &BillingAccountRow) -> Value {
        account_doc(row, &self.account_root, &self.customer_root)
    }

    /// Creates a customer from a client's document (TMF629 `Customer_Create`).
    pub async fn create_customer(&self, who: &Principal, mut doc: Value, now: Timestamp) -> Result<Versioned<Value>> {
        if let Value::Object(object) = &doc {
            for field in ["id", "href"] {
                if object.contains_key(field) {
                    return Err(CustomersError::invalid(field, "is assigned by the server"));
                }
            }
        }
        let valid = validate_customer(&mut doc, None, now)?;
        let id = new_entity_id()?;
        if let Value::Object(object) = &mut doc {
            object.insert("id".into(), Value::String(id.clone()));
            object.insert("href".into(), Value::String(self.customer_href(&id)));
            object.insert("@type".into(), Value::String("Customer".into()));
        }
        let row = CustomerRow {
            id: id.clone(),
            party_type: valid.party_type,
            name: valid.name,
            status: valid.status,
            doc: doc.clone(),
            anonymised_at: None,
        };
        let scope = who.root()?;
        let mut tx = self.store.begin().await?;
        tx.insert_customer(&row, now).await.map_err(|e| CustomersError::from_store("customer", e))?;
        if let Some(root) = scope {
            // The partner's own while it owns no account (it opens one next).
            tx.set_customer_partner_root(&id, root).await?;
        }
        audit(&mut tx, who, "create", "Customer", &id, None, Some(&redacted(&doc)), now).await?;
        publish_customer(&mut tx, "CustomerCreateEvent", &id, &doc, now).await?;
        tx.commit().await?;
        Ok(Versioned { value: doc, version: Version::FIRST })
    }

    async fn reach_customer(&self, tx: &mut Tx, who: &Principal, id: &str) -> Result<()> {
        if let Some(root) = who.root()? {
            if !tx.customer_in_hierarchy(id, root).await? {
                return Err(CustomersError::forbidden(format!("customer {id} is outside the partner's hierarchy")));
            }
        }
        Ok(())
    }

    /// A customer.
    pub async fn get_customer(&self, who: &Principal, id: &str) -> Result<Versioned<Value>> {
        let found = self.store.customer(id).await?;
        let found = found.ok_or_else(|| who.missing("Customer", id))?;
        if let Some(root) = who.root()? {
            if !self.store.customer_in_hierarchy(id, root).await? {
                return Err(CustomersError::forbidden(format!("customer {id} is outside the partner's hierarchy")));
            }
        }
        Ok(Versioned { value: found.value.doc, version: found.version })
    }

    /// Customers matching the (attribute, value) filters ([`CUSTOMER_FILTERS`]), a
    /// partner's only those owning an account in its hierarchy.
    pub async fn list_customers<'a>(
        &self,
        who: &Principal,
        filters: impl IntoIterator<Item = (&'a str, &'a str)>,
        offset: u64,
        limit: u32,
    ) -> Result<Page> {
        let pairs = filter_value(filters, &CUSTOMER_FILTERS)?;
        let filter = CustomerFilter {
            name: take(&pairs, "name"),
            status: take(&pairs, "status"),
            party_type: None,
            root_id: who.root()?.map(str::to_owned),
        };
        let page = self.store.customer_list(&filter, offset, limit).await?;
        let items = page.items.into_iter().map(|row| Versioned { value: row.value.doc, version: row.version });
        Ok(Page { items: items.collect(), total: page.total })
    }

    async fn current_customer(
        &self,
        tx: &mut Tx,
        who: &Principal,
        id: &str,
        expected: Option<Version>,
    ) -> Result<Versioned<CustomerRow>> {
        let found = tx.customer(id).await?;
        let found = found.ok_or_else(|| who.missing("Customer", id))?;
        self.reach_customer(tx, who, id).await?;
        if let Some(expected) = expected {
            if found.version != expected {
                return Err(CustomersError::StaleVersion {
                    kind: "Customer",
                    id: id.to_owned(),
                    expected: expected.get(),
                    found: found.version.get(),
                });
            }
        }
        Ok(found)
    }

    /// Applies a JSON merge patch to a customer still at `expected`.
    pub async fn patch_customer(
        &self,
        who: &Principal,
        id: &str,
        patch: &Value,
        expected: Version,
        now: Timestamp,
    ) -> Result<Versioned<Value>> {
        let Value::Object(members) = patch else {
            return Err(CustomersError::invalid("body", "a merge patch of a customer is a JSON object"));
        };
        let mut tx = self.store.begin().await?;
        let current = self.current_customer(&mut tx, who, id, Some(expected)).await?;
        if current.value.anonymised_at.is_some() {
            return Err(CustomersError::Conflict {
                field: "id".into(),
                reason: format!("customer {id} is anonymised"),
            });
        }
        let before = current.value.doc.clone();
        for field in ["id", "href", "@type"] {
            if let Some(value) = members.get(field) {
                if before.get(field) != Some(value) {
                    return Err(CustomersError::invalid(field, "cannot change"));
                }
            }
        }
        let mut doc = before.clone();
        crate::merge_patch(&mut doc, patch);
        let valid = validate_customer(&mut doc, Some(&before), now)?;
        let row = CustomerRow {
            id: id.to_owned(),
            party_type: valid.party_type,
            name: valid.name,
            status: valid.status,
            doc: doc.clone(),
            anonymised_at: None,
        };
        let version =
            tx.update_customer(&row, expected, now).await.map_err(|e| CustomersError::from_store("Customer", e))?;
        audit(&mut tx, who, "update", "Customer", id, Some(&redacted(&before)), Some(&redacted(&doc)), now).await?;
        publish_customer_change(&mut tx, id, &before, &doc, now).await?;
        tx.commit().await?;
        Ok(Versioned { value: doc, version })
    }

    /// Deletes a customer that owns no billing account (else 409: anonymise it instead).
    pub async fn delete_customer(
        &self,
        who: &Principal,
        id: &str,
        expected: Option<Version>,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.store.begin().await?;
        let current = self.current_customer(&mut tx, who, id, expected).await?;
        tx.delete_customer(id, current.version).await.map_err(|e| CustomersError::from_store("Customer", e))?;
        audit(&mut tx, who, "delete", "Customer", id, Some(&redacted(&current.value.doc)), None, now).await?;
        publish_customer(&mut tx, "CustomerDeleteEvent", id, &current.value.doc, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Right of access: everything kept about one customer, as one JSON document (the
    /// customer and its billing accounts). The export itself is audited.
    pub async fn export_customer(&self, who: &Principal, id: &str, now: Timestamp) -> Result<Value> {
        let mut tx = self.store.begin().await?;
        let current = self.current_customer(&mut tx, who, id, None).await?;
        let accounts = tx.billing_accounts_of(id).await?;
        let accounts: Vec<Value> = accounts.iter().map(|account| self.doc(&account.value)).collect();
        audit(&mut tx, who, "export", "Customer", id, None, None, now).await?;
        tx.commit().await?;
        Ok(json!({
            "exportedAt": now.to_string(),
            "customer": current.value.doc,
            "anonymisedAt": current.value.anonymised_at.map(|at| at.to_string()),
            "billingAccounts": accounts,
        }))
    }

    /// Erasure: replaces the customer's personal data (name, contact media, engaged party)
    /// and clears its consent, keeping its id, its billing accounts and every financial
    /// record; the customer's events held for the hub's listeners are rewritten the same
    /// way. Repeating it changes nothing more.
    pub async fn anonymise_customer(&self, who: &Principal, id: &str, now: Timestamp) -> Result<Versioned<Value>> {
        let mut tx = self.store.begin().await?;
        let current = self.current_customer(&mut tx, who, id, None).await?;
        if current.value.anonymised_at.is_some() {
            return Ok(Versioned { value: current.value.doc, version: current.version });
        }
        let doc = anonymised(&current.value.doc);
        let row = CustomerRow {
            name: ANONYMISED.into(),
            doc: doc.clone(),
            anonymised_at: Some(now),
            ..current.value.clone()
        };
        let version = tx
            .update_customer(&row, current.version, now)
            .await
            .map_err(|e| CustomersError::from_store("Customer", e))?;
        audit(&mut tx, who, "anonymise", "Customer", id, Some(&redacted(&current.value.doc)), Some(&doc), now).await?;
        // The customer's events still held for the hub's listeners lose their personal
        // data too (one already delivered is the listener's).
        tx.rewrite_event_entities("customer", id, &anonymised).await?;
        // A person's billing accounts are named after them (an import names them so by
        // default): they keep their money and history under a neutral name.
        if current.value.party_type == "individual" {
            for account in tx.billing_accounts_of(id).await? {
                if account.value.name == ANONYMISED {
                    continue;
                }
                let before = self.doc(&account.value);
                let row = BillingAccountRow { name: ANONYMISED.into(), ..account.value.clone() };
                tx.update_billing_account(&row, account.version, now)
                    .await
                    .map_err(|e| CustomersError::from_store("BillingAccount", e))?;
                let after = self.doc(&row);
                audit(&mut tx, who, "anonymise", "BillingAccount", &row.id, Some(&before), Some(&after), now).await?;
                let rename = |entity: &Value| {
                    let mut entity = entity.clone();
                    if let Some(name) = entity.get_mut("name") {
                        *name = Value::String(ANONYMISED.into());
                    }
                    entity
                };
                tx.rewrite_event_entities("billingAccount", &row.id, &rename).await?;
            }
        }
        publish_customer_change(&mut tx, id, &current.value.doc, &doc, now).await?;
        tx.commit().await?;
        Ok(Versioned { value: doc, version })
    }

    /// Creates a billing account (TMF666 `BillingAccount_Create`) and, in the same
    /// transaction, the outbox row that creates it in the engine.
    pub async fn create_account(&self, who: &Principal, doc: Value, now: Timestamp) -> Result<Versioned<Value>> {
        if who.role == Role::Finance {
            return Err(CustomersError::forbidden(
                "finance changes the credit limit and payment terms of accounts; care or an administrator creates them",
            ));
        }
        if let Value::Object(object) = &doc {
            for field in ["id", "href", "engineAccountId"] {
                if object.contains_key(field) {
                    return Err(CustomersError::invalid(field, "is assigned by the server"));
                }
            }
        }
        let valid = validate_account(&doc)?;
        if doc.get("state").is_some_and(|state| state != AccountState::Active.as_str()) {
            return Err(CustomersError::invalid("state", "a new billing account is Active"));
        }
        let scope = who.root()?;
        let id = new_entity_id()?;
        let mut tx = self.store.begin().await?;
        let Some(customer) = tx.customer(&valid.customer_id).await? else {
            let refused = CustomersError::invalid("relatedParty.id", format!("no customer {}", valid.customer_id));
            return Err(who.unknown(&format!("customer {}", valid.customer_id), refused));
        };
        // A partner's new account has its parent's payment terms and tax profile (see
        // `partner_terms`).
        let mut terms = (valid.payment_terms_days, valid.tax_profile_id.clone());
        let (root_id, depth) = match &valid.parent_id {
            None => {
                if scope.is_some() {
                    return Err(CustomersError::forbidden("a partner creates accounts inside its hierarchy only"));
                }
                (id.clone(), 0)
            }
            Some(parent_id) => {
                let Some(parent) = tx.billing_account(parent_id).await? else {
                    let refused =
                        CustomersError::invalid("parentAccount.id", format!("no billing account {parent_id}"));
                    return Err(who.unknown(&format!("billing account {parent_id}"), refused));
                };
                check_parent(&valid, &parent.value, scope)?;
                if scope.is_some() {
                    partner_terms(&doc, &valid, &parent.value)?;
                    within_root_limit(&mut tx, &parent.value.root_id, valid.credit_limit).await?;
                    terms = (parent.value.payment_terms_days, parent.value.tax_profile_id.clone());
                }
                (parent.value.root_id.clone(), parent.value.depth + 1)
            }
        };
        if let Some(root) = scope {
            // Its own hierarchy's customer, or one it created that owns no account yet;
            // never one another role created (it would take it over).
            if !tx.customer_in_hierarchy(&customer.value.id, root).await? {
                return Err(CustomersError::forbidden("the customer is outside the partner's hierarchy"));
            }
        }
        let row = BillingAccountRow {
            id: id.clone(),
            engine_account_id: 0,
            customer_id: valid.customer_id.clone(),
            parent_id: valid.parent_id.clone(),
            root_id,
            depth,
            name: valid.name.clone(),
            account_type: valid.account_type.as_str().into(),
            state: "Active".into(),
            currency: valid.currency.clone(),
            bill_cycle_day: valid.bill_cycle_day,
            payment_terms_days: terms.0,
            tax_profile_id: terms.1,
            credit_limit: valid.credit_limit,
        };
        let stored =
            tx.insert_billing_account(&row, now).await.map_err(|e| CustomersError::from_store("BillingAccount", e))?;
        let operation = EngineOperation::CreateAccount {
            account: stored.value.engine_account_id,
            account_type: valid.account_type,
            currency: valid.currency,
            credit_limit: valid.credit_limit,
        };
        enqueue(&mut tx, &id, stored.version, "create", &operation, None, now).await?;
        let doc = self.doc(&stored.value);
        audit(&mut tx, who, "create", "BillingAccount", &id, None, Some(&doc), now).await?;
        publish_account(&mut tx, "BillingAccountCreateEvent", &id, &doc, now).await?;
        tx.commit().await?;
        Ok(Versioned { value: doc, version: stored.version })
    }

    pub(crate) fn reach_account(who: &Principal, row: &BillingAccountRow) -> Result<()> {
        match who.root()? {
            Some(root) if row.root_id != root => {
                Err(CustomersError::forbidden(format!("billing account {} is outside the partner's hierarchy", row.id)))
            }
            _ => Ok(()),
        }
    }

    /// A billing account.
    pub async fn get_account(&self, who: &Principal, id: &str) -> Result<Versioned<Value>> {
        let found = self.store.billing_account(id).await?;
        let found = found.ok_or_else(|| who.missing("BillingAccount", id))?;
        Self::reach_account(who, &found.value)?;
        Ok(Versioned { value: self.doc(&found.value), version: found.version })
    }

    /// Billing accounts matching the (attribute, value) filters ([`ACCOUNT_FILTERS`]), a
    /// partner's only those of its hierarchy.
    pub async fn list_accounts<'a>(
        &self,
        who: &Principal,
        filters: impl IntoIterator<Item = (&'a str, &'a str)>,
        offset: u64,
        limit: u32,
    ) -> Result<Page> {
        let pairs = filter_value(filters, &ACCOUNT_FILTERS)?;
        let filter = BillingAccountFilter {
            name: take(&pairs, "name"),
            state: take(&pairs, "state"),
            currency: take(&pairs, "creditLimit.unit"),
            customer_id: take(&pairs, "relatedParty.id"),
            parent_id: take(&pairs, "parentAccount.id"),
            root_id: who.root()?.map(str::to_owned),
        };
        let page = self.store.billing_account_list(&filter, offset, limit).await?;
        let items = page.items.into_iter().map(|row| Versioned { value: self.doc(&row.value), version: row.version });
        Ok(Page { items: items.collect(), total: page.total })
    }

    /// Applies a JSON merge patch to a billing account still at `expected`. Its owner
    /// and currency never change; a new `parentAccount` moves it with the accounts below
    /// it (no cycle, same currency, depth bounded, a partner within its hierarchy);
    /// finance changes only `creditLimit` and `paymentTermsDays`. A new `state`
    /// (`Suspended`, `Active`, `Closed`: [`transition`]), `accountType` or credit limit is
    /// recorded for the engine in the outbox; with an engine, what it would refuse (a close
    /// while money, subscriptions or reservations remain, a credit limit below what is
    /// owed) is refused here first (409). A close may carry `settleReason`, kept in the
    /// audit trail and the engine's journal but not in the document: the engine then
    /// settles the money left with a final adjustment of that reason. A closed account
    /// takes no change.
    pub async fn patch_account(
        &self,
        who: &Principal,
        id: &str,
        patch: &Value,
        expected: Version,
        now: Timestamp,
    ) -> Result<Versioned<Value>> {
        let Value::Object(members) = patch else {
            return Err(CustomersError::invalid("body", "a merge patch of a billing account is a JSON object"));
        };
        let settle_reason = match members.get("settleReason") {
            None => None,
            Some(Value::String(reason)) if !reason.trim().is_empty() && reason.len() <= MAX_NOTE_BYTES => {
                if members.get("state") != Some(&Value::String(AccountState::Closed.as_str().into())) {
                    return Err(CustomersError::invalid("settleReason", "goes with state Closed only"));
                }
                Some(reason.clone())
            }
            Some(_) => {
                return Err(CustomersError::invalid(
                    "settleReason",
                    format!("must be text of 1 to {MAX_NOTE_BYTES} bytes"),
                ))
            }
        };
        let mut patch = patch.clone();
        if let Value::Object(members) = &mut patch {
            members.remove("settleReason");
        }
        // What the engine would refuse is refused before anything is recorded. A race
        // (money arriving between this look and the commit) is answered by the engine
        // refusing the row, which `settle` undoes.
        if let Some(engine) = &self.engine {
            if let Some(found) = self.store.billing_account(id).await? {
                if found.version == expected && Self::reach_account(who, &found.value).is_ok() {
                    if let Ok(plan) = self.plan_patch(who, &found.value, &patch) {
                        precheck(engine.as_ref(), &found.value, &plan, settle_reason.is_some()).await?;
                    }
                }
            }
        }
        let mut tx = self.store.begin().await?;
        let found = tx.billing_account(id).await?;
        let current = found.ok_or_else(|| who.missing("BillingAccount", id))?;
        Self::reach_account(who, &current.value)?;
        if current.version != expected {
            return Err(CustomersError::StaleVersion {
                kind: "BillingAccount",
                id: id.to_owned(),
                expected: expected.get(),
                found: current.version.get(),
            });
        }
        let plan = self.plan_patch(who, &current.value, &patch)?;
        if who.role == Role::Partner && plan.row.credit_limit > current.value.credit_limit {
            within_root_limit(&mut tx, &current.value.root_id, plan.row.credit_limit).await?;
        }
        if plan.state == Some(AccountState::Closed) {
            let children = BillingAccountFilter { parent_id: Some(id.to_owned()), ..BillingAccountFilter::default() };
            let children = self.store.billing_account_list(&children, 0, tollgate_store::CUSTOMER_PAGE_MAX).await?;
            if let Some(open) = children.items.iter().find(|child| child.value.state != AccountState::Closed.as_str()) {
                return Err(CustomersError::Conflict {
                    field: "state".into(),
                    reason: format!("child billing account {} is not closed: close it first", open.value.id),
                });
            }
        }
        if plan.valid.parent_id != current.value.parent_id {
            self.move_account(&mut tx, who, &current.value, &plan.valid).await?;
        }
        let version = tx
            .update_billing_account(&plan.row, expected, now)
            .await
            .map_err(|e| CustomersError::from_store("BillingAccount", e))?;
        let old = &current.value;
        let new = &plan.row;
        let account = new.engine_account_id;
        let billing_account = id.to_owned();
        if new.account_type != old.account_type {
            let (kind, before) = (plan.valid.account_type, account_type_of(old)?);
            let operation =
                EngineOperation::ChangeAccountKind { account, account_type: kind, credit_limit: new.credit_limit };
            let field = RevertField::AccountType { set: (kind, new.credit_limit), before: (before, old.credit_limit) };
            enqueue(
                &mut tx,
                id,
                version,
                "kind",
                &operation,
                Some(&Revert { billing_account: billing_account.clone(), field }),
                now,
            )
            .await?;
        } else if new.credit_limit != old.credit_limit {
            let operation = EngineOperation::SetCreditLimit { account, credit_limit: new.credit_limit };
            let field = RevertField::CreditLimit { set: new.credit_limit, before: old.credit_limit };
            enqueue(
                &mut tx,
                id,
                version,
                "credit-limit",
                &operation,
                Some(&Revert { billing_account: billing_account.clone(), field }),
                now,
            )
            .await?;
        }
        if let Some(state) = plan.state {
            let operation = state.operation(account, &who.actor, settle_reason.as_deref());
            let field = RevertField::State { set: state.as_str().into(), before: old.state.clone() };
            enqueue(&mut tx, id, version, "state", &operation, Some(&Revert { billing_account, field }), now).await?;
        }
        let row = BillingAccountRow { parent_id: plan.valid.parent_id.clone(), ..plan.row };
        let doc = self.doc(&row);
        let audited = match &settle_reason {
            Some(reason) => json!({"document": doc, "settleReason": reason}),
            None => doc.clone(),
        };
        audit(&mut tx, who, "update", "BillingAccount", id, Some(&plan.before), Some(&audited), now).await?;
        if plan.state.is_some() {
            publish_account(&mut tx, "BillingAccountStateChangeEvent", id, &doc, now).await?;
        } else if doc != plan.before {
            publish_account(&mut tx, "BillingAccountAttributeValueChangeEvent", id, &doc, now).await?;
        }
        tx.commit().await?;
        Ok(Versioned { value: doc, version })
    }

    /// Moves a billing account to `state` (the CLI's suspend, resume and close): a patch
    /// of `state` at the account's current version, with a close's settlement reason.
    pub async fn set_account_state(
        &self,
        who: &Principal,
        id: &str,
        state: AccountState,
        settle_reason: Option<&str>,
        now: Timestamp,
    ) -> Result<Versioned<Value>> {
        let current = self.get_account(who, id).await?;
        let mut patch = json!({"state": state.as_str()});
        if let Some(reason) = settle_reason {
            patch["settleReason"] = json!(reason);
        }
        self.patch_account(who, id, &patch, current.version, now).await
    }

    /// What a merge patch makes of `current`, checked: the rows's new values, the
    /// document before, and the state step if any. Moving the account in its hierarchy is
    /// left to the caller (it needs the transaction).
    fn plan_patch(&self, who: &Principal, current: &BillingAccountRow, patch: &Value) -> Result<PatchPlan> {
        let Value::Object(members) = patch else {
            return Err(CustomersError::invalid("body", "a merge patch of a billing account is a JSON object"));
        };
        let before = self.doc(current);
        let mut doc = before.clone();
        crate::merge_patch(&mut doc, patch);
        let changed: Vec<&String> =
            members.keys().filter(|key| before.get(key.as_str()) != doc.get(key.as_str())).collect();
        if changed.is_empty() {
            return Ok(PatchPlan { valid: validate_account(&doc)?, row: current.clone(), before, state: None });
        }
        let from = AccountState::parse(&current.state).unwrap_or(AccountState::Active);
        if from == AccountState::Closed {
            return Err(CustomersError::Conflict {
                field: "state".into(),
                reason: format!("billing account {} is Closed: it takes no change", current.id),
            });
        }
        if who.role == Role::Finance {
            if let Some(field) = changed.iter().find(|key| !FINANCE_FIELDS.contains(&key.as_str())) {
                return Err(CustomersError::forbidden(format!(
                    "finance changes creditLimit and paymentTermsDays, not {field}"
                )));
            }
        }
        if who.role == Role::Partner {
            if let Some(field) = changed.iter().find(|key| PARTNER_FIXED.contains(&key.as_str())) {
                return Err(CustomersError::forbidden(format!("{field} is the operator's to change, not a partner's")));
            }
            if current.parent_id.is_none() && changed.iter().any(|key| key.as_str() == "creditLimit") {
                return Err(CustomersError::forbidden(
                    "the hierarchy's own credit limit is the operator's to change; a partner shares it out to its children",
                ));
            }
        }
        for field in ["id", "href", "@type", "relatedParty", "engineAccountId"] {
            if changed.iter().any(|key| key.as_str() == field) {
                return Err(CustomersError::invalid(field, "cannot change"));
            }
        }
        let valid = validate_account(&doc)?;
        if valid.currency != current.currency {
            return Err(CustomersError::invalid("creditLimit.unit", "the account's currency cannot change"));
        }
        let to = doc.get("state").and_then(Value::as_str).and_then(AccountState::parse).unwrap_or(from);
        transition(from, to)?;
        let row = BillingAccountRow {
            name: valid.name.clone(),
            account_type: valid.account_type.as_str().into(),
            state: to.as_str().into(),
            bill_cycle_day: valid.bill_cycle_day,
            payment_terms_days: valid.payment_terms_days,
            tax_profile_id: valid.tax_profile_id.clone(),
            credit_limit: valid.credit_limit,
            ..current.clone()
        };
        Ok(PatchPlan { valid, row, before, state: (to != from).then_some(to) })
    }
}

/// A partner's new account takes its parent's payment terms and tax profile: naming
/// others is refused (they are the operator's terms).
fn partner_terms(doc: &Value, valid: &ValidAccount, parent: &BillingAccountRow) -> Result<()> {
    if doc.get("paymentTermsDays").is_some() && valid.payment_terms_days != parent.payment_terms_days {
        return Err(CustomersError::forbidden(
            "paymentTermsDays is the operator's: a partner's account has its parent's",
        ));
    }
    if doc.get("taxProfileId").is_some() && valid.tax_profile_id != parent.tax_profile_id {
        return Err(CustomersError::forbidden("taxProfileId is the operator's: a partner's account has its parent's"));
    }
    Ok(())
}

/// A partner shares out its hierarchy's credit: no account of it above its root's limit.
async fn within_root_limit(tx: &mut Tx, root_id: &str, credit_limit: Decimal) -> Result<()> {
    let root = tx
        .billing_account(root_id)
        .await?
        .ok_or_else(|| CustomersError::forbidden("the partner's hierarchy has no root account"))?;
    if credit_limit > root.value.credit_limit {
        return Err(CustomersError::forbidden(format!(
            "creditLimit.value {credit_limit} is above the hierarchy's own ({}): the operator sets that",
            root.value.credit_limit
        )));
    }
    Ok(())
}

/// A checked merge patch of a billing account.
#[derive(Debug)]
struct PatchPlan {
    valid: ValidAccount,
    /// The row with the patch applied (parent, root and depth as they were).
    row: BillingAccountRow,
    /// The document before.
    before: Value,
    /// The state it moves to, if it moves.
    state: Option<AccountState>,
}

fn account_type_of(row: &BillingAccountRow) -> Result<AccountType> {
    AccountType::parse(&row.account_type).ok_or_else(|| CustomersError::Conflict {
        field: "accountType".into(),
        reason: format!("stored account type {:?} is unknown", row.account_type),
    })
}

/// Refuses (409) a patch the engine would refuse, as far as the engine's account shows it.
/// An engine that does not know the account yet (its creation is still in the outbox) or
/// cannot be reached decides later, when the row reaches it.
async fn precheck(
    engine: &dyn EnginePort,
    current: &BillingAccountRow,
    plan: &PatchPlan,
    settling: bool,
) -> Result<()> {
    let closing = plan.state == Some(AccountState::Closed);
    let kind_changed = plan.row.account_type != current.account_type;
    let limit_lowered = plan.row.credit_limit < current.credit_limit;
    if !(closing || kind_changed || limit_lowered) {
        return Ok(());
    }
    let Ok(Some(account)) = engine.account(current.engine_account_id).await else { return Ok(()) };
    let conflict = |field: &str, reason: String| Err(CustomersError::Conflict { field: field.into(), reason });
    if closing {
        if let Some(subscription) = account.live_subscriptions.first() {
            return conflict(
                "state",
                format!("subscription {subscription} of the account is not terminated: terminate it first"),
            );
        }
        if !account.reserved.is_zero() {
            return conflict("state", "sessions hold reservations on the account: end them first".into());
        }
        let held: Decimal = account.money.iter().map(|bucket| bucket.balance).sum();
        if !held.is_zero() && !settling {
            return conflict(
                "state",
                format!(
                    "the account holds {held} {}: settle it first (an adjustBalance of {}) or give settleReason",
                    account.currency, -held
                ),
            );
        }
    }
    if kind_changed || limit_lowered {
        let main = account.money.iter().find(|bucket| bucket.id == 0).map_or(Decimal::ZERO, |bucket| bucket.balance);
        if main < -plan.row.credit_limit {
            return conflict(
                "creditLimit.value",
                format!(
                    "the account owes {} {}, more than a credit limit of {}",
                    -main, account.currency, plan.row.credit_limit
                ),
            );
        }
        if kind_changed && !account.reserved.is_zero() {
            return conflict("accountType", "sessions hold reservations on the account: end them first".into());
        }
    }
    Ok(())
}

impl Customers {
    /// Moves `account` (and its subtree) under `valid.parent_id`, or to the top of a
    /// hierarchy of its own: refused when the new parent is the account or below it (a
    /// cycle), of another currency, outside a partner's hierarchy, or when the subtree
    /// would end up deeper than [`MAX_DEPTH`].
    async fn move_account(
        &self,
        tx: &mut Tx,
        who: &Principal,
        account: &BillingAccountRow,
        valid: &ValidAccount,
    ) -> Result<()> {
        let scope = who.root()?;
        let below = tx.billing_account_descendants(&account.id, &account.root_id, account.depth).await?;
        let subtree_height = below.iter().map(|(_, depth)| depth - account.depth).max().unwrap_or(0);
        let (root_id, depth) = match &valid.parent_id {
            None => {
                if scope.is_some() {
                    return Err(CustomersError::forbidden("a partner keeps its accounts inside its hierarchy"));
                }
                (account.id.clone(), 0)
            }
            Some(parent_id) => {
                if parent_id == &account.id || below.iter().any(|(id, _)| id == parent_id) {
                    return Err(CustomersError::invalid(
                        "parentAccount.id",
                        format!("{parent_id} is this account or below it: the hierarchy would have a cycle"),
                    ));
                }
                let Some(parent) = tx.billing_account(parent_id).await? else {
                    let refused =
                        CustomersError::invalid("parentAccount.id", format!("no billing account {parent_id}"));
                    return Err(who.unknown(&format!("billing account {parent_id}"), refused));
                };
                check_parent(valid, &parent.value, scope)?;
                (parent.value.root_id.clone(), parent.value.depth + 1)
            }
        };
        if depth + subtree_height > MAX_DEPTH {
            return Err(CustomersError::invalid(
                "parentAccount.id",
                format!("the accounts below would be deeper than {MAX_DEPTH} levels under their root"),
            ));
        }
        tx.move_billing_account(&account.id, valid.parent_id.as_deref(), &root_id, depth)
            .await
            .map_err(|e| CustomersError::from_store("BillingAccount", e))
    }
}

/// A child's parent: in the partner's hierarchy, same currency, not too deep.
fn check_parent(valid: &ValidAccount, parent: &BillingAccountRow, scope: Option<&str>) -> Result<()> {
    if let Some(root) = scope {
        if parent.root_id != root {
            return Err(CustomersError::forbidden("the parent account is outside the partner's hierarchy"));
        }
    }
    if parent.currency != valid.currency {
        return Err(CustomersError::invalid(
            "creditLimit.unit",
            format!("{} differs from the parent account's currency {}", valid.currency, parent.currency),
        ));
    }
    if parent.depth + 1 > MAX_DEPTH {
        return Err(CustomersError::invalid(
            "parentAccount.id",
            format!("a hierarchy is at most {} levels deep", MAX_DEPTH + 1),
        ));
    }
    Ok(())
}

pub(crate) async fn enqueue(
    tx: &mut Tx,
    id: &str,
    version: Version,
    what: &str,
    operation: &EngineOperation,
    revert: Option<&Revert>,
    now: Timestamp,
) -> Result<i64> {
    let key = idempotency_key(id, version.get(), what);
    let ordering = ordering_key(id);
    let payload = match revert {
        Some(revert) => operation.payload_with(revert),
        None => operation.payload(),
    };
    let item = NewOutboxItem {
        idempotency_key: &key,
        kind: operation.kind(),
        ordering_key: Some(&ordering),
        payload: &payload,
    };
    Ok(tx.enqueue(item, now).await?)
}

/// Publishes a customer event to customerManagement's hub, in the change's transaction.
async fn publish_customer(tx: &mut Tx, event_type: &str, id: &str, doc: &Value, now: Timestamp) -> Result<()> {
    let event = NewEvent { api: CUSTOMER_BASE_PATH, event_type, entity_type: "customer", entity_id: id, entity: doc };
    tx.publish_event(event, now).await?;
    Ok(())
}

/// A customer's change as events: `CustomerStateChangeEvent` when its status changed,
/// `CustomerAttributeValueChangeEvent` when anything else did.
async fn publish_customer_change(tx: &mut Tx, id: &str, before: &Value, after: &Value, now: Timestamp) -> Result<()> {
    let without_status = |doc: &Value| {
        let mut doc = doc.clone();
        if let Value::Object(members) = &mut doc {
            members.remove("status");
        }
        doc
    };
    if before.get("status") != after.get("status") {
        publish_customer(tx, "CustomerStateChangeEvent", id, after, now).await?;
    }
    if without_status(before) != without_status(after) {
        publish_customer(tx, "CustomerAttributeValueChangeEvent", id, after, now).await?;
    }
    Ok(())
}

/// Publishes a billing account event to accountManagement's hub, in the change's
/// transaction.
pub(crate) async fn publish_account(
    tx: &mut Tx,
    event_type: &str,
    id: &str,
    doc: &Value,
    now: Timestamp,
) -> Result<()> {
    let event =
        NewEvent { api: ACCOUNT_BASE_PATH, event_type, entity_type: "billingAccount", entity_id: id, entity: doc };
    tx.publish_event(event, now).await?;
    Ok(())
}

#[allow(clippy::too_many_arguments, reason = "one audit record's fields")]
pub(crate) async fn audit(
    tx: &mut Tx,
    who: &Principal,
    action: &str,
    entity_type: &str,
    id: &str,
    before: Option<&Value>,
    after: Option<&Value>,
    now: Timestamp,
) -> Result<()> {
    // The trail cannot be edited, so it never holds what an erasure must remove: a
    // customer's documents come redacted (`redacted`), every other document here loses
    // its names (a person's account is named after them) and free text.
    let (before, after) = if entity_type == "Customer" {
        (before.cloned(), after.cloned())
    } else {
        (before.map(without_personal_text), after.map(without_personal_text))
    };
    let record = AuditRecord {
        actor: &who.actor,
        action,
        entity_type,
        entity_id: id,
        before: before.as_ref(),
        after: after.as_ref(),
    };
    tx.audit(record, now).await?;
    Ok(())
}

/// `doc` with every `name` and `description`, at any depth, replaced by a marker.
fn without_personal_text(doc: &Value) -> Value {
    match doc {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(key, value)| {
                    let value = match (key.as_str(), value) {
                        ("name", Value::String(_)) => Value::String("<personal data>".into()),
                        ("description", Value::String(_)) => Value::String("<free text>".into()),
                        _ => without_personal_text(value),
                    };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_personal_text).collect()),
        other => other.clone(),
    }
}
