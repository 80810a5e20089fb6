//! Safe reclamation of replaced `TVar` values.
//!
//! A non-word `TVar` publishes each committed value as its own heap box; a
//! reader clones out of the box it found while pinned, so a committer that
//! replaces the box must not free it until every reader that might still
//! hold the pointer has unpinned. crossbeam-epoch does exactly that.
//!
//! Under loom (which cannot model crossbeam-epoch's globals) replaced boxes
//! go to a per-execution graveyard freed when the model ends: the models
//! check the lock-word protocol, and reclamation is crossbeam's to verify.

/// Proof that the thread is pinned: boxes loaded while it lives stay valid.
#[cfg(not(loom))]
pub(crate) struct Pin(crossbeam_epoch::Guard);

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

/// Retirements between two flushes of the thread's garbage bag.
#[cfg(not(loom))]
const FLUSH_EVERY: u32 = 8;

#[cfg(not(loom))]
thread_local! {
    static RETIRED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

impl Pin {
    /// crossbeam-epoch frees garbage in bags of 64, up to 8 bags per
    /// collection: a writer that retires on every operation then pays for
    /// hundreds of frees at once every so often (tens of microseconds at the
    /// 99th percentile). Handing the bag over every few retirements keeps
    /// each collection small.
    #[cfg(not(loom))]
    #[inline]
    fn smooth(&self) {
        let n = RETIRED.with(|c| {
            let n = c.get() + 1;
            c.set(if n >= FLUSH_EVERY { 0 } else { n });
            n
        });
        if n >= FLUSH_EVERY {
            self.0.flush();
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
            struct SendPtr<T>(*const T);
            // SAFETY: an `Arc<T: Send + Sync>` may be dropped anywhere.
            unsafe impl<T: Send + Sync> Send for SendPtr<T> {}
            let p = SendPtr(ptr);
            // SAFETY: as for `retire`: unlinked, and freed only after every
            // reader pinned before now has unpinned.
            unsafe {
                self.0.defer_unchecked(move || {
                    let p = p;
                    drop(std::sync::Arc::from_raw(p.0));
                });
            }
            self.smooth();
        }
        #[cfg(loom)]
        {
            // SAFETY: per the contract we own this count.
            let a = unsafe { std::sync::Arc::from_raw(ptr) };
            GRAVEYARD.lock().push(Grave(Box::new(a)));
        }
    }

    /// Frees `ptr` once no thread pinned now can still be reading it.
    ///
    /// # Safety
    ///
    /// `ptr` came from `Box::into_raw`, has been unlinked (no new reader can
    /// load it), and is retired exactly once.
    #[inline]
    pub(crate) unsafe fn retire<T: Send + 'static>(&self, ptr: *mut T) {
        #[cfg(not(loom))]
        {
            struct SendPtr<T>(*mut T);
            // SAFETY: the box holds a `T: Send`, so it may be dropped on
            // whichever thread runs the deferred function.
            unsafe impl<T: Send> Send for SendPtr<T> {}
            let p = SendPtr(ptr);
            // SAFETY: per this function's contract the box is unreachable
            // for new readers, and the epoch defers the drop until every
            // reader pinned before now has unpinned.
            unsafe {
                self.0.defer_unchecked(move || {
                    let p = p;
                    drop(Box::from_raw(p.0));
                });
            }
            self.smooth();
        }
        #[cfg(loom)]
        {
            // SAFETY: per the contract `ptr` is an unlinked `Box<T>` we own.
            let b = unsafe { Box::from_raw(ptr) };
            GRAVEYARD.lock().push(Grave(b));
        }
    }
}
