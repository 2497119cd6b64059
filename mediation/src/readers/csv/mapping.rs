//! The column mapping an operator writes for a delimited file (TOML):
//!
//! ```toml
//! delimiter = ","            # one byte; "\t" for tabs
//! header = true              # the first line names the columns
//! time_format = "%Y-%m-%d %H:%M:%S"   # strftime, or "unix", or "rfc3339"
//! time_zone = "Europe/Berlin"         # for times without an offset (default UTC)
//! units_divisor = 1000       # units in the file / units_divisor, rounded up (ms → s)
//! source = "msc-berlin"      # the source the record ids belong to (default: the
//!                            # mapping file's name without extension)
//!
//! [fields]                   # each: { column = "name" }, { position = 3 } (1-based) or { value = "text" }
//! record_id = { column = "call_id" }
//! subscriber = { column = "a_number" }
//! subscriber_kind = { value = "msisdn" }   # msisdn | imsi | sip | nai (default msisdn)
//! service = { value = "voice" }            # a service name of the plan
//! rating_group = { column = "rg" }         # optional
//! destination = { column = "b_number" }    # optional
//! start = { column = "start_time" }
//! units = { column = "duration_ms" }
//! ```
//!
//! A record is identified by its source, its `record_id` and its subscriber
//! (`csv:SOURCE:RECORD_ID:SUBSCRIBER`): the same id in another source, or for another
//! subscriber, is another record. Files rated through one mapping share its source, so
//! a file delivered again under another name is recognized; give each switch or feed
//! its own `source` when their ids may overlap.

use std::path::Path;

use serde::Deserialize;

use crate::MediationError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default = "comma")]
    delimiter: String,
    #[serde(default = "yes")]
    header: bool,
    #[serde(default = "rfc3339")]
    time_format: String,
    time_zone: Option<String>,
    units_divisor: Option<u64>,
    source: Option<toml::Spanned<toml::Value>>,
    fields: FieldsFile,
}

fn comma() -> String {
    ",".to_owned()
}
fn yes() -> bool {
    true
}
fn rfc3339() -> String {
    "rfc3339".to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldsFile {
    record_id: Source,
    subscriber: Source,
    subscriber_kind: Option<Source>,
    service: Source,
    rating_group: Option<Source>,
    destination: Option<Source>,
    start: Source,
    units: Source,
}

/// Where a field's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Source {
    Column { column: String },
    Position { position: usize },
    Value { value: String },
}

/// A field resolved against the header: a column index or a constant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Column(usize),
    Value(String),
}

/// How record times are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    UnixSeconds,
    Rfc3339,
    /// `YYYY-MM-DD HH:MM:SS` (or with `T`), read without a general parser.
    IsoLocal,
    Strftime(String),
}

/// A checked mapping, not yet resolved against a header.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub delimiter: u8,
    pub header: bool,
    pub time_format: TimeFormat,
    pub time_zone: jiff::tz::TimeZone,
    pub units_divisor: u64,
    /// The source record ids belong to: a record is identified by source, record id and
    /// subscriber.
    pub source: String,
    sources: Vec<(&'static str, Option<Source>)>,
}

/// The source of a mapping given as text, not read from a file (as if its file were
/// `mapping.toml`).
pub const DEFAULT_SOURCE: &str = "mapping";

/// The fields in the order [`Mapping::resolve`] returns them.
pub const FIELDS: [&str; 8] =
    ["record_id", "subscriber", "subscriber_kind", "service", "rating_group", "destination", "start", "units"];

impl Mapping {
    /// Reads a mapping file; its `source` defaults to the file's name without extension.
    pub fn load(path: &Path) -> Result<Mapping, MediationError> {
        let text = std::fs::read_to_string(path).map_err(MediationError::io(path))?;
        let stem = path.file_stem().map(|stem| stem.to_string_lossy()).filter(|stem| !stem.is_empty());
        Mapping::parse_with_source(&text, stem.as_deref().unwrap_or(DEFAULT_SOURCE))
            .map_err(|message| MediationError::Mapping { path: path.to_owned(), message })
    }

    /// Parses a mapping; the error names the line and the field. Its `source` defaults to
    /// [`DEFAULT_SOURCE`].
    pub fn parse(text: &str) -> Result<Mapping, String> {
        Mapping::parse_with_source(text, DEFAULT_SOURCE)
    }

    /// Parses a mapping whose `source`, when it names none, is `default_source`.
    pub fn parse_with_source(text: &str, default_source: &str) -> Result<Mapping, String> {
        let line_of = |at: usize| text[..at.min(text.len())].lines().count().max(1);
        let file: MappingFile = toml::from_str(text).map_err(|err| {
            let line = err.span().map_or(0, |span| line_of(span.start));
            format!("line {line}: {}", err.message())
        })?;
        let source = match &file.source {
            None => default_source.to_owned(),
            Some(spanned) => match spanned.get_ref() {
                toml::Value::String(name) if !name.trim().is_empty() => name.clone(),
                other => {
                    let shown = match other {
                        toml::Value::String(_) => "an empty string".to_owned(),
                        other => {
                            let kind = other.type_str();
                            let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
                            format!("{article} {kind}")
                        }
                    };
                    return Err(format!(
                        "line {}: field `source`: a non-empty string naming where the record ids come from, not {shown}",
                        line_of(spanned.span().start)
                    ));
                }
            },
        };
        let delimiter = match file.delimiter.as_str() {
            "\\t" | "\t" => b'\t',
            one if one.len() == 1 => one.as_bytes()[0],
            other => return Err(format!("field `delimiter`: one byte, not {other:?}")),
        };
        let time_format = match file.time_format.as_str() {
            "unix" => TimeFormat::UnixSeconds,
            "rfc3339" => TimeFormat::Rfc3339,
            "%Y-%m-%d %H:%M:%S" | "%Y-%m-%dT%H:%M:%S" => TimeFormat::IsoLocal,
            pattern if pattern.contains('%') => TimeFormat::Strftime(pattern.to_owned()),
            other => return Err(format!("field `time_format`: unix, rfc3339 or a strftime pattern, not {other:?}")),
        };
        let time_zone = match &file.time_zone {
            None => jiff::tz::TimeZone::UTC,
            Some(name) => {
                jiff::tz::TimeZone::get(name).map_err(|_| format!("field `time_zone`: unknown time zone {name:?}"))?
            }
        };
        let units_divisor = file.units_divisor.unwrap_or(1);
        if units_divisor == 0 {
            return Err("field `units_divisor`: must be at least 1".to_owned());
        }
        let f = file.fields;
        let sources = vec![
            ("record_id", Some(f.record_id)),
            ("subscriber", Some(f.subscriber)),
            ("subscriber_kind", f.subscriber_kind),
            ("service", Some(f.service)),
            ("rating_group", f.rating_group),
            ("destination", f.destination),
            ("start", Some(f.start)),
            ("units", Some(f.units)),
        ];
        for (name, source) in &sources {
            if let Some(Source::Position { position: 0 }) = source {
                return Err(format!("field `fields.{name}`: positions start at 1"));
            }
        }
        Ok(Mapping { delimiter, header: file.header, time_format, time_zone, units_divisor, source, sources })
    }

    /// Resolves column names against the header (`None` when the file has none); the
    /// error names the field whose column is missing.
    pub fn resolve(&self, header: Option<&csv::ByteRecord>) -> Result<Vec<Option<Field>>, String> {
        self.sources
            .iter()
            .map(|(name, source)| match source {
                None => Ok(None),
                Some(Source::Value { value }) => Ok(Some(Field::Value(value.clone()))),
                Some(Source::Position { position }) => Ok(Some(Field::Column(position - 1))),
                Some(Source::Column { column }) => {
                    let header = header.ok_or_else(|| {
                        format!("field `fields.{name}`: names column {column:?} but the file has no header")
                    })?;
                    header
                        .iter()
                        .position(|h| h == column.as_bytes())
                        .map(|i| Some(Field::Column(i)))
                        .ok_or_else(|| format!("field `fields.{name}`: no column {column:?} in the header"))
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_mapping_is_refused_naming_line_and_field() {
        let cases = [
            (
                "delimiter = \";;\"\n[fields]\nrecord_id = { value = \"a\" }\nsubscriber = { position = 1 }\nservice = { value = \"voice\" }\nstart = { position = 2 }\nunits = { position = 3 }\n",
                "delimiter",
            ),
            ("[fields]\nrecord_id = { column = \"a\" }\n", "line 1"),
            ("[fields]\nrecord_id = { colum = \"a\" }\n", "line 2"),
            (
                "time_zone = \"Mars/Olympus\"\n[fields]\nrecord_id = { value = \"a\" }\nsubscriber = { position = 1 }\nservice = { value = \"voice\" }\nstart = { position = 2 }\nunits = { position = 3 }\n",
                "time_zone",
            ),
            (
                "[fields]\nrecord_id = { position = 0 }\nsubscriber = { position = 1 }\nservice = { value = \"voice\" }\nstart = { position = 2 }\nunits = { position = 3 }\n",
                "positions start at 1",
            ),
        ];
        for (text, expected) in cases {
            let err = Mapping::parse(text).expect_err(text);
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    const FIELDS_TABLE: &str = "[fields]\nrecord_id = { position = 1 }\nsubscriber = { position = 2 }\nservice = { value = \"voice\" }\nstart = { position = 3 }\nunits = { position = 4 }\n";

    #[test]
    fn the_source_defaults_to_the_mapping_name_and_must_be_a_non_empty_string() {
        assert_eq!(Mapping::parse(FIELDS_TABLE).expect("mapping").source, DEFAULT_SOURCE);
        assert_eq!(Mapping::parse_with_source(FIELDS_TABLE, "calls").expect("mapping").source, "calls");
        let named = format!("header = false\nsource = \"msc-berlin\"\n{FIELDS_TABLE}");
        assert_eq!(Mapping::parse_with_source(&named, "calls").expect("mapping").source, "msc-berlin");
        for (value, expected) in [
            ("\"\"", "not an empty string"),
            ("\"  \"", "not an empty string"),
            ("7", "not an integer"),
            ("[\"a\"]", "not an array"),
            ("true", "not a boolean"),
        ] {
            let text = format!("header = false\nsource = {value}\n{FIELDS_TABLE}");
            let err = Mapping::parse(&text).expect_err(&text);
            assert!(err.starts_with("line 2: field `source`: a non-empty string"), "{value}: {err}");
            assert!(err.ends_with(expected), "{value}: {err}");
        }
    }
}
