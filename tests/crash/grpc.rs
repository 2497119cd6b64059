//! A gRPC client (`tollgate.v1.Charging`, tonic) on accounts that run dry: debits of
//! 1 MiB on rating group 30, sessions (initial, update and termination of 1 MiB each,
//! whose grants say what they charged) and top-ups of 0.50. A call may be made once, made
//! again with the same key after its reply, or made on two connections at once; one whose
//! connection broke is made again on the next server until answered, or left unanswered
//! until after the final restart. Replies are compared without their `repeated` flag.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rust_decimal::Decimal;
use tollgate_oss_adapters::grpc::proto::{self, charging_client::ChargingClient, subscriber::Id};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::ledger::{price_of, Exposure, FirstAnswers, Shared, Stats, CHECK_KNOWN, CHECK_PRICE, MIB, RATING_GROUP};
use crate::online::{Client, Mode, ABANDON_PERCENT};
use crate::Rng;

const TOP_UP: Decimal = Decimal::from_parts(50, 0, 0, false, 2);

#[derive(Debug, Clone)]
enum Call {
    Debit(proto::UsageRequest),
    Session(proto::SessionRequest),
    TopUp(proto::TopUpRequest),
}

#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Charge(proto::ChargeReply),
    Session(proto::SessionReply),
    Money(proto::MoneyReply),
}

impl Reply {
    /// The reply as compared: `repeated` says whether it came from the window, which is
    /// the point of a retransmission, so it is left out.
    fn normalized(mut self) -> Reply {
        match &mut self {
            Reply::Charge(reply) => reply.repeated = false,
            Reply::Session(reply) => reply.repeated = false,
            Reply::Money(reply) => reply.repeated = false,
        }
        self
    }
}

#[derive(Debug, Clone)]
struct Request {
    key: String,
    call: Call,
    used_bytes: u64,
    exposure: Exposure,
}

type Charging = ChargingClient<Channel>;

#[derive(Debug)]
pub(crate) struct GrpcClient {
    name: String,
    rng: Rng,
    accounts: Vec<u64>,
    runtime: tokio::runtime::Runtime,
    header: MetadataValue<Ascii>,
    channels: Option<(u64, [Charging; 2])>,
    broken_generation: u64,
    sequence: u64,
    answers: FirstAnswers<Reply>,
    acknowledged: Vec<Request>,
    unanswered: Vec<Request>,
    stats: Stats,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

fn header(token: &str) -> MetadataValue<Ascii> {
    format!("Bearer {token}").parse().expect("the token is header text")
}

async fn connect(address: SocketAddr) -> Result<Charging, tonic::transport::Error> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_secs(5))
        // A hang guard: a killed server resets the connection at once.
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true);
    Ok(ChargingClient::new(endpoint.connect().await?))
}

async fn invoke(mut client: Charging, header: MetadataValue<Ascii>, call: Call) -> Result<Reply, tonic::Status> {
    fn with<T>(message: T, header: MetadataValue<Ascii>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert("authorization", header);
        request
    }
    Ok(match call {
        Call::Debit(m) => Reply::Charge(client.debit(with(m, header)).await?.into_inner()),
        Call::Session(m) => Reply::Session(client.session(with(m, header)).await?.into_inner()),
        Call::TopUp(m) => Reply::Money(client.top_up(with(m, header)).await?.into_inner()),
    })
}

fn decimal(text: &str) -> Option<Decimal> {
    if text.is_empty() {
        Some(Decimal::ZERO)
    } else {
        text.parse().ok()
    }
}

/// Tops `account` up by `amount` with `key` (the server must be up and stay up).
pub(crate) fn top_up(shared: &Shared, address: SocketAddr, account: u64, amount: Decimal, key: &str) -> Decimal {
    runtime().block_on(async {
        let client = connect(address).await.expect("gRPC connects");
        let call = Call::TopUp(proto::TopUpRequest {
            key: key.to_owned(),
            account,
            amount: amount.to_string(),
            reference: key.to_owned(),
        });
        match invoke(client, header(&shared.token), call).await.expect("top-up answered") {
            Reply::Money(reply) if reply.outcome == proto::Outcome::Success as i32 => {
                decimal(&reply.balance_after).expect("balance_after")
            }
            other => panic!("top-up of account {account}: {other:?}"),
        }
    })
}

/// Balance and reserved money of each account, as the running server reports them.
pub(crate) fn balances(shared: &Shared, address: SocketAddr, accounts: &[u64]) -> BTreeMap<u64, (Decimal, Decimal)> {
    runtime().block_on(async {
        let mut client = connect(address).await.expect("gRPC connects");
        let mut out = BTreeMap::new();
        for &account in accounts {
            let mut request = tonic::Request::new(proto::BalanceRequest {
                subscriber: Some(proto::Subscriber { id: Some(Id::Account(account)) }),
            });
            request.metadata_mut().insert("authorization", header(&shared.token));
            let reply = client.balance(request).await.expect("balance answered").into_inner();
            assert_eq!(reply.outcome, proto::Outcome::Success as i32, "balance of account {account}: {reply:?}");
            out.insert(
                account,
                (decimal(&reply.balance).expect("balance"), decimal(&reply.reserved).expect("reserved")),
            );
        }
        out
    })
}

impl GrpcClient {
    pub(crate) fn new(name: &str, rng: Rng, accounts: Vec<u64>, token: &str) -> GrpcClient {
        GrpcClient {
            name: name.to_owned(),
            rng,
            accounts,
            runtime: runtime(),
            header: header(token),
            channels: None,
            broken_generation: 0,
            sequence: 0,
            answers: FirstAnswers::new(),
            acknowledged: Vec::new(),
            unanswered: Vec::new(),
            stats: Stats::default(),
        }
    }

    fn ensure_connected(&mut self, shared: &Shared) -> Option<u64> {
        loop {
            if let Some((generation, _)) = &self.channels {
                return Some(*generation);
            }
            let (generation, addresses) = shared.wait_server(self.broken_generation)?;
            let pair = self.runtime.block_on(async {
                let first = connect(addresses.grpc).await?;
                Ok::<_, tonic::transport::Error>([first, connect(addresses.grpc).await?])
            });
            match pair {
                Ok(pair) => self.channels = Some((generation, pair)),
                Err(err) => {
                    self.stats.broken += 1;
                    shared.broken(generation, &format!("{}: connecting: {err}", self.name));
                    self.broken_generation = generation;
                }
            }
        }
    }

    fn attempt(&mut self, request: &Request, mode: Mode) -> (Vec<Reply>, Option<tonic::Status>) {
        let Some((_, [first, second])) = self.channels.clone() else {
            return (Vec::new(), Some(tonic::Status::unavailable("not connected")));
        };
        let header = self.header.clone();
        let call = request.call.clone();
        let results = match mode {
            Mode::Once => {
                self.stats.sent += 1;
                vec![self.runtime.block_on(invoke(first, header, call))]
            }
            Mode::Repeat => {
                self.stats.sent += 1;
                let once = self.runtime.block_on(invoke(first, header.clone(), call.clone()));
                if once.is_ok() {
                    self.stats.sent += 1;
                    let again = self.runtime.block_on(invoke(second, header, call));
                    vec![once, again]
                } else {
                    vec![once]
                }
            }
            Mode::Twins => {
                self.stats.sent += 2;
                let (a, b) = self.runtime.block_on(async {
                    tokio::join!(invoke(first, header.clone(), call.clone()), invoke(second, header, call))
                });
                vec![a, b]
            }
        };
        let mut replies = Vec::new();
        let mut error = None;
        for result in results {
            match result {
                Ok(reply) => replies.push(reply.normalized()),
                Err(status) => error = Some(status),
            }
        }
        (replies, error)
    }

    fn exchange(&mut self, shared: &Shared, request: Request) -> Option<Reply> {
        self.stats.requests += 1;
        let mode = Mode::pick(&mut self.rng);
        let mut failed = false;
        loop {
            let Some(generation) = self.ensure_connected(shared) else {
                return self.leave_unanswered(shared, request);
            };
            let (replies, error) = self.attempt(&request, mode);
            if let Some(status) = error {
                self.stats.broken += 1;
                shared.broken(generation, &format!("{}: {}: {status}", self.name, request.key));
                self.channels = None;
                self.broken_generation = generation;
            }
            if let Some(first) = replies.first().cloned() {
                self.stats.acknowledged += 1;
                self.stats.retried += u64::from(failed);
                self.stats.repeated += u64::from(mode == Mode::Repeat && replies.len() > 1);
                self.stats.twins += u64::from(mode == Mode::Twins);
                for reply in &replies {
                    self.answers.record(shared, &mut self.stats, &request.key, reply);
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

    fn leave_unanswered(&mut self, shared: &Shared, request: Request) -> Option<Reply> {
        self.stats.unanswered += 1;
        shared.unanswered(request.exposure);
        self.unanswered.push(request);
        None
    }

    /// What the reply says the call took from the account (negative: credited).
    fn money(&self, shared: &Shared, request: &Request, reply: &Reply) -> Decimal {
        let success = proto::Outcome::Success as i32;
        let credit_limit = proto::Outcome::CreditLimitReached as i32;
        let price = price_of(request.used_bytes);
        match reply {
            Reply::Charge(r) => {
                let amount = match r.outcome {
                    o if o == success => decimal(&r.amount),
                    o if o == credit_limit => Some(Decimal::ZERO),
                    _ => None,
                };
                shared.check(CHECK_PRICE, amount.is_some_and(|a| a == price || a.is_zero()), || {
                    format!("{}: {r:?}, price {price}", request.key)
                });
                amount.unwrap_or_default()
            }
            Reply::Session(r) => {
                let opening = matches!(&request.call, Call::Session(s) if s.step == proto::Step::Initial as i32);
                shared.check(CHECK_KNOWN, opening || r.outcome != proto::Outcome::UnknownSession as i32, || {
                    format!("{}: {r:?}", request.key)
                });
                let charged: Option<Decimal> = r.grants.iter().map(|g| decimal(&g.charged)).sum();
                // Usage past what the balance can pay is charged only up to it.
                shared.check(CHECK_PRICE, charged.is_some_and(|c| c >= Decimal::ZERO && c <= price), || {
                    format!("{}: {r:?}, price {price}", request.key)
                });
                charged.unwrap_or_default()
            }
            Reply::Money(r) => {
                shared.check(CHECK_PRICE, r.outcome == success, || format!("{}: {r:?}", request.key));
                if r.outcome == success {
                    -request.exposure.credit
                } else {
                    Decimal::ZERO
                }
            }
        }
    }

    fn subscriber(account: u64) -> Option<proto::Subscriber> {
        Some(proto::Subscriber { id: Some(Id::Msisdn(format!("49170{account:08}"))) })
    }

    fn debit(&mut self, shared: &Shared, account: u64, now: i64) {
        let key = format!("{}-debit-{}", self.name, self.sequence);
        let usage = proto::UsageRequest {
            key: key.clone(),
            subscriber: GrpcClient::subscriber(account),
            rating_group: RATING_GROUP,
            start_utc_seconds: now,
            units: MIB,
            ..Default::default()
        };
        let exposure = Exposure { account, charge: price_of(MIB), credit: Decimal::ZERO };
        self.exchange(shared, Request { key, call: Call::Debit(usage), used_bytes: MIB, exposure });
    }

    fn top_up(&mut self, shared: &Shared, account: u64) {
        let key = format!("{}-top-up-{}", self.name, self.sequence);
        let call = Call::TopUp(proto::TopUpRequest {
            key: key.clone(),
            account,
            amount: TOP_UP.to_string(),
            reference: key.clone(),
        });
        let exposure = Exposure { account, charge: Decimal::ZERO, credit: TOP_UP };
        self.exchange(shared, Request { key, call, used_bytes: 0, exposure });
    }

    fn session(&mut self, shared: &Shared, account: u64) {
        let session = format!("{}-session-{}", self.name, self.sequence);
        let steps = [
            (proto::Step::Initial, Some(MIB), 0),
            (proto::Step::Update, Some(MIB), MIB),
            (proto::Step::Termination, None, MIB),
        ];
        for (number, (step, requested, used)) in steps.into_iter().enumerate() {
            let key = format!("{session};{number}");
            let call = Call::Session(proto::SessionRequest {
                key: key.clone(),
                subscriber: GrpcClient::subscriber(account),
                session: session.clone(),
                step: step as i32,
                units: vec![proto::UnitRequest {
                    rating_group: RATING_GROUP,
                    has_requested: requested.is_some(),
                    requested_units: requested.unwrap_or(0),
                    used_units: used,
                    destination: String::new(),
                }],
            });
            let exposure = Exposure { account, charge: price_of(used), credit: Decimal::ZERO };
            let Some(Reply::Session(reply)) = self.exchange(shared, Request { key, call, used_bytes: used, exposure })
            else {
                return;
            };
            if step == proto::Step::Initial && reply.outcome != proto::Outcome::Success as i32 {
                // Nothing granted: the session did not start.
                return;
            }
        }
    }

    /// After the final restart, where nothing fails: `request` answered, and once more.
    fn settle(&mut self, shared: &Shared, request: &Request) -> Reply {
        let generation = self.ensure_connected(shared).expect("the final server");
        let (replies, error) = self.attempt(request, Mode::Repeat);
        if let Some(status) = error {
            shared.broken(generation, &format!("{}: {}: {status}", self.name, request.key));
        }
        for reply in &replies {
            self.answers.record(shared, &mut self.stats, &request.key, reply);
        }
        replies[0].clone()
    }
}

impl Client for GrpcClient {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&mut self, shared: &Shared) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        while !shared.stopping() {
            self.sequence += 1;
            let account = self.accounts[self.rng.below(self.accounts.len() as u64) as usize];
            match self.rng.below(100) {
                0..45 => self.debit(shared, account, now),
                45..88 => self.session(shared, account),
                _ => self.top_up(shared, account),
            }
        }
        self.channels = None;
    }

    fn resend_sample(&mut self, shared: &Shared, count: usize) {
        for key in self.answers.sample(&mut self.rng, count) {
            let request = self.acknowledged.iter().find(|r| r.key == key).cloned();
            if let Some(request) = request {
                self.settle(shared, &request);
            }
        }
        // Idle connections would be closed by the server's watchdog while the other clients work.
        self.channels = None;
    }

    fn retry_unanswered(&mut self, shared: &Shared) {
        for request in std::mem::take(&mut self.unanswered) {
            let reply = self.settle(shared, &request);
            let net = self.money(shared, &request, &reply);
            shared.answered_late(request.exposure, net);
        }
        self.channels = None;
    }

    fn stats(&self) -> Stats {
        self.stats
    }
}
