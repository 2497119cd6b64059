//! A customer document (TMF629 `Customer`) checked and normalised: the fields kept are few
//! on purpose (personal data is minimal): `name`, `status`, `statusReason`, `engagedParty`
//! (whose `@referredType`, `Individual` or `Organization`, is the party type),
//! `contactMedium` and `validFor`, plus the extension `consent`: one entry per purpose,
//! `{purpose, granted, at}`, where `at` is the instant the server saw the flag change. Any
//! other field is refused naming it.

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::error::{CustomersError, Result};

/// Characters a name may have.
pub const MAX_NAME_CHARS: usize = 200;
/// Contact media a customer may have.
pub const MAX_CONTACT_MEDIA: usize = 10;
/// Consent purposes a customer may have.
pub const MAX_CONSENTS: usize = 20;
const MAX_TEXT_CHARS: usize = 200;

const FIELDS: [&str; 12] = [
    "id",
    "href",
    "@type",
    "@baseType",
    "@schemaLocation",
    "name",
    "status",
    "statusReason",
    "engagedParty",
    "contactMedium",
    "validFor",
    "consent",
];
const CHARACTERISTIC: [&str; 11] = [
    "city",
    "contactType",
    "country",
    "emailAddress",
    "faxNumber",
    "phoneNumber",
    "postCode",
    "socialNetworkId",
    "stateOrProvince",
    "street1",
    "street2",
];

/// What a valid customer document says, for the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidCustomer {
    /// `individual` or `organization`.
    pub party_type: String,
    pub name: String,
    pub status: String,
}

fn text<'a>(field: &str, value: &'a Value) -> Result<&'a str> {
    match value {
        Value::String(text)
            if !text.trim().is_empty()
                && text.chars().count() <= MAX_TEXT_CHARS
                && !text.chars().any(char::is_control) =>
        {
            Ok(text)
        }
        Value::String(_) => Err(CustomersError::invalid(
            field,
            format!("must be 1 to {MAX_TEXT_CHARS} characters, no control characters"),
        )),
        _ => Err(CustomersError::invalid(field, "must be a string")),
    }
}

/// Checks `doc` and normalises its consent entries: an entry whose flag is new or changed
/// against `before` gets `at` = `now`, an unchanged one keeps its instant.
pub fn validate_customer(doc: &mut Value, before: Option<&Value>, now: Timestamp) -> Result<ValidCustomer> {
    let Value::Object(object) = doc else { return Err(CustomersError::invalid("body", "must be a JSON object")) };
    if let Some(field) = object.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err(CustomersError::invalid(field.clone(), "is not kept (personal data is kept minimal)"));
    }
    let name = match object.get("name") {
        None => return Err(CustomersError::invalid("name", "is required")),
        Some(Value::String(name))
            if !name.trim().is_empty()
                && name.chars().count() <= MAX_NAME_CHARS
                && !name.chars().any(char::is_control) =>
        {
            name.clone()
        }
        Some(_) => {
            return Err(CustomersError::invalid(
                "name",
                format!("must be 1 to {MAX_NAME_CHARS} characters, no control characters"),
            ))
        }
    };
    let status = match object.get("status") {
        None => "Approved".to_owned(),
        Some(value) => text("status", value)?.to_owned(),
    };
    object.insert("status".into(), Value::String(status.clone()));
    if let Some(value) = object.get("statusReason") {
        text("statusReason", value)?;
    }
    if object.get("@type").is_some_and(|value| value != "Customer") {
        return Err(CustomersError::invalid("@type", "must be Customer"));
    }
    let party = match object.get("engagedParty") {
        Some(Value::Object(party)) => party,
        Some(_) => return Err(CustomersError::invalid("engagedParty", "must be an object")),
        None => return Err(CustomersError::invalid("engagedParty", "is required")),
    };
    let party_type = match party.get("@referredType").and_then(Value::as_str) {
        Some("Individual") => "individual",
        Some("Organization") => "organization",
        _ => return Err(CustomersError::invalid("engagedParty.@referredType", "must be Individual or Organization")),
    };
    for (key, value) in party {
        if !["id", "href", "name", "role", "@referredType", "@type", "@baseType", "@schemaLocation"]
            .contains(&key.as_str())
        {
            return Err(CustomersError::invalid(format!("engagedParty.{key}"), "is not kept"));
        }
        text(&format!("engagedParty.{key}"), value)?;
    }
    if !party.contains_key("id") {
        return Err(CustomersError::invalid("engagedParty.id", "is required"));
    }
    if let Some(media) = object.get("contactMedium") {
        check_media(media)?;
    }
    if let Some(valid_for) = object.get("validFor") {
        check_valid_for(valid_for)?;
    }
    let consent = match object.remove("consent") {
        None => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(CustomersError::invalid("consent", "must be an array")),
    };
    let old = before.and_then(|doc| doc.get("consent")).and_then(Value::as_array).cloned().unwrap_or_default();
    object.insert("consent".into(), Value::Array(consents(consent, &old, now)?));
    Ok(ValidCustomer { party_type: party_type.to_owned(), name, status })
}

fn check_media(media: &Value) -> Result<()> {
    let Value::Array(media) = media else { return Err(CustomersError::invalid("contactMedium", "must be an array")) };
    if media.len() > MAX_CONTACT_MEDIA {
        return Err(CustomersError::invalid("contactMedium", format!("at most {MAX_CONTACT_MEDIA} entries")));
    }
    for (index, medium) in media.iter().enumerate() {
        let at = format!("contactMedium[{index}]");
        let Value::Object(medium) = medium else { return Err(CustomersError::invalid(at, "must be an object")) };
        for (key, value) in medium {
            let field = format!("{at}.{key}");
            match key.as_str() {
                "mediumType" | "@type" | "@baseType" | "@schemaLocation" => {
                    text(&field, value)?;
                }
                "preferred" if value.is_boolean() => {}
                "preferred" => return Err(CustomersError::invalid(field, "must be true or false")),
                "validFor" => check_valid_for(value)
                    .map_err(|_| CustomersError::invalid(field, "must be {startDateTime, endDateTime}"))?,
                "characteristic" => {
                    let Value::Object(characteristic) = value else {
                        return Err(CustomersError::invalid(field, "must be an object"));
                    };
                    for (name, value) in characteristic {
                        let field = format!("{field}.{name}");
                        if !CHARACTERISTIC.contains(&name.as_str()) && !name.starts_with('@') {
                            return Err(CustomersError::invalid(field, "is not kept"));
                        }
                        let value = text(&field, value)?;
                        if name == "emailAddress" && !value.contains('@') {
                            return Err(CustomersError::invalid(field, "is not an e-mail address"));
                        }
                    }
                }
                _ => return Err(CustomersError::invalid(field, "is not kept")),
            }
        }
        if !medium.contains_key("mediumType") {
            return Err(CustomersError::invalid(format!("{at}.mediumType"), "is required"));
        }
    }
    Ok(())
}

fn check_valid_for(value: &Value) -> Result<()> {
    let Value::Object(period) = value else { return Err(CustomersError::invalid("validFor", "must be an object")) };
    let mut bounds = Vec::new();
    for (key, value) in period {
        let field = format!("validFor.{key}");
        if key != "startDateTime" && key != "endDateTime" {
            return Err(CustomersError::invalid(field, "is not a field of a time period"));
        }
        let instant = value
            .as_str()
            .and_then(|text| text.parse::<Timestamp>().ok())
            .ok_or_else(|| CustomersError::invalid(&field, "must be an RFC 3339 instant"))?;
        bounds.push((key.as_str(), instant));
    }
    let start = bounds.iter().find(|(key, _)| *key == "startDateTime").map(|(_, at)| *at);
    let end = bounds.iter().find(|(key, _)| *key == "endDateTime").map(|(_, at)| *at);
    if let (Some(start), Some(end)) = (start, end) {
        if end < start {
            return Err(CustomersError::invalid("validFor.endDateTime", "is before startDateTime"));
        }
    }
    Ok(())
}

fn consents(entries: Vec<Value>, old: &[Value], now: Timestamp) -> Result<Vec<Value>> {
    if entries.len() > MAX_CONSENTS {
        return Err(CustomersError::invalid("consent", format!("at most {MAX_CONSENTS} purposes")));
    }
    let mut seen = Vec::new();
    let mut out = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let at = format!("consent[{index}]");
        let Value::Object(entry) = entry else { return Err(CustomersError::invalid(at, "must be an object")) };
        if let Some(key) = entry.keys().find(|key| !["purpose", "granted", "at"].contains(&key.as_str())) {
            return Err(CustomersError::invalid(format!("{at}.{key}"), "is not a field of a consent"));
        }
        let purpose = text(&format!("{at}.purpose"), entry.get("purpose").unwrap_or(&Value::Null))?.to_owned();
        let Some(granted) = entry.get("granted").and_then(Value::as_bool) else {
            return Err(CustomersError::invalid(format!("{at}.granted"), "must be true or false"));
        };
        if seen.contains(&purpose) {
            return Err(CustomersError::invalid(format!("{at}.purpose"), format!("{purpose:?} given twice")));
        }
        let unchanged = old.iter().find(|old| {
            old.get("purpose").and_then(Value::as_str) == Some(purpose.as_str())
                && old.get("granted").and_then(Value::as_bool) == Some(granted)
        });
        let since = unchanged.and_then(|old| old.get("at")).cloned().unwrap_or_else(|| Value::String(now.to_string()));
        let mut normalised = Map::new();
        normalised.insert("purpose".into(), Value::String(purpose.clone()));
        normalised.insert("granted".into(), Value::Bool(granted));
        normalised.insert("at".into(), since);
        out.push(Value::Object(normalised));
        seen.push(purpose);
    }
    Ok(out)
}

/// The document with its personal data replaced: what an anonymised customer keeps (its
/// id, href, type, status and validity; consent cleared).
pub fn anonymised(doc: &Value) -> Value {
    let mut kept = Map::new();
    if let Value::Object(object) = doc {
        for key in ["id", "href", "@type", "status", "validFor"] {
            if let Some(value) = object.get(key) {
                kept.insert(key.into(), value.clone());
            }
        }
        let referred = object.get("engagedParty").and_then(|party| party.get("@referredType")).cloned();
        kept.insert(
            "engagedParty".into(),
            serde_json::json!({"id": "anonymised", "@referredType": referred.unwrap_or(Value::String("Individual".into()))}),
        );
    }
    kept.insert("name".into(), Value::String("anonymised".into()));
    kept.insert("consent".into(), Value::Array(Vec::new()));
    Value::Object(kept)
}

/// The document as the append-only audit trail keeps it: personal values (name, contact
/// media, the engaged party's name and id) replaced by `<personal data>`, so erasure
/// leaves none behind in a log that cannot be edited.
pub fn redacted(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Value::Object(object) = &mut doc {
        let marker = || Value::String("<personal data>".into());
        if object.contains_key("name") {
            object.insert("name".into(), marker());
        }
        if let Some(Value::Array(media)) = object.get_mut("contactMedium") {
            for medium in media {
                if let Some(Value::Object(characteristic)) = medium.get_mut("characteristic") {
                    for value in characteristic.values_mut() {
                        *value = marker();
                    }
                }
            }
        }
        if let Some(Value::Object(party)) = object.get_mut("engagedParty") {
            for key in ["id", "name", "href"] {
                if party.contains_key(key) {
                    party.insert(key.into(), marker());
                }
            }
        }
    }
    doc
}
