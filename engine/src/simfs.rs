//! A simulated file system for crash tests: it keeps what each file and directory held at
//! its last sync apart from what was only written, so a test can cut the power at any
//! moment ([`SimFs::cut`]) and reopen the engine on what a real disk would still hold.
//!
//! The rules it enforces are POSIX's, taken strictly:
//! - a file's written bytes survive only up to its last `fsync` (appends past it may
//!   survive in part, as a torn tail: a random prefix of them, chosen by the cut's seed);
//! - a name created, renamed or removed in a directory survives only once that directory
//!   was synced; a directory itself only once its parent was.
//!
//! So a missing sync in the engine's durable compositions ([`crate::durable`]) or in its
//! order of operations shows up as a lost file or a lost acknowledged change after a cut.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::fs::FileSystem;
use crate::journal::{Storage, Syncer};

/// A simulated file system; clones share it.
#[derive(Debug, Clone)]
pub struct SimFs {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Clone, Default)]
struct Inner {
    files: HashMap<u64, SimFile>,
    dirs: HashMap<PathBuf, Dir>,
    /// The directories that exist from the start (the root and its ancestors).
    roots: Vec<PathBuf>,
    next_inode: u64,
}

#[derive(Debug, Clone, Default)]
struct SimFile {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(u64),
    Dir,
}

#[derive(Debug, Clone, Default)]
struct Dir {
    entries: BTreeMap<OsString, Node>,
    durable: BTreeMap<OsString, Node>,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file (simulated)", path.display()))
}

fn split(path: &Path) -> io::Result<(PathBuf, OsString)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent.to_owned(), name.to_owned())),
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{}: not a file path", path.display()))),
    }
}

impl SimFs {
    /// An empty file system in which `root` and its ancestors exist, durably.
    pub fn new(root: &Path) -> SimFs {
        let mut inner = Inner::default();
        let mut path = root.to_owned();
        let mut child: Option<OsString> = None;
        loop {
            let dir = inner.dirs.entry(path.clone()).or_default();
            if let Some(name) = child.take() {
                dir.entries.insert(name.clone(), Node::Dir);
                dir.durable.insert(name, Node::Dir);
            }
            inner.roots.push(path.clone());
            match (path.parent().map(Path::to_owned), path.file_name().map(|n| n.to_owned())) {
                (Some(parent), Some(name)) => {
                    child = Some(name);
                    path = parent;
                }
                _ => break,
            }
        }
        SimFs { inner: Arc::new(Mutex::new(inner)) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What would survive a power cut now: every directory reachable through synced
    /// names, every file with its synced bytes (and, chosen by `seed`, part of what was
    /// appended after them). The engine may go on writing to `self`; the image is apart.
    pub fn cut(&self, seed: u64) -> SimFs {
        let inner = self.lock();
        let mut random = seed | 1;
        let mut next = move || {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            random
        };
        let mut image = Inner { roots: inner.roots.clone(), next_inode: inner.next_inode, ..Inner::default() };
        let mut pending: Vec<PathBuf> = inner.roots.clone();
        while let Some(path) = pending.pop() {
            let Some(dir) = inner.dirs.get(&path) else { continue };
            if image.dirs.contains_key(&path) {
                continue;
            }
            for (name, node) in &dir.durable {
                match node {
                    Node::Dir => pending.push(path.join(name)),
                    Node::File(inode) => {
                        let Some(file) = inner.files.get(inode) else { continue };
                        let mut data = file.synced.clone();
                        if file.data.len() > data.len() && file.data.starts_with(&data) {
                            let extra = file.data.len() - data.len();
                            let keep = (next() % (extra as u64 + 1)) as usize;
                            // Most cuts lose the whole unsynced tail; some keep part of it.
                            let keep = if next() % 2 == 0 { 0 } else { keep };
                            data.extend_from_slice(&file.data[file.synced.len()..file.synced.len() + keep]);
                        }
                        image.files.insert(*inode, SimFile { synced: data.clone(), data });
                    }
                }
            }
            image.dirs.insert(path, Dir { entries: dir.durable.clone(), durable: dir.durable.clone() });
        }
        SimFs { inner: Arc::new(Mutex::new(image)) }
    }

    /// The paths of every file, for a test's messages.
    pub fn files(&self) -> Vec<PathBuf> {
        let inner = self.lock();
        let mut found: Vec<PathBuf> = inner
            .dirs
            .iter()
            .flat_map(|(path, dir)| {
                dir.entries.iter().filter(|(_, n)| matches!(n, Node::File(_))).map(move |(name, _)| path.join(name))
            })
            .collect();
        found.sort();
        found
    }
}

impl Inner {
    fn node(&self, path: &Path) -> Option<Node> {
        if self.dirs.contains_key(path) {
            return Some(Node::Dir);
        }
        let (parent, name) = split(path).ok()?;
        self.dirs.get(&parent)?.entries.get(&name).copied()
    }

    fn inode(&self, path: &Path) -> io::Result<u64> {
        match self.node(path) {
            Some(Node::File(inode)) => Ok(inode),
            Some(Node::Dir) => Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{}", path.display()))),
            None => Err(not_found(path)),
        }
    }

    fn file(&mut self, path: &Path) -> io::Result<&mut SimFile> {
        let inode = self.inode(path)?;
        self.files.get_mut(&inode).ok_or_else(|| not_found(path))
    }

    fn dir(&mut self, path: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(path).ok_or_else(|| not_found(path))
    }

    /// Creates `path` as an empty file if it does not exist; its inode.
    fn create(&mut self, path: &Path) -> io::Result<u64> {
        if let Ok(inode) = self.inode(path) {
            return Ok(inode);
        }
        let (parent, name) = split(path)?;
        self.next_inode += 1;
        let inode = self.next_inode;
        self.dir(&parent)?.entries.insert(name, Node::File(inode));
        self.files.insert(inode, SimFile::default());
        Ok(inode)
    }
}

impl FileSystem for SimFs {
    fn write_file(&self, path: &Path, bytes: &[u8], _mode: u32) -> io::Result<()> {
        let mut inner = self.lock();
        let inode = inner.create(path)?;
        if let Some(file) = inner.files.get_mut(&inode) {
            file.data = bytes.to_vec();
        }
        Ok(())
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        let file = inner.file(path)?;
        file.synced = file.data.clone();
        Ok(())
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn Storage>> {
        let inode = self.lock().create(path)?;
        Ok(Box::new(SimStorage { fs: self.clone(), inode }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut inner = self.lock();
        Ok(inner.file(path)?.data.clone())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let inner = self.lock();
        let found = inner.dirs.get(dir).ok_or_else(|| not_found(dir))?;
        Ok(found.entries.keys().map(|name| dir.join(name)).collect())
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        let mut inner = self.lock();
        Ok(inner.file(path)?.data.len() as u64)
    }

    fn modified(&self, path: &Path) -> io::Result<SystemTime> {
        self.lock().inode(path).map(|_| SystemTime::now())
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().node(path).is_some()
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.lock().node(path) == Some(Node::Dir)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        inner.inode(path)?;
        let (parent, name) = split(path)?;
        inner.dir(&parent)?.entries.remove(&name);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        let inode = inner.inode(from)?;
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        inner.dir(&to_dir)?;
        inner.dir(&from_dir)?.entries.remove(&from_name);
        inner.dir(&to_dir)?.entries.insert(to_name, Node::File(inode));
        Ok(())
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        let inode = inner.inode(from)?;
        if inner.node(to).is_some() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{}", to.display())));
        }
        let (to_dir, to_name) = split(to)?;
        inner.dir(&to_dir)?.entries.insert(to_name, Node::File(inode));
        Ok(())
    }

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        if inner.node(dir).is_some() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{}", dir.display())));
        }
        let (parent, name) = split(dir)?;
        inner.dir(&parent)?.entries.insert(name, Node::Dir);
        inner.dirs.insert(dir.to_owned(), Dir::default());
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        let found = inner.dir(dir)?;
        found.durable = found.entries.clone();
        Ok(())
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut inner = self.lock();
        let file = inner.file(path)?;
        file.data.resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
        Ok(())
    }

    fn lock(&self, _path: &Path) -> io::Result<Option<File>> {
        Ok(None)
    }
}

/// A file of a [`SimFs`] opened for appending.
struct SimStorage {
    fs: SimFs,
    inode: u64,
}

impl SimStorage {
    fn with<R>(&self, f: impl FnOnce(&mut SimFile) -> R) -> io::Result<R> {
        let mut inner = self.fs.lock();
        // The file may have been renamed or unlinked: the inode stays writable.
        inner.files.get_mut(&self.inode).map(f).ok_or_else(|| io::Error::other("simulated file vanished"))
    }
}

impl Storage for SimStorage {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.with(|file| file.data.extend_from_slice(bytes))
    }

    fn sync(&mut self) -> io::Result<()> {
        self.with(|file| file.synced = file.data.clone())
    }

    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        self.with(|file| file.data.clone())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.with(|file| {
            file.data.truncate(usize::try_from(len).unwrap_or(usize::MAX));
            file.synced = file.data.clone();
        })
    }

    fn syncer(&self) -> io::Result<Arc<dyn Syncer>> {
        Ok(Arc::new(SimSyncer { fs: self.fs.clone(), inode: self.inode }))
    }
}

struct SimSyncer {
    fs: SimFs,
    inode: u64,
}

impl Syncer for SimSyncer {
    fn sync(&self) -> io::Result<()> {
        let mut inner = self.fs.lock();
        if let Some(file) = inner.files.get_mut(&self.inode) {
            file.synced = file.data.clone();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable;

    #[test]
    fn only_synced_bytes_and_names_survive_a_cut() {
        let root = Path::new("/sim");
        let fs = SimFs::new(root);
        durable::create_dir_all(&fs, &root.join("data")).expect("dir");
        // Replaced durably: survives whole.
        durable::replace_file(&fs, &root.join("data/b"), b"bbb", 0o644).expect("replace");
        // Appended past its sync: survives up to the sync (at least).
        let mut log = fs.open_append(&root.join("data/log")).expect("open");
        durable::sync_parent(&fs, &root.join("data/log")).expect("sync dir");
        log.append(b"kept").expect("append");
        log.sync().expect("sync");
        log.append(b"-unsynced").expect("append");
        // Renamed without a directory sync: the old name survives.
        durable::replace_file(&fs, &root.join("data/c"), b"c", 0o644).expect("replace");
        fs.rename(&root.join("data/c"), &root.join("data/d")).expect("rename");
        // Written and synced, but its name never synced: lost.
        fs.write_file(&root.join("data/a"), b"a", 0o644).expect("write");
        fs.sync_file(&root.join("data/a")).expect("sync");
        for seed in 1..20 {
            let image = fs.cut(seed);
            assert!(!image.exists(&root.join("data/a")), "a name never synced is lost");
            assert_eq!(image.read(&root.join("data/b")).expect("b"), b"bbb");
            let log = image.read(&root.join("data/log")).expect("log");
            assert!(log.starts_with(b"kept") && b"kept-unsynced".starts_with(&log[..]), "{log:?}");
            assert!(image.exists(&root.join("data/c")) && !image.exists(&root.join("data/d")));
        }
    }
}
