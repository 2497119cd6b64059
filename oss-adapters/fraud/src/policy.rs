//! The detectors' thresholds and what to do about a finding, one section per detector,
//! every field with a default (`Policy::default()`, the figures in the crate README) and
//! read from TOML or JSON with serde (unknown fields refused). `Policy::check` bounds
//! every field, so a policy that loads is one the detectors can run with in bounded memory.

use serde::{Deserialize, Serialize};

use crate::finding::Severity;
use crate::FraudError;

/// The most subscribers a per-subscriber detector keeps state for.
pub const MAX_SUBSCRIBERS: usize = 50_000_000;
/// The most high-cost prefixes.
pub const MAX_HIGH_COST_PREFIXES: usize = 100_000;
/// The most calls an IRSF burst can be defined with (the per-subscriber ring's size).
pub const MAX_IRSF_CALLS: usize = 256;
/// The most distinct destinations a SIM-box rule can ask for (the per-subscriber set).
pub const MAX_SIM_BOX_DESTINATIONS: usize = 1024;
/// The most cells a SIM box may use and still count as "one place".
pub const MAX_SIM_BOX_CELLS: usize = 4;
/// The most days of history read again at a start.
pub const MAX_WARMUP_DAYS: u32 = 92;
/// The longest window or bucket: 31 days.
pub const MAX_WINDOW_SECONDS: u64 = 31 * 86_400;

/// Everything the detectors need to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// The most subscribers each per-subscriber detector keeps state for; past it the least
    /// recently seen is forgotten.
    pub max_subscribers: usize,
    /// Days of recent ledger history the detectors read again, silently, when the server
    /// starts, to rebuild their state (baselines, bursts under way) before they judge new
    /// usage; from the first day of the month they fall in. 0: start empty.
    pub warmup_days: u32,
    pub usage_spike: SpikePolicy,
    pub irsf: IrsfPolicy,
    pub sim_box: SimBoxPolicy,
    pub leakage: LeakagePolicy,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            max_subscribers: 2_000_000,
            warmup_days: 14,
            usage_spike: SpikePolicy::default(),
            irsf: IrsfPolicy::default(),
            sim_box: SimBoxPolicy::default(),
            leakage: LeakagePolicy::default(),
        }
    }
}

/// The usage-spike detector: a subscriber's charged amount per bucket against an EWMA of
/// their own past buckets and an EWMA of the absolute deviation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpikePolicy {
    pub enabled: bool,
    /// The bucket usage is summed over (a day: no diurnal pattern to model).
    pub bucket_seconds: u64,
    /// The EWMA's weight of a new bucket, in (0, 1]; 2 / (span + 1), 0.133 for 14 days.
    pub alpha: f64,
    /// Buckets seen before the detector judges (the baseline's warm-up).
    pub warmup_buckets: u32,
    /// How many robust standard deviations above the baseline is a spike.
    pub z_threshold: f64,
    /// The smallest scale, minor units: a subscriber whose usage never varies is not
    /// flagged for a few cents.
    pub min_scale_minor: i64,
    /// The smallest excess over the baseline that is a spike, minor units.
    pub min_excess_minor: i64,
    pub severity: Severity,
    pub suspend: bool,
}

impl Default for SpikePolicy {
    fn default() -> SpikePolicy {
        SpikePolicy {
            enabled: true,
            bucket_seconds: 86_400,
            alpha: 2.0 / 15.0,
            warmup_buckets: 7,
            z_threshold: 6.0,
            min_scale_minor: 100,
            min_excess_minor: 2_000,
            severity: Severity::Major,
            suspend: false,
        }
    }
}

/// The IRSF detector: `min_calls` short originating calls to high-cost prefixes within
/// `window_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IrsfPolicy {
    pub enabled: bool,
    /// E.164 prefixes (digits, an optional `+`) of high-cost destinations. The defaults
    /// are ranges often abused for IRSF (international networks 881–883, Inmarsat 870,
    /// Somalia 252, Diego Garcia 246, Ascension 247, St Helena 290, Cuba 53, Latvia's
    /// premium 371 9); an operator replaces them with their own.
    pub high_cost_prefixes: Vec<String>,
    pub min_calls: usize,
    pub window_seconds: u64,
    /// A call at most this long is short (longer calls are not counted).
    pub max_call_seconds: u64,
    pub severity: Severity,
    pub suspend: bool,
}

impl Default for IrsfPolicy {
    fn default() -> IrsfPolicy {
        IrsfPolicy {
            enabled: true,
            high_cost_prefixes: ["870", "881", "882", "883", "252", "246", "247", "290", "53", "3719"]
                .map(str::to_owned)
                .to_vec(),
            min_calls: 5,
            window_seconds: 3_600,
            max_call_seconds: 120,
            severity: Severity::Critical,
            suspend: true,
        }
    }
}

/// The SIM-box detector, per subscriber and tumbling window: many originating calls to
/// many distinct destinations, (almost) nothing terminating, from at most `max_cells`
/// cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimBoxPolicy {
    pub enabled: bool,
    pub window_seconds: u64,
    pub min_originating_calls: u32,
    pub min_distinct_destinations: usize,
    /// The most terminating events per originating call, in [0, 1].
    pub max_terminating_ratio: f64,
    /// The most distinct cells (events without a cell are not counted).
    pub max_cells: usize,
    pub severity: Severity,
    pub suspend: bool,
}

impl Default for SimBoxPolicy {
    fn default() -> SimBoxPolicy {
        SimBoxPolicy {
            enabled: true,
            window_seconds: 86_400,
            min_originating_calls: 60,
            min_distinct_destinations: 40,
            max_terminating_ratio: 0.05,
            max_cells: 1,
            severity: Severity::Major,
            suspend: false,
        }
    }
}

/// The three system-wide leakage detectors, over tumbling windows of `window_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeakagePolicy {
    pub enabled: bool,
    pub window_seconds: u64,
    /// A window with fewer charging events is not judged (too few to say).
    pub min_events: u64,
    /// Unrated: at least this many unrated events …
    pub min_unrated: u64,
    /// … and at least this share of the window's events.
    pub max_unrated_ratio: f64,
    /// Zero-priced: the window's zero-priced share against its EWMA baseline; alpha and
    /// warm-up as for the usage spike, in windows.
    pub zero_priced_alpha: f64,
    pub zero_priced_warmup_windows: u32,
    pub zero_priced_z_threshold: f64,
    /// The smallest scale of the share (a share that never varies is not flagged for a
    /// hair).
    pub zero_priced_min_scale: f64,
    /// The smallest excess share over the baseline that is a spike.
    pub zero_priced_min_excess: f64,
    /// Divergence: |read − charged or rejected| / read above this, in records or in
    /// units.
    pub divergence_tolerance: f64,
    /// A window with fewer records read is not judged.
    pub divergence_min_records: u64,
    /// How long after a window's end its charged side may still arrive.
    pub divergence_settle_seconds: u64,
    pub severity: Severity,
}

impl Default for LeakagePolicy {
    fn default() -> LeakagePolicy {
        LeakagePolicy {
            enabled: true,
            window_seconds: 3_600,
            min_events: 500,
            min_unrated: 20,
            max_unrated_ratio: 0.01,
            zero_priced_alpha: 2.0 / 49.0,
            zero_priced_warmup_windows: 24,
            zero_priced_z_threshold: 6.0,
            zero_priced_min_scale: 0.005,
            zero_priced_min_excess: 0.05,
            divergence_tolerance: 0.02,
            divergence_min_records: 200,
            divergence_settle_seconds: 3_600,
            severity: Severity::Major,
        }
    }
}

fn out_of_range(field: &'static str, problem: String) -> FraudError {
    FraudError::Policy { field, problem }
}

fn check_window(field: &'static str, seconds: u64) -> Result<(), FraudError> {
    if seconds == 0 || seconds > MAX_WINDOW_SECONDS {
        return Err(out_of_range(field, format!("{seconds} is not in 1..={MAX_WINDOW_SECONDS} seconds")));
    }
    Ok(())
}

fn check_fraction(field: &'static str, value: f64, zero_allowed: bool) -> Result<(), FraudError> {
    let low_ok = if zero_allowed { value >= 0.0 } else { value > 0.0 };
    if !(low_ok && value <= 1.0) {
        let low = if zero_allowed { "[0" } else { "(0" };
        return Err(out_of_range(field, format!("{value} is not in {low}, 1]")));
    }
    Ok(())
}

fn check_positive(field: &'static str, value: f64) -> Result<(), FraudError> {
    if !(value.is_finite() && value > 0.0) {
        return Err(out_of_range(field, format!("{value} is not a positive number")));
    }
    Ok(())
}

impl Policy {
    /// Checks every field against its range, naming the first that is out of it.
    pub fn check(&self) -> Result<(), FraudError> {
        if self.max_subscribers == 0 || self.max_subscribers > MAX_SUBSCRIBERS {
            return Err(out_of_range(
                "max_subscribers",
                format!("{} is not in 1..={MAX_SUBSCRIBERS}", self.max_subscribers),
            ));
        }
        if self.warmup_days > MAX_WARMUP_DAYS {
            return Err(out_of_range("warmup_days", format!("{} is not in 0..={MAX_WARMUP_DAYS}", self.warmup_days)));
        }
        let s = &self.usage_spike;
        check_window("usage_spike.bucket_seconds", s.bucket_seconds)?;
        check_fraction("usage_spike.alpha", s.alpha, false)?;
        check_positive("usage_spike.z_threshold", s.z_threshold)?;
        if s.min_scale_minor <= 0 || s.min_excess_minor < 0 {
            return Err(out_of_range(
                "usage_spike.min_scale_minor",
                "min_scale_minor must be positive and min_excess_minor not negative".to_owned(),
            ));
        }
        let i = &self.irsf;
        check_window("irsf.window_seconds", i.window_seconds)?;
        if i.min_calls == 0 || i.min_calls > MAX_IRSF_CALLS {
            return Err(out_of_range("irsf.min_calls", format!("{} is not in 1..={MAX_IRSF_CALLS}", i.min_calls)));
        }
        if i.high_cost_prefixes.len() > MAX_HIGH_COST_PREFIXES {
            return Err(out_of_range(
                "irsf.high_cost_prefixes",
                format!("{} prefixes; at most {MAX_HIGH_COST_PREFIXES}", i.high_cost_prefixes.len()),
            ));
        }
        for prefix in &i.high_cost_prefixes {
            crate::Destination::parse(prefix)
                .map_err(|err| out_of_range("irsf.high_cost_prefixes", format!("{prefix:?}: {err}")))?;
        }
        let b = &self.sim_box;
        check_window("sim_box.window_seconds", b.window_seconds)?;
        if b.min_originating_calls == 0 {
            return Err(out_of_range("sim_box.min_originating_calls", "0 calls would flag everyone".to_owned()));
        }
        if b.min_distinct_destinations == 0 || b.min_distinct_destinations > MAX_SIM_BOX_DESTINATIONS {
            return Err(out_of_range(
                "sim_box.min_distinct_destinations",
                format!("{} is not in 1..={MAX_SIM_BOX_DESTINATIONS}", b.min_distinct_destinations),
            ));
        }
        check_fraction("sim_box.max_terminating_ratio", b.max_terminating_ratio, true)?;
        if b.max_cells == 0 || b.max_cells > MAX_SIM_BOX_CELLS {
            return Err(out_of_range(
                "sim_box.max_cells",
                format!("{} is not in 1..={MAX_SIM_BOX_CELLS}", b.max_cells),
            ));
        }
        let l = &self.leakage;
        check_window("leakage.window_seconds", l.window_seconds)?;
        check_window("leakage.divergence_settle_seconds", l.divergence_settle_seconds)?;
        if l.divergence_settle_seconds / l.window_seconds > 64 {
            return Err(out_of_range(
                "leakage.divergence_settle_seconds",
                "at most 64 windows may wait for their charged side".to_owned(),
            ));
        }
        check_fraction("leakage.max_unrated_ratio", l.max_unrated_ratio, true)?;
        check_fraction("leakage.zero_priced_alpha", l.zero_priced_alpha, false)?;
        check_positive("leakage.zero_priced_z_threshold", l.zero_priced_z_threshold)?;
        check_positive("leakage.zero_priced_min_scale", l.zero_priced_min_scale)?;
        check_fraction("leakage.zero_priced_min_excess", l.zero_priced_min_excess, true)?;
        check_positive("leakage.divergence_tolerance", l.divergence_tolerance)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_passes_its_own_check() {
        Policy::default().check().expect("defaults are in range");
    }

    #[test]
    fn a_toml_policy_overrides_some_fields_and_keeps_the_other_defaults() {
        let policy: Policy = toml::from_str(
            "max_subscribers = 1000\n[irsf]\nmin_calls = 8\nhigh_cost_prefixes = [\"+882\"]\nsuspend = false\n",
        )
        .expect("a valid policy");
        assert_eq!(policy.max_subscribers, 1000);
        assert_eq!(policy.irsf.min_calls, 8);
        assert!(!policy.irsf.suspend);
        assert_eq!(policy.irsf.window_seconds, IrsfPolicy::default().window_seconds);
        assert_eq!(policy.sim_box, SimBoxPolicy::default());
        policy.check().expect("in range");
        assert!(toml::from_str::<Policy>("[irsf]\nmin_call = 8\n").is_err(), "a misspelt field is refused");
    }

    #[test]
    fn a_json_policy_reads_too() {
        let policy: Policy =
            serde_json::from_str(r#"{"sim_box": {"max_cells": 2, "severity": "critical"}}"#).expect("a valid policy");
        assert_eq!(policy.sim_box.max_cells, 2);
        assert_eq!(policy.sim_box.severity, Severity::Critical);
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let field_of = |policy: Policy| match policy.check() {
            Err(FraudError::Policy { field, .. }) => field,
            other => panic!("expected a policy error, got {other:?}"),
        };
        let mut p = Policy::default();
        p.irsf.min_calls = MAX_IRSF_CALLS + 1;
        assert_eq!(field_of(p), "irsf.min_calls");
        let mut p = Policy::default();
        p.irsf.high_cost_prefixes.push("88x".to_owned());
        assert_eq!(field_of(p), "irsf.high_cost_prefixes");
        let mut p = Policy::default();
        p.usage_spike.alpha = f64::NAN;
        assert_eq!(field_of(p), "usage_spike.alpha");
        let mut p = Policy::default();
        p.leakage.window_seconds = 0;
        assert_eq!(field_of(p), "leakage.window_seconds");
        assert_eq!(field_of(Policy { max_subscribers: 0, ..Policy::default() }), "max_subscribers");
        let mut p = Policy::default();
        p.sim_box.max_cells = MAX_SIM_BOX_CELLS + 1;
        assert_eq!(field_of(p), "sim_box.max_cells");
    }
}
