//! The store's tests. Each runs twice, on SQLite and on PostgreSQL (`store_test!`), the
//! PostgreSQL half on a throw-away cluster this binary starts (`tollgate_store::testing`).

mod audit;
mod balances;
mod basics;
mod billing;
mod catalogue;
mod customers;
mod hub;
mod import;
mod inventory;
mod orders;
mod outbox;
mod thresholds;
mod tokens;

use jiff::Timestamp;

/// A fixed instant plus `seconds`, so tests do not read the clock.
pub(crate) fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_750_000_000 + seconds).expect("a valid instant")
}
