//! Tollgate's management API: REST after the TM Forum Open APIs (TMF630 design
//! guidelines), served by axum. `tmf.rs` is the shared machinery (ids and hrefs, `fields`
//! selection, attribute filters, `offset`/`limit` pagination with `X-Total-Count` and
//! `X-Result-Count`, bodies bounded and typed, ETags and `If-Match`); `error.rs` the TMF
//! error body; `auth.rs` bearer tokens checked against the store's hashed tokens and the
//! role each route needs; `limit.rs` the per-token rate limit; `catalogue.rs` the product
//! catalogue (TMF620) over `tollgate-catalogue`; `customers.rs` customers (TMF629) and
//! billing accounts (TMF666) over `tollgate-customers`; `inventory.rs` the resource
//! inventory (TMF639) over `tollgate-inventory`; `hub.rs` each API's event hub (TMF630
//! Part 2: `{apiRoot}/hub`) and the operator's deliveries over `tollgate-hub`; `prepay.rs`
//! prepaid balances (TMF654: buckets and accumulated balances read from the engine, top-ups
//! and adjustments idempotent by the client's id); `orders.rs` product orders (TMF622) and
//! the product, service and service order inventories (TMF637, TMF638, TMF641) over
//! `tollgate-orders`; `audit.rs` the audit trail, read-only.
//! **Every management route is authenticated and authorised by role; every change is
//! audited in the same transaction (the domain crates do it).** README.md has the role
//! table and the limits.
#![forbid(unsafe_code)]

mod alarms;
mod audit;
mod auth;
pub mod billruns;
mod bills;
mod catalogue;
mod customers;
mod error;
mod hub;
mod inventory;
mod limit;
mod orders;
mod payments;
mod prepay;
mod reductions;
pub mod thresholds;
mod tmf;

use std::sync::Arc;

pub use alarms::BASE_PATH as ALARM_BASE_PATH;
use axum::routing::{get, post};
use axum::Router;
use tollgate_catalogue::Catalogue;
use tollgate_customers::{Customers, EnginePort, Templates, Thresholds};
use tollgate_hub::{Hub, HubApi, HubOptions};
use tollgate_inventory::{Inventory, InventoryConfig};
use tollgate_orders::Orders;
use tollgate_store::Store;

pub use auth::{allowed, Access};
pub use bills::BILL_BASE_PATH;
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
    /// Which listener callbacks the hubs accept.
    pub hub: HubOptions,
    /// The engine, for the balance views and for applying top-ups and adjustments at once
    /// (without it the views answer 503 and requests wait for the outbox worker).
    pub engine: Option<Arc<dyn EnginePort>>,
    /// Product orders, with the engine and the resource inventory they reach (`None`:
    /// the order routes answer 503).
    pub orders: Option<Orders>,
    /// Renders a final bill as a PDF for `Accept: application/pdf` (`None`: 406).
    pub bill_pdf: Option<Arc<dyn BillPdf>>,
    /// Runs bill runs in the server (`None`: the bill run routes answer 503).
    pub bill_runs: Option<Arc<dyn BillRuns>>,
    /// The threshold messages' templates: a threshold's language must be one of theirs.
    pub threshold_templates: Templates,
}

/// A future a trait object returns (the engine ports' own).
pub use tollgate_customers::BoxFuture;

/// Runs bill runs in the server (the binary's: a run reads the engine's rated-event
/// ledger, which the API does not). See [`billruns`] for the routes.
pub trait BillRuns: Send + Sync + std::fmt::Debug {
    /// Starts the run `request` asks for in the background, unless it is under way here
    /// or done already; a refused field is said before anything is written.
    fn start(&self, request: BillRunRequest) -> BoxFuture<'_, Result<BillRunStart, BillRunRefusal>>;
    /// The documents a run would write for `request`'s accounts, writing nothing.
    fn dry_run(&self, request: BillRunRequest) -> BoxFuture<'_, Result<Vec<serde_json::Value>, BillRunRefusal>>;
    /// How run `id` stands in this server (`None`: not run here since it started).
    fn progress(&self, id: &str) -> Option<BillRunProgress>;
}

/// A bill run asked for through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillRunRequest {
    /// The month the billed cycles close in, `YYYY-MM`.
    pub cycle: String,
    /// The hierarchy roots billed; empty: every one.
    pub accounts: Vec<String>,
    /// Bill cycles that have not closed yet (their last day still to come); without it
    /// such a run is refused, naming `cycle`.
    pub open_cycles: bool,
    /// Who the audit trail names.
    pub actor: String,
}

/// What [`BillRuns::start`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillRunStart {
    /// Started now (or again, after a failure or a restart: it resumes).
    Started { id: String },
    /// Under way in this server already: not started twice.
    UnderWay { id: String },
    /// Every invoice of the run is final: nothing to do.
    Done { id: String },
}

/// Why a bill run was not started.
#[derive(Debug)]
pub enum BillRunRefusal {
    /// A field of the request is wrong (400 naming it).
    Invalid { field: &'static str, reason: String },
    /// The store failed: answered as every route answers a store error (503 with
    /// `Retry-After` for a transient one, else 500).
    Store(tollgate_store::StoreError),
    /// Something else failed, the ledger say (500).
    Failed(String),
}

/// How a bill run stands in this server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BillRunProgress {
    /// Still running.
    pub running: bool,
    /// Documents drafted by this server's attempt, statements among them.
    pub drafted: u64,
    pub statements: u64,
    /// Hierarchies found billed already (by an earlier attempt or another run).
    pub billed_before: u64,
    /// Documents made final.
    pub finalised: u64,
    /// Why this server's last attempt failed, and when, if it did (the store keeps it
    /// too, unless the store itself failed; a restarted server forgets this copy).
    pub failure: Option<(String, jiff::Timestamp)>,
}

/// Renders a customer bill as the PDF a customer reads (the binary's, with
/// `tollgate-invoice-pdf`: the API itself draws nothing).
pub trait BillPdf: Send + Sync + std::fmt::Debug {
    /// The PDF of `bill`, or why it cannot be made.
    fn render<'a>(
        &'a self,
        bill: &'a tollgate_store::InvoiceRow,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, String>> + Send + 'a>>;
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            rate_per_second: 50,
            burst: 100,
            inventory: InventoryConfig::default(),
            hub: HubOptions::default(),
            engine: None,
            orders: None,
            bill_pdf: None,
            bill_runs: None,
            threshold_templates: Templates::default(),
        }
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

    /// This configuration with these hub options.
    pub fn with_hub(self, hub: HubOptions) -> ApiConfig {
        ApiConfig { hub, ..self }
    }

    /// This configuration with the engine.
    pub fn with_engine(mut self, engine: Arc<dyn EnginePort>) -> ApiConfig {
        self.engine = Some(engine);
        self
    }

    /// This configuration serving product orders through `orders`.
    pub fn with_orders(self, orders: Orders) -> ApiConfig {
        ApiConfig { orders: Some(orders), ..self }
    }
}

/// The product catalogue's hub (TMF620 events).
pub static CATALOGUE_HUB: HubApi =
    HubApi { root: tollgate_catalogue::BASE_PATH, event_types: &tollgate_catalogue::EVENTS };
/// The customers' hub (TMF629 events).
pub static CUSTOMER_HUB: HubApi =
    HubApi { root: tollgate_customers::CUSTOMER_BASE_PATH, event_types: &tollgate_customers::CUSTOMER_EVENTS };
/// The billing accounts' hub (TMF666 events).
pub static ACCOUNT_HUB: HubApi =
    HubApi { root: tollgate_customers::ACCOUNT_BASE_PATH, event_types: &tollgate_customers::ACCOUNT_EVENTS };
/// The product orders' hub (TMF622 events).
pub static ORDER_HUB: HubApi =
    HubApi { root: tollgate_orders::ORDER_BASE_PATH, event_types: &tollgate_orders::ORDER_EVENTS };
/// The alarms' hub (TMF642 events).
pub static ALARM_HUB: HubApi =
    HubApi { root: tollgate_alarms::service::BASE_PATH, event_types: &tollgate_alarms::service::EVENTS };
/// The customer bills' hub: dunning reminders (`CustomerBillDunningEvent`), for the
/// operator's listener that sends the letter or SMS.
pub static BILL_HUB: HubApi =
    HubApi { root: bills::BILL_BASE_PATH, event_types: &[tollgate_receivables::REMINDER_EVENT] };
/// The payments' hub (`PaymentCreateEvent`).
pub static PAYMENT_HUB: HubApi =
    HubApi { root: tollgate_receivables::PAYMENT_BASE_PATH, event_types: &[tollgate_receivables::PAYMENT_EVENT] };
/// Every hub the router mounts; `auth.rs` names the roles of each.
pub static HUBS: [&HubApi; 7] =
    [&CATALOGUE_HUB, &CUSTOMER_HUB, &ACCOUNT_HUB, &ORDER_HUB, &ALARM_HUB, &BILL_HUB, &PAYMENT_HUB];

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) store: Store,
    pub(crate) catalogue: Catalogue,
    pub(crate) customers: Customers,
    pub(crate) inventory: Inventory,
    pub(crate) hub: Hub,
    pub(crate) orders: Option<Orders>,
    pub(crate) bill_pdf: Option<Arc<dyn BillPdf>>,
    pub(crate) bill_runs: Option<Arc<dyn BillRuns>>,
    pub(crate) thresholds: Thresholds,
    pub(crate) limiter: RateLimit,
}

/// The API's router on `store`: the product catalogue under
/// `/tmf-api/productCatalogManagement/v4/`, customers under `/tmf-api/customerManagement/v4/`,
/// billing accounts under `/tmf-api/accountManagement/v4/`, the resource inventory under
/// `/tmf-api/resourceInventoryManagement/v4/`, each API's event hub under
/// `{apiRoot}/hub` ([`HUBS`]), the hubs' deliveries under `/tmf-api/hub/v1/delivery`,
/// prepaid balances under `/tmf-api/prepayBalanceManagement/v4/`, product orders under
/// `/tmf-api/productOrderingManagement/v4/` with the product, service and service order
/// inventories, customer bills (TMF678, read) under `/tmf-api/customerBillManagement/v4/`,
/// bill runs, discounts and credits (Tollgate's own) under `/tmf-api/billing/v1/`, thresholds
/// and their crossings (Tollgate's own) under `/tmf-api/thresholdManagement/v1/`, payments (TMF676) under
/// `/tmf-api/paymentManagement/v4/`,
/// alarms under `/tmf-api/alarmManagement/v4/`, and the audit trail under `/tmf-api/audit/v1/`.
pub fn router(store: Store, config: &ApiConfig) -> Router {
    let state = Arc::new(AppState {
        catalogue: Catalogue::new(store.clone(), tollgate_catalogue::BASE_PATH),
        customers: match &config.engine {
            Some(engine) => Customers::new(store.clone()).with_engine(Arc::clone(engine)),
            None => Customers::new(store.clone()),
        },
        inventory: Inventory::new(store.clone(), config.inventory.clone()),
        hub: Hub::new(store.clone(), config.hub),
        orders: config.orders.clone(),
        bill_pdf: config.bill_pdf.clone(),
        bill_runs: config.bill_runs.clone(),
        thresholds: Thresholds::new(store.clone(), config.threshold_templates.clone()),
        store,
        limiter: RateLimit::new(config.rate_per_second, config.burst),
    });
    let catalogue = format!("{}/{{resource}}", tollgate_catalogue::BASE_PATH);
    let item = format!("{}/{{resource}}/{{id}}", tollgate_catalogue::BASE_PATH);
    let mut router = Router::new();
    for api in HUBS {
        router = hub::mount(router, api);
    }
    router
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
        .route(&order_path("/productOrder"), get(orders::list_orders).post(orders::create_order))
        .route(&order_path("/productOrder/{id}"), get(orders::get_order).patch(orders::patch_order))
        .route(&order_path("/cancelProductOrder"), get(orders::list_cancels).post(orders::create_cancel))
        .route(&order_path("/cancelProductOrder/{id}"), get(orders::get_cancel))
        .route(&format!("{}/product", tollgate_orders::PRODUCT_BASE_PATH), get(orders::list_products))
        .route(&format!("{}/product/{{id}}", tollgate_orders::PRODUCT_BASE_PATH), get(orders::get_product))
        .route(&format!("{}/service", tollgate_orders::SERVICE_BASE_PATH), get(orders::list_services))
        .route(&format!("{}/service/{{id}}", tollgate_orders::SERVICE_BASE_PATH), get(orders::get_service))
        .route(&format!("{}/serviceOrder", tollgate_orders::SERVICE_ORDER_BASE_PATH), get(orders::list_service_orders))
        .route(
            &format!("{}/serviceOrder/{{id}}", tollgate_orders::SERVICE_ORDER_BASE_PATH),
            get(orders::get_service_order),
        )
        .route(hub::DELIVERY_PATH, get(hub::list_deliveries))
        .route(&format!("{}/{{id}}/redrive", hub::DELIVERY_PATH), post(hub::redrive))
        .route(&prepay_path("/bucket"), get(prepay::list_buckets))
        .route(&prepay_path("/bucket/{id}"), get(prepay::get_bucket))
        .route(&prepay_path("/accumulatedBalance"), get(prepay::list_accumulated))
        .route(&prepay_path("/accumulatedBalance/{id}"), get(prepay::get_accumulated))
        .route(&prepay_path("/topupBalance"), get(prepay::list_topups).post(prepay::create_topup))
        .route(&prepay_path("/topupBalance/{id}"), get(prepay::get_topup))
        .route(&prepay_path("/adjustBalance"), get(prepay::list_adjustments).post(prepay::create_adjustment))
        .route(&prepay_path("/adjustBalance/{id}"), get(prepay::get_adjustment))
        .route(&format!("{}/customerBill", bills::BILL_BASE_PATH), get(bills::list_bills))
        .route(&format!("{}/customerBill/{{id}}", bills::BILL_BASE_PATH), get(bills::get_bill))
        .route(&format!("{}/appliedCustomerBillingRate", bills::BILL_BASE_PATH), get(bills::list_rates))
        .route(&format!("{}/appliedCustomerBillingRate/{{id}}", bills::BILL_BASE_PATH), get(bills::get_rate))
        .route(&format!("{}/billRun", billruns::BASE_PATH), get(billruns::list).post(billruns::create))
        .route(&format!("{}/billRun/{{id}}", billruns::BASE_PATH), get(billruns::get))
        .route(
            &format!("{}/discount", billruns::BASE_PATH),
            get(reductions::list_discounts).post(reductions::create_discount),
        )
        .route(
            &format!("{}/credit", billruns::BASE_PATH),
            get(reductions::list_credits).post(reductions::create_credit),
        )
        .route(
            &format!("{}/discount/{{id}}", billruns::BASE_PATH),
            get(reductions::get_discount).patch(reductions::patch_discount),
        )
        .route(
            &format!("{}/credit/{{id}}", billruns::BASE_PATH),
            get(reductions::get_credit).patch(reductions::patch_credit),
        )
        .route(&format!("{}/threshold", thresholds::BASE_PATH), get(thresholds::list).post(thresholds::create))
        .route(&format!("{}/threshold/{{id}}", thresholds::BASE_PATH), get(thresholds::get).delete(thresholds::delete))
        .route(&format!("{}/crossing", thresholds::BASE_PATH), get(thresholds::crossings))
        .route(&payments::path(""), get(payments::list).post(payments::create))
        .route(&payments::path("/{id}"), get(payments::get))
        .route(&format!("{}/alarm", alarms::BASE_PATH), get(alarms::list).post(alarms::create))
        .route(&format!("{}/alarm/{{id}}", alarms::BASE_PATH), get(alarms::get).patch(alarms::patch))
        .route("/tmf-api/audit/v1/auditRecord", get(audit::list))
        .route("/tmf-api/audit/v1/chainVerification", get(audit::verify))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::map_response(error::tmf_body))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), auth::authenticate))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(error::refuse_declared_too_large))
        .with_state(state)
}

fn customers_path(rest: &str) -> String {
    format!("{}/customer{rest}", tollgate_customers::CUSTOMER_BASE_PATH)
}

fn prepay_path(rest: &str) -> String {
    format!("{}{rest}", tollgate_customers::PREPAY_BASE_PATH)
}

fn accounts_path(rest: &str) -> String {
    format!("{}/billingAccount{rest}", tollgate_customers::ACCOUNT_BASE_PATH)
}

fn order_path(rest: &str) -> String {
    format!("{}{rest}", tollgate_orders::ORDER_BASE_PATH)
}

fn inventory_path(rest: &str) -> String {
    format!("{}{rest}", tollgate_inventory::BASE_PATH)
}

/// Serves `router` on `listener` (a TCP listener, or one that limits its connections) until
/// `shutdown` completes.
pub async fn serve<L>(
    listener: L,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
