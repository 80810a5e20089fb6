//! Latches: one-shot "done" signals between the thread that finishes a job
//! and the one waiting for it.
//!
//! The setter's last access to a latch is the store that publishes it: the
//! waiter may return and free the latch (it is on its stack) the moment it
//! sees the flag, so everything a setter needs afterwards is read first.

use super::sleep::Sleep;
use crate::loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::loom::thread::{self, Thread};

/// A latch that can be set once.
pub(crate) trait Latch {
    /// Sets the latch and wakes its waiter.
    ///
    /// # Safety
    /// `this` is valid on entry; it may be freed by the waiter as soon as
    /// the flag is published, so implementations must not touch it after.
    unsafe fn set(this: *const Self);
}

const SET: usize = 1;
const NO_WAITER: usize = 0;

/// Records worker `idx` as the waiter in a `SET | (waiter + 1) << 1` state
/// word, unless it is set already (then `true`: nothing to wait for).
pub(crate) fn register_waiter(state: &AtomicUsize, idx: usize) -> bool {
    let mut current = state.load(Ordering::Acquire);
    loop {
        if current & SET != 0 {
            return true;
        }
        match state.compare_exchange_weak(
            current,
            (idx + 1) << 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return false,
            Err(actual) => current = actual,
        }
    }
}

/// A latch waited on by a pool worker, which keeps running other jobs while
/// it waits and sleeps in the pool's [`Sleep`] when there are none. The
/// waiting worker registers its index in the state word before it sleeps,
/// so any worker can wait (a `Future::force` moved to another child).
///
/// `state = SET | (waiter + 1) << 1`.
pub(crate) struct WorkerLatch {
    state: AtomicUsize,
    sleep: *const Sleep,
}

// SAFETY: `sleep` points into the registry, which outlives every job of the
// pool (a worker holds an `Arc` of it while running one); the rest is atomic.
unsafe impl Send for WorkerLatch {}
// SAFETY: as above.
unsafe impl Sync for WorkerLatch {}

impl WorkerLatch {
    /// A latch whose setter wakes its waiter through `sleep`.
    #[inline]
    pub(crate) fn new(sleep: &Sleep) -> Self {
        Self {
            state: AtomicUsize::new(NO_WAITER),
            sleep,
        }
    }

    /// Whether this latch wakes its waiter through `sleep`, i.e. whether a
    /// worker of the pool that owns `sleep` may wait on it: a waiter
    /// registers its worker index, which only means something in that pool.
    #[inline]
    pub(crate) fn wakes_in(&self, sleep: &Sleep) -> bool {
        std::ptr::eq(self.sleep, sleep)
    }

    /// Whether the latch is set (and the job's effects are visible).
    #[inline]
    pub(crate) fn probe(&self) -> bool {
        self.state.load(Ordering::Acquire) & SET != 0
    }

    /// Records worker `idx` as the one to wake. Returns `true` if the latch
    /// is already set (then there is nothing to wait for).
    pub(crate) fn register(&self, idx: usize) -> bool {
        register_waiter(&self.state, idx)
    }
}

impl Latch for WorkerLatch {
    #[inline]
    unsafe fn set(this: *const Self) {
        // SAFETY: `this` is valid on entry; read what we need before the
        // RMW that may let the waiter free it.
        let sleep = unsafe { &*(*this).sleep };
        // SAFETY: as above; the RMW is the last access to `*this`.
        let prev = unsafe { (*this).state.fetch_or(SET, Ordering::AcqRel) };
        let waiter = prev >> 1;
        if waiter != NO_WAITER {
            sleep.notify_worker(waiter - 1);
        }
    }
}

/// A [`WorkerLatch`] waited on by a worker of one pool and set by a worker
/// of another (`install` from a foreign worker). The setter holds no
/// reference to the waiter's pool, so the latch keeps that pool's registry
/// (and so its `Sleep`) alive until the wake-up has been delivered.
pub(crate) struct CrossLatch {
    latch: WorkerLatch,
    registry: std::sync::Arc<super::Registry>,
}

impl CrossLatch {
    /// A latch that wakes a worker of `registry`'s pool.
    pub(crate) fn new(registry: &std::sync::Arc<super::Registry>) -> Self {
        Self {
            latch: WorkerLatch::new(&registry.sleep),
            registry: registry.clone(),
        }
    }

    /// The latch the waiting worker waits on.
    pub(crate) fn worker_latch(&self) -> &WorkerLatch {
        &self.latch
    }
}

impl Latch for CrossLatch {
    unsafe fn set(this: *const Self) {
        // SAFETY: valid on entry; the clone keeps the waiter's pool alive
        // after the publish, which may let the waiter free `*this`.
        let registry = unsafe { (*this).registry.clone() };
        // SAFETY: forwarded; the inner set's RMW is the last access.
        unsafe { WorkerLatch::set(&(*this).latch) };
        drop(registry);
    }
}

/// A latch waited on by a thread outside the pool, which parks.
pub(crate) struct LockLatch {
    set: AtomicBool,
    thread: Thread,
}

impl LockLatch {
    /// A latch that wakes the calling thread.
    pub(crate) fn new() -> Self {
        Self {
            set: AtomicBool::new(false),
            thread: thread::current(),
        }
    }

    /// Blocks the calling (constructing) thread until the latch is set,
    /// spinning very briefly first (a pool that was awake answers in
    /// microseconds; longer spinning only takes a CPU from the workers on
    /// small machines).
    pub(crate) fn wait(&self) {
        for _ in 0..20 {
            if self.set.load(Ordering::Acquire) {
                return;
            }
            crate::loom::hint::spin_loop();
        }
        while !self.set.load(Ordering::Acquire) {
            thread::park();
        }
    }
}

impl Latch for LockLatch {
    unsafe fn set(this: *const Self) {
        // SAFETY: valid on entry; clone the handle before publishing, after
        // which the waiter may return and drop the latch.
        let thread = unsafe { (*this).thread.clone() };
        // SAFETY: the store is the last access to `*this`.
        unsafe { (*this).set.store(true, Ordering::Release) };
        thread.unpark();
    }
}

/// Counts outstanding children; the last one to finish sets the inner latch.
pub(crate) struct CountLatch {
    count: AtomicUsize,
    latch: WorkerLatch,
}

impl CountLatch {
    /// A latch with one outstanding party (the owner itself).
    pub(crate) fn new(sleep: &Sleep) -> Self {
        Self {
            count: AtomicUsize::new(1),
            latch: WorkerLatch::new(sleep),
        }
    }

    /// One more party to wait for.
    #[inline]
    pub(crate) fn increment(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The latch that is set when the count reaches zero.
    pub(crate) fn latch(&self) -> &WorkerLatch {
        &self.latch
    }

    /// One party finished.
    ///
    /// # Safety
    /// `this` is valid on entry; when this is the last party the waiter may
    /// free it right after the inner latch is set.
    #[inline]
    pub(crate) unsafe fn decrement(this: *const Self) {
        // SAFETY: valid on entry; while the count is above zero the owner
        // cannot have returned.
        if unsafe { (*this).count.fetch_sub(1, Ordering::AcqRel) } == 1 {
            // SAFETY: the inner latch is still valid: its waiter has not
            // seen it set.
            unsafe { WorkerLatch::set(&(*this).latch) };
        }
    }
}

#[cfg(all(test, loom))]
mod loom {
    //! The real latches against the real [`Sleep`]: the owner waits as a
    //! worker does (probe, register, sleep), setters run on other threads.
    //! The latch lives in a box the owner frees once it has seen the latch
    //! set; before freeing, the owner overwrites it with poison, so a setter
    //! touching it after its publishing RMW would change the poison (checked
    //! after all setters are joined). A lost wake-up leaves the owner
    //! blocked, which loom reports as a deadlock.

    use super::*;
    use crate::loom::cell::UnsafeCell;
    use crate::loom::sync::Arc;

    /// A state no real latch has: waiter bits set, `SET` clear (a stray
    /// `fetch_or(SET)` changes it).
    const POISON: usize = 0xdead_bee0;

    /// A result slot a child writes before its publish and the owner reads
    /// after it (loom checks the two accesses are ordered).
    struct Slot(UnsafeCell<usize>);
    // SAFETY: accesses are ordered by the latch, which is what loom checks.
    unsafe impl Sync for Slot {}

    #[derive(Clone, Copy)]
    struct Ptr<T>(*const T);
    // SAFETY: the model only hands the pointer to setters while the owner
    // keeps the pointee alive (until the latch is set).
    unsafe impl<T> Send for Ptr<T> {}

    /// The owner's wait, as `WorkerThread::idle`/`wait_for` do it.
    fn wait(latch: &WorkerLatch, sleep: &Sleep, idx: usize) {
        while !latch.probe() {
            if latch.register(idx) {
                break;
            }
            sleep.sleep(idx, || latch.probe());
        }
    }

    /// A `Future::force`: one child sets the owner's `WorkerLatch` while the
    /// owner registers and goes to sleep.
    #[test]
    fn loom_worker_latch_set_while_owner_sleeps_wakes_it() {
        ::loom::model(|| {
            let sleep = Arc::new(Sleep::new(2));
            let latch = Box::into_raw(Box::new(WorkerLatch::new(&sleep)));
            let result = Arc::new(Slot(UnsafeCell::new(0)));
            let child = {
                let (p, result) = (Ptr(latch.cast_const()), result.clone());
                thread::spawn(move || {
                    let p = p;
                    // SAFETY: the owner reads it only after the latch is set.
                    result.0.with_mut(|r| unsafe { *r = 7 });
                    // SAFETY: the latch is live until it is set.
                    unsafe { WorkerLatch::set(p.0) };
                })
            };
            // SAFETY: the owner's latch, live until freed below.
            let l = unsafe { &*latch };
            wait(l, &sleep, 1);
            // Set means the child's write is visible (loom checks the cell).
            // SAFETY: written before the publish we just saw.
            assert_eq!(result.0.with(|r| unsafe { *r }), 7);
            l.state.store(POISON, Ordering::Relaxed);
            child.join().unwrap();
            assert_eq!(
                l.state.load(Ordering::Relaxed),
                POISON,
                "set touched a freed latch"
            );
            // SAFETY: from `Box::into_raw` above; no setter is left.
            drop(unsafe { Box::from_raw(latch) });
        });
    }

    /// A scope: the owner's own party and two children count down; the last
    /// one sets the inner latch and wakes the owner, which may be asleep.
    #[test]
    fn loom_count_latch_last_child_wakes_the_sleeping_owner() {
        ::loom::model(|| {
            let sleep = Arc::new(Sleep::new(1));
            let latch = Box::into_raw(Box::new(CountLatch::new(&sleep)));
            let results = Arc::new([Slot(UnsafeCell::new(0)), Slot(UnsafeCell::new(0))]);
            let children: Vec<_> = (0..2)
                .map(|i| {
                    // SAFETY: live until the count reaches zero.
                    unsafe { &*latch }.increment();
                    let (p, results) = (Ptr(latch.cast_const()), results.clone());
                    thread::spawn(move || {
                        let p = p;
                        // SAFETY: the owner reads it only after the count is zero.
                        results[i].0.with_mut(|r| unsafe { *r = i + 1 });
                        // SAFETY: this child's party is still counted.
                        unsafe { CountLatch::decrement(p.0) };
                    })
                })
                .collect();
            // SAFETY: the owner's party keeps it alive; freed below.
            let l = unsafe { &*latch };
            // SAFETY: the owner's own party.
            unsafe { CountLatch::decrement(latch) };
            wait(l.latch(), &sleep, 0);
            for (i, r) in results.iter().enumerate() {
                // SAFETY: every child wrote before its decrement.
                assert_eq!(r.0.with(|r| unsafe { *r }), i + 1);
            }
            l.count.store(POISON, Ordering::Relaxed);
            l.latch.state.store(POISON, Ordering::Relaxed);
            for c in children {
                c.join().unwrap();
            }
            assert_eq!(
                l.count.load(Ordering::Relaxed),
                POISON,
                "a child touched a freed latch"
            );
            assert_eq!(
                l.latch.state.load(Ordering::Relaxed),
                POISON,
                "set touched a freed latch"
            );
            // SAFETY: from `Box::into_raw` above; no child is left.
            drop(unsafe { Box::from_raw(latch) });
        });
    }
}
