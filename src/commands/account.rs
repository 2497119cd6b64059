//! `tollgate account …` and `tollgate balance …`: an operator's shell access to accounts.
//! They open the data directory directly (the lock keeps a running server out).

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;
use rust_decimal::Decimal;
use tollgate_engine::{
    AccountKind, AllowanceGrant, Answer, Engine, Identity, Operation, Outcome, PlanChangeAt, Request, Target,
};

use super::engine_setup::EngineArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum AccountCommand {
    /// Create an account.
    Create {
        #[arg(long)]
        id: u64,
        #[arg(long, value_parser = parse_kind)]
        kind: AccountKind,
        #[arg(long)]
        currency: String,
        #[arg(long, default_value = "0")]
        credit_limit: Decimal,
        #[arg(long, default_value = "0")]
        balance: Decimal,
    },
    /// Subscribe an account to a plan under one or more identities (msisdn:…, imsi:…, sip:…, nai:…).
    Subscribe {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        subscription: u64,
        #[arg(long)]
        plan: String,
        #[arg(long = "identity", required = true)]
        identities: Vec<String>,
    },
    /// Show an account with its buckets.
    Show {
        #[arg(long)]
        id: u64,
    },
    /// The account's audit trail from the journal (archived segments included): creation,
    /// subscriptions, every money movement with its reason or reference, units consumed.
    History {
        #[arg(long)]
        id: u64,
    },
    /// Set the credit limit (zero for prepaid; not below what the account owes).
    CreditLimit {
        #[arg(long)]
        id: u64,
        #[arg(long, allow_hyphen_values = true)]
        credit_limit: Decimal,
    },
    /// Change how the account pays: prepaid, postpaid or hybrid, with its credit limit.
    Kind {
        #[arg(long)]
        id: u64,
        #[arg(long, value_parser = parse_kind)]
        kind: AccountKind,
        #[arg(long, default_value = "0")]
        credit_limit: Decimal,
    },
    /// Suspend the account: usage of all its subscriptions is refused until resumed.
    Suspend {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        reason: String,
    },
    /// End the account's suspension.
    Resume {
        #[arg(long)]
        id: u64,
    },
    /// Close the account (its subscriptions terminated); a reason settles what it holds.
    Close {
        #[arg(long)]
        id: u64,
        /// Settle the remaining balance with a final adjustment, for this reason.
        #[arg(long)]
        settle_reason: Option<String>,
    },
    /// The account's totals for a bill cycle: money and units by service, allowances used.
    Totals {
        #[arg(long)]
        id: u64,
        /// A time in the cycle (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SubscriptionCommand {
    /// Move to another plan now or at the account's next bill cycle.
    ChangePlan {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        plan: String,
        /// Take effect at the start of the next bill cycle instead of now.
        #[arg(long)]
        next_cycle: bool,
        /// Grant the new plan's allowances pro rata for the rest of the cycle.
        #[arg(long)]
        pro_rata: bool,
        /// Idempotency key (default: derived from the subscription and plan).
        #[arg(long)]
        key: Option<String>,
    },
    /// Stop the service (online requests refused, later records rejected as `suspended`).
    Suspend {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        key: Option<String>,
    },
    /// End a suspension.
    Resume {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        key: Option<String>,
    },
    /// End the subscription: sessions closed, identities freed, history kept.
    Terminate {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        reason: String,
    },
    /// Add, remove or replace an identity (msisdn:…, imsi:…, sip:…, nai:…).
    Identity {
        #[arg(long)]
        id: u64,
        /// The identity to add (or, with --replace, the new one).
        #[arg(long, conflicts_with = "remove")]
        add: Option<String>,
        #[arg(long)]
        remove: Option<String>,
        /// The identity --add replaces (a SIM swap, a number change).
        #[arg(long, requires = "add")]
        replace: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum BalanceCommand {
    /// Show the balance of an account or a subscriber.
    Show {
        #[arg(long, conflicts_with = "subscriber")]
        account: Option<u64>,
        #[arg(long)]
        subscriber: Option<String>,
    },
    /// Add money; the reference (voucher, payment id) makes it happen once.
    TopUp {
        #[arg(long)]
        account: u64,
        #[arg(long)]
        amount: Decimal,
        #[arg(long)]
        reference: String,
    },
    /// Correct a balance by a signed amount, with a reason kept in the journal.
    Adjust {
        #[arg(long)]
        account: u64,
        #[arg(long, allow_hyphen_values = true)]
        amount: Decimal,
        #[arg(long)]
        reason: String,
        /// Idempotency key (default: derived from account, amount and reason).
        #[arg(long)]
        key: Option<String>,
    },
    /// Add money that can be spent only inside a validity window (a bonus, promotional credit).
    Grant {
        #[arg(long)]
        account: u64,
        #[arg(long)]
        amount: Decimal,
        /// RFC 3339 time; default now.
        #[arg(long)]
        valid_from: Option<String>,
        /// RFC 3339 time.
        #[arg(long)]
        valid_until: String,
        /// Lower is spent first.
        #[arg(long, default_value_t = 10)]
        priority: u32,
        #[arg(long)]
        reference: String,
    },
    /// Give money back, with a reason.
    Refund {
        #[arg(long)]
        account: u64,
        #[arg(long)]
        amount: Decimal,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        key: Option<String>,
    },
}

fn parse_kind(text: &str) -> Result<AccountKind, String> {
    match text {
        "prepaid" => Ok(AccountKind::Prepaid),
        "postpaid" => Ok(AccountKind::Postpaid),
        "hybrid" => Ok(AccountKind::Hybrid),
        other => Err(format!("`{other}`: prepaid, postpaid or hybrid")),
    }
}

pub(crate) fn account(args: &EngineArgs, command: AccountCommand) -> anyhow::Result<ExitCode> {
    if let AccountCommand::History { id } = command {
        return history(args, id);
    }
    let engine = args.open()?;
    let keyed = |key: String, id: u64, operation| Request { key: Some(key), target: Target::Account(id), operation };
    let request = match command {
        AccountCommand::Create { id, kind, currency, credit_limit, balance } => Request {
            key: Some(format!("cli:create-account:{id}")),
            target: Target::Account(id),
            operation: Operation::CreateAccount { kind, currency, credit_limit, opening_balance: balance },
        },
        AccountCommand::Subscribe { id, subscription, plan, identities } => {
            let mut parsed = Vec::with_capacity(identities.len());
            for identity in &identities {
                match Identity::parse(identity) {
                    Some(identity) => parsed.push(identity),
                    None => bail!("--identity `{identity}`: use msisdn:DIGITS, imsi:DIGITS, sip:URI or nai:USER@REALM"),
                }
            }
            Request {
                key: Some(format!("cli:subscribe:{subscription}")),
                target: Target::Account(id),
                operation: Operation::CreateSubscription { subscription, plan, identities: parsed },
            }
        }
        AccountCommand::Show { id } | AccountCommand::History { id } => {
            Request { key: None, target: Target::Account(id), operation: Operation::BalanceEnquiry }
        }
        AccountCommand::CreditLimit { id, credit_limit } => {
            keyed(format!("cli:credit-limit:{id}:{credit_limit}"), id, Operation::SetCreditLimit { credit_limit })
        }
        AccountCommand::Kind { id, kind, credit_limit } => keyed(
            format!("cli:kind:{id}:{}:{credit_limit}", kind.name()),
            id,
            Operation::ChangeAccountKind { kind, credit_limit },
        ),
        AccountCommand::Close { id, settle_reason } => {
            // Each attempt its own key: a refused close (a subscription still live) is
            // remembered as refused under its key.
            keyed(format!("cli:close:{id}:{}", attempt()), id, Operation::CloseAccount { settle_reason })
        }
        AccountCommand::Suspend { id, reason } => {
            keyed(format!("cli:suspend-account:{id}:{}", attempt()), id, Operation::SuspendAccount { reason })
        }
        AccountCommand::Resume { id } => {
            keyed(format!("cli:resume-account:{id}:{}", attempt()), id, Operation::ResumeAccount)
        }
        AccountCommand::Totals { id, at } => {
            let at = at.map(|text| parse_time(&text, "--at")).transpose()?;
            Request { key: None, target: Target::Account(id), operation: Operation::CycleTotals { at } }
        }
    };
    answer(engine, request)
}

pub(crate) fn subscription(args: &EngineArgs, command: SubscriptionCommand) -> anyhow::Result<ExitCode> {
    let engine = args.open()?;
    let keyed =
        |key: String, id: u64, operation| Request { key: Some(key), target: Target::Subscription(id), operation };
    let identity = |text: &str, flag: &str| match Identity::parse(text) {
        Some(identity) => Ok(identity),
        None => bail!("{flag} `{text}`: use msisdn:DIGITS, imsi:DIGITS, sip:URI or nai:USER@REALM"),
    };
    let request = match command {
        SubscriptionCommand::ChangePlan { id, plan, next_cycle, pro_rata, key } => {
            let when = if next_cycle { PlanChangeAt::NextCycle } else { PlanChangeAt::Now };
            let allowances = if pro_rata { AllowanceGrant::ProRata } else { AllowanceGrant::Full };
            let key = key.unwrap_or_else(|| format!("cli:change-plan:{id}:{plan}:{next_cycle}:{pro_rata}"));
            keyed(key, id, Operation::ChangePlan { plan, when, allowances })
        }
        SubscriptionCommand::Suspend { id, reason, key } => {
            let key = key.unwrap_or_else(|| format!("cli:suspend:{id}:{}", attempt()));
            keyed(key, id, Operation::Suspend { reason })
        }
        SubscriptionCommand::Resume { id, key } => {
            keyed(key.unwrap_or_else(|| format!("cli:resume:{id}:{}", attempt())), id, Operation::Resume)
        }
        SubscriptionCommand::Terminate { id, reason } => {
            keyed(format!("cli:terminate:{id}"), id, Operation::Terminate { reason })
        }
        SubscriptionCommand::Identity { id, add, remove, replace } => match (add, remove, replace) {
            (Some(new), None, Some(old)) => keyed(
                format!("cli:replace-identity:{id}:{old}:{new}"),
                id,
                Operation::ReplaceIdentity { old: identity(&old, "--replace")?, new: identity(&new, "--add")? },
            ),
            (Some(new), None, None) => keyed(
                format!("cli:add-identity:{id}:{new}"),
                id,
                Operation::AddIdentity { identity: identity(&new, "--add")? },
            ),
            (None, Some(old), None) => keyed(
                format!("cli:remove-identity:{id}:{old}"),
                id,
                Operation::RemoveIdentity { identity: identity(&old, "--remove")? },
            ),
            _ => bail!("give --add IDENTITY, --remove IDENTITY, or --add NEW --replace OLD"),
        },
    };
    answer(engine, request)
}

pub(crate) fn balance(args: &EngineArgs, command: BalanceCommand) -> anyhow::Result<ExitCode> {
    let engine = args.open()?;
    let request = match command {
        BalanceCommand::Show { account, subscriber } => {
            let target = match (account, subscriber) {
                (Some(account), _) => Target::Account(account),
                (None, Some(text)) => match Identity::parse(&text) {
                    Some(identity) => Target::Subscriber(identity),
                    None => bail!("--subscriber `{text}`: use msisdn:DIGITS, imsi:DIGITS, sip:URI or nai:USER@REALM"),
                },
                (None, None) => bail!("give --account or --subscriber"),
            };
            Request { key: None, target, operation: Operation::BalanceEnquiry }
        }
        BalanceCommand::TopUp { account, amount, reference } => Request {
            key: Some(format!("cli:top-up:{account}:{reference}")),
            target: Target::Account(account),
            operation: Operation::TopUp { amount, reference },
        },
        BalanceCommand::Adjust { account, amount, reason, key } => Request {
            key: Some(key.unwrap_or_else(|| format!("cli:adjust:{account}:{amount}:{reason}"))),
            target: Target::Account(account),
            operation: Operation::Adjust { amount, reason },
        },
        BalanceCommand::Grant { account, amount, valid_from, valid_until, priority, reference } => {
            let valid_from_at = match valid_from {
                Some(text) => parse_time(&text, "--valid-from")?,
                None => engine.now(),
            };
            Request {
                key: Some(format!("cli:grant:{account}:{reference}")),
                target: Target::Account(account),
                operation: Operation::GrantCredit {
                    amount,
                    valid_from_at,
                    valid_until_at: parse_time(&valid_until, "--valid-until")?,
                    priority,
                    reference,
                },
            }
        }
        BalanceCommand::Refund { account, amount, reason, key } => Request {
            key: Some(key.unwrap_or_else(|| format!("cli:refund:{account}:{amount}:{reason}"))),
            target: Target::Account(account),
            operation: Operation::Refund { amount, reason },
        },
    };
    answer(engine, request)
}

fn answer(engine: Engine, request: Request) -> anyhow::Result<ExitCode> {
    let answer: Answer = engine.execute(request)?;
    engine.shutdown()?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(if answer.outcome == Outcome::Success { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// Tells one run of a command from the next, for requests that may be asked again on
/// purpose (a suspension after a resumption, a close after a refusal).
fn attempt() -> i128 {
    jiff::Timestamp::now().as_nanosecond()
}

pub(crate) fn parse_time(text: &str, flag: &str) -> anyhow::Result<i64> {
    match text.parse::<jiff::Timestamp>() {
        Ok(timestamp) => Ok(timestamp.as_second()),
        Err(err) => bail!("{flag} `{text}`: not an RFC 3339 time ({err})"),
    }
}

/// Prints the changes the engine made to `account`, from its journal, one JSON object per
/// line.
fn history(args: &EngineArgs, account: u64) -> anyhow::Result<ExitCode> {
    let entries = tollgate_engine::history::read(&args.data_dir, args.shard_count()?, account)?;
    for entry in &entries {
        let at = jiff::Timestamp::from_second(entry.decided_at).map(|t| t.to_string()).unwrap_or_default();
        let mut line = serde_json::json!({"lsn": entry.lsn, "at": at});
        if let (Some(line), Ok(serde_json::Value::Object(event))) =
            (line.as_object_mut(), serde_json::to_value(&entry.event))
        {
            line.extend(event);
        }
        println!("{line}");
    }
    Ok(if entries.is_empty() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
