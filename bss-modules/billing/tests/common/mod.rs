//! Builders shared by the billing tests: an empty account, a tax profile from a table, a
//! recurring charge, a one-off charge, and `d("1.23")` for an exact decimal.

#![allow(dead_code, unreachable_pub)]

use std::str::FromStr;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use rust_decimal::Decimal;
use tollgate_billing::{
    AccountCharges, BillingCycle, ChargeTiming, DateSpan, OneOffCharge, PriceBasis, RecurringCharge, RoundingMode,
    TaxProfile, TaxRate, TaxRounding,
};

pub fn d(text: &str) -> Decimal {
    Decimal::from_str(text).expect("test decimal")
}

pub fn cycle(year: i16, month: i8, bill_cycle_day: u8) -> BillingCycle {
    BillingCycle::starting_in(year, month, bill_cycle_day, TimeZone::get("Europe/Paris").expect("tzdb")).expect("cycle")
}

/// A profile with one default rate per (code, jurisdiction, rate).
pub fn profile(
    basis: PriceBasis,
    rounding: TaxRounding,
    mode: RoundingMode,
    rates: &[(&str, &str, &str)],
) -> TaxProfile {
    TaxProfile {
        id: "standard".to_owned(),
        basis,
        rounding,
        rounding_mode: mode,
        rates: rates
            .iter()
            .map(|(code, jurisdiction, rate)| TaxRate {
                code: (*code).to_owned(),
                jurisdiction: (*jurisdiction).to_owned(),
                service_class: None,
                rate: d(rate),
            })
            .collect(),
    }
}

/// VAT 20 % in FR, prices exclusive, tax per line, half-up.
pub fn vat20() -> TaxProfile {
    profile(PriceBasis::Exclusive, TaxRounding::PerLine, RoundingMode::HalfUp, &[("FR-VAT-20", "FR", "0.20")])
}

pub fn account(id: &str, currency: &str) -> AccountCharges {
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

pub fn recurring(product: &str, price: &str, timing: ChargeTiming, active: Vec<DateSpan>) -> RecurringCharge {
    RecurringCharge {
        product_id: product.to_owned(),
        charge_type: "recurring".to_owned(),
        description: format!("{product} monthly fee"),
        service_class: "telecom".to_owned(),
        currency: "EUR".to_owned(),
        price: d(price),
        timing,
        active,
        billed_in_advance: Decimal::ZERO,
    }
}

pub fn one_off(id: &str, currency: &str, amount: &str, on: Date) -> OneOffCharge {
    OneOffCharge {
        id: id.to_owned(),
        product_id: None,
        charge_type: "one-off".to_owned(),
        description: format!("{id} fee"),
        service_class: "telecom".to_owned(),
        currency: currency.to_owned(),
        amount: d(amount),
        charged_on: on,
    }
}

pub fn from(day: Date) -> DateSpan {
    DateSpan::active("test", day, None).expect("span")
}
