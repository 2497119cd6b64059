//! The compiled plans the engine rates with: every version of every plan, immutable.

use std::path::Path;
use std::sync::Arc;

use tollgate_tariffs::{store, CompiledPlan, Unit};

use crate::error::EngineError;

/// Shared names of a plan version, so answers and accumulators carry them without copying.
#[derive(Debug, Clone)]
pub struct PlanNames {
    pub id: Arc<str>,
    pub currency: Arc<str>,
    pub services: Vec<Arc<str>>,
    pub destinations: Vec<Arc<str>>,
    pub bands: Vec<Arc<str>>,
}

/// One version of a plan with its shared names. Dereferences to the compiled plan.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub plan: Arc<CompiledPlan>,
    pub names: PlanNames,
    /// Position in load order, for [`Plans::by_handle`] (stable for the life of a `Plans`).
    pub handle: u32,
}

impl std::ops::Deref for Versioned {
    type Target = CompiledPlan;
    fn deref(&self) -> &CompiledPlan {
        &self.plan
    }
}

/// Plans by id, each with its versions sorted by `effective_from`.
#[derive(Debug, Clone, Default)]
pub struct Plans {
    by_id: crate::state::Map<String, Vec<Versioned>>,
    loaded: Vec<Versioned>,
    /// What every loaded plan counts each rating group and each service name in.
    group_units: crate::state::Map<u32, Agreed>,
    service_units: crate::state::Map<String, Agreed>,
}

/// The unit the loaded plans count a rating group or a service in: one, or several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agreed {
    One(Unit),
    Mixed,
}

impl Agreed {
    fn with(found: Option<Agreed>, unit: Unit) -> Agreed {
        match found {
            None => Agreed::One(unit),
            Some(Agreed::One(known)) if known == unit => Agreed::One(unit),
            Some(_) => Agreed::Mixed,
        }
    }

    fn unit(found: Option<&Agreed>) -> Option<Unit> {
        match found {
            Some(Agreed::One(unit)) => Some(*unit),
            _ => None,
        }
    }
}

impl Plans {
    pub fn new() -> Plans {
        Plans::default()
    }

    /// Adds one plan version; a version already present for the id is refused.
    pub fn insert(&mut self, plan: CompiledPlan) -> Result<(), EngineError> {
        let versions = self.by_id.entry(plan.id.clone()).or_default();
        if versions.iter().any(|v| v.version == plan.version) {
            return Err(EngineError::Config(format!("plan {} version {} is loaded twice", plan.id, plan.version)));
        }
        let shared = |names: &[String]| names.iter().map(|n| Arc::from(n.as_str())).collect();
        let names = PlanNames {
            id: Arc::from(plan.id.as_str()),
            currency: Arc::from(plan.currency.as_str()),
            services: plan.services.iter().map(|s| Arc::from(s.name.as_str())).collect(),
            destinations: shared(&plan.destinations),
            bands: shared(&plan.bands),
        };
        for service in &plan.services {
            for group in &service.rating_groups {
                let agreed = Agreed::with(self.group_units.get(group).copied(), service.unit);
                self.group_units.insert(*group, agreed);
            }
            let agreed = Agreed::with(self.service_units.get(&service.name).copied(), service.unit);
            self.service_units.insert(service.name.clone(), agreed);
        }
        let versioned = Versioned { plan: Arc::new(plan), names, handle: self.loaded.len() as u32 };
        self.loaded.push(versioned.clone());
        versions.push(versioned);
        versions.sort_by_key(|v| (v.effective_from_utc_seconds, v.version));
        Ok(())
    }

    /// Loads a source or compiled plan file.
    pub fn load(&mut self, path: &Path) -> Result<(), EngineError> {
        self.insert(store::load_or_compile(path)?)
    }

    /// The version of plan `id` in force at `utc_seconds`; before the first version takes
    /// effect, the first version (rating then answers `before_effective`).
    pub fn at(&self, id: &str, utc_seconds: i64) -> Option<&Versioned> {
        let versions = self.by_id.get(id)?;
        let index = versions.partition_point(|v| v.effective_from_utc_seconds <= utc_seconds);
        versions.get(index.saturating_sub(1))
    }

    /// The plan version a bulk answer names ([`crate::records::RatedIndexes::plan`]).
    pub fn by_handle(&self, handle: u32) -> Option<&Versioned> {
        self.loaded.get(handle as usize)
    }

    /// The unit every loaded plan counts rating group `rating_group` in; `None` when no
    /// plan names it or two count it in different units. A network element meters a
    /// rating group in one unit whatever the subscriber's plan, so a protocol front end
    /// reads a report's measure in it (a gateway may report time and volume together).
    pub fn rating_group_unit(&self, rating_group: u32) -> Option<Unit> {
        Agreed::unit(self.group_units.get(&rating_group))
    }

    /// The unit every loaded plan counts service `name` in, as [`Plans::rating_group_unit`].
    pub fn service_unit(&self, name: &str) -> Option<Unit> {
        Agreed::unit(self.service_units.get(name))
    }

    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(String::as_str)
    }
}
