//! [`Catalogue`]: the catalogue's operations on the store, each one transaction that
//! validates, checks the lifecycle and the references, writes the item and appends its
//! audit record (who, what, before and after), so a change is never committed unaudited.
//! The API and the CLI both call these; neither has rules of its own.
//!
//! Activating an offering (`lifecycleStatus` → `Active`) compiles the tariff plan of each
//! of its usage prices with `tollgate_tariffs::compile_str` and records each plan version
//! (`tariff_plan_versions`: a version's source never changes); a plan that does not
//! compile refuses the activation with its problems as `tollgate tariff check` prints
//! them. Its bundled offerings must be Active already. Recording a new plan version
//! changes no subscription: moving one is an order's job.

use jiff::Timestamp;
use serde_json::Value;
use tollgate_store::{
    new_entity_id, AuditRecord, CatalogueFilter, CatalogueItem, NewEvent, Store, Tx, Version, Versioned,
};

use crate::error::{CatalogueError, Result};
use crate::item::{validate, Kind, Validated};
use crate::lifecycle::LifecycleStatus;
use crate::patch::merge_patch;
use crate::price::PriceShape;

/// The fields the server keeps: a client may not set or change them.
const SERVER_FIELDS: [&str; 3] = ["id", "href", "lastUpdate"];

/// The fields that may still change once an item is Active (or later).
const RELEASED_MUTABLE: [&str; 5] = ["lifecycleStatus", "validFor", "description", "statusReason", "lastUpdate"];

/// The attributes a list may be filtered on, as the API names them, per kind.
pub const FILTERS: [&str; 5] = ["name", "lifecycleStatus", "version", "isBundle", "priceType"];

/// A list's filter, parsed from attribute names and values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter(CatalogueFilter);

impl Filter {
    /// A filter from (attribute, value) pairs: each attribute one of [`FILTERS`] that the
    /// kind has (`priceType` on prices only), each at most once.
    pub fn parse<'a>(kind: Kind, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Filter> {
        let mut filter = CatalogueFilter::default();
        for (attribute, value) in pairs {
            let slot = match attribute {
                "name" => &mut filter.name,
                "lifecycleStatus" => &mut filter.lifecycle_status,
                "version" => &mut filter.version_label,
                "priceType" if kind == Kind::ProductOfferingPrice => &mut filter.price_type,
                "isBundle" if kind != Kind::Category => {
                    if filter.is_bundle.is_some() {
                        return Err(CatalogueError::invalid(attribute, "given twice"));
                    }
                    filter.is_bundle = Some(match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(CatalogueError::invalid(attribute, format!("{value:?} is not true or false"))),
                    });
                    continue;
                }
                _ => {
                    return Err(CatalogueError::invalid(
                        attribute,
                        format!("{} cannot be filtered on {attribute:?}", kind.type_name()),
                    ))
                }
            };
            if slot.is_some() {
                return Err(CatalogueError::invalid(attribute, "given twice"));
            }
            *slot = Some(value.to_owned());
        }
        Ok(Filter(filter))
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Versioned<Value>>,
    /// How many items match in all.
    pub total: i64,
}

/// The product catalogue on a store.
#[derive(Debug, Clone)]
pub struct Catalogue {
    store: Store,
    /// Prefix of every `href`: `/tmf-api/productCatalogManagement/v4` or an absolute root.
    href_root: String,
}

/// The path every href starts with when no absolute root is configured.
pub const BASE_PATH: &str = "/tmf-api/productCatalogManagement/v4";

impl Catalogue {
    /// The catalogue on `store`, with hrefs under `href_root` (e.g. [`BASE_PATH`] or
    /// `https://bss.example/tmf-api/productCatalogManagement/v4`).
    pub fn new(store: Store, href_root: impl Into<String>) -> Catalogue {
        Catalogue { store, href_root: href_root.into().trim_end_matches('/').to_owned() }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn href(&self, kind: Kind, id: &str) -> String {
        format!("{}/{}/{id}", self.href_root, kind.path())
    }

    /// Creates an item from a client's document (`*_Create`): In study unless it says In
    /// design; the server sets `id`, `href`, `lastUpdate` and `@type` when absent.
    pub async fn create(&self, kind: Kind, mut doc: Value, actor: &str, now: Timestamp) -> Result<Versioned<Value>> {
        let Value::Object(object) = &mut doc else {
            return Err(CatalogueError::invalid("body", "must be a JSON object"));
        };
        for field in SERVER_FIELDS {
            if field != "lastUpdate" && object.contains_key(field) {
                return Err(CatalogueError::invalid(field, "is assigned by the server"));
            }
        }
        let id = new_entity_id()?;
        object.insert("id".into(), Value::String(id.clone()));
        object.insert("href".into(), Value::String(self.href(kind, &id)));
        object.insert("lastUpdate".into(), Value::String(now.to_string()));
        check_type(kind, object.entry("@type").or_insert_with(|| Value::String(kind.type_name().to_owned())))?;
        let found = validate(kind, &mut doc)?;
        if !found.status.is_initial() {
            return Err(CatalogueError::InvalidTransition { from: "(new)".into(), to: found.status.as_str().into() });
        }
        let mut tx = self.store.begin().await?;
        self.check_refs(&mut tx, &id, &found).await?;
        let item = row(kind, &id, &found, &doc);
        tx.insert_catalogue_item(&item, now).await.map_err(|e| CatalogueError::from_store(kind.type_name(), e))?;
        audit(&mut tx, actor, "create", kind, &id, None, Some(&doc), now).await?;
        publish(&mut tx, kind, "CreateEvent", &id, &doc, now).await?;
        tx.commit().await?;
        Ok(Versioned { value: doc, version: Version::FIRST })
    }

    /// An item of `kind`.
    pub async fn get(&self, kind: Kind, id: &str) -> Result<Versioned<Value>> {
        match self.store.catalogue_item(id).await? {
            Some(found) if found.value.kind == kind.type_name() => {
                Ok(Versioned { value: found.value.doc, version: found.version })
            }
            _ => Err(CatalogueError::NotFound { kind: kind.type_name(), id: id.to_owned() }),
        }
    }

    /// Items of `kind` matching `filter`, `limit` from `offset`, in creation order.
    pub async fn list(&self, kind: Kind, filter: &Filter, offset: u64, limit: u32) -> Result<Page> {
        let page = self.store.catalogue_list(kind.type_name(), &filter.0, offset, limit).await?;
        let items = page.items.into_iter().map(|item| Versioned { value: item.value.doc, version: item.version });
        Ok(Page { items: items.collect(), total: page.total })
    }

    /// Applies a JSON merge patch (RFC 7386) to an item still at `expected`: the result
    /// must be valid, its lifecycle step allowed, and a released item changes only its
    /// status, validity, description and status reason. Activating an offering compiles
    /// its plans (see the module documentation).
    pub async fn patch(
        &self,
        kind: Kind,
        id: &str,
        patch: &Value,
        expected: Version,
        actor: &str,
        now: Timestamp,
    ) -> Result<Versioned<Value>> {
        let Value::Object(members) = patch else {
            return Err(CatalogueError::invalid("body", "a merge patch of an item is a JSON object"));
        };
        let mut tx = self.store.begin().await?;
        let current = self.current(&mut tx, kind, id, expected).await?;
        let before = current.value.doc.clone();
        let from = status_of(&current.value)?;
        for field in ["id", "href", "@type"] {
            if let Some(value) = members.get(field) {
                if before.get(field) != Some(value) {
                    return Err(CatalogueError::invalid(field, "cannot change"));
                }
            }
        }
        let mut doc = before.clone();
        merge_patch(&mut doc, patch);
        if let Value::Object(object) = &mut doc {
            object.insert("lastUpdate".into(), Value::String(now.to_string()));
        }
        let found = validate(kind, &mut doc)?;
        from.transition(found.status)?;
        if from.is_released() {
            if let (Value::Object(old), Value::Object(new)) = (&before, &doc) {
                let keys = old.keys().chain(new.keys());
                if let Some(field) = keys
                    .filter(|key| !RELEASED_MUTABLE.contains(&key.as_str()))
                    .find(|key| old.get(*key) != new.get(*key))
                {
                    return Err(CatalogueError::Frozen { field: field.clone(), status: from.as_str().into() });
                }
            }
        }
        self.check_refs(&mut tx, id, &found).await?;
        // What a released offering sells is fixed with it: a price it names changes no
        // more than the offering, but for its name (its amount, type, currency, period or
        // plan stay; an active
        // offering's plan was compiled and recorded when it was activated, and a broken
        // one would never be compiled behind its back): a new price comes as a new price.
        let definition_changed = match (&before, &doc) {
            (Value::Object(old), Value::Object(new)) => old
                .keys()
                .chain(new.keys())
                .filter(|key| !RELEASED_MUTABLE.contains(&key.as_str()) && key.as_str() != "name")
                .find(|key| old.get(*key) != new.get(*key))
                .cloned(),
            _ => None,
        };
        if let (Kind::ProductOfferingPrice, Some(field)) = (kind, definition_changed) {
            for (by, referring) in tx.catalogue_referrers(id).await? {
                let Some(offering) = tx.catalogue_item(&by).await? else { continue };
                if referring == "productOfferingPrice" && status_of(&offering.value)?.is_released() {
                    let what = if field == "tariffPlan" { "plan" } else { "price" };
                    return Err(CatalogueError::Conflict {
                        field,
                        reason: format!(
                            "price {id} is used by offering {by}, which is {}: a new {what} comes as a new price",
                            status_of(&offering.value)?.as_str()
                        ),
                    });
                }
            }
        }
        let activating =
            kind == Kind::ProductOffering && found.status == LifecycleStatus::Active && from != found.status;
        let mut compiled = Vec::new();
        if activating {
            compiled = self.activate(&mut tx, &found, now).await?;
        }
        let item = row(kind, id, &found, &doc);
        let version = tx
            .update_catalogue_item(&item, expected, now)
            .await
            .map_err(|e| CatalogueError::from_store(kind.type_name(), e))?;
        let action =
            if from == found.status { "update".to_owned() } else { format!("lifecycle:{}", found.status.as_str()) };
        let mut after = doc.clone();
        if !compiled.is_empty() {
            if let Value::Object(object) = &mut after {
                // The audit record says which plan versions the activation compiled.
                object.insert("@compiledTariffPlans".into(), Value::Array(compiled));
            }
        }
        audit(&mut tx, actor, &action, kind, id, Some(&before), Some(&after), now).await?;
        let event = if from == found.status { "AttributeValueChangeEvent" } else { "StateChangeEvent" };
        publish(&mut tx, kind, event, id, &doc, now).await?;
        tx.commit().await?;
        Ok(Versioned { value: doc, version })
    }

    /// Moves an item to `status` (the CLI's `offering activate`): a patch of its
    /// `lifecycleStatus` at its current version.
    pub async fn set_status(
        &self,
        kind: Kind,
        id: &str,
        status: LifecycleStatus,
        actor: &str,
        now: Timestamp,
    ) -> Result<Versioned<Value>> {
        let current = self.get(kind, id).await?;
        let patch = serde_json::json!({ "lifecycleStatus": status.as_str() });
        self.patch(kind, id, &patch, current.version, actor, now).await
    }

    /// Deletes an item still at `expected` (any version when `None`): only while In study
    /// or In design, or once Obsolete, and not while another item refers to it.
    pub async fn delete(
        &self,
        kind: Kind,
        id: &str,
        expected: Option<Version>,
        actor: &str,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.store.begin().await?;
        let current = match expected {
            Some(expected) => self.current(&mut tx, kind, id, expected).await?,
            None => {
                let found = tx.catalogue_item(id).await?;
                let found = found.filter(|found| found.value.kind == kind.type_name());
                found.ok_or_else(|| CatalogueError::NotFound { kind: kind.type_name(), id: id.to_owned() })?
            }
        };
        let status = status_of(&current.value)?;
        if matches!(status, LifecycleStatus::Active | LifecycleStatus::Retired) {
            return Err(CatalogueError::Conflict {
                field: "lifecycleStatus".into(),
                reason: format!("a {} item is not deleted; retire it, then make it Obsolete", status.as_str()),
            });
        }
        if let Some((by, field)) = tx.catalogue_referrers(id).await?.into_iter().next() {
            return Err(CatalogueError::Conflict {
                field: "id".into(),
                reason: format!("{id} is referred to by {by} ({field})"),
            });
        }
        tx.delete_catalogue_item(id, current.version)
            .await
            .map_err(|e| CatalogueError::from_store(kind.type_name(), e))?;
        audit(&mut tx, actor, "delete", kind, id, Some(&current.value.doc), None, now).await?;
        publish(&mut tx, kind, "DeleteEvent", id, &current.value.doc, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The item, locked, if it is of `kind` and at `expected`.
    async fn current(&self, tx: &mut Tx, kind: Kind, id: &str, expected: Version) -> Result<Versioned<CatalogueItem>> {
        let found = tx.catalogue_item(id).await?.filter(|found| found.value.kind == kind.type_name());
        let found = found.ok_or_else(|| CatalogueError::NotFound { kind: kind.type_name(), id: id.to_owned() })?;
        if found.version != expected {
            return Err(CatalogueError::StaleVersion {
                kind: kind.type_name(),
                id: id.to_owned(),
                expected: expected.get(),
                found: found.version.get(),
            });
        }
        Ok(found)
    }

    /// Every reference names an existing item of the right kind, and not the item itself.
    async fn check_refs(&self, tx: &mut Tx, id: &str, found: &Validated) -> Result<()> {
        for (index, (field, to, target)) in found.refs.iter().enumerate() {
            let at = || {
                let position = found.refs[..index].iter().filter(|(f, _, _)| f == field).count();
                if field == "productSpecification" || field == "parentId" {
                    format!("{field}.id")
                } else {
                    format!("{field}[{position}].id")
                }
            };
            if target == id {
                return Err(CatalogueError::invalid(at(), "an item cannot refer to itself"));
            }
            match tx.catalogue_item(target).await? {
                Some(item) if item.value.kind == to.type_name() => {}
                _ => return Err(CatalogueError::invalid(at(), format!("no {} {target}", to.type_name()))),
            }
        }
        Ok(())
    }

    /// The checks and compilation of an offering's activation; returns the plan versions
    /// compiled, for the audit record.
    async fn activate(&self, tx: &mut Tx, found: &Validated, now: Timestamp) -> Result<Vec<Value>> {
        if found.is_bundle == Some(true) && !found.refs.iter().any(|(field, _, _)| field == "bundledProductOffering") {
            return Err(CatalogueError::invalid(
                "bundledProductOffering",
                "an active bundle lists its bundled offerings",
            ));
        }
        let mut compiled = Vec::new();
        let mut price_index = 0;
        for (field, _, target) in &found.refs {
            let Some(item) = tx.catalogue_item(target).await? else { continue };
            match field.as_str() {
                "bundledProductOffering" => {
                    let status = status_of(&item.value)?;
                    if status != LifecycleStatus::Active {
                        return Err(CatalogueError::Conflict {
                            field: "bundledProductOffering".into(),
                            reason: format!("bundled offering {target} is {}, not Active", status.as_str()),
                        });
                    }
                }
                "productOfferingPrice" => {
                    let at = format!("productOfferingPrice[{price_index}]");
                    price_index += 1;
                    let mut doc = item.value.doc.clone();
                    let shape = validate(Kind::ProductOfferingPrice, &mut doc)?.price;
                    if let Some(PriceShape::Usage { source, file }) = shape {
                        let plan = tollgate_tariffs::compile_str(&source, &file, None).map_err(|error| {
                            let problems: Vec<String> = if error.problems().is_empty() {
                                vec![error.to_string()]
                            } else {
                                error.problems().iter().map(ToString::to_string).collect()
                            };
                            CatalogueError::PlanRejected { field: format!("{at} ({target}).tariffPlan"), problems }
                        })?;
                        tx.record_tariff_plan(&plan.id, plan.version, &source, now).await.map_err(|error| {
                            CatalogueError::Conflict { field: format!("{at}.tariffPlan"), reason: error.to_string() }
                        })?;
                        compiled
                            .push(serde_json::json!({"price": target, "planId": plan.id, "planVersion": plan.version}));
                    }
                }
                _ => {}
            }
        }
        Ok(compiled)
    }
}

fn check_type(kind: Kind, value: &Value) -> Result<()> {
    match value {
        Value::String(name) if name == kind.type_name() => Ok(()),
        _ => Err(CatalogueError::invalid("@type", format!("must be {}", kind.type_name()))),
    }
}

fn status_of(item: &CatalogueItem) -> Result<LifecycleStatus> {
    LifecycleStatus::parse(&item.lifecycle_status).ok_or_else(|| {
        CatalogueError::Store(tollgate_store::StoreError::Corrupt {
            operation: "catalogue",
            column: "lifecycle_status",
            detail: format!("unknown status {:?}", item.lifecycle_status),
        })
    })
}

fn row(kind: Kind, id: &str, found: &Validated, doc: &Value) -> CatalogueItem {
    CatalogueItem {
        kind: kind.type_name().to_owned(),
        id: id.to_owned(),
        name: found.name.clone(),
        lifecycle_status: found.status.as_str().to_owned(),
        version_label: found.version_label.clone(),
        is_bundle: found.is_bundle,
        price_type: found.price.as_ref().map(|price| price.type_name().to_owned()),
        price: found.price.as_ref().and_then(PriceShape::money),
        doc: doc.clone(),
        refs: found.refs.iter().map(|(field, _, id)| (field.clone(), id.clone())).collect(),
    }
}

/// The events productCatalogManagement publishes to its hub's listeners (TMF620): for
/// each kind of item, created, changed (attributes, or the lifecycle status), deleted.
pub const EVENTS: [&str; 16] = [
    "ProductSpecificationCreateEvent",
    "ProductSpecificationAttributeValueChangeEvent",
    "ProductSpecificationStateChangeEvent",
    "ProductSpecificationDeleteEvent",
    "ProductOfferingCreateEvent",
    "ProductOfferingAttributeValueChangeEvent",
    "ProductOfferingStateChangeEvent",
    "ProductOfferingDeleteEvent",
    "ProductOfferingPriceCreateEvent",
    "ProductOfferingPriceAttributeValueChangeEvent",
    "ProductOfferingPriceStateChangeEvent",
    "ProductOfferingPriceDeleteEvent",
    "CategoryCreateEvent",
    "CategoryAttributeValueChangeEvent",
    "CategoryStateChangeEvent",
    "CategoryDeleteEvent",
];

/// Publishes `{Kind}{what}` (`ProductOfferingCreateEvent`) to the catalogue hub's
/// listeners, in the change's transaction.
async fn publish(tx: &mut Tx, kind: Kind, what: &str, id: &str, doc: &Value, now: Timestamp) -> Result<()> {
    let event_type = format!("{}{what}", kind.type_name());
    debug_assert!(EVENTS.contains(&event_type.as_str()), "{event_type} is listed in EVENTS");
    let event =
        NewEvent { api: BASE_PATH, event_type: &event_type, entity_type: kind.path(), entity_id: id, entity: doc };
    tx.publish_event(event, now).await?;
    Ok(())
}

#[allow(clippy::too_many_arguments, reason = "one audit record's fields")]
async fn audit(
    tx: &mut Tx,
    actor: &str,
    action: &str,
    kind: Kind,
    id: &str,
    before: Option<&Value>,
    after: Option<&Value>,
    now: Timestamp,
) -> Result<()> {
    let record = AuditRecord { actor, action, entity_type: kind.type_name(), entity_id: id, before, after };
    tx.audit(record, now).await?;
    Ok(())
}
