//! Accounts and subscriptions: creating them, and the balance view.

use rust_decimal::Decimal;

use crate::api::{AccountView, AllowanceView, Answer, BalanceView, Body, BucketView, Outcome};
use crate::cycle::period_end;
use crate::decide::{Context, Transaction};
use crate::model::{
    Account, AccountId, AccountKind, BucketId, MoneyBucket, Subscription, SubscriptionId, UnitBucket, UsageTotals,
    FOREVER,
};
use crate::plans::Plans;
use crate::state::{Effect, MoneyKind, ShardState};

pub(crate) fn create_account(
    tx: &mut Transaction<'_>,
    ctx: &Context<'_>,
    id: AccountId,
    kind: AccountKind,
    currency: &str,
    credit_limit: Decimal,
    opening_balance: Decimal,
) -> Answer {
    if tx.state().accounts.contains_key(&id) {
        return Answer::outcome(Outcome::AlreadyExists);
    }
    let code: [u8; 3] = match currency.as_bytes().try_into() {
        Ok(code) if currency.bytes().all(|b| b.is_ascii_uppercase()) => code,
        _ => return Answer::outcome(Outcome::Invalid("field `currency`: an ISO 4217 code such as EUR".to_owned())),
    };
    if credit_limit < Decimal::ZERO || (kind == AccountKind::Prepaid && !credit_limit.is_zero()) {
        return Answer::outcome(Outcome::Invalid(
            "field `credit_limit`: not negative, and zero for a prepaid account".to_owned(),
        ));
    }
    if opening_balance < -credit_limit {
        return Answer::outcome(Outcome::Invalid("field `opening_balance`: below the credit limit".to_owned()));
    }
    let most = super::money::MAX_MONEY;
    if credit_limit > most || opening_balance.abs() > most {
        return Answer::outcome(Outcome::Invalid(format!(
            "field `credit_limit` and `opening_balance`: at most {most}"
        )));
    }
    let main = MoneyBucket {
        id: 0,
        balance: Decimal::ZERO,
        valid_from_at: i64::MIN,
        valid_until_at: FOREVER,
        priority: u32::MAX,
    };
    tx.emit(Effect::AccountCreated(Box::new(Account {
        id,
        kind,
        currency: code,
        credit_limit,
        money: smallvec::smallvec![main],
        reserved: Decimal::ZERO,
        units: Vec::new(),
        usage: UsageTotals::new(),
        next_bucket: 1,
        cycle_anchor_at: ctx.decided_at,
    })));
    if !opening_balance.is_zero() {
        tx.emit(Effect::Money { account: id, bucket: 0, delta: opening_balance, kind: MoneyKind::Opening });
    }
    Answer::new(Outcome::Success, Body::Money { balance_after: opening_balance })
}

pub(crate) fn create_subscription(
    tx: &mut Transaction<'_>,
    ctx: &Context<'_>,
    account: AccountId,
    subscription: SubscriptionId,
    plan_id: &str,
    identities: &[crate::model::Identity],
) -> Answer {
    let Some(plan) = ctx.plans.at(plan_id, ctx.decided_at) else {
        return Answer::outcome(Outcome::Invalid(format!("field `plan`: no plan `{plan_id}` is loaded")));
    };
    if plan.currency.as_bytes() != tx.state().accounts[&account].currency {
        return Answer::outcome(Outcome::Invalid(format!(
            "field `plan`: plan `{plan_id}` is in {}, the account in {}",
            plan.currency,
            tx.state().accounts[&account].currency_code()
        )));
    }
    if tx.state().subscriptions.contains_key(&subscription) || !ctx.directory.claim(subscription, account, identities) {
        return Answer::outcome(Outcome::AlreadyExists);
    }
    let first_bucket = tx.state().accounts[&account].next_bucket;
    let buckets = plan
        .allowances
        .iter()
        .enumerate()
        .map(|(index, allowance)| UnitBucket {
            id: first_bucket + index as BucketId,
            subscription,
            allowance: index as u16,
            granted: allowance.units,
            remaining: allowance.units,
            reserved: 0,
            valid_from_at: ctx.decided_at,
            valid_until_at: period_end(ctx.decided_at, allowance.period),
            period: allowance.period,
        })
        .collect();
    tx.emit(Effect::SubscriptionCreated {
        subscription: Box::new(Subscription {
            id: subscription,
            account,
            plan: plan_id.into(),
            identities: identities.to_vec(),
            started_at: ctx.decided_at,
        }),
        buckets,
    });
    Answer::outcome(Outcome::Success)
}

pub(crate) fn balance_view(state: &ShardState, ctx: &Context<'_>, id: AccountId) -> BalanceView {
    balance_view_at(state, ctx.plans, ctx.decided_at, id)
}

/// The view of an account the engine holds (`None` if it holds none by that id): its
/// balance, whether it is closed or suspended, its live subscriptions, and its allowance
/// buckets with the subscription, allowance, service and unit each is for, named by the
/// plan in force at `now`.
pub(crate) fn account_view(state: &ShardState, plans: &Plans, now: i64, id: AccountId) -> Option<AccountView> {
    let account = state.accounts.get(&id)?;
    let live = |sub: &&Subscription| state.lifecycle_of(sub.id).is_none_or(|l| l.terminated_at.is_none());
    let mut live_subscriptions: Vec<SubscriptionId> =
        state.subscriptions.values().filter(|sub| sub.account == id).filter(live).map(|sub| sub.id).collect();
    live_subscriptions.sort_unstable();
    let allowances = account
        .units
        .iter()
        .map(|bucket| {
            let allowance = state
                .subscriptions
                .get(&bucket.subscription)
                .and_then(|sub| plans.at(state.plan_id(sub, now), now))
                .and_then(|plan| {
                    let allowance = plan.allowances.get(usize::from(bucket.allowance))?;
                    let service = plan.services.get(usize::from(allowance.service))?;
                    Some((allowance.name.clone(), service.name.clone(), service.unit.name()))
                });
            let (name, service, unit) =
                allowance.unwrap_or_else(|| (format!("allowance {}", bucket.allowance), "unknown".to_owned(), "units"));
            AllowanceView {
                bucket: bucket.id,
                subscription: bucket.subscription,
                name,
                service,
                unit: unit.to_owned(),
                granted: bucket.granted,
                remaining: bucket.remaining,
                reserved: bucket.reserved,
                valid_from_s: bucket.valid_from_at,
                valid_until_s: bucket.valid_until_at,
            }
        })
        .collect();
    Some(AccountView {
        balance: balance_view_at(state, plans, now, id),
        closed_at: state.closed.get(&id).copied(),
        suspended_at: state.suspended.get(&id).copied(),
        live_subscriptions,
        allowances,
    })
}

fn balance_view_at(state: &ShardState, plans: &Plans, now: i64, id: AccountId) -> BalanceView {
    let account = &state.accounts[&id];
    let mut buckets: Vec<BucketView> = account
        .money
        .iter()
        .map(|b| BucketView {
            id: b.id,
            kind: "money".to_owned(),
            remaining: b.balance.to_string(),
            reserved: if b.id == 0 { account.reserved.to_string() } else { "0".to_owned() },
            valid_from_at: b.valid_from_at,
            valid_until_at: b.valid_until_at,
        })
        .collect();
    for bucket in &account.units {
        let name = state
            .subscriptions
            .get(&bucket.subscription)
            .and_then(|s| plans.at(state.plan_id(s, now), now))
            .and_then(|p| p.allowances.get(usize::from(bucket.allowance)))
            .map_or_else(|| format!("allowance {}", bucket.allowance), |a| a.name.clone());
        buckets.push(BucketView {
            id: bucket.id,
            kind: name,
            remaining: bucket.remaining.to_string(),
            reserved: bucket.reserved.to_string(),
            valid_from_at: bucket.valid_from_at,
            valid_until_at: bucket.valid_until_at,
        });
    }
    BalanceView {
        account: id,
        kind: account.kind,
        currency: account.currency_code().to_owned(),
        balance: account.balance(),
        available: account.available(now),
        reserved: account.reserved,
        credit_limit: account.credit_limit,
        buckets,
    }
}
