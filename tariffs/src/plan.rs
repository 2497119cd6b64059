//! The compiled, immutable form of a plan: everything resolved to indices, prices in
//! exact decimals, lookups precomputed. Built by [`compile`](crate::compile), read by
//! [`rate`](crate::rate), saved and loaded with rkyv by [`store`](crate::store).

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::calendar::Calendar;
use crate::money::Rounding;
use crate::prefix::PrefixTrie;
use crate::rate::{MAX_EVENT_BYTES, MAX_EVENT_EVENTS, MAX_EVENT_SECONDS, MAX_EVENT_UNITS};

/// rkyv layout of a [`Decimal`]: its 16-byte serialized form. Use as
/// `#[rkyv(with = RkyvDecimal)]` on a `Decimal` field.
#[derive(Debug, Archive, RkyvSerialize, RkyvDeserialize)]
#[rkyv(remote = Decimal)]
pub struct RkyvDecimal {
    #[rkyv(getter = Decimal::serialize)]
    bytes: [u8; 16],
}

impl From<RkyvDecimal> for Decimal {
    fn from(RkyvDecimal { bytes }: RkyvDecimal) -> Self {
        Decimal::deserialize(bytes)
    }
}

/// Index of a service in [`CompiledPlan::services`].
pub type ServiceId = u16;
/// Index of a destination group in [`CompiledPlan::destinations`].
pub type DestinationId = u32;
/// Index of a band in [`CompiledPlan::bands`].
pub type BandId = u16;
/// Index of an allowance in [`CompiledPlan::allowances`].
pub type AllowanceId = u16;

/// What a service's usage is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Archive, RkyvSerialize, RkyvDeserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Seconds,
    Bytes,
    Events,
    Units,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Seconds => "seconds",
            Unit::Bytes => "bytes",
            Unit::Events => "events",
            Unit::Units => "units",
        }
    }

    /// The most of this unit one usage event may report: [`MAX_EVENT_SECONDS`],
    /// [`MAX_EVENT_BYTES`], [`MAX_EVENT_EVENTS`] or [`MAX_EVENT_UNITS`]. Rating refuses
    /// more as `usage_too_large`; a rate's first interval and increment are held to it.
    pub const fn max_per_event(self) -> u64 {
        match self {
            Unit::Seconds => MAX_EVENT_SECONDS,
            Unit::Bytes => MAX_EVENT_BYTES,
            Unit::Events => MAX_EVENT_EVENTS,
            Unit::Units => MAX_EVENT_UNITS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Service {
    pub name: String,
    pub unit: Unit,
    pub rating_groups: Vec<u32>,
    pub service_ids: Vec<u32>,
}

/// A price step: from `from_units` into the usage on, `price` per `per` units.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Step {
    pub from_units: u64,
    #[rkyv(with = RkyvDecimal)]
    pub price: Decimal,
    /// `price / per` when that division is exact, so the hot path multiplies only.
    #[rkyv(with = rkyv::with::Map<RkyvDecimal>)]
    pub(crate) unit_price: Option<Decimal>,
}

impl Step {
    /// The exact cost of `units` at this step's price.
    pub(crate) fn cost(&self, units: u64, per: u64) -> Option<Decimal> {
        match self.unit_price {
            Some(unit_price) => unit_price.checked_mul(Decimal::from(units)),
            None => self.price.checked_mul(Decimal::from(units))?.checked_div(Decimal::from(per)),
        }
    }
}

/// One rate: how usage of a service to a destination in a band is priced.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Rate {
    /// 1-based line of the `[[rates]]` entry in the plan file, for audit and errors.
    pub source_line: u32,
    #[rkyv(with = RkyvDecimal)]
    pub connect_fee: Decimal,
    pub first_interval_units: u64,
    pub increment: u64,
    pub per: u64,
    /// Sorted by `from_units`; the first starts at 0.
    pub steps: Vec<Step>,
    #[rkyv(with = RkyvDecimal)]
    pub minimum_charge: Decimal,
    #[rkyv(with = rkyv::with::Map<RkyvDecimal>)]
    pub maximum_charge: Option<Decimal>,
}

impl Rate {
    /// Units charged for `units` of usage: the first interval, then whole increments;
    /// `None` when that count does not fit a `u64` (or the increment is zero), which a
    /// compiled plan rules out for usage within [`Unit::max_per_event`].
    pub fn charged_units(&self, units: u64) -> Option<u64> {
        if units == 0 {
            Some(0)
        } else if units <= self.first_interval_units {
            Some(self.first_interval_units)
        } else {
            let rest = units - self.first_interval_units;
            let increments = if self.increment == 0 { return None } else { rest.div_ceil(self.increment) };
            self.first_interval_units.checked_add(increments.checked_mul(self.increment)?)
        }
    }

    /// The step in force at `offset` units into the usage, and where the next one starts.
    pub(crate) fn step_at(&self, offset: u64) -> (usize, u64) {
        let index = self.steps.partition_point(|step| step.from_units <= offset).saturating_sub(1);
        let next = self.steps.get(index + 1).map_or(u64::MAX, |step| step.from_units);
        (index, next)
    }
}

/// How often an allowance refills, or a recurring charge recurs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Archive, RkyvSerialize, RkyvDeserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
    Yearly,
    /// Granted once, never refilled.
    Once,
}

/// A bundle of units the plan grants, and what it may pay for.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Allowance {
    pub name: String,
    pub service: ServiceId,
    /// In the service's unit (minutes are stored as seconds, GB as bytes).
    pub units: u64,
    /// Empty: any destination.
    pub destinations: Vec<DestinationId>,
    /// Empty: any rating group.
    pub rating_groups: Vec<u32>,
    /// Empty: any band (matched against the band at the start of the usage).
    pub bands: Vec<BandId>,
    /// Lower is consumed first.
    pub priority: u32,
    pub period: Period,
}

impl Allowance {
    /// Whether this allowance may pay for usage with these keys.
    pub fn applies(
        &self,
        service: ServiceId,
        destination: Option<DestinationId>,
        rating_group: Option<u32>,
        band: BandId,
    ) -> bool {
        self.service == service
            && (self.destinations.is_empty() || destination.is_some_and(|d| self.destinations.contains(&d)))
            && (self.rating_groups.is_empty() || rating_group.is_some_and(|rg| self.rating_groups.contains(&rg)))
            && (self.bands.is_empty() || self.bands.contains(&band))
    }
}

/// How a recurring charge is prorated for a partial period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Archive, RkyvSerialize, RkyvDeserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proration {
    None,
    Daily,
    Seconds,
}

/// When a one-off charge is raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Archive, RkyvSerialize, RkyvDeserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Activation,
    Termination,
    Manual,
}

/// A charge that billing raises independently of usage.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub enum ChargeKind {
    Recurring { period: Period, proration: Proration, in_advance: bool },
    OneOff { trigger: Trigger },
}

#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Charge {
    pub name: String,
    #[rkyv(with = RkyvDecimal)]
    pub amount: Decimal,
    pub kind: ChargeKind,
}

/// Marker in [`CompiledPlan::rate_table`] for "no rate".
pub(crate) const NO_RATE: u32 = u32::MAX;

/// A plan after compilation: immutable, self-contained, ready to rate.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct CompiledPlan {
    pub id: String,
    pub version: u32,
    pub name: String,
    pub currency: String,
    pub time_zone: String,
    /// First instant (UTC seconds) at which this version prices usage.
    pub effective_from_utc_seconds: i64,
    pub rounding: Rounding,
    pub services: Vec<Service>,
    /// `(rating group, service)`, sorted by rating group.
    pub(crate) rating_groups: Vec<(u32, ServiceId)>,
    pub destinations: Vec<String>,
    pub bands: Vec<String>,
    pub(crate) prefixes: PrefixTrie,
    pub(crate) calendar: Calendar,
    pub rates: Vec<Rate>,
    /// Dense `[service][destination + 1][band]` → index into `rates`; slot 0 of the
    /// destination axis is "no destination". Fallbacks are resolved at compile time.
    pub(crate) rate_table: Vec<u32>,
    pub allowances: Vec<Allowance>,
    pub charges: Vec<Charge>,
}

impl CompiledPlan {
    /// The service with this name.
    pub fn service_by_name(&self, name: &str) -> Option<ServiceId> {
        self.services.iter().position(|s| s.name == name).map(|i| i as ServiceId)
    }

    /// The service a rating group belongs to.
    pub fn service_by_rating_group(&self, rating_group: u32) -> Option<ServiceId> {
        self.rating_groups.binary_search_by_key(&rating_group, |(rg, _)| *rg).ok().map(|i| self.rating_groups[i].1)
    }

    /// The service a (3GPP) service identifier belongs to.
    pub fn service_by_service_id(&self, service_id: u32) -> Option<ServiceId> {
        self.services.iter().position(|s| s.service_ids.contains(&service_id)).map(|i| i as ServiceId)
    }

    /// The allowance with this name.
    pub fn allowance_by_name(&self, name: &str) -> Option<AllowanceId> {
        self.allowances.iter().position(|a| a.name == name).map(|i| i as AllowanceId)
    }

    /// Number of destination prefixes in the plan.
    pub fn prefix_count(&self) -> usize {
        self.prefixes.len()
    }

    /// The calendar (offsets, bands, holidays) of the plan.
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// The destination group of a number by longest prefix.
    pub fn destination_of(&self, number: &str) -> crate::prefix::PrefixMatch {
        self.prefixes.longest_match(number)
    }

    /// The rate for usage of `service` to `destination` in `band`, if the plan has one.
    pub fn rate_for(&self, service: ServiceId, destination: Option<DestinationId>, band: BandId) -> Option<&Rate> {
        let destination_slot = destination.map_or(0, |d| d as usize + 1);
        let index = (usize::from(service) * (self.destinations.len() + 1) + destination_slot) * self.bands.len()
            + usize::from(band);
        match self.rate_table.get(index) {
            Some(&rate) if rate != NO_RATE => self.rates.get(rate as usize),
            _ => None,
        }
    }
}
