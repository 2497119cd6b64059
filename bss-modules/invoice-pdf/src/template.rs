//! The operator-editable template: a TOML file that sets the page (A4 or Letter, margins),
//! the fonts (the embedded DejaVu Sans, or TrueType files it names) and their sizes, the
//! colours, the number and date formats, whether the itemised usage appendix is printed,
//! and every text the document shows (headings, labels, payment terms, footer), so an
//! invoice can be printed in another language without code. Every field has a default
//! (`templates/default.toml` lists them all, with the built-in values); a key the
//! template does not know is refused naming it, and a value out of range naming the field.
//! Texts may use placeholders: `{number}`, `{issue_date}`, `{due_date}`, `{total}`,
//! `{issuer}`, `{account}`, and in `page` `{page}` and `{pages}`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

use crate::error::{InvoicePdfError, Result};
use crate::face::Face;

/// The largest template file read.
pub const MAX_TEMPLATE_BYTES: u64 = 1 << 20;
/// The largest font file a template may name.
pub const MAX_FONT_BYTES: u64 = 32 << 20;
/// The most characters a label or text of the template may have.
pub const MAX_LABEL_CHARS: usize = 2_000;

static REGULAR_TTF: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
static BOLD_TTF: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");

/// The template every field of a template file defaults to, as TOML with comments.
pub const DEFAULT_TEMPLATE_TOML: &str = include_str!("../templates/default.toml");

/// The paper size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PageSize {
    /// 210 × 297 mm.
    A4,
    /// 8.5 × 11 in.
    Letter,
}

impl PageSize {
    /// Width and height in points (1/72 in).
    pub fn points(self) -> (f32, f32) {
        match self {
            PageSize::A4 => (595.28, 841.89),
            PageSize::Letter => (612.0, 792.0),
        }
    }
}

/// The fonts: files (relative to the template's folder) and sizes in points.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FontSettings {
    /// A TrueType/OpenType file for the text; the embedded DejaVu Sans when absent.
    pub regular: Option<PathBuf>,
    /// A TrueType/OpenType file for headings and totals; DejaVu Sans Bold when absent.
    pub bold: Option<PathBuf>,
    /// Table rows and body text.
    pub body_size: f32,
    /// Addresses, the footer, the page numbers, the appendix.
    pub small_size: f32,
    /// Headings.
    pub heading_size: f32,
    /// The logo text and the document title.
    pub title_size: f32,
}

impl Default for FontSettings {
    fn default() -> FontSettings {
        FontSettings {
            regular: None,
            bold: None,
            body_size: 9.0,
            small_size: 7.5,
            heading_size: 12.0,
            title_size: 20.0,
        }
    }
}

/// Colours as `#rrggbb`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Colours {
    pub text: String,
    /// Secondary text: addresses, dates, the footer.
    pub muted: String,
    /// The logo text, headings and the total.
    pub accent: String,
    /// Horizontal rules.
    pub rule: String,
    /// The background of table headers.
    pub header_fill: String,
}

impl Default for Colours {
    fn default() -> Colours {
        Colours {
            text: "#1a1a1a".to_owned(),
            muted: "#5f6368".to_owned(),
            accent: "#0b4f8a".to_owned(),
            rule: "#b0b7c0".to_owned(),
            header_fill: "#e6edf5".to_owned(),
        }
    }
}

/// Every text the document prints.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Labels {
    pub title: String,
    pub draft: String,
    pub invoice_number: String,
    pub issue_date: String,
    pub due_date: String,
    pub period: String,
    pub bill_to: String,
    pub account: String,
    pub tax_id: String,
    pub summary: String,
    pub charges: String,
    pub discounts: String,
    pub credits: String,
    pub net_total: String,
    pub tax: String,
    pub total: String,
    pub section: String,
    pub description: String,
    pub line_period: String,
    pub quantity: String,
    pub tax_rate: String,
    pub net: String,
    pub gross: String,
    pub section_total: String,
    pub unused_credit: String,
    pub payment_terms: String,
    pub payment_terms_text: String,
    /// A prepaid statement's title, total and closing text in place of the invoice's
    /// (`Template::for_statement`): nothing is due on it.
    pub statement_title: String,
    pub statement_total: String,
    pub statement_terms: String,
    pub statement_terms_text: String,
    /// A credit note's title, total and closing heading in place of the invoice's
    /// (`Template::for_credit_note`); its closing text names the invoice it cancels.
    pub credit_note_title: String,
    pub credit_note_total: String,
    pub credit_note_terms: String,
    pub appendix: String,
    pub used_at: String,
    pub amount: String,
    pub continued: String,
    pub page: String,
    pub footer: String,
}

impl Default for Labels {
    fn default() -> Labels {
        let text = |value: &str| value.to_owned();
        Labels {
            title: text("Invoice"),
            draft: text("DRAFT"),
            invoice_number: text("Invoice number"),
            issue_date: text("Issue date"),
            due_date: text("Due date"),
            period: text("Billing period"),
            bill_to: text("Bill to"),
            account: text("Account"),
            tax_id: text("VAT ID"),
            summary: text("Summary"),
            charges: text("Charges"),
            discounts: text("Discounts"),
            credits: text("Credits"),
            net_total: text("Total before tax"),
            tax: text("Tax"),
            total: text("Total due"),
            section: text("Charges of account {account}"),
            description: text("Description"),
            line_period: text("Period"),
            quantity: text("Quantity"),
            tax_rate: text("Tax rate"),
            net: text("Net"),
            gross: text("Gross"),
            section_total: text("Account total"),
            unused_credit: text("Credit carried forward"),
            payment_terms: text("Payment terms"),
            payment_terms_text: text(
                "Please pay {total} by {due_date}, quoting invoice number {number}. Questions about this invoice: \
                 contact {issuer}.",
            ),
            credit_note_title: text("Credit note"),
            credit_note_total: text("Total credited"),
            credit_note_terms: text("Correction"),
            statement_title: text("Statement"),
            statement_total: text("Total charged"),
            statement_terms: text("Nothing to pay"),
            statement_terms_text: text(
                "This statement is for your records: its usage was charged to your prepaid balance as it was used, \
                 and its fees at renewal. Questions about it: contact {issuer}.",
            ),
            appendix: text("Itemised usage"),
            used_at: text("Date and time"),
            amount: text("Amount"),
            continued: text("continued"),
            page: text("Page {page} of {pages}"),
            footer: text("{issuer}"),
        }
    }
}

impl Labels {
    fn each(&self) -> [(&'static str, &str); 40] {
        [
            ("title", &self.title),
            ("draft", &self.draft),
            ("invoice_number", &self.invoice_number),
            ("issue_date", &self.issue_date),
            ("due_date", &self.due_date),
            ("period", &self.period),
            ("bill_to", &self.bill_to),
            ("account", &self.account),
            ("tax_id", &self.tax_id),
            ("summary", &self.summary),
            ("charges", &self.charges),
            ("discounts", &self.discounts),
            ("credits", &self.credits),
            ("net_total", &self.net_total),
            ("tax", &self.tax),
            ("total", &self.total),
            ("section", &self.section),
            ("description", &self.description),
            ("line_period", &self.line_period),
            ("quantity", &self.quantity),
            ("tax_rate", &self.tax_rate),
            ("net", &self.net),
            ("gross", &self.gross),
            ("section_total", &self.section_total),
            ("unused_credit", &self.unused_credit),
            ("payment_terms", &self.payment_terms),
            ("payment_terms_text", &self.payment_terms_text),
            ("credit_note_title", &self.credit_note_title),
            ("credit_note_total", &self.credit_note_total),
            ("credit_note_terms", &self.credit_note_terms),
            ("statement_title", &self.statement_title),
            ("statement_total", &self.statement_total),
            ("statement_terms", &self.statement_terms),
            ("statement_terms_text", &self.statement_terms_text),
            ("appendix", &self.appendix),
            ("used_at", &self.used_at),
            ("amount", &self.amount),
            ("continued", &self.continued),
            ("page", &self.page),
            ("footer", &self.footer),
        ]
    }
}

/// The fonts a document is set in, ready for the PDF writer (the embedded ones built once
/// per process).
#[derive(Clone)]
pub(crate) struct LoadedFonts {
    pub(crate) regular: Face,
    pub(crate) bold: Face,
}

impl fmt::Debug for LoadedFonts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoadedFonts")
    }
}

fn builtin_fonts() -> Result<LoadedFonts> {
    static BUILTIN: OnceLock<Option<LoadedFonts>> = OnceLock::new();
    BUILTIN
        .get_or_init(|| {
            Some(LoadedFonts { regular: Face::new(REGULAR_TTF.into())?, bold: Face::new(BOLD_TTF.into())? })
        })
        .clone()
        .ok_or_else(|| InvoicePdfError::Font {
            path: "(embedded DejaVu Sans)".into(),
            reason: "does not parse".to_owned(),
        })
}

fn load_font(path: &Path) -> Result<Face> {
    let error = |reason: String| InvoicePdfError::Font { path: path.to_owned(), reason };
    let size = std::fs::metadata(path).map_err(|e| error(e.to_string()))?.len();
    if size > MAX_FONT_BYTES {
        return Err(error(format!("larger than {MAX_FONT_BYTES} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    Face::new(bytes.into()).ok_or_else(|| error("not a TrueType/OpenType font".to_owned()))
}

/// An invoice document's template. [`Template::default`] is the built-in one.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Template {
    /// `a4` or `letter`.
    pub page_size: PageSize,
    /// The margin on every side, in millimetres (5 to 50).
    pub margin_mm: f32,
    /// The document's language (BCP 47, written into the PDF's metadata).
    pub language: String,
    /// The text printed as the logo, top left (empty for none).
    pub logo_text: String,
    /// Whether the itemised usage entries are printed in an appendix.
    pub include_usage_appendix: bool,
    /// The decimal separator of amounts and quantities (one character).
    pub decimal_separator: String,
    /// The thousands separator of amounts (one character, or empty for none).
    pub thousands_separator: String,
    /// How dates print, as strftime (`%Y-%m-%d`, `%d.%m.%Y`).
    pub date_format: String,
    /// How usage entries' times print, as strftime, in the invoice's time zone.
    pub time_format: String,
    pub fonts: FontSettings,
    pub colours: Colours,
    pub labels: Labels,
    #[serde(skip)]
    pub(crate) loaded: Option<LoadedFonts>,
}

impl Default for Template {
    fn default() -> Template {
        Template {
            page_size: PageSize::A4,
            margin_mm: 18.0,
            language: "en".to_owned(),
            logo_text: String::new(),
            include_usage_appendix: true,
            decimal_separator: ".".to_owned(),
            thousands_separator: ",".to_owned(),
            date_format: "%Y-%m-%d".to_owned(),
            time_format: "%Y-%m-%d %H:%M:%S".to_owned(),
            fonts: FontSettings::default(),
            colours: Colours::default(),
            labels: Labels::default(),
            loaded: None,
        }
    }
}

/// `#rrggbb` as its three bytes.
pub(crate) fn parse_colour(field: &str, text: &str) -> Result<[u8; 3]> {
    let bad = || InvoicePdfError::field(field, format!("{text:?} is not a colour of the form #rrggbb"));
    let hex = text.strip_prefix('#').filter(|hex| hex.len() == 6 && hex.is_ascii()).ok_or_else(bad)?;
    let mut out = [0u8; 3];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[index * 2..index * 2 + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn check_range(field: &str, value: f32, low: f32, high: f32) -> Result<()> {
    if !(low..=high).contains(&value) {
        return Err(InvoicePdfError::field(field, format!("{value} is not between {low} and {high}")));
    }
    Ok(())
}

fn check_separator(field: &str, value: &str, may_be_empty: bool) -> Result<()> {
    let count = value.chars().count();
    if count > 1 || (count == 0 && !may_be_empty) || value.chars().any(|c| c.is_ascii_digit()) {
        return Err(InvoicePdfError::field(field, format!("{value:?} is not a single non-digit character")));
    }
    Ok(())
}

fn check_strftime(field: &str, format: &str) -> Result<()> {
    let sample = jiff::civil::date(2024, 2, 29).at(13, 5, 9, 0);
    jiff::fmt::strtime::format(format, sample)
        .map(|_| ())
        .map_err(|e| InvoicePdfError::field(field, format!("{format:?} is not a strftime format ({e})")))
}

impl Template {
    /// The template a prepaid statement is printed with: the statement's title, total
    /// and closing text in place of the invoice's.
    pub fn for_statement(&self) -> Template {
        let mut template = self.clone();
        let labels = &mut template.labels;
        labels.title = labels.statement_title.clone();
        labels.total = labels.statement_total.clone();
        labels.payment_terms = labels.statement_terms.clone();
        labels.payment_terms_text = labels.statement_terms_text.clone();
        template
    }

    /// The template for a credit note: its title, total and closing heading (the closing
    /// text, naming the invoice it cancels, is the document's `payment_terms`).
    pub fn for_credit_note(&self) -> Template {
        let mut template = self.clone();
        let labels = &mut template.labels;
        labels.title = labels.credit_note_title.clone();
        labels.total = labels.credit_note_total.clone();
        labels.payment_terms = labels.credit_note_terms.clone();
        template
    }

    /// Parses a template's TOML; font files it names are read relative to `base_dir`.
    /// Unknown keys and values out of range are refused naming them.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Template> {
        let mut template: Template =
            toml::from_str(text).map_err(|e| InvoicePdfError::TemplateSyntax { reason: e.to_string() })?;
        template.validate()?;
        template.load_fonts(base_dir)?;
        Ok(template)
    }

    /// Reads and parses a template file (fonts relative to its folder).
    pub fn from_file(path: &Path) -> Result<Template> {
        let error =
            |reason: String| InvoicePdfError::TemplateSyntax { reason: format!("{}: {reason}", path.display()) };
        let size = std::fs::metadata(path).map_err(|e| error(e.to_string()))?.len();
        if size > MAX_TEMPLATE_BYTES {
            return Err(error(format!("larger than {MAX_TEMPLATE_BYTES} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Template::parse(&text, base).map_err(|e| match e {
            InvoicePdfError::TemplateSyntax { reason } => error(reason),
            other => other,
        })
    }

    /// Checks every field's range and form.
    pub fn validate(&self) -> Result<()> {
        check_range("margin_mm", self.margin_mm, 5.0, 50.0)?;
        for (field, size) in [
            ("fonts.body_size", self.fonts.body_size),
            ("fonts.small_size", self.fonts.small_size),
            ("fonts.heading_size", self.fonts.heading_size),
            ("fonts.title_size", self.fonts.title_size),
        ] {
            check_range(field, size, 5.0, 36.0)?;
        }
        for (field, colour) in [
            ("colours.text", &self.colours.text),
            ("colours.muted", &self.colours.muted),
            ("colours.accent", &self.colours.accent),
            ("colours.rule", &self.colours.rule),
            ("colours.header_fill", &self.colours.header_fill),
        ] {
            parse_colour(field, colour)?;
        }
        check_separator("decimal_separator", &self.decimal_separator, false)?;
        check_separator("thousands_separator", &self.thousands_separator, true)?;
        if self.decimal_separator == self.thousands_separator {
            return Err(InvoicePdfError::field("thousands_separator", "is the decimal separator"));
        }
        check_strftime("date_format", &self.date_format)?;
        check_strftime("time_format", &self.time_format)?;
        if self.language.is_empty()
            || self.language.len() > 35
            || !self.language.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(InvoicePdfError::field("language", format!("{:?} is not a language tag", self.language)));
        }
        for (field, text) in self
            .labels
            .each()
            .into_iter()
            .map(|(name, text)| (format!("labels.{name}"), text))
            .chain([("logo_text".to_owned(), self.logo_text.as_str())])
        {
            if text.chars().count() > MAX_LABEL_CHARS {
                return Err(InvoicePdfError::field(field, format!("is longer than {MAX_LABEL_CHARS} characters")));
            }
        }
        Ok(())
    }

    fn load_fonts(&mut self, base_dir: &Path) -> Result<()> {
        if self.fonts.regular.is_none() && self.fonts.bold.is_none() {
            self.loaded = None;
            return Ok(());
        }
        let builtin = builtin_fonts()?;
        let load = |path: &Option<PathBuf>, fallback: &Face| match path {
            Some(path) => load_font(&base_dir.join(path)),
            None => Ok(fallback.clone()),
        };
        self.loaded = Some(LoadedFonts {
            regular: load(&self.fonts.regular, &builtin.regular)?,
            bold: load(&self.fonts.bold, &builtin.bold)?,
        });
        Ok(())
    }

    /// The fonts to set the document in.
    pub(crate) fn fonts(&self) -> Result<LoadedFonts> {
        match &self.loaded {
            Some(fonts) => Ok(fonts.clone()),
            None => builtin_fonts(),
        }
    }
}
