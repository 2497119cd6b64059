//! Network-facing adapters of Tollgate. Each protocol is one folder with the same shape
//! (codec, dictionary or schema, mapping onto the engine API, server).

#![forbid(unsafe_code)]

pub mod admin;
pub mod diameter;
mod error;
pub mod grpc;
pub mod limits;
pub mod metrics;
pub mod nchf;
pub mod tls;

pub use error::AdapterError;
