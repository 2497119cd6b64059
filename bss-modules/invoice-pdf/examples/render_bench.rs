//! PDFs rendered per second, one thread: the sample invoice (2 pages, 40 itemised calls,
//! EUR) rendered `count` times (default 500) after 20 to warm up:
//! `cargo run --release -p tollgate-invoice-pdf --example render_bench -- [count]`.
//! A benchmark, not a test: it prints the figure and asserts nothing about time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::Instant;

use tollgate_invoice_pdf::{render, Template};

fn main() -> ExitCode {
    let count: u32 = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(500);
    let invoice = common::invoice("EUR", 40);
    let meta = common::meta(Some("INV-2028-000042"));
    let template = Template::default();
    let mut bytes = 0usize;
    for _ in 0..20 {
        if let Err(error) = render(&invoice, &meta, &template) {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    }
    let started = Instant::now();
    for _ in 0..count {
        match render(&invoice, &meta, &template) {
            Ok(pdf) => bytes += pdf.len(),
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let elapsed = started.elapsed();
    #[allow(clippy::float_arithmetic)] // a rate for the report, not money
    let per_second = f64::from(count) / elapsed.as_secs_f64();
    println!(
        "{count} PDFs (2 pages each, {} bytes on average) in {:.3} s: {per_second:.1} PDFs/s on one thread",
        bytes / count.max(1) as usize,
        elapsed.as_secs_f64()
    );
    ExitCode::SUCCESS
}
