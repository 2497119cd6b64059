//! The page model: text and filled rectangles placed in points from the page's top left,
//! collected page by page before anything is written, so the page count is known when
//! the "page X of Y" footers are added. A [`Layout`] keeps a cursor that moves down the
//! page and breaks to a new one (with a running header) when the next block does not fit;
//! a [`Table`] repeats its header row on every page it spans. Text is never wider than
//! its cell: it is cut with an ellipsis, or wrapped at spaces for paragraphs.
// Layout is coordinates in points, never money.
#![allow(clippy::float_arithmetic)]

use crate::error::{InvoicePdfError, Result};
use crate::face::Face;
use crate::template::{parse_colour, LoadedFonts, Template};
use crate::MAX_PAGES;

/// Millimetres to points.
const POINTS_PER_MM: f32 = 72.0 / 25.4;
/// Padding inside a table cell, in points.
const CELL_PADDING: f32 = 3.0;

/// Where text sits against its x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// A colour of the template's palette.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ink {
    Text,
    Muted,
    Accent,
    Rule,
    HeaderFill,
}

/// One drawing operation.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Text whose baseline starts at (x, y).
    Text { x: f32, y: f32, size: f32, bold: bool, ink: Ink, text: String },
    /// A filled rectangle from its top left.
    Rect { x: f32, y: f32, width: f32, height: f32, ink: Ink },
}

/// The template's colours, parsed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Palette {
    pub(crate) text: [u8; 3],
    pub(crate) muted: [u8; 3],
    pub(crate) accent: [u8; 3],
    pub(crate) rule: [u8; 3],
    pub(crate) header_fill: [u8; 3],
}

impl Palette {
    pub(crate) fn of(template: &Template) -> Result<Palette> {
        let colours = &template.colours;
        Ok(Palette {
            text: parse_colour("colours.text", &colours.text)?,
            muted: parse_colour("colours.muted", &colours.muted)?,
            accent: parse_colour("colours.accent", &colours.accent)?,
            rule: parse_colour("colours.rule", &colours.rule)?,
            header_fill: parse_colour("colours.header_fill", &colours.header_fill)?,
        })
    }

    pub(crate) fn rgb(&self, ink: Ink) -> [u8; 3] {
        match ink {
            Ink::Text => self.text,
            Ink::Muted => self.muted,
            Ink::Accent => self.accent,
            Ink::Rule => self.rule,
            Ink::HeaderFill => self.header_fill,
        }
    }
}

/// A table column: its title, its share of the content width, how its cells align.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) title: String,
    pub(crate) share: f32,
    pub(crate) align: Align,
}

/// A table: columns, and where each starts and how wide it is.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    columns: Vec<(Column, f32, f32)>,
    header: bool,
}

/// Pages being laid out.
pub(crate) struct Layout<'a> {
    fonts: &'a LoadedFonts,
    pub(crate) width: f32,
    pub(crate) height: f32,
    pub(crate) margin: f32,
    pub(crate) body: f32,
    pub(crate) small: f32,
    pub(crate) heading: f32,
    pub(crate) title: f32,
    pub(crate) pages: Vec<Vec<Op>>,
    /// The cursor: the top of the next block.
    pub(crate) y: f32,
    /// Printed at the top of every page after the first.
    pub(crate) running_header: String,
}

impl<'a> Layout<'a> {
    pub(crate) fn new(template: &Template, fonts: &'a LoadedFonts) -> Layout<'a> {
        let (width, height) = template.page_size.points();
        let margin = template.margin_mm * POINTS_PER_MM;
        Layout {
            fonts,
            width,
            height,
            margin,
            body: template.fonts.body_size,
            small: template.fonts.small_size,
            heading: template.fonts.heading_size,
            title: template.fonts.title_size,
            pages: vec![Vec::new()],
            y: margin,
            running_header: String::new(),
        }
    }

    fn face(&self, bold: bool) -> &Face {
        if bold {
            &self.fonts.bold
        } else {
            &self.fonts.regular
        }
    }

    pub(crate) fn left(&self) -> f32 {
        self.margin
    }

    pub(crate) fn right(&self) -> f32 {
        self.width - self.margin
    }

    pub(crate) fn content_width(&self) -> f32 {
        self.right() - self.left()
    }

    /// The lowest y a block may reach (the footer is below it).
    fn bottom(&self) -> f32 {
        self.height - self.margin - self.small * 2.5
    }

    fn push(&mut self, op: Op) {
        if let Some(page) = self.pages.last_mut() {
            page.push(op);
        }
    }

    /// Starts a new page with the running header.
    pub(crate) fn new_page(&mut self) -> Result<()> {
        if self.pages.len() >= MAX_PAGES {
            return Err(InvoicePdfError::TooManyPages { limit: MAX_PAGES });
        }
        self.pages.push(Vec::new());
        self.y = self.margin;
        if !self.running_header.is_empty() {
            let header = self.running_header.clone();
            let (left, width, small) = (self.left(), self.content_width(), self.small);
            self.text_in(left, self.y + small, width, small, false, Ink::Muted, Align::Left, &header);
            self.y += small * 1.6;
            self.rule(0.5);
            self.y += small;
        }
        Ok(())
    }

    /// Breaks the page unless `height` more points fit; true when it broke.
    pub(crate) fn ensure(&mut self, height: f32) -> Result<bool> {
        if self.y + height > self.bottom() && self.y > self.margin + self.small * 4.0 {
            self.new_page()?;
            return Ok(true);
        }
        Ok(false)
    }

    pub(crate) fn text_width(&self, text: &str, size: f32, bold: bool) -> f32 {
        self.face(bold).width(text, size)
    }

    /// Text at (x, baseline) aligned against x, cut to `max_width`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn text_in(
        &mut self,
        x: f32,
        baseline: f32,
        max_width: f32,
        size: f32,
        bold: bool,
        ink: Ink,
        align: Align,
        text: &str,
    ) {
        if text.is_empty() {
            return;
        }
        let text = self.fit(text, size, bold, max_width);
        let width = self.text_width(&text, size, bold);
        let x = match align {
            Align::Left => x,
            Align::Right => x - width,
        };
        self.push(Op::Text { x, y: baseline, size, bold, ink, text });
    }

    /// `text`, cut with an ellipsis to fit `max_width`.
    fn fit(&self, text: &str, size: f32, bold: bool, max_width: f32) -> String {
        if self.text_width(text, size, bold) <= max_width {
            return text.to_owned();
        }
        let mut chars: Vec<char> = text.chars().collect();
        while !chars.is_empty() {
            chars.pop();
            let candidate: String = chars.iter().collect::<String>() + "…";
            if self.text_width(&candidate, size, bold) <= max_width {
                return candidate;
            }
        }
        String::new()
    }

    /// `text` broken at spaces into lines no wider than `max_width` (a word wider than
    /// that is cut by [`Layout::text_in`]).
    pub(crate) fn wrap(&self, text: &str, size: f32, bold: bool, max_width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for paragraph in text.split('\n') {
            let mut line = String::new();
            for word in paragraph.split(' ').filter(|word| !word.is_empty()) {
                let candidate = if line.is_empty() { word.to_owned() } else { format!("{line} {word}") };
                if !line.is_empty() && self.text_width(&candidate, size, bold) > max_width {
                    lines.push(std::mem::replace(&mut line, word.to_owned()));
                } else {
                    line = candidate;
                }
            }
            lines.push(line);
        }
        lines
    }

    /// A paragraph at the cursor, wrapped to `width` from `x`.
    pub(crate) fn paragraph(&mut self, x: f32, width: f32, size: f32, bold: bool, ink: Ink, text: &str) -> Result<()> {
        for line in self.wrap(text, size, bold, width) {
            self.ensure(size * 1.4)?;
            self.text_in(x, self.y + size, width, size, bold, ink, Align::Left, &line);
            self.y += size * 1.4;
        }
        Ok(())
    }

    pub(crate) fn rect(&mut self, x: f32, y: f32, width: f32, height: f32, ink: Ink) {
        self.push(Op::Rect { x, y, width, height, ink });
    }

    /// A horizontal rule across the content at the cursor.
    pub(crate) fn rule(&mut self, thickness: f32) {
        let (left, width, y) = (self.left(), self.content_width(), self.y);
        self.rect(left, y, width, thickness, Ink::Rule);
    }

    /// A heading at the cursor, kept with `keep` points of what follows.
    pub(crate) fn heading(&mut self, text: &str, keep: f32) -> Result<()> {
        self.y += self.heading * 0.6;
        self.ensure(self.heading * 1.6 + keep)?;
        let (left, width, size) = (self.left(), self.content_width(), self.heading);
        self.text_in(left, self.y + size, width, size, true, Ink::Accent, Align::Left, text);
        self.y += size * 1.6;
        Ok(())
    }

    pub(crate) fn row_height(&self) -> f32 {
        self.body * 1.7
    }

    /// A table over the content width, its header printed now.
    pub(crate) fn table(&mut self, columns: Vec<Column>, header: bool) -> Result<Table> {
        let total: f32 = columns.iter().map(|column| column.share).sum();
        let mut x = self.left();
        let width = self.content_width();
        let columns = columns
            .into_iter()
            .map(|column| {
                let column_width = width * column.share / total.max(f32::EPSILON);
                let placed = (column, x, column_width);
                x += column_width;
                placed
            })
            .collect();
        let table = Table { columns, header };
        self.ensure(self.row_height() * 3.0)?;
        self.table_header(&table);
        Ok(table)
    }

    fn table_header(&mut self, table: &Table) {
        if !table.header {
            return;
        }
        let height = self.row_height();
        let (left, width, y) = (self.left(), self.content_width(), self.y);
        self.rect(left, y, width, height, Ink::HeaderFill);
        let titles: Vec<String> = table.columns.iter().map(|(column, _, _)| column.title.clone()).collect();
        self.cells(table, &titles, true, Ink::Text, self.small);
    }

    fn cells(&mut self, table: &Table, cells: &[String], bold: bool, ink: Ink, size: f32) {
        let height = self.row_height();
        let baseline = self.y + height / 2.0 + size * 0.35;
        for ((column, x, width), text) in table.columns.iter().zip(cells) {
            let inner = (width - 2.0 * CELL_PADDING).max(0.0);
            let at = match column.align {
                Align::Left => x + CELL_PADDING,
                Align::Right => x + width - CELL_PADDING,
            };
            self.text_in(at, baseline, inner, size, bold, ink, column.align, text);
        }
        self.y += height;
    }

    /// A row; on a new page the header is repeated first.
    pub(crate) fn row(&mut self, table: &Table, cells: &[String], bold: bool, ink: Ink) -> Result<()> {
        if self.ensure(self.row_height())? {
            self.table_header(table);
        }
        let size = self.body;
        self.cells(table, cells, bold, ink, size);
        Ok(())
    }

    /// A thin rule under the last row.
    pub(crate) fn table_rule(&mut self) {
        self.rule(0.5);
    }
}

impl Column {
    pub(crate) fn new(title: &str, share: f32, align: Align) -> Column {
        Column { title: title.to_owned(), share, align }
    }
}
