//! Placeholder: see README.md for what will live in this crate.
#![forbid(unsafe_code)]
