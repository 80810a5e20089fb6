//! The two storage backends under [`SnapshotCell`](super::SnapshotCell).
//!
//! * arc-swap (the default): wait-free loads that write only the loading
//!   thread's own debt slot, never a counter shared with other readers.
//! * `RwLock<Arc<T>>` (feature `snapshot-rwlock`, and always under loom): the
//!   safety net should arc-swap's open use-after-free report ever bite, and
//!   the reference the loom models explore — arc-swap's own atomics are not
//!   loom-aware, a shim lock is.
//!
//! Both give the same contract: a load is an `Arc` the reader keeps however
//! long it likes (the lock backend clones it out and unlocks at once, so a
//! thread holding a load guard can still `store` — no self-deadlock), and
//! `rcu` runs its closure outside any lock, retrying when another store won.

use std::sync::Arc;

#[cfg(not(any(loom, feature = "snapshot-rwlock")))]
mod imp {
    use std::sync::Arc;

    use arc_swap::ArcSwap;

    /// Which backend this build uses.
    pub(crate) const BACKEND: &str = "arc-swap";

    /// A pointer to the current `Arc<T>`.
    pub(crate) struct RawCell<T>(ArcSwap<T>);

    /// What a short read holds: an arc-swap guard (a debt slot, no refcount).
    pub(crate) type RawGuard<T> = arc_swap::Guard<Arc<T>>;

    impl<T> RawCell<T> {
        pub(crate) fn new(value: Arc<T>) -> Self {
            Self(ArcSwap::new(value))
        }

        #[inline]
        pub(crate) fn load(&self) -> RawGuard<T> {
            self.0.load()
        }

        #[inline]
        pub(crate) fn guard_arc(guard: &RawGuard<T>) -> &Arc<T> {
            guard
        }

        #[inline]
        pub(crate) fn guard_into_arc(guard: RawGuard<T>) -> Arc<T> {
            arc_swap::Guard::into_inner(guard)
        }

        #[inline]
        pub(crate) fn load_full(&self) -> Arc<T> {
            self.0.load_full()
        }

        pub(crate) fn swap(&self, value: Arc<T>) -> Arc<T> {
            self.0.swap(value)
        }

        /// Replaces `current` with `new` if it is still the current value
        /// (pointer identity). Returns the value that was current.
        pub(crate) fn compare_and_swap(&self, current: &Arc<T>, new: Arc<T>) -> Arc<T> {
            arc_swap::Guard::into_inner(self.0.compare_and_swap(current, new))
        }

        pub(crate) fn into_inner(self) -> Arc<T> {
            self.0.into_inner()
        }
    }
}

#[cfg(any(loom, feature = "snapshot-rwlock"))]
mod imp {
    use std::sync::Arc;

    use crate::loom::sync::RwLock;

    /// Which backend this build uses.
    pub(crate) const BACKEND: &str = "rwlock";

    /// The current `Arc<T>` behind a lock held only to copy the pointer.
    pub(crate) struct RawCell<T>(RwLock<Arc<T>>);

    /// What a short read holds: its own reference to the value.
    pub(crate) type RawGuard<T> = Arc<T>;

    impl<T> RawCell<T> {
        pub(crate) fn new(value: Arc<T>) -> Self {
            Self(RwLock::new(value))
        }

        #[inline]
        pub(crate) fn load(&self) -> RawGuard<T> {
            Arc::clone(&self.0.read())
        }

        #[inline]
        pub(crate) fn guard_arc(guard: &RawGuard<T>) -> &Arc<T> {
            guard
        }

        #[inline]
        pub(crate) fn guard_into_arc(guard: RawGuard<T>) -> Arc<T> {
            guard
        }

        #[inline]
        pub(crate) fn load_full(&self) -> Arc<T> {
            self.load()
        }

        pub(crate) fn swap(&self, value: Arc<T>) -> Arc<T> {
            // The old value goes back to the caller, which drops it (maybe
            // the last reference) after the lock is released.
            std::mem::replace(&mut *self.0.write(), value)
        }

        /// Replaces `current` with `new` if it is still the current value
        /// (pointer identity). Returns the value that was current.
        pub(crate) fn compare_and_swap(&self, current: &Arc<T>, new: Arc<T>) -> Arc<T> {
            let mut slot = self.0.write();
            if Arc::ptr_eq(&slot, current) {
                std::mem::replace(&mut *slot, new)
            } else {
                let actual = Arc::clone(&slot);
                drop(slot);
                // `new` is dropped here, outside the lock.
                actual
            }
        }

        pub(crate) fn into_inner(self) -> Arc<T> {
            self.0.into_inner()
        }
    }
}

pub(crate) use imp::{BACKEND, RawCell, RawGuard};

/// arc-swap's `rcu` loop on either backend: compute from the current value
/// with no lock held, publish if nobody published in between, else retry on
/// what they published. Returns the value replaced.
pub(crate) fn rcu<T, F>(cell: &RawCell<T>, mut f: F) -> Arc<T>
where
    F: FnMut(&Arc<T>) -> Arc<T>,
{
    let mut current = cell.load_full();
    loop {
        let new = f(&current);
        let previous = cell.compare_and_swap(&current, new);
        if Arc::ptr_eq(&previous, &current) {
            return previous;
        }
        current = previous;
    }
}
