//! [`OrderLink`]: the provisioning workflow's way to the charging engine
//! (`tollgate_orders::EnginePort`). The workflow records each step in the store before
//! and after it runs, so its task row plays the outbox row's part: the step is applied at
//! least once, every attempt under the same idempotency key (`order:{order}:{item}:{step}`,
//! `…:undo` for its compensation), and the engine's exactly-once by key makes that once.
//! A subscription created by an attempt whose key the engine's window has since
//! forgotten answers `AlreadyExists`; it counts as done when its identities belong to the
//! order's account. The engine remembers every answer under its key, a refusal too, so a
//! creation is sent only once the account exists (asked without a key first): until then
//! the step is retried, the account's own creation may still be waiting in the outbox.

use std::sync::Arc;

use tollgate_engine::{AllowanceGrant, Engine, Identity, Operation, Outcome, PlanChangeAt, Request, Target};
use tollgate_orders::{BoxFuture, EngineAnswer, EngineCall, EngineOperation, EnginePort, EngineTarget};
use tollgate_store::ApplyError;

use super::engine_link::{ask, identities_held_by};

/// The engine as the workflow reaches it.
#[derive(Clone)]
pub(crate) struct OrderLink {
    engine: Arc<Engine>,
}

impl std::fmt::Debug for OrderLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderLink").finish_non_exhaustive()
    }
}

impl OrderLink {
    pub(crate) fn new(engine: Arc<Engine>) -> OrderLink {
        OrderLink { engine }
    }
}

fn identity(key: &str) -> Result<Identity, EngineAnswer> {
    Identity::parse(key).ok_or_else(|| EngineAnswer::Refused(format!("{key:?} is not an identity")))
}

/// The engine request of a workflow call.
fn request(call: EngineCall) -> Result<Request, EngineAnswer> {
    let target = match call.target {
        EngineTarget::Account(account) => Target::Account(account),
        EngineTarget::Subscription(subscription) => Target::Subscription(subscription),
    };
    let operation = match call.operation {
        EngineOperation::CreateSubscription { subscription, plan, identities } => {
            let identities = identities.iter().map(|key| identity(key)).collect::<Result<Vec<_>, _>>()?;
            Operation::CreateSubscription { subscription, plan, identities }
        }
        EngineOperation::ChangePlan { plan } => {
            Operation::ChangePlan { plan, when: PlanChangeAt::Now, allowances: AllowanceGrant::ProRata }
        }
        EngineOperation::Suspend { reason } => Operation::Suspend { reason },
        EngineOperation::Resume => Operation::Resume,
        EngineOperation::Terminate { reason } => Operation::Terminate { reason },
        EngineOperation::ReplaceIdentity { old, new } => {
            Operation::ReplaceIdentity { old: identity(&old)?, new: identity(&new)? }
        }
    };
    Ok(Request { key: Some(call.key), target, operation })
}

impl EnginePort for OrderLink {
    fn apply(&self, call: EngineCall) -> BoxFuture<'_, EngineAnswer> {
        Box::pin(async move {
            let key = call.key.clone();
            let request = match request(call) {
                Ok(request) => request,
                Err(answer) => return answer,
            };
            let creation = match (&request.operation, &request.target) {
                (Operation::CreateSubscription { identities, .. }, Target::Account(account)) => {
                    Some((identities.clone(), *account))
                }
                _ => None,
            };
            if let Some((_, account)) = &creation {
                let enquiry =
                    Request { key: None, target: Target::Account(*account), operation: Operation::BalanceEnquiry };
                match ask(&self.engine, enquiry).await {
                    Ok(answer) if answer.outcome == Outcome::UnknownAccount => {
                        return EngineAnswer::Unavailable(
                            "the engine has no such account yet (its creation may still be in the outbox)".into(),
                        )
                    }
                    Ok(_) => {}
                    Err(error) => return EngineAnswer::Unavailable(error),
                }
            }
            let answer = match ask(&self.engine, request).await {
                Ok(answer) => answer,
                Err(error) => return EngineAnswer::Unavailable(error),
            };
            match (answer.outcome, creation) {
                (Outcome::Success, _) => {
                    tracing::debug!(%key, repeated = answer.repeated, "order link: applied");
                    EngineAnswer::Applied
                }
                (Outcome::AlreadyExists, Some((identities, account))) => {
                    match identities_held_by(&self.engine, &identities, account).await {
                        Ok(()) => {
                            tracing::warn!(%key, "order link: the engine subscription already existed");
                            EngineAnswer::Applied
                        }
                        Err(ApplyError::Retry(error)) => EngineAnswer::Unavailable(error),
                        Err(ApplyError::Fail(error)) => EngineAnswer::Refused(error),
                    }
                }
                (other, _) => EngineAnswer::Refused(format!("{other:?}")),
            }
        })
    }

    fn knows_plan(&self, plan: &str) -> bool {
        self.engine.plans().contains(plan)
    }
}

#[cfg(test)]
mod tests {
    use tollgate_engine::{AccountKind, EngineConfig, Plans, SystemClock};

    use super::*;

    /// Regression: the engine remembers a refusal under its key, so a subscription ordered
    /// before its account reached the engine was refused for good on every retry. Now the
    /// keyed creation waits until the account exists, and then succeeds under the same key.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscription_ordered_before_its_account_exists_is_created_once_it_does() {
        let dir = std::env::temp_dir().join(format!("tollgate-order-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut plans = Plans::new();
        let plan = include_str!("../../tariffs/examples/prepaid-mobile.toml");
        plans.insert(tollgate_tariffs::compile_str(plan, "prepaid-mobile.toml", None).expect("plan")).expect("plans");
        let engine = Arc::new(
            Engine::open(EngineConfig::new(dir.join("engine")), plans, Arc::new(SystemClock)).expect("engine"),
        );
        let link = OrderLink::new(Arc::clone(&engine));
        assert!(link.knows_plan("mobile-prepaid-s") && !link.knows_plan("nope"));
        let create = || EngineCall {
            key: "order:o:1:createSubscription".into(),
            target: EngineTarget::Account(77),
            operation: EngineOperation::CreateSubscription {
                subscription: 770,
                plan: "mobile-prepaid-s".into(),
                identities: vec!["msisdn:491510000077".into()],
            },
        };
        assert!(matches!(link.apply(create()).await, EngineAnswer::Unavailable(_)), "no account yet: try later");
        let account = Request {
            key: Some("account-77".into()),
            target: Target::Account(77),
            operation: Operation::CreateAccount {
                kind: AccountKind::Postpaid,
                currency: "EUR".into(),
                credit_limit: rust_decimal::Decimal::TEN,
                opening_balance: rust_decimal::Decimal::ZERO,
            },
        };
        assert_eq!(engine.execute(account).expect("engine").outcome, Outcome::Success);
        assert_eq!(link.apply(create()).await, EngineAnswer::Applied);
        assert_eq!(link.apply(create()).await, EngineAnswer::Applied, "a repeat of the key");
        let refused = link
            .apply(EngineCall {
                key: "order:o:1:resume".into(),
                target: EngineTarget::Subscription(770),
                operation: EngineOperation::ReplaceIdentity { old: "msisdn:1".into(), new: "not an identity".into() },
            })
            .await;
        assert!(matches!(refused, EngineAnswer::Refused(_)), "{refused:?}");
        drop(link);
        if let Ok(engine) = Arc::try_unwrap(engine) {
            engine.shutdown().expect("shutdown");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
