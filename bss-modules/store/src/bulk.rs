//! Multi-row `INSERT`s, for bulk imports: one statement carries many rows, so the
//! per-statement cost (a round trip to SQLite's worker thread, a network round trip to
//! PostgreSQL) is paid once per chunk instead of once per row. Chunks have a fixed number
//! of rows (all but the last), so their SQL text repeats and the driver's prepared
//! statement cache reuses one statement for them.

use crate::error::{Result, StoreError};
use crate::sql::{Arg, Dialect, Row};
use crate::Tx;

/// Bound values per statement at most: SQLite's default limit is 32,766 (PostgreSQL's
/// 65,535).
const MAX_VALUES_PER_STATEMENT: usize = 32_000;

/// Rows per statement at most, whatever their width.
pub(crate) const MAX_ROWS_PER_STATEMENT: usize = 500;

/// `head` is `INSERT INTO t (a, b, c)`, `tail` what follows the values (`RETURNING …`,
/// `ON CONFLICT …`, or nothing); `values` holds `width` arguments per row, row after row.
/// Returns the rows `tail`'s `RETURNING` gives (in no particular order), or none.
pub(crate) async fn insert_many(
    tx: &mut Tx,
    operation: &'static str,
    head: &str,
    width: usize,
    values: Vec<Arg>,
    tail: &str,
) -> Result<Vec<Row>> {
    if width == 0 || !values.len().is_multiple_of(width) {
        return Err(StoreError::Invalid { field: "values", reason: format!("not rows of {width}") });
    }
    let per_statement = (MAX_VALUES_PER_STATEMENT / width).clamp(1, MAX_ROWS_PER_STATEMENT);
    let mut returned = Vec::new();
    let mut values = values.into_iter();
    let mut rows_left = values.len() / width;
    while rows_left > 0 {
        let rows = rows_left.min(per_statement);
        let chunk: Vec<Arg> = values.by_ref().take(rows * width).collect();
        let sql = statement(tx.dialect(), head, width, rows, tail);
        if tail.contains("RETURNING") {
            returned.extend(tx.fetch_all(operation, &sql, chunk).await?);
        } else {
            tx.execute(operation, &sql, chunk).await?;
        }
        rows_left -= rows;
    }
    Ok(returned)
}

/// `head VALUES ($1, …, $width), (…), … tail` for `rows` rows (`?` for each on SQLite).
fn statement(dialect: Dialect, head: &str, width: usize, rows: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * width * 7 + 8);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    let mut n = 0;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..width {
            n += 1;
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&placeholder(dialect, n));
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// The statement's `n`-th placeholder: `$n` on PostgreSQL, `?` on SQLite (sqlx looks a
/// numbered placeholder up by name there, in time linear in the statement's placeholders;
/// a statement that uses `?` writes it for all of its placeholders).
pub(crate) fn placeholder(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Sqlite => "?".to_owned(),
        Dialect::Postgres => format!("${n}"),
    }
}

/// `$from, $from+1, …` for `count` placeholders: an `IN (…)` list.
pub(crate) fn placeholders(from: usize, count: usize) -> String {
    (from..from + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// The placeholders of an `IN (…)` list of `count` arguments from the statement's
/// `from`-th on: `$from, …` on PostgreSQL, `?` each on SQLite (sqlx looks a numbered
/// placeholder up by name, so long lists of them bind in quadratic time there); a
/// statement that uses it writes `?` for its other placeholders on SQLite too.
pub(crate) fn in_list(dialect: Dialect, from: usize, count: usize) -> String {
    match dialect {
        Dialect::Sqlite => vec!["?"; count].join(", "),
        Dialect::Postgres => placeholders(from, count),
    }
}

/// Runs `sql`, whose only arguments are its `IN (#)`, replaced by a list of placeholders,
/// for `keys`, a chunk of keys at a time; returns every row found.
pub(crate) async fn select_in(tx: &mut Tx, operation: &'static str, sql: &str, keys: &[&str]) -> Result<Vec<Row>> {
    let mut found = Vec::new();
    for chunk in keys.chunks(MAX_ROWS_PER_STATEMENT) {
        let list = in_list(tx.dialect(), 1, chunk.len());
        let text = sql.replacen("IN (#)", &format!("IN ({list})"), 1);
        let args = chunk.iter().map(|key| Arg::from(*key)).collect();
        found.extend(tx.fetch_all(operation, &text, args).await?);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use crate::sql::Dialect;

    #[test]
    fn a_statement_numbers_its_placeholders_row_after_row() {
        assert_eq!(
            super::statement(Dialect::Postgres, "INSERT INTO t (a, b)", 2, 2, "RETURNING a"),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) RETURNING a"
        );
        assert_eq!(
            super::statement(Dialect::Sqlite, "INSERT INTO t (a)", 1, 2, ""),
            "INSERT INTO t (a) VALUES (?), (?) "
        );
        assert_eq!(super::placeholders(3, 3), "$3, $4, $5");
    }
}
