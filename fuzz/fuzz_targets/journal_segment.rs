//! Arbitrary bytes offered as a journal segment (a damaged disk, a file from elsewhere)
//! are replayed up to the first bad record or refused with a reason, never a panic;
//! what replays once replays the same again. The same bytes are also decoded as each
//! kind of record payload, which the checksum would otherwise keep the fuzzer from
//! reaching.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_engine::testing::replay_bytes;
use tollgate_engine::testing::SnapshotImage;
use tollgate_engine::testing::ShardState;

fuzz_target!(|data: &[u8]| {
    let _ = tollgate_engine::testing::JournalEntry::decode(data);
    let _ = tollgate_engine::testing::decode_charges(data);
    let _ = tollgate_engine::testing::decode_compact_charges(data);
    // Compact effects decode the same every time.
    if let Ok(entry) = tollgate_engine::testing::decode_compact_effects(data) {
        let again = tollgate_engine::testing::decode_compact_effects(data).expect("decodes again");
        assert_eq!(again, entry);
    }
    // The shard the header names, so that seeds of any shard get past the header.
    let shard = data.get(12..16).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let mut state = ShardState::new(64);
    if replay_bytes(&mut state, data, shard).is_ok() {
        let mut again = ShardState::new(64);
        replay_bytes(&mut again, data, shard).expect("replays again");
        assert_eq!(SnapshotImage::of(&again), SnapshotImage::of(&state));
    }
});
