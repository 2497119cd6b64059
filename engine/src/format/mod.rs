//! The engine's hand-written byte formats, each beside its documentation: the compact
//! journal payloads of the bulk path ([`charges`]) and of general requests ([`effects`]),
//! and the primitives they share ([`wire`]). The journal's framing and the snapshot files
//! are documented in `crate::journal` and `crate::snapshot`; `docs/formats.md` gathers
//! them all.

pub(crate) mod charges;
pub(crate) mod effects;
pub(crate) mod wire;
