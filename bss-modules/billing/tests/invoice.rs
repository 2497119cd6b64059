//! Hand-computed invoices: every expected figure is worked out in the comment beside it,
//! from the policy in the README, not read back from the code. Cases: an activation on
//! 15 February of a leap year, a plan change mid-cycle, a termination on the cycle's last
//! day (in arrears and in advance), tax inclusive and exclusive rounded per line and per
//! invoice in EUR, JPY and KWD, discounts and credits that never go below zero, a
//! hierarchy invoice with a section per child, a rerun with shuffled inputs giving the
//! same invoice and hash, and the general-ledger journal balancing.

mod common;

use common::{account, cycle, d, from, one_off, profile, recurring, vat20};
use jiff::civil::date;
use tollgate_billing::{
    compose, AccountCharges, AllowanceDraw, BillingError, ChargeTiming, ChartOfAccounts, Credit, DateSpan, Discount,
    DiscountScope, DiscountValue, Invoice, InvoiceInputs, Journal, LineKind, PriceBasis, Proration, RoundingMode,
    TaxProfile, TaxRounding, UsageCharge, UsageItem,
};

fn invoice_of(cycle: &tollgate_billing::BillingCycle, accounts: Vec<AccountCharges>, tax: TaxProfile) -> Invoice {
    let inputs = InvoiceInputs {
        account_id: accounts[0].account_id.clone(),
        rounding_mode: RoundingMode::HalfUp,
        tax_profile: tax,
        accounts,
    };
    compose(cycle, &inputs).expect("invoice")
}

/// A line as (kind, product, amount, net, tax, gross), the money as text.
type Row<'a> = (LineKind, Option<&'a str>, String, String, String, String);

/// The rows of every line of section 0.
fn lines(invoice: &Invoice) -> Vec<Row<'_>> {
    invoice.sections[0]
        .lines
        .iter()
        .map(|l| {
            (
                l.kind,
                l.product_id.as_deref(),
                l.amount.to_string(),
                l.net.to_string(),
                l.tax.to_string(),
                l.gross.to_string(),
            )
        })
        .collect()
}

fn totals(invoice: &Invoice, currency: &str) -> (String, String, String) {
    let t = invoice.total(currency).expect("totals in the currency");
    (t.net.to_string(), t.tax.to_string(), t.gross.to_string())
}

fn s(text: &str) -> String {
    text.to_owned()
}

#[test]
fn activation_on_15_february_of_a_leap_year_in_arrears() {
    // February 2028 has 29 days (2028 is divisible by 4, not by 100); cycle day 1:
    // 1 Feb .. 29 Feb. Active 15 Feb .. 29 Feb inclusive = 29 - 15 + 1 = 15 days.
    // 20.00 × 15 / 29 = 300 / 29 = 10.3448… → 10.34 (half-up).
    // VAT 20 % exclusive, per line: 10.34 × 0.20 = 2.068 → 2.07; gross 10.34 + 2.07 = 12.41.
    let february = cycle(2028, 2, 1);
    let mut alice = account("alice", "EUR");
    alice.recurring.push(recurring("mobile-m", "20.00", ChargeTiming::InArrears, vec![from(date(2028, 2, 15))]));
    let invoice = invoice_of(&february, vec![alice], vat20());
    let line = &invoice.sections[0].lines[0];
    assert_eq!(line.proration, Some(Proration { days: 15, period_days: 29 }));
    assert_eq!(line.period, Some(DateSpan { from: date(2028, 2, 15), until: date(2028, 3, 1) }));
    assert_eq!(
        lines(&invoice),
        [(LineKind::Recurring, Some("mobile-m"), s("10.34"), s("10.34"), s("2.07"), s("12.41"))]
    );
    assert_eq!(totals(&invoice, "EUR"), (s("10.34"), s("2.07"), s("12.41")));
}

#[test]
fn activation_on_15_february_of_a_leap_year_in_advance() {
    // In advance, the first invoice after the activation charges the rest of February
    // (nothing was billed for it in advance) and all of March:
    //   February: 20.00 × 15 / 29 = 10.3448… → 10.34, an adjustment of 10.34 − 0.00;
    //   March 2028 (1 Mar .. 31 Mar, 31 days, all active): 20.00 × 31 / 31 = 20.00.
    // VAT per line: 10.34 → 2.068 → 2.07 (gross 12.41); 20.00 → 4.00 (gross 24.00).
    // Totals: net 30.34, tax 6.07, gross 36.41.
    let february = cycle(2028, 2, 1);
    let mut alice = account("alice", "EUR");
    alice.recurring.push(recurring("mobile-m", "20.00", ChargeTiming::InAdvance, vec![from(date(2028, 2, 15))]));
    let invoice = invoice_of(&february, vec![alice], vat20());
    assert_eq!(
        lines(&invoice),
        [
            (LineKind::Recurring, Some("mobile-m"), s("20.00"), s("20.00"), s("4.00"), s("24.00")),
            (LineKind::RecurringAdjustment, Some("mobile-m"), s("10.34"), s("10.34"), s("2.07"), s("12.41")),
        ]
    );
    let march = &invoice.sections[0].lines[0];
    assert_eq!(march.period, Some(DateSpan { from: date(2028, 3, 1), until: date(2028, 4, 1) }));
    assert_eq!(march.proration, Some(Proration { days: 31, period_days: 31 }));
    assert_eq!(totals(&invoice, "EUR"), (s("30.34"), s("6.07"), s("36.41")));
}

/// November 2026's invoice of plan S (19.99, active since 1 June) changed to plan L
/// (24.99) on 11 November, with what was billed in advance for S's November.
fn plan_change(timing: ChargeTiming, s_billed_in_advance: &str) -> Invoice {
    let november = cycle(2026, 11, 1);
    let since_june = DateSpan::active("plan", date(2026, 6, 1), None).expect("span");
    let (small, large) = since_june.split_at(date(2026, 11, 11)).expect("inside");
    let mut bob = account("bob", "EUR");
    let mut plan_s = recurring("plan-s", "19.99", timing, vec![small]);
    plan_s.billed_in_advance = d(s_billed_in_advance);
    bob.recurring.push(plan_s);
    bob.recurring.push(recurring("plan-l", "24.99", timing, vec![large]));
    invoice_of(&november, vec![bob], vat20())
}

#[test]
fn a_plan_change_mid_cycle_in_arrears() {
    // November 2026: 30 days. Plan S (19.99) since 1 June, changed to plan L (24.99) on
    // 11 November: S has 1..10 Nov = 10 days, L has 11..30 Nov = 20 days.
    //   S: 19.99 × 10 / 30 = 6.6633… → 6.66;  VAT 1.332 → 1.33; gross 7.99.
    //   L: 24.99 × 20 / 30 = 16.66;           VAT 3.332 → 3.33; gross 19.99.
    // Totals: net 23.32, tax 4.66, gross 27.98.
    let invoice = plan_change(ChargeTiming::InArrears, "0.00");
    assert_eq!(
        lines(&invoice),
        [
            (LineKind::Recurring, Some("plan-l"), s("16.66"), s("16.66"), s("3.33"), s("19.99")),
            (LineKind::Recurring, Some("plan-s"), s("6.66"), s("6.66"), s("1.33"), s("7.99")),
        ]
    );
    assert_eq!(totals(&invoice, "EUR"), (s("23.32"), s("4.66"), s("27.98")));
}

#[test]
fn a_plan_change_mid_cycle_in_advance_credits_and_charges_the_remainder() {
    // As above, but billed in advance: October's invoice charged plan S's whole November
    // (19.99). At November's close:
    //   S, November: due 6.66 (10 days), billed 19.99 → adjustment 6.66 − 19.99 = −13.33;
    //   L, November: due 16.66 (20 days), billed 0 → adjustment +16.66;
    //   L, December (31 days, all active): 24.99;  S has no day in December: no line.
    // VAT per line: 24.99 → 4.998 → 5.00; 16.66 → 3.332 → 3.33; −13.33 → −2.666 → −2.67.
    // Totals: net 24.99 + 16.66 − 13.33 = 28.32; tax 5.00 + 3.33 − 2.67 = 5.66; gross 33.98.
    let invoice = plan_change(ChargeTiming::InAdvance, "19.99");
    assert_eq!(
        lines(&invoice),
        [
            (LineKind::Recurring, Some("plan-l"), s("24.99"), s("24.99"), s("5.00"), s("29.99")),
            (LineKind::RecurringAdjustment, Some("plan-l"), s("16.66"), s("16.66"), s("3.33"), s("19.99")),
            (LineKind::RecurringAdjustment, Some("plan-s"), s("-13.33"), s("-13.33"), s("-2.67"), s("-16.00")),
        ]
    );
    assert_eq!(totals(&invoice, "EUR"), (s("28.32"), s("5.66"), s("33.98")));
}

#[test]
fn a_termination_on_the_cycles_last_day() {
    // Terminated on 30 November, the cycle's last day, which is charged: active 1..30 Nov,
    // 30 of 30 days.
    //   In arrears: 19.99 × 30 / 30 = 19.99 (VAT 3.998 → 4.00, gross 23.99).
    //   In advance: November was billed in advance (19.99) and is due in full: adjustment
    //   0.00, no line; December has no active day: no line.
    let november = cycle(2026, 11, 1);
    let span = DateSpan::active("t", date(2026, 3, 1), Some(date(2026, 11, 30))).expect("span");
    assert_eq!(span.last_day(), november.span().last_day());
    let mut carol = account("carol", "EUR");
    carol.recurring.push(recurring("arrears", "19.99", ChargeTiming::InArrears, vec![span]));
    let mut advance = recurring("advance", "19.99", ChargeTiming::InAdvance, vec![span]);
    advance.billed_in_advance = d("19.99");
    carol.recurring.push(advance);
    let invoice = invoice_of(&november, vec![carol], vat20());
    assert_eq!(
        lines(&invoice),
        [(LineKind::Recurring, Some("arrears"), s("19.99"), s("19.99"), s("4.00"), s("23.99"))]
    );
    assert_eq!(invoice.sections[0].lines[0].proration, Some(Proration { days: 30, period_days: 30 }));
    assert_eq!(totals(&invoice, "EUR"), (s("19.99"), s("4.00"), s("23.99")));
}

/// A tax case: currency, basis, rounding, mode, rate, three amounts, their expected taxes,
/// and the expected (net, tax, gross) totals.
type TaxCase = (
    &'static str,
    PriceBasis,
    TaxRounding,
    RoundingMode,
    &'static str,
    [&'static str; 3],
    [&'static str; 3],
    (&'static str, &'static str, &'static str),
);

/// One tax case: three one-off lines in `currency` under `profile`, and the expected tax of
/// each line and the totals.
fn check_tax(currency: &str, tax: TaxProfile, amounts: [&str; 3], line_taxes: [&str; 3], expected: (&str, &str, &str)) {
    let november = cycle(2026, 11, 1);
    let mut dave = account("dave", currency);
    for (index, amount) in amounts.iter().enumerate() {
        dave.one_off.push(one_off(&format!("fee-{index}"), currency, amount, date(2026, 11, 2)));
    }
    let invoice = invoice_of(&november, vec![dave], tax.clone());
    let taxes: Vec<String> = invoice.sections[0].lines.iter().map(|line| line.tax.to_string()).collect();
    let label = format!("{currency} {:?} {:?} {:?}", tax.basis, tax.rounding, tax.rounding_mode);
    assert_eq!(taxes, line_taxes, "{label}");
    for line in &invoice.sections[0].lines {
        assert_eq!(line.net + line.tax, line.gross, "{label}");
    }
    let (net, tax_total, gross) = expected;
    assert_eq!(totals(&invoice, currency), (s(net), s(tax_total), s(gross)), "{label}");
    assert_eq!(invoice.taxes.len(), 1);
    assert_eq!(invoice.taxes[0].tax.to_string(), tax_total, "{label}");
}

#[test]
fn tax_exclusive_and_inclusive_per_line_and_per_invoice_in_eur_jpy_and_kwd() {
    use PriceBasis::{Exclusive, Inclusive};
    use RoundingMode::{HalfEven, HalfUp};
    use TaxRounding::{PerInvoice, PerLine};
    #[rustfmt::skip]
    let cases: [TaxCase; 13] = [
        // EUR, 20 %, exclusive, three lines of 0.13: each 0.13 × 0.20 = 0.026.
        // Per line: 0.026 → 0.03 each; tax 0.09; net 0.39; gross 0.48.
        ("EUR", Exclusive, PerLine, HalfUp, "0.20", ["0.13"; 3], ["0.03"; 3], ("0.39", "0.09", "0.48")),
        // Per invoice: 0.39 × 0.20 = 0.078 → 0.08; the lines round to 0.03 + 0.03 + 0.03 = 0.09,
        // the −0.01 goes to the largest exact tax, the first on this tie: 0.02, 0.03, 0.03.
        ("EUR", Exclusive, PerInvoice, HalfUp, "0.20", ["0.13"; 3], ["0.02", "0.03", "0.03"], ("0.39", "0.08", "0.47")),
        // EUR, 20 %, inclusive, three lines of 0.13 gross: each tax 0.13 × 0.20 / 1.20 = 0.021666…
        // Per line: 0.02 each, tax 0.06, net 0.11 × 3 = 0.33, gross 0.39.
        ("EUR", Inclusive, PerLine, HalfUp, "0.20", ["0.13"; 3], ["0.02"; 3], ("0.33", "0.06", "0.39")),
        // Per invoice, half-up: 0.39 × 0.20 / 1.20 = 0.065 exactly → 0.07; lines 0.06, +0.01 on
        // the first: 0.03, 0.02, 0.02; net 0.39 − 0.07 = 0.32.
        ("EUR", Inclusive, PerInvoice, HalfUp, "0.20", ["0.13"; 3], ["0.03", "0.02", "0.02"], ("0.32", "0.07", "0.39")),
        // Per invoice, half-even: 0.065 → 0.06 (6 is even), the lines' 0.06 need no carry.
        ("EUR", Inclusive, PerInvoice, HalfEven, "0.20", ["0.13"; 3], ["0.02"; 3], ("0.33", "0.06", "0.39")),

        // JPY (no minor unit), 10 %, exclusive, three lines of 105: each 10.5.
        // Per line, half-up: 11 each, tax 33, net 315, gross 348.
        ("JPY", Exclusive, PerLine, HalfUp, "0.10", ["105"; 3], ["11"; 3], ("315", "33", "348")),
        // Per invoice: 315 × 0.10 = 31.5 → 32; lines 33, −1 on the first: 10, 11, 11.
        ("JPY", Exclusive, PerInvoice, HalfUp, "0.10", ["105"; 3], ["10", "11", "11"], ("315", "32", "347")),
        // JPY, 10 %, inclusive, three lines of 1005 gross: each 1005 × 0.10 / 1.10 = 91.3636…
        // Per line: 91 each, tax 273, net 3015 − 273 = 2742.
        ("JPY", Inclusive, PerLine, HalfUp, "0.10", ["1005"; 3], ["91"; 3], ("2742", "273", "3015")),
        // Per invoice: 3015 / 11 = 274.09… → 274; lines 273, +1 on the first: 92, 91, 91;
        // net 3015 − 274 = 2741.
        ("JPY", Inclusive, PerInvoice, HalfUp, "0.10", ["1005"; 3], ["92", "91", "91"], ("2741", "274", "3015")),

        // KWD (three decimals), 5 %, exclusive, three lines of 0.011: each 0.00055.
        // Per line: 0.001 each (half-up), tax 0.003, net 0.033, gross 0.036.
        ("KWD", Exclusive, PerLine, HalfUp, "0.05", ["0.011"; 3], ["0.001"; 3], ("0.033", "0.003", "0.036")),
        // Per invoice: 0.033 × 0.05 = 0.00165 → 0.002; lines 0.003, −0.001 on the first.
        ("KWD", Exclusive, PerInvoice, HalfUp, "0.05", ["0.011"; 3], ["0.000", "0.001", "0.001"], ("0.033", "0.002", "0.035")),
        // KWD, 5 %, inclusive, 0.011 gross each: 0.011 × 0.05 / 1.05 = 0.000523… → 0.001 per line
        // (tax 0.003, net 0.030); per invoice 0.033 × 0.05 / 1.05 = 0.00157… → 0.002, −0.001 on
        // the first line (net 0.031).
        ("KWD", Inclusive, PerLine, HalfUp, "0.05", ["0.011"; 3], ["0.001"; 3], ("0.030", "0.003", "0.033")),
        ("KWD", Inclusive, PerInvoice, HalfUp, "0.05", ["0.011"; 3], ["0.000", "0.001", "0.001"], ("0.031", "0.002", "0.033")),
    ];
    for (currency, basis, rounding, mode, rate, amounts, line_taxes, expected) in cases {
        check_tax(currency, profile(basis, rounding, mode, &[("T", "FR", rate)]), amounts, line_taxes, expected);
    }
}

fn discount(id: &str, scope: DiscountScope, value: DiscountValue, valid: DateSpan) -> Discount {
    Discount {
        id: id.to_owned(),
        description: format!("{id} discount"),
        charge_type: "discount".to_owned(),
        scope,
        value,
        valid,
    }
}

#[test]
fn discounts_and_credits_never_go_below_zero() {
    // November 2026 (30 days), VAT 20 % exclusive per line. Charges: p1 3.00, p2 20.00.
    // D1, p1, fixed 5.00, valid all cycle: wants 5.00, capped at p1's 3.00 → −3.00.
    // D2, account, 50 %, valid from 16 Nov (16..30 = 15 of 30 days): on what is left
    //   (p1 0.00, p2 20.00): 20.00 × 50 / 100 × 15 / 30 = 5.00 → −5.00.
    // C1, credit 40.00: 15.00 left → −15.00, 25.00 unused for the next invoice.
    // VAT: 3.00 → 0.60, 20.00 → 4.00, −3.00 → −0.60, −5.00 → −1.00, −15.00 → −3.00.
    // Totals: net 23.00 − 23.00 = 0.00; tax 4.60 − 4.60 = 0.00; gross 0.00.
    let november = cycle(2026, 11, 1);
    let mut erin = account("erin", "EUR");
    erin.recurring.push(recurring("p1", "3.00", ChargeTiming::InArrears, vec![from(date(2026, 1, 1))]));
    erin.recurring.push(recurring("p2", "20.00", ChargeTiming::InArrears, vec![from(date(2026, 1, 1))]));
    erin.discounts.push(discount(
        "D2",
        DiscountScope::Account,
        DiscountValue::Percent(d("50")),
        from(date(2026, 11, 16)),
    ));
    erin.discounts.push(discount(
        "D1",
        DiscountScope::Product { product_id: "p1".to_owned() },
        DiscountValue::Fixed { amount: d("5.00"), currency: "EUR".to_owned() },
        from(date(2026, 1, 1)),
    ));
    erin.credits.push(Credit {
        id: "C1".to_owned(),
        description: "goodwill".to_owned(),
        charge_type: "credit".to_owned(),
        amount: d("40.00"),
        currency: "EUR".to_owned(),
    });
    let invoice = invoice_of(&november, vec![erin], vat20());
    assert_eq!(
        lines(&invoice),
        [
            (LineKind::Recurring, Some("p1"), s("3.00"), s("3.00"), s("0.60"), s("3.60")),
            (LineKind::Recurring, Some("p2"), s("20.00"), s("20.00"), s("4.00"), s("24.00")),
            (LineKind::Discount, Some("p1"), s("-3.00"), s("-3.00"), s("-0.60"), s("-3.60")),
            (LineKind::Discount, None, s("-5.00"), s("-5.00"), s("-1.00"), s("-6.00")),
            (LineKind::Credit, None, s("-15.00"), s("-15.00"), s("-3.00"), s("-18.00")),
        ]
    );
    assert_eq!(invoice.sections[0].lines[3].proration, Some(Proration { days: 15, period_days: 30 }));
    assert_eq!(totals(&invoice, "EUR"), (s("0.00"), s("0.00"), s("0.00")));
    assert_eq!(invoice.unused_credits.len(), 1);
    assert_eq!((invoice.unused_credits[0].credit_id.as_str(), invoice.unused_credits[0].amount), ("C1", d("25.00")));
}

/// A corporate parent with two children, given out of order, with a hierarchy discount.
fn hierarchy() -> InvoiceInputs {
    let mut parent = account("corp", "EUR");
    parent.recurring.push(recurring("fleet", "100.00", ChargeTiming::InArrears, vec![from(date(2026, 1, 1))]));
    parent.discounts.push(discount(
        "corporate-10",
        DiscountScope::Hierarchy,
        DiscountValue::Percent(d("10")),
        from(date(2026, 1, 1)),
    ));
    let mut anna = account("corp-anna", "EUR");
    anna.one_off.push(one_off("sim-swap", "EUR", "5.00", date(2026, 11, 20)));
    anna.allowances.push(AllowanceDraw {
        product_id: Some("fleet".to_owned()),
        charge_type: "voice-national".to_owned(),
        description: "national minutes from the bundle".to_owned(),
        quantity: d("300"),
        unit: "minute".to_owned(),
    });
    let mut ben = account("corp-ben", "EUR");
    ben.usage.push(UsageCharge {
        product_id: Some("fleet".to_owned()),
        charge_type: "roaming-data".to_owned(),
        description: "data in roaming".to_owned(),
        service_class: "telecom".to_owned(),
        currency: "EUR".to_owned(),
        quantity: d("3.5"),
        unit: "GB".to_owned(),
        amount: d("12.34"),
        items: vec![
            UsageItem {
                used_at: 1_794_000_000,
                description: "Spain".to_owned(),
                quantity: d("2.5"),
                amount: d("8.81"),
            },
            UsageItem { used_at: 1_793_900_000, description: "Italy".to_owned(), quantity: d("1"), amount: d("3.53") },
        ],
    });
    InvoiceInputs {
        account_id: "corp".to_owned(),
        rounding_mode: RoundingMode::HalfUp,
        tax_profile: vat20(),
        accounts: vec![ben, parent, anna],
    }
}

#[test]
fn a_hierarchy_invoice_has_a_section_per_account() {
    // Charges: corp 100.00 (fleet, full November), corp-anna 5.00 (SIM swap) and a zero-priced
    // allowance line, corp-ben 12.34 (roaming data, two itemised entries).
    // Hierarchy discount 10 % of 117.34 = 11.734 → 11.73, shared in minor units by the
    // largest remainder over 10000 : 500 : 1234 (base 11734):
    //   corp 1173 × 10000 / 11734 = 999.66, anna 1173 × 500 / 11734 = 49.98,
    //   ben 1173 × 1234 / 11734 = 123.36 → 999 + 49 + 123 = 1171, the 2 left go to the
    //   largest fractions (anna .98, corp .66): corp −10.00, anna −0.50, ben −1.23.
    // VAT 20 % per line:
    //   corp: 100.00 → 20.00; −10.00 → −2.00. Net 90.00, tax 18.00, gross 108.00.
    //   anna: 5.00 → 1.00; −0.50 → −0.10; allowance 0. Net 4.50, tax 0.90, gross 5.40.
    //   ben: 12.34 → 2.468 → 2.47; −1.23 → −0.246 → −0.25. Net 11.11, tax 2.22, gross 13.33.
    // Invoice: net 105.61, tax 21.12, gross 126.73.
    let november = cycle(2026, 11, 1);
    let invoice = compose(&november, &hierarchy()).expect("invoice");
    let ids: Vec<&str> = invoice.sections.iter().map(|section| section.account_id.as_str()).collect();
    assert_eq!(ids, ["corp", "corp-anna", "corp-ben"]);
    let section_totals: Vec<(String, String, String)> = invoice
        .sections
        .iter()
        .map(|section| {
            let t = &section.totals[0];
            (t.net.to_string(), t.tax.to_string(), t.gross.to_string())
        })
        .collect();
    assert_eq!(
        section_totals,
        [(s("90.00"), s("18.00"), s("108.00")), (s("4.50"), s("0.90"), s("5.40")), (s("11.11"), s("2.22"), s("13.33")),]
    );
    let discounts: Vec<String> = invoice
        .sections
        .iter()
        .flat_map(|section| &section.lines)
        .filter(|line| line.kind == LineKind::Discount)
        .map(|line| line.amount.to_string())
        .collect();
    assert_eq!(discounts, ["-10.00", "-0.50", "-1.23"]);
    let anna = &invoice.sections[1].lines;
    assert_eq!(
        anna.iter().map(|line| line.kind).collect::<Vec<_>>(),
        [LineKind::OneOff, LineKind::Allowance, LineKind::Discount]
    );
    assert_eq!((anna[1].gross.to_string(), anna[1].quantity), (s("0.00"), Some(d("300"))));
    // The itemised entries are in time order: Italy (1 793 900 000) before Spain.
    let items: Vec<&str> = invoice.sections[2].lines[0].items.iter().map(|item| item.description.as_str()).collect();
    assert_eq!(items, ["Italy", "Spain"]);
    assert_eq!(totals(&invoice, "EUR"), (s("105.61"), s("21.12"), s("126.73")));
}

#[test]
fn the_same_inputs_in_any_order_give_the_same_invoice_and_hash() {
    let november = cycle(2026, 11, 1);
    let first = compose(&november, &hierarchy()).expect("invoice");
    let again = compose(&november, &hierarchy()).expect("rerun");
    let mut shuffled = hierarchy();
    shuffled.accounts.reverse();
    for account in &mut shuffled.accounts {
        for usage in &mut account.usage {
            usage.items.reverse();
        }
    }
    let reordered = compose(&november, &shuffled).expect("reordered");
    assert_eq!(first, again);
    assert_eq!(first, reordered);
    let hash = first.content_hash().expect("hash");
    assert!(hash.starts_with("sha256:") && hash.len() == 7 + 64, "{hash}");
    assert_eq!(reordered.content_hash().expect("hash"), hash);
    // An amount written with fewer decimals is the same money: the same invoice.
    let mut short = hierarchy();
    short.accounts[2].one_off[0].amount = d("5");
    assert_eq!(compose(&november, &short).expect("short").content_hash().expect("hash"), hash);
    // One cent more somewhere is another invoice.
    let mut changed = hierarchy();
    changed.accounts[2].one_off[0].amount = d("5.01");
    assert_ne!(compose(&november, &changed).expect("changed").content_hash().expect("hash"), hash);
    // The JSON round-trips to the same invoice.
    let json = serde_json::to_string(&first).expect("json");
    assert_eq!(serde_json::from_str::<Invoice>(&json).expect("back"), first);
}

fn chart() -> ChartOfAccounts {
    ChartOfAccounts {
        receivable: "1200".to_owned(),
        revenue: [("recurring", "4000"), ("one-off", "4100"), ("roaming-data", "4200"), ("discount", "4900")]
            .into_iter()
            .map(|(kind, code)| (kind.to_owned(), code.to_owned()))
            .collect(),
        revenue_default: Some("4999".to_owned()),
        tax_payable: [("FR-VAT-20".to_owned(), "2400".to_owned())].into_iter().collect(),
        tax_payable_default: None,
        prepaid_balance: Some("2300".to_owned()),
    }
}

#[test]
fn the_general_ledger_journal_balances() {
    // The hierarchy invoice posts (see the hierarchy test for the figures):
    //   debit  1200 receivable 126.73;
    //   credit 4000 recurring 100.00, 4100 one-off 5.00, 4200 roaming data 12.34;
    //   debit  4900 discounts 10.00 + 0.50 + 1.23 = 11.73 (a negative revenue);
    //   4999 (the allowance's voice-national, zero) posts nothing;
    //   credit 2400 VAT 21.12.
    // Debits 126.73 + 11.73 = 138.46 = credits 100.00 + 5.00 + 12.34 + 21.12.
    let november = cycle(2026, 11, 1);
    let corp = compose(&november, &hierarchy()).expect("invoice");
    let mut fay = account("fay", "EUR");
    fay.one_off.push(one_off("activation", "EUR", "9.99", date(2026, 11, 3)));
    let fay = invoice_of(&november, vec![fay], vat20());
    // gus terminated on 10 November a plan billed in advance for all of November (19.99):
    // due 19.99 × 10 / 30 = 6.6633… → 6.66, a correction of 6.66 − 19.99 = −13.33, VAT
    // −2.666 → −2.67, gross −16.00: a credit note, the receivable on the credit side.
    let mut gus = account("gus", "EUR");
    let mut plan = recurring(
        "plan-s",
        "19.99",
        ChargeTiming::InAdvance,
        vec![DateSpan::active("gus", date(2026, 6, 1), Some(date(2026, 11, 10))).expect("span")],
    );
    plan.billed_in_advance = d("19.99");
    gus.recurring.push(plan);
    let gus = invoice_of(&november, vec![gus], vat20());
    let invoices = [("INV-B", &fay), ("INV-C", &gus), ("INV-A", &corp)];
    let journal = Journal::post("run-2026-11", &invoices, &chart()).expect("journal");
    let csv = String::from_utf8(journal.to_csv().expect("csv")).expect("utf-8");
    // fay: 9.99 → VAT 1.998 → 2.00; receivable 11.99.
    assert_eq!(
        csv,
        "journal_id,invoice,currency,account_code,debit,credit,description\n\
         run-2026-11,INV-A,EUR,1200,126.73,0.00,receivable corp\n\
         run-2026-11,INV-A,EUR,4000,0.00,100.00,revenue recurring\n\
         run-2026-11,INV-A,EUR,4100,0.00,5.00,revenue one-off\n\
         run-2026-11,INV-A,EUR,4200,0.00,12.34,revenue roaming-data\n\
         run-2026-11,INV-A,EUR,4900,11.73,0.00,revenue discount\n\
         run-2026-11,INV-A,EUR,2400,0.00,21.12,tax FR-VAT-20\n\
         run-2026-11,INV-B,EUR,1200,11.99,0.00,receivable fay\n\
         run-2026-11,INV-B,EUR,4100,0.00,9.99,revenue one-off\n\
         run-2026-11,INV-B,EUR,2400,0.00,2.00,tax FR-VAT-20\n\
         run-2026-11,INV-C,EUR,1200,0.00,16.00,receivable gus\n\
         run-2026-11,INV-C,EUR,4000,13.33,0.00,revenue recurring\n\
         run-2026-11,INV-C,EUR,2400,2.67,0.00,tax FR-VAT-20\n"
    );
    // Debits 138.46 + 11.99 + 13.33 + 2.67 = 166.45; credits 138.46 + 11.99 + 16.00 = 166.45.
    assert_eq!(journal.totals().get("EUR"), Some(&(d("166.45"), d("166.45"))));
    // A tax code with no account is refused, naming it.
    let mut no_tax = chart();
    no_tax.tax_payable.clear();
    assert_eq!(
        Journal::post("run", &[("INV-A", &corp)], &no_tax),
        Err(BillingError::NoAccountCode { what: "tax code", key: "FR-VAT-20".to_owned() })
    );
    // A prepaid statement (fay's) debits the prepaid balance, not the receivable; the
    // rest of its postings are an invoice's.
    let journal =
        Journal::post_documents("run", &[("ST-1", &fay, true), ("INV-C", &gus, false)], &chart()).expect("journal");
    let csv = String::from_utf8(journal.to_csv().expect("csv")).expect("utf-8");
    assert!(csv.contains("run,ST-1,EUR,2300,11.99,0.00,prepaid balance fay\n"), "{csv}");
    assert!(csv.contains("run,INV-C,EUR,1200,0.00,16.00,receivable gus\n"), "{csv}");
    assert!(!csv.contains("ST-1,EUR,1200"), "{csv}");
    assert_eq!(journal.totals().get("EUR"), Some(&(d("27.99"), d("27.99"))));
    // Without a prepaid balance account a statement is refused, naming it.
    let no_prepaid = ChartOfAccounts { prepaid_balance: None, ..chart() };
    assert_eq!(
        Journal::post_documents("run", &[("ST-1", &fay, true)], &no_prepaid),
        Err(BillingError::NoAccountCode { what: "prepaid balance", key: "ST-1".to_owned() })
    );
}

#[test]
fn bad_inputs_are_refused_naming_the_field() {
    let november = cycle(2026, 11, 1);
    let check = |change: &dyn Fn(&mut InvoiceInputs), expected: &str| {
        let mut inputs = hierarchy();
        change(&mut inputs);
        let error = compose(&november, &inputs).expect_err(expected);
        assert_eq!(error.to_string(), expected);
    };
    check(
        &|inputs| inputs.accounts[2].one_off[0].currency = "EURO".to_owned(),
        "accounts[2].one_off[0].currency: unknown currency \"EURO\"",
    );
    check(
        &|inputs| inputs.accounts[2].one_off[0].amount = d("5.001"),
        "invalid accounts[2].one_off[0].amount: 5.001 has more than 2 decimals",
    );
    check(
        &|inputs| inputs.accounts[0].jurisdiction = "DE".to_owned(),
        "accounts[0].usage[0]: tax profile \"standard\" has no rate for jurisdiction \"DE\" and service class \"telecom\"",
    );
    check(
        &|inputs| inputs.accounts[0].usage[0].items[0].amount = d("8.80"),
        "invalid accounts[0].usage[0].items: add up to 3.5 GB and 12.33, not the total's 3.5 and 12.34",
    );
    check(
        &|inputs| {
            let fleet = &mut inputs.accounts[1].recurring[0];
            fleet.active.push(DateSpan { from: date(2026, 11, 10), until: date(2026, 11, 12) });
        },
        "invalid accounts[1].recurring[0].active[1]: [2026-11-10, 2026-11-12) overlaps accounts[1].recurring[0].active[0] \
         [2026-01-01, 9999-12-31): a day would be charged twice",
    );
    check(
        &|inputs| {
            let moved = inputs.accounts[1].discounts.remove(0);
            inputs.accounts[0].discounts.push(moved);
        },
        "invalid accounts[0].discounts[0]: a hierarchy discount belongs to the invoiced account",
    );
    check(
        &|inputs| inputs.account_id = "other".to_owned(),
        "invalid accounts: has no section for the invoiced account \"other\"",
    );
    check(
        &|inputs| inputs.accounts[1].recurring[0].billed_in_advance = d("1.00"),
        "invalid accounts[1].recurring[0].billed_in_advance: a charge in arrears is never billed in advance",
    );
}

#[test]
fn a_price_s_timing_and_kind_are_read_as_the_catalogue_writes_them() {
    use tollgate_billing::{BillingError, PriceKind};
    assert_eq!(ChargeTiming::from_tmf(None, "t").expect("none"), ChargeTiming::InArrears);
    assert_eq!(ChargeTiming::from_tmf(Some("inArrears"), "t").expect("arrears"), ChargeTiming::InArrears);
    assert_eq!(ChargeTiming::from_tmf(Some("inAdvance"), "t").expect("advance"), ChargeTiming::InAdvance);
    match ChargeTiming::from_tmf(Some("in-advance"), "price p-1 chargeTiming") {
        Err(BillingError::Invalid { field, .. }) => assert_eq!(field, "price p-1 chargeTiming"),
        other => panic!("refused, naming the field: {other:?}"),
    }
    assert_eq!(PriceKind::from_tmf("recurring"), PriceKind::Recurring);
    assert_eq!(PriceKind::from_tmf("oneTime"), PriceKind::OneTime);
}
