//! The Diameter server: one task per peer connection over TCP (SCTP is not used), the
//! peer state machine of RFC 6733 §5 in its server role (CER/CEA first, DWR/DWA,
//! DPR/DPA), and credit-control requests handed to the engine without blocking: many
//! CCRs may be in flight on one connection and their answers go out as they are ready.
//!
//! Over TLS (`serve_tls`, RFC 6733 §13): TLS from the first byte on a listener of its own
//! (port 5658 by convention), not negotiated in the CER; the peer must present a
//! certificate from the configured CA (Diameter nodes authenticate mutually), and the
//! Origin-Host of its CER must be a DNS name of that certificate (subjectAltName), else
//! the CEA is DIAMETER_UNKNOWN_PEER. The same connection handling runs over both.
//!
//! A malformed message gets an answer with the Result-Code the RFC names and Failed-AVP
//! where it applies; it never ends the connection unless the stream cannot be re-framed
//! (bad version or length), and never the process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tollgate_engine::Engine;

use super::ccr;
use super::codec::{frame, Avp, DecodeError, Frame, Message, FLAG_ERROR, FLAG_REQUEST, HEADER_LEN};
use super::dictionary::code;
use super::result_code as rc;

pub const COMMAND_CAPABILITIES_EXCHANGE: u32 = 257;
pub const COMMAND_DEVICE_WATCHDOG: u32 = 280;
pub const COMMAND_DISCONNECT_PEER: u32 = 282;
/// Relay application id: a peer advertising it accepts every application.
const APPLICATION_RELAY: u32 = 0xffff_ffff;

#[derive(Debug, Clone)]
pub struct DiameterConfig {
    pub origin_host: String,
    pub origin_realm: String,
    /// Origin-Host values allowed to connect; empty: any peer.
    pub allowed_peers: Vec<String>,
    /// A connection silent for this long is closed (3 × Tw).
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Credit-control requests one connection may have in flight.
    pub max_in_flight: usize,
}

impl Default for DiameterConfig {
    fn default() -> DiameterConfig {
        DiameterConfig {
            origin_host: "tollgate.local".to_owned(),
            origin_realm: "local".to_owned(),
            allowed_peers: Vec::new(),
            idle_timeout: Duration::from_secs(90),
            max_connections: 1024,
            max_in_flight: 4096,
        }
    }
}

/// Accepts connections (plain TCP) until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    config: Arc<DiameterConfig>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    accept(listener, None, engine, config, shutdown).await;
}

/// Accepts Diameter-over-TLS connections until `shutdown` completes. `tls` should require
/// client certificates (a client CA): the Origin-Host check relies on one.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    engine: Arc<Engine>,
    config: Arc<DiameterConfig>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    accept(listener, Some(tokio_rustls::TlsAcceptor::from(tls)), engine, config, shutdown).await;
}

async fn accept(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    engine: Arc<Engine>,
    config: Arc<DiameterConfig>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let connections = Arc::new(Semaphore::new(config.max_connections));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                        tracing::warn!(%remote, "diameter connection refused: connection limit reached");
                        continue;
                    };
                    let (engine, config, tls) = (Arc::clone(&engine), Arc::clone(&config), tls.clone());
                    tokio::spawn(async move {
                        let _permit = permit;
                        let _ = stream.set_nodelay(true);
                        let local = stream.local_addr().unwrap_or(remote);
                        let Some(tls) = tls else {
                            let (reader, writer) = stream.into_split();
                            connection(reader, writer, Remote { local, remote, certificate: None }, engine, config)
                                .await;
                            return;
                        };
                        let Some(stream) = crate::tls::handshake(&tls, stream, remote, "diameter").await else {
                            return;
                        };
                        let certificate = crate::tls::peer_certificate(&stream);
                        let (reader, writer) = tokio::io::split(stream);
                        connection(reader, writer, Remote { local, remote, certificate }, engine, config).await;
                    });
                }
                Err(err) => tracing::warn!(error = %err, "diameter accept failed"),
            },
        }
    }
}

/// Who is at the other end of a connection.
struct Remote {
    local: SocketAddr,
    remote: SocketAddr,
    /// The leaf certificate the peer authenticated with over TLS.
    certificate: Option<CertificateDer<'static>>,
}

struct Peer {
    engine: Arc<Engine>,
    config: Arc<DiameterConfig>,
    local: SocketAddr,
    certificate: Option<CertificateDer<'static>>,
    outbox: mpsc::Sender<Bytes>,
    in_flight: Arc<Semaphore>,
    open: bool,
}

/// Runs one peer connection over any byte stream (TCP or TLS), split into its halves.
async fn connection<R, W>(mut reader: R, writer: W, at: Remote, engine: Arc<Engine>, config: Arc<DiameterConfig>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Remote { local, remote, certificate } = at;
    let (outbox, writer_task) = spawn_writer(writer, 1024);
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
    let mut peer = Peer { engine, config: Arc::clone(&config), local, certificate, outbox, in_flight, open: false };
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    'read: loop {
        loop {
            match frame(&buffer) {
                Ok(Frame::Incomplete) => break,
                Ok(Frame::Message(length)) => {
                    let bytes = buffer.split_to(length).freeze();
                    if !peer.handle(bytes).await {
                        break 'read;
                    }
                }
                Err(err) => {
                    tracing::debug!(%remote, %err, "diameter stream cannot be framed; closing");
                    if buffer.len() >= HEADER_LEN {
                        let header = buffer.split_to(HEADER_LEN).freeze();
                        peer.send(protocol_error(&header, &err, &peer.config)).await;
                    }
                    break 'read;
                }
            }
        }
        match tokio::time::timeout(config.idle_timeout, reader.read_buf(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) => {
                tracing::info!(%remote, "diameter peer silent past the watchdog timeout; closing");
                break;
            }
        }
    }
    // Let in-flight answers drain before the writer closes.
    let _ = peer.in_flight.acquire_many(peer.config.max_in_flight as u32).await;
    drop(peer);
    let _ = writer_task.await;
}

/// Starts the task that writes a connection's outgoing messages (to a TCP or TLS write
/// half), coalescing whatever is queued into one write; returns the queue and the task
/// (it ends when the queue closes).
pub fn spawn_writer<W>(mut writer: W, capacity: usize) -> (mpsc::Sender<Bytes>, tokio::task::JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (outbox, mut queue) = mpsc::channel::<Bytes>(capacity);
    let task = tokio::spawn(async move {
        while let Some(first) = queue.recv().await {
            let mut batch = BytesMut::from(&first[..]);
            while let Ok(more) = queue.try_recv() {
                batch.extend_from_slice(&more);
            }
            // flush: over TLS the records may still be in the session (free over TCP).
            if writer.write_all(&batch).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    (outbox, task)
}

/// An answer built from a raw header, for a message that could not be decoded.
fn protocol_error(raw: &[u8], err: &DecodeError, config: &DiameterConfig) -> Message {
    let word = |at: usize| u32::from_be_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
    let protocol = (3000..4000).contains(&err.result_code);
    let mut answer = Message {
        flags: if protocol { FLAG_ERROR } else { 0 },
        command: word(4) & 0x00ff_ffff,
        application: word(8),
        hop_by_hop: word(12),
        end_to_end: word(16),
        avps: Vec::new(),
    };
    answer.avps.push(Avp::u32(code::RESULT_CODE, 0, err.result_code));
    answer.avps.push(Avp::utf8(code::ORIGIN_HOST, 0, &config.origin_host));
    answer.avps.push(Avp::utf8(code::ORIGIN_REALM, 0, &config.origin_realm));
    answer.avps.push(Avp { flags: 0, ..Avp::utf8(code::ERROR_MESSAGE, 0, &err.message) });
    if let Some(failed) = &err.failed_avp {
        answer.avps.push(Avp::new(code::FAILED_AVP, 0, failed.clone()));
    }
    answer
}

impl Peer {
    async fn send(&self, message: Message) {
        let _ = self.outbox.send(message.encode()).await;
    }

    fn base_answer(&self, request: &Message, result_code: u32) -> Message {
        let mut answer = request.answer();
        if (3000..4000).contains(&result_code) {
            answer.flags |= FLAG_ERROR;
        }
        if let Some(session) = request.avp(code::SESSION_ID, 0) {
            answer.avps.push(session.clone());
        }
        answer.avps.push(Avp::u32(code::RESULT_CODE, 0, result_code));
        answer.avps.push(Avp::utf8(code::ORIGIN_HOST, 0, &self.config.origin_host));
        answer.avps.push(Avp::utf8(code::ORIGIN_REALM, 0, &self.config.origin_realm));
        answer
    }

    /// Handles one framed message; returns false when the connection must close.
    async fn handle(&mut self, bytes: Bytes) -> bool {
        let message = match Message::decode(bytes.clone()) {
            Ok(message) => message,
            Err(err) => {
                if bytes[4] & FLAG_REQUEST != 0 {
                    self.send(protocol_error(&bytes, &err, &self.config)).await;
                }
                return true;
            }
        };
        if !message.is_request() {
            return true;
        }
        if let Some(unknown) = message.avps.iter().find(|a| a.is_mandatory() && a.definition().is_none()) {
            let mut answer = self.base_answer(&message, rc::AVP_UNSUPPORTED);
            answer.avps.push(Avp::new(code::FAILED_AVP, 0, unknown.encode()));
            self.send(answer).await;
            return true;
        }
        if let Some(bad) = message.avps.iter().find(|a| !a.has_valid_text()) {
            let mut answer = self.base_answer(&message, rc::INVALID_AVP_VALUE);
            answer.avps.push(Avp::new(code::FAILED_AVP, 0, bad.encode()));
            self.send(answer).await;
            return true;
        }
        match message.command {
            COMMAND_CAPABILITIES_EXCHANGE => self.capabilities_exchange(&message).await,
            _ if !self.open => {
                // RFC 6733 §5.3: nothing but CER before the capabilities exchange.
                self.send(self.base_answer(&message, rc::UNKNOWN_PEER)).await;
                false
            }
            COMMAND_DEVICE_WATCHDOG => {
                self.send(self.base_answer(&message, rc::SUCCESS)).await;
                true
            }
            COMMAND_DISCONNECT_PEER => {
                self.send(self.base_answer(&message, rc::SUCCESS)).await;
                false
            }
            ccr::COMMAND_CREDIT_CONTROL if message.application == ccr::APPLICATION_CREDIT_CONTROL => {
                self.credit_control(message).await;
                true
            }
            ccr::COMMAND_CREDIT_CONTROL => {
                self.send(self.base_answer(&message, rc::APPLICATION_UNSUPPORTED)).await;
                true
            }
            _ => {
                self.send(self.base_answer(&message, rc::COMMAND_UNSUPPORTED)).await;
                true
            }
        }
    }

    async fn capabilities_exchange(&mut self, cer: &Message) -> bool {
        let origin = cer.avp(code::ORIGIN_HOST, 0).and_then(Avp::as_str).unwrap_or("");
        let allowed = self.config.allowed_peers.is_empty() || self.config.allowed_peers.iter().any(|p| p == origin);
        let mut applications: Vec<u32> = cer.avps(code::AUTH_APPLICATION_ID, 0).filter_map(Avp::as_u32).collect();
        for vendor_specific in cer.avps(code::VENDOR_SPECIFIC_APPLICATION_ID, 0) {
            if let Ok(members) = vendor_specific.group() {
                applications
                    .extend(members.iter().filter(|a| a.code == code::AUTH_APPLICATION_ID).filter_map(Avp::as_u32));
            }
        }
        let common = applications.iter().any(|a| *a == ccr::APPLICATION_CREDIT_CONTROL || *a == APPLICATION_RELAY);
        let certified = self.certificate_names(origin);
        let result = if origin.is_empty() {
            rc::MISSING_AVP
        } else if !allowed || !certified {
            rc::UNKNOWN_PEER
        } else if !common {
            rc::NO_COMMON_APPLICATION
        } else {
            rc::SUCCESS
        };
        let mut cea = self.base_answer(cer, result);
        let address = match self.local.ip() {
            std::net::IpAddr::V4(v4) => [&[0u8, 1][..], &v4.octets()[..]].concat(),
            std::net::IpAddr::V6(v6) => [&[0u8, 2][..], &v6.octets()[..]].concat(),
        };
        cea.avps.push(Avp::new(code::HOST_IP_ADDRESS, 0, address));
        cea.avps.push(Avp::u32(code::VENDOR_ID, 0, 0));
        cea.avps.push(Avp { flags: 0, ..Avp::utf8(code::PRODUCT_NAME, 0, "Tollgate") });
        cea.avps.push(Avp::u32(code::AUTH_APPLICATION_ID, 0, ccr::APPLICATION_CREDIT_CONTROL));
        cea.avps.push(Avp { flags: 0, ..Avp::u32(code::FIRMWARE_REVISION, 0, 1) });
        self.send(cea).await;
        self.open = result == rc::SUCCESS;
        if !self.open {
            tracing::info!(peer = origin, result, allowed, certified, "diameter capabilities exchange refused");
        }
        self.open
    }

    /// Over TLS, whether the peer's certificate names `origin` (a DNS subjectAltName,
    /// wildcards as RFC 6125 allows them); over TCP, true.
    fn certificate_names(&self, origin: &str) -> bool {
        let Some(certificate) = &self.certificate else { return true };
        let Ok(name) = ServerName::try_from(origin) else { return false };
        webpki::EndEntityCert::try_from(certificate)
            .is_ok_and(|certificate| certificate.verify_is_valid_for_subject_name(&name).is_ok())
    }

    async fn credit_control(&self, message: Message) {
        let parsed =
            ccr::parse(&message, self.engine.now()).and_then(|ccr| ccr::to_request(&ccr).map(|request| (ccr, request)));
        let (parsed, request) = match parsed {
            Ok(found) => found,
            Err(refusal) => {
                let answer =
                    ccr::refusal_answer(&message, &refusal, &self.config.origin_host, &self.config.origin_realm);
                self.send(answer).await;
                return;
            }
        };
        let Ok(permit) = Arc::clone(&self.in_flight).acquire_owned().await else { return };
        let (reply, answered) = oneshot::channel();
        self.engine.submit(request, Box::new(move |answer| drop(reply.send(answer))));
        let (outbox, config) = (self.outbox.clone(), Arc::clone(&self.config));
        tokio::spawn(async move {
            let _permit = permit;
            let cca = match answered.await {
                Ok(Ok(answer)) => ccr::answer(&message, &parsed, &answer, &config.origin_host, &config.origin_realm),
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "engine failed to answer a CCR");
                    let refusal =
                        ccr::Refusal { result_code: rc::UNABLE_TO_COMPLY, failed_avp: None, message: String::new() };
                    ccr::refusal_answer(&message, &refusal, &config.origin_host, &config.origin_realm)
                }
                Err(_) => return,
            };
            let _ = outbox.send(cca.encode()).await;
        });
    }
}
