//! `tollgate mediate` of a generated CSV file killed with SIGKILL at seeded random points
//! (while it opens the data directory, while it charges, writes or checkpoints) and run
//! again until it finishes: its rated files, rejects and summary are byte-identical to a
//! clean run's on another data directory with the same subscribers, and so are balances.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;

use crate::{balance_on_disk, kills, report, scratch, seed, tollgate, Rng};

const MAPPING: &str = r#"
time_format = "%Y-%m-%d %H:%M:%S"
[fields]
record_id = { column = "id" }
subscriber = { column = "msisdn" }
service = { value = "voice" }
destination = { column = "called" }
start = { column = "start" }
units = { column = "seconds" }
"#;

const RECORDS: u64 = 60_000;
/// Records per batch and checkpoint (`--batch`).
const BATCH: u64 = 1024;
/// Accounts 1–4 postpaid with a large credit limit, 5 prepaid with little money (it runs
/// out, so some records are refused for credit), MSISDN 4917000000NN; 06 is nobody.
const ACCOUNTS: u64 = 5;
/// Percent of kills aimed at the start of a run (opening the engine, reading the checkpoint).
const STARTUP_KILL_PERCENT: u64 = 25;
const CALLED: [&str; 8] =
    ["491701234567", "4930123456", "4990012345", "33612345678", "12125550100", "4990012", "000", "49137555"];

fn setup(data: &Path) {
    let data_dir = data.to_str().expect("path");
    for n in 1..=ACCOUNTS {
        let id = n.to_string();
        let mut create = vec!["account", "create", "--data-dir", data_dir, "--id", &id, "--currency", "EUR"];
        if n < ACCOUNTS {
            create.extend(["--kind", "postpaid", "--credit-limit", "100000000"]);
        } else {
            create.extend(["--kind", "prepaid", "--balance", "25.00"]);
        }
        let output = tollgate(&create);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let subscription = (n * 10).to_string();
        let identity = format!("msisdn:4917000000{n:02}");
        let output = tollgate(&[
            "account",
            "subscribe",
            "--data-dir",
            data_dir,
            "--id",
            &id,
            "--subscription",
            &subscription,
            "--plan",
            "mobile-prepaid-s",
            "--identity",
            &identity,
        ]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
}

/// Calls over a week of March 2026 (every band, holidays aside), with unknown subscribers
/// and destinations, malformed lines, and duplicates: copies of earlier lines, as a switch
/// delivers a record twice. (A record id used again with other content is what
/// `a_refused_record_stays_refused_after_a_kill_when_a_later_record_reuses_its_id` covers.)
fn generate(rng: &mut Rng) -> String {
    let mut lines: Vec<String> = Vec::with_capacity(RECORDS as usize);
    for n in 0..RECORDS {
        let line = if n > 0 && rng.percent(1) {
            lines[rng.below(lines.len() as u64) as usize].clone()
        } else if rng.percent(1) {
            "broken,4917000000x,,,".to_owned()
        } else {
            let who = 1 + rng.below(ACCOUNTS + 1);
            let called = CALLED[rng.below(CALLED.len() as u64) as usize];
            let (day, hour, minute, second) = (2 + rng.below(7), rng.below(24), rng.below(60), rng.below(60));
            let seconds = 1 + rng.below(1800);
            format!("call-{n},4917000000{who:02},{called},2026-03-{day:02} {hour:02}:{minute:02}:{second:02},{seconds}")
        };
        lines.push(line);
    }
    format!("id,msisdn,called,start,seconds\n{}\n", lines.join("\n"))
}

fn mediate(data: &Path, mapping: &Path, input: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    command
        .arg("mediate")
        .arg("--data-dir")
        .arg(data)
        .arg("--out")
        .arg(data.join("out"))
        .arg("--mapping")
        .arg(mapping)
        .args(["--max-age-days", "100000", "--batch", &BATCH.to_string()])
        .arg(input)
        .stdin(Stdio::null());
    command
}

/// The summary with its one field that says how the run went (`resumed`) set to 0.
fn summary_text(out: &Path, name: &str) -> String {
    let Ok(text) = std::fs::read_to_string(out.join(format!("{name}.summary.json"))) else {
        let temporary = out.join(format!("{name}.summary.tmp")).exists();
        return format!("no {name}.summary.json (a {name}.summary.tmp is left: {temporary})");
    };
    text.lines()
        .map(|line| match line.trim_start().strip_prefix("\"resumed\": ") {
            Some(rest) => line.replace(rest.trim_end_matches(','), "0"),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, Default)]
struct Figures {
    kills: u64,
    before_checkpoint: u64,
    finished_before_kill: u64,
    rounds: u64,
    runs: u64,
}

/// A clean run of `input`, what the killed runs must end up equal to.
struct Clean<'a> {
    mapping: &'a Path,
    input: &'a Path,
    data: PathBuf,
    summary: String,
    balances: Vec<Decimal>,
    /// Of a run that has nothing to do: opening the engine and reading the checkpoint.
    startup_ms: u64,
    /// Of the rest of a whole run.
    work_ms: u64,
}

impl<'a> Clean<'a> {
    fn run(dir: &Path, mapping: &'a Path, input: &'a Path) -> Clean<'a> {
        let data = dir.join("clean");
        setup(&data);
        let started = Instant::now();
        let output = mediate(&data, mapping, input).output().expect("mediate runs");
        let whole_ms = started.elapsed().as_millis() as u64;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let started = Instant::now();
        assert!(mediate(&data, mapping, input).output().expect("mediate runs").status.success());
        let startup_ms = (started.elapsed().as_millis() as u64).max(1);
        Clean {
            mapping,
            input,
            summary: summary_text(&data.join("out"), &input.file_name().expect("name").to_string_lossy()),
            balances: (1..=ACCOUNTS).map(|n| balance_on_disk(&data, n)).collect(),
            data,
            startup_ms,
            work_ms: whole_ms.saturating_sub(startup_ms).max(1),
        }
    }

    /// Runs `mediate` on a new data directory, killing it at random points until
    /// `kill_target` kills in all or it finishes, then runs it to the end; returns how its
    /// outputs and balances differ from the clean run's.
    fn killed_round(&self, crashed: &Path, rng: &mut Rng, kill_target: u64, figures: &mut Figures) -> Vec<String> {
        figures.rounds += 1;
        setup(crashed);
        let checkpoint = crashed.join("mediation/state").join(format!("{}.checkpoint.json", self.name()));
        while figures.kills < kill_target {
            let before = std::fs::read(&checkpoint).ok();
            // Either at a random moment of the start (opening the engine, recovering its
            // journal, reading the checkpoint), or after 1 to 3 more checkpoints and a
            // random part of a batch's time: charging, writing or checkpointing.
            let (checkpoints, delay_ms) = if rng.percent(STARTUP_KILL_PERCENT) {
                (0, rng.below(self.startup_ms))
            } else {
                (rng.between(1, 3), rng.below(self.batch_ms() + 1))
            };
            figures.runs += 1;
            let mut child = mediate(crashed, self.mapping, self.input)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mediate starts");
            let mut seen = before.clone();
            let mut left = checkpoints;
            let mut deadline = (left == 0).then(|| Instant::now() + Duration::from_millis(delay_ms));
            let hang_guard = Instant::now() + Duration::from_secs(300);
            let finished = loop {
                if let Some(status) = child.try_wait().expect("poll") {
                    break Some(status);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break None;
                }
                assert!(Instant::now() < hang_guard, "mediate made no progress in 300 s");
                if left > 0 {
                    let now = std::fs::read(&checkpoint).ok();
                    if now != seen {
                        seen = now;
                        left -= 1;
                        if left == 0 {
                            deadline = Some(Instant::now() + Duration::from_millis(delay_ms));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            if let Some(status) = finished {
                assert!(status.success(), "mediate failed on its own: {status:?}");
                figures.finished_before_kill += 1;
                break;
            }
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
            figures.kills += 1;
            if std::fs::read(&checkpoint).ok() == before {
                figures.before_checkpoint += 1;
            }
        }
        figures.runs += 1;
        let output = mediate(crashed, self.mapping, self.input).output().expect("mediate runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let mut mismatches = Vec::new();
        for suffix in ["rated.csv", "rated.jsonl", "rejects.csv"] {
            let name = format!("{}.{suffix}", self.name());
            let (a, b) = (
                std::fs::read(self.data.join("out").join(&name)).expect("clean"),
                std::fs::read(crashed.join("out").join(&name)).expect("resumed"),
            );
            if a != b {
                let at = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
                let line = |bytes: &[u8]| {
                    let from = bytes[..at.min(bytes.len())].iter().rposition(|c| *c == b'\n').map_or(0, |p| p + 1);
                    let to = bytes[from..].iter().position(|c| *c == b'\n').map_or(bytes.len(), |p| from + p);
                    String::from_utf8_lossy(&bytes[from..to]).into_owned()
                };
                mismatches.push(format!(
                    "round {}: {name} differs from byte {at} ({} vs {} bytes): clean `{}`, resumed `{}`",
                    figures.rounds,
                    a.len(),
                    b.len(),
                    line(&a),
                    line(&b)
                ));
            }
        }
        let summary = summary_text(&crashed.join("out"), &self.name());
        if summary != self.summary {
            mismatches.push(format!("round {}: summary {summary}\nclean summary {}", figures.rounds, self.summary));
        }
        let balances: Vec<_> = (1..=ACCOUNTS).map(|n| balance_on_disk(crashed, n)).collect();
        if balances != self.balances {
            mismatches.push(format!("round {}: balances {balances:?}, clean {:?}", figures.rounds, self.balances));
        }
        mismatches
    }

    /// The time a batch of the clean run took.
    fn batch_ms(&self) -> u64 {
        self.work_ms * BATCH / RECORDS.max(1)
    }

    fn name(&self) -> String {
        self.input.file_name().expect("file name").to_string_lossy().into_owned()
    }
}

#[test]
fn mediate_killed_at_random_points_resumes_to_a_clean_runs_outputs() {
    let seed = seed();
    let (_, kill_target) = kills();
    let mut rng = Rng::new(seed ^ 0x006d_6564_6961_7465);
    let started = Instant::now();
    let dir = scratch("mediate");
    let mapping = dir.join("mapping.toml");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let input = dir.join("calls.csv");
    std::fs::write(&input, generate(&mut rng)).expect("input");
    let clean = Clean::run(&dir, &mapping, &input);
    let mut figures = Figures::default();
    let mut mismatches = Vec::new();
    while figures.kills < kill_target {
        let crashed = dir.join(format!("crashed-{}", figures.rounds + 1));
        mismatches.extend(clean.killed_round(&crashed, &mut rng, kill_target, &mut figures));
    }
    report(&[
        format!(
            "crash/mediate: seed {seed}: {} kills ({} before the run's first checkpoint: start, recovery, first batch), {} runs in {} rounds, {} finished before their kill, whole test {:.1?}",
            figures.kills,
            figures.before_checkpoint,
            figures.runs,
            figures.rounds,
            figures.finished_before_kill,
            started.elapsed()
        ),
        format!(
            "  {RECORDS} records, clean run {} ms (start {} ms)",
            clean.startup_ms + clean.work_ms,
            clean.startup_ms
        ),
        format!(
            "  check outputs (rated CSV and JSON lines, rejects, summary) and balances equal a clean run's: {} rounds, {} mismatches",
            figures.rounds,
            mismatches.len()
        ),
    ]);
    assert!(mismatches.is_empty(), "seed {seed}: {mismatches:#?}");
    std::fs::remove_dir_all(dir).ok();
}

/// Product bug found with the crash harness: `mediate` killed after the checkpoint of the
/// last batch (which says `complete`) and before `NAME.summary.json` is renamed into place
/// leaves no summary (a `NAME.summary.tmp` at most), and every later run finds the
/// checkpoint complete and returns its summary without writing the file. The crash image
/// is built on purpose: a whole run, then the summary removed, which is what the disk
/// holds after such a kill (the rename is the summary's only step that shows).
#[test]
fn a_kill_between_the_last_checkpoint_and_the_summary_still_ends_with_a_summary() {
    let dir = scratch("mediate-summary");
    let mapping = dir.join("mapping.toml");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let input = dir.join("calls.csv");
    std::fs::write(&input, generate(&mut Rng::new(7))).expect("input");
    let clean = Clean::run(&dir, &mapping, &input);
    let summary = clean.data.join("out/calls.csv.summary.json");
    std::fs::remove_file(&summary).expect("the summary of the whole run");
    let output = mediate(&clean.data, &mapping, &input).output().expect("mediate runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(summary.exists(), "a run after the kill leaves no summary: {}", summary.display());
    assert_eq!(summary_text(&clean.data.join("out"), "calls.csv"), clean.summary);
    std::fs::remove_dir_all(dir).ok();
}

/// Product bug found with the crash harness: a record the engine refused (here
/// `rating_failed`, unknown destination; `credit_limit_reached` alike) is written to the
/// rejects as `duplicate,record id charged before` by a run resumed after SIGKILL when a
/// later record with the same record id (a corrected re-delivery) was charged by the
/// killed run in a batch its checkpoint did not yet cover: the resumed run sends the
/// refused record again and the engine's record window now holds its id, charged with the
/// later record's origin. A clean run rejects it as refused. Rated files and balances stay
/// equal; the rejects file and the summary's `rejected`, `duplicates` and
/// `rejected_by_reason` differ. Each pair below sits in one batch, so any kill between
/// the engine charging a batch and its checkpoint shows it.
#[test]
fn a_refused_record_stays_refused_after_a_kill_when_a_later_record_reuses_its_id() {
    let seed = seed();
    let mut rng = Rng::new(seed ^ 0x0000_7265_7573_6564);
    let dir = scratch("mediate-reused-id");
    let mapping = dir.join("mapping.toml");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let input = dir.join("redelivered.csv");
    let mut text = String::from("id,msisdn,called,start,seconds\n");
    for n in 0..RECORDS / 2 {
        text.push_str(&format!("rec-{n},491700000001,000,2026-03-02 10:00:00,60\n"));
        text.push_str(&format!("rec-{n},491700000001,4930123456,2026-03-02 10:00:00,60\n"));
    }
    std::fs::write(&input, text).expect("input");
    let clean = Clean::run(&dir, &mapping, &input);
    let mut figures = Figures::default();
    let mismatches = clean.killed_round(&dir.join("crashed"), &mut rng, 10, &mut figures);
    assert!(
        mismatches.is_empty(),
        "seed {seed}, {} kills: a resumed run's outputs differ from a clean run's: {mismatches:#?}",
        figures.kills
    );
    std::fs::remove_dir_all(dir).ok();
}
