//! What the two kinds of file share: a row checked on its own ([`Batch`]'s parse, in each
//! kind's module), then a batch of rows decided against the store in one transaction
//! ([`Batch::apply`]): created, a duplicate, or rejected with the field and the reason
//! ([`Outcome`]). The ids of what a row creates are derived from the run and the row
//! ([`entity_id`]), so the batch a killed import rolled back creates the same ids when it
//! runs again, and the audit record of a batch names its rows by number.

use std::collections::HashMap;
use std::future::Future;

use jiff::Timestamp;
use ring::digest::{Context, SHA256};
use tollgate_store::Tx;

use crate::error::Result;
use crate::mapping::Reject;

/// Characters an external id may have at most.
pub const MAX_EXTERNAL_ID_CHARS: usize = 64;

/// A kind of row, checked, that a batch applies to the store.
pub(crate) trait Batch: Sized + Send + 'static {
    /// The row's external id.
    fn external_id(&self) -> &str;
    /// The first field in which two rows of the same external id differ, if any.
    fn differs_from(&self, other: &Self) -> Option<&'static str>;
    /// Decides each row (in file order) and writes what is created, with its outbox rows.
    fn apply(tx: &mut Tx, rows: Vec<(i64, Self)>, context: &mut RunContext) -> impl Future<Output = Result<Outcome>>;
}

/// What a batch decided.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The rows that created something, in order.
    pub created: Vec<i64>,
    pub duplicates: i64,
    pub rejects: Vec<(i64, Reject)>,
    /// Entities created, by type, for the audit record.
    pub entities: Vec<(&'static str, usize)>,
}

impl Outcome {
    pub(crate) fn reject(&mut self, row: i64, field: &str, reason: &str) {
        self.rejects.push((row, Reject::new(field, reason)));
    }

    /// A row whose external id is taken by `before` (imported by `earlier`): a duplicate
    /// when nothing differs, else a reject naming the field.
    pub(crate) fn same_or_reject<T: Batch>(&mut self, row: i64, new: &T, before: &T, earlier: &str) {
        match new.differs_from(before) {
            None => self.duplicates += 1,
            Some(field) => self.reject(
                row,
                field,
                &format!(
                    "external id {} was imported by {earlier} with another {field} (an import does not update)",
                    new.external_id()
                ),
            ),
        }
    }
}

/// What the batches of one run share.
pub(crate) struct RunContext {
    /// 16 hex digits: the start of every id this run creates.
    pub prefix: String,
    pub now: Timestamp,
    /// Tariff plan id → its currency: the plans a subscription may be on.
    pub plans: HashMap<String, String>,
    /// Product offerings looked up so far: id → whether it is one.
    pub offerings: HashMap<String, bool>,
    /// SHA-256 over the created entities of the current batch (one line each, without
    /// personal data), for its audit record.
    digest: Context,
}

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RunContext {
    pub(crate) fn new(prefix: String, now: Timestamp, plans: HashMap<String, String>) -> RunContext {
        RunContext { prefix, now, plans, offerings: HashMap::new(), digest: Context::new(&SHA256) }
    }

    /// Adds one created entity's line (fields separated by tabs) to the batch's digest.
    pub(crate) fn digest_line(&mut self, fields: &[&str]) {
        for (index, field) in fields.iter().enumerate() {
            if index > 0 {
                self.digest.update(b"\t");
            }
            self.digest.update(field.as_bytes());
        }
        self.digest.update(b"\n");
    }

    /// The batch's digest, and a fresh one for the next batch.
    pub(crate) fn take_digest(&mut self) -> String {
        let done = std::mem::replace(&mut self.digest, Context::new(&SHA256));
        crate::hex(done.finish().as_ref())
    }
}

/// The id of what row `row` of this run creates, `kind` 1 a customer, 2 a billing account,
/// 3 a subscription: the run's 16 hex digits, the kind, the row as 15 hex digits (32 hex
/// digits, the shape of the API's ids).
pub(crate) fn entity_id(context: &RunContext, kind: u8, row: i64) -> String {
    format!("{}{kind:x}{:015x}", context.prefix, row)
}

/// A text field of at most `max` characters, none of them a control character.
pub(crate) fn text(field: &str, value: &str, max: usize) -> Result<String, Reject> {
    if value.chars().count() > max {
        return Err(Reject::new(field, format!("longer than {max} characters")));
    }
    // As the API takes them: a name with a control character (a NUL, an escape, a line
    // break) could not be changed through the API afterwards.
    if value.chars().any(char::is_control) {
        return Err(Reject::new(field, "holds a control character"));
    }
    Ok(value.to_owned())
}

/// An external id: 1 to [`MAX_EXTERNAL_ID_CHARS`] characters, none of them a control
/// character.
pub(crate) fn check_external_id(field: &str, value: &str) -> Result<String, Reject> {
    if value.chars().any(char::is_control) {
        return Err(Reject::new(field, "holds a control character"));
    }
    text(field, value, MAX_EXTERNAL_ID_CHARS)
}

/// `[1, 2, 3, 7, 9, 10]` → `[[1, 3], [7, 7], [9, 10]]`.
pub(crate) fn ranges(rows: &[i64]) -> Vec<[i64; 2]> {
    let mut out: Vec<[i64; 2]> = Vec::new();
    for &row in rows {
        match out.last_mut() {
            Some(last) if last[1] + 1 == row => last[1] = row,
            _ => out.push([row, row]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_are_written_as_ranges() {
        assert_eq!(super::ranges(&[1, 2, 3, 7, 9, 10]), vec![[1, 3], [7, 7], [9, 10]]);
        assert!(super::ranges(&[]).is_empty());
    }
}
