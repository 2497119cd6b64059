//! [`Inventory`]: the resource inventory's operations on the store, each one transaction
//! that validates, writes and appends its audit record, so nothing is committed unaudited
//! or half done. The API, the CLI and (next) the order and provisioning workflows call
//! these; none has rules of its own. The lifecycle steps also come as `*_in` methods that
//! work inside a caller's transaction (a provisioning step recorded with its reservation).
//!
//! **A number or SIM is never handed out twice.** Reserving the next free one is one
//! statement of the store ([`Tx::reserve_next`]); reserving a named one locks its row and
//! writes it only at the version read. A reservation is idempotent by its owner: the same
//! owner asking again gets what it holds (its reservation renewed), never a second one.

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Map, Value};
use tollgate_store::{
    new_entity_id, AuditRecord, NetworkElementFilter, NetworkElementRow, NewMsisdn, NewSim, NumberRangeRow, Overlap,
    PoolChange, PoolFilter, PoolKind, PoolRow, SimBatchRow, Store, StoreError, Tx, Version, Versioned,
};

use crate::doc::{parse_id, pool_doc, state_now, stored_state, ResourceKind};
use crate::element::validate_element;
use crate::error::{InventoryError, Result};
use crate::lifecycle::{next, Action, Illegal, ResourceState};
use crate::number::{parse_msisdn, GoldenRules, Money, NumberRange};
use crate::secret::{KeySealer, SimKeys};
use crate::sim::{check_iccid, check_imsi, parse_sim_file};

/// Where resource hrefs start.
pub const BASE_PATH: &str = "/tmf-api/resourceInventoryManagement/v4";

/// The attributes a resource list may be filtered on. A filter a kind does not have leaves
/// that kind out (`state=available` lists no network element).
pub const FILTERS: [&str; 11] = [
    "resourceSpecification.id",
    "@type",
    "state",
    "category",
    "value",
    "name",
    "resourceStatus",
    "rangeId",
    "batchId",
    "owner",
    "subscriptionId",
];

/// Characters an owner (a reservation's holder: an order, an order item) or a
/// subscription id has at most.
pub const MAX_OWNER_CHARS: usize = 128;

/// How many times a transaction the database spoilt is run again: a concurrent reservation
/// for the same owner took the key first (the next run finds it), or PostgreSQL rolled it
/// back as a deadlock's victim (a reservation waiting for a locked row holds rows its
/// `ORDER BY … LIMIT 1 FOR UPDATE` passed over, so two of them can wait for each other;
/// the survivor has committed or holds no lock the next run needs). Each run waits a
/// little longer first ([`RETRY_PAUSE`] doubled), so the survivor takes the locks it
/// waited for before the next run can take them again.
const MAX_RETRIES: u32 = 5;

/// The pause before the first run again.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

/// The inventory's timings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InventoryConfig {
    /// How long a released MSISDN cools off before it may be reserved again.
    pub quarantine: SignedDuration,
    /// How long a reservation holds when the request does not say.
    pub default_hold: SignedDuration,
    /// The longest a reservation may hold.
    pub max_hold: SignedDuration,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            quarantine: SignedDuration::from_hours(90 * 24),
            default_hold: SignedDuration::from_hours(1),
            max_hold: SignedDuration::from_hours(30 * 24),
        }
    }
}

impl InventoryConfig {
    /// With a quarantine of `days` days.
    pub fn with_quarantine_days(mut self, days: u32) -> InventoryConfig {
        self.quarantine = SignedDuration::from_hours(24 * i64::from(days));
        self
    }

    /// With reservations holding `minutes` minutes unless the request says.
    pub fn with_default_hold_minutes(mut self, minutes: u32) -> InventoryConfig {
        self.default_hold = SignedDuration::from_mins(i64::from(minutes));
        self
    }
}

/// A reservation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserve<'a> {
    pub kind: PoolKind,
    /// Who holds it: an order (or order item) id; one MSISDN and one SIM per owner.
    pub owner: &'a str,
    /// A named MSISDN (a golden number a customer chose) or ICCID (the card in the shop);
    /// otherwise the next free one.
    pub value: Option<&'a str>,
    /// Only from this number range or SIM batch.
    pub group_id: Option<&'a str>,
    /// How long it holds (default [`InventoryConfig::default_hold`]).
    pub hold: Option<SignedDuration>,
}

/// What a reservation request got.
#[derive(Debug, Clone, PartialEq)]
pub enum Reservation {
    /// A new reservation.
    Reserved(Versioned<Value>),
    /// What the owner already holds (a reservation, renewed, or an assignment).
    Repeated(Versioned<Value>),
    /// Nothing free (of that range or batch): an answer, not an error.
    Exhausted,
}

/// A number range to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeLoad {
    pub name: String,
    pub range: NumberRange,
    pub golden: GoldenRules,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Versioned<Value>>,
    /// How many match in all.
    pub total: i64,
}

/// The resource inventory on a store.
#[derive(Debug, Clone)]
pub struct Inventory {
    store: Store,
    config: InventoryConfig,
    root: String,
}

/// Runs `$work` (an expression using the transaction `$tx`) in a transaction of its own
/// and commits; again (a few times, see [`MAX_RETRIES`]) when the database spoilt it, in
/// the work or at the commit (a [transient](StoreError::is_transient) error). A failed attempt is rolled back before the error is answered, so the rows it
/// locked are free at once (a dropped transaction's rollback waits for its connection's
/// next use, and `SKIP LOCKED` would pass over those rows meanwhile). A macro rather than
/// a function taking an async closure, whose future the compiler cannot yet prove `Send`
/// for every borrow.
macro_rules! in_own_tx {
    ($inventory:expr, $tx:ident => $work:expr) => {{
        let mut attempt = 0;
        loop {
            let mut $tx = $inventory.store.begin().await?;
            let outcome = match $work.await {
                // The audit chain is written at commit, where a deadlock can spoil it too.
                Ok(value) => $tx.commit().await.map(|()| value).map_err(InventoryError::from),
                Err(error) => {
                    let _ = $tx.rollback().await;
                    Err(error)
                }
            };
            match outcome {
                Err(InventoryError::Store(spoilt)) if spoilt.is_transient() && attempt < MAX_RETRIES => {
                    tokio::time::sleep(RETRY_PAUSE * 2u32.pow(attempt)).await;
                    attempt += 1
                }
                outcome => break outcome,
            }
        }
    }};
}

fn check_text(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.chars().count() > MAX_OWNER_CHARS || value.chars().any(char::is_control) {
        return Err(InventoryError::invalid(field, format!("must be 1 to {MAX_OWNER_CHARS} printable characters")));
    }
    Ok(())
}

fn illegal(id: &str) -> impl FnOnce(Illegal) -> InventoryError + '_ {
    move |Illegal { state, action }| InventoryError::InvalidTransition { id: id.to_owned(), state, action }
}

/// A pool resource's kind and value from its id; `NotFound` for any other id.
fn pool_id(id: &str) -> Result<(PoolKind, &str)> {
    match parse_id(id) {
        Some((kind, value)) => match kind.pool() {
            Some(pool) => Ok((pool, value)),
            None => {
                Err(InventoryError::conflict("id", format!("{id} is a network element: it has no lifecycle steps")))
            }
        },
        None => Err(InventoryError::NotFound { kind: "Resource", id: id.to_owned() }),
    }
}

/// Checks a named MSISDN or ICCID; its canonical form.
fn check_value(kind: PoolKind, value: &str) -> Result<String> {
    match kind {
        PoolKind::Msisdn => Ok(parse_msisdn("value", value)?.to_string()),
        PoolKind::Sim => {
            check_iccid(0, value).map_err(|error| as_field(error, "value"))?;
            Ok(value.to_owned())
        }
    }
}

/// A file-line error of a single value, as an error naming `field`.
fn as_field(error: InventoryError, field: &str) -> InventoryError {
    match error {
        InventoryError::Line { reason, .. } => InventoryError::invalid(field, reason),
        other => other,
    }
}

fn filter_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Vec<(&'a str, &'a str)>> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (name, value) in pairs {
        if !FILTERS.contains(&name) {
            return Err(InventoryError::invalid(
                name,
                format!("cannot filter on {name:?} (only {})", FILTERS.join(", ")),
            ));
        }
        if seen.iter().any(|(seen, _)| *seen == name) {
            return Err(InventoryError::invalid(name, "given twice"));
        }
        seen.push((name, value));
    }
    Ok(seen)
}

/// One kind's share of a list query; `None` when the filters leave it out.
enum KindQuery {
    Elements(NetworkElementFilter),
    Pool(PoolKind, PoolFilter),
}

fn kind_query(kind: ResourceKind, pairs: &[(&str, &str)], now: Timestamp) -> Result<Option<KindQuery>> {
    let get = |name: &str| pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned());
    let has = |names: &[&str]| names.iter().any(|name| get(name).is_some());
    if let Some(spec) = get("resourceSpecification.id") {
        if ResourceKind::parse(&spec).is_none() {
            return Err(InventoryError::invalid(
                "resourceSpecification.id",
                format!("{spec:?} is not one of MSISDN, SIMCard, NetworkElement"),
            ));
        }
        if spec != kind.spec_id() {
            return Ok(None);
        }
    }
    let state = match get("state") {
        Some(name) => Some(ResourceState::parse(&name).ok_or_else(|| {
            InventoryError::invalid(
                "state",
                format!("{name:?} is not available, reserved, assigned, quarantine or retired"),
            )
        })?),
        None => None,
    };
    if get("@type").is_some_and(|tmf_type| tmf_type != kind.tmf_type()) {
        return Ok(None);
    }
    let value = match (get("value"), get("name")) {
        (Some(value), Some(name)) if value != name => return Ok(None),
        (value, name) => value.or(name),
    };
    Ok(match kind.pool() {
        None => {
            if has(&["state", "value", "rangeId", "batchId", "owner", "subscriptionId"]) {
                return Ok(None);
            }
            Some(KindQuery::Elements(NetworkElementFilter {
                name: get("name"),
                element_type: get("category"),
                status: get("resourceStatus"),
            }))
        }
        Some(pool) => {
            let other_group = if pool == PoolKind::Msisdn { "batchId" } else { "rangeId" };
            if has(&["resourceStatus", other_group]) || state.is_some_and(|state| !state.applies_to(pool)) {
                return Ok(None);
            }
            let golden = match (pool, get("category").as_deref()) {
                (_, None) => None,
                (PoolKind::Msisdn, Some("golden")) => Some(true),
                (PoolKind::Msisdn, Some("standard")) => Some(false),
                _ => return Ok(None),
            };
            let value = match value {
                Some(value) => match check_value(pool, &value) {
                    Ok(value) => Some(value),
                    Err(_) => return Ok(None),
                },
                None => None,
            };
            Some(KindQuery::Pool(
                pool,
                PoolFilter {
                    state: state.map(|state| (state.as_str().to_owned(), now)),
                    group_id: get(if pool == PoolKind::Msisdn { "rangeId" } else { "batchId" }),
                    value,
                    golden,
                    owner: get("owner"),
                    subscription_id: get("subscriptionId"),
                },
            ))
        }
    })
}

impl Inventory {
    /// On `store`, hrefs under [`BASE_PATH`].
    pub fn new(store: Store, config: InventoryConfig) -> Inventory {
        Inventory { store, config, root: BASE_PATH.into() }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The timings.
    pub fn config(&self) -> &InventoryConfig {
        &self.config
    }

    fn doc(&self, row: &Versioned<PoolRow>, now: Timestamp) -> Result<Versioned<Value>> {
        Ok(Versioned { value: pool_doc(&row.value, &self.root, now)?, version: row.version })
    }

    /// Loads a number range with its golden numbers, all available from `now`. An overlap
    /// with a loaded range or number is refused naming `first` (when the range's first
    /// number is taken) or `last`.
    pub async fn load_number_range(&self, actor: &str, load: &RangeLoad, now: Timestamp) -> Result<NumberRangeRow> {
        if load.name.trim().is_empty() || load.name.chars().count() > 100 {
            return Err(InventoryError::invalid("name", "a range's name has 1 to 100 characters"));
        }
        let golden = load.golden.numbers_in(&load.range)?;
        let as_i64 = |number: u64| i64::try_from(number).map_err(|_| InventoryError::invalid("range", "too large"));
        let (first, last) = (as_i64(load.range.first)?, as_i64(load.range.last)?);
        let numbers = golden
            .iter()
            .map(|(number, price)| {
                Ok(NewMsisdn { msisdn: as_i64(*number)?, price: Some((price.amount, price.currency.clone())) })
            })
            .collect::<Result<Vec<_>>>()?;
        let row = NumberRangeRow {
            id: new_entity_id()?,
            name: load.name.clone(),
            first,
            last,
            golden_count: i64::try_from(numbers.len()).unwrap_or(i64::MAX),
            rules: load.golden.to_json(),
            created_at: now,
        };
        let mut tx = self.store.begin().await?;
        if let Some(overlap) = tx.number_range_overlap(first, last).await? {
            let (what, starts) = match overlap {
                Overlap::Range { id, name, first: from, last: to } => {
                    (format!("range {id} ({name}, {from}..{to})"), (from..=to).contains(&first))
                }
                Overlap::Number(number) => (format!("number {number}, loaded on its own"), number == first),
            };
            let field = if starts { "first" } else { "last" };
            return Err(InventoryError::conflict(field, format!("{first}..{last} overlaps {what}")));
        }
        tx.insert_number_range(&row, &numbers, now).await.map_err(|e| InventoryError::from_store("NumberRange", e))?;
        let after = range_json(&row);
        audit(&mut tx, actor, "load", "NumberRange", &row.id, None, Some(&after), now).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Loads a SIM vendor file (its text; the format is in the crate's README). Keys (KI,
    /// OPC) are sealed with `sealer`; a file with keys and no sealer is refused, so a key
    /// is never stored in clear. An ICCID or IMSI already in the inventory is refused
    /// naming its line.
    pub async fn load_sim_file(
        &self,
        actor: &str,
        text: &str,
        plmn: Option<&str>,
        sealer: Option<&KeySealer>,
        now: Timestamp,
    ) -> Result<SimBatchRow> {
        let file = parse_sim_file(text, plmn)?;
        let sealer = match (file.has_keys(), sealer) {
            (true, None) => {
                return Err(InventoryError::Key {
                    reason: "the file carries keys (KI, OPC): give the key that seals them (--sim-key-file)".into(),
                })
            }
            (_, sealer) => sealer,
        };
        let mut cards = Vec::with_capacity(file.cards.len());
        for card in &file.cards {
            let seal = |field: &str, key: &Option<crate::SimKey>| match (key, sealer) {
                (Some(key), Some(sealer)) => sealer.seal(&card.iccid, field, key).map(Some),
                _ => Ok(None),
            };
            cards.push(NewSim {
                iccid: card.iccid.clone(),
                imsi: card.imsi.clone(),
                ki_sealed: seal("ki", &card.ki)?,
                opc_sealed: seal("opc", &card.opc)?,
            });
        }
        let mut header = file.header_json();
        if let (Value::Object(object), Some(sealer)) = (&mut header, sealer.filter(|_| file.has_keys())) {
            object.insert("sealedWith".into(), json!(sealer.id()));
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        let batch = SimBatchRow {
            id: new_entity_id()?,
            name: file.batch.clone(),
            cards: i64::try_from(cards.len()).unwrap_or(i64::MAX),
            header,
            file_sha256: crate::secret::hex(digest.as_ref()),
            created_at: now,
        };
        let mut tx = self.store.begin().await?;
        let taken = tx.insert_sim_batch(&batch, &cards, now).await.map_err(|error| match error {
            StoreError::Conflict { key, .. } => {
                InventoryError::conflict("Batch", format!("batch {key} is already loaded"))
            }
            other => InventoryError::Store(other),
        })?;
        if let Some(iccid) = taken.first() {
            let card = file.cards.iter().find(|card| &card.iccid == iccid);
            let (line, imsi) = card.map(|card| (card.line, card.imsi.as_str())).unwrap_or((0, ""));
            return Err(InventoryError::line(
                line,
                "ICCID",
                format!(
                    "ICCID {iccid} or IMSI {imsi} is already in the inventory ({} cards of the file are)",
                    taken.len()
                ),
            ));
        }
        let after = json!({"id": batch.id, "name": batch.name, "cards": batch.cards, "header": batch.header,
            "fileSha256": batch.file_sha256});
        audit(&mut tx, actor, "load", "SimBatch", &batch.id, None, Some(&after), now).await?;
        tx.commit().await?;
        Ok(batch)
    }

    /// Creates a resource from a client's document (TMF639 `Resource_Create`): a network
    /// element, a single MSISDN outside any range (`value`, optional golden `price`), or a
    /// single SIM card without keys (`serialNumber` the ICCID, `imsi`). Ranges and vendor
    /// files are loaded with [`load_number_range`](Inventory::load_number_range) and
    /// [`load_sim_file`](Inventory::load_sim_file).
    pub async fn create(&self, actor: &str, doc: Value, now: Timestamp) -> Result<Versioned<Value>> {
        let Value::Object(mut object) = doc else {
            return Err(InventoryError::invalid("body", "must be a JSON object"));
        };
        for field in ["id", "href"] {
            if object.contains_key(field) {
                return Err(InventoryError::invalid(field, "is assigned by the server"));
            }
        }
        let kind = match object.get("resourceSpecification").and_then(|spec| spec.get("id")) {
            Some(Value::String(spec)) => ResourceKind::parse(spec).ok_or_else(|| {
                InventoryError::invalid("resourceSpecification.id", "must be MSISDN, SIMCard or NetworkElement")
            })?,
            _ => {
                return Err(InventoryError::invalid(
                    "resourceSpecification.id",
                    "is required: MSISDN, SIMCard or NetworkElement",
                ))
            }
        };
        match kind {
            ResourceKind::NetworkElement => {
                let valid = validate_element(&Value::Object(object.clone()))?;
                let id = kind.id(&new_entity_id()?);
                object.insert("id".into(), json!(id));
                object.insert("href".into(), json!(format!("{}/resource/{id}", self.root)));
                object.insert("@type".into(), json!(kind.tmf_type()));
                object.insert("@baseType".into(), json!("Resource"));
                object.insert("resourceSpecification".into(), kind.spec_ref());
                object.insert("resourceStatus".into(), json!(valid.status));
                let doc = Value::Object(object);
                let row = NetworkElementRow {
                    id: id.clone(),
                    name: valid.name,
                    element_type: valid.element_type,
                    address: valid.address,
                    status: valid.status,
                    doc: doc.clone(),
                };
                let mut tx = self.store.begin().await?;
                tx.insert_network_element(&row, now).await.map_err(|e| InventoryError::from_store("Resource", e))?;
                audit(&mut tx, actor, "create", "NetworkElement", &id, None, Some(&doc), now).await?;
                tx.commit().await?;
                Ok(Versioned { value: doc, version: Version::FIRST })
            }
            ResourceKind::Msisdn => {
                only_fields(&object, kind, &["value", "name", "price"])?;
                let value = single_value(&object, "value")?;
                let number = i64::try_from(parse_msisdn("value", &value)?)
                    .map_err(|_| InventoryError::invalid("value", "too large"))?;
                let price = object.get("price").map(|price| Money::from_json("price", price)).transpose()?;
                let new = NewMsisdn { msisdn: number, price: price.map(|price| (price.amount, price.currency)) };
                let mut tx = self.store.begin().await?;
                let row = tx.insert_msisdn(&new, now).await.map_err(|error| match error {
                    StoreError::Conflict { key, .. } => {
                        InventoryError::conflict("value", format!("{key} is already in the inventory"))
                    }
                    other => InventoryError::Store(other),
                })?;
                let doc = self.doc(&row, now)?;
                audit(&mut tx, actor, "create", "MSISDN", &kind.id(&row.value.value), None, Some(&doc.value), now)
                    .await?;
                tx.commit().await?;
                Ok(doc)
            }
            ResourceKind::Sim => {
                only_fields(&object, kind, &["serialNumber", "name", "imsi"])?;
                let iccid = single_value(&object, "serialNumber")?;
                check_iccid(0, &iccid).map_err(|error| as_field(error, "serialNumber"))?;
                let Some(Value::String(imsi)) = object.get("imsi") else {
                    return Err(InventoryError::invalid("imsi", "is required"));
                };
                check_imsi(0, imsi, None).map_err(|error| as_field(error, "imsi"))?;
                let card = NewSim { iccid: iccid.clone(), imsi: imsi.clone(), ki_sealed: None, opc_sealed: None };
                let mut tx = self.store.begin().await?;
                if !tx.insert_sims(None, std::slice::from_ref(&card), now).await?.is_empty() {
                    return Err(InventoryError::conflict(
                        "serialNumber",
                        format!("ICCID {iccid} or IMSI {imsi} is already in the inventory"),
                    ));
                }
                let row = tx.pool_row(PoolKind::Sim, &iccid).await?;
                let row = row.ok_or_else(|| InventoryError::NotFound { kind: "SIMCard", id: iccid.clone() })?;
                let doc = self.doc(&row, now)?;
                audit(&mut tx, actor, "create", "SIMCard", &kind.id(&iccid), None, Some(&doc.value), now).await?;
                tx.commit().await?;
                Ok(doc)
            }
        }
    }

    /// A resource as it stands at `now`.
    pub async fn get(&self, id: &str, now: Timestamp) -> Result<Versioned<Value>> {
        let not_found = || InventoryError::NotFound { kind: "Resource", id: id.to_owned() };
        let (kind, value) = parse_id(id).ok_or_else(not_found)?;
        match kind.pool() {
            None => {
                let found = self.store.network_element(id).await?.ok_or_else(not_found)?;
                Ok(Versioned { value: found.value.doc, version: found.version })
            }
            Some(pool) => {
                let found = self.store.pool_row(pool, value).await?.ok_or_else(not_found)?;
                self.doc(&found, now)
            }
        }
    }

    /// Resources matching the (attribute, value) filters ([`FILTERS`]): network elements,
    /// then MSISDNs, then SIM cards, in creation, MSISDN and ICCID order.
    pub async fn list<'a>(
        &self,
        filters: impl IntoIterator<Item = (&'a str, &'a str)>,
        offset: u64,
        limit: u32,
        now: Timestamp,
    ) -> Result<Page> {
        let pairs = filter_pairs(filters)?;
        let mut queries = Vec::new();
        for kind in ResourceKind::ALL {
            if let Some(query) = kind_query(kind, &pairs, now)? {
                queries.push(query);
            }
        }
        let mut page = Page { items: Vec::new(), total: 0 };
        let mut skip = offset;
        for query in queries {
            let want = u32::try_from(limit as usize - page.items.len().min(limit as usize)).unwrap_or(0);
            let total = match query {
                KindQuery::Elements(filter) => {
                    let found = self.store.network_element_list(&filter, skip, want).await?;
                    page.items.extend(
                        found.items.into_iter().map(|row| Versioned { value: row.value.doc, version: row.version }),
                    );
                    found.total
                }
                KindQuery::Pool(pool, filter) => {
                    let found = self.store.pool_list(pool, &filter, skip, want).await?;
                    for row in &found.items {
                        page.items.push(self.doc(row, now)?);
                    }
                    found.total
                }
            };
            page.total += total;
            skip = skip.saturating_sub(u64::try_from(total).unwrap_or(0));
        }
        Ok(page)
    }

    /// Applies a JSON merge patch to a resource still at `expected`: a network element's
    /// fields; an MSISDN's golden `price` (`null`: no longer golden) while it is available.
    /// A SIM card has nothing to patch; lifecycle steps are [`reserve`](Inventory::reserve),
    /// [`assign`](Inventory::assign), [`release`](Inventory::release) and
    /// [`unassign`](Inventory::unassign).
    pub async fn patch(
        &self,
        actor: &str,
        id: &str,
        patch: &Value,
        expected: Version,
        now: Timestamp,
    ) -> Result<Versioned<Value>> {
        let Value::Object(members) = patch else {
            return Err(InventoryError::invalid("body", "a merge patch of a resource is a JSON object"));
        };
        let current = self.get(id, now).await?;
        for (field, value) in members {
            let fixed = matches!(field.as_str(), "id" | "href" | "@type" | "@baseType" | "resourceSpecification");
            if fixed && current.value.get(field) != Some(value) {
                return Err(InventoryError::invalid(field.clone(), "cannot change"));
            }
        }
        let (kind, value) =
            parse_id(id).ok_or_else(|| InventoryError::NotFound { kind: "Resource", id: id.to_owned() })?;
        match kind {
            ResourceKind::NetworkElement => self.patch_element(actor, id, members, expected, now).await,
            ResourceKind::Msisdn => {
                let changing = |field: &str| members.get(field).is_some_and(|v| current.value.get(field) != Some(v));
                if let Some(field) = members.keys().find(|field| field.as_str() != "price" && changing(field)) {
                    return Err(not_patchable(field));
                }
                let price = match members.get("price") {
                    None => return self.unchanged(id, expected, current),
                    Some(Value::Null) => None,
                    Some(price) => Some(Money::from_json("price", price)?),
                };
                in_own_tx!(self, tx => self.set_price_in(&mut tx, actor, id, value, price.as_ref(), expected, now))
            }
            ResourceKind::Sim => {
                match members.keys().find(|field| current.value.get(field.as_str()) != members.get(field.as_str())) {
                    Some(field) => Err(not_patchable(field)),
                    None => self.unchanged(id, expected, current),
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments, reason = "a patch's parts")]
    async fn set_price_in(
        &self,
        tx: &mut Tx,
        actor: &str,
        id: &str,
        msisdn: &str,
        price: Option<&Money>,
        expected: Version,
        now: Timestamp,
    ) -> Result<Versioned<Value>> {
        let row = self.locked(tx, PoolKind::Msisdn, msisdn, expected).await?;
        let state = state_now(&row.value, now)?;
        if state != ResourceState::Available {
            return Err(InventoryError::conflict(
                "state",
                format!("{id} is {state}: its price changes while it is available"),
            ));
        }
        let before = self.doc(&row, now)?;
        let price_arg = price.map(|price| (price.amount, price.currency.as_str()));
        let version = tx
            .set_msisdn_price(msisdn, expected, price_arg, now)
            .await
            .map_err(|e| InventoryError::from_store("MSISDN", e))?;
        let after = PoolRow { price: price.map(|p| (p.amount, p.currency.clone())), ..row.value.clone() };
        let after = self.doc(&Versioned { value: after, version }, now)?;
        audit(tx, actor, "update", "MSISDN", id, Some(&before.value), Some(&after.value), now).await?;
        Ok(after)
    }

    fn unchanged(&self, id: &str, expected: Version, current: Versioned<Value>) -> Result<Versioned<Value>> {
        if current.version != expected {
            return Err(InventoryError::StaleVersion {
                kind: "Resource",
                id: id.to_owned(),
                expected: expected.get(),
                found: current.version.get(),
            });
        }
        Ok(current)
    }

    async fn patch_element(
        &self,
        actor: &str,
        id: &str,
        members: &Map<String, Value>,
        expected: Version,
        now: Timestamp,
    ) -> Result<Versioned<Value>> {
        let mut tx = self.store.begin().await?;
        let found = tx.network_element(id).await?;
        let current = found.ok_or_else(|| InventoryError::NotFound { kind: "Resource", id: id.to_owned() })?;
        let before = current.value.doc.clone();
        // An element's document is flat but for the fixed `resourceSpecification`, so
        // setting and removing top-level members is the whole of RFC 7386 here.
        let mut object = before.as_object().cloned().unwrap_or_default();
        for (field, value) in members {
            if value.is_null() {
                object.remove(field);
            } else {
                object.insert(field.clone(), value.clone());
            }
        }
        let doc = Value::Object(object);
        let valid = validate_element(&doc)?;
        let row = NetworkElementRow {
            id: id.to_owned(),
            name: valid.name,
            element_type: valid.element_type,
            address: valid.address,
            status: valid.status,
            doc: doc.clone(),
        };
        let version = tx
            .update_network_element(&row, expected, now)
            .await
            .map_err(|e| InventoryError::from_store("Resource", e))?;
        audit(&mut tx, actor, "update", "NetworkElement", id, Some(&before), Some(&doc), now).await?;
        tx.commit().await?;
        Ok(Versioned { value: doc, version })
    }

    /// Deletes a network element (at `expected`, if given). MSISDNs and SIM cards are never
    /// deleted: their history stays (`Conflict` naming `id`).
    pub async fn delete(&self, actor: &str, id: &str, expected: Option<Version>, now: Timestamp) -> Result<()> {
        let (kind, _) = parse_id(id).ok_or_else(|| InventoryError::NotFound { kind: "Resource", id: id.to_owned() })?;
        if kind != ResourceKind::NetworkElement {
            return Err(InventoryError::conflict("id", format!("{id}: MSISDNs and SIM cards are never deleted")));
        }
        let mut tx = self.store.begin().await?;
        let found = tx.network_element(id).await?;
        let current = found.ok_or_else(|| InventoryError::NotFound { kind: "Resource", id: id.to_owned() })?;
        tx.delete_network_element(id, expected.unwrap_or(current.version))
            .await
            .map_err(|e| InventoryError::from_store("Resource", e))?;
        audit(&mut tx, actor, "delete", "NetworkElement", id, Some(&current.value.doc), None, now).await?;
        tx.commit().await?;
        Ok(())
    }

    fn hold(&self, hold: Option<SignedDuration>, now: Timestamp) -> Result<Timestamp> {
        let hold = hold.unwrap_or(self.config.default_hold);
        if hold <= SignedDuration::ZERO || hold > self.config.max_hold {
            return Err(InventoryError::invalid(
                "holdSeconds",
                format!("a reservation holds 1 s to {} s", self.config.max_hold.as_secs()),
            ));
        }
        now.checked_add(hold).map_err(|_| InventoryError::invalid("holdSeconds", "too far in the future"))
    }

    /// Reserves an MSISDN or SIM card for `request.owner` (see [`Reserve`]) in a
    /// transaction of its own.
    pub async fn reserve(&self, actor: &str, request: &Reserve<'_>, now: Timestamp) -> Result<Reservation> {
        in_own_tx!(self, tx => self.reserve_in(&mut tx, actor, request, now))
    }

    /// [`reserve`](Inventory::reserve) inside the caller's transaction. On PostgreSQL a
    /// concurrent reservation for the same owner, or a deadlock with another reservation,
    /// spoils the transaction (an [`InventoryError::Store`] whose error
    /// [`is_transient`](StoreError::is_transient)): run it again.
    pub async fn reserve_in(
        &self,
        tx: &mut Tx,
        actor: &str,
        request: &Reserve<'_>,
        now: Timestamp,
    ) -> Result<Reservation> {
        let Reserve { kind, owner, value, group_id, hold } = *request;
        check_text("owner", owner)?;
        let until = self.hold(hold, now)?;
        let value = value.map(|value| check_value(kind, value)).transpose()?;
        if let Some(held) = tx.pool_row_of_owner(kind, owner).await? {
            let held_id = ResourceKind::from(kind).id(&held.value.value);
            if value.as_ref().is_some_and(|value| *value != held.value.value) {
                return Err(InventoryError::conflict("owner", format!("{owner} already holds {held_id}")));
            }
            if stored_state(&held.value)? != ResourceState::Reserved {
                return Ok(Reservation::Repeated(self.doc(&held, now)?));
            }
            let change =
                PoolChange { state: "reserved", free_at: Some(until), owner: Some(owner), subscription_id: None };
            let renewed = self.change(tx, actor, "reserve", &held, change, now).await?;
            return Ok(Reservation::Repeated(renewed));
        }
        if let Some(group) = group_id {
            if !tx.pool_group_exists(kind, group).await? {
                let field = if kind == PoolKind::Msisdn { "rangeId" } else { "batchId" };
                return Err(InventoryError::invalid(field, format!("no {field} {group}")));
            }
        }
        match value {
            Some(value) => {
                let row = tx.pool_row(kind, &value).await?;
                let id = ResourceKind::from(kind).id(&value);
                let row = row.ok_or_else(|| InventoryError::NotFound { kind: kind.entity(), id: id.clone() })?;
                next(kind, state_now(&row.value, now)?, Action::Reserve).map_err(illegal(&id))?;
                let change =
                    PoolChange { state: "reserved", free_at: Some(until), owner: Some(owner), subscription_id: None };
                Ok(Reservation::Reserved(self.change(tx, actor, "reserve", &row, change, now).await?))
            }
            None => match tx.reserve_next(kind, owner, until, group_id, now).await? {
                None => Ok(Reservation::Exhausted),
                Some(row) => {
                    let doc = self.doc(&row, now)?;
                    let id = ResourceKind::from(kind).id(&row.value.value);
                    audit(tx, actor, "reserve", entity_type(kind), &id, None, Some(&doc.value), now).await?;
                    Ok(Reservation::Reserved(doc))
                }
            },
        }
    }

    /// Gives `owner`'s reservation of resource `id` to `subscription_id`, in a transaction
    /// of its own. A reservation past its end is still the owner's while nobody else took
    /// it; asking again with the same owner and subscription changes nothing.
    pub async fn assign(
        &self,
        actor: &str,
        id: &str,
        owner: &str,
        subscription_id: &str,
        now: Timestamp,
    ) -> Result<Versioned<Value>> {
        in_own_tx!(self, tx => self.assign_in(&mut tx, actor, id, owner, subscription_id, now))
    }

    /// [`assign`](Inventory::assign) inside the caller's transaction.
    pub async fn assign_in(
        &self,
        tx: &mut Tx,
        actor: &str,
        id: &str,
        owner: &str,
        subscription_id: &str,
        now: Timestamp,
    ) -> Result<Versioned<Value>> {
        let (kind, row, stored) =
            self.step_row(tx, id, &[("owner", owner), ("subscriptionId", subscription_id)]).await?;
        let row_owner = row.value.owner.as_deref();
        if stored == ResourceState::Assigned
            && row_owner == Some(owner)
            && row.value.subscription_id.as_deref() == Some(subscription_id)
        {
            return self.doc(&row, now);
        }
        if stored == ResourceState::Reserved && row_owner == Some(owner) {
            next(kind, stored, Action::Assign).map_err(illegal(id))?;
            let change = PoolChange {
                state: "assigned",
                free_at: None,
                owner: Some(owner),
                subscription_id: Some(subscription_id),
            };
            return self.change(tx, actor, "assign", &row, change, now).await;
        }
        Err(self.refusal(&row, id, Action::Assign, now)?)
    }

    /// Gives `owner`'s reservation of resource `id` back, in a transaction of its own.
    pub async fn release(&self, actor: &str, id: &str, owner: &str, now: Timestamp) -> Result<Versioned<Value>> {
        in_own_tx!(self, tx => self.release_in(&mut tx, actor, id, owner, now))
    }

    /// [`release`](Inventory::release) inside the caller's transaction.
    pub async fn release_in(
        &self,
        tx: &mut Tx,
        actor: &str,
        id: &str,
        owner: &str,
        now: Timestamp,
    ) -> Result<Versioned<Value>> {
        let (kind, row, stored) = self.step_row(tx, id, &[("owner", owner)]).await?;
        if stored == ResourceState::Reserved && row.value.owner.as_deref() == Some(owner) {
            let to = next(kind, stored, Action::Release).map_err(illegal(id))?;
            let change = PoolChange { state: to.as_str(), free_at: Some(now), owner: None, subscription_id: None };
            return self.change(tx, actor, "release", &row, change, now).await;
        }
        Err(self.refusal(&row, id, Action::Release, now)?)
    }

    /// Takes resource `id` from `subscription_id` (termination, number change, SIM swap),
    /// in a transaction of its own: an MSISDN goes into quarantine for
    /// [`InventoryConfig::quarantine`], a SIM card is retired.
    pub async fn unassign(
        &self,
        actor: &str,
        id: &str,
        subscription_id: &str,
        now: Timestamp,
    ) -> Result<Versioned<Value>> {
        in_own_tx!(self, tx => self.unassign_in(&mut tx, actor, id, subscription_id, now))
    }

    /// [`unassign`](Inventory::unassign) inside the caller's transaction.
    pub async fn unassign_in(
        &self,
        tx: &mut Tx,
        actor: &str,
        id: &str,
        subscription_id: &str,
        now: Timestamp,
    ) -> Result<Versioned<Value>> {
        let (kind, row, stored) = self.step_row(tx, id, &[("subscriptionId", subscription_id)]).await?;
        if stored == ResourceState::Assigned {
            if row.value.subscription_id.as_deref() != Some(subscription_id) {
                return Err(InventoryError::conflict(
                    "subscriptionId",
                    format!("{id} is assigned to another subscription"),
                ));
            }
            let to = next(kind, stored, Action::Unassign).map_err(illegal(id))?;
            let free_at = match to {
                ResourceState::Quarantine => Some(
                    now.checked_add(self.config.quarantine)
                        .map_err(|_| InventoryError::invalid("quarantine", "too far in the future"))?,
                ),
                _ => None,
            };
            let change = PoolChange { state: to.as_str(), free_at, owner: None, subscription_id: None };
            return self.change(tx, actor, "unassign", &row, change, now).await;
        }
        Err(self.refusal(&row, id, Action::Unassign, now)?)
    }

    /// What `owner` holds of `kind` now (reserved or assigned), if anything.
    pub async fn held_by(&self, kind: PoolKind, owner: &str, now: Timestamp) -> Result<Option<Versioned<Value>>> {
        let Some(row) = self.store.pool_row_of_owner(kind, owner).await? else { return Ok(None) };
        match state_now(&row.value, now)? {
            ResourceState::Reserved | ResourceState::Assigned => Ok(Some(self.doc(&row, now)?)),
            _ => Ok(None),
        }
    }

    /// A SIM card's keys, opened with `sealer` (for the activation adapter); `None` if
    /// there is no such card. Never log what this returns: the keys redact themselves,
    /// [`crate::SimKey::expose`] is the only way to them.
    pub async fn sim_keys(&self, iccid: &str, sealer: &KeySealer) -> Result<Option<SimKeys>> {
        let Some(sealed) = self.store.sim_sealed_keys(iccid).await? else { return Ok(None) };
        let open =
            |field: &str, value: &Option<String>| value.as_deref().map(|v| sealer.open(iccid, field, v)).transpose();
        Ok(Some(SimKeys { ki: open("ki", &sealed.ki)?, opc: open("opc", &sealed.opc)? }))
    }

    /// What a lifecycle step on `id` works on, after checking the step's `texts` (field,
    /// value): the kind, the row (locked until the transaction ends) and its stored state.
    async fn step_row(
        &self,
        tx: &mut Tx,
        id: &str,
        texts: &[(&str, &str)],
    ) -> Result<(PoolKind, Versioned<PoolRow>, ResourceState)> {
        let (kind, value) = pool_id(id)?;
        for (field, text) in texts {
            check_text(field, text)?;
        }
        let row = self.row(tx, kind, value, id).await?;
        let stored = stored_state(&row.value)?;
        Ok((kind, row, stored))
    }

    async fn row(&self, tx: &mut Tx, kind: PoolKind, value: &str, id: &str) -> Result<Versioned<PoolRow>> {
        let row = tx.pool_row(kind, value).await?;
        row.ok_or_else(|| InventoryError::NotFound { kind: kind.entity(), id: id.to_owned() })
    }

    async fn locked(&self, tx: &mut Tx, kind: PoolKind, value: &str, expected: Version) -> Result<Versioned<PoolRow>> {
        let id = ResourceKind::from(kind).id(value);
        let row = self.row(tx, kind, value, &id).await?;
        if row.version != expected {
            return Err(InventoryError::StaleVersion {
                kind: kind.entity(),
                id,
                expected: expected.get(),
                found: row.version.get(),
            });
        }
        Ok(row)
    }

    /// Why `action` is refused on `row`: held by another owner (naming `owner`), or its
    /// state does not allow it (naming the state).
    fn refusal(&self, row: &Versioned<PoolRow>, id: &str, action: Action, now: Timestamp) -> Result<InventoryError> {
        let state = state_now(&row.value, now)?;
        if state == ResourceState::Reserved && matches!(action, Action::Assign | Action::Release) {
            return Ok(InventoryError::conflict("owner", format!("{id} is reserved by another owner")));
        }
        if state == ResourceState::Assigned && action == Action::Assign {
            return Ok(InventoryError::conflict("subscriptionId", format!("{id} is assigned to another subscription")));
        }
        Ok(InventoryError::InvalidTransition { id: id.to_owned(), state, action })
    }

    /// Writes `change` to `row` (at the version read) and audits it as `action`.
    async fn change(
        &self,
        tx: &mut Tx,
        actor: &str,
        action: &str,
        row: &Versioned<PoolRow>,
        change: PoolChange<'_>,
        now: Timestamp,
    ) -> Result<Versioned<Value>> {
        let kind = row.value.kind;
        let before = self.doc(row, now)?;
        let version = tx
            .change_pool_row(kind, &row.value.value, row.version, change, now)
            .await
            .map_err(|e| InventoryError::from_store(kind.entity(), e))?;
        let after = PoolRow {
            state: change.state.to_owned(),
            free_at: change.free_at,
            owner: change.owner.map(str::to_owned),
            subscription_id: change.subscription_id.map(str::to_owned),
            ..row.value.clone()
        };
        let after = self.doc(&Versioned { value: after, version }, now)?;
        let id = ResourceKind::from(kind).id(&row.value.value);
        audit(tx, actor, action, entity_type(kind), &id, Some(&before.value), Some(&after.value), now).await?;
        Ok(after)
    }
}

fn entity_type(kind: PoolKind) -> &'static str {
    ResourceKind::from(kind).spec_id()
}

fn not_patchable(field: &str) -> InventoryError {
    let reason = if field == "state" {
        "changes through reserve, assign, release and unassign (POST …/reservation, …/resource/{id}/assign, …)"
    } else {
        "cannot change"
    };
    InventoryError::invalid(field, reason)
}

/// Only `allowed` fields (and the TMF identity members) in a single MSISDN's or SIM's
/// creation document; `@type` must be the kind's.
fn only_fields(object: &Map<String, Value>, kind: ResourceKind, allowed: &[&str]) -> Result<()> {
    for field in object.keys() {
        let known = matches!(field.as_str(), "@type" | "@baseType" | "@schemaLocation" | "resourceSpecification");
        if !known && !allowed.contains(&field.as_str()) {
            return Err(InventoryError::invalid(field.clone(), format!("is not supported for {}", kind.spec_id())));
        }
    }
    if object.get("@type").is_some_and(|value| value != kind.tmf_type()) {
        return Err(InventoryError::invalid("@type", format!("{} is a {}", kind.spec_id(), kind.tmf_type())));
    }
    Ok(())
}

/// `field` (or `name`, which must then agree) as a string.
fn single_value(object: &Map<String, Value>, field: &str) -> Result<String> {
    let value = match (object.get(field), object.get("name")) {
        (Some(Value::String(value)), None) | (None, Some(Value::String(value))) => value,
        (Some(Value::String(value)), Some(Value::String(name))) if value == name => value,
        (Some(Value::String(_)), Some(_)) => {
            return Err(InventoryError::invalid("name", format!("must equal {field}")))
        }
        _ => return Err(InventoryError::invalid(field, "is required")),
    };
    Ok(value.strip_prefix('+').unwrap_or(value).to_owned())
}

fn range_json(row: &NumberRangeRow) -> Value {
    json!({
        "id": row.id,
        "name": row.name,
        "first": row.first.to_string(),
        "last": row.last.to_string(),
        "numbers": row.last - row.first + 1,
        "goldenNumbers": row.golden_count,
        "goldenRules": row.rules,
        "createdAt": row.created_at.to_string(),
    })
}

#[allow(clippy::too_many_arguments, reason = "one audit record's fields")]
async fn audit(
    tx: &mut Tx,
    actor: &str,
    action: &str,
    entity_type: &str,
    id: &str,
    before: Option<&Value>,
    after: Option<&Value>,
    now: Timestamp,
) -> Result<()> {
    let record = AuditRecord { actor, action, entity_type, entity_id: id, before, after };
    tx.audit(record, now).await?;
    Ok(())
}
