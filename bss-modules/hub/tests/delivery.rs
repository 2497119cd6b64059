//! The hub end to end over real sockets, on SQLite and PostgreSQL: a receiver is an axum
//! server on 127.0.0.1:0 that checks every delivery's signature as README.md tells a
//! receiver to; customers are created through `tollgate-customers`, so the events are the
//! real ones, published in the change's transaction. Retries, dead letters and re-drives,
//! unsubscription, rollback, a restarted worker and a slow listener beside a fast one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tollgate_customers::{Customers, Principal, CUSTOMER_BASE_PATH, CUSTOMER_EVENTS};
use tollgate_hub::signature::{
    verify, ATTEMPT_HEADER, DEFAULT_TOLERANCE_SECONDS, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use tollgate_hub::{Caller, DeliveryConfig, Hub, HubApi, HubOptions, HubWorker};
use tollgate_store::{store_test, DeliveryState, NewEvent, RetryPolicy, Role, Store};

const CUSTOMERS: HubApi = HubApi { root: CUSTOMER_BASE_PATH, event_types: &CUSTOMER_EVENTS };
/// Attempts before a dead letter in these tests.
const MAX_ATTEMPTS: i64 = 3;
/// How long a test waits for what it expects before failing (not a performance bound).
const PATIENCE: Duration = Duration::from_secs(60);

/// How the receiver answers one delivery.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reply {
    Status(u16),
    /// A status with `Retry-After: 0`.
    RetryAfterZero(u16),
    /// Never answers (the worker's request timeout ends the attempt).
    Hang,
}

/// What the receiver saw of one delivery.
#[derive(Debug, Clone)]
struct Receipt {
    event_id: String,
    attempt: i64,
    body: Value,
    signature_ok: bool,
    reply: Reply,
}

#[derive(Debug)]
struct Receiver {
    secret: Mutex<String>,
    script: Mutex<VecDeque<Reply>>,
    otherwise: Mutex<Reply>,
    got: Mutex<Vec<Receipt>>,
    arrived: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn hook(State(receiver): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    // What a receiver does: verify the signature over the raw bytes, timestamp in tolerance.
    let secret = lock(&receiver.secret).clone();
    let signature_ok = verify(
        &secret,
        &header(TIMESTAMP_HEADER),
        &header(SIGNATURE_HEADER),
        &body,
        Timestamp::now().as_second(),
        DEFAULT_TOLERANCE_SECONDS,
    )
    .is_ok();
    let reply = lock(&receiver.script).pop_front().unwrap_or(*lock(&receiver.otherwise));
    let receipt = Receipt {
        event_id: header(EVENT_ID_HEADER),
        attempt: header(ATTEMPT_HEADER).parse().unwrap_or(0),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        signature_ok,
        reply,
    };
    lock(&receiver.got).push(receipt);
    receiver.arrived.notify_waiters();
    let status = |code: u16| StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match reply {
        Reply::Status(code) => status(code).into_response(),
        Reply::RetryAfterZero(code) => (status(code), [("retry-after", "0")]).into_response(),
        Reply::Hang => std::future::pending().await,
    }
}

impl Receiver {
    /// A receiver listening on 127.0.0.1:0, answering `script` in turn and then
    /// `otherwise`; its callback URL.
    async fn start(script: &[Reply], otherwise: Reply) -> (Arc<Receiver>, String) {
        let receiver = Arc::new(Receiver {
            secret: Mutex::new(String::new()),
            script: Mutex::new(script.iter().copied().collect()),
            otherwise: Mutex::new(otherwise),
            got: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/events?tenant=t1", listener.local_addr().expect("address"));
        let app = axum::Router::new().route("/events", axum::routing::post(hook)).with_state(Arc::clone(&receiver));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn receipts(&self) -> Vec<Receipt> {
        lock(&self.got).clone()
    }

    fn answer(&self, reply: Reply) {
        *lock(&self.otherwise) = reply;
    }

    /// Waits until `done` holds of the receipts.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Receipt]) -> bool) -> Vec<Receipt> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let arrived = self.arrived.notified();
            let receipts = self.receipts();
            if done(&receipts) {
                return receipts;
            }
            assert!(tokio::time::Instant::now() < deadline, "waited {PATIENCE:?} for {what}; got {receipts:#?}");
            let _ = tokio::time::timeout(Duration::from_millis(100), arrived).await;
        }
    }
}

fn admin() -> Caller {
    Caller { actor: "test".into(), role: Role::Admin }
}

/// Registers `callback` for `query` and gives the receiver the listener's secret.
async fn register(store: &Store, receiver: &Receiver, callback: &str, query: Option<&str>) -> String {
    let hub = Hub::new(store.clone(), HubOptions::default());
    let registered = hub
        .register(&CUSTOMERS, &admin(), &json!({ "callback": callback, "query": query }), Timestamp::now())
        .await
        .expect("register");
    *lock(&receiver.secret) = registered["secret"].as_str().expect("the secret, once").to_owned();
    registered["id"].as_str().expect("an id").to_owned()
}

fn config() -> DeliveryConfig {
    let mut config = DeliveryConfig::default();
    config.connect_timeout = Duration::from_secs(1);
    config.request_timeout = Duration::from_secs(1);
    config.retry = RetryPolicy {
        first_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_attempts: MAX_ATTEMPTS,
        lease: Duration::from_secs(3),
    };
    config.poll_interval = Duration::from_millis(20);
    config
}

fn start_worker(store: Store, config: DeliveryConfig) -> JoinHandle<()> {
    let worker = HubWorker::new(store, config).expect("a worker");
    tokio::spawn(async move { worker.run(std::future::pending()).await })
}

async fn create_customer(store: &Store, name: &str) -> String {
    let customers = Customers::new(store.clone());
    let doc = json!({ "name": name, "engagedParty": { "id": "p", "@referredType": "Individual", "name": name } });
    let created = customers.create_customer(&Principal::admin("test"), doc, Timestamp::now()).await.expect("customer");
    created.value["id"].as_str().expect("id").to_owned()
}

async fn deliveries(store: &Store, state: DeliveryState, listener: &str) -> Vec<tollgate_store::DeliveryEntry> {
    store.deliveries(Some(state), Some(listener), 0, 100).await.expect("deliveries").items
}

/// Waits until `listener` has no pending delivery.
async fn settled(store: &Store, listener: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !deliveries(store, DeliveryState::Pending, listener).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "deliveries of {listener} still pending after {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

store_test! {
    async fn a_created_customer_reaches_the_listener_signed(store) {
        let (receiver, url) = Receiver::start(&[], Reply::Status(204)).await;
        let listener = register(&store, &receiver, &url, Some("eventType=CustomerCreateEvent")).await;
        let worker = start_worker(Store::clone(&store), config());
        let id = create_customer(&store, "Ada").await;
        let got = receiver.wait_for("the create event", |r| !r.is_empty()).await;
        let receipt = &got[0];
        assert!(receipt.signature_ok, "the signature verifies with the secret given at registration");
        assert_eq!(receipt.body["eventType"], "CustomerCreateEvent");
        assert_eq!(receipt.body["eventId"], receipt.event_id.as_str(), "the header names the body's event");
        assert_eq!(receipt.body["event"]["customer"]["id"], id.as_str());
        assert_eq!(receipt.body["event"]["customer"]["name"], "Ada");
        assert_eq!(receipt.attempt, 1);
        settled(&store, &listener).await;
        assert_eq!(deliveries(&store, DeliveryState::Done, &listener).await.len(), 1);
        worker.abort();
    }
}

store_test! {
    async fn a_failing_listener_gets_the_event_after_retries_once_delivered(store) {
        let script = [Reply::Status(503), Reply::RetryAfterZero(429)];
        let (receiver, url) = Receiver::start(&script, Reply::Status(200)).await;
        let listener = register(&store, &receiver, &url, None).await;
        let worker = start_worker(Store::clone(&store), config());
        create_customer(&store, "Ada").await;
        let got = receiver.wait_for("three attempts", |r| r.len() >= 3).await;
        let first = got[0].event_id.clone();
        assert!(got.iter().all(|r| r.event_id == first && r.signature_ok), "one event, every attempt signed anew");
        assert_eq!(got.iter().map(|r| r.attempt).collect::<Vec<_>>(), [1, 2, 3]);
        settled(&store, &listener).await;
        // Delivered once it succeeded: the next event is the next thing the listener sees.
        create_customer(&store, "Bob").await;
        let got = receiver.wait_for("the next event", |r| r.len() >= 4).await;
        assert_ne!(got[3].event_id, first);
        settled(&store, &listener).await;
        assert_eq!(receiver.receipts().len(), 4, "no attempt after the success");
        assert_eq!(deliveries(&store, DeliveryState::Done, &listener).await.len(), 2);
        worker.abort();
    }
}

store_test! {
    async fn an_always_failing_listener_is_dead_lettered_then_redriven(store) {
        let (receiver, url) = Receiver::start(&[], Reply::Status(500)).await;
        let listener = register(&store, &receiver, &url, None).await;
        let worker = start_worker(Store::clone(&store), config());
        create_customer(&store, "Ada").await;
        settled(&store, &listener).await;
        let dead = deliveries(&store, DeliveryState::Failed, &listener).await;
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].attempts, dead[0].last_error.as_deref()), (MAX_ATTEMPTS, Some("HTTP 500")));
        assert_eq!(receiver.receipts().len(), usize::try_from(MAX_ATTEMPTS).expect("small"));

        // A 4xx other than 408 and 429 is not retried.
        receiver.answer(Reply::Status(410));
        create_customer(&store, "Bob").await;
        settled(&store, &listener).await;
        let dead = deliveries(&store, DeliveryState::Failed, &listener).await;
        assert_eq!(dead.len(), 2);
        assert_eq!((dead[1].attempts, dead[1].last_error.as_deref()), (1, Some("HTTP 410 (not retried)")));

        // The listener recovers; an operator re-drives the first dead letter.
        receiver.answer(Reply::Status(200));
        let hub = Hub::new(Store::clone(&store), HubOptions::default());
        hub.redrive(&admin(), dead[0].id, Timestamp::now()).await.expect("redrive");
        let got = receiver.wait_for("the re-driven event", |r| r.len() > usize::try_from(MAX_ATTEMPTS).expect("small") + 1).await;
        let last = got.last().expect("a receipt");
        assert_eq!((last.event_id.as_str(), last.reply, last.signature_ok), (dead[0].event_id.as_str(), Reply::Status(200), true));
        settled(&store, &listener).await;
        assert_eq!(deliveries(&store, DeliveryState::Done, &listener).await.len(), 1);
        assert_eq!(deliveries(&store, DeliveryState::Failed, &listener).await.len(), 1, "the 410 stays a dead letter");
        worker.abort();
    }
}

store_test! {
    async fn an_unsubscribed_listener_receives_nothing_more(store) {
        let (gone, gone_url) = Receiver::start(&[], Reply::Status(200)).await;
        let (kept, kept_url) = Receiver::start(&[], Reply::Status(200)).await;
        let gone_id = register(&store, &gone, &gone_url, None).await;
        let kept_id = register(&store, &kept, &kept_url, None).await;
        let worker = start_worker(Store::clone(&store), config());
        create_customer(&store, "Ada").await;
        gone.wait_for("the first event", |r| r.len() == 1).await;
        kept.wait_for("the first event", |r| r.len() == 1).await;
        let hub = Hub::new(Store::clone(&store), HubOptions::default());
        hub.unregister(&CUSTOMERS, &admin(), &gone_id, Timestamp::now()).await.expect("unregister");
        assert!(hub.get(&CUSTOMERS, &admin(), &gone_id).await.is_err());
        create_customer(&store, "Bob").await;
        kept.wait_for("the second event", |r| r.len() == 2).await;
        settled(&store, &kept_id).await;
        assert_eq!(gone.receipts().len(), 1);
        assert!(store.deliveries(None, Some(&gone_id), 0, 10).await.expect("deliveries").items.is_empty());
        worker.abort();
    }
}

store_test! {
    async fn a_rolled_back_change_publishes_nothing(store) {
        let (receiver, url) = Receiver::start(&[], Reply::Status(200)).await;
        let listener = register(&store, &receiver, &url, None).await;
        let worker = start_worker(Store::clone(&store), config());
        let entity = json!({ "id": "c-rolled-back", "name": "Nobody" });
        let event = NewEvent { api: CUSTOMER_BASE_PATH, event_type: "CustomerCreateEvent", entity_type: "customer", entity_id: "c-rolled-back", entity: &entity };
        let mut tx = store.begin().await.expect("begin");
        assert_eq!(tx.publish_event(event, Timestamp::now()).await.expect("publish").deliveries, 1);
        tx.rollback().await.expect("rollback");
        // A refused change (an empty name) rolls back its event too.
        let customers = Customers::new(Store::clone(&store));
        assert!(customers.create_customer(&Principal::admin("t"), json!({ "name": "" }), Timestamp::now()).await.is_err());
        let id = create_customer(&store, "Ada").await;
        let got = receiver.wait_for("the committed event", |r| !r.is_empty()).await;
        settled(&store, &listener).await;
        assert_eq!(receiver.receipts().len(), 1);
        assert_eq!(got[0].body["event"]["customer"]["id"], id.as_str());
        worker.abort();
    }
}

store_test! {
    async fn a_restarted_worker_resumes_pending_and_abandoned_deliveries(store) {
        let (receiver, url) = Receiver::start(&[Reply::Hang], Reply::Status(200)).await;
        let listener = register(&store, &receiver, &url, None).await;
        // The first worker takes the first event and stops while the listener hangs.
        let first_worker = start_worker(Store::clone(&store), config());
        let ada = create_customer(&store, "Ada").await;
        receiver.wait_for("the first attempt", |r| r.len() == 1).await;
        first_worker.abort();
        let _ = first_worker.await;
        // An event published while no worker runs.
        let bob = create_customer(&store, "Bob").await;
        // A new worker, on a second connection pool to the same database (a restart).
        let second_store = store.open_again().await;
        let second_worker = start_worker(second_store, config());
        let got = receiver.wait_for("both events delivered", |r| {
            [&ada, &bob].iter().all(|id| r.iter().any(|x| x.reply == Reply::Status(200) && x.body["event"]["customer"]["id"] == id.as_str()))
        })
        .await;
        let retried = got.iter().filter(|r| r.body["event"]["customer"]["id"] == ada.as_str()).collect::<Vec<_>>();
        assert_eq!(retried.iter().map(|r| r.attempt).collect::<Vec<_>>(), [1, 2], "claimed again after its lease");
        assert!(got.iter().all(|r| r.signature_ok));
        settled(&store, &listener).await;
        assert_eq!(deliveries(&store, DeliveryState::Done, &listener).await.len(), 2);
        second_worker.abort();
    }
}

store_test! {
    async fn a_slow_listener_does_not_hold_up_another(store) {
        let (slow, slow_url) = Receiver::start(&[], Reply::Hang).await;
        let (fast, fast_url) = Receiver::start(&[], Reply::Status(200)).await;
        register(&store, &slow, &slow_url, None).await;
        let fast_id = register(&store, &fast, &fast_url, None).await;
        let mut config = config();
        config.concurrency = 4;
        config.per_listener = 2;
        config.request_timeout = Duration::from_secs(30);
        config.retry.lease = Duration::from_secs(40);
        let worker = start_worker(Store::clone(&store), config);
        for name in ["Ada", "Bob", "Cyd", "Dee", "Eve"] {
            create_customer(&store, name).await;
        }
        // The fast listener gets all five while the slow one holds its two slots.
        slow.wait_for("two hanging attempts", |r| r.len() == 2).await;
        fast.wait_for("five events", |r| r.len() == 5).await;
        settled(&store, &fast_id).await;
        assert!(fast.receipts().iter().all(|r| r.signature_ok));
        assert_eq!(slow.receipts().len(), 2, "at most per_listener attempts to the slow listener at once");
        worker.abort();
    }
}
