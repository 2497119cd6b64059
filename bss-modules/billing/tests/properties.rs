//! Property tests of the billing laws: whatever the charges, discounts, credits,
//! currencies, price basis, tax rounding and rounding mode, every line has net + tax =
//! gross, each section's totals are the sums of its lines, the invoice's the sums of its
//! sections, the tax summary the sum of the lines' tax, no discount or credit takes a
//! section's charges below zero, the inputs in another order give the same invoice and
//! hash, and the journal's debits equal its credits. The days of a partition of a cycle
//! prorate to exactly one cycle.

mod common;

use std::collections::BTreeMap;

use common::{account, cycle, d, one_off, profile};
use jiff::civil::{date, Date};
use proptest::prelude::*;
use rust_decimal::Decimal;
use tollgate_billing::{
    compose, BillingCycle, ChargeTiming, ChartOfAccounts, Credit, DateSpan, Discount, DiscountScope, DiscountValue,
    InvoiceInputs, Journal, LineKind, PriceBasis, RecurringCharge, RoundingMode, TaxRounding, UsageCharge,
};

const CURRENCIES: [(&str, u32); 3] = [("EUR", 2), ("JPY", 0), ("KWD", 3)];

fn mode() -> impl Strategy<Value = RoundingMode> {
    prop::sample::select(vec![RoundingMode::HalfUp, RoundingMode::HalfEven, RoundingMode::Up, RoundingMode::Down])
}

/// A charge: (kind 0 recurring / 1 one-off / 2 usage, currency index, minor units,
/// service class index, active from day, active days).
type Charge = (u8, usize, i64, usize, i8, i8);

fn charges() -> impl Strategy<Value = Vec<Charge>> {
    prop::collection::vec((0u8..3, 0usize..3, 0i64..5_000_000, 0usize..2, 1i8..=30, 1i8..=40), 0..12)
}

fn money(minor: i64, decimals: u32) -> Decimal {
    Decimal::new(minor, decimals)
}

fn build(
    charges: &[Vec<Charge>],
    reductions: &[(u8, i64, usize, usize)],
    basis: PriceBasis,
    rounding: TaxRounding,
    tax_mode: RoundingMode,
    mode: RoundingMode,
) -> InvoiceInputs {
    let november = date(2026, 11, 1);
    let mut accounts = Vec::new();
    for (section, list) in charges.iter().enumerate() {
        let mut acct = account(&format!("acct-{section}"), "EUR");
        for (index, (kind, currency, minor, class, start, days)) in list.iter().enumerate() {
            let (code, decimals) = CURRENCIES[*currency];
            let amount = money(*minor, decimals);
            let class = ["telecom", "content"][*class].to_owned();
            let from = date(2026, 11, *start);
            match kind {
                0 => acct.recurring.push(RecurringCharge {
                    product_id: format!("p{}", index % 3),
                    charge_type: "recurring".to_owned(),
                    description: String::new(),
                    service_class: class,
                    currency: code.to_owned(),
                    price: amount,
                    timing: if index % 2 == 0 { ChargeTiming::InArrears } else { ChargeTiming::InAdvance },
                    active: vec![DateSpan {
                        from,
                        until: from.checked_add(jiff::Span::new().days(i64::from(*days))).expect("date"),
                    }],
                    billed_in_advance: Decimal::ZERO,
                }),
                1 => {
                    let mut charge = one_off(&format!("o{index}"), code, "0", november);
                    charge.amount = amount;
                    charge.service_class = class;
                    charge.product_id = Some(format!("p{}", index % 3));
                    acct.one_off.push(charge);
                }
                _ => acct.usage.push(UsageCharge {
                    product_id: None,
                    charge_type: format!("usage-{index}"),
                    description: String::new(),
                    service_class: class,
                    currency: code.to_owned(),
                    quantity: Decimal::from(*days),
                    unit: "minute".to_owned(),
                    amount,
                    items: Vec::new(),
                }),
            }
        }
        accounts.push(acct);
    }
    for (index, (kind, value, currency, section)) in reductions.iter().enumerate() {
        let section = section % accounts.len();
        let (code, decimals) = CURRENCIES[*currency];
        let valid =
            DateSpan { from: date(2026, 10, 20).saturating_add(jiff::Span::new().days(*value % 40)), until: Date::MAX };
        let scope = match kind % 3 {
            0 => DiscountScope::Product { product_id: format!("p{}", value % 3) },
            1 => DiscountScope::Account,
            _ => DiscountScope::Hierarchy,
        };
        let section = if scope == DiscountScope::Hierarchy { 0 } else { section };
        let id = format!("r{index}");
        match kind {
            0..=2 => accounts[section].discounts.push(Discount {
                id,
                description: String::new(),
                charge_type: "discount".to_owned(),
                scope,
                value: DiscountValue::Percent(Decimal::from(1 + value % 100)),
                valid,
            }),
            3..=5 => accounts[section].discounts.push(Discount {
                id,
                description: String::new(),
                charge_type: "discount".to_owned(),
                scope,
                value: DiscountValue::Fixed { amount: money(*value, decimals), currency: code.to_owned() },
                valid,
            }),
            _ => accounts[section].credits.push(Credit {
                id,
                description: String::new(),
                charge_type: "credit".to_owned(),
                amount: money(*value, decimals),
                currency: code.to_owned(),
            }),
        }
    }
    let mut tax = profile(basis, rounding, tax_mode, &[("FR-STD", "FR", "0.20")]);
    tax.rates.push(tollgate_billing::TaxRate {
        code: "FR-RED".to_owned(),
        jurisdiction: "FR".to_owned(),
        service_class: Some("content".to_owned()),
        rate: d("0.055"),
    });
    InvoiceInputs { account_id: "acct-0".to_owned(), rounding_mode: mode, tax_profile: tax, accounts }
}

fn sum_by_currency<'a>(rows: impl Iterator<Item = (&'a str, [Decimal; 3])>) -> BTreeMap<String, [Decimal; 3]> {
    let mut sums: BTreeMap<String, [Decimal; 3]> = BTreeMap::new();
    for (currency, values) in rows {
        let entry = sums.entry(currency.to_owned()).or_default();
        for (sum, value) in entry.iter_mut().zip(values) {
            *sum += value;
        }
    }
    sums
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn totals_always_add_up(
        charges in prop::collection::vec(charges(), 1..4),
        reductions in prop::collection::vec((0u8..8, 0i64..2_000_000, 0usize..3, 0usize..4), 0..6),
        inclusive in any::<bool>(),
        per_invoice in any::<bool>(),
        tax_mode in mode(),
        mode in mode(),
    ) {
        let basis = if inclusive { PriceBasis::Inclusive } else { PriceBasis::Exclusive };
        let rounding = if per_invoice { TaxRounding::PerInvoice } else { TaxRounding::PerLine };
        let inputs = build(&charges, &reductions, basis, rounding, tax_mode, mode);
        let november = cycle(2026, 11, 1);
        let invoice = compose(&november, &inputs).expect("invoice");
        let mut tax_by_code: BTreeMap<(String, String), Decimal> = BTreeMap::new();
        for section in &invoice.sections {
            for line in &section.lines {
                prop_assert_eq!(line.net + line.tax, line.gross, "{:?}", line);
                let decimals = CURRENCIES.iter().find(|(code, _)| *code == line.currency).expect("currency").1;
                for money in [line.amount, line.net, line.tax, line.gross] {
                    prop_assert_eq!(money.scale(), decimals, "{:?}", line);
                }
                if let Some(code) = &line.tax_code {
                    *tax_by_code.entry((line.currency.clone(), code.clone())).or_default() += line.tax;
                }
            }
            let sums = sum_by_currency(section.lines.iter().map(|l| (l.currency.as_str(), [l.net, l.tax, l.gross])));
            let totals: BTreeMap<String, [Decimal; 3]> =
                section.totals.iter().map(|t| (t.currency.clone(), [t.net, t.tax, t.gross])).collect();
            prop_assert_eq!(&sums, &totals);
            // Discounts and credits never take a currency's charges below zero.
            let reducible = |kind: LineKind| matches!(kind, LineKind::Recurring | LineKind::RecurringAdjustment | LineKind::OneOff | LineKind::Usage);
            let charged = sum_by_currency(section.lines.iter().filter(|l| reducible(l.kind) && l.amount > Decimal::ZERO).map(|l| (l.currency.as_str(), [l.amount, Decimal::ZERO, Decimal::ZERO])));
            let taken = sum_by_currency(section.lines.iter().filter(|l| matches!(l.kind, LineKind::Discount | LineKind::Credit)).map(|l| (l.currency.as_str(), [l.amount, Decimal::ZERO, Decimal::ZERO])));
            for (currency, [amount, ..]) in &taken {
                prop_assert!(*amount <= Decimal::ZERO);
                let charges = charged.get(currency).map_or(Decimal::ZERO, |c| c[0]);
                prop_assert!(charges + amount >= Decimal::ZERO, "{} {} taken off {}", currency, amount, charges);
            }
        }
        let sections = sum_by_currency(invoice.sections.iter().flat_map(|s| &s.totals).map(|t| (t.currency.as_str(), [t.net, t.tax, t.gross])));
        let totals: BTreeMap<String, [Decimal; 3]> = invoice.totals.iter().map(|t| (t.currency.clone(), [t.net, t.tax, t.gross])).collect();
        prop_assert_eq!(&sections, &totals);
        let summary: BTreeMap<(String, String), Decimal> = invoice.taxes.iter().map(|t| ((t.currency.clone(), t.code.clone()), t.tax)).collect();
        prop_assert_eq!(summary, tax_by_code);

        // Inputs in another order: the same invoice and hash.
        let mut shuffled = inputs.clone();
        shuffled.accounts.reverse();
        for account in &mut shuffled.accounts {
            account.recurring.reverse();
            account.one_off.reverse();
            account.usage.reverse();
            account.discounts.reverse();
            account.credits.reverse();
        }
        let again = compose(&november, &shuffled).expect("shuffled");
        prop_assert_eq!(again.content_hash().expect("hash"), invoice.content_hash().expect("hash"));
        prop_assert_eq!(&again, &invoice);

        // The journal balances per currency.
        let chart = ChartOfAccounts {
            receivable: "1200".to_owned(),
            revenue_default: Some("4000".to_owned()),
            tax_payable_default: Some("2400".to_owned()),
            ..ChartOfAccounts::default()
        };
        let journal = Journal::post("run", &[("INV", &invoice)], &chart).expect("journal");
        for (debit, credit) in journal.totals().values() {
            prop_assert_eq!(debit, credit);
        }
    }

    #[test]
    fn a_partition_of_the_cycle_prorates_to_one(
        year in 1990i16..2100,
        month in 1i8..=12,
        bill_cycle_day in 1u8..=31,
        cuts in prop::collection::vec(1u32..31, 0..8),
    ) {
        let cycle = BillingCycle::starting_in(year, month, bill_cycle_day, jiff::tz::TimeZone::UTC).expect("cycle");
        let span = cycle.span();
        prop_assert!((28..=31).contains(&cycle.days()));
        // Cut the cycle at the given day offsets (those inside it) into consecutive spans.
        let mut offsets: Vec<u32> = cuts.into_iter().filter(|cut| *cut < cycle.days()).collect();
        offsets.sort_unstable();
        offsets.dedup();
        let mut bounds = vec![span.from];
        for offset in offsets {
            bounds.push(span.from.checked_add(jiff::Span::new().days(i64::from(offset))).expect("date"));
        }
        bounds.push(span.until);
        let parts: Vec<_> = bounds.windows(2).map(|pair| cycle.proration("part", &[DateSpan { from: pair[0], until: pair[1] }]).expect("proration")).collect();
        // Exactly: the parts' days are the cycle's days.
        prop_assert_eq!(parts.iter().map(|p| p.days).sum::<u32>(), cycle.days());
        prop_assert!(parts.iter().all(|p| p.period_days == cycle.days()));
        // As decimals (each to 28 digits): within 10⁻²⁶ of one.
        let sum: Decimal = parts.iter().map(|p| p.fraction()).sum();
        prop_assert!((sum - Decimal::ONE).abs() < Decimal::new(1, 26), "{}", sum);
        // And all the spans together prorate to the whole cycle.
        let spans: Vec<DateSpan> = bounds.windows(2).map(|pair| DateSpan { from: pair[0], until: pair[1] }).collect();
        prop_assert!(cycle.proration("all", &spans).expect("whole").is_full());
    }
}
