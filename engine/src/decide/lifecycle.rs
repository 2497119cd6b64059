//! What an order does to a subscription or an account after it was created: a plan
//! change (now or at the next bill cycle), suspension and resumption, termination,
//! identity changes (SIM swap, number change), the credit limit and how the account pays,
//! closing the account, and the totals of a bill cycle.

use rust_decimal::Decimal;
use tollgate_tariffs::plan::Period;

use crate::api::{AllowanceGrant, AllowanceUse, Answer, Body, CycleTotals, Outcome, PlanChangeAt, ServiceTotal};
use crate::config::MAX_IDENTITIES;
use crate::cycle::{period_end, window_containing};
use crate::decide::{Context, Op, Transaction};
use crate::model::{AccountId, AccountKind, BucketId, Identity, UnitBucket};
use crate::state::{Effect, MoneyKind, ShardState};

fn invalid(text: impl Into<String>) -> Answer {
    Answer::outcome(Outcome::Invalid(text.into()))
}

/// The start and end of the account's bill cycle that holds `at`.
fn cycle_of(state: &ShardState, account: AccountId, at: i64) -> (i64, i64) {
    window_containing(state.accounts[&account].cycle_anchor_at, Period::Monthly, at)
}

/// Moves the subscription to `plan` from now or from its account's next cycle: usage
/// dated before stays priced by the old plan, whose allowances end there; the new plan's
/// allowances start there, in full or pro rata for the rest of that cycle (the bucket
/// then starts with fewer units remaining than it grants, and renews in full).
pub(crate) fn change_plan(op: Op<'_, '_, '_>, plan_id: &str, when: PlanChangeAt, grant: AllowanceGrant) -> Answer {
    let Op { tx, ctx, account, subscription } = op;
    let from = match when {
        PlanChangeAt::Now => ctx.decided_at,
        PlanChangeAt::NextCycle => cycle_of(tx.state(), account, ctx.decided_at).1,
    };
    let Some(plan) = ctx.plans.at(plan_id, from) else {
        return invalid(format!("field `plan`: no plan `{plan_id}` is in force then"));
    };
    let holder = &tx.state().accounts[&account];
    if plan.currency.as_bytes() != holder.currency {
        return invalid(format!(
            "field `plan`: plan `{plan_id}` is in {}, the account in {}",
            plan.currency,
            holder.currency_code()
        ));
    }
    let sub = &tx.state().subscriptions[&subscription];
    if tx.state().plan_id(sub, from) == plan_id {
        return invalid(format!("field `plan`: the subscription is on `{plan_id}` then already"));
    }
    let (cycle_start_at, cycle_end_at) = cycle_of(tx.state(), account, from);
    let first = holder.next_bucket;
    let buckets: Vec<UnitBucket> = plan
        .allowances
        .iter()
        .enumerate()
        .map(|(index, allowance)| {
            let valid_until_at = match allowance.period {
                Period::Monthly => cycle_end_at,
                other => period_end(from, other),
            };
            let remaining = match (grant, allowance.period) {
                (AllowanceGrant::ProRata, Period::Monthly) if cycle_end_at > cycle_start_at => {
                    let part = u128::from(allowance.units) * (cycle_end_at - from) as u128
                        / (cycle_end_at - cycle_start_at) as u128;
                    u64::try_from(part).unwrap_or(allowance.units)
                }
                _ => allowance.units,
            };
            UnitBucket {
                id: first + index as BucketId,
                subscription,
                allowance: index as u16,
                granted: allowance.units,
                remaining,
                reserved: 0,
                valid_from_at: from,
                valid_until_at,
                period: allowance.period,
            }
        })
        .collect();
    tx.emit(Effect::PlanScheduled { subscription, effective_at: from, plan: plan_id.to_owned() });
    tx.emit(Effect::BucketsRetired { subscription, at: from });
    if !buckets.is_empty() {
        tx.emit(Effect::BucketsGranted { account, buckets });
    }
    Answer::outcome(Outcome::Success)
}

pub(crate) fn suspend(op: Op<'_, '_, '_>) -> Answer {
    let Op { tx, ctx, subscription, .. } = op;
    if tx.state().lifecycle_of(subscription).is_some_and(|l| l.suspended_at.is_some()) {
        return Answer::outcome(Outcome::Success);
    }
    tx.emit(Effect::Suspended { subscription, at: ctx.decided_at });
    Answer::outcome(Outcome::Success)
}

pub(crate) fn resume(op: Op<'_, '_, '_>) -> Answer {
    let Op { tx, subscription, .. } = op;
    if tx.state().lifecycle_of(subscription).is_some_and(|l| l.suspended_at.is_some()) {
        tx.emit(Effect::Resumed { subscription });
    }
    Answer::outcome(Outcome::Success)
}

/// Suspends every subscription of the account from now (its own and later ones).
pub(crate) fn suspend_account(tx: &mut Transaction<'_>, ctx: &Context<'_>, account: AccountId) -> Answer {
    if !tx.state().suspended.contains_key(&account) {
        tx.emit(Effect::AccountSuspended { account, at: ctx.decided_at });
    }
    Answer::outcome(Outcome::Success)
}

/// Ends the account's suspension.
pub(crate) fn resume_account(tx: &mut Transaction<'_>, account: AccountId) -> Answer {
    if tx.state().suspended.contains_key(&account) {
        tx.emit(Effect::AccountResumed { account });
    }
    Answer::outcome(Outcome::Success)
}

/// Ends the subscription: its sessions are closed (reservations released, nothing more
/// charged on them), its allowances stop renewing, its id and identities are freed.
pub(crate) fn terminate(op: Op<'_, '_, '_>) -> Answer {
    let Op { tx, ctx, subscription, .. } = op;
    let mut sessions: Vec<String> = tx
        .state()
        .sessions
        .values()
        .filter(|record| record.subscription == subscription)
        .map(|record| record.session.clone())
        .collect();
    sessions.sort();
    for session in sessions {
        for rating_group in tx.state().open_groups(&session) {
            tx.emit(Effect::Released { session: session.clone(), rating_group });
        }
        tx.emit(Effect::SessionEnded { session });
    }
    tx.emit(Effect::BucketsRetired { subscription, at: ctx.decided_at });
    tx.emit(Effect::Terminated { subscription, at: ctx.decided_at });
    let identities = tx.state().subscriptions[&subscription].identities.clone();
    ctx.directory.release(subscription, &identities);
    Answer::outcome(Outcome::Success)
}

pub(crate) fn add_identity(op: Op<'_, '_, '_>, identity: &Identity) -> Answer {
    let Op { tx, ctx, account, subscription } = op;
    let known = &tx.state().subscriptions[&subscription].identities;
    if known.contains(identity) {
        return Answer::outcome(Outcome::Success);
    }
    if known.len() >= MAX_IDENTITIES {
        return invalid(format!("field `identity`: a subscription has at most {MAX_IDENTITIES} identities"));
    }
    if !ctx.directory.claim_identity(identity, subscription, account) {
        return Answer::outcome(Outcome::AlreadyExists);
    }
    tx.emit(Effect::IdentityAdded { subscription, identity: identity.clone() });
    Answer::outcome(Outcome::Success)
}

pub(crate) fn remove_identity(op: Op<'_, '_, '_>, identity: &Identity) -> Answer {
    let Op { tx, ctx, subscription, .. } = op;
    let known = &tx.state().subscriptions[&subscription].identities;
    if !known.contains(identity) {
        return invalid("field `identity`: not one of the subscription's identities");
    }
    if known.len() == 1 {
        return invalid("field `identity`: the subscription's last identity (replace it, or terminate)");
    }
    ctx.directory.release_identity(identity, subscription);
    tx.emit(Effect::IdentityRemoved { subscription, identity: identity.clone() });
    Answer::outcome(Outcome::Success)
}

/// A SIM swap or number change: `old` is freed and `new` claimed in one step.
pub(crate) fn replace_identity(op: Op<'_, '_, '_>, old: &Identity, new: &Identity) -> Answer {
    let Op { tx, ctx, account, subscription } = op;
    if !tx.state().subscriptions[&subscription].identities.contains(old) {
        return invalid("field `old`: not one of the subscription's identities");
    }
    if old == new {
        return Answer::outcome(Outcome::Success);
    }
    if !ctx.directory.claim_identity(new, subscription, account) {
        return Answer::outcome(Outcome::AlreadyExists);
    }
    ctx.directory.release_identity(old, subscription);
    tx.emit(Effect::IdentityRemoved { subscription, identity: old.clone() });
    tx.emit(Effect::IdentityAdded { subscription, identity: new.clone() });
    Answer::outcome(Outcome::Success)
}

/// Checks a credit limit for an account of `kind` holding `balance` in its main bucket.
fn limit_error(kind: AccountKind, credit_limit: Decimal, main_balance: Decimal) -> Option<String> {
    if credit_limit < Decimal::ZERO {
        return Some("field `credit_limit`: not negative".to_owned());
    }
    if credit_limit > super::money::MAX_MONEY {
        return Some(format!("field `credit_limit`: at most {}", super::money::MAX_MONEY));
    }
    if kind == AccountKind::Prepaid && !credit_limit.is_zero() {
        return Some("field `credit_limit`: zero for a prepaid account".to_owned());
    }
    if main_balance < -credit_limit {
        return Some(format!("field `credit_limit`: the account owes {}, more than {credit_limit}", -main_balance));
    }
    None
}

fn main_balance(tx: &Transaction<'_>, account: AccountId) -> Decimal {
    tx.state().accounts[&account].money.iter().find(|b| b.id == 0).map_or(Decimal::ZERO, |b| b.balance)
}

pub(crate) fn set_credit_limit(tx: &mut Transaction<'_>, account: AccountId, credit_limit: Decimal) -> Answer {
    let kind = tx.state().accounts[&account].kind;
    if let Some(error) = limit_error(kind, credit_limit, main_balance(tx, account)) {
        return invalid(error);
    }
    if tx.state().accounts[&account].reserved > Decimal::ZERO
        && credit_limit < tx.state().accounts[&account].credit_limit
    {
        return invalid("field `credit_limit`: not lowered while reservations are open");
    }
    tx.emit(Effect::CreditLimitSet { account, credit_limit });
    Answer::outcome(Outcome::Success)
}

pub(crate) fn change_account_kind(
    tx: &mut Transaction<'_>,
    account: AccountId,
    kind: AccountKind,
    credit_limit: Decimal,
) -> Answer {
    if let Some(error) = limit_error(kind, credit_limit, main_balance(tx, account)) {
        return invalid(error);
    }
    let holder = &tx.state().accounts[&account];
    if holder.reserved > Decimal::ZERO {
        return invalid("field `kind`: not changed while reservations are open");
    }
    if holder.kind != kind {
        tx.emit(Effect::AccountKindChanged { account, kind });
    }
    if holder_limit(tx, account) != credit_limit {
        tx.emit(Effect::CreditLimitSet { account, credit_limit });
    }
    Answer::outcome(Outcome::Success)
}

fn holder_limit(tx: &Transaction<'_>, account: AccountId) -> Decimal {
    tx.state().accounts[&account].credit_limit
}

/// Closes the account, settling what it holds with a final adjustment when told why.
pub(crate) fn close_account(
    tx: &mut Transaction<'_>,
    ctx: &Context<'_>,
    account: AccountId,
    settle_reason: Option<&str>,
) -> Answer {
    let state = tx.state();
    if state.reservations.values().any(|r| r.account == account) {
        return invalid("the account has open reservations: end its sessions first");
    }
    let mut open: Vec<u64> = state
        .subscriptions
        .values()
        .filter(|s| s.account == account && state.lifecycle_of(s.id).is_none_or(|l| l.terminated_at.is_none()))
        .map(|s| s.id)
        .collect();
    open.sort_unstable();
    if let Some(first) = open.first() {
        return invalid(format!("subscription {first} is not terminated"));
    }
    let buckets: Vec<(BucketId, Decimal)> =
        state.accounts[&account].money.iter().filter(|b| !b.balance.is_zero()).map(|b| (b.id, b.balance)).collect();
    if !buckets.is_empty() {
        let Some(reason) = settle_reason.filter(|r| !r.trim().is_empty()) else {
            let held: Decimal = buckets.iter().map(|(_, balance)| balance).sum();
            return invalid(format!("field `settle_reason`: the account holds {held}; give a reason to settle it"));
        };
        for (bucket, balance) in buckets {
            tx.emit(Effect::Money {
                account,
                bucket,
                delta: -balance,
                kind: MoneyKind::Adjustment { reason: format!("account closed: {reason}") },
            });
        }
    }
    tx.emit(Effect::AccountClosed { account, at: ctx.decided_at });
    Answer::new(Outcome::Success, Body::Money { balance_after: tx.state().accounts[&account].balance() })
}

/// The account's totals for the bill cycle that holds `at`.
pub(crate) fn cycle_totals(state: &ShardState, ctx: &Context<'_>, account: AccountId, at: i64) -> Answer {
    let holder = &state.accounts[&account];
    let (cycle_start_at, cycle_end_at) = cycle_of(state, account, at);
    let mut services: Vec<ServiceTotal> = holder
        .usage
        .iter()
        .filter(|total| total.cycle_start_at == cycle_start_at)
        .map(|total| ServiceTotal {
            service: total.service.to_string(),
            events: total.events,
            units: total.units,
            amount: total.amount,
        })
        .collect();
    services.sort_by(|a, b| a.service.cmp(&b.service));
    let name = |subscription: u64, allowance: u16, at: i64| {
        state
            .subscriptions
            .get(&subscription)
            .and_then(|sub| ctx.plans.at(state.plan_id(sub, at), at))
            .and_then(|plan| plan.allowances.get(usize::from(allowance)))
            .map_or_else(|| format!("allowance {allowance}"), |a| a.name.clone())
    };
    let overlaps = |from: i64, until: i64| from < cycle_end_at && until > cycle_start_at;
    let mut allowances: Vec<AllowanceUse> = state
        .allowance_history
        .get(&account)
        .into_iter()
        .flatten()
        .filter(|period| overlaps(period.valid_from_at, period.valid_until_at))
        .map(|period| AllowanceUse {
            subscription: period.subscription,
            allowance: name(period.subscription, period.allowance, period.valid_from_at),
            bucket: period.bucket,
            valid_from_at: period.valid_from_at,
            valid_until_at: period.valid_until_at,
            granted: period.granted,
            used: period.used,
        })
        .collect();
    allowances.extend(holder.units.iter().filter(|b| overlaps(b.valid_from_at, b.valid_until_at)).map(|bucket| {
        AllowanceUse {
            subscription: bucket.subscription,
            allowance: name(bucket.subscription, bucket.allowance, bucket.valid_from_at),
            bucket: bucket.id,
            valid_from_at: bucket.valid_from_at,
            valid_until_at: bucket.valid_until_at,
            granted: bucket.granted,
            used: bucket.granted.saturating_sub(bucket.remaining),
        }
    }));
    allowances.sort_by_key(|a| (a.subscription, a.valid_from_at, a.bucket));
    Answer::new(
        Outcome::Success,
        Body::Totals(Box::new(CycleTotals {
            account,
            currency: holder.currency_code().to_owned(),
            cycle_start_at,
            cycle_end_at,
            services,
            allowances,
        })),
    )
}
