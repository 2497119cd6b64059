//! `tollgate`: the one binary of the Tollgate charging engine.

#![forbid(unsafe_code)]

/// `println!` for every command: a line on stdout, and when stdout's reader has gone (a
/// pipe into `head` closed), a quiet exit instead of std's panic ("failed printing to
/// stdout"). Rust ignores SIGPIPE, and restoring it needs unsafe code.
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::print_line(format_args!($($arg)*))
    };
}

mod commands;

/// Writes one line to stdout; exits with 141 (128 + SIGPIPE, as a shell reports a
/// process a closed pipe stopped) when nobody reads it any more.
pub(crate) fn print_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_fmt(format_args!("{line}\n")) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("tollgate: writing to stdout: {err}");
        std::process::exit(1);
    }
}

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about = "Telecom rating and charging engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check and compile tariff plans.
    #[command(subcommand)]
    Tariff(TariffCommand),
    /// Price usage events read as JSON lines on stdin; write rated results as JSON lines on stdout.
    Rate {
        /// A plan source (.toml) or a compiled plan (from `tariff compile`).
        #[arg(long)]
        plan: PathBuf,
    },
    /// Run the charging engine (recovering its journal) and its Diameter server until SIGINT or SIGTERM.
    Serve(commands::serve::ServeArgs),
    /// Run the main job end to end on a temporary data directory and check the invariants.
    Demo(commands::demo::DemoArgs),
    /// Create, subscribe and show accounts.
    Account {
        #[command(flatten)]
        engine: commands::engine_setup::EngineArgs,
        #[command(subcommand)]
        command: commands::account::AccountCommand,
    },
    /// Rate usage files (CSV with a column mapping, or 3GPP TS 32.297 BER CDR files) exactly once.
    Mediate(commands::mediate::MediateArgs),
    /// Re-price rated events after a tariff fix: refund each old charge and take the new one, exactly once.
    Rerate(commands::rerate::RerateArgs),
    /// Drive a running server with load over loopback and print throughput and latency.
    #[command(subcommand)]
    Load(commands::load::LoadCommand),
    /// Archived journal segments: their consumers' watermarks, and pruning past the retention.
    Archive {
        #[command(flatten)]
        engine: commands::engine_setup::EngineArgs,
        #[command(subcommand)]
        command: commands::archive::ArchiveCommand,
    },
    /// Change the data directory's shard count (offline: the server must be stopped).
    Reshard(commands::reshard::ReshardArgs),
    /// Change a subscription: plan, suspension, termination, identities.
    Subscription {
        #[command(flatten)]
        engine: commands::engine_setup::EngineArgs,
        #[command(subcommand)]
        command: commands::account::SubscriptionCommand,
    },
    /// API tokens of the management API: create (the secret is shown once), list, revoke.
    Token {
        #[command(flatten)]
        database: commands::bss::DatabaseArgs,
        #[command(subcommand)]
        command: commands::bss::TokenCommand,
    },
    /// Product offerings of the catalogue: list, show, create from JSON, activate.
    Offering {
        #[command(flatten)]
        database: commands::bss::DatabaseArgs,
        #[command(subcommand)]
        command: commands::bss::OfferingCommand,
    },
    /// Customers (TMF629): list, show, create from JSON, export (right of access), anonymise.
    Customer {
        #[command(flatten)]
        database: commands::bss::DatabaseArgs,
        #[command(subcommand)]
        command: commands::bss::CustomerCommand,
    },
    /// Product orders (TMF622): create from JSON, show, list, cancel; `serve` carries them out.
    Order {
        #[command(flatten)]
        database: commands::bss::DatabaseArgs,
        #[command(subcommand)]
        command: commands::order::OrderCommand,
    },
    /// Payments (TMF676's shape): record one, list, show, import a camt.053 bank statement;
    /// each is allocated to the account's invoices, the named bill first, then oldest due.
    Payment {
        #[command(flatten)]
        database: commands::bss::DatabaseArgs,
        #[command(subcommand)]
        command: commands::payment::PaymentCommand,
    },
    /// What customers owe: aging by days overdue, and dunning (reminders, suspend and
    /// resume orders) under a policy.
    Receivables {
        #[command(flatten)]
        database: commands::bss::DatabaseArgs,
        #[command(subcommand)]
        command: commands::payment::ReceivablesCommand,
    },
    /// Bulk import from a legacy system: customers with their billing accounts, and
    /// subscriptions, from CSV through a column mapping (validated, de-duplicated by external
    /// id, resumable after a kill; the engine follows through the outbox).
    Import {
        #[command(flatten)]
        database: commands::bss::DatabaseArgs,
        #[command(subcommand)]
        command: commands::import::ImportCommand,
    },
    /// Alarms (TMF642, X.733): list, show, raise, acknowledge, clear.
    Alarm {
        #[command(flatten)]
        database: commands::bss::DatabaseArgs,
        #[command(subcommand)]
        command: commands::alarm::AlarmCommand,
    },
    /// Thresholds of billing accounts (balance below an amount, a bundle's share used) and
    /// the crossings notified: set, list, delete.
    Threshold {
        #[command(flatten)]
        database: commands::bss::DatabaseArgs,
        #[command(subcommand)]
        command: commands::threshold::ThresholdCommand,
    },
    /// The resource inventory (TMF639): MSISDN ranges, SIM cards from vendor files, network elements.
    Inventory {
        #[command(flatten)]
        database: commands::bss::DatabaseArgs,
        #[command(subcommand)]
        command: commands::inventory::InventoryCommand,
    },
    /// Billing accounts (TMF666): create from JSON, show, list, set the credit limit,
    /// suspend, resume, close; the engine follows through the outbox.
    BillingAccount {
        #[command(flatten)]
        database: commands::bss::DatabaseArgs,
        #[command(subcommand)]
        command: commands::bss::BillingAccountCommand,
    },
    /// Bill every hierarchy whose cycle closes in a month (draft invoices, then numbers);
    /// rerunnable, nothing billed twice; `show` a run, `export-gl` its journal.
    BillRun(commands::bill_run::BillRunArgs),
    /// An account's itemised usage (and other ledger entries) in a period, as CSV or JSON.
    Usage(commands::usage::UsageArgs),
    /// Show, top up, adjust and refund balances.
    Balance {
        #[command(flatten)]
        engine: commands::engine_setup::EngineArgs,
        #[command(subcommand)]
        command: commands::account::BalanceCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TariffCommand {
    /// Validate plan files and report every problem with file, line and field.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Compile a plan into its binary form, loadable without recompiling.
    Compile {
        file: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Tariff(TariffCommand::Check { files }) => commands::tariff::check(&files),
        Command::Tariff(TariffCommand::Compile { file, output }) => commands::tariff::compile(&file, &output),
        Command::Rate { plan } => commands::rate::run(&plan),
        Command::Serve(args) => commands::serve::run(&args),
        Command::Demo(args) => commands::demo::run(&args),
        Command::Load(command) => commands::load::run(command),
        Command::Mediate(args) => commands::mediate::run(&args),
        Command::Rerate(args) => commands::rerate::run(&args),
        Command::Reshard(args) => commands::reshard::run(&args),
        Command::Usage(args) => commands::usage::run(&args),
        Command::BillRun(args) => commands::bill_run::run(&args),
        Command::Token { database, command } => commands::bss::token(&database, command),
        Command::Offering { database, command } => commands::bss::offering(&database, command),
        Command::Customer { database, command } => commands::bss::customer(&database, command),
        Command::Order { database, command } => commands::order::run(&database, command),
        Command::Payment { database, command } => commands::payment::payment(&database, command),
        Command::Receivables { database, command } => commands::payment::receivables(&database, command),
        Command::Import { database, command } => commands::import::run(&database, command),
        Command::Inventory { database, command } => commands::inventory::run(&database, command),
        Command::Alarm { database, command } => commands::alarm::run(&database, command),
        Command::Threshold { database, command } => commands::threshold::run(&database, command),
        Command::BillingAccount { database, command } => commands::bss::billing_account(&database, command),
        Command::Archive { engine, command } => commands::archive::run(&engine, command),
        Command::Account { engine, command } => commands::account::account(&engine, command),
        Command::Subscription { engine, command } => commands::account::subscription(&engine, command),
        Command::Balance { engine, command } => commands::account::balance(&engine, command),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tollgate: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
