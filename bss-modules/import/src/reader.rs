//! Reading a legacy file's rows with their byte offsets, so an import can checkpoint
//! where the next row starts and resume there; parsing is the `csv` crate's. A row may be
//! at most [`MAX_ROW_BYTES`] long: a file without line breaks cannot make the reader
//! buffer all of it.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{ImportError, Result};
use crate::mapping::{Columns, Mapping};

/// The longest row (CSV record) an import reads.
pub const MAX_ROW_BYTES: usize = 1 << 20;

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
            let message = format!("a row runs past {} bytes without a line break", self.limit);
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, message));
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
}

impl std::fmt::Debug for RowReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowReader").field("path", &self.path).field("number", &self.number).finish()
    }
}

fn builder(mapping: &Mapping, headers: bool) -> csv::ReaderBuilder {
    let mut builder = csv::ReaderBuilder::new();
    builder.delimiter(mapping.delimiter).has_headers(headers).flexible(true);
    builder
}

impl RowReader {
    /// Opens `path`, reads its header (if the mapping says it has one) and resolves the
    /// mapping against it, then positions at byte `offset` (0: the first row), whose row is
    /// number `rows_before + 1`.
    pub fn open(path: &Path, mapping: &Mapping, offset: u64, rows_before: i64) -> Result<RowReader> {
        let open = || File::open(path).map_err(ImportError::io(path));
        let bad = |message: String| ImportError::Format { path: path.to_owned(), message };
        let bounded = |file| Bounded { inner: BufReader::with_capacity(1 << 16, file), limit: MAX_ROW_BYTES, run: 0 };
        let (columns, first_row_offset) = if mapping.header {
            let mut first = builder(mapping, true).from_reader(bounded(open()?));
            let header = first.byte_headers().map_err(|err| bad(format!("header: {err}")))?.clone();
            let mut probe = csv::ByteRecord::new();
            let mut end = first.position().byte();
            if first.read_byte_record(&mut probe).map_err(|err| bad(format!("row 1: {err}")))? {
                end = probe.position().map_or(end, csv::Position::byte);
            }
            (mapping.resolve(Some(&header)).map_err(bad)?, end)
        } else {
            (mapping.resolve(None).map_err(bad)?, 0)
        };
        let base = offset.max(first_row_offset);
        let mut file = open()?;
        file.seek(SeekFrom::Start(base)).map_err(ImportError::io(path))?;
        Ok(RowReader {
            path: path.to_owned(),
            reader: builder(mapping, false).from_reader(bounded(file)),
            raw: open()?,
            base,
            number: rows_before,
            first_row_offset,
            columns,
        })
    }

    /// Reads the next row into `record`; `None` at the end of the file.
    pub fn next_row(&mut self, record: &mut csv::ByteRecord) -> Result<Option<RowPosition>> {
        match self.reader.read_byte_record(record) {
            Ok(false) => Ok(None),
            Ok(true) => {
                self.number += 1;
                Ok(Some(RowPosition {
                    number: self.number,
                    offset: self.base + record.position().map_or(0, csv::Position::byte),
                    next_offset: self.base + self.reader.position().byte(),
                }))
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
        let length = usize::try_from(row.next_offset.saturating_sub(row.offset)).unwrap_or(0).min(MAX_ROW_BYTES);
        let mut bytes = vec![0; length];
        self.raw.read_exact_at(&mut bytes, row.offset).map_err(ImportError::io(&self.path))?;
        while bytes.last().is_some_and(|byte| *byte == b'\n' || *byte == b'\r') {
            bytes.pop();
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
