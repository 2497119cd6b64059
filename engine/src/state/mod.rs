//! One shard's state and how an effect changes it.
//!
//! A request is *decided* against the current state (`crate::decide`): every change it
//! makes is emitted as an [`Effect`], applied at once (so the rest of the request sees it)
//! and collected. The effects of one request form one journal record; recovery applies
//! the same effects with the same code ([`ShardState::apply`]), so a replayed journal
//! reproduces the state exactly, whatever the plans or the rating code are by then.

mod effect;
pub(crate) use effect::LEGACY_TOMBSTONE_SECONDS;
pub use effect::{Effect, MoneyKind, RatedDetail, RecordRerated, RefusedRecord};

use rust_decimal::Decimal;
use std::sync::Arc;
use tollgate_tariffs::plan::{Period, RkyvDecimal};

use crate::accounts::AccountTable;
use crate::dedupe::RecentAnswers;
use crate::model::{
    Account, AccountId, AccountKind, AllowancePeriod, BucketId, Lifecycle, Reservation, SessionRecord, Subscription,
    SubscriptionId, UnitBucket, UsageTotal,
};
use crate::records::{ChargeEffect, RecentRecords, RecordCharge, RecordKey, ServiceName};
use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};

/// Running totals of money movements, for the conservation check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct Totals {
    #[rkyv(with = RkyvDecimal)]
    pub opening: Decimal,
    #[rkyv(with = RkyvDecimal)]
    pub charged: Decimal,
    #[rkyv(with = RkyvDecimal)]
    pub top_ups: Decimal,
    #[rkyv(with = RkyvDecimal)]
    pub refunds: Decimal,
    #[rkyv(with = RkyvDecimal)]
    pub adjustments: Decimal,
}

/// Hash maps of the shard state: foldhash is fast and seeded per process, so keys sent
/// from outside (idempotency keys, session ids) cannot be crafted to collide.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Records looked up as one run ahead of the one being charged ([`ShardState::prepare`]).
pub(crate) const WARM_AHEAD: usize = 16;

/// How far ahead of the record being charged its account's buckets are prefetched.
pub(crate) const BUCKETS_AHEAD: usize = 4;

/// How far ahead of the record being charged its key's window lines are prefetched.
pub(crate) const KEYS_AHEAD: usize = 24;

/// The state of one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardState {
    /// Sequence number of the last journal record applied.
    pub lsn: u64,
    pub accounts: AccountTable,
    pub subscriptions: Map<SubscriptionId, Subscription>,
    pub reservations: Map<(String, u32), Reservation>,
    /// The online sessions the shard knows, open or tombstoned.
    pub sessions: Map<String, SessionRecord>,
    /// How many of `sessions` each subscription has (derived from them; never archived):
    /// what `max_sessions_per_subscription` is checked against.
    pub sessions_per_subscription: Map<SubscriptionId, u32>,
    pub recent: RecentAnswers,
    /// The exactly-once window of the bulk record path.
    pub recent_records: RecentRecords,
    pub totals: Totals,
    /// One copy of each plan id the subscriptions name.
    pub plan_ids: PlanIds,
    /// The subscriptions suspended, terminated or moved to another plan, and how.
    pub lifecycle: Map<SubscriptionId, Lifecycle>,
    /// Closed accounts, with when they closed.
    pub closed: Map<AccountId, i64>,
    /// Suspended accounts, with since when.
    pub suspended: Map<AccountId, i64>,
    /// Per account, its allowances' periods that ended (the last [`MAX_ALLOWANCE_PERIODS`]).
    pub allowance_history: Map<AccountId, Vec<AllowancePeriod>>,
}

/// Ended allowance periods kept per account (two years of monthly allowances for a
/// handful of subscriptions).
pub(crate) const MAX_ALLOWANCE_PERIODS: usize = 96;

/// The plan ids of a shard's subscriptions, one shared copy each. Not part of the state
/// a shard compares or archives: it only decides which copy a subscription points to.
#[derive(Debug, Clone, Default)]
pub struct PlanIds(Vec<Arc<str>>);

impl PlanIds {
    /// The shared copy of `id` (a plan has a handful of ids, so a scan is enough).
    pub fn share(&mut self, id: &Arc<str>) -> Arc<str> {
        if let Some(shared) = self.0.iter().find(|shared| shared[..] == id[..]) {
            return Arc::clone(shared);
        }
        self.0.push(Arc::clone(id));
        Arc::clone(id)
    }
}

impl PartialEq for PlanIds {
    fn eq(&self, _: &PlanIds) -> bool {
        true
    }
}

impl Eq for PlanIds {}

/// What a broken invariant looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl ShardState {
    pub fn new(dedupe_window: usize) -> ShardState {
        ShardState {
            recent: RecentAnswers::new(dedupe_window),
            recent_records: RecentRecords::new(dedupe_window),
            ..ShardState::default()
        }
    }

    /// Before charging `records[positions[at]]`: when `at` starts a run of
    /// [`WARM_AHEAD`] records, looks up what the next run reads first (its subscriptions
    /// and accounts) and starts loading the accounts' records; then starts loading the
    /// buckets of the record [`BUCKETS_AHEAD`] on and the window's index line for the key
    /// of the record [`KEYS_AHEAD`] on. The lookups of a run do not depend on each other,
    /// so their cache misses overlap instead of each record waiting for its own. The
    /// window's lines are prefetched one record at a time, outside the run's burst: that
    /// cut the window lookups' share of the time from 4.7 % to 3.2 %.
    pub fn prepare(&self, records: &[RecordCharge], positions: &[usize], at: usize) {
        if at.is_multiple_of(WARM_AHEAD) {
            let from = if at == 0 { 0 } else { at + WARM_AHEAD };
            let run = positions.get(from..positions.len().min(at + 2 * WARM_AHEAD)).unwrap_or(&[]);
            for record in run.iter().filter_map(|position| records.get(*position)) {
                // The lookup reads the subscription's key; its account (the first field
                // charging reads) may sit on the next cache line. A read of it, not a
                // prefetch: prefetching the subscription's lines measured no gain,
                // reading it 6 % more records a second (likely because a burst of
                // prefetches this size outruns the core's miss buffers).
                if let Some(sub) = self.subscriptions.get(&record.subscription) {
                    std::hint::black_box(sub.account);
                }
                self.prefetch_account(record.account);
            }
        }
        if let Some(ahead) = positions.get(at + BUCKETS_AHEAD).and_then(|position| records.get(*position)) {
            self.prefetch_buckets(ahead.account);
        }
        if let Some(ahead) = positions.get(at + KEYS_AHEAD).and_then(|position| records.get(*position)) {
            self.recent_records.prefetch(&ahead.key);
        }
    }

    /// Starts loading the account `id`'s record (first of two steps before charging it).
    pub fn prefetch_account(&self, id: AccountId) {
        if let Some(account) = self.accounts.get(&id) {
            crate::prefetch::lines(account, std::mem::size_of::<Account>());
        }
    }

    /// Starts loading the account's unit buckets and usage totals (second step, once the
    /// account's record is in the cache).
    pub fn prefetch_buckets(&self, id: AccountId) {
        if let Some(account) = self.accounts.get(&id) {
            crate::prefetch::lines(account.units.as_ptr(), std::mem::size_of_val(account.units.as_slice()));
            if account.usage.spilled() {
                crate::prefetch::lines(account.usage.as_ptr(), std::mem::size_of_val(account.usage.as_slice()));
            }
        }
    }

    /// Applies one charged record (the bulk path's only effect). Used identically by live
    /// processing and by recovery.
    pub fn apply_charge(&mut self, charge: &ChargeEffect<'_>) {
        if let Some(slot) = self.accounts.slot(&charge.account) {
            self.charge_account(slot, charge);
        }
        self.recent_records.insert(charge.key, charge.memo);
    }

    /// [`ShardState::apply_charge`] for a record just decided: its account is at `slot`
    /// and its key is in neither generation of the window.
    pub(crate) fn apply_new_charge(&mut self, slot: usize, charge: &ChargeEffect<'_>) {
        self.charge_account(slot, charge);
        self.recent_records.insert_absent(charge.key, charge.memo);
    }

    fn charge_account(&mut self, slot: usize, charge: &ChargeEffect<'_>) {
        let account = self.accounts.at_mut(slot);
        for (bucket, units) in &charge.draws {
            if let Some(b) = account.units.iter_mut().find(|b| b.id == *bucket) {
                b.remaining = b.remaining.saturating_sub(*units);
            }
        }
        for (bucket, delta) in &charge.moves {
            if let Some(money) = account.money.iter_mut().find(|b| b.id == *bucket) {
                money.balance += *delta;
            }
            self.totals.charged -= *delta;
        }
        add_usage(account, charge.cycle_start_at, charge.service, charge.memo.charged_units, charge.memo.amount);
    }

    /// Applies one effect. Used identically by live processing and by recovery.
    pub fn apply(&mut self, effect: &Effect) {
        match effect {
            Effect::AccountCreated(account) => self.accounts.insert((**account).clone()),
            Effect::SubscriptionCreated { subscription, buckets } => {
                if let Some(account) = self.accounts.get_mut(&subscription.account) {
                    for bucket in buckets {
                        account.next_bucket = account.next_bucket.max(bucket.id + 1);
                        account.units.push(bucket.clone());
                    }
                }
                let mut subscription = (**subscription).clone();
                subscription.plan = self.plan_ids.share(&subscription.plan);
                self.subscriptions.insert(subscription.id, subscription);
            }
            Effect::Money { account, bucket, delta, kind } => {
                if let Some(money) =
                    self.accounts.get_mut(account).and_then(|a| a.money.iter_mut().find(|b| b.id == *bucket))
                {
                    money.balance += *delta;
                }
                let totals = &mut self.totals;
                match kind {
                    MoneyKind::Opening => totals.opening += *delta,
                    MoneyKind::Charge | MoneyKind::Rerate { .. } => totals.charged -= *delta,
                    MoneyKind::TopUp { .. } => totals.top_ups += *delta,
                    MoneyKind::Refund { .. } => totals.refunds += *delta,
                    MoneyKind::Adjustment { .. } => totals.adjustments += *delta,
                }
            }
            Effect::MoneyBucketAdded { account, bucket } => {
                if let Some(account) = self.accounts.get_mut(account) {
                    account.next_bucket = account.next_bucket.max(bucket.id + 1);
                    account.money.push((**bucket).clone());
                }
            }
            Effect::Units { account, bucket, consumed } => {
                if let Some(units) = self.unit_bucket_mut(*account, *bucket) {
                    units.remaining = units.remaining.saturating_sub(*consumed);
                }
            }
            Effect::BucketRenewed { account, bucket, valid_from_at, valid_until_at } => {
                let ended = self.unit_bucket_mut(*account, *bucket).map(|units| {
                    let ended = period_of(units);
                    units.valid_from_at = *valid_from_at;
                    units.valid_until_at = *valid_until_at;
                    units.remaining = units.granted;
                    ended
                });
                if let Some(ended) = ended {
                    self.remember_period(*account, ended);
                }
            }
            Effect::Reserved(reservation) => {
                if let Some(account) = self.accounts.get_mut(&reservation.account) {
                    account.reserved += reservation.money;
                    for (bucket, units) in &reservation.bucket_units {
                        if let Some(b) = account.units.iter_mut().find(|b| b.id == *bucket) {
                            b.reserved += units;
                        }
                    }
                }
                self.note_grant(reservation);
                self.reservations
                    .insert((reservation.session.clone(), reservation.rating_group), (**reservation).clone());
            }
            Effect::Released { session, rating_group } => {
                if let Some(reservation) = self.reservations.remove(&(session.clone(), *rating_group)) {
                    if let Some(account) = self.accounts.get_mut(&reservation.account) {
                        account.reserved -= reservation.money;
                        for (bucket, units) in &reservation.bucket_units {
                            if let Some(b) = account.units.iter_mut().find(|b| b.id == *bucket) {
                                b.reserved = b.reserved.saturating_sub(*units);
                            }
                        }
                    }
                }
            }
            Effect::Usage { account, cycle_start_at, service, units, amount } => {
                if let Some(account) = self.accounts.get_mut(account) {
                    add_usage(account, *cycle_start_at, ServiceName::Shared(service), *units, *amount);
                }
            }
            Effect::Remembered { key, answer } => self.recent.insert(key, std::sync::Arc::clone(answer)),
            Effect::RecordRerated(rerated) => {
                self.recent_records.replace(&RecordKey(rerated.key), rerated.memo);
            }
            Effect::SessionOpened(record) => {
                if self.sessions.insert(record.session.clone(), (**record).clone()).is_none() {
                    *self.sessions_per_subscription.entry(record.subscription).or_default() += 1;
                }
            }
            Effect::SessionReported { session, at, forget_at, reported } => {
                if let Some(record) = self.sessions.get_mut(session) {
                    record.reported_at = *at;
                    record.forget_at = record.forget_at.max(*forget_at);
                    for rating_group in reported {
                        record.mark_group(*rating_group, *at, None);
                    }
                }
            }
            Effect::SessionEnded { session } => {
                if let Some(record) = self.sessions.remove(session) {
                    self.uncount_session(record.subscription);
                }
            }
            Effect::PlanScheduled { subscription, effective_at, plan } => {
                let lifecycle = self.lifecycle.entry(*subscription).or_default();
                lifecycle.plans.retain(|(at, _)| at < effective_at);
                lifecycle.plans.push((*effective_at, plan.clone()));
            }
            Effect::BucketsRetired { subscription, at } => {
                let account = self.subscriptions.get(subscription).map(|s| s.account);
                let mut ended = Vec::new();
                if let Some(holder) = account.and_then(|a| self.accounts.get_mut(&a)) {
                    for bucket in holder.units.iter_mut().filter(|b| b.subscription == *subscription) {
                        if bucket.period != Period::Once || bucket.valid_until_at > *at {
                            if bucket.valid_from_at < *at {
                                ended.push(period_of(bucket));
                            }
                            bucket.valid_until_at = bucket.valid_until_at.min(*at);
                            bucket.period = Period::Once;
                        }
                    }
                }
                for period in ended {
                    if let Some(account) = account {
                        self.remember_period(account, period);
                    }
                }
            }
            Effect::BucketsGranted { account, buckets } => {
                if let Some(account) = self.accounts.get_mut(account) {
                    for bucket in buckets {
                        account.next_bucket = account.next_bucket.max(bucket.id + 1);
                        account.units.push(bucket.clone());
                    }
                }
            }
            Effect::Suspended { subscription, at } => {
                self.lifecycle.entry(*subscription).or_default().suspended_at = Some(*at);
            }
            Effect::Resumed { subscription } => {
                if let Some(lifecycle) = self.lifecycle.get_mut(subscription) {
                    lifecycle.suspended_at = None;
                    if lifecycle.is_default() {
                        self.lifecycle.remove(subscription);
                    }
                }
            }
            Effect::Terminated { subscription, at } => {
                self.lifecycle.entry(*subscription).or_default().terminated_at = Some(*at);
            }
            Effect::IdentityAdded { subscription, identity } => {
                if let Some(sub) = self.subscriptions.get_mut(subscription) {
                    if !sub.identities.contains(identity) {
                        sub.identities.push(identity.clone());
                    }
                }
            }
            Effect::IdentityRemoved { subscription, identity } => {
                if let Some(sub) = self.subscriptions.get_mut(subscription) {
                    sub.identities.retain(|known| known != identity);
                }
            }
            Effect::CreditLimitSet { account, credit_limit } => {
                if let Some(account) = self.accounts.get_mut(account) {
                    account.credit_limit = *credit_limit;
                }
            }
            Effect::AccountKindChanged { account, kind } => {
                if let Some(account) = self.accounts.get_mut(account) {
                    account.kind = *kind;
                }
            }
            Effect::AccountClosed { account, at } => {
                self.closed.insert(*account, *at);
            }
            Effect::AccountSuspended { account, at } => {
                self.suspended.insert(*account, *at);
            }
            Effect::AccountResumed { account } => {
                self.suspended.remove(account);
            }
            Effect::RecordRefused(refused) => self.recent_records.insert(RecordKey(refused.key), refused.memo),
            Effect::Rated(_) => {}
        }
    }

    /// Keeps an allowance period that ended in its account's history.
    fn remember_period(&mut self, account: AccountId, period: AllowancePeriod) {
        let history = self.allowance_history.entry(account).or_default();
        history.push(period);
        if history.len() > MAX_ALLOWANCE_PERIODS {
            history.remove(0);
        }
    }

    /// Enters the shard's live subscriptions and their identities in the directory (a
    /// terminated subscription's are free for others).
    pub(crate) fn register(&self, directory: &crate::directory::Directory) {
        for subscription in self.subscriptions.values() {
            if self.lifecycle_of(subscription.id).is_none_or(|l| l.terminated_at.is_none()) {
                directory.restore(subscription.id, subscription.account, &subscription.identities);
            }
        }
    }

    /// The plan a subscription's usage at `at` is priced by.
    pub(crate) fn plan_id<'s>(&'s self, subscription: &'s Subscription, at: i64) -> &'s str {
        if self.lifecycle.is_empty() {
            return &subscription.plan;
        }
        self.lifecycle.get(&subscription.id).and_then(|l| l.plan_at(at)).unwrap_or(&subscription.plan)
    }

    /// The subscription's lifecycle, if it has one.
    pub(crate) fn lifecycle_of(&self, subscription: SubscriptionId) -> Option<&Lifecycle> {
        if self.lifecycle.is_empty() {
            return None;
        }
        self.lifecycle.get(&subscription)
    }

    /// A grant dates the usage its rating group reports next. A reservation journaled
    /// before sessions had records of their own makes one.
    pub fn note_grant(&mut self, reservation: &Reservation) {
        if !self.sessions.contains_key(&reservation.session) {
            *self.sessions_per_subscription.entry(reservation.subscription).or_default() += 1;
        }
        let record = self.sessions.entry(reservation.session.clone()).or_insert_with(|| SessionRecord {
            session: reservation.session.clone(),
            account: reservation.account,
            subscription: reservation.subscription,
            opened_at: reservation.started_at,
            reported_at: reservation.started_at,
            forget_at: reservation.expires_at.saturating_add(LEGACY_TOMBSTONE_SECONDS),
            groups: Vec::new(),
        });
        record.mark_group(reservation.rating_group, reservation.started_at, reservation.destination.as_deref());
    }

    fn uncount_session(&mut self, subscription: SubscriptionId) {
        if let Some(count) = self.sessions_per_subscription.get_mut(&subscription) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.sessions_per_subscription.remove(&subscription);
            }
        }
    }

    /// `sessions` counted per subscription.
    fn session_counts(&self) -> Map<SubscriptionId, u32> {
        let mut counts: Map<SubscriptionId, u32> = Map::default();
        for record in self.sessions.values() {
            *counts.entry(record.subscription).or_default() += 1;
        }
        counts
    }

    /// Counts `sessions` per subscription again (after they were loaded from an image).
    pub(crate) fn recount_sessions(&mut self) {
        self.sessions_per_subscription = self.session_counts();
    }

    /// The sessions subscription `subscription` has, open or tombstoned.
    pub(crate) fn sessions_of(&self, subscription: SubscriptionId) -> u32 {
        self.sessions_per_subscription.get(&subscription).copied().unwrap_or(0)
    }

    /// The open reservations of `session`, as (rating group) in ascending order.
    pub(crate) fn open_groups(&self, session: &str) -> Vec<u32> {
        let Some(record) = self.sessions.get(session) else { return Vec::new() };
        let mut key = (session.to_owned(), 0);
        let mut open = Vec::new();
        for group in &record.groups {
            key.1 = group.rating_group;
            if self.reservations.contains_key(&key) {
                open.push(group.rating_group);
            }
        }
        open.sort_unstable();
        open
    }

    fn unit_bucket_mut(&mut self, account: AccountId, bucket: BucketId) -> Option<&mut UnitBucket> {
        self.accounts.get_mut(&account)?.units.iter_mut().find(|b| b.id == bucket)
    }

    /// Checks the money invariants; returns every violation found.
    pub fn check_invariants(&self, now: i64) -> Vec<Violation> {
        let mut violations = Vec::new();
        let mut balances = Decimal::ZERO;
        for account in self.accounts.values() {
            balances += account.balance();
            for bucket in &account.money {
                let floor = if bucket.id == 0 { -account.credit_limit } else { Decimal::ZERO };
                if bucket.balance < floor {
                    violations.push(Violation(format!(
                        "account {} bucket {} is at {} below its floor {floor}",
                        account.id, bucket.id, bucket.balance
                    )));
                }
            }
            if account.kind == AccountKind::Prepaid && account.balance() < Decimal::ZERO {
                violations.push(Violation(format!(
                    "prepaid account {} is negative: {}",
                    account.id,
                    account.balance()
                )));
            }
            if account.reserved < Decimal::ZERO
                || account.reserved > account.spendable(now).max(account.reserved_floor())
            {
                violations.push(Violation(format!(
                    "account {} reserves {} of {} spendable",
                    account.id,
                    account.reserved,
                    account.spendable(now)
                )));
            }
            for bucket in &account.units {
                if bucket.reserved > bucket.remaining || bucket.remaining > bucket.granted {
                    violations.push(Violation(format!(
                        "account {} unit bucket {}: reserved {} remaining {} granted {}",
                        account.id, bucket.id, bucket.reserved, bucket.remaining, bucket.granted
                    )));
                }
            }
            let held: Decimal = self.reservations.values().filter(|r| r.account == account.id).map(|r| r.money).sum();
            if held != account.reserved {
                violations.push(Violation(format!(
                    "account {} holds {} in reservations but records {}",
                    account.id, held, account.reserved
                )));
            }
        }
        for reservation in self.reservations.values() {
            let known = self.sessions.get(&reservation.session).is_some_and(|record| {
                record.account == reservation.account && record.group(reservation.rating_group).is_some()
            });
            if !known {
                violations.push(Violation(format!(
                    "reservation of session {} rating group {} has no session record",
                    reservation.session, reservation.rating_group
                )));
            }
        }
        let counted = self.session_counts();
        if counted != self.sessions_per_subscription {
            violations.push(Violation(format!(
                "sessions per subscription are counted as {:?} but the records make {counted:?}",
                self.sessions_per_subscription
            )));
        }
        let t = &self.totals;
        let expected = t.opening + t.top_ups + t.refunds + t.adjustments - t.charged;
        if balances != expected {
            violations.push(Violation(format!(
                "money is not conserved: balances {balances} ≠ opening {} + top-ups {} + refunds {} + adjustments {} − charged {}",
                t.opening, t.top_ups, t.refunds, t.adjustments, t.charged
            )));
        }
        violations
    }
}

impl Account {
    /// Reservations made while buckets were valid may outlive a bucket's expiry; the
    /// check then only requires what is reserved to stay non-negative.
    fn reserved_floor(&self) -> Decimal {
        Decimal::ZERO
    }
}

/// Adds one rated usage to the account's accumulator for its cycle and service. `service`
/// is usually the plan's shared name, so the search compares pointers before text and a
/// new total shares the name instead of copying it.
pub(crate) fn add_usage(
    account: &mut Account,
    cycle_start_at: i64,
    service: ServiceName<'_>,
    units: u64,
    amount: Decimal,
) {
    let text = service.as_str();
    let same = |name: &std::sync::Arc<str>| std::ptr::eq(name.as_ptr(), text.as_ptr()) || **name == *text;
    match account.usage.iter_mut().find(|u| u.cycle_start_at == cycle_start_at && same(&u.service)) {
        Some(total) => {
            total.events += 1;
            total.units += units;
            total.amount += amount;
        }
        None => {
            account.usage.push(UsageTotal { cycle_start_at, service: service.to_shared(), events: 1, units, amount })
        }
    }
}

/// The period a unit bucket holds now, for the allowance history.
fn period_of(bucket: &UnitBucket) -> AllowancePeriod {
    AllowancePeriod {
        subscription: bucket.subscription,
        allowance: bucket.allowance,
        bucket: bucket.id,
        valid_from_at: bucket.valid_from_at,
        valid_until_at: bucket.valid_until_at,
        granted: bucket.granted,
        used: bucket.granted.saturating_sub(bucket.remaining),
    }
}
