//! Any bytes as a TS 32.297 CDR file: the BER record decoder and the framing reader
//! return records, rejects or an error naming the offset, never a panic, and every item
//! points inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_mediation::readers::ber::{records, BerReader};
use tollgate_mediation::Reader;

fuzz_target!(|data: &[u8]| {
    // The record decoder alone, on the bytes as one CDR.
    let _ = records::decode(data, 0, "fuzz");
    // The whole file path: framing, CDR headers, records.
    let path = std::env::temp_dir().join(format!("tollgate-fuzz-ber-{}", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(mut reader) = BerReader::open(&path, 0, 0) {
        let mut last = 0;
        while let Ok(Some(item)) = reader.next_item() {
            assert!(item.offset < data.len() as u64 && item.next_offset <= data.len() as u64);
            assert!(item.number > last);
            last = item.number;
        }
    }
});
