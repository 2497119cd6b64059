//! The bill run's rules, on plain inputs: which cycle `--cycle 2026-11` means for an
//! account ([`closing_cycle`]: the cycle whose last day falls in that month), and what an
//! account of a hierarchy is billed for it ([`plan_invoice`]): its products' recurring
//! prices in arrears for the days they were active, their one-time prices once, and its
//! rated usage not yet billed and posted before the cycle's end, grouped by service, with
//! the units allowances paid as zero-priced lines. Every billed item carries a key naming
//! what it is; an item whose key was billed already is left out, so a rerun bills nothing
//! twice and usage that arrives after its cycle was billed goes on the next invoice.
//!
//! The caller (the `tollgate bill-run` command) reads the store and the engine's ledger
//! into these inputs and writes what comes back; no SQL, no I/O, no clock here.

use std::collections::{BTreeMap, BTreeSet};

use jiff::tz::TimeZone;
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tollgate_tariffs::RoundingMode;

use crate::currency::currency_rounding;
use crate::cycle::{BillingCycle, DateSpan};
use crate::discount::{Credit, Discount};
use crate::error::{BillingError, Result};
use crate::invoice::{
    compose, AccountCharges, AllowanceDraw, ChargeTiming, Invoice, InvoiceInputs, OneOffCharge, RecurringCharge,
    UsageCharge,
};
use crate::journal::ChartOfAccounts;
use crate::tax::{PriceBasis, TaxProfile, TaxRate, TaxRounding};

/// The jurisdiction and tax profile used when the configuration names none.
pub const DEFAULT_JURISDICTION: &str = "default";
/// The tax profile of an account that names none and a configuration without a default.
pub const UNTAXED_PROFILE: &str = "untaxed";

/// How bill runs are made: the operator's calendar, the issuer and number series, the
/// rounding, tax profiles and the general-ledger chart. Read from JSON; every field has a
/// default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// The operator's IANA time zone: which calendar day an instant falls on.
    pub time_zone: String,
    /// The issuing entity invoices are numbered for.
    pub issuer: String,
    /// The number series of invoices.
    pub series: String,
    /// The number series of prepaid hierarchies' statements (never `series`).
    pub statement_series: String,
    /// The number series of credit notes (never `series` nor `statement_series`).
    pub credit_note_series: String,
    /// The days a prepaid account's fees may stay unpaid after its renewal before its
    /// lines are suspended (0 to [`MAX_GRACE_DAYS`]); an offering's term named
    /// [`GRACE_TERM`] overrides it for the accounts that have it.
    pub prepaid_grace_days: u16,
    /// How charges are rounded to the currency's minor unit.
    pub rounding_mode: RoundingMode,
    /// Where the accounts' services are taxed.
    pub jurisdiction: String,
    /// The tax profiles accounts name (`tax_profile_id`).
    pub tax_profiles: Vec<TaxProfile>,
    /// The profile of an account that names none; [`UNTAXED_PROFILE`] (0 %) when `None`.
    pub default_tax_profile: Option<String>,
    /// The service class of recurring and one-time charges.
    pub product_service_class: String,
    /// The service class of usage.
    pub usage_service_class: String,
    /// How many cycles before the billed one usage is read from (1 to
    /// [`MAX_LOOKBACK_CYCLES`]): usage posted then and never billed (it arrived after its
    /// cycle's run) goes on this invoice; older unbilled usage is left for reconciliation.
    pub usage_lookback_cycles: u8,
    /// The general-ledger account codes (`bill-run export-gl`).
    pub chart: ChartOfAccounts,
    /// Whether a product's suspended days are charged its recurring prices (README,
    /// "Proration policy"); by default they are not.
    pub suspended_days: SuspendedDays,
}

/// What a product's recurring prices charge for the days it is suspended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SuspendedDays {
    /// Not charged: a suspended line pays again from the day it is resumed.
    #[default]
    Free,
    /// Charged as active days (an operator whose suspension keeps the contract running).
    Charged,
}

/// The longest grace a prepaid renewal may have.
pub const MAX_GRACE_DAYS: u16 = 92;
/// The name of the TMF620 `productOfferingTerm` that gives an offering's prepaid grace
/// (its `duration` in days).
pub const GRACE_TERM: &str = "prepaidGracePeriod";

/// The most cycles a bill run looks back for usage not billed yet.
pub const MAX_LOOKBACK_CYCLES: u8 = 12;

impl Default for RunConfig {
    fn default() -> RunConfig {
        RunConfig {
            time_zone: "UTC".to_owned(),
            issuer: "tollgate".to_owned(),
            series: "INV".to_owned(),
            statement_series: "ST".to_owned(),
            credit_note_series: "CN".to_owned(),
            prepaid_grace_days: 7,
            rounding_mode: RoundingMode::HalfEven,
            jurisdiction: DEFAULT_JURISDICTION.to_owned(),
            tax_profiles: Vec::new(),
            default_tax_profile: None,
            product_service_class: "telecom".to_owned(),
            usage_service_class: "telecom".to_owned(),
            usage_lookback_cycles: 3,
            chart: ChartOfAccounts {
                receivable: "1200".to_owned(),
                revenue: BTreeMap::new(),
                revenue_default: Some("4000".to_owned()),
                tax_payable: BTreeMap::new(),
                tax_payable_default: Some("2200".to_owned()),
                prepaid_balance: Some("2300".to_owned()),
            },
            suspended_days: SuspendedDays::Free,
        }
    }
}

impl RunConfig {
    /// The operator's time zone, checked.
    pub fn zone(&self) -> Result<TimeZone> {
        TimeZone::get(&self.time_zone)
            .map_err(|error| BillingError::invalid("time_zone", format!("{:?}: {error}", self.time_zone)))
    }

    /// Checks every field: the zone exists, names are not empty, profiles valid and unique,
    /// the default profile exists.
    pub fn validate(&self) -> Result<()> {
        self.zone()?;
        for (field, value) in [
            ("issuer", &self.issuer),
            ("series", &self.series),
            ("statement_series", &self.statement_series),
            ("credit_note_series", &self.credit_note_series),
            ("jurisdiction", &self.jurisdiction),
            ("product_service_class", &self.product_service_class),
            ("usage_service_class", &self.usage_service_class),
        ] {
            if value.trim().is_empty() || value.chars().count() > crate::invoice::MAX_TEXT_CHARS {
                return Err(BillingError::invalid(field, "is empty or too long"));
            }
        }
        if self.statement_series == self.series {
            return Err(BillingError::invalid("statement_series", "is the invoices' series"));
        }
        if self.credit_note_series == self.series || self.credit_note_series == self.statement_series {
            return Err(BillingError::invalid("credit_note_series", "is the invoices' or the statements' series"));
        }
        if self.prepaid_grace_days > MAX_GRACE_DAYS {
            return Err(BillingError::invalid(
                "prepaid_grace_days",
                format!("{} is more than {MAX_GRACE_DAYS}", self.prepaid_grace_days),
            ));
        }
        if !(1..=MAX_LOOKBACK_CYCLES).contains(&self.usage_lookback_cycles) {
            return Err(BillingError::invalid(
                "usage_lookback_cycles",
                format!("{} is not 1 to {MAX_LOOKBACK_CYCLES}", self.usage_lookback_cycles),
            ));
        }
        let mut ids = BTreeSet::new();
        for (index, profile) in self.tax_profiles.iter().enumerate() {
            profile.validate()?;
            if !ids.insert(profile.id.as_str()) || profile.id == UNTAXED_PROFILE {
                return Err(BillingError::invalid(format!("tax_profiles[{index}].id"), "is used twice"));
            }
        }
        if let Some(id) = &self.default_tax_profile {
            if !ids.contains(id.as_str()) {
                return Err(BillingError::invalid("default_tax_profile", format!("{id:?} is not a listed profile")));
            }
        }
        Ok(())
    }

    /// The tax profile an account names (its `tax_profile_id`), or the default.
    pub fn tax_profile(&self, field: &str, id: Option<&str>) -> Result<TaxProfile> {
        let wanted = id.or(self.default_tax_profile.as_deref());
        match wanted {
            None => Ok(TaxProfile {
                id: UNTAXED_PROFILE.to_owned(),
                basis: PriceBasis::Exclusive,
                rounding: TaxRounding::PerLine,
                rounding_mode: self.rounding_mode,
                rates: vec![TaxRate {
                    code: "NONE".to_owned(),
                    jurisdiction: self.jurisdiction.clone(),
                    service_class: None,
                    rate: Decimal::ZERO,
                }],
            }),
            Some(id) => self
                .tax_profiles
                .iter()
                .find(|profile| profile.id == id)
                .cloned()
                .ok_or_else(|| BillingError::invalid(field, format!("tax profile {id:?} is not configured"))),
        }
    }
}

/// `YYYY-MM` as a year and month.
pub fn parse_cycle(text: &str) -> Result<(i16, i8)> {
    let bad = || BillingError::invalid("cycle", format!("{text:?} is not YYYY-MM"));
    let (year, month) = text.split_once('-').ok_or_else(bad)?;
    if year.len() != 4 || month.len() != 2 {
        return Err(bad());
    }
    let (year, month) = (year.parse::<i16>().map_err(|_| bad())?, month.parse::<i8>().map_err(|_| bad())?);
    if !(1..=12).contains(&month) || year < 1970 {
        return Err(bad());
    }
    // A cycle's end and the next cycle's start must be dates too (the calendar ends in 9999).
    if year > 9998 {
        return Err(BillingError::invalid("cycle", format!("{text:?} is after 9998-12")));
    }
    Ok((year, month))
}

/// The cycle of an account with `bill_cycle_day` whose last day falls in `year`-`month`:
/// with day 1 the calendar month, else the cycle that started the month before.
pub fn closing_cycle(year: i16, month: i8, bill_cycle_day: u8, zone: TimeZone) -> Result<BillingCycle> {
    if bill_cycle_day == 1 {
        return BillingCycle::starting_in(year, month, 1, zone);
    }
    let (year, month) = if month == 1 { (year - 1, 12) } else { (year, month - 1) };
    BillingCycle::starting_in(year, month, bill_cycle_day, zone)
}

/// Where a bill run starts reading usage for an account with `bill_cycle_day`: the start
/// of the cycle `lookback_cycles` before the one closing in `year`-`month`.
pub fn usage_window_start(
    year: i16,
    month: i8,
    bill_cycle_day: u8,
    lookback_cycles: u8,
    zone: TimeZone,
) -> Result<Timestamp> {
    let months = i32::from(year) * 12 + i32::from(month) - 1 - i32::from(lookback_cycles);
    let (year, month) = (
        i16::try_from(months / 12).map_err(|_| BillingError::invalid("cycle", "out of range"))?,
        (months % 12 + 1) as i8,
    );
    closing_cycle(year, month, bill_cycle_day, zone)?.starts_at()
}

/// Recurring or one-time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PriceKind {
    Recurring,
    OneTime,
}

impl PriceKind {
    /// A ProductOfferingPrice's `priceType`: `recurring`, else billed once (`oneTime`;
    /// usage prices are the engine's and never reach a bill run as products).
    pub fn from_tmf(price_type: &str) -> PriceKind {
        if price_type == "recurring" {
            PriceKind::Recurring
        } else {
            PriceKind::OneTime
        }
    }
}

/// A product (a line or an add-on) of an account with one of its offering's prices over
/// one period of its history: from `started_at` to its termination (`terminated_at`, a
/// charged day) or the change that ended the period (`changed_at`: a plan change, a
/// suspension or a resumption, whose day belongs to the period after it). The periods of
/// one product and price are charged together, each by its days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductInput {
    pub product_id: String,
    /// The order that created it.
    pub order_id: Option<String>,
    pub price_id: String,
    pub description: String,
    pub kind: PriceKind,
    /// For a cycle (recurring) or once.
    pub amount: Decimal,
    pub currency: String,
    pub started_at: Timestamp,
    pub terminated_at: Option<Timestamp>,
    /// The period ended with a change at this instant (its day is not this period's).
    pub changed_at: Option<Timestamp>,
    /// The product was suspended in this period ([`RunConfig::suspended_days`]).
    pub suspended: bool,
    /// Recurring prices: charged in arrears or in advance.
    pub timing: ChargeTiming,
}

/// One rated-event ledger entry of an account, as the bill run reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageInput {
    /// What it is: `usage:{engine account}:{lsn}:{n}`.
    pub key: String,
    pub posted_at: Timestamp,
    /// The service (charge type); `None` bills as `usage`.
    pub service: Option<String>,
    /// What the engine charged (positive), exact.
    pub charged: Decimal,
    pub currency: String,
    /// Units charged and units allowances paid.
    pub units: u64,
    pub allowance_units: u64,
}

/// One account of a hierarchy and what it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInput {
    pub account_id: String,
    pub currency: String,
    pub products: Vec<ProductInput>,
    pub usage: Vec<UsageInput>,
    /// What earlier invoices billed under this account's recurring keys (key → amount):
    /// an in-advance price's charge for the closing cycle, which it corrects.
    pub billed_amounts: BTreeMap<String, Decimal>,
    /// Its discounts (a hierarchy's: the invoiced account's), each applied for the days of
    /// the cycle it is valid on.
    pub discounts: Vec<Discount>,
    /// Its credits, each with what is left of it.
    pub credits: Vec<Credit>,
}

/// An item the invoice bills, under the key that keeps it from being billed again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BilledKey {
    pub key: String,
    pub kind: PriceKindOrUsage,
    pub account_id: String,
    /// What was charged: a recurring price's amount for the cycle its key names (prorated;
    /// a correction: the difference), a one-time price, or the usage charged.
    pub amount: Decimal,
    pub currency: String,
}

/// What a billed item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PriceKindOrUsage {
    Recurring,
    OneOff,
    Usage,
}

/// A planned invoice: the composed draft, the items it bills and what it takes of each
/// credit (credit id → amount, none when nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedInvoice {
    pub invoice: Invoice,
    pub billed: Vec<BilledKey>,
    pub credits_used: BTreeMap<String, Decimal>,
}

/// The key of a product's recurring price for the cycle starting on `cycle_from`.
pub fn recurring_key(product_id: &str, price_id: &str, cycle: &BillingCycle) -> String {
    format!("recurring:{product_id}:{price_id}:{}", cycle.span().from)
}

/// The key of an in-advance recurring price's correction of the cycle starting on
/// `cycle_from` (what it had minus what was charged for it in advance): billed once, by the
/// invoice of that cycle.
pub fn correction_key(product_id: &str, price_id: &str, cycle: &BillingCycle) -> String {
    format!("recurring-correction:{product_id}:{price_id}:{}", cycle.span().from)
}

/// Every key [`plan_invoice`] may look up for `accounts` in `cycle`, for the caller to
/// read what was billed under them (and how much) before planning.
pub fn lookup_keys(cycle: &BillingCycle, accounts: &[AccountInput]) -> Result<Vec<String>> {
    let next = cycle.next()?;
    let mut keys = BTreeSet::new();
    for account in accounts {
        keys.extend(account.usage.iter().map(|entry| entry.key.clone()));
        for product in &account.products {
            let (id, price) = (product.product_id.as_str(), product.price_id.as_str());
            match product.kind {
                PriceKind::Recurring => {
                    keys.insert(recurring_key(id, price, cycle));
                    keys.insert(recurring_key(id, price, &next));
                    keys.insert(correction_key(id, price, cycle));
                }
                PriceKind::OneTime => {
                    keys.insert(one_off_key(product.order_id.as_deref(), id, price));
                }
            }
        }
    }
    Ok(keys.into_iter().collect())
}

/// The key of a product's one-time price.
pub fn one_off_key(order_id: Option<&str>, product_id: &str, price_id: &str) -> String {
    format!("one-off:{}:{product_id}:{price_id}", order_id.unwrap_or("-"))
}

/// The invoice of a hierarchy for `cycle` (the invoiced account first in `accounts`),
/// leaving out what `billed` holds; `None` when there is nothing to bill.
pub fn plan_invoice(
    cycle: &BillingCycle,
    config: &RunConfig,
    tax_profile_id: Option<&str>,
    accounts: &[AccountInput],
    billed: &BTreeSet<String>,
) -> Result<Option<PlannedInvoice>> {
    let Some(root) = accounts.first() else {
        return Err(BillingError::invalid("accounts", "is empty"));
    };
    let mut keys = Vec::new();
    let mut sections = Vec::with_capacity(accounts.len());
    let span = cycle.span();
    for (index, account) in accounts.iter().enumerate() {
        let field = format!("accounts[{index}]");
        let mut charges = AccountCharges {
            account_id: account.account_id.clone(),
            currency: account.currency.clone(),
            jurisdiction: config.jurisdiction.clone(),
            recurring: Vec::new(),
            one_off: Vec::new(),
            usage: Vec::new(),
            allowances: Vec::new(),
            discounts: account.discounts.clone(),
            credits: account.credits.iter().filter(|credit| credit.amount > Decimal::ZERO).cloned().collect(),
        };
        let mut recurring: BTreeMap<(&str, &str), Vec<(usize, &ProductInput)>> = BTreeMap::new();
        let mut one_offs = BTreeSet::new();
        for (position, product) in account.products.iter().enumerate() {
            let field = format!("{field}.products[{position}]");
            let started_on = cycle.date_of(product.started_at);
            match product.kind {
                PriceKind::Recurring => {
                    recurring.entry((&product.product_id, &product.price_id)).or_default().push((position, product));
                }
                PriceKind::OneTime => {
                    let key = one_off_key(product.order_id.as_deref(), &product.product_id, &product.price_id);
                    if started_on >= span.until || billed.contains(&key) || !one_offs.insert(key.clone()) {
                        continue;
                    }
                    period_span(&field, product, cycle)?;
                    charges.one_off.push(OneOffCharge {
                        id: key.clone(),
                        product_id: Some(product.product_id.clone()),
                        charge_type: "one-off".to_owned(),
                        description: product.description.clone(),
                        service_class: config.product_service_class.clone(),
                        currency: product.currency.clone(),
                        amount: product.amount,
                        charged_on: started_on,
                    });
                    keys.push(billed_key(key, PriceKindOrUsage::OneOff, account, product.amount, &product.currency));
                }
            }
        }
        for periods in recurring.values() {
            if let Some((charge, billed_now)) = recurring_charge(&field, cycle, config, account, periods, billed)? {
                charges.recurring.push(charge);
                keys.extend(billed_now);
            }
        }
        // Usage not billed yet and posted before the cycle's end, by service and currency:
        // the exact sum rounded once.
        let mut groups: BTreeMap<(String, String), (Decimal, u64, u64)> = BTreeMap::new();
        for entry in &account.usage {
            if cycle.date_of(entry.posted_at) >= span.until || billed.contains(&entry.key) {
                continue;
            }
            let service = entry.service.clone().unwrap_or_else(|| "usage".to_owned());
            let group = groups.entry((service, entry.currency.clone())).or_default();
            group.0 += entry.charged;
            group.1 += entry.units;
            group.2 += entry.allowance_units;
            keys.push(billed_key(entry.key.clone(), PriceKindOrUsage::Usage, account, entry.charged, &entry.currency));
        }
        for ((service, currency), (charged, units, allowance_units)) in groups {
            let rounding = currency_rounding(&format!("{field}.usage"), &currency, config.rounding_mode)?;
            if units > allowance_units || !charged.is_zero() {
                charges.usage.push(UsageCharge {
                    product_id: None,
                    charge_type: service.clone(),
                    description: format!("{service} usage"),
                    service_class: config.usage_service_class.clone(),
                    currency,
                    quantity: Decimal::from(units - allowance_units.min(units)),
                    unit: "unit".to_owned(),
                    amount: rounding.apply(charged),
                    items: Vec::new(),
                });
            }
            if allowance_units > 0 {
                charges.allowances.push(AllowanceDraw {
                    product_id: None,
                    charge_type: service.clone(),
                    description: format!("{service} from allowances"),
                    quantity: Decimal::from(allowance_units),
                    unit: "unit".to_owned(),
                });
            }
        }
        sections.push(charges);
    }
    if keys.is_empty() {
        return Ok(None);
    }
    let inputs = InvoiceInputs {
        account_id: root.account_id.clone(),
        rounding_mode: config.rounding_mode,
        tax_profile: config.tax_profile("tax_profile_id", tax_profile_id)?,
        accounts: sections,
    };
    let invoice = compose(cycle, &inputs)?;
    keys.sort();
    // What each credit gave: its amount, less what the invoice left of it.
    let mut credits_used = BTreeMap::new();
    for credit in inputs.accounts.iter().flat_map(|account| &account.credits) {
        let left: Decimal = invoice
            .unused_credits
            .iter()
            .filter(|unused| unused.credit_id == credit.id)
            .map(|unused| unused.amount)
            .sum();
        if credit.amount > left {
            credits_used.insert(credit.id.clone(), credit.amount - left);
        }
    }
    Ok(Some(PlannedInvoice { invoice, billed: keys, credits_used }))
}

/// The days of one period of a product by the proration policy: from its start, through
/// its termination day, or up to (not including) the day of the change that ended it.
fn period_span(field: &str, product: &ProductInput, cycle: &BillingCycle) -> Result<DateSpan> {
    let started_on = cycle.date_of(product.started_at);
    let terminated_on = product.terminated_at.map(|at| cycle.date_of(at));
    let mut span = DateSpan::active(field, started_on, terminated_on)?;
    if let Some(changed_at) = product.changed_at {
        let changed_on = cycle.date_of(changed_at);
        if changed_on < started_on {
            return Err(BillingError::invalid(
                format!("{field}.changed_at"),
                format!("{changed_on} is before the period starts on {started_on}"),
            ));
        }
        span.until = span.until.min(changed_on);
    }
    Ok(span)
}

/// One product's recurring price over its periods (`periods`: their positions in the
/// account's products, all of one product and price), and the keys it bills: in arrears,
/// the closing cycle's days; in advance, the next cycle's days and the closing cycle's
/// correction against what an earlier invoice charged for it. `None` when nothing is due
/// (no day in the cycles, or billed already: a rerun).
fn recurring_charge(
    account_field: &str,
    cycle: &BillingCycle,
    config: &RunConfig,
    account: &AccountInput,
    periods: &[(usize, &ProductInput)],
    billed: &BTreeSet<String>,
) -> Result<Option<(RecurringCharge, Vec<BilledKey>)>> {
    let Some((first_position, first)) = periods.first() else { return Ok(None) };
    let field = format!("{account_field}.products[{first_position}]");
    let mut active = Vec::with_capacity(periods.len());
    for (position, product) in periods {
        let field = format!("{account_field}.products[{position}]");
        if (product.amount, &product.currency, product.timing) != (first.amount, &first.currency, first.timing) {
            return Err(BillingError::invalid(
                format!("{field}.amount"),
                format!("differs from the same price in {account_field}.products[{first_position}]"),
            ));
        }
        let span = period_span(&field, product, cycle)?;
        if !product.suspended || config.suspended_days == SuspendedDays::Charged {
            active.push(span);
        }
    }
    let rounding = currency_rounding(&format!("{field}.currency"), &first.currency, config.rounding_mode)?;
    let due = |cycle: &BillingCycle| -> Result<Decimal> {
        cycle
            .proration(&format!("{field}.active"), &active)?
            .apply(first.amount, rounding)
            .ok_or_else(|| BillingError::overflow(format!("{field}.amount")))
    };
    let meets = |days: DateSpan| active.iter().any(|span| !span.intersect(days).is_empty());
    let (product_id, price_id) = (first.product_id.as_str(), first.price_id.as_str());
    let mut keys = Vec::new();
    let billed_in_advance = match first.timing {
        ChargeTiming::InArrears => {
            let key = recurring_key(product_id, price_id, cycle);
            if !meets(cycle.span()) || billed.contains(&key) {
                return Ok(None);
            }
            keys.push(billed_key(key, PriceKindOrUsage::Recurring, account, due(cycle)?, &first.currency));
            Decimal::ZERO
        }
        ChargeTiming::InAdvance => {
            let next = cycle.next()?;
            let correction = correction_key(product_id, price_id, cycle);
            let ahead = recurring_key(product_id, price_id, &next);
            let charged =
                account.billed_amounts.get(&recurring_key(product_id, price_id, cycle)).copied().unwrap_or_default();
            let nothing = !meets(cycle.span()) && !meets(next.span()) && charged.is_zero();
            if nothing || billed.contains(&correction) || billed.contains(&ahead) {
                return Ok(None);
            }
            let difference = due(cycle)? - charged;
            keys.push(billed_key(correction, PriceKindOrUsage::Recurring, account, difference, &first.currency));
            if meets(next.span()) {
                keys.push(billed_key(ahead, PriceKindOrUsage::Recurring, account, due(&next)?, &first.currency));
            }
            charged
        }
    };
    let charge = RecurringCharge {
        product_id: product_id.to_owned(),
        charge_type: "recurring".to_owned(),
        description: first.description.clone(),
        service_class: config.product_service_class.clone(),
        currency: first.currency.clone(),
        price: first.amount,
        timing: first.timing,
        active,
        billed_in_advance,
    };
    Ok(Some((charge, keys)))
}

/// One rated usage entry of a cycle, for reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedEntry {
    pub key: String,
    pub account_id: String,
    pub charged: Decimal,
    pub currency: String,
}

/// What a cycle's rated usage became: billed, or carried over (not on an invoice yet), and
/// every entry billed with another amount than it was rated with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciliation {
    pub rated: u64,
    pub billed: u64,
    /// Per currency: rated, billed, carried over; rated = billed + carried over.
    pub amounts: BTreeMap<String, [Decimal; 3]>,
    /// The entries behind the difference: rated, not billed.
    pub carried_over: Vec<RatedEntry>,
    /// Entries billed with an amount other than the one rated (the amount billed).
    pub mismatched: Vec<(RatedEntry, Decimal)>,
}

/// Reconciles the rated entries of a cycle with what was billed (`billed`: key → amount
/// billed). Every entry is counted once, as billed or as carried over.
pub fn reconcile(rated: &[RatedEntry], billed: &BTreeMap<String, Decimal>) -> Reconciliation {
    let mut out = Reconciliation::default();
    for entry in rated {
        out.rated += 1;
        let sums = out.amounts.entry(entry.currency.clone()).or_default();
        sums[0] += entry.charged;
        match billed.get(&entry.key) {
            Some(amount) => {
                out.billed += 1;
                sums[1] += entry.charged;
                if *amount != entry.charged {
                    out.mismatched.push((entry.clone(), *amount));
                }
            }
            None => {
                sums[2] += entry.charged;
                out.carried_over.push(entry.clone());
            }
        }
    }
    out
}

fn billed_key(
    key: String,
    kind: PriceKindOrUsage,
    account: &AccountInput,
    amount: Decimal,
    currency: &str,
) -> BilledKey {
    BilledKey { key, kind, account_id: account.account_id.clone(), amount, currency: currency.to_owned() }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::invoice::Line;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("instant")
    }

    fn money(text: &str) -> Decimal {
        Decimal::from_str(text).expect("decimal")
    }

    fn account(products: Vec<ProductInput>, usage: Vec<UsageInput>) -> AccountInput {
        AccountInput {
            account_id: "acc-1".into(),
            currency: "EUR".into(),
            products,
            usage,
            billed_amounts: BTreeMap::new(),
            discounts: Vec::new(),
            credits: Vec::new(),
        }
    }

    fn product(kind: PriceKind, amount: &str, started: &str, terminated: Option<&str>) -> ProductInput {
        ProductInput {
            product_id: "line-1".into(),
            order_id: Some("order-1".into()),
            price_id: if kind == PriceKind::Recurring { "monthly".into() } else { "activation".into() },
            description: "Plan".into(),
            kind,
            amount: money(amount),
            currency: "EUR".into(),
            started_at: at(started),
            terminated_at: terminated.map(at),
            changed_at: None,
            suspended: false,
            timing: ChargeTiming::InArrears,
        }
    }

    fn usage(key: &str, posted: &str, charged: &str, units: u64, allowance_units: u64) -> UsageInput {
        UsageInput {
            key: key.into(),
            posted_at: at(posted),
            service: Some("voice".into()),
            charged: money(charged),
            currency: "EUR".into(),
            units,
            allowance_units,
        }
    }

    fn november() -> BillingCycle {
        closing_cycle(2026, 11, 1, TimeZone::UTC).expect("cycle")
    }

    #[test]
    fn the_cycle_closing_in_a_month_depends_on_the_cycle_day() {
        let check = |day: u8, from: &str, until: &str| {
            let cycle = closing_cycle(2026, 11, day, TimeZone::UTC).expect("cycle");
            assert_eq!((cycle.span().from.to_string(), cycle.span().until.to_string()), (from.into(), until.into()));
        };
        check(1, "2026-11-01", "2026-12-01");
        check(15, "2026-10-15", "2026-11-15");
        check(28, "2026-10-28", "2026-11-28");
        let from = usage_window_start(2027, 1, 10, 2, TimeZone::UTC).expect("start");
        assert_eq!(from.to_string(), "2026-10-10T00:00:00Z", "two cycles before [2026-12-10, 2027-01-10)");
        let january = closing_cycle(2027, 1, 10, TimeZone::UTC).expect("cycle");
        assert_eq!(january.span().from.to_string(), "2026-12-10");
        assert_eq!(parse_cycle("2026-11").expect("cycle"), (2026, 11));
        // 9999-12: its end (10000-01-01) is no date; a run of it failed inside (a 500 through the API).
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "x", "9999-12", "9999-01"] {
            assert!(matches!(parse_cycle(bad), Err(BillingError::Invalid { .. })), "{bad}");
        }
    }

    #[test]
    fn a_hierarchy_is_billed_its_products_once_and_its_unbilled_usage() {
        let products = vec![
            // 15 of 30 days of 30.00: 15.00; the activation fee once.
            product(PriceKind::Recurring, "30", "2026-11-16T10:00:00Z", None),
            product(PriceKind::OneTime, "9.99", "2026-11-16T10:00:00Z", None),
        ];
        let entries = vec![
            usage("usage:1:1:0", "2026-11-20T00:00:00Z", "0.0125", 60, 0),
            usage("usage:1:2:0", "2026-11-21T00:00:00Z", "0.0130", 60, 0),
            usage("usage:1:3:0", "2026-11-22T00:00:00Z", "0", 60, 60),
            // Posted after the cycle: the next invoice's.
            usage("usage:1:4:0", "2026-12-01T00:00:00Z", "1.00", 60, 0),
        ];
        let config = RunConfig::default();
        let planned = plan_invoice(&november(), &config, None, &[account(products, entries)], &BTreeSet::new())
            .expect("plan")
            .expect("something to bill");
        let keys: Vec<&str> = planned.billed.iter().map(|key| key.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "one-off:order-1:line-1:activation",
                "recurring:line-1:monthly:2026-11-01",
                "usage:1:1:0",
                "usage:1:2:0",
                "usage:1:3:0"
            ]
        );
        let total = planned.invoice.total("EUR").expect("EUR");
        // 15.00 + 9.99 + round(0.0255) = 0.03 (half-even), untaxed.
        assert_eq!((total.net.to_string(), total.gross.to_string()), ("25.02".into(), "25.02".into()));
        let lines = &planned.invoice.sections[0].lines;
        assert!(lines.iter().any(|line| line.kind == crate::LineKind::Allowance && line.quantity == Some(money("60"))));
        // Its credit note: every amount turned, each total still the sum of its lines, no
        // negative zero (the allowance line's 0.00), no usage items.
        let reversed = planned.invoice.reversal();
        let credited = reversed.total("EUR").expect("EUR");
        assert_eq!((credited.net.to_string(), credited.gross.to_string()), ("-25.02".into(), "-25.02".into()));
        let lines_sum: Decimal = reversed.sections[0].lines.iter().map(|line| line.gross).sum();
        assert_eq!(lines_sum, credited.gross);
        assert!(reversed.sections[0].lines.iter().all(|line| line.items.is_empty()));
        let json = serde_json::to_string(&reversed).expect("json");
        for zero in ["\"-0\"", "\"-0.0\"", "\"-0.00\"", "\"-0.000\""] {
            assert!(!json.contains(zero), "{json}");
        }
        assert_eq!(
            reversed.reversal().total("EUR"),
            planned.invoice.total("EUR"),
            "turned twice: the invoice's totals"
        );

        // Billed already: nothing; the late entry of the cycle is billed by the next one.
        let done: BTreeSet<String> = keys.iter().map(|key| (*key).to_owned()).collect();
        let again = plan_invoice(&november(), &config, None, &[account(vec![], vec![])], &done).expect("plan");
        assert_eq!(again, None);
        let december = november().next().expect("next");
        let late = vec![
            usage("usage:1:1:0", "2026-11-20T00:00:00Z", "0.0125", 60, 0),
            usage("usage:1:9:0", "2026-11-30T23:59:00Z", "0.50", 10, 0),
        ];
        let next =
            plan_invoice(&december, &config, None, &[account(vec![], late)], &done).expect("plan").expect("late usage");
        assert_eq!(next.billed.iter().map(|key| key.key.as_str()).collect::<Vec<_>>(), ["usage:1:9:0"]);
    }

    /// One period of line-1 with price `price` (`"s:30"`: price id `s`, 30.00 a cycle) from
    /// `from` to the change at `changed` (none: open), suspended or not.
    fn period(price: &str, from: &str, changed: Option<&str>, suspended: bool, timing: ChargeTiming) -> ProductInput {
        let (id, amount) = price.split_once(':').expect("id:amount");
        ProductInput {
            product_id: "line-1".into(),
            order_id: Some("order-1".into()),
            price_id: id.into(),
            description: format!("Plan {id}"),
            kind: PriceKind::Recurring,
            amount: money(amount),
            currency: "EUR".into(),
            started_at: at(from),
            terminated_at: None,
            changed_at: changed.map(at),
            suspended,
            timing,
        }
    }

    /// Plans November 2026 (30 days, UTC) for `products`, with `before` (key, amount)
    /// billed by earlier invoices: its recurring lines as `kind price period days/of
    /// amount` and its keys as `key=amount` (none: nothing to bill).
    fn check(config: &RunConfig, products: Vec<ProductInput>, before: &[(&str, &str)], lines: &[&str], keys: &[&str]) {
        let mut input = account(products, vec![]);
        input.billed_amounts = before.iter().map(|(key, amount)| ((*key).to_owned(), money(amount))).collect();
        let billed: BTreeSet<String> = input.billed_amounts.keys().cloned().collect();
        let planned = plan_invoice(&november(), config, None, &[input], &billed).expect("plan");
        let Some(planned) = planned else {
            assert!(lines.is_empty() && keys.is_empty(), "nothing was billed");
            return;
        };
        let seen: Vec<String> = planned.invoice.sections[0].lines.iter().map(Line::summary).collect();
        assert_eq!(seen, lines);
        let billed: Vec<String> = planned.billed.iter().map(|key| format!("{}={}", key.key, key.amount)).collect();
        assert_eq!(billed, keys);
    }

    #[test]
    fn a_plan_change_mid_cycle_bills_each_plan_its_days() {
        let arrears = ChargeTiming::InArrears;
        // Changed on 16 Nov at 12:00: S has 1..15 Nov (15/30 of 30.00 = 15.00), M has
        // 16..30 Nov (15/30 of 45.00 = 22.50); the day of the change is the new plan's.
        check(
            &RunConfig::default(),
            vec![
                period("s:30", "2026-10-20T09:00:00Z", Some("2026-11-16T12:00:00Z"), false, arrears),
                period("m:45", "2026-11-16T12:00:00Z", None, false, arrears),
            ],
            &[],
            &[
                "Recurring Plan s [2026-11-01, 2026-11-16) 15/30 15.00",
                "Recurring Plan m [2026-11-16, 2026-12-01) 15/30 22.50",
            ],
            &["recurring:line-1:m:2026-11-01=22.50", "recurring:line-1:s:2026-11-01=15.00"],
        );
    }

    #[test]
    fn discounts_and_credits_of_the_store_reduce_the_invoice_and_report_what_was_used() {
        let arrears = ChargeTiming::InArrears;
        let mut input = account(
            vec![
                period("s:30", "2026-10-20T09:00:00Z", Some("2026-11-16T12:00:00Z"), false, arrears),
                period("m:45", "2026-11-16T12:00:00Z", None, false, arrears),
            ],
            vec![],
        );
        let day = |text: &str| text.parse::<jiff::civil::Date>().expect("day");
        input.discounts = vec![Discount {
            id: "d1".into(),
            description: "Loyalty".into(),
            charge_type: "discount".into(),
            scope: crate::discount::DiscountScope::Account,
            value: crate::discount::DiscountValue::Percent(money("10")),
            valid: DateSpan::new("valid", day("2026-01-01"), jiff::civil::Date::MAX).expect("span"),
        }];
        let credit = |id: &str, amount: &str| Credit {
            id: id.into(),
            description: "Goodwill".into(),
            charge_type: "credit".into(),
            amount: money(amount),
            currency: "EUR".into(),
        };
        // 15.00 + 22.50 = 37.50; 10 % off: 3.75, 33.75 left; the 5.00 credit: 28.75, used whole.
        input.credits = vec![credit("c1", "5.00")];
        let plan = |input: &AccountInput| {
            plan_invoice(&november(), &RunConfig::default(), None, std::slice::from_ref(input), &BTreeSet::new())
                .expect("plan")
                .expect("something to bill")
        };
        let planned = plan(&input);
        assert_eq!(planned.invoice.total("EUR").expect("EUR").net, money("28.75"));
        assert_eq!(planned.credits_used, BTreeMap::from([("c1".to_owned(), money("5.00"))]));
        // A 50.00 credit: 33.75 of it used, 16.25 left for the next invoice.
        input.credits = vec![credit("c2", "50.00")];
        let planned = plan(&input);
        assert_eq!(planned.invoice.total("EUR").expect("EUR").net, money("0.00"));
        assert_eq!(planned.credits_used, BTreeMap::from([("c2".to_owned(), money("33.75"))]));
        assert_eq!(planned.invoice.unused_credits[0].amount, money("16.25"));
    }

    #[test]
    fn suspended_days_are_free_unless_the_run_charges_them() {
        let arrears = ChargeTiming::InArrears;
        let periods = || {
            vec![
                period("m:45", "2026-10-01T00:00:00Z", Some("2026-11-21T08:00:00Z"), false, arrears),
                period("m:45", "2026-11-21T08:00:00Z", Some("2026-11-26T10:00:00Z"), true, arrears),
                period("m:45", "2026-11-26T10:00:00Z", None, false, arrears),
            ]
        };
        // Suspended 21 Nov, resumed 26 Nov: 1..20 and 26..30 Nov, 25/30 of 45.00 = 37.50.
        check(
            &RunConfig::default(),
            periods(),
            &[],
            &["Recurring Plan m [2026-11-01, 2026-12-01) 25/30 37.50"],
            &["recurring:line-1:m:2026-11-01=37.50"],
        );
        // Charged: the whole month, 45.00.
        let charged = RunConfig { suspended_days: SuspendedDays::Charged, ..RunConfig::default() };
        check(
            &charged,
            periods(),
            &[],
            &["Recurring Plan m [2026-11-01, 2026-12-01) 30/30 45.00"],
            &["recurring:line-1:m:2026-11-01=45.00"],
        );
    }

    #[test]
    fn an_in_advance_price_bills_the_next_cycle_and_corrects_the_closing_one_once() {
        let advance = ChargeTiming::InAdvance;
        let products = || {
            vec![
                period("m:45", "2026-10-01T00:00:00Z", Some("2026-11-16T12:00:00Z"), false, advance),
                period("s:30", "2026-11-16T12:00:00Z", None, false, advance),
            ]
        };
        // October's invoice charged November's 45.00 for M in advance. Moved to S on 16 Nov:
        // M had 15/30 of 45.00 = 22.50, so -22.50 back and nothing of December; S had 15/30 of
        // 30.00 = 15.00 of November, never charged, and December in advance, 31/31 = 30.00.
        let before = [("recurring:line-1:m:2026-11-01", "45.00")];
        check(
            &RunConfig::default(),
            products(),
            &before,
            &[
                "Recurring Plan s [2026-12-01, 2027-01-01) 31/31 30.00",
                "RecurringAdjustment Plan m [2026-11-01, 2026-11-16) 15/30 -22.50",
                "RecurringAdjustment Plan s [2026-11-16, 2026-12-01) 15/30 15.00",
            ],
            &[
                "recurring-correction:line-1:m:2026-11-01=-22.50",
                "recurring-correction:line-1:s:2026-11-01=15.00",
                "recurring:line-1:s:2026-12-01=30.00",
            ],
        );
        // Run again with what it billed: nothing more.
        let again = [
            before[0],
            ("recurring-correction:line-1:m:2026-11-01", "-22.50"),
            ("recurring-correction:line-1:s:2026-11-01", "15.00"),
            ("recurring:line-1:s:2026-12-01", "30.00"),
        ];
        check(&RunConfig::default(), products(), &again, &[], &[]);
    }

    #[test]
    fn reconciliation_counts_each_entry_once_and_lists_the_differences() {
        let entry = |key: &str, charged: &str| RatedEntry {
            key: key.into(),
            account_id: "acc-1".into(),
            charged: money(charged),
            currency: "EUR".into(),
        };
        let rated = [entry("u1", "0.50"), entry("u2", "0.25"), entry("u3", "1.00"), entry("u4", "0.10")];
        let billed: BTreeMap<String, Decimal> =
            [("u1".to_owned(), money("0.50")), ("u2".to_owned(), money("0.20")), ("u4".to_owned(), money("0.10"))]
                .into();
        let report = reconcile(&rated, &billed);
        assert_eq!((report.rated, report.billed), (4, 3));
        assert_eq!(
            report.amounts["EUR"],
            [money("1.85"), money("0.85"), money("1.00")],
            "rated = billed + carried over"
        );
        assert_eq!(report.carried_over, [entry("u3", "1.00")], "the lost entry is named");
        assert_eq!(report.mismatched, [(entry("u2", "0.25"), money("0.20"))]);
    }

    #[test]
    fn a_product_terminated_before_the_cycle_is_not_billed() {
        let products = vec![product(PriceKind::Recurring, "30", "2026-09-01T00:00:00Z", Some("2026-10-31T12:00:00Z"))];
        let planned =
            plan_invoice(&november(), &RunConfig::default(), None, &[account(products, vec![])], &BTreeSet::new());
        assert_eq!(planned.expect("plan"), None);
    }

    #[test]
    fn the_configuration_is_checked_naming_the_field() {
        let mut config = RunConfig { time_zone: "Mars/Olympus".into(), ..RunConfig::default() };
        assert!(matches!(config.validate(), Err(BillingError::Invalid { field, .. }) if field == "time_zone"));
        config.time_zone = "Europe/Paris".into();
        config.default_tax_profile = Some("FR".into());
        assert!(
            matches!(config.validate(), Err(BillingError::Invalid { field, .. }) if field == "default_tax_profile")
        );
        config.default_tax_profile = None;
        config.validate().expect("valid");
        assert!(
            matches!(config.tax_profile("x", Some("nope")), Err(BillingError::Invalid { field, .. }) if field == "x")
        );
        let parsed: RunConfig = serde_json::from_str(r#"{"issuer": "acme", "series": "A"}"#).expect("json");
        assert_eq!((parsed.issuer.as_str(), parsed.time_zone.as_str()), ("acme", "UTC"));
        assert!(serde_json::from_str::<RunConfig>(r#"{"isuer": "acme"}"#).is_err(), "a misspelt field is refused");
        // Regression: inside the chart and the tax profiles a misspelt field was ignored.
        for nested in [
            r#"{"chart": {"receivable": "1200", "default_revenue": "4000"}}"#,
            r#"{"tax_profiles": [{"bogus": 1, "id": "std"}]}"#,
        ] {
            let error = serde_json::from_str::<RunConfig>(nested).expect_err("a misspelt nested field is refused");
            assert!(error.to_string().contains("unknown field"), "{nested}: {error}");
        }
    }
}
