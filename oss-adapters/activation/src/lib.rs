//! Network activation: how a provisioning workflow tells the network about a subscriber.
//! [`Activator`] is the seam: an [`ActivationRequest`] (request id = idempotency key,
//! operation, identities, service profile, target network elements, SIM keys as
//! [`Secret`]s) in, an [`ActivationOutcome`] out (done, transient: retry later, permanent:
//! compensate). Two adapters implement it: [`HttpActivator`] (HTTP/JSON to a provisioning
//! gateway, retries with backoff, pooled connections, TLS) and [`SpoolActivator`] (command
//! files in a directory a gateway picks up). [`ActivationConfig`] selects one from TOML;
//! `testing` (feature `testing`) holds a fake network element, a real HTTP server. The wire
//! contracts are in README.md. The HTTP adapter also delivers short messages to an SMS
//! gateway ([`SmsGateway`]: threshold notifications).
#![forbid(unsafe_code)]

mod config;
mod error;
pub mod http;
mod outcome;
mod request;
mod secret;
mod sms;
pub mod spool;
#[cfg(feature = "testing")]
pub mod testing;
mod wire;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use config::{
    ActivationConfig, GatewayAuth, HttpConfig, SpoolConfig, MAX_ATTEMPTS, MAX_BACKOFF_MS, MAX_CONFIG_BYTES,
    MAX_IDLE_CONNECTIONS, MAX_IDLE_TIMEOUT_MS, MAX_POLL_INTERVAL_MS, MAX_RESULT_TIMEOUT_MS, MAX_TIMEOUT_MS,
};
pub use error::ActivationError;
pub use http::HttpActivator;
pub use outcome::ActivationOutcome;
pub use request::{
    ActivationRequest, Characteristic, ElementKind, Iccid, Imsi, Msisdn, NetworkElement, Operation, RequestId,
    ServiceProfile, SimSecrets, Subscriber, MAX_ADDRESS_BYTES, MAX_CHARACTERISTICS, MAX_NAME_BYTES,
    MAX_REQUEST_ID_BYTES, MAX_TARGETS,
};
pub use secret::{Secret, REDACTED};
pub use sms::{SmsGateway, SmsMessage, MAX_SMS_RECIPIENTS, MAX_SMS_TEXT_CHARS};
pub use spool::SpoolActivator;
pub use wire::COMMAND_VERSION;

/// What [`Activator::activate`] returns: a boxed future, so adapters can be chosen at run
/// time (`Arc<dyn Activator>`); one allocation per activation is nothing beside a network
/// round trip.
pub type ActivationFuture<'a> = Pin<Box<dyn Future<Output = ActivationOutcome> + Send + 'a>>;

/// Carries an activation to the network.
///
/// Contract for implementations: calling `activate` again with a request of the same id
/// is safe and, once the first call is done, answers `Done` again (the id is the
/// idempotency key, passed to the network so it can de-duplicate; "already done" is
/// success). Dropping the future part-way is safe for the same reason. Nothing here logs
/// SIM keys or credentials.
pub trait Activator: Send + Sync + std::fmt::Debug {
    fn activate<'a>(&'a self, request: &'a ActivationRequest) -> ActivationFuture<'a>;

    /// Whether the gateway could be reached by the last call that ended, for a fault
    /// watcher (an alarm while it cannot); `None` when the adapter does not tell or no
    /// call has ended yet.
    fn health(&self) -> Option<GatewayHealth> {
        None
    }
}

impl<A: Activator + ?Sized> Activator for Arc<A> {
    fn activate<'a>(&'a self, request: &'a ActivationRequest) -> ActivationFuture<'a> {
        (**self).activate(request)
    }

    fn health(&self) -> Option<GatewayHealth> {
        (**self).health()
    }
}

/// What an adapter last saw of its gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayHealth {
    /// The gateway: the `host:port` of the HTTP adapter's URL.
    pub name: String,
    /// Why the last call that ended could not reach it (every attempt failed to connect,
    /// was cut off or timed out); `None` when it reached it, whatever the answer.
    pub unreachable: Option<String>,
}

/// The adapter a configuration selects.
pub fn build(config: &ActivationConfig) -> Result<Arc<dyn Activator>, ActivationError> {
    Ok(match config {
        ActivationConfig::Http(http) => Arc::new(HttpActivator::new(http)?),
        ActivationConfig::Spool(spool) => Arc::new(SpoolActivator::new(spool)?),
    })
}
