//! The bulk path: charging rated records (mediation, offline charging) one after the
//! other with their lookups started ahead, each record one compact journal entry.

use tollgate_tariffs::plan::Period;

use crate::cycle::window_containing;
use crate::decide::money::money_moves;
use crate::decide::rating::{memo_of, rate_held, renew_buckets, renewal_due};
use crate::decide::{Context, Transaction};
use crate::format::charges::{ChargeDetail, ChargesWriter};
use crate::model::{BucketId, Identity};
use crate::records::{ChargeEffect, Memo, MoneyMoves, RecordAnswer, RecordCharge, RecordOutcome, ServiceName};
use crate::state::{Effect, RefusedRecord, ShardState};

/// Charges one rated record on the bulk path. A charged record's changes are applied and
/// written to `journal`. Bucket renewals due first are applied and pushed to `renewals`,
/// to be journaled as an ordinary record before the charge: `journal` then ends the
/// payload it held before them ([`ChargesWriter::take_ended`]). A refusal to remember is
/// pushed to `refusals`, not applied: the caller applies and journals them after the
/// message's charges, or before a later record of the message with the same key.
pub fn charge_record(
    state: &mut ShardState,
    ctx: &Context<'_>,
    record: &RecordCharge,
    renewals: &mut Vec<Effect>,
    refusals: &mut Vec<Effect>,
    journal: &mut ChargesWriter,
) -> RecordAnswer {
    if let Some(memo) = state.recent_records.get(&record.key).copied() {
        // Another record charged this key; if this one was refused before that, it gets
        // its refusal again (only here: a key not charged at all is decided afresh).
        if memo.origin != record.origin {
            if let Some(refusal) = state.recent_records.get(&record.key.refusal(record.origin)).copied() {
                return refusal.answer(None, true);
            }
        }
        let at = record.usage.start_utc_seconds;
        let plan =
            state.subscriptions.get(&record.subscription).and_then(|sub| ctx.plans.at(state.plan_id(sub, at), at));
        return memo.answer(plan.map(|plan| plan.handle), true);
    }
    let (account, subscription) = (record.account, record.subscription);
    let usage = &record.usage;
    let owned = state.subscriptions.get(&subscription).is_some_and(|sub| sub.account == account);
    let Some(slot) = state.accounts.slot(&account).filter(|_| owned) else {
        return RecordAnswer::refused(RecordOutcome::UnknownSubscriber);
    };
    // Most subscriptions have no lifecycle: one emptiness check when none has.
    if let Some(lifecycle) = state.lifecycle_of(subscription) {
        if lifecycle.terminated_at.is_some_and(|at| at <= usage.start_utc_seconds) {
            return RecordAnswer::refused(RecordOutcome::UnknownSubscriber);
        }
        if lifecycle.suspended_at.is_some_and(|at| at <= usage.start_utc_seconds) {
            return refuse(state, record, RecordOutcome::Suspended, refusals);
        }
    }
    if !state.closed.is_empty() && state.closed.contains_key(&account) {
        return refuse(state, record, RecordOutcome::Suspended, refusals);
    }
    if !state.suspended.is_empty() && state.suspended.get(&account).is_some_and(|at| *at <= usage.start_utc_seconds) {
        return refuse(state, record, RecordOutcome::Suspended, refusals);
    }
    // Each table is looked up once from here on: the account by its slot.
    let renew_at = usage.start_utc_seconds.max(ctx.decided_at);
    if renewal_due(state.accounts.at(slot), subscription, renew_at) {
        let mut tx = Transaction { state: &mut *state, effects: Vec::new() };
        renew_buckets(&mut tx, account, subscription, renew_at);
        if !tx.effects.is_empty() {
            journal.end_part();
        }
        renewals.extend(tx.effects);
    }
    let (holder, sub) = (state.accounts.at(slot), &state.subscriptions[&subscription]);
    let plan_id = state.plan_id(sub, usage.start_utc_seconds);
    let (plan, rated) = match rate_held(ctx, plan_id, sub, holder, usage, &[]) {
        Ok(rated) => rated,
        Err(code) => return refuse(state, record, RecordOutcome::RatingFailed(code), refusals),
    };
    if rated.amount > holder.available(ctx.decided_at) {
        return refuse(state, record, RecordOutcome::CreditLimitReached, refusals);
    }
    let moves =
        if rated.amount.is_zero() { MoneyMoves::new() } else { money_moves(holder, ctx.decided_at, rated.amount) };
    let (cycle_start_at, _) = window_containing(holder.cycle_anchor_at, Period::Monthly, usage.start_utc_seconds);
    let memo = memo_of(&rated, record.origin);
    let effect = ChargeEffect {
        key: record.key,
        account,
        memo,
        cycle_start_at,
        moves,
        draws: rated.draws.iter().map(|d| (d.bucket as BucketId, d.units)).collect(),
        service: ServiceName::Shared(&plan.names.services[usize::from(rated.service)]),
    };
    let detail = ctx.config.itemise.then(|| ChargeDetail {
        subscription,
        started_at: usage.start_utc_seconds,
        units: rated.units,
        rating_group: usage.rating_group,
        prefix_len: rated.prefix_len,
        rate_line: rated.rate_line,
        plan: &plan.names.id,
        plan_version: plan.version,
        currency: &plan.names.currency,
        band: &plan.names.bands[usize::from(rated.band)],
        destination: rated.destination.map(|d| &*plan.names.destinations[d as usize]),
        // The record's own identity (hot in cache), not the subscription's: reading that
        // costs two cache misses a record.
        identity: record.identity.as_ref().map(identity_parts),
        called: usage.destination.as_deref(),
    });
    journal.push(&effect, detail.as_ref());
    state.apply_new_charge(slot, &effect);
    memo.answer(Some(plan.handle), false)
}

/// An identity's type (as the charges layout numbers it) and value.
pub(crate) fn identity_parts(identity: &Identity) -> (u8, &str) {
    match identity {
        Identity::Msisdn(value) => (1, value),
        Identity::Imsi(value) => (2, value),
        Identity::SipUri(value) => (3, value),
        Identity::Nai(value) => (4, value),
    }
}

/// Refuses a record, to be remembered under its refusal key, so that a resumed run that
/// sends it again after a later record charged its key is told the same.
fn refuse(
    state: &ShardState,
    record: &RecordCharge,
    outcome: RecordOutcome,
    refusals: &mut Vec<Effect>,
) -> RecordAnswer {
    let key = record.key.refusal(record.origin);
    if let Some(memo) = Memo::refusal(outcome, record.origin) {
        if !state.recent_records.contains(&key) {
            refusals.push(Effect::RecordRefused(Box::new(RefusedRecord { key: key.0, memo })));
        }
    }
    RecordAnswer::refused(outcome)
}
