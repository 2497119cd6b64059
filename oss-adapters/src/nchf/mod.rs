//! 5G CHF converged charging: `Nchf_ConvergedCharging` v3 (3GPP TS 32.291 Release 17),
//! JSON over HTTP/2 (and HTTP/1.1). Create / update / release of charging data map onto
//! the engine's session API; a request is validated against the specification's own
//! schema (bundled from the OpenAPI files by `scripts/bundle-nchf-schema.py`) before it is
//! read (every `format` it uses checked: `formats.rs`), and errors are ProblemDetails.
//! Optionally over TLS (mutual with a client CA: `crate::tls`) and with NRF-issued OAuth2
//! access tokens required (`oauth.rs`).

pub mod formats;
pub mod model;
pub mod oauth;
pub mod server;
