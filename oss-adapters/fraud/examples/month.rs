//! The detectors' benchmark (not a test): generates a seeded synthetic month of traffic
//! with injected fraud and leakage (`tollgate_fraud::synthetic`), runs all detectors over
//! it on one thread, and prints per detector the findings, precision and recall against
//! the ground truth, then the events per second the detectors sustained (the generator's
//! time excluded: it runs hour by hour, and only the detectors' loop over each hour is
//! timed).
//!
//! `cargo run --release -p tollgate-fraud --example month -- --subscribers 10000 --seed 7`
//! (also `--days N`, `--fraudsters N` per kind, `--leakage-hours N` per kind,
//! `--findings` to print every finding as a JSON line on stderr).

// Rates and ratios for the report: statistics, not money.
#![allow(clippy::float_arithmetic)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tollgate_fraud::synthetic::{score, Month, SyntheticConfig};
use tollgate_fraud::{Detectors, Finding, Policy};

fn parse_args() -> Result<(SyntheticConfig, bool), String> {
    let mut config = SyntheticConfig::default();
    let mut print_findings = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--findings" {
            print_findings = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|err| format!("{flag} {v}: {err}"));
        match flag.as_str() {
            "--subscribers" => config.subscribers = number(&value)?,
            "--seed" => config.seed = number(&value)?,
            "--days" => config.days = u32::try_from(number(&value)?).map_err(|err| err.to_string())?,
            "--fraudsters" => config.fraudsters_per_kind = u32::try_from(number(&value)?).map_err(|e| e.to_string())?,
            "--leakage-hours" => {
                config.leakage_hours_per_kind = u32::try_from(number(&value)?).map_err(|e| e.to_string())?
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok((config, print_findings))
}

fn main() -> ExitCode {
    let (config, print_findings) = match parse_args() {
        Ok(parsed) => parsed,
        Err(problem) => {
            eprintln!("month: {problem}");
            return ExitCode::from(2);
        }
    };
    let mut detectors = match Detectors::new(&Policy::default()) {
        Ok(detectors) => detectors,
        Err(err) => {
            eprintln!("month: {err}");
            return ExitCode::FAILURE;
        }
    };
    let generating = Instant::now();
    let mut month = Month::new(config.clone());
    let mut hour = Vec::new();
    let mut findings: Vec<Finding> = Vec::new();
    let mut events: u64 = 0;
    let mut detecting = Duration::ZERO;
    while month.next_hour(&mut hour) {
        let start = Instant::now();
        for event in &hour {
            findings.extend(detectors.observe(event));
        }
        detecting += start.elapsed();
        events += hour.len() as u64;
    }
    let total = generating.elapsed();
    if print_findings {
        for finding in &findings {
            eprintln!("{}", serde_json::to_string(finding).unwrap_or_default());
        }
    }
    println!(
        "synthetic month: {} subscribers, {} days, seed {}, {} fraudsters and {} leakage hours per kind",
        config.subscribers, config.days, config.seed, config.fraudsters_per_kind, config.leakage_hours_per_kind
    );
    println!(
        "{:<20} {:>8} {:>6} {:>6} {:>6} {:>10} {:>8}",
        "detector", "findings", "TP", "other", "FP", "precision", "recall"
    );
    for (kind, s) in score(month.labels(), &findings) {
        println!(
            "{:<20} {:>8} {:>6} {:>6} {:>6} {:>10.3} {:>8}",
            kind.name(),
            s.findings,
            s.true_positives,
            s.other_fraud,
            s.false_positives,
            s.precision(),
            format!("{}/{}", s.labels_found, s.labels)
        );
    }
    let seconds = detecting.as_secs_f64();
    println!(
        "events: {events}; detectors: {:.3} s on one thread = {:.0} events/s ({:.0} ns/event); generation and all: {:.1} s",
        seconds,
        events as f64 / seconds.max(1e-9),
        seconds * 1e9 / (events.max(1) as f64),
        total.as_secs_f64()
    );
    println!(
        "state: {} subscribers tracked (cap {}), {} evicted; {} divergence events late",
        detectors.subscribers(),
        Policy::default().max_subscribers,
        detectors.evicted(),
        detectors.divergence.late()
    );
    ExitCode::SUCCESS
}
