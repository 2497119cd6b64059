//! Writes the sample invoice (the tests' hierarchy invoice, 40 itemised calls, EUR) as a
//! PDF: `cargo run -p tollgate-invoice-pdf --example render_sample -- docs/invoice-sample.pdf`.
//! `docs/invoice-sample.png` is its page 1: `pdftoppm -r 80 -f 1 -l 1 -png -singlefile
//! docs/invoice-sample.pdf docs/invoice-sample`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::ExitCode;

use tollgate_invoice_pdf::{render, Template};

fn main() -> ExitCode {
    let Some(out) = std::env::args().nth(1) else {
        eprintln!("usage: render_sample OUT.pdf");
        return ExitCode::from(2);
    };
    let mut template = Template::default();
    template.logo_text = "TOLLGATE TELECOM".to_owned();
    let pdf = match render(&common::invoice("EUR", 40), &common::meta(Some("INV-2028-000042")), &template) {
        Ok(pdf) => pdf,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = std::fs::write(&out, &pdf) {
        eprintln!("{out}: {error}");
        return ExitCode::FAILURE;
    }
    println!("{out}: {} bytes", pdf.len());
    ExitCode::SUCCESS
}
