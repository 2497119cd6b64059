//! The Diameter server over a real TCP socket: capabilities exchange, credit-control
//! sessions and events, retransmissions, credit exhaustion, malformed messages.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rust_decimal::Decimal;
use tollgate_engine::{
    AccountKind, Body, Engine, EngineConfig, Identity, Operation, Plans, Request, SystemClock, Target,
};
use tollgate_oss_adapters::diameter::codec::{find, FLAG_ERROR, FLAG_PROXIABLE, FLAG_REQUEST, FLAG_RETRANSMIT};
use tollgate_oss_adapters::diameter::dictionary::{code, VENDOR_3GPP};
use tollgate_oss_adapters::diameter::server::{serve, DiameterConfig};
use tollgate_oss_adapters::diameter::{Avp, Frame, Message};

struct Server {
    engine: Arc<Engine>,
    address: std::net::SocketAddr,
    _runtime: tokio::runtime::Runtime,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(name: &str) -> Server {
    start_with(name, DiameterConfig::default())
}

fn start_with(name: &str, config: DiameterConfig) -> Server {
    let dir = std::env::temp_dir().join(format!("tollgate-dia-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut plans = Plans::new();
    plans.load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../tariffs/examples/prepaid-mobile.toml")).expect("plan");
    let engine = Arc::new(Engine::open(EngineConfig::new(&dir), plans, Arc::new(SystemClock)).expect("engine"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let address = listener.local_addr().expect("address");
    let config = Arc::new(DiameterConfig { origin_host: "ocs.test".into(), origin_realm: "test".into(), ..config });
    runtime.spawn(serve(listener, Arc::clone(&engine), config, std::future::pending()));
    Server { engine, address, _runtime: runtime, dir }
}

fn subscriber(server: &Server, account: u64, msisdn: &str, balance: &str) {
    let run = |key: &str, operation| {
        server
            .engine
            .execute(Request { key: Some(key.into()), target: Target::Account(account), operation })
            .expect("answer")
    };
    run(
        &format!("a{account}"),
        Operation::CreateAccount {
            kind: AccountKind::Prepaid,
            currency: "EUR".into(),
            credit_limit: Decimal::ZERO,
            opening_balance: balance.parse().expect("amount"),
        },
    );
    run(
        &format!("s{account}"),
        Operation::CreateSubscription {
            subscription: account,
            plan: "mobile-prepaid-s".into(),
            identities: vec![Identity::Msisdn(msisdn.into())],
        },
    );
}

fn balance(server: &Server, account: u64) -> Decimal {
    match server
        .engine
        .execute(Request { key: None, target: Target::Account(account), operation: Operation::BalanceEnquiry })
        .expect("answer")
        .body
    {
        Body::Balance(view) => view.balance,
        other => panic!("{other:?}"),
    }
}

struct Client {
    stream: TcpStream,
    hop: u32,
}

impl Client {
    fn connect(server: &Server) -> Client {
        let stream = TcpStream::connect(server.address).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        Client { stream, hop: 0 }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    fn read(&mut self) -> Option<Message> {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Ok(Frame::Message(length)) = tollgate_oss_adapters::diameter::codec::frame(&buffer) {
                return Some(Message::decode(Bytes::from(buffer[..length].to_vec())).expect("answer decodes"));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn request(&mut self, command: u32, application: u32, avps: Vec<Avp>) -> Message {
        self.hop += 1;
        let message = Message {
            flags: FLAG_REQUEST | FLAG_PROXIABLE,
            command,
            application,
            hop_by_hop: self.hop,
            end_to_end: self.hop,
            avps,
        };
        self.send_raw(&message.encode());
        let answer = self.read().expect("an answer");
        assert_eq!((answer.hop_by_hop, answer.command), (self.hop, command));
        answer
    }

    fn cer(&mut self) -> Message {
        self.request(
            257,
            0,
            vec![
                Avp::utf8(code::ORIGIN_HOST, 0, "pgw.test"),
                Avp::utf8(code::ORIGIN_REALM, 0, "test"),
                Avp::new(code::HOST_IP_ADDRESS, 0, vec![0, 1, 127, 0, 0, 1]),
                Avp::u32(code::VENDOR_ID, 0, 0),
                Avp::utf8(code::PRODUCT_NAME, 0, "test client"),
                Avp::u32(code::AUTH_APPLICATION_ID, 0, 4),
            ],
        )
    }
}

fn result_code(message: &Message) -> Option<u32> {
    message.avp(code::RESULT_CODE, 0).and_then(Avp::as_u32)
}

/// The code of the AVP an answer's Failed-AVP holds (its first four bytes).
fn failed_code(message: &Message) -> u32 {
    let failed = message.avp(code::FAILED_AVP, 0).expect("Failed-AVP");
    u32::from_be_bytes([failed.data[0], failed.data[1], failed.data[2], failed.data[3]])
}

fn ccr(session: &str, request_type: u32, number: u32, msisdn: &str, mscc: Vec<Avp>, extra: Vec<Avp>) -> Vec<Avp> {
    let mut avps = vec![
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
    ];
    avps.extend(mscc);
    avps.extend(extra);
    avps
}

fn octets(code_: u32, units: u64) -> Avp {
    Avp::grouped(code_, 0, &[Avp::u64(code::CC_TOTAL_OCTETS, 0, units)])
}

fn mscc(rating_group: u32, requested: Option<u64>, used: Option<u64>) -> Avp {
    let mut members = vec![Avp::u32(code::RATING_GROUP, 0, rating_group)];
    if let Some(units) = requested {
        members.push(octets(code::REQUESTED_SERVICE_UNIT, units));
    }
    if let Some(units) = used {
        members.push(octets(code::USED_SERVICE_UNIT, units));
    }
    Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0, &members)
}

fn granted_octets(answer: &Message) -> Vec<(u32, Option<u64>, Option<u32>, bool)> {
    answer
        .avps(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0)
        .map(|m| {
            let members = m.group().expect("mscc");
            let granted = find(&members, code::GRANTED_SERVICE_UNIT, 0)
                .and_then(|g| g.group().ok())
                .and_then(|g| find(&g, code::CC_TOTAL_OCTETS, 0).and_then(Avp::as_u64));
            (
                find(&members, code::RATING_GROUP, 0).and_then(Avp::as_u32).unwrap_or(0),
                granted,
                find(&members, code::RESULT_CODE, 0).and_then(Avp::as_u32),
                find(&members, code::FINAL_UNIT_INDICATION, 0).is_some(),
            )
        })
        .collect()
}

#[test]
fn a_data_session_is_charged_once_even_when_retransmitted() {
    let server = start("session");
    subscriber(&server, 1, "491700000001", "1.00");
    let mut client = Client::connect(&server);
    let cea = client.cer();
    assert_eq!(result_code(&cea), Some(2001));
    assert_eq!(cea.avp(code::AUTH_APPLICATION_ID, 0).and_then(Avp::as_u32), Some(4));
    assert_eq!(cea.avp(code::ORIGIN_HOST, 0).and_then(Avp::as_str), Some("ocs.test"));
    assert_eq!(cea.avp(code::SUPPORTED_VENDOR_ID, 0).and_then(Avp::as_u32), Some(VENDOR_3GPP), "3GPP's AVPs are read");

    let initial =
        client.request(272, 4, ccr("pgw;1", 1, 0, "491700000001", vec![mscc(30, Some(1 << 20), None)], vec![]));
    assert_eq!(result_code(&initial), Some(2001));
    assert_eq!(initial.avp(code::SESSION_ID, 0).and_then(Avp::as_str), Some("pgw;1"));
    assert_eq!(granted_octets(&initial), vec![(30, Some(1 << 20), Some(2001), false)]);

    let update_avps = ccr("pgw;1", 2, 1, "491700000001", vec![mscc(30, Some(1 << 20), Some(1 << 20))], vec![]);
    let update = client.request(272, 4, update_avps.clone());
    assert_eq!(result_code(&update), Some(2001));
    assert_eq!(balance(&server, 1), "0.90".parse::<Decimal>().expect("d"));
    // The same request again with the T flag: the same answer, nothing charged twice.
    client.hop += 1;
    let retransmitted = Message {
        flags: FLAG_REQUEST | FLAG_RETRANSMIT,
        command: 272,
        application: 4,
        hop_by_hop: client.hop,
        end_to_end: client.hop,
        avps: update_avps,
    };
    client.send_raw(&retransmitted.encode());
    let again = client.read().expect("answer");
    assert_eq!(again.avps, update.avps);
    assert_eq!(balance(&server, 1), "0.90".parse::<Decimal>().expect("d"));

    let terminate =
        client.request(272, 4, ccr("pgw;1", 3, 2, "491700000001", vec![mscc(30, None, Some(512 << 10))], vec![]));
    assert_eq!(result_code(&terminate), Some(2001));
    assert_eq!(balance(&server, 1), "0.85".parse::<Decimal>().expect("d"));

    let dwa = client.request(
        280,
        0,
        vec![Avp::utf8(code::ORIGIN_HOST, 0, "pgw.test"), Avp::utf8(code::ORIGIN_REALM, 0, "test")],
    );
    assert_eq!(result_code(&dwa), Some(2001));
    let dpa = client.request(
        282,
        0,
        vec![
            Avp::utf8(code::ORIGIN_HOST, 0, "pgw.test"),
            Avp::utf8(code::ORIGIN_REALM, 0, "test"),
            Avp::u32(code::DISCONNECT_CAUSE, 0, 0),
        ],
    );
    assert_eq!(result_code(&dpa), Some(2001));
    assert!(client.read().is_none(), "the server closes after DPA");
}

#[test]
fn credit_exhaustion_unknown_users_and_events() {
    let server = start("exhaustion");
    subscriber(&server, 1, "491700000001", "0.15");
    let mut client = Client::connect(&server);
    client.cer();
    // 0.15 buys 1.5 MB of video: a final grant smaller than asked.
    let initial =
        client.request(272, 4, ccr("pgw;2", 1, 0, "491700000001", vec![mscc(30, Some(10 << 20), None)], vec![]));
    let grants = granted_octets(&initial);
    assert_eq!(grants.len(), 1);
    let (_, granted, code_, final_unit) = grants[0];
    assert_eq!(code_, Some(2001));
    assert!(granted.expect("granted") < 10 << 20 && granted.expect("granted") > 1 << 20, "{granted:?}");
    assert!(final_unit, "Final-Unit-Indication when the balance runs out");

    let unknown = client.request(272, 4, ccr("pgw;3", 1, 0, "499999999", vec![mscc(30, Some(1 << 20), None)], vec![]));
    assert_eq!(result_code(&unknown), Some(5030));

    // An SMS as an EVENT with direct debiting: paid by the SMS bundle.
    let sms_info = Avp::grouped(
        code::SERVICE_INFORMATION,
        VENDOR_3GPP,
        &[Avp::grouped(
            code::SMS_INFORMATION,
            VENDOR_3GPP,
            &[Avp::grouped(
                code::RECIPIENT_ADDRESS,
                VENDOR_3GPP,
                &[Avp::utf8(code::ADDRESS_DATA, VENDOR_3GPP, "+491701112222")],
            )],
        )],
    );
    let mut event = ccr("smsc;1", 4, 0, "491700000001", vec![], vec![Avp::u32(code::REQUESTED_ACTION, 0, 0), sms_info]);
    event[5] = Avp::utf8(code::SERVICE_CONTEXT_ID, 0, "32274@3gpp.org");
    event.push(Avp::grouped(code::REQUESTED_SERVICE_UNIT, 0, &[Avp::u64(code::CC_SERVICE_SPECIFIC_UNITS, 0, 1)]));
    let answer = client.request(272, 4, event.clone());
    assert_eq!(result_code(&answer), Some(2001));
    assert!(answer.avp(code::COST_INFORMATION, 0).is_some());
    // Regression: REFUND_ACCOUNT (not served) was 5004 without the Failed-AVP RFC 6733
    // §7.1.5 requires.
    event[0] = Avp::utf8(code::SESSION_ID, 0, "smsc;2");
    let at = event.iter().position(|a| a.code == code::REQUESTED_ACTION).expect("Requested-Action");
    event[at] = Avp::u32(code::REQUESTED_ACTION, 0, 1);
    let answer = client.request(272, 4, event);
    assert_eq!(result_code(&answer), Some(5004));
    assert_eq!(failed_code(&answer), code::REQUESTED_ACTION);
    // Regression: an event's second Multiple-Services-Credit-Control was dropped, neither
    // charged nor answered: refused (5009), nothing charged.
    let before = balance(&server, 1);
    let two = vec![mscc(30, Some(1_000), None), mscc(40, Some(1), None)];
    let event = ccr("smsc;3", 4, 0, "491700000001", two, vec![Avp::u32(code::REQUESTED_ACTION, 0, 0)]);
    let answer = client.request(272, 4, event);
    assert_eq!(result_code(&answer), Some(5009));
    assert!(answer.avp(code::FAILED_AVP, 0).is_some());
    assert_eq!(balance(&server, 1), before);
}

#[test]
fn malformed_messages_get_result_codes_and_the_connection_survives() {
    let server = start("malformed");
    subscriber(&server, 1, "491700000001", "1.00");
    let mut client = Client::connect(&server);
    client.cer();
    // A CCR missing CC-Request-Number: 5005 with Failed-AVP.
    let mut avps = ccr("pgw;4", 1, 0, "491700000001", vec![mscc(30, Some(1), None)], vec![]);
    avps.retain(|a| a.code != code::CC_REQUEST_NUMBER);
    let answer = client.request(272, 4, avps);
    assert_eq!(result_code(&answer), Some(5005));
    assert_eq!(failed_code(&answer), code::CC_REQUEST_NUMBER);
    // Regression: a second Session-Id was ignored (2001); RFC 6733 §8.8 allows one: 5009
    // naming the second.
    let avps = ccr(
        "pgw;4b",
        1,
        0,
        "491700000001",
        vec![mscc(30, Some(1), None)],
        vec![Avp::utf8(code::SESSION_ID, 0, "pgw;other")],
    );
    let answer = client.request(272, 4, avps);
    assert_eq!(result_code(&answer), Some(5009));
    let failed = answer.avp(code::FAILED_AVP, 0).expect("Failed-AVP");
    assert!(failed.data.windows(9).any(|w| w == b"pgw;other"), "{failed:?}");
    // An unknown AVP with the M bit: 5001.
    let mut avps = ccr("pgw;5", 1, 0, "491700000001", vec![], vec![]);
    avps.push(Avp::u32(99_999, 0, 1));
    let answer = client.request(272, 4, avps);
    assert_eq!(result_code(&answer), Some(5001));
    // A broken AVP length inside an otherwise framed message: 5014.
    client.hop += 1;
    let good = Message {
        flags: FLAG_REQUEST,
        command: 272,
        application: 4,
        hop_by_hop: client.hop,
        end_to_end: 1,
        avps: ccr("pgw;6", 1, 0, "491700000001", vec![], vec![]),
    };
    let mut bytes = good.encode().to_vec();
    bytes[20 + 7] = 0xfe;
    client.send_raw(&bytes);
    let answer = client.read().expect("answer");
    assert_eq!(result_code(&answer), Some(5014));
    // Header bits that must be zero: 3008, with the E bit.
    client.hop += 1;
    let mut bytes = Message { hop_by_hop: client.hop, ..good }.encode().to_vec();
    bytes[4] |= 0x01;
    client.send_raw(&bytes);
    let answer = client.read().expect("answer");
    assert_eq!((result_code(&answer), answer.flags & FLAG_ERROR), (Some(3008), FLAG_ERROR));
    // Regression: a Subscription-Id-Type outside 0..=4 was answered 5005 "AVP 443 is
    // missing"; it is an invalid value (RFC 4006 §8.47): 5004 naming it.
    let mut avps = ccr("pgw;7", 1, 0, "491700000001", vec![mscc(30, Some(1), None)], vec![]);
    avps.retain(|a| a.code != code::SUBSCRIPTION_ID);
    let bad_type = Avp::u32(code::SUBSCRIPTION_ID_TYPE, 0, 77);
    avps.push(Avp::grouped(
        code::SUBSCRIPTION_ID,
        0,
        &[bad_type.clone(), Avp::utf8(code::SUBSCRIPTION_ID_DATA, 0, "491700000001")],
    ));
    let answer = client.request(272, 4, avps);
    assert_eq!(result_code(&answer), Some(5004));
    assert_eq!(answer.avp(code::FAILED_AVP, 0).map(|failed| failed.data.clone()), Some(bad_type.encode()));
    // Regression: an empty Origin-Host (a DiameterIdentity is an FQDN) was served.
    let mut avps = ccr("pgw;8", 1, 0, "491700000001", vec![mscc(30, Some(1), None)], vec![]);
    for avp in &mut avps {
        if avp.code == code::ORIGIN_HOST {
            *avp = Avp::utf8(code::ORIGIN_HOST, 0, "");
        }
    }
    assert_eq!(result_code(&client.request(272, 4, avps)), Some(5004));
    // Regression: a DWR without Origin-Host was answered 2001 (RFC 6733 §5.5.1).
    let dwa = client.request(280, 0, vec![Avp::utf8(code::ORIGIN_REALM, 0, "test")]);
    assert_eq!(result_code(&dwa), Some(5005));
    // A command the server does not serve: 3001.
    let answer = client.request(999, 4, vec![Avp::utf8(code::ORIGIN_HOST, 0, "pgw.test")]);
    assert_eq!(result_code(&answer), Some(3001));
    // Still alive.
    let dwa = client.request(
        280,
        0,
        vec![Avp::utf8(code::ORIGIN_HOST, 0, "pgw.test"), Avp::utf8(code::ORIGIN_REALM, 0, "test")],
    );
    assert_eq!(result_code(&dwa), Some(2001));
}

/// Regression: the server never sent a watchdog; it closed a healthy peer that answers
/// watchdogs but sends none of its own after 3 × Tw and raised a peer-down alarm for it.
/// RFC 3539: after Tw without a message the server sends a DWR; answered, the peer stays;
/// unanswered, it is closed after 3 × Tw.
#[test]
fn the_server_sends_watchdogs_to_a_quiet_peer_and_keeps_it_while_it_answers() {
    let tw = Duration::from_millis(300);
    let config = DiameterConfig { watchdog_interval: tw, idle_timeout: 3 * tw, ..DiameterConfig::default() };
    let server = start_with("watchdog", config);
    let mut client = Client::connect(&server);
    assert_eq!(result_code(&client.cer()), Some(2001));
    let started = std::time::Instant::now();
    let mut identifiers = Vec::new();
    // Answered for 4 × Tw: the server keeps asking, the connection stays.
    while started.elapsed() < 4 * tw {
        let dwr = client.read().expect("a watchdog, not a close");
        assert_eq!((dwr.command, dwr.flags & FLAG_REQUEST), (280, FLAG_REQUEST), "{dwr:?}");
        assert_eq!(dwr.avp(code::ORIGIN_HOST, 0).and_then(Avp::as_str), Some("ocs.test"));
        assert!(dwr.avp(code::ORIGIN_REALM, 0).is_some());
        identifiers.push((dwr.hop_by_hop, dwr.end_to_end));
        let dwa = Message {
            flags: 0,
            command: 280,
            application: 0,
            hop_by_hop: dwr.hop_by_hop,
            end_to_end: dwr.end_to_end,
            avps: vec![
                Avp::u32(code::RESULT_CODE, 0, 2001),
                Avp::utf8(code::ORIGIN_HOST, 0, "pgw.test"),
                Avp::utf8(code::ORIGIN_REALM, 0, "test"),
            ],
        };
        client.send_raw(&dwa.encode());
    }
    assert!(identifiers.len() >= 3, "{identifiers:?}");
    let mut unique = identifiers.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), identifiers.len(), "each watchdog its own identifiers");
    // Still served.
    let dwa = client.request(
        280,
        0,
        vec![Avp::utf8(code::ORIGIN_HOST, 0, "pgw.test"), Avp::utf8(code::ORIGIN_REALM, 0, "test")],
    );
    assert_eq!(result_code(&dwa), Some(2001));
    // Unanswered: more watchdogs, then the close.
    let mut unanswered = 0;
    while let Some(message) = client.read() {
        assert_eq!(message.command, 280);
        unanswered += 1;
    }
    assert!((1..=3).contains(&unanswered), "{unanswered} watchdogs before the close");
}

#[test]
fn nothing_but_cer_before_the_capabilities_exchange() {
    let server = start("before-cer");
    let mut client = Client::connect(&server);
    let answer = client.request(
        280,
        0,
        vec![Avp::utf8(code::ORIGIN_HOST, 0, "pgw.test"), Avp::utf8(code::ORIGIN_REALM, 0, "test")],
    );
    assert_eq!(result_code(&answer), Some(3010));
    assert!(client.read().is_none(), "closed");
    let mut client = Client::connect(&server);
    let cea = client.request(
        257,
        0,
        vec![
            Avp::utf8(code::ORIGIN_HOST, 0, "pgw.test"),
            Avp::utf8(code::ORIGIN_REALM, 0, "test"),
            Avp::u32(code::AUTH_APPLICATION_ID, 0, 16_777_238),
        ],
    );
    assert_eq!(result_code(&cea), Some(5010), "no common application");
}

fn data_bundle_left(server: &Server, account: u64) -> String {
    match server
        .engine
        .execute(Request { key: None, target: Target::Account(account), operation: Operation::BalanceEnquiry })
        .expect("answer")
        .body
    {
        Body::Balance(view) => {
            view.buckets.iter().find(|b| b.kind == "data-10gb").map(|b| b.remaining.clone()).expect("data bundle")
        }
        other => panic!("{other:?}"),
    }
}

/// Regression (issue 14, item 1): a CCR-Update or CCR-Termination on a Session-Id the
/// server never saw, or already terminated, was answered 2001 and charged in money
/// (back-dated by its octets read as seconds, so the data bundle was skipped), or 5031
/// above about 29 MB. RFC 4006 §7 / RFC 6733 §7.1.5: 5002 DIAMETER_UNKNOWN_SESSION_ID.
#[test]
fn usage_on_an_unknown_or_terminated_session_is_5002_and_charges_nothing() {
    let server = start("unknown-session");
    subscriber(&server, 1, "491700000001", "10.00");
    let bundle = data_bundle_left(&server, 1);
    let mut client = Client::connect(&server);
    client.cer();
    for (session, request_type, octets_used) in
        [("never;1", 2, 1_000_000u64), ("never;2", 2, 10_000_000_000), ("never;3", 3, 1_000_000)]
    {
        let answer = client.request(
            272,
            4,
            ccr(session, request_type, 1, "491700000001", vec![mscc(10, None, Some(octets_used))], vec![]),
        );
        assert_eq!(result_code(&answer), Some(5002), "{session}");
        assert_eq!(answer.avp(code::SESSION_ID, 0).and_then(Avp::as_str), Some(session));
    }
    assert_eq!(balance(&server, 1), "10.00".parse::<Decimal>().expect("d"));
    assert_eq!(data_bundle_left(&server, 1), bundle, "the bundle is untouched");

    // A terminated session is unknown from then on.
    let initial =
        client.request(272, 4, ccr("pgw;9", 1, 0, "491700000001", vec![mscc(10, Some(1 << 20), None)], vec![]));
    assert_eq!(result_code(&initial), Some(2001));
    let terminate =
        client.request(272, 4, ccr("pgw;9", 3, 1, "491700000001", vec![mscc(10, None, Some(1000))], vec![]));
    assert_eq!(result_code(&terminate), Some(2001));
    let after = data_bundle_left(&server, 1);
    let late =
        client.request(272, 4, ccr("pgw;9", 2, 2, "491700000001", vec![mscc(10, None, Some(1_000_000))], vec![]));
    assert_eq!(result_code(&late), Some(5002));
    assert_eq!(data_bundle_left(&server, 1), after);
    assert_eq!(balance(&server, 1), "10.00".parse::<Decimal>().expect("d"), "data came from the bundle");
}

/// A suspended subscriber gets 4010 DIAMETER_END_USER_SERVICE_DENIED (RFC 4006 §9.1).
#[test]
fn a_suspended_subscriber_gets_4010_and_is_served_again_when_resumed() {
    let server = start("suspended");
    subscriber(&server, 1, "491700000001", "10.00");
    let mut client = Client::connect(&server);
    client.cer();
    let suspend = |operation| {
        server
            .engine
            .execute(Request { key: Some(format!("{operation:?}")), target: Target::Subscription(1), operation })
            .expect("answer")
    };
    suspend(Operation::Suspend { reason: "dunning".into() });
    let refused =
        client.request(272, 4, ccr("pgw;s1", 1, 0, "491700000001", vec![mscc(30, Some(1 << 20), None)], vec![]));
    assert_eq!(result_code(&refused), Some(4010));
    suspend(Operation::Resume);
    let served =
        client.request(272, 4, ccr("pgw;s2", 1, 0, "491700000001", vec![mscc(30, Some(1 << 20), None)], vec![]));
    assert_eq!(result_code(&served), Some(2001));
}

/// Regression: a Used-Service-Unit carrying CC-Time and CC-Total-Octets (as gateways
/// report) was charged for its time as if it were bytes, so the volume went unpaid; a
/// CC-Time alone on a volume-counted rating group was charged as bytes, and a quota asked
/// in time was granted as CC-Time. The tariff's unit is read, the grant is in it, and a
/// report without it is refused with 5031 naming it.
#[test]
fn usage_is_read_and_granted_in_the_unit_the_tariff_counts() {
    let server = start("measures");
    subscriber(&server, 1, "491700000001", "1.00");
    let mut client = Client::connect(&server);
    assert_eq!(result_code(&client.cer()), Some(2001));
    let group = |members: Vec<Avp>| {
        let mut all = vec![Avp::u32(code::RATING_GROUP, 0, 30)];
        all.extend(members);
        Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0, &all)
    };
    let initial =
        client.request(272, 4, ccr("pgw;m", 1, 0, "491700000001", vec![mscc(30, Some(1 << 20), None)], vec![]));
    assert_eq!(result_code(&initial), Some(2001));

    // Time and volume together: the 2 MiB are charged (RG 30 costs 0.10 a MiB).
    let both = Avp::grouped(
        code::USED_SERVICE_UNIT,
        0,
        &[Avp::u32(code::CC_TIME, 0, 60), Avp::u64(code::CC_TOTAL_OCTETS, 0, 2 << 20)],
    );
    let update = client.request(272, 4, ccr("pgw;m", 2, 1, "491700000001", vec![group(vec![both])], vec![]));
    assert_eq!(result_code(&update), Some(2001));
    assert_eq!(balance(&server, 1), "0.80".parse::<Decimal>().expect("d"));

    // Time alone on a rating group counted in bytes: refused, naming the report; nothing charged.
    let time_only = Avp::grouped(code::USED_SERVICE_UNIT, 0, &[Avp::u32(code::CC_TIME, 0, 5_000_000)]);
    let refused =
        client.request(272, 4, ccr("pgw;m", 2, 2, "491700000001", vec![group(vec![time_only.clone()])], vec![]));
    assert_eq!(result_code(&refused), Some(5031));
    let failed = refused.avp(code::FAILED_AVP, 0).expect("Failed-AVP").group().expect("grouped");
    assert_eq!(failed, vec![time_only]);
    assert_eq!(balance(&server, 1), "0.80".parse::<Decimal>().expect("d"));

    // A quota asked in time is granted in octets, the unit the tariff counts.
    let in_time = Avp::grouped(code::REQUESTED_SERVICE_UNIT, 0, &[Avp::u32(code::CC_TIME, 0, 60)]);
    let granted = client.request(272, 4, ccr("pgw;m", 2, 3, "491700000001", vec![group(vec![in_time])], vec![]));
    assert_eq!(result_code(&granted), Some(2001));
    let mscc = granted.avp(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0).expect("mscc").group().expect("grouped");
    let gsu = find(&mscc, code::GRANTED_SERVICE_UNIT, 0).expect("GSU").group().expect("grouped");
    assert!(find(&gsu, code::CC_TOTAL_OCTETS, 0).and_then(Avp::as_u64).is_some_and(|octets| octets > 0), "{gsu:?}");
    assert!(find(&gsu, code::CC_TIME, 0).is_none(), "{gsu:?}");
}

/// Regressions: an unknown IETF AVP with the M bit inside a Multiple-Services-Credit-
/// Control was served (2001, quota granted); Proxy-Info was not copied into answers, so a
/// stateless agent could not route them back; a 5001 for a CCR lacked the CCA's own AVPs;
/// an answer to an undecodable request lost its P bit.
#[test]
fn nested_unknown_avps_proxy_info_and_the_p_bit_are_answered_as_rfc_6733_says() {
    let server = start("nested");
    subscriber(&server, 1, "491700000001", "1.00");
    let mut client = Client::connect(&server);
    client.cer();
    let proxy = Avp::grouped(
        code::PROXY_INFO,
        0,
        &[Avp::utf8(code::PROXY_HOST, 0, "dra1.test"), Avp::new(code::PROXY_STATE, 0, b"state-abc".to_vec())],
    );
    let unknown = Avp::u32(99_998, 0, 1);
    let group = Avp::grouped(
        code::MULTIPLE_SERVICES_CREDIT_CONTROL,
        0,
        &[Avp::u32(code::RATING_GROUP, 0, 30), octets(code::REQUESTED_SERVICE_UNIT, 1 << 20), unknown.clone()],
    );
    let refused = client.request(272, 4, ccr("pgw;n", 1, 0, "491700000001", vec![group], vec![proxy.clone()]));
    assert_eq!(result_code(&refused), Some(5001));
    let failed = refused.avp(code::FAILED_AVP, 0).expect("Failed-AVP").group().expect("grouped");
    assert_eq!(failed, vec![Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0, &[unknown])], "the path to it");
    for avp in [code::AUTH_APPLICATION_ID, code::CC_REQUEST_TYPE, code::CC_REQUEST_NUMBER] {
        assert!(refused.avp(avp, 0).is_some(), "AVP {avp} in the CCA");
    }
    assert_eq!(refused.avps(code::PROXY_INFO, 0).cloned().collect::<Vec<_>>(), vec![proxy.clone()]);
    assert_eq!(balance(&server, 1), "1.00".parse::<Decimal>().expect("d"), "nothing reserved or charged");

    // A vendor's unknown member of a group is let through (3GPP adds them by release).
    let vendor = Avp::u32(99_997, VENDOR_3GPP, 1);
    let group = Avp::grouped(
        code::MULTIPLE_SERVICES_CREDIT_CONTROL,
        0,
        &[Avp::u32(code::RATING_GROUP, 0, 30), octets(code::REQUESTED_SERVICE_UNIT, 1 << 20), vendor],
    );
    let served = client.request(272, 4, ccr("pgw;n2", 1, 0, "491700000001", vec![group], vec![proxy.clone()]));
    assert_eq!(result_code(&served), Some(2001));
    assert_eq!(served.avps(code::PROXY_INFO, 0).cloned().collect::<Vec<_>>(), vec![proxy], "kept in a CCA too");

    // An AVP length that lies: 5014, with the request's P bit.
    client.hop += 1;
    let request = Message {
        flags: FLAG_REQUEST | FLAG_PROXIABLE,
        command: 272,
        application: 4,
        hop_by_hop: client.hop,
        end_to_end: 9,
        avps: ccr("pgw;n3", 1, 0, "491700000001", vec![], vec![]),
    };
    let mut bytes = request.encode().to_vec();
    bytes[20 + 7] = 0xfe;
    client.send_raw(&bytes);
    let answer = client.read().expect("answer");
    assert_eq!((result_code(&answer), answer.flags & FLAG_PROXIABLE), (Some(5014), FLAG_PROXIABLE));
}

/// Regression: a quota asked past what one usage event may be (2^53 octets and more) was
/// refused 5031; the server grants fewer units than asked (RFC 4006 §5.1.1): what the
/// balance pays for.
#[test]
fn a_huge_quota_asked_is_granted_what_the_balance_pays_for() {
    let server = start("huge");
    subscriber(&server, 1, "491700000001", "1.00");
    let mut client = Client::connect(&server);
    client.cer();
    for (number, asked) in [(0u32, 1u64 << 53), (1, u64::MAX)] {
        let session = format!("pgw;huge{number}");
        let answer =
            client.request(272, 4, ccr(&session, 1, 0, "491700000001", vec![mscc(30, Some(asked), None)], vec![]));
        assert_eq!(result_code(&answer), Some(2001), "{asked}");
        let granted = granted_octets(&answer);
        // RG 30 costs 0.10 a MiB: 1.00 pays for 10 MiB at most.
        assert!(granted[0].1.is_some_and(|octets| octets > 0 && octets <= 10 << 20), "{asked}: {granted:?}");
        let end = client.request(272, 4, ccr(&session, 3, 1, "491700000001", vec![mscc(30, None, Some(0))], vec![]));
        assert_eq!(result_code(&end), Some(2001));
    }
}
