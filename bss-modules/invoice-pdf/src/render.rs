//! The document itself: what goes where. Page 1 has the header (logo text, title, the
//! issuer with its VAT id, the number, dates and period), the customer and account billed,
//! the summary per currency (charges by type, discounts, credits, the total before tax,
//! each tax code with its rate and base, the total due) and the payment terms; then the
//! lines of each section (the invoiced account, then each child account of a hierarchy)
//! with their totals, credits carried forward, and, when the template wants it, an
//! appendix of the itemised usage entries in the invoice's time zone. Every page has the
//! footer and "page X of Y"; pages after the first a running header. The pages are then
//! written with krilla: glyphs with their text (extractable), fonts embedded and subset.
// Layout is coordinates in points, never money: amounts are Decimals formatted as text.
#![allow(clippy::float_arithmetic)]

use std::collections::BTreeMap;

use jiff::civil::Date;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::Fill;
use krilla::Document;
use rust_decimal::Decimal;
use tollgate_billing::{DateSpan, Invoice, Line, LineKind};

use crate::error::{InvoicePdfError, Result};
use crate::format::{self, fill};
use crate::layout::{Align, Column, Ink, Layout, Op, Palette};
use crate::template::Template;

/// The most characters a name, address line, number or terms text may have.
pub const MAX_META_CHARS: usize = 1_000;
/// The most address lines of a party.
pub const MAX_ADDRESS_LINES: usize = 8;

/// An issuer or a customer as the document names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Party {
    pub name: String,
    /// The postal address, one line each.
    pub address: Vec<String>,
    /// A VAT or tax registration number.
    pub tax_id: Option<String>,
}

/// What the invoice itself does not know: who issues it to whom, its number and dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentMeta {
    pub issuer: Party,
    pub customer: Party,
    /// The invoice number; `None` prints the template's draft label.
    pub number: Option<String>,
    pub issue_date: Date,
    pub due_date: Option<Date>,
    /// Payment terms for this invoice; the template's `payment_terms_text` when `None`.
    pub payment_terms: Option<String>,
}

fn check(field: &str, text: &str) -> Result<()> {
    if text.chars().count() > MAX_META_CHARS {
        return Err(InvoicePdfError::Document {
            field: field.to_owned(),
            reason: format!("is longer than {MAX_META_CHARS} characters"),
        });
    }
    Ok(())
}

impl Party {
    fn validate(&self, field: &str) -> Result<()> {
        check(&format!("{field}.name"), &self.name)?;
        if self.address.len() > MAX_ADDRESS_LINES {
            return Err(InvoicePdfError::Document {
                field: format!("{field}.address"),
                reason: format!("has more than {MAX_ADDRESS_LINES} lines"),
            });
        }
        for (index, line) in self.address.iter().enumerate() {
            check(&format!("{field}.address[{index}]"), line)?;
        }
        check(&format!("{field}.tax_id"), self.tax_id.as_deref().unwrap_or(""))
    }
}

impl DocumentMeta {
    /// Checks the lengths of every text.
    pub fn validate(&self) -> Result<()> {
        self.issuer.validate("issuer")?;
        self.customer.validate("customer")?;
        check("number", self.number.as_deref().unwrap_or(""))?;
        check("payment_terms", self.payment_terms.as_deref().unwrap_or(""))
    }
}

/// Everything the pages print, formatted once.
struct Texts<'a> {
    template: &'a Template,
    number: String,
    issue_date: String,
    due_date: String,
    period: String,
    total: String,
    /// Amounts in the line tables carry their currency code only when the invoice has
    /// more than one currency.
    one_currency: Option<String>,
}

impl Texts<'_> {
    fn values(&self, meta: &DocumentMeta, account: &str) -> Vec<(&'static str, String)> {
        vec![
            ("number", self.number.clone()),
            ("issue_date", self.issue_date.clone()),
            ("due_date", self.due_date.clone()),
            ("total", self.total.clone()),
            ("issuer", meta.issuer.name.clone()),
            ("account", account.to_owned()),
        ]
    }

    fn fill(&self, text: &str, meta: &DocumentMeta, account: &str) -> String {
        let values = self.values(meta, account);
        let pairs: Vec<(&str, &str)> = values.iter().map(|(name, value)| (*name, value.as_str())).collect();
        fill(text, &pairs)
    }

    fn line_amount(&self, field: &str, amount: Decimal, currency: &str) -> Result<String> {
        match &self.one_currency {
            Some(only) if only == currency => format::amount(field, amount, currency, self.template),
            _ => format::money(field, amount, currency, self.template),
        }
    }

    fn span(&self, span: DateSpan) -> Result<String> {
        let from = format::date(span.from, self.template)?;
        match span.last_day() {
            Some(last) if last != span.from => Ok(format!("{from} – {}", format::date(last, self.template)?)),
            _ => Ok(from),
        }
    }
}

/// Renders `invoice` as a PDF.
pub fn render(invoice: &Invoice, meta: &DocumentMeta, template: &Template) -> Result<Vec<u8>> {
    template.validate()?;
    meta.validate()?;
    let fonts = template.fonts()?;
    let palette = Palette::of(template)?;
    let labels = &template.labels;
    let mut totals = Vec::new();
    for (index, total) in invoice.totals.iter().enumerate() {
        totals.push(format::money(&format!("totals[{index}].currency"), total.gross, &total.currency, template)?);
    }
    let texts = Texts {
        template,
        number: meta.number.clone().unwrap_or_else(|| labels.draft.clone()),
        issue_date: format::date(meta.issue_date, template)?,
        due_date: meta.due_date.map(|date| format::date(date, template)).transpose()?.unwrap_or_default(),
        period: String::new(),
        total: totals.join(" + "),
        one_currency: match invoice.totals.as_slice() {
            [only] => Some(only.currency.clone()),
            _ => None,
        },
    };
    let texts = Texts { period: texts.span(invoice.period)?, ..texts };

    let mut layout = Layout::new(template, &fonts);
    header(&mut layout, invoice, meta, &texts)?;
    summary(&mut layout, invoice, &texts)?;
    payment_terms(&mut layout, invoice, meta, &texts)?;
    layout.running_header = format!("{} · {} {} ({})", meta.issuer.name, labels.title, texts.number, labels.continued);
    for (index, section) in invoice.sections.iter().enumerate() {
        section_lines(&mut layout, index, section, meta, &texts)?;
    }
    if template.include_usage_appendix {
        appendix(&mut layout, invoice, &texts)?;
    }
    footers(&mut layout, meta, &texts);
    write_pdf(&layout, &fonts, &palette, template, &format!("{} {}", labels.title, texts.number))
}

fn header(layout: &mut Layout<'_>, invoice: &Invoice, meta: &DocumentMeta, texts: &Texts<'_>) -> Result<()> {
    let template = texts.template;
    let labels = &template.labels;
    let (left, right, width) = (layout.left(), layout.right(), layout.content_width());
    let (title, heading, body, small) = (layout.title, layout.heading, layout.body, layout.small);
    let top = layout.y;
    layout.text_in(left, top + title, width * 0.6, title, true, Ink::Accent, Align::Left, &template.logo_text);
    layout.text_in(right, top + title, width * 0.4, title, true, Ink::Text, Align::Right, &labels.title);
    layout.y = top + title * 1.3;
    if meta.number.is_none() {
        layout.text_in(right, layout.y + heading, width * 0.4, heading, true, Ink::Accent, Align::Right, &labels.draft);
        layout.y += heading * 1.4;
    }
    layout.y += small;
    layout.rule(0.8);
    layout.y += body;

    // The issuer on the left, the invoice's references on the right.
    let column = width * 0.5;
    let start = layout.y;
    let mut y = start;
    layout.text_in(left, y + body, column, body, true, Ink::Text, Align::Left, &meta.issuer.name);
    y += body * 1.5;
    for line in &meta.issuer.address {
        layout.text_in(left, y + small, column, small, false, Ink::Muted, Align::Left, line);
        y += small * 1.4;
    }
    if let Some(tax_id) = &meta.issuer.tax_id {
        layout.text_in(
            left,
            y + small,
            column,
            small,
            false,
            Ink::Muted,
            Align::Left,
            &format!("{}: {tax_id}", labels.tax_id),
        );
        y += small * 1.4;
    }
    let mut facts =
        vec![(&labels.invoice_number, texts.number.clone()), (&labels.issue_date, texts.issue_date.clone())];
    if meta.due_date.is_some() {
        facts.push((&labels.due_date, texts.due_date.clone()));
    }
    facts.push((&labels.period, texts.period.clone()));
    let mut facts_y = start;
    let facts_left = left + column + body;
    let facts_width = right - facts_left;
    for (label, value) in facts {
        layout.text_in(facts_left, facts_y + body, facts_width * 0.45, body, false, Ink::Muted, Align::Left, label);
        layout.text_in(right, facts_y + body, facts_width * 0.55, body, true, Ink::Text, Align::Right, &value);
        facts_y += body * 1.6;
    }
    layout.y = y.max(facts_y) + body;

    // Whom it is for.
    layout.text_in(left, layout.y + small, width, small, true, Ink::Muted, Align::Left, &labels.bill_to);
    layout.y += small * 1.6;
    let customer = if meta.customer.name.is_empty() { &invoice.account_id } else { &meta.customer.name };
    layout.text_in(left, layout.y + body, width, body, true, Ink::Text, Align::Left, customer);
    layout.y += body * 1.5;
    for line in &meta.customer.address {
        layout.text_in(left, layout.y + small, width, small, false, Ink::Text, Align::Left, line);
        layout.y += small * 1.4;
    }
    if let Some(tax_id) = &meta.customer.tax_id {
        layout.text_in(
            left,
            layout.y + small,
            width,
            small,
            false,
            Ink::Muted,
            Align::Left,
            &format!("{}: {tax_id}", labels.tax_id),
        );
        layout.y += small * 1.4;
    }
    let account = format!("{}: {}", labels.account, invoice.account_id);
    layout.text_in(left, layout.y + small, width, small, false, Ink::Muted, Align::Left, &account);
    layout.y += small * 1.4 + body;
    Ok(())
}

/// The net of the charge lines per charge type, and of discounts and credits.
fn summary(layout: &mut Layout<'_>, invoice: &Invoice, texts: &Texts<'_>) -> Result<()> {
    let template = texts.template;
    let labels = &template.labels;
    layout.heading(&labels.summary, layout.row_height() * 4.0)?;
    let table = layout.table(vec![Column::new("", 70.0, Align::Left), Column::new("", 30.0, Align::Right)], false)?;
    for (index, totals) in invoice.totals.iter().enumerate() {
        let currency = &totals.currency;
        let field = format!("totals[{index}].currency");
        let money = |amount: Decimal| format::money(&field, amount, currency, template);
        let mut by_type: BTreeMap<&str, Decimal> = BTreeMap::new();
        let (mut discounts, mut credits) = (None::<Decimal>, None::<Decimal>);
        for line in invoice.sections.iter().flat_map(|section| &section.lines).filter(|line| &line.currency == currency)
        {
            match line.kind {
                LineKind::Discount => *discounts.get_or_insert(Decimal::ZERO) += line.net,
                LineKind::Credit => *credits.get_or_insert(Decimal::ZERO) += line.net,
                LineKind::Allowance => {}
                _ => *by_type.entry(line.charge_type.as_str()).or_default() += line.net,
            }
        }
        if index > 0 {
            layout.y += layout.body;
        }
        for (charge_type, net) in by_type {
            layout.row(&table, &[format!("{} · {charge_type}", labels.charges), money(net)?], false, Ink::Text)?;
        }
        if let Some(amount) = discounts {
            layout.row(&table, &[labels.discounts.clone(), money(amount)?], false, Ink::Text)?;
        }
        if let Some(amount) = credits {
            layout.row(&table, &[labels.credits.clone(), money(amount)?], false, Ink::Text)?;
        }
        layout.table_rule();
        layout.row(&table, &[labels.net_total.clone(), money(totals.net)?], true, Ink::Text)?;
        for tax in invoice.taxes.iter().filter(|tax| &tax.currency == currency) {
            let text =
                format!("{} {} {} · {}", labels.tax, tax.code, format::percent(tax.rate, template), money(tax.net)?);
            layout.row(&table, &[text, money(tax.tax)?], false, Ink::Text)?;
        }
        layout.table_rule();
        layout.row(&table, &[labels.total.clone(), money(totals.gross)?], true, Ink::Accent)?;
    }
    Ok(())
}

fn payment_terms(layout: &mut Layout<'_>, invoice: &Invoice, meta: &DocumentMeta, texts: &Texts<'_>) -> Result<()> {
    let template = texts.template;
    let labels = &template.labels;
    for (index, credit) in invoice.unused_credits.iter().enumerate() {
        let amount =
            format::money(&format!("unused_credits[{index}].currency"), credit.amount, &credit.currency, template)?;
        let text = format!("{} ({}, {}): {amount}", labels.unused_credit, credit.account_id, credit.credit_id);
        let (left, width, body) = (layout.left(), layout.content_width(), layout.body);
        layout.paragraph(left, width, body, false, Ink::Muted, &text)?;
    }
    layout.heading(&labels.payment_terms, layout.body * 3.0)?;
    let terms = meta.payment_terms.as_deref().unwrap_or(&labels.payment_terms_text);
    let text = texts.fill(terms, meta, &invoice.account_id);
    let (left, width, body) = (layout.left(), layout.content_width(), layout.body);
    layout.paragraph(left, width, body, false, Ink::Text, &text)
}

fn line_period(line: &Line, texts: &Texts<'_>) -> Result<String> {
    match line.period {
        Some(span) => texts.span(span),
        None => Ok(String::new()),
    }
}

fn section_lines(
    layout: &mut Layout<'_>,
    index: usize,
    section: &tollgate_billing::Section,
    meta: &DocumentMeta,
    texts: &Texts<'_>,
) -> Result<()> {
    let template = texts.template;
    let labels = &template.labels;
    let heading = texts.fill(&labels.section, meta, &section.account_id);
    layout.heading(&heading, layout.row_height() * 3.0)?;
    let suffix = texts.one_currency.as_ref().map(|code| format!(" ({code})")).unwrap_or_default();
    let table = layout.table(
        vec![
            Column::new(&labels.description, 30.0, Align::Left),
            Column::new(&labels.line_period, 26.0, Align::Left),
            Column::new(&labels.quantity, 11.0, Align::Right),
            Column::new(&labels.tax_rate, 9.0, Align::Right),
            Column::new(&format!("{}{suffix}", labels.net), 12.0, Align::Right),
            Column::new(&format!("{}{suffix}", labels.gross), 12.0, Align::Right),
        ],
        true,
    )?;
    for (position, line) in section.lines.iter().enumerate() {
        let field = format!("sections[{index}].lines[{position}].currency");
        let description = if line.description.is_empty() { line.charge_type.clone() } else { line.description.clone() };
        let quantity = match (line.quantity, &line.unit) {
            (Some(quantity), Some(unit)) => format!("{} {unit}", format::quantity(quantity, template)),
            (Some(quantity), None) => format::quantity(quantity, template),
            _ => String::new(),
        };
        let rate = line.tax_rate.map(|rate| format::percent(rate, template)).unwrap_or_default();
        let cells = [
            description,
            line_period(line, texts)?,
            quantity,
            rate,
            texts.line_amount(&field, line.net, &line.currency)?,
            texts.line_amount(&field, line.gross, &line.currency)?,
        ];
        layout.row(&table, &cells, false, Ink::Text)?;
    }
    layout.table_rule();
    for (position, totals) in section.totals.iter().enumerate() {
        let field = format!("sections[{index}].totals[{position}].currency");
        let cells = [
            labels.section_total.clone(),
            String::new(),
            String::new(),
            String::new(),
            texts.line_amount(&field, totals.net, &totals.currency)?,
            texts.line_amount(&field, totals.gross, &totals.currency)?,
        ];
        layout.row(&table, &cells, true, Ink::Text)?;
    }
    Ok(())
}

fn appendix(layout: &mut Layout<'_>, invoice: &Invoice, texts: &Texts<'_>) -> Result<()> {
    let template = texts.template;
    let labels = &template.labels;
    let itemised = invoice.sections.iter().any(|section| section.lines.iter().any(|line| !line.items.is_empty()));
    if !itemised {
        return Ok(());
    }
    let time_zone = jiff::tz::TimeZone::get(&invoice.time_zone).map_err(|e| InvoicePdfError::Document {
        field: "time_zone".to_owned(),
        reason: format!("{:?}: {e}", invoice.time_zone),
    })?;
    layout.new_page()?;
    layout.heading(&format!("{} ({})", labels.appendix, invoice.time_zone), layout.row_height() * 4.0)?;
    for (index, section) in invoice.sections.iter().enumerate() {
        for (position, line) in section.lines.iter().enumerate().filter(|(_, line)| !line.items.is_empty()) {
            let field = format!("sections[{index}].lines[{position}].currency");
            let title = if line.description.is_empty() { &line.charge_type } else { &line.description };
            let subheading = format!("{title} · {}: {}", labels.account, section.account_id);
            layout.y += layout.body * 0.5;
            layout.ensure(layout.row_height() * 4.0)?;
            let (left, width, body) = (layout.left(), layout.content_width(), layout.body);
            layout.text_in(left, layout.y + body, width, body, true, Ink::Text, Align::Left, &subheading);
            layout.y += body * 1.6;
            let table = layout.table(
                vec![
                    Column::new(&labels.used_at, 26.0, Align::Left),
                    Column::new(&labels.description, 44.0, Align::Left),
                    Column::new(&labels.quantity, 15.0, Align::Right),
                    Column::new(&labels.amount, 15.0, Align::Right),
                ],
                true,
            )?;
            let unit = line.unit.as_deref().unwrap_or("");
            for item in &line.items {
                let cells = [
                    format::instant(item.used_at, &time_zone, template)?,
                    item.description.clone(),
                    format!("{} {unit}", format::quantity(item.quantity, template)).trim_end().to_owned(),
                    texts.line_amount(&field, item.amount, &line.currency)?,
                ];
                layout.row(&table, &cells, false, Ink::Text)?;
            }
            layout.table_rule();
        }
    }
    Ok(())
}

fn footers(layout: &mut Layout<'_>, meta: &DocumentMeta, texts: &Texts<'_>) {
    let labels = &texts.template.labels;
    let pages = layout.pages.len();
    let footer = texts.fill(&labels.footer, meta, "");
    let (left, right, width, small) = (layout.left(), layout.right(), layout.content_width(), layout.small);
    let baseline = layout.height - layout.margin;
    let rule_y = baseline - small * 1.6;
    let mut ops = Vec::with_capacity(pages);
    for page in 1..=pages {
        let number = fill(&labels.page, &[("page", &page.to_string()), ("pages", &pages.to_string())]);
        ops.push(number);
    }
    for (index, number) in ops.into_iter().enumerate() {
        let mut footer_layout_ops = Vec::new();
        let number_width = layout.text_width(&number, small, false);
        footer_layout_ops.push(Op::Rect { x: left, y: rule_y, width, height: 0.5, ink: Ink::Rule });
        let cut = footer_cut(layout, &footer, small, width - number_width - small * 2.0);
        footer_layout_ops.push(Op::Text { x: left, y: baseline, size: small, bold: false, ink: Ink::Muted, text: cut });
        footer_layout_ops.push(Op::Text {
            x: right - number_width,
            y: baseline,
            size: small,
            bold: false,
            ink: Ink::Muted,
            text: number,
        });
        if let Some(page) = layout.pages.get_mut(index) {
            page.extend(footer_layout_ops);
        }
    }
}

/// The footer, cut to fit beside the page number.
fn footer_cut(layout: &Layout<'_>, footer: &str, size: f32, max_width: f32) -> String {
    layout.wrap(footer, size, false, max_width.max(0.0)).into_iter().next().unwrap_or_default()
}

fn write_pdf(
    layout: &Layout<'_>,
    fonts: &crate::template::LoadedFonts,
    palette: &Palette,
    template: &Template,
    title: &str,
) -> Result<Vec<u8>> {
    let pdf_error = |reason: String| InvoicePdfError::Pdf { reason };
    let mut document = Document::new();
    document.set_metadata(
        Metadata::new().title(title.to_owned()).language(template.language.clone()).creator("tollgate".to_owned()),
    );
    for ops in &layout.pages {
        let settings = PageSettings::from_wh(layout.width, layout.height)
            .ok_or_else(|| pdf_error(format!("page size {} × {}", layout.width, layout.height)))?;
        let mut page = document.start_page_with(settings);
        let mut surface = page.surface();
        for op in ops {
            let ink = match op {
                Op::Text { ink, .. } | Op::Rect { ink, .. } => *ink,
            };
            let [r, g, b] = palette.rgb(ink);
            surface.set_fill(Some(Fill {
                paint: rgb::Color::new(r, g, b).into(),
                opacity: NormalizedF32::ONE,
                rule: Default::default(),
            }));
            match op {
                Op::Text { x, y, size, bold, text, .. } => {
                    let face = if *bold { &fonts.bold } else { &fonts.regular };
                    let glyphs = face.glyphs(text);
                    surface.draw_glyphs(Point::from_xy(*x, *y), &glyphs, face.font.clone(), text, *size, false);
                }
                Op::Rect { x, y, width, height, .. } => {
                    let Some(rect) = Rect::from_xywh(*x, *y, *width, *height) else { continue };
                    let mut builder = PathBuilder::new();
                    builder.push_rect(rect);
                    if let Some(path) = builder.finish() {
                        surface.draw_path(&path);
                    }
                }
            }
        }
        surface.finish();
        page.finish();
    }
    document.finish().map_err(|e| pdf_error(format!("{e:?}")))
}
