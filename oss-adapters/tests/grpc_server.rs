//! The gRPC service over a real socket with the generated client: authentication, unary
//! calls, exactly-once keys, and the streaming debit answering in order.

use std::path::Path;
use std::sync::Arc;

use rust_decimal::Decimal;
use tollgate_engine::{AccountKind, Engine, EngineConfig, Identity, Operation, Plans, Request, SystemClock, Target};
use tollgate_oss_adapters::grpc::proto::charging_client::ChargingClient;
use tollgate_oss_adapters::grpc::proto::{self, subscriber::Id};

const TOKEN: &str = "test-token-0123456789abcdef";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    address: String,
    engine: Arc<Engine>,
    dir: std::path::PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(name: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("tollgate-grpc-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut plans = Plans::new();
    plans.load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../tariffs/examples/prepaid-mobile.toml")).expect("plan");
    let engine = Arc::new(Engine::open(EngineConfig::new(&dir), plans, Arc::new(SystemClock)).expect("engine"));
    for (key, operation) in [
        (
            "a",
            Operation::CreateAccount {
                kind: AccountKind::Prepaid,
                currency: "EUR".into(),
                credit_limit: Decimal::ZERO,
                opening_balance: Decimal::new(1000, 2),
            },
        ),
        (
            "s",
            Operation::CreateSubscription {
                subscription: 1,
                plan: "mobile-prepaid-s".into(),
                identities: vec![Identity::Msisdn("491700000001".into())],
            },
        ),
    ] {
        engine.execute(Request { key: Some(key.into()), target: Target::Account(1), operation }).expect("setup");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    runtime.spawn(tollgate_oss_adapters::grpc::server::serve(
        listener,
        Arc::clone(&engine),
        Arc::from(TOKEN),
        std::future::pending(),
    ));
    Fixture { runtime, address, engine, dir }
}

fn subscriber() -> Option<proto::Subscriber> {
    Some(proto::Subscriber { id: Some(Id::Msisdn("491700000001".into())) })
}

fn authorized<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().expect("header"));
    request
}

fn call(key: &str, to: &str, seconds: u64) -> proto::UsageRequest {
    proto::UsageRequest {
        key: key.into(),
        subscriber: subscriber(),
        service: "voice".into(),
        rating_group: 0,
        destination: to.into(),
        start_utc_seconds: 1_772_445_600,
        units: seconds,
    }
}

#[test]
fn unary_calls_are_authenticated_and_exactly_once() {
    let fixture = start("unary");
    fixture.runtime.block_on(async {
        let mut client = ChargingClient::connect(fixture.address.clone()).await.expect("connect");
        let refused = client.debit(tonic::Request::new(call("c1", "4990012345", 60))).await.expect_err("no token");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);

        let first = client.debit(authorized(call("c1", "4990012345", 60))).await.expect("debit").into_inner();
        assert_eq!(
            (first.outcome, first.amount.as_str(), first.repeated),
            (proto::Outcome::Success as i32, "2.49", false)
        );
        let again = client.debit(authorized(call("c1", "4990012345", 60))).await.expect("debit").into_inner();
        assert!(again.repeated);
        assert_eq!(again.balance_after, first.balance_after);

        let price = client.price(authorized(call("", "4990012345", 120))).await.expect("price").into_inner();
        assert_eq!(price.amount, "4.48");

        let top_up =
            proto::TopUpRequest { key: "t1".into(), account: 1, amount: "5.00".into(), reference: "voucher".into() };
        let money = client.top_up(authorized(top_up)).await.expect("top-up").into_inner();
        assert_eq!(money.balance_after, "12.51");

        let session = proto::SessionRequest {
            key: "g1".into(),
            subscriber: subscriber(),
            session: "grpc;1".into(),
            step: proto::Step::Initial as i32,
            units: vec![proto::UnitRequest {
                rating_group: 30,
                has_requested: true,
                requested_units: 1 << 20,
                used_units: 0,
                destination: String::new(),
            }],
        };
        let reply = client.session(authorized(session)).await.expect("session").into_inner();
        assert_eq!(reply.grants[0].granted_units, 1 << 20);

        let balance = client
            .balance(authorized(proto::BalanceRequest { subscriber: subscriber() }))
            .await
            .expect("balance")
            .into_inner();
        assert_eq!((balance.balance.as_str(), balance.reserved.as_str()), ("12.51", "0.10"));
        let missing =
            client.balance(authorized(proto::BalanceRequest { subscriber: None })).await.expect_err("no subscriber");
        assert_eq!(missing.code(), tonic::Code::InvalidArgument);
    });
    drop(fixture.engine.check_invariants().map(|v| assert!(v.is_empty(), "{v:?}")));
}

#[test]
fn the_debit_stream_answers_every_request_in_order() {
    let fixture = start("stream");
    fixture.runtime.block_on(async {
        let mut client = ChargingClient::connect(fixture.address.clone()).await.expect("connect");
        // 300 SMS sent now, inside the SMS bundle's cycle: each is drawn from it once.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
        let requests: Vec<proto::UsageRequest> = (0..300)
            .map(|n| proto::UsageRequest {
                key: format!("sms-{n}"),
                subscriber: subscriber(),
                service: "sms".into(),
                units: 1,
                start_utc_seconds: now,
                ..Default::default()
            })
            .collect();
        let outbound = tokio_stream::iter(requests.clone());
        let mut replies = client.debit_stream(authorized(outbound)).await.expect("stream").into_inner();
        let mut count = 0;
        while let Some(reply) = replies.message().await.expect("reply") {
            assert_eq!(reply.outcome, proto::Outcome::Success as i32, "reply {count}: {reply:?}");
            assert_eq!(reply.allowance_units, 1);
            assert!(!reply.repeated);
            count += 1;
        }
        assert_eq!(count, 300);
        // The same stream again: every answer is the remembered one.
        let mut again =
            client.debit_stream(authorized(tokio_stream::iter(requests))).await.expect("stream").into_inner();
        let mut repeated = 0;
        while let Some(reply) = again.message().await.expect("reply") {
            assert!(reply.repeated);
            repeated += 1;
        }
        assert_eq!(repeated, 300);
    });
    let view = fixture
        .engine
        .execute(Request { key: None, target: Target::Account(1), operation: Operation::BalanceEnquiry })
        .expect("balance");
    let tollgate_engine::Body::Balance(view) = view.body else { panic!("balance") };
    let sms = view.buckets.iter().find(|b| b.kind == "sms-bundle").expect("bundle");
    assert_eq!(sms.remaining, "700", "300 SMS drawn once each");
}
