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
//!
//! Watchdogs (RFC 3539): an open peer not heard from for Tw is sent a
//! Device-Watchdog-Request, again after each further Tw; any message from it is its
//! answer, and a peer silent for 3 × Tw is disconnected.
//!
//! Hostile peers: connections are limited in number (per listener and per remote
//! address) before anything is allocated for them; a connection must finish its
//! capabilities exchange, and each message, within a deadline of its own, so trickled
//! bytes keep no slot; a peer that takes no answers is disconnected after the write
//! timeout; and every message is charged its [`DiameterConfig::message_cost`] from its
//! connection's reserve or the pool all connections share as soon as its length is known,
//! before its bytes are buffered, until its answer is written. So memory is bounded by
//! the connections and the pool, whatever peers send (oss-adapters/README.md).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tollgate_engine::Engine;

use super::ccr;
use super::codec::{
    announced_len, Avp, DecodeError, Message, FLAG_ERROR, FLAG_PROXIABLE, FLAG_REQUEST, HEADER_LEN, MAX_MESSAGE_LEN,
};
use super::dictionary::code;
use super::peers;
use super::result_code as rc;
use crate::metrics;

pub const COMMAND_CAPABILITIES_EXCHANGE: u32 = 257;
pub const COMMAND_DEVICE_WATCHDOG: u32 = 280;
pub const COMMAND_DISCONNECT_PEER: u32 = 282;
/// Relay application id: a peer advertising it accepts every application.
const APPLICATION_RELAY: u32 = 0xffff_ffff;
use rc::TOO_BUSY;

/// Bytes of a connection's read buffer: messages up to this size are read into it; a
/// longer one grows it as its bytes arrive (never ahead of them), up to its announced
/// length, and the buffer returns to this size once the message is served.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Memory each connection may hold for its messages before it draws on the pool all
/// connections share ([`DiameterConfig::max_buffered_bytes`]): a well-behaved peer keeps
/// being served from it while others have spent the pool.
pub const CONNECTION_RESERVE_BYTES: usize = 64 * 1024;
/// Answers a connection may have queued for writing (each also holds its bytes).
pub const OUTBOX_CAPACITY: usize = 1024;
/// Queued answers are written together up to this many bytes per write.
pub const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// What serving one request costs besides its bytes: the answer's own AVPs (Result-Code,
/// Origin-Host and -Realm are added to it separately, Auth-Application-Id, …), the task,
/// the engine request and its channel slot.
pub const REQUEST_OVERHEAD_BYTES: usize = 2048;
/// Bytes one Multiple-Services-Credit-Control of an answer takes at most (Rating-Group,
/// Granted-Service-Unit, Validity-Time, Result-Code, Final-Unit-Indication: 88).
pub const GRANT_BYTES: usize = 96;
/// Most Multiple-Services-Credit-Control a CCR may carry (`ccr::parse` refuses more).
pub const MAX_GRANTS: usize = 64;
/// Pause after a failed accept (e.g. out of file descriptors) before accepting again, so
/// the loop does not spin.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Refused connections are logged at most once per this interval, with a count.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct DiameterConfig {
    pub origin_host: String,
    pub origin_realm: String,
    /// Origin-Host values allowed to connect; empty: any peer.
    pub allowed_peers: Vec<String>,
    /// Tw (RFC 3539 §3.4.1): after this long without a message from an open peer, a
    /// Device-Watchdog-Request is sent to it (and again after each further Tw of silence).
    pub watchdog_interval: Duration,
    /// A connection silent for this long is closed (3 × Tw: its watchdogs went unanswered).
    pub idle_timeout: Duration,
    /// A new connection (after its TLS handshake) must complete the capabilities exchange
    /// within this long, else it is closed: a peer trickling a CER keeps no slot.
    pub capabilities_timeout: Duration,
    /// Once the first byte of a message has arrived, the whole message must arrive within
    /// this long, else the connection is closed: trickled bytes keep no slot.
    pub message_timeout: Duration,
    /// A peer that takes none of its answers for this long (its receive window stays
    /// closed) is disconnected, and what was queued for it is freed.
    pub write_timeout: Duration,
    /// Connections open at once, per listener; more are closed as soon as accepted.
    pub max_connections: usize,
    /// Connections one remote IP address may hold at once, per listener.
    pub max_connections_per_address: usize,
    /// Credit-control requests one connection may have in flight.
    pub max_in_flight: usize,
    /// Bytes all connections of a listener together may hold, beyond their
    /// [`CONNECTION_RESERVE_BYTES`] each, for messages being received, requests being
    /// served and answers waiting to be written ([`DiameterConfig::message_cost`] each).
    /// At least the cost of one message of [`MAX_MESSAGE_LEN`].
    pub max_buffered_bytes: usize,
}

impl Default for DiameterConfig {
    fn default() -> DiameterConfig {
        DiameterConfig {
            origin_host: "tollgate.local".to_owned(),
            origin_realm: "local".to_owned(),
            allowed_peers: Vec::new(),
            watchdog_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            capabilities_timeout: Duration::from_secs(10),
            message_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_address: 64,
            max_in_flight: 4096,
            max_buffered_bytes: 96 << 20,
        }
    }
}

impl DiameterConfig {
    /// The memory a message of `length` bytes is charged from when its length is known
    /// until its answer is written: the message itself, what serving it copies out of it
    /// (the parsed request and the engine's request carry its Session-Id and identities:
    /// at most its length again), and its answer: at most its length once more (a
    /// Session-Id and a Failed-AVP copied back), a grant per Multiple-Services-Credit-Control
    /// (one takes at least 8 bytes of the request), Origin-Host, Origin-Realm and
    /// [`REQUEST_OVERHEAD_BYTES`]. Once the answer is encoded, only its length stays charged.
    pub fn message_cost(&self, length: usize) -> usize {
        3 * length
            + (length / 8).min(MAX_GRANTS) * GRANT_BYTES
            + REQUEST_OVERHEAD_BYTES
            + self.origin_host.len()
            + self.origin_realm.len()
    }

    /// The smallest `max_buffered_bytes` that serves every message: the cost of one of
    /// [`MAX_MESSAGE_LEN`].
    pub fn min_buffered_bytes(&self) -> usize {
        self.message_cost(MAX_MESSAGE_LEN)
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
    let addresses = Arc::new(Addresses::default());
    let pool_bytes = config.max_buffered_bytes.max(config.min_buffered_bytes()).min(Semaphore::MAX_PERMITS);
    let pool = Arc::new(Semaphore::new(pool_bytes));
    let mut refusals = Refusals::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    // Both limits are checked before anything is allocated for the
                    // connection; a refused one is closed at once.
                    let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                        refusals.note(remote, "connection limit reached");
                        continue;
                    };
                    let Some(slot) = Addresses::take(&addresses, remote.ip(), config.max_connections_per_address) else {
                        refusals.note(remote, "per-address connection limit reached");
                        continue;
                    };
                    let (engine, config, tls) = (Arc::clone(&engine), Arc::clone(&config), tls.clone());
                    let budget = Budget {
                        reserve: Arc::new(Semaphore::new(CONNECTION_RESERVE_BYTES)),
                        pool: Arc::clone(&pool),
                        pool_bytes,
                    };
                    tokio::spawn(async move {
                        let _permits = (permit, slot);
                        let _ = stream.set_nodelay(true);
                        let local = stream.local_addr().unwrap_or(remote);
                        let Some(tls) = tls else {
                            let (reader, writer) = stream.into_split();
                            let at = Remote { local, remote, certificate: None };
                            connection(reader, writer, at, engine, config, budget).await;
                            return;
                        };
                        let Some(stream) = crate::tls::handshake(&tls, stream, remote, "diameter").await else {
                            return;
                        };
                        let certificate = crate::tls::peer_certificate(&stream);
                        let (reader, writer) = tokio::io::split(stream);
                        connection(reader, writer, Remote { local, remote, certificate }, engine, config, budget).await;
                    });
                }
                Err(err) => {
                    // Out of file descriptors, typically: let connections close rather
                    // than spin on the error.
                    refusals.failed_accept(&err);
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
}

/// Counts events that anyone who can reach the port can cause, and says when to log one:
/// at most once per [`REFUSAL_LOG_INTERVAL`], with how many there were since the last
/// line (a flood must not become a flood of log lines).
#[derive(Debug, Default)]
struct Refusals {
    unlogged: u64,
    logged_at: Option<Instant>,
}

/// Messages refused for want of memory, on every listener.
static MEMORY_REFUSALS: Mutex<Refusals> = Mutex::new(Refusals::new());
/// Credit-control requests answered DIAMETER_TOO_BUSY because a shard's queue was full.
static OVERLOAD_REFUSALS: Mutex<Refusals> = Mutex::new(Refusals::new());

impl Refusals {
    const fn new() -> Refusals {
        Refusals { unlogged: 0, logged_at: None }
    }

    fn due(&mut self) -> Option<u64> {
        self.unlogged += 1;
        if self.logged_at.is_some_and(|at| at.elapsed() < REFUSAL_LOG_INTERVAL) {
            return None;
        }
        self.logged_at = Some(Instant::now());
        Some(std::mem::take(&mut self.unlogged))
    }

    fn note(&mut self, remote: SocketAddr, reason: &'static str) {
        if let Some(refused) = self.due() {
            tracing::warn!(%remote, reason, refused, "diameter connections refused (counting since the last such line)");
        }
    }

    fn failed_accept(&mut self, err: &std::io::Error) {
        if let Some(failed) = self.due() {
            tracing::warn!(error = %err, failed, "diameter accept failed (counting since the last such line)");
        }
    }
}

/// Connections per remote address.
#[derive(Debug, Default)]
struct Addresses(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in [`Addresses`], given back when dropped.
struct AddressSlot {
    addresses: Arc<Addresses>,
    address: IpAddr,
}

impl Addresses {
    fn take(addresses: &Arc<Addresses>, address: IpAddr, limit: usize) -> Option<AddressSlot> {
        let mut counts = addresses.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(address).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot { addresses: Arc::clone(addresses), address })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.addresses.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.address);
            }
        }
    }
}

/// Memory for one connection's messages: its own reserve first, then the pool all
/// connections of the listener share.
struct Budget {
    reserve: Arc<Semaphore>,
    pool: Arc<Semaphore>,
    pool_bytes: usize,
}

/// Bytes held for one message, from the moment its length is known until its answer
/// has been written.
#[derive(Debug, Default)]
struct Held {
    reserve: Option<OwnedSemaphorePermit>,
    pool: Option<OwnedSemaphorePermit>,
}

impl Budget {
    /// Holds `bytes` (at most the pool's size): from the reserve or the pool when free,
    /// else waits for whichever frees up first.
    async fn hold(&self, bytes: usize) -> Held {
        let bytes = bytes.min(self.pool_bytes);
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
        let fits_reserve = bytes <= CONNECTION_RESERVE_BYTES;
        if fits_reserve {
            if let Ok(permit) = Arc::clone(&self.reserve).try_acquire_many_owned(permits) {
                return Held { reserve: Some(permit), pool: None };
            }
        }
        if let Ok(permit) = Arc::clone(&self.pool).try_acquire_many_owned(permits) {
            return Held { reserve: None, pool: Some(permit) };
        }
        tokio::select! {
            Ok(permit) = Arc::clone(&self.reserve).acquire_many_owned(permits), if fits_reserve => {
                Held { reserve: Some(permit), pool: None }
            }
            Ok(permit) = Arc::clone(&self.pool).acquire_many_owned(permits) => Held { reserve: None, pool: Some(permit) },
            else => Held::default(),
        }
    }
}

impl Held {
    fn len(&self) -> usize {
        [&self.reserve, &self.pool].into_iter().flatten().map(OwnedSemaphorePermit::num_permits).sum()
    }

    /// Gives back all but `bytes` (the pool's first).
    fn shrink_to(&mut self, bytes: usize) {
        let mut excess = self.len().saturating_sub(bytes);
        for permit in [&mut self.pool, &mut self.reserve].into_iter().flatten() {
            let given = excess.min(permit.num_permits());
            drop(permit.split(given));
            excess -= given;
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

/// An encoded answer and the memory it holds until written.
type Outgoing = (Bytes, Held);

struct Peer {
    engine: Arc<Engine>,
    config: Arc<DiameterConfig>,
    local: SocketAddr,
    certificate: Option<CertificateDer<'static>>,
    outbox: mpsc::Sender<Outgoing>,
    in_flight: Arc<Semaphore>,
    open: bool,
    /// The Origin-Host of the accepted CER, when tracked (`peers.rs`).
    origin: Option<String>,
    /// The peer asked to disconnect (DPR): its connection ends in order.
    parting: bool,
}

/// Why a connection's read loop stopped waiting.
enum Wait {
    Read(std::io::Result<usize>),
    /// No capabilities exchange, no whole message, or silence, within its deadline.
    Deadline(&'static str),
    /// The writer stopped: the peer took no answers within the write timeout.
    WriterGone,
}

/// Runs one peer connection over any byte stream (TCP or TLS), split into its halves.
///
/// Deadlines: the capabilities exchange within `capabilities_timeout` of the start, each
/// message within `message_timeout` of its first byte, and some bytes within
/// `idle_timeout`; the writer gives up after `write_timeout` without progress. Memory:
/// each message is charged [`DiameterConfig::message_cost`] from `budget` as soon as its
/// length is known, before its bytes are buffered, until its answer is written.
async fn connection<R, W>(
    mut reader: R,
    writer: W,
    at: Remote,
    engine: Arc<Engine>,
    config: Arc<DiameterConfig>,
    budget: Budget,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Remote { local, remote, certificate } = at;
    let (outbox, writer_task) = spawn_answer_writer(writer, config.write_timeout);
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
    let mut peer = Peer {
        engine,
        config: Arc::clone(&config),
        local,
        certificate,
        outbox,
        in_flight,
        open: false,
        origin: None,
        parting: false,
    };
    // Why the connection ends, if not in order (a DPR).
    let mut lost = "closed without a Disconnect-Peer-Request";
    let connected = Instant::now();
    let mut heard = connected;
    // The last Device-Watchdog-Request sent, if one was since the peer was last heard.
    let mut watched: Option<Instant> = None;
    let mut buffer = BytesMut::with_capacity(READ_BUFFER_BYTES);
    // The memory held for the message at the head of the buffer, once its length is known,
    // and when its first byte arrived.
    let mut head: Option<Held> = None;
    let mut started: Option<Instant> = None;
    'read: loop {
        loop {
            let length = match announced_len(&buffer) {
                Ok(Some(length)) => length,
                Ok(None) => break,
                Err(err) => {
                    tracing::debug!(%remote, %err, "diameter stream cannot be framed; closing");
                    if buffer.len() >= HEADER_LEN {
                        let header = buffer.split_to(HEADER_LEN).freeze();
                        peer.send(protocol_error(&header, &err, &peer.config), Held::default()).await;
                    }
                    break 'read;
                }
            };
            let first_byte = *started.get_or_insert_with(Instant::now);
            if head.is_none() {
                let deadline = first_byte + config.message_timeout;
                match tokio::time::timeout_at(deadline, budget.hold(config.message_cost(length))).await {
                    Ok(held) => head = Some(held),
                    Err(_) => {
                        let due = MEMORY_REFUSALS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).due();
                        if let Some(refused) = due {
                            tracing::warn!(%remote, length, refused, "diameter messages refused: no memory for them within the message timeout (max_buffered_bytes); their connections closed (counting since the last such line)");
                        }
                        if buffer.len() >= HEADER_LEN {
                            let header = buffer.split_to(HEADER_LEN).freeze();
                            let busy = DecodeError {
                                result_code: TOO_BUSY,
                                offset: 0,
                                failed_avp: None,
                                message: format!("no memory for a message of {length} bytes"),
                            };
                            peer.send(protocol_error(&header, &busy, &peer.config), Held::default()).await;
                        }
                        break 'read;
                    }
                }
            }
            if buffer.len() < length {
                make_room(&mut buffer, length);
                break;
            }
            let bytes = buffer.split_to(length).freeze();
            let held = head.take().unwrap_or_default();
            let open = peer.handle(bytes, held).await;
            // What follows the message arrived with it at the latest.
            started = (!buffer.is_empty()).then(Instant::now);
            if length > READ_BUFFER_BYTES {
                // Back to the usual size after a long message (what follows it is kept).
                let mut usual = BytesMut::with_capacity(READ_BUFFER_BYTES.max(buffer.len()));
                usual.extend_from_slice(&buffer);
                buffer = usual;
            }
            if !open {
                break 'read;
            }
        }
        if buffer.capacity() == buffer.len() {
            make_room(&mut buffer, READ_BUFFER_BYTES);
        }
        let (deadline, why) = deadline(&config, peer.open, connected, heard, watched, started);
        let wait = tokio::select! {
            read = tokio::time::timeout_at(deadline, reader.read_buf(&mut buffer)) => match read {
                Ok(read) => Wait::Read(read),
                Err(_) => Wait::Deadline(why),
            },
            () = peer.outbox.closed() => Wait::WriterGone,
        };
        match wait {
            Wait::Read(Ok(0) | Err(_)) => break,
            Wait::Read(Ok(_)) => {
                heard = Instant::now();
                started.get_or_insert(heard);
            }
            Wait::Deadline("watchdog") => {
                // RFC 3539 §3.4.1: Tw without a message, a watchdog; its answer (any
                // message) is the peer heard again. Unanswered, the idle timeout closes.
                peer.send(peer.watchdog_request(), Held::default()).await;
                watched = Some(Instant::now());
            }
            Wait::Deadline("idle_timeout") => {
                tracing::info!(%remote, "diameter peer silent past the watchdog timeout; closing");
                lost = "silent past the watchdog timeout";
                break;
            }
            Wait::Deadline(why) => {
                // Anyone who can connect can cause this: DEBUG, not a log line per attempt.
                tracing::debug!(%remote, deadline = why, "diameter connection past its deadline; closing");
                break;
            }
            Wait::WriterGone => {
                tracing::debug!(%remote, "diameter peer takes no answers; closing");
                break;
            }
        }
    }
    // Let in-flight answers drain before the writer closes (the write timeout bounds it).
    let _ = peer.in_flight.acquire_many(peer.config.max_in_flight as u32).await;
    if let Some(origin) = peer.origin.take() {
        peers::disconnected(&origin, (!peer.parting).then_some(lost));
    }
    drop(peer);
    let _ = writer_task.await;
}

/// The next deadline of a connection's read loop and the setting it comes from: once
/// open, a watchdog Tw after the peer was last heard or the last watchdog sent since.
fn deadline(
    config: &DiameterConfig,
    open: bool,
    connected: Instant,
    heard: Instant,
    watched: Option<Instant>,
    started: Option<Instant>,
) -> (Instant, &'static str) {
    let mut next = (heard + config.idle_timeout, "idle_timeout");
    if open {
        let last = watched.map_or(heard, |sent| sent.max(heard));
        next = next.min((last + config.watchdog_interval, "watchdog"));
    }
    if !open {
        next = next.min((connected + config.capabilities_timeout, "capabilities_timeout"));
    }
    if let Some(first_byte) = started {
        next = next.min((first_byte + config.message_timeout, "message_timeout"));
    }
    next
}

/// Hop-by-Hop and End-to-End Identifiers for a request this node sends: the first
/// counts up from a random start; the second's high 12 bits are the low 12 bits of the
/// start time in seconds, its low 20 bits a counter (RFC 6733 §3).
fn next_identifiers() -> (u32, u32) {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static START: OnceLock<(u32, u32)> = OnceLock::new();
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let (hop_start, time_bits) = *START.get_or_init(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let seconds = u32::try_from(now.as_secs() & 0xfff).unwrap_or(0);
        (now.subsec_nanos() ^ std::process::id().rotate_left(16), seconds << 20)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (hop_start.wrapping_add(n), time_bits | (n & 0x000f_ffff))
}

/// Makes room in `buffer` to read more of a message of `length` bytes (or, with
/// [`READ_BUFFER_BYTES`], of whatever comes next): past [`READ_BUFFER_BYTES`] a buffer
/// grows at most to the message's length and at most to twice what it holds, so memory
/// follows the bytes that have arrived, never what a header announces.
fn make_room(buffer: &mut BytesMut, length: usize) {
    if buffer.capacity() > buffer.len() {
        return;
    }
    let wanted = length.max(READ_BUFFER_BYTES);
    if wanted <= READ_BUFFER_BYTES {
        // Reuses the buffer's memory when no message read from it is still held.
        buffer.reserve(READ_BUFFER_BYTES.saturating_sub(buffer.len()).max(1));
        return;
    }
    let capacity = wanted.min((2 * buffer.len()).max(READ_BUFFER_BYTES)).max(buffer.len() + 1);
    let mut grown = BytesMut::with_capacity(capacity);
    grown.extend_from_slice(buffer);
    *buffer = grown;
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

/// The server's writer: like [`spawn_writer`], but each answer carries the memory it
/// holds, released once written; batches stop at [`WRITE_BATCH_BYTES`] (a long answer is
/// written alone, not copied); and a write that makes no progress for `write_timeout`
/// ends the task, which closes the queue and frees what it held.
fn spawn_answer_writer<W>(
    mut writer: W,
    write_timeout: Duration,
) -> (mpsc::Sender<Outgoing>, tokio::task::JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (outbox, mut queue) = mpsc::channel::<Outgoing>(OUTBOX_CAPACITY);
    let task = tokio::spawn(async move {
        let mut next: Option<Outgoing> = None;
        loop {
            let (first, first_held) = match next.take() {
                Some(queued) => queued,
                None => match queue.recv().await {
                    Some(queued) => queued,
                    None => break,
                },
            };
            let mut written = vec![first_held];
            let bytes = if first.len() >= WRITE_BATCH_BYTES {
                first
            } else {
                let mut batch = BytesMut::from(&first[..]);
                while let Ok((more, held)) = queue.try_recv() {
                    if batch.len() + more.len() > WRITE_BATCH_BYTES {
                        next = Some((more, held));
                        break;
                    }
                    batch.extend_from_slice(&more);
                    written.push(held);
                }
                batch.freeze()
            };
            // flush: over TLS the records may still be in the session (free over TCP).
            let write = async { writer.write_all(&bytes).await.and(writer.flush().await) };
            if !matches!(tokio::time::timeout(write_timeout, write).await, Ok(Ok(()))) {
                break;
            }
            drop(written);
        }
        drop(queue);
        let _ = tokio::time::timeout(write_timeout, writer.shutdown()).await;
    });
    (outbox, task)
}

/// An answer built from a raw header, for a message that could not be decoded.
fn protocol_error(raw: &[u8], err: &DecodeError, config: &DiameterConfig) -> Message {
    let word = |at: usize| u32::from_be_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
    let protocol = (3000..4000).contains(&err.result_code);
    let mut answer = Message {
        // RFC 6733 §6.2: the answer's P bit is the request's.
        flags: (raw[4] & FLAG_PROXIABLE) | if protocol { FLAG_ERROR } else { 0 },
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
    /// Queues an answer with the memory held for its request, given back down to the
    /// answer's own length.
    async fn send(&self, message: Message, mut held: Held) {
        let bytes = message.encode();
        held.shrink_to(bytes.len());
        let _ = self.outbox.send((bytes, held)).await;
    }

    /// A Device-Watchdog-Request (RFC 6733 §5.5.1) from this node.
    fn watchdog_request(&self) -> Message {
        let (hop_by_hop, end_to_end) = next_identifiers();
        Message {
            flags: FLAG_REQUEST,
            command: COMMAND_DEVICE_WATCHDOG,
            application: 0,
            hop_by_hop,
            end_to_end,
            avps: vec![
                Avp::utf8(code::ORIGIN_HOST, 0, &self.config.origin_host),
                Avp::utf8(code::ORIGIN_REALM, 0, &self.config.origin_realm),
            ],
        }
    }

    /// The base answer refusing `request` with `refusal`'s Result-Code and Failed-AVP.
    fn refusal_answer(&self, request: &Message, refusal: ccr::Refusal) -> Message {
        let mut answer = self.base_answer(request, refusal.result_code);
        answer.avps.extend(refusal.failed_avp.map(|failed| Avp::new(code::FAILED_AVP, 0, failed)));
        answer
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
        answer.add_proxy_info(request);
        answer
    }

    /// Handles one framed message; returns false when the connection must close.
    /// `held` is the memory charged for it, passed on to its answer.
    async fn handle(&mut self, bytes: Bytes, held: Held) -> bool {
        let message = match Message::decode(bytes.clone()) {
            Ok(message) => message,
            Err(err) => {
                if bytes[4] & FLAG_REQUEST != 0 {
                    self.send(protocol_error(&bytes, &err, &self.config), held).await;
                }
                return true;
            }
        };
        if !message.is_request() {
            return true;
        }
        // Refusals before the command is served; a CCR's carries the CCA's own AVPs
        // (Auth-Application-Id, CC-Request-Type and -Number, RFC 4006 §3.2).
        let refusal = if let Some(unknown) = message.unknown_mandatory() {
            let message = format!("AVP {} (vendor {}) is not supported", unknown.code, unknown.vendor);
            Some(ccr::Refusal { result_code: rc::AVP_UNSUPPORTED, failed_avp: Some(unknown.encode()), message })
        } else {
            message.avps.iter().find(|a| !a.has_valid_text()).map(|bad| ccr::Refusal {
                result_code: rc::INVALID_AVP_VALUE,
                failed_avp: Some(bad.encode()),
                message: format!("AVP {} is not valid UTF-8", bad.code),
            })
        };
        if let Some(refusal) = refusal {
            let answer = if message.command == ccr::COMMAND_CREDIT_CONTROL {
                ccr::refusal_answer(&message, &refusal, &self.config.origin_host, &self.config.origin_realm)
            } else {
                self.refusal_answer(&message, refusal)
            };
            self.send(answer, held).await;
            return true;
        }
        match message.command {
            COMMAND_CAPABILITIES_EXCHANGE => self.capabilities_exchange(&message, held).await,
            _ if !self.open => {
                // RFC 6733 §5.3: nothing but CER before the capabilities exchange.
                self.send(self.base_answer(&message, rc::UNKNOWN_PEER), held).await;
                false
            }
            COMMAND_DEVICE_WATCHDOG => {
                // RFC 6733 §5.5.1: a DWR carries Origin-Host and Origin-Realm.
                let missing =
                    [code::ORIGIN_HOST, code::ORIGIN_REALM].into_iter().find(|avp| message.avp(*avp, 0).is_none());
                let answer = match missing {
                    None => self.base_answer(&message, rc::SUCCESS),
                    Some(avp) => self.refusal_answer(&message, ccr::missing(avp, 0, 0)),
                };
                self.send(answer, held).await;
                true
            }
            COMMAND_DISCONNECT_PEER => {
                self.parting = true;
                self.send(self.base_answer(&message, rc::SUCCESS), held).await;
                false
            }
            ccr::COMMAND_CREDIT_CONTROL if message.application == ccr::APPLICATION_CREDIT_CONTROL => {
                self.credit_control(message, held).await;
                true
            }
            ccr::COMMAND_CREDIT_CONTROL => {
                self.send(self.base_answer(&message, rc::APPLICATION_UNSUPPORTED), held).await;
                true
            }
            _ => {
                self.send(self.base_answer(&message, rc::COMMAND_UNSUPPORTED), held).await;
                true
            }
        }
    }

    async fn capabilities_exchange(&mut self, cer: &Message, held: Held) -> bool {
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
        // The 3GPP AVPs of TS 32.299 are read (Service-Information, Called-Party-Address, …).
        cea.avps.push(Avp::u32(code::SUPPORTED_VENDOR_ID, 0, super::dictionary::VENDOR_3GPP));
        cea.avps.push(Avp::u32(code::AUTH_APPLICATION_ID, 0, ccr::APPLICATION_CREDIT_CONTROL));
        cea.avps.push(Avp { flags: 0, ..Avp::u32(code::FIRMWARE_REVISION, 0, 1) });
        self.send(cea, held).await;
        self.open = result == rc::SUCCESS;
        if self.open && self.origin.is_none() && peers::connected(origin) {
            self.origin = Some(origin.to_owned());
        }
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

    /// Hands a CCR to the engine; its answer is queued when the engine has given it. The
    /// task waiting for it keeps no part of the request's bytes (see [`answer_header`]).
    async fn credit_control(&self, message: Message, held: Held) {
        let started = std::time::Instant::now();
        let parsed = ccr::parse(&message, self.engine.now(), self.engine.plans())
            .and_then(|ccr| ccr::to_request(&ccr).map(|request| (ccr, request)));
        let (parsed, request) = match parsed {
            Ok(found) => found,
            Err(refusal) => {
                let answer =
                    ccr::refusal_answer(&message, &refusal, &self.config.origin_host, &self.config.origin_realm);
                metrics::DIAMETER.record(refusal.result_code, started.elapsed());
                self.send(answer, held).await;
                return;
            }
        };
        let Ok(permit) = Arc::clone(&self.in_flight).acquire_owned().await else { return };
        let header = answer_header(&message);
        drop(message);
        let (reply, answered) = oneshot::channel();
        self.engine.submit(request, Box::new(move |answer| drop(reply.send(answer))));
        let (outbox, config) = (self.outbox.clone(), Arc::clone(&self.config));
        tokio::spawn(async move {
            let (_permit, mut held) = (permit, held);
            let cca = match answered.await {
                Ok(Ok(answer)) => {
                    metrics::DIAMETER.record(ccr::result_code(&answer.outcome), started.elapsed());
                    ccr::answer(&header, &parsed, &answer, &config.origin_host, &config.origin_realm)
                }
                // A shard's queue is full: nothing was applied; the client may send it
                // again, or to another server (RFC 6733 §7.1.3), and this thread never
                // waits for room.
                Ok(Err(tollgate_engine::EngineError::Overloaded { shard })) => {
                    metrics::DIAMETER.record(rc::TOO_BUSY, started.elapsed());
                    let due = OVERLOAD_REFUSALS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).due();
                    if let Some(refused) = due {
                        tracing::warn!(shard, refused, "credit-control requests answered DIAMETER_TOO_BUSY: the shard's queue was full (counting since the last such line)");
                    }
                    let refusal = ccr::Refusal {
                        result_code: rc::TOO_BUSY,
                        failed_avp: None,
                        message: "the charging engine is overloaded".to_owned(),
                    };
                    let mut answer = ccr::refusal_answer(&header, &refusal, &config.origin_host, &config.origin_realm);
                    answer.flags |= FLAG_ERROR;
                    answer
                }
                Ok(Err(err)) => {
                    metrics::DIAMETER.record(rc::UNABLE_TO_COMPLY, started.elapsed());
                    tracing::error!(error = %err, "engine failed to answer a CCR");
                    let refusal =
                        ccr::Refusal { result_code: rc::UNABLE_TO_COMPLY, failed_avp: None, message: String::new() };
                    ccr::refusal_answer(&header, &refusal, &config.origin_host, &config.origin_realm)
                }
                Err(_) => return,
            };
            drop((header, parsed));
            let bytes = cca.encode();
            held.shrink_to(bytes.len());
            let _ = outbox.send((bytes, held)).await;
        });
    }
}

/// What answering a request needs of it once it is parsed: its header and copies (not
/// views of the receive buffer, which they would keep alive) of the AVPs an answer
/// repeats: Session-Id, CC-Request-Type and CC-Request-Number.
fn answer_header(request: &Message) -> Message {
    let mut header = Message { avps: Vec::with_capacity(3), ..request.answer() };
    header.flags = request.flags;
    for avp_code in [code::SESSION_ID, code::CC_REQUEST_TYPE, code::CC_REQUEST_NUMBER] {
        if let Some(avp) = request.avp(avp_code, 0) {
            header.avps.push(Avp { data: Bytes::copy_from_slice(&avp.data), ..avp.clone() });
        }
    }
    header.add_proxy_info(request);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_grows_with_the_bytes_that_arrived_never_to_what_is_announced() {
        let mut buffer = BytesMut::with_capacity(READ_BUFFER_BYTES);
        buffer.resize(READ_BUFFER_BYTES, 1);
        let announced = MAX_MESSAGE_LEN;
        let mut capacities = Vec::new();
        while buffer.len() < announced {
            make_room(&mut buffer, announced);
            assert!(buffer.capacity() <= announced, "never past the announced length");
            assert!(buffer.capacity() <= 2 * buffer.len().max(READ_BUFFER_BYTES), "at most twice what arrived");
            capacities.push(buffer.capacity());
            let spare = buffer.capacity() - buffer.len();
            buffer.resize(buffer.len() + spare, 1);
        }
        assert_eq!(capacities, [128, 256, 512, 1024].map(|kib| kib * 1024));
        // A short message needs no more than the usual buffer.
        let mut small = BytesMut::with_capacity(16);
        small.resize(16, 0);
        make_room(&mut small, 100);
        assert!(small.capacity() >= READ_BUFFER_BYTES && small.capacity() <= 2 * READ_BUFFER_BYTES);
    }

    #[tokio::test]
    async fn memory_comes_from_the_reserve_then_the_pool_and_goes_back_down_to_the_answer() {
        let budget = Budget {
            reserve: Arc::new(Semaphore::new(CONNECTION_RESERVE_BYTES)),
            pool: Arc::new(Semaphore::new(1 << 20)),
            pool_bytes: 1 << 20,
        };
        let small = budget.hold(1000).await;
        assert_eq!((small.reserve.is_some(), small.pool.is_some(), small.len()), (true, false, 1000));
        let large = budget.hold(CONNECTION_RESERVE_BYTES + 1).await;
        assert_eq!((large.reserve.is_some(), large.pool.is_some()), (false, true));
        let mut large = large;
        large.shrink_to(100);
        assert_eq!((large.len(), budget.pool.available_permits()), (100, (1 << 20) - 100));
        drop((small, large));
        assert_eq!(budget.reserve.available_permits(), CONNECTION_RESERVE_BYTES);
        assert_eq!(budget.pool.available_permits(), 1 << 20);
        // More than there is waits (here: until the deadline).
        let all = budget.hold(1 << 20).await;
        let waited = tokio::time::timeout(Duration::from_millis(10), budget.hold(CONNECTION_RESERVE_BYTES + 1)).await;
        assert!(waited.is_err(), "nothing left in the pool");
        drop(all);
    }

    #[test]
    fn a_message_costs_itself_what_serving_copies_and_its_answer() {
        let config = DiameterConfig::default();
        let fixed = REQUEST_OVERHEAD_BYTES + config.origin_host.len() + config.origin_realm.len();
        assert_eq!(config.message_cost(HEADER_LEN), 3 * HEADER_LEN + 2 * GRANT_BYTES + fixed);
        assert_eq!(config.message_cost(MAX_MESSAGE_LEN), 3 * MAX_MESSAGE_LEN + MAX_GRANTS * GRANT_BYTES + fixed);
        assert!(config.max_buffered_bytes >= config.min_buffered_bytes());
    }
}
