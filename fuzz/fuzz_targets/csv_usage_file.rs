//! Any bytes as a delimited usage file under a fixed mapping: every record is read or
//! rejected with a reason, or the rest of the file is reported unreadable, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_mediation::readers::csv::mapping::Mapping;
use tollgate_mediation::readers::csv::CsvReader;
use tollgate_mediation::Reader;

const MAPPING: &str = "time_format = \"%Y-%m-%d %H:%M:%S\"\nunits_divisor = 1000\n[fields]\nrecord_id = { column = \"id\" }\nsubscriber = { column = \"a\" }\nservice = { column = \"s\" }\nrating_group = { column = \"rg\" }\ndestination = { position = 3 }\nstart = { column = \"t\" }\nunits = { column = \"u\" }\n";

fuzz_target!(|data: &[u8]| {
    let Ok(mapping) = Mapping::parse(MAPPING) else { return };
    let path = std::env::temp_dir().join(format!("tollgate-fuzz-csv-{}", std::process::id()));
    let mut file = b"id,a,b,s,rg,t,u\n".to_vec();
    file.extend_from_slice(data);
    if std::fs::write(&path, &file).is_err() {
        return;
    }
    if let Ok(mut reader) = CsvReader::open(&path, mapping, 0, 0) {
        while let Ok(Some(item)) = reader.next_item() {
            assert!(item.next_offset <= file.len() as u64);
            if let Ok(record) = item.record {
                assert!(!record.record_id.is_empty());
            }
        }
    }
});
