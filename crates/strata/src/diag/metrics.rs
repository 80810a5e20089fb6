//! Per-class counters: how often a class is taken, how often that had to
//! wait, for how long, and how long it is held.
//!
//! # Cost
//!
//! Counters exist only when checking is compiled in (they hang off the lock
//! class, which is zero-sized otherwise). Then every acquisition does one
//! relaxed `fetch_add` on its class's counter and one on its holder count.
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
pub(crate) use counters::ClassStats;

#[cfg(strata_checked)]
mod counters {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::time::Duration;

    use super::{ClassInfo, ClassMetrics};

    /// The live counters of one class; leaked once per class, so hot paths
    /// hold a `&'static` to them.
    #[derive(Debug, Default)]
    pub(crate) struct ClassStats {
        acquisitions: AtomicU64,
        contended: AtomicU64,
        wait_total_ns: AtomicU64,
        wait_max_ns: AtomicU64,
        hold_max_ns: AtomicU64,
        holders: AtomicU64,
    }

    fn nanos(d: Duration) -> u64 {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    impl ClassStats {
        #[inline]
        pub(crate) fn acquired(&self) {
            self.acquisitions.fetch_add(1, Relaxed);
            self.holders.fetch_add(1, Relaxed);
        }

        #[inline]
        pub(crate) fn released(&self, held_for: Option<Duration>) {
            self.holders.fetch_sub(1, Relaxed);
            if let Some(d) = held_for {
                self.hold_max_ns.fetch_max(nanos(d), Relaxed);
            }
        }

        pub(crate) fn waited(&self, d: Duration) {
            let ns = nanos(d);
            self.contended.fetch_add(1, Relaxed);
            self.wait_total_ns.fetch_add(ns, Relaxed);
            self.wait_max_ns.fetch_max(ns, Relaxed);
        }

        pub(crate) fn snapshot(&self, class: ClassInfo) -> ClassMetrics {
            ClassMetrics {
                class,
                acquisitions: self.acquisitions.load(Relaxed),
                contended: self.contended.load(Relaxed),
                total_wait: Duration::from_nanos(self.wait_total_ns.load(Relaxed)),
                max_wait: Duration::from_nanos(self.wait_max_ns.load(Relaxed)),
                max_hold: Duration::from_nanos(self.hold_max_ns.load(Relaxed)),
                holders: self.holders.load(Relaxed),
            }
        }
    }
}
