//! The human-written tariff plan format (TOML), as read before any validation.
//!
//! Every field that validation may complain about is wrapped in [`Spanned`], so the
//! compiler can name the line it failed on. Money is written as a string (`"0.09"`)
//! so that it is parsed as an exact decimal, never through a float.

use serde::Deserialize;
use toml::Spanned;

/// The version of the tariff language this build reads.
pub const LANGUAGE_VERSION: u32 = 1;

/// A whole plan file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSource {
    /// Tariff language version; absent means [`LANGUAGE_VERSION`].
    pub format: Option<Spanned<u32>>,
    pub plan: PlanHeader,
    pub rounding: Option<RoundingSource>,
    #[serde(default)]
    pub services: Vec<Spanned<ServiceSource>>,
    #[serde(default)]
    pub destinations: Vec<Spanned<DestinationSource>>,
    /// CSV files (`prefix,destination` per line) for tables too large to keep inline.
    #[serde(default)]
    pub prefix_files: Vec<Spanned<String>>,
    pub calendar: Option<CalendarSource>,
    #[serde(default)]
    pub bands: Vec<Spanned<BandSource>>,
    #[serde(default)]
    pub rates: Vec<Spanned<RateSource>>,
    #[serde(default)]
    pub allowances: Vec<Spanned<AllowanceSource>>,
    #[serde(default)]
    pub charges: Vec<Spanned<ChargeSource>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanHeader {
    pub id: Spanned<String>,
    pub version: Spanned<u32>,
    #[serde(default)]
    pub name: String,
    pub currency: Spanned<String>,
    pub time_zone: Spanned<String>,
    /// `2026-01-01T00:00:00` (local time in `time_zone`) or with an offset / `Z`.
    pub effective_from: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundingSource {
    pub mode: Option<Spanned<String>>,
    pub decimals: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSource {
    pub name: Spanned<String>,
    /// `seconds`, `bytes`, `events` or `units`.
    pub unit: Spanned<String>,
    #[serde(default)]
    pub rating_groups: Vec<Spanned<u32>>,
    #[serde(default)]
    pub service_ids: Vec<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSource {
    pub name: Spanned<String>,
    #[serde(default)]
    pub prefixes: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSource {
    /// Local dates `YYYY-MM-DD` on which the `holiday` day's bands apply.
    #[serde(default)]
    pub holidays: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandSource {
    pub name: Spanned<String>,
    /// `mon` … `sun`, ranges such as `mon-fri`, and `holiday`.
    pub days: Spanned<Vec<String>>,
    /// `HH:MM`; absent means `00:00`.
    pub from: Option<Spanned<String>>,
    /// `HH:MM`, exclusive; absent means `24:00`. Earlier than `from` wraps past midnight.
    pub to: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSource {
    pub service: Spanned<String>,
    /// Absent: any destination (or a service that has none, such as data).
    pub destination: Option<Spanned<String>>,
    /// Absent: every band.
    pub band: Option<Spanned<String>>,
    pub connect_fee: Option<Spanned<String>>,
    #[serde(rename = "first_interval")]
    pub first_interval_units: Option<Spanned<u64>>,
    pub increment: Option<Spanned<u64>>,
    pub price: Spanned<String>,
    /// The price is for this many units (60 with seconds = a price per minute).
    pub per: Option<Spanned<u64>>,
    pub minimum_charge: Option<Spanned<String>>,
    pub maximum_charge: Option<Spanned<String>>,
    #[serde(default)]
    pub steps: Vec<Spanned<StepSource>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSource {
    /// Units into the usage from which this price applies (e.g. 60 = after the first minute).
    #[serde(rename = "from")]
    pub from_units: Spanned<u64>,
    pub price: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowanceSource {
    pub name: Spanned<String>,
    pub service: Spanned<String>,
    pub amount: Spanned<u64>,
    /// `seconds`/`minutes`/`hours`, `bytes`/`KB`/`MB`/`GB` (powers of 1024), `events`, `units`.
    pub unit: Spanned<String>,
    #[serde(default)]
    pub destinations: Vec<Spanned<String>>,
    #[serde(default)]
    pub rating_groups: Vec<Spanned<u32>>,
    #[serde(default)]
    pub bands: Vec<Spanned<String>>,
    /// Lower is consumed first.
    #[serde(default)]
    pub priority: u32,
    /// `monthly` (default), `weekly`, `daily`, `yearly` or `once`.
    pub period: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeSource {
    pub name: Spanned<String>,
    /// `recurring` or `one-off`.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub amount: Spanned<String>,
    /// Recurring only: `monthly`, `weekly`, `daily`, `yearly`.
    pub period: Option<Spanned<String>>,
    /// Recurring only: `none`, `daily` (default) or `seconds`.
    pub proration: Option<Spanned<String>>,
    /// One-off only: `activation` (default), `termination` or `manual`.
    pub trigger: Option<Spanned<String>>,
    /// Recurring only: `advance` (default) or `arrears`.
    pub billed: Option<Spanned<String>>,
}
