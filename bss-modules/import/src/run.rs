//! One import run: a file through a mapping, a batch of rows per transaction, each batch
//! committed with its audit record and the run's checkpoint (rows done, where the next row
//! starts, the rejects file's length, the counts), so a run killed at any moment resumes
//! exactly after its last committed batch: the rows of the batch it was writing were
//! rolled back with the checkpoint, and the rejects file is cut back to the checkpoint's
//! length. Running the same file through the same mapping again finds its run (by the
//! file's and the mapping's SHA-256) and carries on, or, when it was complete, changes
//! nothing.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use ring::digest::{Context, SHA256};
use serde::Serialize;
use serde_json::json;
use tollgate_store::{new_entity_id, AuditRecord, ImportKind, ImportRun, Store};

use crate::batch::{ranges, Batch, RunContext};
use crate::error::{ImportError, Result};
use crate::mapping::{Columns, Mapping, Reject};
use crate::reader::{RowPosition, RowReader, MAX_ROW_BYTES};
use crate::{customers, subscriptions};

/// Rows per batch (per transaction and checkpoint) unless told otherwise.
pub const DEFAULT_BATCH_ROWS: usize = 10_000;

/// Rows per batch at most.
pub const MAX_BATCH_ROWS: usize = 100_000;

/// The header of a rejects file.
pub const REJECTS_HEADER: [&str; 4] = ["row", "field", "reason", "raw"];

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Rows per transaction and checkpoint (1 to [`MAX_BATCH_ROWS`]).
    pub batch_rows: usize,
    /// Who imports, as the audit trail names them (`cli:<user>`).
    pub actor: String,
    /// Where rejected rows go (CSV: row, field, reason, raw).
    pub rejects: PathBuf,
    /// The tariff plans subscriptions may be on: plan id → currency.
    pub plans: HashMap<String, String>,
}

/// Where a run stands, after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub rows: i64,
    pub imported: i64,
    pub duplicates: i64,
    pub rejected: i64,
}

/// What a run did, in all (a resumed run counts what its earlier attempts committed too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub run: String,
    pub kind: &'static str,
    pub file: String,
    /// Rows read: always `imported + duplicates + rejected`.
    pub rows: i64,
    pub imported: i64,
    pub duplicates: i64,
    pub rejected: i64,
    /// Rows an earlier, interrupted attempt had committed (0 for a fresh run).
    pub resumed_after_row: i64,
    /// The run had finished before: nothing was read or written.
    pub already_complete: bool,
    pub rejects: String,
}

fn summary(run: &ImportRun, resumed_after_row: i64, already_complete: bool, rejects: &Path) -> Summary {
    Summary {
        run: run.id.clone(),
        kind: run.kind.as_str(),
        file: run.file_name.clone(),
        rows: run.rows_done,
        imported: run.imported,
        duplicates: run.duplicates,
        rejected: run.rejected,
        resumed_after_row,
        already_complete,
        rejects: rejects.display().to_string(),
    }
}

/// SHA-256 and length of a file.
fn file_digest(path: &Path) -> Result<(String, u64)> {
    let mut file = File::open(path).map_err(ImportError::io(path))?;
    let mut context = Context::new(&SHA256);
    let mut buffer = vec![0; 1 << 20];
    let mut length = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(ImportError::io(path))?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
        length += n as u64;
    }
    Ok((crate::hex(context.finish().as_ref()), length))
}

/// Imports `file` through `mapping` (its kind says what the file holds), or resumes the
/// run an earlier attempt left, reporting progress after each batch.
pub async fn import_file(
    store: &Store,
    file: &Path,
    mapping: &Mapping,
    options: &ImportOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    if !(1..=MAX_BATCH_ROWS).contains(&options.batch_rows) {
        return Err(ImportError::Format {
            path: file.to_owned(),
            message: format!("batch of {} rows: 1 to {MAX_BATCH_ROWS}", options.batch_rows),
        });
    }
    let (file_sha256, file_bytes) = file_digest(file)?;
    let now = Timestamp::now();
    let mut tx = store.begin().await?;
    let run = match tx.import_run(mapping.kind, &file_sha256, &mapping.sha256).await? {
        Some(run) => {
            tx.rollback().await?;
            run
        }
        None => {
            let run = ImportRun {
                id: new_entity_id()?,
                kind: mapping.kind,
                file_name: file.display().to_string(),
                file_sha256,
                file_bytes: i64::try_from(file_bytes).unwrap_or(i64::MAX),
                mapping_sha256: mapping.sha256.clone(),
                complete: false,
                rows_done: 0,
                next_offset: 0,
                rejects_bytes: 0,
                imported: 0,
                duplicates: 0,
                rejected: 0,
                actor: options.actor.clone(),
                started_at: now,
                finished_at: None,
            };
            tx.insert_import_run(&run, now).await?;
            tx.commit().await?;
            run
        }
    };
    if run.complete {
        return Ok(summary(&run, run.rows_done, true, &options.rejects));
    }
    match mapping.kind {
        ImportKind::Customers => run_batches(store, file, mapping, options, run, progress, customers::parse_row).await,
        ImportKind::Subscriptions => {
            run_batches(store, file, mapping, options, run, progress, subscriptions::parse_row).await
        }
    }
}

/// The rejects file, locked for this run, cut back to what the checkpoint counted, with
/// its header.
fn open_rejects(path: &Path, length: i64) -> Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)
        .map_err(ImportError::io(path))?;
    // One run writes a rejects file at a time: the same import started twice at once
    // would cut and write it from two checkpoints. Held until the run ends.
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(ImportError::Format {
                path: path.to_owned(),
                message: "another import is writing this rejects file (the same import started twice at once?)".into(),
            })
        }
        Err(std::fs::TryLockError::Error(error)) => return Err(ImportError::io(path)(error)),
    }
    let found = file.metadata().map_err(ImportError::io(path))?.len();
    let keep = u64::try_from(length).unwrap_or(0);
    if found < keep {
        return Err(ImportError::RejectsChanged { path: path.to_owned(), expected: length, found });
    }
    file.set_len(keep).map_err(ImportError::io(path))?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map_err(ImportError::io(path))?;
    if keep == 0 {
        let mut header = csv::Writer::from_writer(Vec::new());
        header.write_record(REJECTS_HEADER).map_err(|error| ImportError::io(path)(error.into()))?;
        let bytes = header.into_inner().map_err(|error| ImportError::io(path)(error.into_error()))?;
        file.write_all(&bytes).map_err(ImportError::io(path))?;
    }
    Ok(file)
}

/// One batch as read: every row's position, the rows that passed their own checks, and
/// the ones that did not.
struct ReadBatch<K> {
    positions: Vec<RowPosition>,
    rows: Vec<(i64, K)>,
    rejects: Vec<(i64, Reject)>,
}

/// Reads and checks batches of rows until the file ends, the receiver hangs up, or a row
/// cannot be read (sent as the last item).
fn read_batches<K: Batch>(
    mut reader: RowReader,
    batch_rows: usize,
    parse: fn(&Columns, &csv::ByteRecord) -> Result<K, Reject>,
    sender: &tokio::sync::mpsc::Sender<Result<ReadBatch<K>>>,
) {
    let mut record = csv::ByteRecord::new();
    loop {
        let mut batch = ReadBatch {
            positions: Vec::with_capacity(batch_rows),
            rows: Vec::with_capacity(batch_rows),
            rejects: Vec::new(),
        };
        while batch.positions.len() < batch_rows {
            let position = match reader.next_row(&mut record) {
                Ok(Some(position)) => position,
                Ok(None) => break,
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            };
            batch.positions.push(position);
            if position.too_long {
                let reason = format!("longer than {MAX_ROW_BYTES} bytes: skipped to its line break");
                batch.rejects.push((position.number, Reject::new("row", reason)));
                continue;
            }
            match parse(&reader.columns, &record) {
                Ok(row) => batch.rows.push((position.number, row)),
                Err(reject) => batch.rejects.push((position.number, reject)),
            }
        }
        let last = batch.positions.len() < batch_rows;
        if batch.positions.is_empty() || sender.blocking_send(Ok(batch)).is_err() || last {
            return;
        }
    }
}

#[allow(clippy::too_many_arguments, reason = "one run's parts")]
async fn run_batches<K: Batch>(
    store: &Store,
    file: &Path,
    mapping: &Mapping,
    options: &ImportOptions,
    mut run: ImportRun,
    progress: &mut dyn FnMut(&Progress),
    parse: fn(&Columns, &csv::ByteRecord) -> Result<K, Reject>,
) -> Result<Summary> {
    let resumed_after_row = run.rows_done;
    let mut rejects_file = open_rejects(&options.rejects, run.rejects_bytes)?;
    let offset = u64::try_from(run.next_offset).unwrap_or(0);
    let reader = RowReader::open(file, mapping, offset, run.rows_done)?;
    let raw_lines = reader.raw_lines()?;
    let prefix = run.id.chars().take(16).collect();
    let mut context = RunContext::new(prefix, Timestamp::now(), options.plans.clone());
    let bytes_total = u64::try_from(run.file_bytes).unwrap_or(0);
    // Rows are read and checked on a thread of their own, a batch ahead of the one being
    // written, so the two cores share the work.
    let (sender, mut batches) = tokio::sync::mpsc::channel(1);
    let batch_rows = options.batch_rows;
    std::thread::Builder::new()
        .name("import-reader".into())
        .spawn(move || read_batches(reader, batch_rows, parse, &sender))
        .map_err(ImportError::io(file))?;
    while let Some(batch) = batches.recv().await {
        let ReadBatch { positions, rows, rejects } = batch?;
        let (Some(first), Some(last)) = (positions.first().copied(), positions.last().copied()) else { break };
        let mut tx = store.begin().await?;
        context.now = Timestamp::now();
        let mut outcome = K::apply(&mut tx, rows, &mut context).await?;
        outcome.rejects.extend(rejects);
        outcome.rejects.sort_by_key(|(row, _)| *row);
        let mut writer = csv::Writer::from_writer(&mut rejects_file);
        for (row, reject) in &outcome.rejects {
            let index = usize::try_from(row - first.number).unwrap_or(0);
            let raw = raw_lines.raw(&positions[index])?;
            writer
                .write_record([row.to_string().as_str(), &reject.field, &reject.reason, &raw])
                .map_err(|error| ImportError::io(&options.rejects)(error.into()))?;
        }
        writer.flush().map_err(ImportError::io(&options.rejects))?;
        drop(writer);
        rejects_file.sync_data().map_err(ImportError::io(&options.rejects))?;
        let rejects_bytes = rejects_file.metadata().map_err(ImportError::io(&options.rejects))?.len();

        let before = run.rows_done;
        run.rows_done = last.number;
        run.next_offset = i64::try_from(last.next_offset).unwrap_or(i64::MAX);
        run.rejects_bytes = i64::try_from(rejects_bytes).unwrap_or(i64::MAX);
        run.imported += outcome.created.len() as i64;
        run.duplicates += outcome.duplicates;
        run.rejected += outcome.rejects.len() as i64;
        let entities: serde_json::Map<String, serde_json::Value> =
            outcome.entities.iter().map(|(kind, count)| ((*kind).to_owned(), json!(count))).collect();
        let doc = json!({
            "kind": run.kind.as_str(),
            "file": run.file_name,
            "fileSha256": run.file_sha256,
            "mappingSha256": run.mapping_sha256,
            "rows": [first.number, last.number],
            "idPrefix": context.prefix,
            "createdRows": ranges(&outcome.created),
            "created": entities,
            "duplicates": outcome.duplicates,
            "rejected": outcome.rejects.len(),
            "contentSha256": context.take_digest(),
        });
        let record = AuditRecord {
            actor: &options.actor,
            action: "import",
            entity_type: "ImportRun",
            entity_id: &run.id,
            before: None,
            after: Some(&doc),
        };
        tx.audit(record, context.now).await?;
        tx.save_import_run(&run, before, context.now).await?;
        tx.commit().await?;
        progress(&Progress {
            bytes_done: last.next_offset,
            bytes_total,
            rows: run.rows_done,
            imported: run.imported,
            duplicates: run.duplicates,
            rejected: run.rejected,
        });
    }
    let before = run.rows_done;
    run.complete = true;
    let now = Timestamp::now();
    run.finished_at = Some(now);
    let mut tx = store.begin().await?;
    tx.save_import_run(&run, before, now).await?;
    tx.commit().await?;
    Ok(summary(&run, resumed_after_row, false, &options.rejects))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the same import started twice at once wrote one rejects file from two
    /// checkpoints (a line cut in the middle). The second run is refused while the first
    /// holds the file, and takes it once the first is done.
    #[test]
    fn a_rejects_file_is_written_by_one_run_at_a_time() {
        let dir = std::env::temp_dir().join(format!("tollgate-import-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("x.rejects.csv");
        let first = open_rejects(&path, 0).expect("the first run");
        match open_rejects(&path, 0) {
            Err(ImportError::Format { message, .. }) => assert!(message.contains("another import"), "{message}"),
            other => panic!("{other:?}"),
        }
        drop(first);
        open_rejects(&path, 0).expect("free again");
        std::fs::remove_dir_all(dir).ok();
    }
}
