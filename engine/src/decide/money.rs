//! Moving money: debits across an account's money buckets (promotional ones first) and
//! credits to its main bucket.

use rust_decimal::Decimal;
use smallvec::SmallVec;

use crate::api::{Answer, Body, Outcome};
use crate::config::MAX_MONEY_BUCKETS;
use crate::decide::{Context, Transaction};
use crate::model::{Account, AccountId, BucketId, MoneyBucket};
use crate::records::MoneyMoves;
use crate::state::{Effect, MoneyKind};

/// Debits `amount` (≤ available) across the valid money buckets: lowest priority first,
/// then the earliest expiry; the main bucket takes the rest and may go negative only
/// down to the credit limit.
pub(crate) fn debit_money(tx: &mut Transaction<'_>, now: i64, account_id: AccountId, amount: Decimal, kind: MoneyKind) {
    let moves = money_moves(&tx.state().accounts[&account_id], now, amount);
    for (bucket, delta) in moves {
        tx.emit(Effect::Money { account: account_id, bucket, delta, kind: kind.clone() });
    }
}

/// How a debit of `amount` (≤ available) is taken from the valid money buckets: lowest
/// priority first, then the earliest expiry; the main bucket takes the rest and may go
/// negative only down to the credit limit. The deltas are negative.
pub(crate) fn money_moves(account: &Account, now: i64, amount: Decimal) -> MoneyMoves {
    let mut moves = MoneyMoves::new();
    let mut left = amount;
    if account.money.len() > 1 {
        let mut order: SmallVec<[(u32, i64, BucketId, Decimal); 4]> = account
            .money
            .iter()
            .filter(|b| b.id != 0 && b.is_valid_at(now) && b.balance > Decimal::ZERO)
            .map(|b| (b.priority, b.valid_until_at, b.id, b.balance))
            .collect();
        order.sort_unstable();
        for (_, _, bucket, balance) in order {
            if left.is_zero() {
                break;
            }
            let take = balance.min(left);
            moves.push((bucket, -take));
            left -= take;
        }
    }
    if !left.is_zero() {
        moves.push((0, -left));
    }
    moves
}

/// The most money one operation moves, and the most an account may hold: 10^15 of its
/// currency. Far beyond any real balance, and far below what a decimal holds (about
/// 7.9 × 10^28): unbounded, a top-up of 7.9 × 10^28, or two large ones on one shard,
/// overflowed the shard's totals and stopped the shard with a panic.
pub(crate) const MAX_MONEY: Decimal = Decimal::from_parts(0xA4C6_8000, 0x0003_8D7E, 0, false, 0);

/// Refuses an amount above [`MAX_MONEY`], or one that would take `account`'s balance
/// above it.
pub(crate) fn beyond_bounds(tx: &Transaction<'_>, account: AccountId, amount: Decimal) -> Option<Answer> {
    if amount.abs() > MAX_MONEY {
        return Some(Answer::outcome(Outcome::Invalid(format!("field `amount`: at most {MAX_MONEY}"))));
    }
    let balance = tx.state().accounts.get(&account).map_or(Decimal::ZERO, Account::balance);
    if balance.checked_add(amount).is_none_or(|after| after.abs() > MAX_MONEY) {
        return Some(Answer::outcome(Outcome::Invalid(format!(
            "field `amount`: the balance ({balance}) would pass {MAX_MONEY}"
        ))));
    }
    None
}

pub(crate) fn credit(tx: &mut Transaction<'_>, account: AccountId, amount: Decimal, kind: MoneyKind) -> Answer {
    if let Some(refused) = beyond_bounds(tx, account, amount) {
        return refused;
    }
    tx.emit(Effect::Money { account, bucket: 0, delta: amount, kind });
    Answer::new(Outcome::Success, Body::Money { balance_after: tx.state().accounts[&account].balance() })
}

/// Money paid in by the customer (a voucher, a payment), to the main bucket.
pub(crate) fn top_up(tx: &mut Transaction<'_>, account: AccountId, amount: Decimal, reference: &str) -> Answer {
    if amount <= Decimal::ZERO {
        return Answer::outcome(Outcome::Invalid("field `amount`: a top-up must be positive".to_owned()));
    }
    credit(tx, account, amount, MoneyKind::TopUp { reference: reference.to_owned() })
}

/// Money given back (a dropped call, a complaint), to the main bucket.
pub(crate) fn refund(tx: &mut Transaction<'_>, account: AccountId, amount: Decimal, reason: &str) -> Answer {
    if amount <= Decimal::ZERO {
        return Answer::outcome(Outcome::Invalid("field `amount`: a refund must be positive".to_owned()));
    }
    credit(tx, account, amount, MoneyKind::Refund { reason: reason.to_owned() })
}

/// A signed manual correction: a credit to the main bucket, or a debit like any other
/// (within what the account may spend).
pub(crate) fn adjust(
    tx: &mut Transaction<'_>,
    ctx: &Context<'_>,
    account: AccountId,
    amount: Decimal,
    reason: &str,
) -> Answer {
    if reason.trim().is_empty() {
        return Answer::outcome(Outcome::Invalid("field `reason`: an adjustment needs a reason".to_owned()));
    }
    let kind = MoneyKind::Adjustment { reason: reason.to_owned() };
    if amount >= Decimal::ZERO {
        return credit(tx, account, amount, kind);
    }
    if -amount > tx.state().accounts[&account].available(ctx.decided_at) {
        return Answer::outcome(Outcome::CreditLimitReached);
    }
    debit_money(tx, ctx.decided_at, account, -amount, kind);
    Answer::new(Outcome::Success, Body::Money { balance_after: tx.state().accounts[&account].balance() })
}

/// Money in a bucket of its own, spendable only inside `(valid_from_at, valid_until_at)`.
pub(crate) fn grant_credit(
    tx: &mut Transaction<'_>,
    ctx: &Context<'_>,
    account: AccountId,
    amount: Decimal,
    (valid_from_at, valid_until_at): (i64, i64),
    priority: u32,
    reference: &str,
) -> Answer {
    if amount <= Decimal::ZERO {
        return Answer::outcome(Outcome::Invalid("field `amount`: a credit must be positive".to_owned()));
    }
    if let Some(refused) = beyond_bounds(tx, account, amount) {
        return refused;
    }
    if valid_until_at <= valid_from_at || valid_until_at <= ctx.decided_at {
        return Answer::outcome(Outcome::Invalid(
            "field `valid_until`: after `valid_from` and in the future".to_owned(),
        ));
    }
    if tx.state().accounts[&account].money.len() >= MAX_MONEY_BUCKETS {
        return Answer::outcome(Outcome::Invalid(format!(
            "an account holds at most {MAX_MONEY_BUCKETS} money buckets"
        )));
    }
    let id = tx.state().accounts[&account].next_bucket;
    let bucket = MoneyBucket { id, balance: Decimal::ZERO, valid_from_at, valid_until_at, priority };
    tx.emit(Effect::MoneyBucketAdded { account, bucket: Box::new(bucket) });
    tx.emit(Effect::Money {
        account,
        bucket: id,
        delta: amount,
        kind: MoneyKind::TopUp { reference: reference.to_owned() },
    });
    Answer::new(Outcome::Success, Body::Money { balance_after: tx.state().accounts[&account].balance() })
}
