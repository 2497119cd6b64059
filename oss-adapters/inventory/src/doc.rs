//! Resource ids and TMF639 documents. Every resource of the inventory is one TMF639
//! `Resource`; its kind is its `resourceSpecification.id` ([`ResourceKind`]: `MSISDN`,
//! `SIMCard`, `NetworkElement`), and its `@type` is TMF639's subclass (`LogicalResource`
//! for an MSISDN, `PhysicalResource` for a SIM card or a network element). An id says the
//! kind too: `msisdn-447700900123`, `sim-8944100000000000018`, `ne-<32 hex>`.
//!
//! An MSISDN or SIM shows its lifecycle as `state` (exact: available, reserved, assigned,
//! quarantine, retired, as it counts now) and as TMF639's `resourceStatus` and
//! `usageState` ([`ResourceState::tmf_status`]), with `owner` and `reservedUntil` while
//! reserved, `owner` and `subscriptionId` while assigned, `availableFrom` in quarantine.
//! A SIM's keys never appear: only `hasKeys`.

use jiff::Timestamp;
use serde_json::{json, Map, Value};
use tollgate_store::{PoolKind, PoolRow, StoreError};

use crate::error::{InventoryError, Result};
use crate::lifecycle::{effective, ResourceState};
use crate::number::Money;

/// What a resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Msisdn,
    Sim,
    NetworkElement,
}

impl ResourceKind {
    /// In list order.
    pub const ALL: [ResourceKind; 3] = [ResourceKind::NetworkElement, ResourceKind::Msisdn, ResourceKind::Sim];

    /// Its `resourceSpecification.id`.
    pub fn spec_id(self) -> &'static str {
        match self {
            ResourceKind::Msisdn => "MSISDN",
            ResourceKind::Sim => "SIMCard",
            ResourceKind::NetworkElement => "NetworkElement",
        }
    }

    /// Its `@type`.
    pub fn tmf_type(self) -> &'static str {
        match self {
            ResourceKind::Msisdn => "LogicalResource",
            ResourceKind::Sim | ResourceKind::NetworkElement => "PhysicalResource",
        }
    }

    /// The kind with this `resourceSpecification.id`.
    pub fn parse(spec_id: &str) -> Option<ResourceKind> {
        ResourceKind::ALL.into_iter().find(|kind| kind.spec_id() == spec_id)
    }

    /// Its pool, for an MSISDN or a SIM.
    pub fn pool(self) -> Option<PoolKind> {
        match self {
            ResourceKind::Msisdn => Some(PoolKind::Msisdn),
            ResourceKind::Sim => Some(PoolKind::Sim),
            ResourceKind::NetworkElement => None,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            ResourceKind::Msisdn => "msisdn-",
            ResourceKind::Sim => "sim-",
            ResourceKind::NetworkElement => "ne-",
        }
    }

    /// The `resourceSpecification` reference.
    pub fn spec_ref(self) -> Value {
        json!({"id": self.spec_id(), "name": self.spec_id(), "@referredType": "ResourceSpecification"})
    }

    /// The id of its resource whose value (MSISDN, ICCID, element id) is `value`.
    pub fn id(self, value: &str) -> String {
        format!("{}{value}", self.prefix())
    }
}

impl From<PoolKind> for ResourceKind {
    fn from(kind: PoolKind) -> Self {
        match kind {
            PoolKind::Msisdn => ResourceKind::Msisdn,
            PoolKind::Sim => ResourceKind::Sim,
        }
    }
}

/// The kind and value (MSISDN digits, ICCID, element id) an id names; `None` for an id
/// this inventory never gives.
pub fn parse_id(id: &str) -> Option<(ResourceKind, &str)> {
    ResourceKind::ALL.into_iter().find_map(|kind| {
        let value = id.strip_prefix(kind.prefix())?;
        let fits = match kind {
            ResourceKind::Msisdn => (1..=15).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit()),
            ResourceKind::Sim => (19..=20).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit()),
            ResourceKind::NetworkElement => value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()),
        };
        fits.then_some((kind, value))
    })
}

/// The stored state of a row.
pub(crate) fn stored_state(row: &PoolRow) -> Result<ResourceState> {
    ResourceState::parse(&row.state).ok_or_else(|| {
        InventoryError::Store(StoreError::Corrupt {
            operation: "inventory",
            column: "state",
            detail: format!("{:?} is not a state", row.state),
        })
    })
}

/// The state a row is in at `now`.
pub(crate) fn state_now(row: &PoolRow, now: Timestamp) -> Result<ResourceState> {
    Ok(effective(stored_state(row)?, row.free_at, now))
}

/// The TMF639 document of an MSISDN or SIM card as it stands at `now`; hrefs under `root`.
pub fn pool_doc(row: &PoolRow, root: &str, now: Timestamp) -> Result<Value> {
    let kind = ResourceKind::from(row.kind);
    let id = kind.id(&row.value);
    let state = state_now(row, now)?;
    let (status, usage) = state.tmf_status();
    let mut doc = Map::new();
    doc.insert("id".into(), json!(id));
    doc.insert("href".into(), json!(format!("{root}/resource/{id}")));
    doc.insert("@type".into(), json!(kind.tmf_type()));
    doc.insert("@baseType".into(), json!("Resource"));
    doc.insert("resourceSpecification".into(), kind.spec_ref());
    doc.insert("name".into(), json!(row.value));
    match row.kind {
        PoolKind::Msisdn => {
            doc.insert("value".into(), json!(row.value));
            doc.insert("category".into(), json!(if row.price.is_some() { "golden" } else { "standard" }));
            if let Some((amount, currency)) = &row.price {
                doc.insert("price".into(), Money { amount: *amount, currency: currency.clone() }.to_json());
            }
            if let Some(range) = &row.group_id {
                doc.insert("rangeId".into(), json!(range));
            }
        }
        PoolKind::Sim => {
            doc.insert("serialNumber".into(), json!(row.value));
            doc.insert("imsi".into(), json!(row.imsi));
            if let Some(batch) = &row.group_id {
                doc.insert("batchId".into(), json!(batch));
            }
            doc.insert("hasKeys".into(), json!(row.has_keys));
        }
    }
    doc.insert("state".into(), json!(state.as_str()));
    doc.insert("resourceStatus".into(), json!(status));
    doc.insert("usageState".into(), json!(usage));
    match state {
        ResourceState::Reserved => {
            doc.insert("owner".into(), json!(row.owner));
            doc.insert("reservedUntil".into(), json!(row.free_at.map(|at| at.to_string())));
        }
        ResourceState::Assigned => {
            doc.insert("owner".into(), json!(row.owner));
            doc.insert("subscriptionId".into(), json!(row.subscription_id));
        }
        ResourceState::Quarantine => {
            doc.insert("availableFrom".into(), json!(row.free_at.map(|at| at.to_string())));
        }
        ResourceState::Available | ResourceState::Retired => {}
    }
    Ok(Value::Object(doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_names_its_kind() {
        assert_eq!(parse_id("msisdn-447700900123"), Some((ResourceKind::Msisdn, "447700900123")));
        assert_eq!(parse_id("sim-8944100000000000018"), Some((ResourceKind::Sim, "8944100000000000018")));
        let element = format!("ne-{}", "ab".repeat(16));
        assert_eq!(parse_id(&element).map(|(kind, _)| kind), Some(ResourceKind::NetworkElement));
        for bad in ["", "msisdn-", "msisdn-12a", "sim-123", "ne-xyz", "447700900123", "other-1"] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
        for kind in ResourceKind::ALL {
            assert_eq!(ResourceKind::parse(kind.spec_id()), Some(kind));
        }
    }
}
