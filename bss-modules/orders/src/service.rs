//! [`Orders`]: placing, reading, amending and cancelling product orders, and reading the
//! product, service and service order inventories. Placing an order is one transaction:
//! the caller's reach, every item checked against the store (offering sellable, its plan
//! known to the engine and in the account's currency, the product in a state that allows
//! the action, a chosen number or SIM available), the order, its items and their
//! workflow's tasks written, the audit record appended; the provisioning worker takes it
//! from there. A cancellation is decided in its own transaction and carried out by the
//! workflow, which compensates what was done.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tollgate_catalogue::Catalogue;
use tollgate_customers::Principal;
use tollgate_store::{
    new_entity_id, AuditRecord, BillingAccountRow, CancelRow, LineRow, NewEvent, NewTask, OrderFilter, OrderItemRow,
    ProductEntry, ProductFilter, ProductOrderRow, Role, Store, Tx, Version, Versioned,
};

use crate::action::{parse_order, Action, Request, RequestedItem};
use crate::docs::{
    addon_doc, cancel_doc, line_doc, new_order_doc, order_doc, service_doc, service_order_doc, service_order_id,
    ORDER_BASE_PATH,
};
use crate::error::{OrdersError, Result};
use crate::offering::{Offering, Offerings};
use crate::ports::{EnginePort, ResourceKind, Resources};
use crate::state::{ItemState, OrderState};

/// The attributes an order list may be filtered on.
pub const ORDER_FILTERS: [&str; 2] = ["state", "billingAccount.id"];
/// The longest idempotency key [`Orders::create_once`] takes, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 200;
/// The attributes a product or service list may be filtered on.
pub const PRODUCT_FILTERS: [&str; 2] = ["status", "billingAccount.id"];
/// The attributes a service list may be filtered on.
pub const SERVICE_FILTERS: [&str; 1] = ["state"];

/// The events productOrderingManagement publishes to its hub's listeners (TMF622).
pub const ORDER_EVENTS: [&str; 5] = [
    "ProductOrderCreateEvent",
    "ProductOrderAttributeValueChangeEvent",
    "ProductOrderStateChangeEvent",
    "CancelProductOrderCreateEvent",
    "CancelProductOrderStateChangeEvent",
];

/// The fields a PATCH of an order may change (anything else is refused naming it).
const PATCHABLE: [&str; 8] = [
    "description",
    "priority",
    "category",
    "externalId",
    "notificationContact",
    "note",
    "requestedCompletionDate",
    "requestedStartDate",
];

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Versioned<Value>>,
    /// How many match in all.
    pub total: i64,
}

/// The actor of the workflow's audit records.
pub(crate) const WORKFLOW_ACTOR: &str = "system:provisioning";

/// Product orders and the inventories they keep, on a store.
#[derive(Debug, Clone)]
pub struct Orders {
    store: Store,
    engine: Arc<dyn EnginePort>,
    resources: Arc<dyn Resources>,
    offerings: Arc<Offerings>,
    wake: Arc<Notify>,
}

/// A partner's root, or none for roles that reach everything.
fn scope(who: &Principal) -> Result<Option<&str>> {
    match (who.role, who.scope_root.as_deref()) {
        (Role::Partner, None) => Err(OrdersError::forbidden("a partner token without a hierarchy")),
        (Role::Partner, Some(root)) => Ok(Some(root)),
        _ => Ok(None),
    }
}

/// The error for `what` that does not exist: to a partner the same refusal as another
/// hierarchy's (it learns nothing of the ids of others), else `otherwise`.
fn unknown(who: &Principal, what: &str, otherwise: OrdersError) -> OrdersError {
    match scope(who) {
        Ok(None) => otherwise,
        Ok(Some(_)) => OrdersError::forbidden(format!("{what} is outside the partner's hierarchy")),
        Err(error) => error,
    }
}

/// [`unknown`] for an entity of `kind` looked up by its `id` (`NotFound`).
fn missing(who: &Principal, kind: &'static str, id: &str) -> OrdersError {
    unknown(who, &format!("{kind} {id}"), OrdersError::NotFound { kind, id: id.to_owned() })
}

fn reach(who: &Principal, root: &str, what: &str) -> Result<()> {
    match scope(who)? {
        Some(scope) if scope != root => {
            Err(OrdersError::forbidden(format!("{what} is outside the partner's hierarchy")))
        }
        _ => Ok(()),
    }
}

fn filters<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    allowed: &[&str],
) -> Result<Vec<(&'a str, String)>> {
    let mut seen: Vec<(&str, String)> = Vec::new();
    for (name, value) in pairs {
        if !allowed.contains(&name) {
            return Err(OrdersError::invalid(name, format!("cannot filter on {name:?} (only {})", allowed.join(", "))));
        }
        if seen.iter().any(|(seen, _)| *seen == name) {
            return Err(OrdersError::invalid(name, "given twice"));
        }
        seen.push((name, value.to_owned()));
    }
    Ok(seen)
}

fn take(pairs: &[(&str, String)], name: &str) -> Option<String> {
    pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| value.clone())
}

/// Whether `action` may be done to `line` now; the reason if not.
pub(crate) fn line_allows(action: Action, line: &LineRow) -> std::result::Result<(), String> {
    let state = line.subscription.state.as_str();
    if let Some(status) = &line.product_status {
        return Err(format!("product {} is {status}", line.subscription.id));
    }
    let ok = match action {
        Action::NewLine => false,
        Action::Suspend => state == "active",
        Action::Resume => state == "suspended",
        Action::ChangePlan | Action::SimSwap | Action::NumberChange | Action::AddAddOn => {
            matches!(state, "active" | "suspended")
        }
        Action::Terminate | Action::RemoveAddOn => state != "terminated",
    };
    if ok {
        Ok(())
    } else {
        Err(format!("product {} is {state}: it cannot be given {}", line.subscription.id, action.as_str()))
    }
}

/// Appends an audit record.
pub(crate) async fn audit(
    tx: &mut Tx,
    actor: &str,
    action: &str,
    entity_type: &str,
    id: &str,
    after: Option<&Value>,
    now: Timestamp,
) -> Result<()> {
    let record = AuditRecord { actor, action, entity_type, entity_id: id, before: None, after };
    tx.audit(record, now).await?;
    Ok(())
}

/// Publishes an order event (`productOrder`) or a cancellation event
/// (`cancelProductOrder`) to productOrderingManagement's hub, in the change's transaction.
/// The order hierarchy `root_id` placed under idempotency key `key`, as shown, if any.
/// With `keyed.digest`, the order must have been placed by the same request.
async fn placed_under(tx: &mut Tx, root_id: &str, keyed: &Keyed<'_>) -> Result<Option<Versioned<Value>>> {
    let Some(first) = tx.product_order_by_key(root_id, keyed.key).await? else { return Ok(None) };
    same_request(keyed, &first.value)?;
    let items = tx.order_items(&first.value.id).await?;
    Ok(Some(Versioned { value: order_doc(&first.value, &items), version: first.version }))
}

/// With `keyed.digest`, `first` must have been placed by the same request.
fn same_request(keyed: &Keyed<'_>, first: &ProductOrderRow) -> Result<()> {
    if keyed.digest.is_some() && first.idempotency_digest != keyed.digest {
        return Err(OrdersError::KeyReused {
            key: keyed.key.strip_prefix(REQUEST_KEY_PREFIX).unwrap_or(keyed.key).to_owned(),
            order: first.id.clone(),
        });
    }
    Ok(())
}

/// An idempotency key an order is placed under, and for an API request's key the digest
/// of that request.
struct Keyed<'a> {
    key: &'a str,
    digest: Option<String>,
}

/// Where the keys of API requests (`Idempotency-Key`) live among the order keys, apart
/// from those of the dunning run and the fraud detectors, which a caller cannot take.
const REQUEST_KEY_PREFIX: &str = "request:";

/// An order placed under an idempotency key.
#[derive(Debug, Clone)]
pub struct Placed {
    pub order: Versioned<Value>,
    /// Placed by an earlier request under the same key; nothing new was placed.
    pub replayed: bool,
}

pub(crate) async fn publish(tx: &mut Tx, event_type: &str, id: &str, doc: &Value, now: Timestamp) -> Result<()> {
    let entity_type = if event_type.starts_with("Cancel") { "cancelProductOrder" } else { "productOrder" };
    let event = NewEvent { api: ORDER_BASE_PATH, event_type, entity_type, entity_id: id, entity: doc };
    tx.publish_event(event, now).await?;
    Ok(())
}

/// An item resolved against the store: its action, the product and what the workflow needs.
struct Resolved {
    action: Action,
    product_id: String,
    request: Value,
}

impl Orders {
    /// On `store`, reaching the engine through `engine` and the resource inventory
    /// through `resources`.
    pub fn new(store: Store, engine: Arc<dyn EnginePort>, resources: Arc<dyn Resources>) -> Orders {
        let catalogue = Catalogue::new(store.clone(), tollgate_catalogue::BASE_PATH);
        Orders {
            store,
            engine,
            resources,
            offerings: Arc::new(Offerings::new(catalogue)),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Notified when an order is placed or cancelled: the provisioning worker waits on it.
    pub fn wake(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    pub(crate) fn engine(&self) -> &Arc<dyn EnginePort> {
        &self.engine
    }

    pub(crate) fn resources(&self) -> &Arc<dyn Resources> {
        &self.resources
    }

    /// Places an order (TMF622 `ProductOrder_Create`): checked, stored with its workflow,
    /// audited, in one transaction; `acknowledged`, or `pending` until its requested start.
    pub async fn create(&self, who: &Principal, doc: Value, now: Timestamp) -> Result<Versioned<Value>> {
        Ok(self.place(who, doc, None, now).await?.order)
    }

    /// Places an order as [`create`](Self::create) does, under the caller's idempotency
    /// `key`, unique per billing hierarchy: placed again under the same key (a replay after
    /// a crash, concurrent or not), it is the first order that is returned and nothing new
    /// is placed, whatever the document says the second time.
    pub async fn create_once(
        &self,
        who: &Principal,
        doc: Value,
        key: &str,
        now: Timestamp,
    ) -> Result<Versioned<Value>> {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
            return Err(OrdersError::invalid(
                "idempotencyKey",
                format!("must have 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes, has {}", key.len()),
            ));
        }
        Ok(self.place(who, doc, Some(Keyed { key, digest: None }), now).await?.order)
    }

    /// Places an order for an API request that carries an `Idempotency-Key`: the request
    /// sent again under the same key (a client retrying after a timeout) answers the order
    /// the first one placed, marked `replayed`; the key sent with another request is
    /// refused ([`OrdersError::KeyReused`]). Keys are unique per billing hierarchy and
    /// apart from the keys the dunning run and fraud detectors use.
    pub async fn create_for_request(&self, who: &Principal, doc: Value, key: &str, now: Timestamp) -> Result<Placed> {
        let limit = MAX_IDEMPOTENCY_KEY_BYTES - REQUEST_KEY_PREFIX.len();
        if key.is_empty() || key.len() > limit || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(OrdersError::invalid(
                "Idempotency-Key",
                format!("must be 1 to {limit} visible ASCII characters, has {} bytes", key.len()),
            ));
        }
        let text = serde_json::to_vec(&doc).map_err(|err| OrdersError::invalid("body", err.to_string()))?;
        let digest = tollgate_store::sha256_hex(&text);
        let key = format!("{REQUEST_KEY_PREFIX}{key}");
        self.place(who, doc, Some(Keyed { key: &key, digest: Some(digest) }), now).await
    }

    async fn place(&self, who: &Principal, doc: Value, keyed: Option<Keyed<'_>>, now: Timestamp) -> Result<Placed> {
        // A request sent again answers its first order before anything is checked again:
        // its offering may have been retired, or its requested date passed, since then.
        if let Some(keyed) = &keyed {
            if let Some(first) = self.placed_before(who, &doc, keyed).await? {
                return Ok(Placed { order: first, replayed: true });
            }
        }
        let requested = parse_order(&doc, now)?;
        // The catalogue is read before the transaction begins: a read on another
        // connection while the transaction holds one would let concurrent orders take
        // every connection of the pool and wait for one more.
        let mut offerings = HashMap::with_capacity(requested.items.len());
        for item in &requested.items {
            if let Some(offering_id) = item.request.offering_id() {
                let field = format!("productOrderItem[{}].productOffering.id", item.index);
                offerings.insert(item.index, self.offerings.sellable(offering_id, &field, now).await?);
            }
        }
        let mut tx = self.store.begin().await?;
        let Some(account) = tx.billing_account(&requested.billing_account_id).await? else {
            let id = &requested.billing_account_id;
            let refused = OrdersError::invalid("billingAccount.id", format!("no billing account {id}"));
            return Err(unknown(who, &format!("billing account {id}"), refused));
        };
        let account = account.value;
        reach(who, &account.root_id, &format!("billing account {}", account.id))?;
        if let Some(keyed) = &keyed {
            if let Some(first) = placed_under(&mut tx, &account.root_id, keyed).await? {
                return Ok(Placed { order: first, replayed: true });
            }
        }
        let id = new_entity_id()?;
        let mut items = Vec::with_capacity(requested.items.len());
        for item in &requested.items {
            if let Some(product) = item.request.product_id() {
                if let Some(other) =
                    requested.items.iter().find(|o| o.index < item.index && o.request.product_id() == Some(product))
                {
                    return Err(OrdersError::invalid(
                        format!("productOrderItem[{}].product.id", item.index),
                        format!(
                            "item {} acts on product {product} already: one item per product in an order",
                            other.id
                        ),
                    ));
                }
            }
            let resolved = self.resolve(&mut tx, &account, item, offerings.remove(&item.index), now).await?;
            items.push(OrderItemRow {
                order_id: id.clone(),
                item_id: item.id.clone(),
                position: i64::try_from(item.index).unwrap_or(i64::MAX),
                order_seq: 0,
                action: resolved.action.as_str().into(),
                state: ItemState::Acknowledged.as_str().into(),
                product_id: resolved.product_id,
                request: resolved.request,
            });
        }
        let state = if requested.requested_start.is_some() { OrderState::Pending } else { OrderState::Acknowledged };
        for item in &mut items {
            if state == OrderState::Pending {
                item.state = ItemState::Pending.as_str().into();
            }
        }
        let row = ProductOrderRow {
            id: id.clone(),
            seq: 0,
            state: state.as_str().into(),
            billing_account_id: account.id.clone(),
            root_id: account.root_id.clone(),
            requested_start_at: requested.requested_start,
            cancelling: false,
            doc: new_order_doc(&doc, &id, &account.id, &items, now),
            created_at: now,
            completed_at: None,
            idempotency_key: keyed.as_ref().map(|keyed| keyed.key.to_owned()),
            idempotency_digest: keyed.as_ref().and_then(|keyed| keyed.digest.clone()),
        };
        let seq = match tx.insert_product_order(&row, now).await {
            Ok(seq) => seq,
            Err(error) => {
                // Placed under the same key meanwhile (committed since this transaction began).
                if let (Some(keyed), tollgate_store::StoreError::Conflict { .. }) = (&keyed, &error) {
                    if let Some(first) = placed_under(&mut tx, &account.root_id, keyed).await? {
                        return Ok(Placed { order: first, replayed: true });
                    }
                }
                return Err(OrdersError::from_store("ProductOrder", error));
            }
        };
        for item in &mut items {
            item.order_seq = seq;
        }
        tx.insert_order_items(&items, now).await?;
        let due = requested.requested_start.unwrap_or(now);
        let mut tasks = Vec::new();
        for item in &items {
            let action = Action::parse(&item.action).unwrap_or(Action::NewLine);
            for (position, step) in action.steps().iter().enumerate() {
                tasks.push(NewTask {
                    order_id: &id,
                    item_id: &item.item_id,
                    position: i64::try_from(position).unwrap_or(i64::MAX),
                    step: step.as_str(),
                    state: if position == 0 { "due" } else { "waiting" },
                    next_attempt_at: due,
                });
            }
        }
        tx.insert_tasks(&tasks, now).await?;
        let shown = order_doc(&ProductOrderRow { seq, ..row }, &items);
        audit(&mut tx, &who.actor, "create", "ProductOrder", &id, Some(&shown), now).await?;
        publish(&mut tx, "ProductOrderCreateEvent", &id, &shown, now).await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(Placed { order: Versioned { value: shown, version: Version::FIRST }, replayed: false })
    }

    /// The order placed under `keyed` in the hierarchy of the billing account `doc` names,
    /// if there is one (and the caller reaches that hierarchy).
    async fn placed_before(&self, who: &Principal, doc: &Value, keyed: &Keyed<'_>) -> Result<Option<Versioned<Value>>> {
        let Some(account_id) = doc.pointer("/billingAccount/id").and_then(Value::as_str) else { return Ok(None) };
        let Some(account) = self.store.billing_account(account_id).await? else { return Ok(None) };
        reach(who, &account.value.root_id, &format!("billing account {}", account.value.id))?;
        let Some((first, items)) = self.store.product_order_by_key(&account.value.root_id, keyed.key).await? else {
            return Ok(None);
        };
        same_request(keyed, &first.value)?;
        Ok(Some(Versioned { value: order_doc(&first.value, &items), version: first.version }))
    }

    /// Checks one item against the store.
    async fn resolve(
        &self,
        tx: &mut Tx,
        account: &BillingAccountRow,
        item: &RequestedItem,
        offering: Option<Offering>,
        now: Timestamp,
    ) -> Result<Resolved> {
        let at = |field: &str| format!("productOrderItem[{}].{field}", item.index);
        // Read before the transaction for every item that names an offering.
        let offering =
            || offering.clone().ok_or_else(|| OrdersError::invalid(at("productOffering.id"), "no product offering"));
        let active_account = || {
            if account.state == "Active" {
                Ok(())
            } else {
                Err(OrdersError::invalid(
                    "billingAccount.id",
                    format!("billing account {} is {}", account.id, account.state),
                ))
            }
        };
        let line_plan = |offering: &Offering| -> Result<String> {
            let Some((plan, currency)) = &offering.plan else {
                return Err(OrdersError::invalid(
                    at("productOffering.id"),
                    format!("product offering {} has no usage price with a tariff plan", offering.id),
                ));
            };
            if currency != &account.currency {
                return Err(OrdersError::invalid(
                    at("productOffering.id"),
                    format!(
                        "its tariff plan {plan} charges in {currency}, the billing account in {}",
                        account.currency
                    ),
                ));
            }
            if !self.engine.knows_plan(plan) {
                return Err(OrdersError::invalid(
                    at("productOffering.id"),
                    format!("the charging engine has no tariff plan {plan} loaded (serve --plan-file)"),
                ));
            }
            Ok(plan.clone())
        };
        let characteristic = || at("product.productCharacteristic");
        match &item.request {
            Request::NewLine { offering_id, msisdn, iccid } => {
                active_account()?;
                let offering = offering()?;
                let plan = line_plan(&offering)?;
                self.check_available(tx, ResourceKind::Msisdn, msisdn.as_deref(), &characteristic(), now).await?;
                self.check_available(tx, ResourceKind::Sim, iccid.as_deref(), &characteristic(), now).await?;
                Ok(Resolved {
                    action: Action::NewLine,
                    product_id: new_entity_id()?,
                    request: json!({"offeringId": offering_id, "planId": plan, "msisdn": msisdn, "iccid": iccid}),
                })
            }
            Request::AddOn { offering_id, parent_id } => {
                active_account()?;
                let line = self
                    .line(tx, account, parent_id, Action::AddAddOn, &at("product.productRelationship[0].product.id"))
                    .await?;
                let offering = offering()?;
                if offering.plan.is_some() {
                    return Err(OrdersError::invalid(
                        at("productOffering.id"),
                        "an add-on offering has no usage price: a line is rated by its own offering's plan",
                    ));
                }
                Ok(Resolved {
                    action: Action::AddAddOn,
                    product_id: new_entity_id()?,
                    request: json!({"offeringId": offering_id, "parentId": line.subscription.id}),
                })
            }
            Request::ChangeOffering { product_id, offering_id } => {
                active_account()?;
                let line = self.line(tx, account, product_id, Action::ChangePlan, &at("product.id")).await?;
                let offering = offering()?;
                let plan = line_plan(&offering)?;
                if line.subscription.offering_id.as_deref() == Some(offering_id.as_str())
                    || line.subscription.plan_id == plan
                {
                    return Err(OrdersError::invalid(
                        at("productOffering.id"),
                        format!("product {product_id} is on this offering's plan {plan} already"),
                    ));
                }
                Ok(Resolved {
                    action: Action::ChangePlan,
                    product_id: product_id.clone(),
                    request: json!({"offeringId": offering_id, "planId": plan}),
                })
            }
            Request::Suspend { product_id } | Request::Resume { product_id } => {
                let action =
                    if matches!(item.request, Request::Suspend { .. }) { Action::Suspend } else { Action::Resume };
                self.line(tx, account, product_id, action, &at("product.status")).await?;
                Ok(Resolved { action, product_id: product_id.clone(), request: json!({}) })
            }
            Request::SimSwap { product_id, iccid } => {
                self.line(tx, account, product_id, Action::SimSwap, &at("product.id")).await?;
                self.check_available(tx, ResourceKind::Sim, iccid.as_deref(), &characteristic(), now).await?;
                Ok(Resolved {
                    action: Action::SimSwap,
                    product_id: product_id.clone(),
                    request: json!({"iccid": iccid}),
                })
            }
            Request::NumberChange { product_id, msisdn } => {
                self.line(tx, account, product_id, Action::NumberChange, &at("product.id")).await?;
                self.check_available(tx, ResourceKind::Msisdn, msisdn.as_deref(), &characteristic(), now).await?;
                Ok(Resolved {
                    action: Action::NumberChange,
                    product_id: product_id.clone(),
                    request: json!({"msisdn": msisdn}),
                })
            }
            Request::Delete { product_id } => {
                if tx.line(product_id).await?.is_some() {
                    self.line(tx, account, product_id, Action::Terminate, &at("product.id")).await?;
                    return Ok(Resolved {
                        action: Action::Terminate,
                        product_id: product_id.clone(),
                        request: json!({}),
                    });
                }
                let Some(addon) = tx.addon(product_id).await? else {
                    return Err(OrdersError::invalid(at("product.id"), format!("no product {product_id}")));
                };
                if addon.status != "active" {
                    return Err(OrdersError::invalid(
                        at("product.id"),
                        format!("add-on {product_id} is {}", addon.status),
                    ));
                }
                self.line(tx, account, &addon.subscription_id, Action::RemoveAddOn, &at("product.id")).await?;
                Ok(Resolved {
                    action: Action::RemoveAddOn,
                    product_id: product_id.clone(),
                    request: json!({"parentId": addon.subscription_id}),
                })
            }
        }
    }

    /// The line `id` of `account` if `action` may be done to it; `Invalid` naming `field`.
    async fn line(
        &self,
        tx: &mut Tx,
        account: &BillingAccountRow,
        id: &str,
        action: Action,
        field: &str,
    ) -> Result<LineRow> {
        // Which product: named as `….product.id` whatever field the action names, and in
        // the same words whether it does not exist or is another account's (a partner
        // must not learn which ids exist in other hierarchies).
        let id_field = field.rsplit_once('.').map_or_else(|| field.to_owned(), |(head, _)| format!("{head}.id"));
        let line = tx.line(id).await?.filter(|line| line.value.subscription.billing_account_id == account.id);
        let Some(line) = line else {
            return Err(OrdersError::invalid(id_field, format!("billing account {} has no product {id}", account.id)));
        };
        line_allows(action, &line.value).map_err(|reason| OrdersError::invalid(field, reason))?;
        Ok(line.value)
    }

    async fn check_available(
        &self,
        tx: &mut Tx,
        kind: ResourceKind,
        chosen: Option<&str>,
        field: &str,
        now: Timestamp,
    ) -> Result<()> {
        let Some(value) = chosen else { return Ok(()) };
        match self.resources.is_available(tx, kind, value, now).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(OrdersError::invalid(field, format!("{} {value} is not available", kind.as_str()))),
            Err(OrdersError::NotFound { .. } | OrdersError::Invalid { .. }) => {
                Err(OrdersError::invalid(field, format!("the inventory has no {} {value}", kind.as_str())))
            }
            Err(other) => Err(other),
        }
    }

    /// An order.
    pub async fn get(&self, who: &Principal, id: &str) -> Result<Versioned<Value>> {
        let Some((order, items)) = self.store.product_order_detail(id).await? else {
            return Err(missing(who, "ProductOrder", id));
        };
        reach(who, &order.value.root_id, &format!("product order {id}"))?;
        let items: Vec<OrderItemRow> = items.into_iter().map(|(item, _)| item).collect();
        Ok(Versioned { value: order_doc(&order.value, &items), version: order.version })
    }

    /// Orders matching the filters ([`ORDER_FILTERS`]), a partner's only of its hierarchy.
    pub async fn list<'a>(
        &self,
        who: &Principal,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        offset: u64,
        limit: u32,
    ) -> Result<Page> {
        let pairs = filters(pairs, &ORDER_FILTERS)?;
        let filter = OrderFilter {
            state: take(&pairs, "state"),
            billing_account_id: take(&pairs, "billingAccount.id"),
            root_id: scope(who)?.map(str::to_owned),
        };
        let page = self.store.product_order_list(&filter, offset, limit).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for order in page.items {
            let detail = self.store.product_order_detail(&order.value.id).await?;
            let rows: Vec<OrderItemRow> =
                detail.map(|(_, items)| items.into_iter().map(|(item, _)| item).collect()).unwrap_or_default();
            items.push(Versioned { value: order_doc(&order.value, &rows), version: order.version });
        }
        Ok(Page { items, total: page.total })
    }

    /// Applies a JSON merge patch to an order still at `expected`: only its descriptive
    /// fields, and its requested start date while nothing of it has started.
    pub async fn patch(
        &self,
        who: &Principal,
        id: &str,
        patch: &Value,
        expected: Version,
        now: Timestamp,
    ) -> Result<Versioned<Value>> {
        let Value::Object(members) = patch else {
            return Err(OrdersError::invalid("body", "a merge patch of a product order is a JSON object"));
        };
        if let Some(field) = members.keys().find(|key| !PATCHABLE.contains(&key.as_str())) {
            let reason = if field == "state" { "cancel an order through cancelProductOrder" } else { "cannot change" };
            return Err(OrdersError::invalid(field.clone(), reason));
        }
        crate::action::strings_only(
            members,
            &["description", "priority", "category", "externalId", "requestedCompletionDate", "requestedStartDate"],
        )?;
        let mut tx = self.store.begin().await?;
        let Some(current) = tx.product_order(id).await? else {
            return Err(missing(who, "ProductOrder", id));
        };
        reach(who, &current.value.root_id, &format!("product order {id}"))?;
        if current.version != expected {
            return Err(OrdersError::StaleVersion {
                kind: "ProductOrder",
                id: id.into(),
                expected: expected.get(),
                found: current.version.get(),
            });
        }
        let mut row = current.value.clone();
        let state = OrderState::parse(&row.state).unwrap_or(OrderState::InProgress);
        if state.is_final() {
            return Err(OrdersError::conflict("state", format!("product order {id} is {state}")));
        }
        if let Some(start) = members.get("requestedStartDate") {
            let items = tx.order_items(id).await?;
            let started = items.iter().any(|item| {
                !matches!(ItemState::parse(&item.state), Some(ItemState::Acknowledged | ItemState::Pending))
            });
            if started || row.cancelling {
                return Err(OrdersError::conflict("requestedStartDate", format!("product order {id} has started")));
            }
            let at = match start {
                Value::String(text) => {
                    let at: Timestamp = text.parse().map_err(|error| {
                        OrdersError::invalid("requestedStartDate", format!("not an RFC 3339 instant: {error}"))
                    })?;
                    Some(at).filter(|at| *at > now)
                }
                _ => None,
            };
            row.requested_start_at = at;
            tx.reschedule_order_tasks(id, at.unwrap_or(now), now).await?;
            // A pending order brought forward to now stays pending (TMF622 has no way
            // back to acknowledged), its tasks due at once: the workflow starts it.
            let (item_state, to) = match (at, state) {
                (Some(_), _) | (None, OrderState::Pending) => (ItemState::Pending, OrderState::Pending),
                (None, _) => (ItemState::Acknowledged, OrderState::Acknowledged),
            };
            for item in &items {
                tx.set_item_state(id, &item.item_id, item_state.as_str(), now).await?;
            }
            if to != state {
                state.transition(to)?;
            }
            row.state = to.as_str().into();
        }
        let mut doc = row.doc.clone();
        tollgate_customers::merge_patch(&mut doc, patch);
        row.doc = doc;
        let version = tx
            .update_product_order(&row, expected, now)
            .await
            .map_err(|e| OrdersError::from_store("ProductOrder", e))?;
        let items = tx.order_items(id).await?;
        let shown = order_doc(&row, &items);
        audit(&mut tx, &who.actor, "update", "ProductOrder", id, Some(&shown), now).await?;
        let event = if row.state == current.value.state {
            "ProductOrderAttributeValueChangeEvent"
        } else {
            "ProductOrderStateChangeEvent"
        };
        publish(&mut tx, event, id, &shown, now).await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(Versioned { value: shown, version })
    }

    /// Asks for an order's cancellation (TMF622 `CancelProductOrder_Create`). Accepted
    /// while the order is not final and some item can still be undone: the order goes to
    /// `pendingCancellation` and the workflow compensates what was done; the request ends
    /// `done`, or `terminatedWithError` if an item completed after all (it was past its
    /// irreversible step).
    pub async fn cancel(&self, who: &Principal, doc: &Value, now: Timestamp) -> Result<Value> {
        let Value::Object(request) = doc else {
            return Err(OrdersError::invalid("body", "a cancellation request is a JSON object"));
        };
        for field in request.keys() {
            if ![
                "productOrder",
                "cancellationReason",
                "requestedCancellationDate",
                "@type",
                "@baseType",
                "@schemaLocation",
            ]
            .contains(&field.as_str())
            {
                return Err(OrdersError::invalid(field.clone(), "is not a field of a cancellation request"));
            }
        }
        let order_id = match request.get("productOrder").and_then(|order| order.get("id")) {
            Some(Value::String(id)) if !id.is_empty() && id.len() <= 128 => id.clone(),
            _ => return Err(OrdersError::invalid("productOrder.id", "is required")),
        };
        let reason = match request.get("cancellationReason") {
            None | Some(Value::Null) => None,
            Some(Value::String(reason)) if reason.chars().count() <= 500 => Some(reason.clone()),
            Some(_) => return Err(OrdersError::invalid("cancellationReason", "a string of at most 500 characters")),
        };
        let mut tx = self.store.begin().await?;
        let Some(current) = tx.product_order(&order_id).await? else {
            let refused = OrdersError::invalid("productOrder.id", format!("no product order {order_id}"));
            return Err(unknown(who, &format!("product order {order_id}"), refused));
        };
        reach(who, &current.value.root_id, &format!("product order {order_id}"))?;
        let mut row = current.value.clone();
        let state = OrderState::parse(&row.state).unwrap_or(OrderState::InProgress);
        if state.is_final() || row.cancelling {
            let why = if row.cancelling { "being cancelled already".to_owned() } else { state.as_str().to_owned() };
            return Err(OrdersError::conflict("productOrder.id", format!("product order {order_id} is {why}")));
        }
        let items = tx.order_items(&order_id).await?;
        let mut undoable = 0;
        for item in &items {
            let item_state = ItemState::parse(&item.state).unwrap_or(ItemState::InProgress);
            if item_state.is_final() {
                continue;
            }
            let tasks = tx.item_tasks(&order_id, &item.item_id).await?;
            let past_no_return = tasks.iter().any(|task| {
                task.state == "done" && crate::action::Step::parse(&task.step).is_some_and(|step| !step.is_reversible())
            });
            if !past_no_return {
                undoable += 1;
            }
        }
        if undoable == 0 {
            return Err(OrdersError::conflict(
                "productOrder.id",
                format!("nothing of product order {order_id} can be undone any more"),
            ));
        }
        state.transition(OrderState::AssessingCancellation)?;
        OrderState::AssessingCancellation.transition(OrderState::PendingCancellation)?;
        for item in &items {
            let item_state = ItemState::parse(&item.state).unwrap_or(ItemState::InProgress);
            if !item_state.is_final() {
                item_state.transition(ItemState::PendingCancellation)?;
                tx.set_item_state(&order_id, &item.item_id, ItemState::PendingCancellation.as_str(), now).await?;
            }
        }
        row.state = OrderState::PendingCancellation.as_str().into();
        row.cancelling = true;
        if let (Value::Object(doc), Some(reason)) = (&mut row.doc, &reason) {
            doc.insert("cancellationReason".into(), Value::String(reason.clone()));
        }
        tx.update_product_order(&row, current.version, now)
            .await
            .map_err(|e| OrdersError::from_store("ProductOrder", e))?;
        tx.reschedule_order_tasks(&order_id, now, now).await?;
        let cancel = CancelRow {
            id: new_entity_id()?,
            order_id: order_id.clone(),
            state: "inProgress".into(),
            reason,
            error_message: None,
            root_id: row.root_id.clone(),
            requested_at: now,
            effective_at: None,
        };
        tx.insert_cancel(&cancel).await?;
        let shown = cancel_doc(&cancel);
        audit(&mut tx, &who.actor, "cancel", "ProductOrder", &order_id, Some(&shown), now).await?;
        publish(&mut tx, "CancelProductOrderCreateEvent", &cancel.id, &shown, now).await?;
        let order = order_doc(&row, &tx.order_items(&order_id).await?);
        publish(&mut tx, "ProductOrderStateChangeEvent", &order_id, &order, now).await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(shown)
    }

    /// A cancellation request.
    pub async fn get_cancel(&self, who: &Principal, id: &str) -> Result<Value> {
        let Some(cancel) = self.store.cancel_request(id).await? else {
            return Err(missing(who, "CancelProductOrder", id));
        };
        reach(who, &cancel.root_id, &format!("cancellation {id}"))?;
        Ok(cancel_doc(&cancel))
    }

    /// Cancellation requests, a partner's only of its hierarchy.
    pub async fn list_cancels<'a>(
        &self,
        who: &Principal,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        offset: u64,
        limit: u32,
    ) -> Result<Page> {
        filters(pairs, &[])?;
        let page = self.store.cancel_request_list(scope(who)?, offset, limit).await?;
        let items = page.items.into_iter().map(|row| Versioned { value: cancel_doc(&row.value), version: row.version });
        Ok(Page { items: items.collect(), total: page.total })
    }

    /// A product (TMF637): a line or an add-on.
    pub async fn product(&self, who: &Principal, id: &str) -> Result<Versioned<Value>> {
        if let Some((line, root)) = self.store.line_with_root(id).await? {
            reach(who, &root, &format!("product {id}"))?;
            let addons = self.store.addons_of(id).await?;
            let service = self.store.service_of(id).await?;
            return Ok(Versioned { value: line_doc(&line.value, &addons, service.as_ref()), version: line.version });
        }
        let Some((addon, account, root)) = self.store.addon(id).await? else {
            return Err(missing(who, "Product", id));
        };
        reach(who, &root, &format!("product {id}"))?;
        Ok(Versioned { value: addon_doc(&addon, &account), version: Version::FIRST })
    }

    /// Products matching the filters ([`PRODUCT_FILTERS`]), a partner's only of its hierarchy.
    pub async fn products<'a>(
        &self,
        who: &Principal,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        offset: u64,
        limit: u32,
    ) -> Result<Page> {
        let pairs = filters(pairs, &PRODUCT_FILTERS)?;
        let filter = ProductFilter {
            status: take(&pairs, "status"),
            billing_account_id: take(&pairs, "billingAccount.id"),
            root_id: scope(who)?.map(str::to_owned),
        };
        let page = self.store.product_list(&filter, offset, limit).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for entry in page.items {
            items.push(match entry.value {
                ProductEntry::Line(line) => {
                    let id = &line.value.subscription.id;
                    let addons = self.store.addons_of(id).await?;
                    let service = self.store.service_of(id).await?;
                    Versioned { value: line_doc(&line.value, &addons, service.as_ref()), version: line.version }
                }
                ProductEntry::AddOn(addon, account) => {
                    Versioned { value: addon_doc(&addon, &account), version: Version::FIRST }
                }
            });
        }
        Ok(Page { items, total: page.total })
    }

    /// A service (TMF638).
    pub async fn service(&self, who: &Principal, id: &str) -> Result<Versioned<Value>> {
        let Some((service, root)) = self.store.service(id).await? else {
            return Err(missing(who, "Service", id));
        };
        reach(who, &root, &format!("service {id}"))?;
        Ok(Versioned { value: service_doc(&service), version: Version::FIRST })
    }

    /// Services matching the filters ([`SERVICE_FILTERS`]), a partner's only of its hierarchy.
    pub async fn services<'a>(
        &self,
        who: &Principal,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        offset: u64,
        limit: u32,
    ) -> Result<Page> {
        let pairs = filters(pairs, &SERVICE_FILTERS)?;
        let filter = ProductFilter {
            status: take(&pairs, "state"),
            billing_account_id: None,
            root_id: scope(who)?.map(str::to_owned),
        };
        let page = self.store.service_list(&filter, offset, limit).await?;
        let items =
            page.items.into_iter().map(|row| Versioned { value: service_doc(&row.value), version: row.version });
        Ok(Page { items: items.collect(), total: page.total })
    }

    /// A service order (TMF641): the workflow of one order item, `{order}-{item}`.
    pub async fn service_order(&self, who: &Principal, id: &str) -> Result<Versioned<Value>> {
        let not_found = || OrdersError::NotFound { kind: "ServiceOrder", id: id.to_owned() };
        // Order ids are 32 hex digits; the item id follows the dash.
        let (order_id, item_id) = id.split_once('-').ok_or_else(not_found)?;
        let (order, items) = self.store.product_order_detail(order_id).await?.ok_or_else(not_found)?;
        reach(who, &order.value.root_id, &format!("service order {id}"))?;
        let (item, tasks) = items.into_iter().find(|(item, _)| item.item_id == item_id).ok_or_else(not_found)?;
        let service = self.service_of_item(&item).await?;
        Ok(Versioned {
            value: service_order_doc(&order.value, &item, &tasks, service.as_ref()),
            version: Version::FIRST,
        })
    }

    /// Service orders: the items of the orders a list of orders gives, in order.
    pub async fn service_orders<'a>(
        &self,
        who: &Principal,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        offset: u64,
        limit: u32,
    ) -> Result<Page> {
        filters(pairs, &[])?;
        let (total, keys) = self.store.order_item_list(scope(who)?, offset, limit).await?;
        let mut items = Vec::with_capacity(keys.len());
        for (order_id, item_id) in keys {
            let Some((order, rows)) = self.store.product_order_detail(&order_id).await? else { continue };
            let Some((item, tasks)) = rows.into_iter().find(|(item, _)| item.item_id == item_id) else { continue };
            let service = self.service_of_item(&item).await?;
            let value = service_order_doc(&order.value, &item, &tasks, service.as_ref());
            debug_assert_eq!(value["id"], Value::String(service_order_id(&order_id, &item_id)));
            items.push(Versioned { value, version: Version::FIRST });
        }
        Ok(Page { items, total })
    }

    async fn service_of_item(&self, item: &OrderItemRow) -> Result<Option<tollgate_store::ServiceRow>> {
        let line = match Action::parse(&item.action) {
            Some(Action::AddAddOn | Action::RemoveAddOn) => {
                item.request.get("parentId").and_then(Value::as_str).unwrap_or_default().to_owned()
            }
            _ => item.product_id.clone(),
        };
        Ok(self.store.service_of(&line).await?)
    }
}
