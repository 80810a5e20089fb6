//! Counters for the cache's hot path: a cache-padded row of counters per
//! thread slot, written only by the thread that owns the slot, summed on
//! read.
//!
//! A hit must cost next to nothing over quick_cache's own lookup. One shared
//! atomic would put every reader thread on one cache line, and even an
//! uncontended `fetch_add` is a locked instruction that costs about a third
//! of a lookup. So each live thread owns a *slot* (claimed at its first
//! count, given back when it exits): only the owner ever writes the slot's
//! row, so an increment is a plain relaxed load and store of a line the
//! thread has to itself. Threads beyond the number of slots (and threads
//! counting during their own teardown) share one extra row through
//! `fetch_add`.
//!
//! Why no increment is lost: while a thread owns slot `i`, it is the only
//! writer of row `i` (of every counter). A new owner claims the slot with an
//! acquire CAS that reads the previous owner's release store, so the
//! previous owner's last increments happen before the new owner's first
//! load. The model test below checks this hand-over.

use crossbeam_utils::CachePadded;

use crate::loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Which thread owns which slot: slot `i` is owned iff `owned[i]`.
pub(crate) struct SlotTable {
    owned: Box<[AtomicBool]>,
}

impl SlotTable {
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            owned: (0..slots).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    // Under loom the counters use no owned slots (see `Counters::new`).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn len(&self) -> usize {
        self.owned.len()
    }

    /// Claims a free slot for the calling thread, if any is free.
    pub(crate) fn claim(&self) -> Option<usize> {
        self.owned.iter().position(|flag| {
            !flag.load(Ordering::Relaxed)
                && flag
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
        })
    }

    /// Gives slot `i` back; the caller's increments happen before the next
    /// owner's.
    pub(crate) fn release(&self, i: usize) {
        self.owned[i].store(false, Ordering::Release);
    }
}

/// `N` counters, one row per slot of a [`SlotTable`] plus a shared row.
pub(crate) struct Striped<const N: usize> {
    rows: Box<[CachePadded<[AtomicU64; N]>]>,
}

impl<const N: usize> Striped<N> {
    /// Counters for a table of `slots` slots.
    pub(crate) fn with_slots(slots: usize) -> Self {
        Self {
            rows: (0..=slots)
                .map(|_| CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }

    /// Adds one to counter `c` in the row of `slot`, which the calling
    /// thread must own.
    #[inline]
    pub(crate) fn add_owned(&self, slot: usize, c: usize) {
        let cell = &self.rows[slot][c];
        // Only the owner writes this cell: no read-modify-write needed.
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    /// Adds one to counter `c` in the shared row.
    #[inline]
    pub(crate) fn add_shared(&self, c: usize) {
        let shared = self.rows.len() - 1;
        self.rows[shared][c].fetch_add(1, Ordering::Relaxed);
    }

    /// Counter `c` summed over all rows. Exact once the counting threads
    /// are quiet; while they run, a value the sum passed through or between.
    pub(crate) fn sum(&self, c: usize) -> u64 {
        self.rows
            .iter()
            .map(|row| row[c].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// The process-wide slot table and this thread's claim on it. Under loom
/// there is none (loom's atomics cannot live in a `static`), and everything
/// counts through the shared row; the model tests drive a table directly.
#[cfg(not(loom))]
mod global {
    use std::cell::Cell;
    use std::sync::OnceLock;

    use super::SlotTable;

    static TABLE: OnceLock<SlotTable> = OnceLock::new();

    /// Slots for this machine's threads (a few per core).
    pub(crate) fn table() -> &'static SlotTable {
        TABLE.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
            SlotTable::new((cores * 4).clamp(8, 128))
        })
    }

    /// `SLOT` before the thread's first count.
    const UNCLAIMED: usize = usize::MAX;
    /// `SLOT` of a thread without a slot (all taken, or given back at exit).
    const SHARED: usize = usize::MAX - 1;

    std::thread_local! {
        /// This thread's slot. A `const` cell without a destructor, so the
        /// hot path is one thread-local load and it stays readable while
        /// the thread is torn down.
        static SLOT: Cell<usize> = const { Cell::new(UNCLAIMED) };
        /// Gives the slot back when the thread exits.
        static CLAIM: Claim = const { Claim };
    }

    /// Releases the thread's slot in its thread-local destructor.
    struct Claim;

    impl Drop for Claim {
        fn drop(&mut self) {
            let slot = SLOT.replace(SHARED);
            if slot < SHARED {
                // Counted through the shared row from here on, before
                // another thread can own this slot.
                table().release(slot);
            }
        }
    }

    /// The calling thread's slot, if it has one.
    #[inline]
    pub(crate) fn my_slot() -> Option<usize> {
        match SLOT.get() {
            UNCLAIMED => claim(),
            SHARED => None,
            slot => Some(slot),
        }
    }

    #[cold]
    fn claim() -> Option<usize> {
        // Register the destructor first: if that is impossible (the thread
        // is exiting), count through the shared row and claim nothing.
        if CLAIM.try_with(|_| ()).is_err() {
            SLOT.set(SHARED);
            return None;
        }
        let slot = table().claim();
        SLOT.set(slot.unwrap_or(SHARED));
        slot
    }
}

#[cfg(loom)]
mod global {
    #[inline]
    pub(crate) fn my_slot() -> Option<usize> {
        None
    }
}

/// `N` counters for any thread, cheap to bump (see the module docs).
pub(crate) struct Counters<const N: usize> {
    striped: Striped<N>,
}

impl<const N: usize> Counters<N> {
    pub(crate) fn new() -> Self {
        #[cfg(not(loom))]
        let slots = global::table().len();
        #[cfg(loom)]
        let slots = 0;
        Self {
            striped: Striped::with_slots(slots),
        }
    }

    /// Adds one to counter `c`.
    #[inline]
    pub(crate) fn incr(&self, c: usize) {
        match global::my_slot() {
            Some(slot) => self.striped.add_owned(slot, c),
            None => self.striped.add_shared(c),
        }
    }

    /// The current value of counter `c`.
    pub(crate) fn get(&self, c: usize) -> u64 {
        self.striped.sum(c)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn counts_from_more_threads_than_slots_are_exact() {
        let counters = Counters::<2>::new();
        let threads = global::table().len() + 8;
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..5_000 {
                        counters.incr(0);
                    }
                    counters.incr(1);
                });
            }
        });
        assert_eq!(counters.get(0), threads as u64 * 5_000);
        assert_eq!(counters.get(1), threads as u64);
    }

    #[test]
    fn a_thread_keeps_its_slot() {
        assert_eq!(global::my_slot(), global::my_slot());
        let theirs = std::thread::spawn(global::my_slot).join().unwrap();
        if theirs.is_some() {
            assert_ne!(theirs, global::my_slot());
        }
    }

    #[test]
    fn counts_made_while_a_thread_is_torn_down_are_not_lost() {
        struct CountOnExit(&'static Counters<1>);
        impl Drop for CountOnExit {
            fn drop(&mut self) {
                self.0.incr(0);
            }
        }
        std::thread_local! {
            static LATE: std::cell::RefCell<Option<CountOnExit>> =
                const { std::cell::RefCell::new(None) };
        }
        let counters: &'static Counters<1> = Box::leak(Box::new(Counters::new()));
        let threads = 16;
        for _ in 0..threads {
            std::thread::spawn(move || {
                counters.incr(0);
                // Dropped among the thread-local destructors, before or
                // after the slot is given back.
                LATE.with(|late| *late.borrow_mut() = Some(CountOnExit(counters)));
            })
            .join()
            .unwrap();
        }
        assert_eq!(counters.get(0), 2 * threads);
    }

    #[test]
    fn claims_are_exclusive_until_released() {
        let table = SlotTable::new(2);
        let (a, b) = (table.claim(), table.claim());
        assert!(a.is_some() && b.is_some() && a != b);
        assert_eq!(table.claim(), None);
        table.release(a.unwrap());
        assert_eq!(table.claim(), a);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Two threads count through one slot in turn (claim, owner-only
    /// increments, release) and a third through the shared row: no
    /// increment may be lost, whatever the interleaving.
    #[test]
    fn loom_slot_hand_over_loses_no_increment() {
        loom::model(|| {
            let table = Arc::new(SlotTable::new(1));
            let counters = Arc::new(Striped::<1>::with_slots(1));
            let worker = |table: Arc<SlotTable>, counters: Arc<Striped<1>>| {
                move || match table.claim() {
                    Some(slot) => {
                        counters.add_owned(slot, 0);
                        counters.add_owned(slot, 0);
                        table.release(slot);
                    }
                    None => {
                        counters.add_shared(0);
                        counters.add_shared(0);
                    }
                }
            };
            let a = loom::thread::spawn(worker(table.clone(), counters.clone()));
            let b = loom::thread::spawn(worker(table.clone(), counters.clone()));
            worker(table.clone(), counters.clone())();
            a.join().unwrap();
            b.join().unwrap();
            assert_eq!(counters.sum(0), 6);
        });
    }
}
