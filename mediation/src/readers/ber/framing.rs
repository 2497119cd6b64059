//! TS 32.297 §6 CDR file framing: a file header, then CDRs each behind a CDR header.
//!
//! File header (integers big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | file length (header and CDRs) |
//! | 4 | 4 | header length |
//! | 8 | 1 | high release / version identifier |
//! | 9 | 1 | low release / version identifier |
//! | 10 | 4 | file opening time stamp |
//! | 14 | 4 | time stamp of the last CDR appended |
//! | 18 | 4 | number of CDRs in the file |
//! | 22 | 4 | file sequence number |
//! | 26 | 1 | file closure trigger reason |
//! | 27 | 20 | IP address of the node that generated the file |
//! | 47 | 1 | lost CDR indicator (0: none lost) |
//! | 48 | 2 | length of the CDR routeing filter, then the filter |
//! | … | 2 | length of the private extension, then the extension |
//! | … | 1+1 | high / low release identifier extensions (when the identifiers say 7) |
//!
//! CDR header: CDR length (2 octets, the CDR alone), release identifier (3 bits) and
//! version identifier (5 bits), data record format (3 bits; 1 = BER) and TS number
//! (5 bits), and, when the release identifier is 7, a release identifier extension octet.
//!
//! The header length is trusted only as far as it is consistent: it must lie inside the
//! file and cover the fixed part. A file length or CDR count that disagrees with what the
//! file holds is reported, and every whole CDR is still read.

/// Bytes of the fixed part of the file header (up to the routeing filter length).
pub const FILE_HEADER_FIXED_BYTES: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    pub file_length: u32,
    pub header_length: u32,
    pub high_release: u8,
    pub low_release: u8,
    pub cdr_count: u32,
    pub sequence_number: u32,
    pub lost_cdrs: u8,
}

/// Reads the file header from the start of a file. The error names the field.
pub fn file_header(bytes: &[u8]) -> Result<FileHeader, String> {
    if bytes.len() < FILE_HEADER_FIXED_BYTES {
        return Err(format!("file header: {} bytes, the fixed part alone is {FILE_HEADER_FIXED_BYTES}", bytes.len()));
    }
    let word = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let header = FileHeader {
        file_length: word(0),
        header_length: word(4),
        high_release: bytes[8],
        low_release: bytes[9],
        cdr_count: word(18),
        sequence_number: word(22),
        lost_cdrs: bytes[47],
    };
    if (header.header_length as usize) < FILE_HEADER_FIXED_BYTES {
        return Err(format!("file header: header length {} is shorter than its fixed part", header.header_length));
    }
    Ok(header)
}

/// One CDR header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CdrHeader {
    /// Bytes of the CDR after this header.
    pub cdr_length: u16,
    pub release: u8,
    pub version: u8,
    /// 1: BER; 2: unaligned PER; 3: aligned PER; 4: XER.
    pub format: u8,
    pub ts_number: u8,
    /// Bytes of this header (4, or 5 with the release extension).
    pub header_bytes: usize,
}

/// Reads a CDR header at the start of `bytes`.
pub fn cdr_header(bytes: &[u8]) -> Result<CdrHeader, String> {
    if bytes.len() < 4 {
        return Err(format!("CDR header: {} bytes left, at least 4 needed", bytes.len()));
    }
    let release = bytes[2] >> 5;
    let header_bytes = if release == 7 { 5 } else { 4 };
    if bytes.len() < header_bytes {
        return Err("CDR header: the release identifier extension is missing".to_owned());
    }
    Ok(CdrHeader {
        cdr_length: u16::from_be_bytes([bytes[0], bytes[1]]),
        release,
        version: bytes[2] & 0x1f,
        format: bytes[3] >> 5,
        ts_number: bytes[3] & 0x1f,
        header_bytes,
    })
}
