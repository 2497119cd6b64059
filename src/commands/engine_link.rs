//! The BSS's link to the charging engine. [`EngineLink`] is the store's `OutboxHandler`
//! that applies the engine operations `tollgate-customers` and `tollgate-import` record in
//! the outbox (a billing account created, its credit limit, kind or state changed, a top-up
//! or an adjustment, a subscription created under its identities or suspended) through the engine's API, each under its outbox row's idempotency key as
//! the engine request key, and hands the engine's answer to `Customers::settle` (a balance
//! request completed or failed, a refused change undone). A retry (after a failed
//! attempt, a crash, a lease that ran out) repeats the key, and the engine answers a
//! repeated key with its stored answer without changing anything: the operation takes
//! effect once. [`EnginePortLink`] is the `EnginePort` the API uses: the engine's account
//! view, and a just-committed row applied at once by an `OutboxWorker` over the same link.
//! `tollgate serve` runs a worker whenever it has a store. The same worker hands a
//! threshold crossing's short message (outbox kind `notification.sms`) to the SMS gateway
//! (`serve --sms-gateway`) under its row's key as the gateway's request id.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rust_decimal::Decimal;
use tollgate_activation::{ActivationOutcome, SmsGateway, SmsMessage};
use tollgate_customers::{
    AccountType, AllowanceBucket, BoxFuture, Customers, EngineAccount, EngineAnswer, EngineOperation, EnginePort,
    EngineUnavailable, MoneyBucket, Settled, SMS_OUTBOX_KIND,
};
use tollgate_engine::{AccountKind, Body, Engine, Identity, Operation, Outcome, Request, Target};
use tollgate_store::{ApplyError, OutboxHandler, OutboxItem, OutboxWorker, RetryPolicy, Store};

/// How long a read of the engine may take before the caller is told it is unavailable.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long applying a row at once may take; past it the row is the worker's.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Applies outbox rows to the engine (and hands threshold messages to the SMS gateway).
#[derive(Clone)]
pub(crate) struct EngineLink {
    engine: Arc<Engine>,
    customers: Customers,
    sms: Option<Arc<SmsGateway>>,
}

impl std::fmt::Debug for EngineLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineLink").finish_non_exhaustive()
    }
}

impl EngineLink {
    pub(crate) fn new(engine: Arc<Engine>, store: Store) -> EngineLink {
        EngineLink { engine, customers: Customers::new(store), sms: None }
    }

    /// Short messages (outbox kind [`SMS_OUTBOX_KIND`]) go through `gateway`; without
    /// one they wait (retried, then failed, as the outbox's policy says).
    pub(crate) fn with_sms(self, gateway: Option<Arc<SmsGateway>>) -> EngineLink {
        EngineLink { sms: gateway, ..self }
    }

    /// The messages of the notifications the engine's answers send (a refused prepaid
    /// renewal's).
    pub(crate) fn with_templates(self, templates: tollgate_customers::Templates) -> EngineLink {
        EngineLink { customers: self.customers.with_templates(templates), ..self }
    }
}

/// Sends a threshold crossing's short message: done once the gateway took it.
async fn send_sms(gateway: Option<&SmsGateway>, item: &OutboxItem) -> Result<(), ApplyError> {
    let Some(gateway) = gateway else {
        return Err(ApplyError::Retry("no SMS gateway configured (tollgate serve --sms-gateway)".to_owned()));
    };
    let payload = &item.payload;
    let to: Vec<&str> = payload["to"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_str).collect();
    let text = payload["text"].as_str().unwrap_or_default();
    let message = SmsMessage::new(&item.idempotency_key, &to, text).map_err(|err| ApplyError::Fail(err.to_string()))?;
    match gateway.send(&message).await {
        ActivationOutcome::Done { reference } => {
            tracing::debug!(key = %item.idempotency_key, %reference, "sms taken by the gateway");
            Ok(())
        }
        ActivationOutcome::Transient { reason, .. } => Err(ApplyError::Retry(format!("SMS gateway: {reason}"))),
        ActivationOutcome::Permanent { code, reason } => {
            Err(ApplyError::Fail(format!("SMS gateway refused the message: {code}: {reason}")))
        }
    }
}

fn kind_of(account_type: AccountType) -> AccountKind {
    match account_type {
        AccountType::Prepaid => AccountKind::Prepaid,
        AccountType::Postpaid => AccountKind::Postpaid,
        AccountType::Hybrid => AccountKind::Hybrid,
    }
}

/// The engine request an outbox row stands for, keyed by the row's idempotency key.
pub(crate) fn request(item: &OutboxItem) -> Result<Request, String> {
    let key = Some(item.idempotency_key.clone());
    let operation = EngineOperation::from_outbox(item)?;
    let account = operation.account();
    let operation = match operation {
        EngineOperation::SuspendSubscription { subscription, reason } => {
            let operation = Operation::Suspend { reason };
            return Ok(Request { key, target: Target::Subscription(subscription), operation });
        }
        EngineOperation::CreateSubscription { subscription, plan, identities, .. } => {
            let identities = identities
                .iter()
                .map(|text| {
                    Identity::parse(text).ok_or_else(|| format!("payload.identities: {text:?} is not an identity"))
                })
                .collect::<Result<Vec<_>, String>>()?;
            Operation::CreateSubscription { subscription, plan, identities }
        }
        EngineOperation::CreateAccount { account_type, currency, credit_limit, .. } => Operation::CreateAccount {
            kind: kind_of(account_type),
            currency,
            credit_limit,
            opening_balance: Decimal::ZERO,
        },
        EngineOperation::SetCreditLimit { credit_limit, .. } => Operation::SetCreditLimit { credit_limit },
        EngineOperation::TopUp { amount, reference, .. } => Operation::TopUp { amount, reference },
        EngineOperation::Adjust { amount, reason, .. } => Operation::Adjust { amount, reason },
        EngineOperation::BillRelease { amount, invoice, .. } => {
            Operation::Adjust { amount, reason: format!("invoice {invoice}: billed usage moved to the receivable") }
        }
        EngineOperation::RenewalFee { amount, statement, .. } => {
            Operation::Adjust { amount: -amount, reason: format!("statement {statement}: fees at renewal") }
        }
        EngineOperation::StatementCredit { amount, statement, .. } => {
            Operation::Adjust { amount, reason: format!("statement {statement}: credit to the prepaid balance") }
        }
        EngineOperation::SuspendAccount { reason, .. } => Operation::SuspendAccount { reason },
        EngineOperation::ResumeAccount { .. } => Operation::ResumeAccount,
        EngineOperation::CloseAccount { settle_reason, .. } => Operation::CloseAccount { settle_reason },
        EngineOperation::ChangeAccountKind { account_type, credit_limit, .. } => {
            Operation::ChangeAccountKind { kind: kind_of(account_type), credit_limit }
        }
    };
    let account = account.ok_or_else(|| format!("{}: addressed to no account", item.kind))?;
    Ok(Request { key, target: Target::Account(account), operation })
}

/// Why the engine refused, in words for the BSS's records.
fn refusal(outcome: &Outcome, account: &Target) -> String {
    match outcome {
        Outcome::Invalid(text) | Outcome::ServiceDenied(text) => text.clone(),
        Outcome::CreditLimitReached => "insufficient credit: more than the account may spend".to_owned(),
        Outcome::UnknownAccount => format!("the engine has no account {account:?}"),
        other => format!("{other:?}"),
    }
}

impl EngineLink {
    async fn submit(&self, request: Request) -> Result<tollgate_engine::Answer, ApplyError> {
        ask(&self.engine, request).await.map_err(ApplyError::Retry)
    }

    /// After `AlreadyExists`: whether what the engine has is what `create` describes.
    async fn existing_matches(&self, item: &OutboxItem, create: &Request) -> Result<(), ApplyError> {
        match &create.operation {
            Operation::CreateAccount { .. } => self.existing_account_matches(item, create).await,
            Operation::CreateSubscription { .. } => self.existing_subscription_matches(item, create).await,
            _ => Err(ApplyError::Fail("not a creation".into())),
        }
    }

    /// Whether the engine's account is the one `create` describes (same kind and currency).
    async fn existing_account_matches(&self, item: &OutboxItem, create: &Request) -> Result<(), ApplyError> {
        let Operation::CreateAccount { kind, currency, .. } = &create.operation else {
            return Err(ApplyError::Fail("not an account creation".into()));
        };
        let enquiry = Request { key: None, target: create.target.clone(), operation: Operation::BalanceEnquiry };
        match self.submit(enquiry).await?.body {
            Body::Balance(view) if view.kind == *kind && view.currency == *currency => {
                tracing::warn!(key = %item.idempotency_key, "engine link: the engine account already existed");
                Ok(())
            }
            body => Err(ApplyError::Fail(format!(
                "engine account {:?} exists but is not the one this billing account describes ({kind:?}, {currency}): {body:?}",
                create.target
            ))),
        }
    }

    /// Whether every identity `create` names already belongs to a subscription of the
    /// account it names (an earlier attempt whose key the engine's window has since
    /// forgotten); otherwise another subscription holds one, and an operator must look.
    async fn existing_subscription_matches(&self, item: &OutboxItem, create: &Request) -> Result<(), ApplyError> {
        let (Operation::CreateSubscription { identities, .. }, Target::Account(account)) =
            (&create.operation, &create.target)
        else {
            return Err(ApplyError::Fail("not a subscription creation".into()));
        };
        identities_held_by(&self.engine, identities, *account).await?;
        tracing::warn!(key = %item.idempotency_key, "engine link: the engine subscription already existed");
        Ok(())
    }
}

/// Sends `request` to the engine and waits for its answer; `Err` when the engine could not
/// answer (stopping, a failed shard).
pub(crate) async fn ask(engine: &Engine, request: Request) -> Result<tollgate_engine::Answer, String> {
    let (reply, answered) = tokio::sync::oneshot::channel();
    engine.submit(request, Box::new(move |answer| drop(reply.send(answer))));
    match answered.await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => Err(format!("the engine is unavailable: {error}")),
        Err(_) => Err("the engine dropped the request".into()),
    }
}

/// Whether every one of `identities` belongs to a subscription of engine account
/// `account`: `Fail` naming the first that another account holds, `Retry` when the engine
/// cannot answer.
pub(crate) async fn identities_held_by(
    engine: &Engine,
    identities: &[Identity],
    account: u64,
) -> Result<(), ApplyError> {
    for identity in identities {
        let enquiry =
            Request { key: None, target: Target::Subscriber(identity.clone()), operation: Operation::BalanceEnquiry };
        match ask(engine, enquiry).await.map_err(ApplyError::Retry)?.body {
            Body::Balance(view) if view.account == account => {}
            body => {
                return Err(ApplyError::Fail(format!(
                    "identity {} is held in the engine by another account than {account}: {body:?}",
                    identity.key()
                )))
            }
        }
    }
    Ok(())
}

impl OutboxHandler for EngineLink {
    async fn apply(&self, item: &OutboxItem) -> Result<(), ApplyError> {
        if item.kind == SMS_OUTBOX_KIND {
            return send_sms(self.sms.as_deref(), item).await;
        }
        let request = request(item).map_err(ApplyError::Fail)?;
        let creating =
            matches!(request.operation, Operation::CreateAccount { .. } | Operation::CreateSubscription { .. });
        let expected = request.clone();
        let answer = self.submit(request).await?;
        let settled = match answer.outcome {
            Outcome::Success => {
                tracing::debug!(key = %item.idempotency_key, kind = %item.kind, repeated = answer.repeated, "engine link: applied");
                let balance_after = match answer.body {
                    Body::Money { balance_after } => Some(balance_after),
                    _ => None,
                };
                EngineAnswer::Applied { balance_after }
            }
            // The account exists under another key: an earlier attempt whose key the
            // engine's window has forgotten (the same account: done), or another account
            // at that id (made by hand, or a BSS database started afresh on old engine
            // data: the two disagree and an operator must look).
            Outcome::AlreadyExists if creating => return self.existing_matches(item, &expected).await,
            other => EngineAnswer::Refused { reason: refusal(&other, &expected.target) },
        };
        match self.customers.settle(item, &settled, Timestamp::now()).await {
            Ok(Settled::Recorded) => Ok(()),
            Ok(Settled::Reverted) => {
                tracing::warn!(key = %item.idempotency_key, kind = %item.kind, answer = ?settled, "engine link: the engine refused; the billing account was put back");
                Ok(())
            }
            Ok(Settled::Superseded(why)) => {
                tracing::warn!(key = %item.idempotency_key, kind = %item.kind, %why, "engine link: the engine refused a change a later one replaces");
                Ok(())
            }
            Ok(_) => Err(ApplyError::Fail(format!("the engine refused {}: {settled:?}", item.kind))),
            // The engine's answer is kept under the key: the retry gets it again.
            Err(error) => Err(ApplyError::Retry(format!("recording the engine's answer failed: {error}"))),
        }
    }
}

/// The engine as the API and `Customers` reach it: account views, and rows applied at once.
pub(crate) struct EnginePortLink {
    engine: Arc<Engine>,
    worker: OutboxWorker<EngineLink>,
}

impl std::fmt::Debug for EnginePortLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnginePortLink").finish_non_exhaustive()
    }
}

impl EnginePortLink {
    pub(crate) fn new(engine: Arc<Engine>, store: Store, policy: RetryPolicy) -> EnginePortLink {
        let worker = OutboxWorker::new(store.clone(), EngineLink::new(Arc::clone(&engine), store)).with_policy(policy);
        EnginePortLink { engine, worker }
    }
}

/// A money bucket's amount as the engine writes it (decimal text); never guessed at.
fn money(bucket: u32, field: &str, text: &str) -> Result<Decimal, EngineUnavailable> {
    text.parse().map_err(|_| EngineUnavailable(format!("money bucket {bucket}: {field} {text:?} is not a decimal")))
}

/// The BSS's view of an engine account.
fn engine_account(view: tollgate_engine::AccountView) -> Result<EngineAccount, EngineUnavailable> {
    let balance = view.balance;
    let account_type = match balance.kind {
        AccountKind::Prepaid => AccountType::Prepaid,
        AccountKind::Postpaid => AccountType::Postpaid,
        AccountKind::Hybrid => AccountType::Hybrid,
    };
    let money_buckets = balance
        .buckets
        .iter()
        .filter(|bucket| bucket.kind == "money")
        .map(|bucket| {
            Ok(MoneyBucket {
                id: bucket.id,
                balance: money(bucket.id, "remaining", &bucket.remaining)?,
                reserved: money(bucket.id, "reserved", &bucket.reserved)?,
                valid_from_s: bucket.valid_from_at,
                valid_until_s: bucket.valid_until_at,
            })
        })
        .collect::<Result<_, EngineUnavailable>>()?;
    let allowances = view
        .allowances
        .into_iter()
        .map(|bucket| AllowanceBucket {
            id: bucket.bucket,
            subscription: bucket.subscription,
            name: bucket.name,
            service: bucket.service,
            unit: bucket.unit,
            granted: bucket.granted,
            remaining: bucket.remaining,
            reserved: bucket.reserved,
            valid_from_s: bucket.valid_from_s,
            valid_until_s: bucket.valid_until_s,
        })
        .collect();
    Ok(EngineAccount {
        account_type,
        currency: balance.currency,
        balance: balance.balance,
        available: balance.available,
        reserved: balance.reserved,
        credit_limit: balance.credit_limit,
        closed: view.closed_at.is_some(),
        suspended: view.suspended_at.is_some(),
        live_subscriptions: view.live_subscriptions,
        money: money_buckets,
        allowances,
    })
}

impl EnginePort for EnginePortLink {
    fn account(&self, account: u64) -> BoxFuture<'_, Result<Option<EngineAccount>, EngineUnavailable>> {
        Box::pin(async move {
            let engine = Arc::clone(&self.engine);
            let read = tokio::task::spawn_blocking(move || engine.account_view(account));
            match tokio::time::timeout(READ_TIMEOUT, read).await {
                Ok(Ok(Ok(view))) => view.map(engine_account).transpose(),
                Ok(Ok(Err(error))) => Err(EngineUnavailable(error.to_string())),
                Ok(Err(_)) => Err(EngineUnavailable("the read was abandoned".into())),
                Err(_) => Err(EngineUnavailable(format!("no answer within {READ_TIMEOUT:?}"))),
            }
        })
    }

    fn apply_now(&self, outbox_id: i64) -> BoxFuture<'_, Result<(), EngineUnavailable>> {
        Box::pin(async move {
            match tokio::time::timeout(APPLY_TIMEOUT, self.worker.apply_now(outbox_id, Timestamp::now())).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(EngineUnavailable(error.to_string())),
                Err(_) => Err(EngineUnavailable(format!("not applied within {APPLY_TIMEOUT:?}; the worker will"))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use jiff::Timestamp;
    use serde_json::json;
    use tollgate_customers::{Customers, Principal};
    use tollgate_engine::{Body, EngineConfig, Plans, SystemClock};
    use tollgate_store::{OutboxWorker, RetryPolicy, Store};

    use super::*;

    /// Fails its first attempt (as a crash between the commit and the engine call would
    /// leave it), then applies through the real link.
    struct FlakyLink {
        inner: EngineLink,
        attempts: AtomicUsize,
    }

    impl OutboxHandler for FlakyLink {
        async fn apply(&self, item: &OutboxItem) -> Result<(), ApplyError> {
            let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
            if attempt == 0 {
                // The engine got the request, but the answer was lost.
                self.inner.apply(item).await?;
                return Err(ApplyError::Retry("the answer was lost".into()));
            }
            self.inner.apply(item).await
        }
    }

    fn balance(engine: &Engine, account: u64) -> Option<tollgate_engine::BalanceView> {
        let request = Request { key: None, target: Target::Account(account), operation: Operation::BalanceEnquiry };
        match engine.execute(request).expect("engine") {
            answer if answer.outcome == Outcome::Success => match answer.body {
                Body::Balance(view) => Some(view),
                _ => None,
            },
            _ => None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_outbox_row_creates_the_engine_account_once_and_sets_its_credit_limit() {
        let dir = std::env::temp_dir().join(format!("tollgate-engine-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let engine = Arc::new(
            Engine::open(EngineConfig::new(dir.join("engine")), Plans::new(), Arc::new(SystemClock)).expect("engine"),
        );
        let store = Store::open(&dir.join("bss.sqlite3").display().to_string()).await.expect("store");
        let customers = Customers::new(store.clone());
        let admin = Principal::admin("test");
        let now = Timestamp::now();
        let customer = customers
            .create_customer(
                &admin,
                json!({"name": "Acme", "engagedParty": {"id": "1", "@referredType": "Organization"}}),
                now,
            )
            .await
            .expect("customer");
        let doc = json!({
            "name": "HQ",
            "creditLimit": {"unit": "EUR", "value": "250.25"},
            "relatedParty": [{"id": customer.value["id"], "@referredType": "Customer"}],
        });
        let created = customers.create_account(&admin, doc, now).await.expect("account");
        let account = created.value["engineAccountId"].as_u64().expect("engine id");
        let id = created.value["id"].as_str().expect("id").to_owned();

        let policy = RetryPolicy { first_delay: Duration::ZERO, ..RetryPolicy::default() };
        let link =
            FlakyLink { inner: EngineLink::new(Arc::clone(&engine), store.clone()), attempts: AtomicUsize::new(0) };
        let worker = OutboxWorker::new(store.clone(), link).with_policy(policy);
        let first = worker.run_once(Timestamp::now()).await.expect("pass");
        assert_eq!((first.claimed, first.retried), (1, 1));
        let second = worker.run_once(Timestamp::now()).await.expect("pass");
        assert_eq!((second.claimed, second.done), (1, 1));
        assert_eq!(worker.handler().attempts.load(Ordering::SeqCst), 2);
        let view = balance(&engine, account).expect("the engine has the account");
        assert_eq!((view.currency.as_str(), view.credit_limit.to_string().as_str()), ("EUR", "250.25"));
        // The retry was answered from the engine's store of keys: the same request again
        // is a repeat that changes nothing.
        let again = Request {
            key: Some(tollgate_customers::idempotency_key(&id, 1, "create")),
            target: Target::Account(account),
            operation: Operation::CreateAccount {
                kind: AccountKind::Postpaid,
                currency: "EUR".into(),
                credit_limit: view.credit_limit,
                opening_balance: rust_decimal::Decimal::ZERO,
            },
        };
        let answer = engine.execute(again).expect("engine");
        assert_eq!((answer.outcome, answer.repeated), (Outcome::Success, true));

        let patch = json!({"creditLimit": {"unit": "EUR", "value": 900}});
        customers.patch_account(&admin, &id, &patch, created.version, now).await.expect("patch");
        let pass = worker.run_once(Timestamp::now()).await.expect("pass");
        assert_eq!(pass.done, 1);
        assert_eq!(balance(&engine, account).expect("account").credit_limit.to_string(), "900");
        assert_eq!(store.outbox_counts().await.expect("counts").done, 2);

        // An engine account already at the next id, in another currency (made by hand):
        // the BSS's row fails for good instead of pretending the engine has its account.
        let squatter = account + 1;
        let by_hand = Request {
            key: Some("by-hand".into()),
            target: Target::Account(squatter),
            operation: Operation::CreateAccount {
                kind: AccountKind::Prepaid,
                currency: "USD".into(),
                credit_limit: rust_decimal::Decimal::ZERO,
                opening_balance: rust_decimal::Decimal::ZERO,
            },
        };
        assert_eq!(engine.execute(by_hand).expect("engine").outcome, Outcome::Success);
        let doc = json!({
            "name": "second",
            "creditLimit": {"unit": "EUR", "value": 1},
            "relatedParty": [{"id": customer.value["id"], "@referredType": "Customer"}],
        });
        let second = customers.create_account(&admin, doc, now).await.expect("account");
        assert_eq!(second.value["engineAccountId"].as_u64(), Some(squatter));
        let pass = worker.run_once(Timestamp::now()).await.expect("pass");
        assert_eq!(pass.failed, 1);
        drop(worker);
        if let Ok(engine) = Arc::try_unwrap(engine) {
            engine.shutdown().expect("shutdown");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn balance_requests_and_account_lifecycle_reach_the_engine_through_the_link() {
        let dir = std::env::temp_dir().join(format!("tollgate-engine-link-prepay-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let engine = Arc::new(
            Engine::open(EngineConfig::new(dir.join("engine")), Plans::new(), Arc::new(SystemClock)).expect("engine"),
        );
        let store = Store::open(&dir.join("bss.sqlite3").display().to_string()).await.expect("store");
        let policy = RetryPolicy { first_delay: Duration::ZERO, ..RetryPolicy::default() };
        let port: Arc<dyn EnginePort> = Arc::new(EnginePortLink::new(Arc::clone(&engine), store.clone(), policy));
        let customers = Customers::new(store.clone()).with_engine(Arc::clone(&port));
        let offline = Customers::new(store.clone());
        let worker =
            OutboxWorker::new(store.clone(), EngineLink::new(Arc::clone(&engine), store.clone())).with_policy(policy);
        let admin = Principal::admin("test");
        let now = Timestamp::now();
        let customer = json!({"name": "Ada", "engagedParty": {"id": "1", "@referredType": "Individual"}});
        let customer = customers.create_customer(&admin, customer, now).await.expect("customer");
        let doc = json!({
            "name": "phone",
            "accountType": "prepaid",
            "creditLimit": {"unit": "EUR", "value": 0},
            "relatedParty": [{"id": customer.value["id"], "@referredType": "Customer"}],
        });
        let created = customers.create_account(&admin, doc, now).await.expect("account");
        let (id, account) = (
            created.value["id"].as_str().expect("id").to_owned(),
            created.value["engineAccountId"].as_u64().expect("id"),
        );
        assert_eq!(worker.run_once(Timestamp::now()).await.expect("pass").done, 1);
        let view = |engine: &Engine| engine.account_view(account).expect("view").expect("the account");

        // A top-up applied at once under its key; its repeat applies nothing.
        let topup =
            json!({"id": "t-1", "partyAccount": {"id": id}, "amount": {"amount": "7.25", "units": "EUR"}}).to_string();
        let kind = tollgate_store::BalanceActionKind::TopUp;
        let made = customers.request_balance_action(&admin, kind, topup.as_bytes(), now).await.expect("top-up");
        assert_eq!((&made.doc["status"], &made.doc["balanceAfter"]["amount"]), (&json!("completed"), &json!(7.25)));
        let again = customers.request_balance_action(&admin, kind, topup.as_bytes(), now).await.expect("repeat");
        assert_eq!((again.created, view(&engine).balance.balance.to_string()), (false, "7.25".to_owned()));
        let balance = customers.accumulated_balance(&admin, &id).await.expect("view");
        assert_eq!(balance["totalBalance"], json!({"amount": 7.25, "units": "EUR"}));

        // Suspended through the outbox: the engine's account is suspended.
        let suspended = customers
            .set_account_state(&admin, &id, tollgate_customers::AccountState::Suspended, None, now)
            .await
            .expect("suspend");
        worker.run_once(Timestamp::now()).await.expect("pass");
        assert!(view(&engine).suspended_at.is_some());

        // A close recorded where the engine could not be asked: the engine refuses it
        // (money is left), and the billing account is Suspended again, audited.
        let closed = offline
            .patch_account(&admin, &id, &json!({"state": "Closed"}), suspended.version, now)
            .await
            .expect("recorded");
        assert_eq!(closed.value["state"], "Closed");
        assert_eq!(worker.run_once(Timestamp::now()).await.expect("pass").done, 1);
        assert!(view(&engine).closed_at.is_none());
        let back = customers.get_account(&admin, &id).await.expect("account");
        assert_eq!((back.value["state"].as_str(), back.version.get()), (Some("Suspended"), closed.version.get() + 1));
        let trail = store.audit_entries(Some(("BillingAccount", &id)), 0, 100).await.expect("audit");
        let last = trail.last().expect("an entry");
        assert_eq!((last.actor.as_str(), last.action.as_str()), ("engine", "engine-refused"));

        // Settled by an adjustment, then closed for good in the engine too.
        let adjust = json!({"id": "a-1", "partyAccount": {"id": id}, "amount": {"amount": "-7.25", "units": "EUR"}, "reason": "refund"}).to_string();
        let adjusted = customers
            .request_balance_action(&admin, tollgate_store::BalanceActionKind::Adjust, adjust.as_bytes(), now)
            .await
            .expect("adjust");
        assert_eq!(adjusted.doc["balanceAfter"]["amount"], json!(0));
        customers
            .set_account_state(&admin, &id, tollgate_customers::AccountState::Closed, None, now)
            .await
            .expect("close");
        worker.run_once(Timestamp::now()).await.expect("pass");
        assert!(view(&engine).closed_at.is_some());
        assert_eq!(store.outbox_counts().await.expect("counts").failed, 0);
        drop((worker, customers, port));
        if let Ok(engine) = Arc::try_unwrap(engine) {
            engine.shutdown().expect("shutdown");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An engine subscription made under another key (an attempt whose key the engine
    /// forgot): the outbox row counts as applied when its identities are the account's,
    /// and fails for good when another account holds one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_existing_engine_subscription_counts_only_when_its_identities_are_the_accounts() {
        let dir = std::env::temp_dir().join(format!("tollgate-engine-link-subscription-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let plans = crate::commands::engine_setup::EngineArgs::with_data_dir(&dir).load_plans().expect("plans");
        let engine = Arc::new(
            Engine::open(EngineConfig::new(dir.join("engine")), plans, Arc::new(SystemClock)).expect("engine"),
        );
        let zero = rust_decimal::Decimal::ZERO;
        for account in [1u64, 2] {
            let create = Request {
                key: Some(format!("account-{account}")),
                target: Target::Account(account),
                operation: Operation::CreateAccount {
                    kind: AccountKind::Prepaid,
                    currency: "EUR".into(),
                    credit_limit: zero,
                    opening_balance: zero,
                },
            };
            assert_eq!(engine.execute(create).expect("engine").outcome, Outcome::Success);
        }
        let by_hand = Request {
            key: Some("by-hand".into()),
            target: Target::Account(1),
            operation: Operation::CreateSubscription {
                subscription: 10,
                plan: "mobile-prepaid-s".into(),
                identities: vec![Identity::Msisdn("4915001".into())],
            },
        };
        assert_eq!(engine.execute(by_hand).expect("engine").outcome, Outcome::Success);
        let item = |key: &str, account: u64, subscription: u64, msisdn: &str| OutboxItem {
            id: 1,
            idempotency_key: key.into(),
            kind: tollgate_customers::CREATE_SUBSCRIPTION.into(),
            ordering_key: None,
            payload: EngineOperation::CreateSubscription {
                account,
                subscription,
                plan: "mobile-prepaid-s".into(),
                identities: vec![format!("msisdn:{msisdn}")],
            }
            .payload(),
            attempt: 1,
            created_at: Timestamp::now(),
        };
        let store = Store::open(&dir.join("bss.sqlite3").display().to_string()).await.expect("store");
        let link = EngineLink::new(Arc::clone(&engine), store);
        assert_eq!(link.apply(&item("k1", 1, 10, "4915001")).await, Ok(()), "the same subscription");
        assert!(
            matches!(link.apply(&item("k2", 2, 11, "4915001")).await, Err(ApplyError::Fail(_))),
            "another account holds the identity"
        );
        assert_eq!(link.apply(&item("k3", 2, 12, "4915002")).await, Ok(()));
        let view = Request {
            key: None,
            target: Target::Subscriber(Identity::Msisdn("4915002".into())),
            operation: Operation::BalanceEnquiry,
        };
        match engine.execute(view).expect("engine").body {
            Body::Balance(view) => assert_eq!(view.account, 2),
            other => panic!("no balance view: {other:?}"),
        }
        drop(link);
        if let Ok(engine) = Arc::try_unwrap(engine) {
            engine.shutdown().expect("shutdown");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
