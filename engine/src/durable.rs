//! Files made durable the way the journal is: every file the engine or the server creates
//! or replaces is written to a temporary beside it, synced, renamed over its name, and the
//! directory synced, so after a power cut the name holds either the old whole file or the
//! new whole file, never an empty or torn one. A file created in place (a journal segment)
//! has its directory synced before it is relied on.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes` durably (temporary, fsync, rename, fsync of the directory).
/// `mode` sets the Unix permissions of a new file (e.g. `0o600` for a secret).
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = temporary_beside(path);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, path)?;
        sync_parent(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// Syncs the directory that holds `path`, so a name created, renamed or removed in it
/// survives a power cut.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// Syncs a directory's entries.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates the directory (and its parents) and syncs each parent whose entries changed.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => sync_parent(dir),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(err) => Err(err),
    }
}

/// Renames `from` to `to` and syncs both directories.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    sync_parent(to)?;
    if from.parent() != to.parent() {
        sync_parent(from)?;
    }
    Ok(())
}

fn temporary_beside(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_file_writes_whole_files_with_their_mode_and_leaves_no_temporary() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tollgate-durable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        create_dir_all(&dir.join("a/b")).expect("dirs");
        let path = dir.join("a/b/secret");
        replace_file(&path, b"first", 0o600).expect("write");
        replace_file(&path, b"second", 0o600).expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        let names: Vec<_> =
            std::fs::read_dir(dir.join("a/b")).expect("dir").map(|e| e.expect("e").file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")], "no temporary is left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
