//! Saving and loading compiled plans with rkyv, so a restart does not recompile.
//!
//! File layout (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `TGPLAN\r\n` |
//! | 8 | 4 | format version ([`PLAN_FORMAT_VERSION`]) |
//! | 12 | 4 | reserved, zero |
//! | 16 | 8 | payload length in bytes |
//! | 24 | 4 | CRC-32 (IEEE) of the payload |
//! | 28 | 4 | reserved, zero |
//! | 32 | n | rkyv archive of [`CompiledPlan`], validated with bytecheck on load (and its destination trie checked) |
//!
//! Version history: 1 (12-byte prefix-trie nodes), 2 (8-byte packed nodes).
//!
//! The format version changes with every change of [`CompiledPlan`]'s layout; an older
//! file is then refused (recompile its source) rather than misread.

use std::path::Path;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::error::TariffError;
use crate::plan::CompiledPlan;

/// First eight bytes of every compiled-plan file.
pub const PLAN_MAGIC: [u8; 8] = *b"TGPLAN\r\n";
/// Layout version of the archived [`CompiledPlan`].
pub const PLAN_FORMAT_VERSION: u32 = 2;
/// Largest compiled plan accepted on load.
pub const MAX_COMPILED_BYTES: u64 = 1 << 30;
const HEADER_BYTES: usize = 32;

/// Encodes a plan into the file format above.
pub fn to_bytes(plan: &CompiledPlan) -> Vec<u8> {
    // Serializing an owned plan into memory has no failure mode but allocation, which aborts anyway.
    let payload = match rkyv::to_bytes::<rancor::Panic>(plan) {
        Ok(payload) => payload,
        Err(never) => match never {},
    };
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&PLAN_MAGIC);
    out.extend_from_slice(&PLAN_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Decodes a plan from the file format above; `file` names it in errors.
pub fn from_bytes(bytes: &[u8], file: &str) -> Result<CompiledPlan, TariffError> {
    let bad = |reason: String| TariffError::CompiledFormat { file: file.to_owned(), reason };
    if bytes.len() < HEADER_BYTES || bytes[..8] != PLAN_MAGIC {
        return Err(bad("missing the TGPLAN header".to_owned()));
    }
    let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    if version != PLAN_FORMAT_VERSION {
        return Err(bad(format!(
            "format version {version}; this build reads {PLAN_FORMAT_VERSION} (recompile the plan)"
        )));
    }
    let mut length = [0u8; 8];
    length.copy_from_slice(&bytes[16..24]);
    let length = u64::from_le_bytes(length);
    let payload = &bytes[HEADER_BYTES..];
    if length != payload.len() as u64 {
        return Err(bad(format!("header says {length} payload bytes, file has {} (truncated?)", payload.len())));
    }
    let crc = word(24);
    if crc32fast::hash(payload) != crc {
        return Err(bad("checksum mismatch (damaged file)".to_owned()));
    }
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    let mut plan = rkyv::from_bytes::<CompiledPlan, rancor::Error>(&aligned)
        .map_err(|err| bad(format!("invalid archive: {err}")))?;
    plan.prefixes = std::mem::take(&mut plan.prefixes).checked().map_err(bad)?;
    Ok(plan)
}

/// Writes a compiled plan to `path` (through a temporary file and a rename, so a crash
/// never leaves a half-written plan under the final name).
pub fn save(plan: &CompiledPlan, path: &Path) -> Result<(), TariffError> {
    let file = path.display().to_string();
    let io = |source| TariffError::Io { file: file.clone(), source };
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, to_bytes(plan)).map_err(io)?;
    std::fs::File::open(&temporary).and_then(|f| f.sync_all()).map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

/// Reads a compiled plan written by [`save`].
pub fn load(path: &Path) -> Result<CompiledPlan, TariffError> {
    let file = path.display().to_string();
    let size = std::fs::metadata(path).map_err(|source| TariffError::Io { file: file.clone(), source })?.len();
    if size > MAX_COMPILED_BYTES {
        return Err(TariffError::Limit {
            file,
            what: "compiled plan size in bytes",
            found: size,
            limit: MAX_COMPILED_BYTES,
        });
    }
    let bytes = std::fs::read(path).map_err(|source| TariffError::Io { file: file.clone(), source })?;
    from_bytes(&bytes, &file)
}

/// Loads a compiled plan, or compiles a source plan, by looking at the file's first bytes.
pub fn load_or_compile(path: &Path) -> Result<CompiledPlan, TariffError> {
    let mut head = [0u8; 8];
    let is_compiled = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| head == PLAN_MAGIC);
    if is_compiled {
        load(path)
    } else {
        crate::compile::compile_file(path)
    }
}
