//! [`InventoryResources`]: the [`Resources`] port on `tollgate-inventory`, the resource
//! inventory (TMF639). Reservations are made by owner (the order item), inside the
//! workflow's transaction, and hold for [`ORDER_HOLD_DAYS`] (renewed whenever the owner
//! asks again), long enough for an order retried for days; numbers and SIM cards are
//! assigned to the line when the order completes, an MSISDN taken back goes into
//! quarantine and a SIM card is retired. The network elements an activation targets are
//! the inventory's available ones; a SIM card's keys are opened with the inventory's key
//! when one is configured.

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use tollgate_activation::{ElementKind, NetworkElement, Secret, SimSecrets, MAX_TARGETS};
use tollgate_inventory::{
    effective, Inventory, InventoryError, KeySealer, PoolKind, Reservation, Reserve, ResourceState,
};
use tollgate_store::{NetworkElementFilter, Tx};

use crate::error::{OrdersError, Result};
use crate::ports::{BoxFuture, NetworkDetails, ResourceKind, Resources, Sim};

/// How long an order's reservation holds, in days.
pub const ORDER_HOLD_DAYS: i64 = 7;

/// The actor of the inventory's audit records for what an order does.
const ACTOR: &str = "system:provisioning";

/// The resource inventory as the workflow's [`Resources`].
#[derive(Debug)]
pub struct InventoryResources {
    inventory: Inventory,
    sealer: Option<KeySealer>,
}

fn pool(kind: ResourceKind) -> PoolKind {
    match kind {
        ResourceKind::Msisdn => PoolKind::Msisdn,
        ResourceKind::Sim => PoolKind::Sim,
    }
}

fn resource_id(kind: ResourceKind, value: &str) -> String {
    tollgate_inventory::ResourceKind::from(pool(kind)).id(value)
}

fn from_inventory(error: InventoryError) -> OrdersError {
    match error {
        InventoryError::Store(error) => OrdersError::Store(error),
        InventoryError::NotFound { kind, id } => OrdersError::NotFound { kind, id },
        InventoryError::Invalid { field, reason } => OrdersError::Invalid { field, reason },
        other => OrdersError::Conflict { field: "resource".into(), reason: other.to_string() },
    }
}

/// An activation element kind for an inventory element type.
fn element_kind(element_type: &str) -> ElementKind {
    match element_type {
        "HSS" | "HLR" => ElementKind::Hss,
        "UDM" => ElementKind::Udm,
        "PCRF" => ElementKind::Pcrf,
        "PCF" => ElementKind::Pcf,
        "SMSC" => ElementKind::Smsc,
        _ => ElementKind::Gateway,
    }
}

impl InventoryResources {
    /// Over `inventory`; `sealer` opens SIM keys for activations (without it, activations
    /// carry no keys).
    pub fn new(inventory: Inventory, sealer: Option<KeySealer>) -> InventoryResources {
        InventoryResources { inventory, sealer }
    }

    async fn reserve(
        &self,
        tx: &mut Tx,
        kind: ResourceKind,
        owner: &str,
        chosen: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<Value>> {
        let request = Reserve {
            kind: pool(kind),
            owner,
            value: chosen,
            group_id: None,
            hold: Some(SignedDuration::from_hours(24 * ORDER_HOLD_DAYS)),
        };
        match self.inventory.reserve_in(tx, ACTOR, &request, now).await.map_err(from_inventory)? {
            Reservation::Reserved(doc) | Reservation::Repeated(doc) => Ok(Some(doc.value)),
            Reservation::Exhausted => Ok(None),
        }
    }

    /// The row's stored state, owner and subscription, if the inventory has it.
    async fn held(
        tx: &mut Tx,
        kind: ResourceKind,
        value: &str,
    ) -> Result<Option<(ResourceState, Option<String>, Option<String>)>> {
        let Some(row) = tx.pool_row(pool(kind), value).await? else { return Ok(None) };
        let row = row.value;
        let stored = ResourceState::parse(&row.state).ok_or_else(|| {
            OrdersError::conflict("resource", format!("{value} is in an unknown state {:?}", row.state))
        })?;
        Ok(Some((stored, row.owner, row.subscription_id)))
    }
}

impl Resources for InventoryResources {
    fn reserve_number<'a>(
        &'a self,
        tx: &'a mut Tx,
        owner: &'a str,
        chosen: Option<&'a str>,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let doc = self.reserve(tx, ResourceKind::Msisdn, owner, chosen, now).await?;
            Ok(doc.and_then(|doc| doc.get("value").and_then(Value::as_str).map(str::to_owned)))
        })
    }

    fn reserve_sim<'a>(
        &'a self,
        tx: &'a mut Tx,
        owner: &'a str,
        chosen: Option<&'a str>,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Option<Sim>>> {
        Box::pin(async move {
            let Some(doc) = self.reserve(tx, ResourceKind::Sim, owner, chosen, now).await? else { return Ok(None) };
            let text = |field: &str| doc.get(field).and_then(Value::as_str).map(str::to_owned);
            match (text("serialNumber"), text("imsi")) {
                (Some(iccid), Some(imsi)) => Ok(Some(Sim { iccid, imsi })),
                _ => Err(OrdersError::conflict("resource", "a reserved SIM card has no ICCID or IMSI")),
            }
        })
    }

    fn release<'a>(
        &'a self,
        tx: &'a mut Tx,
        kind: ResourceKind,
        value: &'a str,
        owner: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match InventoryResources::held(tx, kind, value).await? {
                Some((ResourceState::Reserved, Some(by), _)) if by == owner => {
                    let id = resource_id(kind, value);
                    self.inventory.release_in(tx, ACTOR, &id, owner, now).await.map_err(from_inventory)?;
                    Ok(())
                }
                _ => Ok(()),
            }
        })
    }

    fn assign<'a>(
        &'a self,
        tx: &'a mut Tx,
        kind: ResourceKind,
        value: &'a str,
        owner: &'a str,
        subscription_id: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let id = resource_id(kind, value);
            self.inventory.assign_in(tx, ACTOR, &id, owner, subscription_id, now).await.map_err(from_inventory)?;
            Ok(())
        })
    }

    fn unassign<'a>(
        &'a self,
        tx: &'a mut Tx,
        kind: ResourceKind,
        value: &'a str,
        subscription_id: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match InventoryResources::held(tx, kind, value).await? {
                Some((ResourceState::Assigned, _, Some(to))) if to == subscription_id => {
                    let id = resource_id(kind, value);
                    self.inventory.unassign_in(tx, ACTOR, &id, subscription_id, now).await.map_err(from_inventory)?;
                    Ok(())
                }
                _ => Ok(()),
            }
        })
    }

    fn is_available<'a>(
        &'a self,
        tx: &'a mut Tx,
        kind: ResourceKind,
        value: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let Some(row) = tx.pool_row(pool(kind), value).await? else {
                return Err(OrdersError::NotFound { kind: "resource", id: resource_id(kind, value) });
            };
            let row = row.value;
            let stored = ResourceState::parse(&row.state).unwrap_or(ResourceState::Retired);
            Ok(effective(stored, row.free_at, now) == ResourceState::Available)
        })
    }

    fn network<'a>(&'a self, iccid: &'a str) -> BoxFuture<'a, Result<NetworkDetails>> {
        Box::pin(async move {
            let filter = NetworkElementFilter { status: Some("available".into()), ..NetworkElementFilter::default() };
            let limit = u32::try_from(MAX_TARGETS).unwrap_or(16);
            let page = self.inventory.store().network_element_list(&filter, 0, limit).await?;
            let mut targets = Vec::with_capacity(page.items.len());
            for element in page.items {
                let element = element.value;
                let built =
                    NetworkElement::new(element_kind(&element.element_type), element.id.clone(), element.address);
                targets.push(built.map_err(|error| {
                    OrdersError::conflict("networkElement", format!("network element {}: {error}", element.id))
                })?);
            }
            let sim = match &self.sealer {
                None => None,
                Some(sealer) => {
                    let keys = self.inventory.sim_keys(iccid, sealer).await.map_err(from_inventory)?;
                    match keys.and_then(|keys| keys.ki.map(|ki| (ki, keys.opc))) {
                        None => None,
                        Some((ki, opc)) => {
                            let ki = Secret::new(ki.expose_hex());
                            let opc = opc.map(|opc| Secret::new(opc.expose_hex()));
                            Some(SimSecrets::new(ki, opc).map_err(|error| {
                                OrdersError::conflict("sim", format!("the keys of SIM card {iccid}: {error}"))
                            })?)
                        }
                    }
                }
            };
            Ok(NetworkDetails { targets, sim })
        })
    }
}
