//! `tollgate inventory`: the resource inventory on the store. `number-range load|list`,
//! `sim load|batches`, `element create`, `list` and `show`. Loading a range or a SIM
//! vendor file is the CLI's alone (a file on the operator's machine, and for SIMs the key
//! that seals their keys, `--sim-key-file`); everything goes through the same
//! `tollgate_inventory::Inventory` as the API, audited as `cli:<user>`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use jiff::Timestamp;
use tollgate_inventory::{
    parse_plmn, GoldenRule, GoldenRules, Inventory, InventoryConfig, KeySealer, NumberRange, RangeLoad,
    MAX_SIM_FILE_BYTES,
};

use super::bss::{actor, runtime, DatabaseArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum InventoryCommand {
    /// MSISDN number ranges: load one (with golden numbers), list them with their counts.
    #[command(subcommand)]
    NumberRange(RangeCommand),
    /// SIM cards: load a vendor's output file, list the batches loaded.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Network elements (HSS/UDM, PCRF/PCF, SMSC, gateways).
    #[command(subcommand)]
    Element(ElementCommand),
    /// List resources (id, kind, state, name), optionally narrowed.
    List(ListArgs),
    /// Show one resource as JSON (msisdn-…, sim-…, ne-…).
    Show { id: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RangeCommand {
    /// Load a range: FIRST..LAST, or --prefix with --start and --end.
    Load(RangeArgs),
    /// List the ranges with how many of their numbers are in each state.
    List,
}

#[derive(Debug, Args)]
pub(crate) struct RangeArgs {
    /// FIRST..LAST (E.164 digits, both included; at most 10,000,000 numbers).
    #[arg(conflicts_with_all = ["prefix", "start", "end"], required_unless_present = "prefix")]
    range: Option<String>,
    /// The digits every number starts with.
    #[arg(long, requires_all = ["start", "end"])]
    prefix: Option<String>,
    /// The first suffix after the prefix (leading zeros count).
    #[arg(long)]
    start: Option<String>,
    /// The last suffix after the prefix (as long as --start).
    #[arg(long)]
    end: Option<String>,
    /// What the range is called (default: FIRST..LAST).
    #[arg(long)]
    name: Option<String>,
    /// A golden rule, PATTERN=CUR:AMOUNT (`*AAAA=EUR:50`, `447700900123=EUR:250`); repeatable.
    #[arg(long = "golden")]
    golden: Vec<String>,
    /// A file of golden rules, one per line (`#` starts a comment).
    #[arg(long)]
    golden_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SimCommand {
    /// Load a SIM vendor's output file (the format is in oss-adapters/inventory/README.md).
    Load {
        file: PathBuf,
        /// A file holding the 256-bit key (64 hex digits) that seals the cards' Ki and OPc
        /// at rest; required when the file has KI or OPC columns.
        #[arg(long)]
        sim_key_file: Option<PathBuf>,
        /// The home network (MCC and MNC, 5 or 6 digits) every IMSI must belong to.
        #[arg(long)]
        plmn: Option<String>,
    },
    /// List the batches loaded.
    Batches,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ElementCommand {
    /// Create a network element from a TMF639 Resource JSON file.
    Create {
        #[arg(long)]
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// msisdn, sim or element.
    #[arg(long)]
    kind: Option<String>,
    /// available, reserved, assigned, quarantine or retired.
    #[arg(long)]
    state: Option<String>,
    /// golden or standard (MSISDNs), or an element type (HSS, PCF, …).
    #[arg(long)]
    category: Option<String>,
    /// Only this range's numbers.
    #[arg(long)]
    range: Option<String>,
    /// Only this batch's SIM cards.
    #[arg(long)]
    batch: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 1000)]
    limit: u64,
}

pub(crate) fn read(path: &Path, max: usize) -> anyhow::Result<String> {
    let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    anyhow::ensure!(size <= max as u64, "{}: {size} bytes, at most {max}", path.display());
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).map_err(|error| {
        let at = error.utf8_error().valid_up_to();
        let line = error.as_bytes()[..at].iter().filter(|byte| **byte == b'\n').count() + 1;
        anyhow::anyhow!("{}: line {line}, byte {at}: not UTF-8 text", path.display())
    })
}

fn golden_rules(args: &RangeArgs) -> anyhow::Result<GoldenRules> {
    let mut rules = Vec::new();
    for (index, text) in args.golden.iter().enumerate() {
        rules.push(GoldenRule::parse(&format!("--golden[{index}]"), text)?);
    }
    if let Some(path) = &args.golden_file {
        let text = read(path, 16 * 1024 * 1024)?;
        for (index, line) in text.lines().enumerate() {
            let line_text = line.split('#').next().unwrap_or("").trim();
            if !line_text.is_empty() {
                rules.push(GoldenRule::parse(&format!("{}:{}", path.display(), index + 1), line_text)?);
            }
        }
    }
    Ok(GoldenRules::new(rules, "golden")?)
}

fn number_range(args: &RangeArgs) -> anyhow::Result<NumberRange> {
    Ok(match (&args.range, &args.prefix, &args.start, &args.end) {
        (Some(range), _, _, _) => NumberRange::parse(range)?,
        (None, Some(prefix), Some(start), Some(end)) => NumberRange::from_prefix(prefix, start, end)?,
        _ => anyhow::bail!("give FIRST..LAST, or --prefix with --start and --end"),
    })
}

fn list_filters(args: &ListArgs) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut filters = Vec::new();
    if let Some(kind) = &args.kind {
        let spec = match kind.as_str() {
            "msisdn" => "MSISDN",
            "sim" => "SIMCard",
            "element" => "NetworkElement",
            other => anyhow::bail!("--kind {other:?}: one of msisdn, sim, element"),
        };
        filters.push(("resourceSpecification.id", spec.to_owned()));
    }
    for (name, value) in
        [("state", &args.state), ("category", &args.category), ("rangeId", &args.range), ("batchId", &args.batch)]
    {
        if let Some(value) = value {
            filters.push((name, value.clone()));
        }
    }
    Ok(filters)
}

pub(crate) fn run(database: &DatabaseArgs, command: InventoryCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let store = database.open().await?;
        let inventory = Inventory::new(store.clone(), InventoryConfig::default());
        let now = Timestamp::now();
        let shown = match command {
            InventoryCommand::NumberRange(RangeCommand::Load(args)) => {
                let range = number_range(&args)?;
                let name = args.name.clone().unwrap_or_else(|| format!("{}..{}", range.first, range.last));
                let load = RangeLoad { name, range, golden: golden_rules(&args)? };
                let row = inventory.load_number_range(&actor(), &load, now).await?;
                Some(serde_json::json!({"id": row.id, "name": row.name, "first": row.first.to_string(),
                    "last": row.last.to_string(), "numbers": row.last - row.first + 1, "goldenNumbers": row.golden_count}))
            }
            InventoryCommand::NumberRange(RangeCommand::List) => {
                let mut offset = 0;
                loop {
                    let ranges = store.number_ranges(offset, 1000).await?;
                    for range in &ranges {
                        let counts = store.number_range_counts(&range.id, now).await?;
                        let counts: Vec<String> = counts.iter().map(|(state, n)| format!("{state} {n}")).collect();
                        println!(
                            "{}\t{}\t{}..{}\tgolden {}\t{}",
                            range.id,
                            range.name,
                            range.first,
                            range.last,
                            range.golden_count,
                            counts.join(", ")
                        );
                    }
                    if ranges.len() < 1000 {
                        break;
                    }
                    offset += 1000;
                }
                None
            }
            InventoryCommand::Sim(SimCommand::Load { file, sim_key_file, plmn }) => {
                let text = read(&file, MAX_SIM_FILE_BYTES)?;
                let sealer = match &sim_key_file {
                    Some(path) => Some(KeySealer::from_hex(&read(path, 1024)?).with_context(|| path.display().to_string())?),
                    None => None,
                };
                let plmn = plmn.as_deref().map(parse_plmn).transpose()?;
                let batch = inventory
                    .load_sim_file(&actor(), &text, plmn.as_deref(), sealer.as_ref(), now)
                    .await
                    .with_context(|| file.display().to_string())?;
                Some(serde_json::json!({"id": batch.id, "name": batch.name, "cards": batch.cards,
                    "fileSha256": batch.file_sha256, "header": batch.header}))
            }
            InventoryCommand::Sim(SimCommand::Batches) => {
                let mut offset = 0;
                loop {
                    let batches = store.sim_batches(offset, 1000).await?;
                    for batch in &batches {
                        println!("{}\t{}\t{} cards\t{}", batch.id, batch.name, batch.cards, batch.created_at);
                    }
                    if batches.len() < 1000 {
                        break;
                    }
                    offset += 1000;
                }
                None
            }
            InventoryCommand::Element(ElementCommand::Create { file }) => {
                let text = read(&file, tollgate_api::MAX_BODY_BYTES)?;
                let doc = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", file.display()))?;
                Some(inventory.create(&actor(), doc, now).await?.value)
            }
            InventoryCommand::List(args) => {
                let filters = list_filters(&args)?;
                let pairs: Vec<(&str, &str)> = filters.iter().map(|(name, value)| (*name, value.as_str())).collect();
                let mut offset = 0;
                while offset < args.limit {
                    let want = u32::try_from((args.limit - offset).min(1000)).unwrap_or(1000);
                    let page = inventory.list(pairs.iter().copied(), offset, want, now).await?;
                    for item in &page.items {
                        let field = |name: &str| item.value[name].as_str().unwrap_or("").to_owned();
                        let kind = item.value["resourceSpecification"]["id"].as_str().unwrap_or("");
                        let state = if kind == "NetworkElement" { field("resourceStatus") } else { field("state") };
                        println!("{}\t{kind}\t{state}\t{}", field("id"), field("name"));
                    }
                    offset += page.items.len() as u64;
                    if page.items.is_empty() || offset >= u64::try_from(page.total).unwrap_or(0) {
                        break;
                    }
                }
                None
            }
            InventoryCommand::Show { id } => Some(inventory.get(&id, now).await?.value),
        };
        if let Some(doc) = shown {
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
