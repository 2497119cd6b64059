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
