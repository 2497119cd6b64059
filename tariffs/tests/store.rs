//! Compiled plans round-trip through rkyv, and damaged files are refused.

use std::path::{Path, PathBuf};

use tollgate_tariffs::store::{self, PLAN_FORMAT_VERSION};
use tollgate_tariffs::{compile_file, rate, CompiledPlan, TariffError, UsageEvent};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)
}

fn compiled(name: &str) -> CompiledPlan {
    compile_file(&example(name)).unwrap_or_else(|err| panic!("{name}: {err}"))
}

#[test]
fn every_example_round_trips_through_rkyv() {
    for name in ["prepaid-mobile.toml", "postpaid-business.toml", "wholesale-international.toml"] {
        let plan = compiled(name);
        let bytes = store::to_bytes(&plan);
        let loaded = store::from_bytes(&bytes, name).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(loaded, plan, "{name}");
    }
}

#[test]
fn a_loaded_plan_rates_like_the_compiled_one() {
    let plan = compiled("wholesale-international.toml");
    let dir = tempdir();
    let path = dir.join("wholesale.tgplan");
    store::save(&plan, &path).expect("save");
    let loaded = store::load(&path).expect("load");
    let start = "2026-06-01T12:00:00Z".parse::<jiff::Timestamp>().expect("time").as_second();
    for number in ["4930123456", "8613800000000", "1212555", "99999"] {
        let event = UsageEvent {
            service: 0,
            rating_group: None,
            destination: Some(number),
            start_utc_seconds: start,
            units: 61,
        };
        assert_eq!(rate(&loaded, &event, &[]), rate(&plan, &event, &[]), "{number}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn damaged_files_are_refused_with_a_reason() {
    let bytes = store::to_bytes(&compiled("prepaid-mobile.toml"));
    let refuse = |bytes: &[u8], says: &str| match store::from_bytes(bytes, "p.tgplan") {
        Err(TariffError::CompiledFormat { reason, .. }) => assert!(reason.contains(says), "{reason}"),
        other => panic!("expected a format error saying {says:?}, got {other:?}"),
    };
    refuse(&bytes[..bytes.len() - 1], "truncated");
    refuse(&bytes[..10], "header");
    refuse(b"[plan]\nid = 1", "header");
    let mut flipped = bytes.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x40;
    refuse(&flipped, "checksum");
    let mut other_version = bytes.clone();
    other_version[8..12].copy_from_slice(&(PLAN_FORMAT_VERSION + 1).to_le_bytes());
    refuse(&other_version, "format version");

    // A well-checksummed file whose destination trie points a node's children back at
    // itself (a walk would never end). The trie's root is its first node, `first child
    // 1 << 32 | no value << 10 | digit mask`; other words of the archive can look the
    // same, so each candidate is tried: with the root's children made to start at 0,
    // the file must be refused for it.
    let payload = 32;
    let looks_like_root = |word: u64| word >> 32 == 1 && (word >> 10) & 0x3f_ffff == 0x3f_ffff && word & 0x3ff != 0;
    let refused_for_the_trie = (payload..bytes.len() - 8).step_by(8).any(|at| {
        if !looks_like_root(u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))) {
            return false;
        }
        let mut looping = bytes.clone();
        looping[at + 4..at + 8].copy_from_slice(&0u32.to_le_bytes());
        let crc = crc32fast::hash(&looping[payload..]);
        looping[24..28].copy_from_slice(&crc.to_le_bytes());
        matches!(
            store::from_bytes(&looping, "p.tgplan"),
            Err(TariffError::CompiledFormat { reason, .. }) if reason.contains("destination trie node 0 has children at 0..")
        )
    });
    assert!(refused_for_the_trie, "no patched root was refused");
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A plan compiled by an earlier build, committed as a fixture: this build must still
/// load it, and it must equal a fresh compile of its source, until the format version
/// is bumped on purpose (then add a fixture for the new version with
/// `tollgate tariff compile tests/fixtures/prepaid-mobile.toml -o …`).
#[test]
fn reads_a_plan_compiled_by_an_earlier_build() {
    let loaded = store::load(&fixture("prepaid-mobile.v2.tgplan")).expect("fixture loads");
    assert_eq!(loaded, compile_file(&fixture("prepaid-mobile.toml")).expect("fixture source compiles"));
}

/// A file of an older layout is refused by its version, never misread.
#[test]
fn refuses_a_plan_of_an_older_format_version() {
    match store::load(&fixture("prepaid-mobile.v1.tgplan")) {
        Err(TariffError::CompiledFormat { reason, .. }) => assert!(reason.contains("format version 1"), "{reason}"),
        other => panic!("expected a format-version refusal, got {other:?}"),
    }
}

#[test]
fn load_or_compile_takes_either_form() {
    let source = fixture("prepaid-mobile.toml");
    let compiled = fixture("prepaid-mobile.v2.tgplan");
    assert_eq!(store::load_or_compile(&source).expect("source"), store::load_or_compile(&compiled).expect("compiled"));
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
