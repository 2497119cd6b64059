//! The file operations the engine performs on its data directory, as one trait: the real
//! file system in production ([`RealFs`]), and in crash tests a simulated one that keeps
//! what was synced apart from what was only written ([`crate::simfs::SimFs`]), so that a
//! power cut can be taken at any moment and the engine reopened on what would survive.
//!
//! The operations are the primitives the POSIX durability rules are stated in: writing a
//! file does not make it durable, `fsync` of the file does; creating, renaming or
//! removing a name is durable once its directory is synced. Durable compositions
//! (replace a file, create a directory) are in [`crate::durable`], written once over
//! this trait, so a missing sync there shows in the crash tests.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::journal::{FaultHandle, FileStorage, Storage};

/// What the engine does to files.
pub trait FileSystem: Send + Sync + std::fmt::Debug {
    /// Creates or truncates `path` and writes `bytes` (not synced); `mode` sets the
    /// permissions of a new file.
    fn write_file(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()>;
    /// Forces a file's contents to stable storage.
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Opens `path` for appending, creating it if needed (the name is not synced).
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn Storage>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// A reader of `path` from its start.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(std::io::Cursor::new(self.read(path)?)))
    }
    /// A reader of `path` from byte `offset` (nothing past the end).
    fn open_read_at(&self, path: &Path, offset: u64) -> io::Result<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(std::io::Cursor::new(self.read_from(path, offset)?)))
    }
    /// The bytes of `path` from `offset` to its end (empty past the end).
    fn read_from(&self, path: &Path, offset: u64) -> io::Result<Vec<u8>> {
        let bytes = self.read(path)?;
        Ok(usize::try_from(offset).ok().and_then(|at| bytes.get(at..)).unwrap_or_default().to_vec())
    }
    /// The entries of a directory (files and directories), unordered.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    fn len(&self, path: &Path) -> io::Result<u64>;
    fn modified(&self, path: &Path) -> io::Result<SystemTime>;
    fn exists(&self, path: &Path) -> bool;
    fn is_dir(&self, path: &Path) -> bool;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Gives the file `from` a second name `to` (not synced).
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Creates one directory (its parent must exist).
    fn create_dir(&self, dir: &Path) -> io::Result<()>;
    /// Makes the names created, renamed or removed in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Cuts or extends a file (not synced).
    fn set_len(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Takes the data directory's lock file, held while the returned file is open;
    /// `Ok(None)` where the file system is not shared with other processes.
    fn lock(&self, path: &Path) -> io::Result<Option<File>>;
}

/// The operating system's file system, with the storage faults a test may inject.
#[derive(Debug, Clone, Default)]
pub struct RealFs {
    faults: FaultHandle,
}

impl RealFs {
    pub fn new() -> RealFs {
        RealFs::default()
    }

    /// Writes and syncs fail while `faults` says so (tests).
    #[doc(hidden)]
    pub fn with_faults(faults: std::sync::Arc<crate::journal::Faults>) -> RealFs {
        RealFs { faults: Some(faults) }
    }

    fn check(&self, sync: bool) -> io::Result<()> {
        match &self.faults {
            Some(faults) if sync => faults.check_sync(),
            Some(faults) => faults.check_write(),
            None => Ok(()),
        }
    }
}

impl FileSystem for RealFs {
    fn write_file(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        self.check(false)?;
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path)?;
        file.write_all(bytes)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        self.check(true)?;
        File::open(path)?.sync_all()
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn Storage>> {
        Ok(Box::new(FileStorage::open_with(path, self.faults.clone())?))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(File::open(path)?))
    }

    fn open_read_at(&self, path: &Path, offset: u64) -> io::Result<Box<dyn std::io::Read + Send>> {
        use std::io::{Seek, SeekFrom};
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(file))
    }

    fn read_from(&self, path: &Path, offset: u64) -> io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::with_capacity(usize::try_from(len.saturating_sub(offset)).unwrap_or(0));
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?.map(|entry| entry.map(|e| e.path())).collect()
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        std::fs::metadata(path).map(|m| m.len())
    }

    fn modified(&self, path: &Path) -> io::Result<SystemTime> {
        std::fs::metadata(path)?.modified()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.set_len(len)
    }

    fn lock(&self, path: &Path) -> io::Result<Option<File>> {
        let file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            Err(std::fs::TryLockError::Error(err)) => Err(err),
        }
    }
}
