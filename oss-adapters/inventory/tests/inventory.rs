//! The resource inventory on SQLite and PostgreSQL (`store_test!`): ranges with golden
//! numbers and overlaps refused naming the field; the MSISDN and SIM lifecycles with every
//! refusal naming the state or the owner; a vendor file loaded with its keys sealed and
//! never shown; network elements; and the invariant: **a number or SIM is never handed
//! out twice**, under 1,000 concurrent reservations, with two stores (two servers) on one
//! database, and with one owner asking twice at once. Every change is in the audit trail,
//! whose chain holds.

use std::collections::HashSet;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use tollgate_inventory::{
    luhn_check_digit, GoldenRule, GoldenRules, Inventory, InventoryConfig, InventoryError, KeySealer, NumberRange,
    PoolKind, RangeLoad, Reservation, Reserve, REDACTED,
};
use tollgate_store::testing::TestStore;
use tollgate_store::{store_test, ChainCheck, Store, StoreOptions};

const FIXTURE: &str = include_str!("fixtures/vendor-output.txt");
const SEALING_KEY: &str = "8f3c2a61d04b97e5a1c6f0e2d9b87a4355c1e0f9a2b3d4c5e6f708192a3b4c5d";

/// A fixed instant plus `seconds`, so tests do not read the clock.
fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_750_000_000 + seconds).expect("a valid instant")
}

fn inventory(store: &Store) -> Inventory {
    Inventory::new(store.clone(), InventoryConfig::default().with_quarantine_days(30))
}

fn range(first: &str, last: &str, golden: &[&str]) -> RangeLoad {
    let rules = golden.iter().map(|text| GoldenRule::parse("golden", text).expect("a rule")).collect();
    RangeLoad {
        name: format!("{first}.."),
        range: NumberRange::new(first, last).expect("a range"),
        golden: GoldenRules::new(rules, "golden").expect("rules"),
    }
}

fn next_of(kind: PoolKind, owner: &str) -> Reserve<'_> {
    Reserve { kind, owner, value: None, group_id: None, hold: None }
}

/// The reserved resource's value (MSISDN or ICCID); panics on anything else.
fn reserved(answer: &Reservation) -> String {
    match answer {
        Reservation::Reserved(doc) | Reservation::Repeated(doc) => doc.value["name"].as_str().expect("name").to_owned(),
        Reservation::Exhausted => panic!("nothing was free"),
    }
}

/// (status, reason) of an error as the API would name it.
fn named(error: InventoryError) -> (&'static str, String) {
    match error {
        InventoryError::Invalid { field, .. } => ("invalid", field),
        InventoryError::Line { line, field, .. } => ("line", format!("{line}:{field}")),
        InventoryError::InvalidTransition { state, .. } => ("transition", state.to_string()),
        InventoryError::Conflict { field, .. } => ("conflict", field),
        InventoryError::NotFound { .. } => ("not found", String::new()),
        other => panic!("unexpected error: {other}"),
    }
}

/// A vendor file of `count` keyless cards, ICCIDs and IMSIs numbered from `from`.
fn vendor_file(batch: &str, from: u64, count: u64) -> String {
    let mut text = format!("Batch: {batch}\nQuantity: {count}\nVar_Out: ICCID/IMSI\n");
    for n in from..from + count {
        let payload = format!("894400102{n:09}");
        text.push_str(&format!("{payload}{} 00101{n:010}\n", luhn_check_digit(&payload)));
    }
    text
}

store_test! {
    async fn a_range_loads_with_golden_numbers_and_overlaps_are_refused_naming_the_field(store) {
        let inventory = inventory(&store);
        let load = range("447700900000", "447700900999", &["*AAA=EUR:50", "447700900123=EUR:250.00"]);
        let row = inventory.load_number_range("test", &load, at(0)).await.expect("loaded");
        assert_eq!(row.golden_count, 11, "the ten numbers ending 000, 111, …, 999, and 123");
        let golden = inventory.list([("category", "golden")], 0, 100, at(0)).await.expect("list");
        assert_eq!(golden.total, 11);
        let standard = inventory.list([("category", "standard"), ("state", "available")], 0, 1, at(0)).await.expect("list");
        assert_eq!(standard.total, 989);
        let chosen = inventory.get("msisdn-447700900123", at(0)).await.expect("the golden number");
        assert_eq!(chosen.value["price"], json!({"unit": "EUR", "value": 250}));
        assert_eq!((chosen.value["category"].as_str(), chosen.value["state"].as_str()), (Some("golden"), Some("available")));
        let all = inventory.list([("rangeId", row.id.as_str())], 0, 5, at(0)).await.expect("list");
        assert_eq!((all.total, all.items.len()), (1000, 5));

        for (first, last, field) in [
            ("447700900500", "447700901499", "first"),
            ("447700899000", "447700900000", "last"),
            ("447700899000", "447700901000", "last"),
        ] {
            let refused = inventory.load_number_range("test", &range(first, last, &[]), at(1)).await.expect_err("overlap");
            assert_eq!(named(refused), ("conflict", field.to_owned()), "{first}..{last}");
        }
        // A single number (ported in) is in the inventory too: a range over it is refused.
        let single = json!({"resourceSpecification": {"id": "MSISDN"}, "value": "+447700955555"});
        let created = inventory.create("test", single, at(1)).await.expect("a single number");
        assert_eq!(created.value["id"], "msisdn-447700955555");
        let refused = inventory.load_number_range("test", &range("447700955555", "447700955999", &[]), at(1)).await;
        assert_eq!(named(refused.expect_err("overlap")), ("conflict", "first".to_owned()));
        let refused = inventory.load_number_range("test", &range("447700955000", "447700955999", &[]), at(1)).await;
        assert_eq!(named(refused.expect_err("overlap")), ("conflict", "last".to_owned()));
        let outside = range("447700970000", "447700970099", &["447700900001=EUR:1"]);
        assert_eq!(named(inventory.load_number_range("test", &outside, at(1)).await.expect_err("outside")), ("invalid", "golden".to_owned()));
        inventory.load_number_range("test", &range("447700901000", "447700901099", &[]), at(2)).await.expect("adjacent range");
        assert_eq!(store.number_ranges(0, 10).await.expect("ranges").len(), 2);
    }
}

store_test! {
    async fn a_number_goes_through_its_lifecycle_and_illegal_steps_name_the_state(store) {
        let inventory = inventory(&store);
        inventory.load_number_range("test", &range("447700900000", "447700900009", &["*9=EUR:10"]), at(0)).await.expect("loaded");
        let first = inventory.reserve("test", &next_of(PoolKind::Msisdn, "order-1"), at(10)).await.expect("reserve");
        assert_eq!(reserved(&first), "447700900000", "the first loaded, never golden");
        let Reservation::Reserved(doc) = &first else { panic!("a new reservation") };
        assert_eq!((doc.value["state"].as_str(), doc.value["resourceStatus"].as_str(), doc.value["owner"].as_str()),
            (Some("reserved"), Some("reserved"), Some("order-1")));
        // The same owner asking again gets the same number, its hold renewed.
        let again = inventory.reserve("test", &next_of(PoolKind::Msisdn, "order-1"), at(20)).await.expect("repeat");
        assert!(matches!(again, Reservation::Repeated(_)));
        assert_eq!(reserved(&again), "447700900000");
        let id = "msisdn-447700900000";

        // Refusals name the state or the owner.
        assert_eq!(named(inventory.assign("test", id, "order-2", "sub-1", at(30)).await.expect_err("other owner")), ("conflict", "owner".to_owned()));
        assert_eq!(named(inventory.release("test", id, "order-2", at(30)).await.expect_err("other owner")), ("conflict", "owner".to_owned()));
        assert_eq!(named(inventory.unassign("test", id, "sub-1", at(30)).await.expect_err("not assigned")), ("transition", "reserved".to_owned()));
        let named_taken = Reserve { value: Some(id.trim_start_matches("msisdn-")), ..next_of(PoolKind::Msisdn, "order-2") };
        assert_eq!(named(inventory.reserve("test", &named_taken, at(30)).await.expect_err("taken")), ("transition", "reserved".to_owned()));
        let other = "msisdn-447700900001";
        assert_eq!(named(inventory.release("test", other, "order-1", at(30)).await.expect_err("never reserved")), ("transition", "available".to_owned()));
        assert_eq!(named(inventory.assign("test", other, "order-1", "sub-1", at(30)).await.expect_err("not reserved")), ("transition", "available".to_owned()));

        let assigned = inventory.assign("test", id, "order-1", "sub-1", at(40)).await.expect("assign");
        assert_eq!((assigned.value["state"].as_str(), assigned.value["subscriptionId"].as_str(), assigned.value["usageState"].as_str()),
            (Some("assigned"), Some("sub-1"), Some("active")));
        let repeat = inventory.assign("test", id, "order-1", "sub-1", at(41)).await.expect("assign again");
        assert_eq!(repeat.version, assigned.version, "a repeated assignment changes nothing");
        assert_eq!(named(inventory.assign("test", id, "order-1", "sub-2", at(42)).await.expect_err("taken")), ("conflict", "subscriptionId".to_owned()));
        assert_eq!(named(inventory.release("test", id, "order-1", at(42)).await.expect_err("assigned")), ("transition", "assigned".to_owned()));
        assert_eq!(named(inventory.unassign("test", id, "sub-2", at(42)).await.expect_err("other subscription")), ("conflict", "subscriptionId".to_owned()));
        let held = inventory.held_by(PoolKind::Msisdn, "order-1", at(43)).await.expect("held").expect("something");
        assert_eq!(held.value["id"], id);

        // Unassigned: quarantine for 30 days, then the number returns, after every fresh one.
        let cooled = inventory.unassign("test", id, "sub-1", at(50)).await.expect("unassign");
        assert_eq!((cooled.value["state"].as_str(), cooled.value["resourceStatus"].as_str()), (Some("quarantine"), Some("standby")));
        assert_eq!(cooled.value["availableFrom"].as_str().map(str::to_owned), Some((at(50) + SignedDuration::from_hours(30 * 24)).to_string()));
        assert!(inventory.held_by(PoolKind::Msisdn, "order-1", at(51)).await.expect("held").is_none());
        assert_eq!(named(inventory.reserve("test", &named_taken, at(60)).await.expect_err("cooling off")), ("transition", "quarantine".to_owned()));
        let month = 31 * 24 * 3600;
        let later = inventory.get(id, at(50 + month)).await.expect("get");
        assert_eq!(later.value["state"], "available", "the cool-off ended");
        let mut handed = Vec::new();
        for n in 0..9 {
            let owner = format!("later-{n}");
            let answer = inventory.reserve("test", &next_of(PoolKind::Msisdn, &owner), at(60 + month)).await.expect("reserve");
            match answer {
                Reservation::Exhausted => break,
                answer => handed.push(reserved(&answer)),
            }
        }
        assert_eq!(handed.len(), 9, "eight fresh numbers and the returned one (the golden one is never next)");
        assert_eq!(handed.last().map(String::as_str), Some("447700900000"), "the returned number comes last");

        // A reservation past its end returns by itself; its owner may still assign it
        // while nobody else took it.
        let golden = Reserve { value: Some("447700900009"), hold: Some(SignedDuration::from_secs(60)), ..next_of(PoolKind::Msisdn, "vip") };
        let chosen = reserved(&inventory.reserve("test", &golden, at(100 + month)).await.expect("golden"));
        assert_eq!(chosen, "447700900009");
        let expired = inventory.get("msisdn-447700900009", at(200 + month)).await.expect("get");
        assert_eq!((expired.value["state"].as_str(), expired.value["price"]["value"].as_i64()), (Some("available"), Some(10)));
        inventory.assign("test", "msisdn-447700900009", "vip", "sub-9", at(200 + month)).await.expect("still the owner's");
        assert!(matches!(
            inventory.reserve("test", &next_of(PoolKind::Msisdn, "late"), at(300 + month)).await.expect("reserve"),
            Reservation::Exhausted
        ));
        let bad_hold = Reserve { hold: Some(SignedDuration::from_hours(24 * 365)), ..next_of(PoolKind::Msisdn, "x") };
        assert_eq!(named(inventory.reserve("test", &bad_hold, at(0)).await.expect_err("too long")), ("invalid", "holdSeconds".to_owned()));
        let empty_owner = next_of(PoolKind::Msisdn, "");
        assert_eq!(named(inventory.reserve("test", &empty_owner, at(0)).await.expect_err("no owner")), ("invalid", "owner".to_owned()));
        let unknown_range = Reserve { group_id: Some("nope"), ..next_of(PoolKind::Msisdn, "y") };
        assert_eq!(named(inventory.reserve("test", &unknown_range, at(0)).await.expect_err("no range")), ("invalid", "rangeId".to_owned()));

        // Every change is audited, and the chain holds.
        let trail = store.audit_entries(Some(("MSISDN", id)), 0, 100).await.expect("audit");
        let actions: Vec<&str> = trail.iter().map(|entry| entry.action.as_str()).collect();
        assert_eq!(actions, ["reserve", "reserve", "assign", "unassign", "reserve"]);
        assert!(matches!(store.verify_audit_chain().await.expect("verify"), ChainCheck::Intact { .. }));
    }
}

store_test! {
    async fn a_vendor_file_loads_with_its_keys_sealed_and_never_shown(store) {
        let inventory = inventory(&store);
        let sealer = KeySealer::from_hex(SEALING_KEY).expect("a sealing key");
        let refused = inventory.load_sim_file("test", FIXTURE, Some("00101"), None, at(0)).await;
        assert!(matches!(refused, Err(InventoryError::Key { .. })), "keys are never stored in clear");
        let wrong_network = inventory.load_sim_file("test", FIXTURE, Some("23415"), Some(&sealer), at(0)).await;
        assert_eq!(named(wrong_network.expect_err("another network")), ("line", "13:IMSI".to_owned()));
        let batch = inventory.load_sim_file("test", FIXTURE, Some("00101"), Some(&sealer), at(0)).await.expect("loaded");
        assert_eq!((batch.name.as_str(), batch.cards), ("EXT-2026-0001", 5));
        assert_eq!(batch.header["Transport_key"], REDACTED);

        let card = inventory.get("sim-8944001010000000017", at(1)).await.expect("a card");
        assert_eq!((card.value["imsi"].as_str(), card.value["hasKeys"].as_bool(), card.value["@type"].as_str()),
            (Some("001010000000001"), Some(true), Some("PhysicalResource")));
        let keys = inventory.sim_keys("8944001010000000017", &sealer).await.expect("keys").expect("a card");
        let ki = keys.ki.as_ref().expect("a Ki");
        assert_eq!(ki.expose_hex(), "B02C780E9917D6FEECF631E840857515");
        assert_eq!(format!("{keys:?}").matches(REDACTED).count(), 2, "{keys:?}");
        let other = KeySealer::from_hex(&SEALING_KEY.replace('8', "9")).expect("another key");
        assert!(matches!(inventory.sim_keys("8944001010000000017", &other).await, Err(InventoryError::Key { .. })));

        // No key, PIN or PUK anywhere a client or an auditor reads.
        let listed = inventory.list([("resourceSpecification.id", "SIMCard")], 0, 10, at(1)).await.expect("list");
        let trail = store.audit_entries(None, 0, 100).await.expect("audit");
        let shown = format!("{listed:?} {trail:?}");
        for secret in ["B02C780E", "b02c780e", "CBA249A1", "12345671", "87654321", "11223341"] {
            assert!(!shown.contains(secret), "{secret} leaked");
        }
        assert_eq!(listed.total, 5);

        let again = inventory.load_sim_file("test", FIXTURE, Some("00101"), Some(&sealer), at(2)).await;
        assert_eq!(named(again.expect_err("reloaded")), ("conflict", "Batch".to_owned()));
        let overlapping = "Batch: B2\nVar_Out: ICCID/IMSI\n* the fixture's first card again\n8944001010000000017 001010000000099\n";
        let refused = inventory.load_sim_file("test", overlapping, None, None, at(2)).await;
        assert_eq!(named(refused.expect_err("taken ICCID")), ("line", "4:ICCID".to_owned()));

        // A SIM's lifecycle: swapped out, it is retired and never handed out again.
        let sim = reserved(&inventory.reserve("test", &next_of(PoolKind::Sim, "order-1"), at(3)).await.expect("reserve"));
        let id = format!("sim-{sim}");
        inventory.assign("test", &id, "order-1", "sub-1", at(4)).await.expect("assign");
        let retired = inventory.unassign("test", &id, "sub-1", at(5)).await.expect("swap out");
        assert_eq!((retired.value["state"].as_str(), retired.value["resourceStatus"].as_str()), (Some("retired"), Some("suspended")));
        let named_sim = Reserve { value: Some(&sim), ..next_of(PoolKind::Sim, "order-2") };
        assert_eq!(named(inventory.reserve("test", &named_sim, at(6)).await.expect_err("retired")), ("transition", "retired".to_owned()));
        let single = json!({"resourceSpecification": {"id": "SIMCard"}, "serialNumber": "8944001010000000017", "imsi": "001010000000777"});
        assert_eq!(named(inventory.create("test", single, at(7)).await.expect_err("taken")), ("conflict", "serialNumber".to_owned()));
    }
}

store_test! {
    async fn network_elements_are_created_listed_patched_and_deleted(store) {
        let inventory = inventory(&store);
        let hss = json!({"resourceSpecification": {"id": "NetworkElement"}, "name": "HSS 1", "category": "HSS",
            "address": "hss1.example.net:3868"});
        let created = inventory.create("test", hss, at(0)).await.expect("created");
        let id = created.value["id"].as_str().expect("id").to_owned();
        assert!(id.starts_with("ne-"));
        assert_eq!(created.value["resourceStatus"], "available");
        let pcf = json!({"resourceSpecification": {"id": "NetworkElement"}, "name": "PCF", "category": "PCF",
            "address": "https://pcf.example.net/npcf", "@type": "PhysicalResource"});
        inventory.create("test", pcf, at(0)).await.expect("created");
        let hss_only = inventory.list([("category", "HSS")], 0, 10, at(0)).await.expect("list");
        assert_eq!(hss_only.total, 1);
        let elements = inventory.list([("resourceSpecification.id", "NetworkElement")], 0, 10, at(0)).await.expect("list");
        assert_eq!(elements.total, 2);
        let patched = inventory.patch("test", &id, &json!({"resourceStatus": "alarm", "description": "link down"}), created.version, at(1)).await.expect("patched");
        assert_eq!((patched.value["resourceStatus"].as_str(), patched.version.get()), (Some("alarm"), 2));
        let stale = inventory.patch("test", &id, &json!({"name": "x"}), created.version, at(2)).await;
        assert!(matches!(stale, Err(InventoryError::StaleVersion { .. })));
        for (patch, field) in [(json!({"address": "bad address"}), "address"), (json!({"category": "MSC"}), "category"), (json!({"id": "ne-x"}), "id")] {
            assert_eq!(named(inventory.patch("test", &id, &patch, patched.version, at(2)).await.expect_err("bad")), ("invalid", field.to_owned()));
        }
        let missing_spec = json!({"name": "x", "category": "HSS", "address": "h"});
        assert_eq!(named(inventory.create("test", missing_spec, at(3)).await.expect_err("no kind")), ("invalid", "resourceSpecification.id".to_owned()));
        inventory.delete("test", &id, Some(patched.version), at(3)).await.expect("deleted");
        assert!(matches!(inventory.get(&id, at(4)).await, Err(InventoryError::NotFound { .. })));
        let trail = store.audit_entries(Some(("NetworkElement", id.as_str())), 0, 10).await.expect("audit");
        assert_eq!(trail.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["create", "update", "delete"]);
        assert_eq!(named(inventory.list([("colour", "red")], 0, 10, at(4)).await.expect_err("bad filter")), ("invalid", "colour".to_owned()));
    }
}

/// A server on the test database: a store of its own with 16 connections, so up to 16
/// reservations run in the database at once.
async fn server(store: &TestStore) -> Inventory {
    let mut options = StoreOptions::default();
    options.max_connections = 16;
    inventory(&Store::open_with(store.location(), &options).await.expect("open the test database again"))
}

/// Runs `requests` reservations of `kind` at once on `inventories` (round robin), owners
/// `owner(i)`; returns what each got, in request order.
async fn race(
    inventories: &[Inventory],
    kind: PoolKind,
    requests: usize,
    owner: fn(usize) -> String,
) -> Vec<Option<String>> {
    let mut tasks = Vec::with_capacity(requests);
    for i in 0..requests {
        let inventory = inventories[i % inventories.len()].clone();
        tasks.push(tokio::spawn(async move {
            let owner = owner(i);
            let request = Reserve { kind, owner: &owner, value: None, group_id: None, hold: None };
            inventory.reserve("race", &request, at(10)).await
        }));
    }
    let mut got = Vec::with_capacity(requests);
    for task in tasks {
        let answer = task.await.expect("the task ran").expect("every request is answered, none fails");
        got.push(match answer {
            Reservation::Exhausted => None,
            answer => Some(reserved(&answer)),
        });
    }
    got
}

fn distinct(got: &[Option<String>]) -> usize {
    got.iter().flatten().collect::<HashSet<_>>().len()
}

store_test! {
    async fn a_thousand_concurrent_reservations_hand_out_no_number_or_sim_twice(store) {
        let inventory = server(&store).await;
        // 1,000 numbers of which 10 are golden (never the next free one), and 1,000 SIMs.
        inventory.load_number_range("test", &range("447700900000", "447700900999", &["*77=EUR:5"]), at(0)).await.expect("range");
        inventory.load_sim_file("test", &vendor_file("RACE", 1, 1000), None, None, at(0)).await.expect("SIMs");
        let numbers = race(std::slice::from_ref(&inventory), PoolKind::Msisdn, 1000, |i| format!("order-{i}")).await;
        assert_eq!(numbers.iter().flatten().count(), 990, "every free number handed out");
        assert_eq!(distinct(&numbers), 990, "no number given twice");
        assert_eq!(numbers.iter().filter(|n| n.is_none()).count(), 10, "the rest are answered: nothing free");
        let sims = race(std::slice::from_ref(&inventory), PoolKind::Sim, 1000, |i| format!("order-{i}")).await;
        assert_eq!((sims.iter().flatten().count(), distinct(&sims)), (1000, 1000), "no SIM given twice");
        let reserved_now = inventory.list([("state", "reserved")], 0, 1, at(11)).await.expect("list");
        assert_eq!(reserved_now.total, 1990);
        match store.verify_audit_chain().await.expect("verify") {
            ChainCheck::Intact { entries, .. } => assert_eq!(entries, 2 + 1990, "two loads and one record per reservation"),
            broken => panic!("{broken:?}"),
        }
    }
}

store_test! {
    async fn two_servers_on_one_database_never_hand_out_the_same_number(store) {
        let first = server(&store).await;
        let second = server(&store).await;
        first.load_number_range("test", &range("447700900000", "447700900999", &[]), at(0)).await.expect("range");
        second.load_sim_file("test", &vendor_file("TWO", 1, 1000), None, None, at(0)).await.expect("SIMs");
        let servers = [first.clone(), second.clone()];
        let numbers = race(&servers, PoolKind::Msisdn, 1000, |i| format!("order-{i}")).await;
        assert_eq!((numbers.iter().flatten().count(), distinct(&numbers)), (1000, 1000), "no number given twice");
        let sims = race(&servers, PoolKind::Sim, 1000, |i| format!("order-{i}")).await;
        assert_eq!((sims.iter().flatten().count(), distinct(&sims)), (1000, 1000), "no SIM given twice");
        for (inventory, kind) in [(&first, PoolKind::Msisdn), (&second, PoolKind::Sim)] {
            let late = inventory.reserve("test", &next_of(kind, "late"), at(20)).await.expect("answered");
            assert_eq!(late, Reservation::Exhausted);
        }
    }
}

/// Regression (CI on a7b6275: one of 1,000 concurrent reservations on PostgreSQL failed
/// with `Contended`): a reservation PostgreSQL rolls back as a deadlock's victim is run
/// again, not answered with an error. The deadlock is made on purpose: a transaction holds
/// the audit chain's head, the reservation takes the first number and waits for the head
/// (its audit record is chained at commit), then the holder asks for that number's row.
/// The holder's `deadlock_timeout` is an hour, so the reservation's check (after
/// PostgreSQL's default second) finds the cycle and rolls the reservation back; run again,
/// it gets a number. PostgreSQL only: SQLite has one writer, and its writers queue instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_rolled_back_as_a_deadlock_victim_is_run_again() {
    use tollgate_store::testing::{postgres, raw_sql_in, sessions_waiting_for_a_lock};
    let Some(store) = postgres().await else { return };
    let inventory = inventory(&store);
    inventory.load_number_range("test", &range("447700900000", "447700900001", &[]), at(0)).await.expect("range");
    let mut holder = store.begin().await.expect("begin");
    // `lock_timeout` bounds the test should PostgreSQL miss the cycle (it looks once per
    // wait, a second after the reservation began waiting): an error then, never a hang.
    let holding = "SET LOCAL deadlock_timeout = '1h'; SET LOCAL lock_timeout = '30s';
                   SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE";
    raw_sql_in(&mut holder, holding).await.expect("the audit chain's head locked");
    let reserving = {
        let inventory = inventory.clone();
        tokio::spawn(async move { inventory.reserve("test", &next_of(PoolKind::Msisdn, "victim"), at(10)).await })
    };
    let mut polls = 0;
    while sessions_waiting_for_a_lock(&store).await.expect("pg_stat_activity") == 0 {
        polls += 1;
        assert!(polls < 1000, "the reservation never waited for the audit chain's head");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    raw_sql_in(&mut holder, "SELECT msisdn FROM msisdns WHERE msisdn = '447700900000' FOR UPDATE")
        .await
        .expect("the holder survives the deadlock and gets the first number's row");
    holder.commit().await.expect("commit");
    let answer = reserving.await.expect("the task ran").expect("the victim is run again and answered");
    let number = reserved(&answer);
    let held = inventory.list([("state", "reserved")], 0, 10, at(11)).await.expect("list");
    assert_eq!(held.total, 1, "one number reserved, {number}, none lost to the rolled-back run");
    match store.verify_audit_chain().await.expect("verify") {
        ChainCheck::Intact { entries, .. } => assert_eq!(entries, 2, "the load and the one reservation kept"),
        broken => panic!("the audit chain does not hold: {broken:?}"),
    }
}

store_test! {
    async fn one_owner_asking_twice_at_once_gets_one_number(store) {
        let second = server(&store).await;
        let inventory = server(&store).await;
        inventory.load_number_range("test", &range("447700900000", "447700900999", &[]), at(0)).await.expect("range");
        let got = race(&[inventory.clone(), second], PoolKind::Msisdn, 400, |i| format!("order-{}", i / 2)).await;
        for pair in got.chunks(2) {
            assert!(pair[0].is_some() && pair[0] == pair[1], "both requests of one owner get its one number: {pair:?}");
        }
        assert_eq!(distinct(&got), 200);
        let free = inventory.list([("state", "available")], 0, 1, at(11)).await.expect("list");
        assert_eq!(free.total, 800, "no number reserved and lost");
    }
}
