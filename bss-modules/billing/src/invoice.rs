//! Invoice composition: from one account's inputs for one cycle (recurring products with
//! their active days, one-off charges, usage totals by charge type with their optional
//! itemisation, allowance draws, discounts, credits, the tax profile), a draft
//! [`Invoice`]: lines in a section per account (the invoiced account first, then its
//! children by id), net, tax and gross per line, per section and per currency, and the tax
//! per currency and tax code.
//!
//! [`compose`] is a pure function of its inputs: lines are sorted on their content, never
//! on input order, so the same inputs in any order give the same invoice, and
//! [`Invoice::content_hash`] (SHA-256 of its JSON) tells a rerun's output from a different
//! one. Every line has net + tax = gross, each section's totals are the sums of its lines,
//! and the invoice's totals the sums of its sections (`tests/invoice.rs` and the property
//! test check it).

use std::collections::BTreeMap;

use jiff::civil::Date;
use ring::digest;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tollgate_tariffs::{Rounding, RoundingMode};

use crate::currency::{currency_rounding, from_minor, to_minor};
use crate::cycle::{BillingCycle, DateSpan, Proration};
use crate::discount::{share, Credit, Discount, DiscountScope, DiscountValue};
use crate::error::{BillingError, Result};
use crate::tax::{PriceBasis, TaxProfile, TaxRounding, Taxed};

/// Sections (the invoiced account and its children) one invoice may have.
pub const MAX_SECTIONS: usize = 10_000;
/// Lines an invoice may have, all sections together.
pub const MAX_LINES: usize = 1_000_000;
/// Itemised usage entries an invoice may have, all lines together.
pub const MAX_ITEMS: usize = 1_000_000;
/// Characters an identifier, charge type, unit or description may have.
pub const MAX_TEXT_CHARS: usize = 256;
/// Discounts, and credits, one account may list.
pub const MAX_DISCOUNTS: usize = 1_000;
/// The largest amount (in currency units, either sign) an input may carry.
pub const MAX_AMOUNT_UNITS: i64 = 1_000_000_000_000;

/// When a recurring charge is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChargeTiming {
    /// The next cycle is charged now; the closing cycle is corrected by what it actually
    /// had against what was charged for it in advance.
    InAdvance,
    /// The closing cycle is charged for the days it had.
    InArrears,
}

impl ChargeTiming {
    /// A ProductOfferingPrice's `chargeTiming` (a TMF620 extension the catalogue checks):
    /// `inAdvance` or `inArrears`, in arrears when it has none; anything else is refused,
    /// naming `field`.
    pub fn from_tmf(text: Option<&str>, field: &str) -> Result<ChargeTiming, BillingError> {
        match text {
            None | Some("inArrears") => Ok(ChargeTiming::InArrears),
            Some("inAdvance") => Ok(ChargeTiming::InAdvance),
            Some(other) => Err(BillingError::invalid(field, format!("{other:?} is not inAdvance or inArrears"))),
        }
    }
}

/// A recurring product price of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecurringCharge {
    pub product_id: String,
    pub charge_type: String,
    pub description: String,
    pub service_class: String,
    pub currency: String,
    /// The price of a full cycle (prorated by day for part of one).
    pub price: Decimal,
    pub timing: ChargeTiming,
    /// The days the product is active with this price (policy helpers on [`DateSpan`]).
    pub active: Vec<DateSpan>,
    /// In advance only: what an earlier invoice charged for the closing cycle (zero when
    /// the product started after that invoice).
    pub billed_in_advance: Decimal,
}

/// A one-time charge (activation fee, golden number, SIM swap), in minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOffCharge {
    pub id: String,
    pub product_id: Option<String>,
    pub charge_type: String,
    pub description: String,
    pub service_class: String,
    pub currency: String,
    pub amount: Decimal,
    pub charged_on: Date,
}

/// The rated usage of one charge type in the cycle, with its entries when itemised (they
/// must add up to the total).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCharge {
    pub product_id: Option<String>,
    pub charge_type: String,
    pub description: String,
    pub service_class: String,
    pub currency: String,
    pub quantity: Decimal,
    pub unit: String,
    pub amount: Decimal,
    pub items: Vec<UsageItem>,
}

/// One itemised usage entry: when (Unix seconds), what, how much, at what price.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UsageItem {
    pub used_at: i64,
    pub description: String,
    pub quantity: Decimal,
    pub amount: Decimal,
}

/// Units an allowance covered, shown as a zero-priced line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowanceDraw {
    pub product_id: Option<String>,
    pub charge_type: String,
    pub description: String,
    pub quantity: Decimal,
    pub unit: String,
}

/// One account's charges for the cycle: a section of the invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountCharges {
    pub account_id: String,
    /// The account's currency (allowance lines are shown in it).
    pub currency: String,
    /// Where its services are taxed.
    pub jurisdiction: String,
    pub recurring: Vec<RecurringCharge>,
    pub one_off: Vec<OneOffCharge>,
    pub usage: Vec<UsageCharge>,
    pub allowances: Vec<AllowanceDraw>,
    pub discounts: Vec<Discount>,
    pub credits: Vec<Credit>,
}

/// Everything one invoice is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceInputs {
    /// The invoiced account: the corporate parent of a hierarchy, or the account itself.
    pub account_id: String,
    /// How charges (prorations, discounts) are rounded to the currency's minor unit.
    pub rounding_mode: RoundingMode,
    pub tax_profile: TaxProfile,
    /// The invoiced account's charges and its children's, one section each.
    pub accounts: Vec<AccountCharges>,
}

/// What a line is, in the order lines are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineKind {
    Recurring,
    /// An in-advance product's closing cycle: what it had minus what was charged for it.
    RecurringAdjustment,
    OneOff,
    Usage,
    Allowance,
    Discount,
    Credit,
}

/// One invoice line. `amount` is as priced (net when prices exclude tax, gross when they
/// include it); `net + tax = gross`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Line {
    pub kind: LineKind,
    pub charge_type: String,
    pub product_id: Option<String>,
    pub period: Option<DateSpan>,
    /// The one-off charge, discount or credit this line comes from.
    pub reference: Option<String>,
    pub description: String,
    pub currency: String,
    pub service_class: Option<String>,
    pub quantity: Option<Decimal>,
    pub unit: Option<String>,
    pub proration: Option<Proration>,
    pub amount: Decimal,
    pub net: Decimal,
    pub tax: Decimal,
    pub gross: Decimal,
    pub tax_code: Option<String>,
    pub tax_rate: Option<Decimal>,
    pub items: Vec<UsageItem>,
}

/// Net, tax and gross in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub currency: String,
    pub net: Decimal,
    pub tax: Decimal,
    pub gross: Decimal,
}

/// The tax of one code in one currency, over all sections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxTotal {
    pub currency: String,
    pub code: String,
    pub rate: Decimal,
    pub net: Decimal,
    pub tax: Decimal,
}

/// One account's part of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    pub account_id: String,
    pub jurisdiction: String,
    pub lines: Vec<Line>,
    pub totals: Vec<Totals>,
}

/// The part of a credit the charges did not use, for the next invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnusedCredit {
    pub account_id: String,
    pub credit_id: String,
    pub currency: String,
    pub amount: Decimal,
}

/// A draft invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub account_id: String,
    pub period: DateSpan,
    pub time_zone: String,
    pub tax_profile_id: String,
    pub price_basis: PriceBasis,
    pub tax_rounding: TaxRounding,
    pub rounding_mode: RoundingMode,
    pub sections: Vec<Section>,
    pub taxes: Vec<TaxTotal>,
    pub totals: Vec<Totals>,
    pub unused_credits: Vec<UnusedCredit>,
}

/// The version of the content hash's input: the invoice's JSON as serde_json writes it
/// (fields in declaration order, no whitespace, decimals as strings). A change to the
/// invoice's shape bumps it, so old and new hashes are never compared as equals.
pub const CONTENT_HASH_VERSION: &str = "tollgate-invoice-v1";

impl Line {
    /// The line in one row of text, `Recurring Plan S [2026-11-01, 2026-11-16) 15/30 15.00`:
    /// its kind, description, period, days of the cycle and amount (a test's or a log's).
    pub fn summary(&self) -> String {
        let period = self.period.map(|span| format!(" {span}")).unwrap_or_default();
        let days = self.proration.map(|p| format!(" {}/{}", p.days, p.period_days)).unwrap_or_default();
        format!("{:?} {}{period}{days} {}", self.kind, self.description, self.amount)
    }
}

impl Invoice {
    /// `sha256:` and the hex SHA-256 of [`CONTENT_HASH_VERSION`], a newline and the
    /// invoice's JSON: equal for equal invoices, whatever order their inputs came in.
    pub fn content_hash(&self) -> Result<String> {
        let json = serde_json::to_vec(self)
            .map_err(|error| BillingError::Output { what: "invoice JSON", reason: error.to_string() })?;
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(CONTENT_HASH_VERSION.as_bytes());
        context.update(b"\n");
        context.update(&json);
        let hex: String = context.finish().as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
        Ok(format!("sha256:{hex}"))
    }

    /// The totals in `currency`, if the invoice has any.
    pub fn total(&self, currency: &str) -> Option<&Totals> {
        self.totals.iter().find(|totals| totals.currency == currency)
    }

    /// The credit note that cancels this invoice whole: every line, section total, tax
    /// and total with its sign turned (so each still adds up, and posted to the ledger it
    /// reverses the invoice's journal); no usage items (the invoice itemises them) and no
    /// unused credit (the credit stays with the invoice that reported it).
    pub fn reversal(&self) -> Invoice {
        let negate_totals = |totals: &[Totals]| {
            totals
                .iter()
                .map(|t| Totals { currency: t.currency.clone(), net: neg(t.net), tax: neg(t.tax), gross: neg(t.gross) })
                .collect()
        };
        Invoice {
            sections: self
                .sections
                .iter()
                .map(|section| Section {
                    account_id: section.account_id.clone(),
                    jurisdiction: section.jurisdiction.clone(),
                    lines: section
                        .lines
                        .iter()
                        .map(|line| Line {
                            amount: neg(line.amount),
                            net: neg(line.net),
                            tax: neg(line.tax),
                            gross: neg(line.gross),
                            items: Vec::new(),
                            ..line.clone()
                        })
                        .collect(),
                    totals: negate_totals(&section.totals),
                })
                .collect(),
            taxes: self.taxes.iter().map(|t| TaxTotal { net: neg(t.net), tax: neg(t.tax), ..t.clone() }).collect(),
            totals: negate_totals(&self.totals),
            unused_credits: Vec::new(),
            ..self.clone()
        }
    }
}

/// `-amount`, and a zero stays a zero (a negated zero would print `-0.00`).
fn neg(amount: Decimal) -> Decimal {
    if amount.is_zero() {
        amount
    } else {
        -amount
    }
}

fn check_text(field: &str, value: &str, may_be_empty: bool) -> Result<()> {
    if !may_be_empty && value.trim().is_empty() {
        return Err(BillingError::invalid(field, "is empty"));
    }
    if value.chars().count() > MAX_TEXT_CHARS {
        return Err(BillingError::invalid(field, format!("is longer than {MAX_TEXT_CHARS} characters")));
    }
    Ok(())
}

fn check_amount(field: &str, amount: Decimal) -> Result<()> {
    if amount.abs() > Decimal::from(MAX_AMOUNT_UNITS) {
        return Err(BillingError::invalid(field, format!("{amount} is beyond {MAX_AMOUNT_UNITS}")));
    }
    Ok(())
}

/// An amount that must already be in the currency's minor units, with exactly the
/// currency's decimals (`5` EUR becomes `5.00`, so equal amounts print and hash alike).
fn minor_amount(field: &str, amount: Decimal, rounding: Rounding) -> Result<Decimal> {
    check_amount(field, amount)?;
    to_minor(field, amount, rounding.decimals)?;
    Ok(rounding.apply(amount))
}

fn check_list<T>(field: &str, list: &[T], limit: usize) -> Result<()> {
    if list.len() > limit {
        return Err(BillingError::TooMany { field: field.to_owned(), limit });
    }
    Ok(())
}

/// The first to the last active day of `spans` inside `cycle` (the whole cycle when none).
fn charged_days(spans: &[DateSpan], cycle: DateSpan) -> DateSpan {
    let inside: Vec<DateSpan> =
        spans.iter().map(|span| span.intersect(cycle)).filter(|span| !span.is_empty()).collect();
    match (inside.iter().map(|span| span.from).min(), inside.iter().map(|span| span.until).max()) {
        (Some(from), Some(until)) => DateSpan { from, until },
        _ => cycle,
    }
}

/// A line before taxes, with the input field it came from.
struct Draft {
    line: Line,
    field: String,
    decimals: u32,
}

impl Draft {
    fn new(
        kind: LineKind,
        field: String,
        charge_type: &str,
        description: &str,
        currency: &str,
        amount: Decimal,
    ) -> Draft {
        Draft {
            line: Line {
                kind,
                charge_type: charge_type.to_owned(),
                product_id: None,
                period: None,
                reference: None,
                description: description.to_owned(),
                currency: currency.to_owned(),
                service_class: None,
                quantity: None,
                unit: None,
                proration: None,
                amount,
                net: Decimal::ZERO,
                tax: Decimal::ZERO,
                gross: Decimal::ZERO,
                tax_code: None,
                tax_rate: None,
                items: Vec::new(),
            },
            field,
            decimals: amount.scale(),
        }
    }
}

/// The common fields of a charge, checked.
fn check_charge(field: &str, charge_type: &str, description: &str, service_class: &str) -> Result<()> {
    check_text(&format!("{field}.charge_type"), charge_type, false)?;
    check_text(&format!("{field}.description"), description, true)?;
    check_text(&format!("{field}.service_class"), service_class, false)
}

fn recurring_lines(
    cycle: &BillingCycle,
    next: &BillingCycle,
    mode: RoundingMode,
    field: &str,
    charge: &RecurringCharge,
    out: &mut Vec<Draft>,
) -> Result<()> {
    check_charge(field, &charge.charge_type, &charge.description, &charge.service_class)?;
    check_text(&format!("{field}.product_id"), &charge.product_id, false)?;
    let rounding = currency_rounding(&format!("{field}.currency"), &charge.currency, mode)?;
    check_amount(&format!("{field}.price"), charge.price)?;
    if charge.price.is_sign_negative() {
        return Err(BillingError::invalid(format!("{field}.price"), "is negative"));
    }
    let billed_in_advance = minor_amount(&format!("{field}.billed_in_advance"), charge.billed_in_advance, rounding)?;
    let active = format!("{field}.active");
    let now = cycle.proration(&active, &charge.active)?;
    let due_now = now.apply(charge.price, rounding).ok_or_else(|| BillingError::overflow(format!("{field}.price")))?;
    let mut push = |kind, amount: Decimal, span: DateSpan, proration: Proration| {
        let mut draft =
            Draft::new(kind, field.to_owned(), &charge.charge_type, &charge.description, &charge.currency, amount);
        draft.line.product_id = Some(charge.product_id.clone());
        draft.line.service_class = Some(charge.service_class.clone());
        draft.line.period = Some(charged_days(&charge.active, span));
        draft.line.proration = Some(proration);
        draft.decimals = rounding.decimals;
        out.push(draft);
    };
    match charge.timing {
        ChargeTiming::InArrears => {
            if !billed_in_advance.is_zero() {
                return Err(BillingError::invalid(
                    format!("{field}.billed_in_advance"),
                    "a charge in arrears is never billed in advance",
                ));
            }
            if now.days > 0 {
                push(LineKind::Recurring, due_now, cycle.span(), now);
            }
        }
        ChargeTiming::InAdvance => {
            let correction = due_now - billed_in_advance;
            if !correction.is_zero() {
                push(LineKind::RecurringAdjustment, rounding.apply(correction), cycle.span(), now);
            }
            let ahead = next.proration(&active, &charge.active)?;
            if ahead.days > 0 {
                let due = ahead
                    .apply(charge.price, rounding)
                    .ok_or_else(|| BillingError::overflow(format!("{field}.price")))?;
                push(LineKind::Recurring, due, next.span(), ahead);
            }
        }
    }
    Ok(())
}

fn usage_line(mode: RoundingMode, field: &str, usage: &UsageCharge, item_count: &mut usize) -> Result<Draft> {
    check_charge(field, &usage.charge_type, &usage.description, &usage.service_class)?;
    check_text(&format!("{field}.unit"), &usage.unit, false)?;
    let rounding = currency_rounding(&format!("{field}.currency"), &usage.currency, mode)?;
    let total = minor_amount(&format!("{field}.amount"), usage.amount, rounding)?;
    check_amount(&format!("{field}.quantity"), usage.quantity)?;
    *item_count += usage.items.len();
    if *item_count > MAX_ITEMS {
        return Err(BillingError::TooMany { field: format!("{field}.items"), limit: MAX_ITEMS });
    }
    let mut items = Vec::with_capacity(usage.items.len());
    if !usage.items.is_empty() {
        let (mut quantity, mut amount) = (Decimal::ZERO, Decimal::ZERO);
        for (index, item) in usage.items.iter().enumerate() {
            let item_field = format!("{field}.items[{index}]");
            check_text(&format!("{item_field}.description"), &item.description, true)?;
            let item_amount = minor_amount(&format!("{item_field}.amount"), item.amount, rounding)?;
            check_amount(&format!("{item_field}.quantity"), item.quantity)?;
            quantity += item.quantity;
            amount += item_amount;
            items.push(UsageItem { amount: item_amount, ..item.clone() });
        }
        if amount != total || quantity != usage.quantity {
            return Err(BillingError::invalid(
                format!("{field}.items"),
                format!(
                    "add up to {quantity} {} and {amount}, not the total's {} and {}",
                    usage.unit, usage.quantity, usage.amount
                ),
            ));
        }
    }
    let mut draft =
        Draft::new(LineKind::Usage, field.to_owned(), &usage.charge_type, &usage.description, &usage.currency, total);
    draft.line.product_id = usage.product_id.clone();
    draft.line.service_class = Some(usage.service_class.clone());
    draft.line.quantity = Some(usage.quantity);
    draft.line.unit = Some(usage.unit.clone());
    items.sort();
    draft.line.items = items;
    draft.decimals = rounding.decimals;
    Ok(draft)
}

/// The charge lines of one account, checked, in content order.
fn charge_lines(
    cycle: &BillingCycle,
    next: &BillingCycle,
    mode: RoundingMode,
    field: &str,
    account: &AccountCharges,
    items: &mut usize,
) -> Result<Vec<Draft>> {
    check_list(&format!("{field}.recurring"), &account.recurring, MAX_LINES)?;
    check_list(&format!("{field}.one_off"), &account.one_off, MAX_LINES)?;
    check_list(&format!("{field}.usage"), &account.usage, MAX_LINES)?;
    check_list(&format!("{field}.allowances"), &account.allowances, MAX_LINES)?;
    let mut out = Vec::new();
    for (index, charge) in account.recurring.iter().enumerate() {
        recurring_lines(cycle, next, mode, &format!("{field}.recurring[{index}]"), charge, &mut out)?;
    }
    for (index, charge) in account.one_off.iter().enumerate() {
        let field = format!("{field}.one_off[{index}]");
        check_charge(&field, &charge.charge_type, &charge.description, &charge.service_class)?;
        check_text(&format!("{field}.id"), &charge.id, false)?;
        let rounding = currency_rounding(&format!("{field}.currency"), &charge.currency, mode)?;
        let amount = minor_amount(&format!("{field}.amount"), charge.amount, rounding)?;
        let day_after = charged_on_until(&field, charge.charged_on)?;
        let mut draft =
            Draft::new(LineKind::OneOff, field, &charge.charge_type, &charge.description, &charge.currency, amount);
        draft.line.product_id = charge.product_id.clone();
        draft.line.reference = Some(charge.id.clone());
        draft.line.service_class = Some(charge.service_class.clone());
        draft.line.period = Some(DateSpan { from: charge.charged_on, until: day_after });
        draft.decimals = rounding.decimals;
        out.push(draft);
    }
    for (index, usage) in account.usage.iter().enumerate() {
        out.push(usage_line(mode, &format!("{field}.usage[{index}]"), usage, items)?);
    }
    let account_rounding = currency_rounding(&format!("{field}.currency"), &account.currency, mode)?;
    for (index, draw) in account.allowances.iter().enumerate() {
        let field = format!("{field}.allowances[{index}]");
        check_text(&format!("{field}.charge_type"), &draw.charge_type, false)?;
        check_text(&format!("{field}.description"), &draw.description, true)?;
        check_text(&format!("{field}.unit"), &draw.unit, false)?;
        check_amount(&format!("{field}.quantity"), draw.quantity)?;
        let zero = account_rounding.apply(Decimal::ZERO);
        let mut draft =
            Draft::new(LineKind::Allowance, field, &draw.charge_type, &draw.description, &account.currency, zero);
        draft.line.product_id = draw.product_id.clone();
        draft.line.quantity = Some(draw.quantity);
        draft.line.unit = Some(draw.unit.clone());
        (draft.line.net, draft.line.tax, draft.line.gross) = (zero, zero, zero);
        draft.decimals = account_rounding.decimals;
        out.push(draft);
    }
    if out.len() > MAX_LINES {
        return Err(BillingError::TooMany { field: field.to_owned(), limit: MAX_LINES });
    }
    out.sort_by(|a, b| a.line.cmp(&b.line));
    Ok(out)
}

fn charged_on_until(field: &str, charged_on: Date) -> Result<Date> {
    charged_on.tomorrow().map_err(|_| BillingError::invalid(format!("{field}.charged_on"), "is the last date"))
}

/// What is left of one charge line for discounts and credits to take off.
struct Base {
    section: usize,
    product_id: Option<String>,
    currency: String,
    service_class: String,
    remaining: i128,
}

/// A reduction's share of the lines of one section and service class.
type Shares = BTreeMap<(usize, String), i128>;

/// Takes `wanted` (minor units, capped at what is left) off the `targets`, returning what
/// was taken per section and service class.
fn take(field: &str, wanted: i128, bases: &mut [Base], targets: &[usize]) -> Result<(i128, Shares)> {
    let left: Vec<i128> = targets.iter().map(|index| bases[*index].remaining).collect();
    let taken = wanted.min(left.iter().sum());
    let mut shares = Shares::new();
    if taken <= 0 {
        return Ok((0, shares));
    }
    for (index, part) in targets.iter().zip(share(field, taken, &left)?) {
        let base = &mut bases[*index];
        base.remaining -= part;
        *shares.entry((base.section, base.service_class.clone())).or_default() += part;
    }
    Ok((taken, shares))
}

struct Reducer<'a> {
    cycle: &'a BillingCycle,
    mode: RoundingMode,
    bases: Vec<Base>,
    /// The reduction lines per section, in the order they were taken.
    lines: Vec<Vec<Draft>>,
    unused: Vec<UnusedCredit>,
}

impl Reducer<'_> {
    fn emit(&mut self, shares: Shares, decimals: u32, template: &Draft) -> Result<()> {
        for ((section, class), minor) in shares.into_iter().filter(|(_, minor)| *minor > 0) {
            let mut draft = Draft { line: template.line.clone(), field: template.field.clone(), decimals };
            draft.line.amount = from_minor(&template.field, -minor, decimals)?;
            draft.line.service_class = Some(class);
            self.lines[section].push(draft);
        }
        Ok(())
    }

    fn discount(&mut self, section: usize, field: &str, discount: &Discount) -> Result<()> {
        check_text(&format!("{field}.id"), &discount.id, false)?;
        check_text(&format!("{field}.charge_type"), &discount.charge_type, false)?;
        check_text(&format!("{field}.description"), &discount.description, true)?;
        DateSpan::new(&format!("{field}.valid"), discount.valid.from, discount.valid.until)?;
        let proration = self.cycle.proration(&format!("{field}.valid"), &[discount.valid])?;
        let in_scope = |base: &Base| match &discount.scope {
            DiscountScope::Product { product_id } => {
                base.section == section && base.product_id.as_deref() == Some(product_id.as_str())
            }
            DiscountScope::Account => base.section == section,
            DiscountScope::Hierarchy => true,
        };
        let mut by_currency: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, base) in self.bases.iter().enumerate().filter(|(_, base)| base.remaining > 0 && in_scope(base)) {
            by_currency.entry(base.currency.clone()).or_default().push(index);
        }
        discount.validate(field)?;
        if let DiscountValue::Fixed { amount, currency } = &discount.value {
            let rounding = currency_rounding(&format!("{field}.value.currency"), currency, self.mode)?;
            minor_amount(&format!("{field}.value.amount"), *amount, rounding)?;
            by_currency.retain(|code, _| code == currency);
        }
        for (currency, targets) in by_currency {
            let rounding = currency_rounding(field, &currency, self.mode)?;
            let wanted = match &discount.value {
                DiscountValue::Percent(percent) => {
                    let base: i128 = targets.iter().map(|index| self.bases[*index].remaining).sum();
                    let base = from_minor(field, base, rounding.decimals)?;
                    let part = base * *percent / Decimal::ONE_HUNDRED;
                    proration.apply(part, rounding)
                }
                DiscountValue::Fixed { amount, .. } => proration.apply(*amount, rounding),
            }
            .ok_or_else(|| BillingError::overflow(field))?;
            let (_, shares) = take(field, to_minor(field, wanted, rounding.decimals)?, &mut self.bases, &targets)?;
            let mut template = Draft::new(
                LineKind::Discount,
                field.to_owned(),
                &discount.charge_type,
                &discount.description,
                &currency,
                wanted,
            );
            template.line.reference = Some(discount.id.clone());
            template.line.period = Some(discount.valid.intersect(self.cycle.span()));
            template.line.proration = Some(proration);
            if let DiscountScope::Product { product_id } = &discount.scope {
                template.line.product_id = Some(product_id.clone());
            }
            self.emit(shares, rounding.decimals, &template)?;
        }
        Ok(())
    }

    fn credit(&mut self, section: usize, account_id: &str, field: &str, credit: &Credit) -> Result<()> {
        check_text(&format!("{field}.id"), &credit.id, false)?;
        check_text(&format!("{field}.charge_type"), &credit.charge_type, false)?;
        check_text(&format!("{field}.description"), &credit.description, true)?;
        let rounding = currency_rounding(&format!("{field}.currency"), &credit.currency, self.mode)?;
        minor_amount(&format!("{field}.amount"), credit.amount, rounding)?;
        if credit.amount.is_sign_negative() {
            return Err(BillingError::invalid(format!("{field}.amount"), "is negative"));
        }
        let targets: Vec<usize> = (0..self.bases.len())
            .filter(|index| {
                let base = &self.bases[*index];
                base.section == section && base.currency == credit.currency && base.remaining > 0
            })
            .collect();
        let amount = to_minor(field, credit.amount, rounding.decimals)?;
        let (taken, shares) = take(field, amount, &mut self.bases, &targets)?;
        let mut template = Draft::new(
            LineKind::Credit,
            field.to_owned(),
            &credit.charge_type,
            &credit.description,
            &credit.currency,
            credit.amount,
        );
        template.line.reference = Some(credit.id.clone());
        self.emit(shares, rounding.decimals, &template)?;
        if taken < amount {
            self.unused.push(UnusedCredit {
                account_id: account_id.to_owned(),
                credit_id: credit.id.clone(),
                currency: credit.currency.clone(),
                amount: from_minor(field, amount - taken, rounding.decimals)?,
            });
        }
        Ok(())
    }
}

/// Builds the draft invoice of `inputs` for `cycle`.
pub fn compose(cycle: &BillingCycle, inputs: &InvoiceInputs) -> Result<Invoice> {
    check_text("account_id", &inputs.account_id, false)?;
    inputs.tax_profile.validate()?;
    check_list("accounts", &inputs.accounts, MAX_SECTIONS)?;
    // The invoiced account first, then the children by id; each account once.
    let mut order: Vec<usize> = (0..inputs.accounts.len()).collect();
    order.sort_by_key(|index| {
        let id = &inputs.accounts[*index].account_id;
        (*id != inputs.account_id, id, *index)
    });
    for pair in order.windows(2) {
        if inputs.accounts[pair[0]].account_id == inputs.accounts[pair[1]].account_id {
            return Err(BillingError::invalid(
                format!("accounts[{}].account_id", pair[1]),
                "repeats another section's account",
            ));
        }
    }
    if order.first().is_none_or(|first| inputs.accounts[*first].account_id != inputs.account_id) {
        return Err(BillingError::invalid(
            "accounts",
            format!("has no section for the invoiced account {:?}", inputs.account_id),
        ));
    }
    let next = cycle.next()?;
    let mode = inputs.rounding_mode;
    let (mut sections, mut items, mut line_count) = (Vec::new(), 0usize, 0usize);
    for &index in &order {
        let account = &inputs.accounts[index];
        let field = format!("accounts[{index}]");
        check_text(&format!("{field}.account_id"), &account.account_id, false)?;
        check_text(&format!("{field}.jurisdiction"), &account.jurisdiction, false)?;
        let drafts = charge_lines(cycle, &next, mode, &field, account, &mut items)?;
        line_count += drafts.len();
        if line_count > MAX_LINES {
            return Err(BillingError::TooMany { field: "lines".to_owned(), limit: MAX_LINES });
        }
        sections.push(drafts);
    }

    // Discounts (product, account, hierarchy, then by id) and credits take off charges.
    let lines = sections.iter().map(|_| Vec::new()).collect();
    let mut reducer = Reducer { cycle, mode, bases: Vec::new(), lines, unused: Vec::new() };
    for (section, drafts) in sections.iter().enumerate() {
        for draft in drafts {
            let line = &draft.line;
            let reducible = matches!(
                line.kind,
                LineKind::Recurring | LineKind::RecurringAdjustment | LineKind::OneOff | LineKind::Usage
            );
            if reducible && line.amount > Decimal::ZERO {
                reducer.bases.push(Base {
                    section,
                    product_id: line.product_id.clone(),
                    currency: line.currency.clone(),
                    service_class: line.service_class.clone().unwrap_or_default(),
                    remaining: to_minor(&draft.field, line.amount, draft.decimals)?,
                });
            }
        }
    }
    let mut discounts = Vec::new();
    for (section, &index) in order.iter().enumerate() {
        let account = &inputs.accounts[index];
        check_list(&format!("accounts[{index}].discounts"), &account.discounts, MAX_DISCOUNTS)?;
        for (position, discount) in account.discounts.iter().enumerate() {
            let field = format!("accounts[{index}].discounts[{position}]");
            if discount.scope == DiscountScope::Hierarchy && section != 0 {
                return Err(BillingError::invalid(field, "a hierarchy discount belongs to the invoiced account"));
            }
            discounts.push((discount.rank(), &discount.id, section, field, discount));
        }
    }
    discounts.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    for (_, _, section, field, discount) in discounts {
        reducer.discount(section, &field, discount)?;
    }
    for (section, &index) in order.iter().enumerate() {
        let account = &inputs.accounts[index];
        check_list(&format!("accounts[{index}].credits"), &account.credits, MAX_DISCOUNTS)?;
        let mut credits: Vec<(usize, &Credit)> = account.credits.iter().enumerate().collect();
        credits.sort_by(|a, b| (&a.1.id, a.0).cmp(&(&b.1.id, b.0)));
        for (position, credit) in credits {
            reducer.credit(section, &account.account_id, &format!("accounts[{index}].credits[{position}]"), credit)?;
        }
    }
    for (drafts, reductions) in sections.iter_mut().zip(std::mem::take(&mut reducer.lines)) {
        drafts.extend(reductions);
    }

    // Taxes, over all sections at once (per-invoice rounding groups span them).
    let profile = &inputs.tax_profile;
    let mut taxed = Vec::new();
    let mut places = Vec::new();
    for (section, drafts) in sections.iter().enumerate() {
        let jurisdiction = &inputs.accounts[order[section]].jurisdiction;
        for (position, draft) in drafts.iter().enumerate() {
            let Some(class) = draft.line.service_class.as_deref().filter(|_| draft.line.kind != LineKind::Allowance)
            else {
                continue;
            };
            let rate = profile.rate_for(&draft.field, jurisdiction, class)?;
            taxed.push(Taxed {
                field: draft.field.clone(),
                currency: draft.line.currency.clone(),
                decimals: draft.decimals,
                code: rate.code.clone(),
                rate: rate.rate,
                amount: draft.line.amount,
                net: Decimal::ZERO,
                tax: Decimal::ZERO,
                gross: Decimal::ZERO,
            });
            places.push((section, position));
        }
    }
    profile.apply(&mut taxed)?;
    for ((section, position), result) in places.into_iter().zip(taxed) {
        let line = &mut sections[section][position].line;
        (line.net, line.tax, line.gross) = (result.net, result.tax, result.gross);
        (line.tax_code, line.tax_rate) = (Some(result.code), Some(result.rate));
    }

    // Totals per section and currency, per invoice, and per tax code.
    let mut invoice_totals: BTreeMap<String, [Decimal; 3]> = BTreeMap::new();
    let mut tax_totals: BTreeMap<(String, String), (Decimal, Decimal, Decimal)> = BTreeMap::new();
    let mut out_sections = Vec::with_capacity(sections.len());
    for (section, drafts) in sections.into_iter().enumerate() {
        let account = &inputs.accounts[order[section]];
        let mut totals: BTreeMap<String, [Decimal; 3]> = BTreeMap::new();
        let lines: Vec<Line> = drafts.into_iter().map(|draft| draft.line).collect();
        for line in &lines {
            for sums in [
                totals.entry(line.currency.clone()).or_default(),
                invoice_totals.entry(line.currency.clone()).or_default(),
            ] {
                sums[0] += line.net;
                sums[1] += line.tax;
                sums[2] += line.gross;
            }
            if let (Some(code), Some(rate)) = (&line.tax_code, line.tax_rate) {
                let entry = tax_totals.entry((line.currency.clone(), code.clone())).or_insert((
                    rate,
                    Decimal::ZERO,
                    Decimal::ZERO,
                ));
                entry.1 += line.net;
                entry.2 += line.tax;
            }
        }
        out_sections.push(Section {
            account_id: account.account_id.clone(),
            jurisdiction: account.jurisdiction.clone(),
            lines,
            totals: totals_list(totals),
        });
    }
    Ok(Invoice {
        account_id: inputs.account_id.clone(),
        period: cycle.span(),
        time_zone: cycle.time_zone_name(),
        tax_profile_id: profile.id.clone(),
        price_basis: profile.basis,
        tax_rounding: profile.rounding,
        rounding_mode: mode,
        sections: out_sections,
        taxes: tax_totals
            .into_iter()
            .map(|((currency, code), (rate, net, tax))| TaxTotal { currency, code, rate, net, tax })
            .collect(),
        totals: totals_list(invoice_totals),
        unused_credits: reducer.unused,
    })
}

fn totals_list(totals: BTreeMap<String, [Decimal; 3]>) -> Vec<Totals> {
    totals.into_iter().map(|(currency, [net, tax, gross])| Totals { currency, net, tax, gross }).collect()
}
