//! Hostile input against the real binary (issue 14, "The proof"): `tollgate serve` over
//! real sockets and `tollgate mediate` over real files. One test per hostile input, named
//! after what it guards: each bad input gets its Result-Code, HTTP status or reject
//! reason; meanwhile a well-behaved Diameter peer on another connection (from another
//! loopback address, so per-address limits do not touch it) keeps getting 2001; and the
//! server's peak RSS (VmHWM at the end) stays under a bound derived from the limits in
//! force (oss-adapters/README.md, "Hostile peers and memory"). Timeouts here are hang
//! guards only; where a deadline is the behaviour under test, the server's is set low.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tollgate_oss_adapters::diameter::codec::{
    frame, Frame, FLAG_PROXIABLE, FLAG_REQUEST, HEADER_LEN, MAX_AVPS, MAX_DEPTH, MAX_MESSAGE_LEN,
};
use tollgate_oss_adapters::diameter::dictionary::code;
use tollgate_oss_adapters::diameter::server::{DiameterConfig, CONNECTION_RESERVE_BYTES, READ_BUFFER_BYTES};
use tollgate_oss_adapters::diameter::{Avp, Message};
use tollgate_oss_adapters::nchf::server::{MAX_BODY_BYTES, MAX_JSON_DEPTH, MAX_JSON_ITEMS, MAX_JSON_VALUES};

use super::{charging_data, http, scratch, start_servers, stop_server};

/// How long any one socket operation may take before the test calls it a hang.
const HANG_GUARD: Duration = Duration::from_secs(60);
/// Memory of one open Diameter connection besides its read buffer and reserve: its two
/// tasks, its queue of answers and its socket's registration (1,024 idle connections
/// measure about 70 KiB each, read buffer included, in
/// `connection_floods_are_refused_at_the_limits_without_starving_established_peers`).
const CONNECTION_OVERHEAD_BYTES: u64 = 32 * 1024;
/// What the allocator may keep beyond what is live (freed pages it has not returned, its
/// per-thread caches): a constant allowance on top of every derived bound…
const ALLOCATOR_SLACK_BYTES: u64 = 16 << 20;
/// …and a factor for its size classes: mimalloc rounds a block up to one of four classes
/// per power of two (up to 1/4 more: an answer of 64 KiB + 100 bytes takes 80 KiB) and
/// pages of a class are partly used. Answers of that size measure 1.33 × the pool
/// (`a_peer_that_takes_no_answers_is_disconnected_at_the_write_timeout` at pools of 8 to
/// 64 MiB); what is charged is multiplied by 3/2.
const ALLOCATOR_ROUNDING: (u64, u64) = (3, 2);
/// The bound the README states for `tollgate serve` with the default limits.
const DEFAULT_LIMITS_BOUND_BYTES: u64 = 512 << 20;

const WELL_BEHAVED: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A running `tollgate serve` and what the bound on its memory is derived from.
struct Server {
    child: Option<super::Served>,
    diameter: String,
    nchf: String,
    /// VmHWM once it listens: the engine with its data, before any peer.
    baseline_bytes: u64,
    dir: std::path::PathBuf,
}

impl Server {
    fn start(name: &str, extra: &[&str]) -> Server {
        let dir = scratch(&format!("hostile-{name}"));
        let mut args = vec!["--demo-subscribers", "10"];
        args.extend_from_slice(extra);
        let (child, diameter, nchf) = start_servers(&dir.join("data"), &format!("ocs.{name}.test"), &args);
        let mut server = Server { child: Some(child), diameter, nchf, baseline_bytes: 0, dir };
        // Warm up: what the first request of each kind allocates once (the schema
        // validator's regular expressions, the engine's first session) is baseline.
        let (status, _, body) =
            http(&server.nchf, "POST", "/nchf-convergedcharging/v3/chargingdata", &charging_data(0, Some(1), None));
        assert_eq!(status, 201, "{body}");
        let mut peer = Peer::connect(&server.diameter);
        peer.capabilities_exchange("warm-up.test");
        let mut warm_up = Witness { peer, sessions: 1_000_000 };
        warm_up.is_served();
        drop(warm_up);
        server.baseline_bytes = peak_rss_bytes(server.pid());
        server
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("data.log")).unwrap_or_default()
    }

    /// The bound on peak RSS with `connections` Diameter connections open and `in_play`
    /// bytes that the limits let the hostile input hold at once besides (the pool of
    /// `--diameter-max-buffered-bytes`, or less when the input cannot use it all): what
    /// the server used once started and warmed up, plus per connection its read buffer,
    /// reserve and overhead, plus `in_play`, with the allocator's rounding and slack.
    fn bound_bytes(&self, connections: u64, in_play: u64) -> u64 {
        let per_connection = (READ_BUFFER_BYTES + CONNECTION_RESERVE_BYTES) as u64 + CONNECTION_OVERHEAD_BYTES;
        let (times, by) = ALLOCATOR_ROUNDING;
        self.baseline_bytes + (connections * per_connection + in_play) * times / by + ALLOCATOR_SLACK_BYTES
    }

    /// Reads the peak RSS, checks it against `bound` and the default-limits bound, prints
    /// both (for RELIABILITY.md) and stops the server.
    fn finish(mut self, case: &str, bound: u64) {
        let peak = peak_rss_bytes(self.pid());
        println!(
            "peak RSS [{case}]: {} MiB (baseline {} MiB, bound {} MiB)",
            peak >> 20,
            self.baseline_bytes >> 20,
            bound >> 20
        );
        assert!(peak <= bound, "{case}: peak RSS {peak} bytes is over its bound of {bound}");
        assert!(peak <= DEFAULT_LIMITS_BOUND_BYTES, "{case}: peak RSS {peak} bytes is over 512 MiB");
        stop_server(self.child.take().expect("running"));
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// The peak resident set of a process (VmHWM), in bytes.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmHWM in kB");
    kib * 1024
}

/// A Diameter peer over a blocking socket.
pub(super) struct Peer {
    stream: TcpStream,
    buffer: Vec<u8>,
    hop: u32,
}

impl Peer {
    pub(super) fn connect(address: &str) -> Peer {
        Peer::over(TcpStream::connect(address).expect("connect"))
    }

    /// Connects from `source` (any 127.0.0.0/8 address on Linux).
    fn connect_from(source: IpAddr, address: &str) -> Peer {
        static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
        let runtime = RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_io().build().expect("runtime")
        });
        let target: SocketAddr = address.parse().expect("address");
        let stream = runtime
            .block_on(async {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(source, 0))?;
                socket.connect(target).await?.into_std()
            })
            .expect("connect from a source address");
        stream.set_nonblocking(false).expect("blocking");
        Peer::over(stream)
    }

    fn over(stream: TcpStream) -> Peer {
        stream.set_read_timeout(Some(HANG_GUARD)).expect("timeout");
        stream.set_write_timeout(Some(HANG_GUARD)).expect("timeout");
        let _ = stream.set_nodelay(true);
        Peer { stream, buffer: Vec::new(), hop: 0 }
    }

    fn request_bytes(&mut self, command: u32, application: u32, avps: Vec<Avp>) -> Bytes {
        self.hop += 1;
        let flags = FLAG_REQUEST | FLAG_PROXIABLE;
        Message { flags, command, application, hop_by_hop: self.hop, end_to_end: self.hop, avps }.encode()
    }

    /// The next message, or why none came: `Err` on end of stream or a reset.
    fn read(&mut self) -> Result<Message, std::io::Error> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Ok(Frame::Message(length)) = frame(&self.buffer) {
                let bytes: Vec<u8> = self.buffer.drain(..length).collect();
                return Ok(Message::decode(Bytes::from(bytes)).expect("the server's message decodes"));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("hang guard: nothing from the server in {HANG_GUARD:?}")
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Sends a request and returns its answer.
    pub(super) fn ask(&mut self, command: u32, application: u32, avps: Vec<Avp>) -> Message {
        let bytes = self.request_bytes(command, application, avps);
        self.stream.write_all(&bytes).expect("send");
        let answer = self.read().expect("an answer");
        assert_eq!((answer.command, answer.hop_by_hop), (command, self.hop), "the answer to this request");
        answer
    }

    fn cer_avps(origin_host: &str) -> Vec<Avp> {
        vec![
            Avp::utf8(code::ORIGIN_HOST, 0, origin_host),
            Avp::utf8(code::ORIGIN_REALM, 0, "test"),
            Avp::new(code::HOST_IP_ADDRESS, 0, vec![0, 1, 127, 0, 0, 1]),
            Avp::u32(code::VENDOR_ID, 0, 0),
            Avp::utf8(code::PRODUCT_NAME, 0, "hostile test"),
            Avp::u32(code::AUTH_APPLICATION_ID, 0, 4),
        ]
    }

    pub(super) fn capabilities_exchange(&mut self, origin_host: &str) {
        let cea = self.ask(257, 0, Peer::cer_avps(origin_host));
        assert_eq!(result_code(&cea), Some(2001), "CEA");
    }

    /// Whether the server has closed this connection without answering: end of stream or
    /// a reset, on reading or on writing.
    fn closed_by_server(&mut self) -> bool {
        self.read().is_err()
    }
}

pub(super) fn result_code(message: &Message) -> Option<u32> {
    message.avp(code::RESULT_CODE, 0).and_then(Avp::as_u32)
}

fn failed_avp_code(message: &Message) -> Option<u32> {
    let failed = message.avp(code::FAILED_AVP, 0)?;
    Some(u32::from_be_bytes(failed.data.get(..4)?.try_into().ok()?))
}

/// The AVPs of a CCR of demo subscriber `subscriber` with one MSCC.
fn ccr(session: &str, request_type: u32, number: u32, subscriber: u64, requested: Option<u64>) -> Vec<Avp> {
    let units = match requested {
        Some(units) => Units::Requested(units),
        None => Units::Used(0),
    };
    ccr_of(session, request_type, number, &msisdn(subscriber), 30, units)
}

/// What one MSCC of a CCR carries: octets asked for, or octets used.
#[derive(Debug, Clone, Copy)]
pub(super) enum Units {
    Requested(u64),
    Used(u64),
}

/// The AVPs of a CCR of `msisdn` with one MSCC on `rating_group`.
pub(super) fn ccr_of(
    session: &str,
    request_type: u32,
    number: u32,
    msisdn: &str,
    rating_group: u32,
    units: Units,
) -> Vec<Avp> {
    let mut mscc = vec![Avp::u32(code::RATING_GROUP, 0, rating_group)];
    mscc.push(match units {
        Units::Requested(units) => {
            Avp::grouped(code::REQUESTED_SERVICE_UNIT, 0, &[Avp::u64(code::CC_TOTAL_OCTETS, 0, units)])
        }
        Units::Used(units) => Avp::grouped(code::USED_SERVICE_UNIT, 0, &[Avp::u64(code::CC_TOTAL_OCTETS, 0, units)]),
    });
    vec![
        Avp::utf8(code::SESSION_ID, 0, session),
        Avp::utf8(code::ORIGIN_HOST, 0, "pgw.test"),
        Avp::utf8(code::ORIGIN_REALM, 0, "test"),
        Avp::utf8(code::DESTINATION_REALM, 0, "test"),
        Avp::u32(code::AUTH_APPLICATION_ID, 0, 4),
        Avp::utf8(code::SERVICE_CONTEXT_ID, 0, "32251@3gpp.org"),
        Avp::u32(code::CC_REQUEST_TYPE, 0, request_type),
        Avp::u32(code::CC_REQUEST_NUMBER, 0, number),
        Avp::grouped(
            code::SUBSCRIPTION_ID,
            0,
            &[Avp::u32(code::SUBSCRIPTION_ID_TYPE, 0, 0), Avp::utf8(code::SUBSCRIPTION_ID_DATA, 0, msisdn)],
        ),
        Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0, &mscc),
    ]
}

/// Demo subscriber N's MSISDN (`tollgate serve --demo-subscribers`).
fn msisdn(subscriber: u64) -> String {
    format!("49170{subscriber:08}")
}

/// A DWR padded with an optional AVP the server does not know (it must ignore it) to
/// `length` bytes in all.
fn padded_dwr_avps(length: usize) -> Vec<Avp> {
    let mut avps = vec![Avp::utf8(code::ORIGIN_HOST, 0, "pgw.test"), Avp::utf8(code::ORIGIN_REALM, 0, "test")];
    let used: usize = HEADER_LEN + avps.iter().map(Avp::padded_len).sum::<usize>();
    let padding = length - used - 8;
    avps.push(Avp { code: 99_999, flags: 0, vendor: 0, data: Bytes::from(vec![0x5a; padding]) });
    avps
}

/// The well-behaved peer: connected from its own address, it opens and closes a session
/// of demo subscriber 1 whenever asked, and every answer must be 2001.
struct Witness {
    peer: Peer,
    sessions: u32,
}

impl Witness {
    fn connect(server: &Server) -> Witness {
        let mut peer = Peer::connect_from(WELL_BEHAVED, &server.diameter);
        peer.capabilities_exchange("witness.test");
        Witness { peer, sessions: 0 }
    }

    fn is_served(&mut self) {
        self.sessions += 1;
        let session = format!("witness;{}", self.sessions);
        let initial = self.peer.ask(272, 4, ccr(&session, 1, 0, 1, Some(1 << 20)));
        assert_eq!(result_code(&initial), Some(2001), "the well-behaved peer's CCR-I");
        let terminate = self.peer.ask(272, 4, ccr(&session, 3, 1, 1, None));
        assert_eq!(result_code(&terminate), Some(2001), "the well-behaved peer's CCR-T");
    }
}

/// Runs `attack` on other threads while the witness keeps being served; returns what the
/// attack returned and how many sessions the witness completed meanwhile (at least one,
/// and one more after it).
fn while_served<T: Send + 'static>(witness: &mut Witness, attack: impl FnOnce() -> T + Send + 'static) -> T {
    let attacker = std::thread::spawn(attack);
    let before = witness.sessions;
    loop {
        witness.is_served();
        if attacker.is_finished() {
            break;
        }
    }
    witness.is_served();
    assert!(witness.sessions - before >= 2, "served during and after");
    attacker.join().expect("attack thread")
}

#[test]
fn oversized_and_announced_diameter_messages_cost_nothing_before_their_bytes_arrive() {
    const POOL: u64 = 8 << 20;
    let pool = POOL.to_string();
    let server =
        Server::start("oversized", &["--diameter-message-timeout", "2", "--diameter-max-buffered-bytes", &pool]);
    let mut witness = Witness::connect(&server);
    // Longer than MAX_MESSAGE_LEN: 5015 at once, then the connection closes (the stream
    // cannot be re-framed).
    let mut oversized = Peer::connect(&server.diameter);
    let mut cer = oversized.request_bytes(257, 0, Peer::cer_avps("big.test")).to_vec();
    let length = (MAX_MESSAGE_LEN + 4) as u32;
    cer[1..4].copy_from_slice(&length.to_be_bytes()[1..]);
    oversized.stream.write_all(&cer).expect("send");
    let answer = oversized.read().expect("an answer");
    assert_eq!(result_code(&answer), Some(5015), "DIAMETER_INVALID_MESSAGE_LENGTH");
    assert!(oversized.closed_by_server());
    // Peers announcing a message of MAX_MESSAGE_LEN and sending its header only. Each is
    // charged three times that from the 8 MiB pool as soon as its length is known, so
    // two are; the others wait for memory. Nothing is allocated for what they announce.
    const ANNOUNCING: u64 = 40;
    let address = server.diameter.clone();
    let mut announcing = while_served(&mut witness, move || {
        (0..ANNOUNCING)
            .map(|_| {
                let mut peer = Peer::connect(&address);
                let mut header = peer.request_bytes(257, 0, Peer::cer_avps("slow.test"))[..HEADER_LEN].to_vec();
                header[1..4].copy_from_slice(&(MAX_MESSAGE_LEN as u32).to_be_bytes()[1..]);
                peer.stream.write_all(&header).expect("send the header");
                peer
            })
            .collect::<Vec<_>>()
    });
    witness.is_served();
    // Every one is closed at its message deadline. One still waiting for memory then is
    // answered 3004 DIAMETER_TOO_BUSY first; but as each closes, its memory goes to the
    // next in line, so most get some just before their own deadline and are closed
    // without an answer: how many get 3004 depends on timing, what they get does not.
    let mut too_busy = 0;
    for peer in &mut announcing {
        if let Ok(answer) = peer.read() {
            assert_eq!(result_code(&answer), Some(3004), "DIAMETER_TOO_BUSY");
            too_busy += 1;
        }
        assert!(peer.closed_by_server(), "closed at the message deadline");
    }
    println!("{too_busy} of {ANNOUNCING} peers announcing 1 MiB were answered 3004");
    witness.is_served();
    // Not even the pool: what is announced is charged, not allocated.
    let bound = server.bound_bytes(ANNOUNCING + 2, 0);
    server.finish("announced 1 MiB messages, 40 peers", bound);
}

#[test]
fn megabyte_messages_from_many_peers_stay_within_the_buffered_bytes_pool() {
    const POOL: u64 = 32 << 20;
    const PEERS: u64 = 24;
    const MESSAGES: u64 = 4;
    let pool = POOL.to_string();
    let server = Server::start("megabytes", &["--diameter-max-buffered-bytes", &pool]);
    let mut witness = Witness::connect(&server);
    let address = server.diameter.clone();
    // 24 peers × 4 messages of 1 MiB (96 MiB) through a pool of 32 MiB: each message
    // costs three times its length until answered, so most wait their turn.
    let answered = while_served(&mut witness, move || {
        let peers: Vec<_> = (0..PEERS)
            .map(|n| {
                let address = address.clone();
                std::thread::spawn(move || {
                    let mut peer = Peer::connect(&address);
                    peer.capabilities_exchange(&format!("big{n}.test"));
                    (0..MESSAGES)
                        .filter(|_| result_code(&peer.ask(280, 0, padded_dwr_avps(MAX_MESSAGE_LEN))) == Some(2001))
                        .count() as u64
                })
            })
            .collect();
        peers.into_iter().map(|p| p.join().expect("peer")).sum::<u64>()
    });
    assert_eq!(answered, PEERS * MESSAGES, "every 1 MiB watchdog is answered 2001");
    let bound = server.bound_bytes(PEERS + 1, POOL);
    server.finish("1 MiB messages, 24 peers, 32 MiB pool", bound);
}

#[test]
fn avp_lengths_that_lie_get_5014_with_failed_avp() {
    let server = Server::start("lying", &[]);
    let mut witness = Witness::connect(&server);
    let mut liar = Peer::connect(&server.diameter);
    liar.capabilities_exchange("liar.test");
    let lie = |liar: &mut Peer, at: usize, length: u32| -> Message {
        let mut bytes = liar.request_bytes(272, 4, ccr("liar;1", 1, 0, 2, Some(1))).to_vec();
        bytes[at + 5..at + 8].copy_from_slice(&length.to_be_bytes()[1..]);
        liar.stream.write_all(&bytes).expect("send");
        liar.read().expect("an answer")
    };
    // Session-Id, the first AVP, claims to run past the end of the message.
    let answer = lie(&mut liar, HEADER_LEN, 0x00ff_fff0);
    assert_eq!((result_code(&answer), failed_avp_code(&answer)), (Some(5014), Some(code::SESSION_ID)));
    witness.is_served();
    // …claims less than its own header.
    let answer = lie(&mut liar, HEADER_LEN, 3);
    assert_eq!((result_code(&answer), failed_avp_code(&answer)), (Some(5014), Some(code::SESSION_ID)));
    // A member inside the Multiple-Services-Credit-Control (its Rating-Group) lies.
    let avps = ccr("liar;1", 1, 0, 2, Some(1));
    let mscc_at = HEADER_LEN + avps[..avps.len() - 1].iter().map(Avp::padded_len).sum::<usize>();
    let answer = lie(&mut liar, mscc_at + 8, 0x0000_1000);
    assert_eq!((result_code(&answer), failed_avp_code(&answer)), (Some(5014), Some(code::RATING_GROUP)));
    witness.is_served();
    // The liar's connection is still served.
    let answer = liar.ask(280, 0, padded_dwr_avps(64));
    assert_eq!(result_code(&answer), Some(2001));
    let bound = server.bound_bytes(2, 0);
    server.finish("AVP lengths that lie", bound);
}

#[test]
fn deeply_nested_grouped_avps_get_5004_and_too_many_avps_5012() {
    let server = Server::start("nested", &[]);
    let mut witness = Witness::connect(&server);
    let mut peer = Peer::connect(&server.diameter);
    peer.capabilities_exchange("nested.test");
    // 100,000 Multiple-Services-Credit-Control, each inside the next (800 kB): refused
    // at the deepest level allowed, with that group as Failed-AVP; nothing recurses
    // past MAX_DEPTH.
    let mut nested = Avp::u32(code::RATING_GROUP, 0, 30);
    for _ in 0..100_000 {
        nested = Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0, &[nested]);
    }
    let mut avps = ccr("nested;1", 1, 0, 2, None);
    avps.pop();
    avps.push(nested);
    let longest = HEADER_LEN + avps.iter().map(Avp::padded_len).sum::<usize>();
    let answer = peer.ask(272, 4, avps);
    assert_eq!(result_code(&answer), Some(5004), "DIAMETER_INVALID_AVP_VALUE");
    assert_eq!(failed_avp_code(&answer), Some(code::MULTIPLE_SERVICES_CREDIT_CONTROL));
    let message = answer.avp(code::ERROR_MESSAGE, 0).and_then(Avp::as_str).unwrap_or("");
    assert!(message.contains(&format!("depth {MAX_DEPTH}")), "{message}");
    witness.is_served();
    // More AVPs than MAX_AVPS, counting those inside groups: 5012.
    let members: Vec<Avp> = (0..MAX_AVPS as u32).map(|n| Avp::u32(code::RATING_GROUP, 0, n)).collect();
    let mut avps = ccr("nested;2", 1, 0, 2, None);
    avps.push(Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0, &members));
    let answer = peer.ask(272, 4, avps);
    assert_eq!(result_code(&answer), Some(5012), "DIAMETER_UNABLE_TO_COMPLY");
    witness.is_served();
    // One message at a time: the longest one's cost.
    let bound = server.bound_bytes(2, DiameterConfig::default().message_cost(longest) as u64);
    server.finish("nested grouped AVPs, too many AVPs", bound);
}

/// Writes `bytes` one at a time, `pause` apart; returns how many were written before the
/// server closed the connection (all of them if it did not).
fn trickle(peer: &mut Peer, bytes: &[u8], pause: Duration) -> usize {
    for (sent, byte) in bytes.iter().enumerate() {
        if peer.stream.write_all(std::slice::from_ref(byte)).is_err() {
            return sent;
        }
        std::thread::sleep(pause);
    }
    bytes.len()
}

#[test]
fn slowloris_peers_lose_their_slots_at_the_deadlines() {
    const SLOTS: usize = 16;
    let server = Server::start(
        "slowloris",
        &[
            "--diameter-capabilities-timeout",
            "3",
            "--diameter-message-timeout",
            "3",
            "--diameter-max-connections",
            "16",
        ],
    );
    let mut witness = Witness::connect(&server);
    // Every other slot to peers trickling a CER, a byte every 250 ms (20 s for it all).
    let mut trickling: Vec<Peer> = (1..SLOTS).map(|_| Peer::connect(&server.diameter)).collect();
    for peer in &mut trickling {
        peer.stream.write_all(&[1]).expect("first byte");
    }
    // Meanwhile the limit holds: one more connection is closed as soon as accepted.
    let mut refused = Peer::connect_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), &server.diameter);
    assert!(refused.closed_by_server(), "no slot while the trickling peers hold them");
    witness.is_served();
    let cut_off: Vec<usize> = trickling
        .into_iter()
        .map(|mut peer| {
            std::thread::spawn(move || {
                let cer = peer.request_bytes(257, 0, Peer::cer_avps("slow.test"));
                trickle(&mut peer, &cer[1..], Duration::from_millis(250)) + 1 < cer.len()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| usize::from(t.join().expect("trickler")))
        .collect();
    assert_eq!(cut_off.iter().sum::<usize>(), SLOTS - 1, "every trickled CER was cut off by the deadline");
    witness.is_served();
    // After its CER, a peer trickling a CCR is cut off by the message deadline.
    let mut slow = Peer::connect(&server.diameter);
    slow.capabilities_exchange("slow-ccr.test");
    let ccr_bytes = slow.request_bytes(272, 4, ccr("slow;1", 1, 0, 2, Some(1)));
    let sent = trickle(&mut slow, &ccr_bytes, Duration::from_millis(250));
    assert!(sent < ccr_bytes.len(), "the trickled CCR was cut off by the deadline");
    witness.is_served();
    // The slots are free again: SLOTS − 1 new peers all get their CEA.
    let mut fresh: Vec<Peer> = (1..SLOTS).map(|_| Peer::connect(&server.diameter)).collect();
    for (n, peer) in fresh.iter_mut().enumerate() {
        peer.capabilities_exchange(&format!("fresh{n}.test"));
    }
    witness.is_served();
    let bound = server.bound_bytes(SLOTS as u64, 0);
    server.finish("slowloris, 16 slots", bound);
}

#[test]
fn connection_floods_are_refused_at_the_limits_without_starving_established_peers() {
    let limits = DiameterConfig::default();
    let server = Server::start("flood", &[]);
    let mut witness = Witness::connect(&server);
    // Connects from `source`, sends a CER and keeps the connection; whether it was admitted
    // (CEA 2001) or closed as soon as accepted.
    fn flood_one(source: IpAddr, address: &str, held: &mut Vec<(Peer, bool)>) -> bool {
        let mut peer = Peer::connect_from(source, address);
        let cer = peer.request_bytes(257, 0, Peer::cer_avps(&format!("flood{}.test", held.len())));
        let admitted =
            peer.stream.write_all(&cer).is_ok() && peer.read().is_ok_and(|cea| result_code(&cea) == Some(2001));
        held.push((peer, admitted));
        admitted
    }
    // 1,000 connections from one address: the per-address limit admits 64, the rest are
    // closed as soon as accepted. They stay open (only silence would close them now).
    let address = server.diameter.clone();
    let (admitted, first_flood) = while_served(&mut witness, move || {
        let mut held = Vec::new();
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1));
        let admitted = (0..1000).filter(|_| flood_one(source, &address, &mut held)).count();
        (admitted, held)
    });
    assert_eq!(admitted, limits.max_connections_per_address);
    // 1,024 more from 16 other addresses: the global limit admits what the witness and
    // the first flood leave of its 1,024.
    let address = server.diameter.clone();
    let (admitted, second_flood) = while_served(&mut witness, move || {
        let mut held = Vec::new();
        let admitted = (0..16u8)
            .flat_map(|source| std::iter::repeat_n(source, limits.max_connections_per_address))
            .filter(|source| flood_one(IpAddr::V4(Ipv4Addr::new(127, 0, 2, *source)), &address, &mut held))
            .count();
        (admitted, held)
    });
    assert_eq!(admitted, limits.max_connections - 1 - limits.max_connections_per_address);
    witness.is_served();
    // The peers admitted in the floods are served too.
    for (mut peer, admitted) in first_flood.into_iter().chain(second_flood).filter(|(_, admitted)| *admitted).take(8) {
        assert!(admitted);
        assert_eq!(result_code(&peer.ask(280, 0, padded_dwr_avps(64))), Some(2001));
    }
    witness.is_served();
    // Refusals are logged a few times with counts, not once per connection.
    let lines = server.log().lines().filter(|l| l.contains("diameter connections refused")).count();
    assert!((1..=20).contains(&lines), "{lines} log lines for about 2,900 refused connections");
    let bound = server.bound_bytes(limits.max_connections as u64, 0);
    server.finish("connection floods, 1024 connections", bound);
}

#[test]
fn session_floods_are_answered_and_bounded_by_credit() {
    const SESSIONS: u32 = 20_000;
    let server = Server::start("sessions", &[]);
    let mut witness = Witness::connect(&server);
    let address = server.diameter.clone();
    // 20,000 sessions opened for demo subscriber 2 (20.00 of credit, 0.10 per MB asked)
    // pipelined on one connection: the first ones get their quota, the rest 4012.
    let codes = while_served(&mut witness, move || {
        let mut flood = Peer::connect(&address);
        flood.capabilities_exchange("sessions.test");
        let mut writer = flood.stream.try_clone().expect("clone");
        let requests: Vec<Bytes> = (0..SESSIONS)
            .map(|n| flood.request_bytes(272, 4, ccr(&format!("flood;{n}"), 1, 0, 2, Some(1 << 20))))
            .collect();
        let sender = std::thread::spawn(move || {
            for request in requests {
                writer.write_all(&request).expect("pipelined CCR-I");
            }
        });
        let mut codes = std::collections::BTreeMap::new();
        for _ in 0..SESSIONS {
            let answer = flood.read().expect("an answer to every CCR-I");
            let mscc = answer.avp(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0).map(|m| m.group().expect("MSCC"));
            let granted =
                mscc.as_deref().and_then(|m| tollgate_oss_adapters::diameter::codec::find(m, code::RESULT_CODE, 0));
            *codes.entry((result_code(&answer), granted.and_then(Avp::as_u32))).or_insert(0u32) += 1;
        }
        sender.join().expect("sender");
        codes
    });
    // 20.00 buys 200 reservations of 1 MB at 0.10; every other session is refused with
    // DIAMETER_CREDIT_LIMIT_REACHED and holds nothing.
    let expected = [((Some(2001), Some(2001)), 200), ((Some(4012), Some(4012)), SESSIONS - 200)];
    assert_eq!(codes, expected.into_iter().collect(), "(Result-Code, MSCC Result-Code) → count");
    // In flight at once: at most max_in_flight CCRs, each charged its cost. And the
    // engine keeps each request's key and answer (its exactly-once window) and each
    // session's record: at most ENGINE_BYTES_PER_REQUEST each.
    const ENGINE_BYTES_PER_REQUEST: u64 = 2048;
    let limits = DiameterConfig::default();
    let ccr_length = HEADER_LEN + ccr("flood;19999", 1, 0, 2, Some(1 << 20)).iter().map(Avp::padded_len).sum::<usize>();
    let in_flight = (limits.max_in_flight * limits.message_cost(ccr_length)).min(limits.max_buffered_bytes);
    let bound = server.bound_bytes(2, in_flight as u64) + u64::from(SESSIONS) * ENGINE_BYTES_PER_REQUEST;
    server.finish("session flood, 20,000 CCR-I", bound);
}

#[test]
fn a_peer_that_takes_no_answers_is_disconnected_at_the_write_timeout() {
    const POOL: u64 = 16 << 20;
    let pool = POOL.to_string();
    let server = Server::start("no-reader", &["--diameter-write-timeout", "2", "--diameter-max-buffered-bytes", &pool]);
    let mut witness = Witness::connect(&server);
    let address = server.diameter.clone();
    // DWRs with a 64 KiB mandatory AVP the server does not know: each is answered 5001
    // with a copy of it as Failed-AVP, 64 KiB an answer, which this peer never reads.
    let outcome = while_served(&mut witness, move || {
        let mut peer = Peer::connect(&address);
        peer.capabilities_exchange("deaf.test");
        let mut avps = padded_dwr_avps(64 * 1024);
        avps[2].flags = tollgate_oss_adapters::diameter::codec::AVP_FLAG_MANDATORY;
        let request = peer.request_bytes(280, 0, avps);
        loop {
            match peer.stream.write_all(&request) {
                Ok(()) => continue,
                Err(err) => return err.kind(),
            }
        }
    });
    assert!(
        matches!(outcome, ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
        "disconnected by the server, not by the hang guard: {outcome:?}"
    );
    let bound = server.bound_bytes(2, POOL);
    server.finish("a peer that reads no answers, 16 MiB pool", bound);
}

#[test]
fn json_bombs_on_nchf_get_400_naming_the_problem_and_bodies_past_the_limit_413() {
    let server = Server::start("json", &[]);
    let mut witness = Witness::connect(&server);
    let base = "/nchf-convergedcharging/v3/chargingdata";
    let valid: Value = serde_json::from_str(&charging_data(0, Some(1 << 20), None)).expect("json");
    let with = |field: &str, text: &str| {
        let mut body = valid.to_string();
        body.pop();
        format!("{body},\"{field}\":{text}}}")
    };
    let cases = [
        (
            "100,000 arrays nested",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            400,
            format!("nested deeper than {MAX_JSON_DEPTH} levels at byte {MAX_JSON_DEPTH}"),
        ),
        (
            "an array of 100,000 items",
            with("x", &format!("[{}]", vec!["0"; 100_000].join(","))),
            400,
            format!("more than {MAX_JSON_ITEMS} items in one array or object"),
        ),
        (
            "an object of 20,000 members",
            with("x", &format!("{{{}}}", (0..20_000).map(|n| format!("\"{n}\":0")).collect::<Vec<_>>().join(","))),
            400,
            format!("more than {MAX_JSON_ITEMS} items in one array or object"),
        ),
        (
            "30 arrays of 1,000 items",
            with("x", &format!("[{}]", vec![format!("[{}]", vec!["0"; 1000].join(",")); 30].join(","))),
            400,
            format!("more than {MAX_JSON_VALUES} values at byte"),
        ),
        ("a body past the limit", with("x", &format!("\"{}\"", "a".repeat(MAX_BODY_BYTES))), 413, String::new()),
    ];
    for (what, body, status, reason) in cases {
        let (got, head, answer) = http(&server.nchf, "POST", base, &body);
        assert_eq!(got, status, "{what}: {head}{answer}");
        assert!(answer.contains(&reason), "{what}: {answer}");
        witness.is_served();
    }
    let (status, _, detail) = http(&server.nchf, "POST", base, &valid.to_string());
    assert_eq!(status, 201, "a valid create is still served: {detail}");
    // One request at a time: its body and what parsing it can build
    // (MAX_JSON_VALUES values of at most 128 bytes each).
    let bound = server.bound_bytes(1, (2 * MAX_BODY_BYTES + MAX_JSON_VALUES * 128) as u64);
    server.finish("JSON bombs on Nchf", bound);
}

#[test]
fn serve_refuses_diameter_limits_that_could_not_serve_a_message() {
    let dir = scratch("hostile-flags");
    let data = dir.join("data");
    let least = DiameterConfig::default().min_buffered_bytes();
    for (flag, value, expected) in [
        ("--diameter-max-buffered-bytes", "1048576", format!("--diameter-max-buffered-bytes must be at least {least}")),
        ("--diameter-max-connections", "0", "--diameter-max-connections".to_owned()),
        ("--diameter-message-timeout", "0", "--diameter-message-timeout".to_owned()),
    ] {
        let output = super::tollgate(&["serve", "--data-dir", data.to_str().expect("path"), flag, value], "");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag} {value} was accepted");
        assert!(stderr.contains(&expected), "{flag} {value}: {stderr}");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Runs `tollgate` with `args` under python3's `resource` module; returns its exit code,
/// its output and its peak RSS (ru_maxrss of the child) in bytes.
fn run_measured(args: &[&str]) -> (Option<i32>, String, String, u64) {
    const WRAPPER: &str = "import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stdout.write(r.stdout)
sys.stderr.write(r.stderr)
sys.stderr.write('\\nmaxrss_kib=%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(r.returncode)";
    let output = Command::new("python3")
        .args(["-c", WRAPPER, env!("CARGO_BIN_EXE_tollgate")])
        .args(args)
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let kib: u64 =
        stderr.lines().find_map(|l| l.strip_prefix("maxrss_kib=")).and_then(|n| n.parse().ok()).expect("maxrss");
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned(), stderr, kib * 1024)
}

#[test]
fn cdr_files_that_claim_billions_of_records_are_refused_with_the_offset() {
    let dir = scratch("hostile-cdr");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("mediation/tests/data/ber/pgw.cdr");
    let clean = std::fs::read(&sample).expect("sample");
    // The header claims 4,000,000,000 CDRs in a file of 4 GiB.
    let mut billions = clean.clone();
    billions[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
    billions[18..22].copy_from_slice(&4_000_000_000u32.to_be_bytes());
    // After the real CDRs, one more claims 65,535 bytes and has ten.
    let mut past_end_cdr = clean.clone();
    let last_cdr = past_end_cdr.len() as u64;
    past_end_cdr.extend_from_slice(&[0xff, 0xff, 0x20, 0x21]);
    past_end_cdr.extend_from_slice(&[0x30; 10]);
    // The header's own length points 4 GiB past the end of the file.
    let mut past_end_header = clean.clone();
    past_end_header[4..8].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
    let files = [
        ("clean.cdr", &clean),
        ("billions.cdr", &billions),
        ("past-end-cdr.cdr", &past_end_cdr),
        ("past-end-header.cdr", &past_end_header),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).expect("write");
    }
    let (data, out) = (dir.join("data"), dir.join("out"));
    let mediate = |name: &str| {
        let file = dir.join(name);
        let args = ["mediate", "--data-dir", data.to_str().expect("path"), "--out", out.to_str().expect("path")];
        run_measured(&[&args[..], &["--max-age-days", "100000", file.to_str().expect("path")]].concat())
    };
    let summary = |name: &str| -> Value {
        let path = out.join(format!("{name}.summary.json"));
        serde_json::from_slice(&std::fs::read(path).expect("summary")).expect("json")
    };
    let (code, _, stderr, clean_peak) = mediate("clean.cdr");
    assert_eq!(code, Some(0), "{stderr}");
    let clean_in = summary("clean.cdr")["records_in"].clone();

    // The claims are compared with the file, reported, and every CDR is read.
    let (code, _, stderr, billions_peak) = mediate("billions.cdr");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(summary("billions.cdr")["records_in"], clean_in);
    assert!(
        stderr.contains("the file header's CDR count disagrees") && stderr.contains("header=4000000000"),
        "{stderr}"
    );
    assert!(stderr.contains("file length in the header disagrees") && stderr.contains("header=4294967295"), "{stderr}");

    // The CDR that runs past the end is the file's unreadable rest, rejected with its offset.
    let (code, _, stderr, past_end_cdr_peak) = mediate("past-end-cdr.cdr");
    assert_eq!(code, Some(0), "the readable part is rated: {stderr}");
    let tail = summary("past-end-cdr.cdr");
    assert_eq!(tail["unreadable_from"], last_cdr, "{tail}");
    assert_eq!(tail["rejected_by_reason"]["malformed"], 1, "{tail}");
    let rejects = std::fs::read_to_string(out.join("past-end-cdr.cdr.rejects.csv")).expect("rejects");
    let expected = format!("byte {last_cdr}: CDR of 65535 bytes runs past the end of the file (10 bytes left)");
    assert!(rejects.contains(&expected), "{rejects}");

    // A header longer than the file: the file is refused, naming the field.
    let (code, _, stderr, past_end_header_peak) = mediate("past-end-header.cdr");
    assert_eq!(code, Some(1), "{stderr}");
    let expected = format!("file header: header length 4294967280 is past the end ({} bytes)", clean.len());
    assert!(stderr.contains(&expected), "{stderr}");

    // Nothing is sized from what a header claims: a CDR is read into a buffer of at most
    // 65,535 bytes (its 2-octet length), so a hostile file costs what a clean one does.
    for (case, peak) in [
        ("4,000,000,000 CDRs claimed", billions_peak),
        ("a CDR of 65,535 bytes past the end", past_end_cdr_peak),
        ("a header length past the end", past_end_header_peak),
    ] {
        println!("peak RSS [mediate, {case}]: {} MiB (clean file: {} MiB)", peak >> 20, clean_peak >> 20);
        assert!(
            peak <= clean_peak + ALLOCATOR_SLACK_BYTES,
            "{case}: {peak} bytes against {clean_peak} for a clean file"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn silent_nchf_connections_are_closed_at_the_idle_time_and_floods_wait_at_the_connection_limit() {
    let server = Server::start("nchf-idle", &["--nchf-idle-seconds", "1", "--nchf-max-connections", "64"]);
    let mut witness = Witness::connect(&server);
    // 200 connections that send nothing: 64 are taken, the rest wait in the backlog; each
    // taken one is closed a second after it was accepted, so every one is closed in the end.
    let address = server.nchf.clone();
    let closed = while_served(&mut witness, move || {
        let silent: Vec<TcpStream> = (0..200).map(|_| TcpStream::connect(&address).expect("connect")).collect();
        silent
            .into_iter()
            .filter(|stream| {
                // A hang guard only: the server's deadline under test is one second.
                stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
                let mut buf = [0u8; 1];
                match (&*stream).read(&mut buf) {
                    Ok(0) => true,
                    Err(error) => !matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                    Ok(_) => false,
                }
            })
            .count()
    });
    assert_eq!(closed, 200, "every silent connection is closed");
    // Nchf still serves.
    let (status, _, body) =
        http(&server.nchf, "POST", "/nchf-convergedcharging/v3/chargingdata", &charging_data(3, Some(1), None));
    assert_eq!(status, 201, "{body}");
    witness.is_served();
    // 64 connections are held at once (the limit), each with its task and buffers: the
    // bound is for those 64 (it was for one, which the peak passed by 2 MiB under CI load).
    let bound = server.bound_bytes(64, 0);
    server.finish("silent nchf connections", bound);
}
