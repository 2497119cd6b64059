//! The spool adapter on a real directory: the command file's name, content and mode, one
//! file per request id however often it is retried, no reader ever seeing a partial file,
//! the gateway's result files mapped to outcomes (already there, written later, never),
//! and the configuration errors naming the directory.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tollgate_activation::testing::{sample_request, ScratchDir, SAMPLE_KI};
use tollgate_activation::{
    build, ActivationConfig, ActivationError, ActivationOutcome, Activator, Operation, ServiceProfile, SpoolActivator,
    SpoolConfig,
};

/// Generous bound on one activation: it only catches a hang, it measures nothing.
const HANG_GUARD: Duration = Duration::from_secs(60);

async fn activate(activator: &dyn Activator, id: &str, operation: Operation) -> ActivationOutcome {
    let request = sample_request(id, operation);
    tokio::time::timeout(HANG_GUARD, activator.activate(&request)).await.expect("the activation ends on its own")
}

/// The names in `directory`, sorted.
fn names(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .expect("directory")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

struct Spool {
    commands: ScratchDir,
    results: ScratchDir,
}

impl Spool {
    fn new() -> Spool {
        Spool {
            commands: ScratchDir::new("spool").expect("scratch"),
            results: ScratchDir::new("results").expect("scratch"),
        }
    }

    /// A spool adapter waiting at most `result_timeout_ms` for results (`None`: no results
    /// directory).
    fn adapter(&self, result_timeout_ms: Option<u64>) -> SpoolActivator {
        let config = SpoolConfig {
            results_directory: result_timeout_ms.map(|_| self.results.path().to_owned()),
            result_timeout_ms: result_timeout_ms.unwrap_or(0),
            poll_interval_ms: 5,
            ..SpoolConfig::new(self.commands.path())
        };
        SpoolActivator::new(&config).expect("adapter")
    }

    fn result(&self, name: &str, content: &str) {
        std::fs::write(self.results.path().join(name), content).expect("result file");
    }
}

#[tokio::test]
async fn a_command_file_is_named_by_the_request_id_holds_the_command_and_is_private() {
    let spool = Spool::new();
    let adapter = spool.adapter(None);
    let outcome = activate(&adapter, "order-1:activate", Operation::Activate).await;
    assert_eq!(outcome, ActivationOutcome::Done { reference: "order-1:activate.json".into() });
    assert_eq!(names(spool.commands.path()), ["order-1:activate.json"]);
    let path = spool.commands.path().join("order-1:activate.json");
    let command: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("command")).expect("JSON");
    assert_eq!(command["requestId"], "order-1:activate");
    assert_eq!(command["operation"], "activate");
    assert_eq!(command["sim"]["ki"], SAMPLE_KI);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
}

#[tokio::test]
async fn a_retried_request_id_writes_no_second_command() {
    let spool = Spool::new();
    let adapter = spool.adapter(None);
    assert!(activate(&adapter, "order-2:suspend", Operation::Suspend).await.is_done());
    // Marks the file: a rewrite would replace the mark.
    let path = spool.commands.path().join("order-2:suspend.json");
    std::fs::write(&path, "not picked up yet").expect("mark");
    assert!(activate(&adapter, "order-2:suspend", Operation::Suspend).await.is_done());
    assert_eq!(std::fs::read_to_string(&path).expect("command"), "not picked up yet");
    assert_eq!(names(spool.commands.path()), ["order-2:suspend.json"]);
}

#[test]
fn a_reader_never_sees_a_partial_command() {
    let spool = Spool::new();
    let adapter = spool.adapter(None);
    let stop = Arc::new(AtomicBool::new(false));
    // The gateway's side: reads each visible command as soon as it sees it, as a gateway
    // picking commands up would.
    let reader = {
        let (directory, stop) = (spool.commands.path().to_owned(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let (mut whole, mut torn) = (std::collections::HashSet::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                for name in names(&directory) {
                    if name.starts_with('.') || whole.contains(&name) {
                        continue;
                    }
                    let Ok(bytes) = std::fs::read(directory.join(&name)) else { continue };
                    match serde_json::from_slice::<serde_json::Value>(&bytes) {
                        Ok(_) => drop(whole.insert(name)),
                        Err(_) => torn.push(format!("{name}: {} bytes", bytes.len())),
                    }
                }
            }
            (whole.len(), torn)
        })
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    // Large commands (64 characteristics of 128 bytes) widen the window a torn write would show in.
    let mut profile = ServiceProfile::new("gold").expect("profile");
    for index in 0..64 {
        profile = profile.with(format!("c{index}"), "v".repeat(128)).expect("characteristic");
    }
    for index in 0..200 {
        let sample = sample_request(&format!("order-{index}:change"), Operation::ChangeProfile);
        let request = tollgate_activation::ActivationRequest::new(
            sample.id().clone(),
            Operation::ChangeProfile,
            sample.subscriber().clone(),
            Some(profile.clone()),
            sample.targets().to_vec(),
        )
        .expect("request");
        assert!(runtime.block_on(adapter.activate(&request)).is_done());
    }
    stop.store(true, Ordering::Relaxed);
    let (whole, torn) = reader.join().expect("reader");
    assert!(torn.is_empty(), "partial commands seen: {torn:?}");
    assert!(whole > 0, "the reader read nothing");
    let files = names(spool.commands.path());
    assert_eq!(files.len(), 200);
    assert!(files.iter().all(|name| name.ends_with(".json")), "temporary files left: {files:?}");
}

#[tokio::test]
async fn result_files_are_mapped_to_outcomes() {
    let transient = |fragment: &'static str| move |outcome: &ActivationOutcome| matches!(outcome, ActivationOutcome::Transient { reason, .. } if reason.contains(fragment));
    type Expect = Box<dyn Fn(&ActivationOutcome) -> bool>;
    let oversized = "x".repeat(70_000);
    let is = |expected: ActivationOutcome| -> Expect { Box::new(move |outcome| *outcome == expected) };
    let cases: Vec<(&str, &str, Expect)> = vec![
        ("ok", r#"{"reference": "gw-77"}"#, is(ActivationOutcome::Done { reference: "gw-77".into() })),
        ("ok", "", is(ActivationOutcome::Done { reference: "r-1".into() })),
        (
            "err",
            r#"{"code": "UNKNOWN_PROFILE", "reason": "gold is not defined on hss-1"}"#,
            is(ActivationOutcome::Permanent {
                code: "UNKNOWN_PROFILE".into(),
                reason: "gold is not defined on hss-1".into(),
            }),
        ),
        (
            "err",
            "\n",
            is(ActivationOutcome::Permanent {
                code: "spool-error".into(),
                reason: "the gateway gave no reason".into(),
            }),
        ),
        ("err", r#"{"reason": "HSS unreachable", "retry": true}"#, Box::new(transient("r-1.err: HSS unreachable"))),
        ("ok", "{\"reference\": ", Box::new(transient("unreadable result r-1.ok"))),
        ("err", r#"{"cause": "typo"}"#, Box::new(transient("unknown field `cause`"))),
        ("ok", &oversized, Box::new(transient("longer than 65536 bytes"))),
    ];
    for (extension, content, expected) in cases {
        let spool = Spool::new();
        spool.result(&format!("r-1.{extension}"), content);
        let outcome = activate(&spool.adapter(Some(1_000)), "r-1", Operation::Terminate).await;
        assert!(expected(&outcome), ".{extension} {content:.40}: {outcome:?}");
        // A result already there answers the request: no command is written.
        assert!(names(spool.commands.path()).is_empty(), ".{extension} {content:.40}");
    }
}

#[tokio::test]
async fn a_result_written_after_the_command_is_picked_up() {
    let spool = Spool::new();
    let adapter = spool.adapter(Some(HANG_GUARD.as_millis() as u64));
    // The gateway: waits for the command, then writes its result atomically.
    let gateway = {
        let (commands, results) = (spool.commands.path().to_owned(), spool.results.path().to_owned());
        tokio::spawn(async move {
            while !commands.join("order-3:resume.json").exists() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            std::fs::write(results.join(".order-3:resume.ok.tmp"), r#"{"reference": "gw-3"}"#).expect("result");
            std::fs::rename(results.join(".order-3:resume.ok.tmp"), results.join("order-3:resume.ok")).expect("rename");
        })
    };
    let outcome = activate(&adapter, "order-3:resume", Operation::Resume).await;
    assert_eq!(outcome, ActivationOutcome::Done { reference: "gw-3".into() });
    gateway.await.expect("gateway");
}

#[tokio::test]
async fn no_result_within_the_timeout_is_transient_and_the_command_stays() {
    let spool = Spool::new();
    let outcome = activate(&spool.adapter(Some(50)), "order-4:terminate", Operation::Terminate).await;
    assert_eq!(
        outcome,
        ActivationOutcome::Transient {
            reason: "no result for order-4:terminate.json within 50 ms (spool.result_timeout_ms)".into(),
            retry_after_ms: None
        }
    );
    assert_eq!(names(spool.commands.path()), ["order-4:terminate.json"]);
}

#[tokio::test]
async fn a_spool_that_cannot_be_written_is_transient_and_a_missing_one_refused_at_setup() {
    let spool = Spool::new();
    let adapter = spool.adapter(None);
    std::fs::remove_dir_all(spool.commands.path()).expect("remove the spool");
    let outcome = activate(&adapter, "order-5:suspend", Operation::Suspend).await;
    assert!(
        matches!(&outcome, ActivationOutcome::Transient { reason, .. } if reason.starts_with("cannot spool order-5:suspend.json: ")),
        "{outcome:?}"
    );
    let config = ActivationConfig::Spool(SpoolConfig::new(spool.commands.path()));
    let error = build(&config).expect_err("no such directory");
    assert!(matches!(error, ActivationError::Io { what: "spool directory", .. }), "{error}");
    assert!(error.to_string().contains(&spool.commands.path().display().to_string()), "{error}");
}
