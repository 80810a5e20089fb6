//! A blocking mutex: parking_lot's, plus a lock class.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crate::diag::{AcquireKind, ClassKey, ClassSlot, HeldToken, How};

/// A mutual-exclusion lock protecting a `T`, with no poisoning.
///
/// It is parking_lot's `Mutex` (word-sized, eventually fair, adaptive
/// spinning then parking) plus a lock **class** for the order checker of
/// [`crate::diag`]. With checking off the class is zero-sized, so this type
/// has parking_lot's size and its uncontended path is parking_lot's.
///
/// A panic while the lock is held does not poison it: the next `lock` simply
/// succeeds, and the data is whatever the panicking thread left behind.
///
/// ```
/// use std::sync::Arc;
/// use std::thread;
/// use strata::sync::Mutex;
///
/// let hits = Arc::new(Mutex::new(0));
/// let workers: Vec<_> = (0..4)
///     .map(|_| {
///         let hits = Arc::clone(&hits);
///         thread::spawn(move || *hits.lock() += 1)
///     })
///     .collect();
/// for w in workers {
///     w.join().unwrap();
/// }
/// assert_eq!(*hits.lock(), 4);
/// ```
///
/// # Lock order: the AB/BA deadlock
///
/// Two threads that take the same two locks in opposite orders can each end
/// up holding one and waiting forever for the other. This is the classic bank
/// transfer bug: the order depends on the data.
///
/// ```no_run
/// use strata::sync::Mutex;
///
/// fn transfer(from: &Mutex<i64>, to: &Mutex<i64>, amount: i64) {
///     let mut from = from.lock(); // thread 1 holds A here ...
///     let mut to = to.lock(); //     ... and waits for B, which thread 2 holds
///     *from -= amount;
///     *to += amount;
/// }
///
/// let (a, b) = (Mutex::new(100), Mutex::new(100));
/// std::thread::scope(|s| {
///     s.spawn(|| transfer(&a, &b, 1)); // locks A then B
///     s.spawn(|| transfer(&b, &a, 1)); // locks B then A: may deadlock
/// });
/// ```
///
/// With checking on, [`crate::diag`] reports this inversion the first time
/// both orders have run, even if they never overlapped. The cure is to take
/// both locks in one global order, which [`lock_two`](super::lock_two) does
/// (by address) while handing the guards back in the order you asked for:
///
/// ```
/// use strata::sync::{Mutex, lock_two};
///
/// fn transfer(from: &Mutex<i64>, to: &Mutex<i64>, amount: i64) {
///     let (mut from, mut to) = lock_two(from, to).expect("two different accounts");
///     *from -= amount;
///     *to += amount;
/// }
///
/// let (a, b) = (Mutex::new(100), Mutex::new(100));
/// std::thread::scope(|s| {
///     s.spawn(|| transfer(&a, &b, 1));
///     s.spawn(|| transfer(&b, &a, 1));
/// });
/// assert_eq!(*a.lock() + *b.lock(), 200);
/// ```
pub struct Mutex<T: ?Sized> {
    class: ClassSlot,
    inner: parking_lot::Mutex<T>,
}

/// Proof that a [`Mutex`] is held; unlocks it on drop and derefs to the data.
///
/// The guard is `!Send`: it must be dropped on the thread that locked, and
/// holding it across an `.await` is rejected (the future would not be `Send`,
/// and clippy's `await_holding_lock` flags it).
///
/// ```
/// use strata::sync::Mutex;
///
/// let m = Mutex::new(vec![1, 2]);
/// let mut guard = m.lock();
/// guard.push(3);
/// assert_eq!(*guard, [1, 2, 3]);
/// ```
///
/// A future that holds the guard across an `.await` is not `Send`, so
/// multi-threaded runtimes refuse to spawn it:
///
/// ```compile_fail
/// fn spawnable<F: std::future::Future + Send>(_: F) {}
///
/// let m = strata::sync::Mutex::new(0);
/// spawnable(async {
///     let mut guard = m.lock();
///     std::future::ready(()).await; // another task could now block on `m`
///     *guard += 1;
/// });
/// ```
#[must_use = "if unused the Mutex will immediately unlock"]
#[clippy::has_significant_drop]
pub struct MutexGuard<'a, T: ?Sized> {
    // Declared first so it drops first: the lock is released before the class
    // is marked released, so the checker never sees a released class whose
    // lock is still held.
    pub(super) inner: parking_lot::MutexGuard<'a, T>,
    _held: HeldToken,
    // parking_lot's guards are `!Send` only while nobody in the build enables
    // its `send_guard` feature; this keeps ours `!Send` regardless.
    _not_send: PhantomData<lock_api::GuardNoSend>,
}

impl<T> Mutex<T> {
    /// A new unlocked mutex whose class is the caller's source location.
    ///
    /// `const`, so it can initialise a `static`.
    ///
    /// ```
    /// use strata::sync::Mutex;
    ///
    /// static NEXT_ID: Mutex<u64> = Mutex::new(1);
    /// let id = {
    ///     let mut next = NEXT_ID.lock();
    ///     *next += 1;
    ///     *next - 1
    /// };
    /// assert_eq!(id, 1);
    /// ```
    #[track_caller]
    #[inline]
    pub const fn new(value: T) -> Self {
        Self {
            class: ClassSlot::site(),
            inner: parking_lot::Mutex::new(value),
        }
    }

    /// A new unlocked mutex in the class `name`.
    ///
    /// Every mutex built with the same name is one class for order checking,
    /// wherever it is constructed; reports show the name.
    ///
    /// ```
    /// use strata::sync::Mutex;
    ///
    /// let m = Mutex::named("inventory", 3);
    /// assert_eq!(*m.lock(), 3);
    /// ```
    #[track_caller]
    #[inline]
    pub const fn named(name: &'static str, value: T) -> Self {
        Self {
            class: ClassSlot::named(name),
            inner: parking_lot::Mutex::new(value),
        }
    }

    /// Consumes the mutex and returns the data; no locking needed.
    ///
    /// ```
    /// let m = strata::sync::Mutex::new(String::from("done"));
    /// assert_eq!(m.into_inner(), "done");
    /// ```
    #[inline]
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Blocks until the lock is free, then takes it.
    ///
    /// Locking a mutex the current thread already holds deadlocks (with
    /// checking on, it is reported first).
    ///
    /// ```
    /// let m = strata::sync::Mutex::new(1);
    /// *m.lock() += 1;
    /// assert_eq!(*m.lock(), 2);
    /// ```
    #[track_caller]
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        // The class hook runs before blocking so a would-be deadlock is
        // reported instead of hung on.
        let held = self.class.enter(AcquireKind::Exclusive, How::Blocking);
        let inner = held.wait(|| self.inner.try_lock(), || self.inner.lock());
        MutexGuard::new(inner, held)
    }

    /// Like [`lock`](Self::lock), for taking a second mutex of the **same
    /// class** on purpose (parent then child, say).
    ///
    /// `subclass` tells the order checker which nesting level this is, as
    /// lockdep's `mutex_lock_nested` does; locks at different subclasses of
    /// one class may nest.
    ///
    /// ```
    /// use strata::sync::Mutex;
    ///
    /// struct Node {
    ///     value: u32,
    /// }
    /// let nodes: Vec<Mutex<Node>> = (0..2).map(|v| Mutex::new(Node { value: v })).collect();
    /// let parent = nodes[0].lock();
    /// let child = nodes[1].lock_nested(1);
    /// assert_eq!(parent.value + child.value, 1);
    /// ```
    #[track_caller]
    #[inline]
    pub fn lock_nested(&self, subclass: u32) -> MutexGuard<'_, T> {
        let held = self
            .class
            .enter(AcquireKind::Exclusive, How::Nested(subclass));
        let inner = held.wait(|| self.inner.try_lock(), || self.inner.lock());
        MutexGuard::new(inner, held)
    }

    /// `lock` for [`lock_two`](super::lock_two) / [`lock_all`](super::lock_all):
    /// they take same-class instances in address order, which the order
    /// checker must not report as a self-deadlock.
    #[track_caller]
    #[inline]
    pub(crate) fn lock_ordered(&self) -> MutexGuard<'_, T> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Ordered);
        let inner = held.wait(|| self.inner.try_lock(), || self.inner.lock());
        MutexGuard::new(inner, held)
    }

    /// Takes the lock if it is free right now.
    ///
    /// ```
    /// let m = strata::sync::Mutex::new(0);
    /// let held = m.lock();
    /// assert!(m.try_lock().is_none());
    /// drop(held);
    /// assert!(m.try_lock().is_some());
    /// ```
    #[track_caller]
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        // A try cannot deadlock, so it records order but never reports.
        let held = self.class.enter(AcquireKind::Exclusive, How::Try);
        self.inner.try_lock().map(|g| MutexGuard::new(g, held))
    }

    /// Waits at most `timeout` for the lock.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let m = strata::sync::Mutex::new(0);
    /// let held = m.lock();
    /// assert!(m.try_lock_for(Duration::from_millis(1)).is_none());
    /// drop(held);
    /// assert!(m.try_lock_for(Duration::from_millis(1)).is_some());
    /// ```
    #[track_caller]
    #[inline]
    pub fn try_lock_for(&self, timeout: Duration) -> Option<MutexGuard<'_, T>> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Try);
        held.wait(
            || self.inner.try_lock().map(Some),
            || self.inner.try_lock_for(timeout),
        )
        .map(|g| MutexGuard::new(g, held))
    }

    /// Waits until `deadline` at the latest for the lock.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let m = strata::sync::Mutex::new(0);
    /// let deadline = Instant::now() + Duration::from_millis(5);
    /// assert!(m.try_lock_until(deadline).is_some());
    /// ```
    #[track_caller]
    #[inline]
    pub fn try_lock_until(&self, deadline: Instant) -> Option<MutexGuard<'_, T>> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Try);
        held.wait(
            || self.inner.try_lock().map(Some),
            || self.inner.try_lock_until(deadline),
        )
        .map(|g| MutexGuard::new(g, held))
    }

    /// Mutable access without locking: `&mut self` already proves exclusivity.
    ///
    /// ```
    /// let mut m = strata::sync::Mutex::new(1);
    /// *m.get_mut() = 5;
    /// assert_eq!(*m.lock(), 5);
    /// ```
    #[inline]
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    /// Whether some thread holds the lock; a snapshot that may be stale at once.
    ///
    /// ```
    /// let m = strata::sync::Mutex::new(());
    /// let held = m.lock();
    /// assert!(m.is_locked());
    /// drop(held);
    /// assert!(!m.is_locked());
    /// ```
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// The lock class, or `None` when checking is compiled out.
    ///
    /// ```
    /// let m = strata::sync::Mutex::named("queue", ());
    /// match m.class() {
    ///     Some(class) => assert_eq!(class.name(), Some("queue")),
    ///     None => assert!(!strata::diag::checking_enabled()),
    /// }
    /// ```
    #[inline]
    pub fn class(&self) -> Option<ClassKey> {
        self.class.key()
    }
}

impl<T: Default> Default for Mutex<T> {
    /// A mutex holding `T::default()`, classed at the caller.
    ///
    /// ```
    /// let m: strata::sync::Mutex<Vec<u8>> = Default::default();
    /// assert!(m.lock().is_empty());
    /// ```
    #[track_caller]
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    /// A mutex holding `value`, classed at the caller.
    ///
    /// ```
    /// let m = strata::sync::Mutex::from(7);
    /// assert_eq!(*m.lock(), 7);
    /// ```
    #[track_caller]
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        d.field("class", &self.class);
        // Debug must never block: show a placeholder if someone holds it.
        match self.inner.try_lock() {
            Some(data) => d.field("data", &&*data),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    #[inline]
    fn new(inner: parking_lot::MutexGuard<'a, T>, held: HeldToken) -> Self {
        Self {
            inner,
            _held: held,
            _not_send: PhantomData,
        }
    }

    /// Unlocks the mutex while `f` runs, then locks it again.
    ///
    /// For doing slow work (I/O, a callback) without starving other threads,
    /// when the guard must survive the gap.
    ///
    /// ```
    /// use strata::sync::{Mutex, MutexGuard};
    ///
    /// let m = Mutex::new(0);
    /// let mut guard = m.lock();
    /// *guard += 1;
    /// let seen_by_other = MutexGuard::unlocked(&mut guard, || {
    ///     std::thread::scope(|s| s.spawn(|| *m.lock()).join().unwrap())
    /// });
    /// assert_eq!(seen_by_other, 1);
    /// *guard += 1;
    /// drop(guard);
    /// assert_eq!(*m.lock(), 2);
    /// ```
    #[track_caller]
    #[inline]
    pub fn unlocked<U>(s: &mut Self, f: impl FnOnce() -> U) -> U {
        // The class is not held while `f` runs (so `f` may lock it again),
        // and taking it back is checked like any blocking lock.
        s.released_raw(|inner| parking_lot::MutexGuard::unlocked(inner, f))
    }

    /// Stops holding the class while `f` runs on the raw guard (which
    /// gives the lock up, as a condvar wait does), then takes the class back
    /// through the order check.
    #[inline]
    pub(super) fn released_raw<U>(
        &mut self,
        f: impl FnOnce(&mut parking_lot::MutexGuard<'a, T>) -> U,
    ) -> U {
        let inner = &mut self.inner;
        self._held.released(|| f(inner))
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(strata_checked))]
    fn same_size_as_parking_lot_when_unchecked() {
        use std::mem::size_of;
        assert_eq!(
            size_of::<Mutex<u64>>(),
            size_of::<parking_lot::Mutex<u64>>()
        );
        assert_eq!(size_of::<Mutex<()>>(), size_of::<parking_lot::Mutex<()>>());
        assert_eq!(
            size_of::<MutexGuard<'_, u64>>(),
            size_of::<parking_lot::MutexGuard<'_, u64>>()
        );
    }

    #[test]
    fn guard_is_not_send() {
        // Ambiguity trick (static_assertions' `assert_not_impl_any`): the call
        // below only resolves if exactly one impl applies, i.e. if the guard
        // is *not* Send.
        trait AmbiguousIfSend<A> {
            fn check() {}
        }
        impl<T: ?Sized> AmbiguousIfSend<()> for T {}
        impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}
        <MutexGuard<'static, u32> as AmbiguousIfSend<_>>::check();
    }

    #[test]
    fn unsized_data() {
        let m: &Mutex<[u8]> = &Mutex::new([1u8, 2, 3]);
        m.lock()[0] = 9;
        assert_eq!(&*m.lock(), &[9, 2, 3]);
    }

    #[test]
    fn debug_does_not_block_when_locked() {
        let m = Mutex::new(5);
        assert!(format!("{m:?}").contains('5'));
        let _held = m.lock();
        assert!(format!("{m:?}").contains("<locked>"));
    }

    #[test]
    fn class_follows_build_mode() {
        let m = Mutex::named("n", 0);
        assert_eq!(m.class().is_some(), crate::diag::checking_enabled());
        if let Some(class) = m.class() {
            assert_eq!(class.name(), Some("n"));
            assert_eq!(class.location().file(), file!());
        }
    }
}
