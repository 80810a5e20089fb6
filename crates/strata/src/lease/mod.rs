//! L2 — writer leases: one writer at a time per [`LeaseGate`].
//!
//! A storage engine lets many readers in but exactly one writer. A
//! [`WriterLease`] is the proof of being that writer: acquired from the
//! gate under a [`WriterPolicy`] (fail at once, wait, or wait up to a
//! timeout), held as long as the writer works — across `.await`s and
//! threads, it is `Send` — and released by dropping it or by handing it
//! back with [`LeaseGate::release`]. A gate built with
//! [`LeaseGate::with_file_lock`] also holds an exclusive [`FileLock`] per
//! lease, so there is one writer across processes too.
//!
//! ```
//! use strata::lease::{LeaseError, LeaseGate, WriterPolicy};
//!
//! let gate = LeaseGate::named("index writer");
//! let lease = gate.acquire_as("compactor", WriterPolicy::Wait)?;
//! // Somebody else wants to write now: refused at once under `Fail`.
//! assert!(matches!(gate.acquire(WriterPolicy::Fail), Err(LeaseError::WriterBusy)));
//! assert_eq!(gate.holder().unwrap().name(), Some("compactor"));
//! gate.release(lease)?;
//! assert!(gate.holder().is_none());
//! # Ok::<(), LeaseError>(())
//! ```
//!
//! [`FileLock`]: crate::io::FileLock

mod clock;
mod error;
mod holder;

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::diag::{AcquireKind, ClassKey, ClassSlot, HeldToken, How, TaskEntry};
use crate::io::FileLockError;
use crate::io::ofd::{self, Backoff, ExclusiveProgress, RawFileLock};
use crate::loom::sync::Mutex;
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::sync::raw_semaphore::{Acquire, Mode, RawSemaphore};
use crate::sync::timeout::{Sleep, deadline_after};

pub use error::LeaseError;
use holder::HolderCell;

/// What [`LeaseGate::acquire`] does when another writer holds the lease.
///
/// ```
/// use std::time::Duration;
/// use strata::lease::WriterPolicy;
/// let patient = WriterPolicy::Timeout(Duration::from_millis(250));
/// assert_ne!(patient, WriterPolicy::Fail);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriterPolicy {
    /// Return [`LeaseError::WriterBusy`] at once. Also when the gate is
    /// free but others are queued for it: a `Fail` never jumps the queue.
    Fail,
    /// Wait as long as it takes, first come first served.
    Wait,
    /// Wait in line at most this long, then return
    /// [`LeaseError::WriterTimeout`].
    Timeout(Duration),
}

/// The number of a lease: unique per gate, increasing in grant order.
///
/// ```
/// use strata::lease::{LeaseGate, WriterPolicy};
/// let gate = LeaseGate::new();
/// let first = gate.acquire(WriterPolicy::Wait)?.id();
/// let second = gate.acquire(WriterPolicy::Wait)?.id();
/// assert!(second > first);
/// # Ok::<(), strata::lease::LeaseError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(u64);

impl LeaseId {
    /// The number itself (the first lease of a gate is 1).
    ///
    /// ```
    /// use strata::lease::{LeaseGate, WriterPolicy};
    /// let gate = LeaseGate::new();
    /// assert_eq!(gate.acquire(WriterPolicy::Fail)?.id().get(), 1);
    /// # Ok::<(), strata::lease::LeaseError>(())
    /// ```
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lease #{}", self.0)
    }
}

/// A snapshot of who holds a gate, from [`LeaseGate::holder`].
///
/// ```
/// use strata::lease::{LeaseGate, WriterPolicy};
/// let gate = LeaseGate::new();
/// let lease = gate.acquire_as("flusher", WriterPolicy::Wait)?;
/// let holder = gate.holder().expect("held");
/// assert_eq!((holder.id(), holder.name()), (lease.id(), Some("flusher")));
/// println!("{} held by {:?} for {:?}", holder.id(), holder.name(), holder.age());
/// # Ok::<(), strata::lease::LeaseError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    id: LeaseId,
    name: Option<&'static str>,
    acquired_at: Instant,
    age: Duration,
}

impl LeaseHolder {
    /// The holder's lease id.
    ///
    /// ```
    /// # use strata::lease::{LeaseGate, WriterPolicy};
    /// # let gate = LeaseGate::new();
    /// let lease = gate.acquire(WriterPolicy::Wait)?;
    /// assert_eq!(gate.holder().unwrap().id(), lease.id());
    /// # Ok::<(), strata::lease::LeaseError>(())
    /// ```
    pub fn id(&self) -> LeaseId {
        self.id
    }

    /// The name given with [`LeaseGate::acquire_as`], if any.
    ///
    /// ```
    /// # use strata::lease::{LeaseGate, WriterPolicy};
    /// # let gate = LeaseGate::new();
    /// let _lease = gate.acquire(WriterPolicy::Wait)?;
    /// assert_eq!(gate.holder().unwrap().name(), None);
    /// # Ok::<(), strata::lease::LeaseError>(())
    /// ```
    pub fn name(&self) -> Option<&'static str> {
        self.name
    }

    /// When the lease was granted (see [`WriterLease::acquired_at`] for the
    /// resolution).
    ///
    /// ```
    /// # use strata::lease::{LeaseGate, WriterPolicy};
    /// # let gate = LeaseGate::new();
    /// let lease = gate.acquire(WriterPolicy::Wait)?;
    /// assert_eq!(gate.holder().unwrap().acquired_at(), lease.acquired_at());
    /// # Ok::<(), strata::lease::LeaseError>(())
    /// ```
    pub fn acquired_at(&self) -> Instant {
        self.acquired_at
    }

    /// How long the lease had been held when this snapshot was taken.
    ///
    /// ```
    /// # use strata::lease::{LeaseGate, WriterPolicy};
    /// # let gate = LeaseGate::new();
    /// let _lease = gate.acquire(WriterPolicy::Wait)?;
    /// assert!(gate.holder().unwrap().age() < std::time::Duration::from_secs(3600));
    /// # Ok::<(), strata::lease::LeaseError>(())
    /// ```
    pub fn age(&self) -> Duration {
        self.age
    }
}

/// The cross-process half of a file-backed gate.
#[derive(Debug)]
struct FileBacking {
    raw: RawFileLock,
    path: PathBuf,
}

struct GateInner {
    /// One permit: the lease. FIFO, cancel-safe, with timed waits.
    sem: RawSemaphore,
    class: ClassSlot,
    holder: HolderCell,
    /// The next lease id; only the permit holder touches it.
    next_id: AtomicU64,
    /// `(lease id, name)` of the last named holder; read only when it
    /// matches the published id. Unnamed leases never touch it.
    name: Mutex<(u64, Option<&'static str>)>,
    file: Option<FileBacking>,
}

/// A gate that admits one writer at a time.
///
/// * **One writer:** at most one [`WriterLease`] of a gate exists at a time
///   (and, with [`with_file_lock`](Self::with_file_lock), at most one across
///   every process using that file).
/// * **Fair:** waiters ([`WriterPolicy::Wait`] and `Timeout`, blocking and
///   async alike) are served first come, first served; `Fail` never jumps
///   the queue.
/// * **Cancel-safe:** dropping a pending
///   [`acquire_async`](Self::acquire_async) future leaves the gate as if it
///   never ran.
/// * **Observable:** [`holder`](Self::holder) tells who holds it, under
///   which name and for how long, without slowing the holder down.
///
/// The gate is a handle: clones share one gate (like a channel's senders).
/// It is built on strata's FIFO semaphore; uncontended, an async acquire
/// and release costs less than an `async-lock` mutex lock and unlock (the
/// `lease` bench group), and a refusal under `Fail` is one atomic load.
///
/// Waiting for a lease counts as taking its lock class (the construction
/// site, or the name given to [`named`](Self::named)), so a lock held
/// while waiting for the lease, and taken by the lease holder, is reported
/// as a lock-order inversion before it deadlocks.
///
/// ```
/// use std::time::Duration;
/// use strata::lease::{LeaseError, LeaseGate, WriterPolicy};
///
/// let gate = LeaseGate::new();
/// let lease = gate.acquire(WriterPolicy::Wait)?;
/// let other = gate.clone();
/// let waiter = std::thread::spawn(move || {
///     other.acquire(WriterPolicy::Timeout(Duration::from_millis(5))).map(|l| l.id())
/// });
/// assert!(matches!(waiter.join().unwrap(), Err(LeaseError::WriterTimeout)));
/// drop(lease);
/// assert!(gate.acquire(WriterPolicy::Fail).is_ok());
/// # Ok::<(), LeaseError>(())
/// ```
#[derive(Clone)]
pub struct LeaseGate {
    inner: Arc<GateInner>,
}

impl LeaseGate {
    /// A gate whose lock class is the caller's source location.
    ///
    /// ```
    /// let gate = strata::lease::LeaseGate::new();
    /// assert!(gate.holder().is_none());
    /// ```
    #[track_caller]
    pub fn new() -> Self {
        Self::build(ClassSlot::site(), None)
    }

    /// A gate in the lock class `name`.
    ///
    /// ```
    /// let gate = strata::lease::LeaseGate::named("wal writer");
    /// if let Some(class) = gate.class() {
    ///     assert_eq!(class.name(), Some("wal writer"));
    /// }
    /// ```
    #[track_caller]
    pub fn named(name: &'static str) -> Self {
        Self::build(ClassSlot::named(name), None)
    }

    /// A gate whose leases also hold an exclusive [`FileLock`] on `path`
    /// (opened, and created if needed, now; locked per lease), so that one
    /// writer exists across all processes using the file. The in-process
    /// part is acquired first, so at most one thread per process waits for
    /// the file. The file part follows the same policy: a file held by
    /// another process is [`LeaseError::WriterBusy`] under `Fail`, is
    /// waited for under `Wait` (blocking in the kernel for
    /// [`acquire`](Self::acquire); polling with a bounded backoff, 50 µs
    /// to 5 ms, for [`acquire_async`](Self::acquire_async)), and counts
    /// against the same deadline under `Timeout`.
    ///
    /// The exclusive lock is the one [`FileLock`] takes, so a process
    /// holding a shared `FileLock` on the file keeps writers out.
    ///
    /// # Errors
    ///
    /// As for [`FileLock::open`].
    ///
    /// ```
    /// use strata::lease::{LeaseError, LeaseGate, WriterPolicy};
    /// let path = std::env::temp_dir().join(format!("strata-doc-gate-{}", std::process::id()));
    /// let here = LeaseGate::with_file_lock(&path)?;
    /// let elsewhere = LeaseGate::with_file_lock(&path)?; // as if in another process
    /// let lease = here.acquire(WriterPolicy::Wait)?;
    /// assert!(matches!(elsewhere.acquire(WriterPolicy::Fail), Err(LeaseError::WriterBusy)));
    /// drop(lease);
    /// assert!(elsewhere.acquire(WriterPolicy::Fail).is_ok());
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// [`FileLock`]: crate::io::FileLock
    /// [`FileLock::open`]: crate::io::FileLock::open
    #[track_caller]
    pub fn with_file_lock(path: impl AsRef<Path>) -> Result<Self, FileLockError> {
        let class = ClassSlot::site();
        let path = path.as_ref();
        let raw = crate::io::open_raw(path)?;
        Ok(Self::build(
            class,
            Some(FileBacking {
                raw,
                path: path.to_path_buf(),
            }),
        ))
    }

    fn build(class: ClassSlot, file: Option<FileBacking>) -> Self {
        Self {
            inner: Arc::new(GateInner {
                sem: RawSemaphore::new(1),
                class,
                holder: HolderCell::new(),
                next_id: AtomicU64::new(1),
                name: Mutex::new((0, None)),
                file,
            }),
        }
    }

    /// The lock class, when order checking is compiled in.
    ///
    /// ```
    /// let gate = strata::lease::LeaseGate::new();
    /// assert_eq!(gate.class().is_some(), strata::diag::checking_enabled());
    /// ```
    pub fn class(&self) -> Option<ClassKey> {
        self.inner.class.key()
    }

    /// The file a [`with_file_lock`](Self::with_file_lock) gate locks.
    ///
    /// ```
    /// assert!(strata::lease::LeaseGate::new().file_path().is_none());
    /// ```
    pub fn file_path(&self) -> Option<&Path> {
        self.inner.file.as_ref().map(|f| f.path.as_path())
    }

    /// Acquires the writer lease on this thread, as `policy` says.
    ///
    /// Blocks the thread under `Wait` and `Timeout`; in async code use
    /// [`acquire_async`](Self::acquire_async).
    ///
    /// # Errors
    ///
    /// [`LeaseError::WriterBusy`] under `Fail` if the lease is held (or
    /// waited for); [`LeaseError::WriterTimeout`] under `Timeout(d)`, no
    /// earlier than `d` after the call; [`LeaseError::FileLock`] if the
    /// gate's file lock fails.
    ///
    /// ```
    /// use strata::lease::{LeaseError, LeaseGate, WriterPolicy};
    /// let gate = LeaseGate::new();
    /// let lease = gate.acquire(WriterPolicy::Fail)?;
    /// assert!(matches!(gate.acquire(WriterPolicy::Fail), Err(LeaseError::WriterBusy)));
    /// # drop(lease);
    /// # Ok::<(), LeaseError>(())
    /// ```
    #[track_caller]
    pub fn acquire(&self, policy: WriterPolicy) -> Result<WriterLease, LeaseError> {
        self.acquire_blocking(None, policy)
    }

    /// [`acquire`](Self::acquire), recording `name` as the holder's name
    /// for [`holder`](Self::holder).
    ///
    /// # Errors
    ///
    /// As for [`acquire`](Self::acquire).
    ///
    /// ```
    /// use strata::lease::{LeaseGate, WriterPolicy};
    /// let gate = LeaseGate::new();
    /// let lease = gate.acquire_as("checkpointer", WriterPolicy::Wait)?;
    /// assert_eq!(lease.name(), Some("checkpointer"));
    /// # Ok::<(), strata::lease::LeaseError>(())
    /// ```
    #[track_caller]
    pub fn acquire_as(
        &self,
        name: &'static str,
        policy: WriterPolicy,
    ) -> Result<WriterLease, LeaseError> {
        self.acquire_blocking(Some(name), policy)
    }

    #[track_caller]
    fn acquire_blocking(
        &self,
        name: Option<&'static str>,
        policy: WriterPolicy,
    ) -> Result<WriterLease, LeaseError> {
        let inner = &*self.inner;
        let how = match policy {
            WriterPolicy::Wait => How::Blocking,
            // A refusal or a timeout cannot hang: recorded, never reported.
            WriterPolicy::Fail | WriterPolicy::Timeout(_) => How::Try,
        };
        let held = inner.class.enter(AcquireKind::Exclusive, how);
        let deadline = match policy {
            WriterPolicy::Timeout(d) => deadline_after(d),
            _ => None,
        };
        let try_now = || inner.sem.try_acquire(1, Mode::Whole).ok().map(Ok);
        match policy {
            // `Unchecked` looks before it CASes: a refusal is one load.
            WriterPolicy::Fail => inner
                .sem
                .try_acquire(1, Mode::Unchecked)
                .map_err(|_| LeaseError::WriterBusy)?,
            WriterPolicy::Wait => held
                .wait(try_now, || inner.sem.acquire_blocking(1, Mode::Whole, None))
                .map_err(|_| LeaseError::WriterTimeout)?,
            WriterPolicy::Timeout(_) => held
                .wait(try_now, || {
                    inner.sem.acquire_blocking(1, Mode::Whole, deadline)
                })
                .map_err(|_| LeaseError::WriterTimeout)?,
        }
        let permit = PermitGuard(&inner.sem);
        if let Some(file) = &inner.file {
            let wait = match policy {
                WriterPolicy::Fail => ofd::Wait::No,
                WriterPolicy::Wait => ofd::Wait::Block,
                WriterPolicy::Timeout(_) => deadline.map_or(ofd::Wait::Block, ofd::Wait::Until),
            };
            file.raw.lock_exclusive(wait).map_err(file_error)?;
        }
        std::mem::forget(permit);
        Ok(WriterLease::grant(&self.inner, name, held))
    }

    /// Waits asynchronously for the writer lease, as `policy` says.
    /// Cancel-safe: dropping the future before it finishes leaves the gate
    /// (and its file) as if it never ran. Works under any executor; the
    /// `Timeout` timer is strata's runtime-agnostic one.
    ///
    /// # Errors
    ///
    /// As for [`acquire`](Self::acquire).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use strata::lease::{LeaseError, LeaseGate, WriterPolicy};
    /// use std::time::Duration;
    /// let gate = LeaseGate::new();
    /// let lease = gate.acquire_async(WriterPolicy::Wait).await?;
    /// let late = gate.acquire_async(WriterPolicy::Timeout(Duration::from_millis(2))).await;
    /// assert!(matches!(late, Err(LeaseError::WriterTimeout)));
    /// drop(lease);
    /// assert!(gate.acquire_async(WriterPolicy::Fail).await.is_ok());
    /// # Ok::<(), LeaseError>(())
    /// # }).unwrap();
    /// ```
    #[track_caller]
    #[inline]
    pub fn acquire_async(
        &self,
        policy: WriterPolicy,
    ) -> impl Future<Output = Result<WriterLease, LeaseError>> + Send + '_ {
        AcquireLease::new(self, None, policy)
    }

    /// [`acquire_async`](Self::acquire_async), recording `name` as the
    /// holder's name.
    ///
    /// # Errors
    ///
    /// As for [`acquire`](Self::acquire).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use strata::lease::{LeaseGate, WriterPolicy};
    /// let gate = LeaseGate::new();
    /// let lease = gate.acquire_async_as("merger", WriterPolicy::Wait).await?;
    /// assert_eq!(gate.holder().unwrap().name(), Some("merger"));
    /// # drop(lease);
    /// # Ok::<(), strata::lease::LeaseError>(())
    /// # }).unwrap();
    /// ```
    #[track_caller]
    pub fn acquire_async_as(
        &self,
        name: &'static str,
        policy: WriterPolicy,
    ) -> impl Future<Output = Result<WriterLease, LeaseError>> + Send + '_ {
        AcquireLease::new(self, Some(name), policy)
    }

    /// Releases `lease` now. Dropping it does the same; this reports what
    /// a drop cannot: a lease of another gate, and a failure to unlock the
    /// gate's file.
    ///
    /// # Errors
    ///
    /// [`LeaseError::ForeignLease`] with the lease handed back, untouched
    /// and still held, if it belongs to another gate;
    /// [`LeaseError::FileLock`] if unlocking the file failed (the lease is
    /// released in this process anyway, and the file when the gate drops).
    ///
    /// ```
    /// use strata::lease::{LeaseError, LeaseGate, WriterPolicy};
    /// let (a, b) = (LeaseGate::new(), LeaseGate::new());
    /// let lease = a.acquire(WriterPolicy::Wait)?;
    /// let Err(LeaseError::ForeignLease(lease)) = b.release(lease) else {
    ///     panic!("b must refuse a's lease");
    /// };
    /// a.release(lease)?;
    /// # Ok::<(), LeaseError>(())
    /// ```
    pub fn release(&self, lease: WriterLease) -> Result<(), LeaseError> {
        if !Arc::ptr_eq(&lease.gate, &self.inner) {
            return Err(LeaseError::ForeignLease(lease));
        }
        lease.release_now()
    }

    /// Who holds the lease right now: its id, the name it was acquired
    /// under, when and how long ago. `None` if nobody does. A snapshot: the
    /// holder may release it a moment later.
    ///
    /// ```
    /// use strata::lease::{LeaseGate, WriterPolicy};
    /// let gate = LeaseGate::new();
    /// assert!(gate.holder().is_none());
    /// let lease = gate.acquire(WriterPolicy::Wait)?;
    /// assert_eq!(gate.holder().map(|h| h.id()), Some(lease.id()));
    /// # Ok::<(), strata::lease::LeaseError>(())
    /// ```
    pub fn holder(&self) -> Option<LeaseHolder> {
        let inner = &*self.inner;
        let (id, since) = inner.holder.read()?;
        let name = {
            let named = inner.name.lock();
            if named.0 == id { named.1 } else { None }
        };
        Some(LeaseHolder {
            id: LeaseId(id),
            name,
            acquired_at: clock::instant(since),
            age: Duration::from_nanos(clock::now_nanos().saturating_sub(since)),
        })
    }

    /// How many writers are waiting for the lease right now (threads and
    /// futures, timed or not): the gate's queue depth.
    ///
    /// ```
    /// use strata::lease::{LeaseGate, WriterPolicy};
    /// let gate = LeaseGate::new();
    /// assert_eq!(gate.waiting(), 0);
    /// let _held = gate.acquire(WriterPolicy::Wait)?;
    /// assert_eq!(gate.waiting(), 0); // the holder does not wait
    /// # Ok::<(), strata::lease::LeaseError>(())
    /// ```
    pub fn waiting(&self) -> usize {
        self.inner.sem.waiters()
    }

    /// Whether `lease` is a lease of this gate.
    ///
    /// ```
    /// use strata::lease::{LeaseGate, WriterPolicy};
    /// let (a, b) = (LeaseGate::new(), LeaseGate::new());
    /// let lease = a.acquire(WriterPolicy::Wait)?;
    /// assert!(a.owns(&lease) && !b.owns(&lease));
    /// assert!(a.clone().owns(&lease)); // clones are the same gate
    /// # Ok::<(), strata::lease::LeaseError>(())
    /// ```
    pub fn owns(&self, lease: &WriterLease) -> bool {
        Arc::ptr_eq(&lease.gate, &self.inner)
    }
}

impl Default for LeaseGate {
    #[track_caller]
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LeaseGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseGate")
            .field("class", &self.inner.class)
            .field("holder", &self.holder())
            .field("file", &self.file_path())
            .finish()
    }
}

/// A file lock failure, in lease terms.
fn file_error(err: FileLockError) -> LeaseError {
    match err {
        FileLockError::WouldBlock => LeaseError::WriterBusy,
        FileLockError::Timeout => LeaseError::WriterTimeout,
        other => LeaseError::FileLock(other),
    }
}

/// The permit between being granted and becoming a lease: given back if
/// the file part fails or the future is dropped.
struct PermitGuard<'a>(&'a RawSemaphore);

impl Drop for PermitGuard<'_> {
    fn drop(&mut self) {
        self.0.release(1);
    }
}

/// The proof of being a gate's one writer. Released when dropped (or with
/// [`LeaseGate::release`]).
///
/// `Send` and `'static`: a lease is not tied to a thread or a borrow, so it
/// can move into a spawned task or a worker thread and be released there.
///
/// ```
/// use strata::lease::{LeaseGate, WriterPolicy};
/// let gate = LeaseGate::new();
/// let lease = gate.acquire(WriterPolicy::Wait)?;
/// std::thread::spawn(move || drop(lease)).join().unwrap();
/// assert!(gate.holder().is_none());
/// # Ok::<(), strata::lease::LeaseError>(())
/// ```
#[must_use = "the lease is released as soon as it is dropped"]
pub struct WriterLease {
    gate: Arc<GateInner>,
    /// The lease id, with [`NAMED`] set if it was acquired with a name;
    /// 0 once released. Everything else about the lease (its timestamp,
    /// its name) lives in the gate, so the lease is two words to move.
    tag: u64,
    _held: HeldToken,
}

/// Set in [`WriterLease::tag`] for a lease acquired with a name.
const NAMED: u64 = 1 << 63;

impl WriterLease {
    /// Called with the permit (and, for a file-backed gate, the file lock)
    /// held.
    #[inline]
    fn grant(gate: &Arc<GateInner>, name: Option<&'static str>, held: HeldToken) -> Self {
        // The permit orders these plain load/store pairs between holders.
        let id = gate.next_id.load(Ordering::Relaxed);
        gate.next_id.store(id + 1, Ordering::Relaxed);
        let mut tag = id;
        if name.is_some() {
            // Before `publish`, so a reader that sees the id finds the name.
            *gate.name.lock() = (id, name);
            tag |= NAMED;
        }
        gate.holder.publish(id, clock::now_nanos());
        Self {
            gate: Arc::clone(gate),
            tag,
            _held: held,
        }
    }

    fn raw_id(&self) -> u64 {
        self.tag & !NAMED
    }

    /// This lease's id.
    ///
    /// ```
    /// # use strata::lease::{LeaseGate, WriterPolicy};
    /// let gate = LeaseGate::new();
    /// let lease = gate.acquire(WriterPolicy::Wait)?;
    /// println!("writing under {}", lease.id());
    /// # Ok::<(), strata::lease::LeaseError>(())
    /// ```
    pub fn id(&self) -> LeaseId {
        LeaseId(self.raw_id())
    }

    /// When the lease was granted. Taken from the coarse monotonic clock,
    /// so it is accurate to the kernel's timer tick (1–4 ms), which keeps
    /// granting a lease as cheap as locking a mutex.
    ///
    /// ```
    /// # use strata::lease::{LeaseGate, WriterPolicy};
    /// # use std::time::Duration;
    /// let gate = LeaseGate::new();
    /// let lease = gate.acquire(WriterPolicy::Wait)?;
    /// assert!(lease.acquired_at().elapsed() < Duration::from_secs(3600));
    /// # Ok::<(), strata::lease::LeaseError>(())
    /// ```
    pub fn acquired_at(&self) -> Instant {
        // The holder's timestamp is ours while we hold the lease.
        clock::instant(self.gate.holder.since())
    }

    /// The name given with [`LeaseGate::acquire_as`], if any.
    ///
    /// ```
    /// # use strata::lease::{LeaseGate, WriterPolicy};
    /// let gate = LeaseGate::new();
    /// assert_eq!(gate.acquire(WriterPolicy::Wait)?.name(), None);
    /// # Ok::<(), strata::lease::LeaseError>(())
    /// ```
    pub fn name(&self) -> Option<&'static str> {
        if self.tag & NAMED == 0 {
            return None;
        }
        let named = self.gate.name.lock();
        if named.0 == self.raw_id() {
            named.1
        } else {
            None
        }
    }

    /// Releases everything; the `Err` of the file unlock, if any.
    fn release_now(mut self) -> Result<(), LeaseError> {
        // Marks the lease released, so the drop that follows does nothing.
        self.release_parts()
    }

    /// Gives the file lock and the permit back, once (`tag` 0 marks done).
    #[inline]
    fn release_parts(&mut self) -> Result<(), LeaseError> {
        if self.tag == 0 {
            return Ok(());
        }
        let gate = &*self.gate;
        gate.holder.clear();
        if self.tag & NAMED != 0 {
            let mut named = gate.name.lock();
            if named.0 == self.raw_id() {
                *named = (0, None);
            }
        }
        let mut result = Ok(());
        if let Some(file) = &gate.file {
            result = file.raw.unlock().map_err(LeaseError::FileLock);
        }
        self.tag = 0;
        gate.sem.release(1);
        result
    }
}

impl Drop for WriterLease {
    #[inline]
    fn drop(&mut self) {
        let _ = self.release_parts();
    }
}

impl fmt::Debug for WriterLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterLease")
            .field("id", &self.raw_id())
            .field("name", &self.name())
            .field("acquired_at", &self.acquired_at())
            .finish_non_exhaustive()
    }
}

/// The future of [`LeaseGate::acquire_async`]: the permit first (FIFO,
/// cancel-safe, with the deadline of `Timeout`), then the file lock of a
/// file-backed gate, polled with a bounded backoff on strata's timer.
///
/// Kept small (the uncontended case moves it around and polls it once):
/// the timer and the file phase, which only contended or file-backed
/// acquisitions need, are boxed.
struct AcquireLease<'g> {
    gate: &'g Arc<GateInner>,
    name: Option<&'static str>,
    /// `WriterPolicy::Fail`: one attempt, never queue.
    fail: bool,
    /// `WriterPolicy::Timeout`'s deadline.
    deadline: Option<Instant>,
    /// The output was returned. A flag rather than a state change, so the
    /// uncontended path does not drop and rewrite the state in place.
    done: bool,
    state: State<'g>,
}

enum State<'g> {
    /// Waiting in the gate's queue.
    Queued {
        acquire: Acquire<'g>,
        entry: TaskEntry,
        sleep: Option<Box<Sleep>>,
    },
    /// Permit held; taking the gate's file lock.
    File(Box<FilePhase<'g>>),
    Done,
}

/// The file half of an async acquisition. Dropped unfinished (the future
/// was cancelled, or the file was refused), it gives back the file bytes
/// taken so far and then, through its guard, the permit.
struct FilePhase<'g> {
    file: &'g RawFileLock,
    /// Returns the permit after `drop` has returned the file bytes.
    _permit: PermitGuard<'g>,
    held: HeldToken,
    progress: ExclusiveProgress,
    backoff: Backoff,
    sleep: Option<Sleep>,
}

impl Drop for FilePhase<'_> {
    fn drop(&mut self) {
        self.file.abandon_exclusive(self.progress);
    }
}

impl<'g> AcquireLease<'g> {
    #[track_caller]
    #[inline]
    fn new(gate: &'g LeaseGate, name: Option<&'static str>, policy: WriterPolicy) -> Self {
        let how = match policy {
            WriterPolicy::Wait => How::Blocking,
            WriterPolicy::Fail | WriterPolicy::Timeout(_) => How::Try,
        };
        let deadline = match policy {
            WriterPolicy::Timeout(d) => deadline_after(d),
            _ => None,
        };
        let inner = &gate.inner;
        Self {
            gate: inner,
            name,
            fail: policy == WriterPolicy::Fail,
            deadline,
            done: false,
            state: State::Queued {
                acquire: inner.sem.acquire(1, Mode::Whole),
                entry: inner.class.task_entry(AcquireKind::Exclusive, how),
                sleep: None,
            },
        }
    }

    /// The permit is ours and the gate is file-backed: on to the file.
    #[cold]
    fn enter_file_phase(&mut self, held: HeldToken) {
        let inner = self.gate;
        let Some(file) = &inner.file else {
            unreachable!("only file-backed gates have a file phase");
        };
        self.state = State::File(Box::new(FilePhase {
            file: &file.raw,
            _permit: PermitGuard(&inner.sem),
            held,
            progress: ExclusiveProgress::default(),
            backoff: Backoff::new(),
            sleep: None,
        }));
    }

    /// Finishes with `out`.
    #[inline]
    fn finish(
        &mut self,
        out: Result<WriterLease, LeaseError>,
    ) -> Poll<Result<WriterLease, LeaseError>> {
        self.done = true;
        Poll::Ready(out)
    }

    /// Still queued: time out if the deadline has passed.
    #[cold]
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<Result<WriterLease, LeaseError>> {
        let State::Queued { entry, sleep, .. } = &mut self.state else {
            unreachable!("polled in the queued state");
        };
        if let Some(deadline) = self.deadline {
            let sleep = sleep.get_or_insert_with(|| Box::new(Sleep::until(deadline)));
            if Pin::new(&mut **sleep).poll(cx).is_ready() {
                // Dropping the queued acquire leaves the queue now, not
                // whenever the finished future is dropped.
                self.state = State::Done;
                return self.finish(Err(LeaseError::WriterTimeout));
            }
        }
        entry.pending();
        Poll::Pending
    }

    #[cold]
    fn poll_file(&mut self, cx: &mut Context<'_>) -> Poll<Result<WriterLease, LeaseError>> {
        let State::File(phase) = &mut self.state else {
            unreachable!("polled in the file state");
        };
        let outcome = loop {
            if let Some(s) = &mut phase.sleep {
                if Pin::new(s).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                phase.sleep = None;
            }
            let attempt = if self.fail {
                // One attempt that takes nothing unless the file is free.
                match phase.file.lock_exclusive(ofd::Wait::No) {
                    Ok(()) => Ok(true),
                    Err(FileLockError::WouldBlock) => Err(LeaseError::WriterBusy),
                    Err(err) => Err(file_error(err)),
                }
            } else {
                phase
                    .file
                    .try_exclusive(&mut phase.progress)
                    .map_err(file_error)
            };
            match attempt {
                Ok(true) => break Ok(()),
                Ok(false) if self.deadline.is_some_and(|d| Instant::now() >= d) => {
                    break Err(LeaseError::WriterTimeout);
                }
                Ok(false) => {
                    let pause = phase.backoff.step(self.deadline);
                    phase.sleep = Some(Sleep::until(Instant::now() + pause));
                }
                Err(err) => break Err(err),
            }
        };
        let State::File(phase) = std::mem::replace(&mut self.state, State::Done) else {
            unreachable!("matched above");
        };
        self.done = true;
        Poll::Ready(match outcome {
            Ok(()) => {
                // The file is locked: neither it nor the permit go back, so
                // the phase is not dropped; only its token moves on.
                let mut phase = std::mem::ManuallyDrop::new(*phase);
                drop(phase.sleep.take());
                let held = std::mem::replace(&mut phase.held, HeldToken::none());
                Ok(WriterLease::grant(self.gate, self.name, held))
            }
            // Dropping the phase gives back the file bytes and the permit.
            Err(err) => Err(err),
        })
    }
}

impl Future for AcquireLease<'_> {
    type Output = Result<WriterLease, LeaseError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.done {
            // Polled after completion: never grant twice.
            return Poll::Pending;
        }
        if let State::Queued { acquire, entry, .. } = &mut this.state {
            entry.poll(cx);
            if this.fail {
                // `Unchecked` looks before it CASes: a refusal is one load.
                if this.gate.sem.try_acquire(1, Mode::Unchecked).is_err() {
                    return this.finish(Err(LeaseError::WriterBusy));
                }
            } else {
                match Pin::new(acquire).poll(cx) {
                    Poll::Ready(Ok(())) => {}
                    // A whole-gate request never fails; the arm keeps it total.
                    Poll::Ready(Err(_)) => return this.finish(Err(LeaseError::WriterBusy)),
                    Poll::Pending => return this.poll_deadline(cx),
                }
            }
            let held = entry.finish();
            if this.gate.file.is_none() {
                let lease = WriterLease::grant(this.gate, this.name, held);
                return this.finish(Ok(lease));
            }
            this.enter_file_phase(held);
        }
        this.poll_file(cx)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn gate_and_lease_are_send_and_the_lease_is_static() {
        assert_send_sync::<LeaseGate>();
        assert_send::<WriterLease>();
        assert_send::<LeaseError>();
    }

    #[test]
    fn ids_increase_and_the_holder_follows_the_lease() {
        let gate = LeaseGate::new();
        let a = gate.acquire(WriterPolicy::Wait).unwrap();
        assert_eq!(a.id().get(), 1);
        assert_eq!(gate.holder().unwrap().id(), a.id());
        drop(a);
        assert!(gate.holder().is_none());
        let b = gate.acquire_as("b", WriterPolicy::Wait).unwrap();
        assert_eq!(b.id().get(), 2);
        assert_eq!(gate.holder().unwrap().name(), Some("b"));
        drop(b);
        // A later unnamed lease does not inherit the old name.
        let c = gate.acquire(WriterPolicy::Wait).unwrap();
        assert_eq!(gate.holder().unwrap().name(), None);
        drop(c);
    }

    #[test]
    fn release_of_a_foreign_lease_hands_it_back_still_held() {
        let (a, b) = (LeaseGate::new(), LeaseGate::new());
        let lease = a.acquire(WriterPolicy::Wait).unwrap();
        let id = lease.id();
        let Err(LeaseError::ForeignLease(lease)) = b.release(lease) else {
            panic!("foreign lease accepted");
        };
        assert_eq!(lease.id(), id);
        assert_eq!(a.holder().map(|h| h.id()), Some(id));
        assert!(matches!(
            a.acquire(WriterPolicy::Fail),
            Err(LeaseError::WriterBusy)
        ));
        a.release(lease).unwrap();
        assert!(a.acquire(WriterPolicy::Fail).is_ok());
    }

    #[test]
    fn a_polled_again_finished_future_does_not_grant_twice() {
        let gate = LeaseGate::new();
        let mut fut = std::pin::pin!(AcquireLease::new(&gate, None, WriterPolicy::Wait));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(Ok(lease)) = fut.as_mut().poll(&mut cx) else {
            panic!("uncontended acquire must be ready");
        };
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        drop(lease);
        assert!(gate.acquire(WriterPolicy::Fail).is_ok());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// Two threads take leases of one gate: ids are unique (the permit
    /// orders the plain load/store of `next_id`), and what `holder()` shows
    /// is always the current holder's lease.
    #[test]
    fn loom_leases_get_unique_ids_and_a_consistent_holder() {
        loom::model(|| {
            let gate = LeaseGate::new();
            let other = gate.clone();
            let t = loom::thread::spawn(move || {
                let lease = other.acquire(WriterPolicy::Wait).unwrap();
                assert_eq!(other.holder().map(|h| h.id()), Some(lease.id()));
                lease.id().get()
            });
            let mine = {
                let lease = gate.acquire(WriterPolicy::Wait).unwrap();
                assert_eq!(gate.holder().map(|h| h.id()), Some(lease.id()));
                lease.id().get()
            };
            let theirs = t.join().unwrap();
            assert_ne!(mine, theirs);
            assert_eq!(mine + theirs, 3);
            assert!(gate.holder().is_none());
        });
    }
}
