//! Tollgate's management API: REST after the TM Forum Open APIs (TMF630 design
//! guidelines), served by axum. `tmf.rs` is the shared machinery (ids and hrefs, `fields`
//! selection, attribute filters, `offset`/`limit` pagination with `X-Total-Count` and
//! `X-Result-Count`, bodies bounded and typed, ETags and `If-Match`); `error.rs` the TMF
//! error body; `auth.rs` bearer tokens checked against the store's hashed tokens and the
//! role each route needs; `limit.rs` the per-token rate limit; `catalogue.rs` the product
//! catalogue (TMF620) over `tollgate-catalogue`; `customers.rs` customers (TMF629) and
//! billing accounts (TMF666) over `tollgate-customers`; `inventory.rs` the resource
//! inventory (TMF639) over `tollgate-inventory`; `audit.rs` the audit trail, read-only.
//! **Every management route is authenticated and authorised by role; every change is
//! audited in the same transaction (the domain crates do it).** README.md has the role
//! table and the limits.
#![forbid(unsafe_code)]

mod audit;
mod auth;
mod catalogue;
mod customers;
mod error;
mod inventory;
mod limit;
mod tmf;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tollgate_catalogue::Catalogue;
use tollgate_customers::Customers;
use tollgate_inventory::{Inventory, InventoryConfig};
use tollgate_store::Store;

pub use auth::{allowed, Access};
pub use error::ApiError;
pub use limit::RateLimit;
pub use tmf::{DEFAULT_LIMIT, MAX_BODY_BYTES, MAX_LIMIT};

/// How the API is served.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApiConfig {
    /// Requests per second each token may make on average.
    pub rate_per_second: u32,
    /// Requests a token may make at once after being idle.
    pub burst: u32,
    /// The resource inventory's timings (quarantine, reservation holds).
    pub inventory: InventoryConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { rate_per_second: 50, burst: 100, inventory: InventoryConfig::default() }
    }
}

impl ApiConfig {
    /// A configuration with this rate limit.
    pub fn with_rate_limit(rate_per_second: u32, burst: u32) -> ApiConfig {
        ApiConfig { rate_per_second, burst, ..ApiConfig::default() }
    }

    /// This configuration with these inventory timings.
    pub fn with_inventory(self, inventory: InventoryConfig) -> ApiConfig {
        ApiConfig { inventory, ..self }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) store: Store,
    pub(crate) catalogue: Catalogue,
    pub(crate) customers: Customers,
    pub(crate) inventory: Inventory,
    pub(crate) limiter: RateLimit,
}

/// The API's router on `store`: the product catalogue under
/// `/tmf-api/productCatalogManagement/v4/`, customers under `/tmf-api/customerManagement/v4/`,
/// billing accounts under `/tmf-api/accountManagement/v4/`, the resource inventory under
/// `/tmf-api/resourceInventoryManagement/v4/` and the audit trail under `/tmf-api/audit/v1/`.
pub fn router(store: Store, config: &ApiConfig) -> Router {
    let state = Arc::new(AppState {
        catalogue: Catalogue::new(store.clone(), tollgate_catalogue::BASE_PATH),
        customers: Customers::new(store.clone()),
        inventory: Inventory::new(store.clone(), config.inventory.clone()),
        store,
        limiter: RateLimit::new(config.rate_per_second, config.burst),
    });
    let catalogue = format!("{}/{{resource}}", tollgate_catalogue::BASE_PATH);
    let item = format!("{}/{{resource}}/{{id}}", tollgate_catalogue::BASE_PATH);
    Router::new()
        .route(&catalogue, get(catalogue::list).post(catalogue::create))
        .route(&item, get(catalogue::get).patch(catalogue::patch).delete(catalogue::delete))
        .route(&customers_path(""), get(customers::list_customers).post(customers::create_customer))
        .route(
            &customers_path("/{id}"),
            get(customers::get_customer).patch(customers::patch_customer).delete(customers::delete_customer),
        )
        .route(&customers_path("/{id}/export"), get(customers::export_customer))
        .route(&customers_path("/{id}/anonymise"), post(customers::anonymise_customer))
        .route(&accounts_path(""), get(customers::list_accounts).post(customers::create_account))
        .route(&accounts_path("/{id}"), get(customers::get_account).patch(customers::patch_account))
        .route(&inventory_path("/resource"), get(inventory::list).post(inventory::create))
        .route(&inventory_path("/resource/{id}"), get(inventory::get).patch(inventory::patch).delete(inventory::delete))
        .route(&inventory_path("/reservation"), post(inventory::reserve))
        .route(&inventory_path("/resource/{id}/{step}"), post(inventory::step))
        .route("/tmf-api/audit/v1/auditRecord", get(audit::list))
        .route("/tmf-api/audit/v1/chainVerification", get(audit::verify))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), auth::authenticate))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn customers_path(rest: &str) -> String {
    format!("{}/customer{rest}", tollgate_customers::CUSTOMER_BASE_PATH)
}

fn accounts_path(rest: &str) -> String {
    format!("{}/billingAccount{rest}", tollgate_customers::ACCOUNT_BASE_PATH)
}

fn inventory_path(rest: &str) -> String {
    format!("{}{rest}", tollgate_inventory::BASE_PATH)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
