//! `tollgate order create|show|list|cancel`: product orders (TMF622) from the shell, on the
//! store (`--database`, default the SQLite file in the data directory), through the same
//! `tollgate_orders::Orders` as the API, audited with the actor `cli:<user>`. The CLI
//! places and cancels orders; `tollgate serve`'s provisioning worker carries them out
//! (it looks for new work every second). Placing an order checks that the engine has the
//! offering's tariff plan: the plans are read from the data directory (or `--plan-file`),
//! as `serve` loads them; the engine itself is not opened.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use jiff::Timestamp;
use tollgate_engine::Plans;
use tollgate_inventory::{Inventory, InventoryConfig};
use tollgate_orders::{BoxFuture, EngineAnswer, EngineCall, EnginePort, InventoryResources, Orders};

use super::bss::{actor, runtime, DatabaseArgs};
use super::engine_setup::EngineArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum OrderCommand {
    /// Place an order from a TMF622 ProductOrder_Create JSON file; prints it as placed.
    Create {
        #[arg(long)]
        file: PathBuf,
        /// The plan files `serve` loads (default: DATA_DIR/plans, or the built-in examples).
        #[arg(long = "plan-file")]
        plans: Vec<PathBuf>,
    },
    /// Show one order as JSON.
    Show { id: String },
    /// List orders (id, state, billing account, items), optionally by state or account.
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        billing_account: Option<String>,
    },
    /// Cancel an order that has not completed: what was done is undone by the workflow.
    Cancel {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

/// The engine as the CLI knows it: the plans `serve` would load, and nothing to call (the
/// CLI places orders; `serve` runs them).
#[derive(Debug)]
pub(crate) struct PlansOnly(pub(crate) Plans);

impl EnginePort for PlansOnly {
    fn apply(&self, _call: EngineCall) -> BoxFuture<'_, EngineAnswer> {
        Box::pin(std::future::ready(EngineAnswer::Unavailable("the CLI does not run the engine".into())))
    }

    fn knows_plan(&self, plan: &str) -> bool {
        self.0.contains(plan)
    }
}

pub(crate) fn run(database: &DatabaseArgs, command: OrderCommand) -> anyhow::Result<ExitCode> {
    let plans = match &command {
        OrderCommand::Create { plans, .. } => {
            EngineArgs { plans: plans.clone(), ..EngineArgs::with_data_dir(&database.data_dir) }.load_plans()?
        }
        _ => Plans::new(),
    };
    runtime()?.block_on(async {
        let store = database.open().await?;
        let inventory = Inventory::new(store.clone(), InventoryConfig::default());
        let orders =
            Orders::new(store.clone(), Arc::new(PlansOnly(plans)), Arc::new(InventoryResources::new(inventory, None)));
        let who = tollgate_customers::Principal::admin(actor());
        let now = Timestamp::now();
        let shown = match command {
            OrderCommand::Create { file, .. } => {
                let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                let doc = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", file.display()))?;
                Some(orders.create(&who, doc, now).await?.value)
            }
            OrderCommand::Show { id } => Some(orders.get(&who, &id).await?.value),
            OrderCommand::List { state, billing_account } => {
                let mut filters: Vec<(&str, &str)> = Vec::new();
                if let Some(state) = &state {
                    filters.push(("state", state));
                }
                if let Some(account) = &billing_account {
                    filters.push(("billingAccount.id", account));
                }
                let mut offset = 0;
                loop {
                    let page = orders.list(&who, filters.iter().copied(), offset, 1000).await?;
                    for order in &page.items {
                        let field = |name: &str| order.value[name].as_str().unwrap_or("").to_owned();
                        let items = order.value["productOrderItem"].as_array().map(Vec::len).unwrap_or(0);
                        let account = order.value["billingAccount"]["id"].as_str().unwrap_or("");
                        println!("{}\t{}\t{account}\t{items} items", field("id"), field("state"));
                    }
                    offset += page.items.len() as u64;
                    if page.items.is_empty() || offset >= u64::try_from(page.total).unwrap_or(0) {
                        break;
                    }
                }
                None
            }
            OrderCommand::Cancel { id, reason } => {
                let request = serde_json::json!({"productOrder": {"id": id}, "cancellationReason": reason});
                Some(orders.cancel(&who, &request, now).await?)
            }
        };
        if let Some(doc) = shown {
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
