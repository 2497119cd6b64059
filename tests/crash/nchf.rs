//! An Nchf_ConvergedCharging client over plain HTTP/1.1 (one connection per request):
//! sessions of create, two updates and release, 1 MiB each on rating group 30, on
//! well-funded accounts. A request may be sent once, re-POSTed with the same
//! invocationSequenceNumber (and retransmissionIndicator) after its answer, or POSTed on
//! two connections at once; one whose connection broke is re-POSTed to the next server
//! until answered, or left unanswered until after the final restart.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::ledger::{price_of, Exposure, FirstAnswers, Shared, Stats, CHECK_KNOWN, MIB, RATING_GROUP};
use crate::online::{Client, Mode, ABANDON_PERCENT};
use crate::Rng;

const BASE: &str = "/nchf-convergedcharging/v3/chargingdata";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Create,
    Update,
    Release,
}

#[derive(Debug, Clone)]
struct Request {
    key: String,
    path: String,
    body: Value,
    step: Step,
    used_bytes: u64,
    exposure: Exposure,
}

/// An answer as compared: status, Location and body (other headers, such as Date, vary).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

#[derive(Debug)]
pub(crate) struct NchfClient {
    name: String,
    rng: Rng,
    accounts: Vec<u64>,
    server: Option<(u64, SocketAddr)>,
    broken_generation: u64,
    sequence: u64,
    answers: FirstAnswers<Answer>,
    acknowledged: Vec<Request>,
    unanswered: Vec<Request>,
    stats: Stats,
}

fn connect(address: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    // Hang guards: a killed server resets the connection at once.
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    Ok(stream)
}

fn write(stream: &mut TcpStream, address: SocketAddr, path: &str, body: &str) -> std::io::Result<()> {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())
}

/// Reads a whole response (the server closes the connection after it).
fn read(stream: &mut TcpStream) -> std::io::Result<Answer> {
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let incomplete = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "incomplete HTTP response");
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(incomplete)?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(incomplete)?;
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    };
    let length: usize = header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    if body.len() < length {
        return Err(incomplete());
    }
    Ok(Answer { status, location: header("location"), body: body.to_owned() })
}

impl NchfClient {
    pub(crate) fn new(name: &str, rng: Rng, accounts: Vec<u64>) -> NchfClient {
        NchfClient {
            name: name.to_owned(),
            rng,
            accounts,
            server: None,
            broken_generation: 0,
            sequence: 0,
            answers: FirstAnswers::new(),
            acknowledged: Vec::new(),
            unanswered: Vec::new(),
            stats: Stats::default(),
        }
    }

    fn ensure_server(&mut self, shared: &Shared) -> Option<(u64, SocketAddr)> {
        if self.server.is_none() {
            let (generation, addresses) = shared.wait_server(self.broken_generation)?;
            self.server = Some((generation, addresses.nchf));
        }
        self.server
    }

    fn post(&mut self, address: SocketAddr, request: &Request, retransmit: bool) -> std::io::Result<Answer> {
        let mut body = request.body.clone();
        if retransmit {
            body["retransmissionIndicator"] = json!(true);
        }
        self.stats.sent += 1;
        let mut stream = connect(address)?;
        write(&mut stream, address, &request.path, &body.to_string())?;
        read(&mut stream)
    }

    fn attempt(
        &mut self,
        address: SocketAddr,
        request: &Request,
        mode: Mode,
        retransmit: bool,
    ) -> (Vec<Answer>, Option<std::io::Error>) {
        let mut answers = Vec::new();
        let mut error = None;
        match mode {
            Mode::Once | Mode::Repeat => {
                match self.post(address, request, retransmit) {
                    Ok(answer) => answers.push(answer),
                    Err(err) => error = Some(err),
                }
                if mode == Mode::Repeat && error.is_none() {
                    match self.post(address, request, true) {
                        Ok(answer) => answers.push(answer),
                        Err(err) => error = Some(err),
                    }
                }
            }
            Mode::Twins => {
                // Both requests are on the wire before either answer is read.
                let mut streams = Vec::new();
                for retransmit in [retransmit, true] {
                    let mut body = request.body.clone();
                    if retransmit {
                        body["retransmissionIndicator"] = json!(true);
                    }
                    self.stats.sent += 1;
                    streams.push(connect(address).and_then(|mut stream| {
                        write(&mut stream, address, &request.path, &body.to_string()).map(|()| stream)
                    }));
                }
                for stream in streams {
                    match stream.and_then(|mut stream| read(&mut stream)) {
                        Ok(answer) => answers.push(answer),
                        Err(err) => error = Some(err),
                    }
                }
            }
        }
        (answers, error)
    }

    fn exchange(&mut self, shared: &Shared, request: Request) -> Option<Answer> {
        self.stats.requests += 1;
        let mode = Mode::pick(&mut self.rng);
        let mut failed = false;
        loop {
            let Some((generation, address)) = self.ensure_server(shared) else {
                return self.leave_unanswered(shared, request);
            };
            let (answers, error) = self.attempt(address, &request, mode, failed);
            if let Some(err) = error {
                self.stats.broken += 1;
                shared.broken(generation, &format!("{}: {}: {err}", self.name, request.key));
                self.server = None;
                self.broken_generation = generation;
            }
            if let Some(first) = answers.first().cloned() {
                self.stats.acknowledged += 1;
                self.stats.retried += u64::from(failed);
                self.stats.repeated += u64::from(mode == Mode::Repeat && answers.len() > 1);
                self.stats.twins += u64::from(mode == Mode::Twins);
                for answer in &answers {
                    self.answers.record(shared, &mut self.stats, &request.key, answer);
                }
                let net = self.money(shared, &request, &first);
                shared.acknowledged(request.exposure.account, net);
                self.acknowledged.push(request);
                return Some(first);
            }
            if !failed {
                failed = true;
                if self.rng.percent(ABANDON_PERCENT) {
                    return self.leave_unanswered(shared, request);
                }
            }
        }
    }

    fn leave_unanswered(&mut self, shared: &Shared, request: Request) -> Option<Answer> {
        self.stats.unanswered += 1;
        shared.unanswered(request.exposure);
        self.unanswered.push(request);
        None
    }

    /// What the answer says the request took: the usage's price when it succeeded.
    fn money(&self, shared: &Shared, request: &Request, answer: &Answer) -> Decimal {
        let succeeded = match request.step {
            Step::Create => answer.status == 201 && answer.location.is_some(),
            Step::Update => {
                let body: Value = serde_json::from_str(&answer.body).unwrap_or_default();
                answer.status == 200 && body["multipleUnitInformation"][0]["resultCode"] == "SUCCESS"
            }
            Step::Release => answer.status == 204,
        };
        shared.check(CHECK_KNOWN, succeeded, || format!("{}: {answer:?}", request.key));
        if succeeded {
            price_of(request.used_bytes)
        } else {
            Decimal::ZERO
        }
    }

    fn session(&mut self, shared: &Shared) {
        self.sequence += 1;
        let account = self.accounts[self.rng.below(self.accounts.len() as u64) as usize];
        let nf_name = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            self.rng.next() as u32,
            self.rng.below(1 << 16),
            self.rng.below(1 << 12),
            self.rng.below(1 << 12),
            self.sequence
        );
        let body = |sequence: u32, requested: Option<u64>, used: Option<u64>| {
            let mut usage = json!({"ratingGroup": RATING_GROUP});
            if let Some(bytes) = requested {
                usage["requestedUnit"] = json!({"totalVolume": bytes});
            }
            if let Some(bytes) = used {
                usage["usedUnitContainer"] = json!([{"localSequenceNumber": sequence, "totalVolume": bytes}]);
            }
            json!({
                "subscriberIdentifier": format!("msisdn-49170{account:08}"),
                "nfConsumerIdentification": {"nodeFunctionality": "SMF", "nFName": nf_name},
                "invocationTimeStamp": "2026-12-05T10:00:00Z",
                "invocationSequenceNumber": sequence,
                "multipleUnitUsage": [usage]
            })
        };
        let create = Request {
            key: format!("create;{nf_name}"),
            path: BASE.to_owned(),
            body: body(0, Some(MIB), None),
            step: Step::Create,
            used_bytes: 0,
            exposure: Exposure { account, charge: Decimal::ZERO, credit: Decimal::ZERO },
        };
        let Some(created) = self.exchange(shared, create) else { return };
        let Some(path) = created.location.as_deref().and_then(|l| l.find("/nchf-").map(|at| l[at..].to_owned())) else {
            return;
        };
        let steps = [(1, Step::Update, Some(MIB)), (2, Step::Update, Some(MIB)), (3, Step::Release, None)];
        for (sequence, step, requested) in steps {
            let action = if step == Step::Release { "release" } else { "update" };
            let request = Request {
                key: format!("{path};{sequence}"),
                path: format!("{path}/{action}"),
                body: body(sequence, requested, Some(MIB)),
                step,
                used_bytes: MIB,
                exposure: Exposure { account, charge: price_of(MIB), credit: Decimal::ZERO },
            };
            if self.exchange(shared, request).is_none() {
                return;
            }
        }
    }

    /// After the final restart, where nothing fails: `request` answered, and once more.
    fn settle(&mut self, shared: &Shared, request: &Request) -> Answer {
        let (generation, address) = self.ensure_server(shared).expect("the final server");
        let (answers, error) = self.attempt(address, request, Mode::Repeat, true);
        if let Some(err) = error {
            shared.broken(generation, &format!("{}: {}: {err}", self.name, request.key));
        }
        for answer in &answers {
            self.answers.record(shared, &mut self.stats, &request.key, answer);
        }
        answers[0].clone()
    }
}

impl Client for NchfClient {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&mut self, shared: &Shared) {
        while !shared.stopping() {
            self.session(shared);
        }
        self.server = None;
    }

    fn resend_sample(&mut self, shared: &Shared, count: usize) {
        for key in self.answers.sample(&mut self.rng, count) {
            let request = self.acknowledged.iter().find(|r| r.key == key).cloned();
            if let Some(request) = request {
                self.settle(shared, &request);
            }
        }
        // Idle connections would be closed by the server's watchdog while the other clients work.
        self.server = None;
    }

    fn retry_unanswered(&mut self, shared: &Shared) {
        for request in std::mem::take(&mut self.unanswered) {
            let answer = self.settle(shared, &request);
            let net = self.money(shared, &request, &answer);
            shared.answered_late(request.exposure, net);
        }
        self.server = None;
    }

    fn stats(&self) -> Stats {
        self.stats
    }
}
