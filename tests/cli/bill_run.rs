//! `tollgate bill-run` end to end on real files: imported billing accounts, engine
//! accounts with mediated calls, a bill run, then the same run again (identical invoices,
//! nothing billed twice), late calls (left alone by the closed cycle's rerun, billed by
//! the next cycle's), runs SIGKILLed while drafting and while numbering and run again
//! (the invoices and gap-free numbers of an uninterrupted run), the reconciliation (rated
//! = billed + carried over, naming the calls not billed yet) and the GL export.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use rust_decimal::Decimal;
use serde_json::Value;

use super::alarms::{alarm_of, all_alarms, open_alarms};
use super::mediate::{mediate_args, MAPPING};
use super::{json_lines, scratch, tollgate};

const BASE: u64 = 1_000_000_000_000;
/// Imported customer rows; the even ones are postpaid (billed), the odd ones prepaid.
const ROWS: u64 = 40;

fn ok(args: &[&str]) -> std::process::Output {
    let output = tollgate(args, "");
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// The month after this one (UTC), `YYYY-MM`, and the one after it: every call made now
/// is posted before the first's cycles end, whatever their cycle day.
fn cycles() -> (String, String) {
    let today = jiff::tz::TimeZone::UTC.to_datetime(jiff::Timestamp::now()).date();
    let next = today.first_of_month().checked_add(jiff::ToSpan::months(1)).expect("date");
    let after = next.checked_add(jiff::ToSpan::months(1)).expect("date");
    let text = |date: jiff::civil::Date| format!("{:04}-{:02}", date.year(), date.month());
    (text(next), text(after))
}

/// Imported accounts, engine accounts for the postpaid ones, and `calls` mediated calls.
fn setup(dir: &Path, calls: u64) -> String {
    let data = dir.join("data");
    let data_dir = data.display().to_string();
    let out = dir.join("gen");
    ok(&["import", "generate", "--rows", &ROWS.to_string(), "--out", &out.display().to_string()]);
    let path = |name: &str| out.join(name).display().to_string();
    ok(&["import", "customers", &path("customers.csv"), "--mapping", &path("customers.toml"), "--data-dir", &data_dir]);
    for n in (2..=ROWS).step_by(2) {
        let id = (BASE + n).to_string();
        ok(&[
            "account",
            "create",
            "--data-dir",
            &data_dir,
            "--id",
            &id,
            "--kind",
            "postpaid",
            "--currency",
            "EUR",
            "--credit-limit",
            "100000",
        ]);
        ok(&[
            "account",
            "subscribe",
            "--data-dir",
            &data_dir,
            "--id",
            &id,
            "--subscription",
            &(n * 10).to_string(),
            "--plan",
            "mobile-prepaid-s",
            "--identity",
            &format!("msisdn:4917000000{n:02}"),
        ]);
    }
    mediate(dir, &data_dir, "calls", 0, calls);
    data_dir
}

fn mediate(dir: &Path, data_dir: &str, name: &str, first: u64, count: u64) {
    let mapping = dir.join("mapping.toml");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let input = dir.join(format!("{name}.csv"));
    let mut text = String::from("id,msisdn,called,start,seconds\n");
    for n in first..first + count {
        let who = 2 * (1 + n % (ROWS / 2));
        text.push_str(&format!(
            "{name}-{n},4917000000{who:02},4930123{n:03},2026-03-02 10:{:02}:00,{}\n",
            n % 60,
            30 + n
        ));
    }
    std::fs::write(&input, text).expect("input");
    let out = dir.join(format!("out-{name}"));
    let args = mediate_args(
        data_dir,
        out.to_str().expect("path"),
        mapping.to_str().expect("path"),
        input.to_str().expect("path"),
    );
    ok(&args);
}

/// A run's invoices as `show` prints them, without the run's own line.
fn show(data_dir: &str, run: &str) -> Vec<Value> {
    let lines = json_lines(&ok(&["bill-run", "show", "--run", run, "--data-dir", data_dir]));
    assert_eq!(lines[0]["run"], run);
    lines[1..].to_vec()
}

fn bill(data_dir: &str, cycle: &str) -> String {
    String::from_utf8_lossy(&ok(&["bill-run", "--cycle", cycle, "--data-dir", data_dir]).stderr).into_owned()
}

/// A run's reconciliation: a line per invoiced account, the summary last.
fn reconcile(data_dir: &str, run: &str) -> Vec<Value> {
    json_lines(&ok(&["bill-run", "reconcile", "--run", run, "--data-dir", data_dir]))
}

fn numbers(invoices: &[Value]) -> Vec<i64> {
    let mut numbers: Vec<i64> = invoices.iter().map(|invoice| invoice["number"].as_i64().expect("final")).collect();
    numbers.sort_unstable();
    numbers
}

#[test]
fn a_bill_run_run_again_changes_nothing_and_late_calls_go_to_the_next_cycle() {
    let dir = scratch("bill-run");
    let data_dir = setup(&dir, 400);
    let (cycle, next) = cycles();

    // A dry run composes and writes nothing.
    let dry = json_lines(&ok(&["bill-run", "--cycle", &cycle, "--dry-run", "--data-dir", &data_dir]));
    assert_eq!(dry.len(), (ROWS / 2) as usize, "one invoice per postpaid account");
    let shown = tollgate(&["bill-run", "show", "--run", &cycle, "--data-dir", &data_dir], "");
    assert!(!shown.status.success(), "a dry run records no run");

    bill(&data_dir, &cycle);
    let first = show(&data_dir, &cycle);
    assert_eq!(first.len(), (ROWS / 2) as usize);
    assert_eq!(numbers(&first), (1..=(ROWS / 2) as i64).collect::<Vec<_>>(), "gap-free from 1");
    for (invoice, composed) in first.iter().zip(&dry) {
        assert_eq!(
            (&invoice["id"], &invoice["contentHash"]),
            (&composed["id"], &composed["contentHash"]),
            "the dry run composed the same invoices"
        );
        assert_eq!(invoice["state"], "final");
        assert!(invoice["billedItems"].as_u64().expect("count") > 0);
    }
    // The usage billed equals what the engine charged, each account's total to the cent.
    let billed: Decimal = first
        .iter()
        .map(|invoice| invoice["gross"].as_str().expect("gross").parse::<Decimal>().expect("decimal"))
        .sum();
    assert!(billed > Decimal::ZERO);

    // The same run again: nothing new, the same invoices and numbers.
    let again = bill(&data_dir, &cycle);
    assert!(again.contains("0 drafted"), "{again}");
    assert_eq!(show(&data_dir, &cycle), first);

    // Every call rated in the run's cycles was billed.
    let summary = reconcile(&data_dir, &cycle);
    assert_eq!(
        (
            summary.last().expect("summary")["carriedOver"].as_u64(),
            summary.last().expect("summary")["mismatched"].as_u64()
        ),
        (Some(0), Some(0))
    );

    // Calls rated after the run (one per account): the closed cycle's rerun leaves them,
    // the reconciliation names those posted inside a billed cycle as carried over, and the
    // next cycle bills them.
    mediate(&dir, &data_dir, "late", 10_000, 20);
    let today = jiff::tz::TimeZone::UTC.to_datetime(jiff::Timestamp::now()).date().to_string();
    bill(&data_dir, &cycle);
    assert_eq!(show(&data_dir, &cycle), first);
    let report = reconcile(&data_dir, &cycle);
    let (lines, summary) = report.split_at(report.len() - 1);
    let mut expected = 0;
    for line in lines {
        let inside =
            line["periodFrom"].as_str() <= Some(today.as_str()) && Some(today.as_str()) < line["periodUntil"].as_str();
        assert_eq!(line["carriedOver"].as_array().expect("list").len(), usize::from(inside), "{line}");
        expected += u64::from(inside);
    }
    assert_eq!(summary[0]["carriedOver"].as_u64(), Some(expected));
    assert_eq!(
        summary[0]["rated"].as_u64(),
        Some(summary[0]["billed"].as_u64().expect("billed") + expected),
        "rated = billed + carried over"
    );
    bill(&data_dir, &next);
    assert_eq!(
        reconcile(&data_dir, &cycle).last().expect("summary")["carriedOver"].as_u64(),
        Some(0),
        "billed by the next cycle"
    );
    let later = show(&data_dir, &next);
    let items: u64 = later.iter().map(|invoice| invoice["billedItems"].as_u64().expect("count")).sum();
    assert_eq!(items, 20, "each late call once");
    assert_eq!(numbers(&later), ((ROWS / 2) as i64 + 1..=(ROWS / 2) as i64 + later.len() as i64).collect::<Vec<_>>());

    // The journal of the run balances: debits equal credits.
    let csv = String::from_utf8(ok(&["bill-run", "export-gl", "--run", &cycle, "--data-dir", &data_dir]).stdout)
        .expect("utf-8");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let (mut debit, mut credit) = (Decimal::ZERO, Decimal::ZERO);
    for record in reader.records() {
        let record = record.expect("csv");
        debit += record[4].parse::<Decimal>().expect("debit");
        credit += record[5].parse::<Decimal>().expect("credit");
    }
    assert_eq!((debit, credit), (billed, billed));
    std::fs::remove_dir_all(dir).ok();
}

/// Starts a bill run and SIGKILLs it once its stderr has shown `lines` lines starting
/// with `word`.
fn kill_after(data_dir: &str, cycle: &str, word: &str, lines: usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["bill-run", "--cycle", cycle, "--data-dir", data_dir])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tollgate starts");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = 0;
    for line in stderr.lines() {
        if line.expect("stderr line").starts_with(word) {
            seen += 1;
            if seen == lines {
                break;
            }
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert!(seen == lines, "the run ended before {lines} {word} lines");
}

#[test]
fn bill_runs_killed_while_drafting_or_numbering_end_as_an_uninterrupted_run() {
    let dir = scratch("bill-run-kill");
    let data_dir = setup(&dir, 200);
    let (cycle, _) = cycles();
    let copy = |name: &str| {
        let target = dir.join(name);
        let status = Command::new("cp").args(["-r", &data_dir, &target.display().to_string()]).status().expect("cp");
        assert!(status.success());
        target.display().to_string()
    };
    // Kill points: after the first, a middle and the last-but-one draft, and after the
    // first and a middle number.
    let points = [("drafted", 1), ("drafted", 10), ("drafted", 19), ("finalised", 1), ("finalised", 12)];
    let copies: Vec<String> = points.iter().map(|(word, lines)| copy(&format!("{word}-{lines}"))).collect();

    bill(&data_dir, &cycle);
    let clean = show(&data_dir, &cycle);
    assert_eq!(numbers(&clean), (1..=(ROWS / 2) as i64).collect::<Vec<_>>());

    for (data, (word, lines)) in copies.iter().zip(points) {
        kill_after(data, &cycle, word, lines);
        let killed = show(data, &cycle);
        assert!(
            killed.iter().any(|invoice| invoice["state"] == "draft") || killed.len() < clean.len(),
            "killed mid-run"
        );
        bill(data, &cycle);
        assert_eq!(show(data, &cycle), clean, "after the kill at {lines} {word}");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// The run's configuration taxing in `jurisdiction` with one profile whose only rate is
/// for `rated`.
fn tax_config(dir: &Path, name: &str, jurisdiction: &str, rated: &str) -> String {
    let config = serde_json::json!({
        "jurisdiction": jurisdiction,
        "default_tax_profile": "vat",
        "tax_profiles": [{"id": "vat", "basis": "exclusive", "rounding": "per-line", "rounding_mode": "half-even",
            "rates": [{"code": format!("{rated}-VAT"), "jurisdiction": rated, "service_class": null, "rate": "0.19"}]}],
    });
    let path = dir.join(name);
    std::fs::write(&path, config.to_string()).expect("config");
    path.display().to_string()
}

/// Issue 19, a bill run failing: the run's configuration taxes in a jurisdiction its tax
/// profile has no rate for, so the first invoice with a line cannot be composed and the
/// run fails; an alarm on `bill-run/CYCLE` says why. The configuration corrected, the run
/// of the same cycle ends and clears it.
#[test]
fn a_failed_bill_run_raises_an_alarm_cleared_by_the_next_run_of_its_cycle_that_ends() {
    let dir = scratch("bill-run-alarm");
    let data_dir = setup(&dir, 10);
    let database = Path::new(&data_dir).join("bss.sqlite3").display().to_string();
    let (cycle, _) = cycles();
    let object = format!("bill-run/{cycle}");

    let wrong = tax_config(&dir, "wrong.json", "FR", "DE");
    let failed = tollgate(&["bill-run", "--cycle", &cycle, "--config", &wrong, "--data-dir", &data_dir], "");
    assert!(!failed.status.success(), "the run fails");
    let open = open_alarms(&database);
    let alarm = alarm_of(&open, &object).unwrap_or_else(|| panic!("{open:?}"));
    assert_eq!(alarm[1..6], ["major", "raised", "unacknowledged", object.as_str(), "applicationSubsystemFailure"]);
    assert!(alarm[6].contains("no rate for jurisdiction \"FR\""), "the error is the problem: {alarm:?}");

    // Run again as it was: the same alarm, reported again.
    assert!(!tollgate(&["bill-run", "--cycle", &cycle, "--config", &wrong, "--data-dir", &data_dir], "")
        .status
        .success());
    assert_eq!(alarm_of(&open_alarms(&database), &object).expect("still open")[0], alarm[0]);

    let right = tax_config(&dir, "right.json", "FR", "FR");
    ok(&["bill-run", "--cycle", &cycle, "--config", &right, "--data-dir", &data_dir]);
    assert_eq!(alarm_of(&open_alarms(&database), &object), None, "cleared");
    let all = all_alarms(&database);
    assert_eq!(alarm_of(&all, &object).expect("kept")[..3], [alarm[0].as_str(), "cleared", "cleared"]);
    assert!(!show(&data_dir, &cycle).is_empty(), "the run billed");
    std::fs::remove_dir_all(dir).ok();
}
