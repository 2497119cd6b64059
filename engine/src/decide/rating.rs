//! Pricing a usage for a subscription: the plan version and service it is rated with, the
//! allowances it may draw, renewing allowances whose cycle ended, and settling a rated
//! event (its draws, its money, its usage total).

use rust_decimal::Decimal;
use smallvec::SmallVec;
use tollgate_tariffs::plan::Period;
use tollgate_tariffs::{rate, AllowanceBalance, CompiledPlan, RatedEvent, Unit, UsageEvent};

use crate::api::{Body, Charged, Outcome, ServiceRef, Usage};
use crate::config::ChargingConfig;
use crate::cycle::window_containing;
use crate::decide::money::debit_money;
use crate::decide::{Context, Transaction};
use crate::model::{Account, AccountId, BucketId, Subscription, SubscriptionId, UnitBucket};
use crate::plans::Versioned;
use crate::records::{Memo, NO_DESTINATION};
use crate::state::{Effect, MoneyKind, RatedDetail, ShardState};

/// A unit bucket of `subscription` that ended by `now` and renews (not while
/// reservations hold units of it).
pub(crate) fn renews(bucket: &UnitBucket, subscription: SubscriptionId, now: i64) -> bool {
    bucket.subscription == subscription
        && bucket.valid_until_at <= now
        && bucket.period != Period::Once
        && bucket.reserved == 0
}

pub(crate) fn renewal_due(account: &Account, subscription: SubscriptionId, now: i64) -> bool {
    account.units.iter().any(|b| renews(b, subscription, now))
}

/// Renews the subscription's unit buckets whose cycle ended before `now`.
pub(crate) fn renew_buckets(tx: &mut Transaction<'_>, account: AccountId, subscription: SubscriptionId, now: i64) {
    let due: Vec<(BucketId, i64, i64)> = tx.state().accounts[&account]
        .units
        .iter()
        .filter(|b| renews(b, subscription, now))
        .map(|b| {
            // The windows that follow the expired one, anchored where it ended.
            let (from, until) = window_containing(b.valid_until_at, b.period, now);
            (b.id, from, until)
        })
        .collect();
    for (bucket, valid_from_at, valid_until_at) in due {
        tx.emit(Effect::BucketRenewed { account, bucket, valid_from_at, valid_until_at });
    }
}

/// The unit buckets of `subscription` usable at `at`, as the rating function wants them;
/// `extra` adds units held by a reservation being settled.
pub(crate) fn allowance_balances(
    account: &Account,
    subscription: SubscriptionId,
    at: i64,
    extra: &[(BucketId, u64)],
) -> SmallVec<[AllowanceBalance; 4]> {
    account
        .units
        .iter()
        .filter(|b| b.subscription == subscription && b.is_valid_at(at))
        .map(|b| {
            let held = extra.iter().filter(|(id, _)| *id == b.id).map(|(_, units)| *units).sum::<u64>();
            AllowanceBalance { bucket: u64::from(b.id), allowance: b.allowance, remaining_units: b.available() + held }
        })
        .filter(|b| b.remaining_units > 0)
        .collect()
}

pub(crate) fn service_of(plan: &CompiledPlan, service: &ServiceRef) -> Option<u16> {
    match service {
        ServiceRef::Name(name) => plan.service_by_name(name),
        ServiceRef::RatingGroup(rg) => plan.service_by_rating_group(*rg),
        ServiceRef::ServiceId(id) => plan.service_by_service_id(*id),
    }
}

/// Rates `usage` for `subscription`; `Err` is the answer to give when it cannot be rated.
pub(crate) fn rate_usage<'p>(
    ctx: &Context<'p>,
    state: &ShardState,
    subscription: SubscriptionId,
    usage: &Usage,
    extra: &[(BucketId, u64)],
) -> Result<(&'p Versioned, RatedEvent), Outcome> {
    rate_for(ctx, state, subscription, usage, extra).map_err(|code| Outcome::RatingFailed(code.to_owned()))
}

/// Rates `usage` for `subscription`; `Err` is the rating failure's code.
pub(crate) fn rate_for<'p>(
    ctx: &Context<'p>,
    state: &ShardState,
    subscription: SubscriptionId,
    usage: &Usage,
    extra: &[(BucketId, u64)],
) -> Result<(&'p Versioned, RatedEvent), &'static str> {
    let sub = &state.subscriptions[&subscription];
    let plan_id = state.plan_id(sub, usage.start_utc_seconds);
    rate_held(ctx, plan_id, sub, &state.accounts[&sub.account], usage, extra)
}

/// [`rate_for`] with the subscription, the plan in force for the usage and the account
/// already looked up.
pub(crate) fn rate_held<'p>(
    ctx: &Context<'p>,
    plan_id: &str,
    sub: &Subscription,
    account: &Account,
    usage: &Usage,
    extra: &[(BucketId, u64)],
) -> Result<(&'p Versioned, RatedEvent), &'static str> {
    let (plan, event) = event_of(ctx, plan_id, usage)?;
    let balances = allowance_balances(account, sub.id, usage.start_utc_seconds, extra);
    rate(plan, &event, &balances).map(|rated| (plan, rated)).map_err(|unrated| unrated.code())
}

/// The plan version `usage` is rated with and the event to rate; `Err` is the rating
/// failure's code.
pub(crate) fn usage_event<'p, 'u>(
    ctx: &Context<'p>,
    state: &ShardState,
    subscription: SubscriptionId,
    usage: &'u Usage,
) -> Result<(&'p Versioned, UsageEvent<'u>), &'static str> {
    let plan_id = state.plan_id(&state.subscriptions[&subscription], usage.start_utc_seconds);
    event_of(ctx, plan_id, usage)
}

/// The version of `plan_id` in force at the usage's start, and the event to rate.
pub(crate) fn event_of<'p, 'u>(
    ctx: &Context<'p>,
    plan_id: &str,
    usage: &'u Usage,
) -> Result<(&'p Versioned, UsageEvent<'u>), &'static str> {
    let plan = ctx.plans.at(plan_id, usage.start_utc_seconds).ok_or("plan_not_loaded")?;
    let service = service_of(plan, &usage.service).ok_or("unknown_service")?;
    let rating_group = usage.rating_group.or(match usage.service {
        ServiceRef::RatingGroup(rg) => Some(rg),
        _ => None,
    });
    let event = UsageEvent {
        service,
        rating_group,
        destination: usage.destination.as_deref(),
        start_utc_seconds: usage.start_utc_seconds,
        units: usage.units,
    };
    Ok((plan, event))
}

/// What the exactly-once window keeps of a charged record: its rated event and origin.
pub(crate) fn memo_of(rated: &RatedEvent, origin: u64) -> Memo {
    Memo {
        amount: rated.amount,
        charged_units: rated.charged_units,
        allowance_units: rated.allowance_units,
        origin,
        service: rated.service,
        band: rated.band,
        destination: rated.destination.unwrap_or(NO_DESTINATION),
    }
}

pub(crate) fn charged_body(plan: &Versioned, rated: &RatedEvent, balance_after: Decimal) -> Body {
    Body::Charged(charged(plan, rated, balance_after))
}

pub(crate) fn charged(plan: &Versioned, rated: &RatedEvent, balance_after: Decimal) -> Charged {
    let names = &plan.names;
    Charged {
        amount: rated.amount,
        currency: names.currency.clone(),
        plan: names.id.clone(),
        plan_version: plan.version,
        service: names.services[usize::from(rated.service)].clone(),
        destination: rated.destination.map(|d| names.destinations[d as usize].clone()),
        band: names.bands[usize::from(rated.band)].clone(),
        charged_units: rated.charged_units,
        allowance_units: rated.allowance_units,
        balance_after,
    }
}

/// Applies a rated event: consumes its allowance draws, debits its amount, accumulates it,
/// and (unless itemisation is off) records its detail for the ledger.
pub(crate) fn settle(
    tx: &mut Transaction<'_>,
    ctx: &Context<'_>,
    subscription: SubscriptionId,
    plan: &Versioned,
    usage: &Usage,
    rated: &RatedEvent,
) {
    let account = tx.state().subscriptions[&subscription].account;
    for draw in &rated.draws {
        tx.emit(Effect::Units { account, bucket: draw.bucket as BucketId, consumed: draw.units });
    }
    if !rated.amount.is_zero() {
        debit_money(tx, ctx.decided_at, account, rated.amount, MoneyKind::Charge);
    }
    let at = usage.start_utc_seconds;
    accumulate(tx, account, plan, rated.service, at, rated.charged_units, rated.amount);
    if ctx.config.itemise {
        let detail = rated_detail(tx.state(), subscription, plan, usage, rated);
        tx.emit(Effect::Rated(Box::new(detail)));
    }
}

/// The ledger's detail of a rated event.
fn rated_detail(
    state: &ShardState,
    subscription: SubscriptionId,
    plan: &Versioned,
    usage: &Usage,
    rated: &RatedEvent,
) -> RatedDetail {
    let sub = &state.subscriptions[&subscription];
    let names = &plan.names;
    RatedDetail {
        account: sub.account,
        subscription,
        identity: sub.identities.first().cloned(),
        service: names.services[usize::from(rated.service)].clone(),
        rating_group: usage.rating_group.or(match usage.service {
            ServiceRef::RatingGroup(rg) => Some(rg),
            _ => None,
        }),
        called: usage.destination.as_ref().map(|called| called.to_string()),
        prefix_len: rated.prefix_len,
        destination: rated.destination.map(|d| names.destinations[d as usize].clone()),
        band: names.bands[usize::from(rated.band)].clone(),
        plan: names.id.clone(),
        plan_version: plan.version,
        rate_line: rated.rate_line,
        started_at: usage.start_utc_seconds,
        units: rated.units,
        charged_units: rated.charged_units,
        allowance_units: rated.allowance_units,
        draws: rated.draws.iter().map(|d| (d.bucket as BucketId, d.units)).collect(),
        amount: rated.amount,
        currency: names.currency.clone(),
    }
}

/// Adds rated usage (`amount` may be negative: a rerate's difference) to the account's
/// total for the billing cycle that holds `at`.
pub(crate) fn accumulate(
    tx: &mut Transaction<'_>,
    account: AccountId,
    plan: &Versioned,
    service: u16,
    at: i64,
    units: u64,
    amount: Decimal,
) {
    let anchor = tx.state().accounts[&account].cycle_anchor_at;
    let (cycle_start_at, _) = window_containing(anchor, Period::Monthly, at);
    let service = plan.names.services[usize::from(service)].clone();
    tx.emit(Effect::Usage { account, cycle_start_at, service, units, amount });
}

pub(crate) fn default_quota(config: &ChargingConfig, unit: Unit) -> u64 {
    match unit {
        Unit::Seconds => config.default_quota_seconds,
        Unit::Bytes => config.default_quota_bytes,
        Unit::Events | Unit::Units => config.default_quota_events,
    }
}
