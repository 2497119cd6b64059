//! How values other than money are kept, the same in both dialects: instants as `BIGINT`
//! milliseconds since the Unix epoch (UTC), read and written as `jiff::Timestamp`; JSON as
//! `TEXT`, serialised by `serde_json` (so a hash over the text covers exactly what is stored).

use std::time::Duration;

use jiff::Timestamp;

use crate::error::{Result, StoreError};
use crate::sql::Row;

/// Milliseconds since the epoch.
pub(crate) fn to_ms(at: Timestamp) -> i64 {
    at.as_millisecond()
}

/// `at + delay`, in milliseconds, saturating.
pub(crate) fn after_ms(at: Timestamp, delay: Duration) -> i64 {
    to_ms(at).saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
}

impl Row {
    pub(crate) fn opt_timestamp(&self, column: &'static str) -> Result<Option<Timestamp>> {
        self.opt_int(column)?
            .map(|ms| {
                Timestamp::from_millisecond(ms)
                    .map_err(|error| self.corrupt(column, format!("{ms} ms is not an instant: {error}")))
            })
            .transpose()
    }

    pub(crate) fn timestamp(&self, column: &'static str) -> Result<Timestamp> {
        self.opt_timestamp(column)?.ok_or_else(|| self.corrupt(column, "NULL where an instant is required".into()))
    }
}

/// A JSON text column, parsed.
pub(crate) fn parse_json(row: &Row, column: &'static str, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|error| row.corrupt(column, format!("not JSON: {error}")))
}

/// A value serialised for a JSON text column.
pub(crate) fn json_text(field: &'static str, value: &serde_json::Value) -> Result<String> {
    serde_json::to_string(value).map_err(|error| StoreError::Invalid { field, reason: error.to_string() })
}
