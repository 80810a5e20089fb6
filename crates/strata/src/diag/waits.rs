//! The wait-for side of L0: who is blocked on what, and the watchdog that
//! looks for cycles among the blocked.
//!
//! A thread or task registers here only on the contended path, just before
//! it blocks, with a snapshot of what it holds. While it is blocked it
//! cannot take or release anything, so the snapshot stays true until it
//! deregisters. A deadlock is a cycle made only of blocked waiters, each
//! holding an instance the next one wants; every member of such a cycle is
//! registered, so no bookkeeping is needed on the uncontended path.
//!
//! The watchdog only reads this table: the waiters keep waiting, nothing is
//! removed from any queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::report::Violation;

#[cfg(strata_checked)]
pub(crate) use table::{Waiting, begin};

/// Finds the wait-for cycles among threads and tasks blocked on strata
/// primitives right now, one [`Violation`] of kind
/// [`Deadlock`](super::ViolationKind::Deadlock) per cycle. Reports nothing
/// and disturbs nobody; empty when checking is compiled out.
///
/// ```
/// assert!(strata::diag::deadlocks().is_empty());
/// ```
pub fn deadlocks() -> Vec<Violation> {
    #[cfg(strata_checked)]
    {
        table::cycles()
    }
    #[cfg(not(strata_checked))]
    Vec::new()
}

/// Starts a background thread that looks for wait-for cycles every
/// `interval` and hands each new one (once) to the violation handler.
///
/// It stops when the handle is dropped. The threads it finds keep waiting:
/// breaking the deadlock is up to the program (a timeout, a cancellation).
/// With a [`Handler::Panic`](super::Handler::Panic) handler the report is
/// printed by the watchdog thread, which carries on.
///
/// ```
/// use std::time::Duration;
///
/// let watchdog = strata::diag::watchdog(Duration::from_millis(100));
/// // ... run the program ...
/// drop(watchdog); // stops and joins the watchdog thread
/// ```
pub fn watchdog(interval: Duration) -> WatchdogHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = thread::Builder::new()
        .name("strata-watchdog".into())
        .spawn(move || {
            #[cfg(strata_checked)]
            let mut seen = std::collections::HashSet::new();
            while !flag.load(Ordering::Acquire) {
                thread::park_timeout(interval);
                if flag.load(Ordering::Acquire) {
                    break;
                }
                #[cfg(strata_checked)]
                for v in table::cycles() {
                    if seen.insert(v.cycle_id().to_owned()) {
                        // A Panic handler must not kill the watchdog.
                        let _ = std::panic::catch_unwind(|| super::handler::dispatch(&v));
                    }
                }
            }
        })
        .ok();
    WatchdogHandle { stop, thread }
}

/// Keeps the watchdog of [`watchdog`] running; dropping it stops it.
///
/// ```
/// let handle = strata::diag::watchdog(std::time::Duration::from_secs(1));
/// assert!(handle.is_running());
/// drop(handle);
/// ```
#[derive(Debug)]
#[must_use = "the watchdog stops when its handle is dropped"]
pub struct WatchdogHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WatchdogHandle {
    /// Whether the watchdog thread started and is still running (it could
    /// not start only if the OS refused a thread).
    ///
    /// ```
    /// let handle = strata::diag::watchdog(std::time::Duration::from_secs(1));
    /// assert!(handle.is_running());
    /// ```
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for WatchdogHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(strata_checked)]
mod table {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, LazyLock};
    use std::time::Instant;

    use parking_lot::Mutex;

    use super::super::engine::HeldEntry;
    use super::super::held::Held;
    use super::super::registry;
    use super::super::report::{
        Access, Acquisition, ClassInfo, EdgeReport, Violation, ViolationKind,
    };

    /// One blocked thread or task.
    #[derive(Clone)]
    struct Waiter {
        context: Arc<str>,
        wants: Held,
        holds: Vec<Held>,
        #[allow(dead_code)] // shown by Debug-printing tools later
        since: Instant,
    }

    static WAITERS: LazyLock<Mutex<HashMap<u64, Waiter>>> = LazyLock::new(Default::default);
    static NEXT: AtomicU64 = AtomicU64::new(1);

    /// A registered wait; deregisters when dropped (granted, timed out or
    /// cancelled).
    #[derive(Debug)]
    pub(crate) struct Waiting {
        id: u64,
    }

    impl Drop for Waiting {
        fn drop(&mut self) {
            if self.id != 0 {
                WAITERS.lock().remove(&self.id);
            }
        }
    }

    /// Registers that the owner of `entry` (already pushed, not yet
    /// granted) is blocking for it.
    #[cold]
    pub(crate) fn begin(entry: &HeldEntry) -> Waiting {
        let Some(context) = entry.context() else {
            return Waiting { id: 0 };
        };
        let snapshot = entry.with_stack(|stack, seq| {
            let wants = stack.get(seq).copied();
            let holds: Vec<Held> = stack
                .entries()
                .iter()
                .filter(|h| h.seq != seq && h.instance != 0)
                .copied()
                .collect();
            (wants, holds)
        });
        let Some((Some(wants), holds)) = snapshot else {
            return Waiting { id: 0 };
        };
        if wants.instance == 0 {
            return Waiting { id: 0 };
        }
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        WAITERS.lock().insert(
            id,
            Waiter {
                context,
                wants,
                holds,
                since: Instant::now(),
            },
        );
        Waiting { id }
    }

    fn acquisition(h: &Held) -> Acquisition {
        let info = registry::info(h.node);
        Acquisition::new(ClassInfo::new(info.key, info.subclass), h.access, h.site)
    }

    fn conflicts(held: Access, wanted: Access) -> bool {
        held.conflicts_with(wanted)
    }

    /// Every cycle among the registered waiters, once each.
    pub(crate) fn cycles() -> Vec<Violation> {
        let waiters: Vec<(u64, Waiter)> = {
            let table = WAITERS.lock();
            let mut w: Vec<_> = table.iter().map(|(id, w)| (*id, w.clone())).collect();
            w.sort_by_key(|(id, _)| *id);
            w
        };
        let n = waiters.len();
        // blocks[i]: the waiters (and their entry) holding what i wants.
        let blocks: Vec<Vec<(usize, Held)>> = waiters
            .iter()
            .enumerate()
            .map(|(i, (_, w))| {
                waiters
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .filter_map(|(j, (_, v))| {
                        v.holds
                            .iter()
                            .find(|h| {
                                h.instance == w.wants.instance
                                    && conflicts(h.access, w.wants.access)
                            })
                            .map(|h| (j, *h))
                    })
                    .collect()
            })
            .collect();
        let mut found: Vec<Vec<(usize, Held)>> = Vec::new();
        let mut seen_sets: Vec<Vec<usize>> = Vec::new();
        for start in 0..n {
            // Depth-first search for a path back to `start` through waiters
            // with a larger index, so each cycle is found from its smallest
            // member only.
            let mut path: Vec<(usize, Held)> = Vec::new();
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if *next >= blocks[node].len() {
                    stack.pop();
                    path.pop();
                    continue;
                }
                let (to, held) = blocks[node][*next];
                *next += 1;
                if to == start {
                    let mut cycle = path.clone();
                    cycle.push((to, held));
                    let mut members: Vec<usize> = cycle.iter().map(|(i, _)| *i).collect();
                    members.sort_unstable();
                    if !seen_sets.contains(&members) {
                        seen_sets.push(members);
                        found.push(cycle);
                    }
                } else if to > start && !path.iter().any(|(i, _)| *i == to) && path.len() < n {
                    path.push((to, held));
                    stack.push((to, 0));
                }
            }
        }
        found
            .into_iter()
            .map(|cycle| {
                // cycle[k] = (waiter holding what the previous member wants,
                // the entry it holds); the last member is `start` itself.
                let start = cycle.last().map_or(0, |(i, _)| *i);
                let first = &waiters[start].1;
                let mut edges = Vec::with_capacity(cycle.len());
                for (i, held) in &cycle {
                    let w = &waiters[*i].1;
                    edges.push(EdgeReport::new(
                        acquisition(held),
                        acquisition(&w.wants),
                        w.context.clone(),
                        None,
                    ));
                }
                // Start the edge list at the first waiter's own hold.
                edges.rotate_right(1);
                Violation::new(
                    ViolationKind::Deadlock,
                    first.context.clone(),
                    acquisition(&first.wants),
                    first.holds.iter().map(acquisition).collect(),
                    edges,
                )
            })
            .collect()
    }
}
