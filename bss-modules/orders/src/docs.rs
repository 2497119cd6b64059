//! The TM Forum documents the API shows, rendered from rows: a product order (TMF622
//! `ProductOrder`, the client's document with the server's fields and the current states),
//! a cancellation request (`CancelProductOrder`), a product (TMF637 `Product`: a line or an
//! add-on), a service (TMF638 `Service`) and the workflow of one order item as a service
//! order (TMF641 `ServiceOrder`, its steps as milestones).

use jiff::Timestamp;
use serde_json::{json, Map, Value};
use tollgate_store::{AddOnRow, CancelRow, LineRow, OrderItemRow, ProductOrderRow, ServiceRow, TaskRow};

use crate::action::{Action, Step};

/// Where product order hrefs start.
pub const ORDER_BASE_PATH: &str = "/tmf-api/productOrderingManagement/v4";
/// Where product hrefs start.
pub const PRODUCT_BASE_PATH: &str = "/tmf-api/productInventory/v4";
/// Where service hrefs start.
pub const SERVICE_BASE_PATH: &str = "/tmf-api/serviceInventory/v4";
/// Where service order hrefs start.
pub const SERVICE_ORDER_BASE_PATH: &str = "/tmf-api/serviceOrdering/v4";

const ACCOUNT_BASE_PATH: &str = "/tmf-api/accountManagement/v4";
const CATALOGUE_BASE_PATH: &str = "/tmf-api/productCatalogManagement/v4";

pub(crate) fn order_href(id: &str) -> String {
    format!("{ORDER_BASE_PATH}/productOrder/{id}")
}

pub(crate) fn product_href(id: &str) -> String {
    format!("{PRODUCT_BASE_PATH}/product/{id}")
}

fn service_href(id: &str) -> String {
    format!("{SERVICE_BASE_PATH}/service/{id}")
}

/// The id of an item's service order: `{order}-{item}`.
pub fn service_order_id(order_id: &str, item_id: &str) -> String {
    format!("{order_id}-{item_id}")
}

fn account_ref(id: &str) -> Value {
    json!({"id": id, "href": format!("{ACCOUNT_BASE_PATH}/billingAccount/{id}"), "@referredType": "BillingAccount"})
}

fn offering_ref(id: &str) -> Value {
    json!({"id": id, "href": format!("{CATALOGUE_BASE_PATH}/productOffering/{id}"), "@referredType": "ProductOffering"})
}

fn instant(at: Timestamp) -> Value {
    Value::String(at.to_string())
}

fn set(doc: &mut Value, name: &str, value: Value) {
    if let Value::Object(object) = doc {
        object.insert(name.to_owned(), value);
    }
}

/// The order's document: what was stored at creation with the current states.
pub(crate) fn order_doc(order: &ProductOrderRow, items: &[OrderItemRow]) -> Value {
    let mut doc = order.doc.clone();
    set(&mut doc, "state", Value::String(order.state.clone()));
    if let Some(at) = order.completed_at {
        let field = if order.state == "cancelled" { "cancellationDate" } else { "completionDate" };
        set(&mut doc, field, instant(at));
    }
    if let Some(Value::Array(list)) = doc.get_mut("productOrderItem") {
        for (entry, item) in list.iter_mut().zip(items) {
            set(entry, "state", Value::String(item.state.clone()));
        }
    }
    doc
}

/// The stored document of a new order: the client's, with the server's fields and each
/// item's product id (assigned now for a new line or add-on).
pub(crate) fn new_order_doc(
    client: &Value,
    id: &str,
    account_id: &str,
    items: &[OrderItemRow],
    now: Timestamp,
) -> Value {
    let mut doc = client.clone();
    set(&mut doc, "id", Value::String(id.to_owned()));
    set(&mut doc, "href", Value::String(order_href(id)));
    set(&mut doc, "orderDate", instant(now));
    set(&mut doc, "billingAccount", account_ref(account_id));
    set(&mut doc, "@type", Value::String("ProductOrder".into()));
    if let Some(Value::Array(list)) = doc.get_mut("productOrderItem") {
        for (entry, item) in list.iter_mut().zip(items) {
            let mut product = entry.get("product").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
            set(&mut product, "id", Value::String(item.product_id.clone()));
            set(&mut product, "href", Value::String(product_href(&item.product_id)));
            set(&mut product, "@referredType", Value::String("Product".into()));
            set(entry, "product", product);
            set(entry, "@type", Value::String("ProductOrderItem".into()));
        }
    }
    doc
}

/// A cancellation request's document.
pub(crate) fn cancel_doc(cancel: &CancelRow) -> Value {
    let mut doc = json!({
        "id": cancel.id,
        "href": format!("{ORDER_BASE_PATH}/cancelProductOrder/{}", cancel.id),
        "state": cancel.state,
        "requestedCancellationDate": cancel.requested_at.to_string(),
        "productOrder": {"id": cancel.order_id, "href": order_href(&cancel.order_id), "@referredType": "ProductOrder"},
        "@type": "CancelProductOrder",
    });
    if let Some(reason) = &cancel.reason {
        set(&mut doc, "cancellationReason", Value::String(reason.clone()));
    }
    if let Some(at) = cancel.effective_at {
        set(&mut doc, "effectiveCancellationDate", instant(at));
    }
    doc
}

/// The identity of `kind` (`msisdn`, `imsi`) among a line's engine identity keys.
pub(crate) fn identity<'a>(line: &'a LineRow, kind: &str) -> Option<&'a str> {
    line.subscription.identities.iter().find_map(|key| key.strip_prefix(kind).and_then(|rest| rest.strip_prefix(':')))
}

fn characteristic(name: &str, value: &str) -> Value {
    json!({"name": name, "valueType": "string", "value": value})
}

/// A line as a TMF637 product.
pub(crate) fn line_doc(line: &LineRow, addons: &[AddOnRow], service: Option<&ServiceRow>) -> Value {
    let sub = &line.subscription;
    let mut characteristics = Vec::new();
    for kind in ["msisdn", "imsi"] {
        if let Some(value) = identity(line, kind) {
            characteristics.push(characteristic(kind, value));
        }
    }
    if let Some(iccid) = &line.iccid {
        characteristics.push(characteristic("iccid", iccid));
    }
    characteristics.push(characteristic("tariffPlan", &sub.plan_id));
    let mut doc = json!({
        "id": sub.id,
        "href": product_href(&sub.id),
        "name": "mobile line",
        "isBundle": false,
        "status": line.status(),
        "billingAccount": account_ref(&sub.billing_account_id),
        "productCharacteristic": characteristics,
        "@type": "Product",
    });
    if let Some(offering) = &sub.offering_id {
        set(&mut doc, "productOffering", offering_ref(offering));
    }
    if let Some(at) = line.started_at {
        set(&mut doc, "startDate", instant(at));
    }
    if let Some(at) = line.terminated_at {
        set(&mut doc, "terminationDate", instant(at));
    }
    if let Some(service) = service {
        set(
            &mut doc,
            "realizingService",
            json!([{"id": service.id, "href": service_href(&service.id), "@referredType": "Service"}]),
        );
    }
    let live: Vec<Value> = addons
        .iter()
        .filter(|addon| addon.status == "active")
        .map(|addon| json!({"relationshipType": "hasAddOn", "product": {"id": addon.id, "href": product_href(&addon.id)}}))
        .collect();
    if !live.is_empty() {
        set(&mut doc, "productRelationship", Value::Array(live));
    }
    doc
}

/// An add-on as a TMF637 product.
pub(crate) fn addon_doc(addon: &AddOnRow, billing_account_id: &str) -> Value {
    let mut doc = json!({
        "id": addon.id,
        "href": product_href(&addon.id),
        "name": "add-on",
        "isBundle": false,
        "status": addon.status,
        "startDate": addon.created_at.to_string(),
        "billingAccount": account_ref(billing_account_id),
        "productOffering": offering_ref(&addon.offering_id),
        "productRelationship": [{"relationshipType": "addOnOf", "product": {"id": addon.subscription_id, "href": product_href(&addon.subscription_id)}}],
        "@type": "Product",
    });
    if let Some(at) = addon.terminated_at {
        set(&mut doc, "terminationDate", instant(at));
    }
    doc
}

/// A line's service as a TMF638 service.
pub(crate) fn service_doc(service: &ServiceRow) -> Value {
    json!({
        "id": service.id,
        "href": service_href(&service.id),
        "name": "mobile line service",
        "category": "CFS",
        "serviceType": "mobile",
        "state": service.state,
        "isServiceEnabled": service.state == "active",
        "hasStarted": service.state != "reserved",
        "startDate": service.created_at.to_string(),
        "relatedEntity": [{"id": service.subscription_id, "href": product_href(&service.subscription_id), "role": "realizes", "@referredType": "Product"}],
        "@type": "Service",
    })
}

/// A task's state as a milestone status.
fn milestone(task: &TaskRow) -> Value {
    let mut entry = Map::new();
    entry.insert("id".into(), Value::String(task.position.to_string()));
    entry.insert("name".into(), Value::String(task.step.clone()));
    entry.insert("status".into(), Value::String(task.state.clone()));
    entry.insert("milestoneDate".into(), Value::String(task.next_attempt_at.to_string()));
    if let Some(error) = &task.last_error {
        entry.insert("message".into(), Value::String(error.clone()));
    }
    if let Some(step) = Step::parse(&task.step) {
        entry.insert("description".into(), Value::String(step_description(step).into()));
    }
    entry.insert("@type".into(), Value::String("Milestone".into()));
    Value::Object(entry)
}

fn step_description(step: Step) -> &'static str {
    match step {
        Step::ReserveNumber => "reserve an MSISDN in the resource inventory",
        Step::ReserveSim => "reserve a SIM card in the resource inventory",
        Step::RecordSubscription => "record the product with its identities",
        Step::CreateSubscription => "create the subscription in the charging engine (allowances granted)",
        Step::ChangePlan => "move the subscription to the new tariff plan in the charging engine",
        Step::Suspend => "suspend the subscription in the charging engine",
        Step::Resume => "resume the subscription in the charging engine",
        Step::Terminate => "terminate the subscription in the charging engine",
        Step::ReplaceImsi => "replace the IMSI in the charging engine",
        Step::ReplaceMsisdn => "replace the MSISDN in the charging engine",
        Step::Activate => "carry the change to the network (activation)",
        Step::Complete => "update the resource, service and product inventories",
    }
}

/// An order item's workflow as a TMF641 service order.
pub(crate) fn service_order_doc(
    order: &ProductOrderRow,
    item: &OrderItemRow,
    tasks: &[TaskRow],
    service: Option<&ServiceRow>,
) -> Value {
    let id = service_order_id(&order.id, &item.item_id);
    let action = Action::parse(&item.action).map(Action::tmf_action).unwrap_or("modify");
    let mut target = json!({"@type": "Service", "name": "mobile line service", "relatedEntity": [{"id": item.product_id, "href": product_href(&item.product_id), "role": "realizes", "@referredType": "Product"}]});
    if let Some(service) = service {
        set(&mut target, "id", Value::String(service.id.clone()));
        set(&mut target, "href", Value::String(service_href(&service.id)));
        set(&mut target, "state", Value::String(service.state.clone()));
    }
    let mut doc = json!({
        "id": id,
        "href": format!("{SERVICE_ORDER_BASE_PATH}/serviceOrder/{id}"),
        "state": item.state,
        "orderDate": order.created_at.to_string(),
        "externalReference": [{"name": order.id, "externalReferenceType": "productOrder"}],
        "description": format!("{} of product {}", item.action, item.product_id),
        "serviceOrderItem": [{"id": "1", "action": action, "state": item.state, "service": target, "@type": "ServiceOrderItem"}],
        "milestone": tasks.iter().map(milestone).collect::<Vec<_>>(),
        "@type": "ServiceOrder",
    });
    if let Some(start) = order.requested_start_at {
        set(&mut doc, "requestedStartDate", instant(start));
    }
    doc
}
