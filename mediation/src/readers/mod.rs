//! One folder per file format, each with the same file set: `mod.rs` (the reader),
//! and whatever decoding it needs. Every reader streams: memory stays bounded by the
//! largest record it accepts, not by the file.

pub mod ber;
pub mod csv;

use std::io::Read;

/// Longest record (CSV line or CDR) a reader accepts.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// A `Read` that fails once a line runs past `limit` bytes without a newline, so a file
/// without line breaks cannot make the CSV parser buffer it whole.
#[derive(Debug)]
pub struct LineBound<R> {
    inner: R,
    limit: usize,
    since_newline: usize,
}

impl<R: Read> LineBound<R> {
    pub fn new(inner: R, limit: usize) -> LineBound<R> {
        LineBound { inner, limit, since_newline: 0 }
    }
}

impl<R: Read> Read for LineBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let chunk = &buf[..n];
        self.since_newline = match chunk.iter().rposition(|b| *b == b'\n') {
            Some(last) => n - last - 1,
            None => self.since_newline + n,
        };
        if self.since_newline > self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a line runs past {} bytes without a line break", self.limit),
            ));
        }
        Ok(n)
    }
}

/// Hex of at most `limit` bytes, for showing a binary record in a rejects file.
pub fn hex_prefix(bytes: &[u8], limit: usize) -> String {
    let mut out = String::with_capacity(bytes.len().min(limit) * 2 + 3);
    for b in bytes.iter().take(limit) {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    if bytes.len() > limit {
        out.push_str("...");
    }
    out
}
