//! `stm::stats()`: per-thread counter cells, summed on read.
//!
//! A commit bumps a counter of its own thread only (a relaxed load and
//! store, no read-modify-write, no shared cache line), so statistics cost
//! the hot path next to nothing. `stats()` sums the cells of live threads
//! plus what exited threads left behind.

/// Counters since the process started (or since [`reset_stats`]), summed over
/// all threads.
///
/// ```
/// use strata::stm::{atomically, stats, TVar};
///
/// let before = stats();
/// let v = TVar::new(0);
/// atomically(|tx| tx.modify(&v, |x| x + 1)).unwrap();
/// assert!(stats().commits > before.commits);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StmStats {
    /// Transactions that committed writes.
    pub commits: u64,
    /// Transactions that finished having written nothing (no lock, no
    /// write to shared memory).
    pub read_only_commits: u64,
    /// Attempts that did not commit, by cause.
    pub aborts: AbortStats,
    /// Times a transaction blocked in `retry` (parked or awaited).
    pub retries: u64,
    /// Times a blocked transaction was woken by a commit to a `TVar` it read.
    pub wakeups: u64,
    /// Times a parked thread woke with nothing committed to its read set
    /// (OS spurious wake-ups); each goes back to sleep.
    pub spurious_wakeups: u64,
    /// Times a transaction that kept losing switched to serial
    /// (irrevocable) mode.
    pub serial_entries: u64,
    /// Times a read found a newer version and moved the snapshot forward
    /// instead of aborting.
    pub extensions: u64,
}

/// Aborted attempts by cause (see [`StmStats::aborts`]).
///
/// ```
/// let a = strata::stm::stats().aborts;
/// assert!(a.total() >= a.conflicts());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AbortStats {
    /// A read found a newer version it could not extend to, or a locked `TVar`.
    pub read_conflicts: u64,
    /// Commit could not lock a written `TVar`.
    pub lock_conflicts: u64,
    /// Commit-time validation found a read overwritten.
    pub validation_conflicts: u64,
    /// The closure returned a user error.
    pub user: u64,
    /// The closure (or a validator, watch-free commit step) panicked.
    pub panics: u64,
    /// A validator rejected a value.
    pub invalid: u64,
    /// `Limits` ran out (attempts or time).
    pub limits: u64,
}

impl AbortStats {
    /// Aborts caused by other transactions' commits.
    ///
    /// ```
    /// let a = strata::stm::stats().aborts;
    /// assert_eq!(a.conflicts(), a.read_conflicts + a.lock_conflicts + a.validation_conflicts);
    /// ```
    pub fn conflicts(&self) -> u64 {
        self.read_conflicts + self.lock_conflicts + self.validation_conflicts
    }

    /// Every abort.
    ///
    /// ```
    /// let a = strata::stm::stats().aborts;
    /// assert!(a.total() >= a.user);
    /// ```
    pub fn total(&self) -> u64 {
        self.conflicts() + self.user + self.panics + self.invalid + self.limits
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Counter {
    Commits,
    ReadOnly,
    ReadConflict,
    LockConflict,
    ValidationConflict,
    User,
    Panic,
    Invalid,
    Limits,
    Retries,
    Wakeups,
    Spurious,
    Serial,
    Extensions,
}

const N: usize = Counter::Extensions as usize + 1;

#[cfg(not(loom))]
mod imp {
    use super::{Counter, N};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Aligned to two cache lines: two threads' cells never share a line
    /// (each commit bumps its own thread's cell; false sharing would move a
    /// line between cores on every commit).
    #[repr(align(128))]
    struct Cells([AtomicU64; N]);

    struct Registry {
        live: Vec<Arc<Cells>>,
        exited: [u64; N],
    }

    static REGISTRY: parking_lot::Mutex<Registry> = parking_lot::Mutex::new(Registry {
        live: Vec::new(),
        exited: [0; N],
    });

    /// The thread's cells; on thread exit their counts move to `exited`.
    struct Local(Arc<Cells>);

    impl Drop for Local {
        fn drop(&mut self) {
            let mut reg = REGISTRY.lock();
            for (sum, c) in reg.exited.iter_mut().zip(&self.0.0) {
                *sum += c.load(Ordering::Relaxed);
            }
            reg.live.retain(|l| !Arc::ptr_eq(l, &self.0));
        }
    }

    thread_local! {
        static LOCAL: Local = {
            let cells = Arc::new(Cells(std::array::from_fn(|_| AtomicU64::new(0))));
            REGISTRY.lock().live.push(Arc::clone(&cells));
            Local(cells)
        };
    }

    #[inline]
    pub(crate) fn bump(c: Counter) {
        let _ = LOCAL.try_with(|l| l.0.bump(c));
    }

    impl Cells {
        #[inline]
        fn bump(&self, c: Counter) {
            // Only this thread writes its cells: load + store, no RMW.
            let cell = &self.0[c as usize];
            cell.store(cell.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// The current thread's cells, kept by its transaction buffers so that
    /// a commit counts itself with no thread-local lookup. Only used on the
    /// thread that took it (the cells have one writer).
    pub(crate) struct Handle(Option<Arc<Cells>>);

    impl Handle {
        pub(crate) fn current() -> Self {
            Handle(LOCAL.try_with(|l| Arc::clone(&l.0)).ok())
        }

        #[inline]
        pub(crate) fn bump(&self, c: Counter) {
            if let Some(cells) = &self.0 {
                cells.bump(c);
            }
        }
    }

    pub(crate) fn sum() -> [u64; N] {
        let reg = REGISTRY.lock();
        let mut out = reg.exited;
        for l in &reg.live {
            for (o, c) in out.iter_mut().zip(&l.0) {
                *o += c.load(Ordering::Relaxed);
            }
        }
        out
    }

    pub(crate) fn reset() {
        let mut reg = REGISTRY.lock();
        reg.exited = [0; N];
        for l in &reg.live {
            for c in &l.0 {
                c.store(0, Ordering::Relaxed);
            }
        }
    }
}

// loom runs model threads on one OS thread; statistics are not modelled.
#[cfg(loom)]
mod imp {
    use super::{Counter, N};
    #[inline]
    pub(crate) fn bump(_c: Counter) {}
    pub(crate) struct Handle;
    impl Handle {
        pub(crate) fn current() -> Self {
            Handle
        }
        #[inline]
        pub(crate) fn bump(&self, _c: Counter) {}
    }
    pub(crate) fn sum() -> [u64; N] {
        [0; N]
    }
    pub(crate) fn reset() {}
}

pub(crate) use imp::{Handle, bump};

/// A snapshot of the STM counters, summed over all threads.
///
/// ```
/// let s = strata::stm::stats();
/// assert!(s.aborts.total() >= s.aborts.panics);
/// ```
pub fn stats() -> StmStats {
    let c = imp::sum();
    let g = |k: Counter| c[k as usize];
    StmStats {
        commits: g(Counter::Commits),
        read_only_commits: g(Counter::ReadOnly),
        aborts: AbortStats {
            read_conflicts: g(Counter::ReadConflict),
            lock_conflicts: g(Counter::LockConflict),
            validation_conflicts: g(Counter::ValidationConflict),
            user: g(Counter::User),
            panics: g(Counter::Panic),
            invalid: g(Counter::Invalid),
            limits: g(Counter::Limits),
        },
        retries: g(Counter::Retries),
        wakeups: g(Counter::Wakeups),
        spurious_wakeups: g(Counter::Spurious),
        serial_entries: g(Counter::Serial),
        extensions: g(Counter::Extensions),
    }
}

/// Sets every counter back to zero (for tests and benchmarks; counts from
/// transactions running meanwhile may be lost or kept).
///
/// ```
/// strata::stm::reset_stats();
/// assert_eq!(strata::stm::stats().serial_entries, 0);
/// ```
pub fn reset_stats() {
    imp::reset();
}
