//! Safe reclamation of replaced values (`TVar` boxes, `Atom` arcs).
//!
//! A reader loads a pointer while pinned and uses the pointee until it
//! unpins, so a writer that unlinks a value must not free it until every
//! thread pinned at that time has unpinned. crossbeam-epoch tracks that.
//!
//! But crossbeam frees garbage in bursts (bags of 64 deferred functions, up
//! to 8 bags per collection): a writer that retires on every operation pays
//! hundreds of frees at once every so often — tens of microseconds at the
//! 99th percentile. So values are not handed to crossbeam one by one. The
//! retiring thread keeps them in its own limbo list, in batches; for each
//! batch one deferred function merely raises the batch's "safe" flag once
//! the epoch has moved past it. The thread then frees a few values of the
//! oldest safe batch on each later retirement: the same total work, spread
//! evenly, on the thread that made the garbage.
//!
//! A thread that stops retiring must not keep its garbage for ever (its
//! drops would never run, and a few large values are a lot of memory). So a
//! batch is also sealed once it holds 64 KiB, and a thread that still holds
//! garbage after 64 unpins without a retirement counts as idle: it seals
//! its open batch, hands its crossbeam bag over (so the flags can be
//! raised), and frees due values on its later unpins; at thread exit the
//! rest goes to crossbeam. The hot path pays one thread-local counter per
//! unpin.
//!
//! Soundness: every value of a batch was unlinked before the batch's flag
//! was deferred, so when crossbeam runs the flag function no thread can
//! still hold a pointer to any of them.
//!
//! Under loom (which cannot model crossbeam-epoch's globals) replaced values
//! go to a per-execution graveyard freed when the model ends: the models
//! check the lock-word and CAS protocols; reclamation is verified by tests.

/// Proof that the thread is pinned: pointers loaded while it lives stay
/// valid.
#[cfg(not(loom))]
pub(crate) struct Pin(crossbeam_epoch::Guard);

#[cfg(not(loom))]
impl Drop for Pin {
    #[inline]
    fn drop(&mut self) {
        // Still pinned here; the guard unpins right after.
        limbo::unpinning(&self.0);
    }
}

#[cfg(loom)]
pub(crate) struct Pin(());

#[cfg(not(loom))]
#[inline]
pub(crate) fn pin() -> Pin {
    Pin(crossbeam_epoch::pin())
}

#[cfg(loom)]
#[inline]
pub(crate) fn pin() -> Pin {
    Pin(())
}

#[cfg(loom)]
#[allow(dead_code)] // held only to be dropped when the model ends
struct Grave(Box<dyn std::any::Any + Send>);

#[cfg(loom)]
loom::lazy_static! {
    static ref GRAVEYARD: crate::loom::sync::Mutex<Vec<Grave>> =
        crate::loom::sync::Mutex::new(Vec::new());
}

#[cfg(not(loom))]
mod limbo {
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Values per batch (one crossbeam deferred function each).
    const BATCH: usize = 32;
    /// Bytes after which a batch is sealed before it has `BATCH` values, so
    /// that a few large values do not wait for thirty-odd more.
    const SEAL_BYTES: usize = 64 << 10;
    /// Values freed per retirement once their batch is safe: more than the
    /// one retired, so limbo drains, but no more: a swap allocates one value,
    /// and freeing them one or two at a time keeps them in the allocator's
    /// per-thread cache (three at a time overflowed glibc's tcache into its
    /// slow free path: Atom swap 499 -> 452 instructions, ~72 -> ~65 ns).
    const FREE_PER_RETIRE: usize = 2;
    /// Bytes retired after which the thread's crossbeam bag is handed over
    /// early. Handing it over is what lets the epoch run the batch flags,
    /// but another thread then executes a 2 KiB bag this thread wrote (tens
    /// of cache misses, microseconds): small values wait for the bag to
    /// fill (64 batches), large ones are not held back for long.
    const FLUSH_BYTES: usize = 256 << 10;
    /// Unpins without a retirement after which a thread that holds garbage
    /// counts as idle: it seals its open batch, hands its bag over, and
    /// frees what is due on its later unpins. A thread that keeps writing
    /// never gets there (its retirements free as they go), so this costs the
    /// hot path one thread-local counter.
    const IDLE_AFTER: u32 = 64;
    /// `IDLE` when the limbo is empty, and while an idle unpin frees values
    /// (an unpin inside their drops does nothing: no recursion through user
    /// code): unpins do nothing.
    const EMPTY: u32 = 0;

    /// One unlinked value and how to free it.
    #[derive(Clone, Copy)]
    pub(super) struct Retired {
        pub(super) ptr: *mut (),
        pub(super) free: unsafe fn(*mut ()),
        /// Roughly what freeing it returns to the allocator (the value's own
        /// size: what it owns on the heap is not known).
        pub(super) bytes: usize,
    }

    struct Batch {
        safe: Arc<AtomicBool>,
        items: VecDeque<Retired>,
    }

    #[derive(Default)]
    struct Limbo {
        open: Vec<Retired>,
        open_bytes: usize,
        sealed: VecDeque<Batch>,
        /// The storage of the last batch drained, for the next one: batch
        /// vectors are recycled, not grown from empty every 32 values.
        spare: Vec<Retired>,
        /// Bytes sealed since the bag was last handed over.
        unflushed: usize,
    }

    type Due = [Option<Retired>; FREE_PER_RETIRE];

    impl Limbo {
        /// Closes the open batch: one deferred function raises its flag once
        /// every thread pinned now (after its values were unlinked) has
        /// unpinned.
        #[inline(never)]
        fn seal(&mut self, guard: &crossbeam_epoch::Guard) {
            let safe = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&safe);
            // SAFETY: raising a flag is safe at any time.
            unsafe { guard.defer_unchecked(move || flag.store(true, Ordering::Release)) };
            self.unflushed += std::mem::take(&mut self.open_bytes);
            if self.unflushed >= FLUSH_BYTES {
                self.flush(guard);
            }
            let mut next = std::mem::take(&mut self.spare);
            next.reserve(BATCH);
            let items = std::mem::replace(&mut self.open, next).into();
            self.sealed.push_back(Batch { safe, items });
        }

        /// Hands the thread's crossbeam bag (with the batch flags in it) to
        /// the epoch, and lets it collect.
        fn flush(&mut self, guard: &crossbeam_epoch::Guard) {
            self.unflushed = 0;
            guard.flush();
        }

        /// Takes up to `FREE_PER_RETIRE` of the oldest safe values, to free
        /// once the limbo is no longer borrowed (dropping them runs user
        /// code).
        #[inline(always)]
        fn take_due(&mut self) -> Due {
            let mut due = [None; FREE_PER_RETIRE];
            let mut n = 0;
            while n < FREE_PER_RETIRE {
                let Some(front) = self.sealed.front_mut() else {
                    break;
                };
                if !front.safe.load(Ordering::Acquire) {
                    break;
                }
                match front.items.pop_front() {
                    Some(item) => {
                        due[n] = Some(item);
                        n += 1;
                    }
                    None => {
                        let drained = self.sealed.pop_front().expect("front exists");
                        if self.spare.capacity() == 0 {
                            self.spare = drained.items.into();
                        }
                    }
                }
            }
            due
        }

        /// Whether the oldest batch holds values free to go now.
        fn front_due(&self) -> bool {
            self.sealed
                .front()
                .is_some_and(|b| b.safe.load(Ordering::Acquire))
        }
    }

    /// Frees values taken by [`Limbo::take_due`].
    #[inline(always)]
    fn free(due: Due) {
        for r in due.into_iter().flatten() {
            // SAFETY: their batch's flag is raised: no thread can reach
            // them; each is taken from the limbo, so freed, once.
            unsafe { (r.free)(r.ptr) };
        }
    }

    /// Moves a batch's values between threads (they are only ever freed).
    struct SendBatch(Vec<Retired>);
    // SAFETY: `retire` only accepts values whose types are `Send` (boxes of
    // `T: Send`, arcs of `T: Send + Sync`), so freeing them on another
    // thread is allowed.
    unsafe impl Send for SendBatch {}

    impl SendBatch {
        /// # Safety
        ///
        /// No thread can still reach any of the values.
        unsafe fn free(self) {
            for r in self.0 {
                // SAFETY: forwarded contract; each value is freed once.
                unsafe { (r.free)(r.ptr) };
            }
        }
    }

    impl Drop for Limbo {
        fn drop(&mut self) {
            // Thread exit: whatever is left goes to crossbeam as one
            // deferred function (crossbeam copes with its own thread-local
            // handle being gone already).
            let mut rest: Vec<Retired> = std::mem::take(&mut self.open);
            for b in self.sealed.drain(..) {
                rest.extend(b.items);
            }
            if rest.is_empty() {
                return;
            }
            let batch = SendBatch(rest);
            let guard = crossbeam_epoch::pin();
            // SAFETY: every value was unlinked before now; the epoch runs
            // this only after every thread pinned now has unpinned.
            unsafe {
                guard.defer_unchecked(move || {
                    let batch = batch;
                    batch.free();
                });
            }
            guard.flush();
        }
    }

    thread_local! {
        static LIMBO: RefCell<Limbo> = RefCell::new(Limbo::default());
        /// Unpins left before the thread counts as idle, while its limbo
        /// holds values (`EMPTY`: it holds none; 1: the next unpin acts).
        /// Const, no destructor: one plain thread-local access per unpin.
        static IDLE: Cell<u32> = const { Cell::new(EMPTY) };
    }

    /// # Safety
    ///
    /// `r` is unlinked (no new reader can load it), retired exactly once,
    /// of a `Send` type, and the caller is pinned by `guard`.
    pub(super) unsafe fn retire(guard: &crossbeam_epoch::Guard, r: Retired) {
        let r = match LIMBO.try_with(|l| {
            let Ok(mut l) = l.try_borrow_mut() else {
                // Re-entered from a value's drop: hand this one over below.
                return Some(r);
            };
            IDLE.set(IDLE_AFTER);
            l.open_bytes += r.bytes;
            l.open.push(r);
            if l.open.len() >= BATCH || l.open_bytes >= SEAL_BYTES {
                l.seal(guard);
            }
            // Free a few of the oldest safe values.
            let due = l.take_due();
            drop(l);
            free(due);
            None
        }) {
            Ok(None) => return,
            Ok(Some(r)) => r,
            Err(_) => r, // thread-local storage already torn down
        };
        let batch = SendBatch(vec![r]);
        // SAFETY: as for a batch flag: unlinked, freed after the epoch.
        unsafe {
            guard.defer_unchecked(move || {
                let batch = batch;
                batch.free();
            });
        }
    }

    /// Called as a pin ends (`guard` still pinned): counts unpins of a
    /// thread holding garbage and, once it is idle, makes that garbage go.
    #[inline]
    pub(super) fn unpinning(guard: &crossbeam_epoch::Guard) {
        let n = IDLE.get();
        if n != EMPTY {
            if n > 1 {
                IDLE.set(n - 1);
            } else {
                idle(guard);
            }
        }
    }

    /// An idle thread's unpin: seals the open batch, hands the bag over
    /// while flags are pending (which also lets the epoch advance), and
    /// frees a few due values.
    #[cold]
    fn idle(guard: &crossbeam_epoch::Guard) {
        let Ok(Some(due)) = LIMBO.try_with(|l| {
            // Borrowed: re-entered from a value's drop; next unpin.
            let mut l = l.try_borrow_mut().ok()?;
            if !l.open.is_empty() {
                l.seal(guard);
            }
            if !l.front_due() {
                l.flush(guard);
            }
            let due = l.take_due();
            let next = if l.sealed.is_empty() {
                EMPTY
            } else if l.front_due() {
                // More to free: again on the next unpin.
                1
            } else {
                // Waiting for the epoch: look again after a while.
                IDLE_AFTER
            };
            Some((due, next))
        }) else {
            return;
        };
        let (due, next) = due;
        IDLE.set(EMPTY);
        free(due);
        // A retirement inside a drop restarted the count: keep it.
        if IDLE.get() == EMPTY {
            IDLE.set(next);
        }
    }
}

impl Pin {
    /// Frees `ptr` (a box) once no thread pinned now can still be reading it.
    ///
    /// # Safety
    ///
    /// `ptr` came from `Box::into_raw`, has been unlinked (no new reader can
    /// load it), and is retired exactly once.
    #[inline]
    pub(crate) unsafe fn retire<T: Send + 'static>(&self, ptr: *mut T) {
        #[cfg(not(loom))]
        {
            /// # Safety
            ///
            /// `p` is an unlinked `Box<T>` nobody can reach.
            unsafe fn free<T>(p: *mut ()) {
                // SAFETY: per the contract.
                drop(unsafe { Box::from_raw(p.cast::<T>()) });
            }
            // SAFETY: forwarded contract; `T: Send`.
            unsafe {
                limbo::retire(
                    &self.0,
                    limbo::Retired {
                        ptr: ptr.cast(),
                        free: free::<T>,
                        bytes: std::mem::size_of::<T>(),
                    },
                )
            };
        }
        #[cfg(loom)]
        {
            // SAFETY: per the contract `ptr` is an unlinked `Box<T>` we own.
            let b = unsafe { Box::from_raw(ptr) };
            GRAVEYARD.lock().push(Grave(b));
        }
    }

    /// Drops one strong count of the `Arc` behind `ptr` once no thread
    /// pinned now can still be reading it.
    ///
    /// # Safety
    ///
    /// `ptr` came from `Arc::into_raw`, the caller owns that count, and no
    /// new reader can load `ptr` any more.
    #[inline]
    pub(crate) unsafe fn retire_arc<T: Send + Sync + 'static>(&self, ptr: *const T) {
        #[cfg(not(loom))]
        {
            /// # Safety
            ///
            /// `p` is an unlinked `Arc<T>` count nobody can reach.
            unsafe fn free<T>(p: *mut ()) {
                // SAFETY: per the contract.
                drop(unsafe { std::sync::Arc::from_raw(p.cast_const().cast::<T>()) });
            }
            // SAFETY: forwarded contract; `Arc<T: Send + Sync>` is `Send`.
            unsafe {
                limbo::retire(
                    &self.0,
                    limbo::Retired {
                        ptr: ptr.cast_mut().cast(),
                        free: free::<T>,
                        bytes: 2 * std::mem::size_of::<usize>() + std::mem::size_of::<T>(),
                    },
                )
            };
        }
        #[cfg(loom)]
        {
            // SAFETY: per the contract we own this count.
            let a = unsafe { std::sync::Arc::from_raw(ptr) };
            GRAVEYARD.lock().push(Grave(Box::new(a)));
        }
    }
}
