//! `tollgate serve` stops on SIGTERM whatever its clients do: a process that never exits
//! is SIGKILLed by its supervisor after the grace period, and then it is a crash.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::{scratch, Serve};

/// The HTTP/2 client connection preface and an empty SETTINGS frame (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// Product bug found with the crash harness: an HTTP/2 client (Nchf over h2c, or gRPC)
/// that opened a connection and then went quiet (paused, or cut off by the network) keeps
/// `tollgate serve` running after SIGTERM for as long as the connection stays open: the
/// servers' graceful shutdown waits for every connection to close, without a deadline, so
/// `runtime.shutdown_timeout` in `src/commands/serve.rs` is never reached. HTTP/1.1,
/// Diameter and admin connections do not hold it up.
#[test]
fn serve_stops_on_sigterm_while_an_http2_client_stays_connected() {
    let dir = scratch("sigterm");
    let mut stuck = Vec::new();
    for front_end in ["nchf", "grpc"] {
        let data = dir.join(front_end);
        let mut server = Serve::spawn(&data, "ocs-sigterm.crash.test", &[]);
        let (addresses, _) = server.wait_listening().expect("serve listens");
        let address = if front_end == "nchf" { addresses.nchf } else { addresses.grpc };
        let mut quiet = TcpStream::connect(address).expect("connect");
        quiet.write_all(PREFACE).expect("preface");
        // The server's SETTINGS frame: the connection is established on its side too.
        quiet.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let mut frame_header = [0u8; 9];
        quiet.read_exact(&mut frame_header).expect("the server's SETTINGS");
        assert_eq!(frame_header[3], 4, "{front_end}: a SETTINGS frame first");
        // A hang guard: a clean stop takes milliseconds.
        match server.terminate(Duration::from_secs(10)) {
            Some(exit) => assert!(exit.success(), "{front_end}: {exit:?}"),
            None => stuck.push(front_end),
        }
        drop(quiet);
    }
    assert!(stuck.is_empty(), "still running 10 s after SIGTERM, with one quiet HTTP/2 connection open to: {stuck:?}");
    std::fs::remove_dir_all(dir).ok();
}
