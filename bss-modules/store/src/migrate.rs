//! Migrations, run by [`Store::open`](crate::Store::open) in one transaction. Each
//! migration exists twice, once per dialect (`migrations/sqlite/`, `migrations/postgres/`),
//! describing the same schema; the tests check that both give the same tables, columns
//! and column types. `schema_migrations` records what was applied with a SHA-256 of its
//! text, so an edited migration and a database from a newer build are refused instead of
//! being used half-understood. On PostgreSQL an advisory lock serialises two servers
//! opening the same database.

use crate::error::{Result, StoreError};
use crate::hash::sha256_hex;
use crate::sql::{args, Dialect};
use crate::Store;

/// The schema version this build writes and understands (the last migration).
pub const SCHEMA_VERSION: i64 = 25;

struct Migration {
    version: i64,
    description: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

impl Migration {
    fn sql(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => self.sqlite,
            Dialect::Postgres => self.postgres,
        }
    }
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "foundation: outbox, audit trail, API tokens",
        sqlite: include_str!("../migrations/sqlite/0001_foundation.sql"),
        postgres: include_str!("../migrations/postgres/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        description: "product catalogue: items, references, tariff plan versions",
        sqlite: include_str!("../migrations/sqlite/0002_catalogue.sql"),
        postgres: include_str!("../migrations/postgres/0002_catalogue.sql"),
    },
    Migration {
        version: 3,
        description: "customers and billing accounts",
        sqlite: include_str!("../migrations/sqlite/0003_customers.sql"),
        postgres: include_str!("../migrations/postgres/0003_customers.sql"),
    },
    Migration {
        version: 4,
        description: "external ids, subscriptions and import runs",
        sqlite: include_str!("../migrations/sqlite/0004_import.sql"),
        postgres: include_str!("../migrations/postgres/0004_import.sql"),
    },
    Migration {
        version: 5,
        description: "prepaid balance requests (TMF654) and the product manager role",
        sqlite: include_str!("../migrations/sqlite/0005_balances.sql"),
        postgres: include_str!("../migrations/postgres/0005_balances.sql"),
    },
    Migration {
        version: 6,
        description: "resource inventory: number ranges, MSISDNs, SIM batches and cards, network elements",
        sqlite: include_str!("../migrations/sqlite/0006_inventory.sql"),
        postgres: include_str!("../migrations/postgres/0006_inventory.sql"),
    },
    Migration {
        version: 7,
        description: "event hub: listeners, events, deliveries",
        sqlite: include_str!("../migrations/sqlite/0007_hub.sql"),
        postgres: include_str!("../migrations/postgres/0007_hub.sql"),
    },
    Migration {
        version: 8,
        description: "product orders, provisioning tasks, product and service inventories",
        sqlite: include_str!("../migrations/sqlite/0008_orders.sql"),
        postgres: include_str!("../migrations/postgres/0008_orders.sql"),
    },
    Migration {
        version: 9,
        description: "billing: bill runs, invoices and credit notes, invoice lines, number series, billed items",
        sqlite: include_str!("../migrations/sqlite/0009_billing.sql"),
        postgres: include_str!("../migrations/postgres/0009_billing.sql"),
    },
    Migration {
        version: 10,
        description: "alarms (fault management)",
        sqlite: include_str!("../migrations/sqlite/0010_alarms.sql"),
        postgres: include_str!("../migrations/postgres/0010_alarms.sql"),
    },
    Migration {
        version: 11,
        description: "receivables: payments, allocations, due dates, dunning steps",
        sqlite: include_str!("../migrations/sqlite/0011_receivables.sql"),
        postgres: include_str!("../migrations/postgres/0011_receivables.sql"),
    },
    Migration {
        version: 12,
        description: "thresholds and their notified crossings",
        sqlite: include_str!("../migrations/sqlite/0012_thresholds.sql"),
        postgres: include_str!("../migrations/postgres/0012_thresholds.sql"),
    },
    Migration {
        version: 13,
        description: "product history: the periods of each product on an offering, active or suspended",
        sqlite: include_str!("../migrations/sqlite/0013_product_history.sql"),
        postgres: include_str!("../migrations/postgres/0013_product_history.sql"),
    },
    Migration {
        version: 14,
        description: "product orders' idempotency keys",
        sqlite: include_str!("../migrations/sqlite/0014_order_keys.sql"),
        postgres: include_str!("../migrations/postgres/0014_order_keys.sql"),
    },
    Migration {
        version: 15,
        description: "discounts and credits of billing accounts",
        sqlite: include_str!("../migrations/sqlite/0015_discounts.sql"),
        postgres: include_str!("../migrations/postgres/0015_discounts.sql"),
    },
    Migration {
        version: 16,
        description: "threshold kinds: spending caps, bundle expiry, a bundle threshold per subscription",
        sqlite: include_str!("../migrations/sqlite/0016_threshold_kinds.sql"),
        postgres: include_str!("../migrations/postgres/0016_threshold_kinds.sql"),
    },
    Migration {
        version: 17,
        description: "hub events found by their entity (an anonymisation rewrites them)",
        sqlite: include_str!("../migrations/sqlite/0017_hub_event_entity.sql"),
        postgres: include_str!("../migrations/postgres/0017_hub_event_entity.sql"),
    },
    Migration {
        version: 18,
        description: "the digest of the request an order's API idempotency key answered",
        sqlite: include_str!("../migrations/sqlite/0018_order_key_digest.sql"),
        postgres: include_str!("../migrations/postgres/0018_order_key_digest.sql"),
    },
    Migration {
        version: 19,
        description: "prepaid statements and the renewal of their fees",
        sqlite: include_str!("../migrations/sqlite/0019_prepaid_renewals.sql"),
        postgres: include_str!("../migrations/postgres/0019_prepaid_renewals.sql"),
    },
    Migration {
        version: 20,
        description: "an index on the invoice a credit note corrects",
        sqlite: include_str!("../migrations/sqlite/0020_invoice_corrections_index.sql"),
        postgres: include_str!("../migrations/postgres/0020_invoice_corrections_index.sql"),
    },
    Migration {
        version: 21,
        description: "the renewal_refused threshold kind",
        sqlite: include_str!("../migrations/sqlite/0021_renewal_refused_threshold.sql"),
        postgres: include_str!("../migrations/postgres/0021_renewal_refused_threshold.sql"),
    },
    Migration {
        version: 22,
        description: "why a bill run's last attempt failed",
        sqlite: include_str!("../migrations/sqlite/0022_bill_run_failures.sql"),
        postgres: include_str!("../migrations/postgres/0022_bill_run_failures.sql"),
    },
    Migration {
        version: 23,
        description: "versions of discounts and credits",
        sqlite: include_str!("../migrations/sqlite/0023_reduction_versions.sql"),
        postgres: include_str!("../migrations/postgres/0023_reduction_versions.sql"),
    },
    Migration {
        version: 24,
        description: "the partner hierarchy a customer was created in",
        sqlite: include_str!("../migrations/sqlite/0024_customer_partner_root.sql"),
        postgres: include_str!("../migrations/postgres/0024_customer_partner_root.sql"),
    },
    Migration {
        version: 25,
        description: "the name an invoice was issued to",
        sqlite: include_str!("../migrations/sqlite/0025_invoice_bill_to.sql"),
        postgres: include_str!("../migrations/postgres/0025_invoice_bill_to.sql"),
    },
];

/// The advisory lock key migrations hold on PostgreSQL ("tollgate" in ASCII, as a number).
const MIGRATION_LOCK: i64 = 0x746f_6c6c_6761_7465;

/// Brings the database to [`SCHEMA_VERSION`], or refuses it.
pub(crate) async fn run(store: &Store) -> Result<()> {
    // Versions increase; a gap is allowed (migrations numbered on parallel branches land in
    // any order), and each missing migration is applied, not only those above the highest.
    debug_assert!(MIGRATIONS.windows(2).all(|pair| pair[1].version > pair[0].version));
    let dialect = store.dialect();
    let mut tx = store.begin().await?;
    if dialect == Dialect::Postgres {
        tx.execute("migrate", "SELECT pg_advisory_xact_lock($1)", args![MIGRATION_LOCK]).await?;
    }
    tx.execute_script(
        "migrate",
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at_ms BIGINT NOT NULL
        )",
    )
    .await?;
    let applied =
        tx.fetch_all("migrate", "SELECT version, checksum FROM schema_migrations ORDER BY version", vec![]).await?;
    let mut done = Vec::with_capacity(applied.len());
    for row in &applied {
        let version = row.int("version")?;
        let checksum = row.text("checksum")?;
        done.push(version);
        let Some(known) = MIGRATIONS.iter().find(|migration| migration.version == version) else {
            let found = applied.iter().filter_map(|row| row.int("version").ok()).max().unwrap_or(version);
            return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
        };
        if checksum != sha256_hex(known.sql(dialect).as_bytes()) {
            return Err(StoreError::MigrationChanged { version, description: known.description });
        }
    }
    for migration in MIGRATIONS.iter().filter(|migration| !done.contains(&migration.version)) {
        tx.execute_script("migrate", migration.sql(dialect)).await?;
        tx.execute(
            "migrate",
            "INSERT INTO schema_migrations (version, description, checksum, applied_at_ms) VALUES ($1, $2, $3, $4)",
            args![
                migration.version,
                migration.description,
                sha256_hex(migration.sql(dialect).as_bytes()),
                jiff::Timestamp::now().as_millisecond()
            ],
        )
        .await?;
        tracing::info!(version = migration.version, description = migration.description, "store: migrated");
    }
    tx.commit().await
}
