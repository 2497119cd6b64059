//! Arbitrary bytes offered as a compiled plan are refused with a reason, never a panic
//! and never a misread plan.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_tariffs::store;

fuzz_target!(|data: &[u8]| {
    if let Ok(plan) = store::from_bytes(data, "fuzz.tgplan") {
        // Whatever loads must encode back to the same bytes' meaning.
        let again = store::from_bytes(&store::to_bytes(&plan), "again.tgplan").expect("re-encoded plan loads");
        assert_eq!(again, plan);
    }
});
