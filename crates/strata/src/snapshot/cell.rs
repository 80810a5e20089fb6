//! `SnapshotCell`: a shared value that readers load without waiting and
//! writers replace whole.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use super::raw::{self, RawCell, RawGuard};

/// A value shared by many readers and replaced whole by writers: the
/// read-mostly pointer of configuration, routing tables and indexes.
///
/// Readers never wait: [`load`](Self::load) is wait-free on the default
/// arc-swap backend and writes only the loading thread's own slot, never a
/// counter shared with other readers, so readers on many cores do not slow
/// each other down. A reader sees one whole value — the one current when it
/// loaded — however many stores happen while it reads. Writers
/// ([`store`](Self::store), [`swap`](Self::swap), [`rcu`](Self::rcu)) never
/// wait for readers either; an old value is freed when its last reader lets
/// go of it.
///
/// Two reads: [`load`](Self::load) gives a cheap guard for short reads on
/// this thread; [`snapshot`](Self::snapshot) gives an owned `Arc<T>` to keep,
/// send to another thread or hold across `.await`.
///
/// The feature `snapshot-rwlock` swaps the storage for an `RwLock<Arc<T>>`
/// held only to copy the pointer (see [`SnapshotCell::BACKEND`]): same API,
/// same semantics, no arc-swap.
///
/// ```
/// use strata::snapshot::SnapshotCell;
///
/// let routes = SnapshotCell::new(vec!["a", "b"]);
/// let before = routes.load();
/// routes.store(vec!["a", "b", "c"]);
/// assert_eq!(before.len(), 2); // an old reader keeps its whole value
/// assert_eq!(routes.load().len(), 3);
/// ```
pub struct SnapshotCell<T> {
    raw: RawCell<T>,
}

impl<T> SnapshotCell<T> {
    /// The storage this build uses: `"arc-swap"`, or `"rwlock"` with the
    /// `snapshot-rwlock` feature.
    ///
    /// ```
    /// let backend = strata::snapshot::SnapshotCell::<u8>::BACKEND;
    /// assert!(backend == "arc-swap" || backend == "rwlock");
    /// ```
    pub const BACKEND: &'static str = raw::BACKEND;

    /// A cell holding `value`.
    ///
    /// ```
    /// let cell = strata::snapshot::SnapshotCell::new(1);
    /// assert_eq!(*cell.load(), 1);
    /// ```
    pub fn new(value: T) -> Self {
        Self::from_arc(Arc::new(value))
    }

    /// A cell holding an existing `Arc`, shared with whoever else holds it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let shared = Arc::new(String::from("v1"));
    /// let cell = strata::snapshot::SnapshotCell::from_arc(Arc::clone(&shared));
    /// assert!(Arc::ptr_eq(&cell.snapshot(), &shared));
    /// ```
    pub fn from_arc(value: Arc<T>) -> Self {
        Self {
            raw: RawCell::new(value),
        }
    }

    /// The current value, for a short read on this thread. Wait-free.
    ///
    /// The guard keeps the value it loaded alive and unchanged whatever
    /// writers do meanwhile. It is meant to be dropped soon: each thread has
    /// a few cheap guard slots and further guards held at once take a
    /// slower path. It is `!Send`, so it cannot be held across an `.await`
    /// in a spawned task — use [`snapshot`](Self::snapshot) there.
    ///
    /// ```
    /// let cell = strata::snapshot::SnapshotCell::new((1, 2));
    /// let pair = cell.load();
    /// assert_eq!(pair.0 + pair.1, 3);
    /// ```
    #[inline]
    pub fn load(&self) -> SnapshotGuard<'_, T> {
        SnapshotGuard {
            inner: self.raw.load(),
            _cell: PhantomData,
        }
    }

    /// The current value as an owned `Arc`: keep it as long as needed, send
    /// it to another thread, hold it across `.await`.
    ///
    /// Costs a reference-count increment on the value (a shared counter),
    /// which `load` avoids.
    ///
    /// ```
    /// let cell = strata::snapshot::SnapshotCell::new(5);
    /// let owned = cell.snapshot();
    /// std::thread::spawn(move || assert_eq!(*owned, 5)).join().unwrap();
    /// ```
    #[inline]
    pub fn snapshot(&self) -> std::sync::Arc<T> {
        self.raw.load_full()
    }

    /// Replaces the value. Readers that loaded the old one keep it; later
    /// loads see the new one.
    ///
    /// ```
    /// let cell = strata::snapshot::SnapshotCell::new(1);
    /// cell.store(2);
    /// cell.store(std::sync::Arc::new(3)); // an Arc is stored as is
    /// assert_eq!(*cell.load(), 3);
    /// ```
    pub fn store(&self, value: impl Into<Arc<T>>) {
        drop(self.swap(value));
    }

    /// Replaces the value and returns the one it replaced.
    ///
    /// ```
    /// let cell = strata::snapshot::SnapshotCell::new("old");
    /// assert_eq!(*cell.swap("new"), "old");
    /// assert_eq!(*cell.load(), "new");
    /// ```
    pub fn swap(&self, value: impl Into<Arc<T>>) -> Arc<T> {
        self.raw.swap(value.into())
    }

    /// Read-copy-update: replaces the value with `f(current)`, atomically
    /// with respect to other writers, and returns the value it replaced.
    ///
    /// `f` runs with no lock held. If another writer publishes while `f`
    /// runs, `f` runs again on that writer's value, so no update is lost —
    /// and `f` may run more than once: keep it free of side effects. Under
    /// heavy write contention this retries; a store serialized by its own
    /// writer lock ([`Versioned`](super::Versioned)) does not.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let counter = Arc::new(strata::snapshot::SnapshotCell::new(0u64));
    /// let threads: Vec<_> = (0..4)
    ///     .map(|_| {
    ///         let counter = Arc::clone(&counter);
    ///         std::thread::spawn(move || {
    ///             for _ in 0..100 {
    ///                 counter.rcu(|n| n + 1);
    ///             }
    ///         })
    ///     })
    ///     .collect();
    /// threads.into_iter().for_each(|t| t.join().unwrap());
    /// assert_eq!(*counter.load(), 400);
    /// ```
    pub fn rcu<R, F>(&self, mut f: F) -> Arc<T>
    where
        F: FnMut(&T) -> R,
        R: Into<Arc<T>>,
    {
        raw::rcu(&self.raw, |current| f(current).into())
    }

    /// The current value, consuming the cell.
    ///
    /// ```
    /// let cell = strata::snapshot::SnapshotCell::new(vec![1]);
    /// assert_eq!(*cell.into_inner(), vec![1]);
    /// ```
    pub fn into_inner(self) -> Arc<T> {
        self.raw.into_inner()
    }
}

impl<T: Default> Default for SnapshotCell<T> {
    /// A cell holding `T::default()`.
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> From<T> for SnapshotCell<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T> From<Arc<T>> for SnapshotCell<T> {
    fn from(value: Arc<T>) -> Self {
        Self::from_arc(value)
    }
}

impl<T: fmt::Debug> fmt::Debug for SnapshotCell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotCell")
            .field("value", &&*self.load())
            .finish()
    }
}

/// A value loaded from a [`SnapshotCell`], for a short read on the loading
/// thread. Derefs to the value; it stays valid and unchanged whatever
/// writers do.
///
/// `!Send` on purpose (see [`SnapshotCell::load`]); turn it into an owned
/// `Arc` with [`SnapshotGuard::into_arc`] to keep it.
///
/// ```
/// let cell = strata::snapshot::SnapshotCell::new(String::from("x"));
/// let guard = cell.load();
/// assert_eq!(guard.as_str(), "x");
/// ```
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// let cell = strata::snapshot::SnapshotCell::new(1);
/// send(cell.load()); // a guard stays on its thread; use `snapshot()`
/// ```
pub struct SnapshotGuard<'a, T> {
    inner: RawGuard<T>,
    /// Ties the guard to the cell's borrow and makes it `!Send`.
    _cell: PhantomData<(&'a SnapshotCell<T>, *const ())>,
}

impl<T> SnapshotGuard<'_, T> {
    /// The loaded value as an owned `Arc` (no copy of the value).
    ///
    /// ```
    /// use strata::snapshot::{SnapshotCell, SnapshotGuard};
    /// let cell = SnapshotCell::new(7);
    /// let owned = SnapshotGuard::into_arc(cell.load());
    /// assert_eq!(*owned, 7);
    /// ```
    pub fn into_arc(this: Self) -> Arc<T> {
        RawCell::guard_into_arc(this.inner)
    }

    /// Whether two guards (or a guard and a snapshot) hold the very same
    /// published value, not merely equal ones.
    ///
    /// ```
    /// use strata::snapshot::{SnapshotCell, SnapshotGuard};
    /// let cell = SnapshotCell::new(1);
    /// let a = cell.load();
    /// assert!(SnapshotGuard::ptr_eq(&a, &cell.snapshot()));
    /// cell.store(1);
    /// assert!(!SnapshotGuard::ptr_eq(&a, &cell.snapshot()));
    /// ```
    pub fn ptr_eq(this: &Self, other: &Arc<T>) -> bool {
        Arc::ptr_eq(RawCell::guard_arc(&this.inner), other)
    }
}

impl<T> Deref for SnapshotGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        RawCell::guard_arc(&self.inner)
    }
}

impl<T: fmt::Debug> fmt::Debug for SnapshotGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: fmt::Display> fmt::Display for SnapshotGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn guard_into_arc_and_ptr_eq_refer_to_the_published_value() {
        let cell = SnapshotCell::new(3);
        let snap = cell.snapshot();
        let guard = cell.load();
        assert!(SnapshotGuard::ptr_eq(&guard, &snap));
        let owned = SnapshotGuard::into_arc(guard);
        assert!(Arc::ptr_eq(&owned, &snap));
    }

    #[test]
    fn rcu_returns_the_replaced_value_and_retries_on_a_lost_race() {
        let cell = SnapshotCell::new(1);
        let mut runs = 0;
        let prev = cell.rcu(|n| {
            runs += 1;
            if runs == 1 {
                // Another writer wins the race while `f` runs.
                cell.store(10);
            }
            n + 1
        });
        assert_eq!(runs, 2, "f runs again on the winner's value");
        assert_eq!((*prev, *cell.load()), (10, 11));
    }

    #[test]
    fn debug_shows_the_value() {
        let cell = SnapshotCell::new("x");
        assert_eq!(format!("{cell:?}"), r#"SnapshotCell { value: "x" }"#);
        assert_eq!(format!("{:?}", cell.load()), r#""x""#);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    #[test]
    fn loom_rcu_from_two_threads_loses_no_update() {
        loom::model(|| {
            let cell = loom::sync::Arc::new(SnapshotCell::new(0u32));
            let other = {
                let cell = cell.clone();
                thread::spawn(move || {
                    cell.rcu(|n| n + 1);
                })
            };
            cell.rcu(|n| n + 1);
            other.join().unwrap();
            assert_eq!(*cell.load(), 2);
        });
    }

    #[test]
    fn loom_a_load_sees_one_whole_stored_value() {
        loom::model(|| {
            let cell = loom::sync::Arc::new(SnapshotCell::new((0u32, 0u32)));
            let writer = {
                let cell = cell.clone();
                thread::spawn(move || {
                    cell.store((1, 1));
                    cell.store((2, 2));
                })
            };
            let a = cell.load();
            let b = cell.snapshot();
            assert_eq!(a.0, a.1);
            assert_eq!(b.0, b.1);
            assert!(b.0 >= a.0, "a later load went back");
            drop(a);
            writer.join().unwrap();
            assert_eq!(*cell.load(), (2, 2));
        });
    }
}
