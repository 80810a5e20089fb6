//! `FileLock`: a cross-process read/write lock on a file, with atomic
//! upgrade and downgrade.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diag::{AcquireKind, ClassKey, ClassSlot, HeldToken, How};
use crate::sync::timeout::deadline_after;

use super::FileLockError;
use super::ofd::{self, RawFileLock, Wait};

/// How a [`FileLock`] is held.
///
/// ```
/// use strata::io::LockMode;
/// assert_ne!(LockMode::Shared, LockMode::Exclusive);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockMode {
    /// Many holders at once (readers).
    Shared,
    /// One holder, nobody else (a writer).
    Exclusive,
}

impl LockMode {
    fn kind(self) -> AcquireKind {
        match self {
            LockMode::Shared => AcquireKind::Shared,
            LockMode::Exclusive => AcquireKind::Exclusive,
        }
    }
}

/// An advisory read/write lock on a file, between processes and between
/// threads of one process.
///
/// Built on Linux open-file-description locks: each `FileLock` is its own
/// open of the file, so two `FileLock`s on one path conflict exactly like two
/// processes do, even inside one process, and a lock is released when its
/// holder drops the guard, drops the `FileLock`, or dies (even by
/// `SIGKILL`). Locks are advisory: they exclude other `FileLock`s (and
/// [`LeaseGate::with_file_lock`](crate::lease::LeaseGate::with_file_lock)),
/// not plain reads and writes.
///
/// * Waiting writers are preferred: once a writer waits (a blocking
///   [`lock`](Self::lock) of [`LockMode::Exclusive`], or an
///   [`upgrade`](FileLockGuard::upgrade)), new readers are kept out until it
///   is done, so a stream of readers cannot starve it.
/// * [`upgrade`](FileLockGuard::upgrade) turns shared into exclusive without
///   ever letting go of the file, and
///   [`downgrade`](FileLockGuard::downgrade) goes back the same way: no third
///   party gets in between (unlike `flock`, whose conversion unlocks first).
/// * Two shared holders upgrading at once would wait for each other forever;
///   the second one gets [`FileLockError::WouldDeadlock`] at once instead and
///   should release its shared lock and retry.
/// * Timed waits ([`lock_timeout`](Self::lock_timeout),
///   [`upgrade_timeout`](FileLockGuard::upgrade_timeout)) poll with a bounded
///   backoff (50 µs up to 5 ms; the kernel has no timed wait for these
///   locks); untimed waits sleep in the kernel.
///
/// Waiting for a file lock counts as taking its lock class (the
/// construction site), so lock-order mistakes that mix file locks with
/// strata locks are reported.
///
/// **Deadlocks to avoid** (the kernel does not detect them for these
/// locks): a holder that takes a second lock on the same file through
/// another `FileLock` waits forever if a writer queued in between (a
/// recursive read behind a waiting writer), and an exclusive request from a
/// process that already holds the file through another `FileLock` waits
/// for itself.
///
/// On platforms other than Linux, [`open`](Self::open) returns
/// [`FileLockError::Unsupported`].
///
/// ```
/// use strata::io::{FileLock, FileLockError, LockMode};
///
/// let path = std::env::temp_dir().join(format!("strata-doc-lock-{}", std::process::id()));
/// let mut reader = FileLock::open(&path)?;
/// let mut writer = FileLock::open(&path)?; // another open: like another process
///
/// let shared = reader.lock(LockMode::Shared)?;
/// assert!(matches!(writer.try_lock(LockMode::Exclusive), Err(FileLockError::WouldBlock)));
/// drop(shared);
/// let exclusive = writer.try_lock(LockMode::Exclusive)?;
/// assert_eq!(exclusive.mode(), LockMode::Exclusive);
/// # drop(exclusive);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FileLock {
    raw: RawFileLock,
    path: PathBuf,
    class: ClassSlot,
}

impl FileLock {
    /// Opens (creating it if needed) `path` for locking. The lock class is
    /// the caller's source location.
    ///
    /// # Errors
    ///
    /// [`FileLockError::Io`] if the file cannot be opened for reading and
    /// writing (both are needed for both lock modes);
    /// [`FileLockError::Unsupported`] off Linux.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("strata-doc-open-{}", std::process::id()));
    /// let lock = strata::io::FileLock::open(&path)?;
    /// assert_eq!(lock.path(), path);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FileLockError> {
        let class = ClassSlot::site();
        Self::open_in(path.as_ref(), class)
    }

    /// Like [`open`](Self::open), in the lock class `name`.
    ///
    /// # Errors
    ///
    /// As for [`open`](Self::open).
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("strata-doc-named-{}", std::process::id()));
    /// let lock = strata::io::FileLock::named("wal", &path)?;
    /// if let Some(class) = lock.class() {
    ///     assert_eq!(class.name(), Some("wal"));
    /// }
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn named(name: &'static str, path: impl AsRef<Path>) -> Result<Self, FileLockError> {
        let class = ClassSlot::named(name);
        Self::open_in(path.as_ref(), class)
    }

    fn open_in(path: &Path, class: ClassSlot) -> Result<Self, FileLockError> {
        Ok(Self {
            raw: open_raw(path)?,
            path: path.to_path_buf(),
            class,
        })
    }

    /// The path this lock was opened with.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("strata-doc-path-{}", std::process::id()));
    /// assert_eq!(strata::io::FileLock::open(&path)?.path(), path);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, for I/O under the lock. A `try_clone` of it shares the
    /// lock (one open file description): closing the clone releases nothing.
    ///
    /// ```
    /// use std::io::Write;
    /// let path = std::env::temp_dir().join(format!("strata-doc-file-{}", std::process::id()));
    /// let mut lock = strata::io::FileLock::open(&path)?;
    /// let guard = lock.lock(strata::io::LockMode::Exclusive)?;
    /// guard.file().write_all(b"hello")?;
    /// # drop(guard);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn file(&self) -> &File {
        self.raw.file()
    }

    /// The lock class, when order checking is compiled in.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("strata-doc-class-{}", std::process::id()));
    /// let lock = strata::io::FileLock::open(&path)?;
    /// assert_eq!(lock.class().is_some(), strata::diag::checking_enabled());
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn class(&self) -> Option<ClassKey> {
        self.class.key()
    }

    /// Blocks until the file is locked in `mode`. A shared request waits
    /// behind a waiting writer; an exclusive one waits for every holder.
    ///
    /// # Errors
    ///
    /// [`FileLockError::Io`] if the kernel refuses the lock (for example
    /// `ENOLCK`).
    ///
    /// ```
    /// use strata::io::{FileLock, LockMode};
    /// let path = std::env::temp_dir().join(format!("strata-doc-lockw-{}", std::process::id()));
    /// let mut a = FileLock::open(&path)?;
    /// let mut b = FileLock::open(&path)?;
    /// let ra = a.lock(LockMode::Shared)?;
    /// let rb = b.lock(LockMode::Shared)?; // readers coexist
    /// assert_eq!((ra.mode(), rb.mode()), (LockMode::Shared, LockMode::Shared));
    /// # drop((ra, rb));
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn lock(&mut self, mode: LockMode) -> Result<FileLockGuard<'_>, FileLockError> {
        let held = self.class.enter(mode.kind(), How::Blocking);
        let raw = &self.raw;
        held.wait(
            || match lock_raw(raw, mode, Wait::No) {
                Err(FileLockError::WouldBlock) => None,
                other => Some(other),
            },
            || lock_raw(raw, mode, Wait::Block),
        )?;
        Ok(FileLockGuard::new(self, mode, held))
    }

    /// Locks the file in `mode` if that needs no waiting.
    ///
    /// # Errors
    ///
    /// [`FileLockError::WouldBlock`] if another holder (or a waiting writer,
    /// for a shared request) is in the way; [`FileLockError::Io`] as for
    /// [`lock`](Self::lock).
    ///
    /// ```
    /// use strata::io::{FileLock, FileLockError, LockMode};
    /// let path = std::env::temp_dir().join(format!("strata-doc-try-{}", std::process::id()));
    /// let mut a = FileLock::open(&path)?;
    /// let mut b = FileLock::open(&path)?;
    /// let w = a.try_lock(LockMode::Exclusive)?;
    /// assert!(matches!(b.try_lock(LockMode::Shared), Err(FileLockError::WouldBlock)));
    /// # drop(w);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn try_lock(&mut self, mode: LockMode) -> Result<FileLockGuard<'_>, FileLockError> {
        let held = self.class.enter(mode.kind(), How::Try);
        lock_raw(&self.raw, mode, Wait::No)?;
        Ok(FileLockGuard::new(self, mode, held))
    }

    /// Like [`lock`](Self::lock), giving up after `timeout` (polling with a
    /// bounded backoff meanwhile). A timed exclusive request keeps new
    /// readers out while it waits, like a blocking one.
    ///
    /// # Errors
    ///
    /// [`FileLockError::Timeout`] if the lock did not come in time (nothing
    /// is left held); [`FileLockError::Io`] as for [`lock`](Self::lock).
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::io::{FileLock, FileLockError, LockMode};
    /// let path = std::env::temp_dir().join(format!("strata-doc-timeout-{}", std::process::id()));
    /// let mut a = FileLock::open(&path)?;
    /// let mut b = FileLock::open(&path)?;
    /// let r = a.lock(LockMode::Shared)?;
    /// let w = b.lock_timeout(LockMode::Exclusive, Duration::from_millis(5));
    /// assert!(matches!(w, Err(FileLockError::Timeout)));
    /// # drop(r);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn lock_timeout(
        &mut self,
        mode: LockMode,
        timeout: Duration,
    ) -> Result<FileLockGuard<'_>, FileLockError> {
        // Timed: it cannot hang, so it records the order but never reports.
        let held = self.class.enter(mode.kind(), How::Try);
        let raw = &self.raw;
        let wait = deadline_after(timeout).map_or(Wait::Block, Wait::Until);
        held.wait(
            || match lock_raw(raw, mode, Wait::No) {
                Err(FileLockError::WouldBlock) => None,
                other => Some(other),
            },
            || lock_raw(raw, mode, wait),
        )?;
        Ok(FileLockGuard::new(self, mode, held))
    }
}

/// Opens `path` read-write (both lock modes need it), creating it if needed.
pub(crate) fn open_raw(path: &Path) -> Result<RawFileLock, FileLockError> {
    if !ofd::SUPPORTED {
        return Err(FileLockError::Unsupported);
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    Ok(RawFileLock::new(file))
}

fn lock_raw(raw: &RawFileLock, mode: LockMode, wait: Wait) -> Result<(), FileLockError> {
    match mode {
        LockMode::Shared => raw.lock_shared(wait),
        LockMode::Exclusive => raw.lock_exclusive(wait),
    }
}

impl fmt::Debug for FileLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileLock")
            .field("path", &self.path)
            .field("class", &self.class)
            .finish_non_exhaustive()
    }
}

/// A held [`FileLock`]; unlocks when dropped.
///
/// `Send`: the lock belongs to the open file, not to a thread, so the guard
/// may be moved to and dropped on another thread.
///
/// ```
/// use strata::io::{FileLock, LockMode};
/// let path = std::env::temp_dir().join(format!("strata-doc-guard-{}", std::process::id()));
/// let mut lock = FileLock::open(&path)?;
/// let mut guard = lock.lock(LockMode::Shared)?;
/// guard.upgrade()?;
/// assert_eq!(guard.mode(), LockMode::Exclusive);
/// guard.downgrade()?;
/// assert_eq!(guard.mode(), LockMode::Shared);
/// guard.unlock()?;
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "the file is unlocked as soon as the guard is dropped"]
pub struct FileLockGuard<'a> {
    lock: &'a mut FileLock,
    mode: LockMode,
    held: HeldToken,
    /// Cleared by `unlock`, which has already released the file.
    locked: bool,
}

impl<'a> FileLockGuard<'a> {
    fn new(lock: &'a mut FileLock, mode: LockMode, held: HeldToken) -> Self {
        Self {
            lock,
            mode,
            held,
            locked: true,
        }
    }

    /// How the file is held now.
    ///
    /// ```
    /// use strata::io::{FileLock, LockMode};
    /// let path = std::env::temp_dir().join(format!("strata-doc-mode-{}", std::process::id()));
    /// let mut lock = FileLock::open(&path)?;
    /// assert_eq!(lock.lock(LockMode::Exclusive)?.mode(), LockMode::Exclusive);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// The open file, for I/O under the lock.
    ///
    /// ```
    /// use std::os::unix::fs::FileExt;
    /// use strata::io::{FileLock, LockMode};
    /// let path = std::env::temp_dir().join(format!("strata-doc-gfile-{}", std::process::id()));
    /// let mut lock = FileLock::open(&path)?;
    /// let guard = lock.lock(LockMode::Exclusive)?;
    /// guard.file().write_all_at(b"x", 0)?;
    /// # drop(guard);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn file(&self) -> &File {
        self.lock.file()
    }

    /// Turns a shared lock into an exclusive one, waiting for the other
    /// readers to leave. The shared lock is kept throughout: no other writer
    /// can get in between, and from the moment this waits, new readers are
    /// kept out. Already exclusive: does nothing.
    ///
    /// # Errors
    ///
    /// [`FileLockError::WouldDeadlock`] at once if another holder is already
    /// upgrading (or a writer is waiting): both would wait for each other.
    /// Release this lock and try again. On any error the guard is still
    /// shared, exactly as before.
    ///
    /// ```
    /// use strata::io::{FileLock, FileLockError, LockMode};
    /// let path = std::env::temp_dir().join(format!("strata-doc-upg-{}", std::process::id()));
    /// let mut a = FileLock::open(&path)?;
    /// let mut b = FileLock::open(&path)?;
    /// let mut ra = a.lock(LockMode::Shared)?;
    /// ra.upgrade()?; // the only reader: granted at once
    /// assert!(matches!(b.try_lock(LockMode::Shared), Err(FileLockError::WouldBlock)));
    /// # drop(ra);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn upgrade(&mut self) -> Result<(), FileLockError> {
        self.upgrade_with(Wait::Block)
    }

    /// Like [`upgrade`](Self::upgrade) if that needs no waiting.
    ///
    /// # Errors
    ///
    /// [`FileLockError::WouldBlock`] if other readers hold the file,
    /// [`FileLockError::WouldDeadlock`] as for [`upgrade`](Self::upgrade);
    /// the guard stays shared.
    ///
    /// ```
    /// use strata::io::{FileLock, FileLockError, LockMode};
    /// let path = std::env::temp_dir().join(format!("strata-doc-tupg-{}", std::process::id()));
    /// let mut a = FileLock::open(&path)?;
    /// let mut b = FileLock::open(&path)?;
    /// let mut ra = a.lock(LockMode::Shared)?;
    /// let rb = b.lock(LockMode::Shared)?;
    /// assert!(matches!(ra.try_upgrade(), Err(FileLockError::WouldBlock)));
    /// drop(rb);
    /// ra.try_upgrade()?;
    /// # drop(ra);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_upgrade(&mut self) -> Result<(), FileLockError> {
        self.upgrade_with(Wait::No)
    }

    /// Like [`upgrade`](Self::upgrade), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`FileLockError::Timeout`] if the readers did not leave in time,
    /// [`FileLockError::WouldDeadlock`] as for [`upgrade`](Self::upgrade);
    /// the guard stays shared.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::io::{FileLock, FileLockError, LockMode};
    /// let path = std::env::temp_dir().join(format!("strata-doc-uto-{}", std::process::id()));
    /// let mut a = FileLock::open(&path)?;
    /// let mut b = FileLock::open(&path)?;
    /// let mut ra = a.lock(LockMode::Shared)?;
    /// let rb = b.lock(LockMode::Shared)?;
    /// let r = ra.upgrade_timeout(Duration::from_millis(5));
    /// assert!(matches!(r, Err(FileLockError::Timeout)));
    /// assert_eq!(ra.mode(), LockMode::Shared);
    /// # drop((ra, rb));
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn upgrade_timeout(&mut self, timeout: Duration) -> Result<(), FileLockError> {
        self.upgrade_with(deadline_after(timeout).map_or(Wait::Block, Wait::Until))
    }

    fn upgrade_with(&mut self, wait: Wait) -> Result<(), FileLockError> {
        if self.mode == LockMode::Exclusive {
            return Ok(());
        }
        let raw = &self.lock.raw;
        match wait {
            Wait::No => raw.upgrade(Wait::No)?,
            // A waiting upgrade goes through the diag wait hook like `lock`,
            // so the watchdog sees a process stuck converting its read lock.
            _ => self.held.wait(
                || match raw.upgrade(Wait::No) {
                    Err(FileLockError::WouldBlock) => None,
                    other => Some(other),
                },
                || raw.upgrade(wait),
            )?,
        }
        self.mode = LockMode::Exclusive;
        self.held.set_kind(AcquireKind::Exclusive);
        Ok(())
    }

    /// Turns an exclusive lock into a shared one without unlocking in
    /// between; readers waiting behind this writer get in. Already shared:
    /// does nothing.
    ///
    /// # Errors
    ///
    /// [`FileLockError::Io`] if the kernel refuses (not expected: the
    /// conversion never has to wait). The guard's [`mode`](Self::mode)
    /// tells what is held then: still exclusive if the conversion failed,
    /// shared if only letting waiting readers in did.
    ///
    /// ```
    /// use strata::io::{FileLock, LockMode};
    /// let path = std::env::temp_dir().join(format!("strata-doc-down-{}", std::process::id()));
    /// let mut a = FileLock::open(&path)?;
    /// let mut b = FileLock::open(&path)?;
    /// let mut w = a.lock(LockMode::Exclusive)?;
    /// w.downgrade()?;
    /// let r = b.try_lock(LockMode::Shared)?; // readers may join now
    /// # drop((w, r));
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn downgrade(&mut self) -> Result<(), FileLockError> {
        if self.mode == LockMode::Shared {
            return Ok(());
        }
        let result = self.lock.raw.downgrade();
        if matches!(result, Ok(()) | Err((true, _))) {
            // Converted: the guard says shared even if letting readers in
            // failed (the writer bytes then go at unlock).
            self.mode = LockMode::Shared;
            self.held.set_kind(AcquireKind::Shared);
        }
        result.map_err(|(_, e)| e)
    }

    /// Unlocks now, reporting a failure that dropping the guard would ignore.
    ///
    /// # Errors
    ///
    /// [`FileLockError::Io`] if the kernel refuses the unlock; the lock is
    /// then released at the latest when the [`FileLock`] is dropped.
    ///
    /// ```
    /// use strata::io::{FileLock, LockMode};
    /// let path = std::env::temp_dir().join(format!("strata-doc-unl-{}", std::process::id()));
    /// let mut lock = FileLock::open(&path)?;
    /// lock.lock(LockMode::Exclusive)?.unlock()?;
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unlock(mut self) -> Result<(), FileLockError> {
        self.locked = false;
        self.lock.raw.unlock()
    }
}

impl Drop for FileLockGuard<'_> {
    fn drop(&mut self) {
        if self.locked {
            let _ = self.lock.raw.unlock();
        }
    }
}

impl fmt::Debug for FileLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileLockGuard")
            .field("path", &self.lock.path)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn lock_and_guard_are_send_and_sync() {
        assert_send_sync::<FileLock>();
        assert_send_sync::<FileLockGuard<'static>>();
    }
}
