//! Receivables, as pure functions: how a payment is allocated to an account's open
//! invoices ([`allocate`]), how what an account owes ages ([`age`], [`Aging`]) and which
//! dunning steps fall due ([`DunningPolicy`]). The store keeps payments, allocations and
//! the dunning steps taken; the binary reads them, calls these and saves what they return.
//!
//! **Allocation.** A payment goes first to the invoice its remittance names (when it
//! names one that is open), then to the open invoices oldest due date first (ties: the
//! order given, the store's by invoice number), each up to what it still owes; what is
//! left stays on the account as unallocated credit and is allocated when the next invoice
//! becomes final. Amounts add up: the parts plus what is left are the payment.
//!
//! **Aging.** An open invoice's outstanding amount is *current* until its due date and then
//! in the bucket of the days it is overdue: 1–30, 31–60, 61–90, over 90.
//!
//! **Dunning.** A policy is a list of steps, each taken once per invoice when the invoice
//! is overdue by at least the step's days and still owes at least the policy's minimum:
//! a reminder (an event to the operator's listeners, which send the letter or SMS), then
//! a suspend (a suspend order for the account's active lines through the order flow). A
//! suspension made by dunning is lifted (a resume order) when the account no longer owes
//! anything overdue.

use std::collections::BTreeSet;

use jiff::civil::Date;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{BillingError, Result};

/// An invoice that still owes something, as allocation and aging need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenInvoice {
    pub invoice_id: String,
    /// The reference a payer quotes: the bill number (`issuer/series/number`).
    pub bill_no: String,
    pub due_on: Date,
    /// What it still owes: its total, less credit notes and allocated payments (> 0).
    pub outstanding: Decimal,
}

/// A payment's parts: what went to which invoice, and what was left over.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allocation {
    pub parts: Vec<(String, Decimal)>,
    pub unallocated: Decimal,
}

/// Allocates `amount` (> 0) over `open`: first the invoice whose bill number or id is
/// `named`, then oldest due first (a stable sort, so ties keep the order given).
pub fn allocate(amount: Decimal, open: &[OpenInvoice], named: Option<&str>) -> Result<Allocation> {
    if amount <= Decimal::ZERO {
        return Err(BillingError::invalid("amount", format!("a payment is more than zero, not {amount}")));
    }
    let mut order: Vec<&OpenInvoice> = open.iter().filter(|invoice| invoice.outstanding > Decimal::ZERO).collect();
    order.sort_by_key(|invoice| invoice.due_on);
    if let Some(named) = named {
        if let Some(at) = order.iter().position(|i| i.bill_no == named || i.invoice_id == named) {
            let first = order.remove(at);
            order.insert(0, first);
        }
    }
    let mut left = amount;
    let mut parts = Vec::new();
    for invoice in order {
        if left.is_zero() {
            break;
        }
        let part = left.min(invoice.outstanding);
        parts.push((invoice.invoice_id.clone(), part));
        left -= part;
    }
    Ok(Allocation { parts, unallocated: left })
}

/// What is owed, by how long it is overdue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Aging {
    /// Not due yet.
    pub current: Decimal,
    pub days_1_30: Decimal,
    pub days_31_60: Decimal,
    pub days_61_90: Decimal,
    pub days_over_90: Decimal,
}

impl Aging {
    /// Everything owed.
    pub fn total(&self) -> Decimal {
        self.current + self.overdue()
    }

    /// Everything past its due date.
    pub fn overdue(&self) -> Decimal {
        self.days_1_30 + self.days_31_60 + self.days_61_90 + self.days_over_90
    }

    /// The same amounts with exactly `decimals` decimals each (a currency's minor units:
    /// an empty bucket of EUR prints `0.00`, as an invoice's amounts do).
    pub fn with_decimals(mut self, decimals: u32) -> Aging {
        for bucket in
            [&mut self.current, &mut self.days_1_30, &mut self.days_31_60, &mut self.days_61_90, &mut self.days_over_90]
        {
            *bucket = bucket.round_dp(decimals);
            bucket.rescale(decimals);
        }
        self
    }

    fn add(&mut self, days_overdue: i64, amount: Decimal) {
        let bucket = match days_overdue {
            ..=0 => &mut self.current,
            1..=30 => &mut self.days_1_30,
            31..=60 => &mut self.days_31_60,
            61..=90 => &mut self.days_61_90,
            _ => &mut self.days_over_90,
        };
        *bucket += amount;
    }
}

/// Days `due_on` lies before `as_of` (0 when it is not past).
pub fn days_overdue(as_of: Date, due_on: Date) -> i64 {
    due_on.until(as_of).map(|span| i64::from(span.get_days())).unwrap_or(0).max(0)
}

/// The aging of `open` on `as_of`.
pub fn age(as_of: Date, open: &[OpenInvoice]) -> Aging {
    let mut aging = Aging::default();
    for invoice in open {
        aging.add(days_overdue(as_of, invoice.due_on), invoice.outstanding);
    }
    aging
}

/// What a dunning step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DunningAction {
    /// Tell the customer: an event for the operator's listeners.
    Reminder,
    /// Suspend the account's active lines through the order flow.
    Suspend,
}

/// One step of a dunning policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DunningStep {
    /// Its name, unique in the policy (recorded per invoice: a step is taken once).
    pub name: String,
    /// Taken when the invoice is overdue by at least this many days.
    pub after_days: u16,
    pub action: DunningAction,
}

/// A dunning policy: its steps in the order they are taken, and the least overdue amount
/// that is dunned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DunningPolicy {
    pub steps: Vec<DunningStep>,
    /// An invoice owing less than this is not dunned (rounding leftovers).
    #[serde(default)]
    pub minimum_outstanding: Decimal,
}

/// The most steps a policy may have.
pub const MAX_DUNNING_STEPS: usize = 16;

impl Default for DunningPolicy {
    /// A reminder 7 days after the due date, a suspension after 21.
    fn default() -> DunningPolicy {
        DunningPolicy {
            steps: vec![
                DunningStep { name: "reminder".into(), after_days: 7, action: DunningAction::Reminder },
                DunningStep { name: "suspend".into(), after_days: 21, action: DunningAction::Suspend },
            ],
            minimum_outstanding: Decimal::ZERO,
        }
    }
}

impl DunningPolicy {
    /// Reads a policy from JSON and checks it.
    pub fn from_json(text: &str) -> Result<DunningPolicy> {
        let policy: DunningPolicy =
            serde_json::from_str(text).map_err(|e| BillingError::invalid("dunning policy", e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// Steps named once each (1 to 64 characters), their days not decreasing, at most
    /// [`MAX_DUNNING_STEPS`], a minimum not below zero.
    pub fn validate(&self) -> Result<()> {
        if self.steps.len() > MAX_DUNNING_STEPS {
            return Err(BillingError::TooMany { field: "steps".into(), limit: MAX_DUNNING_STEPS });
        }
        if self.minimum_outstanding < Decimal::ZERO {
            return Err(BillingError::invalid("minimumOutstanding", "is below zero"));
        }
        let mut names = BTreeSet::new();
        for (i, step) in self.steps.iter().enumerate() {
            let field = format!("steps[{i}].name");
            if step.name.is_empty() || step.name.chars().count() > 64 {
                return Err(BillingError::invalid(field, "1 to 64 characters"));
            }
            if !names.insert(step.name.as_str()) {
                return Err(BillingError::invalid(field, format!("{:?} is named twice", step.name)));
            }
            if i > 0 && step.after_days < self.steps[i - 1].after_days {
                return Err(BillingError::invalid(
                    format!("steps[{i}].afterDays"),
                    format!("{} comes before the previous step's {}", step.after_days, self.steps[i - 1].after_days),
                ));
            }
        }
        Ok(())
    }

    /// The steps due for an invoice overdue by `days_overdue` that still owes
    /// `outstanding`, less those already `taken` (by name), in policy order.
    pub fn due_steps<'a>(
        &'a self,
        days_overdue: i64,
        outstanding: Decimal,
        taken: &BTreeSet<String>,
    ) -> Vec<&'a DunningStep> {
        if days_overdue <= 0 || outstanding <= Decimal::ZERO || outstanding < self.minimum_outstanding {
            return Vec::new();
        }
        self.steps
            .iter()
            .filter(|step| i64::from(step.after_days) <= days_overdue && !taken.contains(&step.name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use jiff::civil::date;

    use super::*;

    fn money(text: &str) -> Decimal {
        Decimal::from_str(text).expect("decimal")
    }

    fn open(id: &str, due: Date, outstanding: &str) -> OpenInvoice {
        OpenInvoice {
            invoice_id: id.into(),
            bill_no: format!("acme/INV/{}", &id[1..]),
            due_on: due,
            outstanding: money(outstanding),
        }
    }

    #[test]
    fn a_payment_goes_to_the_oldest_due_invoice_first_and_the_rest_stays_as_credit() {
        let invoices = [open("i2", date(2026, 12, 15), "30.00"), open("i1", date(2026, 11, 15), "20.00")];
        let allocation = allocate(money("35.00"), &invoices, None).expect("allocate");
        assert_eq!(allocation.parts, vec![("i1".to_owned(), money("20.00")), ("i2".to_owned(), money("15.00"))]);
        assert_eq!(allocation.unallocated, Decimal::ZERO);

        let allocation = allocate(money("60.01"), &invoices, None).expect("allocate");
        assert_eq!(allocation.parts.iter().map(|p| p.1).sum::<Decimal>() + allocation.unallocated, money("60.01"));
        assert_eq!(allocation.unallocated, money("10.01"));
    }

    #[test]
    fn a_payment_naming_an_invoice_pays_that_one_first() {
        let invoices = [open("i1", date(2026, 11, 15), "20.00"), open("i2", date(2026, 12, 15), "30.00")];
        let allocation = allocate(money("25.00"), &invoices, Some("acme/INV/2")).expect("allocate");
        assert_eq!(allocation.parts, vec![("i2".to_owned(), money("25.00"))]);
        let allocation = allocate(money("25.00"), &invoices, Some("no such bill")).expect("allocate");
        assert_eq!(allocation.parts[0], ("i1".to_owned(), money("20.00")));
    }

    #[test]
    fn a_payment_of_nothing_is_refused() {
        assert!(matches!(allocate(Decimal::ZERO, &[], None), Err(BillingError::Invalid { .. })));
        assert!(matches!(allocate(money("-1"), &[], None), Err(BillingError::Invalid { .. })));
    }

    #[test]
    fn amounts_age_by_days_past_their_due_date() {
        let as_of = date(2026, 12, 31);
        let invoices = [
            open("i1", date(2026, 12, 31), "1"), // due today: current
            open("i2", date(2026, 12, 30), "2"), // 1 day
            open("i3", date(2026, 12, 1), "4"),  // 30 days
            open("i4", date(2026, 11, 30), "8"), // 31 days
            open("i5", date(2026, 10, 1), "16"), // 91 days
            open("i6", date(2026, 10, 2), "32"), // 90 days
        ];
        let aging = age(as_of, &invoices);
        assert_eq!(aging.current, money("1"));
        assert_eq!(aging.days_1_30, money("6"));
        assert_eq!(aging.days_31_60, money("8"));
        assert_eq!(aging.days_61_90, money("32"));
        assert_eq!(aging.days_over_90, money("16"));
        assert_eq!(aging.total(), money("63"));
        assert_eq!(days_overdue(date(2024, 3, 1), date(2024, 2, 28)), 2, "a leap day counts");
    }

    #[test]
    fn dunning_steps_fall_due_once_each_in_order() {
        let policy = DunningPolicy::default();
        let none = BTreeSet::new();
        assert!(policy.due_steps(6, money("10"), &none).is_empty());
        let due: Vec<&str> = policy.due_steps(7, money("10"), &none).iter().map(|s| s.name.as_str()).collect();
        assert_eq!(due, ["reminder"]);
        let due: Vec<&str> = policy.due_steps(30, money("10"), &none).iter().map(|s| s.name.as_str()).collect();
        assert_eq!(due, ["reminder", "suspend"]);
        let taken = BTreeSet::from(["reminder".to_owned()]);
        let due: Vec<&str> = policy.due_steps(30, money("10"), &taken).iter().map(|s| s.name.as_str()).collect();
        assert_eq!(due, ["suspend"]);
        assert!(policy.due_steps(30, Decimal::ZERO, &none).is_empty(), "a paid invoice is not dunned");
        let small = DunningPolicy { minimum_outstanding: money("5"), ..DunningPolicy::default() };
        assert!(small.due_steps(30, money("4.99"), &none).is_empty());
    }

    #[test]
    fn a_policy_is_checked_naming_the_field() {
        let twice = r#"{"steps": [{"name": "a", "afterDays": 5, "action": "reminder"},
                                  {"name": "a", "afterDays": 9, "action": "suspend"}]}"#;
        match DunningPolicy::from_json(twice) {
            Err(BillingError::Invalid { field, .. }) => assert_eq!(field, "steps[1].name"),
            other => panic!("{other:?}"),
        }
        let backwards = r#"{"steps": [{"name": "a", "afterDays": 9, "action": "reminder"},
                                      {"name": "b", "afterDays": 5, "action": "suspend"}]}"#;
        match DunningPolicy::from_json(backwards) {
            Err(BillingError::Invalid { field, .. }) => assert_eq!(field, "steps[1].afterDays"),
            other => panic!("{other:?}"),
        }
        assert!(DunningPolicy::from_json(r#"{"steps": [], "extra": 1}"#).is_err());
        let ok = DunningPolicy::from_json(
            r#"{"steps": [{"name": "x", "afterDays": 1, "action": "suspend"}], "minimumOutstanding": "2.5"}"#,
        )
        .expect("valid");
        assert_eq!(ok.minimum_outstanding, money("2.5"));
    }
}
