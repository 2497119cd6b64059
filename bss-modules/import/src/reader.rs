//! Reading a legacy file's rows with their byte offsets, so an import can checkpoint
//! where the next row starts and resume there; parsing is the `csv` crate's. A row may be
//! at most [`MAX_ROW_BYTES`] long (give or take a read's 64 KiB): a file without line
//! breaks cannot make the reader buffer all of it; a longer row is skipped to its line
//! break ([`RowPosition::too_long`], rejected by the run) and reading goes on after it.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{ImportError, Result};
use crate::mapping::{Columns, Mapping};

/// The longest row (CSV record) an import reads.
pub const MAX_ROW_BYTES: usize = 1 << 20;

/// Bytes of a row skipped as too long that its reject shows.
const TOO_LONG_SHOWN: usize = 256;

/// The message of [`Bounded`]'s error, told apart from other read errors.
const TOO_LONG: &str = "a row runs past the longest a row may be without a line break";

/// A `Read` that fails once more than `limit` bytes pass without a newline.
#[derive(Debug)]
struct Bounded<R> {
    inner: R,
    limit: usize,
    run: usize,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = &buf[..n];
        self.run = match read.iter().rposition(|&byte| byte == b'\n') {
            Some(at) => n - at - 1,
            None => self.run + n,
        };
        if self.run > self.limit {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, TOO_LONG));
        }
        Ok(n)
    }
}

/// One row: its number (1 for the first row after the header), where it starts and where
/// the next one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowPosition {
    pub number: i64,
    pub offset: u64,
    pub next_offset: u64,
    /// Longer than [`MAX_ROW_BYTES`]: not read, skipped to the next line break.
    pub too_long: bool,
}

/// The rows of a file from some row on.
pub struct RowReader {
    path: PathBuf,
    reader: csv::Reader<Bounded<BufReader<File>>>,
    raw: File,
    /// The file offset of the reader's byte 0.
    base: u64,
    number: i64,
    /// Where the first row starts (after the header).
    pub first_row_offset: u64,
    pub columns: Columns,
    delimiter: u8,
}

impl std::fmt::Debug for RowReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowReader").field("path", &self.path).field("number", &self.number).finish()
    }
}

/// The rows of `path` from byte `offset` on (no header), each bounded.
fn rows_from(path: &Path, delimiter: u8, offset: u64) -> Result<csv::Reader<Bounded<BufReader<File>>>> {
    let mut file = File::open(path).map_err(ImportError::io(path))?;
    file.seek(SeekFrom::Start(offset)).map_err(ImportError::io(path))?;
    Ok(builder(delimiter, false).from_reader(bounded(file)))
}

/// Whether `err` is [`Bounded`]'s: a row longer than [`MAX_ROW_BYTES`].
fn is_too_long(err: &csv::Error) -> bool {
    matches!(err.kind(), csv::ErrorKind::Io(io) if io.to_string() == TOO_LONG)
}

/// `file` read with rows bounded to [`MAX_ROW_BYTES`].
fn bounded(file: File) -> Bounded<BufReader<File>> {
    Bounded { inner: BufReader::with_capacity(1 << 16, file), limit: MAX_ROW_BYTES, run: 0 }
}

fn builder(delimiter: u8, headers: bool) -> csv::ReaderBuilder {
    let mut builder = csv::ReaderBuilder::new();
    builder.delimiter(delimiter).has_headers(headers).flexible(true);
    builder
}

impl RowReader {
    /// Opens `path`, reads its header (if the mapping says it has one) and resolves the
    /// mapping against it, then positions at byte `offset` (0: the first row), whose row is
    /// number `rows_before + 1`.
    pub fn open(path: &Path, mapping: &Mapping, offset: u64, rows_before: i64) -> Result<RowReader> {
        let open = || File::open(path).map_err(ImportError::io(path));
        let bad = |message: String| ImportError::Format { path: path.to_owned(), message };
        let (columns, first_row_offset) = if mapping.header {
            let mut first = builder(mapping.delimiter, true).from_reader(bounded(open()?));
            let header = first.byte_headers().map_err(|err| bad(format!("header: {err}")))?.clone();
            let mut probe = csv::ByteRecord::new();
            let mut end = first.position().byte();
            match first.read_byte_record(&mut probe) {
                Ok(true) => end = probe.position().map_or(end, csv::Position::byte),
                Ok(false) => {}
                // A first row too long to read is rejected by the run like any other.
                Err(err) if is_too_long(&err) => {}
                Err(err) => return Err(bad(format!("row 1: {err}"))),
            }
            (mapping.resolve(Some(&header)).map_err(bad)?, end)
        } else {
            (mapping.resolve(None).map_err(bad)?, 0)
        };
        let base = offset.max(first_row_offset);
        Ok(RowReader {
            path: path.to_owned(),
            reader: rows_from(path, mapping.delimiter, base)?,
            raw: open()?,
            base,
            number: rows_before,
            first_row_offset,
            columns,
            delimiter: mapping.delimiter,
        })
    }

    /// Reads the next row into `record`; `None` at the end of the file.
    pub fn next_row(&mut self, record: &mut csv::ByteRecord) -> Result<Option<RowPosition>> {
        // Where this row starts, for a row too long to read (shown from its start).
        let start = self.base + self.reader.position().byte();
        match self.reader.read_byte_record(record) {
            Ok(false) => Ok(None),
            Ok(true) => {
                self.number += 1;
                Ok(Some(RowPosition {
                    number: self.number,
                    offset: self.base + record.position().map_or(0, csv::Position::byte),
                    next_offset: self.base + self.reader.position().byte(),
                    too_long: false,
                }))
            }
            Err(err) if is_too_long(&err) => {
                // That row is skipped to its line break and reading goes on after it.
                let next_offset = self.next_line(self.base + self.reader.position().byte())?;
                let offset = start;
                self.reader = rows_from(&self.path, self.delimiter, next_offset)?;
                self.base = next_offset;
                self.number += 1;
                record.clear();
                Ok(Some(RowPosition { number: self.number, offset, next_offset, too_long: true }))
            }
            Err(err) => {
                let at = self.base + err.position().map_or(self.reader.position().byte(), csv::Position::byte);
                Err(ImportError::Format {
                    path: self.path.clone(),
                    message: format!("row {}, byte {at}: {err}", self.number + 1),
                })
            }
        }
    }

    /// Where the line after the one at byte `from` starts (the end of the file if none).
    fn next_line(&self, from: u64) -> Result<u64> {
        let mut chunk = vec![0; 1 << 16];
        let mut at = from;
        loop {
            let read = self.raw.read_at(&mut chunk, at).map_err(ImportError::io(&self.path))?;
            if read == 0 {
                return Ok(at);
            }
            if let Some(end) = chunk[..read].iter().position(|byte| *byte == b'\n') {
                return Ok(at + end as u64 + 1);
            }
            at += read as u64;
        }
    }

    /// A handle that reads rows' text back, usable while this reader goes on.
    pub fn raw_lines(&self) -> Result<RawLines> {
        let file = self.raw.try_clone().map_err(ImportError::io(&self.path))?;
        Ok(RawLines { path: self.path.clone(), raw: file })
    }
}

/// Reads rows' text back from the file by their positions (for the rejects file).
#[derive(Debug)]
pub struct RawLines {
    path: PathBuf,
    raw: File,
}

impl RawLines {
    /// A row's text as the file has it, without its line break.
    pub fn raw(&self, row: &RowPosition) -> Result<String> {
        // A row skipped as too long is shown by its beginning.
        let most = if row.too_long { TOO_LONG_SHOWN } else { MAX_ROW_BYTES };
        let length = usize::try_from(row.next_offset.saturating_sub(row.offset)).unwrap_or(0).min(most);
        let mut bytes = vec![0; length];
        self.raw.read_exact_at(&mut bytes, row.offset).map_err(ImportError::io(&self.path))?;
        // After a CRLF line break the parser's row starts at the LF (it ends a row at the
        // CR): that byte is the line break before the row, not the row's.
        if bytes.first() == Some(&b'\n') {
            bytes.remove(0);
        }
        while bytes.last().is_some_and(|byte| *byte == b'\n' || *byte == b'\r') {
            bytes.pop();
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
