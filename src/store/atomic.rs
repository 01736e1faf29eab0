//! [`AtomicFile`]: the crate's one atomic writer (temporary file, fsync, rename,
//! directory fsync), which keeps the mode and owner of the file it replaces.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Whether [`AtomicFile`] (every container save, data file and GGUF write) would
/// replace `path`: `Ok` if it does not exist or is a file with write permission.
///
/// # Errors
/// [`Error::Io`] naming `path` if it is a directory, or a file without write permission
/// bits (a read-only file is not replaced, whoever asks — root included).
pub fn check_replaceable(path: &Path) -> Result<()> {
    replaceable(path).map(|_| ())
}

/// [`check_replaceable`], returning the metadata of the file to be replaced.
fn replaceable(path: &Path) -> Result<Option<std::fs::Metadata>> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(Error::is_directory(path)),
        Ok(m) if m.permissions().readonly() => Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "is read-only (no write permission): not replacing it; make it writable \
                 (chmod u+w) or choose another file",
            ),
        )),
        Ok(m) => Ok(Some(m)),
        Err(_) => Ok(None),
    }
}

/// A file written atomically: bytes go through a 1 MiB buffer into `PATH.tmp`;
/// [`commit`](Self::commit) flushes, fsyncs, renames it over `PATH` and fsyncs the
/// directory, so a crash leaves the old file or the new one, never half of one. Dropped
/// without a commit (an error on the way), it removes the temporary file.
///
/// The one atomic writer of the crate's binary formats: containers and GGUF files.
pub(crate) struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
    committed: bool,
}

impl AtomicFile {
    /// Creates `PATH.tmp` (and `path`'s directory if missing). When `path` exists, the
    /// temporary file takes its permissions (and, where the user may give files away, its
    /// owner and group) before any byte is written, so a rewrite neither widens a private
    /// file nor narrows a shared one.
    ///
    /// # Errors
    /// [`Error::Io`] naming `path` if it is a directory or has no write permission bits
    /// (a read-only file is not replaced, whoever runs this — root included); naming the
    /// directory or the temporary file if they cannot be created.
    pub(crate) fn create(path: &Path) -> Result<Self> {
        let existing = replaceable(path)?;
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        // A leftover from a crash may have another mode or owner: start afresh.
        let _ = std::fs::remove_file(&tmp);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        if existing.is_some() {
            // Private until it takes the old file's mode below.
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        }
        let file = opts.open(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut out = AtomicFile {
            path: path.to_path_buf(),
            tmp,
            out: None,
            committed: false,
        };
        if let Some(m) = existing {
            out.take_over(&file, &m)?;
        }
        out.out = Some(std::io::BufWriter::with_capacity(1 << 20, file));
        Ok(out)
    }

    /// Gives the temporary file the owner (best effort: changing it needs privilege) and
    /// then the permissions of the file it replaces (after the owner, since a change of
    /// owner clears set-id bits).
    fn take_over(&self, file: &std::fs::File, old: &std::fs::Metadata) -> Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let now = file.metadata().map_err(|e| Error::io(&self.tmp, e))?;
            if (now.uid(), now.gid()) != (old.uid(), old.gid()) {
                // Refused without privilege (EPERM): the file stays the writer's own.
                if std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid())).is_err() {
                    // A user may still hand the file to a group of their own.
                    let _ = std::os::unix::fs::fchown(file, None, Some(old.gid()));
                }
            }
        }
        file.set_permissions(old.permissions())
            .map_err(|e| Error::io(&self.tmp, e))
    }

    /// Appends `bytes`.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        match &mut self.out {
            Some(w) => w.write_all(bytes).map_err(|e| Error::io(&self.tmp, e)),
            None => Ok(()),
        }
    }

    /// Appends `n` zero bytes.
    pub(crate) fn write_zeros(&mut self, mut n: usize) -> Result<()> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while n > 0 {
            let k = n.min(ZEROS.len());
            self.write_all(&ZEROS[..k])?;
            n -= k;
        }
        Ok(())
    }

    /// Flushes, fsyncs, renames over the final path and fsyncs the directory.
    pub(crate) fn commit(mut self) -> Result<()> {
        let Some(w) = self.out.take() else {
            return Ok(());
        };
        let file = w
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        // Renamed: nothing left for `drop` to clean up.
        self.committed = true;
        crate::data::sync_parent_dir(&self.path);
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        drop(self.out.take());
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Metric;
    use crate::store::ContainerWriter;

    #[test]
    fn atomic_file_replaces_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("f.bin");
        let tmp = dir.path().join("sub").join("f.bin.tmp");
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"old").unwrap();
        f.commit().unwrap();
        // Abandoned (an error on the way): the old file stays, the temporary one goes.
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"half").unwrap();
        assert!(tmp.exists());
        drop(f);
        assert!(!tmp.exists());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"new").unwrap();
        f.write_zeros(5000).unwrap();
        f.commit().unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!((&got[..3], got.len()), (&b"new"[..], 5003));
        assert!(got[3..].iter().all(|&b| b == 0));
        assert!(!tmp.exists());
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[cfg(unix)]
    fn chmod(p: &Path, m: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    // Issue 17 item 4: a rewrite keeps the replaced file's mode, whatever the umask.
    #[cfg(unix)]
    #[test]
    fn item4_rewrite_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.vq");
        for m in [0o600, 0o640, 0o604, 0o666] {
            std::fs::write(&path, b"old").unwrap();
            chmod(&path, m);
            let mut f = AtomicFile::create(&path).unwrap();
            f.write_all(b"new").unwrap();
            f.commit().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"new");
            assert_eq!(mode(&path), m, "mode {m:o} not kept");
        }
    }

    // Issue 17 item 4: a file without write bits is refused before anything is written,
    // even for root (for whom access(2) says every file is writable).
    #[cfg(unix)]
    #[test]
    fn item4_read_only_target_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.vq");
        std::fs::write(&path, b"old").unwrap();
        chmod(&path, 0o444);
        let e = AtomicFile::create(&path)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("f.vq") && e.contains("read-only"), "{e}");
        let e = ContainerWriter::new("flat", "Flat", 1, Metric::L2, 0)
            .save(&path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("read-only"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    // Issue 17 item 5: a rename that fails after the data is written leaves no
    // temporary file and the target untouched.
    #[test]
    fn item5_failed_commit_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.vq");
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_zeros(100_000).unwrap();
        // The target becomes a non-empty directory: the rename cannot replace it.
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), b"x").unwrap();
        assert!(f.commit().is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.vq")]);
        // A directory as the target is refused up front.
        let e = AtomicFile::create(&path)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("is a directory"), "{e}");
    }
}
