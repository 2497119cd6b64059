//! Deciding a request against a shard's state: the transaction that emits effects, the
//! context every handler reads, and the dispatch of each operation to its family's
//! module.

pub(crate) mod accounts;
pub(crate) mod debits;
pub(crate) mod lifecycle;
pub(crate) mod money;
pub(crate) mod rating;
pub(crate) mod sessions;

use crate::api::{Answer, Body, Operation, Outcome, Request};
use crate::config::ChargingConfig;
use crate::decide::accounts::{balance_view, create_account, create_subscription};
use crate::decide::debits::{debit, rerate};
use crate::decide::money::{adjust, grant_credit, refund, top_up};
use crate::decide::sessions::session_request;
use crate::directory::Directory;
use crate::model::{AccountId, SubscriptionId};
use crate::plans::Plans;
use crate::state::{Effect, ShardState};

/// Everything a decision reads besides the shard state.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub plans: &'a Plans,
    pub directory: &'a Directory,
    pub config: &'a ChargingConfig,
    pub decided_at: i64,
}

/// A request being decided: its effects so far (already applied to `state`).
pub(crate) struct Transaction<'s> {
    pub(crate) state: &'s mut ShardState,
    pub(crate) effects: Vec<Effect>,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction").field("effects", &self.effects).finish()
    }
}

impl<'s> Transaction<'s> {
    pub(crate) fn emit(&mut self, effect: Effect) {
        self.state.apply(&effect);
        self.effects.push(effect);
    }

    pub(crate) fn state(&self) -> &ShardState {
        self.state
    }
}

/// What every operation handler works on: the request's transaction, the context it is
/// decided in, and the account and subscription it is about.
pub(crate) struct Op<'t, 's, 'c> {
    pub(crate) tx: &'t mut Transaction<'s>,
    pub(crate) ctx: &'t Context<'c>,
    pub(crate) account: AccountId,
    pub(crate) subscription: SubscriptionId,
}

/// The account a resolved request is about, and its subscription when it names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub account: AccountId,
    pub subscription: Option<SubscriptionId>,
}

/// Decides `request` against `state`; returns the answer and the effects (already applied).
pub fn decide(
    state: &mut ShardState,
    ctx: &Context<'_>,
    resolved: Resolved,
    request: &Request,
) -> (Answer, Vec<Effect>) {
    if let Some(key) = &request.key {
        if let Some(previous) = state.recent.get(key) {
            let mut answer = previous.clone();
            answer.repeated = true;
            return (answer, Vec::new());
        }
    }
    let mut tx = Transaction { state, effects: Vec::new() };
    let answer = decide_operation(&mut tx, ctx, resolved, &request.operation);
    if request.operation.is_mutating() {
        if let Some(key) = &request.key {
            tx.emit(Effect::Remembered { key: key.clone(), answer: std::sync::Arc::new(answer.clone()) });
        }
    }
    (answer, tx.effects)
}

pub(crate) fn decide_operation(
    tx: &mut Transaction<'_>,
    ctx: &Context<'_>,
    resolved: Resolved,
    operation: &Operation,
) -> Answer {
    if let Operation::CreateAccount { kind, currency, credit_limit, opening_balance } = operation {
        return create_account(tx, ctx, resolved.account, *kind, currency, *credit_limit, *opening_balance);
    }
    if !tx.state().accounts.contains_key(&resolved.account) {
        return Answer::outcome(Outcome::UnknownAccount);
    }
    let account = resolved.account;
    if operation.is_mutating() && tx.state().closed.contains_key(&account) {
        return Answer::outcome(Outcome::ServiceDenied("the account is closed".to_owned()));
    }
    // Operations on a subscription: the one the request names, else the account's first.
    let on = |tx: &mut Transaction<'_>, what: &str, handler: &mut dyn FnMut(Op<'_, '_, '_>) -> Answer| {
        match subscription_of(tx, resolved) {
            Some(subscription) => handler(Op { tx, ctx, account, subscription }),
            None => Answer::outcome(Outcome::Invalid(format!("{what} needs a subscriber"))),
        }
    };
    match operation {
        Operation::CreateAccount { .. } => Answer::outcome(Outcome::Invalid("unreachable".to_owned())),
        Operation::CreateSubscription { subscription, plan, identities } => {
            create_subscription(tx, ctx, account, *subscription, plan, identities)
        }
        Operation::BalanceEnquiry => {
            Answer::new(Outcome::Success, Body::Balance(balance_view(tx.state(), ctx, account)))
        }
        Operation::PriceEnquiry { usage } => on(tx, "a price enquiry", &mut |op| debit(op, usage, false)),
        Operation::DirectDebit { usage } | Operation::ChargeRecord { usage } => {
            on(tx, "a debit", &mut |op| debit(op, usage, true))
        }
        Operation::Session { session, step, units } => {
            on(tx, "a session", &mut |op| session_request(op, session, *step, units))
        }
        Operation::Rerate { record, usage } => on(tx, "a rerate", &mut |op| rerate(op, record, usage)),
        Operation::TopUp { amount, reference } => top_up(tx, account, *amount, reference),
        Operation::Refund { amount, reason } => refund(tx, account, *amount, reason),
        Operation::Adjust { amount, reason } => adjust(tx, ctx, account, *amount, reason),
        Operation::GrantCredit { amount, valid_from_at, valid_until_at, priority, reference } => {
            grant_credit(tx, ctx, account, *amount, (*valid_from_at, *valid_until_at), *priority, reference)
        }
        Operation::ChangePlan { plan, when, allowances } => {
            on(tx, "a plan change", &mut |op| lifecycle::change_plan(op, plan, *when, *allowances))
        }
        Operation::Suspend { .. } => on(tx, "a suspension", &mut lifecycle::suspend),
        Operation::Resume => on(tx, "a resumption", &mut lifecycle::resume),
        Operation::Terminate { .. } => on(tx, "a termination", &mut lifecycle::terminate),
        Operation::AddIdentity { identity } => on(tx, "an identity", &mut |op| lifecycle::add_identity(op, identity)),
        Operation::RemoveIdentity { identity } => {
            on(tx, "an identity", &mut |op| lifecycle::remove_identity(op, identity))
        }
        Operation::ReplaceIdentity { old, new } => {
            on(tx, "an identity", &mut |op| lifecycle::replace_identity(op, old, new))
        }
        Operation::SetCreditLimit { credit_limit } => lifecycle::set_credit_limit(tx, account, *credit_limit),
        Operation::ChangeAccountKind { kind, credit_limit } => {
            lifecycle::change_account_kind(tx, account, *kind, *credit_limit)
        }
        Operation::CloseAccount { settle_reason } => {
            lifecycle::close_account(tx, ctx, account, settle_reason.as_deref())
        }
        Operation::CycleTotals { at } => {
            lifecycle::cycle_totals(tx.state(), ctx, account, at.unwrap_or(ctx.decided_at))
        }
        Operation::SuspendAccount { .. } => lifecycle::suspend_account(tx, ctx, account),
        Operation::ResumeAccount => lifecycle::resume_account(tx, account),
    }
}

pub(crate) fn subscription_of(tx: &Transaction<'_>, resolved: Resolved) -> Option<SubscriptionId> {
    let state = tx.state();
    let live = |id: SubscriptionId| state.lifecycle_of(id).is_none_or(|l| l.terminated_at.is_none());
    match resolved.subscription {
        // Resolved before a termination decided in the same batch: gone now.
        Some(id) => live(id).then_some(id),
        None => {
            // An account-level request uses the account's first live subscription, if any.
            let mut ids: Vec<SubscriptionId> = state
                .subscriptions
                .values()
                .filter(|s| s.account == resolved.account && live(s.id))
                .map(|s| s.id)
                .collect();
            ids.sort_unstable();
            ids.first().copied()
        }
    }
}
