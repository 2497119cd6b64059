//! Prepaid balances (TMF654) on [`Customers`]: top-ups and adjustments recorded with their
//! engine operation in the outbox and applied at once through the [`EnginePort`], each
//! idempotent by the client's id; the balance view read from the engine, which alone holds
//! balances; and [`Customers::settle`], which records what the engine answered to an outbox
//! row: a balance request completed or failed, or a refused account change undone.
//!
//! **A request is recorded before the engine sees it, and only once:** the request row, its
//! outbox row (key `bss:{topup|adjust}:{id}`, ordered after the account's earlier
//! operations) and the audit record commit together; the same id with the same request
//! answers what was recorded without a second engine operation, with another request it is
//! a 409. Applied at once when the engine answers; otherwise the worker delivers it, and
//! the engine's exactly-once by key makes a repeat harmless.

use jiff::Timestamp;
use serde_json::{json, Value};
use tollgate_store::{
    parse_renewal_key, BalanceActionFilter, BalanceActionKind, BalanceActionRow, BalanceActionStatus,
    BillingAccountRow, NewOutboxItem, OutboxItem, Role,
};

use crate::balance::{parse_balance_request, parse_bucket_id, resource_of, BalanceRequest};
use crate::engine::{ordering_key, EngineOperation, Revert, RevertField, ADJUST, RENEWAL_FEE, TOP_UP};
use crate::error::{CustomersError, Result};
use crate::lifecycle::AccountState;
use crate::port::{EngineAccount, EngineAnswer};
use crate::service::{audit, publish_account, Customers, Principal};

/// The attributes a list of top-ups or adjustments may be filtered on.
pub const BALANCE_ACTION_FILTERS: [&str; 2] = ["partyAccount.id", "status"];

/// The audit trail's entity type of a prepaid renewal (`STATEMENT/ACCOUNT`).
pub const RENEWAL_ENTITY: &str = "PrepaidRenewal";

/// The audit actor of what the engine answered.
pub const ENGINE_ACTOR: &str = "engine";

/// What a top-up or adjustment request got.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceOutcome {
    /// The request's TMF654 document, with its status.
    pub doc: Value,
    /// False when it repeated an earlier request (same id, same request).
    pub created: bool,
}

/// What [`Customers::settle`] did with an engine answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Recorded: a balance request's answer, or a change the engine applied.
    Recorded,
    /// The engine refused a change and the billing account was put back as it was.
    Reverted,
    /// The engine refused a change whose field the account no longer holds: a later change
    /// of the same field was recorded since and follows this row to the engine (same
    /// ordering key), so nothing is put back; the audit record says so. (Also what a retry
    /// of an already settled refusal finds.)
    Superseded(String),
    /// Nothing here knows what to do with this refusal (an account creation): the caller
    /// treats the row as failed.
    Unhandled,
}

/// The engine idempotency key (and outbox key) of a balance request.
pub fn balance_key(kind: BalanceActionKind, id: &str) -> String {
    format!("bss:{}:{id}", kind.as_str())
}

fn entity_type(kind: BalanceActionKind) -> &'static str {
    match kind {
        BalanceActionKind::TopUp => "TopupBalance",
        BalanceActionKind::Adjust => "AdjustBalance",
    }
}

impl Customers {
    /// Records a top-up or an adjustment (the request's JSON bytes, TMF654
    /// `TopupBalance_Create` / `AdjustBalance_Create`), applies it through the engine at once
    /// if there is one, and answers its document. Admin and care may do both, finance only
    /// adjust, a partner only top up an account of its hierarchy. The account must be in
    /// the amount's currency and not closed; an adjustment that would take more than the
    /// engine says is available is refused (409) before it is recorded.
    pub async fn request_balance_action(
        &self,
        who: &Principal,
        kind: BalanceActionKind,
        body: &[u8],
        now: Timestamp,
    ) -> Result<BalanceOutcome> {
        let allowed = match kind {
            BalanceActionKind::TopUp => matches!(who.role, Role::Admin | Role::Care | Role::Partner),
            BalanceActionKind::Adjust => matches!(who.role, Role::Admin | Role::Care | Role::Finance),
        };
        if !allowed {
            return Err(CustomersError::forbidden(format!("a {} may not {}", who.role, resource_of(kind))));
        }
        let request = parse_balance_request(kind, body)?;
        let Some(account) = self.store.billing_account(&request.account_id).await? else {
            let refused =
                CustomersError::invalid("partyAccount.id", format!("no billing account {}", request.account_id));
            return Err(who.unknown(&format!("billing account {}", request.account_id), refused));
        };
        Self::reach_account(who, &account.value)?;
        if let Some(existing) = self.store.balance_action(kind, &request.id).await? {
            return self.repeat(&request, &existing);
        }
        if request.units != account.value.currency {
            return Err(CustomersError::invalid(
                "amount.units",
                format!("{} is not the account's currency, {}", request.units, account.value.currency),
            ));
        }
        if account.value.state == AccountState::Closed.as_str() {
            return Err(CustomersError::Conflict {
                field: "partyAccount.id".into(),
                reason: format!("billing account {} is Closed", account.value.id),
            });
        }
        if request.amount.is_sign_negative() {
            if let Some(engine) = &self.engine {
                if let Ok(Some(found)) = engine.account(account.value.engine_account_id).await {
                    if -request.amount > found.available {
                        return Err(CustomersError::Conflict {
                            field: "amount.amount".into(),
                            reason: format!(
                                "the account has {} {} available, less than {}",
                                found.available, found.currency, -request.amount
                            ),
                        });
                    }
                }
            }
        }
        let key = balance_key(kind, &request.id);
        let row = BalanceActionRow {
            kind,
            id: request.id.clone(),
            billing_account_id: account.value.id.clone(),
            amount: request.amount,
            currency: request.units.clone(),
            request: request.normalised.clone(),
            idempotency_key: key.clone(),
            status: BalanceActionStatus::Created,
            balance_after: None,
            failure_reason: None,
            actor: who.actor.clone(),
            requested_at: now,
            confirmed_at: None,
        };
        let operation = operation_of(&request, account.value.engine_account_id);
        let mut tx = self.store.begin().await?;
        if let Err(error) = tx.insert_balance_action(&row).await {
            drop(tx);
            // Another request with this id committed first: a repeat, or a conflict.
            if let Some(existing) = self.store.balance_action(kind, &request.id).await? {
                return self.repeat(&request, &existing);
            }
            return Err(CustomersError::from_store("balance action", error));
        }
        let ordering = ordering_key(&account.value.id);
        let payload = operation.payload();
        let item = NewOutboxItem {
            idempotency_key: &key,
            kind: operation.kind(),
            ordering_key: Some(&ordering),
            payload: &payload,
        };
        let outbox_id = tx.enqueue(item, now).await?;
        let doc = self.roots().action_doc(&row);
        audit(&mut tx, who, "create", entity_type(kind), &request.id, None, Some(&doc), now).await?;
        let Some(engine) = &self.engine else {
            tx.commit().await?;
            return Ok(BalanceOutcome { doc, created: true });
        };
        tx.commit_without_waking().await?;
        // Not applied now (the engine is unavailable, an earlier operation of the account
        // is still waiting): the worker applies it; the answer says `created`.
        let _ = engine.apply_now(outbox_id).await;
        let stored = self.store.balance_action(kind, &request.id).await?;
        let doc = stored.map_or(doc, |row| self.roots().action_doc(&row));
        Ok(BalanceOutcome { doc, created: true })
    }

    fn repeat(&self, request: &BalanceRequest, existing: &BalanceActionRow) -> Result<BalanceOutcome> {
        if existing.request != request.normalised {
            return Err(CustomersError::Conflict {
                field: "id".into(),
                reason: format!(
                    "{} {} was made with another request; a new request needs a new id",
                    resource_of(request.kind),
                    request.id
                ),
            });
        }
        Ok(BalanceOutcome { doc: self.roots().action_doc(existing), created: false })
    }

    /// A top-up or adjustment.
    pub async fn get_balance_action(&self, who: &Principal, kind: BalanceActionKind, id: &str) -> Result<Value> {
        let missing = || who.missing(entity_type(kind), id);
        let row = self.store.balance_action(kind, id).await?.ok_or_else(missing)?;
        if who.root()?.is_some() {
            let account = self.store.billing_account(&row.billing_account_id).await?.ok_or_else(missing)?;
            Self::reach_account(who, &account.value)?;
        }
        Ok(self.roots().action_doc(&row))
    }

    /// Top-ups or adjustments matching the filters ([`BALANCE_ACTION_FILTERS`]), oldest
    /// first; a partner's only those of its hierarchy.
    pub async fn list_balance_actions<'a>(
        &self,
        who: &Principal,
        kind: BalanceActionKind,
        filters: impl IntoIterator<Item = (&'a str, &'a str)>,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<Value>, i64)> {
        let mut filter = BalanceActionFilter {
            kind,
            billing_account_id: None,
            status: None,
            root_id: who.root()?.map(str::to_owned),
        };
        for (name, value) in filters {
            let slot = match name {
                "partyAccount.id" => &mut filter.billing_account_id,
                "status" => &mut filter.status,
                other => {
                    return Err(CustomersError::invalid(
                        other,
                        format!("cannot filter on {other:?} (only {})", BALANCE_ACTION_FILTERS.join(", ")),
                    ))
                }
            };
            if slot.replace(value.to_owned()).is_some() {
                return Err(CustomersError::invalid(name, "given twice"));
            }
        }
        let page = self.store.balance_action_list(&filter, offset, limit).await?;
        let roots = self.roots();
        Ok((page.items.iter().map(|row| roots.action_doc(row)).collect(), page.total))
    }

    /// A billing account the caller may read, and the engine's account behind it.
    async fn engine_view(&self, who: &Principal, id: &str) -> Result<(BillingAccountRow, EngineAccount)> {
        let found = self.store.billing_account(id).await?;
        let account = found.ok_or_else(|| who.missing("BillingAccount", id))?;
        Self::reach_account(who, &account.value)?;
        let Some(engine) = &self.engine else {
            return Err(CustomersError::EngineUnavailable { reason: "this server has no engine".into() });
        };
        match engine.account(account.value.engine_account_id).await {
            Ok(Some(view)) => Ok((account.value, view)),
            Ok(None) => Err(CustomersError::EngineUnavailable {
                reason: format!("the engine has not created billing account {id}'s account yet"),
            }),
            Err(error) => Err(CustomersError::EngineUnavailable { reason: error.0 }),
        }
    }

    /// A billing account's buckets (TMF654 `Bucket`): its money buckets and its
    /// subscriptions' allowances, as the engine holds them at `now`.
    pub async fn buckets(&self, who: &Principal, account_id: &str, now: Timestamp) -> Result<Vec<Value>> {
        let (account, view) = self.engine_view(who, account_id).await?;
        Ok(self.roots().buckets(&account, &view, now))
    }

    /// One bucket, by its id (`{billingAccountId}-{bucket}`).
    pub async fn bucket(&self, who: &Principal, id: &str, now: Timestamp) -> Result<Value> {
        let not_found = || CustomersError::NotFound { kind: "Bucket", id: id.to_owned() };
        let (account_id, _) = parse_bucket_id(id).ok_or_else(not_found)?;
        let buckets = match self.buckets(who, account_id, now).await {
            Err(CustomersError::NotFound { .. }) => return Err(not_found()),
            other => other?,
        };
        buckets.into_iter().find(|bucket| bucket["id"] == id).ok_or_else(not_found)
    }

    /// A billing account's accumulated balance (TMF654 `AccumulatedBalance`, id = the
    /// billing account's).
    pub async fn accumulated_balance(&self, who: &Principal, account_id: &str) -> Result<Value> {
        let (account, view) = match self.engine_view(who, account_id).await {
            Err(CustomersError::NotFound { id, .. }) => {
                return Err(CustomersError::NotFound { kind: "AccumulatedBalance", id })
            }
            other => other?,
        };
        Ok(self.roots().accumulated(&account, &view))
    }

    /// Records what the engine answered to outbox row `item` (the link calls it before the
    /// row is marked done): a balance request becomes `completed` with the balance after
    /// it, or `failed` with the engine's reason; a refused account change (state, kind,
    /// credit limit) is undone on the billing account by a versioned update, audited with
    /// the engine's reason, if the account still holds the value the change set.
    pub async fn settle(&self, item: &OutboxItem, answer: &EngineAnswer, now: Timestamp) -> Result<Settled> {
        match item.kind.as_str() {
            TOP_UP | ADJUST => self.settle_balance_action(item, answer, now).await,
            RENEWAL_FEE => self.settle_renewal(item, answer, now).await,
            _ => match answer {
                EngineAnswer::Applied { .. } => Ok(Settled::Recorded),
                EngineAnswer::Refused { reason } => {
                    let revert =
                        Revert::from_outbox(item).map_err(|reason| CustomersError::invalid("payload", reason))?;
                    match revert {
                        Some(revert) => self.revert(item, &revert, reason, now).await,
                        None => Ok(Settled::Unhandled),
                    }
                }
            },
        }
    }

    async fn settle_balance_action(&self, item: &OutboxItem, answer: &EngineAnswer, now: Timestamp) -> Result<Settled> {
        let mut tx = self.store.begin().await?;
        let Some(before) = tx.balance_action_by_key(&item.idempotency_key).await? else {
            return Err(CustomersError::NotFound { kind: "balance action", id: item.idempotency_key.clone() });
        };
        let (status, balance_after, reason) = match answer {
            EngineAnswer::Applied { balance_after } => (BalanceActionStatus::Completed, *balance_after, None),
            EngineAnswer::Refused { reason } => (BalanceActionStatus::Failed, None, Some(reason.as_str())),
        };
        if tx.settle_balance_action(&item.idempotency_key, status, balance_after, reason, now).await? {
            let after = BalanceActionRow {
                status,
                balance_after,
                failure_reason: reason.map(str::to_owned),
                confirmed_at: Some(now),
                ..before.clone()
            };
            let roots = self.roots();
            let (before_doc, after_doc) = (roots.action_doc(&before), roots.action_doc(&after));
            let who = Principal::admin(ENGINE_ACTOR);
            audit(
                &mut tx,
                &who,
                status.as_str(),
                entity_type(before.kind),
                &before.id,
                Some(&before_doc),
                Some(&after_doc),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Settled::Recorded)
    }

    /// Records what the engine answered to a renewal's debit: paid, or unpaid with the
    /// engine's reason (the receivables' renewal run tries again, and suspends past the
    /// grace). Only the attempt under way is recorded, audited with the renewal's state.
    /// A refusal is told to the account's `renewal_refused` thresholds in the same
    /// transaction, once per renewal.
    async fn settle_renewal(&self, item: &OutboxItem, answer: &EngineAnswer, now: Timestamp) -> Result<Settled> {
        let Some((invoice, account, attempt)) = parse_renewal_key(&item.idempotency_key) else {
            return Err(CustomersError::invalid(
                "idempotency_key",
                format!("{:?} is not a renewal key", item.idempotency_key),
            ));
        };
        let refused = match answer {
            EngineAnswer::Applied { .. } => None,
            EngineAnswer::Refused { reason } => Some(reason.as_str()),
        };
        let mut tx = self.store.begin().await?;
        if tx.settle_renewal(invoice, account, attempt, refused, now).await? {
            if refused.is_some() {
                // The customer is told once per renewal, with the refusal (its retries
                // find the crossing recorded).
                if let Some(renewal) = tx.renewal(invoice, account).await? {
                    crate::threshold::record_renewal_refused(&mut tx, &self.templates, &renewal, now).await?;
                }
            }
            let after = json!({"statement": invoice, "billingAccount": account, "attempt": attempt,
                "state": if refused.is_some() { "unpaid" } else { "paid" }, "reason": refused,
                "amount": item.payload.get("amount")});
            let who = Principal::admin(ENGINE_ACTOR);
            let id = format!("{invoice}/{account}");
            let action = if refused.is_some() { "refused" } else { "paid" };
            audit(&mut tx, &who, action, RENEWAL_ENTITY, &id, None, Some(&after), now).await?;
        }
        tx.commit().await?;
        Ok(Settled::Recorded)
    }

    async fn revert(&self, item: &OutboxItem, revert: &Revert, reason: &str, now: Timestamp) -> Result<Settled> {
        let id = &revert.billing_account;
        let mut tx = self.store.begin().await?;
        let Some(current) = tx.billing_account(id).await? else {
            return Ok(Settled::Superseded(format!("billing account {id} no longer exists")));
        };
        let row = &current.value;
        let restored = match &revert.field {
            RevertField::State { set, before } if &row.state == set => {
                Some(BillingAccountRow { state: before.clone(), ..row.clone() })
            }
            RevertField::AccountType { set, before }
                if row.account_type == set.0.as_str() && row.credit_limit == set.1 =>
            {
                Some(BillingAccountRow {
                    account_type: before.0.as_str().into(),
                    credit_limit: before.1,
                    ..row.clone()
                })
            }
            RevertField::CreditLimit { set, before } if row.credit_limit == *set => {
                Some(BillingAccountRow { credit_limit: *before, ..row.clone() })
            }
            _ => None,
        };
        let before_doc = self.doc(row);
        let who = Principal::admin(ENGINE_ACTOR);
        let refusal = json!({"operation": item.kind, "key": item.idempotency_key, "reason": reason});
        let settled = match restored {
            Some(restored) => {
                tx.update_billing_account(&restored, current.version, now)
                    .await
                    .map_err(|e| CustomersError::from_store("BillingAccount", e))?;
                let restored_doc = self.doc(&restored);
                let after = json!({"document": restored_doc, "engineRefused": refusal});
                audit(&mut tx, &who, "engine-refused", "BillingAccount", id, Some(&before_doc), Some(&after), now)
                    .await?;
                // Listeners saw the change; they see it undone, as any other change.
                let event = match revert.field {
                    RevertField::State { .. } => "BillingAccountStateChangeEvent",
                    _ => "BillingAccountAttributeValueChangeEvent",
                };
                publish_account(&mut tx, event, id, &restored_doc, now).await?;
                Settled::Reverted
            }
            None => {
                let after = json!({"document": before_doc, "engineRefused": refusal, "reverted": false});
                audit(&mut tx, &who, "engine-refused", "BillingAccount", id, Some(&before_doc), Some(&after), now)
                    .await?;
                Settled::Superseded(format!(
                    "the engine refused {} on billing account {id} ({reason}); the account has changed since",
                    item.kind
                ))
            }
        };
        tx.commit().await?;
        Ok(settled)
    }
}

/// The engine operation of a balance request on engine account `account`.
fn operation_of(request: &BalanceRequest, account: u64) -> EngineOperation {
    match request.kind {
        BalanceActionKind::TopUp => {
            let voucher = request.voucher.as_deref().map(|v| format!(" voucher {v}")).unwrap_or_default();
            EngineOperation::TopUp {
                account,
                amount: request.amount,
                reference: format!("topupBalance {}{voucher}", request.id),
            }
        }
        BalanceActionKind::Adjust => EngineOperation::Adjust {
            account,
            amount: request.amount,
            reason: format!("adjustBalance {}: {}", request.id, request.reason.as_deref().unwrap_or("")),
        },
    }
}
