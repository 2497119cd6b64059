//! The column mapping an operator writes for a legacy system's file (TOML), in the shape of
//! mediation's usage-file mappings:
//!
//! ```toml
//! delimiter = ","            # one byte; "\t" for tabs
//! header = true              # the first line names the columns
//!
//! [fields]                   # each: { column = "name" }, { position = 3 } (1-based) or { value = "text" }
//! external_id = { column = "CUST_NO" }
//! party_type = { value = "individual" }
//! name = { column = "FULL_NAME" }
//! currency = { column = "CCY" }
//! account_type = { column = "PAY_TYPE" }
//!
//! [translate.account_type]   # optional, per field: the legacy value → the value Tollgate takes
//! PRE = "prepaid"
//! POST = "postpaid"
//! ```
//!
//! Which fields exist, and which are required, depends on the file's kind
//! ([`CUSTOMER_FIELDS`], [`SUBSCRIPTION_FIELDS`]). A field given `{ value = … }` is that text
//! on every row. A `[translate.FIELD]` table replaces each value of the field by its
//! translation; a value missing from the table rejects the row naming the field. A bad
//! mapping is refused naming the line and the field.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use tollgate_store::ImportKind;

use crate::error::{ImportError, Result};

/// The fields of a customers file, in the order [`Mapping::resolve`] returns them: one row
/// is a customer and its billing account, both with the row's external id.
pub const CUSTOMER_FIELDS: [&str; 18] = [
    "external_id",
    "party_type",
    "name",
    "account_name",
    "status",
    "email",
    "phone",
    "street1",
    "city",
    "post_code",
    "country",
    "currency",
    "account_type",
    "bill_cycle_day",
    "payment_terms_days",
    "credit_limit",
    "tax_profile_id",
    "parent",
];

/// The fields a customers mapping must give.
pub const CUSTOMER_REQUIRED: [&str; 4] = ["external_id", "party_type", "name", "currency"];

/// The fields of a subscriptions file, in the order [`Mapping::resolve`] returns them.
pub const SUBSCRIPTION_FIELDS: [&str; 7] =
    ["external_id", "billing_account", "plan", "offering", "msisdn", "imsi", "status"];

/// The fields a subscriptions mapping must give.
pub const SUBSCRIPTION_REQUIRED: [&str; 4] = ["external_id", "billing_account", "plan", "msisdn"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default = "comma")]
    delimiter: String,
    #[serde(default = "yes")]
    header: bool,
    fields: BTreeMap<String, Source>,
    #[serde(default)]
    translate: BTreeMap<String, BTreeMap<String, String>>,
}

fn comma() -> String {
    ",".to_owned()
}

fn yes() -> bool {
    true
}

/// Where a field's value comes from: `{ column = "NAME" }`, `{ position = N }` or
/// `{ value = "TEXT" }`, one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Column { column: String },
    Position { position: usize },
    Value { value: String },
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Source, D::Error> {
        /// The table as written; an unknown key or another type is refused naming it.
        #[derive(Deserialize)]
        #[serde(
            deny_unknown_fields,
            expecting = "a table: { column = \"NAME\" }, { position = N } or { value = \"TEXT\" }"
        )]
        struct Written {
            column: Option<String>,
            position: Option<usize>,
            value: Option<String>,
        }
        match Written::deserialize(deserializer)? {
            Written { column: Some(column), position: None, value: None } => Ok(Source::Column { column }),
            Written { column: None, position: Some(position), value: None } => Ok(Source::Position { position }),
            Written { column: None, position: None, value: Some(value) } => Ok(Source::Value { value }),
            _ => Err(serde::de::Error::custom("give one of `column`, `position` or `value`")),
        }
    }
}

/// A field resolved against the header: a column index or a constant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Column(usize),
    Value(String),
}

/// A checked mapping for one kind of file, not yet resolved against a header.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub kind: ImportKind,
    pub delimiter: u8,
    pub header: bool,
    /// SHA-256 of the mapping's text: an import run is one file through one mapping.
    pub sha256: String,
    sources: Vec<Option<Source>>,
    translate: Vec<Option<HashMap<String, String>>>,
}

/// The fields of a kind of file and the ones it requires.
pub fn fields_of(kind: ImportKind) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        ImportKind::Customers => (&CUSTOMER_FIELDS, &CUSTOMER_REQUIRED),
        ImportKind::Subscriptions => (&SUBSCRIPTION_FIELDS, &SUBSCRIPTION_REQUIRED),
    }
}

impl Mapping {
    /// Reads a mapping file for `kind`.
    pub fn load(path: &Path, kind: ImportKind) -> Result<Mapping> {
        let text = std::fs::read_to_string(path).map_err(ImportError::io(path))?;
        Mapping::parse(&text, kind).map_err(|message| ImportError::Mapping { path: path.to_owned(), message })
    }

    /// Parses a mapping for `kind`; the error names the line and the field.
    pub fn parse(text: &str, kind: ImportKind) -> Result<Mapping, String> {
        let line_of = |at: usize| text[..at.min(text.len())].lines().count().max(1);
        // The line a key is written on, for problems found after parsing.
        let line_of_key = |key: &str| {
            text.lines()
                .position(|line| line.trim_start().starts_with(key))
                .map_or_else(String::new, |index| format!("line {}: ", index + 1))
        };
        let file: MappingFile = toml::from_str(text).map_err(|err| {
            let line = err.span().map_or(0, |span| line_of(span.start));
            format!("line {line}: {}", err.message())
        })?;
        let delimiter = match file.delimiter.as_str() {
            "\\t" | "\t" => b'\t',
            one if one.len() == 1 && one != "\"" && one != "\n" => one.as_bytes()[0],
            other => return Err(format!("{}field `delimiter`: one byte, not {other:?}", line_of_key("delimiter"))),
        };
        let (names, required) = fields_of(kind);
        for (name, source) in &file.fields {
            if !names.contains(&name.as_str()) {
                return Err(format!(
                    "{}field `fields.{name}`: not a field of a {} file (its fields: {})",
                    line_of_key(name),
                    kind.as_str(),
                    names.join(", ")
                ));
            }
            if let Source::Position { position: 0 } = source {
                return Err(format!("{}field `fields.{name}`: positions start at 1", line_of_key(name)));
            }
        }
        if let Some(missing) = required.iter().find(|name| !file.fields.contains_key(**name)) {
            return Err(format!("field `fields.{missing}`: required in a {} mapping", kind.as_str()));
        }
        for name in file.translate.keys() {
            if !file.fields.contains_key(name) {
                return Err(format!(
                    "{}field `translate.{name}`: translates a field the mapping does not give",
                    line_of_key(&format!("[translate.{name}]"))
                ));
            }
        }
        let sources = names.iter().map(|name| file.fields.get(*name).cloned()).collect();
        let translate = names
            .iter()
            .map(|name| file.translate.get(*name).map(|table| table.clone().into_iter().collect()))
            .collect();
        Ok(Mapping {
            kind,
            delimiter,
            header: file.header,
            sha256: crate::sha256_hex(text.as_bytes()),
            sources,
            translate,
        })
    }

    /// Resolves column names against the header (`None` when the file has none); the
    /// error names the field whose column is missing.
    pub fn resolve(&self, header: Option<&csv::ByteRecord>) -> Result<Columns, String> {
        let (names, _) = fields_of(self.kind);
        let fields = self
            .sources
            .iter()
            .zip(names)
            .map(|(source, name)| match source {
                None => Ok(None),
                Some(Source::Value { value }) => Ok(Some(Field::Value(value.clone()))),
                Some(Source::Position { position }) => Ok(Some(Field::Column(position - 1))),
                Some(Source::Column { column }) => {
                    let header = header.ok_or_else(|| {
                        format!("field `fields.{name}`: names column {column:?} but the mapping says the file has no header")
                    })?;
                    header
                        .iter()
                        .position(|h| h == column.as_bytes())
                        .map(|i| Some(Field::Column(i)))
                        .ok_or_else(|| format!("field `fields.{name}`: no column {column:?} in the header"))
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Columns { names, fields, translate: self.translate.clone(), width: header.map(csv::ByteRecord::len) })
    }
}

/// A row refused: the field (a mapping field name, or `row`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub field: String,
    pub reason: String,
}

impl Reject {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Reject {
        Reject { field: field.into(), reason: reason.into() }
    }
}

/// A mapping resolved against a file's header: reads a field of a record.
#[derive(Debug, Clone)]
pub struct Columns {
    names: &'static [&'static str],
    fields: Vec<Option<Field>>,
    translate: Vec<Option<HashMap<String, String>>>,
    /// The header's columns, when the file has one: a row has as many.
    width: Option<usize>,
}

impl Columns {
    /// Refuses a row with more cells than the header (a value shifted into a column of
    /// its own: a separator inside an unquoted cell); fewer are named by the field whose
    /// column is missing.
    pub fn check_width(&self, record: &csv::ByteRecord) -> Result<(), Reject> {
        match self.width {
            Some(width) if record.len() > width => Err(Reject::new(
                "row",
                format!("has {} cells, the header {width} (a separator inside an unquoted cell?)", record.len()),
            )),
            _ => Ok(()),
        }
    }

    /// Field `index` of `record`, trimmed and translated; `None` when the mapping does not
    /// give it or the cell is empty.
    pub fn get<'r>(&'r self, record: &'r csv::ByteRecord, index: usize) -> Result<Option<Cow<'r, str>>, Reject> {
        let name = self.names[index];
        let text = match &self.fields[index] {
            None => return Ok(None),
            Some(Field::Value(value)) => value.as_str(),
            Some(Field::Column(column)) => match record.get(*column) {
                None => {
                    return Err(Reject::new(
                        name,
                        format!("column {} missing (the row has {})", column + 1, record.len()),
                    ))
                }
                Some(bytes) => std::str::from_utf8(bytes).map_err(|_| Reject::new(name, "not UTF-8"))?.trim(),
            },
        };
        if text.is_empty() {
            return Ok(None);
        }
        match &self.translate[index] {
            None => Ok(Some(Cow::Borrowed(text))),
            Some(table) => match table.get(text) {
                Some(translated) => Ok(Some(Cow::Borrowed(translated.as_str()))),
                None => Err(Reject::new(name, format!("{text:?} is not in [translate.{name}]"))),
            },
        }
    }

    /// Field `index`, which must be there.
    pub fn required<'r>(&'r self, record: &'r csv::ByteRecord, index: usize) -> Result<Cow<'r, str>, Reject> {
        self.get(record, index)?.ok_or_else(|| Reject::new(self.names[index], "is required"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUSTOMERS: &str = "[fields]\nexternal_id = { column = \"id\" }\nparty_type = { value = \"individual\" }\nname = { position = 2 }\ncurrency = { value = \"EUR\" }\n";

    #[test]
    fn a_bad_mapping_is_refused_naming_line_and_field() {
        let cases = [
            (format!("delimiter = \";;\"\n{CUSTOMERS}"), "line 1: field `delimiter`"),
            ("[fields]\nexternal_id = { colum = \"a\" }\n".to_owned(), "line 2: unknown field `colum`"),
            ("[fields]\nexternal_id = \"id\"\n".to_owned(), "line 2: invalid type: string \"id\", expected a table"),
            ("[fields]\nexternal_id = { column = \"a\", value = \"b\" }\n".to_owned(), "line 2: give one of"),
            (
                CUSTOMERS.replace("name = { position = 2 }", "name = { position = 0 }"),
                "line 4: field `fields.name`: positions start at 1",
            ),
            (CUSTOMERS.replace("name = { position = 2 }\n", ""), "field `fields.name`: required"),
            (
                format!("{CUSTOMERS}msisdn = {{ position = 3 }}\n"),
                "line 6: field `fields.msisdn`: not a field of a customers file",
            ),
            (format!("{CUSTOMERS}[translate.email]\na = \"b\"\n"), "line 6: field `translate.email`"),
        ];
        for (text, expected) in cases {
            let err = Mapping::parse(&text, ImportKind::Customers).expect_err(&text);
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn fields_are_read_trimmed_translated_and_resolved_against_the_header() {
        let text =
            format!("{CUSTOMERS}account_type = {{ column = \"pay\" }}\n[translate.account_type]\nPRE = \"prepaid\"\n");
        let mapping = Mapping::parse(&text, ImportKind::Customers).expect("mapping");
        let header = csv::ByteRecord::from(vec!["id", "name", "pay"]);
        let columns = mapping.resolve(Some(&header)).expect("resolved");
        let record = csv::ByteRecord::from(vec![" C1 ", "Ada", "PRE"]);
        assert_eq!(columns.required(&record, 0).expect("id"), "C1");
        assert_eq!(columns.required(&record, 1).expect("party"), "individual");
        assert_eq!(columns.get(&record, 12).expect("type").as_deref(), Some("prepaid"));
        assert_eq!(columns.get(&record, 5).expect("email"), None);
        // A row of more cells than the header is refused (it was taken, its cells shifted).
        assert!(columns.check_width(&record).is_ok());
        let wider = csv::ByteRecord::from(vec!["C1", "Ada", "PRE", "extra"]);
        assert_eq!(columns.check_width(&wider).expect_err("wider").field, "row");
        let unknown = csv::ByteRecord::from(vec!["C2", "Bo", "GOLD"]);
        assert_eq!(
            columns.get(&unknown, 12),
            Err(Reject::new("account_type", "\"GOLD\" is not in [translate.account_type]"))
        );
        let short = csv::ByteRecord::from(vec!["C3"]);
        assert_eq!(columns.required(&short, 2).expect_err("short").field, "name");
        let other = csv::ByteRecord::from(vec!["ident", "name"]);
        assert!(mapping.resolve(Some(&other)).expect_err("no id column").contains("fields.external_id"));
    }
}
