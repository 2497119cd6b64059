//! One-shot charges: a direct debit (or a price enquiry), and the rerate of a record
//! charged on the bulk path.

use tollgate_tariffs::rate_with_paid_units;

use crate::api::{Answer, Body, Outcome, Rerated, Usage};
use crate::decide::money::debit_money;
use crate::decide::rating::{
    accumulate, charged, charged_body, memo_of, rate_usage, renew_buckets, settle, usage_event,
};
use crate::decide::Op;
use crate::records::RecordKey;
use crate::state::{Effect, MoneyKind, RecordRerated};

/// Prices (and with `commit`, charges) one usage, all or nothing.
pub(crate) fn debit(op: Op<'_, '_, '_>, usage: &Usage, commit: bool) -> Answer {
    let Op { tx, ctx, account, subscription } = op;
    if commit && suspended_for(tx.state(), subscription, usage.start_utc_seconds) {
        return Answer::outcome(Outcome::ServiceDenied("the subscription is suspended".to_owned()));
    }
    if commit {
        renew_buckets(tx, account, subscription, usage.start_utc_seconds.max(ctx.decided_at));
    }
    let (plan, rated) = match rate_usage(ctx, tx.state(), subscription, usage, &[]) {
        Ok(rated) => rated,
        Err(outcome) => return Answer::outcome(outcome),
    };
    let balance = tx.state().accounts[&account].balance();
    if !commit {
        return Answer::new(Outcome::Success, charged_body(plan, &rated, balance));
    }
    if rated.amount > tx.state().accounts[&account].available(ctx.decided_at) {
        return Answer::outcome(Outcome::CreditLimitReached);
    }
    settle(tx, ctx, subscription, plan, usage, &rated);
    let balance_after = tx.state().accounts[&account].balance();
    Answer::new(Outcome::Success, charged_body(plan, &rated, balance_after))
}

/// Re-prices a charged record with the plan version now in force for its start (see
/// [`Operation::Rerate`]). The old charge goes back to the main money bucket, the new one
/// is taken like any debit, the usage total moves by the difference, and the record's memo
/// becomes the new charge, so a repeat of the record still gets its current answer.
pub(crate) fn rerate(op: Op<'_, '_, '_>, record: &str, usage: &Usage) -> Answer {
    let Op { tx, ctx, account, subscription } = op;
    let key = RecordKey::of(record);
    let Some(old) = tx.state().recent_records.get(&key).copied() else {
        return Answer::outcome(Outcome::UnknownRecord);
    };
    let priced = usage_event(ctx, tx.state(), subscription, usage).and_then(|(plan, event)| {
        rate_with_paid_units(plan, &event, old.allowance_units).map(|rated| (plan, rated)).map_err(|u| u.code())
    });
    let (plan, rated) = match priced {
        Ok(priced) => priced,
        Err(code) => return Answer::outcome(Outcome::RatingFailed(code.to_owned())),
    };
    let memo = memo_of(&rated, old.origin);
    let holder = &tx.state().accounts[&account];
    let answer = |balance_after, changed| {
        let charged = charged(plan, &rated, balance_after);
        Answer::new(
            Outcome::Success,
            Body::Rerated(Box::new(Rerated { previous_amount: old.amount, charged, changed })),
        )
    };
    if memo == old {
        return answer(holder.balance(), false);
    }
    if rated.amount > holder.available(ctx.decided_at) + old.amount {
        return Answer::outcome(Outcome::CreditLimitReached);
    }
    let reason = || MoneyKind::Rerate { record: record.to_owned() };
    if !old.amount.is_zero() {
        tx.emit(Effect::Money { account, bucket: 0, delta: old.amount, kind: reason() });
    }
    if !rated.amount.is_zero() {
        debit_money(tx, ctx.decided_at, account, rated.amount, reason());
    }
    accumulate(tx, account, plan, rated.service, usage.start_utc_seconds, 0, rated.amount - old.amount);
    tx.emit(Effect::RecordRerated(Box::new(RecordRerated { key: key.0, memo })));
    answer(tx.state().accounts[&account].balance(), true)
}

/// Whether usage of `subscription` starting `at` falls in a suspension: its own, or its
/// account's.
pub(crate) fn suspended_for(
    state: &crate::state::ShardState,
    subscription: crate::model::SubscriptionId,
    at: i64,
) -> bool {
    let since = |found: Option<i64>| found.is_some_and(|since| since <= at);
    since(state.lifecycle_of(subscription).and_then(|l| l.suspended_at))
        || (!state.suspended.is_empty()
            && since(state.subscriptions.get(&subscription).and_then(|sub| state.suspended.get(&sub.account).copied())))
}
