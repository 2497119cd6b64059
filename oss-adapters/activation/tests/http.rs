//! The HTTP adapter against the fake network element over real sockets: success, repeats,
//! retries of transient failures (counted at the server), refusals not retried, timeouts,
//! dropped connections, oversized answers, connection reuse, credentials sent but never
//! shown or logged, and TLS with a client certificate (PKI made by the openssl command
//! line).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tollgate_activation::testing::{
    sample_request, Behaviour, FakeNetworkElement, ScratchDir, Times, SAMPLE_KI, SAMPLE_OPC,
};
use tollgate_activation::{
    build, ActivationConfig, ActivationOutcome, Activator, GatewayAuth, HttpActivator, HttpConfig, Operation, Secret,
    SmsGateway, SmsMessage,
};

/// Generous bound on a whole test's activations: it only catches a hang, it measures nothing.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// Settings for tests: quick backoff so retries do not slow the suite.
fn settings(url: &str) -> HttpConfig {
    HttpConfig {
        timeout_ms: 10_000,
        max_attempts: 4,
        backoff_initial_ms: 1,
        backoff_max_ms: 20,
        ..HttpConfig::new(url)
    }
}

async fn activate(activator: &dyn Activator, id: &str, operation: Operation) -> ActivationOutcome {
    let request = sample_request(id, operation);
    tokio::time::timeout(HANG_GUARD, activator.activate(&request)).await.expect("the activation ends on its own")
}

/// Scripts the fake, activates `id` once with `config`, and returns the outcome.
async fn check(fake: &FakeNetworkElement, config: HttpConfig, script: &[(Behaviour, Times)]) -> ActivationOutcome {
    for (behaviour, times) in script {
        fake.script(behaviour.clone(), *times);
    }
    let activator = HttpActivator::new(&config).expect("adapter");
    activate(&activator, "order-1:activate", Operation::Activate).await
}

fn done(reference: &str) -> ActivationOutcome {
    ActivationOutcome::Done { reference: reference.to_owned() }
}

fn transient_reason(outcome: &ActivationOutcome) -> &str {
    match outcome {
        ActivationOutcome::Transient { reason, .. } => reason,
        other => panic!("transient expected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_new_line_is_activated_with_the_request_id_in_both_headers_and_the_documented_body() {
    let fake = FakeNetworkElement::start().await.expect("fake");
    let outcome = check(&fake, settings(&fake.url()), &[]).await;
    assert_eq!(outcome, done("ne-1"));
    let received = fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].request_id.as_deref(), Some("order-1:activate"));
    assert_eq!(received[0].idempotency_key.as_deref(), Some("order-1:activate"));
    assert_eq!(received[0].authorization, None);
    let command = &received[0].command;
    assert_eq!(command["version"], 1);
    assert_eq!(command["operation"], "activate");
    assert_eq!(command["subscriber"]["msisdn"], "4915112345678");
    assert_eq!(command["serviceProfile"]["id"], "gold");
    assert_eq!(command["targets"][0]["type"], "HSS");
    assert_eq!(command["sim"]["ki"], SAMPLE_KI);
    assert_eq!(fake.executed().len(), 1);
}

#[tokio::test]
async fn a_repeated_request_id_is_executed_once_and_done_both_times() {
    let fake = FakeNetworkElement::start().await.expect("fake");
    let activator = HttpActivator::new(&settings(&fake.url())).expect("adapter");
    assert_eq!(activate(&activator, "order-7:suspend", Operation::Suspend).await, done("ne-1"));
    assert_eq!(activate(&activator, "order-7:suspend", Operation::Suspend).await, done("ne-1"));
    assert_eq!(fake.received().len(), 2);
    assert_eq!(fake.executed().len(), 1);
    // The same id for another command is the caller's bug, and the gateway refuses it.
    let outcome = activate(&activator, "order-7:suspend", Operation::Resume).await;
    assert_eq!(
        outcome,
        ActivationOutcome::Permanent {
            code: "ID_REUSED".into(),
            reason: "request id reused with another command".into()
        }
    );
}

#[tokio::test]
async fn transient_failures_are_retried_until_done_and_each_attempt_reaches_the_server() {
    let fake = FakeNetworkElement::start().await.expect("fake");
    let script = [
        (Behaviour::Fail { status: 503, retry_after_seconds: None }, Times::Count(1)),
        (Behaviour::Fail { status: 429, retry_after_seconds: Some(0) }, Times::Count(1)),
        (Behaviour::Drop, Times::Count(1)),
    ];
    assert_eq!(check(&fake, settings(&fake.url()), &script).await, done("ne-1"));
    let behaviours: Vec<Behaviour> = fake.received().into_iter().map(|r| r.behaviour).collect();
    assert_eq!(behaviours, [script[0].0.clone(), script[1].0.clone(), Behaviour::Drop, Behaviour::Execute]);
    assert_eq!(fake.executed().len(), 1);
}

#[tokio::test]
async fn attempts_are_bounded_and_the_last_failure_is_reported_transient() {
    let fake = FakeNetworkElement::start().await.expect("fake");
    let config = HttpConfig { max_attempts: 3, ..settings(&fake.url()) };
    let outcome =
        check(&fake, config, &[(Behaviour::Fail { status: 500, retry_after_seconds: None }, Times::Always)]).await;
    assert_eq!(transient_reason(&outcome), "HTTP 500 (attempt 3 of 3)");
    assert_eq!(fake.received().len(), 3);
    assert!(fake.executed().is_empty());
}

#[tokio::test]
async fn a_retry_after_beyond_the_backoff_bound_is_left_to_the_workflow() {
    let fake = FakeNetworkElement::start().await.expect("fake");
    let script = [(Behaviour::Fail { status: 503, retry_after_seconds: Some(3600) }, Times::Always)];
    let outcome = check(&fake, settings(&fake.url()), &script).await;
    assert_eq!(
        outcome,
        ActivationOutcome::Transient { reason: "HTTP 503 (attempt 1 of 4)".into(), retry_after_ms: Some(3_600_000) }
    );
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn refusals_are_permanent_and_not_retried() {
    for status in [400, 404, 409, 200] {
        let fake = FakeNetworkElement::start().await.expect("fake");
        let refuse =
            Behaviour::Refuse { status, code: "IMSI_IN_USE".into(), reason: "IMSI provisioned elsewhere".into() };
        let outcome = check(&fake, settings(&fake.url()), &[(refuse, Times::Always)]).await;
        let expected =
            ActivationOutcome::Permanent { code: "IMSI_IN_USE".into(), reason: "IMSI provisioned elsewhere".into() };
        assert_eq!(outcome, expected, "status {status}");
        assert_eq!(fake.received().len(), 1, "status {status}");
        assert!(fake.executed().is_empty());
    }
}

#[tokio::test]
async fn a_slow_answer_within_the_timeout_is_done() {
    let fake = FakeNetworkElement::start().await.expect("fake");
    let outcome = check(&fake, settings(&fake.url()), &[(Behaviour::Slow { delay_ms: 50 }, Times::Count(1))]).await;
    assert_eq!(outcome, done("ne-1"));
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn a_gateway_that_never_answers_is_given_up_on_after_each_attempts_timeout() {
    let fake = FakeNetworkElement::start().await.expect("fake");
    let config = HttpConfig { timeout_ms: 200, max_attempts: 2, ..settings(&fake.url()) };
    let started = Instant::now();
    let outcome = check(&fake, config, &[(Behaviour::Hang, Times::Always)]).await;
    assert_eq!(transient_reason(&outcome), "no answer within 200 ms (http.timeout_ms) (attempt 2 of 2)");
    // Each attempt waited for its whole timeout (a lower bound: it cannot be flaky).
    assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
    assert_eq!(fake.received().len(), 2);
}

#[tokio::test]
async fn a_command_done_but_answered_too_late_is_found_done_by_the_retry() {
    let fake = FakeNetworkElement::start().await.expect("fake");
    // Long enough that the retry's own answer comes in time on a loaded machine.
    let config = HttpConfig { timeout_ms: 1_000, ..settings(&fake.url()) };
    let outcome = check(&fake, config, &[(Behaviour::Slow { delay_ms: 30_000 }, Times::Count(1))]).await;
    assert_eq!(outcome, done("ne-1"));
    assert_eq!(fake.received().len(), 2);
    assert_eq!(fake.executed().len(), 1);
}

#[tokio::test]
async fn an_accepted_command_in_progress_is_asked_again_until_completed() {
    let fake = FakeNetworkElement::start().await.expect("fake");
    let outcome = check(&fake, settings(&fake.url()), &[(Behaviour::Accept, Times::Count(1))]).await;
    assert_eq!(outcome, done("ne-1"));
    assert_eq!(fake.received().len(), 2);
}

#[tokio::test]
async fn an_oversized_answer_is_cut_off_and_transient_unless_it_is_a_refusal() {
    let fake = FakeNetworkElement::start().await.expect("fake");
    let config = HttpConfig { max_attempts: 1, ..settings(&fake.url()) };
    let outcome =
        check(&fake, config.clone(), &[(Behaviour::Babble { status: 200, bytes: 1 << 20 }, Times::Count(1))]).await;
    assert_eq!(transient_reason(&outcome), "HTTP 200: answer longer than 65536 bytes (attempt 1 of 1)");
    // A refusal is one however long its body.
    let script = [(Behaviour::Babble { status: 403, bytes: 1 << 20 }, Times::Count(1))];
    let outcome = check(&fake, config, &script).await;
    assert_eq!(outcome, ActivationOutcome::Permanent { code: "http-403".into(), reason: "Forbidden".into() });
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let config = HttpConfig { max_attempts: 2, ..settings(&format!("http://127.0.0.1:{port}/activation")) };
    let activator = HttpActivator::new(&config).expect("adapter");
    let outcome = activate(&activator, "r-1", Operation::Terminate).await;
    let reason = transient_reason(&outcome);
    assert!(reason.contains("onnection refused") && reason.ends_with("(attempt 2 of 2)"), "{reason}");
}

#[tokio::test]
async fn sequential_activations_reuse_one_connection() {
    let fake = FakeNetworkElement::start().await.expect("fake");
    let activator = HttpActivator::new(&settings(&fake.url())).expect("adapter");
    for order in 0..5 {
        assert!(activate(&activator, &format!("order-{order}:resume"), Operation::Resume).await.is_done());
    }
    assert_eq!(fake.executed().len(), 5);
    assert_eq!(fake.connections(), 1);
}

/// Everything the fmt subscriber writes, for the test that reads the logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn credentials_are_sent_but_never_in_debug_output_or_logs() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let fake = FakeNetworkElement::start().await.expect("fake");
    let token = "tok-3f9a2c.secret";
    fake.require_authorization(&format!("Bearer {token}"));
    let config = HttpConfig { auth: Some(GatewayAuth::Bearer { token: Secret::new(token) }), ..settings(&fake.url()) };
    let activator = build(&ActivationConfig::Http(config.clone())).expect("adapter");
    assert_eq!(activate(activator.as_ref(), "order-9:activate", Operation::Activate).await, done("ne-1"));
    assert_eq!(fake.received()[0].authorization.as_deref(), Some(format!("Bearer {token}").as_str()));

    // Wrong credentials: the gateway's 401 is permanent.
    let password = "pa55-w0rd";
    let basic = GatewayAuth::Basic { username: "tollgate".into(), password: Secret::new(password) };
    let wrong =
        HttpActivator::new(&HttpConfig { auth: Some(basic.clone()), ..settings(&fake.url()) }).expect("adapter");
    let outcome = activate(&wrong, "order-10:activate", Operation::Activate).await;
    assert_eq!(outcome, ActivationOutcome::Permanent { code: "UNAUTHORIZED".into(), reason: "bad credentials".into() });
    let basic_header = fake.received()[1].authorization.clone().expect("basic credentials sent");
    assert!(basic_header.starts_with("Basic "), "{basic_header}");

    let request = sample_request("order-9:activate", Operation::Activate);
    let shown = [
        format!("{activator:?}"),
        format!("{wrong:?}"),
        format!("{config:?}"),
        format!("{basic:?}"),
        format!("{request:?}"),
        format!("{request:#?}"),
    ]
    .join("\n");
    let logged = String::from_utf8(logs.0.lock().expect("log buffer").clone()).expect("UTF-8 logs");
    // The logs are captured: the activation attempts are there.
    assert!(logged.contains("order-9:activate") && logged.contains("gateway attempt"), "{logged}");
    for secret in [token, password, &basic_header["Basic ".len()..], SAMPLE_KI, SAMPLE_OPC] {
        assert!(!shown.contains(secret), "{secret:?} in Debug output:\n{shown}");
        assert!(!logged.contains(secret), "{secret:?} in the logs:\n{logged}");
    }
    assert!(shown.contains("<redacted>"), "{shown}");
}

fn openssl(directory: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(directory).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// `name`.pem and `name`.key signed by `ca` (self-signed when `ca` is `None`).
fn certificate(directory: &Path, name: &str, subject: &str, ca: Option<&str>, extensions: &[&str]) {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    let mut args = vec!["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    args.extend(["-keyout", &key, "-out", &cert, "-days", "2", "-subj", subject]);
    let (ca_cert, ca_key) = ca.map(|ca| (format!("{ca}.pem"), format!("{ca}.key"))).unzip();
    if let (Some(ca_cert), Some(ca_key)) = (&ca_cert, &ca_key) {
        args.extend(["-CA", ca_cert, "-CAkey", ca_key]);
    }
    for extension in extensions {
        args.extend(["-addext", extension]);
    }
    openssl(directory, &args);
}

#[allow(deprecated)]
fn server_tls(directory: &Path) -> Arc<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(directory.join("ca.pem")).expect("ca")).expect("root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .build()
        .expect("verifier");
    let chain = vec![CertificateDer::from_pem_file(directory.join("server.pem")).expect("server certificate")];
    let key = PrivateKeyDer::from_pem_file(directory.join("server.key")).expect("server key");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("server config");
    Arc::new(config)
}

#[tokio::test]
async fn over_tls_the_gateway_is_verified_and_a_client_certificate_presented() {
    let pki = ScratchDir::new("pki").expect("scratch");
    let dir = pki.path();
    let ca = ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign"];
    certificate(dir, "ca", "/CN=Tollgate test CA", None, &ca);
    certificate(dir, "other-ca", "/CN=Somebody else", None, &ca);
    let server = ["subjectAltName=DNS:localhost", "extendedKeyUsage=serverAuth", "basicConstraints=CA:FALSE"];
    certificate(dir, "server", "/CN=localhost", Some("ca"), &server);
    let client = ["subjectAltName=DNS:tollgate.test", "extendedKeyUsage=clientAuth", "basicConstraints=CA:FALSE"];
    certificate(dir, "client", "/CN=tollgate.test", Some("ca"), &client);

    let fake = FakeNetworkElement::start_tls(server_tls(dir)).await.expect("fake");
    let tls = HttpConfig {
        tls_ca_file: Some(dir.join("ca.pem")),
        tls_client_cert_file: Some(dir.join("client.pem")),
        tls_client_key_file: Some(dir.join("client.key")),
        ..settings(&fake.url())
    };
    let activator = HttpActivator::new(&tls).expect("adapter");
    assert_eq!(activate(&activator, "order-1:activate", Operation::Activate).await, done("ne-1"));

    // No client certificate: the gateway ends the handshake.
    let anonymous =
        HttpConfig { tls_client_cert_file: None, tls_client_key_file: None, max_attempts: 1, ..tls.clone() };
    let outcome = activate(&HttpActivator::new(&anonymous).expect("adapter"), "r-2", Operation::Suspend).await;
    assert!(transient_reason(&outcome).contains("CertificateRequired"), "{outcome:?}");
    // A gateway certificate from a CA we do not trust: we end the handshake.
    let distrust = HttpConfig { tls_ca_file: Some(dir.join("other-ca.pem")), max_attempts: 1, ..tls.clone() };
    let outcome = activate(&HttpActivator::new(&distrust).expect("adapter"), "r-3", Operation::Suspend).await;
    assert!(transient_reason(&outcome).contains("UnknownIssuer"), "{outcome:?}");
    assert_eq!(fake.executed().len(), 1);

    // An unreadable CA file is a configuration error naming the file.
    let missing = HttpConfig { tls_ca_file: Some(dir.join("nope.pem")), ..tls };
    let error = HttpActivator::new(&missing).expect_err("refused").to_string();
    assert!(error.contains("gateway CA") && error.contains("nope.pem"), "{error}");
}

/// Issue 19: the health a fault watcher reads. Unknown before any call; unreachable after
/// a call whose every attempt was refused a connection, cut off or timed out; reached by
/// the next call that gets an answer, even a refusal (the gateway is up, it said no).
#[tokio::test]
async fn the_gateway_is_unreachable_after_a_call_no_attempt_of_which_got_an_answer() {
    let fake = FakeNetworkElement::start().await.expect("fake");
    let config = HttpConfig { timeout_ms: 300, max_attempts: 2, ..settings(&fake.url()) };
    let activator = HttpActivator::new(&config).expect("adapter");
    let name = format!("127.0.0.1:{}", fake.address().port());
    assert_eq!(activator.health(), None, "no call yet");

    // Cut off, then silent: both attempts fail without an answer.
    fake.script(Behaviour::Drop, Times::Count(1));
    fake.script(Behaviour::Hang, Times::Count(1));
    let outcome = activate(&activator, "order-1:activate", Operation::Activate).await;
    let reason = transient_reason(&outcome).to_owned();
    let health = activator.health().expect("known");
    assert_eq!(health.name, name);
    assert_eq!(health.unreachable.as_deref(), Some(reason.as_str()));
    assert!(reason.contains("no answer within 300 ms"), "{reason}");

    // One attempt cut off, the next answered: reachable.
    fake.script(Behaviour::Drop, Times::Count(1));
    assert_eq!(activate(&activator, "order-2:activate", Operation::Activate).await, done("ne-1"));
    assert_eq!(activator.health().and_then(|health| health.unreachable), None);

    // An answer that fails (503 every time) is not unreachability.
    fake.script(Behaviour::Fail { status: 503, retry_after_seconds: None }, Times::Count(2));
    let outcome = activate(&activator, "order-3:activate", Operation::Activate).await;
    assert!(transient_reason(&outcome).contains("503"), "{outcome:?}");
    assert_eq!(activator.health().and_then(|health| health.unreachable), None);

    // Nobody listens any more: connection refused.
    let port = fake.address().port();
    drop(fake);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused =
        HttpActivator::new(&HttpConfig { max_attempts: 1, ..settings(&format!("http://127.0.0.1:{port}/x")) })
            .expect("adapter");
    let outcome = activate(&refused, "order-4:activate", Operation::Activate).await;
    let health = refused.health().expect("known");
    assert_eq!(health.unreachable.as_deref(), Some(transient_reason(&outcome)), "{outcome:?}");
}

/// A short message through the HTTP adapter: a busy gateway (503) is retried under the same
/// request id and the message is taken once; a refusal is permanent and not retried.
#[tokio::test]
async fn a_short_message_is_retried_under_its_id_until_taken_and_a_refusal_is_final() {
    let fake = FakeNetworkElement::start().await.expect("fake");
    let gateway = SmsGateway::new(&settings(&fake.url())).expect("gateway");
    let message = SmsMessage::new("sms-t1-episode-1", &["491700000001"], "Ada: your balance is low.").expect("message");
    fake.script(Behaviour::Fail { status: 503, retry_after_seconds: None }, Times::Count(2));
    let outcome = tokio::time::timeout(HANG_GUARD, gateway.send(&message)).await.expect("ends");
    assert!(matches!(outcome, ActivationOutcome::Done { .. }), "{outcome:?}");
    let received = fake.received();
    assert_eq!(received.len(), 3, "two busy answers, then taken");
    for attempt in &received {
        assert_eq!(attempt.request_id.as_deref(), Some("sms-t1-episode-1"));
        assert_eq!(attempt.idempotency_key.as_deref(), Some("sms-t1-episode-1"));
        assert_eq!(attempt.command["to"][0], "+491700000001");
        assert_eq!(attempt.command["text"], "Ada: your balance is low.");
    }
    assert_eq!(fake.executed().len(), 1);

    fake.script(
        Behaviour::Refuse { status: 400, code: "BAD_NUMBER".into(), reason: "not a mobile".into() },
        Times::Count(1),
    );
    let refused = SmsMessage::new("sms-t2-episode-1", &["491700000002"], "hello").expect("message");
    let outcome = tokio::time::timeout(HANG_GUARD, gateway.send(&refused)).await.expect("ends");
    assert_eq!(outcome, ActivationOutcome::Permanent { code: "BAD_NUMBER".into(), reason: "not a mobile".into() });
    assert_eq!(fake.received().len(), 4, "a refusal is not retried");
}
