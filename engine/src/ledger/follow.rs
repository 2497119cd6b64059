//! Following the ledger as it grows: a [`LedgerFollower`] hands out the entries the
//! ledger thread appended since its last call, shard by shard, reading only files the
//! thread has made durable (up to the lengths its cursor records), so it takes no lock
//! and never makes a shard wait.
//!
//! Where it stands is a [`LedgerPosition`]: per shard, the last journal record whose
//! entries it has handed out (the LSN: what makes it robust), and per month file the
//! byte offset it has read to (a hint that spares reading a file from its start). Each
//! call reads up to the cursor it finds, which always ends at a whole journal record, so
//! the LSN it records after a call is exact. A month that begins (rollover) is a file
//! the cursor starts listing, read from its header; bytes past the cursor's length (a
//! frame being written, or left torn by a crash) are never read. When the ledger went
//! back (rolled back to a journal that lost its tail, or removed and rebuilt), an offset
//! that no longer fits is dropped and the file is read from its header, keeping only
//! entries past the recorded LSN: nothing is handed out twice. (Records the journal lost
//! under a lax fsync policy and whose LSNs new records took again are the one thing a
//! follower past them does not see.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::EngineError;
use crate::fs::{FileSystem, RealFs};
use crate::ledger::builder::{is_month, Cursor};
use crate::ledger::{cursor_path, file_path, FileFrames, LedgerEntry};

/// Where a follower of the ledger stands (see the module text). Saved as text with
/// [`LedgerPosition::encode`] and read back with [`LedgerPosition::decode`]:
///
/// ```text
/// ledger-position 1
/// shard 0 lsn 4711
/// shard 0 2026-03 1048576
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerPosition {
    shards: Vec<ShardPosition>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ShardPosition {
    /// Every entry of the journal records up to this one has been handed out.
    lsn: u64,
    /// Month file → the byte offset read to (a frame boundary).
    files: BTreeMap<String, u64>,
}

const POSITION_HEADER: &str = "ledger-position 1";

impl LedgerPosition {
    /// The start of the ledger of `shards` shards: every entry is still to come.
    pub fn start(shards: usize) -> LedgerPosition {
        LedgerPosition { shards: vec![ShardPosition::default(); shards] }
    }

    /// The number of shards it is for.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Per shard, the last journal record whose entries were handed out.
    pub fn lsns(&self) -> Vec<u64> {
        self.shards.iter().map(|s| s.lsn).collect()
    }

    /// Per shard, the month it was last reading (its latest month file), `None` before
    /// it read one. A follower that starts a shard at that month or earlier misses
    /// nothing of it past this position.
    pub fn reading_months(&self) -> Vec<Option<String>> {
        self.shards.iter().map(|shard| shard.files.keys().next_back().cloned()).collect()
    }

    /// The position as text (the format in the type's documentation).
    pub fn encode(&self) -> String {
        let mut text = format!("{POSITION_HEADER}\n");
        for (shard, position) in self.shards.iter().enumerate() {
            text.push_str(&format!("shard {shard} lsn {}\n", position.lsn));
            for (month, offset) in &position.files {
                text.push_str(&format!("shard {shard} {month} {offset}\n"));
            }
        }
        text
    }

    /// Reads [`encode`](Self::encode)'s text; `path` names it in the error.
    pub fn decode(text: &str, path: &Path) -> Result<LedgerPosition, EngineError> {
        let bad = |line: usize, reason: &str| EngineError::Ledger {
            path: path.to_path_buf(),
            reason: format!("position line {line}: {reason}"),
        };
        let mut lines = text.lines().enumerate();
        if lines.next().map(|(_, line)| line) != Some(POSITION_HEADER) {
            return Err(bad(1, &format!("expected `{POSITION_HEADER}`")));
        }
        let mut position = LedgerPosition::default();
        for (index, line) in lines {
            let fields: Vec<&str> = line.split(' ').collect();
            let [word, shard, name, value] = fields[..] else {
                return Err(bad(index + 1, "expected `shard S lsn N` or `shard S YYYY-MM OFFSET`"));
            };
            let shard: usize = shard.parse().map_err(|_| bad(index + 1, "the shard is not a number"))?;
            let value: u64 = value.parse().map_err(|_| bad(index + 1, "the value is not a number"))?;
            if word != "shard" || shard > position.shards.len() {
                return Err(bad(index + 1, "shards are listed in order from 0"));
            }
            if shard == position.shards.len() {
                if name != "lsn" {
                    return Err(bad(index + 1, "a shard begins with its lsn"));
                }
                position.shards.push(ShardPosition { lsn: value, files: BTreeMap::new() });
            } else if is_month(name) {
                position.shards[shard].files.insert(name.to_owned(), value);
            } else {
                return Err(bad(index + 1, "expected a month YYYY-MM"));
            }
        }
        Ok(position)
    }
}

/// Reads the entries the ledger gained since the last call ([`LedgerFollower::poll`]).
#[derive(Debug)]
pub struct LedgerFollower {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    position: LedgerPosition,
    /// Per shard, the months whose offset was checked against the file in this process
    /// (a saved offset is trusted only once the frame there proves to follow the LSN).
    checked: Vec<BTreeSet<String>>,
}

impl LedgerFollower {
    /// A follower of the ledger of the data directory `dir` from `position`.
    pub fn new(dir: &Path, position: LedgerPosition) -> LedgerFollower {
        LedgerFollower::on(Arc::new(RealFs::new()), dir, position)
    }

    /// [`new`](Self::new) on the file system `fs`.
    pub fn on(fs: Arc<dyn FileSystem>, dir: &Path, position: LedgerPosition) -> LedgerFollower {
        let checked = vec![BTreeSet::new(); position.shards.len()];
        LedgerFollower { fs, dir: dir.to_path_buf(), position, checked }
    }

    /// A follower that starts where the ledger ends now (its cursors): only entries
    /// appended from now on are handed out.
    pub fn at_end(dir: &Path, shards: usize) -> Result<LedgerFollower, EngineError> {
        LedgerFollower::at_end_on(Arc::new(RealFs::new()), dir, shards)
    }

    /// [`at_end`](Self::at_end) on the file system `fs`.
    pub fn at_end_on(fs: Arc<dyn FileSystem>, dir: &Path, shards: usize) -> Result<LedgerFollower, EngineError> {
        let mut position = LedgerPosition::start(shards);
        for (shard, at) in position.shards.iter_mut().enumerate() {
            let cursor = Cursor::read(&*fs, &cursor_path(dir, shard as u32))?;
            *at = ShardPosition { lsn: cursor.lsn, files: cursor.files };
        }
        let mut follower = LedgerFollower::on(fs, dir, position);
        follower.checked = follower.position.shards.iter().map(|s| s.files.keys().cloned().collect()).collect();
        Ok(follower)
    }

    /// A follower that starts each shard at its month files of `months[shard]`
    /// (`YYYY-MM`) and later: earlier months are passed over as read. For a consumer that
    /// rebuilds its state from recent history (the fraud detectors' baselines after a
    /// restart).
    pub fn from_months(dir: &Path, months: &[String]) -> Result<LedgerFollower, EngineError> {
        LedgerFollower::from_months_on(Arc::new(RealFs::new()), dir, months)
    }

    /// [`from_months`](Self::from_months) on the file system `fs`.
    pub fn from_months_on(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        months: &[String],
    ) -> Result<LedgerFollower, EngineError> {
        let mut position = LedgerPosition::start(months.len());
        for (shard, (at, month)) in position.shards.iter_mut().zip(months).enumerate() {
            let cursor = Cursor::read(&*fs, &cursor_path(dir, shard as u32))?;
            at.files = cursor.files.into_iter().filter(|(name, _)| name < month).collect();
        }
        let mut follower = LedgerFollower::on(fs, dir, position);
        follower.checked = follower.position.shards.iter().map(|s| s.files.keys().cloned().collect()).collect();
        Ok(follower)
    }

    /// Where it stands: save it to resume there.
    pub fn position(&self) -> &LedgerPosition {
        &self.position
    }

    /// Hands every entry appended since the last call to `visit`, shard after shard, each
    /// shard's in file order (journal order within a month), up to each shard's cursor as
    /// read now; returns how many. Memory is one frame at a time. On an error the shard's
    /// position stays where it was (its entries already handed out come again next time).
    pub fn poll(&mut self, visit: &mut dyn FnMut(LedgerEntry)) -> Result<u64, EngineError> {
        self.poll_by_shard(&mut |_, entry| visit(entry))
    }

    /// [`poll`](Self::poll), telling `visit` each entry's shard.
    pub fn poll_by_shard(&mut self, visit: &mut dyn FnMut(usize, LedgerEntry)) -> Result<u64, EngineError> {
        let mut handed = 0;
        for shard in 0..self.position.shards.len() {
            handed += self.poll_shard(shard, &mut |entry| visit(shard, entry))?;
        }
        Ok(handed)
    }

    fn poll_shard(&mut self, shard: usize, visit: &mut dyn FnMut(LedgerEntry)) -> Result<u64, EngineError> {
        let fs = Arc::clone(&self.fs);
        let cursor = Cursor::read(&*fs, &cursor_path(&self.dir, shard as u32))?;
        let at = &mut self.position.shards[shard];
        let checked = &mut self.checked[shard];
        if cursor.lsn < at.lsn {
            // The ledger went back (rolled back or rebuilt): offsets mean nothing now;
            // the files are read again by LSN once it has passed this position.
            at.files.clear();
            checked.clear();
        }
        if cursor.lsn <= at.lsn {
            return Ok(0);
        }
        let mut handed = 0;
        let mut files = BTreeMap::new();
        for (month, len) in &cursor.files {
            let path = file_path(&self.dir, month, shard as u32);
            let hint = at.files.get(month).copied().filter(|offset| offset <= len);
            // From where, and whether that offset is known to be a frame boundary after
            // the position's LSN.
            let (from, sure) = match hint {
                Some(offset) if checked.contains(month) => (offset, true),
                Some(offset) => {
                    // A saved offset: trusted only once the frame there starts past the LSN
                    // (at the file's end, nothing to check yet: checked when it grows).
                    match first_lsn_at(&*fs, &path, shard as u32, offset, *len)? {
                        Some(first) if first > at.lsn => (offset, true),
                        None if offset == *len => (offset, false),
                        _ => (0, true),
                    }
                }
                None => (0, true),
            };
            if let Some(mut frames) = FileFrames::open_at(&*fs, path.clone(), shard as u32, from, *len)? {
                while let Some(frame) = frames.next()? {
                    if frame.last_lsn <= at.lsn {
                        continue;
                    }
                    let lsn = at.lsn;
                    let entries =
                        frame.entries(|_| true).map_err(|reason| EngineError::Ledger { path: path.clone(), reason })?;
                    for entry in entries.into_iter().filter(|entry| entry.lsn > lsn) {
                        handed += 1;
                        visit(entry);
                    }
                }
            }
            files.insert(month.clone(), *len);
            if sure {
                checked.insert(month.clone());
            }
        }
        at.lsn = cursor.lsn;
        at.files = files;
        Ok(handed)
    }
}

/// The first LSN of the frame at `offset` of a file of `len` bytes, or `None` if no
/// whole frame starts there (the offset is at the end, or the bytes there are no frame).
fn first_lsn_at(
    fs: &dyn FileSystem,
    path: &Path,
    shard: u32,
    offset: u64,
    len: u64,
) -> Result<Option<u64>, EngineError> {
    if offset < crate::ledger::file::HEADER_BYTES as u64 {
        return Ok(None);
    }
    let Some(mut frames) = FileFrames::open_at(fs, path.to_path_buf(), shard, offset, len)? else { return Ok(None) };
    Ok(frames.next().ok().flatten().map(|frame| frame.first_lsn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::entries::{Draft, EntryKind};
    use crate::ledger::file::{header, FrameBuilder};

    /// 2026-03-31 23:00 UTC and the next day, in April.
    const MARCH: i64 = 1_774_998_000;
    const APRIL: i64 = MARCH + 7_200;

    /// A scratch data directory with a ledger the test writes as the builder does:
    /// frames appended to month files, then the cursor.
    struct Ledger {
        fs: Arc<dyn FileSystem>,
        dir: PathBuf,
        cursor: Cursor,
    }

    impl Ledger {
        fn new(name: &str) -> Ledger {
            let dir = std::env::temp_dir().join(format!("tollgate-follow-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("ledger")).expect("scratch dir");
            Ledger { fs: Arc::new(RealFs::new()), dir, cursor: Cursor::default() }
        }

        /// Appends one frame of entries (lsn, posted_at) to the month's file, without
        /// moving the cursor.
        fn append(&self, month: &str, entries: &[(u64, i64)]) -> u64 {
            let path = file_path(&self.dir, month, 0);
            std::fs::create_dir_all(path.parent().expect("folder")).expect("month folder");
            let mut bytes = Vec::new();
            if !path.exists() {
                bytes = header(0);
            }
            let mut frame = FrameBuilder::default();
            for (lsn, posted_at) in entries {
                frame.push(&draft(*lsn, *posted_at));
            }
            frame.finish_into(&mut bytes);
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("open");
            file.write_all(&bytes).expect("append");
            std::fs::metadata(&path).expect("len").len()
        }

        /// Records the files' lengths and `lsn` in the cursor (the builder's last step).
        fn commit(&mut self, lsn: u64) {
            self.cursor.lsn = lsn;
            for month in ["2026-03", "2026-04"] {
                let path = file_path(&self.dir, month, 0);
                if let Ok(meta) = std::fs::metadata(&path) {
                    self.cursor.files.insert(month.to_owned(), meta.len());
                }
            }
            self.write_cursor();
        }

        fn write_cursor(&self) {
            std::fs::write(cursor_path(&self.dir, 0), self.cursor.encode()).expect("cursor");
        }

        fn follower(&self, position: LedgerPosition) -> LedgerFollower {
            LedgerFollower::on(Arc::clone(&self.fs), &self.dir, position)
        }
    }

    impl Drop for Ledger {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn draft(lsn: u64, posted_at: i64) -> Draft<'static> {
        Draft {
            lsn,
            posted_at,
            kind: EntryKind::Usage,
            account: 7,
            amount: rust_decimal::Decimal::new(-12, 2),
            currency: Some("EUR"),
            subscription: Some(70),
            identity: None,
            service: Some("voice"),
            rating_group: None,
            called: Some("88212345"),
            prefix_len: Some(3),
            destination: Some("world"),
            band: None,
            started_at: Some(posted_at - 30),
            units: 30,
            charged_units: 30,
            allowance_units: 0,
            draws: &[],
            plan: None,
            key: Some("k"),
            key_digest: None,
            note: None,
            validity: None,
            bucket: None,
        }
    }

    /// The LSNs `follower` hands out on one poll.
    fn check(follower: &mut LedgerFollower) -> Vec<u64> {
        let mut lsns = Vec::new();
        let handed = follower.poll(&mut |entry| lsns.push(entry.lsn)).expect("poll");
        assert_eq!(handed, lsns.len() as u64);
        lsns
    }

    #[test]
    fn a_follower_hands_out_each_entry_once_across_polls_and_a_month_rollover() {
        let mut ledger = Ledger::new("rollover");
        let mut follower = ledger.follower(LedgerPosition::start(1));
        assert_eq!(check(&mut follower), Vec::<u64>::new(), "no ledger yet");
        ledger.append("2026-03", &[(1, MARCH), (1, MARCH), (2, MARCH + 1)]);
        ledger.commit(2);
        assert_eq!(check(&mut follower), [1, 1, 2]);
        assert_eq!(check(&mut follower), Vec::<u64>::new(), "nothing new");
        // A record split over two frames (a frame is full), then the month turns.
        ledger.append("2026-03", &[(3, MARCH + 2)]);
        ledger.append("2026-03", &[(3, MARCH + 2), (4, MARCH + 3)]);
        ledger.append("2026-04", &[(5, APRIL), (6, APRIL + 1)]);
        ledger.commit(6);
        assert_eq!(check(&mut follower), [3, 3, 4, 5, 6]);
        ledger.append("2026-04", &[(7, APRIL + 2)]);
        ledger.commit(7);
        assert_eq!(check(&mut follower), [7]);
        assert_eq!(follower.position().lsns(), [7]);
    }

    #[test]
    fn bytes_past_the_cursor_a_torn_frame_included_wait_for_the_cursor() {
        let mut ledger = Ledger::new("torn");
        ledger.append("2026-03", &[(1, MARCH)]);
        ledger.commit(1);
        let mut follower = ledger.follower(LedgerPosition::start(1));
        assert_eq!(check(&mut follower), [1]);
        // The builder appended a frame and crashed in the middle of the next one.
        let whole = ledger.append("2026-03", &[(2, MARCH + 1)]);
        ledger.append("2026-03", &[(3, MARCH + 2), (4, MARCH + 3)]);
        let path = file_path(&ledger.dir, "2026-03", 0);
        let torn = std::fs::metadata(&path).expect("len").len() - 5;
        std::fs::OpenOptions::new().write(true).open(&path).expect("open").set_len(torn).expect("cut");
        assert_eq!(check(&mut follower), Vec::<u64>::new(), "nothing past the cursor");
        // The next builder cuts the file back to its cursor and builds again.
        std::fs::OpenOptions::new().write(true).open(&path).expect("open").set_len(whole).expect("cut");
        ledger.append("2026-03", &[(3, MARCH + 2), (4, MARCH + 3)]);
        ledger.commit(4);
        assert_eq!(check(&mut follower), [2, 3, 4]);
    }

    #[test]
    fn a_saved_position_resumes_after_what_was_handed_out() {
        let mut ledger = Ledger::new("resume");
        ledger.append("2026-03", &[(1, MARCH), (2, MARCH)]);
        ledger.append("2026-04", &[(3, APRIL)]);
        ledger.commit(3);
        let mut first = ledger.follower(LedgerPosition::start(1));
        assert_eq!(check(&mut first), [1, 2, 3]);
        let saved = first.position().encode();
        let path = Path::new("fraud.position");
        let position = LedgerPosition::decode(&saved, path).expect("reads back");
        assert_eq!(&position, first.position());
        ledger.append("2026-04", &[(4, APRIL + 1)]);
        ledger.commit(4);
        assert_eq!(check(&mut ledger.follower(position.clone())), [4], "the saved offsets are used");
        // A saved position with offsets that do not fit the files (the ledger was rebuilt
        // in other frames) falls back to the LSN.
        let mut shifted = position;
        for offset in shifted.shards[0].files.values_mut() {
            *offset -= 3;
        }
        assert_eq!(check(&mut ledger.follower(shifted)), [4]);
        let at_end = LedgerFollower::at_end_on(Arc::clone(&ledger.fs), &ledger.dir, 1).expect("cursors");
        assert_eq!(at_end.position().lsns(), [4]);
        assert!(LedgerPosition::decode("ledger-position 1\nshard 1 lsn 4\n", path).is_err(), "shards in order");
        assert!(LedgerPosition::decode("shard 0 lsn 4\n", path).is_err(), "the header first");
    }

    #[test]
    fn a_follower_from_a_month_hands_out_that_month_and_later_only() {
        let mut ledger = Ledger::new("from-month");
        ledger.append("2026-03", &[(1, MARCH), (2, MARCH + 1)]);
        ledger.append("2026-04", &[(3, APRIL), (4, APRIL + 1)]);
        ledger.commit(4);
        let from = |month: &str| {
            LedgerFollower::from_months_on(Arc::clone(&ledger.fs), &ledger.dir, &[month.to_owned()]).expect("cursors")
        };
        assert_eq!(check(&mut from("2026-04")), [3, 4]);
        assert_eq!(from("2026-04").position().reading_months(), [Some("2026-03".to_owned())]);
        assert_eq!(LedgerPosition::start(2).reading_months(), [None, None]);
        assert_eq!(check(&mut from("2026-03")), [1, 2, 3, 4]);
        assert_eq!(check(&mut from("2026-05")), Vec::<u64>::new());
        let mut april = from("2026-04");
        check(&mut april);
        ledger.append("2026-04", &[(5, APRIL + 2)]);
        ledger.commit(5);
        assert_eq!(check(&mut april), [5], "it follows on from there");
        let mut shards = Vec::new();
        ledger.append("2026-04", &[(6, APRIL + 3)]);
        ledger.commit(6);
        april.poll_by_shard(&mut |shard, entry| shards.push((shard, entry.lsn))).expect("poll");
        assert_eq!(shards, [(0, 6)]);
    }

    #[test]
    fn a_ledger_rolled_back_and_built_again_hands_out_only_records_past_the_position() {
        let mut ledger = Ledger::new("rollback");
        ledger.append("2026-03", &[(1, MARCH), (2, MARCH + 1), (3, MARCH + 2)]);
        ledger.commit(3);
        let mut follower = ledger.follower(LedgerPosition::start(1));
        assert_eq!(check(&mut follower), [1, 2, 3]);
        // The journal lost records 3: the builder cuts the file before its frame…
        let path = file_path(&ledger.dir, "2026-03", 0);
        std::fs::OpenOptions::new().write(true).open(&path).expect("open").set_len(16).expect("cut");
        ledger.cursor.files.insert("2026-03".to_owned(), 16);
        ledger.commit(0);
        assert_eq!(check(&mut follower), Vec::<u64>::new());
        // …and builds 1 and 2 again, then new records 3 and 4, in other frames.
        ledger.append("2026-03", &[(1, MARCH)]);
        ledger.append("2026-03", &[(2, MARCH + 1), (3, MARCH + 5), (4, MARCH + 6)]);
        ledger.commit(4);
        assert_eq!(check(&mut follower), [4], "records up to the position were handed out already");
    }
}
