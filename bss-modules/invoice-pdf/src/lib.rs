//! Tollgate's invoice documents: a composed [`Invoice`](tollgate_billing::Invoice) (the
//! billing core's, kept by the store as JSON) rendered as a PDF a customer can read —
//! issuer, customer and account, period, a summary (charges by type, discounts, credits,
//! taxes by code and rate, the total per currency), the lines of each account of a
//! hierarchy, payment terms and an appendix of itemised usage — with [`render`]. What the
//! invoice does not know (who issues it, whom it is for, its number and dates) comes in a
//! [`DocumentMeta`]; how it looks and what it says in which language in a [`Template`]
//! (TOML, operator-editable). The fonts are embedded (DejaVu Sans, subset by krilla) and
//! the text is real text. This crate does file I/O only to read a template and the fonts
//! it names; the billing core stays pure.
#![forbid(unsafe_code)]

mod error;
mod face;
mod format;
mod layout;
mod render;
mod template;

pub use error::{InvoicePdfError, Result};
pub use render::{render, DocumentMeta, Party, MAX_ADDRESS_LINES, MAX_META_CHARS};
pub use template::{
    Colours, FontSettings, Labels, PageSize, Template, DEFAULT_TEMPLATE_TOML, MAX_FONT_BYTES, MAX_LABEL_CHARS,
    MAX_TEMPLATE_BYTES,
};

/// The most pages a document may have (about 50 usage entries fit a page).
pub const MAX_PAGES: usize = 10_000;
