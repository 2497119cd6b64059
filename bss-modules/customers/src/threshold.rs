//! Thresholds and their notifications: per billing account, `balance_below` (an amount in
//! the account's currency), `spending_cap` (a postpaid account's unbilled charges reaching
//! an amount), `bundle_used` (a percentage of an allowance bucket's grant) and
//! `bundle_expiry` (a bucket with units left ending within some hours); a bundle threshold
//! may watch one subscription's buckets only. `renewal_refused` is told when the engine
//! refuses to debit a prepaid renewal's fees (once per renewal, whatever its retries:
//! [`Customers::settle`](crate::Customers::settle) records it with the refusal,
//! [`record_renewal_refused`]). [`decide`] is a pure function of (the
//! account's thresholds, the engine's view of the account, the time) → the crossings and
//! re-armings due; [`Thresholds::evaluate`] records each
//! crossing once (the store's unique key: a balance threshold's episode, a bundle's bucket
//! and validity start) and, in the same transaction, publishes its hub event
//! ([`THRESHOLD_EVENT`] on the accountManagement hub), so the hub's worker delivers it
//! once (signed, retried, dead-lettered) also after a crash. The message comes from a
//! per-language [`Templates`] (English and German built in, replaceable).
//!
//! A balance threshold fires when the balance falls below its amount and re-arms when it
//! is back at or above it (a top-up), so the next fall notifies again. A spending cap
//! fires when the charges not billed yet (the negative of a postpaid balance) reach its
//! amount and re-arms when they are below it again (the bill release at a final invoice).
//! A bundle threshold fires once per bucket and validity period: `bundle_used` when
//! (granted − remaining) / granted reaches its percentage, `bundle_expiry` when the bucket
//! still has units and ends within its hours (a time-driven check: `tollgate serve`
//! evaluates the accounts with one every minute, besides after their charges).

use std::collections::BTreeMap;

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tollgate_store::{
    new_entity_id, AuditRecord, CrossingRow, NewEvent, NewOutboxItem, RenewalRow, Store, ThresholdRow, Tx,
    MAX_THRESHOLDS_PER_ACCOUNT,
};

use crate::error::{CustomersError, Result};
use crate::port::{AllowanceBucket, EngineAccount};
use crate::service::{Customers, Principal, ACCOUNT_BASE_PATH};

/// The outbox kind of a crossing's short message: the payload is `{"reference", "to":
/// [MSISDN digits], "text"}`, sent by the binary's SMS gateway adapter under `reference`.
pub const SMS_OUTBOX_KIND: &str = "notification.sms";
/// Lines a crossing's short message goes to, at most.
pub const MAX_SMS_RECIPIENTS: u32 = 10;

/// The idempotency key (and gateway request id) of a crossing's short message.
pub fn sms_key(threshold_id: &str, crossing_key: &str) -> String {
    format!("sms-{threshold_id}-{crossing_key}")
}

/// The event a crossing publishes on the accountManagement hub.
pub const THRESHOLD_EVENT: &str = "BillingAccountThresholdEvent";
/// The audit trail's entity type.
const THRESHOLD_ENTITY: &str = "threshold";
/// The longest language tag taken.
const MAX_LANGUAGE_CHARS: usize = 16;
/// The longest template taken, in characters.
pub const MAX_TEMPLATE_CHARS: usize = 1000;

/// The longest warning time of a `bundle_expiry` threshold, in hours (a leap year).
pub const MAX_EXPIRY_HOURS: i64 = 8784;

/// What a threshold watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdKind {
    /// The balance fell below an amount.
    BalanceBelow,
    /// A postpaid account's unbilled charges reached an amount.
    SpendingCap,
    /// An allowance bucket's used share reached a percentage.
    BundleUsed,
    /// An allowance bucket with units left ends within some hours.
    BundleExpiry,
    /// A prepaid renewal's fees were refused by the engine (the balance does not cover
    /// them): told once per renewal, with the amount and the end of its grace.
    RenewalRefused,
}

impl ThresholdKind {
    pub const ALL: [ThresholdKind; 5] = [
        ThresholdKind::BalanceBelow,
        ThresholdKind::SpendingCap,
        ThresholdKind::BundleUsed,
        ThresholdKind::BundleExpiry,
        ThresholdKind::RenewalRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ThresholdKind::BalanceBelow => "balance_below",
            ThresholdKind::SpendingCap => "spending_cap",
            ThresholdKind::BundleUsed => "bundle_used",
            ThresholdKind::BundleExpiry => "bundle_expiry",
            ThresholdKind::RenewalRefused => "renewal_refused",
        }
    }

    pub fn parse(text: &str) -> Result<ThresholdKind> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|kind| kind.as_str()).collect();
            CustomersError::invalid("kind", format!("{text:?} is not one of {}", known.join(", ")))
        })
    }

    /// Whether it watches allowance buckets (and may be narrowed to one subscription).
    pub fn is_bundle(self) -> bool {
        matches!(self, ThresholdKind::BundleUsed | ThresholdKind::BundleExpiry)
    }

    /// Whether it is tripped while its condition holds and re-arms after (a balance).
    pub fn rearms(self) -> bool {
        matches!(self, ThresholdKind::BalanceBelow | ThresholdKind::SpendingCap)
    }
}

/// A threshold to set, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThresholdSpec {
    pub kind: ThresholdKind,
    /// `balance_below`'s and `spending_cap`'s amount.
    pub amount: Option<Decimal>,
    /// `bundle_used`'s percentage, 1 to 100.
    pub percent: Option<i64>,
    /// `bundle_expiry`'s warning time, 1 to [`MAX_EXPIRY_HOURS`] hours.
    pub hours: Option<i64>,
    /// A bundle threshold's one subscription (the store's id), if narrowed to it.
    pub subscription_id: Option<String>,
    pub language: String,
    pub webhook: bool,
    /// Also send the message by SMS to the lines' numbers.
    pub sms: bool,
}

/// Validates a threshold: `level` is an amount (`balance_below`; `spending_cap`, above
/// zero; at most [`crate::MAX_MONEY_SCALE`] decimals), a percentage such as `80`
/// (`bundle_used`), a time before a bucket ends such as `48h` or `3d` (`bundle_expiry`),
/// or empty (`renewal_refused`, which has no level);
/// `subscription` narrows a bundle threshold; `language` is a tag the templates know.
pub fn parse_threshold(
    kind: &str,
    level: &str,
    subscription: Option<&str>,
    language: &str,
    webhook: bool,
    templates: &Templates,
) -> Result<ThresholdSpec> {
    let kind = ThresholdKind::parse(kind)?;
    if let Some(subscription) = subscription {
        if !kind.is_bundle() {
            return Err(CustomersError::invalid(
                "subscription",
                format!(
                    "a {} threshold watches the whole account; only bundle thresholds name a subscription",
                    kind.as_str()
                ),
            ));
        }
        if subscription.is_empty() || subscription.len() > 64 {
            return Err(CustomersError::invalid("subscription", format!("{subscription:?} is not a subscription id")));
        }
    }
    if language.is_empty() || language.chars().count() > MAX_LANGUAGE_CHARS {
        return Err(CustomersError::invalid("language", format!("{language:?} is not a language tag")));
    }
    if !templates.knows(language) {
        return Err(CustomersError::invalid(
            "language",
            format!("no message template in {language:?} (known: {})", templates.languages().join(", ")),
        ));
    }
    let (amount, percent, hours) = match kind {
        ThresholdKind::BalanceBelow | ThresholdKind::SpendingCap => {
            let amount = Decimal::from_str_exact(level.trim())
                .map_err(|_| CustomersError::invalid("amount", format!("{level:?} is not a decimal amount")))?;
            let amount = amount.normalize();
            let digits = tollgate_billing::significant_digits(amount);
            if amount.scale() > crate::MAX_MONEY_SCALE || digits > crate::MAX_MONEY_DIGITS {
                return Err(CustomersError::invalid(
                    "amount",
                    format!(
                        "{level} has more than {} decimals or {} digits",
                        crate::MAX_MONEY_SCALE,
                        crate::MAX_MONEY_DIGITS
                    ),
                ));
            }
            if kind == ThresholdKind::SpendingCap && amount <= Decimal::ZERO {
                return Err(CustomersError::invalid("amount", format!("a spending cap of {level} is not above zero")));
            }
            (Some(amount.normalize()), None, None)
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
            (None, Some(percent), None)
        }
        ThresholdKind::BundleExpiry => (None, None, Some(expiry_hours(level)?)),
        ThresholdKind::RenewalRefused => {
            if !level.trim().is_empty() {
                return Err(CustomersError::invalid(
                    "level",
                    format!("a renewal_refused threshold has no level; {level:?} was given"),
                ));
            }
            (None, None, None)
        }
    };
    Ok(ThresholdSpec {
        kind,
        amount,
        percent,
        hours,
        subscription_id: subscription.map(str::to_owned),
        language: language.to_owned(),
        webhook,
        sms: false,
    })
}

/// `48`, `48h` or `2d` as hours, 1 to [`MAX_EXPIRY_HOURS`].
fn expiry_hours(level: &str) -> Result<i64> {
    let text = level.trim();
    let (number, per) = match text.strip_suffix('d') {
        Some(days) => (days, 24),
        None => (text.strip_suffix('h').unwrap_or(text), 1),
    };
    let hours = number.parse::<i64>().ok().and_then(|n| n.checked_mul(per));
    match hours {
        Some(hours) if (1..=MAX_EXPIRY_HOURS).contains(&hours) => Ok(hours),
        _ => Err(CustomersError::invalid(
            "hours",
            format!("{level:?} is not a time from 1h to {MAX_EXPIRY_HOURS}h (such as 48h or 3d)"),
        )),
    }
}

/// One language's message templates. Placeholders: `{name}` (the billing account's name),
/// `{amount}` (a balance threshold's or spending cap's amount with currency), `{balance}`
/// (the balance with currency), `{spent}` (the unbilled charges with currency),
/// `{percent}`, `{bundle}` (the allowance's name), `{remaining}` (its units left, with
/// the unit), `{until}` (when it ends, UTC; a refused renewal's last day of grace),
/// `{hours}`. `spending_cap`, `bundle_expiry` and `renewal_refused` (`{amount}`: the fees
/// refused) may be left out of a templates file: the built-in text of the same language
/// (English for another) is used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub balance_below: String,
    pub bundle_used: String,
    #[serde(default)]
    pub spending_cap: Option<String>,
    #[serde(default)]
    pub bundle_expiry: Option<String>,
    #[serde(default)]
    pub renewal_refused: Option<String>,
}

impl Template {
    fn text(&self, kind: ThresholdKind) -> Option<&str> {
        match kind {
            ThresholdKind::BalanceBelow => Some(&self.balance_below),
            ThresholdKind::BundleUsed => Some(&self.bundle_used),
            ThresholdKind::SpendingCap => self.spending_cap.as_deref(),
            ThresholdKind::BundleExpiry => self.bundle_expiry.as_deref(),
            ThresholdKind::RenewalRefused => self.renewal_refused.as_deref(),
        }
    }
}

/// The message templates by language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    by_language: BTreeMap<String, Template>,
    built_in: BTreeMap<String, Template>,
}

fn built_in() -> BTreeMap<String, Template> {
    let mut by_language = BTreeMap::new();
    by_language.insert(
        "en".to_owned(),
        Template {
            balance_below: "{name}: your balance is {balance}, below {amount}. Please top up.".to_owned(),
            bundle_used: "{name}: you have used {percent} % of your {bundle}.".to_owned(),
            spending_cap: Some(
                "{name}: your charges since your last bill are {spent}, reaching your cap of {amount}.".to_owned(),
            ),
            bundle_expiry: Some("{name}: your {bundle} ends on {until} with {remaining} left.".to_owned()),
            renewal_refused: Some(
                "{name}: your balance does not cover your plan's renewal of {amount}. Please top up by {until} to \
                 keep your service."
                    .to_owned(),
            ),
        },
    );
    by_language.insert(
        "de".to_owned(),
        Template {
            balance_below: "{name}: Ihr Guthaben beträgt {balance} und liegt unter {amount}. Bitte laden Sie auf."
                .to_owned(),
            bundle_used: "{name}: Sie haben {percent} % von {bundle} verbraucht.".to_owned(),
            spending_cap: Some(
                "{name}: Ihre Kosten seit der letzten Rechnung betragen {spent} und erreichen Ihre Grenze von {amount}."
                    .to_owned(),
            ),
            bundle_expiry: Some("{name}: {bundle} endet am {until}; es sind noch {remaining} übrig.".to_owned()),
            renewal_refused: Some(
                "{name}: Ihr Guthaben deckt die Verlängerung Ihres Tarifs über {amount} nicht. Bitte laden Sie bis \
                 {until} auf, damit Ihr Dienst aktiv bleibt."
                    .to_owned(),
            ),
        },
    );
    by_language
}

impl Default for Templates {
    /// English and German.
    fn default() -> Self {
        let built_in = built_in();
        Templates { by_language: built_in.clone(), built_in }
    }
}

impl Templates {
    /// The built-in templates with `overrides` added or replacing languages.
    pub fn with(overrides: BTreeMap<String, Template>) -> Result<Templates> {
        let mut templates = Templates::default();
        for (language, template) in overrides {
            for kind in ThresholdKind::ALL {
                let Some(text) = template.text(kind) else { continue };
                if text.is_empty() || text.chars().count() > MAX_TEMPLATE_CHARS {
                    return Err(CustomersError::invalid(
                        format!("{language}.{}", kind.as_str()),
                        format!("empty or longer than {MAX_TEMPLATE_CHARS} characters"),
                    ));
                }
                // A placeholder misspelt would reach the customer as written.
                let mut rest = text;
                while let Some(open) = rest.find('{') {
                    let after = &rest[open + 1..];
                    let Some(close) = after.find('}') else { break };
                    let name = &after[..close];
                    if !PLACEHOLDERS.contains(&name) {
                        return Err(CustomersError::invalid(
                            format!("{language}.{}", kind.as_str()),
                            format!("{{{name}}} is not a placeholder (they are {})", PLACEHOLDERS.join(", ")),
                        ));
                    }
                    rest = &after[close + 1..];
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

    /// The message of a `kind` crossing in `language` (English when it has none; the
    /// built-in text of the language, else English, when its template leaves `kind` out).
    pub fn message(&self, language: &str, kind: ThresholdKind, values: &[(&str, String)]) -> String {
        let text = [
            self.by_language.get(language),
            self.built_in.get(language),
            self.by_language.get("en"),
            self.built_in.get("en"),
        ]
        .into_iter()
        .flatten()
        .find_map(|template| template.text(kind))
        .unwrap_or("");
        if !decimal_comma(language) {
            return fill(text, values);
        }
        // Amounts as the language writes them: 3,99 EUR in German.
        let local: Vec<(&str, String)> = values
            .iter()
            .map(|(key, value)| match *key {
                "amount" | "balance" | "spent" => (*key, value.replacen('.', ",", 1)),
                _ => (*key, value.clone()),
            })
            .collect();
        fill(text, &local)
    }
}

/// Whether `language` (an ISO 639-1 code, perhaps with a region: `de`, `de-AT`) writes a
/// decimal comma: most of continental Europe and Latin America, Indonesia, Russia, Turkey
/// and Vietnam; English, Chinese, Japanese, Korean, Hebrew, Thai and Arabic in Latin
/// digits write a point.
fn decimal_comma(language: &str) -> bool {
    const COMMA: [&str; 28] = [
        "bg", "ca", "cs", "da", "de", "el", "es", "et", "fi", "fr", "hr", "hu", "id", "is", "it", "lt", "lv", "nb",
        "nl", "no", "pl", "pt", "ro", "ru", "sk", "sl", "sv", "tr",
    ];
    let base = language.split(['-', '_']).next().unwrap_or(language).to_ascii_lowercase();
    COMMA.contains(&base.as_str()) || base == "uk" || base == "vi" || base == "sr"
}

/// The placeholders a template may use.
const PLACEHOLDERS: [&str; 9] =
    ["name", "amount", "balance", "spent", "percent", "bundle", "remaining", "until", "hours"];

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
/// given the engine's `account` at `now`. Pure: the same inputs give the same answer.
pub fn decide(thresholds: &[ThresholdRow], currency: &str, account: &EngineAccount, now: Timestamp) -> Vec<Decision> {
    let mut due = Vec::new();
    for threshold in thresholds {
        let Ok(kind) = ThresholdKind::parse(&threshold.kind) else { continue };
        match (kind, threshold.amount) {
            (ThresholdKind::BalanceBelow, Some(amount)) => {
                let balance = account.balance.normalize();
                let values =
                    vec![("amount", format!("{amount} {currency}")), ("balance", format!("{balance} {currency}"))];
                let detail = json!({
                    "amount": {"value": amount.to_string(), "unit": currency},
                    "balance": {"value": balance.to_string(), "unit": currency},
                    "episode": threshold.episode,
                });
                episode(&mut due, threshold, kind, account.balance < amount, values, detail);
            }
            (ThresholdKind::SpendingCap, Some(amount)) => {
                // The charges not billed yet: a postpaid balance below zero.
                let spent = (-account.balance).max(Decimal::ZERO).normalize();
                let values = vec![("amount", format!("{amount} {currency}")), ("spent", format!("{spent} {currency}"))];
                let detail = json!({
                    "amount": {"value": amount.to_string(), "unit": currency},
                    "spent": {"value": spent.to_string(), "unit": currency},
                    "episode": threshold.episode,
                });
                episode(&mut due, threshold, kind, spent >= amount, values, detail);
            }
            (ThresholdKind::BundleUsed, _) => {
                let Some(percent) = threshold.percent else { continue };
                for bucket in account.allowances.iter().filter(|bucket| watches(threshold, bucket)) {
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
                        kind,
                        key: format!("bucket-{}-{}-from-{}", bucket.subscription, bucket.id, bucket.valid_from_s),
                        values: vec![("percent", percent.to_string()), ("bundle", bucket.name.clone())],
                        detail: json!({"percent": percent, "bucket": bucket_doc(bucket)}),
                    });
                }
            }
            (ThresholdKind::BundleExpiry, _) => {
                let Some(hours) = threshold.hours else { continue };
                let now_s = now.as_second();
                for bucket in account.allowances.iter().filter(|bucket| watches(threshold, bucket)) {
                    let ends_within = bucket.valid_until_s > now_s && bucket.valid_until_s - now_s <= hours * 3600;
                    if bucket.remaining == 0 || bucket.valid_from_s > now_s || !ends_within {
                        continue;
                    }
                    let until = Timestamp::from_second(bucket.valid_until_s)
                        .map(|at| at.strftime("%Y-%m-%d %H:%M UTC").to_string())
                        .unwrap_or_else(|_| bucket.valid_until_s.to_string());
                    due.push(Decision::Cross {
                        threshold_id: threshold.id.clone(),
                        kind,
                        key: format!("expiry-{}-{}-from-{}", bucket.subscription, bucket.id, bucket.valid_from_s),
                        values: vec![
                            ("hours", hours.to_string()),
                            ("bundle", bucket.name.clone()),
                            ("remaining", format!("{} {}", bucket.remaining, bucket.unit)),
                            ("until", until),
                        ],
                        detail: json!({"hours": hours, "bucket": bucket_doc(bucket)}),
                    });
                }
            }
            _ => {}
        }
    }
    due
}

/// A balance or spending threshold: a crossing when `past` and it was not tripped, a
/// re-arming when no longer `past` and it was.
fn episode(
    due: &mut Vec<Decision>,
    threshold: &ThresholdRow,
    kind: ThresholdKind,
    past: bool,
    values: Vec<(&'static str, String)>,
    detail: Value,
) {
    if past && !threshold.tripped {
        due.push(Decision::Cross {
            threshold_id: threshold.id.clone(),
            kind,
            key: format!("episode-{}", threshold.episode),
            values,
            detail,
        });
    } else if !past && threshold.tripped {
        due.push(Decision::Rearm { threshold_id: threshold.id.clone(), episode: threshold.episode + 1 });
    }
}

/// Whether a bundle threshold watches `bucket`: every bucket of the account, or only its
/// subscription's.
fn watches(threshold: &ThresholdRow, bucket: &AllowanceBucket) -> bool {
    match (&threshold.subscription_id, threshold.engine_subscription_id) {
        (None, _) => true,
        (Some(_), Some(subscription)) => bucket.subscription == subscription,
        (Some(_), None) => false,
    }
}

fn bucket_doc(bucket: &AllowanceBucket) -> Value {
    json!({
        "id": bucket.id, "subscription": bucket.subscription, "name": bucket.name,
        "unit": bucket.unit, "granted": bucket.granted, "remaining": bucket.remaining,
        "validFrom": bucket.valid_from_s, "validUntil": bucket.valid_until_s,
    })
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
        let Some(account) = tx.billing_account(account_id).await? else {
            return Err(CustomersError::NotFound { kind: "billing account", id: account_id.to_owned() });
        };
        if spec.kind == ThresholdKind::SpendingCap && account.value.account_type == "prepaid" {
            return Err(CustomersError::invalid(
                "kind",
                format!(
                    "a spending cap watches the unbilled charges of a postpaid or hybrid account; billing account \
                     {account_id} is prepaid (use balance_below)"
                ),
            ));
        }
        if spec.kind == ThresholdKind::BalanceBelow
            && account.value.account_type == "prepaid"
            && spec.amount.is_some_and(|amount| amount.is_sign_negative() && !amount.is_zero())
        {
            return Err(CustomersError::invalid(
                "amount",
                format!("billing account {account_id} is prepaid: its balance never goes below zero"),
            ));
        }
        if let Some(subscription) = &spec.subscription_id {
            if tx.subscription_account(subscription).await?.as_deref() != Some(account_id) {
                return Err(CustomersError::invalid(
                    "subscription",
                    format!("billing account {account_id} has no subscription {subscription}"),
                ));
            }
        }
        let existing = tx.thresholds_of(account_id).await?;
        let same = existing.iter().find(|t| {
            t.kind == spec.kind.as_str()
                && t.amount == spec.amount
                && t.percent == spec.percent
                && t.hours == spec.hours
                && t.subscription_id == spec.subscription_id
        });
        let (row, created) = match same {
            Some(found) => {
                tx.update_threshold_delivery(&found.id, &spec.language, spec.webhook, spec.sms).await?;
                let row = ThresholdRow {
                    language: spec.language.clone(),
                    webhook: spec.webhook,
                    sms: spec.sms,
                    ..found.clone()
                };
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
                    hours: spec.hours,
                    subscription_id: spec.subscription_id.clone(),
                    engine_subscription_id: None,
                    language: spec.language.clone(),
                    webhook: spec.webhook,
                    sms: spec.sms,
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

    /// Billing account `id` if `who` reaches it (a partner: within its hierarchy, else
    /// `Forbidden`); an unknown one is refused naming `field`, to a partner as one outside
    /// its hierarchy (it learns nothing of the accounts of others).
    async fn reach(&self, who: &Principal, field: &'static str, id: &str) -> Result<()> {
        let Some(account) = self.store.billing_account(id).await? else {
            let refused = CustomersError::invalid(field, format!("no billing account {id}"));
            return Err(who.unknown(&format!("billing account {id}"), refused));
        };
        Customers::reach_account(who, &account.value)
    }

    /// [`Thresholds::set`] by `who`: a partner sets its hierarchy's accounts' only.
    pub async fn set_by(
        &self,
        who: &Principal,
        account_id: &str,
        spec: &ThresholdSpec,
        now: Timestamp,
    ) -> Result<(ThresholdRow, bool)> {
        self.reach(who, "billingAccount", account_id).await?;
        self.set(&who.actor, account_id, spec, now).await
    }

    /// Billing account `account_id`'s thresholds as `who` may see them (a partner: its
    /// hierarchy's accounts' only).
    pub async fn list_by(&self, who: &Principal, account_id: &str) -> Result<Vec<ThresholdRow>> {
        self.reach(who, "billingAccount.id", account_id).await?;
        self.list(account_id).await
    }

    /// Threshold `id` as `who` may see it: `NotFound` also for another hierarchy's (a
    /// partner learns nothing of it).
    pub async fn get_by(&self, who: &Principal, id: &str) -> Result<ThresholdRow> {
        let not_found = || CustomersError::NotFound { kind: "threshold", id: id.to_owned() };
        let row = self.store.threshold(id).await?.ok_or_else(not_found)?;
        match self.reach(who, "id", &row.billing_account_id).await {
            Ok(()) => Ok(row),
            Err(CustomersError::Forbidden { .. }) => Err(not_found()),
            Err(other) => Err(other),
        }
    }

    /// Deletes threshold `id` as `who` ([`Thresholds::get_by`]'s reach).
    pub async fn delete_by(&self, who: &Principal, id: &str, now: Timestamp) -> Result<ThresholdRow> {
        let row = self.get_by(who, id).await?;
        self.delete(&who.actor, &row.billing_account_id, id, now).await
    }

    /// A page of billing account `account_id`'s crossings, latest first, as `who` may
    /// see them, and how many it has.
    pub async fn crossings_by(
        &self,
        who: &Principal,
        account_id: &str,
        offset: u64,
        limit: u32,
    ) -> Result<(Vec<CrossingRow>, i64)> {
        self.reach(who, "billingAccount.id", account_id).await?;
        Ok(self.store.crossing_page(account_id, offset, limit).await?)
    }

    /// Applies what [`decide`] finds due for `thresholds` (one account's, in `currency`)
    /// given `account` at `now`: each crossing recorded once, with its hub event when the threshold
    /// has a webhook, in one transaction per threshold. Returns the crossings recorded now.
    pub async fn evaluate(
        &self,
        thresholds: &[ThresholdRow],
        currency: &str,
        account: &EngineAccount,
        now: Timestamp,
    ) -> Result<Vec<CrossingRow>> {
        let mut recorded = Vec::new();
        for decision in decide(thresholds, currency, account, now) {
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
        if !decide(std::slice::from_ref(&current), currency, account, now).contains(&decision) {
            return Ok(None);
        }
        let (kind, key, values, detail) = match decision {
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
        let crossing = record_crossing(&mut tx, &self.templates, &current, kind, key, values, detail, now).await?;
        if crossing.is_some() {
            if kind.rearms() {
                tx.set_threshold_state(&threshold_id, true, current.episode).await?;
            }
            tx.commit().await?;
        }
        Ok(crossing)
    }
}

/// Records a `kind` crossing of threshold `current` under `key` in `tx`, once: its
/// message in the threshold's language, its hub event when it has a webhook, its short
/// message in the outbox when it has `sms`, and its audit record. `None` when that key
/// was recorded before (nothing written).
#[allow(clippy::too_many_arguments)]
async fn record_crossing(
    tx: &mut Tx,
    templates: &Templates,
    current: &ThresholdRow,
    kind: ThresholdKind,
    key: String,
    mut values: Vec<(&'static str, String)>,
    detail: Value,
    now: Timestamp,
) -> Result<Option<CrossingRow>> {
    let threshold_id = &current.id;
    let name = match tx.billing_account(&current.billing_account_id).await? {
        Some(found) => found.value.name,
        None => current.billing_account_id.clone(),
    };
    values.push(("name", name));
    let message = templates.message(&current.language, kind, &values);
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
        tx.set_crossing_event(threshold_id, &crossing.crossing_key, &published.event_id).await?;
        crossing.event_id = Some(published.event_id);
    }
    if current.sms {
        let to =
            tx.msisdns_of(&current.billing_account_id, current.subscription_id.as_deref(), MAX_SMS_RECIPIENTS).await?;
        if !to.is_empty() {
            let key = sms_key(threshold_id, &crossing.crossing_key);
            let payload = json!({"reference": key, "to": to, "text": crossing.message});
            let item =
                NewOutboxItem { idempotency_key: &key, kind: SMS_OUTBOX_KIND, ordering_key: None, payload: &payload };
            tx.enqueue(item, now).await?;
        }
    }
    audit(tx, ENGINE_EVALUATOR, "threshold.cross", threshold_id, None, Some(&entity), now).await?;
    Ok(Some(crossing))
}

/// Tells the account's `renewal_refused` thresholds that the engine refused renewal
/// `renewal`'s fees, in `tx` (the transaction recording the refusal): one crossing per
/// threshold and renewal (key `renewal-{statement}`), so its later refused retries tell
/// nothing more. Returns the crossings recorded now.
pub(crate) async fn record_renewal_refused(
    tx: &mut Tx,
    templates: &Templates,
    renewal: &RenewalRow,
    now: Timestamp,
) -> Result<Vec<CrossingRow>> {
    let mut recorded = Vec::new();
    let kind = ThresholdKind::RenewalRefused;
    let amount = renewal.amount.normalize();
    let values = vec![("amount", format!("{amount} {}", renewal.currency)), ("until", renewal.grace_until.to_string())];
    let detail = json!({
        "statement": {"id": renewal.invoice_id},
        "amount": {"value": amount.to_string(), "unit": renewal.currency},
        "renewalOn": renewal.renewal_on.to_string(),
        "graceUntil": renewal.grace_until.to_string(),
    });
    let key = format!("renewal-{}", renewal.invoice_id);
    for threshold in tx.thresholds_of(&renewal.billing_account_id).await? {
        if threshold.kind != kind.as_str() {
            continue;
        }
        let (values, detail, key) = (values.clone(), detail.clone(), key.clone());
        if let Some(crossing) = record_crossing(tx, templates, &threshold, kind, key, values, detail, now).await? {
            recorded.push(crossing);
        }
    }
    Ok(recorded)
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
        "hours": row.hours,
        "subscription": row.subscription_id.as_ref().map(|id| json!({"id": id})),
        "language": row.language,
        "webhook": row.webhook,
        "sms": row.sms,
        "tripped": row.tripped,
        "episode": row.episode,
        "createdAt": row.created_at.to_string(),
    })
}

/// A crossing notified, as the CLI and the API show it.
pub fn crossing_doc(row: &CrossingRow) -> Value {
    json!({
        "threshold": {"id": row.threshold_id},
        "billingAccount": {"id": row.billing_account_id},
        "kind": row.kind,
        "crossingKey": row.crossing_key,
        "message": row.message,
        "eventId": row.event_id,
        "crossedAt": row.crossed_at.to_string(),
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
            hours: None,
            subscription_id: None,
            engine_subscription_id: None,
            language: "en".into(),
            webhook: true,
            sms: false,
            tripped,
            episode,
            created_at: Timestamp::UNIX_EPOCH,
        }
    }

    /// What `decide` finds as short strings: `cross:KEY` or `rearm:EPISODE`.
    fn check(threshold: ThresholdRow, account: EngineAccount, expected: &[&str]) {
        check_at(threshold, account, Timestamp::UNIX_EPOCH, expected);
    }

    fn check_at(threshold: ThresholdRow, account: EngineAccount, now: Timestamp, expected: &[&str]) {
        let found: Vec<String> = decide(&[threshold], "EUR", &account, now)
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
            "Ada: Ihr Guthaben beträgt 4,5 EUR und liegt unter 5 EUR. Bitte laden Sie auf.",
            "regression: a German text wrote its amounts with a decimal point"
        );
        assert_eq!(fill("{a}{b} {unknown} {", &[("a", "1".into()), ("b", "{a}".into())]), "1{a} {unknown} {");
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "fr".to_owned(),
            Template {
                balance_below: "{name} : solde {balance}".into(),
                bundle_used: "{percent} %".into(),
                spending_cap: None,
                bundle_expiry: Some("{bundle} : fin le {until}".into()),
                renewal_refused: None,
            },
        );
        let templates = Templates::with(overrides).expect("valid");
        assert_eq!(templates.languages(), ["de", "en", "fr"]);
        assert_eq!(templates.message("fr", ThresholdKind::BalanceBelow, &values), "Ada : solde 4,5 EUR");
        assert_eq!(templates.message("en-GB", ThresholdKind::BalanceBelow, &values).matches("4.5 EUR").count(), 1);
        // Regression: a template with a misspelt placeholder was taken, and the customer
        // would have read `{bogus}`.
        let mut bogus = BTreeMap::new();
        bogus.insert(
            "en".to_owned(),
            Template { balance_below: "{name}: {bogus}".into(), ..templates.by_language["fr"].clone() },
        );
        match Templates::with(bogus) {
            Err(CustomersError::Invalid { field, reason }) => {
                assert_eq!(field, "en.balance_below");
                assert!(reason.contains("{bogus}"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let expiry = [("bundle", "data 1 GB".to_owned()), ("until", "2026-02-01 00:00 UTC".to_owned())];
        assert_eq!(
            templates.message("fr", ThresholdKind::BundleExpiry, &expiry),
            "data 1 GB : fin le 2026-02-01 00:00 UTC"
        );
        // A kind its file leaves out: the built-in text (English, as French has none).
        let spent = [("name", "Ada".to_owned()), ("spent", "50 EUR".to_owned()), ("amount", "50 EUR".to_owned())];
        assert_eq!(
            templates.message("fr", ThresholdKind::SpendingCap, &spent),
            "Ada: your charges since your last bill are 50 EUR, reaching your cap of 50 EUR."
        );
        let mut german = BTreeMap::new();
        german.insert("de".to_owned(), Template { spending_cap: None, ..templates.by_language["fr"].clone() });
        let templates = Templates::with(german).expect("valid");
        assert!(templates.message("de", ThresholdKind::SpendingCap, &spent).starts_with("Ada: Ihre Kosten"));
    }

    #[test]
    fn a_threshold_is_validated_by_kind_level_and_language() {
        let templates = Templates::default();
        let ok = parse_threshold("balance_below", "5.00", None, "de", true, &templates).expect("valid");
        assert_eq!((ok.amount, ok.percent), (Some(Decimal::new(5, 0)), None));
        let ok = parse_threshold("bundle_used", "80%", Some("s1"), "en", false, &templates).expect("valid");
        assert_eq!((ok.amount, ok.percent, ok.subscription_id.as_deref()), (None, Some(80), Some("s1")));
        let ok = parse_threshold("spending_cap", "50", None, "en", true, &templates).expect("valid");
        assert_eq!(ok.amount, Some(Decimal::new(50, 0)));
        let ok = parse_threshold("renewal_refused", " ", None, "en", true, &templates).expect("valid");
        assert_eq!((ok.amount, ok.percent, ok.hours), (None, None, None));
        for (level, hours) in [("48", 48), ("48h", 48), ("3d", 72), ("8784h", 8784)] {
            let ok = parse_threshold("bundle_expiry", level, None, "en", true, &templates).expect(level);
            assert_eq!((ok.hours, ok.amount, ok.percent), (Some(hours), None, None), "{level}");
        }
        for (kind, level, subscription, language, field) in [
            ("balance_above", "5", None, "en", "kind"),
            ("balance_below", "five", None, "en", "amount"),
            ("balance_below", "0.0000000000001", None, "en", "amount"),
            ("balance_below", "5", Some("s1"), "en", "subscription"),
            ("spending_cap", "0", None, "en", "amount"),
            ("spending_cap", "-10", None, "en", "amount"),
            ("spending_cap", "10", Some("s1"), "en", "subscription"),
            ("bundle_used", "0", None, "en", "percent"),
            ("bundle_used", "101", None, "en", "percent"),
            ("bundle_used", "80.5", None, "en", "percent"),
            ("bundle_used", "80", Some(""), "en", "subscription"),
            ("bundle_used", "80", None, "xx", "language"),
            ("bundle_expiry", "0", None, "en", "hours"),
            ("bundle_expiry", "367d", None, "en", "hours"),
            ("bundle_expiry", "2w", None, "en", "hours"),
            ("bundle_expiry", "-5h", None, "en", "hours"),
            ("renewal_refused", "5", None, "en", "level"),
            ("renewal_refused", "", Some("s1"), "en", "subscription"),
        ] {
            match parse_threshold(kind, level, subscription, language, true, &templates) {
                Err(CustomersError::Invalid { field: found, .. }) => assert_eq!(found, field, "{kind} {level}"),
                other => panic!("{kind} {level} {language}: {other:?}"),
            }
        }
    }

    fn postpaid(balance: &str) -> EngineAccount {
        EngineAccount { account_type: crate::engine::AccountType::Postpaid, ..account(balance, vec![]) }
    }

    #[test]
    fn a_spending_cap_fires_when_unbilled_charges_reach_it_and_rearms_after_the_bill_release() {
        let at = |tripped, episode, balance| (threshold("spending_cap", Some("50"), None, tripped, episode), balance);
        for ((row, balance), expected) in [
            (at(false, 1, "0"), vec![]),
            (at(false, 1, "-49.99"), vec![]),
            (at(false, 1, "-50"), vec!["cross:episode-1"]),
            (at(false, 1, "-80"), vec!["cross:episode-1"]),
            (at(true, 1, "-80"), vec![]),
            (at(true, 1, "-49.99"), vec!["rearm:2"]),
            (at(true, 2, "12"), vec!["rearm:3"]),
            (at(false, 3, "-50.01"), vec!["cross:episode-3"]),
        ] {
            check(row, postpaid(balance), &expected);
        }
    }

    #[test]
    fn a_bundle_expiry_warns_once_per_bucket_period_within_its_hours_while_units_are_left() {
        let t48 = || ThresholdRow { hours: Some(48), ..threshold("bundle_expiry", None, None, false, 1) };
        let until = 1_769_904_000; // bucket(…)'s end
        let at = |seconds_before_end: i64| Timestamp::from_second(until - seconds_before_end).expect("time");
        let key = "cross:expiry-20-7-from-1767225600";
        check_at(t48(), account("0", vec![bucket(1000, 10)]), at(48 * 3600 + 1), &[]);
        check_at(t48(), account("0", vec![bucket(1000, 10)]), at(48 * 3600), &[key]);
        check_at(t48(), account("0", vec![bucket(1000, 10)]), at(1), &[key]);
        check_at(t48(), account("0", vec![bucket(1000, 10)]), at(0), &[]);
        check_at(t48(), account("0", vec![bucket(1000, 0)]), at(3600), &[]);
        // A bucket not started yet is not about to end.
        let future = AllowanceBucket { valid_from_s: until - 60, ..bucket(1000, 1000) };
        check_at(t48(), account("0", vec![future]), at(3600), &[]);
    }

    #[test]
    fn a_bundle_threshold_of_one_subscription_watches_its_buckets_only() {
        let mine = |engine| ThresholdRow {
            subscription_id: Some("s-20".into()),
            engine_subscription_id: engine,
            ..threshold("bundle_used", None, Some(80), false, 1)
        };
        let other = AllowanceBucket { subscription: 21, ..bucket(1000, 0) };
        check(
            mine(Some(20)),
            account("0", vec![bucket(1000, 100), other.clone()]),
            &["cross:bucket-20-7-from-1767225600"],
        );
        check(
            mine(Some(21)),
            account("0", vec![bucket(1000, 100), other.clone()]),
            &["cross:bucket-21-7-from-1767225600"],
        );
        check(mine(None), account("0", vec![bucket(1000, 100), other]), &[]);
    }
}
