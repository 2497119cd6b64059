//! TLS for the network front-ends: rustls with the ring provider, certificates and keys
//! read from PEM files (`rustls-pki-types`), mutual TLS against a configured client CA,
//! and a listener that completes handshakes beside the accept loop, so a slow or silent
//! client holds up nobody but itself.
//!
//! TLS 1.3 and 1.2 with rustls' default cipher suites (no TLS 1.1 or older, RFC 8996);
//! no post-quantum key exchange (see `provider`).
//! With a client CA every client must present a certificate chaining to it (`webpki`:
//! validity, key usage clientAuth where the certificate names extended key usages); a
//! client without one, or with one from another CA, is refused in the handshake. Revocation
//! lists are not read.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
pub use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::AdapterError;

/// A client that has not completed its handshake by then is disconnected.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress on one listener; past it, accepting waits for one to finish.
pub const MAX_PENDING_HANDSHAKES: usize = 256;
/// ALPN protocols of an HTTP server: HTTP/2 first, then HTTP/1.1.
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Where a server's certificate chain, private key and (for mutual TLS) client CA are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM: the server certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
    /// PEM: the CA certificates a client certificate must chain to. `None`: clients are
    /// not asked for a certificate.
    pub client_ca: Option<PathBuf>,
}

fn refused(path: &Path, what: &str, err: impl std::fmt::Display) -> AdapterError {
    AdapterError::Tls(format!("{what} {}: {err}", path.display()))
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, AdapterError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|err| refused(path, what, err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| refused(path, what, err))?;
    if chain.is_empty() {
        return Err(refused(path, what, "no CERTIFICATE in the file"));
    }
    Ok(chain)
}

/// The ring crypto provider every TLS configuration here uses. rustls 0.23.48 deprecates
/// it because ring has no post-quantum key exchange (X25519MLKEM768 needs aws-lc-rs, which
/// needs cmake and builds slowly): key exchange is X25519 or ECDHE P-256/P-384.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration from PEM files, offering `alpn` (empty: no ALPN). Every problem
/// (unreadable file, no certificate, key not matching, unusable CA) names the file.
pub fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, AdapterError> {
    let chain = certificates(&files.cert, "TLS certificate")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|err| match err {
        rustls_pki_types::pem::Error::NoItemsFound => {
            refused(&files.key, "TLS private key", "no PRIVATE KEY in the file")
        }
        err => refused(&files.key, "TLS private key", err),
    })?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| AdapterError::Tls(err.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(path, "TLS client CA")? {
                roots.add(certificate).map_err(|err| refused(path, "TLS client CA", err))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|err| refused(path, "TLS client CA", err))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|err| {
        AdapterError::Tls(format!("TLS certificate {} and key {}: {err}", files.cert.display(), files.key.display()))
    })?;
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Runs the TLS handshake on an accepted connection, bounded by `HANDSHAKE_TIMEOUT`.
/// A failure (no or untrusted client certificate, not TLS, timeout) is logged at DEBUG
/// only: anyone who can connect can cause one.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    remote: SocketAddr,
    server: &'static str,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(err)) => {
            tracing::debug!(%remote, server, error = %err, "TLS handshake refused");
            None
        }
        Err(_) => {
            tracing::debug!(%remote, server, "TLS handshake timed out");
            None
        }
    }
}

/// The leaf certificate a client presented, if any.
pub fn peer_certificate(stream: &TlsStream<TcpStream>) -> Option<CertificateDer<'static>> {
    stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(|c| c.clone().into_owned())
}

/// A TCP listener whose connections come out TLS-established (with TCP_NODELAY set), for
/// `axum::serve`. Handshakes run in their own tasks, at most `MAX_PENDING_HANDSHAKES` at
/// once; the accepting task ends when the listener is dropped.
#[derive(Debug)]
pub struct TlsListener {
    established: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// `server` names the front-end in logs.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>, server: &'static str) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (established, receiver) = mpsc::channel(MAX_PENDING_HANDSHAKES);
        let acceptor = TlsAcceptor::from(config);
        let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = Arc::clone(&pending).acquire_owned().await else { return };
                let (stream, remote) = tokio::select! {
                    () = established.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(err) => {
                            tracing::warn!(server, error = %err, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                // Without TCP_NODELAY small answers wait for the peer's delayed ACK (≈ 40 ms).
                let _ = stream.set_nodelay(true);
                let (acceptor, established) = (acceptor.clone(), established.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Some(tls) = handshake(&acceptor, stream, remote, server).await {
                        let _ = established.send((tls, remote)).await;
                    }
                });
            }
        });
        Ok(TlsListener { established: receiver, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.established.recv().await {
            Some(established) => established,
            // The accepting task only ends once this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
