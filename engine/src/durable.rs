//! Files made durable the way the journal is: every file the engine or the server creates
//! or replaces is written to a temporary beside it, synced, renamed over its name, and the
//! directory synced, so after a power cut the name holds either the old whole file or the
//! new whole file, never an empty or torn one. A name created, renamed or removed is
//! relied on only once its directory is synced. Written once over [`FileSystem`], so the
//! crash tests' simulated file system checks these compositions too.

use std::io;
use std::path::{Path, PathBuf};

use crate::fs::FileSystem;

/// Replaces `path` with `bytes` durably (temporary, fsync, rename, fsync of the directory).
/// `mode` sets the Unix permissions of a new file (e.g. `0o600` for a secret).
pub fn replace_file(fs: &dyn FileSystem, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let temporary = temporary_beside(path);
    let result = fs
        .write_file(&temporary, bytes, mode)
        .and_then(|()| fs.sync_file(&temporary))
        .and_then(|()| fs.rename(&temporary, path))
        .and_then(|()| sync_parent(fs, path));
    if result.is_err() {
        let _ = fs.remove_file(&temporary);
    }
    result
}

/// Syncs the directory that holds `path`, so a name created, renamed or removed in it
/// survives a power cut.
pub fn sync_parent(fs: &dyn FileSystem, path: &Path) -> io::Result<()> {
    fs.sync_dir(parent(path))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Creates the directory (and its parents) and syncs each parent whose entries changed.
pub fn create_dir_all(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    if fs.is_dir(dir) {
        return Ok(());
    }
    if let Some(up) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(fs, up)?;
    }
    match fs.create_dir(dir) {
        Ok(()) => sync_parent(fs, dir),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists && fs.is_dir(dir) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Renames `from` to `to` and syncs both directories.
pub fn rename(fs: &dyn FileSystem, from: &Path, to: &Path) -> io::Result<()> {
    fs.rename(from, to)?;
    sync_parent(fs, to)?;
    if parent(from) != parent(to) {
        sync_parent(fs, from)?;
    }
    Ok(())
}

/// Moves a file to another directory so that it is durable under one of its two names at
/// every moment, also when other threads sync either directory meanwhile: a second name
/// in the target directory, synced, then the first name removed, synced. (A rename
/// changes both directories at once, but a sync of the source alone could make the
/// removal durable before the target's new name is.) A target already there (a move cut
/// short by a crash) is taken as done. Where the file system has no hard links, a
/// [`rename`].
pub fn move_file(fs: &dyn FileSystem, from: &Path, to: &Path) -> io::Result<()> {
    match fs.hard_link(from, to) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) if matches!(err.kind(), io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied) => {
            return rename(fs, from, to);
        }
        Err(err) => return Err(err),
    }
    sync_parent(fs, to)?;
    remove_file(fs, from)
}

/// Removes a file and syncs its directory.
pub fn remove_file(fs: &dyn FileSystem, path: &Path) -> io::Result<()> {
    fs.remove_file(path)?;
    sync_parent(fs, path)
}

fn temporary_beside(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated file system on which, after every change, "another thread" syncs the
    /// directory `busy` and the power is cut: the images are kept for the test to read.
    #[derive(Debug)]
    struct CutAfterEachStep {
        sim: crate::simfs::SimFs,
        busy: PathBuf,
        images: std::sync::Mutex<Vec<crate::simfs::SimFs>>,
    }

    impl CutAfterEachStep {
        fn step<T>(&self, result: io::Result<T>) -> io::Result<T> {
            self.sim.sync_dir(&self.busy)?;
            let image = self.sim.cut(7);
            self.images.lock().expect("images").push(image);
            result
        }
    }

    impl FileSystem for CutAfterEachStep {
        fn write_file(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
            self.step(self.sim.write_file(path, bytes, mode))
        }
        fn sync_file(&self, path: &Path) -> io::Result<()> {
            self.step(self.sim.sync_file(path))
        }
        fn open_append(&self, path: &Path) -> io::Result<Box<dyn crate::journal::Storage>> {
            self.sim.open_append(path)
        }
        fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
            self.sim.read(path)
        }
        fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
            self.sim.list(dir)
        }
        fn len(&self, path: &Path) -> io::Result<u64> {
            self.sim.len(path)
        }
        fn modified(&self, path: &Path) -> io::Result<std::time::SystemTime> {
            self.sim.modified(path)
        }
        fn exists(&self, path: &Path) -> bool {
            self.sim.exists(path)
        }
        fn is_dir(&self, path: &Path) -> bool {
            self.sim.is_dir(path)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            self.step(self.sim.remove_file(path))
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.step(self.sim.rename(from, to))
        }
        fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.step(self.sim.hard_link(from, to))
        }
        fn create_dir(&self, dir: &Path) -> io::Result<()> {
            self.step(self.sim.create_dir(dir))
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            self.step(self.sim.sync_dir(dir))
        }
        fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
            self.step(self.sim.set_len(path, len))
        }
        fn lock(&self, path: &Path) -> io::Result<Option<std::fs::File>> {
            self.sim.lock(path)
        }
    }

    /// Moves `/sim/data/segment` into `/sim/data/archive` with `how`, the data directory
    /// synced by another thread after every step; whether every cut kept the file under
    /// one of its names.
    fn survives_every_cut(how: fn(&dyn FileSystem, &Path, &Path) -> io::Result<()>) -> bool {
        let root = Path::new("/sim");
        let sim = crate::simfs::SimFs::new(root);
        let (data, archive) = (root.join("data"), root.join("data/archive"));
        create_dir_all(&sim, &archive).expect("dirs");
        let (from, to) = (data.join("segment"), archive.join("segment"));
        sim.write_file(&from, b"records", 0o644).expect("write");
        sim.sync_file(&from).expect("sync");
        sync_parent(&sim, &from).expect("sync dir");
        let fs = CutAfterEachStep { sim, busy: data, images: std::sync::Mutex::default() };
        how(&fs, &from, &to).expect("moved");
        let images = fs.images.into_inner().expect("images");
        assert!(images.len() >= 3, "a cut after each step");
        images
            .iter()
            .all(|image| [&from, &to].iter().any(|path| image.read(path).is_ok_and(|bytes| bytes == b"records")))
    }

    #[test]
    fn a_moved_file_is_durable_under_one_of_its_names_whatever_syncs_its_directory() {
        assert!(survives_every_cut(move_file), "move_file keeps the file at every cut");
        // A rename is the defect move_file mends: the source's sync alone makes the
        // removal durable before the target's new name is.
        assert!(!survives_every_cut(rename), "a rename loses the file at some cut");
    }
    use crate::fs::RealFs;

    #[test]
    fn replace_file_writes_whole_files_with_their_mode_and_leaves_no_temporary() {
        use std::os::unix::fs::PermissionsExt;
        let fs = RealFs::new();
        let dir = std::env::temp_dir().join(format!("tollgate-durable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        create_dir_all(&fs, &dir.join("a/b")).expect("dirs");
        let path = dir.join("a/b/secret");
        replace_file(&fs, &path, b"first", 0o600).expect("write");
        replace_file(&fs, &path, b"second", 0o600).expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        let names: Vec<_> =
            std::fs::read_dir(dir.join("a/b")).expect("dir").map(|e| e.expect("e").file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")], "no temporary is left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
