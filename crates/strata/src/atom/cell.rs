//! The raw algorithm behind `Atom`: an `Arc<T>` pointer swapped with CAS,
//! old values reclaimed through the epoch.
//!
//! The cell owns one strong count of the `Arc` it points at. A reader pins,
//! loads the pointer and takes its own count before unpinning: the pointee
//! cannot be freed meanwhile, because a writer that unlinks it only hands
//! its count to the epoch, which drops it after every thread pinned at that
//! time has unpinned. Writers race with one CAS; nobody ever blocks.

use std::sync::Arc;

use crate::loom::sync::atomic::{AtomicPtr, Ordering};
use crate::stm::reclaim::{self, Pin};

pub(crate) struct RawCell<T> {
    ptr: AtomicPtr<T>,
}

impl<T: Send + Sync + 'static> RawCell<T> {
    pub(crate) fn new(value: Arc<T>) -> Self {
        Self {
            ptr: AtomicPtr::new(Arc::into_raw(value).cast_mut()),
        }
    }

    /// Pins the thread: pointers loaded while the pin lives stay valid.
    #[inline]
    pub(crate) fn pin(&self) -> Pin {
        reclaim::pin()
    }

    /// The current pointer; valid while `_pin` lives.
    #[inline]
    pub(crate) fn current(&self, _pin: &Pin) -> *const T {
        self.ptr.load(Ordering::Acquire)
    }

    /// A new strong reference to what `p` points at.
    ///
    /// # Safety
    ///
    /// `p` came from [`current`](Self::current) under a pin still held.
    #[inline]
    pub(crate) unsafe fn share(p: *const T) -> Arc<T> {
        // SAFETY: the pin keeps the cell's (or the epoch's) count alive, so
        // the allocation is live and the count is at least one.
        unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        }
    }

    /// Installs `new` if the cell still points at `expected`; on failure
    /// gives `new` back with the pointer found instead.
    #[inline]
    pub(crate) fn compare_exchange(
        &self,
        expected: *const T,
        new: Arc<T>,
        pin: &Pin,
    ) -> Result<(), (Arc<T>, *const T)> {
        let raw = Arc::into_raw(new).cast_mut();
        match self.ptr.compare_exchange(
            expected.cast_mut(),
            raw,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(old) => {
                // SAFETY: `old` is unlinked by our CAS; the cell's count
                // moves to the epoch exactly once.
                unsafe { pin.retire_arc(old.cast_const()) };
                Ok(())
            }
            Err(found) => {
                // SAFETY: `raw` was never published; take it back.
                Err((unsafe { Arc::from_raw(raw) }, found.cast_const()))
            }
        }
    }
}

impl<T> Drop for RawCell<T> {
    fn drop(&mut self) {
        let p = self.ptr.load(Ordering::Relaxed);
        // SAFETY: no one else can reach the cell; we own its count.
        drop(unsafe { Arc::from_raw(p.cast_const()) });
    }
}

// SAFETY: the cell holds an `Arc<T>`, which is `Send + Sync` when `T` is.
unsafe impl<T: Send + Sync> Send for RawCell<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for RawCell<T> {}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc as LoomArc;

    /// Two writers increment by CAS while a reader loads: no update is lost
    /// and every loaded value is one that was published.
    #[test]
    fn loom_cas_swaps_lose_nothing() {
        loom::model(|| {
            let cell = LoomArc::new(RawCell::new(Arc::new(0u64)));
            let writer = |cell: LoomArc<RawCell<u64>>| {
                move || {
                    let pin = cell.pin();
                    let mut cur = cell.current(&pin);
                    loop {
                        // SAFETY: `cur` was loaded under `pin`.
                        let v = unsafe { *cur };
                        match cell.compare_exchange(cur, Arc::new(v + 1), &pin) {
                            Ok(()) => break,
                            Err((_, found)) => cur = found,
                        }
                    }
                }
            };
            let a = loom::thread::spawn(writer(cell.clone()));
            let reader = {
                let cell = cell.clone();
                loom::thread::spawn(move || {
                    let pin = cell.pin();
                    // SAFETY: loaded under `pin`.
                    let seen = unsafe { RawCell::share(cell.current(&pin)) };
                    assert!(*seen <= 2);
                })
            };
            writer(cell.clone())();
            a.join().unwrap();
            reader.join().unwrap();
            let pin = cell.pin();
            // SAFETY: loaded under `pin`.
            assert_eq!(unsafe { *RawCell::share(cell.current(&pin)) }, 2);
        });
    }
}
