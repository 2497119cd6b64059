//! The one error type of the adapters crate: what stops a front-end from serving. A bad
//! message from a peer is never an error here: it gets an answer (Result-Code,
//! ProblemDetails, gRPC status) and the server goes on.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// The bundled Nchf request schema does not compile (a build defect).
    #[error("the bundled ChargingDataRequest schema is unusable: {0}")]
    Schema(String),
    /// Listening or serving on a socket failed.
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A TLS certificate, key or CA file is unusable (the message names the file).
    #[error("{0}")]
    Tls(String),
    /// The NRF public key for access tokens is unusable (the message names the file).
    #[error("{0}")]
    AccessTokenKey(String),
    /// The gRPC transport failed.
    #[error("grpc: {0}")]
    Grpc(#[from] tonic::transport::Error),
}
