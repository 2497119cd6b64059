//! The sample invoice the tests, the benchmark and `docs/invoice-sample.pdf` render: a
//! hierarchy (the invoiced company and one child account) billed for February 2028 in
//! Europe/Paris, with a recurring fee, a one-off charge and a 10 % account discount on the
//! parent, a recurring fee and itemised voice usage on the child, VAT 20 % on top; priced
//! in the currency asked for (EUR, JPY or KWD, each in its own minor units).

#![allow(dead_code, unreachable_pub)]

use jiff::civil::date;
use jiff::tz::TimeZone;
use rust_decimal::Decimal;
use tollgate_billing::{
    compose, AccountCharges, BillingCycle, ChargeTiming, DateSpan, Discount, DiscountScope, DiscountValue, Invoice,
    InvoiceInputs, OneOffCharge, PriceBasis, RecurringCharge, RoundingMode, TaxProfile, TaxRate, TaxRounding,
    UsageCharge, UsageItem,
};
use tollgate_invoice_pdf::{DocumentMeta, Party};

/// Prices per currency: (monthly fee of the parent, of the child, one-off, per minute).
fn prices(currency: &str) -> (Decimal, Decimal, Decimal, Decimal) {
    match currency {
        "JPY" => (Decimal::new(6_500, 0), Decimal::new(2_980, 0), Decimal::new(3_300, 0), Decimal::new(22, 0)),
        "KWD" => (Decimal::new(12_500, 3), Decimal::new(6_250, 3), Decimal::new(2_000, 3), Decimal::new(45, 3)),
        _ => (Decimal::new(4_500, 2), Decimal::new(2_499, 2), Decimal::new(1_000, 2), Decimal::new(15, 2)),
    }
}

fn account(id: &str, currency: &str) -> AccountCharges {
    AccountCharges {
        account_id: id.to_owned(),
        currency: currency.to_owned(),
        jurisdiction: "FR".to_owned(),
        recurring: Vec::new(),
        one_off: Vec::new(),
        usage: Vec::new(),
        allowances: Vec::new(),
        discounts: Vec::new(),
        credits: Vec::new(),
    }
}

fn fee(product: &str, description: &str, currency: &str, price: Decimal) -> RecurringCharge {
    RecurringCharge {
        product_id: product.to_owned(),
        charge_type: "subscription".to_owned(),
        description: description.to_owned(),
        service_class: "telecom".to_owned(),
        currency: currency.to_owned(),
        price,
        timing: ChargeTiming::InArrears,
        active: vec![DateSpan::active("active", date(2027, 11, 3), None).expect("span")],
        billed_in_advance: Decimal::ZERO,
    }
}

/// The description of usage entry `index`.
pub fn call_description(index: usize) -> String {
    format!("Call to +33 6 12 34 {:02} {:02}", index / 100 % 100, index % 100)
}

/// The sample invoice in `currency` with `calls` itemised calls.
pub fn invoice(currency: &str, calls: usize) -> Invoice {
    let (parent_fee, child_fee, one_off, per_minute) = prices(currency);
    let cycle =
        BillingCycle::starting_in(2028, 2, 1, TimeZone::get("Europe/Paris").expect("tzdb")).expect("February 2028");
    let mut parent = account("acme-corp", currency);
    parent.recurring.push(fee("business-l", "Business Mobile L", currency, parent_fee));
    parent.one_off.push(OneOffCharge {
        id: "swap-1".to_owned(),
        product_id: None,
        charge_type: "one-off".to_owned(),
        description: "SIM swap".to_owned(),
        service_class: "telecom".to_owned(),
        currency: currency.to_owned(),
        amount: one_off,
        charged_on: date(2028, 2, 12),
    });
    parent.discounts.push(Discount {
        id: "loyalty".to_owned(),
        charge_type: "discount".to_owned(),
        description: "Loyalty discount 10 %".to_owned(),
        scope: DiscountScope::Account,
        value: DiscountValue::Percent(Decimal::TEN),
        valid: DateSpan::active("valid", date(2027, 1, 1), None).expect("span"),
    });
    let mut child = account("acme-fleet-7", currency);
    child.recurring.push(fee("fleet-s", "Fleet Mobile S", currency, child_fee));
    let start = jiff::civil::date(2028, 2, 1).at(8, 0, 0, 0).in_tz("Europe/Paris").expect("tz").timestamp().as_second();
    let items: Vec<UsageItem> = (0..calls)
        .map(|index| {
            let minutes = Decimal::from(1 + index % 7);
            UsageItem {
                used_at: start + i64::try_from(index).unwrap_or(0) * 4 * 3600 + 17 * 60,
                description: call_description(index),
                quantity: minutes,
                amount: minutes * per_minute,
            }
        })
        .collect();
    child.usage.push(UsageCharge {
        product_id: Some("fleet-s".to_owned()),
        charge_type: "voice".to_owned(),
        description: "Voice calls, national".to_owned(),
        service_class: "telecom".to_owned(),
        currency: currency.to_owned(),
        quantity: items.iter().map(|item| item.quantity).sum(),
        unit: "min".to_owned(),
        amount: items.iter().map(|item| item.amount).sum(),
        items,
    });
    let tax_profile = TaxProfile {
        id: "fr-standard".to_owned(),
        basis: PriceBasis::Exclusive,
        rounding: TaxRounding::PerLine,
        rounding_mode: RoundingMode::HalfUp,
        rates: vec![TaxRate {
            code: "FR-VAT-20".to_owned(),
            jurisdiction: "FR".to_owned(),
            service_class: None,
            rate: Decimal::new(20, 2),
        }],
    };
    let inputs = InvoiceInputs {
        account_id: "acme-corp".to_owned(),
        rounding_mode: RoundingMode::HalfUp,
        tax_profile,
        accounts: vec![parent, child],
    };
    compose(&cycle, &inputs).expect("the sample invoice composes")
}

/// Who issues the sample invoice to whom.
pub fn meta(number: Option<&str>) -> DocumentMeta {
    DocumentMeta {
        issuer: Party {
            name: "Tollgate Telecom SAS".to_owned(),
            address: vec!["12 rue des Pylônes".to_owned(), "75011 Paris".to_owned(), "France".to_owned()],
            tax_id: Some("FR12345678901".to_owned()),
        },
        customer: Party {
            name: "Acme Logistics GmbH".to_owned(),
            address: vec!["Hafenstraße 4".to_owned(), "20457 Hamburg".to_owned(), "Germany".to_owned()],
            tax_id: Some("DE123456789".to_owned()),
        },
        number: number.map(str::to_owned),
        issue_date: date(2028, 3, 1),
        due_date: Some(date(2028, 3, 31)),
        payment_terms: None,
    }
}
