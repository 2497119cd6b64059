//! What an order needs to know about a product offering: whether it is sellable now
//! (Active, inside its `validFor`) and, for a line, the tariff plan its usage price names
//! (its id and currency, read by compiling the plan source the catalogue keeps, as the
//! offering's activation did). Plans of prices already seen are remembered by price id
//! and version, so an order does not compile a plan again.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;
use serde_json::Value;
use tollgate_catalogue::{Catalogue, CatalogueError, Kind};

use crate::error::{OrdersError, Result};

/// Plans remembered at most (prices are few; the cache is cleared when full).
const MAX_CACHED_PLANS: usize = 1024;

/// An offering an order may sell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Offering {
    pub(crate) id: String,
    pub(crate) name: String,
    /// The plan of its usage price: (plan id, currency); `None` for an offering without
    /// one (an add-on).
    pub(crate) plan: Option<(String, String)>,
}

/// Reads offerings through the catalogue, remembering compiled plans.
#[derive(Debug)]
pub(crate) struct Offerings {
    catalogue: Catalogue,
    plans: Mutex<HashMap<(String, i64), (String, String)>>,
}

impl Offerings {
    pub(crate) fn new(catalogue: Catalogue) -> Offerings {
        Offerings { catalogue, plans: Mutex::new(HashMap::new()) }
    }

    /// The offering `id` if it is sellable at `now`; otherwise `Invalid` naming `field`.
    pub(crate) async fn sellable(&self, id: &str, field: &str, now: Timestamp) -> Result<Offering> {
        let found = match self.catalogue.get(Kind::ProductOffering, id).await {
            Ok(found) => found.value,
            Err(CatalogueError::NotFound { .. }) => {
                return Err(OrdersError::invalid(field, format!("no product offering {id}")))
            }
            Err(error) => return Err(catalogue_failure(error)),
        };
        let status = found.get("lifecycleStatus").and_then(Value::as_str).unwrap_or("");
        if status != "Active" {
            return Err(OrdersError::invalid(field, format!("product offering {id} is {status:?}, not Active")));
        }
        let window = |name: &str| {
            found.get("validFor").and_then(|v| v.get(name)).and_then(Value::as_str).and_then(|t| t.parse().ok())
        };
        let (from, until): (Option<Timestamp>, Option<Timestamp>) = (window("startDateTime"), window("endDateTime"));
        if from.is_some_and(|from| now < from) || until.is_some_and(|until| now >= until) {
            return Err(OrdersError::invalid(field, format!("product offering {id} is not valid now (validFor)")));
        }
        let mut plans = Vec::new();
        let prices = found.get("productOfferingPrice").and_then(Value::as_array).cloned().unwrap_or_default();
        for price in prices {
            let Some(price_id) = price.get("id").and_then(Value::as_str) else { continue };
            if let Some(plan) = self.usage_plan(price_id).await? {
                plans.push(plan);
            }
        }
        if plans.len() > 1 {
            return Err(OrdersError::invalid(
                field,
                format!("product offering {id} has {} usage prices; a line is rated by one plan", plans.len()),
            ));
        }
        let name = found.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
        Ok(Offering { id: id.to_owned(), name, plan: plans.pop() })
    }

    /// The plan of price `id` if it is a usage price: (plan id, currency).
    async fn usage_plan(&self, id: &str) -> Result<Option<(String, String)>> {
        let price = match self.catalogue.get(Kind::ProductOfferingPrice, id).await {
            Ok(price) => price,
            Err(CatalogueError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(catalogue_failure(error)),
        };
        let key = (id.to_owned(), price.version.get());
        if let Some(found) = self.lock().get(&key) {
            return Ok(Some(found.clone()));
        }
        if price.value.get("priceType").and_then(Value::as_str) != Some("usage") {
            return Ok(None);
        }
        let plan = price.value.get("tariffPlan");
        let Some(source) = plan.and_then(|plan| plan.get("source")).and_then(Value::as_str) else { return Ok(None) };
        let file = plan.and_then(|plan| plan.get("file")).and_then(Value::as_str).unwrap_or("plan.toml");
        // The offering's activation compiled this source; it still compiles.
        let compiled = tollgate_tariffs::compile_str(source, file, None).map_err(|error| {
            OrdersError::conflict("productOffering", format!("the tariff plan of price {id} does not compile: {error}"))
        })?;
        let found = (compiled.id, compiled.currency);
        let mut plans = self.lock();
        if plans.len() >= MAX_CACHED_PLANS {
            plans.clear();
        }
        plans.insert(key, found.clone());
        Ok(Some(found))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i64), (String, String)>> {
        // A panic while holding it left a map that is still a valid cache.
        self.plans.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn catalogue_failure(error: CatalogueError) -> OrdersError {
    match error {
        CatalogueError::Store(error) => OrdersError::Store(error),
        other => OrdersError::conflict("productOffering", other.to_string()),
    }
}
