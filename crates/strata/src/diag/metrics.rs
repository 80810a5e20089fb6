//! Per-class counters: how often a class is taken, how often that had to
//! wait, for how long, and how long it is held.
//!
//! # Cost
//!
//! Counters exist only when checking is compiled in (they hang off the lock
//! class, which is zero-sized otherwise). Then a thread's acquisitions and
//! releases are counted in a cell of its own per class, written with a plain
//! relaxed load and store (no shared read-modify-write); `metrics()` sums
//! the cells. Async tasks, which move between threads, count with relaxed
//! `fetch_add`s on the class instead.
//! Clocks are read only on the contended path (a wait is timed from the
//! failed first attempt to the grant) and for hold times on a 1-in-16
//! sample of acquisitions plus every contended one: a clock read costs as
//! much as an uncontended lock, so timing every hold would double the cost
//! of checking. `max_hold` is therefore a lower bound of the true maximum.

use std::time::Duration;

use super::report::ClassInfo;

/// A snapshot of one lock class's counters, from [`metrics`].
///
/// ```
/// use strata::sync::Mutex;
///
/// let m = Mutex::named("metrics doc", 0);
/// *m.lock() += 1;
/// let all = strata::diag::metrics();
/// if strata::diag::checking_enabled() {
///     let mine = all.iter().find(|c| c.class.name() == Some("metrics doc")).unwrap();
///     assert!(mine.acquisitions >= 1);
///     assert_eq!(mine.holders, 0);
/// } else {
///     assert!(all.is_empty());
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClassMetrics {
    /// The class (name, construction site, `lock_nested` subclass).
    pub class: ClassInfo,
    /// Acquisitions of the class, including `try_` ones that succeeded or
    /// failed, and pseudo-lock waits.
    pub acquisitions: u64,
    /// Acquisitions that found the primitive taken and had to wait.
    pub contended: u64,
    /// Total time spent waiting in contended acquisitions.
    pub total_wait: Duration,
    /// The longest single wait.
    pub max_wait: Duration,
    /// The longest hold seen (sampled, see the module docs: a lower bound).
    pub max_hold: Duration,
    /// Threads and tasks holding (or waiting for) the class right now.
    pub holders: u64,
}

/// Counters of every class seen so far, in registration order.
///
/// Empty when checking is compiled out.
///
/// ```
/// for class in strata::diag::metrics() {
///     println!("{}: {} acquisitions, {} contended", class.class, class.acquisitions, class.contended);
/// }
/// ```
pub fn metrics() -> Vec<ClassMetrics> {
    #[cfg(strata_checked)]
    {
        super::registry::all_stats()
            .into_iter()
            .map(|(info, stats)| stats.snapshot(ClassInfo::new(info.key, info.subclass)))
            .collect()
    }
    #[cfg(not(strata_checked))]
    Vec::new()
}

#[cfg(strata_checked)]
pub(crate) use counters::{ClassStats, LocalCell};

#[cfg(strata_checked)]
mod counters {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::time::Duration;

    use parking_lot::Mutex;

    use super::{ClassInfo, ClassMetrics};

    /// One thread's acquisitions and releases of one class. Only that thread
    /// writes it, so a count is a plain load and store (no read-modify-write
    /// on a shared line: the reason checking stays within 2× of an
    /// unchecked lock); `metrics()` reads every cell.
    #[derive(Debug, Default)]
    pub(crate) struct LocalCell {
        acquired: AtomicU64,
        released: AtomicU64,
    }

    #[inline]
    fn bump(c: &AtomicU64) {
        c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
    }

    impl LocalCell {
        #[inline]
        pub(crate) fn acquired(&self) {
            bump(&self.acquired);
        }

        #[inline]
        pub(crate) fn released(&self) {
            bump(&self.released);
        }
    }

    /// The counters of one class; leaked once per class, so hot paths hold
    /// a `&'static` to them.
    #[derive(Debug, Default)]
    pub(crate) struct ClassStats {
        /// Counts of cells whose thread exited, and of task acquisitions
        /// and releases (which may happen on any thread).
        acquired: AtomicU64,
        released: AtomicU64,
        contended: AtomicU64,
        wait_total_ns: AtomicU64,
        wait_max_ns: AtomicU64,
        hold_max_ns: AtomicU64,
        /// Cells of live threads, and cells of exited ones (emptied) for the
        /// next thread to reuse, so memory stays bounded by the number of
        /// threads alive at once.
        cells: Mutex<Cells>,
    }

    #[derive(Debug, Default)]
    struct Cells {
        live: Vec<&'static LocalCell>,
        free: Vec<&'static LocalCell>,
    }

    fn nanos(d: Duration) -> u64 {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    impl ClassStats {
        /// A cell for the calling thread.
        pub(crate) fn checkout_cell(&self) -> &'static LocalCell {
            let mut cells = self.cells.lock();
            let cell = cells
                .free
                .pop()
                .unwrap_or_else(|| Box::leak(Box::default()));
            cells.live.push(cell);
            cell
        }

        /// The thread owning `cell` exited: fold its counts in and keep the
        /// emptied cell for reuse.
        pub(crate) fn return_cell(&self, cell: &'static LocalCell) {
            let mut cells = self.cells.lock();
            self.acquired
                .fetch_add(cell.acquired.swap(0, Relaxed), Relaxed);
            self.released
                .fetch_add(cell.released.swap(0, Relaxed), Relaxed);
            if let Some(i) = cells.live.iter().position(|c| std::ptr::eq(*c, cell)) {
                cells.live.swap_remove(i);
                cells.free.push(cell);
            }
        }

        /// An acquisition counted without a thread cell (a task's).
        pub(crate) fn acquired_shared(&self) {
            self.acquired.fetch_add(1, Relaxed);
        }

        /// A release counted without a thread cell (a task's).
        pub(crate) fn released_shared(&self) {
            self.released.fetch_add(1, Relaxed);
        }

        #[inline]
        pub(crate) fn held_for(&self, d: Duration) {
            self.hold_max_ns.fetch_max(nanos(d), Relaxed);
        }

        pub(crate) fn waited(&self, d: Duration) {
            let ns = nanos(d);
            self.contended.fetch_add(1, Relaxed);
            self.wait_total_ns.fetch_add(ns, Relaxed);
            self.wait_max_ns.fetch_max(ns, Relaxed);
        }

        pub(crate) fn snapshot(&self, class: ClassInfo) -> ClassMetrics {
            let (mut acquired, mut released) = {
                let cells = self.cells.lock();
                cells.live.iter().fold((0u64, 0u64), |(a, r), c| {
                    (
                        a.wrapping_add(c.acquired.load(Relaxed)),
                        r.wrapping_add(c.released.load(Relaxed)),
                    )
                })
            };
            acquired = acquired.wrapping_add(self.acquired.load(Relaxed));
            released = released.wrapping_add(self.released.load(Relaxed));
            ClassMetrics {
                class,
                acquisitions: acquired,
                contended: self.contended.load(Relaxed),
                total_wait: Duration::from_nanos(self.wait_total_ns.load(Relaxed)),
                max_wait: Duration::from_nanos(self.wait_max_ns.load(Relaxed)),
                max_hold: Duration::from_nanos(self.hold_max_ns.load(Relaxed)),
                // A release may be counted before its acquisition is read.
                holders: acquired.saturating_sub(released),
            }
        }
    }
}
