//! One delivery attempt over HTTP/1.1 (hyper's client connection, over tokio's TCP and,
//! for `https://`, rustls with ring and the Mozilla roots of `webpki-roots`): connect
//! within the connect timeout, send the POST and read the status line and headers within
//! the request timeout, and close. The answer's body is not read. One connection per
//! attempt: no pool, so a listener that stops answering holds nothing but its own
//! attempt, and no state is shared between listeners.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::{HubError, Result};
use crate::listener::Callback;

/// What the listener answered: its status and, if it sent one, how long it asked to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
}

/// Sends deliveries.
#[derive(Clone)]
pub(crate) struct HttpClient {
    tls: TlsConnector,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// The Mozilla root certificates (`webpki-roots`).
pub(crate) fn public_roots() -> RootCertStore {
    RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

/// ring, the workspace's crypto provider (rustls deprecates it for lacking post-quantum
/// key exchange, which needs aws-lc-rs and cmake; oss-adapters' `tls::provider` says more).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl HttpClient {
    /// A client trusting `roots` for `https://` callbacks.
    pub(crate) fn new(
        roots: RootCertStore,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<HttpClient> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| HubError::Config { reason: format!("TLS: {error}") })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(HttpClient { tls: TlsConnector::from(Arc::new(config)), connect_timeout, request_timeout })
    }

    /// POSTs `body` to `callback` with `headers` (and `Host`, `Content-Type:
    /// application/json`, `User-Agent`). `Err` says why no answer came: the connection,
    /// TLS, or a timeout.
    pub(crate) async fn post(
        &self,
        callback: &Callback,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Bytes,
    ) -> Result<Answer, String> {
        let host = if callback.host.contains(':') { format!("[{}]", callback.host) } else { callback.host.clone() };
        let default_port = if callback.https { 443 } else { 80 };
        let host_header = if callback.port == default_port { host } else { format!("{host}:{}", callback.port) };
        let mut request = Request::post(callback.target.as_str())
            .header(HOST, host_header)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("tollgate-hub/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))
            .map_err(|error| format!("request: {error}"))?;
        request.headers_mut().extend(headers);
        // The host's addresses, less those a callback may not reach (a name that resolves
        // to a link-local address, now or after registration).
        let connect = async {
            let addresses: Vec<std::net::SocketAddr> = tokio::net::lookup_host((callback.host.as_str(), callback.port))
                .await?
                .filter(|address| crate::listener::refused_address(address.ip()).is_none())
                .collect();
            if addresses.is_empty() {
                return Err(std::io::Error::other("the host has no address a callback may reach"));
            }
            TcpStream::connect(addresses.as_slice()).await
        };
        let stream = match tokio::time::timeout(self.connect_timeout, connect).await {
            Err(_) => return Err(format!("connect timed out after {:?}", self.connect_timeout)),
            Ok(Err(error)) => return Err(format!("connect: {error}")),
            Ok(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);
        let exchange = async {
            if callback.https {
                let name = ServerName::try_from(callback.host.clone()).map_err(|error| format!("TLS name: {error}"))?;
                let stream = self.tls.connect(name, stream).await.map_err(|error| format!("TLS: {error}"))?;
                exchange(TokioIo::new(stream), request).await
            } else {
                exchange(TokioIo::new(stream), request).await
            }
        };
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Err(_) => Err(format!("no answer within {:?}", self.request_timeout)),
            Ok(answer) => answer,
        }
    }
}

/// Sends one request on a fresh HTTP/1.1 connection and reads the answer's head.
async fn exchange<T>(io: T, request: Request<Full<Bytes>>) -> Result<Answer, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|error| format!("HTTP: {error}"))?;
    let connection = tokio::spawn(connection);
    let answer = sender.send_request(request).await.map_err(|error| format!("HTTP: {error}"));
    connection.abort();
    let answer = answer?;
    let retry_after = answer
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, Timestamp::now()));
    Ok(Answer { status: answer.status().as_u16(), retry_after })
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3); a date in the past
/// is no wait.
pub(crate) fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    Some(Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = Timestamp::from_second(784_111_777).expect("1994-11-06T08:49:37Z");
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
