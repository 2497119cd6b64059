//! gRPC (tonic) over the engine API, for internal systems and tests, with a streaming
//! debit call for high-rate clients. Every call carries `authorization: Bearer <token>`.

pub mod server;

/// Code generated from `proto/tollgate.proto`.
#[allow(missing_docs, missing_debug_implementations, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("tollgate.v1");
}
