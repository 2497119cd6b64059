//! read → decode → normalize → validate → deduplicate → identify → rate and charge →
//! write rated events, rejects and a summary; checkpoint after every batch.
//!
//! Exactly once, across crashes: a batch is charged through the engine's bulk path
//! (durable before it answers), then its output lines are written and synced, then the
//! checkpoint (resume offset, output lengths, counts) replaces the previous one. A run
//! resumed after a crash truncates the outputs to the checkpoint's lengths and sends the
//! next batch again: records the crashed run had already charged come back from the
//! engine as repeats *with this record's origin* (file + record number), so they are
//! written as rated, exactly as the first time; a repeat with another origin is a
//! duplicate. The engine's window of record keys is the persistent, bounded duplicate
//! window (`--dedupe-window`).
//!
//! A record's key is the digest of its identity ([`UsageRecord::record_identity`]), which
//! each reader builds from what identifies the record in its format and which always ends
//! with the subscriber it is charged to. The engine keeps a window of keys per shard (the
//! shard of the charged account); since an identity names one subscriber, and so one
//! account, whether a record is a duplicate never depends on the number of shards.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::SeqCst;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tollgate_engine::{Engine, PendingRecords, RecordAnswer, RecordCharge, RecordKey, RecordOutcome, SmolStr, Usage};

use crate::event::{Item, Reader, RejectReason, UsageRecord};
use crate::readers::ber::BerReader;
use crate::readers::csv::mapping::Mapping;
use crate::readers::csv::CsvReader;
use crate::MediationError;

/// The format of an input file.
#[derive(Debug, Clone)]
pub enum Format {
    Csv(Mapping),
    /// TS 32.297 CDR file of TS 32.298 BER records.
    Ber,
}

impl Format {
    pub fn name(&self) -> &'static str {
        match self {
            Format::Csv(_) => "csv",
            Format::Ber => "ber",
        }
    }
}

/// Records per engine message and per checkpoint unless configured. Each checkpoint
/// syncs three outputs and the checkpoint file; at 16,384 records those syncs held the
/// 2 M-line CSV benchmark back by about a tenth.
pub const DEFAULT_BATCH_RECORDS: usize = 65_536;

#[derive(Debug, Clone)]
pub struct MediationConfig {
    /// Where rated events, rejects and summaries are written.
    pub out_dir: PathBuf,
    /// Where checkpoints are kept.
    pub state_dir: PathBuf,
    /// Records charged per engine message and per checkpoint.
    pub batch_records: usize,
    /// Larger input files are refused.
    pub max_file_bytes: u64,
    /// Records older than this (relative to the engine's clock) are out of window.
    pub max_age_seconds: i64,
    /// Records further in the future than this are out of window.
    pub max_future_seconds: i64,
    /// fsync outputs and checkpoints (off only for benchmarks of the rest).
    pub sync: bool,
    /// Set to stop a run between batches: the batch in the engine is written and
    /// checkpointed, then [`Mediator::process`] answers [`MediationError::Stopped`] and the
    /// file resumes from its checkpoint when processed again (a server shutting down).
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// At most this many records a second go to the engine (`None`: as fast as it
    /// charges them): a server rating files beside online charging leaves its shards
    /// time for the network's requests.
    pub max_records_per_second: Option<u64>,
    /// For crash tests: stop with [`MediationError::Interrupted`] right after the engine
    /// charged this batch (1-based), before its outputs are synced or checkpointed.
    #[doc(hidden)]
    pub crash_after_charging_batch: Option<u64>,
    /// Told, per batch, the records this run charged (not the repeats of an earlier run's
    /// charges): a server's leakage detection holds them against the ledger's.
    pub charged_volume: Option<std::sync::Arc<dyn ChargedVolume>>,
}

/// One record a run charged itself: the engine wrote one ledger entry for it, of these
/// usage start, reported units and service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargedRecord<'a> {
    pub start_utc_seconds: i64,
    /// Units as the record reported them (the ledger entry's `units`).
    pub units: u64,
    /// The plan's service name.
    pub service: &'a str,
}

/// Where a run tells what it charged ([`MediationConfig::charged_volume`]), once per batch
/// after the batch's outputs are checkpointed, from the run's writer thread: keep it short.
pub trait ChargedVolume: Send + Sync + std::fmt::Debug {
    fn charged(&self, records: &[ChargedRecord<'_>]);
}

impl MediationConfig {
    pub fn new(out_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> MediationConfig {
        MediationConfig {
            out_dir: out_dir.into(),
            state_dir: state_dir.into(),
            batch_records: DEFAULT_BATCH_RECORDS,
            max_file_bytes: 16 << 30,
            max_age_seconds: 90 * 86_400,
            max_future_seconds: 3_600,
            sync: true,
            stop: None,
            max_records_per_second: None,
            crash_after_charging_batch: None,
            charged_volume: None,
        }
    }
}

/// Counts of one file. Always balances: `records_in = rated + rejected + duplicates`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub source: String,
    pub format: String,
    pub records_in: u64,
    pub rated: u64,
    pub rejected: u64,
    pub duplicates: u64,
    /// The rejected records by reason; they add up to `rejected` (duplicates are counted
    /// in `duplicates` only).
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Rated amount per currency.
    pub amount_by_currency: BTreeMap<String, Decimal>,
    pub units_rated: u64,
    /// Byte offset where the file stopped being readable, if it did.
    #[serde(rename = "unreadable_from")]
    pub unreadable_from_offset: Option<u64>,
    pub complete: bool,
    /// How many times this file was resumed from a checkpoint.
    pub resumed: u32,
}

impl Summary {
    pub fn balances(&self) -> bool {
        self.records_in == self.rated + self.rejected + self.duplicates
            && self.rejected_by_reason.values().sum::<u64>() == self.rejected
    }

    /// Counts one record that was not rated (a duplicate, or rejected for `reason`).
    fn count_reject(&mut self, reason: RejectReason) {
        self.records_in += 1;
        if reason == RejectReason::Duplicate {
            self.duplicates += 1;
        } else {
            self.rejected += 1;
            *self.rejected_by_reason.entry(reason.code().to_owned()).or_default() += 1;
        }
    }
}

/// A checkpoint: where to resume and how long the outputs were at that point.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    source_bytes: u64,
    next_offset: u64,
    next_number: u64,
    /// The file's content digest (XXH3-128, hex): another file delivered under the same
    /// name is told apart by it. Absent in checkpoints of earlier builds (the size alone
    /// told them apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_digest: Option<String>,
    /// CDRs before `next_offset` (TS 32.297 files), so the resumed reader checks the file
    /// header's count against the whole file. Absent for CSV, and in checkpoints written
    /// before it was kept: that count is then not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cdrs_read: Option<u32>,
    /// What this file's record keys are digests of; see [`KeyText`].
    #[serde(default)]
    keys: KeyText,
    rated_csv_bytes: u64,
    rated_jsonl_bytes: u64,
    rejects_bytes: u64,
    summary: Summary,
}

/// What a file's record keys are digests of. A run keeps the text it started with, so a
/// run interrupted before record identities existed, and resumed by this build, finds the
/// records it had charged under their old keys (their record ids) and charges none twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KeyText {
    /// The record id alone: checkpoints written before record identities (the default
    /// when a checkpoint names none).
    #[default]
    RecordId,
    /// [`UsageRecord::record_identity`].
    RecordIdentity,
}

/// Progress of a file, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Records read so far (of which rated, rejected and duplicates), this file's total
    /// across its resumptions.
    pub records: u64,
    pub rated: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

const RATED_CSV_HEADER: &str = "source,record_number,record_id,account,subscription,service,rating_group,destination,called,band,start_utc_seconds,recorded_units,units,allowance_units,amount,currency,plan,plan_version,record_identity\n";
const REJECTS_HEADER: &str = "record_number,offset,reason,message,record\n";

/// Output paths of one input file.
#[derive(Debug, Clone)]
pub struct Outputs {
    pub rated_csv: PathBuf,
    pub rated_jsonl: PathBuf,
    pub rejects: PathBuf,
    pub summary: PathBuf,
    checkpoint: PathBuf,
}

impl Outputs {
    pub fn of(config: &MediationConfig, input: &Path) -> Outputs {
        Outputs::named(config, &file_name(input))
    }

    /// The outputs under `name` (a file's name, or `NAME~DIGEST` for another file under a
    /// name mediated before: see [`Mediator::process`]).
    pub fn named(config: &MediationConfig, name: &str) -> Outputs {
        let out = |suffix: &str| config.out_dir.join(format!("{name}.{suffix}"));
        Outputs {
            rated_csv: out("rated.csv"),
            rated_jsonl: out("rated.jsonl"),
            rejects: out("rejects.csv"),
            summary: out("summary.json"),
            checkpoint: config.state_dir.join(format!("{name}.checkpoint.json")),
        }
    }
}

/// Rates usage files through an engine.
#[derive(Debug)]
pub struct Mediator<'e> {
    engine: &'e Engine,
    config: MediationConfig,
}

struct Writers {
    rated_csv: BufWriter<File>,
    rated_jsonl: BufWriter<File>,
    rejects: BufWriter<File>,
    files: [PathBuf; 3],
    /// Where a line is formatted before it is written.
    line: Vec<u8>,
    /// The input file, opened when a rejected record is read back from it.
    source: Option<File>,
}

impl Writers {
    fn lengths(&mut self) -> Result<[u64; 3], MediationError> {
        let mut out = [0; 3];
        for (i, writer) in [&mut self.rated_csv, &mut self.rated_jsonl, &mut self.rejects].into_iter().enumerate() {
            writer.flush().map_err(MediationError::io(&self.files[i]))?;
            out[i] = writer.get_ref().metadata().map_err(MediationError::io(&self.files[i]))?.len();
        }
        Ok(out)
    }

    fn sync(&mut self) -> Result<(), MediationError> {
        for (i, writer) in [&mut self.rated_csv, &mut self.rated_jsonl, &mut self.rejects].into_iter().enumerate() {
            writer.flush().map_err(MediationError::io(&self.files[i]))?;
            writer.get_ref().sync_data().map_err(MediationError::io(&self.files[i]))?;
        }
        Ok(())
    }
}

/// Opens an output for appending, cut to `keep` bytes (what the checkpoint covers);
/// a new file gets `header`. An output shorter than its checkpoint says (lost, or cut
/// by hand) is refused: extending it would write zeros where rated lines were.
fn open_output(path: &Path, keep: Option<u64>, header: &str) -> Result<BufWriter<File>, MediationError> {
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)
        .map_err(MediationError::io(path))?;
    match keep {
        Some(len) => {
            let has = file.metadata().map_err(MediationError::io(path))?.len();
            if has < len {
                return Err(MediationError::Checkpoint {
                    path: path.to_owned(),
                    message: format!("the checkpoint covers {len} bytes of this output, which has {has}"),
                });
            }
            file.set_len(len).map_err(MediationError::io(path))?
        }
        None => {
            file.set_len(0).map_err(MediationError::io(path))?;
            file.write_all(header.as_bytes()).map_err(MediationError::io(path))?;
        }
    }
    use std::io::Seek;
    file.seek(std::io::SeekFrom::End(0)).map_err(MediationError::io(path))?;
    Ok(BufWriter::with_capacity(1 << 20, file))
}

impl<'e> Mediator<'e> {
    pub fn new(engine: &'e Engine, config: MediationConfig) -> Mediator<'e> {
        Mediator { engine, config }
    }

    pub fn config(&self) -> &MediationConfig {
        &self.config
    }

    /// Rates one file (resuming it if a checkpoint says it was started) and returns its
    /// summary. A file whose checkpoint says it is complete is not read again.
    pub fn process(
        &self,
        input: &Path,
        format: &Format,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Summary, MediationError> {
        let size = std::fs::metadata(input).map_err(MediationError::io(input))?.len();
        if size > self.config.max_file_bytes {
            return Err(MediationError::TooLarge { path: input.to_owned(), size, limit: self.config.max_file_bytes });
        }
        for dir in [&self.config.out_dir, &self.config.state_dir] {
            std::fs::create_dir_all(dir).map_err(MediationError::io(dir))?;
        }
        let digest = content_digest(input)?;
        let base = file_name(input);
        let mut name = base.clone();
        let mut outputs = Outputs::named(&self.config, &name);
        let mut checkpoint = read_checkpoint(&outputs.checkpoint)?;
        let same = |cp: &Checkpoint| match &cp.source_digest {
            Some(known) => *known == digest,
            None => cp.source_bytes == size,
        };
        // Another file under a name mediated before (a switch whose file names wrap
        // around): rated under its name and its digest, so neither file's outputs or
        // checkpoint are taken for the other's (the earlier file, delivered again, still
        // finds its own).
        if checkpoint.as_ref().is_some_and(|cp| !same(cp)) {
            name = format!("{base}~{}", &digest[..16]);
            tracing::warn!(file = %input.display(), outputs = %name,
                "another file of this name was mediated before: this one's outputs take its digest in their name");
            outputs = Outputs::named(&self.config, &name);
            checkpoint = read_checkpoint(&outputs.checkpoint)?;
            if let Some(cp) = checkpoint.as_ref().filter(|cp| !same(cp)) {
                return Err(MediationError::Checkpoint {
                    path: outputs.checkpoint.clone(),
                    message: format!(
                        "was written for another file of {} bytes (digest {:?}); this one has {size} (digest {digest})",
                        cp.source_bytes, cp.source_digest
                    ),
                });
            }
        }
        if let Some(cp) = &checkpoint {
            if cp.source_bytes != size {
                return Err(MediationError::Checkpoint {
                    path: outputs.checkpoint.clone(),
                    message: format!("was written for a file of {} bytes; this one has {size}", cp.source_bytes),
                });
            }
            if cp.summary.complete {
                // A run killed after its last checkpoint and before its summary: the
                // checkpoint holds the summary, written now.
                if !outputs.summary.exists() {
                    let bytes = serde_json::to_vec_pretty(&cp.summary).unwrap_or_default();
                    write_atomic(&outputs.summary, &bytes, self.config.sync)?;
                }
                return Ok(cp.summary.clone());
            }
        }
        let (start, keep, summary, keys) = match checkpoint {
            Some(cp) => {
                let mut summary = cp.summary;
                summary.resumed += 1;
                // A checkpoint of an earlier build counted duplicates among the reasons too.
                summary.rejected_by_reason.remove(RejectReason::Duplicate.code());
                if cp.keys == KeyText::RecordId {
                    tracing::warn!(
                        file = %input.display(),
                        "resuming a run started by an earlier build: this file's records keep the keys of their record ids"
                    );
                }
                (
                    ResumePoint { offset: cp.next_offset, number: cp.next_number, cdrs_read: cp.cdrs_read },
                    Some([cp.rated_csv_bytes, cp.rated_jsonl_bytes, cp.rejects_bytes]),
                    summary,
                    cp.keys,
                )
            }
            None => (
                ResumePoint::default(),
                None,
                Summary { source: input.display().to_string(), format: format.name().to_owned(), ..Summary::default() },
                KeyText::RecordIdentity,
            ),
        };
        let mut writers = Writers {
            rated_csv: open_output(&outputs.rated_csv, keep.map(|k| k[0]), RATED_CSV_HEADER)?,
            rated_jsonl: open_output(&outputs.rated_jsonl, keep.map(|k| k[1]), "")?,
            rejects: open_output(&outputs.rejects, keep.map(|k| k[2]), REJECTS_HEADER)?,
            files: [outputs.rated_csv.clone(), outputs.rated_jsonl.clone(), outputs.rejects.clone()],
            line: Vec::with_capacity(512),
            source: None,
        };
        if keep.is_none() && self.config.sync {
            // New outputs: their names are made durable before any checkpoint (in the
            // state directory, synced on its own) can cover their bytes.
            File::open(&self.config.out_dir)
                .and_then(|dir| dir.sync_all())
                .map_err(MediationError::io(&self.config.out_dir))?;
        }
        let reader: Box<dyn Reader + Send> = match format {
            Format::Csv(mapping) => Box::new(CsvReader::open(input, mapping.clone(), start.offset, start.number)?),
            Format::Ber => {
                let reader = BerReader::open(input, start.offset, start.number)?;
                Box::new(match start.cdrs_read {
                    Some(cdrs) => reader.resuming_after(cdrs),
                    None => reader,
                })
            }
        };
        let origin_seed = xxhash_rust::xxh3::xxh3_64(format!("{name}:{size}").as_bytes());
        let file = FileRun { input, outputs: &outputs, size, digest: &digest, name: &base, origin_seed, keys };
        // Three stages, one thread each, a batch or two apart: the reader reads and
        // decodes the next batches while this thread identifies the current one and has
        // the engine charge it, and the writer writes, syncs and checkpoints the ones
        // before. Each queue between stages holds two batches, so one stage's pause (a
        // sync) does not stop the others at once. This thread keeps two batches in the
        // engine, so the shards decide one while the other's journal sync runs. The
        // engine has charged (durably) every batch the writer sees; a crash between the
        // two is what resuming already handles: the charged records come back as their
        // own repeats.
        let (summary, interrupted) = std::thread::scope(|scope| {
            let (to_charge, read) = std::sync::mpsc::sync_channel::<ReadBatch>(2);
            let (to_write, charged) = std::sync::mpsc::sync_channel::<ChargedBatch>(2);
            let batch_records = self.config.batch_records;
            let stage = |name: &str| std::thread::Builder::new().name(format!("tollgate-{name}"));
            stage("reader")
                .spawn_scoped(scope, move || {
                    read_batches(reader, batch_records, start, &to_charge);
                })
                .map_err(MediationError::io(input))?;
            let writer = stage("writer")
                .spawn_scoped(scope, move || {
                    let mut summary = summary;
                    for batch in charged {
                        self.write_batch(&file, batch, &mut writers, &mut summary, progress)?;
                    }
                    Ok::<Summary, MediationError>(summary)
                })
                .map_err(MediationError::io(input))?;
            let mut interrupted = None;
            let mut in_flight: Option<Submitted> = None;
            let mut batches = 0u64;
            let pace = Pace::new(self.config.max_records_per_second);
            // Each batch read, then one `None` to drain the last one in flight.
            for next in read.into_iter().map(Some).chain(std::iter::once(None)) {
                // Asked to stop with batches left: submit nothing more, write the batch in
                // the engine, end.
                if let Some(batch) = &next {
                    pace.wait(batch.items.len(), self.config.stop.as_deref());
                }
                let stopping = next.is_some() && self.config.stop.as_ref().is_some_and(|stop| stop.load(SeqCst));
                let next = if stopping { None } else { next };
                let submitted = match next.map(|batch| self.submit_batch(&file, batch)).transpose() {
                    Ok(submitted) => submitted,
                    Err(err) => {
                        interrupted = Some(err);
                        break;
                    }
                };
                let Some(previous) = std::mem::replace(&mut in_flight, submitted) else {
                    if stopping {
                        interrupted = Some(MediationError::Stopped);
                        break;
                    }
                    continue;
                };
                let charged = match previous.wait() {
                    Ok(charged) => charged,
                    Err(err) => {
                        interrupted = Some(err);
                        break;
                    }
                };
                batches += 1;
                if self.config.crash_after_charging_batch == Some(batches) {
                    interrupted = Some(MediationError::Interrupted(format!("stopped after charging batch {batches}")));
                    break;
                }
                if to_write.send(charged).is_err() {
                    break; // the writer failed; its error is returned below
                }
                if stopping {
                    interrupted = Some(MediationError::Stopped);
                    break;
                }
            }
            drop(to_write);
            let summary = writer.join().unwrap_or_else(|_| {
                Err(MediationError::Interrupted("the output writer stopped unexpectedly".to_owned()))
            });
            Ok::<_, MediationError>((summary, interrupted))
        })?;
        let summary = summary?;
        if let Some(err) = interrupted {
            return Err(err);
        }
        write_atomic(&outputs.summary, &serde_json::to_vec_pretty(&summary).unwrap_or_default(), self.config.sync)?;
        Ok(summary)
    }

    fn checkpoint(
        &self,
        file: &FileRun<'_>,
        resume: ResumePoint,
        writers: &mut Writers,
        summary: &Summary,
    ) -> Result<(), MediationError> {
        let [rated_csv_bytes, rated_jsonl_bytes, rejects_bytes] = writers.lengths()?;
        if self.config.sync {
            writers.sync()?;
        }
        let checkpoint = Checkpoint {
            source_bytes: file.size,
            source_digest: Some(file.digest.to_owned()),
            next_offset: resume.offset,
            next_number: resume.number,
            cdrs_read: resume.cdrs_read,
            keys: file.keys,
            rated_csv_bytes,
            rated_jsonl_bytes,
            rejects_bytes,
            summary: summary.clone(),
        };
        write_atomic(&file.outputs.checkpoint, &serde_json::to_vec(&checkpoint).unwrap_or_default(), self.config.sync)
    }

    /// Admits and identifies one batch and sends its charges to the engine.
    fn submit_batch(&self, file: &FileRun<'_>, mut batch: ReadBatch) -> Result<Submitted, MediationError> {
        let now = self.engine.now();
        let directory = self.engine.directory();
        // Per item: a verdict before charging, or the index of its charge.
        let mut verdicts: Vec<Verdict> = Vec::with_capacity(batch.items.len());
        let mut charges = Vec::with_capacity(batch.items.len());
        for item in batch.items.iter_mut() {
            let verdict = match std::mem::replace(&mut item.record, Err(crate::event::Unreadable::malformed(""))) {
                Err(unreadable) => Err((unreadable.reason, unreadable.message)),
                Ok(record) => self.admit(record, now).and_then(|record| {
                    let (subscription, account) = directory
                        .subscriber(&record.subscriber)
                        .ok_or((RejectReason::UnknownSubscriber, "no subscription has this identity".to_owned()))?;
                    let origin = xxhash_rust::xxh3::xxh3_64_with_seed(&item.number.to_le_bytes(), file.origin_seed);
                    let ids = RatedIds {
                        account,
                        subscription,
                        start_utc_seconds: record.start_utc_seconds,
                        rating_group: record.rating_group,
                        record_identity: match file.keys {
                            KeyText::RecordIdentity => record.record_identity,
                            KeyText::RecordId => record.record_id.to_string(),
                        },
                        record_id: record.record_id,
                        called: record.destination.clone(),
                        recorded_units: record.units,
                    };
                    charges.push(RecordCharge {
                        identity: Some(record.subscriber),
                        key: RecordKey::of(&ids.record_identity),
                        origin,
                        account,
                        subscription,
                        usage: Usage {
                            service: record.service,
                            rating_group: record.rating_group,
                            destination: record.destination,
                            start_utc_seconds: record.start_utc_seconds,
                            units: record.units,
                        },
                    });
                    Ok(Admitted { charge: charges.len() - 1, origin, ids })
                }),
            };
            verdicts.push(verdict);
        }
        let pending = self.engine.submit_records(charges)?;
        Ok(Submitted { read: batch, verdicts, pending })
    }

    /// Writes one charged batch's rated lines and rejects, then syncs and checkpoints.
    fn write_batch(
        &self,
        file: &FileRun<'_>,
        batch: ChargedBatch,
        writers: &mut Writers,
        summary: &mut Summary,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), MediationError> {
        let ChargedBatch { read, verdicts, answers } = batch;
        let plans = self.engine.plans();
        let mut charged_now = Vec::new();
        for (item, verdict) in read.items.into_iter().zip(verdicts) {
            let outcome = verdict.and_then(|admitted| {
                let answer = answers[admitted.charge];
                judge(&answer, admitted.origin).map(|()| (answer, admitted.ids))
            });
            match outcome {
                Ok((answer, ids)) => {
                    summary.records_in += 1;
                    summary.rated += 1;
                    summary.units_rated += answer.charged_units;
                    let rated = answer.rated.and_then(|r| plans.by_handle(r.plan).map(|plan| (r, plan)));
                    let Some((indexes, plan)) = rated else {
                        // Charged by an earlier run under a plan no longer loaded: the amount
                        // is known, the names are not.
                        write_rated(writers, file.name, &item, &answer, &ids, None)?;
                        continue;
                    };
                    *summary.amount_by_currency.entry(plan.names.currency.to_string()).or_default() += answer.amount;
                    if self.config.charged_volume.is_some() && !answer.repeated {
                        charged_now.push(ChargedRecord {
                            start_utc_seconds: ids.start_utc_seconds,
                            units: ids.recorded_units,
                            service: &plan.names.services[usize::from(indexes.service)],
                        });
                    }
                    write_rated(
                        writers,
                        file.name,
                        &item,
                        &answer,
                        &ids,
                        Some(Names {
                            service: &plan.names.services[usize::from(indexes.service)],
                            destination: indexes.destination.map(|d| &*plan.names.destinations[d as usize]),
                            band: &plan.names.bands[usize::from(indexes.band)],
                            currency: &plan.names.currency,
                            plan: &plan.names.id,
                            version: plan.version,
                        }),
                    )?;
                }
                Err((reason, message)) => {
                    summary.count_reject(reason);
                    let (offset, raw) = match item.raw.text() {
                        Some(text) => (item.offset, text),
                        None => read_back(file.input, &mut writers.source, &item)?,
                    };
                    write_reject(&mut writers.rejects, item.number, offset, reason, &message, &raw)
                        .map_err(MediationError::io(&writers.files[2]))?;
                }
            }
        }
        let resume = read.resume;
        if let Some(err) = read.unreadable {
            // The rest of the file cannot be read: one rejected entry says from where.
            let at = resume.offset;
            summary.count_reject(RejectReason::Malformed);
            summary.unreadable_from_offset = Some(at);
            let message = err.to_string();
            write_reject(&mut writers.rejects, resume.number + 1, at, RejectReason::Malformed, &message, "")
                .map_err(MediationError::io(&file.outputs.rejects))?;
            tracing::warn!(file = %file.input.display(), at, error = %message, "rest of the file is unreadable");
        }
        if read.ended {
            summary.complete = true;
        }
        debug_assert!(summary.balances());
        self.checkpoint(file, resume, writers, summary)?;
        if let Some(volume) = &self.config.charged_volume {
            volume.charged(&charged_now);
        }
        progress(Progress {
            records: summary.records_in,
            rated: summary.rated,
            rejected: summary.rejected,
            duplicates: summary.duplicates,
            bytes_done: resume.offset,
            bytes_total: file.size,
        });
        Ok(())
    }

    /// Validation that needs no lookup: the time window.
    fn admit(&self, record: UsageRecord, now: i64) -> Result<UsageRecord, (RejectReason, String)> {
        let start = record.start_utc_seconds;
        if start < now - self.config.max_age_seconds {
            return Err((
                RejectReason::OutOfWindow,
                format!("starts {}s before now, older than the window", now - start),
            ));
        }
        if start > now + self.config.max_future_seconds {
            return Err((RejectReason::OutOfWindow, format!("starts {}s in the future", start - now)));
        }
        Ok(record)
    }
}

/// The file being rated, as every stage sees it.
#[derive(Clone, Copy)]
struct FileRun<'a> {
    input: &'a Path,
    outputs: &'a Outputs,
    size: u64,
    digest: &'a str,
    name: &'a str,
    origin_seed: u64,
    keys: KeyText,
}

/// Where a reader can start again: the byte offset of the next record, the number of the
/// last record before it, and the CDRs before it (formats that count them).
#[derive(Debug, Clone, Copy, Default)]
struct ResumePoint {
    offset: u64,
    number: u64,
    cdrs_read: Option<u32>,
}

/// A batch as read: its items, where to resume after it, and whether the file ended
/// (cleanly, or unreadable from `resume` on).
/// Holds batches back to a rate of records a second, from the run's start.
struct Pace {
    per_second: Option<u64>,
    started: std::time::Instant,
    records: std::cell::Cell<u64>,
}

impl Pace {
    fn new(per_second: Option<u64>) -> Pace {
        Pace { per_second: per_second.filter(|rate| *rate > 0), started: std::time::Instant::now(), records: 0.into() }
    }

    /// Waits until the records sent so far, `count` more included, fit the rate (or the
    /// run is asked to stop), then counts them.
    fn wait(&self, count: usize, stop: Option<&std::sync::atomic::AtomicBool>) {
        let Some(rate) = self.per_second else { return };
        let before = self.records.get();
        self.records.set(before.saturating_add(count as u64));
        // The instant the records before these are due by: they go then.
        let due_nanos = u128::from(before) * 1_000_000_000 / u128::from(rate);
        let due = self.started + std::time::Duration::from_nanos(u64::try_from(due_nanos).unwrap_or(u64::MAX));
        while std::time::Instant::now() < due && !stop.is_some_and(|stop| stop.load(SeqCst)) {
            std::thread::sleep((due - std::time::Instant::now()).min(std::time::Duration::from_millis(50)));
        }
    }
}

struct ReadBatch {
    items: Vec<Item>,
    resume: ResumePoint,
    ended: bool,
    unreadable: Option<MediationError>,
}

/// A batch whose charges are in the engine.
struct Submitted {
    read: ReadBatch,
    verdicts: Vec<Verdict>,
    pending: PendingRecords,
}

impl Submitted {
    /// Waits for the engine's (durable) answers.
    fn wait(self) -> Result<ChargedBatch, MediationError> {
        let answers = self.pending.wait()?;
        Ok(ChargedBatch { read: self.read, verdicts: self.verdicts, answers })
    }
}

/// A batch after the engine: per item its verdict, and the engine's answers.
struct ChargedBatch {
    read: ReadBatch,
    verdicts: Vec<Verdict>,
    answers: Vec<RecordAnswer>,
}

/// Reads batches of at least `batch_records` items, each ending where a resume can
/// start, until the file ends or the receiver is gone.
fn read_batches(
    mut reader: Box<dyn Reader + Send>,
    batch_records: usize,
    mut resume: ResumePoint,
    out: &std::sync::mpsc::SyncSender<ReadBatch>,
) {
    loop {
        let mut batch = ReadBatch { items: Vec::with_capacity(batch_records), resume, ended: false, unreadable: None };
        // The CDRs read up to the batch's last resumable item (the reader has read no
        // further CDR when it hands out the last event of one).
        let mut cdrs_read = resume.cdrs_read;
        loop {
            match reader.next_item() {
                Ok(Some(item)) => {
                    let boundary = item.resumable_after;
                    batch.items.push(item);
                    if boundary {
                        cdrs_read = reader.cdrs_read();
                        if batch.items.len() >= batch_records {
                            break;
                        }
                    }
                }
                Ok(None) => {
                    batch.ended = true;
                    break;
                }
                Err(err) => {
                    batch.unreadable = Some(err);
                    batch.ended = true;
                    break;
                }
            }
        }
        if let Some(last) = batch.items.iter().rev().find(|item| item.resumable_after) {
            resume = ResumePoint { offset: last.next_offset, number: last.number, cdrs_read };
        }
        batch.resume = resume;
        let ended = batch.ended;
        if out.send(batch).is_err() || ended {
            return;
        }
    }
}

/// Before charging: the record's charge, or why it is rejected without charging.
type Verdict = Result<Admitted, (RejectReason, String)>;

/// A record sent to the engine: the position of its charge, its origin tag, and what its
/// rated line needs besides the answer.
struct Admitted {
    charge: usize,
    origin: u64,
    ids: RatedIds,
}

/// What an engine answer means for the file: rated, or rejected with a reason.
fn judge(answer: &RecordAnswer, origin: u64) -> Result<(), (RejectReason, String)> {
    match answer.outcome {
        // A repeat with this record's own origin is this record, charged by an earlier
        // (crashed) run of this file: it is rated, as it was then.
        RecordOutcome::Charged if !answer.repeated || answer.origin == origin => Ok(()),
        RecordOutcome::Charged => Err((RejectReason::Duplicate, "record id charged before".to_owned())),
        RecordOutcome::CreditLimitReached => {
            Err((RejectReason::CreditLimitReached, "balance or credit limit does not cover it".to_owned()))
        }
        RecordOutcome::UnknownSubscriber => {
            Err((RejectReason::UnknownSubscriber, "no subscription has this identity".to_owned()))
        }
        RecordOutcome::RatingFailed(code) => Err((RejectReason::RatingFailed, code.to_owned())),
        RecordOutcome::Suspended => {
            Err((RejectReason::Suspended, "the subscription was suspended before the usage".to_owned()))
        }
        _ => Err((RejectReason::RatingFailed, answer.outcome.code().to_owned())),
    }
}

struct RatedIds {
    record_id: SmolStr,
    /// The text the record's key is the digest of (its identity, or its id in a run
    /// started by an earlier build); rerating names the record by it.
    record_identity: String,
    account: u64,
    subscription: u64,
    start_utc_seconds: i64,
    rating_group: Option<u32>,
    /// The destination as the record gave it (the plan's group is in `Names`).
    called: Option<SmolStr>,
    /// Units as the record gave them, before the plan rounded them.
    recorded_units: u64,
}

struct Names<'p> {
    service: &'p str,
    destination: Option<&'p str>,
    band: &'p str,
    currency: &'p str,
    plan: &'p str,
    version: u32,
}

/// One rated event as the JSON-lines output holds it (the CSV output has the same
/// columns in the same order). Rerating reads these back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatedLine<'a> {
    #[serde(borrow)]
    pub source: Cow<'a, str>,
    pub record_number: u64,
    #[serde(borrow)]
    pub record_id: Cow<'a, str>,
    pub account: u64,
    pub subscription: u64,
    #[serde(borrow)]
    pub service: Cow<'a, str>,
    pub rating_group: Option<u32>,
    /// The plan's destination group.
    #[serde(borrow)]
    pub destination: Option<Cow<'a, str>>,
    /// The number called, as the record gave it.
    #[serde(borrow)]
    pub called: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub band: Cow<'a, str>,
    pub start_utc_seconds: i64,
    /// Units as the record gave them.
    pub recorded_units: u64,
    /// Units charged (after the plan's first interval and increments).
    pub units: u64,
    pub allowance_units: u64,
    pub amount: Decimal,
    #[serde(borrow)]
    pub currency: Cow<'a, str>,
    #[serde(borrow)]
    pub plan: Cow<'a, str>,
    pub plan_version: u32,
    /// What the record's exactly-once key is the digest of ([`UsageRecord::record_identity`]);
    /// rerating names the record by it. Absent in lines written before it was kept, whose
    /// key was the digest of `record_id`.
    #[serde(borrow, default)]
    pub record_identity: Option<Cow<'a, str>>,
}

fn write_rated(
    writers: &mut Writers,
    source: &str,
    item: &Item,
    answer: &RecordAnswer,
    ids: &RatedIds,
    names: Option<Names<'_>>,
) -> Result<(), MediationError> {
    let empty = Names { service: "", destination: None, band: "", currency: "", plan: "", version: 0 };
    let names = names.unwrap_or(empty);
    let line = RatedLine {
        source: source.into(),
        record_number: item.number,
        record_id: ids.record_id.as_str().into(),
        account: ids.account,
        subscription: ids.subscription,
        service: names.service.into(),
        rating_group: ids.rating_group,
        destination: names.destination.map(Cow::Borrowed),
        called: ids.called.as_deref().map(Cow::Borrowed),
        band: names.band.into(),
        start_utc_seconds: ids.start_utc_seconds,
        recorded_units: ids.recorded_units,
        units: answer.charged_units,
        allowance_units: answer.allowance_units,
        amount: answer.amount,
        currency: names.currency.into(),
        plan: names.plan.into(),
        plan_version: names.version,
        record_identity: Some(ids.record_identity.as_str().into()),
    };
    let buffer = &mut writers.line;
    buffer.clear();
    line.csv_row(buffer);
    writers.rated_csv.write_all(buffer).map_err(MediationError::io(&writers.files[0]))?;
    buffer.clear();
    line.json_line(buffer);
    writers.rated_jsonl.write_all(buffer).map_err(MediationError::io(&writers.files[1]))
}

/// Writes `value` as one line of JSON to `out` (the file at `path`).
pub(crate) fn write_json_line(out: &mut impl Write, path: &Path, value: &impl Serialize) -> Result<(), MediationError> {
    serde_json::to_writer(&mut *out, value)
        .map_err(|err| MediationError::Io { path: path.to_owned(), source: err.into() })?;
    out.write_all(b"\n").map_err(MediationError::io(path))
}

/// The bytes of `item` in the input file (line ending dropped), as text, and where they
/// start. After a CRLF line break the CSV parser's record starts at the LF (it ends a
/// record at the CR): that byte is the line break before the record, not the record's.
fn read_back(path: &Path, source: &mut Option<File>, item: &Item) -> Result<(u64, String), MediationError> {
    use std::io::{Read, Seek, SeekFrom};
    let file = match source {
        Some(file) => file,
        None => source.insert(File::open(path).map_err(MediationError::io(path))?),
    };
    let length = item.next_offset.saturating_sub(item.offset).min(crate::readers::MAX_RECORD_BYTES as u64);
    let mut bytes = Vec::with_capacity(length as usize);
    file.seek(SeekFrom::Start(item.offset)).map_err(MediationError::io(path))?;
    file.take(length).read_to_end(&mut bytes).map_err(MediationError::io(path))?;
    let mut offset = item.offset;
    if bytes.first() == Some(&b'\n') {
        bytes.remove(0);
        offset += 1;
    }
    while bytes.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
        bytes.pop();
    }
    Ok((offset, String::from_utf8_lossy(&bytes).into_owned()))
}

fn write_reject(
    out: &mut BufWriter<File>,
    number: u64,
    offset: u64,
    reason: RejectReason,
    message: &str,
    raw: &str,
) -> std::io::Result<()> {
    writeln!(out, "{number},{offset},{},{},{}", reason.code(), csv_field(message), csv_field(raw))
}

/// Quotes a CSV field when it needs it.
fn csv_field(text: &str) -> std::borrow::Cow<'_, str> {
    if text.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        std::borrow::Cow::Owned(format!("\"{}\"", text.replace('"', "\"\"")))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// The name a file's outputs and checkpoint are under: its own (`input` without one).
fn file_name(input: &Path) -> String {
    input.file_name().map_or_else(|| "input".into(), |n| n.to_string_lossy().into_owned())
}

/// XXH3-128 of the file's bytes, 32 hex digits: what tells two files of one name apart.
fn content_digest(path: &Path) -> Result<String, MediationError> {
    let mut file = File::open(path).map_err(MediationError::io(path))?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buffer).map_err(MediationError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("{:032x}", hasher.digest128()))
}

fn read_checkpoint(path: &Path) -> Result<Option<Checkpoint>, MediationError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| MediationError::Checkpoint { path: path.to_owned(), message: format!("unreadable: {err}") }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(MediationError::Io { path: path.to_owned(), source: err }),
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so the file under its
/// name is always whole.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> Result<(), MediationError> {
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary).map_err(MediationError::io(&temporary))?;
    file.write_all(bytes).map_err(MediationError::io(&temporary))?;
    if sync {
        file.sync_data().map_err(MediationError::io(&temporary))?;
    }
    std::fs::rename(&temporary, path).map_err(MediationError::io(path))?;
    if sync {
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(MediationError::io(dir))?;
        }
    }
    Ok(())
}
