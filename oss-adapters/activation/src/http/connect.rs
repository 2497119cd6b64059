//! The HTTP adapter's connector: TCP (TCP_NODELAY, connect bounded by the attempt's
//! timeout) and, for an `https://` gateway, TLS with rustls (ring provider, TLS 1.3 and
//! 1.2, the gateway's certificate checked against the configured CA file and the URL's
//! host, an optional client certificate, ALPN `http/1.1`). hyper-util's pooled client
//! calls it for each new connection; idle ones are reused.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::{ActivationError, HttpConfig};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens connections to the gateway, with TLS when the URL is `https://`.
#[derive(Clone)]
pub(crate) struct GatewayConnector {
    tcp: HttpConnector,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for GatewayConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConnector").field("tls", &self.tls.is_some()).finish()
    }
}

impl GatewayConnector {
    pub(crate) fn new(config: &HttpConfig, https: bool) -> Result<GatewayConnector, ActivationError> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_millis(config.timeout_ms)));
        let tls = if https { Some(TlsConnector::from(client_config(config)?)) } else { None };
        Ok(GatewayConnector { tcp, tls })
    }
}

fn tls_error(path: &Path, what: &str, err: impl std::fmt::Display) -> ActivationError {
    ActivationError::Tls(format!("{what} {}: {err}", path.display()))
}

/// The certificates of a PEM file; none is an error.
fn pem_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, ActivationError> {
    match CertificateDer::pem_file_iter(path).and_then(Iterator::collect::<Result<Vec<_>, _>>) {
        Ok(chain) if chain.is_empty() => Err(tls_error(path, what, "no CERTIFICATE in the file")),
        Ok(chain) => Ok(chain),
        Err(err) => Err(tls_error(path, what, err)),
    }
}

/// The ring provider, as the rest of Tollgate uses it (see `tollgate_oss_adapters::tls`);
/// rustls 0.23.48 deprecates it because it has no post-quantum key exchange.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(config: &HttpConfig) -> Result<Arc<ClientConfig>, ActivationError> {
    let Some(ca_file) = &config.tls_ca_file else {
        return Err(ActivationError::config("http.tls_ca_file", "an https:// URL needs the gateway's CA file"));
    };
    let mut roots = RootCertStore::empty();
    for certificate in pem_certificates(ca_file, "gateway CA")? {
        roots.add(certificate).map_err(|err| tls_error(ca_file, "gateway CA", err))?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| ActivationError::Tls(err.to_string()))?
        .with_root_certificates(roots);
    let mut client = match (&config.tls_client_cert_file, &config.tls_client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = pem_certificates(cert, "client certificate")?;
            let private = PrivateKeyDer::from_pem_file(key).map_err(|err| tls_error(key, "client key", err))?;
            builder.with_client_auth_cert(chain, private).map_err(|err| {
                ActivationError::Tls(format!("client certificate {} and key {}: {err}", cert.display(), key.display()))
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(client))
}

/// A connection to the gateway: plain TCP or TLS over TCP.
#[derive(Debug)]
pub(crate) enum GatewayStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for GatewayStream {
    fn connected(&self) -> Connected {
        match self {
            GatewayStream::Plain(tcp) => tcp.connected(),
            GatewayStream::Tls(tls) => tls.get_ref().0.connected(),
        }
    }
}

impl AsyncRead for GatewayStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GatewayStream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            GatewayStream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for GatewayStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            GatewayStream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            GatewayStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GatewayStream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            GatewayStream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GatewayStream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            GatewayStream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tower_service::Service<Uri> for GatewayConnector {
    type Response = TokioIo<GatewayStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.tcp.call(uri.clone());
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            let Some(tls) = tls else { return Ok(TokioIo::new(GatewayStream::Plain(tcp))) };
            let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(host.to_owned())?;
            let stream = tls.connect(name, tcp).await?;
            Ok(TokioIo::new(GatewayStream::Tls(Box::new(stream))))
        })
    }
}
