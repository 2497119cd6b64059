//! The `tollgate.v1.Charging` service: each call becomes one engine request; the stream
//! submits as it reads and answers in order, many requests in flight at once.

use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use rust_decimal::Decimal;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tollgate_engine::{self as engine, Body, Engine, Identity, Operation, ServiceRef, SessionStep, SmolStr, Target};
use tonic::{Request, Response, Status, Streaming};

use super::proto::{self, charging_server::Charging, subscriber::Id};
use crate::metrics;

/// Requests a stream may have in flight before it stops reading.
pub const STREAM_IN_FLIGHT: usize = 4096;

#[derive(Debug, Clone)]
pub struct ChargingService {
    engine: Arc<Engine>,
}

impl ChargingService {
    pub fn new(engine: Arc<Engine>) -> ChargingService {
        ChargingService { engine }
    }
}

/// The interceptor that admits only `authorization: Bearer <token>`.
pub fn authenticate(token: Arc<str>) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| {
        let presented = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        match presented.and_then(|v| v.strip_prefix("Bearer ")) {
            Some(presented) if constant_time_eq(presented.as_bytes(), token.as_bytes()) => Ok(request),
            _ => Err(Status::unauthenticated("a valid bearer token is required")),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn target(subscriber: Option<proto::Subscriber>) -> Result<Target, Status> {
    match subscriber.and_then(|s| s.id) {
        Some(Id::Msisdn(v)) => Ok(Target::Subscriber(Identity::Msisdn(v))),
        Some(Id::Imsi(v)) => Ok(Target::Subscriber(Identity::Imsi(v))),
        Some(Id::SipUri(v)) => Ok(Target::Subscriber(Identity::SipUri(v))),
        Some(Id::Nai(v)) => Ok(Target::Subscriber(Identity::Nai(v))),
        Some(Id::Account(v)) => Ok(Target::Account(v)),
        None => Err(Status::invalid_argument("subscriber: one of msisdn, imsi, sip_uri, nai or account is required")),
    }
}

fn usage(request: &proto::UsageRequest) -> engine::Usage {
    let service = if request.service.is_empty() {
        ServiceRef::RatingGroup(request.rating_group)
    } else {
        ServiceRef::Name(SmolStr::new(&request.service))
    };
    engine::Usage {
        service,
        rating_group: (request.rating_group != 0).then_some(request.rating_group),
        destination: (!request.destination.is_empty()).then(|| SmolStr::new(&request.destination)),
        start_utc_seconds: request.start_utc_seconds,
        units: request.units,
    }
}

fn outcome(outcome: &engine::Outcome) -> (proto::Outcome, String) {
    match outcome {
        engine::Outcome::Success => (proto::Outcome::Success, String::new()),
        engine::Outcome::CreditLimitReached => (proto::Outcome::CreditLimitReached, String::new()),
        engine::Outcome::UnknownSubscriber => (proto::Outcome::UnknownSubscriber, String::new()),
        engine::Outcome::UnknownAccount => (proto::Outcome::UnknownAccount, String::new()),
        engine::Outcome::UnknownSession => (proto::Outcome::UnknownSession, String::new()),
        engine::Outcome::RatingFailed(code) => (proto::Outcome::RatingFailed, code.clone()),
        engine::Outcome::AlreadyExists => (proto::Outcome::AlreadyExists, String::new()),
        engine::Outcome::Invalid(why) => (proto::Outcome::Invalid, why.clone()),
        engine::Outcome::ServiceDenied(why) => (proto::Outcome::ServiceDenied, why.clone()),
        other => (proto::Outcome::Invalid, format!("{other:?}")),
    }
}

fn charge_reply(answer: &engine::Answer) -> proto::ChargeReply {
    let (code, detail) = outcome(&answer.outcome);
    let mut reply =
        proto::ChargeReply { outcome: code as i32, detail, repeated: answer.repeated, ..Default::default() };
    if let Body::Charged(charged) = &answer.body {
        reply.amount = charged.amount.to_string();
        reply.currency = charged.currency.to_string();
        reply.charged_units = charged.charged_units;
        reply.allowance_units = charged.allowance_units;
        reply.balance_after = charged.balance_after.to_string();
    }
    reply
}

async fn ask(engine: &Engine, request: engine::Request) -> Result<engine::Answer, Status> {
    let (reply, answered) = oneshot::channel();
    engine.submit(request, Box::new(move |answer| drop(reply.send(answer))));
    match answered.await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(engine::EngineError::Overloaded { .. })) => Err(overloaded()),
        _ => Err(Status::unavailable("the charging engine is unavailable")),
    }
}

/// A shard's queue was full: nothing was charged; the client may send it again.
fn overloaded() -> Status {
    Status::resource_exhausted("the charging engine is overloaded; nothing was charged, send it again later")
}

fn key(key: &str) -> Option<String> {
    (!key.is_empty()).then(|| format!("grpc;{key}"))
}

/// Answers a call and counts its status and latency ([`metrics::GRPC`]).
async fn counted<T>(answer: impl std::future::Future<Output = Result<T, Status>>) -> Result<T, Status> {
    let started = Instant::now();
    let answered = answer.await;
    metrics::GRPC.record(status_code(&answered), started.elapsed());
    answered
}

/// The gRPC status code of an answer.
fn status_code<T>(answered: &Result<T, Status>) -> u32 {
    answered.as_ref().map_or_else(|status| status.code() as u32, |_| tonic::Code::Ok as u32)
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<proto::ChargeReply, Status>> + Send>>;

#[tonic::async_trait]
impl Charging for ChargingService {
    async fn price(&self, request: Request<proto::UsageRequest>) -> Result<Response<proto::ChargeReply>, Status> {
        counted(async move {
            let request = request.into_inner();
            let operation = Operation::PriceEnquiry { usage: usage(&request) };
            let answer =
                ask(&self.engine, engine::Request { key: None, target: target(request.subscriber)?, operation })
                    .await?;
            Ok(Response::new(charge_reply(&answer)))
        })
        .await
    }

    async fn debit(&self, request: Request<proto::UsageRequest>) -> Result<Response<proto::ChargeReply>, Status> {
        counted(async move {
            let request = request.into_inner();
            let operation = Operation::DirectDebit { usage: usage(&request) };
            let engine_request =
                engine::Request { key: key(&request.key), target: target(request.subscriber)?, operation };
            Ok(Response::new(charge_reply(&ask(&self.engine, engine_request).await?)))
        })
        .await
    }

    async fn balance(&self, request: Request<proto::BalanceRequest>) -> Result<Response<proto::BalanceReply>, Status> {
        counted(async move {
            let request = request.into_inner();
            let engine_request = engine::Request {
                key: None,
                target: target(request.subscriber)?,
                operation: Operation::BalanceEnquiry,
            };
            let answer = ask(&self.engine, engine_request).await?;
            let (code, _) = outcome(&answer.outcome);
            let mut reply = proto::BalanceReply { outcome: code as i32, ..Default::default() };
            if let Body::Balance(view) = answer.body {
                reply.balance = view.balance.to_string();
                reply.available = view.available.to_string();
                reply.reserved = view.reserved.to_string();
                reply.currency = view.currency;
            }
            Ok(Response::new(reply))
        })
        .await
    }

    async fn session(&self, request: Request<proto::SessionRequest>) -> Result<Response<proto::SessionReply>, Status> {
        counted(async move {
            let request = request.into_inner();
            let step = match proto::Step::try_from(request.step) {
                Ok(proto::Step::Initial) => SessionStep::Initial,
                Ok(proto::Step::Update) => SessionStep::Update,
                Ok(proto::Step::Termination) => SessionStep::Termination,
                _ => return Err(Status::invalid_argument("step: INITIAL, UPDATE or TERMINATION")),
            };
            let units = request
                .units
                .iter()
                .map(|u| engine::UnitRequest {
                    rating_group: u.rating_group,
                    service: None,
                    requested_units: if u.has_requested {
                        (u.requested_units > 0).then_some(u.requested_units)
                    } else {
                        Some(0)
                    },
                    used_units: (u.used_units > 0).then_some(u.used_units),
                    destination: (!u.destination.is_empty()).then(|| SmolStr::new(&u.destination)),
                })
                .collect();
            let operation = Operation::Session { session: request.session, step, units };
            let answer = ask(
                &self.engine,
                engine::Request { key: key(&request.key), target: target(request.subscriber)?, operation },
            )
            .await?;
            let (code, _) = outcome(&answer.outcome);
            let grants = match &answer.body {
                Body::Session { grants } => grants
                    .iter()
                    .map(|g| proto::Grant {
                        rating_group: g.rating_group,
                        outcome: outcome(&g.outcome).0 as i32,
                        granted_units: g.granted_units,
                        validity_seconds: g.validity_seconds,
                        final_unit: g.final_unit,
                        used_units: g.used_units,
                        charged: g.charged.to_string(),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Ok(Response::new(proto::SessionReply { outcome: code as i32, grants, repeated: answer.repeated }))
        })
        .await
    }

    async fn top_up(&self, request: Request<proto::TopUpRequest>) -> Result<Response<proto::MoneyReply>, Status> {
        counted(async move {
            let request = request.into_inner();
            let amount = Decimal::from_str(&request.amount)
                .map_err(|_| Status::invalid_argument("amount: a decimal such as \"5.00\""))?;
            let operation = Operation::TopUp { amount, reference: request.reference };
            let answer = ask(
                &self.engine,
                engine::Request { key: key(&request.key), target: Target::Account(request.account), operation },
            )
            .await?;
            let (code, _) = outcome(&answer.outcome);
            let balance_after = match answer.body {
                Body::Money { balance_after } => balance_after.to_string(),
                _ => String::new(),
            };
            Ok(Response::new(proto::MoneyReply { outcome: code as i32, balance_after, repeated: answer.repeated }))
        })
        .await
    }

    type DebitStreamStream = ReplyStream;

    async fn debit_stream(
        &self,
        request: Request<Streaming<proto::UsageRequest>>,
    ) -> Result<Response<ReplyStream>, Status> {
        let mut inbound = request.into_inner();
        // Each entry with when its message arrived, for the latency.
        let (pending_tx, mut pending_rx) = mpsc::channel::<(
            Instant,
            Result<oneshot::Receiver<Result<engine::Answer, engine::EngineError>>, Status>,
        )>(STREAM_IN_FLIGHT);
        let (out_tx, out_rx) = mpsc::channel(STREAM_IN_FLIGHT);
        let engine = Arc::clone(&self.engine);
        tokio::spawn(async move {
            loop {
                let next = match inbound.message().await {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(status) => {
                        let _ = pending_tx.send((Instant::now(), Err(status))).await;
                        break;
                    }
                };
                let started = Instant::now();
                let entry = match target(next.subscriber.clone()) {
                    Ok(target) => {
                        let (reply, answered) = oneshot::channel();
                        let request = engine::Request {
                            key: key(&next.key),
                            target,
                            operation: Operation::DirectDebit { usage: usage(&next) },
                        };
                        engine.submit(request, Box::new(move |answer| drop(reply.send(answer))));
                        Ok(answered)
                    }
                    Err(status) => Err(status),
                };
                if pending_tx.send((started, entry)).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some((started, entry)) = pending_rx.recv().await {
                let reply = match entry {
                    Ok(answered) => match answered.await {
                        Ok(Ok(answer)) => Ok(charge_reply(&answer)),
                        Ok(Err(engine::EngineError::Overloaded { .. })) => Err(overloaded()),
                        _ => Err(Status::unavailable("the charging engine is unavailable")),
                    },
                    Err(status) => Err(status),
                };
                metrics::GRPC.record(status_code(&reply), started.elapsed());
                if out_tx.send(reply).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}

/// Serves the Charging service on `listener`, admitting only calls with `token`, until
/// `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    token: Arc<str>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), crate::AdapterError> {
    let service =
        proto::charging_server::ChargingServer::with_interceptor(ChargingService::new(engine), authenticate(token));
    tonic::transport::Server::builder()
        .add_service(service)
        // Without TCP_NODELAY small answers wait for the peer's delayed ACK (≈ 40 ms).
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .map_err(crate::AdapterError::from)
}
