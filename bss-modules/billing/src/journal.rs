//! The general-ledger journal of a set of invoices: per invoice and currency, the
//! receivable is debited with the gross total, each revenue account (by the lines' charge
//! types, [`ChartOfAccounts`]) credited with its lines' net, and each tax-payable account
//! (by tax code) credited with its tax. A negative amount (a credit larger than the
//! charges, a discount line's own account) goes to the other side. Because every line has
//! net + tax = gross, debits equal credits per invoice and currency; [`Journal::post`]
//! checks it anyway and refuses an unbalanced journal. [`Journal::to_csv`] writes it for a
//! finance system to import, in memory (the caller writes the bytes).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{BillingError, Result};
use crate::invoice::{Invoice, LineKind};

/// Account codes of the general ledger.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartOfAccounts {
    /// Where what customers owe is debited (accounts receivable).
    pub receivable: String,
    /// The revenue account of each charge type (discounts and credits have their own).
    pub revenue: BTreeMap<String, String>,
    /// The revenue account of a charge type not in `revenue`; `None` refuses it.
    pub revenue_default: Option<String>,
    /// The tax-payable account of each tax code.
    pub tax_payable: BTreeMap<String, String>,
    /// The tax-payable account of a tax code not in `tax_payable`; `None` refuses it.
    pub tax_payable_default: Option<String>,
    /// Where a prepaid statement is debited instead of the receivable: the customers'
    /// prepayments (a liability), which the usage charged online and the fees debited at
    /// renewal drew down (default 2300, also when a configuration's chart leaves it
    /// out). `None` refuses a statement.
    #[serde(default = "default_prepaid_balance")]
    pub prepaid_balance: Option<String>,
}

fn default_prepaid_balance() -> Option<String> {
    Some("2300".to_owned())
}

impl ChartOfAccounts {
    fn revenue_code(&self, charge_type: &str) -> Result<&str> {
        code_in(&self.revenue, self.revenue_default.as_ref(), "charge type", charge_type)
    }

    fn tax_code(&self, code: &str) -> Result<&str> {
        code_in(&self.tax_payable, self.tax_payable_default.as_ref(), "tax code", code)
    }
}

/// The account code of `key` in `codes`, else `default`, else an error naming `what`.
fn code_in<'a>(
    codes: &'a BTreeMap<String, String>,
    default: Option<&'a String>,
    what: &'static str,
    key: &str,
) -> Result<&'a str> {
    codes
        .get(key)
        .or(default)
        .map(String::as_str)
        .ok_or_else(|| BillingError::NoAccountCode { what, key: key.to_owned() })
}

/// One posting: an amount on one side of one account, for one invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub invoice: String,
    pub currency: String,
    pub account_code: String,
    pub debit: Decimal,
    pub credit: Decimal,
    pub description: String,
}

/// The journal of one bill run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub id: String,
    pub entries: Vec<JournalEntry>,
}

/// `amount` on the side its sign says: `(debit, credit)`, the other side a zero of the
/// same scale.
fn sides(amount: Decimal, debit_when_positive: bool) -> (Decimal, Decimal) {
    let mut zero = Decimal::ZERO;
    zero.rescale(amount.scale());
    let magnitude = amount.abs();
    if amount.is_sign_positive() == debit_when_positive {
        (magnitude, zero)
    } else {
        (zero, magnitude)
    }
}

impl Journal {
    /// Posts `invoices` (each with the reference it is posted under, unique) into journal
    /// `id`, in the order of their references.
    pub fn post(id: &str, invoices: &[(&str, &Invoice)], chart: &ChartOfAccounts) -> Result<Journal> {
        let documents: Vec<(&str, &Invoice, bool)> =
            invoices.iter().map(|(reference, invoice)| (*reference, *invoice, false)).collect();
        Journal::post_documents(id, &documents, chart)
    }

    /// As [`post`](Self::post), each invoice marked `true` when it is a prepaid statement:
    /// its gross is debited to [`ChartOfAccounts::prepaid_balance`] instead of the
    /// receivable (nothing is owed on it).
    pub fn post_documents(id: &str, invoices: &[(&str, &Invoice, bool)], chart: &ChartOfAccounts) -> Result<Journal> {
        if id.trim().is_empty() {
            return Err(BillingError::invalid("journal id", "is empty"));
        }
        if chart.receivable.trim().is_empty() {
            return Err(BillingError::invalid("chart.receivable", "is empty"));
        }
        let mut sorted: Vec<&(&str, &Invoice, bool)> = invoices.iter().collect();
        sorted.sort_by_key(|(reference, _, _)| *reference);
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(BillingError::invalid("invoices", format!("reference {:?} is used twice", pair[0].0)));
        }
        let mut entries = Vec::new();
        for (reference, invoice, statement) in sorted {
            let (debited, what) = if *statement {
                let code = chart.prepaid_balance.as_deref().ok_or_else(|| BillingError::NoAccountCode {
                    what: "prepaid balance",
                    key: (*reference).to_owned(),
                })?;
                (code, "prepaid balance")
            } else {
                (chart.receivable.as_str(), "receivable")
            };
            // Per currency: the receivable, then revenue and tax by account code.
            let mut revenue: BTreeMap<(&str, &str), (Decimal, Vec<&str>)> = BTreeMap::new();
            let mut tax: BTreeMap<(&str, &str), (Decimal, Vec<&str>)> = BTreeMap::new();
            if reference.trim().is_empty() {
                return Err(BillingError::invalid("invoices", "a reference is empty"));
            }
            // Allowance lines carry no money and post nothing.
            let lines = invoice.sections.iter().flat_map(|section| &section.lines);
            for line in lines.filter(|line| line.kind != LineKind::Allowance) {
                let code = chart.revenue_code(&line.charge_type)?;
                let entry = revenue.entry((&line.currency, code)).or_default();
                entry.0 += line.net;
                if !entry.1.contains(&line.charge_type.as_str()) {
                    entry.1.push(&line.charge_type);
                }
                if let Some(tax_code) = &line.tax_code {
                    let entry = tax.entry((&line.currency, chart.tax_code(tax_code)?)).or_default();
                    entry.0 += line.tax;
                    if !entry.1.contains(&tax_code.as_str()) {
                        entry.1.push(tax_code);
                    }
                }
            }
            for totals in &invoice.totals {
                let mut balance = Decimal::ZERO;
                let mut post = |code: &str, amount: Decimal, debit_when_positive: bool, description: String| {
                    if amount.is_zero() {
                        return;
                    }
                    let (debit, credit) = sides(amount, debit_when_positive);
                    balance += debit - credit;
                    entries.push(JournalEntry {
                        invoice: (*reference).to_owned(),
                        currency: totals.currency.clone(),
                        account_code: code.to_owned(),
                        debit,
                        credit,
                        description,
                    });
                };
                post(debited, totals.gross, true, format!("{what} {}", invoice.account_id));
                for ((currency, code), (amount, types)) in &revenue {
                    if *currency == totals.currency {
                        post(code, *amount, false, format!("revenue {}", types.join(" ")));
                    }
                }
                for ((currency, code), (amount, codes)) in &tax {
                    if *currency == totals.currency {
                        post(code, *amount, false, format!("tax {}", codes.join(" ")));
                    }
                }
                if !balance.is_zero() {
                    return Err(BillingError::invalid(
                        format!("invoices[{reference}]"),
                        format!("{} postings are off by {balance}", totals.currency),
                    ));
                }
            }
        }
        Ok(Journal { id: id.to_owned(), entries })
    }

    /// Debits and credits per currency.
    pub fn totals(&self) -> BTreeMap<String, (Decimal, Decimal)> {
        let mut totals: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
        for entry in &self.entries {
            let sums = totals.entry(entry.currency.clone()).or_default();
            sums.0 += entry.debit;
            sums.1 += entry.credit;
        }
        totals
    }

    /// The journal as CSV: a header, then one row per entry
    /// (`journal_id,invoice,currency,account_code,debit,credit,description`).
    pub fn to_csv(&self) -> Result<Vec<u8>> {
        let failed = |error: csv::Error| BillingError::Output { what: "journal CSV", reason: error.to_string() };
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer
            .write_record(["journal_id", "invoice", "currency", "account_code", "debit", "credit", "description"])
            .map_err(failed)?;
        for entry in &self.entries {
            writer
                .write_record([
                    self.id.as_str(),
                    &entry.invoice,
                    &entry.currency,
                    &entry.account_code,
                    &entry.debit.to_string(),
                    &entry.credit.to_string(),
                    &entry.description,
                ])
                .map_err(failed)?;
        }
        writer.into_inner().map_err(|error| BillingError::Output { what: "journal CSV", reason: error.to_string() })
    }
}
