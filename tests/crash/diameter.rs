//! A Diameter Gy client over two TCP connections, built on the codec of
//! `tollgate_oss_adapters`: sessions (CCR-I, two CCR-U, CCR-T, 1 MiB each on rating group
//! 30) on well-funded accounts, or direct debits (CCR EVENT, Requested-Action
//! DIRECT_DEBITING, 1 MiB) on accounts that run dry. A request may be sent once, sent
//! again with the T flag after its answer, or sent on both connections at once; a request
//! whose connection broke is either sent again with the T flag to the next server until
//! answered, or left unanswered until after the final restart.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use rust_decimal::Decimal;
use tollgate_oss_adapters::diameter::codec::{find, FLAG_PROXIABLE, FLAG_REQUEST, FLAG_RETRANSMIT};
use tollgate_oss_adapters::diameter::dictionary::code;
use tollgate_oss_adapters::diameter::{Avp, Message};

use crate::ledger::{price_of, Exposure, FirstAnswers, Shared, Stats, CHECK_KNOWN, CHECK_PRICE, MIB, RATING_GROUP};
use crate::online::{Client, Mode, ABANDON_PERCENT};
use crate::Rng;

const SUCCESS: u32 = 2001;
const CREDIT_LIMIT_REACHED: u32 = 4012;

/// What a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Traffic {
    Sessions,
    Debits,
}

#[derive(Debug, Clone)]
struct Request {
    key: String,
    message: Message,
    used_bytes: u64,
    exposure: Exposure,
    event: bool,
}

#[derive(Debug)]
pub(crate) struct DiameterClient {
    name: String,
    traffic: Traffic,
    rng: Rng,
    accounts: Vec<u64>,
    connections: Option<(u64, [TcpStream; 2])>,
    /// The server whose connections last broke: wait for a newer one.
    broken_generation: u64,
    next_hop: u32,
    next_end_to_end: u32,
    sequence: u64,
    answers: FirstAnswers<Vec<u8>>,
    acknowledged: Vec<Request>,
    unanswered: Vec<Request>,
    stats: Stats,
}

fn msisdn(account: u64) -> String {
    format!("49170{account:08}")
}

/// Reads one whole Diameter message.
fn read_message(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 4];
    stream.read_exact(&mut head)?;
    let length = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
    if head[0] != 1 || !(20..=1 << 20).contains(&length) {
        return Err(std::io::Error::other(format!("not a Diameter message: {head:?}")));
    }
    let mut bytes = vec![0u8; length];
    bytes[..4].copy_from_slice(&head);
    stream.read_exact(&mut bytes[4..])?;
    Ok(bytes)
}

fn decode(bytes: &[u8]) -> std::io::Result<Message> {
    Message::decode(Bytes::copy_from_slice(bytes)).map_err(|err| std::io::Error::other(err.to_string()))
}

fn result_code(avps: &[Avp]) -> Option<u32> {
    find(avps, code::RESULT_CODE, 0).and_then(Avp::as_u32)
}

/// Cost-Information's Unit-Value (Value-Digits × 10^Exponent).
fn cost(message: &Message) -> Option<Decimal> {
    let unit_value = find(&message.avp(code::COST_INFORMATION, 0)?.group().ok()?, code::UNIT_VALUE, 0)?.group().ok()?;
    let digits = i64::from_be_bytes(find(&unit_value, code::VALUE_DIGITS, 0)?.data[..].try_into().ok()?);
    let exponent = find(&unit_value, code::EXPONENT, 0)?.as_i32()?;
    Some(Decimal::new(digits, u32::try_from(-exponent).ok()?))
}

impl DiameterClient {
    pub(crate) fn new(name: &str, traffic: Traffic, rng: Rng, accounts: Vec<u64>) -> DiameterClient {
        DiameterClient {
            name: name.to_owned(),
            traffic,
            rng,
            accounts,
            connections: None,
            broken_generation: 0,
            next_hop: 1,
            next_end_to_end: 1,
            sequence: 0,
            answers: FirstAnswers::new(),
            acknowledged: Vec::new(),
            unanswered: Vec::new(),
            stats: Stats::default(),
        }
    }

    fn hop(&mut self) -> u32 {
        self.next_hop = self.next_hop.wrapping_add(1);
        self.next_hop
    }

    fn connect(&mut self, address: SocketAddr, shared: &Shared, index: usize) -> std::io::Result<TcpStream> {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        // Hang guards: a killed server resets the connection at once.
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let origin = format!("{}-{index}.client.crash.test", self.name);
        let cer = Message {
            flags: FLAG_REQUEST,
            command: 257,
            application: 0,
            hop_by_hop: self.hop(),
            end_to_end: self.hop(),
            avps: vec![
                Avp::utf8(code::ORIGIN_HOST, 0, &origin),
                Avp::utf8(code::ORIGIN_REALM, 0, "client.crash.test"),
                Avp::new(code::HOST_IP_ADDRESS, 0, vec![0, 1, 127, 0, 0, 1]),
                Avp::u32(code::VENDOR_ID, 0, 0),
                Avp::utf8(code::PRODUCT_NAME, 0, "tollgate-crash-test"),
                Avp::u32(code::AUTH_APPLICATION_ID, 0, 4),
            ],
        };
        stream.write_all(&cer.encode())?;
        let cea = decode(&read_message(&mut stream)?)?;
        let host = cea.avp(code::ORIGIN_HOST, 0).and_then(Avp::as_str).unwrap_or("");
        // A port of a killed server may already belong to someone else's process.
        if result_code(&cea.avps) != Some(SUCCESS) || host != shared.origin_host {
            return Err(std::io::Error::other(format!("CEA from {host}: {:?}", result_code(&cea.avps))));
        }
        Ok(stream)
    }

    /// Connections to the newest server; `None` once the load is over.
    fn ensure_connected(&mut self, shared: &Shared) -> Option<u64> {
        loop {
            if let Some((generation, _)) = &self.connections {
                return Some(*generation);
            }
            let (generation, addresses) = shared.wait_server(self.broken_generation)?;
            let pair = self
                .connect(addresses.diameter, shared, 0)
                .and_then(|first| Ok([first, self.connect(addresses.diameter, shared, 1)?]));
            match pair {
                Ok(pair) => self.connections = Some((generation, pair)),
                Err(err) => {
                    self.stats.broken += 1;
                    shared.broken(generation, &format!("{}: connecting: {err}", self.name));
                    self.broken_generation = generation;
                }
            }
        }
    }

    fn send(&mut self, index: usize, request: &Request, retransmit: bool) -> std::io::Result<u32> {
        let hop = self.hop();
        let mut message = request.message.clone();
        message.hop_by_hop = hop;
        if retransmit {
            message.flags |= FLAG_RETRANSMIT;
        }
        self.stats.sent += 1;
        let (_, streams) = self.connections.as_mut().ok_or_else(|| std::io::Error::other("not connected"))?;
        streams[index].write_all(&message.encode())?;
        Ok(hop)
    }

    fn receive(&mut self, index: usize, hop: u32) -> std::io::Result<Vec<u8>> {
        let (_, streams) = self.connections.as_mut().ok_or_else(|| std::io::Error::other("not connected"))?;
        let mut bytes = read_message(&mut streams[index])?;
        if bytes[12..16] != hop.to_be_bytes() {
            return Err(std::io::Error::other("an answer to another request"));
        }
        // Compared without the hop-by-hop id, the one field a retransmission changes.
        bytes[12..16].fill(0);
        Ok(bytes)
    }

    /// One attempt in `mode`: the answers received, and the error that broke it, if any.
    fn attempt(&mut self, request: &Request, mode: Mode, retransmit: bool) -> (Vec<Vec<u8>>, Option<std::io::Error>) {
        let mut answers = Vec::new();
        let mut error = None;
        match mode {
            Mode::Once | Mode::Repeat => {
                match self.send(0, request, retransmit).and_then(|hop| self.receive(0, hop)) {
                    Ok(answer) => answers.push(answer),
                    Err(err) => error = Some(err),
                }
                if mode == Mode::Repeat && error.is_none() {
                    let index = self.rng.below(2) as usize;
                    match self.send(index, request, true).and_then(|hop| self.receive(index, hop)) {
                        Ok(answer) => answers.push(answer),
                        Err(err) => error = Some(err),
                    }
                }
            }
            Mode::Twins => {
                let first = self.send(0, request, retransmit);
                let second = self.send(1, request, true);
                for (index, sent) in [(0, first), (1, second)] {
                    match sent.and_then(|hop| self.receive(index, hop)) {
                        Ok(answer) => answers.push(answer),
                        Err(err) => error = Some(err),
                    }
                }
            }
        }
        (answers, error)
    }

    /// Sends `request` until answered; `None` if it was left unanswered.
    fn exchange(&mut self, shared: &Shared, request: Request) -> Option<Message> {
        self.stats.requests += 1;
        let mode = Mode::pick(&mut self.rng);
        let mut failed = false;
        loop {
            let Some(generation) = self.ensure_connected(shared) else {
                return self.leave_unanswered(shared, request);
            };
            let (answers, error) = self.attempt(&request, mode, failed);
            if let Some(err) = error {
                self.stats.broken += 1;
                shared.broken(generation, &format!("{}: {}: {err}", self.name, request.key));
                self.connections = None;
                self.broken_generation = generation;
            }
            if let Some(first) = answers.first() {
                let answer = decode(first).expect("an answer decodes");
                self.stats.acknowledged += 1;
                self.stats.retried += u64::from(failed);
                self.stats.repeated += u64::from(mode == Mode::Repeat && answers.len() > 1);
                self.stats.twins += u64::from(mode == Mode::Twins);
                for bytes in &answers {
                    self.answers.record(shared, &mut self.stats, &request.key, bytes);
                }
                let net = self.money(shared, &request, &answer);
                shared.acknowledged(request.exposure.account, net);
                self.acknowledged.push(request);
                return Some(answer);
            }
            if !failed {
                failed = true;
                if self.rng.percent(ABANDON_PERCENT) {
                    return self.leave_unanswered(shared, request);
                }
            }
        }
    }

    fn leave_unanswered(&mut self, shared: &Shared, request: Request) -> Option<Message> {
        self.stats.unanswered += 1;
        shared.unanswered(request.exposure);
        self.unanswered.push(request);
        None
    }

    /// What the answer says the request took from the account.
    fn money(&self, shared: &Shared, request: &Request, answer: &Message) -> Decimal {
        let code = result_code(&answer.avps);
        if request.event {
            let charged = match code {
                Some(SUCCESS) => cost(answer),
                Some(CREDIT_LIMIT_REACHED) => Some(Decimal::ZERO),
                _ => None,
            };
            let price = price_of(request.used_bytes);
            shared.check(CHECK_PRICE, charged.is_some_and(|c| c == price || c.is_zero()), || {
                format!("{}: Result-Code {code:?}, Cost-Information {charged:?}, price {price}", request.key)
            });
            return charged.unwrap_or_default();
        }
        let mscc = answer
            .avp(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0)
            .and_then(|a| a.group().ok())
            .and_then(|members| result_code(&members));
        // Well-funded accounts: every step of a session whose CCR-I was answered succeeds.
        let known = code == Some(SUCCESS) && mscc == Some(SUCCESS);
        shared
            .check(CHECK_KNOWN, known, || format!("{}: Result-Code {code:?}, MSCC Result-Code {mscc:?}", request.key));
        if known {
            price_of(request.used_bytes)
        } else {
            Decimal::ZERO
        }
    }

    fn ccr(
        &mut self,
        session: &str,
        kind: u32,
        number: u32,
        account: u64,
        units: (Option<u64>, Option<u64>),
    ) -> Message {
        let mut mscc = vec![Avp::u32(code::RATING_GROUP, 0, RATING_GROUP)];
        if let Some(bytes) = units.0 {
            mscc.push(Avp::grouped(code::REQUESTED_SERVICE_UNIT, 0, &[Avp::u64(code::CC_TOTAL_OCTETS, 0, bytes)]));
        }
        if let Some(bytes) = units.1 {
            mscc.push(Avp::grouped(code::USED_SERVICE_UNIT, 0, &[Avp::u64(code::CC_TOTAL_OCTETS, 0, bytes)]));
        }
        let mut avps = vec![
            Avp::utf8(code::SESSION_ID, 0, session),
            Avp::utf8(code::ORIGIN_HOST, 0, &format!("{}.client.crash.test", self.name)),
            Avp::utf8(code::ORIGIN_REALM, 0, "client.crash.test"),
            Avp::utf8(code::DESTINATION_REALM, 0, "crash.test"),
            Avp::u32(code::AUTH_APPLICATION_ID, 0, 4),
            Avp::utf8(code::SERVICE_CONTEXT_ID, 0, "32251@3gpp.org"),
            Avp::u32(code::CC_REQUEST_TYPE, 0, kind),
            Avp::u32(code::CC_REQUEST_NUMBER, 0, number),
        ];
        if kind == 4 {
            avps.push(Avp::u32(code::REQUESTED_ACTION, 0, 0));
        }
        avps.push(Avp::grouped(
            code::SUBSCRIPTION_ID,
            0,
            &[Avp::u32(code::SUBSCRIPTION_ID_TYPE, 0, 0), Avp::utf8(code::SUBSCRIPTION_ID_DATA, 0, &msisdn(account))],
        ));
        avps.push(Avp::grouped(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0, &mscc));
        self.next_end_to_end = self.next_end_to_end.wrapping_add(1);
        Message {
            flags: FLAG_REQUEST | FLAG_PROXIABLE,
            command: 272,
            application: 4,
            hop_by_hop: 0,
            end_to_end: self.next_end_to_end,
            avps,
        }
    }

    fn session(&mut self, shared: &Shared) {
        self.sequence += 1;
        let account = self.accounts[self.rng.below(self.accounts.len() as u64) as usize];
        let session = format!("{}.client.crash.test;{};{}", self.name, account, self.sequence);
        let steps = [(1, Some(MIB), None), (2, Some(MIB), Some(MIB)), (2, Some(MIB), Some(MIB)), (3, None, Some(MIB))];
        for (number, (kind, requested, used)) in steps.into_iter().enumerate() {
            let message = self.ccr(&session, kind, number as u32, account, (requested, used));
            let used_bytes = used.unwrap_or(0);
            let request = Request {
                key: format!("{session};{number}"),
                message,
                used_bytes,
                exposure: Exposure { account, charge: price_of(used_bytes), credit: Decimal::ZERO },
                event: false,
            };
            if self.exchange(shared, request).is_none() {
                return;
            }
        }
    }

    fn debit(&mut self, shared: &Shared) {
        self.sequence += 1;
        let account = self.accounts[self.rng.below(self.accounts.len() as u64) as usize];
        let session = format!("{}.client.crash.test;{};event{}", self.name, account, self.sequence);
        let message = self.ccr(&session, 4, 0, account, (Some(MIB), None));
        let request = Request {
            key: format!("{session};0"),
            message,
            used_bytes: MIB,
            exposure: Exposure { account, charge: price_of(MIB), credit: Decimal::ZERO },
            event: true,
        };
        self.exchange(shared, request);
    }

    /// After the final restart, where nothing fails: `request` answered, and once more.
    fn settle(&mut self, shared: &Shared, request: &Request) -> Message {
        let generation = self.ensure_connected(shared).expect("the final server");
        let (answers, error) = self.attempt(request, Mode::Repeat, true);
        if let Some(err) = error {
            shared.broken(generation, &format!("{}: {}: {err}", self.name, request.key));
        }
        for bytes in &answers {
            self.answers.record(shared, &mut self.stats, &request.key, bytes);
        }
        decode(&answers[0]).expect("an answer decodes")
    }
}

impl Client for DiameterClient {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&mut self, shared: &Shared) {
        while !shared.stopping() {
            match self.traffic {
                Traffic::Sessions => self.session(shared),
                Traffic::Debits => self.debit(shared),
            }
        }
        self.connections = None;
    }

    fn resend_sample(&mut self, shared: &Shared, count: usize) {
        for key in self.answers.sample(&mut self.rng, count) {
            let request = self.acknowledged.iter().find(|r| r.key == key).cloned();
            if let Some(request) = request {
                self.settle(shared, &request);
            }
        }
        // Idle connections would be closed by the server's watchdog while the other clients work.
        self.connections = None;
    }

    fn retry_unanswered(&mut self, shared: &Shared) {
        for request in std::mem::take(&mut self.unanswered) {
            let answer = self.settle(shared, &request);
            let net = self.money(shared, &request, &answer);
            shared.answered_late(request.exposure, net);
        }
        self.connections = None;
    }

    fn stats(&self) -> Stats {
        self.stats
    }
}
