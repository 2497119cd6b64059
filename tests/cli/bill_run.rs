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
use serde_json::{json, Value};

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
pub(super) fn cycles() -> (String, String) {
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
    String::from_utf8_lossy(&ok(&["bill-run", "--cycle", cycle, "--open-cycles", "--data-dir", data_dir]).stderr)
        .into_owned()
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
    // Regression: a cycle still to close (next month's) was billed, its invoices final
    // for days still to come. Refused unless asked for, before anything is written.
    let early = tollgate(&["bill-run", "--cycle", &cycle, "--data-dir", &data_dir], "");
    assert!(!early.status.success());
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("has not closed"),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
    let shown = tollgate(&["bill-run", "show", "--run", &cycle, "--data-dir", &data_dir], "");
    assert!(!shown.status.success(), "a refused run records no run");

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

    // The same run again: nothing new, the same invoices and numbers; the run stays done
    // as it was (never reopened to number nothing).
    let run_line = || json_lines(&ok(&["bill-run", "show", "--run", &cycle, "--data-dir", &data_dir]))[0].clone();
    let done = run_line();
    assert!(done["state"] == "done" && done["finishedAt"].is_string(), "{done}");
    let again = bill(&data_dir, &cycle);
    assert!(again.contains("0 drafted") && again.contains("done already"), "{again}");
    assert_eq!(show(&data_dir, &cycle), first);
    assert_eq!(run_line(), done, "untouched: the same state, last change and end");

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
    // The prepaid hierarchies (no engine account here) are reconciled too, with nothing rated.
    let invoiced: Vec<&Value> = first.iter().map(|invoice| &invoice["account"]).collect();
    let (postpaid, prepaid): (Vec<&Value>, Vec<&Value>) =
        lines.iter().partition(|line| invoiced.contains(&&line["account"]));
    assert_eq!((postpaid.len(), prepaid.len()), ((ROWS / 2) as usize, (ROWS / 2) as usize));
    assert!(prepaid.iter().all(|line| line["billed"] == 0 && line["carriedOver"] == json!([])), "{prepaid:?}");
    for line in postpaid {
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

#[test]
fn discounts_and_credits_from_the_store_reduce_invoices_once() {
    let dir = scratch("bill-run-discounts");
    let data_dir = setup(&dir, 40);
    let (cycle, _) = cycles();
    let dry = json_lines(&ok(&["bill-run", "--cycle", &cycle, "--dry-run", "--data-dir", &data_dir]));
    let (first, second) = (dry[0]["account"].as_str().expect("id"), dry[1]["account"].as_str().expect("id"));
    let gross = |invoice: &Value| invoice["gross"].as_str().expect("gross").parse::<Decimal>().expect("decimal");
    assert!(gross(&dry[0]) > Decimal::ZERO && gross(&dry[1]) > Decimal::ZERO);
    // The first account's charges all off (100 %); the second has a credit larger than
    // its invoice, which takes the whole of it.
    let discount =
        ["bill-run", "discount", "--account", first, "--id", "d1", "--percent", "100", "--from", "2000-01-01"];
    ok(&[&discount[..], &["--data-dir", &data_dir]].concat());
    let credit = ["bill-run", "credit", "--account", second, "--id", "c1", "--amount", "1000", "--currency", "EUR"];
    ok(&[&credit[..], &["--data-dir", &data_dir]].concat());
    // The same credit again (a command repeated) is the one given; another under its id
    // is refused.
    ok(&[&credit[..], &["--data-dir", &data_dir]].concat());
    let other = ["bill-run", "credit", "--account", second, "--id", "c1", "--amount", "999", "--currency", "EUR"];
    let again = tollgate(&[&other[..], &["--data-dir", &data_dir]].concat(), "");
    assert!(!again.status.success(), "a credit id is taken once");
    let bad = ["bill-run", "discount", "--account", first, "--id", "d2", "--percent", "120", "--from", "2000-01-01"];
    let refused = tollgate(&[&bad[..], &["--data-dir", &data_dir]].concat(), "");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("discount.value"), "a percentage above 100 is refused");
    // Withdrawn (ended before the cycle) the discount takes nothing off; given its open
    // end back, all again.
    let ended = ok(&["bill-run", "end-discount", "--id", "d1", "--until", "2000-02-01", "--data-dir", &data_dir]);
    assert!(String::from_utf8_lossy(&ended.stdout).contains("\"validUntil\":\"2000-02-01\""));
    let only_first = ["bill-run", "--cycle", &cycle, "--dry-run", "--accounts", first, "--data-dir", &data_dir];
    assert_eq!(gross(&json_lines(&ok(&only_first))[0]), gross(&dry[0]), "no discount");
    ok(&["bill-run", "end-discount", "--id", "d1", "--no-end", "--data-dir", &data_dir]);
    assert_eq!(gross(&json_lines(&ok(&only_first))[0]), Decimal::ZERO, "the discount again");

    bill(&data_dir, &cycle);
    let invoices = show(&data_dir, &cycle);
    let of = |account: &str| invoices.iter().find(|invoice| invoice["account"] == account).expect("invoiced").clone();
    assert_eq!((gross(&of(first)), gross(&of(second))), (Decimal::ZERO, Decimal::ZERO));
    for (invoice, composed) in invoices.iter().zip(&dry).skip(2) {
        assert_eq!(invoice["contentHash"], composed["contentHash"], "the other accounts' invoices are as before");
    }
    // What an invoice took of the credit stays taken: its amount goes no lower.
    let lowered = tollgate(&["bill-run", "change-credit", "--id", "c1", "--amount", "0", "--data-dir", &data_dir], "");
    assert!(String::from_utf8_lossy(&lowered.stderr).contains("used"), "{lowered:?}");
    // Run again: nothing changes, and the credit was taken once.
    let rerun = bill(&data_dir, &cycle);
    assert!(rerun.contains("0 drafted"), "{rerun}");
    assert_eq!(show(&data_dir, &cycle), invoices);
    std::fs::remove_dir_all(dir).ok();
}

/// Starts a bill run and SIGKILLs it once its stderr has shown `lines` lines starting
/// with `word`.
fn kill_after(data_dir: &str, cycle: &str, word: &str, lines: usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["bill-run", "--cycle", cycle, "--open-cycles", "--data-dir", data_dir, "--batch", "3"])
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
    // first and a middle number; the killed runs write three documents a transaction, so
    // the kill lands between or inside batches, and the rerun (and the clean run) write
    // the default hundred: the same invoices and numbers whatever the batch.
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

/// Two runs of one cycle at once, writing three documents a transaction: each hierarchy
/// is drafted by one of them (a batch that meets another run's draft is written again
/// without it), and the numbers are gap-free and one per invoice.
#[test]
fn two_bill_runs_of_a_cycle_at_once_bill_each_hierarchy_once_with_gap_free_numbers() {
    let dir = scratch("bill-run-twice");
    let data_dir = setup(&dir, 200);
    let (cycle, _) = cycles();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["bill-run", "--cycle", &cycle, "--open-cycles", "--data-dir", &data_dir, "--batch", "3"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tollgate starts")
    };
    let (first, second) = (run(), run());
    let (mut drafted, mut finalised) = (0, 0);
    for child in [first, second] {
        let output = child.wait_with_output().expect("ends");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        drafted += stderr.lines().filter(|line| line.starts_with("drafted ")).count();
        finalised += stderr.lines().filter(|line| line.starts_with("finalised ")).count();
    }
    let invoices = show(&data_dir, &cycle);
    assert_eq!(drafted, invoices.len(), "each hierarchy drafted by one run");
    // Regression: both runs reported the invoices the other had made final.
    assert_eq!(finalised, invoices.len(), "each invoice reported made final by the run that did it");
    assert_eq!(numbers(&invoices), (1..=(ROWS / 2) as i64).collect::<Vec<_>>());
    assert!(bill(&data_dir, &cycle).contains("0 drafted"), "nothing left to bill");
    std::fs::remove_dir_all(dir).ok();
}

/// A camt.053 statement of booked credits: (bank reference, amount, remittance text).
fn statement(credits: &[(&str, &str, &str)]) -> String {
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt><Stmt><Id>STMT-1</Id>"#,
    );
    for (reference, amount, remittance) in credits {
        xml.push_str(&format!(
            r#"<Ntry><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
<BookgDt><Dt>2026-12-01</Dt></BookgDt><AcctSvcrRef>{reference}</AcctSvcrRef>
<NtryDtls><TxDtls><RmtInf><Ustrd>{remittance}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>"#
        ));
    }
    xml.push_str("</Stmt></BkToCstmrStmt></Document>");
    xml
}

#[test]
fn a_bank_statement_pays_the_bills_it_names_once_and_the_rest_age_and_are_dunned() {
    let dir = scratch("bill-run-payments");
    let data_dir = setup(&dir, 100);
    let (cycle, _) = cycles();
    bill(&data_dir, &cycle);
    let invoices = show(&data_dir, &cycle);
    let owing: Vec<&Value> = invoices.iter().filter(|i| i["gross"].as_str().is_some_and(|g| g != "0")).collect();
    assert!(owing.len() >= 3, "invoices with something to pay: {}", owing.len());
    let bill_no = |invoice: &Value| {
        format!(
            "{}/{}/{}",
            invoice["issuer"].as_str().expect("issuer"),
            invoice["series"].as_str().expect("series"),
            invoice["number"]
        )
    };
    let (paid, overpaid) = (owing[0], owing[1]);

    let file = dir.join("statement.xml");
    let text = statement(&[
        ("BANK-1", paid["gross"].as_str().expect("gross"), &format!("invoice {} thank you", bill_no(paid))),
        ("BANK-2", "3.00", "no reference at all"),
    ]);
    std::fs::write(&file, text).expect("statement");
    let path = file.display().to_string();
    let first = String::from_utf8(ok(&["payment", "import", &path, "--data-dir", &data_dir]).stdout).expect("utf-8");
    assert!(first.contains(": 1 payments recorded") && first.contains("1 rejected"), "{first}");
    let rejects = std::fs::read_to_string(format!("{path}.rejects.csv")).expect("rejects");
    assert!(
        rejects.lines().nth(1).is_some_and(|line| line.contains("BANK-2") && line.contains("remittance")),
        "{rejects}"
    );
    let again = String::from_utf8(ok(&["payment", "import", &path, "--data-dir", &data_dir]).stdout).expect("utf-8");
    assert!(again.contains(": 0 payments recorded") && again.contains("1 recorded before"), "{again}");

    // More than the second bill owes: the rest stays as credit on the account.
    let gross: Decimal = overpaid["gross"].as_str().expect("gross").parse().expect("decimal");
    let amount = (gross + Decimal::new(500, 2)).to_string();
    let account = overpaid["account"].as_str().expect("account");
    let recorded = ok(&[
        "payment",
        "record",
        "--account",
        account,
        "--amount",
        &amount,
        "--currency",
        "EUR",
        "--reference",
        "till-7",
        "--method",
        "cash",
        "--data-dir",
        &data_dir,
    ]);
    let payment: Value = serde_json::from_slice(&recorded.stdout).expect("payment JSON");
    assert_eq!(payment["unallocatedAmount"]["value"], 5);
    assert_eq!(payment["paymentItem"][0]["item"]["id"], overpaid["id"]);

    // Far in the future every unpaid bill is over 90 days overdue; the two paid are gone.
    let aging = json_lines(&ok(&["receivables", "aging", "--as-of", "2099-01-01", "--data-dir", &data_dir]));
    let accounts: Vec<&Value> = aging.iter().filter(|line| line.get("billingAccount").is_some()).collect();
    assert_eq!(accounts.len(), owing.len() - 2);
    assert!(accounts
        .iter()
        .all(|a| a["billingAccount"] != paid["account"] && a["billingAccount"] != overpaid["account"]));
    let owed: Decimal =
        owing[2..].iter().map(|i| i["gross"].as_str().expect("gross").parse::<Decimal>().expect("decimal")).sum();
    let total = aging.last().expect("the total");
    assert_eq!(
        (total["totalFor"].as_str(), total["daysOver90"].as_str().map(|v| v.parse::<Decimal>().expect("decimal"))),
        (Some("EUR"), Some(owed))
    );

    // Dunning: a reminder and a suspension for each unpaid bill, once.
    let dunned = ok(&["receivables", "dunning", "--as-of", "2099-01-01", "--data-dir", &data_dir]);
    let steps = String::from_utf8(dunned.stdout).expect("utf-8");
    assert_eq!(steps.lines().filter(|line| line.contains("\tReminder\t")).count(), owing.len() - 2, "{steps}");
    assert_eq!(steps.lines().filter(|line| line.contains("\tSuspend\t")).count(), owing.len() - 2, "{steps}");
    let rerun = ok(&["receivables", "dunning", "--as-of", "2099-01-02", "--data-dir", &data_dir]);
    assert!(rerun.stdout.is_empty(), "{}", String::from_utf8_lossy(&rerun.stdout));

    // Calls after the run, billed by the next cycle's: the 5.00 left on the overpaid
    // account pays its new invoice as it is made final, and no other account has credit.
    mediate(&dir, &data_dir, "late", 10_000, ROWS / 2);
    let (_, next) = cycles();
    let billed = bill(&data_dir, &next);
    let applied: Vec<&str> = billed.lines().filter(|line| line.contains("of credit on account applied")).collect();
    assert_eq!(applied.len(), 1, "{billed}");
    assert!(applied[0].starts_with(&format!("inv-{next}-{account}: ")), "{billed}");
    std::fs::remove_dir_all(dir).ok();
}

/// The engine's balance of account `id` (no server running).
fn engine_balance(data_dir: &str, id: u64) -> Decimal {
    let shown: Value =
        serde_json::from_slice(&ok(&["account", "show", "--id", &id.to_string(), "--data-dir", data_dir]).stdout)
            .expect("JSON");
    shown["body"]["balance"].as_str().expect("balance").parse().expect("decimal")
}

#[test]
fn a_final_invoice_gives_the_usage_it_bills_back_to_the_engine_balance_once() {
    let dir = scratch("bill-run-release");
    let data_dir = setup(&dir, 80);
    let (cycle, _) = cycles();
    let accounts: Vec<u64> = (2..=ROWS).step_by(2).map(|n| BASE + n).collect();
    let before: Vec<Decimal> = accounts.iter().map(|id| engine_balance(&data_dir, *id)).collect();
    assert!(before.iter().all(|balance| *balance < Decimal::ZERO), "every postpaid account made calls: {before:?}");
    bill(&data_dir, &cycle);
    let invoices = show(&data_dir, &cycle);
    let account = invoices[0]["account"].as_str().expect("account").to_owned();

    // `serve` applies the releases the numbering put in the outbox.
    let (child, _, _) = super::start_servers(Path::new(&data_dir), "ocs.release.test", &[]);
    for _ in 0..600 {
        let shown = tollgate(&["billing-account", "show", &account, "--data-dir", &data_dir], "");
        if shown.status.success() && !String::from_utf8_lossy(&shown.stderr).contains("wait in the outbox") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    super::stop_server(child);
    // Every call was billed: each postpaid balance is back to zero, its credit limit free.
    let after: Vec<Decimal> = accounts.iter().map(|id| engine_balance(&data_dir, *id)).collect();
    assert_eq!(after, vec![Decimal::ZERO; accounts.len()], "before: {before:?}");

    // A rerun finalises nothing and releases nothing more.
    bill(&data_dir, &cycle);
    let (child, _, _) = super::start_servers(Path::new(&data_dir), "ocs.release.test", &[]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    super::stop_server(child);
    let again: Vec<Decimal> = accounts.iter().map(|id| engine_balance(&data_dir, *id)).collect();
    assert_eq!(again, after);
    std::fs::remove_dir_all(dir).ok();
}

/// Runs a poppler tool on `pdf` and returns what it printed (the tools come from
/// `scripts/install-test-deps`).
fn poppler(tool: &str, args: &[&str]) -> String {
    let output = Command::new(tool).args(args).output().unwrap_or_else(|e| panic!("{tool} (poppler-utils): {e}"));
    assert!(output.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A GET with `accept`: status, head, the body's bytes.
fn fetch(address: &str, path: &str, token: &str, accept: &str) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("timeout");
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head, response[split..].to_vec())
}

#[test]
fn a_final_invoice_is_a_pdf_from_the_cli_and_from_the_api() {
    let dir = scratch("bill-run-pdf");
    let data_dir = setup(&dir, 40);
    let (cycle, _) = cycles();
    bill(&data_dir, &cycle);
    let invoices = show(&data_dir, &cycle);
    let invoice = &invoices[0];
    let id = invoice["id"].as_str().expect("id").to_owned();
    let number = format!(
        "{}/{}/{}",
        invoice["issuer"].as_str().expect("issuer"),
        invoice["series"].as_str().expect("series"),
        invoice["number"]
    );

    // The CLI, by number: a one-page PDF a reader renders, with the number and the total.
    let file = dir.join("invoice.pdf");
    let path = file.display().to_string();
    ok(&["bill-run", "pdf", "--invoice", &number, "--out", &path, "--data-dir", &data_dir]);
    let text = poppler("pdftotext", &["-layout", &path, "-"]);
    assert!(text.contains(&number), "{text}");
    let gross = invoice["gross"].as_str().expect("gross");
    assert!(text.contains(gross), "the total {gross}: {text}");
    let png = dir.join("page");
    poppler("pdftoppm", &["-png", "-r", "40", "-f", "1", "-l", "1", &path, &png.display().to_string()]);
    let page = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(Result::ok)
        .find(|entry| {
            entry.file_name().to_string_lossy().starts_with("page")
                && entry.file_name().to_string_lossy().ends_with(".png")
        })
        .expect("page 1 as PNG");
    let png = std::fs::read(page.path()).expect("png");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 1000, "{} bytes", png.len());

    // The API: the same bill as JSON names its document; as PDF it is the document.
    let data = Path::new(&data_dir);
    let (child, _, _) = super::start_servers(data, "ocs.pdf.test", &["--api-listen", "127.0.0.1:0"]);
    let address = super::api::api_address(data);
    let token = super::api::create_token(data, "finance");
    let bill = format!("/tmf-api/customerBillManagement/v4/customerBill/{id}");
    let (status, _, body) = fetch(&address, &bill, &token, "application/json");
    assert_eq!(status, 200);
    let json: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(json["billDocument"][0]["mimeType"], "application/pdf");
    let remaining: Decimal = json["remainingAmount"]["value"].to_string().parse().expect("a decimal");
    let gross: Decimal = invoice["gross"].as_str().expect("gross").parse().expect("a decimal");
    assert!(json["paymentDueDate"].is_string() && remaining == gross, "{json}");
    let (status, head, body) = fetch(&address, &bill, &token, "application/pdf");
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/pdf"), "{head}");
    assert!(body.starts_with(b"%PDF-"));
    let served = dir.join("served.pdf");
    std::fs::write(&served, &body).expect("write");
    let text = poppler("pdftotext", &["-layout", &served.display().to_string(), "-"]);
    assert!(text.contains(&number), "{text}");
    let (status, _, _) =
        fetch(&address, "/tmf-api/customerBillManagement/v4/customerBill/nope", &token, "application/pdf");
    assert_eq!(status, 404);

    // Regression: a final invoice's PDF showed the account's name of the day it was
    // printed. It shows the name it was issued to.
    let account_id = json["billingAccount"]["id"].as_str().expect("billing account").to_owned();
    let account_path = format!("/tmf-api/accountManagement/v4/billingAccount/{account_id}");
    let admin = super::api::create_token(data, "admin");
    let (status, head, account) = super::api::request(&address, "GET", &account_path, &admin, &[], None);
    assert_eq!(status, 200, "{head}");
    let issued_to = account["name"].as_str().expect("name").to_owned();
    assert!(text.contains(&issued_to), "{issued_to}: {text}");
    let etag = head
        .lines()
        .find_map(|line| line.strip_prefix("etag: ").or_else(|| line.strip_prefix("ETag: ")))
        .expect("etag");
    let if_match = format!("If-Match: {etag}");
    let rename = json!({"name": "Renamed Holdings"});
    let headers = ["Content-Type: application/merge-patch+json", if_match.as_str()];
    let (status, _, renamed) = super::api::request(&address, "PATCH", &account_path, &admin, &headers, Some(&rename));
    assert_eq!(status, 200, "{renamed}");
    ok(&["bill-run", "pdf", "--invoice", &number, "--out", &path, "--data-dir", &data_dir]);
    let text = poppler("pdftotext", &["-layout", &path, "-"]);
    assert!(text.contains(&issued_to) && !text.contains("Renamed Holdings"), "{text}");
    super::stop_server(child);
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
    let failed =
        tollgate(&["bill-run", "--cycle", &cycle, "--open-cycles", "--config", &wrong, "--data-dir", &data_dir], "");
    assert!(!failed.status.success(), "the run fails");
    let open = open_alarms(&database);
    let alarm = alarm_of(&open, &object).unwrap_or_else(|| panic!("{open:?}"));
    assert_eq!(alarm[1..6], ["major", "raised", "unacknowledged", object.as_str(), "applicationSubsystemFailure"]);
    assert!(alarm[6].contains("no rate for jurisdiction \"FR\""), "the error is the problem: {alarm:?}");
    // The run keeps why its last attempt failed, for every server and `show`.
    let run_line = || json_lines(&ok(&["bill-run", "show", "--run", &cycle, "--data-dir", &data_dir]))[0].clone();
    let stopped = run_line();
    assert!(stopped["error"].as_str().is_some_and(|e| e.contains("no rate for jurisdiction")), "{stopped}");
    assert!(stopped["failedAt"].is_string() && stopped["state"] == "drafting", "{stopped}");

    // Run again as it was: the same alarm, reported again.
    assert!(!tollgate(
        &["bill-run", "--cycle", &cycle, "--open-cycles", "--config", &wrong, "--data-dir", &data_dir],
        ""
    )
    .status
    .success());
    assert_eq!(alarm_of(&open_alarms(&database), &object).expect("still open")[0], alarm[0]);

    let right = tax_config(&dir, "right.json", "FR", "FR");
    ok(&["bill-run", "--cycle", &cycle, "--open-cycles", "--config", &right, "--data-dir", &data_dir]);
    assert_eq!(alarm_of(&open_alarms(&database), &object), None, "cleared");
    let done = run_line();
    assert!(done["state"] == "done" && done["error"].is_null() && done["failedAt"].is_null(), "{done}");
    let all = all_alarms(&database);
    assert_eq!(alarm_of(&all, &object).expect("kept")[..3], [alarm[0].as_str(), "cleared", "cleared"]);
    assert!(!show(&data_dir, &cycle).is_empty(), "the run billed");
    std::fs::remove_dir_all(dir).ok();
}

/// A bill run started through the API (`POST /tmf-api/billing/v1/billRun` on `serve`)
/// bills as the CLI does: refusals name the field (or the role), a dry run answers the
/// documents the CLI's dry run composes and writes nothing, the run answers 202 and ends
/// done with each hierarchy billed once and gap-free numbers, a second request changes
/// nothing (200), and `/metrics` counts it.
#[test]
fn a_bill_run_started_through_the_api_bills_each_hierarchy_once_as_the_cli_does() {
    let dir = scratch("bill-run-api");
    let data_dir = setup(&dir, 40);
    let (cycle, _) = cycles();
    let dry = json_lines(&ok(&["bill-run", "--cycle", &cycle, "--dry-run", "--data-dir", &data_dir]));
    assert!(dry.len() >= 2, "{dry:?}");
    let data = Path::new(&data_dir);
    let (child, _, _) = super::start_servers(data, "ocs.billrun.test", &["--api-listen", "127.0.0.1:0"]);
    let address = super::api::api_address(data);
    let admin = super::admin_address_of(data);
    let (finance, care, reader) = (
        super::api::create_token(data, "finance"),
        super::api::create_token(data, "care"),
        super::api::create_token(data, "read_only"),
    );
    let path = "/tmf-api/billing/v1/billRun";
    let json = ["Content-Type: application/json"];
    let post = |token: &str, body: Value| super::api::request(&address, "POST", path, token, &json, Some(&body));

    let (status, _, _) = post(&care, json!({"cycle": cycle}));
    assert_eq!(status, 403, "care does not start bill runs");
    assert_eq!(post(&reader, json!({"cycle": cycle})).0, 403, "nor does a read-only token");
    for (body, field) in [
        (json!({}), "cycle"),
        (json!({"cycle": "2026-13"}), "cycle"),
        (json!({"cycle": cycle, "accounts": ["nobody"]}), "accounts"),
        (json!({"cycle": cycle, "accounts": "all"}), "accounts"),
        (json!({"cycle": cycle, "dryRun": true}), "accounts"),
        (json!({"cycle": cycle, "dryRun": "yes"}), "dryRun"),
        (json!({"cycle": cycle, "colour": "red"}), "colour"),
    ] {
        let (status, _, error) = post(&finance, body.clone());
        assert_eq!((status, error["reason"].as_str()), (400, Some(field)), "{body}: {error}");
    }

    // A dry run of two hierarchies: the CLI's documents, nothing written.
    let accounts: Vec<&str> = dry[..2].iter().map(|doc| doc["account"].as_str().expect("account")).collect();
    let (status, _, answer) = post(&finance, json!({"cycle": cycle, "accounts": accounts, "dryRun": true}));
    assert_eq!(status, 200, "{answer}");
    let hashes = |docs: &[Value]| docs.iter().map(|doc| doc["contentHash"].clone()).collect::<Vec<_>>();
    assert_eq!(hashes(answer["documents"].as_array().expect("documents")), hashes(&dry[..2]));
    let bills = "/tmf-api/customerBillManagement/v4/customerBill";
    let (_, head, listed) = super::api::request(&address, "GET", bills, &finance, &[], None);
    assert_eq!(listed, json!([]), "a dry run writes nothing: {head}");

    // The run: accepted, then done, every hierarchy billed once, numbered without a gap.
    // A cycle that has not closed is refused unless asked for, nothing written.
    let (status, _, refused) = post(&finance, json!({"cycle": cycle}));
    assert_eq!((status, refused["reason"].as_str()), (400, Some("cycle")), "{refused}");
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("has not closed")), "{refused}");
    let (status, head, run) = post(&finance, json!({"cycle": cycle, "openCycles": true}));
    assert_eq!(status, 202, "{run}");
    assert!(head.contains(&format!("location: {path}/{cycle}\r\n")), "{head}");
    assert_eq!(run["id"], cycle.as_str());
    let one = format!("{path}/{cycle}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let run = loop {
        let (status, _, run) = super::api::request(&address, "GET", &one, &reader, &[], None);
        assert_eq!(status, 200, "{run}");
        assert_ne!(run["state"], "failed", "{run}");
        if run["state"] == "done" && run["running"] == false {
            break run;
        }
        assert!(std::time::Instant::now() < deadline, "the run never ended: {run}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let invoices = show(&data_dir, &cycle);
    assert_eq!(invoices.len(), dry.len(), "the documents the dry run composed");
    assert_eq!(numbers(&invoices), (1..=i64::try_from(dry.len()).expect("count")).collect::<Vec<_>>());
    let drafted = u64::try_from(dry.len()).expect("count");
    assert_eq!(run["progress"]["drafted"], drafted, "{run}");
    assert_eq!(run["progress"]["finalised"], drafted, "{run}");
    assert_eq!(run["running"], false, "{run}");

    // Asked again: done, nothing billed twice.
    let (status, _, again) = post(&finance, json!({"cycle": cycle, "openCycles": true}));
    assert_eq!((status, again["state"].as_str()), (200, Some("done")), "{again}");
    assert_eq!(show(&data_dir, &cycle), invoices);
    let (status, head, runs) = super::api::request(&address, "GET", path, &reader, &[], None);
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("x-total-count: 1"), "{head}");
    assert_eq!(runs[0]["id"], cycle.as_str());
    assert_eq!(super::api::request(&address, "GET", &one, &care, &[], None).0, 403);
    assert_eq!(super::api::request(&address, "GET", &format!("{path}/1999-01"), &reader, &[], None).0, 404);

    use super::fraud::metric;
    assert_eq!(metric(&admin, "tollgate_bill_runs_total{outcome=\"done\"}"), Some(1));
    assert_eq!(metric(&admin, "tollgate_bill_run_documents_total{step=\"finalised\"}"), Some(drafted));
    assert_eq!(metric(&admin, "tollgate_bill_runs_running"), Some(0));
    super::stop_server(child);
    std::fs::remove_dir_all(dir).ok();
}

/// A bill run started through the API that fails (`serve --bill-run-config` taxes in a
/// jurisdiction with no rate for the service) says so: its state `failed` with the error,
/// the `bill-run/RUN` alarm raised as from the CLI, `/metrics` counting it; asked again,
/// it is started again (and fails again), never reported done.
#[test]
fn a_bill_run_started_through_the_api_that_fails_says_why_and_raises_the_alarm() {
    let dir = scratch("bill-run-api-fails");
    let data_dir = setup(&dir, 10);
    let (cycle, _) = cycles();
    let wrong = tax_config(&dir, "wrong.json", "FR", "DE");
    let data = Path::new(&data_dir);
    let extra = ["--api-listen", "127.0.0.1:0", "--bill-run-config", wrong.as_str()];
    let (child, _, _) = super::start_servers(data, "ocs.billrun.fails.test", &extra);
    let address = super::api::api_address(data);
    let admin = super::admin_address_of(data);
    let token = super::api::create_token(data, "admin");
    let json = ["Content-Type: application/json"];
    let path = "/tmf-api/billing/v1/billRun";
    let failed = |attempt: u64| {
        let (status, _, run) = super::api::request(
            &address,
            "POST",
            path,
            &token,
            &json,
            Some(&json!({"cycle": cycle, "openCycles": true})),
        );
        assert_eq!(status, 202, "{run}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let one = format!("{path}/{cycle}");
            let (_, _, run) = super::api::request(&address, "GET", &one, &token, &[], None);
            assert_ne!(run["state"], "done", "{run}");
            if run["state"] == "failed" && super::fraud::metric(&admin, FAILED_RUNS) == Some(attempt) {
                break run;
            }
            assert!(std::time::Instant::now() < deadline, "the run never failed: {run}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    const FAILED_RUNS: &str = "tollgate_bill_runs_total{outcome=\"failed\"}";
    let run = failed(1);
    assert!(run["error"].as_str().is_some_and(|e| e.contains("no rate for jurisdiction \"FR\"")), "{run}");
    assert!(run["failedAt"].is_string(), "{run}");
    assert_eq!(run["running"], false, "{run}");
    let database = data.join("bss.sqlite3").display().to_string();
    let object = format!("bill-run/{cycle}");
    let open = open_alarms(&database);
    let alarm = alarm_of(&open, &object).unwrap_or_else(|| panic!("{open:?}"));
    assert!(alarm[6].contains("no rate for jurisdiction"), "{alarm:?}");
    failed(2);
    assert_eq!(super::fraud::metric(&admin, "tollgate_bill_runs_total{outcome=\"done\"}"), Some(0));
    super::stop_server(child);
    // Kept with the run: the CLI (and a server started again) tells the failure.
    let shown = json_lines(&ok(&["bill-run", "show", "--run", &cycle, "--data-dir", &data_dir]))[0].clone();
    assert!(shown["error"].as_str().is_some_and(|e| e.contains("no rate for jurisdiction")), "{shown}");
    std::fs::remove_dir_all(dir).ok();
}

/// Rewrites mediation's outputs `NAME.rated.jsonl` and `NAME.summary.json` in `out`:
/// `edit` gets the rated lines and returns them changed; the summary's counts follow.
fn edit_mediation(out: &Path, name: &str, edit: impl FnOnce(Vec<Value>) -> Vec<Value>) {
    let rated = out.join(format!("{name}.rated.jsonl"));
    let lines: Vec<Value> = std::fs::read_to_string(&rated)
        .expect("rated")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    let before = lines.len() as u64;
    let lines = edit(lines);
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    std::fs::write(&rated, text).expect("write");
    let summary_path = out.join(format!("{name}.summary.json"));
    let mut summary: Value = serde_json::from_slice(&std::fs::read(&summary_path).expect("summary")).expect("JSON");
    let after = lines.len() as u64;
    for field in ["records_in", "rated"] {
        summary[field] = (summary[field].as_u64().expect("count") + after - before).into();
    }
    std::fs::write(&summary_path, summary.to_string()).expect("write");
}

#[test]
fn the_reconciliation_finds_a_record_mediation_rated_that_the_engine_never_charged_and_the_reverse() {
    let dir = scratch("bill-run-reconcile-mediation");
    let data_dir = setup(&dir, 60);
    let (cycle, _) = cycles();
    bill(&data_dir, &cycle);
    let out = dir.join("out-calls");
    let out_arg = out.display().to_string();
    let report = |label: &str| {
        let lines = json_lines(&ok(&[
            "bill-run",
            "reconcile",
            "--run",
            &cycle,
            "--mediation-out",
            &out_arg,
            "--data-dir",
            &data_dir,
        ]));
        let file = lines
            .iter()
            .find(|line| line.get("mediationFile").is_some())
            .cloned()
            .unwrap_or_else(|| panic!("{label}: {lines:?}"));
        let cross = lines
            .iter()
            .find(|line| line["mediation"] == "cross-check")
            .cloned()
            .unwrap_or_else(|| panic!("{label}: {lines:?}"));
        (file, cross, lines.last().cloned().expect("summary"))
    };

    // As mediated: 60 in, 60 rated, each charged by the engine with the same amount.
    let (file, cross, summary) = report("clean");
    assert_eq!(
        (file["in"].as_u64(), file["rated"].as_u64(), file["balanced"].as_bool()),
        (Some(60), Some(60), Some(true))
    );
    assert_eq!((cross["rated"].as_u64(), cross["charged"].as_u64()), (Some(60), Some(60)), "{cross}");
    assert_eq!(cross["amounts"]["EUR"]["mediated"], cross["amounts"]["EUR"]["charged"], "{cross}");
    assert_eq!(
        (
            summary["mediatedNotCharged"].as_u64(),
            summary["chargedNotMediated"].as_u64(),
            summary["mediationUnbalanced"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );

    // A lost event: mediation's output says it rated a record the engine has no charge for.
    edit_mediation(&out, "calls.csv", |mut lines| {
        let mut lost = lines[0].clone();
        lost["record_id"] = "calls-lost".into();
        lost["record_number"] = 61.into();
        let identity = lost["record_identity"].as_str().expect("identity").replace("calls-0", "calls-lost");
        lost["record_identity"] = identity.into();
        lines.push(lost);
        lines
    });
    let (file, cross, summary) = report("lost");
    assert_eq!(file["balanced"].as_bool(), Some(true), "the file's own counts add up: {file}");
    assert_eq!(summary["mediatedNotCharged"].as_u64(), Some(1), "{summary}");
    assert_eq!(cross["mediatedNotCharged"][0]["record"].as_u64(), Some(61), "{cross}");
    assert_ne!(cross["amounts"]["EUR"]["mediated"], cross["amounts"]["EUR"]["charged"]);

    // The reverse: a charge in the engine that no rated file explains.
    edit_mediation(&out, "calls.csv", |mut lines| {
        lines.retain(|line| line["record_number"] != 61 && line["record_id"] != "calls-5");
        lines
    });
    let (_, cross, summary) = report("unexplained");
    assert_eq!(
        (summary["mediatedNotCharged"].as_u64(), summary["chargedNotMediated"].as_u64()),
        (Some(0), Some(1)),
        "{summary}"
    );
    assert_eq!(cross["charged"].as_u64(), Some(60));

    // Regression: records the engine charged twice under their keys (here delivered again
    // once its exactly-once window, shrunk to one key, had let them go) were counted once
    // and the report balanced. Each is named with how often it was charged.
    std::fs::copy(dir.join("calls.csv"), dir.join("again.csv")).expect("copy");
    let again_out = dir.join("out-again");
    let mapping = dir.join("mapping.toml");
    let input = dir.join("again.csv");
    let mut args = super::mediate::mediate_args(
        &data_dir,
        again_out.to_str().expect("path"),
        mapping.to_str().expect("path"),
        input.to_str().expect("path"),
    );
    args.extend(["--dedupe-window", "1"]);
    ok(&args);
    let (_, cross, summary) = report("charged twice");
    let twice = summary["chargedMoreThanOnce"].as_u64().expect("count");
    assert!(twice > 0, "{summary}");
    let named = cross["chargedMoreThanOnce"].as_array().expect("list");
    assert_eq!(named.len() as u64, twice, "{cross}");
    assert!(named.iter().all(|record| record["times"] == 2), "{cross}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn schemathesis_tmf678_against_the_customer_bills_of_a_bill_run() {
    let dir = scratch("bill-run-schemathesis");
    let data_dir = setup(&dir, 20);
    let (cycle, _) = cycles();
    bill(&data_dir, &cycle);
    let data = Path::new(&data_dir);
    let (child, _, _) = super::start_servers(data, "ocs.tmf678.test", &["--api-listen", "127.0.0.1:0"]);
    let address = super::api::api_address(data);
    let token = super::api::create_token(data, "finance");
    let spec = super::api::tmf_spec("TMF678_CustomerBill.swagger.json");
    // The bills and their rates are read only; the hub takes listeners (finance's role).
    let output = super::api::schemathesis_with(
        &spec,
        &address,
        "customerBillManagement",
        &token,
        r"^/(customerBill|appliedCustomerBillingRate|hub)(/\{id\})?$",
        &["--phases", "examples,fuzzing", "--suppress-health-check", "data_too_large,too_slow"],
    );
    super::stop_server(child);
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_prepaid_hierarchy_gets_a_statement_in_its_own_series_that_owes_nothing() {
    let dir = scratch("bill-run-statement");
    let data_dir = setup(&dir, 40);
    let (cycle, _) = cycles();
    // Imported row 1 is prepaid: its engine account with 50.00, a line, and three calls.
    let id = (BASE + 1).to_string();
    let create = ["account", "create", "--id", &id, "--kind", "prepaid", "--currency", "EUR", "--balance", "50"];
    ok(&[&create[..], &["--data-dir", &data_dir]].concat());
    let subscribe = [
        "account",
        "subscribe",
        "--id",
        &id,
        "--subscription",
        "7",
        "--plan",
        "mobile-prepaid-s",
        "--identity",
        "msisdn:491700000001",
    ];
    ok(&[&subscribe[..], &["--data-dir", &data_dir]].concat());
    let mapping = dir.join("mapping.toml");
    let input = dir.join("prepaid.csv");
    let mut text = String::from("id,msisdn,called,start,seconds\n");
    for n in 0..3 {
        text.push_str(&format!("prepaid-{n},491700000001,4930123{n:03},2026-03-02 11:0{n}:00,{}\n", 60 + n));
    }
    std::fs::write(&input, text).expect("input");
    let out = dir.join("out-prepaid");
    ok(&mediate_args(
        &data_dir,
        out.to_str().expect("path"),
        mapping.to_str().expect("path"),
        input.to_str().expect("path"),
    ));
    let charged = Decimal::from(50) - engine_balance(&data_dir, BASE + 1);
    assert!(charged > Decimal::ZERO, "the calls were charged online");
    // A goodwill credit of 0.05 for the prepaid account: on a statement it is owed to the
    // customer, so it goes back to the prepaid balance (up to what the statement charged).
    let dry = json_lines(&ok(&["bill-run", "--cycle", &cycle, "--dry-run", "--data-dir", &data_dir]));
    let composed =
        dry.iter().find(|doc| doc["id"].as_str().is_some_and(|id| id.starts_with("st-"))).expect("a statement");
    let prepaid = composed["account"].as_str().expect("account").to_owned();
    let credit =
        ["bill-run", "credit", "--account", &prepaid, "--id", "goodwill", "--amount", "0.05", "--currency", "EUR"];
    ok(&[&credit[..], &["--data-dir", &data_dir]].concat());
    let used = charged.min(Decimal::new(5, 2));

    let summary = bill(&data_dir, &cycle);
    assert!(summary.contains("(1 prepaid statements)"), "{summary}");
    let documents = show(&data_dir, &cycle);
    let statements: Vec<&Value> = documents.iter().filter(|doc| doc["series"] == "ST").collect();
    assert_eq!(statements.len(), 1, "{documents:?}");
    let statement = statements[0];
    assert!(statement["id"].as_str().expect("id").starts_with("st-"));
    // Numbered from 1 in its own series; the invoices' series stays gap-free beside it.
    assert_eq!(statement["number"], 1);
    let invoices: Vec<Value> = documents.iter().filter(|doc| doc["series"] == "INV").cloned().collect();
    assert_eq!(numbers(&invoices), (1..=(ROWS / 2) as i64).collect::<Vec<_>>());
    // It shows the usage the engine charged, to the cent, less the credit.
    assert_eq!(statement["gross"].as_str().expect("gross").parse::<Decimal>().expect("decimal"), charged - used);

    // Nothing is owed on it: not in the aging, and its usage is not given back to the
    // prepaid balance (it was paid from it); the credit is.
    let account = statement["account"].as_str().expect("account");
    let aging = json_lines(&ok(&["receivables", "aging", "--data-dir", &data_dir]));
    assert!(!aging.iter().any(|line| line["billingAccount"] == account), "{aging:?}");
    let (child, _, _) =
        super::start_servers(Path::new(&data_dir), "ocs.statement.test", &["--api-listen", "127.0.0.1:0"]);
    let data = Path::new(&data_dir);
    let address = super::api::api_address(data);
    let token = super::api::create_token(data, "finance");
    let bill = format!("/tmf-api/customerBillManagement/v4/customerBill/{}", statement["id"].as_str().expect("id"));
    let (status, _, body) = fetch(&address, &bill, &token, "application/json");
    assert_eq!(status, 200);
    let json: Value = serde_json::from_slice(&body).expect("JSON");
    let due: Decimal = json["amountDue"]["value"].to_string().parse().expect("a decimal");
    assert_eq!((&json["category"], due), (&json!("statement"), Decimal::ZERO), "{json}");
    assert!(json.get("paymentDueDate").is_none() && json.get("remainingAmount").is_none(), "{json}");
    let (status, _, pdf) = fetch(&address, &bill, &token, "application/pdf");
    assert_eq!(status, 200);
    let balance = format!("/tmf-api/prepayBalanceManagement/v4/accumulatedBalance/{prepaid}");
    let admin = super::api::create_token(data, "admin");
    let expected = Decimal::from(50) - charged + used;
    for _ in 0..300 {
        let (_, _, body) = fetch(&address, &balance, &admin, "application/json");
        let json: Value = serde_json::from_slice(&body).unwrap_or_default();
        if json["totalBalance"]["amount"].to_string().trim_matches('"').parse::<Decimal>().ok() == Some(expected) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    super::stop_server(child);
    assert_eq!(engine_balance(&data_dir, BASE + 1), expected, "the credit given back once, the usage not");
    let path = dir.join("statement.pdf");
    std::fs::write(&path, &pdf).expect("write");
    let text = poppler("pdftotext", &["-layout", &path.display().to_string(), "-"]);
    assert!(text.contains("Statement") && text.contains("Nothing to pay") && !text.contains("Please pay"), "{text}");

    // The reconciliation counts its calls as billed; the journal debits the prepaid balance.
    let report = reconcile(&data_dir, &cycle);
    let line = report.iter().find(|line| line["account"] == account).expect("the prepaid account is reconciled");
    assert_eq!((line["rated"].as_u64(), line["billed"].as_u64()), (Some(3), Some(3)), "{line}");
    let csv = String::from_utf8(ok(&["bill-run", "export-gl", "--run", &cycle, "--data-dir", &data_dir]).stdout)
        .expect("utf-8");
    let prepaid: Vec<&str> = csv.lines().filter(|row| row.contains("/ST/1,")).collect();
    assert!(prepaid.iter().any(|row| row.contains(",2300,") && row.contains("prepaid balance")), "{csv}");
    assert!(!prepaid.iter().any(|row| row.contains(",1200,")), "{csv}");
    std::fs::remove_dir_all(dir).ok();
}

/// A final invoice cancelled by a credit note (issue 18: "credit notes … reference the
/// invoice they correct"; none could be issued): in its own series, final at once, once
/// per invoice, its journal the invoice's reversed, its PDF naming the invoice, and the
/// invoice owing nothing more.
#[test]
fn a_credit_note_cancels_a_final_invoice_once_and_reverses_its_journal() {
    let dir = scratch("bill-run-credit-note");
    let data_dir = setup(&dir, 40);
    let (cycle, _) = cycles();
    bill(&data_dir, &cycle);
    let invoices = show(&data_dir, &cycle);
    let invoice = invoices.iter().find(|invoice| invoice["gross"].as_str() != Some("0.00")).expect("an invoice owing");
    let issuer = invoice["issuer"].as_str().expect("issuer");
    let number = format!("{issuer}/{}/{}", invoice["series"].as_str().expect("series"), invoice["number"]);
    let gross: Decimal = invoice["gross"].as_str().expect("gross").parse().expect("decimal");
    let credit_note = |reason: &str| {
        tollgate(&["bill-run", "credit-note", "--invoice", &number, "--reason", reason, "--data-dir", &data_dir], "")
    };
    assert!(!credit_note(" ").status.success(), "a reason is required");
    let unknown =
        tollgate(&["bill-run", "credit-note", "--invoice", "nope", "--reason", "x", "--data-dir", &data_dir], "");
    assert!(!unknown.status.success());

    let issued = credit_note("billed twice by mistake");
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    let note = json_lines(&issued)[0].clone();
    assert_eq!(
        (note["corrects"].as_str(), note["number"].as_str()),
        (invoice["id"].as_str(), Some(format!("{issuer}/CN/1").as_str()))
    );
    assert_eq!(note["gross"].as_str().expect("gross").parse::<Decimal>().expect("decimal"), -gross);
    let again = credit_note("asked again");
    assert!(again.status.success());
    assert_eq!(json_lines(&again)[0]["number"], note["number"], "once per invoice");

    // The run's journal posts it as the invoice's reversal: still balanced, and the two
    // documents' postings cancel out.
    let csv = String::from_utf8(ok(&["bill-run", "export-gl", "--run", &cycle, "--data-dir", &data_dir]).stdout)
        .expect("utf-8");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let (mut debit, mut credit, mut net) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for record in reader.records() {
        let record = record.expect("csv");
        let (d, c) = (record[4].parse::<Decimal>().expect("debit"), record[5].parse::<Decimal>().expect("credit"));
        debit += d;
        credit += c;
        if record[1] == number || record[1] == format!("{issuer}/CN/1") {
            net += d - c;
        }
    }
    assert_eq!(debit, credit, "{csv}");
    assert!(csv.contains(&format!("{issuer}/CN/1")), "{csv}");
    assert_eq!(net, Decimal::ZERO, "{csv}");

    // The PDF says what it is and names the invoice it cancels.
    let file = dir.join("credit-note.pdf");
    let path = file.display().to_string();
    ok(&["bill-run", "pdf", "--invoice", &format!("{issuer}/CN/1"), "--out", &path, "--data-dir", &data_dir]);
    let text = poppler("pdftotext", &["-layout", &path, "-"]);
    assert!(text.contains("Credit note") && text.contains(&format!("cancels invoice {number}")), "{text}");

    // The invoice owes nothing more.
    let account = invoice["billingAccount"].as_str().or(invoice["account"].as_str()).expect("account").to_owned();
    let aging = json_lines(&ok(&[
        "receivables",
        "aging",
        "--as-of",
        "2099-01-01",
        "--root",
        &account,
        "--data-dir",
        &data_dir,
    ]));
    assert!(
        aging.iter().all(|line| line["billingAccount"] != account.as_str() || line["total"] == "0.00"),
        "{aging:?}"
    );

    // Regression: crediting an invoice that was paid left its payment stranded on it (a
    // remaining amount below zero, no credit anywhere). What it was paid is credit on
    // the account, recorded once as a payment from the credit note.
    let paid = invoices
        .iter()
        .find(|other| other["gross"].as_str() != Some("0.00") && other["id"] != invoice["id"])
        .expect("another invoice owing");
    let paid_number = format!("{issuer}/{}/{}", paid["series"].as_str().expect("series"), paid["number"]);
    let paid_account = paid["billingAccount"].as_str().or(paid["account"].as_str()).expect("account").to_owned();
    let paid_gross = paid["gross"].as_str().expect("gross");
    let currency = paid["currency"].as_str().unwrap_or("EUR");
    ok(&[
        "payment",
        "record",
        "--account",
        &paid_account,
        "--amount",
        paid_gross,
        "--currency",
        currency,
        "--reference",
        "paid-in-full",
        "--bill",
        &paid_number,
        "--data-dir",
        &data_dir,
    ]);
    let credited = tollgate(
        &["bill-run", "credit-note", "--invoice", &paid_number, "--reason", "goodwill", "--data-dir", &data_dir],
        "",
    );
    assert!(credited.status.success(), "{}", String::from_utf8_lossy(&credited.stderr));
    let payments =
        String::from_utf8(ok(&["payment", "list", "--account", &paid_account, "--data-dir", &data_dir]).stdout)
            .expect("utf-8");
    let carried: Vec<&str> = payments.lines().filter(|line| line.contains("carried-credit:cn-")).collect();
    assert_eq!(carried.len(), 1, "{payments}");
    assert!(carried[0].contains(&format!("\t{paid_gross} {currency}\t")), "{payments}");
    // A credit note of a credit note is refused, as before; so is crediting it twice.
    let again = tollgate(
        &["bill-run", "credit-note", "--invoice", &paid_number, "--reason", "twice", "--data-dir", &data_dir],
        "",
    );
    assert!(again.status.success(), "answered with the one issued");
    let payments =
        String::from_utf8(ok(&["payment", "list", "--account", &paid_account, "--data-dir", &data_dir]).stdout)
            .expect("utf-8");
    assert_eq!(payments.lines().filter(|line| line.contains("carried-credit")).count(), 1, "once: {payments}");
    std::fs::remove_dir_all(dir).ok();
}
