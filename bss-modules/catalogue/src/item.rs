//! The four kinds of catalogue item and what makes a document of each valid: first the
//! shape TMF620 gives its `*_Create` schema (bundled in `schema/tmf620.schema.json` by
//! `scripts/bundle-tmf620-schema.py`), then Tollgate's rules: a name, a known lifecycle
//! status, a validity period whose end follows its start, a price shape for a price, and
//! references by id to items of the right kind (checked against the store by
//! [`Catalogue`](crate::Catalogue)). Every refusal names the field.

use std::sync::OnceLock;

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::error::{CatalogueError, Result};
use crate::lifecycle::LifecycleStatus;
use crate::price::{shape, PriceShape};

/// Characters a name may have.
pub const MAX_NAME_CHARS: usize = 200;
/// References one field may list.
const MAX_REFS_PER_FIELD: usize = 100;
const MAX_ID_BYTES: usize = 100;
const MAX_SHORT_TEXT_CHARS: usize = 100;

const SCHEMA: &str = include_str!("../schema/tmf620.schema.json");

/// A kind of catalogue item, with its TMF620 type name and resource path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ProductSpecification,
    ProductOffering,
    ProductOfferingPrice,
    Category,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] =
        [Kind::ProductSpecification, Kind::ProductOffering, Kind::ProductOfferingPrice, Kind::Category];

    /// The TMF type name (`@type`, and the store's `kind`): `ProductOffering`, …
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::ProductSpecification => "ProductSpecification",
            Kind::ProductOffering => "ProductOffering",
            Kind::ProductOfferingPrice => "ProductOfferingPrice",
            Kind::Category => "Category",
        }
    }

    /// The resource's path segment: `productOffering`, …
    pub fn path(self) -> &'static str {
        match self {
            Kind::ProductSpecification => "productSpecification",
            Kind::ProductOffering => "productOffering",
            Kind::ProductOfferingPrice => "productOfferingPrice",
            Kind::Category => "category",
        }
    }

    /// The kind whose path segment is `path`.
    pub fn from_path(path: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.path() == path)
    }

    /// The kind whose type name is `name`.
    pub fn from_type_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.type_name() == name)
    }

    /// The reference fields of a document of this kind: (field, kind referred to, a list?).
    fn reference_fields(self) -> &'static [(&'static str, Kind, bool)] {
        match self {
            Kind::ProductSpecification => &[("bundledProductSpecification", Kind::ProductSpecification, true)],
            Kind::ProductOffering => &[
                ("productSpecification", Kind::ProductSpecification, false),
                ("productOfferingPrice", Kind::ProductOfferingPrice, true),
                ("bundledProductOffering", Kind::ProductOffering, true),
                ("category", Kind::Category, true),
            ],
            Kind::ProductOfferingPrice => &[],
            Kind::Category => {
                &[("subCategory", Kind::Category, true), ("productOffering", Kind::ProductOffering, true)]
            }
        }
    }

    fn validator(self) -> Result<&'static jsonschema::Validator> {
        static VALIDATORS: OnceLock<Result<Vec<jsonschema::Validator>, String>> = OnceLock::new();
        let built = VALIDATORS.get_or_init(|| {
            let bundle: Value = serde_json::from_str(SCHEMA).map_err(|e| e.to_string())?;
            Kind::ALL
                .into_iter()
                .map(|kind| {
                    let mut schema = bundle.clone();
                    if let Value::Object(object) = &mut schema {
                        object
                            .insert("$ref".into(), Value::String(format!("#/definitions/{}_Create", kind.type_name())));
                    }
                    jsonschema::options()
                        .with_draft(jsonschema::Draft::Draft7)
                        .should_validate_formats(true)
                        .build(&schema)
                        .map_err(|e| e.to_string())
                })
                .collect()
        });
        let index = Kind::ALL.iter().position(|kind| *kind == self).unwrap_or(0);
        match built {
            Ok(validators) => validators
                .get(index)
                .ok_or_else(|| CatalogueError::invalid("schema", "no validator for this kind (a build defect)")),
            Err(error) => Err(CatalogueError::invalid("schema", format!("the bundled TMF620 schema: {error}"))),
        }
    }
}

/// What validation found in a document, for the store's columns and the checks that need
/// the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    pub name: String,
    pub status: LifecycleStatus,
    pub version_label: Option<String>,
    pub is_bundle: Option<bool>,
    pub price: Option<PriceShape>,
    /// (field, kind referred to, id), e.g. (`productOfferingPrice[0]`, price, `7f…`).
    pub refs: Vec<(String, Kind, String)>,
}

fn field_path(location: &str) -> String {
    // `/validFor/startDateTime` → `validFor.startDateTime`, `/category/0/id` → `category[0].id`.
    let mut out = String::new();
    for segment in location.split('/').filter(|s| !s.is_empty()) {
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(segment);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment.replace("~1", "/").replace("~0", "~"));
        }
    }
    if out.is_empty() {
        "body".to_owned()
    } else {
        out
    }
}

fn optional_text(object: &Map<String, Value>, field: &str, max_chars: usize) -> Result<Option<String>> {
    match object.get(field) {
        None => Ok(None),
        Some(Value::String(text)) if text.chars().count() <= max_chars => Ok(Some(text.clone())),
        Some(Value::String(_)) => Err(CatalogueError::invalid(field, format!("longer than {max_chars} characters"))),
        Some(_) => Err(CatalogueError::invalid(field, "must be a string")),
    }
}

fn instant(period: &Map<String, Value>, field: &str) -> Result<Option<Timestamp>> {
    match period.get(field) {
        None => Ok(None),
        Some(Value::String(text)) => text.parse::<Timestamp>().map(Some).map_err(|_| {
            CatalogueError::invalid(format!("validFor.{field}"), format!("{text:?} is not an RFC 3339 instant"))
        }),
        Some(_) => Err(CatalogueError::invalid(format!("validFor.{field}"), "must be an RFC 3339 instant")),
    }
}

/// Refuses an integer too large for 64 bits (serde_json holds it as a float, and it would
/// come back as `1.2e27`, no longer an integer): the first one, by its path.
fn check_numbers(value: &Value, path: &mut Vec<String>) -> Result<()> {
    match value {
        Value::Number(number) => {
            if let Some(float) = number.as_f64().filter(|_| number.is_f64()) {
                if float.fract() == 0.0 && float.abs() >= 9.2e18 {
                    return Err(CatalogueError::invalid(
                        field_path(&path.join("/")),
                        format!("{number} is an integer beyond 64 bits"),
                    ));
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push(index.to_string());
                check_numbers(item, path)?;
                path.pop();
            }
        }
        Value::Object(members) => {
            for (name, item) in members {
                path.push(name.replace('~', "~0").replace('/', "~1"));
                check_numbers(item, path)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// Validates a document of `kind` as it is to be stored (the server's fields, `id`,
/// `href`, `lastUpdate`, `@type`, may be present), and normalises it: money values become
/// exact JSON numbers. Does not look references up (that needs the store).
pub fn validate(kind: Kind, doc: &mut Value) -> Result<Validated> {
    let validator = kind.validator()?;
    check_numbers(doc, &mut Vec::new())?;
    if let Some(error) = validator.iter_errors(doc).next() {
        let field = field_path(&error.instance_path().to_string());
        return Err(CatalogueError::invalid(field, error.to_string()));
    }
    let Value::Object(object) = doc else { return Err(CatalogueError::invalid("body", "must be a JSON object")) };
    let name = match object.get("name") {
        Some(Value::String(name)) if !name.trim().is_empty() && name.chars().count() <= MAX_NAME_CHARS => name.clone(),
        Some(Value::String(_)) => {
            return Err(CatalogueError::invalid("name", format!("must be 1 to {MAX_NAME_CHARS} characters, not blank")))
        }
        _ => return Err(CatalogueError::invalid("name", "is required")),
    };
    let status = match object.get("lifecycleStatus") {
        None => LifecycleStatus::InStudy,
        Some(Value::String(text)) => LifecycleStatus::parse(text).ok_or_else(|| {
            let known: Vec<&str> = LifecycleStatus::ALL.iter().map(|s| s.as_str()).collect();
            CatalogueError::invalid("lifecycleStatus", format!("{text:?} is not one of {}", known.join(", ")))
        })?,
        Some(_) => return Err(CatalogueError::invalid("lifecycleStatus", "must be a string")),
    };
    object.insert("lifecycleStatus".into(), Value::String(status.as_str().to_owned()));
    let version_label = optional_text(object, "version", MAX_SHORT_TEXT_CHARS)?;
    let is_bundle = match object.get("isBundle") {
        None => None,
        Some(Value::Bool(flag)) => Some(*flag),
        Some(_) => return Err(CatalogueError::invalid("isBundle", "must be true or false")),
    };
    if let Some(period) = object.get("validFor") {
        let Value::Object(period) = period else {
            return Err(CatalogueError::invalid("validFor", "must be an object"));
        };
        let start = instant(period, "startDateTime")?;
        let end = instant(period, "endDateTime")?;
        if let (Some(start), Some(end)) = (start, end) {
            if end <= start {
                return Err(CatalogueError::invalid("validFor.endDateTime", "must be after validFor.startDateTime"));
            }
        }
    }
    let mut refs = Vec::new();
    for &(field, to, list) in kind.reference_fields() {
        let entries: Vec<(String, &Value)> = match (object.get(field), list) {
            (None, _) => continue,
            (Some(Value::Array(items)), true) => {
                if items.len() > MAX_REFS_PER_FIELD {
                    return Err(CatalogueError::invalid(field, format!("more than {MAX_REFS_PER_FIELD} references")));
                }
                items.iter().enumerate().map(|(i, item)| (format!("{field}[{i}]"), item)).collect()
            }
            (Some(item), false) => vec![(field.to_owned(), item)],
            (Some(_), true) => return Err(CatalogueError::invalid(field, "must be a list")),
        };
        for (at, entry) in entries {
            match entry.get("id") {
                Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_ID_BYTES => {
                    refs.push((field.to_owned(), to, id.clone()));
                }
                _ => return Err(CatalogueError::invalid(format!("{at}.id"), "must name the item referred to")),
            }
        }
    }
    if kind == Kind::Category {
        if let Some(parent) = optional_text(object, "parentId", MAX_ID_BYTES)? {
            refs.push(("parentId".to_owned(), Kind::Category, parent));
        }
    }
    if kind == Kind::ProductOffering {
        let bundled = refs.iter().filter(|(field, _, _)| field == "bundledProductOffering").count();
        if bundled > 0 && is_bundle != Some(true) {
            return Err(CatalogueError::invalid(
                "bundledProductOffering",
                "only a bundle (isBundle: true) lists bundled offerings",
            ));
        }
    }
    let price = match kind {
        Kind::ProductOfferingPrice => Some(shape(object)?),
        _ => None,
    };
    if kind != Kind::ProductOfferingPrice && object.contains_key("tariffPlan") {
        return Err(CatalogueError::invalid("tariffPlan", "only a usage price has a tariff plan"));
    }
    Ok(Validated { name, status, version_label, is_bundle, price, refs })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refused(kind: Kind, mut doc: Value) -> String {
        match validate(kind, &mut doc) {
            Ok(_) => panic!("{doc} accepted"),
            Err(CatalogueError::Invalid { field, .. }) => field,
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn every_refusal_names_its_field() {
        let offering = Kind::ProductOffering;
        assert_eq!(refused(offering, json!({})), "body");
        assert_eq!(refused(offering, json!([])), "body");
        assert_eq!(refused(offering, json!({"name": 5})), "name");
        assert_eq!(refused(offering, json!({"name": " "})), "name");
        assert_eq!(refused(offering, json!({"name": "a", "isSellable": "yes"})), "isSellable");
        assert_eq!(refused(offering, json!({"name": "a", "lifecycleStatus": "Launched"})), "lifecycleStatus");
        assert_eq!(
            refused(offering, json!({"name": "a", "validFor": {"startDateTime": "yesterday"}})),
            "validFor.startDateTime"
        );
        assert_eq!(
            refused(
                offering,
                json!({"name": "a", "validFor": {"startDateTime": "2026-02-01T00:00:00Z", "endDateTime": "2026-01-01T00:00:00Z"}})
            ),
            "validFor.endDateTime"
        );
        assert_eq!(refused(offering, json!({"name": "a", "category": [{"name": "no id"}]})), "category[0]");
        assert_eq!(refused(offering, json!({"name": "a", "category": [{"id": ""}]})), "category[0].id");
        assert_eq!(
            refused(offering, json!({"name": "a", "bundledProductOffering": [{"id": "x"}]})),
            "bundledProductOffering"
        );
        assert_eq!(refused(Kind::ProductOfferingPrice, json!({"name": "p"})), "priceType");
        let huge: Value =
            serde_json::from_str(r#"{"name": "a", "agreement": [{"id": "x", "n": 1252599073650949787324776448}]}"#)
                .expect("JSON");
        assert_eq!(refused(offering, huge), "agreement[0].n");
    }

    #[test]
    fn a_valid_offering_yields_its_columns_and_references() {
        let mut doc = json!({"name": "Gold", "isBundle": true, "version": "2",
            "bundledProductOffering": [{"id": "b1"}], "productOfferingPrice": [{"id": "p1"}],
            "validFor": {"startDateTime": "2026-01-01T00:00:00Z"}});
        let found = validate(Kind::ProductOffering, &mut doc).expect("valid");
        assert_eq!(found.status, LifecycleStatus::InStudy);
        assert_eq!(doc["lifecycleStatus"], "In study");
        assert_eq!(found.version_label.as_deref(), Some("2"));
        assert_eq!(found.refs.len(), 2);
    }
}
