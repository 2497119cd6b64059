//! Any text given to the tariff compiler yields a plan or a list of problems, never a
//! panic; a plan that compiles also survives an rkyv round trip and rates an event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_tariffs::{compile_str, rate, store, UsageEvent};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match compile_str(text, "fuzz.toml", None) {
        Ok(plan) => {
            let bytes = store::to_bytes(&plan);
            let loaded = store::from_bytes(&bytes, "fuzz.tgplan").expect("a compiled plan loads back");
            assert_eq!(loaded, plan);
            for service in 0..plan.services.len() as u16 {
                let event = UsageEvent {
                    service,
                    rating_group: None,
                    destination: Some("491701234567"),
                    start_utc_seconds: plan.effective_from_utc_seconds + 3600,
                    units: 61,
                };
                if let Ok(rated) = rate(&plan, &event, &[]) {
                    assert_eq!(rated.lines.iter().map(|l| l.amount).sum::<rust_decimal::Decimal>(), rated.amount);
                }
            }
        }
        Err(err) => assert!(!err.problems().is_empty() || !err.to_string().is_empty()),
    }
});
