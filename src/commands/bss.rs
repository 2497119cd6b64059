//! The BSS commands on the store: `tollgate token create|list|revoke`,
//! `tollgate offering list|show|create|activate`,
//! `tollgate customer list|show|create|export|anonymise` and
//! `tollgate billing-account create|show|list|set-credit-limit|suspend|resume|close`. They
//! open the store directly (`--database`, default the SQLite file in the data directory)
//! and call the same `tollgate_catalogue::Catalogue` and `tollgate_customers::Customers` as
//! the API, so a rule exists once; changes are audited with the actor `cli:<user>`. What
//! a change records for the engine waits in the outbox for `tollgate serve` (which runs
//! the outbox worker whenever it has a store): the CLI does not open the engine.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use jiff::{SignedDuration, Timestamp};
use tollgate_catalogue::{Catalogue, Filter, Kind, LifecycleStatus, BASE_PATH};
use tollgate_store::{NewToken, Role, Store, StoreOptions, SQLITE_FILE_NAME};

/// Where the BSS store is.
#[derive(Debug, Clone, Args)]
pub(crate) struct DatabaseArgs {
    /// Data directory (the SQLite store is DATA_DIR/bss.sqlite3 unless --database says otherwise).
    #[arg(long, global = true, default_value = "tollgate-data")]
    pub data_dir: PathBuf,
    /// The BSS database: `postgres://…` or an SQLite file (default DATA_DIR/bss.sqlite3).
    #[arg(long, global = true)]
    pub database: Option<String>,
}

impl DatabaseArgs {
    /// The store's location.
    pub(crate) fn location(&self) -> String {
        self.database.clone().unwrap_or_else(|| self.data_dir.join(SQLITE_FILE_NAME).display().to_string())
    }

    pub(crate) async fn open(&self) -> anyhow::Result<Store> {
        self.open_with(&StoreOptions::default()).await
    }

    pub(crate) async fn open_with(&self, options: &StoreOptions) -> anyhow::Result<Store> {
        if self.database.is_none() {
            std::fs::create_dir_all(&self.data_dir).with_context(|| format!("creating {}", self.data_dir.display()))?;
        }
        Ok(Store::open_with(&self.location(), options).await?)
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create an API token and print its secret (shown this once).
    Create {
        /// admin, care, finance, read_only, partner or product_manager.
        #[arg(long)]
        role: String,
        /// What the token is for (default: the role).
        #[arg(long)]
        name: Option<String>,
        /// A partner token's root account.
        #[arg(long)]
        scope_account: Option<String>,
        /// Days until the token expires (default: never).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_in_days: Option<u32>,
    },
    /// List the tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: i64 },
}

#[derive(Debug, Subcommand)]
pub(crate) enum OfferingCommand {
    /// List product offerings, optionally by lifecycle status.
    List {
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one product offering as JSON.
    Show { id: String },
    /// Create a product offering from a TMF620 ProductOffering_Create JSON file.
    Create {
        #[arg(long)]
        file: PathBuf,
    },
    /// Activate a product offering (compiling its usage prices' tariff plans).
    Activate { id: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CustomerCommand {
    /// List customers (id, status, name), optionally by status.
    List {
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one customer as JSON.
    Show { id: String },
    /// Create a customer from a TMF629 Customer_Create JSON file.
    Create {
        #[arg(long)]
        file: PathBuf,
    },
    /// Right of access: everything kept about one customer (with its billing accounts) as JSON.
    Export { id: String },
    /// Erasure: replace the customer's personal data and clear its consent; its billing
    /// accounts and financial records stay.
    Anonymise { id: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum BillingAccountCommand {
    /// Create a billing account from a TMF666 BillingAccount_Create JSON file.
    Create {
        #[arg(long)]
        file: PathBuf,
    },
    /// Show one billing account as JSON.
    Show { id: String },
    /// List billing accounts (id, state, type, engine account id, name).
    List {
        /// Only this customer's accounts.
        #[arg(long)]
        customer: Option<String>,
        /// Only accounts in this state (Active, Suspended, Closed).
        #[arg(long)]
        state: Option<String>,
    },
    /// Set the credit limit (in the account's currency; 0 for prepaid).
    SetCreditLimit { id: String, amount: String },
    /// Suspend the account: the engine refuses its subscriptions' usage until resumed.
    Suspend { id: String },
    /// End the account's suspension.
    Resume { id: String },
    /// Close the account for good (refused while money remains, unless settled).
    Close {
        id: String,
        /// Settle the money left with a final adjustment for this reason.
        #[arg(long)]
        settle_reason: Option<String>,
    },
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

pub(crate) fn actor() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

pub(crate) fn token(database: &DatabaseArgs, command: TokenCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = database.open().await?;
        let now = Timestamp::now();
        match command {
            TokenCommand::Create { role, name, scope_account, expires_in_days } => {
                let role = Role::parse(&role).with_context(|| {
                    format!("--role {role:?}: one of admin, care, finance, read_only, partner, product_manager")
                })?;
                let name = name.unwrap_or_else(|| role.as_str().to_owned());
                let expires_at = match expires_in_days {
                    Some(days) => Some(now.checked_add(SignedDuration::from_hours(24 * i64::from(days)))?),
                    None => None,
                };
                let new = NewToken { name: &name, role, scope_account_id: scope_account.as_deref(), expires_at };
                let mut tx = store.begin().await?;
                // A partner's scope is a hierarchy: its root account, which exists (a token
                // scoped to a child or to nothing would reach nothing, silently).
                if let Some(scope) = &scope_account {
                    match tx.billing_account(scope).await? {
                        None => anyhow::bail!("--scope-account {scope}: no such billing account"),
                        Some(account) if account.value.parent_id.is_some() => anyhow::bail!(
                            "--scope-account {scope}: not a root billing account (its hierarchy's root is {})",
                            account.value.root_id
                        ),
                        Some(_) => {}
                    }
                }
                let (secret, token) = tx.create_token(new, now).await?;
                let after = serde_json::json!({"name": token.name, "role": token.role.as_str(),
                    "scopeAccountId": token.scope_account_id, "expiresAt": token.expires_at.map(|t| t.to_string())});
                let id = token.id.to_string();
                let record = tollgate_store::AuditRecord {
                    actor: &actor(),
                    action: "create",
                    entity_type: "ApiToken",
                    entity_id: &id,
                    before: None,
                    after: Some(&after),
                };
                tx.audit(record, now).await?;
                tx.commit().await?;
                eprintln!(
                    "token {} ({}, role {}) created; its secret is shown once:",
                    token.id, token.name, token.role
                );
                println!("{}", secret.expose());
            }
            TokenCommand::List => {
                for token in store.tokens().await? {
                    let state = match (token.revoked_at, token.expires_at) {
                        (Some(at), _) => format!("revoked {at}"),
                        (None, Some(at)) if at <= now => format!("expired {at}"),
                        (None, Some(at)) => format!("expires {at}"),
                        (None, None) => "valid".to_owned(),
                    };
                    let scope = token.scope_account_id.map(|s| format!(" scope {s}")).unwrap_or_default();
                    println!("{}\t{}\t{}{scope}\t{state}", token.id, token.name, token.role);
                }
            }
            TokenCommand::Revoke { id } => {
                let mut tx = store.begin().await?;
                let token = tx.revoke_token(id, now).await?;
                let entity = id.to_string();
                let after = serde_json::json!({"revokedAt": token.revoked_at.map(|t| t.to_string())});
                let record = tollgate_store::AuditRecord {
                    actor: &actor(),
                    action: "revoke",
                    entity_type: "ApiToken",
                    entity_id: &entity,
                    before: None,
                    after: Some(&after),
                };
                tx.audit(record, now).await?;
                tx.commit().await?;
                println!("token {id} revoked");
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn offering(database: &DatabaseArgs, command: OfferingCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = database.open().await?;
        let catalogue = Catalogue::new(store.clone(), BASE_PATH);
        let now = Timestamp::now();
        let shown = match command {
            OfferingCommand::List { status } => {
                let filters: Vec<(&str, &str)> = status.iter().map(|s| ("lifecycleStatus", s.as_str())).collect();
                let filter = Filter::parse(Kind::ProductOffering, filters)?;
                let mut offset = 0;
                loop {
                    let page = catalogue.list(Kind::ProductOffering, &filter, offset, 1000).await?;
                    for item in &page.items {
                        let field = |name: &str| item.value[name].as_str().unwrap_or("").to_owned();
                        println!("{}\t{}\t{}", field("id"), field("lifecycleStatus"), field("name"));
                    }
                    offset += page.items.len() as u64;
                    if page.items.is_empty() || offset >= u64::try_from(page.total).unwrap_or(0) {
                        break;
                    }
                }
                None
            }
            OfferingCommand::Show { id } => Some(catalogue.get(Kind::ProductOffering, &id).await?.value),
            OfferingCommand::Create { file } => {
                let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                let doc = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", file.display()))?;
                Some(catalogue.create(Kind::ProductOffering, doc, &actor(), now).await?.value)
            }
            OfferingCommand::Activate { id } => Some(
                catalogue.set_status(Kind::ProductOffering, &id, LifecycleStatus::Active, &actor(), now).await?.value,
            ),
        };
        if let Some(doc) = shown {
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn customer(database: &DatabaseArgs, command: CustomerCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = database.open().await?;
        let customers = tollgate_customers::Customers::new(store.clone());
        let who = tollgate_customers::Principal::admin(actor());
        let now = Timestamp::now();
        let shown = match command {
            CustomerCommand::List { status } => {
                let filters: Vec<(&str, &str)> = status.iter().map(|s| ("status", s.as_str())).collect();
                let mut offset = 0;
                loop {
                    let page = customers.list_customers(&who, filters.iter().copied(), offset, 1000).await?;
                    for item in &page.items {
                        let field = |name: &str| item.value[name].as_str().unwrap_or("").to_owned();
                        println!("{}\t{}\t{}", field("id"), field("status"), field("name"));
                    }
                    offset += page.items.len() as u64;
                    if page.items.is_empty() || offset >= u64::try_from(page.total).unwrap_or(0) {
                        break;
                    }
                }
                None
            }
            CustomerCommand::Show { id } => Some(customers.get_customer(&who, &id).await?.value),
            CustomerCommand::Create { file } => {
                let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                let doc = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", file.display()))?;
                Some(customers.create_customer(&who, doc, now).await?.value)
            }
            CustomerCommand::Export { id } => Some(customers.export_customer(&who, &id, now).await?),
            CustomerCommand::Anonymise { id } => Some(customers.anonymise_customer(&who, &id, now).await?.value),
        };
        if let Some(doc) = shown {
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn billing_account(database: &DatabaseArgs, command: BillingAccountCommand) -> anyhow::Result<ExitCode> {
    use tollgate_customers::AccountState;
    runtime()?.block_on(async {
        let store = database.open().await?;
        let customers = tollgate_customers::Customers::new(store.clone());
        let who = tollgate_customers::Principal::admin(actor());
        let now = Timestamp::now();
        let state = |id: String, state: AccountState, settle_reason: Option<String>| {
            let (customers, who) = (&customers, &who);
            async move { customers.set_account_state(who, &id, state, settle_reason.as_deref(), now).await }
        };
        let shown = match command {
            BillingAccountCommand::Create { file } => {
                let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                let doc = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", file.display()))?;
                Some(customers.create_account(&who, doc, now).await?.value)
            }
            BillingAccountCommand::Show { id } => Some(customers.get_account(&who, &id).await?.value),
            BillingAccountCommand::List { customer, state } => {
                let filters: Vec<(&str, &str)> = customer
                    .iter()
                    .map(|c| ("relatedParty.id", c.as_str()))
                    .chain(state.iter().map(|s| ("state", s.as_str())))
                    .collect();
                let mut offset = 0;
                loop {
                    let page = customers.list_accounts(&who, filters.iter().copied(), offset, 1000).await?;
                    for item in &page.items {
                        let field = |name: &str| item.value[name].as_str().unwrap_or("").to_owned();
                        let engine = item.value["engineAccountId"].as_u64().unwrap_or(0);
                        println!(
                            "{}\t{}\t{}\t{engine}\t{}",
                            field("id"),
                            field("state"),
                            field("accountType"),
                            field("name")
                        );
                    }
                    offset += page.items.len() as u64;
                    if page.items.is_empty() || offset >= u64::try_from(page.total).unwrap_or(0) {
                        break;
                    }
                }
                None
            }
            BillingAccountCommand::SetCreditLimit { id, amount } => {
                let current = customers.get_account(&who, &id).await?;
                let unit = current.value["creditLimit"]["unit"].clone();
                let patch = serde_json::json!({"creditLimit": {"unit": unit, "value": amount}});
                Some(customers.patch_account(&who, &id, &patch, current.version, now).await?.value)
            }
            BillingAccountCommand::Suspend { id } => Some(state(id, AccountState::Suspended, None).await?.value),
            BillingAccountCommand::Resume { id } => Some(state(id, AccountState::Active, None).await?.value),
            BillingAccountCommand::Close { id, settle_reason } => {
                Some(state(id, AccountState::Closed, settle_reason).await?.value)
            }
        };
        if let Some(doc) = shown {
            println!("{}", serde_json::to_string_pretty(&doc)?);
            let pending = store.outbox_counts().await?.pending;
            if pending > 0 {
                eprintln!("{pending} engine operation(s) wait in the outbox for `tollgate serve`");
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
