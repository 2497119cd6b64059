//! An account's history read back from the journal (archived segments included): every
//! change the engine made to it, typed, so that no caller decodes journal effects.

use std::path::Path;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::error::EngineError;
use crate::model::{AccountId, SubscriptionId};
use crate::state::{Effect, MoneyKind};

/// One change of an account, at the journal position that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// The shard's log sequence number of the journal record.
    pub lsn: u64,
    /// When the change was decided (Unix seconds).
    pub decided_at: i64,
    #[serde(flatten)]
    pub event: HistoryEvent,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HistoryEvent {
    AccountCreated {
        kind: &'static str,
        currency: String,
        credit_limit: Decimal,
    },
    Subscribed {
        subscription: SubscriptionId,
        plan: String,
        identities: Vec<String>,
    },
    OpeningBalance {
        bucket: u32,
        delta: Decimal,
    },
    Charge {
        bucket: u32,
        delta: Decimal,
    },
    TopUp {
        bucket: u32,
        delta: Decimal,
        note: String,
    },
    Refund {
        bucket: u32,
        delta: Decimal,
        note: String,
    },
    Adjustment {
        bucket: u32,
        delta: Decimal,
        note: String,
    },
    /// A rerate refunds a record's old charge (positive) and takes its new one (negative).
    RerateRefund {
        bucket: u32,
        delta: Decimal,
        note: String,
    },
    RerateCharge {
        bucket: u32,
        delta: Decimal,
        note: String,
    },
    MoneyBucketAdded {
        bucket: u32,
        #[serde(rename = "valid_from")]
        valid_from_at: i64,
        #[serde(rename = "valid_until")]
        valid_until_at: i64,
        priority: u32,
    },
    UnitsConsumed {
        bucket: u32,
        units: u64,
    },
    BucketRenewed {
        bucket: u32,
        #[serde(rename = "valid_from")]
        valid_from_at: i64,
        #[serde(rename = "valid_until")]
        valid_until_at: i64,
    },
    Reserved {
        session: String,
        rating_group: u32,
        money: Decimal,
        units: u64,
    },
}

/// The history of `account` in the data directory `dir` with `shards` shards, oldest
/// first. Reads closed and live segments; safe while the engine runs (it only appends).
pub fn read(dir: &Path, shards: usize, account: AccountId) -> Result<Vec<HistoryEntry>, EngineError> {
    let shard = crate::runtime::shard_of(account, shards) as u32;
    let mut found = Vec::new();
    for (lsn, entry) in crate::recovery::read_history(dir, shard)? {
        for effect in &entry.effects {
            if let Some(event) = event_of(effect, account) {
                found.push(HistoryEntry { lsn, decided_at: entry.decided_at, event });
            }
        }
    }
    Ok(found)
}

fn event_of(effect: &Effect, account: AccountId) -> Option<HistoryEvent> {
    Some(match effect {
        Effect::AccountCreated(a) if a.id == account => HistoryEvent::AccountCreated {
            kind: a.kind.name(),
            currency: a.currency_code().to_owned(),
            credit_limit: a.credit_limit,
        },
        Effect::SubscriptionCreated { subscription, .. } if subscription.account == account => {
            HistoryEvent::Subscribed {
                subscription: subscription.id,
                plan: subscription.plan.to_string(),
                identities: subscription.identities.iter().map(crate::model::Identity::key).collect(),
            }
        }
        Effect::Money { account: a, bucket, delta, kind } if *a == account => {
            let (bucket, delta) = (*bucket, *delta);
            match kind {
                MoneyKind::Opening => HistoryEvent::OpeningBalance { bucket, delta },
                MoneyKind::Charge => HistoryEvent::Charge { bucket, delta },
                MoneyKind::TopUp { reference } => HistoryEvent::TopUp { bucket, delta, note: reference.clone() },
                MoneyKind::Refund { reason } => HistoryEvent::Refund { bucket, delta, note: reason.clone() },
                MoneyKind::Adjustment { reason } => HistoryEvent::Adjustment { bucket, delta, note: reason.clone() },
                MoneyKind::Rerate { record } if delta.is_sign_positive() => {
                    HistoryEvent::RerateRefund { bucket, delta, note: record.clone() }
                }
                MoneyKind::Rerate { record } => HistoryEvent::RerateCharge { bucket, delta, note: record.clone() },
            }
        }
        Effect::MoneyBucketAdded { account: a, bucket } if *a == account => HistoryEvent::MoneyBucketAdded {
            bucket: bucket.id,
            valid_from_at: bucket.valid_from_at,
            valid_until_at: bucket.valid_until_at,
            priority: bucket.priority,
        },
        Effect::Units { account: a, bucket, consumed } if *a == account => {
            HistoryEvent::UnitsConsumed { bucket: *bucket, units: *consumed }
        }
        Effect::BucketRenewed { account: a, bucket, valid_from_at, valid_until_at } if *a == account => {
            HistoryEvent::BucketRenewed {
                bucket: *bucket,
                valid_from_at: *valid_from_at,
                valid_until_at: *valid_until_at,
            }
        }
        Effect::Reserved(r) if r.account == account => HistoryEvent::Reserved {
            session: r.session.clone(),
            rating_group: r.rating_group,
            money: r.money,
            units: r.granted_units,
        },
        _ => return None,
    })
}
