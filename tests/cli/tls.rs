//! `tollgate serve` with its TLS and access-token flags, end to end: Nchf over TLS with
//! client certificates and ES256 access tokens (curl), Diameter over TLS on its own
//! listener (Python's ssl module), and the flags refused when incomplete or unusable.
//! The PKI and the tokens come from the openssl command line (oss-adapters/tests/tls_tools.py).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bytes::Bytes;
use tollgate_oss_adapters::diameter::codec::{FLAG_PROXIABLE, FLAG_REQUEST};
use tollgate_oss_adapters::diameter::dictionary::code;
use tollgate_oss_adapters::diameter::{Avp, Message};

use super::{charging_data, scratch, start_servers, stop_server, tollgate};

/// NF instance id of the CHF under test.
const CHF: &str = "5a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d";

fn tool(args: &[&str], stdin: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("oss-adapters/tests/tls_tools.py");
    let mut child = Command::new("python3")
        .arg(script)
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

/// POSTs a create over HTTPS with curl; the HTTP status (0: no HTTP answer) and curl's stderr.
fn create(pki: &Path, address: &str, client: bool, token: Option<&str>) -> (u16, String) {
    let file = |name: &str| pki.join(name).display().to_string();
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--http2", "--max-time", "10", "--cacert", &file("ca.pem"), "-o", "/dev/null"])
        .args(["-w", "%{http_code}", "-H", "Content-Type: application/json"])
        .args(["--data-binary", &charging_data(0, Some(1 << 20), None)]);
    if client {
        curl.args(["--cert", &file("client.pem"), "--key", &file("client.key")]);
    }
    if let Some(token) = token {
        curl.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let output =
        curl.arg(format!("https://{address}/nchf-convergedcharging/v3/chargingdata")).output().expect("curl runs");
    let status = String::from_utf8_lossy(&output.stdout).trim().parse().expect("curl's status");
    (status, String::from_utf8_lossy(&output.stderr).into_owned())
}

fn cer() -> Message {
    Message {
        flags: FLAG_REQUEST | FLAG_PROXIABLE,
        command: 257,
        application: 0,
        hop_by_hop: 1,
        end_to_end: 1,
        avps: vec![
            Avp::utf8(code::ORIGIN_HOST, 0, "client.test"),
            Avp::utf8(code::ORIGIN_REALM, 0, "test"),
            Avp::new(code::HOST_IP_ADDRESS, 0, vec![0, 1, 127, 0, 0, 1]),
            Avp::u32(code::VENDOR_ID, 0, 0),
            Avp::utf8(code::PRODUCT_NAME, 0, "python ssl"),
            Avp::u32(code::AUTH_APPLICATION_ID, 0, 4),
        ],
    }
}

#[test]
fn serve_secures_nchf_and_diameter_with_the_tls_and_token_flags() {
    let dir = scratch("tls");
    let pki = dir.join("pki");
    tool(&["pki", pki.to_str().expect("path")], "");
    let file = |name: &str| pki.join(name).display().to_string();
    let data = dir.join("data");
    let (server, key, ca) = (file("server.pem"), file("server.key"), file("ca.pem"));
    let nrf_key = file("nrf-ec.pub");
    #[rustfmt::skip]
    let flags = [
        "--demo-subscribers", "1",
        "--nchf-tls-cert", &server, "--nchf-tls-key", &key, "--nchf-client-ca", &ca,
        "--nchf-oauth-key", &nrf_key, "--nchf-oauth-audience", CHF,
        "--diameter-tls-listen", "127.0.0.1:0",
        "--diameter-tls-cert", &server, "--diameter-tls-key", &key, "--diameter-tls-client-ca", &ca,
    ];
    let (child, _, nchf) = start_servers(&data, "ocs.tls.test", &flags);
    let log = std::fs::read_to_string(data.with_extension("log")).expect("server log");
    let diameter_tls = log
        .lines()
        .find(|line| line.contains("diameter tls server listening"))
        .and_then(|line| line.split("listen=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no Diameter/TLS listener in {log}"))
        .to_owned();
    assert!(log.contains("tls=true client_certificates=true access_tokens=true"), "{log}");

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let claims = serde_json::json!({"iss": "nrf", "sub": "smf", "aud": [CHF], "scope": "nchf-convergedcharging",
                                    "exp": now + 600});
    let token = tool(&["token", &file("nrf-ec.key"), "ES256", &claims.to_string()], "").trim().to_owned();
    let (status, stderr) = create(&pki, &nchf, false, Some(&token));
    assert_eq!(status, 0, "no client certificate: refused in the handshake ({stderr})");
    assert_eq!(create(&pki, &nchf, true, None).0, 401, "no token");
    let (status, stderr) = create(&pki, &nchf, true, Some(&token));
    assert_eq!(status, 201, "{stderr}");

    let port = diameter_tls.rsplit(':').next().expect("port");
    let input = format!("{}\n", cer().encode().iter().map(|b| format!("{b:02x}")).collect::<String>());
    let refused = tool(&["diameter", port, &ca, "-", "-"], &input);
    assert!(refused.starts_with("refused: "), "a peer without a certificate: {refused}");
    let answered = tool(&["diameter", port, &ca, &file("client.pem"), &file("client.key")], &input);
    let hex = answered.lines().next().unwrap_or_else(|| panic!("no CEA: {answered}"));
    let bytes: Vec<u8> =
        (0..hex.len()).step_by(2).map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex")).collect();
    let cea = Message::decode(Bytes::from(bytes)).expect("CEA decodes");
    assert_eq!(cea.avp(code::RESULT_CODE, 0).and_then(Avp::as_u32), Some(2001));
    assert_eq!(cea.avp(code::ORIGIN_HOST, 0).and_then(Avp::as_str), Some("ocs.tls.test"));
    stop_server(child);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn serve_refuses_incomplete_or_unusable_tls_flags() {
    let dir = scratch("tls-flags");
    let data = dir.join("data");
    let data = data.to_str().expect("path");
    let missing: PathBuf = dir.join("missing.pem");
    let missing = missing.to_str().expect("path");
    let cases: [(&[&str], &str); 3] = [
        (
            &["--diameter-tls-listen", "127.0.0.1:0", "--diameter-tls-cert", missing, "--diameter-tls-key", missing],
            "--diameter-tls-client-ca",
        ),
        (&["--nchf-tls-cert", missing, "--nchf-tls-key", missing], missing),
        (&["--nchf-oauth-key", missing], "--nchf-oauth-key"),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["serve", "--data-dir", data];
        args.extend_from_slice(flags);
        let output = tollgate(&args, "");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} was accepted");
        assert!(stderr.contains(expected), "{flags:?}: expected {expected} in {stderr}");
    }
    std::fs::remove_dir_all(dir).ok();
}
