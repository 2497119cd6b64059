//! Online charging sessions: reservations per rating group, reported usage settled
//! against them, the session records that tell a known session from an unknown one, and
//! the reaper that releases what was not reported.

use rust_decimal::Decimal;

use crate::api::{Answer, Body, Grant, Outcome, ServiceRef, SessionStep, SmolStr, UnitRequest, Usage};
use crate::decide::debits::suspended_for;
use crate::decide::rating::{default_quota, rate_usage, renew_buckets, service_of, settle};
use crate::decide::{Context, Op, Transaction};
use crate::model::{BucketId, Reservation, SessionRecord};
use crate::state::{Effect, ShardState};

/// Releases every reservation that expired at `now`, and forgets the sessions whose
/// tombstone ended with none left open; returns the effects.
pub(crate) fn expire(state: &mut ShardState, now: i64) -> Vec<Effect> {
    let mut expired: Vec<(String, u32)> =
        state.reservations.iter().filter(|(_, r)| r.expires_at <= now).map(|(key, _)| key.clone()).collect();
    expired.sort();
    let mut tx = Transaction { state, effects: Vec::new() };
    for (session, rating_group) in expired {
        tx.emit(Effect::Released { session, rating_group });
    }
    let mut forgotten: Vec<String> =
        tx.state().sessions.values().filter(|r| r.forget_at <= now).map(|r| r.session.clone()).collect();
    forgotten.sort();
    for session in forgotten {
        if tx.state().open_groups(&session).is_empty() {
            tx.emit(Effect::SessionEnded { session });
        }
    }
    tx.effects
}

/// One step of an online session. Only a session the shard knows (open, or tombstoned
/// after its reservations expired) may report usage or ask for more: an update or a
/// termination of any other is `UnknownSession` and charges nothing.
#[allow(clippy::too_many_arguments)]
pub(crate) fn session_request(op: Op<'_, '_, '_>, session: &str, step: SessionStep, units: &[UnitRequest]) -> Answer {
    let Op { tx, ctx, account, subscription } = op;
    if units.len() > ctx.config.max_units_per_request {
        return Answer::outcome(Outcome::Invalid(format!(
            "more than {} rating groups in one request",
            ctx.config.max_units_per_request
        )));
    }
    // A rating group is one reservation: named twice in one request, each entry was
    // granted against it (two grants, the money reserved once).
    if let Some(twice) = units
        .iter()
        .enumerate()
        .find(|(i, unit)| units[..*i].iter().any(|earlier| earlier.rating_group == unit.rating_group))
    {
        return Answer::outcome(Outcome::Invalid(format!(
            "field `rating_group`: {} is named twice in one request (one reservation per rating group)",
            twice.1.rating_group
        )));
    }
    if step == SessionStep::Initial && suspended_for(tx.state(), subscription, ctx.decided_at) {
        return Answer::outcome(Outcome::ServiceDenied("the subscription is suspended".to_owned()));
    }
    let known = tx.state().sessions.get(session).map(|record| (record.account, record.subscription));
    let opened_here = match (step, known) {
        (_, Some(owner)) if owner != (account, subscription) => {
            return match step {
                SessionStep::Initial => Answer::outcome(Outcome::Invalid(
                    "field `session`: the session id is in use by another subscriber".to_owned(),
                )),
                _ => Answer::outcome(Outcome::UnknownSession),
            };
        }
        (SessionStep::Initial, None) => {
            let limit = ctx.config.max_sessions_per_subscription;
            if tx.state().sessions_of(subscription) >= limit {
                return Answer::outcome(Outcome::ServiceDenied(format!(
                    "the subscription has {limit} sessions, the most allowed; end one first"
                )));
            }
            tx.emit(Effect::SessionOpened(Box::new(SessionRecord {
                session: session.to_owned(),
                account,
                subscription,
                opened_at: ctx.decided_at,
                reported_at: ctx.decided_at,
                forget_at: session_forget_at(ctx),
                groups: Vec::new(),
            })));
            true
        }
        (_, None) => return Answer::outcome(Outcome::UnknownSession),
        (_, Some(_)) => false,
    };
    renew_buckets(tx, account, subscription, ctx.decided_at);
    let mut grants = Vec::with_capacity(units.len());
    let mut reported = Vec::new();
    for unit in units {
        if unit.used_units.is_some_and(|used| used > 0) {
            reported.push(unit.rating_group);
        }
        grants.push(session_unit(Op { tx: &mut *tx, ctx, account, subscription }, session, step, unit));
    }
    if step == SessionStep::Termination {
        for rating_group in tx.state().open_groups(session) {
            tx.emit(Effect::Released { session: session.to_owned(), rating_group });
        }
        tx.emit(Effect::SessionEnded { session: session.to_owned() });
    } else {
        reported.sort_unstable();
        reported.dedup();
        tx.emit(Effect::SessionReported {
            session: session.to_owned(),
            at: ctx.decided_at,
            forget_at: session_forget_at(ctx),
            reported,
        });
    }
    let outcome = if grants.iter().any(|g| g.outcome == Outcome::Success) || grants.is_empty() {
        Outcome::Success
    } else {
        grants[0].outcome.clone()
    };
    if opened_here && outcome != Outcome::Success && tx.state().open_groups(session).is_empty() {
        // A session that could not start is not one the network will report on.
        tx.emit(Effect::SessionEnded { session: session.to_owned() });
    }
    Answer::new(outcome, Body::Session { grants })
}

/// Until when a session decided now is remembered if nothing more is heard: its
/// reservations' expiry plus the tombstone period.
pub(crate) fn session_forget_at(ctx: &Context<'_>) -> i64 {
    let config = ctx.config;
    ctx.decided_at
        .saturating_add(i64::from(config.validity_seconds))
        .saturating_add(i64::from(config.reservation_grace_seconds))
        .saturating_add(i64::from(config.session_tombstone_seconds))
}

pub(crate) fn session_unit(op: Op<'_, '_, '_>, session: &str, step: SessionStep, unit: &UnitRequest) -> Grant {
    let Op { tx, ctx, account, subscription } = op;
    let validity_seconds = ctx.config.validity_seconds;
    let mut grant = Grant {
        rating_group: unit.rating_group,
        outcome: Outcome::Success,
        granted_units: 0,
        validity_seconds,
        final_unit: false,
        used_units: 0,
        charged: Decimal::ZERO,
    };
    let key = (session.to_owned(), unit.rating_group);
    let existing = tx.state().reservations.get(&key).cloned();
    let unit_service = unit.service.clone().unwrap_or(ServiceRef::RatingGroup(unit.rating_group));
    // 1. Settle reported usage against the reservation it was granted under.
    if let Some(used) = unit.used_units.filter(|u| *u > 0) {
        // Dated by the session's own times: the grant it was reserved under, else (its
        // reservation expired, or was settled without a new one) the last grant or
        // report of its rating group, else the session's last request.
        let (start, destination, held) = match &existing {
            Some(r) => (r.started_at, r.destination.as_deref().map(SmolStr::new), r.bucket_units.clone()),
            None => {
                let record = tx.state().sessions.get(session);
                let group = record.and_then(|r| r.group(unit.rating_group));
                let start = group.map(|g| g.usage_since_at).or(record.map(|r| r.reported_at)).unwrap_or(ctx.decided_at);
                let destination = group.and_then(|g| g.destination.as_deref()).map(SmolStr::new);
                (start.min(ctx.decided_at), destination, Vec::new())
            }
        };
        let usage = Usage {
            service: unit_service.clone(),
            rating_group: Some(unit.rating_group),
            destination: destination.or(unit.destination.clone()),
            start_utc_seconds: start,
            units: used,
        };
        let rated = rate_usage(ctx, tx.state(), subscription, &usage, &held);
        if existing.is_some() {
            tx.emit(Effect::Released { session: session.to_owned(), rating_group: unit.rating_group });
        }
        match rated {
            Ok((plan, mut rated)) => {
                // Usage past what the balance can pay (the network over-ran its grant) is
                // charged only up to the available money: a prepaid balance never goes negative.
                let available = tx.state().accounts[&account].available(ctx.decided_at).max(Decimal::ZERO);
                if rated.amount > available {
                    rated.amount = available;
                }
                settle(tx, ctx, subscription, plan, &usage, &rated);
                grant.used_units = used;
                grant.charged = rated.amount;
            }
            Err(outcome) => grant.outcome = outcome,
        }
    } else if existing.is_some() {
        tx.emit(Effect::Released { session: session.to_owned(), rating_group: unit.rating_group });
    }
    if step == SessionStep::Termination || grant.outcome != Outcome::Success {
        return grant;
    }
    // 2. Reserve for the next stretch (none while suspended: what was used is charged).
    if suspended_for(tx.state(), subscription, ctx.decided_at) {
        grant.outcome = Outcome::ServiceDenied("the subscription is suspended".to_owned());
        return grant;
    }
    let open = tx.state().open_groups(session).len();
    if open >= ctx.config.max_reservations_per_session {
        grant.outcome =
            Outcome::Invalid(format!("more than {} open rating groups", ctx.config.max_reservations_per_session));
        return grant;
    }
    let plan = tx
        .state()
        .subscriptions
        .get(&subscription)
        .and_then(|s| ctx.plans.at(tx.state().plan_id(s, ctx.decided_at), ctx.decided_at));
    let Some(service) = plan.and_then(|p| service_of(p, &unit_service).map(|s| p.services[usize::from(s)].unit)) else {
        grant.outcome = Outcome::RatingFailed("unknown_service".to_owned());
        return grant;
    };
    // More than one usage event may report is asked for less (RFC 4006 §5.1.1: the server
    // may grant fewer units than requested); rating it whole would refuse the request.
    let requested =
        unit.requested_units.unwrap_or_else(|| default_quota(ctx.config, service)).min(service.max_per_event());
    if requested == 0 {
        return grant;
    }
    let quote = |tx: &Transaction<'_>, units: u64| {
        let usage = Usage {
            service: unit_service.clone(),
            rating_group: Some(unit.rating_group),
            destination: unit.destination.clone(),
            start_utc_seconds: ctx.decided_at,
            units,
        };
        rate_usage(ctx, tx.state(), subscription, &usage, &[])
    };
    let available = tx.state().accounts[&account].available(ctx.decided_at);
    let (granted, rated) = match quote(tx, requested) {
        Err(outcome) => {
            grant.outcome = outcome;
            return grant;
        }
        // Grants are judged on the exact price, before rounding: a grant whose rounded
        // price is 0.00 is still not free, and never exceeds the credit that exists.
        Ok((_, rated)) if rated.exact_amount.max(rated.amount) <= available => (requested, rated),
        Ok(_) => {
            // Largest affordable grant: rating is monotone in units, so bisect.
            let (mut low, mut high) = (0u64, requested);
            let mut best = None;
            while low < high {
                let mid = low + (high - low).div_ceil(2);
                match quote(tx, mid) {
                    Ok((_, rated)) if rated.exact_amount.max(rated.amount) <= available => {
                        low = mid;
                        best = Some(rated);
                    }
                    _ => high = mid - 1,
                }
            }
            match best {
                Some(rated) if low > 0 => {
                    grant.final_unit = true;
                    (low, rated)
                }
                _ => {
                    grant.outcome = Outcome::CreditLimitReached;
                    return grant;
                }
            }
        }
    };
    grant.granted_units = granted;
    // A grant lasts no longer than what pays for it: a promotional money bucket or an
    // allowance that ends sooner ends the grant with it (Validity-Time), so the network
    // reports and asks again then. Granted for the full validity, usage reported after a
    // bonus expired found no money behind the grant and went uncharged.
    let validity_seconds = {
        let state = tx.state();
        let account_row = &state.accounts[&account];
        let money_ends = account_row
            .money
            .iter()
            .filter(|b| b.id != 0 && b.balance > Decimal::ZERO && b.is_valid_at(ctx.decided_at))
            .map(|b| b.valid_until_at);
        let units_end = rated
            .draws
            .iter()
            .filter_map(|draw| account_row.units.iter().find(|b| b.id == draw.bucket as BucketId))
            .map(|b| b.valid_until_at);
        let ends = money_ends.chain(units_end).min().unwrap_or(i64::MAX);
        let left = ends.saturating_sub(ctx.decided_at).max(1);
        u32::try_from(left).map_or(validity_seconds, |left| left.min(validity_seconds))
    };
    grant.validity_seconds = validity_seconds;
    tx.emit(Effect::Reserved(Box::new(Reservation {
        session: session.to_owned(),
        rating_group: unit.rating_group,
        subscription,
        account,
        started_at: ctx.decided_at,
        granted_units: granted,
        money: rated.amount,
        bucket_units: rated.draws.iter().map(|d| (d.bucket as BucketId, d.units)).collect(),
        expires_at: ctx.decided_at + i64::from(validity_seconds) + i64::from(ctx.config.reservation_grace_seconds),
        destination: unit.destination.as_ref().map(SmolStr::to_string),
    })));
    grant
}
