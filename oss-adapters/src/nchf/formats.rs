//! The `format`s the bundled ChargingDataRequest schema uses, and the check of each.
//!
//! The schema is validated as JSON Schema Draft 7, which knows `date-time` but not OpenAPI's
//! `byte`, `float` or `uuid`, and a validator lets a value under a format it does not know
//! through. So every format the schema names has its check in [`FORMATS`], and
//! [`RequestReader`](super::server::RequestReader) compiles the schema with unknown formats
//! refused: a schema bump that brings a new format fails to build until it gets a check here
//! (the tests below also scan the bundled schema for every `format`).
//!
//! jsonschema applies `format` to strings only: a number under `format: float` passes whatever
//! its value. A format of numbers is therefore moved, before compiling, from `format` to the
//! keyword [`NUMBER_FORMAT_KEYWORD`] ([`move_number_formats`]), which checks numbers; a format
//! of strings is registered with `with_format`.

use jsonschema::paths::Location;
use jsonschema::{Keyword, ValidationError, ValidationOptions};
use serde_json::{Map, Number, Value};

/// One `format` and how a value is checked against it.
#[derive(Debug)]
pub struct Format {
    pub name: &'static str,
    /// What a value of this format is, with the definition it follows (for error reasons).
    pub meaning: &'static str,
    pub check: Check,
}

#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// A format of strings (OpenAPI `type: string`).
    Text(fn(&str) -> bool),
    /// A format of numbers (OpenAPI `type: number` or `integer`).
    Number(fn(&Number) -> bool),
}

/// Every format of the bundled schema. OpenAPI 3.0.0 §4.7.9.3 (Data Types) defines `byte`,
/// `date-time` and `float`; TS 29.571 §5.2.2 uses them for `Bytes`, `DateTime` and `Float`,
/// and `uuid` (RFC 4122) for `NfInstanceId`.
pub const FORMATS: &[Format] = &[
    Format {
        name: "byte",
        meaning: "base64-encoded bytes (RFC 4648 §4: A-Z a-z 0-9 + /, padded with = to a multiple of 4)",
        check: Check::Text(is_byte),
    },
    Format {
        name: "date-time",
        meaning: "an RFC 3339 date-time such as 2026-03-02T10:00:00Z or 2026-03-02T11:00:00.5+01:00",
        check: Check::Text(is_date_time),
    },
    Format {
        name: "float",
        meaning: "a number within the range of an IEEE 754 single-precision float (magnitude up to about 3.4e38)",
        check: Check::Number(is_float),
    },
    Format {
        name: "uuid",
        meaning: "a UUID in RFC 4122 text form: 8-4-4-4-12 hexadecimal digits",
        check: Check::Text(is_uuid),
    },
];

/// The keyword a format of numbers is moved to (see the module documentation).
pub const NUMBER_FORMAT_KEYWORD: &str = "x-tollgate-number-format";

/// The format called `name`, if it has a check.
pub fn format(name: &str) -> Option<&'static Format> {
    FORMATS.iter().find(|format| format.name == name)
}

/// Why a value is refused by the format called `name`: an `invalidParams` reason.
pub fn reason(name: &str) -> String {
    match format(name) {
        Some(format) => format!("not a \"{name}\": {}", format.meaning),
        None => format!("not a \"{name}\""),
    }
}

/// `options` with every format checked: formats of strings registered with `with_format`, the
/// keyword of number formats registered with `with_keyword`, unknown formats refused.
pub fn checked<'a>(mut options: ValidationOptions<'a>) -> ValidationOptions<'a> {
    for format in FORMATS {
        if let Check::Text(check) = format.check {
            options = options.with_format(format.name, check);
        }
    }
    options.with_keyword(NUMBER_FORMAT_KEYWORD, number_format_keyword).should_ignore_unknown_formats(false)
}

/// Moves every `format` naming a format of numbers to [`NUMBER_FORMAT_KEYWORD`], in `schema`
/// and every schema inside it (Draft 7 keywords, and `$defs`). Values (`enum`, `const`,
/// `default`, `example`) are left as they are.
pub fn move_number_formats(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    let number_format = match map.get("format") {
        Some(Value::String(name)) => format(name).filter(|f| matches!(f.check, Check::Number(_))),
        _ => None,
    };
    if let Some(format) = number_format {
        map.remove("format");
        map.insert(NUMBER_FORMAT_KEYWORD.to_owned(), Value::String(format.name.to_owned()));
    }
    for (keyword, value) in map.iter_mut() {
        match keyword.as_str() {
            // Maps of schemas (`dependencies` may also map to a list of names: left as is).
            "properties" | "patternProperties" | "definitions" | "$defs" | "dependencies" => {
                if let Value::Object(schemas) = value {
                    schemas.values_mut().for_each(move_number_formats);
                }
            }
            // A schema or a list of schemas.
            "items" | "allOf" | "anyOf" | "oneOf" => match value {
                Value::Array(schemas) => schemas.iter_mut().for_each(move_number_formats),
                other => move_number_formats(other),
            },
            "additionalItems"
            | "additionalProperties"
            | "contains"
            | "propertyNames"
            | "if"
            | "then"
            | "else"
            | "not" => move_number_formats(value),
            _ => {}
        }
    }
}

fn number_format_keyword<'a>(
    _parent: &'a Map<String, Value>,
    value: &'a Value,
    _location: Location,
) -> Result<Box<dyn for<'i> Keyword<'i>>, ValidationError<'a>> {
    match value.as_str().and_then(format) {
        Some(&Format { name, check: Check::Number(check), .. }) => Ok(Box::new(NumberFormat { name, check })),
        _ => Err(ValidationError::custom(format!("{NUMBER_FORMAT_KEYWORD}: {value} is not a format of numbers"))),
    }
}

/// Checks a number against a format of numbers; other values are left to `type`.
struct NumberFormat {
    name: &'static str,
    check: fn(&Number) -> bool,
}

impl<'i> Keyword<'i> for NumberFormat {
    fn validate(&self, instance: &'i Value) -> Result<(), ValidationError<'i>> {
        if self.is_valid(instance) {
            Ok(())
        } else {
            Err(ValidationError::custom(reason(self.name)))
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        instance.as_number().is_none_or(|number| (self.check)(number))
    }
}

/// OpenAPI `byte`: base64 with the standard alphabet and padding (RFC 4648 §4); no line
/// breaks, no URL-safe alphabet. Non-zero pad bits are accepted (RFC 4648 §3.5 lets a
/// decoder choose).
pub fn is_byte(text: &str) -> bool {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return false;
    }
    let padding = bytes.iter().rev().take_while(|b| **b == b'=').count();
    padding <= 2 && bytes[..bytes.len() - padding].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// OpenAPI `date-time`: RFC 3339 §5.6 `date-time`, `T` and `Z` in either case (§5.6 NOTE).
/// The day must exist in its month; a leap second (`:60`) only at 23:59 UTC, where they are
/// inserted.
pub fn is_date_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    // `YYYY-MM-DDTHH:MM:SS` then optional `.fraction`, then `Z` or `±HH:MM`.
    if bytes.len() < 20 || !matches!(bytes[10], b'T' | b't') {
        return false;
    }
    let shape = |at: usize, pattern: &[u8]| {
        bytes.get(at..at + pattern.len()).is_some_and(|part| {
            part.iter().zip(pattern).all(|(b, p)| if *p == b'9' { b.is_ascii_digit() } else { b == p })
        })
    };
    if !shape(0, b"9999-99-99") || !shape(11, b"99:99:99") {
        return false;
    }
    let number = |at: usize, len: usize| bytes[at..at + len].iter().fold(0u32, |n, b| n * 10 + u32::from(b - b'0'));
    let (year, month, day) = (number(0, 4), number(5, 2), number(8, 2));
    let (hour, minute, second) = (number(11, 2), number(14, 2), number(17, 2));
    let leap_year = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap_year => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days || hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut at = 19;
    if bytes.get(at) == Some(&b'.') {
        let digits = bytes[at + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        at += 1 + digits;
    }
    // The offset, in minutes east of UTC.
    let offset_minutes: i64 = match bytes.get(at) {
        Some(b'Z' | b'z') if at + 1 == bytes.len() => 0,
        Some(sign @ (b'+' | b'-')) if at + 6 == bytes.len() && shape(at + 1, b"99:99") => {
            let (offset_hour, offset_minute) = (number(at + 1, 2), number(at + 4, 2));
            if offset_hour > 23 || offset_minute > 59 {
                return false;
            }
            let minutes = i64::from(offset_hour * 60 + offset_minute);
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return false,
    };
    if second == 60 {
        let utc_minute_of_day = (i64::from(hour * 60 + minute) - offset_minutes).rem_euclid(24 * 60);
        return utc_minute_of_day == 23 * 60 + 59;
    }
    true
}

/// OpenAPI `float`: a number an IEEE 754 binary32 holds once rounded to nearest, so finite
/// (`3.4028235e38`, the usual printing of the largest float, rounds to it and is accepted;
/// `3.5e38` is not). The JSON number has already been read as a binary64; a decimal within
/// one binary64 step of the binary32 overflow threshold may round differently than it would
/// straight to binary32.
pub fn is_float(number: &Number) -> bool {
    number.as_f64().is_some_and(|value| (value as f32).is_finite())
}

/// `uuid` (RFC 4122 §3): 32 hexadecimal digits in groups of 8-4-4-4-12 separated by hyphens,
/// either case. Any version and variant: TS 29.571 asks NF instance ids to be version 4, a
/// property of how they are made rather than of their format.
pub fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(at, b)| match at {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = include_str!("charging_data_request.schema.json");

    /// Every string value of a `format` member anywhere in `value` (values and unknown
    /// keywords included: erring on the side of asking for too many checks).
    fn formats_in(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(name)) = map.get("format") {
                    found.push(name.clone());
                }
                map.values().for_each(|v| formats_in(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| formats_in(v, found)),
            _ => {}
        }
    }

    #[test]
    fn every_format_of_the_bundled_schema_has_a_check() {
        let schema: Value = serde_json::from_str(SCHEMA).expect("schema");
        let mut found = Vec::new();
        formats_in(&schema, &mut found);
        found.sort();
        found.dedup();
        assert!(!found.is_empty(), "the scan finds the schema's formats");
        let unchecked: Vec<&String> = found.iter().filter(|name| format(name).is_none()).collect();
        assert!(unchecked.is_empty(), "formats of the bundled schema without a check: {unchecked:?}");
    }

    #[test]
    fn after_the_move_the_format_keyword_names_only_formats_of_strings() {
        let mut schema: Value = serde_json::from_str(SCHEMA).expect("schema");
        move_number_formats(&mut schema);
        let mut left = Vec::new();
        formats_in(&schema, &mut left);
        assert!(left.iter().all(|name| matches!(format(name).map(|f| f.check), Some(Check::Text(_)))), "{left:?}");
        let moved = serde_json::to_string(&schema).expect("json").matches(NUMBER_FORMAT_KEYWORD).count();
        assert_eq!(moved, 1, "TS29571_CommonData_Float");
    }

    #[test]
    fn an_unknown_format_is_a_schema_error_not_a_pass() {
        let schema = serde_json::json!({"type": "string", "format": "int-of-the-future"});
        let built = checked(jsonschema::options().with_draft(jsonschema::Draft::Draft7).should_validate_formats(true))
            .build(&schema);
        assert!(built.is_err());
    }

    fn check_text(check: fn(&str) -> bool, valid: &[&str], invalid: &[&str]) {
        for text in valid {
            assert!(check(text), "{text:?} should be accepted");
        }
        for text in invalid {
            assert!(!check(text), "{text:?} should be refused");
        }
    }

    #[test]
    fn uuid_is_the_rfc_4122_text_form() {
        check_text(
            is_uuid,
            &[
                "1b9e6c52-2a3f-4f8e-9c1d-0a8b7e6f5d4c",
                "1B9E6C52-2A3F-4F8E-9C1D-0A8B7E6F5D4C",
                "00000000-0000-0000-0000-000000000000",
                "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            ],
            &[
                "zzz",
                "",
                "1b9e6c522a3f4f8e9c1d0a8b7e6f5d4c",
                "{1b9e6c52-2a3f-4f8e-9c1d-0a8b7e6f5d4c}",
                "urn:uuid:1b9e6c52-2a3f-4f8e-9c1d-0a8b7e6f5d4c",
                "1b9e6c52-2a3f-4f8e-9c1d-0a8b7e6f5d4",
                "1b9e6c52-2a3f-4f8e-9c1d-0a8b7e6f5d4c0",
                "1b9e6c52-2a3f-4f8e-9c1d+0a8b7e6f5d4c",
                "1b9e6c52-2a3f-4f8e-9c1d-0a8b7e6f5d4g",
                "1b9e6c5-22a3f-4f8e-9c1d-0a8b7e6f5d4c",
                "1b9e6c52-2a3f-4f8e-9c1d-0a8b7e6f5d4é",
            ],
        );
    }

    #[test]
    fn date_time_is_rfc_3339() {
        check_text(
            is_date_time,
            &[
                "2026-03-02T10:00:00Z",
                "2026-03-02t10:00:00z",
                "2026-03-02T10:00:00.123456789Z",
                "2026-03-02T10:00:00+01:00",
                "2026-03-02T10:00:00-23:59",
                "2024-02-29T00:00:00Z",
                "2000-02-29T00:00:00Z",
                "0000-01-01T00:00:00Z",
                "2016-12-31T23:59:60Z",
                "2017-01-01T00:59:60+01:00",
                "2016-12-31T18:59:60-05:00",
            ],
            &[
                "",
                "zzz",
                "2026-03-02",
                "2026-03-02T10:00:00",
                "2026-03-02 10:00:00Z",
                "2026-03-02T10:00Z",
                "2026-3-02T10:00:00Z",
                "2026-13-02T10:00:00Z",
                "2026-00-02T10:00:00Z",
                "2026-04-31T10:00:00Z",
                "2026-02-29T10:00:00Z",
                "1900-02-29T00:00:00Z",
                "2026-03-00T10:00:00Z",
                "2026-03-02T24:00:00Z",
                "2026-03-02T10:60:00Z",
                "2026-03-02T10:00:61Z",
                "2026-03-02T10:00:60Z",
                "2026-03-02T10:00:00.Z",
                "2026-03-02T10:00:00+0100",
                "2026-03-02T10:00:00+24:00",
                "2026-03-02T10:00:00+01:60",
                "2026-03-02T10:00:00+01:00x",
                "2026-03-02T10:00:00ZZ",
                "2026-03-02T10:00:00UTC",
                "+2026-03-02T10:00:00Z",
                "２026-03-02T10:00:00Z",
                "2026-03-02T10:00:00.5é",
            ],
        );
    }

    #[test]
    fn byte_is_padded_standard_base64() {
        check_text(
            is_byte,
            &["", "AA==", "AAA=", "AAAA", "Zm9vYmFy", "Zm9vYg==", "Zm9vYmE=", "+/+/", "AB=="],
            &[
                "A",
                "AA",
                "AAA",
                "AA=",
                "A===",
                "====",
                "AA==AA==",
                "Zm9v YmFy",
                "Zm9vYmFy\n",
                "-_-_",
                "Zm9vYg=",
                "Zé==",
            ],
        );
    }

    #[test]
    fn float_is_the_range_of_a_single_precision_float() {
        let number = |text: &str| serde_json::from_str::<Number>(text).expect("number");
        for text in [
            "0",
            "-0",
            "1.5",
            "-1",
            "3.4028234663852886e38",
            "3.4028235e38",
            "-3.4028235e38",
            "1e-50",
            "18446744073709551615",
        ] {
            assert!(is_float(&number(text)), "{text} should be accepted");
        }
        for text in ["3.5e38", "-3.5e38", "1e39", "1.7976931348623157e308"] {
            assert!(!is_float(&number(text)), "{text} should be refused");
        }
    }
}
