//! What an order item asks for and the steps that carry it out. A TMF622 item says
//! `add`, `modify` or `delete` and shows the product as it should be; [`parse_order`] reads
//! that as one of Tollgate's [`Action`]s (the mapping is in README.md), naming the field
//! of anything it cannot read. [`Action::steps`] is each action's workflow, and
//! [`Step`] says what each step does, how it is undone, and whether it can be.

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::error::{OrdersError, Result};

/// Items one order may have.
pub const MAX_ITEMS: usize = 100;
/// Longest item id, in characters (`A-Z a-z 0-9 _ -`).
pub const MAX_ITEM_ID_CHARS: usize = 32;
/// Longest identifier an order names (offering, product, billing account), in bytes.
pub const MAX_REF_BYTES: usize = 128;
/// How far ahead a requested start date may be, in days.
pub const MAX_START_AHEAD_DAYS: i64 = 366;

/// What one order item does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// A new mobile line on an offering: number, SIM, engine subscription, network.
    NewLine,
    /// Move a line to another offering (its tariff plan).
    ChangePlan,
    /// Add an add-on product to a line.
    AddAddOn,
    /// Remove an add-on product.
    RemoveAddOn,
    /// Stop a line's service.
    Suspend,
    /// Lift a suspension.
    Resume,
    /// End a line for good: its number goes into quarantine, its SIM is retired.
    Terminate,
    /// Move a line to another SIM (IMSI and ICCID).
    SimSwap,
    /// Move a line to another number.
    NumberChange,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 9] = [
        Action::NewLine,
        Action::ChangePlan,
        Action::AddAddOn,
        Action::RemoveAddOn,
        Action::Suspend,
        Action::Resume,
        Action::Terminate,
        Action::SimSwap,
        Action::NumberChange,
    ];

    /// The name kept in the store and shown as the item's `@type`-free description.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::NewLine => "newLine",
            Action::ChangePlan => "changePlan",
            Action::AddAddOn => "addAddOn",
            Action::RemoveAddOn => "removeAddOn",
            Action::Suspend => "suspend",
            Action::Resume => "resume",
            Action::Terminate => "terminate",
            Action::SimSwap => "simSwap",
            Action::NumberChange => "numberChange",
        }
    }

    /// The action named `name`.
    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|action| action.as_str() == name)
    }

    /// TMF622's `action` for it: `add`, `modify` or `delete`.
    pub fn tmf_action(self) -> &'static str {
        match self {
            Action::NewLine | Action::AddAddOn => "add",
            Action::RemoveAddOn | Action::Terminate => "delete",
            _ => "modify",
        }
    }

    /// The workflow: the steps in the order they run. Engine and network steps come before
    /// `Complete`, which writes the inventories; the one irreversible step (the engine's
    /// termination) comes right before it, after the network step it can still undo.
    pub fn steps(self) -> &'static [Step] {
        use Step::*;
        match self {
            Action::NewLine => &[ReserveNumber, ReserveSim, RecordSubscription, CreateSubscription, Activate, Complete],
            Action::ChangePlan => &[ChangePlan, Activate, Complete],
            Action::Suspend => &[Suspend, Activate, Complete],
            Action::Resume => &[Resume, Activate, Complete],
            Action::Terminate => &[Activate, Terminate, Complete],
            Action::SimSwap => &[ReserveSim, ReplaceImsi, Activate, Complete],
            Action::NumberChange => &[ReserveNumber, ReplaceMsisdn, Activate, Complete],
            Action::AddAddOn | Action::RemoveAddOn => &[Complete],
        }
    }

    /// Whether the item acts on an existing product (all but a new line).
    pub fn needs_product(self) -> bool {
        self != Action::NewLine
    }
}

/// One step of an item's workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Reserve an MSISDN in the resource inventory for the item (the chosen one, or the
    /// next free one). Undo: release it (available again, no quarantine: never used).
    ReserveNumber,
    /// Reserve a SIM card likewise. Undo: release it.
    ReserveSim,
    /// Record the subscription (the product, `pendingActive`) with its identities, which
    /// fixes its engine subscription id. Undo: mark it `cancelled`, free its identities.
    RecordSubscription,
    /// Create the engine subscription under its identities; the engine grants the plan's
    /// allowances on creation. Undo: terminate it in the engine.
    CreateSubscription,
    /// Move the engine subscription to the new plan now (allowances pro rata). Undo: move
    /// it back.
    ChangePlan,
    /// Suspend it in the engine. Undo: resume it.
    Suspend,
    /// Resume it in the engine. Undo: suspend it.
    Resume,
    /// Terminate it in the engine: irreversible (its identities are freed at once).
    Terminate,
    /// Replace its IMSI by the new SIM's in the engine. Undo: replace it back.
    ReplaceImsi,
    /// Replace its MSISDN by the new number in the engine. Undo: replace it back.
    ReplaceMsisdn,
    /// Carry the action to the network through the `Activator` (skipped without one).
    /// Undo: the inverse activation.
    Activate,
    /// Write the outcome: resources assigned or taken back, the product and its service
    /// rows in their new state, the item completed. Nothing follows it.
    Complete,
}

impl Step {
    /// Every step.
    pub const ALL: [Step; 12] = [
        Step::ReserveNumber,
        Step::ReserveSim,
        Step::RecordSubscription,
        Step::CreateSubscription,
        Step::ChangePlan,
        Step::Suspend,
        Step::Resume,
        Step::Terminate,
        Step::ReplaceImsi,
        Step::ReplaceMsisdn,
        Step::Activate,
        Step::Complete,
    ];

    /// The name kept in the store and used in idempotency keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::ReserveNumber => "reserveNumber",
            Step::ReserveSim => "reserveSim",
            Step::RecordSubscription => "recordSubscription",
            Step::CreateSubscription => "createSubscription",
            Step::ChangePlan => "changePlan",
            Step::Suspend => "suspend",
            Step::Resume => "resume",
            Step::Terminate => "terminate",
            Step::ReplaceImsi => "replaceImsi",
            Step::ReplaceMsisdn => "replaceMsisdn",
            Step::Activate => "activate",
            Step::Complete => "complete",
        }
    }

    /// The step named `name`.
    pub fn parse(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.as_str() == name)
    }

    /// Whether the step changes only the store (the inventory's reservations, the
    /// product's row): it runs inside a transaction, so several such steps in a row, and
    /// the outcomes of the steps before them, commit together. The others call out (the
    /// engine, the network) and run with no transaction open.
    pub fn is_store_only(self) -> bool {
        matches!(self, Step::ReserveNumber | Step::ReserveSim | Step::RecordSubscription | Step::Complete)
    }

    /// Whether a done step can be undone. Only the engine's termination cannot: once it is
    /// done, a cancellation comes too late and the item completes.
    pub fn is_reversible(self) -> bool {
        !matches!(self, Step::Terminate | Step::Complete)
    }
}

/// An order item as the client asked for it, before it is checked against the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedItem {
    /// The item's id in the order.
    pub id: String,
    /// Where it is in the order's `productOrderItem` list (for field names).
    pub index: usize,
    pub request: Request,
}

/// What an item asks for, as read from its TMF622 shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `add` with a `productOffering` and no parent product: a new line; `msisdn` and
    /// `iccid` are the customer's choice, if any (`product.productCharacteristic`).
    NewLine { offering_id: String, msisdn: Option<String>, iccid: Option<String> },
    /// `add` with a `productOffering` and `product.productRelationship` `addOnOf` a line.
    AddOn { offering_id: String, parent_id: String },
    /// `modify` of `product.id` to another `productOffering`.
    ChangeOffering { product_id: String, offering_id: String },
    /// `modify` of `product.id` to `product.status` `suspended`.
    Suspend { product_id: String },
    /// `modify` of `product.id` to `product.status` `active`.
    Resume { product_id: String },
    /// `modify` of `product.id` with a `productCharacteristic` `iccid` (its value: the
    /// chosen card; empty: the next free one).
    SimSwap { product_id: String, iccid: Option<String> },
    /// `modify` of `product.id` with a `productCharacteristic` `msisdn`.
    NumberChange { product_id: String, msisdn: Option<String> },
    /// `delete` of `product.id`: a line's termination or an add-on's removal.
    Delete { product_id: String },
}

impl Request {
    /// The product the item acts on (the parent line for an add-on), if any.
    pub fn product_id(&self) -> Option<&str> {
        match self {
            Request::NewLine { .. } => None,
            Request::AddOn { parent_id, .. } => Some(parent_id),
            Request::ChangeOffering { product_id, .. }
            | Request::Suspend { product_id }
            | Request::Resume { product_id }
            | Request::SimSwap { product_id, .. }
            | Request::NumberChange { product_id, .. }
            | Request::Delete { product_id } => Some(product_id),
        }
    }

    /// The offering the item names, if any.
    pub fn offering_id(&self) -> Option<&str> {
        match self {
            Request::NewLine { offering_id, .. }
            | Request::AddOn { offering_id, .. }
            | Request::ChangeOffering { offering_id, .. } => Some(offering_id),
            _ => None,
        }
    }
}

/// A product order as the client asked for it (TMF622 `ProductOrder_Create`), its shape
/// checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOrder {
    pub billing_account_id: String,
    /// When it is to run; `None`: at once.
    pub requested_start: Option<Timestamp>,
    pub items: Vec<RequestedItem>,
}

/// The `ProductOrder_Create` fields Tollgate reads or keeps as given.
const ORDER_FIELDS: [&str; 16] = [
    "billingAccount",
    "productOrderItem",
    "requestedStartDate",
    "requestedCompletionDate",
    "description",
    "category",
    "priority",
    "externalId",
    "notificationContact",
    "note",
    "channel",
    "relatedParty",
    "cancellationReason",
    "@type",
    "@baseType",
    "@schemaLocation",
];

/// The `ProductOrderItem` fields Tollgate reads or keeps.
const ITEM_FIELDS: [&str; 8] =
    ["id", "action", "product", "productOffering", "quantity", "@type", "@baseType", "@schemaLocation"];

/// Refuses any of `fields` of `members` that is neither a string nor null, naming it.
pub(crate) fn strings_only(members: &Map<String, Value>, fields: &[&str]) -> Result<()> {
    match fields.iter().find(|field| !matches!(members.get(**field), None | Some(Value::Null | Value::String(_)))) {
        Some(field) => Err(OrdersError::invalid(*field, "must be a string")),
        None => Ok(()),
    }
}

fn text<'a>(value: Option<&'a Value>, field: &str) -> Result<Option<&'a str>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Err(OrdersError::invalid(field, "must not be empty")),
        Some(Value::String(text)) if text.len() > MAX_REF_BYTES => {
            Err(OrdersError::invalid(field, format!("at most {MAX_REF_BYTES} bytes")))
        }
        Some(Value::String(text)) if text.chars().any(char::is_control) => {
            Err(OrdersError::invalid(field, "must not hold control characters"))
        }
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(OrdersError::invalid(field, "must be a string")),
    }
}

fn required<'a>(value: Option<&'a Value>, field: &str) -> Result<&'a str> {
    text(value, field)?.ok_or_else(|| OrdersError::invalid(field, "is required"))
}

fn object<'a>(value: Option<&'a Value>, field: &str) -> Result<Option<&'a Map<String, Value>>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(_) => Err(OrdersError::invalid(field, "must be an object")),
    }
}

fn ref_id<'a>(value: Option<&'a Value>, field: &str) -> Result<Option<&'a str>> {
    match object(value, field)? {
        None => Ok(None),
        Some(object) => Ok(Some(required(object.get("id"), &format!("{field}.id"))?)),
    }
}

/// Checks a client's `ProductOrder_Create` document and reads what it asks for.
pub fn parse_order(doc: &Value, now: Timestamp) -> Result<RequestedOrder> {
    let Value::Object(order) = doc else {
        return Err(OrdersError::invalid("body", "a product order is a JSON object"));
    };
    for field in ["id", "href", "state", "orderDate", "completionDate", "cancellationDate"] {
        if order.contains_key(field) {
            return Err(OrdersError::invalid(field, "is assigned by the server"));
        }
    }
    if let Some(field) = order.keys().find(|key| !ORDER_FIELDS.contains(&key.as_str())) {
        return Err(OrdersError::invalid(field.clone(), "is not a field Tollgate takes in a product order"));
    }
    // The TMF622 string fields kept as given: strings (a number here was echoed as one).
    strings_only(
        order,
        &["description", "category", "priority", "externalId", "requestedCompletionDate", "cancellationReason"],
    )?;
    let billing_account_id = ref_id(order.get("billingAccount"), "billingAccount")?
        .ok_or_else(|| OrdersError::invalid("billingAccount.id", "is required"))?
        .to_owned();
    let requested_start = match text(order.get("requestedStartDate"), "requestedStartDate")? {
        None => None,
        Some(date) => {
            let at: Timestamp = date.parse().map_err(|error| {
                OrdersError::invalid("requestedStartDate", format!("not an RFC 3339 instant: {error}"))
            })?;
            let limit = now
                .checked_add(jiff::SignedDuration::from_hours(24 * MAX_START_AHEAD_DAYS))
                .map_err(|_| OrdersError::invalid("requestedStartDate", "out of range"))?;
            if at > limit {
                return Err(OrdersError::invalid(
                    "requestedStartDate",
                    format!("at most {MAX_START_AHEAD_DAYS} days ahead"),
                ));
            }
            Some(at).filter(|at| *at > now)
        }
    };
    let items = match order.get("productOrderItem") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) | None => {
            return Err(OrdersError::invalid("productOrderItem", "an order has at least one item"))
        }
        Some(_) => return Err(OrdersError::invalid("productOrderItem", "must be a list")),
    };
    if items.len() > MAX_ITEMS {
        return Err(OrdersError::invalid("productOrderItem", format!("at most {MAX_ITEMS} items")));
    }
    let mut parsed: Vec<RequestedItem> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let item = parse_item(index, item)?;
        if parsed.iter().any(|other| other.id == item.id) {
            return Err(OrdersError::invalid(
                format!("productOrderItem[{index}].id"),
                format!("{:?} given twice", item.id),
            ));
        }
        parsed.push(item);
    }
    Ok(RequestedOrder { billing_account_id, requested_start, items: parsed })
}

/// A characteristic's value by name from `product.productCharacteristic`: `None` when
/// absent, `Some(None)` when present with an empty or null value.
fn characteristic(product: &Map<String, Value>, field: &str, name: &str) -> Result<Option<Option<String>>> {
    let Some(list) = product.get("productCharacteristic") else { return Ok(None) };
    let Value::Array(list) = list else { return Err(OrdersError::invalid(field, "must be a list")) };
    let mut found = None;
    for (index, entry) in list.iter().enumerate() {
        let at = format!("{field}[{index}]");
        let Value::Object(entry) = entry else { return Err(OrdersError::invalid(at, "must be an object")) };
        let key = required(entry.get("name"), &format!("{at}.name"))?;
        if key != "msisdn" && key != "iccid" {
            return Err(OrdersError::invalid(format!("{at}.name"), "Tollgate reads msisdn and iccid"));
        }
        if key == name {
            let value = match entry.get("value") {
                None | Some(Value::Null) => None,
                Some(Value::String(value)) if value.is_empty() => None,
                Some(Value::String(value))
                    if value.len() <= 32 && value.bytes().all(|b| b.is_ascii_digit() || b == b'+') =>
                {
                    Some(value.trim_start_matches('+').to_owned())
                }
                Some(_) => return Err(OrdersError::invalid(format!("{at}.value"), "digits (an optional leading +)")),
            };
            found = Some(value);
        }
    }
    Ok(found)
}

fn parse_item(index: usize, item: &Value) -> Result<RequestedItem> {
    let at = |field: &str| format!("productOrderItem[{index}].{field}");
    let Value::Object(item) = item else {
        return Err(OrdersError::invalid(format!("productOrderItem[{index}]"), "must be an object"));
    };
    if let Some(field) = item.keys().find(|key| !ITEM_FIELDS.contains(&key.as_str())) {
        return Err(OrdersError::invalid(at(field), "is not a field Tollgate takes in an order item"));
    }
    let id = required(item.get("id"), &at("id"))?.to_owned();
    if id.chars().count() > MAX_ITEM_ID_CHARS || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(OrdersError::invalid(
            at("id"),
            format!("1 to {MAX_ITEM_ID_CHARS} characters of A-Z, a-z, 0-9, _ and -"),
        ));
    }
    match item.get("quantity") {
        None | Some(Value::Null) => {}
        Some(quantity) if quantity.as_i64() == Some(1) => {}
        Some(_) => return Err(OrdersError::invalid(at("quantity"), "an item orders one product (quantity 1)")),
    }
    let offering = ref_id(item.get("productOffering"), &at("productOffering"))?.map(str::to_owned);
    let product = object(item.get("product"), &at("product"))?;
    let product_id = match product {
        Some(product) => text(product.get("id"), &at("product.id"))?.map(str::to_owned),
        None => None,
    };
    let empty = Map::new();
    let product = product.unwrap_or(&empty);
    let characteristics = at("product.productCharacteristic");
    let msisdn = characteristic(product, &characteristics, "msisdn")?;
    let iccid = characteristic(product, &characteristics, "iccid")?;
    let status = text(product.get("status"), &at("product.status"))?;
    let parent = match product.get("productRelationship") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => {
            let mut parent = None;
            for (position, relation) in list.iter().enumerate() {
                let field = at(&format!("product.productRelationship[{position}]"));
                let Value::Object(relation) = relation else {
                    return Err(OrdersError::invalid(field, "must be an object"));
                };
                let kind = required(relation.get("relationshipType"), &format!("{field}.relationshipType"))?;
                if kind != "addOnOf" {
                    return Err(OrdersError::invalid(format!("{field}.relationshipType"), "Tollgate reads addOnOf"));
                }
                let target = ref_id(relation.get("product"), &format!("{field}.product"))?
                    .ok_or_else(|| OrdersError::invalid(format!("{field}.product.id"), "is required"))?;
                if parent.replace(target.to_owned()).is_some() {
                    return Err(OrdersError::invalid(field, "an add-on has one parent line"));
                }
            }
            parent
        }
        Some(_) => return Err(OrdersError::invalid(at("product.productRelationship"), "must be a list")),
    };
    let action = required(item.get("action"), &at("action"))?;
    let request = match action {
        "add" => {
            let offering_id = offering
                .ok_or_else(|| OrdersError::invalid(at("productOffering.id"), "is required to add a product"))?;
            if product_id.is_some() {
                return Err(OrdersError::invalid(at("product.id"), "a new product's id is assigned by the server"));
            }
            match parent {
                Some(parent_id) => {
                    if msisdn.is_some() || iccid.is_some() {
                        return Err(OrdersError::invalid(characteristics, "an add-on has no number or SIM"));
                    }
                    Request::AddOn { offering_id, parent_id }
                }
                None => Request::NewLine { offering_id, msisdn: msisdn.flatten(), iccid: iccid.flatten() },
            }
        }
        "modify" | "delete" => {
            let product_id = product_id
                .ok_or_else(|| OrdersError::invalid(at("product.id"), format!("is required to {action} a product")))?;
            if parent.is_some() {
                return Err(OrdersError::invalid(
                    at("product.productRelationship"),
                    "only an added add-on names its parent",
                ));
            }
            if action == "delete" {
                if offering.is_some() || status.is_some() || msisdn.is_some() || iccid.is_some() {
                    return Err(OrdersError::invalid(at("action"), "delete names the product and nothing else"));
                }
                Request::Delete { product_id }
            } else {
                let changes = [offering.is_some(), status.is_some(), msisdn.is_some(), iccid.is_some()];
                match changes.iter().filter(|change| **change).count() {
                    0 => {
                        return Err(OrdersError::invalid(
                            at("product"),
                            "modify changes one of productOffering, product.status or a productCharacteristic (msisdn, iccid)",
                        ))
                    }
                    1 => {}
                    _ => return Err(OrdersError::invalid(at("product"), "one item makes one change: use one item per change")),
                }
                if let Some(offering_id) = offering {
                    Request::ChangeOffering { product_id, offering_id }
                } else if let Some(status) = status {
                    match status {
                        "suspended" => Request::Suspend { product_id },
                        "active" => Request::Resume { product_id },
                        _ => return Err(OrdersError::invalid(at("product.status"), "suspended or active")),
                    }
                } else if let Some(iccid) = iccid {
                    Request::SimSwap { product_id, iccid }
                } else {
                    Request::NumberChange { product_id, msisdn: msisdn.flatten() }
                }
            }
        }
        "noChange" => return Err(OrdersError::invalid(at("action"), "noChange items are not taken: leave them out")),
        _ => return Err(OrdersError::invalid(at("action"), "add, modify or delete")),
    };
    Ok(RequestedItem { id, index, request })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("instant")
    }

    fn order(items: Value) -> Value {
        json!({"billingAccount": {"id": "ba-1"}, "productOrderItem": items})
    }

    fn one(item: Value) -> Result<Request> {
        parse_order(&order(json!([item])), now()).map(|mut order| order.items.remove(0).request)
    }

    fn refused(item: Value) -> String {
        one(item).expect_err("refused").to_string()
    }

    #[test]
    fn each_tmf_shape_reads_as_one_action() {
        let cases = [
            (
                json!({"id": "1", "action": "add", "productOffering": {"id": "po"}}),
                Request::NewLine { offering_id: "po".into(), msisdn: None, iccid: None },
            ),
            (
                json!({"id": "1", "action": "add", "productOffering": {"id": "po"}, "product": {"productCharacteristic": [
                {"name": "msisdn", "value": "+491511234567"}, {"name": "iccid", "value": "8949"}]}}),
                Request::NewLine {
                    offering_id: "po".into(),
                    msisdn: Some("491511234567".into()),
                    iccid: Some("8949".into()),
                },
            ),
            (
                json!({"id": "1", "action": "add", "productOffering": {"id": "ao"},
                "product": {"productRelationship": [{"relationshipType": "addOnOf", "product": {"id": "p"}}]}}),
                Request::AddOn { offering_id: "ao".into(), parent_id: "p".into() },
            ),
            (
                json!({"id": "1", "action": "modify", "product": {"id": "p"}, "productOffering": {"id": "po2"}}),
                Request::ChangeOffering { product_id: "p".into(), offering_id: "po2".into() },
            ),
            (
                json!({"id": "1", "action": "modify", "product": {"id": "p", "status": "suspended"}}),
                Request::Suspend { product_id: "p".into() },
            ),
            (
                json!({"id": "1", "action": "modify", "product": {"id": "p", "status": "active"}}),
                Request::Resume { product_id: "p".into() },
            ),
            (
                json!({"id": "1", "action": "modify", "product": {"id": "p", "productCharacteristic": [{"name": "iccid", "value": ""}]}}),
                Request::SimSwap { product_id: "p".into(), iccid: None },
            ),
            (
                json!({"id": "1", "action": "modify", "product": {"id": "p", "productCharacteristic": [{"name": "msisdn", "value": "4915"}]}}),
                Request::NumberChange { product_id: "p".into(), msisdn: Some("4915".into()) },
            ),
            (
                json!({"id": "1", "action": "delete", "product": {"id": "p"}}),
                Request::Delete { product_id: "p".into() },
            ),
        ];
        for (item, expected) in cases {
            assert_eq!(one(item.clone()).expect("parses"), expected, "{item}");
        }
    }

    #[test]
    fn what_cannot_be_read_is_refused_naming_the_field() {
        let cases = [
            (json!({"id": "1", "action": "add"}), "productOrderItem[0].productOffering.id"),
            (json!({"id": "1", "action": "noChange", "product": {"id": "p"}}), "productOrderItem[0].action"),
            (json!({"id": "1", "action": "upgrade"}), "productOrderItem[0].action"),
            (json!({"id": "1 2", "action": "add", "productOffering": {"id": "po"}}), "productOrderItem[0].id"),
            (json!({"action": "add", "productOffering": {"id": "po"}}), "productOrderItem[0].id"),
            (json!({"id": "1", "action": "modify", "product": {"id": "p"}}), "productOrderItem[0].product"),
            (
                json!({"id": "1", "action": "modify", "product": {"id": "p", "status": "suspended"}, "productOffering": {"id": "x"}}),
                "productOrderItem[0].product",
            ),
            (
                json!({"id": "1", "action": "modify", "product": {"id": "p", "status": "terminated"}}),
                "productOrderItem[0].product.status",
            ),
            (json!({"id": "1", "action": "delete"}), "productOrderItem[0].product.id"),
            (
                json!({"id": "1", "action": "add", "productOffering": {"id": "po"}, "quantity": 2}),
                "productOrderItem[0].quantity",
            ),
            (
                json!({"id": "1", "action": "add", "productOffering": {"id": "po"}, "itemPrice": []}),
                "productOrderItem[0].itemPrice",
            ),
            (
                json!({"id": "1", "action": "add", "productOffering": {"id": "po"}, "product": {"productCharacteristic": [{"name": "colour", "value": "red"}]}}),
                "productOrderItem[0].product.productCharacteristic[0].name",
            ),
            (
                json!({"id": "1", "action": "add", "productOffering": {"id": "po"}, "product": {"productCharacteristic": [{"name": "msisdn", "value": "12a"}]}}),
                "productOrderItem[0].product.productCharacteristic[0].value",
            ),
        ];
        for (item, field) in cases {
            let error = refused(item.clone());
            assert!(error.contains(&format!("invalid {field}:")), "{item}: {error}");
        }
    }

    #[test]
    fn order_level_checks_name_their_field() {
        let item = json!({"id": "1", "action": "add", "productOffering": {"id": "po"}});
        let cases = [
            (json!({"productOrderItem": [item]}), "billingAccount.id"),
            (json!({"billingAccount": {"id": "b"}, "productOrderItem": []}), "productOrderItem"),
            (json!({"billingAccount": {"id": "b"}, "productOrderItem": [item, item]}), "productOrderItem[1].id"),
            (json!({"billingAccount": {"id": "b"}, "productOrderItem": [item], "state": "completed"}), "state"),
            (json!({"billingAccount": {"id": "b"}, "productOrderItem": [item], "quote": []}), "quote"),
            (
                json!({"billingAccount": {"id": "b"}, "productOrderItem": [item], "requestedStartDate": "tomorrow"}),
                "requestedStartDate",
            ),
            (
                json!({"billingAccount": {"id": "b"}, "productOrderItem": [item], "requestedStartDate": "2099-01-01T00:00:00Z"}),
                "requestedStartDate",
            ),
        ];
        for (doc, field) in cases {
            let error = parse_order(&doc, now()).expect_err("refused").to_string();
            assert!(error.contains(&format!("invalid {field}:")), "{doc}: {error}");
        }
        let many: Vec<Value> = (0..=MAX_ITEMS)
            .map(|i| json!({"id": i.to_string(), "action": "add", "productOffering": {"id": "po"}}))
            .collect();
        assert!(parse_order(&order(Value::Array(many)), now()).is_err());
    }

    #[test]
    fn a_start_date_in_the_past_means_now() {
        let item = json!({"id": "1", "action": "add", "productOffering": {"id": "po"}});
        let past = json!({"billingAccount": {"id": "b"}, "productOrderItem": [item], "requestedStartDate": "2020-01-01T00:00:00Z"});
        assert_eq!(parse_order(&past, now()).expect("order").requested_start, None);
        let future = json!({"billingAccount": {"id": "b"}, "productOrderItem": [item], "requestedStartDate": "2027-03-01T00:00:00Z"});
        assert!(parse_order(&future, now()).expect("order").requested_start.is_some());
    }

    #[test]
    fn every_action_ends_with_complete_and_names_read_back() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
            assert_eq!(action.steps().last(), Some(&Step::Complete));
            let irreversible = action.steps().iter().filter(|step| !step.is_reversible()).count();
            assert!(irreversible <= 2, "{action:?}");
        }
        for step in Step::ALL {
            assert_eq!(Step::parse(step.as_str()), Some(step));
        }
        // The irreversible engine termination is the last step before Complete.
        let terminate = Action::Terminate.steps();
        assert_eq!(&terminate[terminate.len() - 2..], &[Step::Terminate, Step::Complete]);
    }
}
