//! TLS on the network front-ends over real sockets, driven by independent implementations
//! (`tests/tls_tools.py`): the openssl command line makes the PKI and signs the NRF's access
//! tokens, curl (OpenSSL, nghttp2) is the Nchf client, Python's ssl module (OpenSSL) the
//! Diameter peer.
//!
//! Nchf: TLS with client certificates from one CA required and RS256 access tokens required.
//! Diameter: TLS from the first byte (RFC 6733 §13) with client certificates required and
//! the CER's Origin-Host checked against the certificate.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tollgate_engine::{
    AccountKind, Body, Engine, EngineConfig, Identity, Operation, Plans, Request, SystemClock, Target,
};
use tollgate_oss_adapters::diameter::codec::{find, FLAG_PROXIABLE, FLAG_REQUEST};
use tollgate_oss_adapters::diameter::dictionary::code;
use tollgate_oss_adapters::diameter::server::{serve_tls as serve_diameter_tls, DiameterConfig};
use tollgate_oss_adapters::diameter::{Avp, Message};
use tollgate_oss_adapters::nchf::oauth::{require_access_tokens, AccessTokenVerifier};
use tollgate_oss_adapters::nchf::server::{router, serve_tls as serve_nchf_tls};
use tollgate_oss_adapters::tls::{server_config, TlsFiles, ALPN_HTTP};

const BASE: &str = "/nchf-convergedcharging/v3/chargingdata";
const NRF: &str = "0f1e2d3c-4b5a-4987-8765-43210fedcba9";
const CHF: &str = "5a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d";
const MSISDN: &str = "4917000000001";

fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls_tools.py")
}

/// Runs `tls_tools.py` and returns its standard output.
fn tool(args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("python3")
        .arg(tools())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("stdin written");
    let output = child.wait_with_output().expect("tls_tools runs");
    assert!(output.status.success(), "tls_tools {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8")
}

struct Server {
    engine: Arc<Engine>,
    nchf: std::net::SocketAddr,
    diameter: std::net::SocketAddr,
    pki: PathBuf,
    _runtime: tokio::runtime::Runtime,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    fn file(&self, name: &str) -> String {
        self.pki.join(name).display().to_string()
    }
}

/// An engine with subscriber MSISDN (20.00 EUR), a PKI, and both front-ends over TLS:
/// Nchf (client CA `ca.pem`, access tokens from `nrf-rsa.pub`) and Diameter.
fn start(name: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("tollgate-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pki = dir.join("pki");
    tool(&["pki", pki.to_str().expect("path")], "");
    let mut plans = Plans::new();
    plans.load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../tariffs/examples/prepaid-mobile.toml")).expect("plan");
    let engine =
        Arc::new(Engine::open(EngineConfig::new(dir.join("data")), plans, Arc::new(SystemClock)).expect("engine"));
    subscriber(&engine);
    let files =
        TlsFiles { cert: pki.join("server.pem"), key: pki.join("server.key"), client_ca: Some(pki.join("ca.pem")) };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let bind = || runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let (nchf_listener, diameter_listener) = (bind(), bind());
    let (nchf, diameter) = (nchf_listener.local_addr().expect("address"), diameter_listener.local_addr().expect("a"));
    let verifier =
        AccessTokenVerifier::from_pem_file(&pki.join("nrf-rsa.pub"), Some(NRF.into()), Some(CHF.into())).expect("key");
    let app = router(Arc::clone(&engine), format!("https://{nchf}")).expect("router");
    let app = require_access_tokens(app, Arc::new(verifier));
    let nchf_tls = server_config(&files, ALPN_HTTP).expect("nchf tls");
    let diameter_tls = server_config(&files, &[]).expect("diameter tls");
    let config = Arc::new(DiameterConfig {
        origin_host: "ocs.test".into(),
        origin_realm: "test".into(),
        ..DiameterConfig::default()
    });
    let limits = tollgate_oss_adapters::limits::ConnectionLimits::default();
    runtime.spawn(serve_nchf_tls(nchf_listener, nchf_tls, app, limits, std::future::pending()));
    runtime.spawn(serve_diameter_tls(
        diameter_listener,
        diameter_tls,
        Arc::clone(&engine),
        config,
        std::future::pending(),
    ));
    Server { engine, nchf, diameter, pki, _runtime: runtime, dir }
}

fn subscriber(engine: &Engine) {
    let run = |key: &str, operation| {
        engine.execute(Request { key: Some(key.into()), target: Target::Account(1), operation }).expect("answer")
    };
    run(
        "a1",
        Operation::CreateAccount {
            kind: AccountKind::Prepaid,
            currency: "EUR".into(),
            credit_limit: Decimal::ZERO,
            opening_balance: "20.00".parse().expect("amount"),
        },
    );
    run(
        "s1",
        Operation::CreateSubscription {
            subscription: 1,
            plan: "mobile-prepaid-s".into(),
            identities: vec![Identity::Msisdn(MSISDN.into())],
        },
    );
}

/// Money held by reservations of account 1.
fn reserved(engine: &Engine) -> Decimal {
    let request = Request { key: None, target: Target::Account(1), operation: Operation::BalanceEnquiry };
    match engine.execute(request).expect("answer").body {
        Body::Balance(view) => view.reserved,
        other => panic!("{other:?}"),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// Claims as the NRF issues them for this CHF, valid for ten minutes.
fn claims() -> Value {
    json!({"iss": NRF, "sub": "1b9e6c52-2a3f-4f8e-9c1d-0a8b7e6f5d4c", "aud": "CHF",
           "scope": "nchf-convergedcharging", "exp": now() + 600, "iat": now()})
}

fn token(server: &Server, key: &str, claims: &Value) -> String {
    tool(&["token", &server.file(key), "RS256", &claims.to_string()], "").trim().to_owned()
}

/// What curl got: the status (0: no HTTP answer), the HTTP version, headers and body.
struct Answer {
    status: u16,
    version: String,
    head: String,
    body: String,
    /// curl's own messages (why there was no answer).
    stderr: String,
}

/// POSTs a create with curl, with client certificate `client` (`None`: none) and bearer
/// `token`; `http1` forces HTTP/1.1 by ALPN, else curl asks for HTTP/2.
fn create(server: &Server, client: Option<&str>, token: Option<&str>, sequence: u32, http1: bool) -> Answer {
    let body = json!({
        "subscriberIdentifier": format!("msisdn-{MSISDN}"),
        "nfConsumerIdentification": {"nodeFunctionality": "SMF", "nFName": "1b9e6c52-2a3f-4f8e-9c1d-0a8b7e6f5d4c"},
        "invocationTimeStamp": "2026-11-23T10:00:00Z",
        "invocationSequenceNumber": sequence,
        "multipleUnitUsage": [{"ratingGroup": 30, "requestedUnit": {"totalVolume": 1 << 20}}]
    });
    let mut curl = Command::new("curl");
    curl.args(["-sS", "-i", "--max-time", "10", "--cacert", &server.file("ca.pem")])
        .arg(if http1 { "--http1.1" } else { "--http2" })
        .args(["-H", "Content-Type: application/json", "--data-binary", &body.to_string()])
        .args(["-w", "\n@@%{http_code} %{http_version}"]);
    if let Some(client) = client {
        curl.args(["--cert", &server.file(&format!("{client}.pem")), "--key", &server.file(&format!("{client}.key"))]);
    }
    if let Some(token) = token {
        curl.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let output = curl.arg(format!("https://{}{BASE}", server.nchf)).output().expect("curl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (response, trailer) = stdout.rsplit_once("\n@@").expect("curl's -w line");
    let (status, version) = trailer.split_once(' ').expect("status and version");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    Answer {
        status: status.parse().expect("status"),
        version: version.trim().to_owned(),
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The refusal of a request that carries a client certificate: status and WWW-Authenticate.
fn refused(answer: &Answer) -> (u16, String) {
    let challenge = answer
        .head
        .lines()
        .find_map(|line| line.strip_prefix("www-authenticate: "))
        .unwrap_or_else(|| panic!("no WWW-Authenticate: {} {}", answer.head, answer.stderr))
        .trim()
        .to_owned();
    assert!(answer.head.contains("content-type: application/problem+json"), "{}", answer.head);
    let problem: Value = serde_json::from_str(&answer.body).expect("ProblemDetails");
    assert_eq!(problem["status"], answer.status, "{problem}");
    (answer.status, challenge)
}

#[test]
fn nchf_over_tls_serves_only_clients_with_a_certificate_and_an_access_token() {
    let server = start("nchf");
    let good = token(&server, "nrf-rsa.key", &claims());

    // No client certificate, or one from another CA: the handshake is refused, no HTTP answer.
    for client in [None, Some("stranger")] {
        let answer = create(&server, client, Some(&good), 0, false);
        assert_eq!(answer.status, 0, "{client:?}: {} {}", answer.head, answer.body);
        assert!(!answer.stderr.is_empty(), "curl says why");
    }

    // A certificate but no usable token.
    let no_token = create(&server, Some("client"), None, 0, false);
    assert_eq!(refused(&no_token), (401, "bearer scope=\"nchf-convergedcharging\"".into()));
    let cases = [
        ("expired", token(&server, "nrf-rsa.key", &edit(claims(), "exp", json!(now() - 3600)))),
        ("signed by another key", token(&server, "other-nrf.key", &claims())),
        ("another audience", token(&server, "nrf-rsa.key", &edit(claims(), "aud", json!("SMF")))),
        ("another issuer", token(&server, "nrf-rsa.key", &edit(claims(), "iss", json!("rogue-nrf")))),
    ];
    for (case, token) in &cases {
        let (status, challenge) = refused(&create(&server, Some("client"), Some(token), 0, false));
        assert_eq!(status, 401, "{case}");
        assert!(challenge.starts_with("bearer error=\"invalid_token\""), "{case}: {challenge}");
    }
    let other_scope = token(&server, "nrf-rsa.key", &edit(claims(), "scope", json!("nchf-spendinglimitcontrol")));
    let (status, challenge) = refused(&create(&server, Some("client"), Some(&other_scope), 0, false));
    assert_eq!(status, 403);
    assert!(challenge.starts_with("bearer error=\"insufficient_scope\""), "{challenge}");
    assert_eq!(reserved(&server.engine), Decimal::ZERO, "no refused request reached the engine");

    // Certificate and token: served, over HTTP/2 (ALPN h2) or HTTP/1.1.
    let served = create(&server, Some("client"), Some(&good), 0, false);
    assert_eq!((served.status, served.version.as_str()), (201, "2"), "{}", served.body);
    assert!(served.head.contains(&format!("location: https://{}", server.nchf)), "{}", served.head);
    let answer: Value = serde_json::from_str(&served.body).expect("json");
    assert_eq!(answer["multipleUnitInformation"][0]["resultCode"], "SUCCESS");
    assert!(reserved(&server.engine) > Decimal::ZERO, "the served create reserved money");
    let served = create(&server, Some("client"), Some(&good), 1, true);
    assert_eq!((served.status, served.version.as_str()), (201, "1.1"), "{}", served.body);
}

fn edit(mut value: Value, field: &str, replacement: Value) -> Value {
    value[field] = replacement;
    value
}

/// Sends `messages` over Diameter/TLS with client certificate `client` (`None`: none);
/// the answers, or the refusal.
fn diameter(server: &Server, client: Option<&str>, messages: &[Message]) -> Result<Vec<Message>, String> {
    let (cert, key) = match client {
        Some(client) => (server.file(&format!("{client}.pem")), server.file(&format!("{client}.key"))),
        None => ("-".to_owned(), "-".to_owned()),
    };
    let input: String = messages.iter().map(|m| hex(&m.encode()) + "\n").collect();
    let port = server.diameter.port().to_string();
    let output = tool(&["diameter", &port, &server.file("ca.pem"), &cert, &key], &input);
    let mut answers = Vec::new();
    for line in output.lines() {
        if let Some(reason) = line.strip_prefix("refused: ") {
            return Err(reason.to_owned());
        }
        answers.push(Message::decode(Bytes::from(unhex(line))).expect("an answer decodes"));
    }
    Ok(answers)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex")).collect()
}

fn request(command: u32, application: u32, hop: u32, avps: Vec<Avp>) -> Message {
    Message { flags: FLAG_REQUEST | FLAG_PROXIABLE, command, application, hop_by_hop: hop, end_to_end: hop, avps }
}

fn cer(origin_host: &str) -> Message {
    request(
        257,
        0,
        1,
        vec![
            Avp::utf8(code::ORIGIN_HOST, 0, origin_host),
            Avp::utf8(code::ORIGIN_REALM, 0, "test"),
            Avp::new(code::HOST_IP_ADDRESS, 0, vec![0, 1, 127, 0, 0, 1]),
            Avp::u32(code::VENDOR_ID, 0, 0),
            Avp::utf8(code::PRODUCT_NAME, 0, "python ssl"),
            Avp::u32(code::AUTH_APPLICATION_ID, 0, 4),
        ],
    )
}

/// CCR-Initial for 1 MB on rating group 30.
fn ccr_initial() -> Message {
    let mscc = Avp::grouped(
        code::MULTIPLE_SERVICES_CREDIT_CONTROL,
        0,
        &[
            Avp::u32(code::RATING_GROUP, 0, 30),
            Avp::grouped(code::REQUESTED_SERVICE_UNIT, 0, &[Avp::u64(code::CC_TOTAL_OCTETS, 0, 1 << 20)]),
        ],
    );
    request(
        272,
        4,
        2,
        vec![
            Avp::utf8(code::SESSION_ID, 0, "client.test;tls;1"),
            Avp::utf8(code::ORIGIN_HOST, 0, "client.test"),
            Avp::utf8(code::ORIGIN_REALM, 0, "test"),
            Avp::utf8(code::DESTINATION_REALM, 0, "test"),
            Avp::u32(code::AUTH_APPLICATION_ID, 0, 4),
            Avp::utf8(code::SERVICE_CONTEXT_ID, 0, "32251@3gpp.org"),
            Avp::u32(code::CC_REQUEST_TYPE, 0, 1),
            Avp::u32(code::CC_REQUEST_NUMBER, 0, 0),
            Avp::grouped(
                code::SUBSCRIPTION_ID,
                0,
                &[Avp::u32(code::SUBSCRIPTION_ID_TYPE, 0, 0), Avp::utf8(code::SUBSCRIPTION_ID_DATA, 0, MSISDN)],
            ),
            mscc,
        ],
    )
}

fn result_code(message: &Message) -> Option<u32> {
    message.avp(code::RESULT_CODE, 0).and_then(Avp::as_u32)
}

#[test]
fn diameter_over_tls_serves_only_peers_with_a_certificate_naming_their_origin_host() {
    let server = start("diameter");
    for client in [None, Some("stranger")] {
        let refusal = diameter(&server, client, &[cer("client.test")]);
        assert!(refusal.is_err(), "{client:?}: {refusal:?}");
    }
    let answers = diameter(&server, Some("client"), &[cer("client.test"), ccr_initial()]).expect("served");
    assert_eq!(answers.len(), 2);
    assert_eq!((answers[0].command, result_code(&answers[0])), (257, Some(2001)));
    assert_eq!((answers[1].command, result_code(&answers[1])), (272, Some(2001)));
    let mscc = answers[1].avp(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0).expect("MSCC").group().expect("group");
    let granted = find(&mscc, code::GRANTED_SERVICE_UNIT, 0).expect("granted").group().expect("group");
    assert_eq!(find(&granted, code::CC_TOTAL_OCTETS, 0).and_then(Avp::as_u64), Some(1 << 20));
    // A trusted certificate, but for another host than the CER claims: DIAMETER_UNKNOWN_PEER.
    let answers = diameter(&server, Some("client"), &[cer("pgw.test")]).expect("answered");
    assert_eq!(result_code(&answers[0]), Some(3010));
}
