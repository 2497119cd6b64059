//! The durable provisioning workflow: one claimed task at a time ([`Workflow::run`]). A
//! task is one step of one order item (the steps are [`Action::steps`]); running it
//! forward does the step, running it backward undoes it. What a step changes in the store
//! (a reservation, the product's row, the inventories at completion) commits in the same
//! transaction as the task's outcome and the next task's turn, so a crash leaves either
//! both or neither. What it changes outside (the engine, the network) is sent under a key
//! derived from the order, the item and the step, the same on every attempt: the engine
//! and the gateway apply a key once, so a crash between the call and the commit is
//! repaired by calling again.
//!
//! A claimed task runs as a chain ([`Workflow::run`]): while its steps are done, the
//! worker goes on with the item's next step, claimed for it in the transaction that
//! records the step before, and commits only where it must. Steps that change only the
//! store ([`Step::is_store_only`]) share one transaction with the item's start and with
//! the outcomes of the outside steps before them; a transaction commits before each
//! outside call, and the outcomes of outside calls in a row are recorded together. A new
//! line is two commits after its claim (its start, reservations and row; then the engine's
//! and the network's outcomes with its completion) instead of one per step and claim.
//!
//! Outcomes: done (the next step becomes due), skipped (no network activation
//! configured), retry (a transient failure: due again after exponential backoff, until the
//! attempts run out), fail (permanent: the done steps are undone in reverse order, then the
//! item fails). A cancellation accepted for the order turns the next forward step into the
//! first backward one, unless the item is past its irreversible step. Every transaction
//! that finishes a task first locks the order's row, so items of one order and a
//! cancellation serialise on it.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Value};
use tollgate_activation::{
    ActivationError, ActivationOutcome, ActivationRequest, Activator, Iccid, Imsi, Msisdn, Operation, RequestId,
    ServiceProfile, Subscriber,
};
use tollgate_store::{
    new_entity_id, CancelRow, LineRow, NextPeriod, OrderItemRow, ProductOrderRow, ProductPeriod, RetryPolicy,
    ServiceRow, SubscriptionRow, TaskOutcome, TaskRow, Tx, Versioned,
};

use crate::action::{Action, Step};
use crate::docs::{identity, line_doc};
use crate::error::{OrdersError, Result};
use crate::health::StepHealth;
use crate::ports::{EngineAnswer, EngineCall, EngineOperation, EngineTarget, ResourceKind};
use crate::service::{audit, line_allows, Orders, WORKFLOW_ACTOR};
use crate::state::{ItemState, OrderState};

/// How long a held item waits before it looks again whether the earlier order on its
/// product has finished.
const HOLD_RETRY: Duration = Duration::from_secs(1);

/// What one attempt of a step (or of its undoing) came to.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Done(Value),
    Skipped(&'static str),
    /// Try again later (after `after`, or the policy's backoff).
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// It will not work: compensate (forward) or stop for an operator (backward).
    Fail(String),
}

/// The provisioning workflow over [`Orders`], an optional network activator and a retry
/// policy (its `lease` is how long a claim holds a task).
#[derive(Debug, Clone)]
pub struct Workflow {
    orders: Orders,
    activator: Option<Arc<dyn Activator>>,
    policy: RetryPolicy,
    health: Arc<StepHealth>,
}

/// A claimed task with what it needs: its order, item and the item's other tasks.
#[derive(Clone)]
struct Context {
    order: ProductOrderRow,
    item: OrderItemRow,
    action: Action,
    step: Step,
    tasks: Vec<TaskRow>,
    claimed: TaskRow,
}

impl Context {
    /// The result of the done (or undone later) task of `step`.
    fn result(&self, step: Step) -> Option<&Value> {
        self.tasks.iter().find(|task| task.step == step.as_str()).and_then(|task| task.result.as_ref())
    }

    fn result_text(&self, step: Step, field: &str) -> Option<String> {
        self.result(step).and_then(|result| result.get(field)).and_then(Value::as_str).map(str::to_owned)
    }

    fn request(&self, field: &str) -> Option<&str> {
        self.item.request.get(field).and_then(Value::as_str)
    }

    /// Who holds the item's reservations in the inventory.
    fn owner(&self) -> String {
        format!("order:{}:{}", self.order.id, self.item.item_id)
    }

    /// The idempotency key of this step's engine call (or network request id), or of its undoing.
    fn key(&self, undo: bool) -> String {
        let suffix = if undo { ":undo" } else { "" };
        format!("order:{}:{}:{}{suffix}", self.order.id, self.item.item_id, self.step.as_str())
    }

    /// The line the item acts on (an add-on's parent line).
    fn line_id(&self) -> &str {
        match self.action {
            Action::AddAddOn | Action::RemoveAddOn => self.request("parentId").unwrap_or(&self.item.product_id),
            _ => &self.item.product_id,
        }
    }

    /// Whether a cancellation turns this forward step back: accepted, and the item not
    /// past its irreversible step.
    fn cancel_applies(&self) -> bool {
        self.order.cancelling
            && !self
                .tasks
                .iter()
                .any(|task| task.state == "done" && Step::parse(&task.step).is_some_and(|step| !step.is_reversible()))
    }

    /// Whether the claimed step calls outside the store and was claimed before (each claim
    /// counts an attempt) without a definite answer: a timeout or a 5xx, or a worker that
    /// died mid-call. It may have been carried out.
    fn outcome_unknown(&self) -> bool {
        !self.step.is_store_only() && self.claimed.attempts > 1
    }

    /// The task after the claimed one, if any.
    fn next_task(&self) -> Option<&TaskRow> {
        self.tasks.iter().find(|task| task.position == self.claimed.position + 1)
    }

    /// The context of `next`, claimed after the claimed task ended `state` with `result`
    /// (kept in memory, so later steps of the chain read it).
    fn followed_by(mut self, next: TaskRow, state: &str, result: Option<Value>) -> Result<Context> {
        let Some(step) = Step::parse(&next.step) else {
            return Err(OrdersError::conflict("step", format!("task {} names an unknown step", next.seq)));
        };
        let claimed = self.claimed.seq;
        for task in &mut self.tasks {
            if task.seq == claimed {
                task.state = state.to_owned();
                if result.is_some() {
                    task.result = result.clone();
                }
            } else if task.seq == next.seq {
                *task = next.clone();
            }
        }
        self.step = step;
        self.claimed = next;
        Ok(self)
    }

    /// The task to undo before `position`: the last done, reversible one.
    fn previous_done(&self, position: i64) -> Option<&TaskRow> {
        self.tasks.iter().rev().find(|task| {
            task.position < position && task.state == "done" && Step::parse(&task.step).is_some_and(Step::is_reversible)
        })
    }
}

fn classify(error: OrdersError) -> Outcome {
    match error {
        OrdersError::Store(error) => Outcome::Retry { error: format!("store: {error}"), after: None },
        other => Outcome::Fail(other.to_string()),
    }
}

fn engine_outcome(answer: EngineAnswer) -> Outcome {
    match answer {
        EngineAnswer::Applied => Outcome::Done(json!({})),
        EngineAnswer::Refused(reason) => Outcome::Fail(format!("the charging engine refused: {reason}")),
        EngineAnswer::Unavailable(reason) => {
            Outcome::Retry { error: format!("the charging engine is unavailable: {reason}"), after: None }
        }
    }
}

fn activation_outcome(outcome: ActivationOutcome) -> Outcome {
    match outcome {
        ActivationOutcome::Done { reference } => Outcome::Done(json!({"reference": reference})),
        ActivationOutcome::Transient { reason, retry_after_ms } => Outcome::Retry {
            error: format!("network activation: {reason}"),
            after: retry_after_ms.map(Duration::from_millis),
        },
        ActivationOutcome::Permanent { code, reason } => {
            Outcome::Fail(format!("the network refused the activation: {code}: {reason}"))
        }
    }
}

/// How a done step's transaction went on ([`Workflow::advance_chain`]).
enum Chain {
    /// The next step, claimed for this worker in the same transaction.
    Next(TaskRow),
    /// The item is complete.
    Ended,
    /// The claim no longer held: another worker has the task.
    Stale,
}

/// What a step's outcome tells the step health once it commits: done (`None`) or failed
/// for good (the message).
type Notes = Vec<(Step, Option<String>)>;

/// The state and result a done or skipped step is recorded with.
fn finished(outcome: &Outcome) -> Option<(&'static str, Value)> {
    match outcome {
        Outcome::Done(result) => Some(("done", result.clone())),
        Outcome::Skipped(reason) => Some(("skipped", json!({"skipped": reason}))),
        _ => None,
    }
}

fn after(now: Timestamp, delay: Duration) -> Timestamp {
    let delay = jiff::SignedDuration::try_from(delay).unwrap_or(jiff::SignedDuration::MAX);
    now.checked_add(delay).unwrap_or(Timestamp::MAX)
}

/// The state an item's settled tasks give it once its compensation has ended.
fn compensated_state(tasks: &[TaskRow]) -> ItemState {
    if tasks.iter().any(|task| task.state == "failed") {
        ItemState::Failed
    } else {
        ItemState::Cancelled
    }
}

impl Workflow {
    /// The workflow of `orders`' orders; `activator` `None` is the "no network
    /// activation" mode: every activation step completes as skipped.
    pub fn new(orders: Orders, activator: Option<Arc<dyn Activator>>, policy: RetryPolicy) -> Workflow {
        Workflow { orders, activator, policy, health: Arc::default() }
    }

    /// The steps' last outcomes (a fault watcher's view: a step failing for good, and
    /// done again).
    pub fn health(&self) -> &Arc<StepHealth> {
        &self.health
    }

    /// The orders.
    pub fn orders(&self) -> &Orders {
        &self.orders
    }

    /// The retry policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Runs one attempt of a task [claimed](tollgate_store::Store::claim_provisioning_tasks)
    /// at `now`. A store failure is returned (the claim's lease runs out and the task is
    /// tried again); every other outcome is the task's.
    pub async fn run(&self, claimed: &TaskRow, now: Timestamp) -> Result<()> {
        let store = self.orders.store();
        let Some((order, items)) = store.product_order_detail(&claimed.order_id).await? else { return Ok(()) };
        let Some((item, tasks)) = items.into_iter().find(|(item, _)| item.item_id == claimed.item_id) else {
            return Ok(());
        };
        // The claim no longer holds (its lease ran out and another worker went on).
        if !tasks
            .iter()
            .any(|task| task.seq == claimed.seq && task.state == claimed.state && task.attempts == claimed.attempts)
        {
            return Ok(());
        }
        let (Some(step), Some(action)) = (Step::parse(&claimed.step), Action::parse(&item.action)) else {
            return Err(OrdersError::conflict("step", format!("task {} names an unknown step or action", claimed.seq)));
        };
        let context = Context { order: order.value, item, action, step, tasks, claimed: claimed.clone() };
        if claimed.state == "undo" {
            let (outcome, tx) = settled(self.undo(&context, now).await)?;
            self.conclude_undo(&context, outcome, tx, now).await
        } else {
            // A step tried before without a definite answer (a timeout, a 5xx) may have
            // taken effect on the network or in the engine: it is tried again under its
            // key until it answers, rather than abandoned, so a cancellation undoes it if
            // it was done (the chain turns back after it) instead of freeing a number the
            // network still holds.
            if context.cancel_applies() && !context.outcome_unknown() {
                return self.abandon(&context, now).await;
            }
            self.run_forward(context, now).await
        }
    }

    /// Runs a claimed forward task and, while its steps are done, the item's steps after
    /// it, with as few commits as the outside calls allow. Steps that only change the store
    /// run in one transaction (with the item's start, and the outcomes of the outside
    /// steps before them); a transaction commits before every outside call, so what the
    /// call depends on is durable first (a new line's row fixes its engine subscription
    /// id); outside steps in a row run one after the other, their outcomes recorded in the
    /// next transaction. Each step after the first is claimed for this worker in the
    /// transaction that records the one before it, so a crash leaves it to its lease; an
    /// outside call whose outcome was not recorded is made again on resumption, under the
    /// same key (the engine and the gateway apply a key once).
    ///
    /// Every step of the chain is claimed and recorded at `now`, the pass's instant (the
    /// caller's clock; tests pass fixed instants, and product periods take their dates
    /// from it): a chain longer than a lease may see a later step claimed by another pass,
    /// and the claim check stops one of the two.
    async fn run_forward(&self, mut context: Context, now: Timestamp) -> Result<()> {
        let mut tx: Option<Tx> = None;
        // Outside steps done whose outcomes are not recorded yet, in order.
        let mut deferred: Vec<(Context, Outcome)> = Vec::new();
        let mut notes = Notes::new();
        let state = ItemState::parse(&context.item.state).unwrap_or(ItemState::InProgress);
        if matches!(state, ItemState::Acknowledged | ItemState::Pending | ItemState::Held) {
            let mut open = self.begin(&mut context).await?;
            if !self.start_in(&mut open, &context, now).await? {
                open.commit().await?;
                return Ok(());
            }
            if context.step.is_store_only() {
                tx = Some(open);
            } else {
                open.commit().await?;
            }
        }
        let mut first = true;
        loop {
            if tx.is_none() && !first {
                // A transaction begins (a store step), or an outside call follows an
                // outside call: a cancellation accepted meanwhile turns the chain back here.
                let cancelling = if context.step.is_store_only() {
                    let mut open = self.begin(&mut context).await?;
                    if !self.record_deferred(&mut open, &mut deferred, &mut notes, now).await? {
                        return self.commit(open, notes).await;
                    }
                    let cancelling = context.cancel_applies();
                    tx = Some(open);
                    cancelling
                } else {
                    if let Some(order) = self.orders.store().product_order(&context.order.id).await? {
                        context.order = order.value;
                    }
                    context.cancel_applies()
                };
                if cancelling {
                    let mut open = match tx.take() {
                        Some(open) => open,
                        None => self.begin(&mut context).await?,
                    };
                    if self.record_deferred(&mut open, &mut deferred, &mut notes, now).await? {
                        self.abandon_in(&mut open, &context, now).await?;
                    }
                    return self.commit(open, notes).await;
                }
            }
            if tx.is_none() && context.step.is_store_only() {
                // The claimed task is a store step of an item already in progress (retried,
                // or resumed): it runs in a transaction all the same.
                tx = Some(self.begin(&mut context).await?);
            }
            first = false;
            if let Some(mut open) = tx.take() {
                let mark = open.savepoint().await?;
                let outcome = match self.execute_in(&mut open, &context, now).await {
                    Ok(outcome) => outcome,
                    Err(error) => {
                        open.rollback_to(mark).await?;
                        classify(error)
                    }
                };
                let Some((state, result)) = finished(&outcome) else {
                    self.conclude_in(&mut open, &context, outcome, &mut notes, now).await?;
                    return self.commit(open, notes).await;
                };
                match self.advance_chain(&mut open, &context, state, Some(&result), now).await? {
                    Chain::Next(next) => {
                        notes.push((context.step, None));
                        context = context.followed_by(next, state, Some(result))?;
                        if context.step.is_store_only() {
                            tx = Some(open);
                        } else {
                            self.commit(open, std::mem::take(&mut notes)).await?;
                        }
                    }
                    Chain::Ended => {
                        notes.push((context.step, None));
                        return self.commit(open, notes).await;
                    }
                    Chain::Stale => return self.commit(open, notes).await,
                }
                continue;
            }
            // An outside step, with no transaction open.
            let outcome = match self.execute(&context).await {
                Ok(outcome) => outcome,
                Err(OrdersError::Store(error)) => return Err(OrdersError::Store(error)),
                Err(other) => Outcome::Fail(other.to_string()),
            };
            if let (Some((state, result)), Some(next)) = (finished(&outcome), context.next_task().cloned()) {
                // Claimed when this outcome is recorded, in the transaction that records it.
                let claimed = TaskRow {
                    state: "due".into(),
                    attempts: 1,
                    next_attempt_at: after(now, self.policy.lease),
                    ..next
                };
                deferred.push((context.clone(), outcome));
                context = context.followed_by(claimed, state, Some(result))?;
                continue;
            }
            let mut open = self.begin(&mut context).await?;
            if self.record_deferred(&mut open, &mut deferred, &mut notes, now).await? {
                self.conclude_in(&mut open, &context, outcome, &mut notes, now).await?;
            }
            return self.commit(open, notes).await;
        }
    }

    /// Records the outcomes of the outside steps done before (each done, the next one
    /// claimed); `false` if a claim no longer held (another worker has the task).
    async fn record_deferred(
        &self,
        tx: &mut Tx,
        deferred: &mut Vec<(Context, Outcome)>,
        notes: &mut Notes,
        now: Timestamp,
    ) -> Result<bool> {
        for (context, outcome) in deferred.drain(..) {
            let Some((state, result)) = finished(&outcome) else { continue };
            match self.advance_chain(tx, &context, state, Some(&result), now).await? {
                Chain::Stale => return Ok(false),
                Chain::Next(_) | Chain::Ended => notes.push((context.step, None)),
            }
        }
        Ok(true)
    }

    /// Commits, then tells the step health what the transaction recorded.
    async fn commit(&self, tx: Tx, notes: Notes) -> Result<()> {
        tx.commit().await?;
        for (step, failure) in notes {
            match failure {
                None => self.health.done(step),
                Some(error) => self.health.failed(step, error),
            }
        }
        Ok(())
    }

    /// A transaction that first locks the item's order.
    async fn lock(&self, context: &Context) -> Result<Tx> {
        let mut tx = self.orders.store().begin().await?;
        tx.product_order(&context.order.id).await?;
        Ok(tx)
    }

    /// A transaction that first locks the item's order (and reads it afresh).
    async fn begin(&self, context: &mut Context) -> Result<Tx> {
        let mut tx = self.orders.store().begin().await?;
        if let Some(order) = tx.product_order(&context.order.id).await? {
            context.order = order.value;
        }
        Ok(tx)
    }

    /// Before an item's first step: it waits (held) while an earlier order's item on the
    /// same product is unfinished; its product must still allow the action; then it is in
    /// progress. `false` if the step is not to run now.
    /// `false` if the step is not to run now; in `tx`, which the caller commits.
    async fn start_in(&self, tx: &mut Tx, context: &Context, now: Timestamp) -> Result<bool> {
        if context.action.needs_product() {
            if let Some((order, item)) = tx.earlier_open_item(&context.item.product_id, context.order.seq).await? {
                let error = format!("waits for item {item} of order {order} on the same product");
                let outcome = TaskOutcome {
                    state: "due",
                    next_attempt_at: after(now, HOLD_RETRY),
                    result: None,
                    last_error: Some(&error),
                    reset_attempts: true,
                };
                if tx.finish_task(&context.claimed, &outcome, now).await? {
                    self.move_item(tx, context, ItemState::Held, now).await?;
                }
                return Ok(false);
            }
            let refusal = match context.action {
                Action::RemoveAddOn => match tx.addon(&context.item.product_id).await? {
                    Some(addon) if addon.status == "active" => None,
                    _ => Some(format!("add-on {} is no longer active", context.item.product_id)),
                },
                _ => match tx.line(context.line_id()).await? {
                    Some(line) => line_allows(context.action, &line.value).err(),
                    None => Some(format!("product {} does not exist", context.line_id())),
                },
            };
            if let Some(reason) = refusal {
                self.fail(tx, context, &reason, now).await?;
                return Ok(false);
            }
        }
        self.move_item(tx, context, ItemState::InProgress, now).await?;
        Ok(true)
    }

    /// Sets the item's state (checked by its transition function) and settles the order.
    async fn move_item(&self, tx: &mut Tx, context: &Context, to: ItemState, now: Timestamp) -> Result<()> {
        let mut items = tx.order_items(&context.order.id).await?;
        let current = items.iter_mut().find(|item| item.item_id == context.item.item_id);
        let from = current.as_ref().and_then(|item| ItemState::parse(&item.state)).unwrap_or(ItemState::InProgress);
        if from != to {
            from.transition(to)?;
            tx.set_item_state(&context.order.id, &context.item.item_id, to.as_str(), now).await?;
            if let Some(item) = current {
                item.state = to.as_str().into();
            }
        }
        settle(tx, &context.order.id, items, now).await
    }

    /// Ends a forward attempt with its outcome in `tx`; what the step health should note
    /// once it commits goes to `notes`.
    async fn conclude_in(
        &self,
        tx: &mut Tx,
        context: &Context,
        outcome: Outcome,
        notes: &mut Notes,
        now: Timestamp,
    ) -> Result<()> {
        let failed = |error: &str| format!("order {} item {}: {error}", context.order.id, context.item.item_id);
        if let Some((state, result)) = finished(&outcome) {
            // The next step, if any, is due now for whichever worker claims it.
            if let Chain::Next(next) = self.advance_chain(tx, context, state, Some(&result), now).await? {
                tx.set_task(next.seq, "due", now, now).await?;
            }
            notes.push((context.step, None));
            return Ok(());
        }
        match outcome {
            Outcome::Done(_) | Outcome::Skipped(_) => {}
            Outcome::Retry { error, after: delay } if context.claimed.attempts < self.policy.max_attempts => {
                let delay = delay
                    .unwrap_or_else(|| self.policy.delay_after(context.claimed.attempts))
                    .min(self.policy.max_delay);
                tracing::warn!(order = %context.order.id, item = %context.item.item_id, step = context.step.as_str(),
                    attempt = context.claimed.attempts, retry_in = ?delay, %error, "provisioning: step failed, will retry");
                let outcome = TaskOutcome {
                    state: "due",
                    next_attempt_at: after(now, delay),
                    result: None,
                    last_error: Some(&error),
                    reset_attempts: false,
                };
                tx.finish_task(&context.claimed, &outcome, now).await?;
            }
            Outcome::Retry { error, .. } => {
                let error = format!("{error} (gave up after {} attempts)", context.claimed.attempts);
                self.fail(tx, context, &error, now).await?;
                notes.push((context.step, Some(failed(&error))));
            }
            Outcome::Fail(error) => {
                self.fail(tx, context, &error, now).await?;
                notes.push((context.step, Some(failed(&error))));
            }
        }
        Ok(())
    }

    /// A done (or skipped) step in a chain: recorded, and the next one claimed for this
    /// worker in the same transaction; or the item is complete.
    async fn advance_chain(
        &self,
        tx: &mut Tx,
        context: &Context,
        state: &str,
        result: Option<&Value>,
        now: Timestamp,
    ) -> Result<Chain> {
        let outcome = TaskOutcome { state, next_attempt_at: now, result, last_error: None, reset_attempts: false };
        if !tx.finish_task(&context.claimed, &outcome, now).await? {
            return Ok(Chain::Stale);
        }
        match context.next_task() {
            Some(next) => Ok(tx.claim_task(next.seq, now, self.policy.lease).await?.map_or(Chain::Stale, Chain::Next)),
            None => {
                self.move_item(tx, context, ItemState::Completed, now).await?;
                Ok(Chain::Ended)
            }
        }
    }

    /// The step failed for good: it is marked failed, the steps after it will not run, and
    /// undoing the done ones begins (or, with none, the item fails).
    async fn fail(&self, tx: &mut Tx, context: &Context, error: &str, now: Timestamp) -> Result<()> {
        tracing::warn!(order = %context.order.id, item = %context.item.item_id, step = context.step.as_str(), %error,
            "provisioning: step failed for good; undoing what was done");
        let outcome = TaskOutcome {
            state: "failed",
            next_attempt_at: now,
            result: None,
            last_error: Some(error),
            reset_attempts: false,
        };
        if !tx.finish_task(&context.claimed, &outcome, now).await? {
            return Ok(());
        }
        self.cancel_later_tasks(tx, context, now).await?;
        self.compensate_before(tx, context, context.claimed.position, true, now).await
    }

    /// A cancellation reached this step before it ran: it is cancelled, and undoing the
    /// done ones begins (or, with none, the item is cancelled).
    async fn abandon(&self, context: &Context, now: Timestamp) -> Result<()> {
        let mut context = context.clone();
        let mut tx = self.begin(&mut context).await?;
        self.abandon_in(&mut tx, &context, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Workflow::abandon`] in the caller's transaction.
    async fn abandon_in(&self, tx: &mut Tx, context: &Context, now: Timestamp) -> Result<()> {
        let outcome = TaskOutcome {
            state: "cancelled",
            next_attempt_at: now,
            result: None,
            last_error: Some("the order was cancelled"),
            reset_attempts: false,
        };
        if !tx.finish_task(&context.claimed, &outcome, now).await? {
            return Ok(());
        }
        self.cancel_later_tasks(tx, context, now).await?;
        self.compensate_before(tx, context, context.claimed.position, false, now).await
    }

    async fn cancel_later_tasks(&self, tx: &mut Tx, context: &Context, now: Timestamp) -> Result<()> {
        for task in
            context.tasks.iter().filter(|task| task.position > context.claimed.position && task.state == "waiting")
        {
            tx.set_task(task.seq, "cancelled", now, now).await?;
        }
        Ok(())
    }

    /// Makes the last done step before `position` due for undoing; with none left, the
    /// item ends (failed if a step failed, else cancelled).
    async fn compensate_before(
        &self,
        tx: &mut Tx,
        context: &Context,
        position: i64,
        failed: bool,
        now: Timestamp,
    ) -> Result<()> {
        match context.previous_done(position) {
            Some(previous) => Ok(tx.set_task(previous.seq, "undo", now, now).await?),
            None => {
                let end = if failed { ItemState::Failed } else { compensated_state(&context.tasks) };
                self.move_item(tx, context, end, now).await
            }
        }
    }

    /// Ends a backward attempt.
    async fn conclude_undo(&self, context: &Context, outcome: Outcome, tx: Option<Tx>, now: Timestamp) -> Result<()> {
        let mut tx = match tx {
            Some(tx) => tx,
            None => self.lock(context).await?,
        };
        match outcome {
            Outcome::Done(_) | Outcome::Skipped(_) => {
                let outcome = TaskOutcome {
                    state: "undone",
                    next_attempt_at: now,
                    result: None,
                    last_error: None,
                    reset_attempts: false,
                };
                if !tx.finish_task(&context.claimed, &outcome, now).await? {
                    return Ok(());
                }
                let failed = context.tasks.iter().any(|task| task.state == "failed");
                self.compensate_before(&mut tx, context, context.claimed.position, failed, now).await?;
            }
            Outcome::Retry { error, after: delay } => {
                // Undoing is retried until it works: giving up would leave it half done.
                let delay = delay
                    .unwrap_or_else(|| self.policy.delay_after(context.claimed.attempts))
                    .min(self.policy.max_delay);
                if context.claimed.attempts >= self.policy.max_attempts {
                    tracing::error!(order = %context.order.id, item = %context.item.item_id, step = context.step.as_str(),
                        attempt = context.claimed.attempts, %error, "provisioning: undoing a step keeps failing; retrying");
                } else {
                    tracing::warn!(order = %context.order.id, item = %context.item.item_id, step = context.step.as_str(),
                        attempt = context.claimed.attempts, %error, "provisioning: undoing a step failed, will retry");
                }
                let outcome = TaskOutcome {
                    state: "undo",
                    next_attempt_at: after(now, delay),
                    result: None,
                    last_error: Some(&error),
                    reset_attempts: false,
                };
                if !tx.finish_task(&context.claimed, &outcome, now).await? {
                    return Ok(());
                }
            }
            Outcome::Fail(error) => {
                tracing::error!(order = %context.order.id, item = %context.item.item_id, step = context.step.as_str(), %error,
                    "provisioning: undoing a step was refused; the steps before it stay done until an operator acts");
                let error = format!("undoing was refused: {error}");
                let outcome = TaskOutcome {
                    state: "failed",
                    next_attempt_at: now,
                    result: None,
                    last_error: Some(&error),
                    reset_attempts: false,
                };
                if !tx.finish_task(&context.claimed, &outcome, now).await? {
                    return Ok(());
                }
                self.move_item(&mut tx, context, ItemState::Failed, now).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn engine(&self, context: &Context, undo: bool, target: EngineTarget, operation: EngineOperation) -> Outcome {
        let call = EngineCall { key: context.key(undo), target, operation };
        engine_outcome(self.orders.engine().apply(call).await)
    }

    /// The line the item acts on, read now.
    async fn line(&self, context: &Context) -> Result<Versioned<LineRow>> {
        let id = context.line_id();
        self.orders.store().line(id).await?.ok_or_else(|| OrdersError::NotFound { kind: "Product", id: id.to_owned() })
    }

    /// Runs a step that changes only the store ([`Step::is_store_only`]) forward, in `tx`;
    /// an error leaves what it wrote for the caller to roll back.
    async fn execute_in(&self, tx: &mut Tx, context: &Context, now: Timestamp) -> Result<Outcome> {
        let resources = self.orders.resources();
        let owner = context.owner();
        Ok(match context.step {
            Step::ReserveNumber => match resources.reserve_number(tx, &owner, context.request("msisdn"), now).await? {
                Some(msisdn) => Outcome::Done(json!({"msisdn": msisdn})),
                None => Outcome::Fail("no MSISDN is free in the resource inventory".into()),
            },
            Step::ReserveSim => match resources.reserve_sim(tx, &owner, context.request("iccid"), now).await? {
                Some(sim) => Outcome::Done(json!({"iccid": sim.iccid, "imsi": sim.imsi})),
                None => Outcome::Fail("no SIM card is free in the resource inventory".into()),
            },
            Step::RecordSubscription => self.record_subscription(tx, context, now).await?,
            Step::Complete => {
                self.write_completion(tx, context, now).await?;
                Outcome::Done(json!({}))
            }
            step => Outcome::Fail(format!("step {} calls out: it does not run in a transaction", step.as_str())),
        })
    }

    /// Runs a step that calls out (the engine, the network) forward, with no transaction
    /// open.
    async fn execute(&self, context: &Context) -> Result<Outcome> {
        let outcome = match context.step {
            Step::Activate => self.activate(context, false).await?,
            step => {
                let line = self.line(context).await?.value;
                let subscription = EngineTarget::Subscription(line.subscription.engine_subscription_id);
                let reason = format!("product order {}", context.order.id);
                match step {
                    Step::CreateSubscription => {
                        let account = self.orders.store().billing_account(&context.order.billing_account_id).await?;
                        let account = account.ok_or_else(|| OrdersError::NotFound {
                            kind: "BillingAccount",
                            id: context.order.billing_account_id.clone(),
                        })?;
                        let operation = EngineOperation::CreateSubscription {
                            subscription: line.subscription.engine_subscription_id,
                            plan: line.subscription.plan_id.clone(),
                            identities: line.subscription.identities.clone(),
                        };
                        self.engine(context, false, EngineTarget::Account(account.value.engine_account_id), operation)
                            .await
                    }
                    Step::ChangePlan => {
                        let plan = context.request("planId").unwrap_or_default().to_owned();
                        self.engine(context, false, subscription, EngineOperation::ChangePlan { plan }).await
                    }
                    Step::Suspend => {
                        self.engine(context, false, subscription, EngineOperation::Suspend { reason }).await
                    }
                    Step::Resume => self.engine(context, false, subscription, EngineOperation::Resume).await,
                    Step::Terminate => {
                        self.engine(context, false, subscription, EngineOperation::Terminate { reason }).await
                    }
                    Step::ReplaceImsi | Step::ReplaceMsisdn => match self.replacement(context, &line) {
                        Some((old, new)) => {
                            self.engine(context, false, subscription, EngineOperation::ReplaceIdentity { old, new })
                                .await
                        }
                        None => Outcome::Fail("the line has no identity of that kind to replace".into()),
                    },
                    _ => Outcome::Fail(format!("step {} is not an engine step", step.as_str())),
                }
            }
        };
        Ok(outcome)
    }

    /// The (old, new) identity keys of a SIM swap's or number change's engine step.
    fn replacement(&self, context: &Context, line: &LineRow) -> Option<(String, String)> {
        match context.step {
            Step::ReplaceImsi => {
                let new = context.result_text(Step::ReserveSim, "imsi")?;
                Some((format!("imsi:{}", identity(line, "imsi")?), format!("imsi:{new}")))
            }
            _ => {
                let new = context.result_text(Step::ReserveNumber, "msisdn")?;
                Some((format!("msisdn:{}", identity(line, "msisdn")?), format!("msisdn:{new}")))
            }
        }
    }

    /// A new line's product row with its identities: this fixes its engine subscription id.
    async fn record_subscription(&self, tx: &mut Tx, context: &Context, now: Timestamp) -> Result<Outcome> {
        let id = &context.item.product_id;
        if let Some(line) = tx.line(id).await? {
            // Recorded by an attempt whose outcome was lost? Only this order's row counts.
            let outcome = if line.value.order_id.as_deref() == Some(context.order.id.as_str()) {
                Outcome::Done(json!({"engineSubscriptionId": line.value.subscription.engine_subscription_id}))
            } else {
                Outcome::Fail(format!("product id {id} is taken"))
            };
            return Ok(outcome);
        }
        let (Some(msisdn), Some(imsi), Some(iccid)) = (
            context.result_text(Step::ReserveNumber, "msisdn"),
            context.result_text(Step::ReserveSim, "imsi"),
            context.result_text(Step::ReserveSim, "iccid"),
        ) else {
            return Ok(Outcome::Fail("the reserved number or SIM card is not on record".into()));
        };
        let identities = [format!("msisdn:{msisdn}"), format!("imsi:{imsi}")];
        let keys: Vec<&str> = identities.iter().map(String::as_str).collect();
        if let Some((identity, holder)) = tx.identities_in_use(&keys).await?.into_iter().next() {
            return Ok(Outcome::Fail(format!("{identity} belongs to subscription {holder}")));
        }
        let line = LineRow {
            subscription: SubscriptionRow {
                id: id.clone(),
                engine_subscription_id: 0,
                external_id: None,
                billing_account_id: context.order.billing_account_id.clone(),
                offering_id: context.request("offeringId").map(str::to_owned),
                plan_id: context.request("planId").unwrap_or_default().to_owned(),
                state: "active".into(),
                identities: identities.to_vec(),
            },
            product_status: Some("pendingActive".into()),
            iccid: Some(iccid),
            order_id: Some(context.order.id.clone()),
            started_at: None,
            terminated_at: None,
            created_at: now,
        };
        let engine_id = tx.insert_line(&line, now).await?;
        audit(tx, WORKFLOW_ACTOR, "create", "Product", id, Some(&line_doc(&line, &[], None)), now).await?;
        Ok(Outcome::Done(json!({"engineSubscriptionId": engine_id})))
    }

    /// The last step: the inventories take the outcome, in the transaction that
    /// completes the item.
    async fn write_completion(&self, tx: &mut Tx, context: &Context, now: Timestamp) -> Result<()> {
        let resources = self.orders.resources();
        let owner = context.owner();
        let line_id = context.line_id().to_owned();
        match context.action {
            Action::AddAddOn => {
                let addon = tollgate_store::AddOnRow {
                    id: context.item.product_id.clone(),
                    subscription_id: line_id.clone(),
                    offering_id: context.request("offeringId").unwrap_or_default().to_owned(),
                    status: "active".into(),
                    order_id: context.order.id.clone(),
                    created_at: now,
                    terminated_at: None,
                };
                tx.insert_addon(&addon, now).await?;
                let period = first_period(&addon.id, &line_id, Some(&addon.offering_id), "addAddOn", context, now);
                tx.insert_product_periods(&[period]).await?;
                audit(tx, WORKFLOW_ACTOR, "create", "Product", &addon.id, None, now).await?;
                return Ok(());
            }
            Action::RemoveAddOn => {
                tx.terminate_addons(Some(&context.item.product_id), &line_id, now).await?;
                tx.turn_product_periods(&line_id, Some(&context.item.product_id), "removeAddOn", None, now).await?;
                audit(tx, WORKFLOW_ACTOR, "terminate", "Product", &context.item.product_id, None, now).await?;
                return Ok(());
            }
            _ => {}
        }
        let Some(current) = tx.line(&line_id).await? else {
            return Err(OrdersError::NotFound { kind: "Product", id: line_id });
        };
        let mut line = current.value.clone();
        let mut service = None;
        match context.action {
            Action::NewLine => {
                let msisdn = context.result_text(Step::ReserveNumber, "msisdn").unwrap_or_default();
                let iccid = context.result_text(Step::ReserveSim, "iccid").unwrap_or_default();
                resources.assign(tx, ResourceKind::Msisdn, &msisdn, &owner, &line_id, now).await?;
                resources.assign(tx, ResourceKind::Sim, &iccid, &owner, &line_id, now).await?;
                line.product_status = None;
                line.started_at = Some(now);
                service = Some("active");
            }
            Action::ChangePlan => {
                line.subscription.plan_id = context.request("planId").unwrap_or_default().to_owned();
                line.subscription.offering_id = context.request("offeringId").map(str::to_owned);
            }
            Action::Suspend => {
                line.subscription.state = "suspended".into();
                service = Some("inactive");
            }
            Action::Resume => {
                line.subscription.state = "active".into();
                service = Some("active");
            }
            Action::Terminate => {
                // The engine has terminated the line already: what the inventory refuses
                // now is logged for an operator, not a reason to undo anything.
                if let Some(msisdn) = identity(&line, "msisdn") {
                    if let Err(error) = resources.unassign(tx, ResourceKind::Msisdn, msisdn, &line_id, now).await {
                        keep_going(error, context, "msisdn")?;
                    }
                }
                if let Some(iccid) = line.iccid.clone() {
                    if let Err(error) = resources.unassign(tx, ResourceKind::Sim, &iccid, &line_id, now).await {
                        keep_going(error, context, "sim")?;
                    }
                }
                tx.free_line_identities(&line_id).await?;
                line.subscription.identities.clear();
                tx.terminate_addons(None, &line_id, now).await?;
                line.subscription.state = "terminated".into();
                line.terminated_at = Some(now);
                service = Some("terminated");
            }
            Action::SimSwap => {
                let iccid = context.result_text(Step::ReserveSim, "iccid").unwrap_or_default();
                let imsi = context.result_text(Step::ReserveSim, "imsi").unwrap_or_default();
                resources.assign(tx, ResourceKind::Sim, &iccid, &owner, &line_id, now).await?;
                if let Some(old) = line.iccid.clone() {
                    if let Err(error) = resources.unassign(tx, ResourceKind::Sim, &old, &line_id, now).await {
                        keep_going(error, context, "sim")?;
                    }
                }
                if let Some(old) = identity(&line, "imsi").map(str::to_owned) {
                    tx.replace_line_identity(&line_id, &format!("imsi:{old}"), &format!("imsi:{imsi}")).await?;
                }
                line.iccid = Some(iccid);
            }
            Action::NumberChange => {
                let msisdn = context.result_text(Step::ReserveNumber, "msisdn").unwrap_or_default();
                resources.assign(tx, ResourceKind::Msisdn, &msisdn, &owner, &line_id, now).await?;
                if let Some(old) = identity(&line, "msisdn").map(str::to_owned) {
                    if let Err(error) = resources.unassign(tx, ResourceKind::Msisdn, &old, &line_id, now).await {
                        keep_going(error, context, "msisdn")?;
                    }
                    tx.replace_line_identity(&line_id, &format!("msisdn:{old}"), &format!("msisdn:{msisdn}")).await?;
                }
            }
            Action::AddAddOn | Action::RemoveAddOn => {}
        }
        record_period(tx, context, &current.value, now).await?;
        tx.update_line(&line, current.version, now).await.map_err(|e| OrdersError::from_store("Product", e))?;
        if let Some(state) = service {
            let row = ServiceRow {
                id: new_entity_id()?,
                subscription_id: line_id.clone(),
                state: state.into(),
                order_id: context.order.id.clone(),
                created_at: now,
                updated_at: now,
            };
            tx.upsert_service(&row, now).await?;
        }
        let after = tx.line(&line_id).await?.map(|line| line_doc(&line.value, &[], None));
        audit(tx, WORKFLOW_ACTOR, context.action.as_str(), "Product", &line_id, after.as_ref(), now).await?;
        Ok(())
    }

    /// Runs the step backward.
    async fn undo(&self, context: &Context, now: Timestamp) -> Result<(Outcome, Option<Tx>)> {
        let resources = self.orders.resources();
        let owner = context.owner();
        let release = |kind: ResourceKind, value: Option<String>| async move {
            let mut tx = self.lock(context).await?;
            let Some(value) = value else { return Ok((Outcome::Done(json!({})), Some(tx))) };
            Ok(match resources.release(&mut tx, kind, &value, &owner, now).await {
                Ok(()) => (Outcome::Done(json!({})), Some(tx)),
                Err(error) => (classify(error), None),
            })
        };
        let outcome = match context.step {
            Step::ReserveNumber => {
                return release(ResourceKind::Msisdn, context.result_text(Step::ReserveNumber, "msisdn")).await
            }
            Step::ReserveSim => {
                return release(ResourceKind::Sim, context.result_text(Step::ReserveSim, "iccid")).await
            }
            Step::RecordSubscription => {
                let mut tx = self.lock(context).await?;
                if let Some(current) = tx.line(&context.item.product_id).await? {
                    let mut line = current.value.clone();
                    line.subscription.state = "terminated".into();
                    line.product_status = Some("cancelled".into());
                    line.terminated_at = Some(now);
                    tx.free_line_identities(&context.item.product_id).await?;
                    tx.update_line(&line, current.version, now).await?;
                    audit(&mut tx, WORKFLOW_ACTOR, "cancel", "Product", &context.item.product_id, None, now).await?;
                }
                return Ok((Outcome::Done(json!({})), Some(tx)));
            }
            Step::Activate => self.activate(context, true).await?,
            Step::Terminate | Step::Complete => Outcome::Fail(format!("{} cannot be undone", context.step.as_str())),
            step => {
                let line = self.line(context).await?.value;
                let subscription = EngineTarget::Subscription(line.subscription.engine_subscription_id);
                let reason = format!("product order {} undone", context.order.id);
                let operation = match step {
                    Step::CreateSubscription => EngineOperation::Terminate { reason },
                    Step::ChangePlan => EngineOperation::ChangePlan { plan: line.subscription.plan_id.clone() },
                    Step::Suspend => EngineOperation::Resume,
                    Step::Resume => EngineOperation::Suspend { reason },
                    _ => match self.replacement(context, &line) {
                        Some((old, new)) => EngineOperation::ReplaceIdentity { old: new, new: old },
                        None => return Ok((Outcome::Fail("the replaced identity is not on record".into()), None)),
                    },
                };
                self.engine(context, true, subscription, operation).await
            }
        };
        Ok((outcome, None))
    }

    /// The activation step, or its undoing: skipped without an activator.
    async fn activate(&self, context: &Context, undo: bool) -> Result<Outcome> {
        let Some(activator) = &self.activator else { return Ok(Outcome::Skipped("no network activation configured")) };
        let line = self.line(context).await?.value;
        let request = match self.activation_request(context, &line, undo).await {
            Ok(request) => request,
            Err(ActivationBuild::Retry(error)) => return Ok(Outcome::Retry { error, after: None }),
            Err(ActivationBuild::Fail(error)) => return Ok(Outcome::Fail(error)),
        };
        Ok(activation_outcome(activator.activate(&request).await))
    }

    /// The activation request of the item's action (or its inverse when undoing).
    async fn activation_request(
        &self,
        context: &Context,
        line: &LineRow,
        undo: bool,
    ) -> std::result::Result<ActivationRequest, ActivationBuild> {
        let invalid = |error: ActivationError| ActivationBuild::Fail(format!("activation request: {error}"));
        let msisdn = Msisdn::new(identity(line, "msisdn").unwrap_or_default()).map_err(invalid)?;
        let imsi = Imsi::new(identity(line, "imsi").unwrap_or_default()).map_err(invalid)?;
        let Some(iccid) = line.iccid.as_deref() else {
            return Err(ActivationBuild::Fail("the line has no SIM card (ICCID) on record to activate".into()));
        };
        let iccid = Iccid::new(iccid).map_err(invalid)?;
        let current = Subscriber { msisdn, imsi, iccid };
        let new_sim = || -> std::result::Result<(Imsi, Iccid), ActivationBuild> {
            let imsi = context.result_text(Step::ReserveSim, "imsi").unwrap_or_default();
            let iccid = context.result_text(Step::ReserveSim, "iccid").unwrap_or_default();
            Ok((Imsi::new(&imsi).map_err(invalid)?, Iccid::new(&iccid).map_err(invalid)?))
        };
        let new_msisdn =
            || Msisdn::new(&context.result_text(Step::ReserveNumber, "msisdn").unwrap_or_default()).map_err(invalid);
        let target_plan = context.request("planId").unwrap_or(&line.subscription.plan_id).to_owned();
        use Operation as Op;
        // (operation, subscriber after it, profile plan, send the SIM keys)
        let (operation, subscriber, plan, keys) = match (context.action, undo) {
            (Action::NewLine, false) => (Op::Activate, current.clone(), Some(line.subscription.plan_id.clone()), true),
            (Action::NewLine, true) | (Action::Terminate, false) => (Op::Terminate, current.clone(), None, false),
            (Action::Terminate, true) => (Op::Activate, current.clone(), Some(line.subscription.plan_id.clone()), true),
            (Action::ChangePlan, false) => (Op::ChangeProfile, current.clone(), Some(target_plan), false),
            (Action::ChangePlan, true) => {
                (Op::ChangeProfile, current.clone(), Some(line.subscription.plan_id.clone()), false)
            }
            (Action::Suspend, false) | (Action::Resume, true) => (Op::Suspend, current.clone(), None, false),
            (Action::Resume, false) | (Action::Suspend, true) => (Op::Resume, current.clone(), None, false),
            (Action::SimSwap, false) => {
                let (imsi, iccid) = new_sim()?;
                let operation =
                    Op::SimSwap { previous_imsi: current.imsi.clone(), previous_iccid: current.iccid.clone() };
                (operation, Subscriber { imsi, iccid, ..current.clone() }, None, true)
            }
            (Action::SimSwap, true) => {
                let (imsi, iccid) = new_sim()?;
                (Op::SimSwap { previous_imsi: imsi, previous_iccid: iccid }, current.clone(), None, true)
            }
            (Action::NumberChange, false) => {
                let msisdn = new_msisdn()?;
                (
                    Op::NumberChange { previous_msisdn: current.msisdn.clone() },
                    Subscriber { msisdn, ..current.clone() },
                    None,
                    false,
                )
            }
            (Action::NumberChange, true) => {
                (Op::NumberChange { previous_msisdn: new_msisdn()? }, current.clone(), None, false)
            }
            (Action::AddAddOn | Action::RemoveAddOn, _) => {
                return Err(ActivationBuild::Fail("an add-on is not activated on the network".into()))
            }
        };
        let details =
            self.orders.resources().network(subscriber.iccid.as_str()).await.map_err(|error| match error {
                OrdersError::Store(error) => ActivationBuild::Retry(format!("resource inventory: {error}")),
                // A SIM whose keys do not open with this server's key (sealed with another),
                // or a network element that cannot be addressed, does not heal by waiting.
                other => ActivationBuild::Fail(format!("resource inventory: {other}")),
            })?;
        if details.targets.is_empty() {
            return Err(ActivationBuild::Retry(
                "the resource inventory lists no network element to activate on".into(),
            ));
        }
        let id = RequestId::new(context.key(undo)).map_err(invalid)?;
        let profile = plan.map(ServiceProfile::new).transpose().map_err(invalid)?;
        let mut request =
            ActivationRequest::new(id, operation, subscriber, profile, details.targets).map_err(invalid)?;
        if keys {
            if let Some(sim) = details.sim {
                request = request.with_sim_secrets(sim).map_err(invalid)?;
            }
        }
        Ok(request)
    }
}

/// A step's outcome from what running it returned: a store failure stays an error (the
/// claim's lease runs out and the task is tried again); anything else that went wrong is
/// the step failing.
fn settled(ran: Result<(Outcome, Option<Tx>)>) -> Result<(Outcome, Option<Tx>)> {
    match ran {
        Ok(ran) => Ok(ran),
        Err(OrdersError::Store(error)) => Err(OrdersError::Store(error)),
        Err(other) => Ok((Outcome::Fail(other.to_string()), None)),
    }
}

/// Why an activation request could not be built.
enum ActivationBuild {
    Retry(String),
    Fail(String),
}

/// A product's first period (the product history of migration 0013), opened by `opened_by`.
fn first_period(
    product_id: &str,
    line_id: &str,
    offering_id: Option<&str>,
    opened_by: &str,
    context: &Context,
    now: Timestamp,
) -> ProductPeriod {
    ProductPeriod {
        product_id: product_id.to_owned(),
        subscription_id: line_id.to_owned(),
        offering_id: offering_id.map(str::to_owned),
        state: "active".into(),
        opened_by: opened_by.into(),
        order_id: Some(context.order.id.clone()),
        from: now,
        until: None,
        closed_by: None,
    }
}

/// The line's history after the item's action, in the transaction that completes it: a
/// new line's first period; a plan change turns the line's period to the new offering; a
/// suspension or a resumption turns the line's and its add-ons' periods to the new state;
/// a termination ends them. A line from before the history (migration 0013) first gets
/// its period from its start, as it was (`before`).
async fn record_period(tx: &mut Tx, context: &Context, before: &LineRow, now: Timestamp) -> Result<()> {
    let line_id = before.subscription.id.as_str();
    let order = Some(context.order.id.as_str());
    let was = if before.subscription.state == "suspended" { "suspended" } else { "active" };
    let (closed_by, next) = match context.action {
        Action::NewLine => {
            let offering = before.subscription.offering_id.as_deref();
            tx.insert_product_periods(&[first_period(line_id, line_id, offering, "newLine", context, now)]).await?;
            return Ok(());
        }
        Action::ChangePlan => {
            let offering_id = context.request("offeringId");
            ("changePlan", Some(NextPeriod { offering_id, state: was, opened_by: "changePlan", order_id: order }))
        }
        Action::Suspend => (
            "suspend",
            Some(NextPeriod { offering_id: None, state: "suspended", opened_by: "suspend", order_id: order }),
        ),
        Action::Resume => {
            ("resume", Some(NextPeriod { offering_id: None, state: "active", opened_by: "resume", order_id: order }))
        }
        Action::Terminate => ("terminate", None),
        _ => return Ok(()),
    };
    if !tx.has_product_periods(line_id).await? {
        let mut first =
            first_period(line_id, line_id, before.subscription.offering_id.as_deref(), "backfill", context, now);
        first.state = was.into();
        first.order_id = before.order_id.clone();
        first.from = before.started_at.unwrap_or(before.created_at);
        tx.insert_product_periods(&[first]).await?;
    }
    let product = (context.action == Action::ChangePlan).then_some(line_id);
    tx.turn_product_periods(line_id, product, closed_by, next.as_ref(), now).await?;
    Ok(())
}

/// A refusal by the inventory to take back a resource after the engine has let it go:
/// logged for an operator; a store failure is passed on (retried).
fn keep_going(error: OrdersError, context: &Context, what: &str) -> Result<()> {
    match error {
        OrdersError::Store(error) => Err(OrdersError::Store(error)),
        other => {
            tracing::error!(order = %context.order.id, item = %context.item.item_id, resource = what, error = %other,
                "provisioning: the resource inventory did not take back a resource of a finished line; an operator must look");
            Ok(())
        }
    }
}

/// Adds to a failed or partly done order's document a TMF622 `note` per failed item,
/// naming the step that failed for good and why (the client's own notes are kept first):
/// the reason is otherwise only in the item's service order milestones (TMF641).
async fn failure_notes(tx: &mut Tx, row: &mut ProductOrderRow, items: &[OrderItemRow], now: Timestamp) -> Result<()> {
    let mut notes = Vec::new();
    for item in items.iter().filter(|item| item.state == ItemState::Failed.as_str()) {
        let tasks = tx.item_tasks(&row.id, &item.item_id).await?;
        for task in tasks.iter().filter(|task| task.state == "failed") {
            let reason = task.last_error.as_deref().unwrap_or("no reason was recorded");
            notes.push(json!({
                "id": format!("failure-{}-{}", item.item_id, task.step),
                "author": WORKFLOW_ACTOR,
                "date": now.to_string(),
                "text": format!("item {}: step {} failed: {reason}", item.item_id, task.step),
                "@type": "Note",
            }));
        }
    }
    if notes.is_empty() {
        return Ok(());
    }
    if let Value::Object(doc) = &mut row.doc {
        let list = doc.entry("note").or_insert_with(|| Value::Array(Vec::new()));
        if !list.is_array() {
            *list = Value::Array(Vec::new());
        }
        if let Value::Array(list) = list {
            list.extend(notes);
        }
    }
    Ok(())
}

/// Recomputes the order's state from its `items` (as the caller's transaction, which
/// holds the order's row, has them): a change is checked by the transition function,
/// audited and, when final, ends the order's open cancellation requests.
async fn settle(tx: &mut Tx, order_id: &str, items: Vec<OrderItemRow>, now: Timestamp) -> Result<()> {
    let Some(current) = tx.product_order(order_id).await? else { return Ok(()) };
    let states: Vec<ItemState> =
        items.iter().map(|item| ItemState::parse(&item.state).unwrap_or(ItemState::InProgress)).collect();
    let waiting = current.value.requested_start_at.is_some_and(|at| at > now);
    let to = OrderState::of_items(&states, current.value.cancelling, waiting);
    let from = OrderState::parse(&current.value.state).unwrap_or(OrderState::InProgress);
    if from == to {
        return Ok(());
    }
    from.transition(to)?;
    let mut row = current.value.clone();
    row.state = to.as_str().into();
    if matches!(to, OrderState::Failed | OrderState::Partial) {
        failure_notes(tx, &mut row, &items, now).await?;
    }
    if to.is_final() {
        row.completed_at = Some(now);
        for cancel in tx.open_cancels(order_id).await? {
            let (state, message) = if to == OrderState::Cancelled {
                ("done", None)
            } else {
                ("terminatedWithError", Some(format!("the order ended {to}: an item was past its point of no return")))
            };
            let id = cancel.id.clone();
            tx.finish_cancel(&id, state, message.as_deref(), now).await?;
            let ended = CancelRow { state: state.into(), error_message: message, effective_at: Some(now), ..cancel };
            crate::service::publish(
                tx,
                "CancelProductOrderStateChangeEvent",
                &id,
                &crate::docs::cancel_doc(&ended),
                now,
            )
            .await?;
        }
    }
    tx.update_product_order(&row, current.version, now).await?;
    let shown = crate::docs::order_doc(&row, &items);
    audit(tx, WORKFLOW_ACTOR, &format!("state:{to}"), "ProductOrder", order_id, Some(&shown), now).await?;
    crate::service::publish(tx, "ProductOrderStateChangeEvent", order_id, &shown, now).await?;
    Ok(())
}
