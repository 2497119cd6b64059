//! `tollgate tariff check` and `tollgate tariff compile`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use tollgate_tariffs::{compile_file, store, CompiledPlan, TariffError};

pub(crate) fn check(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut failed = 0;
    for file in files {
        let started = Instant::now();
        match compile_file(file) {
            Ok(plan) => println!("ok: {} ({}) in {:.0?}", file.display(), summary(&plan), started.elapsed()),
            Err(err) => {
                failed += 1;
                report(&err);
            }
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub(crate) fn compile(file: &Path, output: &Path) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let plan = match compile_file(file) {
        Ok(plan) => plan,
        Err(err) => {
            report(&err);
            return Ok(ExitCode::FAILURE);
        }
    };
    store::save(&plan, output).with_context(|| format!("writing {}", output.display()))?;
    let size = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    println!(
        "compiled {} → {} ({size} bytes; {}) in {:.0?}",
        file.display(),
        output.display(),
        summary(&plan),
        started.elapsed()
    );
    Ok(ExitCode::SUCCESS)
}

fn summary(plan: &CompiledPlan) -> String {
    format!(
        "plan {} v{}, {} services, {} destinations, {} prefixes, {} bands, {} rates, {} allowances, {} charges",
        plan.id,
        plan.version,
        plan.services.len(),
        plan.destinations.len(),
        plan.prefix_count(),
        plan.bands.len(),
        plan.rates.len(),
        plan.allowances.len(),
        plan.charges.len()
    )
}

/// Prints every problem of a rejected plan on its own line (stderr).
fn report(err: &TariffError) {
    if err.problems().is_empty() {
        eprintln!("error: {err}");
    }
    for problem in err.problems() {
        eprintln!("error: {problem}");
    }
}
