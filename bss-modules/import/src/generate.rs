//! Synthetic legacy files for the import benchmark and tests: `rows` customers (every
//! fiftieth an organisation with the next four rows as its hierarchy's children, half of
//! them prepaid, contact media on every row) and one subscription each (every hundredth
//! suspended), with the mappings that read them. Everything is a function of the row
//! number, so the same `rows` always gives the same bytes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{ImportError, Result};

/// The tariff plan generated subscriptions are on (one of the example plans built into
/// the binary).
pub const GENERATED_PLAN: &str = "mobile-prepaid-s";

/// The mapping of a generated customers file.
pub const CUSTOMERS_MAPPING: &str = r#"# The columns of `tollgate import generate`'s customers.csv.
delimiter = ","
header = true

[fields]
external_id = { column = "customer_no" }
party_type = { column = "party" }
name = { column = "name" }
email = { column = "email" }
phone = { column = "phone" }
street1 = { column = "street" }
city = { column = "city" }
post_code = { column = "post_code" }
country = { column = "country" }
currency = { value = "EUR" }
account_type = { column = "pay_type" }
bill_cycle_day = { column = "cycle_day" }
payment_terms_days = { value = "30" }
credit_limit = { column = "credit_limit" }
parent = { column = "parent_no" }

[translate.party_type]
P = "individual"
O = "organization"

[translate.account_type]
PRE = "prepaid"
POST = "postpaid"
"#;

/// The mapping of a generated subscriptions file.
pub const SUBSCRIPTIONS_MAPPING: &str = r#"# The columns of `tollgate import generate`'s subscriptions.csv.
delimiter = ","
header = true

[fields]
external_id = { column = "line_no" }
billing_account = { column = "customer_no" }
plan = { column = "tariff" }
msisdn = { column = "msisdn" }
imsi = { column = "imsi" }
status = { column = "state" }

[translate.plan]
PRE_S = "mobile-prepaid-s"

[translate.status]
A = "active"
S = "suspended"
"#;

/// The files [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub customers: PathBuf,
    pub customers_mapping: PathBuf,
    pub subscriptions: PathBuf,
    pub subscriptions_mapping: PathBuf,
}

/// Writes `customers.csv`, `subscriptions.csv` and their mappings into `dir`.
pub fn generate(dir: &Path, rows: u64) -> Result<Generated> {
    std::fs::create_dir_all(dir).map_err(ImportError::io(dir))?;
    let generated = Generated {
        customers: dir.join("customers.csv"),
        customers_mapping: dir.join("customers.toml"),
        subscriptions: dir.join("subscriptions.csv"),
        subscriptions_mapping: dir.join("subscriptions.toml"),
    };
    write(&generated.customers_mapping, |out| out.write_all(CUSTOMERS_MAPPING.as_bytes()))?;
    write(&generated.subscriptions_mapping, |out| out.write_all(SUBSCRIPTIONS_MAPPING.as_bytes()))?;
    write(&generated.customers, |out| {
        writeln!(out, "customer_no,party,name,email,phone,street,city,post_code,country,pay_type,cycle_day,credit_limit,parent_no")?;
        for n in 1..=rows {
            let root = n - n % 50;
            let (party, parent) = match n % 50 {
                0 => ("O", String::new()),
                1..=4 if root > 0 => ("P", format!("C{root:09}")),
                _ => ("P", String::new()),
            };
            let (pay, credit) = if n.is_multiple_of(2) || party == "O" { ("POST", "250.00") } else { ("PRE", "0") };
            writeln!(
                out,
                "C{n:09},{party},Customer {n},customer{n}@example.com,+4930{n:09},Street {n},Berlin,{},DE,{pay},{},{credit},{parent}",
                10_000 + n % 90_000,
                1 + n % 28
            )?;
        }
        Ok(())
    })?;
    write(&generated.subscriptions, |out| {
        writeln!(out, "line_no,customer_no,tariff,msisdn,imsi,state")?;
        for n in 1..=rows {
            let state = if n.is_multiple_of(100) { "S" } else { "A" };
            writeln!(out, "S{n:09},C{n:09},PRE_S,+4915{n:010},26201{n:010},{state}")?;
        }
        Ok(())
    })?;
    Ok(generated)
}

fn write(path: &Path, body: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) -> Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(ImportError::io(path))?);
    body(&mut out).and_then(|()| out.flush()).map_err(ImportError::io(path))
}
