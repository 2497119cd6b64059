//! The spool adapter: each activation becomes one command file, `<request id>.json`, in a
//! directory a gateway picks up (the command document of `wire`). The file appears whole
//! or not at all: written under a hidden temporary name, synced, renamed, and the
//! directory synced. A retry with the same request id writes nothing while the command or
//! its result is there. With a results directory the adapter then waits (bounded) for the
//! gateway's `<id>.ok` or `<id>.err`. File formats are in README.md ("The spool").

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::http::answer::{bounded, MAX_ANSWER_BYTES};
use crate::SpoolConfig;
use crate::{wire, ActivationError, ActivationFuture, ActivationOutcome, ActivationRequest, Activator, RequestId};

/// The command file's extension.
pub const COMMAND_EXTENSION: &str = "json";
/// The extension of a result file saying the command was carried out.
pub const OK_EXTENSION: &str = "ok";
/// The extension of a result file saying the command failed.
pub const ERR_EXTENSION: &str = "err";
/// Largest result file read, in bytes.
pub const MAX_RESULT_BYTES: usize = MAX_ANSWER_BYTES;

/// Temporary names within this process; with the process id they never collide.
static TEMPORARY: AtomicU64 = AtomicU64::new(0);

/// Hands activations to a gateway through a spool directory.
#[derive(Debug, Clone)]
pub struct SpoolActivator {
    directory: PathBuf,
    results: Option<PathBuf>,
    result_timeout_ms: u64,
    poll_interval_ms: u64,
}

fn directory(what: &'static str, path: &Path) -> Result<PathBuf, ActivationError> {
    let io = |source| ActivationError::Io { what, path: path.to_owned(), source };
    let metadata = std::fs::metadata(path).map_err(io)?;
    if !metadata.is_dir() {
        return Err(io(io::Error::new(io::ErrorKind::InvalidInput, "not a directory")));
    }
    Ok(path.to_owned())
}

/// `.ok`: `{"reference": "…"}` (optional: an empty file is fine).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OkResult {
    reference: Option<String>,
}

/// `.err`: `{"code": "…", "reason": "…", "retry": false}` (each optional).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrResult {
    code: Option<String>,
    reason: Option<String>,
    #[serde(default)]
    retry: bool,
}

impl SpoolActivator {
    /// Checks the configuration and that the directories exist.
    pub fn new(config: &SpoolConfig) -> Result<SpoolActivator, ActivationError> {
        config.validate()?;
        Ok(SpoolActivator {
            directory: directory("spool directory", &config.directory)?,
            results: config
                .results_directory
                .as_deref()
                .map(|d| directory("spool results directory", d))
                .transpose()?,
            result_timeout_ms: config.result_timeout_ms,
            poll_interval_ms: config.poll_interval_ms,
        })
    }

    /// Where the command file of `id` is written.
    pub fn command_path(&self, id: &RequestId) -> PathBuf {
        self.directory.join(format!("{id}.{COMMAND_EXTENSION}"))
    }

    async fn run(&self, request: &ActivationRequest) -> ActivationOutcome {
        let id = request.id().clone();
        if let Some(outcome) = self.result(&id).await {
            return outcome;
        }
        let command = Zeroizing::new(wire::command_json(request));
        let (path, temporary) = (self.command_path(&id), self.temporary_path(&id));
        let written = tokio::task::spawn_blocking(move || write_command(&path, &temporary, &command)).await;
        let name = format!("{id}.{COMMAND_EXTENSION}");
        match written {
            Ok(Ok(written)) => tracing::debug!(request_id = %id, written, "activation command spooled"),
            Ok(Err(err)) => return ActivationOutcome::transient(format!("cannot spool {name}: {err}")),
            Err(err) => return ActivationOutcome::transient(format!("cannot spool {name}: {err}")),
        }
        if self.results.is_none() {
            return ActivationOutcome::Done { reference: name };
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.result_timeout_ms);
        loop {
            if let Some(outcome) = self.result(&id).await {
                return outcome;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return ActivationOutcome::transient(format!(
                    "no result for {name} within {} ms (spool.result_timeout_ms)",
                    self.result_timeout_ms
                ));
            }
            tokio::time::sleep_until(deadline.min(now + Duration::from_millis(self.poll_interval_ms))).await;
        }
    }

    fn temporary_path(&self, id: &RequestId) -> PathBuf {
        let sequence = TEMPORARY.fetch_add(1, Ordering::Relaxed);
        self.directory.join(format!(".{id}.{}.{sequence}.tmp", std::process::id()))
    }

    /// The gateway's result for `id`, if there is one.
    async fn result(&self, id: &RequestId) -> Option<ActivationOutcome> {
        let results = self.results.clone()?;
        let id = id.clone();
        match tokio::task::spawn_blocking(move || read_result(&results, &id)).await {
            Ok(outcome) => outcome,
            Err(err) => Some(ActivationOutcome::transient(format!("cannot read the results directory: {err}"))),
        }
    }
}

impl Activator for SpoolActivator {
    fn activate<'a>(&'a self, request: &'a ActivationRequest) -> ActivationFuture<'a> {
        Box::pin(self.run(request))
    }
}

/// Writes `command` to `path` atomically unless it is already there; `Ok(false)`: it was.
fn write_command(path: &Path, temporary: &Path, command: &[u8]) -> io::Result<bool> {
    write_command_with(path, temporary, command, |_| Ok(()))
}

/// [`write_command`], calling `before_rename` with the synced temporary file's path (the
/// tests' window onto the moment a crash would leave only the temporary file).
fn write_command_with(
    path: &Path,
    temporary: &Path,
    command: &[u8],
    before_rename: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<bool> {
    if path.try_exists()? {
        return Ok(false);
    }
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(temporary)?;
        file.write_all(command)?;
        file.sync_all()?;
        drop(file);
        before_rename(temporary)?;
        std::fs::rename(temporary, path)?;
        // The rename is durable once the directory entry is.
        File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(temporary);
    }
    result.map(|()| true)
}

/// Reads `<id>.ok`, then `<id>.err`; `None` when neither is there.
fn read_result(results: &Path, id: &RequestId) -> Option<ActivationOutcome> {
    for extension in [OK_EXTENSION, ERR_EXTENSION] {
        let name = format!("{id}.{extension}");
        let text = match read_bounded(&results.join(&name)) {
            Ok(Some(text)) => text,
            Ok(None) => continue,
            Err(err) => return Some(ActivationOutcome::transient(format!("cannot read {name}: {err}"))),
        };
        let empty = text.trim().is_empty();
        let unreadable = |err: serde_json::Error| {
            ActivationOutcome::transient(format!("unreadable result {name}: {}", bounded(&err.to_string())))
        };
        return Some(if extension == OK_EXTENSION {
            let ok = if empty { Ok(OkResult { reference: None }) } else { serde_json::from_str::<OkResult>(&text) };
            match ok {
                Ok(ok) => {
                    ActivationOutcome::Done { reference: bounded(ok.reference.as_deref().unwrap_or(id.as_str())) }
                }
                Err(err) => unreadable(err),
            }
        } else {
            let err = if empty {
                Ok(ErrResult { code: None, reason: None, retry: false })
            } else {
                serde_json::from_str::<ErrResult>(&text)
            };
            match err {
                Ok(ErrResult { reason, retry: true, .. }) => ActivationOutcome::transient(format!(
                    "{name}: {}",
                    bounded(reason.as_deref().unwrap_or("the gateway asks to retry"))
                )),
                Ok(ErrResult { code, reason, retry: false }) => ActivationOutcome::Permanent {
                    code: bounded(code.as_deref().unwrap_or("spool-error")),
                    reason: bounded(reason.as_deref().unwrap_or("the gateway gave no reason")),
                },
                Err(err) => unreadable(err),
            }
        });
    }
    None
}

/// The file's text, or `None` when it does not exist; refused past [`MAX_RESULT_BYTES`].
fn read_bounded(path: &Path) -> io::Result<Option<String>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut text = String::new();
    file.take(MAX_RESULT_BYTES as u64 + 1).read_to_string(&mut text)?;
    if text.len() > MAX_RESULT_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("longer than {MAX_RESULT_BYTES} bytes")));
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ScratchDir;

    #[test]
    fn the_command_appears_under_its_name_only_once_written_and_synced() {
        let scratch = ScratchDir::new("spool-unit").expect("scratch");
        let (path, temporary) = (scratch.path().join("r-1.json"), scratch.path().join(".r-1.1.0.tmp"));
        let written = write_command_with(&path, &temporary, b"{\"requestId\":\"r-1\"}", |temporary| {
            assert!(!path.exists(), "the command is visible before it is complete");
            assert_eq!(std::fs::read(temporary)?, b"{\"requestId\":\"r-1\"}");
            Ok(())
        });
        assert!(written.expect("written"));
        assert_eq!(std::fs::read(&path).expect("command"), b"{\"requestId\":\"r-1\"}");
        assert!(!temporary.exists());
    }

    #[test]
    fn a_failure_before_the_rename_leaves_nothing_behind() {
        let scratch = ScratchDir::new("spool-unit").expect("scratch");
        let (path, temporary) = (scratch.path().join("r-2.json"), scratch.path().join(".r-2.1.0.tmp"));
        let crash = |_: &Path| Err(io::Error::other("power cut"));
        let error = write_command_with(&path, &temporary, b"{}", crash).expect_err("fails");
        assert_eq!(error.to_string(), "power cut");
        assert!(!path.exists() && !temporary.exists());
        // The retry writes it.
        assert!(write_command(&path, &temporary, b"{}").expect("written"));
        assert!(!write_command(&path, &temporary, b"{\"other\":1}").expect("already there"));
        assert_eq!(std::fs::read(&path).expect("command"), b"{}");
    }
}
