//! [`AtomicFile`]: the crate's one atomic writer (temporary file, fsync, rename,
//! directory fsync), which keeps the mode and owner of the file it replaces.
//!
//! Writers of one path take turns: the temporary file `PATH.tmp` is held under an
//! exclusive lock (`flock`) from its creation until it is renamed over `PATH`, so a
//! second writer — another process, or another thread — waits instead of removing the
//! first one's half-written file (which then renamed the second one's half-written file
//! into place, or failed with "No such file or directory"). A `PATH.tmp` nobody holds
//! locked was left by a writer that died and is replaced. A read-modify-write (`vecquant
//! add`, `delete`) takes its turn before it reads ([`reserve`]), so that two of them
//! cannot both start from the old file and the later one undo the earlier one's change.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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
    ///
    /// Waits while another writer holds `PATH.tmp` (see the module's documentation); a
    /// write [`reserve`]d by this process takes the reserved file.
    pub(crate) fn create(path: &Path) -> Result<Self> {
        if let Some(reserved) = take_reserved(path) {
            return Ok(reserved);
        }
        Self::claim(path, &mut || {})
    }

    /// [`AtomicFile::create`] without looking at reservations; `on_wait` is called once
    /// if another writer holds the temporary file.
    fn claim(path: &Path, on_wait: &mut dyn FnMut()) -> Result<Self> {
        let existing = replaceable(path)?;
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let (file, tmp) = claim_tmp(PathBuf::from(tmp), existing.is_some(), on_wait)?;
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
        // Renamed while still locked (closing the file releases the lock): a writer
        // waiting for `PATH.tmp` must not find it unlocked and take it for a leftover.
        let renamed = std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e));
        if renamed.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        // Renamed, or removed above: nothing left for `drop` to clean up.
        self.committed = true;
        drop(file);
        renamed?;
        crate::data::sync_parent_dir(&self.path);
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Removed while still locked, then closed (see `commit`).
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
        drop(self.out.take());
    }
}

/// Takes `tmp` (`PATH.tmp`) for one writer: returns it created and locked, or — on a
/// file system without hard links or locks — a temporary file of this writer's own. The new file
/// is created under a name only this writer knows and locked before it is hard-linked
/// to `tmp` (a link fails if `tmp` exists, so exactly one writer succeeds, and no other
/// can ever see it unlocked). If `tmp` exists, it is either held by a live writer (its
/// lock is taken: wait for it, calling `on_wait` once) or was left by one that died
/// (its lock is free: remove it, if it is still the file of that name); then try again.
/// `private` creates it with mode 0600 (it takes the replaced file's mode afterwards).
fn claim_tmp(tmp: PathBuf, private: bool, on_wait: &mut dyn FnMut()) -> Result<(File, PathBuf)> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut own = tmp.as_os_str().to_owned();
    own.push(format!(
        ".{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let own = PathBuf::from(own);
    let mut waited = false;
    loop {
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true).create_new(true);
        #[cfg(unix)]
        if private {
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        // (A file of this name is a leftover of a process that had this one's id.)
        let _ = std::fs::remove_file(&own);
        let file = opts.open(&own).map_err(|e| Error::io(&tmp, e))?;
        // Nobody else knows this name yet: the lock is free. A file system without
        // locks keeps this writer's own temporary file, as without hard links below.
        if file.lock().is_err() {
            return Ok((file, own));
        }
        match std::fs::hard_link(&own, &tmp) {
            Ok(()) => {
                let _ = std::fs::remove_file(&own);
                return Ok((file, tmp));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&own);
                drop(file);
            }
            // No hard links here: this writer's own temporary file (writers of the same
            // path cannot wait for each other, but none removes another's file).
            Err(_) => return Ok((file, own)),
        }
        let other = match File::open(&tmp) {
            Ok(f) => f,
            // Renamed over PATH (or removed) in between: try again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&tmp, e)),
        };
        match other.try_lock() {
            Ok(()) => {
                // Unlocked: its writer died (a live one renames before it unlocks).
                // Removed only if it is still the file at that name.
                if same_file(&other, &tmp) {
                    match std::fs::remove_file(&tmp) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::io(&tmp, e)),
                    }
                }
            }
            Err(TryLockError::WouldBlock) => {
                if !waited {
                    waited = true;
                    on_wait();
                }
                // Until its writer renames it over PATH, or fails and removes it.
                other.lock().map_err(|e| Error::io(&tmp, e))?;
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&tmp, e)),
        }
    }
}

/// Whether `path` still names the file `f` is open on.
fn same_file(f: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (f.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (f, path);
        true
    }
}

/// Writes reserved by [`reserve`]: the path made absolute, the reservation's number, the
/// reserved file.
static RESERVED: Mutex<Vec<(PathBuf, u64, AtomicFile)>> = Mutex::new(Vec::new());

fn reserved() -> std::sync::MutexGuard<'static, Vec<(PathBuf, u64, AtomicFile)>> {
    RESERVED.lock().unwrap_or_else(|e| e.into_inner())
}

fn reservation_key(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The write to `path` this process reserved, if any (taken out of the reservations).
fn take_reserved(path: &Path) -> Option<AtomicFile> {
    let mut held = reserved();
    // (Most saves run with nothing reserved: no path to make absolute then.)
    if held.is_empty() {
        return None;
    }
    let key = reservation_key(path);
    let i = held.iter().position(|(k, ..)| *k == key)?;
    Some(held.swap_remove(i).2)
}

/// A write to a path, reserved by [`reserve`]: dropped before the write is saved, it
/// gives the turn back (nothing is written).
#[must_use = "the reservation ends when this is dropped"]
pub struct Reservation {
    id: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Not saved: the reserved file is removed and its lock released (only this
        // reservation's: a later one of the same path is not this one's to end).
        let mut held = reserved();
        let file = held
            .iter()
            .position(|&(_, id, _)| id == self.id)
            .map(|i| held.swap_remove(i).2);
        drop(held);
        drop(file);
    }
}

/// Takes this process's turn to write `path` before reading it, for a
/// read-modify-write: waits while another writer (process or thread) holds the path —
/// calling `on_wait` once, say to tell the user — and then holds it until the next save
/// of `path` in this process (an index's `save`, [`crate::store::ContainerWriter::save`])
/// has renamed its file into place, or until the [`Reservation`] is dropped. Every
/// writer of the crate takes the same turn, so a read-modify-write between `reserve`
/// and the save sees no other write to `path` and loses none. Reserving a path this
/// process has reserved already ends the earlier reservation first.
///
/// # Errors
/// [`Error::Io`] naming `path` if it is a directory or read-only (as a save would), or
/// naming `PATH.tmp` if it cannot be created or locked.
pub fn reserve(path: &Path, on_wait: &mut dyn FnMut()) -> Result<Reservation> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // One reservation per path in a process (a second would wait for the first).
    drop(take_reserved(path));
    let file = AtomicFile::claim(path, on_wait)?;
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    reserved().push((reservation_key(path), id, file));
    Ok(Reservation { id })
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

    /// The file names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Writers of one path at once (threads here; processes take the same lock) take
    /// turns: every one commits, the file is one writer's bytes whole, and no temporary
    /// file is left. (Each used to remove the other's `PATH.tmp`: a commit failed with
    /// "No such file or directory", or renamed another writer's half-written file.)
    #[test]
    fn concurrent_writers_of_one_path_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.vq");
        std::fs::write(&path, b"old").unwrap();
        let len = 200_000;
        std::thread::scope(|s| {
            for w in 1..=4u8 {
                let path = &path;
                s.spawn(move || {
                    let mut f = AtomicFile::create(path).unwrap();
                    for _ in 0..20 {
                        f.write_all(&vec![w; len / 20]).unwrap();
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    f.commit().unwrap();
                });
            }
        });
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), len);
        assert!(got.iter().all(|&b| b == got[0]), "bytes of several writers");
        assert_eq!(names(dir.path()), ["f.vq"]);
    }

    /// A `PATH.tmp` that no writer holds (left by one that died) is replaced, whatever
    /// its mode; nothing is left behind.
    #[test]
    fn a_dead_writers_temporary_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.vq");
        let tmp = dir.path().join("f.vq.tmp");
        std::fs::write(&tmp, b"half of an old write").unwrap();
        #[cfg(unix)]
        chmod(&tmp, 0o400);
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["f.vq"]);
    }

    /// A reserved path holds off every other writer until the reserving process saves
    /// it (the other writer waits, calling its `on_wait` once, and then writes after);
    /// a reservation dropped without a save writes nothing and lets the next one in.
    #[test]
    fn a_reservation_holds_off_other_writers_until_its_save() {
        use std::sync::atomic::AtomicBool;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.vq");
        std::fs::write(&path, b"old").unwrap();
        let turn = reserve(&path, &mut || panic!("nobody else writes")).unwrap();
        let (done, waited) = (AtomicBool::new(false), AtomicBool::new(false));
        std::thread::scope(|s| {
            let other = s.spawn(|| {
                // Another thread is another writer: it does not see this thread's
                // reservation as its own (it claims the lock itself).
                let mut f = AtomicFile::claim(&path, &mut || {
                    assert!(!waited.swap(true, Ordering::SeqCst), "on_wait called twice");
                })
                .unwrap();
                f.write_all(b"second").unwrap();
                f.commit().unwrap();
                done.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(300));
            assert!(
                !done.load(Ordering::SeqCst),
                "wrote while the path was reserved"
            );
            assert_eq!(std::fs::read(&path).unwrap(), b"old");
            // The save takes the reserved file.
            let mut f = AtomicFile::create(&path).unwrap();
            f.write_all(b"first").unwrap();
            f.commit().unwrap();
            other.join().unwrap();
        });
        assert!(waited.load(Ordering::SeqCst));
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        drop(turn);
        // Dropped without a save: nothing written, nothing left, the next writer in.
        let turn = reserve(&path, &mut || {}).unwrap();
        assert_eq!(names(dir.path()), ["f.vq", "f.vq.tmp"]);
        drop(turn);
        assert_eq!(names(dir.path()), ["f.vq"]);
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"third").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"third");
        // Reserved again while reserved: the earlier reservation's end does not end the
        // later one (the next save still takes it, and nobody else gets in before).
        let first = reserve(&path, &mut || {}).unwrap();
        let second = reserve(&path, &mut || {}).unwrap();
        drop(first);
        assert_eq!(names(dir.path()), ["f.vq", "f.vq.tmp"]);
        let e = File::open(dir.path().join("f.vq.tmp")).unwrap().try_lock();
        assert!(matches!(e, Err(TryLockError::WouldBlock)), "{e:?}");
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"fourth").unwrap();
        f.commit().unwrap();
        drop(second);
        assert_eq!(std::fs::read(&path).unwrap(), b"fourth");
        assert_eq!(names(dir.path()), ["f.vq"]);
        // A read-only target is refused when reserved, before any work.
        #[cfg(unix)]
        {
            chmod(&path, 0o444);
            let e = reserve(&path, &mut || {})
                .err()
                .expect("refused")
                .to_string();
            assert!(e.contains("read-only"), "{e}");
            assert_eq!(names(dir.path()), ["f.vq"]);
        }
    }
}
