//! A customers file: one row is a customer (TMF629) and its billing account (TMF666), both
//! given the row's external id. A row is checked field by field (the rules are
//! `tollgate-customers`' where it has them: money, currency, bill cycle day, payment
//! terms, hierarchy depth), then, a batch at a time, against what the store holds: an
//! external id imported before with the same content is a duplicate (skipped), with other
//! content a reject naming the first field that differs (an import is not an update); a
//! parent must be imported before its children (earlier in the file, or by an earlier
//! import), in the same currency, at most `MAX_DEPTH` levels below its root.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde_json::{json, Value};
use tollgate_customers::{
    idempotency_key, ordering_key, parse_credit_limit, AccountType, EngineOperation, CUSTOMER_BASE_PATH, MAX_DEPTH,
    MAX_NAME_CHARS,
};
use tollgate_store::{BillingAccountRow, ExternalAccount, ImportedAccount, NewOutboxItem, Tx};

use crate::batch::{check_external_id, entity_id, text, Batch, Outcome, RunContext};
use crate::error::Result;
use crate::mapping::{Columns, Reject};

/// A customers row, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerData {
    pub external_id: String,
    /// `individual` or `organization`.
    pub party_type: &'static str,
    pub name: String,
    pub account_name: String,
    pub status: String,
    /// email, phone, street1, city, post_code, country.
    pub contact: [Option<String>; 6],
    pub currency: String,
    pub account_type: AccountType,
    pub bill_cycle_day: i64,
    pub payment_terms_days: i64,
    pub credit_limit: Decimal,
    pub tax_profile_id: Option<String>,
    /// The parent billing account's external id.
    pub parent: Option<String>,
}

/// The contact fields, in [`CustomerData::contact`]'s order, with where each lives in a
/// customer document's `contactMedium`: (field, medium type, characteristic).
const CONTACT: [(&str, &str, &str); 6] = [
    ("email", "email", "emailAddress"),
    ("phone", "phone", "phoneNumber"),
    ("street1", "postalAddress", "street1"),
    ("city", "postalAddress", "city"),
    ("post_code", "postalAddress", "postCode"),
    ("country", "postalAddress", "country"),
];

fn integer(text: Option<&str>, field: &str, low: i64, high: i64, default: i64) -> Result<i64, Reject> {
    match text {
        None => Ok(default),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (low..=high).contains(n))
            .ok_or_else(|| Reject::new(field, format!("{text:?} is not a whole number from {low} to {high}"))),
    }
}

/// Checks one row of a customers file.
pub fn parse_row(columns: &Columns, record: &csv::ByteRecord) -> Result<CustomerData, Reject> {
    columns.check_width(record)?;
    let get = |index: usize| columns.get(record, index);
    let external_id = check_external_id("external_id", &columns.required(record, 0)?)?;
    let party_type = match columns.required(record, 1)?.to_ascii_lowercase().as_str() {
        "individual" => "individual",
        "organization" | "organisation" => "organization",
        other => return Err(Reject::new("party_type", format!("{other:?} is not individual or organization"))),
    };
    let name = text("name", &columns.required(record, 2)?, MAX_NAME_CHARS)?;
    let account_name = match get(3)? {
        Some(value) => text("account_name", &value, MAX_NAME_CHARS)?,
        None => name.clone(),
    };
    let status = match get(4)? {
        Some(value) => text("status", &value, MAX_NAME_CHARS)?,
        None => "Approved".to_owned(),
    };
    let mut contact: [Option<String>; 6] = Default::default();
    for (slot, (index, (field, _, _))) in contact.iter_mut().zip((5..).zip(CONTACT)) {
        if let Some(value) = get(index)? {
            *slot = Some(text(field, &value, MAX_NAME_CHARS)?);
        }
    }
    if contact[0].as_ref().is_some_and(|email| !email.contains('@')) {
        return Err(Reject::new("email", "is not an e-mail address"));
    }
    let currency = columns.required(record, 11)?.into_owned();
    if tollgate_billing::minor_units("currency", &currency).is_err() {
        return Err(Reject::new("currency", format!("{currency:?} is not an ISO 4217 code such as EUR")));
    }
    let account_type = match get(12)? {
        None => AccountType::Postpaid,
        Some(value) => AccountType::parse(&value.to_ascii_lowercase())
            .ok_or_else(|| Reject::new("account_type", format!("{value:?} is not prepaid, postpaid or hybrid")))?,
    };
    let bill_cycle_day = integer(get(13)?.as_deref(), "bill_cycle_day", 1, 28, 1)?;
    let payment_terms_days = integer(get(14)?.as_deref(), "payment_terms_days", 0, 365, 30)?;
    let credit_limit = match get(15)? {
        None => Decimal::ZERO,
        Some(value) => {
            let money = json!({"unit": currency, "value": value.as_ref()});
            parse_credit_limit(&money)
                .map_err(|error| Reject::new("credit_limit", without_field(&error.to_string())))?
                .0
        }
    };
    if account_type == AccountType::Prepaid && !credit_limit.is_zero() {
        return Err(Reject::new("credit_limit", "a prepaid account's credit limit is 0"));
    }
    let tax_profile_id = get(16)?.map(|value| text("tax_profile_id", &value, 64)).transpose()?;
    let parent = get(17)?.map(|value| check_external_id("parent", &value)).transpose()?;
    if parent.as_ref() == Some(&external_id) {
        return Err(Reject::new("parent", "is the row itself"));
    }
    Ok(CustomerData {
        external_id,
        party_type,
        name,
        account_name,
        status,
        contact,
        currency,
        account_type,
        bill_cycle_day,
        payment_terms_days,
        credit_limit,
        tax_profile_id,
        parent,
    })
}

/// `invalid creditLimit.value: at most …` → `at most …`.
fn without_field(message: &str) -> String {
    message.split_once(": ").map_or(message, |(_, reason)| reason).to_owned()
}

impl CustomerData {
    /// The first field in which `self` and `other` differ, if any.
    pub fn first_difference(&self, other: &CustomerData) -> Option<&'static str> {
        let contact = CONTACT.iter().zip(self.contact.iter().zip(&other.contact));
        if let Some(((field, _, _), _)) = contact.clone().find(|(_, (a, b))| a != b) {
            return Some(field);
        }
        [
            ("party_type", self.party_type != other.party_type),
            ("name", self.name != other.name),
            ("account_name", self.account_name != other.account_name),
            ("status", self.status != other.status),
            ("currency", self.currency != other.currency),
            ("account_type", self.account_type != other.account_type),
            ("bill_cycle_day", self.bill_cycle_day != other.bill_cycle_day),
            ("payment_terms_days", self.payment_terms_days != other.payment_terms_days),
            ("credit_limit", self.credit_limit != other.credit_limit),
            ("tax_profile_id", self.tax_profile_id != other.tax_profile_id),
            ("parent", self.parent != other.parent),
        ]
        .into_iter()
        .find_map(|(field, differs)| differs.then_some(field))
    }

    /// What a stored customer and account say, in a row's terms (`None` when the customer
    /// has no billing account of its external id, or an account type this build does not
    /// know).
    fn from_stored(stored: &ExternalAccount) -> Option<CustomerData> {
        let account = stored.account.as_ref()?;
        let mut contact: [Option<String>; 6] = Default::default();
        let media = stored.customer.doc.get("contactMedium").and_then(Value::as_array);
        for (slot, (_, medium_type, characteristic)) in contact.iter_mut().zip(CONTACT) {
            *slot = media
                .and_then(|media| media.iter().find(|medium| medium["mediumType"] == medium_type))
                .and_then(|medium| medium["characteristic"][characteristic].as_str())
                .map(str::to_owned);
        }
        Some(CustomerData {
            external_id: stored.external_id.clone(),
            party_type: if stored.customer.party_type == "individual" { "individual" } else { "organization" },
            name: stored.customer.name.clone(),
            account_name: account.name.clone(),
            status: stored.customer.status.clone(),
            contact,
            currency: account.currency.clone(),
            account_type: AccountType::parse(&account.account_type)?,
            bill_cycle_day: account.bill_cycle_day,
            payment_terms_days: account.payment_terms_days,
            credit_limit: account.credit_limit,
            tax_profile_id: account.tax_profile_id.clone(),
            parent: stored.parent_external_id.clone(),
        })
    }

    /// The customer's document as the API shows it (TMF629), with its contact media, as
    /// JSON text: written directly (a million of them are built in an import), each text
    /// escaped by serde_json.
    pub fn customer_doc_json(&self, id: &str) -> String {
        use std::fmt::Write as _;
        let quoted = |text: &str| serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned());
        let referred = if self.party_type == "individual" { "Individual" } else { "Organization" };
        let mut out = String::with_capacity(512);
        let _ = write!(
            out,
            "{{\"@type\":\"Customer\",\"consent\":[],\"engagedParty\":{{\"@referredType\":\"{referred}\",\"id\":{}}},\"href\":\"{CUSTOMER_BASE_PATH}/customer/{id}\",\"id\":\"{id}\",\"name\":{},\"status\":{}",
            quoted(&self.external_id),
            quoted(&self.name),
            quoted(&self.status),
        );
        let mut media: Vec<(&str, Vec<(&str, &str)>)> = Vec::new();
        for (value, (_, medium_type, characteristic)) in self.contact.iter().zip(CONTACT) {
            let Some(value) = value else { continue };
            match media.iter_mut().find(|(kind, _)| *kind == medium_type) {
                Some((_, fields)) => fields.push((characteristic, value)),
                None => media.push((medium_type, vec![(characteristic, value)])),
            }
        }
        if !media.is_empty() {
            out.push_str(",\"contactMedium\":[");
            for (index, (medium_type, fields)) in media.iter().enumerate() {
                let separator = if index == 0 { "" } else { "," };
                let _ = write!(out, "{separator}{{\"characteristic\":{{\"contactType\":\"{medium_type}\"");
                for (name, value) in fields {
                    let _ = write!(out, ",\"{name}\":{}", quoted(value));
                }
                let _ = write!(out, "}},\"mediumType\":\"{medium_type}\"}}");
            }
            out.push(']');
        }
        out.push('}');
        out
    }
}

/// Where an account of the batch or the store sits: what a child needs of its parent.
#[derive(Debug, Clone)]
struct Placed {
    id: String,
    root_id: String,
    depth: i64,
    currency: String,
}

impl Batch for CustomerData {
    fn external_id(&self) -> &str {
        &self.external_id
    }

    fn differs_from(&self, other: &Self) -> Option<&'static str> {
        self.first_difference(other)
    }

    async fn apply(tx: &mut Tx, rows: Vec<(i64, CustomerData)>, context: &mut RunContext) -> Result<Outcome> {
        let mut wanted: Vec<&str> = rows.iter().map(|(_, row)| row.external_id.as_str()).collect();
        wanted.extend(rows.iter().filter_map(|(_, row)| row.parent.as_deref()));
        wanted.sort_unstable();
        wanted.dedup();
        let stored: HashMap<String, ExternalAccount> = tx
            .accounts_by_external_id(&wanted)
            .await?
            .into_iter()
            .map(|found| (found.external_id.clone(), found))
            .collect();
        let mut outcome = Outcome::default();
        let mut placed: HashMap<String, Placed> = HashMap::new();
        let mut seen: HashMap<String, (i64, CustomerData)> = HashMap::new();
        let mut new = Vec::new();
        for (number, row) in rows {
            if let Some(found) = stored.get(&row.external_id) {
                match CustomerData::from_stored(found) {
                    None => outcome.reject(
                        number,
                        "external_id",
                        "a customer with this external id exists without a billing account of the same external id",
                    ),
                    Some(before) => outcome.same_or_reject(number, &row, &before, "an earlier import"),
                }
                continue;
            }
            if let Some((first, before)) = seen.get(&row.external_id) {
                let earlier = format!("row {first}");
                outcome.same_or_reject(number, &row, before, &earlier);
                continue;
            }
            let (customer_id, account_id) = (entity_id(context, 1, number), entity_id(context, 2, number));
            let (root_id, depth) = match &row.parent {
                None => (account_id.clone(), 0),
                Some(parent) => {
                    let known = placed.get(parent).cloned().or_else(|| {
                        let account = stored.get(parent)?.account.as_ref()?;
                        Some(Placed {
                            id: account.id.clone(),
                            root_id: account.root_id.clone(),
                            depth: account.depth,
                            currency: account.currency.clone(),
                        })
                    });
                    let Some(parent_at) = known else {
                        outcome.reject(
                            number,
                            "parent",
                            &format!(
                                "no billing account with external id {parent:?} (a parent comes before its children)"
                            ),
                        );
                        continue;
                    };
                    if parent_at.currency != row.currency {
                        let reason =
                            format!("the parent's currency is {}, this row's {}", parent_at.currency, row.currency);
                        outcome.reject(number, "currency", &reason);
                        continue;
                    }
                    if parent_at.depth + 1 > MAX_DEPTH {
                        let reason = format!("a hierarchy is at most {} levels deep", MAX_DEPTH + 1);
                        outcome.reject(number, "parent", &reason);
                        continue;
                    }
                    (parent_at.root_id.clone(), parent_at.depth + 1)
                }
            };
            let parent_id = row.parent.as_ref().and_then(|parent| {
                placed
                    .get(parent)
                    .map(|p| p.id.clone())
                    .or_else(|| stored.get(parent)?.account.as_ref().map(|a| a.id.clone()))
            });
            placed.insert(
                row.external_id.clone(),
                Placed { id: account_id.clone(), root_id: root_id.clone(), depth, currency: row.currency.clone() },
            );
            new.push(ImportedAccount {
                external_id: row.external_id.clone(),
                customer_doc_json: row.customer_doc_json(&customer_id),
                customer_id: customer_id.clone(),
                party_type: row.party_type.to_owned(),
                name: row.name.clone(),
                status: row.status.clone(),
                account: BillingAccountRow {
                    id: account_id,
                    engine_account_id: 0,
                    customer_id,
                    parent_id,
                    root_id,
                    depth,
                    name: row.account_name.clone(),
                    account_type: row.account_type.as_str().to_owned(),
                    state: "Active".to_owned(),
                    currency: row.currency.clone(),
                    bill_cycle_day: row.bill_cycle_day,
                    payment_terms_days: row.payment_terms_days,
                    tax_profile_id: row.tax_profile_id.clone(),
                    credit_limit: row.credit_limit,
                },
            });
            outcome.created.push(number);
            seen.insert(row.external_id.clone(), (number, row));
        }
        let engine_ids = tx.insert_imported_accounts(&new, context.now).await?;
        let mut keys = Vec::with_capacity(new.len());
        let mut payloads = Vec::with_capacity(new.len());
        for (imported, engine_id) in new.iter().zip(&engine_ids) {
            let account = &imported.account;
            let operation = EngineOperation::CreateAccount {
                account: *engine_id,
                account_type: AccountType::parse(&account.account_type).unwrap_or(AccountType::Postpaid),
                currency: account.currency.clone(),
                credit_limit: account.credit_limit,
            };
            keys.push((idempotency_key(&account.id, 1, "create"), ordering_key(&account.id), operation.kind()));
            payloads.push(operation.payload());
            context.digest_line(&[
                &imported.customer_id,
                &account.id,
                &imported.external_id,
                &engine_id.to_string(),
                &imported.party_type,
                &account.currency,
                &account.account_type,
                &account.credit_limit.to_string(),
                &account.bill_cycle_day.to_string(),
                &account.payment_terms_days.to_string(),
                account.parent_id.as_deref().unwrap_or("-"),
            ]);
        }
        let items: Vec<NewOutboxItem<'_>> = keys
            .iter()
            .zip(&payloads)
            .map(|((key, ordering, kind), payload)| NewOutboxItem {
                idempotency_key: key,
                kind,
                ordering_key: Some(ordering),
                payload,
            })
            .collect();
        tx.enqueue_many(&items, context.now).await?;
        outcome.entities = vec![("Customer", new.len()), ("BillingAccount", new.len())];
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Mapping;
    use tollgate_store::{CustomerRow, ImportKind};

    const MAPPING: &str = "[fields]\nexternal_id = { position = 1 }\nparty_type = { position = 2 }\nname = { position = 3 }\nemail = { position = 4 }\nphone = { position = 5 }\nstreet1 = { position = 6 }\ncity = { position = 7 }\npost_code = { position = 8 }\ncountry = { position = 9 }\ncurrency = { position = 10 }\n";

    fn row(cells: &[&str]) -> Result<CustomerData, Reject> {
        let mapping = Mapping::parse(&format!("header = false\n{MAPPING}"), ImportKind::Customers).expect("mapping");
        let columns = mapping.resolve(None).expect("columns");
        parse_row(&columns, &csv::ByteRecord::from(cells.to_vec()))
    }

    #[test]
    fn the_document_a_row_makes_is_one_the_api_accepts_and_reads_back() {
        let data =
            row(&["X1", "Organisation", "Acme", "a@b.example", "+49301", "Main St 1", "Berlin", "10115", "DE", "EUR"])
                .expect("valid");
        let mut doc: Value = serde_json::from_str(&data.customer_doc_json("c1")).expect("JSON");
        let valid =
            tollgate_customers::validate_customer(&mut doc, None, jiff::Timestamp::UNIX_EPOCH).expect("valid doc");
        assert_eq!((valid.party_type.as_str(), valid.name.as_str()), ("organization", "Acme"));
        let media = doc["contactMedium"].as_array().expect("media");
        assert_eq!(media.len(), 3, "email, phone, and one postal address: {doc}");
        assert_eq!(media[2]["characteristic"]["postCode"], "10115");
        let stored = ExternalAccount {
            external_id: "X1".into(),
            customer: CustomerRow {
                id: "c1".into(),
                party_type: "organization".into(),
                name: "Acme".into(),
                status: "Approved".into(),
                doc,
                anonymised_at: None,
            },
            account: Some(BillingAccountRow {
                id: "a1".into(),
                engine_account_id: 1,
                customer_id: "c1".into(),
                parent_id: None,
                root_id: "a1".into(),
                depth: 0,
                name: "Acme".into(),
                account_type: "postpaid".into(),
                state: "Active".into(),
                currency: "EUR".into(),
                bill_cycle_day: 1,
                payment_terms_days: 30,
                tax_profile_id: None,
                credit_limit: Decimal::ZERO,
            }),
            parent_external_id: None,
        };
        let back = CustomerData::from_stored(&stored).expect("read back");
        assert_eq!(data.first_difference(&back), None, "a stored row reads back as the row: {back:?}");
        let moved =
            row(&["X1", "organization", "Acme", "a@b.example", "+49301", "Main St 1", "Potsdam", "10115", "DE", "EUR"])
                .expect("valid");
        assert_eq!(moved.first_difference(&back), Some("city"));
    }

    #[test]
    fn bad_fields_are_named() {
        let good = ["X1", "individual", "Ada", "", "", "", "", "", "", "EUR"];
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        let cases: [(usize, &str, &str); 8] = [
            (0, "", "external_id"),
            (1, "robot", "party_type"),
            (2, &long, "name"),
            (2, "A\u{0}B", "name"),
            (2, "two\nlines", "name"),
            (3, "nobody", "email"),
            (9, "eur", "currency"),
            (9, "XXX", "currency"),
        ];
        for (index, value, field) in cases {
            let mut cells = good;
            cells[index] = value;
            assert_eq!(row(&cells).expect_err(value).field, field, "{value:?}");
        }
        assert!(row(&good).is_ok());
    }
}
