//! A network element's document (TMF639 `Resource`, `@type` `PhysicalResource`,
//! `resourceSpecification.id` `NetworkElement`), checked naming the field. Kept: `name`
//! (required), `description`, `category` (the element type, required: one of
//! [`ELEMENT_TYPES`]), `address` (required, an extension: `host:port`, `[v6]:port`, a bare
//! host or a URL such as `https://hss1.example.net:8443/prov`), `resourceStatus` (its
//! status, TMF639's enumeration, default `available`), `administrativeState` and
//! `operationalState` (TMF639's enumerations), `resourceSpecification` and the `@`
//! members. Any other field is refused naming it.

use serde_json::{Map, Value};

use crate::error::{InventoryError, Result};

/// The element types an element's `category` may be: subscriber data (HSS, UDM, HLR),
/// policy (PCRF, PCF), messaging (SMSC), packet gateways (PGW, SGW, GGSN, SMF, UPF) and
/// any other gateway (a provisioning gateway, say: GATEWAY).
pub const ELEMENT_TYPES: [&str; 12] =
    ["HSS", "UDM", "HLR", "PCRF", "PCF", "SMSC", "PGW", "SGW", "GGSN", "SMF", "UPF", "GATEWAY"];

/// TMF639's `ResourceStatusType`: an element's status.
pub const ELEMENT_STATUSES: [&str; 6] = ["standby", "alarm", "available", "reserved", "unknown", "suspended"];

const ADMINISTRATIVE_STATES: [&str; 3] = ["locked", "unlocked", "shutdown"];
const OPERATIONAL_STATES: [&str; 2] = ["enable", "disable"];

const FIELDS: [&str; 13] = [
    "id",
    "href",
    "@type",
    "@baseType",
    "@schemaLocation",
    "name",
    "description",
    "category",
    "address",
    "resourceStatus",
    "administrativeState",
    "operationalState",
    "resourceSpecification",
];

/// What a valid network element document says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidElement {
    pub name: String,
    pub element_type: String,
    pub address: String,
    pub status: String,
}

fn text<'a>(object: &'a Map<String, Value>, field: &str, max: usize, required: bool) -> Result<Option<&'a str>> {
    match object.get(field) {
        None if required => Err(InventoryError::invalid(field, "is required")),
        None => Ok(None),
        Some(Value::String(value)) if !value.trim().is_empty() && value.chars().count() <= max => Ok(Some(value)),
        Some(_) => Err(InventoryError::invalid(field, format!("must be 1 to {max} characters"))),
    }
}

fn one_of(object: &Map<String, Value>, field: &str, allowed: &[&str]) -> Result<Option<String>> {
    match object.get(field) {
        None => Ok(None),
        Some(Value::String(value)) if allowed.contains(&value.as_str()) => Ok(Some(value.clone())),
        Some(_) => Err(InventoryError::invalid(field, format!("must be one of {}", allowed.join(", ")))),
    }
}

/// Whether `address` is a host (name, IPv4, `[IPv6]`) with an optional port, or a URL.
fn valid_address(address: &str) -> bool {
    if address.len() > 255 || address.bytes().any(|byte| !byte.is_ascii_graphic()) {
        return false;
    }
    let authority = match address.split_once("://") {
        Some((scheme, rest)) => {
            let scheme_ok = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
            if !scheme_ok {
                return false;
            }
            rest.split(['/', '?', '#', ';']).next().unwrap_or("")
        }
        None => address,
    };
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else { return false };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return false;
        }
        match after.strip_prefix(':') {
            None => return after.is_empty(),
            Some(port) => ("v6", Some(port)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    let port_ok = port.is_none_or(|port| port.parse::<u16>().is_ok_and(|port| port > 0));
    host_ok && port_ok
}

/// Checks a network element document.
pub fn validate_element(doc: &Value) -> Result<ValidElement> {
    let Value::Object(object) = doc else { return Err(InventoryError::invalid("body", "must be a JSON object")) };
    if let Some(field) = object.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err(InventoryError::invalid(field.clone(), "is not supported for a network element"));
    }
    if object.get("@type").is_some_and(|value| value != "PhysicalResource") {
        return Err(InventoryError::invalid("@type", "a network element is a PhysicalResource"));
    }
    let name = text(object, "name", 200, true)?.unwrap_or_default().to_owned();
    text(object, "description", 1000, false)?;
    let Some(element_type) = one_of(object, "category", &ELEMENT_TYPES)? else {
        return Err(InventoryError::invalid(
            "category",
            format!("is required: the element type, one of {}", ELEMENT_TYPES.join(", ")),
        ));
    };
    let address = text(object, "address", 255, true)?.unwrap_or_default().to_owned();
    if !valid_address(&address) {
        return Err(InventoryError::invalid(
            "address",
            format!("{address:?} is not host[:port], [IPv6][:port] or a URL"),
        ));
    }
    let status = one_of(object, "resourceStatus", &ELEMENT_STATUSES)?.unwrap_or_else(|| "available".into());
    one_of(object, "administrativeState", &ADMINISTRATIVE_STATES)?;
    one_of(object, "operationalState", &OPERATIONAL_STATES)?;
    Ok(ValidElement { name, element_type, address, status })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn addresses() {
        for good in [
            "hss1.example.net:3868",
            "10.0.0.7",
            "10.0.0.7:8080",
            "[2001:db8::1]:3868",
            "[2001:db8::1]",
            "https://prov.example.net:8443/api?x=1",
            "aaa://hss.example.net:3868;transport=tcp",
            "smsc_1",
        ] {
            assert!(valid_address(good), "{good}");
        }
        for bad in ["", "hss 1", "host:0", "host:99999", "host:", "[zz]:1", "1http://x", "a..b", "é.example"] {
            assert!(!valid_address(bad), "{bad}");
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        let good = json!({"name": "HSS 1", "category": "HSS", "address": "hss1.example.net:3868"});
        let valid = validate_element(&good).expect("valid");
        assert_eq!(valid.status, "available");
        for (change, field) in [
            (json!({"name": ""}), "name"),
            (json!({"category": "MSC"}), "category"),
            (json!({"address": "not an address"}), "address"),
            (json!({"resourceStatus": "broken"}), "resourceStatus"),
            (json!({"operationalState": "on"}), "operationalState"),
            (json!({"colour": "red"}), "colour"),
            (json!({"@type": "LogicalResource"}), "@type"),
        ] {
            let mut doc = good.clone();
            if let (Some(doc), Some(change)) = (doc.as_object_mut(), change.as_object()) {
                doc.extend(change.clone());
            }
            match validate_element(&doc) {
                Err(InventoryError::Invalid { field: found, .. }) => assert_eq!(found, field, "{change}"),
                other => panic!("{change}: {other:?}"),
            }
        }
    }
}
