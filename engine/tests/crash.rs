//! Crash consistency: the journal is written to a device that can be cut at any byte.
//! For every cut point of a test workload, recovery yields exactly the records that were
//! complete on the device, which always include every acknowledged one: no acknowledged
//! change is lost and nothing is half-applied.

mod common;

use common::*;
use tollgate_engine::testing::{
    charge_record, decide, replay_bytes, ChargesWriter, Context, Directory, Journal, JournalEntry, MemoryStorage,
    RecordKind, Resolved, ShardState, SnapshotImage,
};
use tollgate_engine::{
    AccountKind, ChargingConfig, FsyncPolicy, Identity, Operation, RecordCharge, RecordKey, RecordOutcome, Request,
    SessionStep, Target, UnitRequest,
};

fn workload() -> Vec<(Resolved, Request)> {
    let account = Resolved { account: 1, subscription: None };
    let subscribed = Resolved { account: 1, subscription: Some(10) };
    let request = |key: String, operation| Request { key: Some(key), target: Target::Account(1), operation };
    let mut out = vec![
        (
            account,
            request(
                "create".into(),
                Operation::CreateAccount {
                    kind: AccountKind::Prepaid,
                    currency: "EUR".into(),
                    credit_limit: d("0"),
                    opening_balance: d("3.00"),
                },
            ),
        ),
        (
            account,
            request(
                "subscribe".into(),
                Operation::CreateSubscription {
                    subscription: 10,
                    plan: "mobile-prepaid-s".into(),
                    identities: vec![Identity::Msisdn("491700000001".into())],
                },
            ),
        ),
    ];
    for n in 0..6u64 {
        out.push((
            subscribed,
            request(format!("call-{n}"), Operation::DirectDebit { usage: call("4990012345", MONDAY_10, 30 + n) }),
        ));
        out.push((
            subscribed,
            request(format!("top-{n}"), Operation::TopUp { amount: d("0.75"), reference: format!("v{n}") }),
        ));
        let step = if n % 2 == 0 { SessionStep::Initial } else { SessionStep::Termination };
        let units = vec![UnitRequest {
            rating_group: 30,
            service: None,
            requested_units: Some(1 << 20),
            used_units: Some(512 << 10),
            destination: None,
        }];
        out.push((
            subscribed,
            request(format!("gy-{n}"), Operation::Session { session: format!("gy;{}", n / 2), step, units }),
        ));
    }
    out
}

#[test]
fn every_cut_point_recovers_exactly_the_complete_records() {
    let plans = plans();
    let directory = Directory::new();
    let config = ChargingConfig::default();
    let ctx = Context { plans: &plans, directory: &directory, config: &config, decided_at: MONDAY_10 };
    let storage = MemoryStorage::new();
    let mut journal = Journal::new(Box::new(storage.clone()), 0, FsyncPolicy::EveryBatch, 0).expect("journal");
    let mut state = ShardState::new(config.dedupe_window);
    // images[k]: the state after k records; acked: (last LSN of a group commit, device
    // length its sync covered) — what was acknowledged.
    let mut images = vec![SnapshotImage::of(&state)];
    let mut acked = Vec::new();
    for (index, (resolved, request)) in workload().into_iter().enumerate() {
        let (_, effects) = decide(&mut state, &ctx, resolved, &request);
        if effects.is_empty() {
            continue;
        }
        state.lsn += 1;
        journal.append(state.lsn, &JournalEntry { decided_at: MONDAY_10, effects }.encode());
        images.push(SnapshotImage::of(&state));
        if index % 4 == 3 {
            // A bulk message of two rated records: one charges record.
            let mut payload = ChargesWriter::new();
            payload.begin(MONDAY_10);
            let (mut renewals, mut refusals) = (Vec::new(), Vec::new());
            let mut charged = 0;
            for (n, usage) in [call("4990012345", MONDAY_10, 1), sms(MONDAY_10)].into_iter().enumerate() {
                let record = RecordCharge {
                    identity: None,
                    key: RecordKey::of(&format!("cdr-{index}-{n}")),
                    origin: 0,
                    account: 1,
                    subscription: 10,
                    usage,
                };
                let answer = charge_record(&mut state, &ctx, &record, &mut renewals, &mut refusals, &mut payload);
                charged += u32::from(answer.outcome == RecordOutcome::Charged);
            }
            assert_eq!(payload.count(), charged);
            assert!(renewals.is_empty());
            if !payload.is_empty() {
                state.lsn += 1;
                journal.append_kind(state.lsn, RecordKind::CompactCharges, payload.finish());
                images.push(SnapshotImage::of(&state));
            }
            // Refused records are remembered in a record of their own after the charges
            // (no later record of the message has their key).
            if !refusals.is_empty() {
                for refusal in &refusals {
                    state.apply(refusal);
                }
                state.lsn += 1;
                journal.append(state.lsn, &JournalEntry { decided_at: MONDAY_10, effects: refusals }.encode());
                images.push(SnapshotImage::of(&state));
            }
        }
        // Group commits of one to three records.
        if index % 3 != 1 {
            journal.commit().expect("commit");
            acked.push((state.lsn, storage.synced_len()));
        }
    }
    journal.sync().expect("sync");
    let bytes = storage.bytes();
    // Where each record ends on the device (record_ends[0]: the segment header).
    let full = tollgate_engine::testing::scan(&bytes, 0, Some(1)).expect("scan");
    assert_eq!(full.cut_reason, None);
    let mut record_ends = vec![tollgate_engine::testing::SEGMENT_HEADER_BYTES];
    for record in &full.records {
        let last = *record_ends.last().expect("ends");
        record_ends.push(last + tollgate_engine::testing::RECORD_HEADER_BYTES + record.payload.len());
    }
    assert!(full.records.iter().any(|r| r.kind == RecordKind::CompactCharges), "the workload writes charges records");
    assert!(images.len() > 15, "the workload writes records");
    assert_eq!(*record_ends.last().expect("ends"), bytes.len());

    for cut in 0..=bytes.len() {
        let mut recovered = ShardState::new(config.dedupe_window);
        let scan = replay_bytes(&mut recovered, &bytes[..cut], 0).expect("a cut tail is not an error");
        let complete = record_ends.iter().filter(|end| **end <= cut).count().saturating_sub(1);
        assert_eq!(recovered.lsn as usize, complete, "cut at {cut}");
        assert_eq!(SnapshotImage::of(&recovered), images[complete], "cut at {cut}");
        for (lsn, synced) in &acked {
            if *synced <= cut {
                assert!(recovered.lsn >= *lsn, "acknowledged record {lsn} lost at cut {cut}");
            }
        }
        let torn = cut != 0 && !record_ends.contains(&cut);
        assert_eq!(scan.cut_reason.is_some(), torn, "cut at {cut}: {scan:?}");
        // The ledger derived from what survived adds up to the balance, entry for entry.
        let entries = tollgate_engine::ledger::entries_of_segment(&bytes[..cut], 0).expect("ledger entries");
        let ledger: rust_decimal::Decimal = entries.iter().map(|e| e.amount).sum();
        let balance = recovered.accounts.get(&1).map(|a| a.balance()).unwrap_or_default();
        assert_eq!(ledger, balance, "cut at {cut}: the ledger's entries add up to the balance");
        assert!(entries.iter().all(|e| e.lsn <= recovered.lsn), "cut at {cut}");
    }
}

#[test]
fn a_flipped_bit_cuts_the_tail_there() {
    let plans = plans();
    let directory = Directory::new();
    let config = ChargingConfig::default();
    let ctx = Context { plans: &plans, directory: &directory, config: &config, decided_at: MONDAY_10 };
    let storage = MemoryStorage::new();
    let mut journal = Journal::new(Box::new(storage.clone()), 0, FsyncPolicy::EveryBatch, 0).expect("journal");
    let mut state = ShardState::new(16);
    let mut ends = Vec::new();
    for (resolved, request) in workload().into_iter().take(5) {
        let (_, effects) = decide(&mut state, &ctx, resolved, &request);
        state.lsn += 1;
        journal.append(state.lsn, &JournalEntry { decided_at: MONDAY_10, effects }.encode());
        journal.commit().expect("commit");
        ends.push(storage.bytes().len());
    }
    let mut bytes = storage.bytes();
    let third_record = ends[1] + 20;
    bytes[third_record] ^= 0x01;
    let mut recovered = ShardState::new(16);
    let scan = replay_bytes(&mut recovered, &bytes, 0).expect("replay");
    assert_eq!(recovered.lsn, 2, "records after the damaged one are not replayed");
    assert!(scan.cut_reason.expect("cut").contains("checksum"));
    assert_eq!(scan.good_len as usize, ends[1]);
}
