//! Authentication and authorisation of every request, before any handler runs.
//! `Authorization: Bearer tg_…` is checked against the store's hashed tokens
//! (`Store::check_token`): no token, an unknown, expired or revoked one is 401 with
//! `WWW-Authenticate: Bearer`. The token's role must allow the route's [`Access`]
//! ([`allowed`], the table in README.md), else 403; then its rate limit applies (429).
//! The handler receives the [`Caller`]; the token itself is never logged.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tollgate_store::{Role, TokenCheck};

use crate::error::ApiError;
use crate::AppState;

/// What a route does, as far as roles are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read the product catalogue.
    CatalogueRead,
    /// Create, change or delete catalogue items.
    CatalogueWrite,
    /// Read the audit trail and its verification.
    AuditRead,
    /// Read customers (TMF629).
    CustomerRead,
    /// Create, change or delete customers.
    CustomerWrite,
    /// A customer's export (right of access) and anonymisation (erasure).
    CustomerPrivacy,
    /// Read billing accounts (TMF666).
    AccountRead,
    /// Create or change billing accounts (finance: money terms only, by the domain crate).
    AccountWrite,
    /// Read the resource inventory (TMF639).
    ResourceRead,
    /// Reserve an MSISDN or SIM card for an order, or release that reservation.
    ResourceReserve,
    /// Create, change or delete resources; assign and unassign them.
    ResourceWrite,
    /// Register, read and remove listeners of the catalogue's hub.
    CatalogueHub,
    /// Register, read and remove listeners of the customers' hub.
    CustomerHub,
    /// Register, read and remove listeners of the billing accounts' hub.
    AccountHub,
    /// List the hubs' deliveries and re-drive dead letters.
    HubDeliveries,
    /// Read product orders and cancellation requests (TMF622).
    OrderRead,
    /// Place, amend and cancel product orders.
    OrderWrite,
    /// Read the product, service and service order inventories (TMF637, TMF638, TMF641).
    ProductInventoryRead,
    /// Register, read and remove listeners of the product orders' hub.
    OrderHub,
    /// Read balances, buckets, top-ups and adjustments (TMF654).
    BalanceRead,
    /// Top up a balance.
    TopUp,
    /// Adjust a balance.
    Adjust,
    /// Read customer bills and their applied rates (TMF678).
    BillRead,
    /// Register, read and remove listeners of the customer bills' and payments' hubs.
    FinanceHub,
    /// Read bill runs and their progress, discounts and credits.
    BillingRead,
    /// Start a bill run (or a dry run); give an account a discount or a credit.
    BillingWrite,
    /// Read payments (TMF676).
    PaymentRead,
    /// Record payments.
    PaymentWrite,
    /// Read thresholds and the crossings they notified.
    ThresholdRead,
    /// Set or remove thresholds (a partner: its hierarchy's accounts' only).
    ThresholdWrite,
    /// Read alarms (TMF642).
    AlarmRead,
    /// Register, read and remove listeners of the alarms' hub.
    AlarmHub,
    /// Raise, acknowledge or clear alarms.
    AlarmWrite,
}

/// Whether `role` may do `access`: the role table of README.md.
pub fn allowed(role: Role, access: Access) -> bool {
    match access {
        Access::CatalogueRead => true,
        Access::CatalogueWrite => matches!(role, Role::Admin | Role::ProductManager),
        Access::AuditRead => role == Role::Admin,
        Access::CustomerRead => !matches!(role, Role::Finance | Role::ProductManager),
        Access::CustomerWrite => matches!(role, Role::Admin | Role::Care | Role::Partner),
        Access::CustomerPrivacy => matches!(role, Role::Admin | Role::Care),
        Access::AccountRead | Access::BalanceRead => role != Role::ProductManager,
        Access::AccountWrite => !matches!(role, Role::ReadOnly | Role::ProductManager),
        Access::TopUp => matches!(role, Role::Admin | Role::Care | Role::Partner),
        Access::Adjust => matches!(role, Role::Admin | Role::Care | Role::Finance),
        Access::ResourceRead => matches!(role, Role::Admin | Role::Care | Role::ReadOnly),
        Access::ResourceReserve => matches!(role, Role::Admin | Role::Care),
        Access::ResourceWrite => role == Role::Admin,
        // The role owning each API; never a partner (events are not confined to a
        // hierarchy), never read_only (a listener reads everything the API publishes).
        Access::CatalogueHub => matches!(role, Role::Admin | Role::ProductManager),
        Access::HubDeliveries => role == Role::Admin,
        Access::CustomerHub => matches!(role, Role::Admin | Role::Care),
        Access::AccountHub => matches!(role, Role::Admin | Role::Care | Role::Finance),
        // A partner orders (and reads) within its hierarchy only: tollgate-orders confines it.
        // The product manager has no customer data, so no orders or inventories either.
        Access::OrderRead | Access::ProductInventoryRead => role != Role::ProductManager,
        Access::OrderWrite => matches!(role, Role::Admin | Role::Care | Role::Partner),
        Access::OrderHub => matches!(role, Role::Admin | Role::Care),
        // A partner reads its hierarchy's bills only: bills.rs confines it.
        Access::BillRead => matches!(role, Role::Admin | Role::Finance | Role::ReadOnly | Role::Partner),
        // A partner records and reads its hierarchy's payments only: payments.rs confines it.
        Access::PaymentRead => matches!(role, Role::Admin | Role::Finance | Role::ReadOnly | Role::Partner),
        Access::PaymentWrite => matches!(role, Role::Admin | Role::Finance | Role::Partner),
        Access::FinanceHub => matches!(role, Role::Admin | Role::Finance),
        Access::BillingRead => matches!(role, Role::Admin | Role::Finance | Role::ReadOnly),
        Access::BillingWrite => matches!(role, Role::Admin | Role::Finance),
        // A partner reaches its hierarchy's accounts only: tollgate-customers confines it.
        Access::ThresholdRead => role != Role::ProductManager,
        Access::ThresholdWrite => matches!(role, Role::Admin | Role::Care | Role::Partner),
        // Every token may see the faults; only an administrator changes them.
        Access::AlarmRead => true,
        Access::AlarmWrite | Access::AlarmHub => role == Role::Admin,
    }
}

/// The hub an API root's listeners route belongs to, for `{root}/hub` and `{root}/hub/…`.
fn hub_access(path: &str) -> Option<Access> {
    let under = |root: &str| path.strip_prefix(root).is_some_and(|rest| rest == "/hub" || rest.starts_with("/hub/"));
    if path.starts_with("/tmf-api/hub/") {
        Some(Access::HubDeliveries)
    } else if under(tollgate_catalogue::BASE_PATH) {
        Some(Access::CatalogueHub)
    } else if under(tollgate_customers::CUSTOMER_BASE_PATH) {
        Some(Access::CustomerHub)
    } else if under(tollgate_customers::ACCOUNT_BASE_PATH) {
        Some(Access::AccountHub)
    } else if under(tollgate_orders::ORDER_BASE_PATH) {
        Some(Access::OrderHub)
    } else if under(tollgate_alarms::service::BASE_PATH) {
        Some(Access::AlarmHub)
    } else if under(crate::bills::BILL_BASE_PATH) || under(tollgate_receivables::PAYMENT_BASE_PATH) {
        Some(Access::FinanceHub)
    } else {
        None
    }
}

/// Who is calling: the token's id and name (the audit trail's actor), role and, for a
/// partner, the root account of its hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) token_id: i64,
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) scope_root: Option<String>,
}

impl Caller {
    /// The actor written in audit records: `token:<id>:<name>`.
    pub(crate) fn actor(&self) -> String {
        format!("token:{}:{}", self.token_id, self.name)
    }

    /// The caller as the customers crate knows it.
    pub(crate) fn principal(&self) -> tollgate_customers::Principal {
        tollgate_customers::Principal { actor: self.actor(), role: self.role, scope_root: self.scope_root.clone() }
    }
}

fn access_of(method: &Method, path: &str) -> Access {
    let read = method == Method::GET || method == Method::HEAD;
    if let Some(access) = hub_access(path) {
        access
    } else if path.starts_with("/tmf-api/alarmManagement/") {
        if read {
            Access::AlarmRead
        } else {
            Access::AlarmWrite
        }
    } else if path.starts_with("/tmf-api/audit/") {
        Access::AuditRead
    } else if path.starts_with(crate::billruns::BASE_PATH) {
        if read {
            Access::BillingRead
        } else {
            Access::BillingWrite
        }
    } else if path.starts_with(crate::thresholds::BASE_PATH) {
        if read {
            Access::ThresholdRead
        } else {
            Access::ThresholdWrite
        }
    } else if path.starts_with(crate::bills::BILL_BASE_PATH) {
        // Read only: no write route exists there (the router answers 404 or 405).
        Access::BillRead
    } else if path.starts_with(tollgate_receivables::PAYMENT_BASE_PATH) {
        if read {
            Access::PaymentRead
        } else {
            Access::PaymentWrite
        }
    } else if path.starts_with("/tmf-api/customerManagement/") {
        if path.ends_with("/export") || path.ends_with("/anonymise") {
            Access::CustomerPrivacy
        } else if read {
            Access::CustomerRead
        } else {
            Access::CustomerWrite
        }
    } else if path.starts_with("/tmf-api/prepayBalanceManagement/") {
        if read {
            Access::BalanceRead
        } else if path.contains("/adjustBalance") {
            Access::Adjust
        } else {
            Access::TopUp
        }
    } else if path.starts_with("/tmf-api/accountManagement/") {
        if read {
            Access::AccountRead
        } else {
            Access::AccountWrite
        }
    } else if path.starts_with(tollgate_orders::ORDER_BASE_PATH) {
        if read {
            Access::OrderRead
        } else {
            Access::OrderWrite
        }
    } else if [
        tollgate_orders::PRODUCT_BASE_PATH,
        tollgate_orders::SERVICE_BASE_PATH,
        tollgate_orders::SERVICE_ORDER_BASE_PATH,
    ]
    .iter()
    .any(|root| path.starts_with(root))
    {
        if read {
            Access::ProductInventoryRead
        } else {
            // No write route exists there: the router answers 404 or 405.
            Access::OrderWrite
        }
    } else if path.starts_with("/tmf-api/resourceInventoryManagement/") {
        if read {
            Access::ResourceRead
        } else if path.ends_with("/reservation") || path.ends_with("/release") {
            Access::ResourceReserve
        } else {
            Access::ResourceWrite
        }
    } else if method == Method::GET || method == Method::HEAD {
        Access::CatalogueRead
    } else {
        Access::CatalogueWrite
    }
}

fn unauthorized(error: &'static str, message: &str) -> ApiError {
    let challenge = format!("Bearer realm=\"tollgate\", error=\"{error}\"");
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Authorization", message).with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer")),
    )
}

/// The middleware: authenticates, authorises and rate-limits, then runs the handler.
pub(crate) async fn authenticate(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(presented) = presented else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Authorization", "a bearer token is required")
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tollgate\""))
            .into_response();
    };
    let token = match state.store.check_token(presented, jiff::Timestamp::now()).await {
        Ok(TokenCheck::Valid(token)) => token,
        Ok(TokenCheck::Expired(token)) => {
            tracing::debug!(token_id = token.id, "api: expired token refused");
            return unauthorized("invalid_token", "the token has expired").into_response();
        }
        Ok(TokenCheck::Revoked(token)) => {
            tracing::debug!(token_id = token.id, "api: revoked token refused");
            return unauthorized("invalid_token", "the token was revoked").into_response();
        }
        Ok(_) => return unauthorized("invalid_token", "unknown token").into_response(),
        Err(error) => return ApiError::from(error).into_response(),
    };
    let access = access_of(request.method(), request.uri().path());
    if let Err(retry_after_seconds) = state.limiter.check(token.id) {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rateLimited",
            "Authorization",
            "too many requests for this token",
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds))
        .into_response();
    }
    if !allowed(token.role, access) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Authorization",
            format!("a {} token may not {access:?}", token.role),
        )
        .into_response();
    }
    request.extensions_mut().insert(Caller {
        token_id: token.id,
        name: token.name,
        role: token.role,
        scope_root: token.scope_account_id,
    });
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finance_and_administrators_start_bill_runs_read_only_tokens_watch_them() {
        let base = crate::billruns::BASE_PATH;
        assert_eq!(access_of(&Method::POST, &format!("{base}/billRun")), Access::BillingWrite);
        assert_eq!(access_of(&Method::GET, &format!("{base}/billRun/2026-11")), Access::BillingRead);
        for role in Role::ALL {
            assert_eq!(allowed(role, Access::BillingWrite), matches!(role, Role::Admin | Role::Finance), "{role}");
            assert_eq!(
                allowed(role, Access::BillingRead),
                matches!(role, Role::Admin | Role::Finance | Role::ReadOnly),
                "{role}"
            );
        }
    }

    #[test]
    fn care_administrators_and_partners_set_thresholds_every_role_but_the_product_manager_reads_them() {
        let base = crate::thresholds::BASE_PATH;
        assert_eq!(access_of(&Method::POST, &format!("{base}/threshold")), Access::ThresholdWrite);
        assert_eq!(access_of(&Method::DELETE, &format!("{base}/threshold/t1")), Access::ThresholdWrite);
        assert_eq!(access_of(&Method::GET, &format!("{base}/crossing")), Access::ThresholdRead);
        for role in Role::ALL {
            let writes = matches!(role, Role::Admin | Role::Care | Role::Partner);
            assert_eq!(allowed(role, Access::ThresholdWrite), writes, "{role}");
            assert_eq!(allowed(role, Access::ThresholdRead), role != Role::ProductManager, "{role}");
        }
    }

    #[test]
    fn admin_and_product_managers_write_the_catalogue_only_admin_reads_the_audit_trail() {
        for role in Role::ALL {
            assert!(allowed(role, Access::CatalogueRead));
            assert_eq!(allowed(role, Access::CatalogueWrite), matches!(role, Role::Admin | Role::ProductManager));
            assert_eq!(allowed(role, Access::AuditRead), role == Role::Admin);
        }
        assert_eq!(
            access_of(&Method::PATCH, "/tmf-api/productCatalogManagement/v4/category/x"),
            Access::CatalogueWrite
        );
        assert_eq!(access_of(&Method::GET, "/tmf-api/audit/v1/auditRecord"), Access::AuditRead);
    }

    #[test]
    fn finance_and_administrators_record_payments_partners_within_their_hierarchy() {
        let payments = "/tmf-api/paymentManagement/v4/payment";
        assert_eq!(access_of(&Method::POST, payments), Access::PaymentWrite);
        assert_eq!(access_of(&Method::GET, &format!("{payments}/p1")), Access::PaymentRead);
        for role in Role::ALL {
            let writes = matches!(role, Role::Admin | Role::Finance | Role::Partner);
            assert_eq!(allowed(role, Access::PaymentWrite), writes, "{role}");
            assert_eq!(allowed(role, Access::PaymentRead), writes || role == Role::ReadOnly, "{role}");
        }
    }

    #[test]
    fn the_customer_and_account_role_table() {
        use Access::*;
        // The tables of README.md, column by column.
        let table = [
            (Role::Admin, [true, true, true, true, true, true, true, true]),
            (Role::Care, [true, true, true, true, true, true, true, true]),
            (Role::Finance, [false, false, false, true, true, true, false, true]),
            (Role::ReadOnly, [true, false, false, true, false, true, false, false]),
            (Role::Partner, [true, true, false, true, true, true, true, false]),
            (Role::ProductManager, [false, false, false, false, false, false, false, false]),
        ];
        assert_eq!(table.len(), Role::ALL.len(), "every role has a row");
        for (role, expected) in table {
            let found =
                [CustomerRead, CustomerWrite, CustomerPrivacy, AccountRead, AccountWrite, BalanceRead, TopUp, Adjust]
                    .map(|a| allowed(role, a));
            assert_eq!(found, expected, "{role}");
        }
        let prepay = "/tmf-api/prepayBalanceManagement/v4";
        assert_eq!(access_of(&Method::GET, &format!("{prepay}/bucket?partyAccount.id=x")), BalanceRead);
        assert_eq!(access_of(&Method::POST, &format!("{prepay}/topupBalance")), TopUp);
        assert_eq!(access_of(&Method::POST, &format!("{prepay}/adjustBalance")), Adjust);
        let customer = "/tmf-api/customerManagement/v4/customer/x";
        assert_eq!(access_of(&Method::GET, &format!("{customer}/export")), CustomerPrivacy);
        assert_eq!(access_of(&Method::POST, &format!("{customer}/anonymise")), CustomerPrivacy);
        assert_eq!(access_of(&Method::PATCH, customer), CustomerWrite);
        assert_eq!(access_of(&Method::PATCH, "/tmf-api/accountManagement/v4/billingAccount/x"), AccountWrite);
    }

    #[test]
    fn the_resource_inventory_role_table() {
        use Access::*;
        let table = [
            (Role::Admin, [true, true, true]),
            (Role::Care, [true, true, false]),
            (Role::Finance, [false, false, false]),
            (Role::ReadOnly, [true, false, false]),
            (Role::Partner, [false, false, false]),
        ];
        for (role, expected) in table {
            assert_eq!([ResourceRead, ResourceReserve, ResourceWrite].map(|a| allowed(role, a)), expected, "{role}");
        }
        let base = "/tmf-api/resourceInventoryManagement/v4";
        assert_eq!(access_of(&Method::GET, &format!("{base}/resource/msisdn-1")), ResourceRead);
        assert_eq!(access_of(&Method::POST, &format!("{base}/reservation")), ResourceReserve);
        assert_eq!(access_of(&Method::POST, &format!("{base}/resource/msisdn-1/release")), ResourceReserve);
        assert_eq!(access_of(&Method::POST, &format!("{base}/resource/msisdn-1/assign")), ResourceWrite);
        assert_eq!(access_of(&Method::POST, &format!("{base}/resource/msisdn-1/unassign")), ResourceWrite);
        assert_eq!(access_of(&Method::PATCH, &format!("{base}/resource/msisdn-1")), ResourceWrite);
        assert_eq!(access_of(&Method::POST, &format!("{base}/resource")), ResourceWrite);
    }

    #[test]
    fn the_hub_role_table() {
        use Access::*;
        let table = [
            (Role::Admin, [true, true, true, true]),
            (Role::Care, [false, true, true, false]),
            (Role::Finance, [false, false, true, false]),
            (Role::ReadOnly, [false, false, false, false]),
            (Role::Partner, [false, false, false, false]),
        ];
        for (role, expected) in table {
            let found = [CatalogueHub, CustomerHub, AccountHub, HubDeliveries].map(|a| allowed(role, a));
            assert_eq!(found, expected, "{role}");
        }
        for method in [Method::GET, Method::POST, Method::DELETE] {
            assert_eq!(access_of(&method, "/tmf-api/customerManagement/v4/hub"), CustomerHub);
            assert_eq!(access_of(&method, "/tmf-api/customerManagement/v4/hub/x"), CustomerHub);
            assert_eq!(access_of(&method, "/tmf-api/accountManagement/v4/hub/x"), AccountHub);
            assert_eq!(access_of(&method, "/tmf-api/productCatalogManagement/v4/hub/x"), CatalogueHub);
            assert_eq!(access_of(&method, "/tmf-api/hub/v1/delivery"), HubDeliveries);
        }
        assert_eq!(access_of(&Method::GET, "/tmf-api/customerManagement/v4/hubby"), CustomerRead);
    }
}
