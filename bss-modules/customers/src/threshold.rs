//! Thresholds and their notifications: per billing account, `balance_below` (an amount in
//! the account's currency) and `bundle_used` (a percentage of an allowance bucket's
//! grant). [`decide`] is a pure function of (the account's thresholds, the engine's view of
//! the account) → the crossings and re-armings due; [`Thresholds::evaluate`] records each
//! crossing once (the store's unique key: a balance threshold's episode, a bundle's bucket
//! and validity start) and, in the same transaction, publishes its hub event
//! ([`THRESHOLD_EVENT`] on the accountManagement hub), so the hub's worker delivers it
//! once (signed, retried, dead-lettered) also after a crash. The message comes from a
//! per-language [`Templates`] (English and German built in, replaceable).
//!
//! A balance threshold fires when the balance falls below its amount and re-arms when it
//! is back at or above it (a top-up), so the next fall notifies again. A bundle threshold
//! fires once per bucket and validity period, when (granted − remaining) / granted reaches
//! its percentage.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tollgate_store::{
    new_entity_id, AuditRecord, CrossingRow, NewEvent, Store, ThresholdRow, Tx, MAX_THRESHOLDS_PER_ACCOUNT,
};

use crate::error::{CustomersError, Result};
use crate::port::EngineAccount;
use crate::service::ACCOUNT_BASE_PATH;

/// The event a crossing publishes on the accountManagement hub.
pub const THRESHOLD_EVENT: &str = "BillingAccountThresholdEvent";
/// The audit trail's entity type.
const THRESHOLD_ENTITY: &str = "threshold";
/// The longest language tag taken.
const MAX_LANGUAGE_CHARS: usize = 16;
/// The longest template taken, in characters.
pub const MAX_TEMPLATE_CHARS: usize = 1000;

/// What a threshold watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdKind {
    /// The balance fell below an amount.
    BalanceBelow,
    /// An allowance bucket's used share reached a percentage.
    BundleUsed,
}

impl ThresholdKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ThresholdKind::BalanceBelow => "balance_below",
            ThresholdKind::BundleUsed => "bundle_used",
        }
    }

    pub fn parse(text: &str) -> Result<ThresholdKind> {
        match text {
            "balance_below" => Ok(ThresholdKind::BalanceBelow),
            "bundle_used" => Ok(ThresholdKind::BundleUsed),
            other => Err(CustomersError::invalid("kind", format!("{other:?} is not balance_below or bundle_used"))),
        }
    }
}

/// A threshold to set, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThresholdSpec {
    pub kind: ThresholdKind,
    /// `balance_below`'s amount.
    pub amount: Option<Decimal>,
    /// `bundle_used`'s percentage, 1 to 100.
    pub percent: Option<i64>,
    pub language: String,
    pub webhook: bool,
}

/// Validates a threshold: `level` is an amount (`balance_below`, at most
/// [`crate::MAX_MONEY_SCALE`] decimals) or a percentage such as `80` (`bundle_used`);
/// `language` a tag the templates know.
pub fn parse_threshold(
    kind: &str,
    level: &str,
    language: &str,
    webhook: bool,
    templates: &Templates,
) -> Result<ThresholdSpec> {
    let kind = ThresholdKind::parse(kind)?;
    if language.is_empty() || language.chars().count() > MAX_LANGUAGE_CHARS {
        return Err(CustomersError::invalid("language", format!("{language:?} is not a language tag")));
    }
    if !templates.knows(language) {
        return Err(CustomersError::invalid(
            "language",
            format!("no message template in {language:?} (known: {})", templates.languages().join(", ")),
        ));
    }
    let (amount, percent) = match kind {
        ThresholdKind::BalanceBelow => {
            let amount: Decimal = level
                .trim()
                .parse()
                .map_err(|_| CustomersError::invalid("amount", format!("{level:?} is not a decimal amount")))?;
            if amount.scale() > crate::MAX_MONEY_SCALE {
                return Err(CustomersError::invalid(
                    "amount",
                    format!("{level} has more than {} decimals", crate::MAX_MONEY_SCALE),
                ));
            }
            (Some(amount.normalize()), None)
        }
        ThresholdKind::BundleUsed => {
            let percent: i64 = level
                .trim()
                .trim_end_matches('%')
                .parse()
                .map_err(|_| CustomersError::invalid("percent", format!("{level:?} is not a whole percentage")))?;
            if !(1..=100).contains(&percent) {
                return Err(CustomersError::invalid("percent", format!("{percent} is not from 1 to 100")));
            }
            (None, Some(percent))
        }
    };
    Ok(ThresholdSpec { kind, amount, percent, language: language.to_owned(), webhook })
}

/// One language's message templates. Placeholders: `{name}` (the billing account's name),
/// `{amount}` (a balance threshold's amount with currency), `{balance}` (the balance with
/// currency), `{percent}`, `{bundle}` (the allowance's name).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub balance_below: String,
    pub bundle_used: String,
}

/// The message templates by language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    by_language: BTreeMap<String, Template>,
}

impl Default for Templates {
    /// English and German.
    fn default() -> Self {
        let mut by_language = BTreeMap::new();
        by_language.insert(
            "en".to_owned(),
            Template {
                balance_below: "{name}: your balance is {balance}, below {amount}. Please top up.".to_owned(),
                bundle_used: "{name}: you have used {percent} % of your {bundle}.".to_owned(),
            },
        );
        by_language.insert(
            "de".to_owned(),
            Template {
                balance_below: "{name}: Ihr Guthaben beträgt {balance} und liegt unter {amount}. Bitte laden Sie auf."
                    .to_owned(),
                bundle_used: "{name}: Sie haben {percent} % von {bundle} verbraucht.".to_owned(),
            },
        );
        Templates { by_language }
    }
}

impl Templates {
    /// The built-in templates with `overrides` added or replacing languages.
    pub fn with(overrides: BTreeMap<String, Template>) -> Result<Templates> {
        let mut templates = Templates::default();
        for (language, template) in overrides {
            for (field, text) in [("balance_below", &template.balance_below), ("bundle_used", &template.bundle_used)] {
                if text.is_empty() || text.chars().count() > MAX_TEMPLATE_CHARS {
                    return Err(CustomersError::invalid(
                        format!("{language}.{field}"),
                        format!("empty or longer than {MAX_TEMPLATE_CHARS} characters"),
                    ));
                }
            }
            templates.by_language.insert(language, template);
        }
        Ok(templates)
    }

    pub fn knows(&self, language: &str) -> bool {
        self.by_language.contains_key(language)
    }

    pub fn languages(&self) -> Vec<&str> {
        self.by_language.keys().map(String::as_str).collect()
    }

    /// The message of a `kind` crossing in `language` (English when it has none).
    pub fn message(&self, language: &str, kind: ThresholdKind, values: &[(&str, String)]) -> String {
        let template = self.by_language.get(language).or_else(|| self.by_language.get("en"));
        let text = match (template, kind) {
            (Some(t), ThresholdKind::BalanceBelow) => t.balance_below.as_str(),
            (Some(t), ThresholdKind::BundleUsed) => t.bundle_used.as_str(),
            (None, _) => "",
        };
        fill(text, values)
    }
}

/// `template` with each `{key}` of `values` replaced, once, left to right; unknown
/// placeholders stay as written.
pub fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after
            .find('}')
            .and_then(|close| values.iter().find(|(key, _)| *key == &after[..close]).map(|(_, value)| (close, value)))
        {
            Some((close, value)) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// What [`decide`] found due for one threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A crossing to record and notify, once per `key`; a balance threshold is then
    /// tripped.
    Cross {
        threshold_id: String,
        kind: ThresholdKind,
        key: String,
        /// The placeholders' values, less `{name}` (the store's).
        values: Vec<(&'static str, String)>,
        /// Shown in the event.
        detail: Value,
    },
    /// A tripped balance threshold whose balance is back: armed again, next episode.
    Rearm { threshold_id: String, episode: i64 },
}

/// The crossings and re-armings due for `thresholds` (of one account, in `currency`)
/// given the engine's `account`. Pure: the same inputs give the same answer.
pub fn decide(thresholds: &[ThresholdRow], currency: &str, account: &EngineAccount) -> Vec<Decision> {
    let mut due = Vec::new();
    for threshold in thresholds {
        match (threshold.kind.as_str(), threshold.amount, threshold.percent) {
            ("balance_below", Some(amount), _) => {
                let below = account.balance < amount;
                if below && !threshold.tripped {
                    due.push(Decision::Cross {
                        threshold_id: threshold.id.clone(),
                        kind: ThresholdKind::BalanceBelow,
                        key: format!("episode-{}", threshold.episode),
                        values: vec![
                            ("amount", format!("{amount} {currency}")),
                            ("balance", format!("{} {currency}", account.balance.normalize())),
                        ],
                        detail: json!({
                            "amount": {"value": amount.to_string(), "unit": currency},
                            "balance": {"value": account.balance.normalize().to_string(), "unit": currency},
                            "episode": threshold.episode,
                        }),
                    });
                } else if !below && threshold.tripped {
                    due.push(Decision::Rearm { threshold_id: threshold.id.clone(), episode: threshold.episode + 1 });
                }
            }
            ("bundle_used", _, Some(percent)) => {
                for bucket in &account.allowances {
                    if bucket.granted == 0 {
                        continue;
                    }
                    let used = bucket.granted.saturating_sub(bucket.remaining);
                    // used / granted ≥ percent / 100, in integers.
                    if u128::from(used) * 100 < u128::from(bucket.granted) * u128::from(percent.unsigned_abs()) {
                        continue;
                    }
                    due.push(Decision::Cross {
                        threshold_id: threshold.id.clone(),
                        kind: ThresholdKind::BundleUsed,
                        key: format!("bucket-{}-{}-from-{}", bucket.subscription, bucket.id, bucket.valid_from_s),
                        values: vec![("percent", percent.to_string()), ("bundle", bucket.name.clone())],
                        detail: json!({
                            "percent": percent,
                            "bucket": {
                                "id": bucket.id, "subscription": bucket.subscription, "name": bucket.name,
                                "unit": bucket.unit, "granted": bucket.granted, "remaining": bucket.remaining,
                                "validFrom": bucket.valid_from_s, "validUntil": bucket.valid_until_s,
                            },
                        }),
                    });
                }
            }
            _ => {}
        }
    }
    due
}

/// Thresholds' configuration and evaluation over the store.
#[derive(Debug, Clone)]
pub struct Thresholds {
    store: Store,
    templates: Templates,
}

impl Thresholds {
    pub fn new(store: Store, templates: Templates) -> Thresholds {
        Thresholds { store, templates }
    }

    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// Sets a threshold of billing account `account_id`: a new one, or, when one of the
    /// same kind and level exists, that one with the new language and webhook flag.
    /// Returns it and whether it is new.
    pub async fn set(
        &self,
        actor: &str,
        account_id: &str,
        spec: &ThresholdSpec,
        now: Timestamp,
    ) -> Result<(ThresholdRow, bool)> {
        let mut tx = self.store.begin().await?;
        if tx.billing_account(account_id).await?.is_none() {
            return Err(CustomersError::NotFound { kind: "billing account", id: account_id.to_owned() });
        }
        let existing = tx.thresholds_of(account_id).await?;
        let same = existing
            .iter()
            .find(|t| t.kind == spec.kind.as_str() && t.amount == spec.amount && t.percent == spec.percent);
        let (row, created) = match same {
            Some(found) => {
                tx.update_threshold_delivery(&found.id, &spec.language, spec.webhook).await?;
                let row = ThresholdRow { language: spec.language.clone(), webhook: spec.webhook, ..found.clone() };
                audit(&mut tx, actor, "threshold.update", &row.id, Some(&doc(found)), Some(&doc(&row)), now).await?;
                (row, false)
            }
            None => {
                if existing.len() >= MAX_THRESHOLDS_PER_ACCOUNT {
                    return Err(CustomersError::invalid(
                        "threshold",
                        format!("billing account {account_id} has {MAX_THRESHOLDS_PER_ACCOUNT} thresholds, the most allowed"),
                    ));
                }
                let row = ThresholdRow {
                    id: new_entity_id()?,
                    billing_account_id: account_id.to_owned(),
                    kind: spec.kind.as_str().to_owned(),
                    amount: spec.amount,
                    percent: spec.percent,
                    language: spec.language.clone(),
                    webhook: spec.webhook,
                    tripped: false,
                    episode: 1,
                    created_at: now,
                };
                tx.insert_threshold(&row).await?;
                audit(&mut tx, actor, "threshold.create", &row.id, None, Some(&doc(&row)), now).await?;
                (row, true)
            }
        };
        tx.commit().await?;
        Ok((row, created))
    }

    /// The thresholds of billing account `account_id`.
    pub async fn list(&self, account_id: &str) -> Result<Vec<ThresholdRow>> {
        Ok(self.store.thresholds_of(account_id).await?)
    }

    /// Deletes threshold `id` of billing account `account_id`.
    pub async fn delete(&self, actor: &str, account_id: &str, id: &str, now: Timestamp) -> Result<ThresholdRow> {
        let mut tx = self.store.begin().await?;
        let not_found = || CustomersError::NotFound { kind: "threshold", id: id.to_owned() };
        let row = tx.delete_threshold(id).await?.ok_or_else(not_found)?;
        if row.billing_account_id != account_id {
            return Err(not_found());
        }
        audit(&mut tx, actor, "threshold.delete", id, Some(&doc(&row)), None, now).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Applies what [`decide`] finds due for `thresholds` (one account's, in `currency`)
    /// given `account`: each crossing recorded once, with its hub event when the threshold
    /// has a webhook, in one transaction per threshold. Returns the crossings recorded now.
    pub async fn evaluate(
        &self,
        thresholds: &[ThresholdRow],
        currency: &str,
        account: &EngineAccount,
        now: Timestamp,
    ) -> Result<Vec<CrossingRow>> {
        let mut recorded = Vec::new();
        for decision in decide(thresholds, currency, account) {
            if let Some(crossing) = self.apply(decision, currency, account, now).await? {
                recorded.push(crossing);
            }
        }
        Ok(recorded)
    }

    async fn apply(
        &self,
        decision: Decision,
        currency: &str,
        account: &EngineAccount,
        now: Timestamp,
    ) -> Result<Option<CrossingRow>> {
        let mut tx = self.store.begin().await?;
        let threshold_id = match &decision {
            Decision::Cross { threshold_id, .. } | Decision::Rearm { threshold_id, .. } => threshold_id.clone(),
        };
        // Decided again on the row as it is now (another server, a changed threshold).
        let Some(current) = tx.lock_threshold(&threshold_id).await? else { return Ok(None) };
        if !decide(std::slice::from_ref(&current), currency, account).contains(&decision) {
            return Ok(None);
        }
        let (kind, key, mut values, detail) = match decision {
            Decision::Cross { kind, key, values, detail, .. } => (kind, key, values, detail),
            Decision::Rearm { episode, .. } => {
                tx.set_threshold_state(&threshold_id, false, episode).await?;
                let after = doc(&ThresholdRow { tripped: false, episode, ..current.clone() });
                let before = doc(&current);
                audit(&mut tx, ENGINE_EVALUATOR, "threshold.rearm", &threshold_id, Some(&before), Some(&after), now)
                    .await?;
                tx.commit().await?;
                return Ok(None);
            }
        };
        let name = match tx.billing_account(&current.billing_account_id).await? {
            Some(found) => found.value.name,
            None => current.billing_account_id.clone(),
        };
        values.push(("name", name));
        let message = self.templates.message(&current.language, kind, &values);
        let mut crossing = CrossingRow {
            threshold_id: threshold_id.clone(),
            crossing_key: key,
            billing_account_id: current.billing_account_id.clone(),
            kind: kind.as_str().to_owned(),
            message,
            event_id: None,
            crossed_at: now,
        };
        if !tx.insert_crossing(&crossing).await? {
            return Ok(None);
        }
        if kind == ThresholdKind::BalanceBelow {
            tx.set_threshold_state(&threshold_id, true, current.episode).await?;
        }
        let entity = json!({
            "id": format!("{threshold_id}/{}", crossing.crossing_key),
            "billingAccount": {"id": current.billing_account_id},
            "threshold": {"id": threshold_id, "kind": crossing.kind},
            "crossingKey": crossing.crossing_key,
            "language": current.language,
            "message": crossing.message,
            "crossedAt": now.to_string(),
            "detail": detail,
        });
        if current.webhook {
            let published = tx
                .publish_event(
                    NewEvent {
                        api: ACCOUNT_BASE_PATH,
                        event_type: THRESHOLD_EVENT,
                        entity_type: "thresholdCrossing",
                        entity_id: &current.billing_account_id,
                        entity: &entity,
                    },
                    now,
                )
                .await?;
            tx.set_crossing_event(&threshold_id, &crossing.crossing_key, &published.event_id).await?;
            crossing.event_id = Some(published.event_id);
        }
        audit(&mut tx, ENGINE_EVALUATOR, "threshold.cross", &threshold_id, None, Some(&entity), now).await?;
        tx.commit().await?;
        Ok(Some(crossing))
    }
}

/// Who the audit trail says recorded crossings and re-armings.
pub const ENGINE_EVALUATOR: &str = "system:tollgate-thresholds";

/// A threshold as the CLI and the audit trail show it.
pub fn doc(row: &ThresholdRow) -> Value {
    json!({
        "id": row.id,
        "billingAccount": {"id": row.billing_account_id},
        "kind": row.kind,
        "amount": row.amount.map(|a| a.to_string()),
        "percent": row.percent,
        "language": row.language,
        "webhook": row.webhook,
        "tripped": row.tripped,
        "episode": row.episode,
        "createdAt": row.created_at.to_string(),
    })
}

async fn audit(
    tx: &mut Tx,
    actor: &str,
    action: &str,
    id: &str,
    before: Option<&Value>,
    after: Option<&Value>,
    now: Timestamp,
) -> Result<()> {
    let record = AuditRecord { actor, action, entity_type: THRESHOLD_ENTITY, entity_id: id, before, after };
    tx.audit(record, now).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::AllowanceBucket;

    fn account(balance: &str, allowances: Vec<AllowanceBucket>) -> EngineAccount {
        crate::testing::prepaid_view(balance, allowances)
    }

    fn bucket(granted: u64, remaining: u64) -> AllowanceBucket {
        AllowanceBucket {
            id: 7,
            subscription: 20,
            name: "data 1 GB".into(),
            service: "data".into(),
            unit: "bytes".into(),
            granted,
            remaining,
            reserved: 0,
            valid_from_s: 1_767_225_600,
            valid_until_s: 1_769_904_000,
        }
    }

    fn threshold(kind: &str, amount: Option<&str>, percent: Option<i64>, tripped: bool, episode: i64) -> ThresholdRow {
        ThresholdRow {
            id: "t1".into(),
            billing_account_id: "a1".into(),
            kind: kind.into(),
            amount: amount.map(|a| a.parse().expect("decimal")),
            percent,
            language: "en".into(),
            webhook: true,
            tripped,
            episode,
            created_at: Timestamp::UNIX_EPOCH,
        }
    }

    /// What `decide` finds as short strings: `cross:KEY` or `rearm:EPISODE`.
    fn check(threshold: ThresholdRow, account: EngineAccount, expected: &[&str]) {
        let found: Vec<String> = decide(&[threshold], "EUR", &account)
            .into_iter()
            .map(|d| match d {
                Decision::Cross { key, .. } => format!("cross:{key}"),
                Decision::Rearm { episode, .. } => format!("rearm:{episode}"),
            })
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn a_balance_threshold_fires_below_its_amount_once_per_episode_and_rearms_at_or_above() {
        let at = |tripped, episode, balance| (threshold("balance_below", Some("5"), None, tripped, episode), balance);
        for ((row, balance), expected) in [
            (at(false, 1, "5.01"), vec![]),
            (at(false, 1, "5.00"), vec![]),
            (at(false, 1, "4.99"), vec!["cross:episode-1"]),
            (at(false, 1, "-3"), vec!["cross:episode-1"]),
            (at(true, 1, "4.99"), vec![]),
            (at(true, 1, "5"), vec!["rearm:2"]),
            (at(true, 2, "20"), vec!["rearm:3"]),
            (at(false, 2, "1"), vec!["cross:episode-2"]),
        ] {
            check(row, account(balance, vec![]), &expected);
        }
    }

    #[test]
    fn a_bundle_threshold_fires_when_the_used_share_reaches_its_percentage_per_bucket_period() {
        let t80 = || threshold("bundle_used", None, Some(80), false, 1);
        let key = "cross:bucket-20-7-from-1767225600";
        check(t80(), account("0", vec![bucket(1000, 201)]), &[]);
        check(t80(), account("0", vec![bucket(1000, 200)]), &[key]);
        check(t80(), account("0", vec![bucket(1000, 0)]), &[key]);
        check(t80(), account("0", vec![bucket(0, 0)]), &[]);
        let t100 = threshold("bundle_used", None, Some(100), false, 1);
        check(t100.clone(), account("0", vec![bucket(3, 1)]), &[]);
        check(t100, account("0", vec![bucket(3, 0)]), &[key]);
    }

    #[test]
    fn templates_fill_placeholders_in_the_threshold_s_language() {
        let templates = Templates::default();
        let values = [("name", "Ada".to_owned()), ("balance", "4.5 EUR".to_owned()), ("amount", "5 EUR".to_owned())];
        assert_eq!(
            templates.message("en", ThresholdKind::BalanceBelow, &values),
            "Ada: your balance is 4.5 EUR, below 5 EUR. Please top up."
        );
        assert_eq!(
            templates.message("de", ThresholdKind::BalanceBelow, &values),
            "Ada: Ihr Guthaben beträgt 4.5 EUR und liegt unter 5 EUR. Bitte laden Sie auf."
        );
        assert_eq!(fill("{a}{b} {unknown} {", &[("a", "1".into()), ("b", "{a}".into())]), "1{a} {unknown} {");
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "fr".to_owned(),
            Template { balance_below: "{name} : solde {balance}".into(), bundle_used: "{percent} %".into() },
        );
        let templates = Templates::with(overrides).expect("valid");
        assert_eq!(templates.languages(), ["de", "en", "fr"]);
        assert_eq!(templates.message("fr", ThresholdKind::BalanceBelow, &values), "Ada : solde 4.5 EUR");
    }

    #[test]
    fn a_threshold_is_validated_by_kind_level_and_language() {
        let templates = Templates::default();
        let ok = parse_threshold("balance_below", "5.00", "de", true, &templates).expect("valid");
        assert_eq!((ok.amount, ok.percent), (Some(Decimal::new(5, 0)), None));
        let ok = parse_threshold("bundle_used", "80%", "en", false, &templates).expect("valid");
        assert_eq!((ok.amount, ok.percent), (None, Some(80)));
        for (kind, level, language, field) in [
            ("balance_above", "5", "en", "kind"),
            ("balance_below", "five", "en", "amount"),
            ("balance_below", "0.0000000000001", "en", "amount"),
            ("bundle_used", "0", "en", "percent"),
            ("bundle_used", "101", "en", "percent"),
            ("bundle_used", "80.5", "en", "percent"),
            ("bundle_used", "80", "xx", "language"),
        ] {
            match parse_threshold(kind, level, language, true, &templates) {
                Err(CustomersError::Invalid { field: found, .. }) => assert_eq!(found, field, "{kind} {level}"),
                other => panic!("{kind} {level} {language}: {other:?}"),
            }
        }
    }
}
