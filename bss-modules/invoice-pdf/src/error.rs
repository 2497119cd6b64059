//! The invoice documents' one error type. A template is refused naming the key or field
//! and what is wrong with it; a font naming its file; an invoice that cannot be printed
//! (an unknown currency) naming the field. Nothing here panics on bad input.

use std::path::PathBuf;

/// Everything rendering an invoice document can refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvoicePdfError {
    /// The template's TOML does not parse, or has a key it does not know (named in the
    /// reason, with the line).
    #[error("template: {reason}")]
    TemplateSyntax { reason: String },
    /// A template field is out of range or malformed.
    #[error("template field {field}: {reason}")]
    TemplateField { field: String, reason: String },
    /// A font file cannot be read or is not a TrueType/OpenType font.
    #[error("font {path}: {reason}")]
    Font { path: PathBuf, reason: String },
    /// A document field is empty, too long or malformed.
    #[error("document {field}: {reason}")]
    Document { field: String, reason: String },
    /// The invoice cannot be printed as it is (an unknown currency, an amount beyond
    /// its currency's decimals).
    #[error(transparent)]
    Billing(#[from] tollgate_billing::BillingError),
    /// The document would have more pages than [`crate::MAX_PAGES`].
    #[error("the document would have more than {limit} pages")]
    TooManyPages { limit: usize },
    /// The PDF writer refused the document.
    #[error("writing the PDF: {reason}")]
    Pdf { reason: String },
}

impl InvoicePdfError {
    pub(crate) fn field(field: impl Into<String>, reason: impl Into<String>) -> InvoicePdfError {
        InvoicePdfError::TemplateField { field: field.into(), reason: reason.into() }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = InvoicePdfError> = std::result::Result<T, E>;
