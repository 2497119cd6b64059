//! The PDF as a reader gets it: rendered from the sample hierarchy invoice, then read back
//! with poppler's `pdftotext` (the text is real text: issuer, number, every line, the
//! total in the currency's minor units, "page X of Y" on every page), `pdfinfo` (the page
//! count) and `pdftoppm` (page 1 rasterised is an A4 page with ink on it). The fonts are
//! embedded (a `FontFile2` stream). Templates: an unknown key is refused naming it, the
//! built-in TOML is the built-in template, German labels print. The poppler tools come
//! from Debian's poppler-utils (`scripts/install-test-deps`); without them the tests fail
//! saying so.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use tollgate_invoice_pdf::{render, InvoicePdfError, Template, DEFAULT_TEMPLATE_TOML};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-invoice-pdf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir.join(name)
}

/// Runs a poppler tool, failing the test with what to install when it is missing.
fn poppler(tool: &str, args: &[&str]) -> Vec<u8> {
    let output = Command::new(tool).args(args).output().unwrap_or_else(|error| {
        panic!("{tool} could not run ({error}): install Debian's poppler-utils (scripts/install-test-deps)")
    });
    assert!(output.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// Writes `pdf` and returns its path.
fn save(pdf: &[u8], name: &str) -> PathBuf {
    let path = scratch(name);
    std::fs::write(&path, pdf).expect("write the PDF");
    path
}

fn text_of(path: &Path) -> String {
    let text = poppler("pdftotext", &["-layout", path.to_str().expect("utf-8 path"), "-"]);
    String::from_utf8(text).expect("pdftotext prints UTF-8")
}

fn pages_of(path: &Path) -> usize {
    let info = String::from_utf8(poppler("pdfinfo", &[path.to_str().expect("utf-8 path")])).expect("UTF-8");
    let line = info.lines().find(|line| line.starts_with("Pages:")).expect("pdfinfo prints Pages:");
    line["Pages:".len()..].trim().parse().expect("a page count")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[test]
fn a_hierarchy_invoice_reads_back_with_every_line_the_total_and_page_numbers() {
    let invoice = common::invoice("EUR", 120);
    let pdf = render(&invoice, &common::meta(Some("INV-2028-000042")), &Template::default()).expect("renders");
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
    assert!(contains(&pdf, b"/FontFile2"), "the TrueType fonts are not embedded");
    let path = save(&pdf, "eur.pdf");
    let text = text_of(&path);
    for expected in ["Tollgate Telecom SAS", "INV-2028-000042", "Acme Logistics GmbH", "acme-fleet-7", "FR12345678901"]
    {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
    for line in invoice.sections.iter().flat_map(|section| &section.lines) {
        assert!(text.contains(&line.description), "line {:?} missing", line.description);
    }
    // The total as the invoice has it, printed with exactly EUR's two decimals and the code
    // (under 1,000 EUR, so no thousands separator).
    let total = invoice.total("EUR").expect("EUR totals");
    assert_eq!(total.gross.scale(), 2);
    assert!(total.gross < rust_decimal::Decimal::ONE_THOUSAND, "the sample grew past 1,000 EUR");
    let printed = format!("{} EUR", total.gross);
    assert!(text.contains(&printed), "total {printed:?} missing");
    for call in [0, 59, 119] {
        assert!(text.contains(&common::call_description(call)), "usage entry {call} missing from the appendix");
    }
    let pages = pages_of(&path);
    // Page 1 (header, summary, terms), the two sections' lines (page 2 at most), and the
    // appendix: 120 rows of 15.3 pt in about 700 pt per page is 3 pages.
    assert!((4..=6).contains(&pages), "{pages} pages");
    for page in 1..=pages {
        assert!(text.contains(&format!("Page {page} of {pages}")), "page {page}'s number missing");
    }
}

#[test]
fn amounts_print_with_their_currency_minor_units() {
    for (currency, decimals) in [("JPY", 0), ("KWD", 3)] {
        let invoice = common::invoice(currency, 10);
        let pdf = render(&invoice, &common::meta(Some("INV-7")), &Template::default()).expect("renders");
        let text = text_of(&save(&pdf, &format!("{currency}.pdf")));
        let total = invoice.total(currency).expect("totals");
        let mut gross = total.gross;
        gross.rescale(decimals);
        let digits = gross.to_string();
        let (integer, fraction) = digits.split_once('.').unwrap_or((&digits, ""));
        let grouped: Vec<String> =
            integer.as_bytes().rchunks(3).rev().map(|chunk| String::from_utf8_lossy(chunk).into_owned()).collect();
        assert_eq!(fraction.len(), decimals as usize);
        let printed = match decimals {
            0 => format!("{} {currency}", grouped.join(",")),
            _ => format!("{}.{fraction} {currency}", grouped.join(",")),
        };
        assert!(text.contains(&printed), "{currency}: {printed:?} missing from:\n{text}");
    }
}

#[test]
fn page_one_rasterises_to_an_a4_page_with_ink() {
    let pdf = render(&common::invoice("EUR", 5), &common::meta(None), &Template::default()).expect("renders");
    let path = save(&pdf, "raster.pdf");
    let prefix = scratch("raster-page");
    poppler(
        "pdftoppm",
        &[
            "-r",
            "50",
            "-f",
            "1",
            "-l",
            "1",
            "-gray",
            "-singlefile",
            path.to_str().expect("utf-8"),
            prefix.to_str().expect("utf-8"),
        ],
    );
    let pgm = std::fs::read(prefix.with_extension("pgm")).expect("pdftoppm wrote the page");
    let (width, height, pixels) = parse_pgm(&pgm);
    // A4 at 50 dpi: 8.27 in × 50 = 413, 11.69 in × 50 = 585 (pdftoppm rounds up).
    assert!((413..=414).contains(&width) && (584..=585).contains(&height), "{width} × {height}");
    let dark = pixels.iter().filter(|value| **value < 128).count();
    let share = dark * 1000 / pixels.len();
    assert!(share >= 5, "page 1 is blank or nearly ({dark} dark pixels)");
    assert!(share < 300, "page 1 is mostly dark ({dark} dark pixels)");
}

/// Width, height and the grey values of a binary PGM (P5, 8 bits).
fn parse_pgm(bytes: &[u8]) -> (usize, usize, &[u8]) {
    let mut fields = Vec::new();
    let mut position = 0;
    while fields.len() < 4 {
        while bytes[position].is_ascii_whitespace() {
            position += 1;
        }
        let start = position;
        while !bytes[position].is_ascii_whitespace() {
            position += 1;
        }
        fields.push(std::str::from_utf8(&bytes[start..position]).expect("ASCII header").to_owned());
    }
    assert_eq!(fields[0], "P5", "not a binary PGM");
    assert_eq!(fields[3], "255", "not 8-bit");
    let width: usize = fields[1].parse().expect("width");
    let height: usize = fields[2].parse().expect("height");
    let pixels = &bytes[position + 1..];
    assert_eq!(pixels.len(), width * height, "truncated PGM");
    (width, height, pixels)
}

#[test]
fn a_draft_prints_the_draft_label_instead_of_a_number() {
    let pdf = render(&common::invoice("EUR", 0), &common::meta(None), &Template::default()).expect("renders");
    let text = text_of(&save(&pdf, "draft.pdf"));
    assert!(text.contains("DRAFT"), "{text}");
    assert!(!text.contains("Itemised usage"), "an invoice without itemised usage has no appendix");
}

#[test]
fn an_unknown_template_key_is_refused_naming_it() {
    let error =
        Template::parse("page_size = \"a4\"\nlogo_colour = \"#ff0000\"\n", Path::new(".")).expect_err("unknown key");
    assert!(matches!(error, InvoicePdfError::TemplateSyntax { .. }), "{error:?}");
    assert!(error.to_string().contains("logo_colour"), "{error}");
    let error = Template::parse("[labels]\ntotl = \"Total\"\n", Path::new(".")).expect_err("unknown label");
    assert!(error.to_string().contains("totl"), "{error}");
}

#[test]
fn template_values_out_of_range_are_refused_naming_the_field() {
    for (toml, field) in [
        ("margin_mm = 2.0", "margin_mm"),
        ("[fonts]\nbody_size = 90.0", "fonts.body_size"),
        ("[colours]\naccent = \"blue\"", "colours.accent"),
        ("decimal_separator = \"\"", "decimal_separator"),
        ("date_format = \"%Q\"", "date_format"),
    ] {
        let error = Template::parse(toml, Path::new(".")).expect_err(toml);
        assert!(error.to_string().contains(field), "{toml}: {error}");
    }
    let error = Template::parse("[fonts]\nregular = \"missing.ttf\"", Path::new("/nonexistent")).expect_err("no file");
    assert!(error.to_string().contains("missing.ttf"), "{error}");
    let error = Template::parse("[fonts]\nregular = \"Cargo.toml\"", Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect_err("not a font");
    assert!(matches!(error, InvoicePdfError::Font { .. }), "{error:?}");
}

#[test]
fn the_default_template_file_is_the_built_in_template() {
    let parsed = Template::parse(DEFAULT_TEMPLATE_TOML, Path::new(".")).expect("default.toml parses");
    assert_eq!(format!("{parsed:?}"), format!("{:?}", Template::default()));
}

#[test]
fn german_labels_and_a_named_font_print() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let german = std::fs::read_to_string(dir.join("templates/de.toml")).expect("de.toml");
    // The bold face as the regular one: a font the template names is read and embedded.
    let german = format!("{german}\n[fonts]\nregular = \"../fonts/DejaVuSans-Bold.ttf\"\n");
    let template = Template::parse(&german, &dir.join("templates")).expect("the German template parses");
    let invoice = common::invoice("EUR", 60);
    let pdf = render(&invoice, &common::meta(Some("RE-1")), &template).expect("renders");
    let path = save(&pdf, "de.pdf");
    let text = text_of(&path);
    for expected in ["Rechnung", "Rechnungsbetrag", "Zahlungsbedingungen", "Einzelverbindungsnachweis", "01.03.2028"] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
    let pages = pages_of(&path);
    assert!(text.contains(&format!("Seite {pages} von {pages}")), "German page numbers missing");
    let total = invoice.total("EUR").expect("EUR");
    let printed = format!("{} EUR", total.gross.to_string().replace('.', ","));
    assert!(text.contains(&printed), "{printed:?} missing");
}
