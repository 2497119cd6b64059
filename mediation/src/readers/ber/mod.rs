//! 3GPP TS 32.297 CDR files of TS 32.298 BER records (PGW-CDR, SGW-CDR, CHF-CDR, CS MOC).
//!
//! The file is streamed one CDR at a time (a CDR is at most 65,535 bytes by its 2-octet
//! length), so memory is bounded whatever the file size. A CDR that does not decode is a
//! rejected record and reading goes on with the next (the framing says where it starts);
//! framing that breaks (a truncated CDR, a length past the end) ends the readable part.
//!
//! Why a hand-written BER reader instead of `rasn`: rasn decodes into Rust types
//! generated from the ASN.1 modules, and TS 32.298's modules (hundreds of types across
//! GPRS, CS, CHF, with many releases' extensions) would have to be transcribed by hand or
//! by a generator that does not handle them yet; rating needs a dozen fields. The reader
//! in `tlv.rs` walks tag-length-value with bounds and a depth limit, skips what it does
//! not need (so later releases still decode), and is fuzzed (`fuzz/fuzz_targets/ber_cdr_file.rs`).

pub mod framing;
pub mod identity;
pub mod records;
pub mod tlv;

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use self::framing::FileHeader;
use crate::event::{Item, Raw, Reader, Unreadable};
use crate::MediationError;

pub struct BerReader {
    path: PathBuf,
    reader: BufReader<File>,
    pub header: FileHeader,
    /// Offset of the next CDR header.
    offset: u64,
    size: u64,
    number: u64,
    /// Events of the current CDR not yet returned, with its offsets.
    pending: std::collections::VecDeque<Item>,
    cdr: Vec<u8>,
    /// CDRs before the one this reader started at, when known: 0 from the start of the
    /// file; what the checkpoint says when resuming ([`BerReader::resuming_after`]).
    cdrs_before: Option<u32>,
    /// CDRs read since it was opened.
    cdrs_read: u32,
    done: bool,
}

impl std::fmt::Debug for BerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BerReader").field("path", &self.path).field("offset", &self.offset).finish()
    }
}

impl BerReader {
    /// Opens `path` and positions it at the CDR at byte `offset` whose first event is
    /// number `number + 1` (0, 0: the first CDR). Started past the first CDR, it does not
    /// know how many CDRs came before (to check the header's count) unless told with
    /// [`BerReader::resuming_after`].
    pub fn open(path: &Path, offset: u64, number: u64) -> Result<BerReader, MediationError> {
        let mut file = File::open(path).map_err(MediationError::io(path))?;
        let size = file.metadata().map_err(MediationError::io(path))?.len();
        let mut fixed = vec![0u8; framing::FILE_HEADER_FIXED_BYTES.min(size as usize)];
        file.read_exact(&mut fixed).map_err(MediationError::io(path))?;
        let bad = |message: String| MediationError::Format { path: path.to_owned(), message };
        let header = framing::file_header(&fixed).map_err(bad)?;
        if u64::from(header.header_length) > size {
            return Err(bad(format!(
                "file header: header length {} is past the end ({size} bytes)",
                header.header_length
            )));
        }
        if header.file_length != 0 && u64::from(header.file_length) != size {
            tracing::warn!(file = %path.display(), header = header.file_length, size, "file length in the header disagrees with the file");
        }
        if header.lost_cdrs != 0 {
            tracing::warn!(file = %path.display(), lost = header.lost_cdrs, "the file header says CDRs were lost before this file");
        }
        let start = offset.max(u64::from(header.header_length));
        let cdrs_before = (start == u64::from(header.header_length)).then_some(0);
        file.seek(SeekFrom::Start(start)).map_err(MediationError::io(path))?;
        Ok(BerReader {
            path: path.to_owned(),
            reader: BufReader::with_capacity(1 << 16, file),
            header,
            offset: start,
            size,
            number,
            pending: std::collections::VecDeque::new(),
            cdr: Vec::new(),
            cdrs_before,
            cdrs_read: 0,
            done: false,
        })
    }

    /// Says how many CDRs the file holds before the offset this reader was opened at (a
    /// checkpoint keeps it), so that the header's count is checked against the whole file.
    pub fn resuming_after(mut self, cdrs: u32) -> BerReader {
        self.cdrs_before = Some(cdrs);
        self
    }

    /// CDRs read so far from the start of the file (to compare with the header's count at
    /// the end); `None` when it was opened past the first CDR without being told how many
    /// came before.
    pub fn cdrs_read(&self) -> Option<u32> {
        self.cdrs_before.map(|before| before.saturating_add(self.cdrs_read))
    }

    fn broken(&self, message: String) -> MediationError {
        MediationError::Format { path: self.path.clone(), message: format!("byte {}: {message}", self.offset) }
    }

    /// Reads the next CDR into `pending`; false at a clean end of file.
    fn read_cdr(&mut self) -> Result<bool, MediationError> {
        if self.offset >= self.size {
            match self.cdrs_read() {
                Some(read) if read != self.header.cdr_count && self.header.cdr_count != u32::MAX => {
                    tracing::warn!(
                        file = %self.path.display(),
                        header = self.header.cdr_count,
                        read,
                        "the file header's CDR count disagrees with the CDRs in the file"
                    );
                }
                Some(_) => {}
                None => tracing::debug!(
                    file = %self.path.display(),
                    "the CDRs before the resume point are not known; the header's CDR count is not checked"
                ),
            }
            return Ok(false);
        }
        let left = self.size - self.offset;
        let mut head = [0u8; 5];
        let want = (left as usize).min(5);
        self.reader.read_exact(&mut head[..want]).map_err(MediationError::io(&self.path))?;
        let header = framing::cdr_header(&head[..want]).map_err(|m| self.broken(m))?;
        // Give back what was read past a 4-byte header.
        if header.header_bytes < want {
            self.reader
                .seek_relative(header.header_bytes as i64 - want as i64)
                .map_err(MediationError::io(&self.path))?;
        }
        let length = usize::from(header.cdr_length);
        if (header.header_bytes + length) as u64 > left {
            return Err(self.broken(format!(
                "CDR of {length} bytes runs past the end of the file ({} bytes left)",
                left - header.header_bytes as u64
            )));
        }
        self.cdr.resize(length, 0);
        self.reader.read_exact(&mut self.cdr).map_err(MediationError::io(&self.path))?;
        let cdr_offset = self.offset;
        let next_offset = self.offset + (header.header_bytes + length) as u64;
        self.cdrs_read += 1;
        let digest = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&self.cdr));
        let body_offset = (cdr_offset as usize).saturating_add(header.header_bytes);
        let decoded = if header.format != 1 {
            Err(format!("data record format {} is not BER", header.format))
        } else {
            records::decode(&self.cdr, body_offset, &digest)
        };
        let records = match decoded {
            Ok(events) if !events.is_empty() => events.into_iter().map(Ok).collect(),
            Ok(_) => vec![Err(Unreadable::malformed("the CDR holds no usage (no service containers)"))],
            Err(message) => vec![Err(Unreadable::malformed(message))],
        };
        let raw = Raw::Binary(self.cdr.as_slice().into());
        let count = records.len();
        for (i, record) in records.into_iter().enumerate() {
            self.number += 1;
            self.pending.push_back(Item {
                number: self.number,
                offset: cdr_offset,
                next_offset,
                resumable_after: i + 1 == count,
                raw: raw.clone(),
                record,
            });
        }
        self.offset = next_offset;
        Ok(true)
    }
}

impl Reader for BerReader {
    fn cdrs_read(&self) -> Option<u32> {
        BerReader::cdrs_read(self)
    }

    fn next_item(&mut self) -> Result<Option<Item>, MediationError> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Ok(Some(item));
            }
            if self.done {
                return Ok(None);
            }
            if !self.read_cdr()? {
                self.done = true;
            }
        }
    }
}
