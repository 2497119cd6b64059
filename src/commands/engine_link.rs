//! The BSS's link to the charging engine: [`EngineLink`], the store's `OutboxHandler` that
//! applies the engine operations `tollgate-customers` and `tollgate-import` record in the
//! outbox (creating a billing account's engine account, setting its credit limit, creating
//! a subscription under its identities, suspending it) through the engine's API,
//! each under its outbox row's idempotency key as the engine request key. A retry (after
//! a failed attempt, a crash, a lease that ran out) repeats the key, and the engine answers
//! a repeated key with its stored answer without changing anything: the operation takes
//! effect once. `tollgate serve --api-listen` runs an `OutboxWorker` with it.

use std::sync::Arc;

use tollgate_customers::{AccountType, EngineOperation};
use tollgate_engine::{AccountKind, Engine, Identity, Operation, Outcome, Request, Target};
use tollgate_store::{ApplyError, OutboxHandler, OutboxItem};

/// Applies outbox rows to the engine.
#[derive(Clone)]
pub(crate) struct EngineLink {
    engine: Arc<Engine>,
}

impl std::fmt::Debug for EngineLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineLink").finish_non_exhaustive()
    }
}

impl EngineLink {
    pub(crate) fn new(engine: Arc<Engine>) -> EngineLink {
        EngineLink { engine }
    }
}

/// The engine request an outbox row stands for, keyed by the row's idempotency key.
pub(crate) fn request(item: &OutboxItem) -> Result<Request, String> {
    let key = Some(item.idempotency_key.clone());
    let (account, operation) = match EngineOperation::from_outbox(item)? {
        EngineOperation::CreateSubscription { account, subscription, plan, identities } => {
            let identities = identities
                .iter()
                .map(|text| {
                    Identity::parse(text).ok_or_else(|| format!("payload.identities: {text:?} is not an identity"))
                })
                .collect::<Result<Vec<_>, String>>()?;
            (account, Operation::CreateSubscription { subscription, plan, identities })
        }
        EngineOperation::SuspendSubscription { subscription, reason } => {
            let operation = Operation::Suspend { reason };
            return Ok(Request { key, target: Target::Subscription(subscription), operation });
        }
        EngineOperation::CreateAccount { account, account_type, currency, credit_limit } => {
            let kind = match account_type {
                AccountType::Prepaid => AccountKind::Prepaid,
                AccountType::Postpaid => AccountKind::Postpaid,
                AccountType::Hybrid => AccountKind::Hybrid,
            };
            let opening_balance = rust_decimal::Decimal::ZERO;
            (account, Operation::CreateAccount { kind, currency, credit_limit, opening_balance })
        }
        EngineOperation::SetCreditLimit { account, credit_limit } => {
            (account, Operation::SetCreditLimit { credit_limit })
        }
    };
    Ok(Request { key, target: Target::Account(account), operation })
}

impl EngineLink {
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
        let (reply, answered) = tokio::sync::oneshot::channel();
        self.engine.submit(enquiry, Box::new(move |answer| drop(reply.send(answer))));
        match answered.await {
            Ok(Ok(answer)) => match answer.body {
                tollgate_engine::Body::Balance(view) if view.kind == *kind && view.currency == *currency => {
                    tracing::warn!(key = %item.idempotency_key, "engine link: the engine account already existed");
                    Ok(())
                }
                body => Err(ApplyError::Fail(format!(
                    "engine account {:?} exists but is not the one this billing account describes ({kind:?}, {currency}): {body:?}",
                    create.target
                ))),
            },
            _ => Err(ApplyError::Retry("the engine is unavailable".into())),
        }
    }

    /// Whether every identity `create` names already belongs to a subscription of the
    /// account it names (an earlier attempt whose key the engine's window has forgotten);
    /// otherwise another subscription holds one, and an operator must look.
    async fn existing_subscription_matches(&self, item: &OutboxItem, create: &Request) -> Result<(), ApplyError> {
        let (Operation::CreateSubscription { identities, .. }, Target::Account(account)) =
            (&create.operation, &create.target)
        else {
            return Err(ApplyError::Fail("not a subscription creation".into()));
        };
        for identity in identities {
            let enquiry = Request {
                key: None,
                target: Target::Subscriber(identity.clone()),
                operation: Operation::BalanceEnquiry,
            };
            let (reply, answered) = tokio::sync::oneshot::channel();
            self.engine.submit(enquiry, Box::new(move |answer| drop(reply.send(answer))));
            match answered.await {
                Ok(Ok(answer)) => match answer.body {
                    tollgate_engine::Body::Balance(view) if view.account == *account => {}
                    body => {
                        return Err(ApplyError::Fail(format!(
                            "identity {} is held in the engine by another account than {account}: {body:?}",
                            identity.key()
                        )))
                    }
                },
                _ => return Err(ApplyError::Retry("the engine is unavailable".into())),
            }
        }
        tracing::warn!(key = %item.idempotency_key, "engine link: the engine subscription already existed");
        Ok(())
    }
}

impl OutboxHandler for EngineLink {
    async fn apply(&self, item: &OutboxItem) -> Result<(), ApplyError> {
        let request = request(item).map_err(ApplyError::Fail)?;
        let creating =
            matches!(request.operation, Operation::CreateAccount { .. } | Operation::CreateSubscription { .. });
        let expected = request.clone();
        let (reply, answered) = tokio::sync::oneshot::channel();
        self.engine.submit(request, Box::new(move |answer| drop(reply.send(answer))));
        let answer = match answered.await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => return Err(ApplyError::Retry(format!("the engine is unavailable: {error}"))),
            Err(_) => return Err(ApplyError::Retry("the engine dropped the request".into())),
        };
        match answer.outcome {
            Outcome::Success => {
                tracing::info!(key = %item.idempotency_key, kind = %item.kind, repeated = answer.repeated, "engine link: applied");
                Ok(())
            }
            // The account exists under another key: an earlier attempt whose key the
            // engine's window has forgotten (the same account: done), or another account
            // at that id (made by hand, or a BSS database started afresh on old engine
            // data: the two disagree and an operator must look).
            Outcome::AlreadyExists if creating => self.existing_matches(item, &expected).await,
            other => Err(ApplyError::Fail(format!("the engine refused {}: {other:?}", item.kind))),
        }
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
        let link = FlakyLink { inner: EngineLink::new(Arc::clone(&engine)), attempts: AtomicUsize::new(0) };
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
        let link = EngineLink::new(Arc::clone(&engine));
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
