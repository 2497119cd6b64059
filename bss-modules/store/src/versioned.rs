//! Optimistic concurrency. A versioned row has a `version BIGINT NOT NULL` column that
//! starts at 1 and grows by one on every change; a writer names the version it read, and
//! the update succeeds only if the row is still at it (`UPDATE … WHERE id = $1 AND
//! version = $2`). Otherwise the store says which: [`StoreError::NotFound`] (404) or
//! [`StoreError::StaleVersion`] with both versions (412 Precondition Failed). Over HTTP
//! the version travels as an ETag, `W/"7"`, and comes back in `If-Match`.

use std::fmt;

use crate::error::{Result, StoreError};
use crate::sql::{args, Arg};
use crate::Tx;

/// The version of a row: 1 when created, one more after each change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(i64);

impl Version {
    /// The version of a new row.
    pub const FIRST: Version = Version(1);

    /// A version read from elsewhere (a request, a test); `None` if below 1.
    pub fn new(number: i64) -> Option<Version> {
        (number >= 1).then_some(Version(number))
    }

    /// The number.
    pub fn get(self) -> i64 {
        self.0
    }

    /// The weak ETag carrying this version: `W/"7"`. Weak, because one version has several
    /// representations (field selection); the API compares versions, not bytes.
    pub fn etag(self) -> String {
        format!("W/\"{}\"", self.0)
    }

    /// The version in an ETag as a client sends it back in `If-Match`: `W/"7"` or `"7"`.
    pub fn from_etag(etag: &str) -> Result<Version> {
        let invalid =
            || StoreError::Invalid { field: "If-Match", reason: format!("{etag:?} is not an ETag this server issued") };
        let quoted = etag.trim();
        let quoted = quoted.strip_prefix("W/").unwrap_or(quoted);
        let number = quoted.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')).ok_or_else(invalid)?;
        if number.is_empty() || !number.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(invalid());
        }
        number.parse().ok().and_then(Version::new).ok_or_else(invalid)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A value with the version of the row it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: Version,
}

/// `UPDATE {table} SET {set}, version = version + 1 WHERE id = $1 AND version = $2`:
/// `set` numbers its own placeholders from `$3`, bound from `args`. Returns the new
/// version, or says whether the row is missing or at another version.
pub(crate) async fn update_versioned(
    tx: &mut Tx,
    entity: &'static str,
    table: &'static str,
    id: &str,
    expected: Version,
    set: &str,
    args: Vec<Arg>,
) -> Result<Version> {
    let sql =
        format!("UPDATE {table} SET {set}, version = version + 1 WHERE id = $1 AND version = $2 RETURNING version");
    let mut all = args![id, expected.get()];
    all.extend(args);
    match tx.fetch_optional("update_versioned", &sql, all).await? {
        Some(row) => Ok(Version(row.int("version")?)),
        None => Err(why_not(tx, entity, table, id, expected).await?),
    }
}

/// `DELETE FROM {table} WHERE id = $1 AND version = $2`, with the same answers as
/// [`update_versioned`].
pub(crate) async fn delete_versioned(
    tx: &mut Tx,
    entity: &'static str,
    table: &'static str,
    id: &str,
    expected: Version,
) -> Result<()> {
    let sql = format!("DELETE FROM {table} WHERE id = $1 AND version = $2");
    match tx.execute("delete_versioned", &sql, args![id, expected.get()]).await? {
        0 => Err(why_not(tx, entity, table, id, expected).await?),
        _ => Ok(()),
    }
}

/// After a versioned write changed nothing: the error that says why.
async fn why_not(
    tx: &mut Tx,
    entity: &'static str,
    table: &'static str,
    id: &str,
    expected: Version,
) -> Result<StoreError> {
    let sql = format!("SELECT version FROM {table} WHERE id = $1");
    Ok(match tx.fetch_optional("update_versioned", &sql, args![id]).await? {
        None => StoreError::NotFound { entity, id: id.to_owned() },
        Some(row) => {
            StoreError::StaleVersion { entity, id: id.to_owned(), expected: expected.get(), found: row.int("version")? }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::Version;

    #[test]
    fn an_etag_carries_the_version_and_reads_back() {
        let version = Version::new(7).expect("positive");
        assert_eq!(version.etag(), "W/\"7\"");
        assert_eq!(Version::from_etag(&version.etag()).ok(), Some(version));
        assert_eq!(Version::from_etag("\"7\"").ok(), Some(version));
        assert_eq!(Version::from_etag(" W/\"12\" ").ok().map(Version::get), Some(12));
        for bad in ["", "7", "W/7", "\"\"", "\"0\"", "\"-1\"", "\"+1\"", "W/\"1a\"", "\"99999999999999999999\"", "*"] {
            assert!(Version::from_etag(bad).is_err(), "{bad:?} accepted");
        }
    }
}
