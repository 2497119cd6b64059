//! Tollgate's billing core: what an account owes for a billing cycle, as pure functions of
//! typed inputs. [`minor_units`] knows each ISO 4217 currency's minor units and
//! rounds with a named mode; [`BillingCycle`] and [`DateSpan`] prorate recurring charges
//! by day in the operator's calendar; [`TaxProfile`] taxes lines inclusive or exclusive,
//! rounded per line or per invoice; [`Discount`] and [`Credit`] take amounts off without
//! going below zero; [`compose`] builds a draft [`Invoice`] with a section per account of
//! a hierarchy and a stable [`Invoice::content_hash`]; [`Journal`] posts invoices to the
//! general ledger (debits equal credits) and writes it as CSV; [`plan_invoice`] holds
//! the bill run's rules (which cycle closes, what is billed once, under which key);
//! [`allocate`], [`age`] and [`DunningPolicy`] the receivables' (payments to invoices,
//! aging, dunning); [`read_camt053`] reads the credits of a bank statement. No SQL (the store's), no
//! I/O, no clock and no engine: a bill run reads the inputs, calls these functions and
//! saves what they return. The policies are in the README.
#![forbid(unsafe_code)]

mod bank;
mod currency;
mod cycle;
mod discount;
mod error;
mod invoice;
mod journal;
mod receivables;
mod run;
mod tax;

pub use bank::{read_camt053, Statement, StatementCredit, StatementReject, MAX_STATEMENT_ENTRIES};
pub use currency::{currency_rounding, minor_units, significant_digits};
pub use cycle::{BillingCycle, DateSpan, Proration, MAX_BILL_CYCLE_DAY, MAX_SPANS_PER_CHARGE};
pub use discount::{Credit, Discount, DiscountScope, DiscountValue};
pub use error::{BillingError, Result};
pub use invoice::{
    compose, AccountCharges, AllowanceDraw, ChargeTiming, Invoice, InvoiceInputs, Line, LineKind, OneOffCharge,
    RecurringCharge, Section, TaxTotal, Totals, UnusedCredit, UsageCharge, UsageItem, CONTENT_HASH_VERSION,
    MAX_AMOUNT_UNITS, MAX_DISCOUNTS, MAX_ITEMS, MAX_LINES, MAX_SECTIONS, MAX_TEXT_CHARS,
};
pub use journal::{ChartOfAccounts, Journal, JournalEntry};
pub use receivables::{
    age, allocate, days_overdue, Aging, Allocation, DunningAction, DunningPolicy, DunningStep, OpenInvoice,
    MAX_DUNNING_STEPS,
};
pub use run::{
    closing_cycle, correction_key, lookup_keys, one_off_key, parse_cycle, plan_invoice, reconcile, recurring_key,
    usage_window_start, AccountInput, BilledKey, PlannedInvoice, PriceKind, PriceKindOrUsage, ProductInput, RatedEntry,
    Reconciliation, RunConfig, SuspendedDays, UsageInput, DEFAULT_JURISDICTION, GRACE_TERM, MAX_GRACE_DAYS,
    MAX_LOOKBACK_CYCLES, UNTAXED_PROFILE,
};
pub use tax::{PriceBasis, TaxProfile, TaxRate, TaxRounding, MAX_TAX_RATES};
pub use tollgate_tariffs::{Rounding, RoundingMode};
