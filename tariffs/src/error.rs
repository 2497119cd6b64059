//! The one error type of the tariffs crate.

use std::fmt;

/// Where in a tariff source a problem was found, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in (the plan file or a prefix file it names).
    pub file: String,
    /// 1-based line; 0 when the problem is about the file as a whole.
    pub line: u32,
    /// 1-based column; 0 when unknown.
    pub column: u32,
    /// The dotted path of the field, e.g. `rates[3].increment`.
    pub field: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": field `{}`", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Everything that can go wrong while reading, compiling, saving or loading a plan.
///
/// Rating itself never returns this type: an event that cannot be priced is an
/// [`Unrated`](crate::Unrated) outcome, not an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TariffError {
    /// The plan was refused; every problem found is listed, in file order.
    #[error("{}{}", first_problem(.problems), more_problems(.problems))]
    Rejected { problems: Vec<Problem> },

    /// A file could not be read or written.
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },

    /// A compiled-plan file is damaged, from another format version, or not a plan at all.
    #[error("{file}: not a loadable compiled plan: {reason}")]
    CompiledFormat { file: String, reason: String },

    /// A source or compiled file is larger than the configured bound.
    #[error("{file}: {what} is {found}, the limit is {limit}")]
    Limit { file: String, what: &'static str, found: u64, limit: u64 },
}

fn first_problem(problems: &[Problem]) -> String {
    problems.first().map_or_else(|| "plan rejected".to_owned(), Problem::to_string)
}

fn more_problems(problems: &[Problem]) -> String {
    match problems.len() {
        0 | 1 => String::new(),
        n => format!(" (and {} more problem{})", n - 1, if n == 2 { "" } else { "s" }),
    }
}

impl TariffError {
    /// The problems of a rejected plan; empty for other errors.
    pub fn problems(&self) -> &[Problem] {
        match self {
            TariffError::Rejected { problems } => problems,
            _ => &[],
        }
    }
}
