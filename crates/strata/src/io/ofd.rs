//! The raw locking protocol under [`FileLock`](super::FileLock) and the
//! file-backed [`LeaseGate`](crate::lease::LeaseGate): three lock bytes
//! taken with Linux open-file-description (OFD) locks, SQLite style.
//!
//! OFD locks (`F_OFD_SETLK` / `F_OFD_SETLKW`) belong to the open file
//! description, not to the process: two `open`s of one file in one process
//! conflict like two processes do, a lock survives `dup` and is released when
//! the last descriptor of the description closes (so also when the process
//! dies, however it dies). Unlike `flock`, converting a held read lock to a
//! write lock is done by the kernel in one step: the conflict check happens
//! before the old lock is touched, so a waiting upgrade keeps its read lock
//! and nobody can slip in between.
//!
//! The bytes, far beyond any real file content so they never collide with
//! byte-range locks an application takes on its data:
//!
//! * `SHARED` — read-locked by every holder, write-locked by the exclusive
//!   holder. This byte alone decides who holds the file.
//! * `PENDING` — write-locked by a writer from the moment it starts waiting
//!   for the readers to leave. A new reader must read-lock it briefly before
//!   it may read-lock `SHARED`, so a waiting writer keeps new readers out
//!   (no writer starvation).
//! * `RESERVED` — write-locked by the one process that intends to write. An
//!   upgrader (who holds `SHARED` read-locked) only *tries* to take it: if
//!   another writer holds it, that writer waits for the upgrader's read lock
//!   while the upgrader would wait for the writer — the deadlock OFD locks do
//!   not detect — so the upgrade fails with `WouldDeadlock` instead.
//!
//! Invariant that rules out waiting cycles: `SHARED` is write-locked only by
//! someone who holds `PENDING` write-locked, so a reader holding `PENDING`
//! read-locked never waits for `SHARED`.
//!
//! `F_OFD_SETLKW` has no timeout. Timed waits therefore poll `F_OFD_SETLK`
//! with a bounded exponential backoff (see [`Backoff`]), keeping every byte
//! already taken, so a timed writer still holds `PENDING` and keeps readers
//! out while it polls. The alternatives were worse: a helper thread blocked
//! in `F_OFD_SETLKW` cannot be called off without a signal (a library must
//! not install signal handlers), and abandoning it would grant the lock
//! later to nobody. Untimed waits block in the kernel and never poll.

use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

use super::FileLockError;

/// The lowest lock byte: 2^62, far past any real file content.
const BASE: i64 = 1 << 62;
/// Write-locked by a writer waiting for readers to leave.
const PENDING: i64 = BASE;
/// Write-locked by the one would-be writer.
const RESERVED: i64 = BASE + 1;
/// Read-locked by readers, write-locked by the writer.
const SHARED: i64 = BASE + 2;

/// How long an attempt may wait for a lock byte.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Not at all: a conflict is `WouldBlock`.
    No,
    /// Until granted, in the kernel.
    Block,
    /// Until the deadline, polling; then `Timeout`.
    Until(Instant),
}

/// The bounded exponential backoff of timed (polling) waits: 50 µs doubling
/// up to 5 ms. The first retries are quick, since most conflicts are short
/// (a reader in transit through `PENDING`); the cap bounds both the extra
/// latency after the lock frees and the syscall rate of a long wait.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_micros(50);
    const CAP: Duration = Duration::from_millis(5);

    pub(crate) fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The next pause, never past `deadline` (if any).
    pub(crate) fn step(&mut self, deadline: Option<Instant>) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(Self::CAP);
        match deadline {
            Some(d) => pause.min(d.saturating_duration_since(Instant::now())),
            None => pause,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Unlock,
}

/// One OFD lock operation on `[start, start + len)`. `Ok(false)` is a
/// conflict (only without `block`); `EINTR` is retried.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn fcntl_lock(file: &File, kind: Kind, start: i64, len: i64, block: bool) -> io::Result<bool> {
    use std::os::fd::AsRawFd;

    // SAFETY: `flock` is a plain C struct for which all-zero is valid
    // (l_pid must be 0 for OFD locks, which zeroing also gives).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = match kind {
        Kind::Read => libc::F_RDLCK,
        Kind::Write => libc::F_WRLCK,
        Kind::Unlock => libc::F_UNLCK,
    } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    let cmd = if block {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    loop {
        // SAFETY: the descriptor is open for the lifetime of `file`, and
        // `fl` is a valid, initialized `struct flock` that outlives the call;
        // F_OFD_SETLK(W) only reads it.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &fl as *const libc::flock) };
        if rc != -1 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) | Some(libc::EACCES) if !block => return Ok(false),
            _ => return Err(err),
        }
    }
}

/// Whether another open file description holds a lock on byte `at` that
/// conflicts with a write lock (`F_OFD_GETLK`: tests, takes nothing).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn write_conflict(file: &File, at: i64) -> io::Result<bool> {
    use std::os::fd::AsRawFd;

    // SAFETY: as in `fcntl_lock`: all-zero is a valid `flock`.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = at as libc::off_t;
    fl.l_len = 1;
    // SAFETY: a valid descriptor and a valid, writable `struct flock` that
    // outlives the call; F_OFD_GETLK writes the conflicting lock (or
    // F_UNLCK) into it.
    let rc = unsafe {
        libc::fcntl(
            file.as_raw_fd(),
            libc::F_OFD_GETLK,
            &mut fl as *mut libc::flock,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn fcntl_lock(_: &File, _: Kind, _: i64, _: i64, _: bool) -> io::Result<bool> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn write_conflict(_: &File, _: i64) -> io::Result<bool> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Whether this platform has OFD locks strata can use: Linux, with a
/// 64-bit `off_t` (the protocol's lock bytes sit at 2^62, which a 32-bit
/// `off_t` would truncate onto the file's data).
pub(crate) const SUPPORTED: bool = cfg!(all(target_os = "linux", target_pointer_width = "64"));

/// How far an exclusive acquisition has come: the bytes taken so far, so a
/// polling waiter keeps them between attempts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ExclusiveProgress(u8);

/// An open file description and the lock protocol on it. It tracks no state
/// of its own: the caller knows what it holds (a guard, a lease).
#[derive(Debug)]
pub(crate) struct RawFileLock {
    file: File,
}

impl RawFileLock {
    pub(crate) fn new(file: File) -> Self {
        Self { file }
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Takes `[start, start + 1)` in `kind`, waiting as `wait` says.
    fn take(&self, kind: Kind, start: i64, wait: Wait) -> Result<(), FileLockError> {
        match wait {
            Wait::Block => {
                fcntl_lock(&self.file, kind, start, 1, true)?;
                Ok(())
            }
            Wait::No => match fcntl_lock(&self.file, kind, start, 1, false)? {
                true => Ok(()),
                false => Err(FileLockError::WouldBlock),
            },
            Wait::Until(deadline) => {
                let mut backoff = Backoff::new();
                loop {
                    if fcntl_lock(&self.file, kind, start, 1, false)? {
                        return Ok(());
                    }
                    if Instant::now() >= deadline {
                        return Err(FileLockError::Timeout);
                    }
                    std::thread::sleep(backoff.step(Some(deadline)));
                }
            }
        }
    }

    fn unlock_range(&self, start: i64, len: i64) -> Result<(), FileLockError> {
        fcntl_lock(&self.file, Kind::Unlock, start, len, false)?;
        Ok(())
    }

    /// Drops the writer bytes (`PENDING` and `RESERVED`) in one call.
    fn unlock_writer_bytes(&self) -> Result<(), FileLockError> {
        self.unlock_range(PENDING, 2)
    }

    /// Drops everything this description holds.
    pub(crate) fn unlock(&self) -> Result<(), FileLockError> {
        self.unlock_range(BASE, 3)
    }

    /// From nothing to shared: through `PENDING` (so a waiting writer keeps
    /// us out), then `SHARED`.
    pub(crate) fn lock_shared(&self, wait: Wait) -> Result<(), FileLockError> {
        self.take(Kind::Read, PENDING, wait)?;
        let shared = self.take(Kind::Read, SHARED, wait);
        // Whether or not we got in, the pass through PENDING is over.
        let released = self.unlock_range(PENDING, 1);
        shared?;
        if let Err(err) = released {
            let _ = self.unlock();
            return Err(err);
        }
        Ok(())
    }

    /// From nothing to exclusive.
    pub(crate) fn lock_exclusive(&self, wait: Wait) -> Result<(), FileLockError> {
        match wait {
            Wait::Block => {
                let mut progress = ExclusiveProgress::default();
                for _ in 0..3 {
                    self.exclusive_step(&mut progress, Wait::Block)?;
                }
                Ok(())
            }
            Wait::No => self.try_exclusive_now(),
            Wait::Until(deadline) => {
                let mut progress = ExclusiveProgress::default();
                let mut backoff = Backoff::new();
                loop {
                    match self.try_exclusive(&mut progress) {
                        Ok(true) => return Ok(()),
                        Ok(false) if Instant::now() < deadline => {
                            std::thread::sleep(backoff.step(Some(deadline)));
                        }
                        Ok(false) => {
                            self.abandon_exclusive(progress);
                            return Err(FileLockError::Timeout);
                        }
                        Err(err) => {
                            self.abandon_exclusive(progress);
                            return Err(err);
                        }
                    }
                }
            }
        }
    }

    /// One attempt at exclusive that does not mean to wait: `SHARED` first,
    /// so that while anyone holds the file nothing else is touched. Taking
    /// `RESERVED` first, as a waiting writer does, would make a concurrent
    /// upgrader see a would-be writer and fail with `WouldDeadlock` because
    /// of a mere attempt.
    fn try_exclusive_now(&self) -> Result<(), FileLockError> {
        self.take(Kind::Write, SHARED, Wait::No)?;
        let rest = self
            .take(Kind::Write, RESERVED, Wait::No)
            .and_then(|()| self.take(Kind::Write, PENDING, Wait::No));
        if rest.is_err() {
            let _ = self.unlock();
        }
        rest
    }

    /// Takes the next byte of an exclusive acquisition (`RESERVED`,
    /// `PENDING`, then `SHARED`), waiting as `wait` says; on an error of a
    /// blocking step everything taken is released.
    fn exclusive_step(
        &self,
        progress: &mut ExclusiveProgress,
        wait: Wait,
    ) -> Result<(), FileLockError> {
        let byte = match progress.0 {
            0 => RESERVED,
            1 => PENDING,
            2 => SHARED,
            _ => return Ok(()),
        };
        match self.take(Kind::Write, byte, wait) {
            Ok(()) => {
                progress.0 += 1;
                Ok(())
            }
            Err(err) => {
                if !matches!(err, FileLockError::WouldBlock) {
                    self.abandon_exclusive(*progress);
                    *progress = ExclusiveProgress::default();
                }
                Err(err)
            }
        }
    }

    /// Takes as many remaining bytes of an exclusive acquisition as are free
    /// now, keeping them. `Ok(true)` once all are held.
    pub(crate) fn try_exclusive(
        &self,
        progress: &mut ExclusiveProgress,
    ) -> Result<bool, FileLockError> {
        while progress.0 < 3 {
            match self.exclusive_step(progress, Wait::No) {
                Ok(()) => {}
                Err(FileLockError::WouldBlock) => return Ok(false),
                Err(err) => return Err(err),
            }
        }
        Ok(true)
    }

    /// Gives up a partial exclusive acquisition.
    pub(crate) fn abandon_exclusive(&self, progress: ExclusiveProgress) {
        if progress.0 > 0 {
            // Releasing bytes we do not hold is a no-op, so one call does it.
            let _ = self.unlock();
        }
    }

    /// From shared to exclusive, keeping the read lock throughout; on any
    /// failure the caller still holds exactly its shared lock.
    pub(crate) fn upgrade(&self, wait: Wait) -> Result<(), FileLockError> {
        if let Wait::No = wait {
            return self.try_upgrade_now();
        }
        // Another would-be writer waits for our read lock: waiting for it
        // in turn would never end.
        match self.take(Kind::Write, RESERVED, Wait::No) {
            Ok(()) => {}
            Err(FileLockError::WouldBlock) => return Err(FileLockError::WouldDeadlock),
            Err(err) => return Err(err),
        }
        let result = self
            .take(Kind::Write, PENDING, wait)
            // The conversion of our own read lock on SHARED: atomic in the
            // kernel, and while it waits the read lock stays.
            .and_then(|()| self.take(Kind::Write, SHARED, wait));
        if result.is_err() {
            // Leaves SHARED read-locked as it was.
            let _ = self.unlock_writer_bytes();
        }
        result
    }

    /// One upgrade attempt that does not mean to wait: convert `SHARED`
    /// first (fails while other readers are in), so writer bytes are only
    /// touched when we are alone, and a failed attempt never makes another
    /// upgrader see a would-be writer.
    fn try_upgrade_now(&self) -> Result<(), FileLockError> {
        match self.take(Kind::Write, SHARED, Wait::No) {
            Ok(()) => {}
            Err(FileLockError::WouldBlock) => {
                // Other readers. If one of them (or a fresh writer) is
                // already waiting to write, it waits for us: say so.
                return Err(if write_conflict(&self.file, RESERVED)? {
                    FileLockError::WouldDeadlock
                } else {
                    FileLockError::WouldBlock
                });
            }
            Err(err) => return Err(err),
        }
        let rest = match self.take(Kind::Write, RESERVED, Wait::No) {
            // A fresh writer between its steps: it will wait for us.
            Err(FileLockError::WouldBlock) => Err(FileLockError::WouldDeadlock),
            other => other,
        }
        .and_then(|()| self.take(Kind::Write, PENDING, Wait::No));
        if rest.is_err() {
            // Back to exactly the read lock we had (a conversion: no gap).
            let _ = self.take(Kind::Read, SHARED, Wait::No);
            let _ = self.unlock_writer_bytes();
        }
        rest
    }

    /// From exclusive to shared without a moment unlocked: convert `SHARED`
    /// in place (never waits: we hold it exclusively), then let readers in.
    ///
    /// `Err((true, e))`: the conversion happened (the lock is shared) but
    /// letting readers in failed; `Err((false, e))`: still exclusive.
    pub(crate) fn downgrade(&self) -> Result<(), (bool, FileLockError)> {
        self.take(Kind::Read, SHARED, Wait::No)
            .map_err(|e| (false, e))?;
        self.unlock_writer_bytes().map_err(|e| (true, e))
    }
}

#[cfg(all(test, not(loom), all(target_os = "linux", target_pointer_width = "64")))]
mod tests {
    use super::*;

    fn pair() -> (RawFileLock, RawFileLock, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "strata-ofd-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .unwrap()
        };
        (RawFileLock::new(open()), RawFileLock::new(open()), path)
    }

    #[test]
    fn two_descriptions_of_one_process_conflict() {
        let (a, b, path) = pair();
        a.lock_shared(Wait::No).unwrap();
        b.lock_shared(Wait::No).unwrap();
        assert!(matches!(
            b.lock_exclusive(Wait::No),
            Err(FileLockError::WouldBlock)
        ));
        b.unlock().unwrap();
        a.upgrade(Wait::No).unwrap();
        assert!(matches!(
            b.lock_shared(Wait::No),
            Err(FileLockError::WouldBlock)
        ));
        a.downgrade().unwrap();
        b.lock_shared(Wait::No).unwrap();
        a.unlock().unwrap();
        b.unlock().unwrap();
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_failed_try_upgrade_keeps_the_read_lock_and_nothing_else() {
        let (a, b, path) = pair();
        a.lock_shared(Wait::No).unwrap();
        b.lock_shared(Wait::No).unwrap();
        assert!(matches!(
            a.upgrade(Wait::No),
            Err(FileLockError::WouldBlock)
        ));
        // a still reads, and holds no writer byte: b can upgrade once a leaves.
        assert!(matches!(
            b.lock_exclusive(Wait::No),
            Err(FileLockError::WouldBlock)
        ));
        a.unlock().unwrap();
        b.upgrade(Wait::No).unwrap();
        b.unlock().unwrap();
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn timed_exclusive_keeps_readers_out_while_polling_and_times_out() {
        let (a, b, path) = pair();
        a.lock_shared(Wait::No).unwrap();
        let start = Instant::now();
        let d = Duration::from_millis(30);
        assert!(matches!(
            b.lock_exclusive(Wait::Until(start + d)),
            Err(FileLockError::Timeout)
        ));
        assert!(start.elapsed() >= d);
        // Gave everything back: a can upgrade.
        a.upgrade(Wait::No).unwrap();
        a.unlock().unwrap();
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn backoff_is_bounded_and_respects_the_deadline() {
        let mut b = Backoff::new();
        let pauses: Vec<_> = (0..12).map(|_| b.step(None)).collect();
        assert_eq!(pauses[0], Backoff::FIRST);
        assert!(pauses.iter().all(|p| *p <= Backoff::CAP));
        assert_eq!(*pauses.last().unwrap(), Backoff::CAP);
        assert_eq!(b.step(Some(Instant::now())), Duration::ZERO);
    }
}
