//! The smallest, fastest lock: one byte, a CAS to lock, a store to unlock.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use crate::diag::{AcquireKind, ClassKey, ClassSlot, HeldToken, How};
use crate::loom::sync::atomic::{AtomicBool, Ordering};

/// Doubling rounds of busy-waiting (1, 2, 4 … 64 spins) before a waiter
/// starts yielding its time slice instead.
const SPIN_ROUNDS: u32 = 6;

/// The raw algorithm behind [`UnfairLock`]: a test-and-test-and-set spin lock.
///
/// Unlocking is a plain release store, with no read-modify-write and no
/// check for sleepers, which is where it beats parking_lot's mutex (a CAS to
/// lock plus an atomic subtract to unlock). The price: waiters never sleep in
/// the kernel; they spin with exponential backoff and then `yield_now` until
/// the byte is free, and a thread that unlocks and relocks at once usually
/// wins again (no fairness).
// Under loom only the model tests use it directly.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) struct RawUnfairLock {
    locked: AtomicBool,
}

#[cfg_attr(loom, allow(dead_code))]
impl RawUnfairLock {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
        }
    }

    // loom's atomics are not `const`-constructible.
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
        }
    }

    #[inline]
    pub(crate) fn acquire(&self) {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.acquire_contended();
        }
    }

    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// # Safety
    ///
    /// The caller must hold the lock (a successful `acquire`/`try_acquire`
    /// not yet released).
    #[inline]
    pub(crate) unsafe fn release(&self) {
        self.locked.store(false, Ordering::Release);
    }

    #[inline]
    pub(crate) fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }

    #[cold]
    #[inline(never)]
    fn acquire_contended(&self) {
        let mut round = 0;
        loop {
            // Wait on a plain load: failed CASes would keep stealing the cache
            // line from the holder and slow its unlock down.
            while self.locked.load(Ordering::Relaxed) {
                if round <= SPIN_ROUNDS {
                    for _ in 0..1u32 << round {
                        crate::loom::hint::spin_loop();
                    }
                    round += 1;
                } else {
                    // The holder may be descheduled (more threads than
                    // cores): give it our slice rather than burn it.
                    crate::loom::thread::yield_now();
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

// SAFETY: `lock`/`try_lock` succeed only by moving `locked` from false to true
// with a CAS, so at most one acquisition is outstanding (mutual exclusion);
// the CAS uses Acquire and `unlock` stores false with Release, so everything
// done under the lock happens-before the next acquisition. The guard state is
// a stateless `GuardNoSend`: forgetting it just leaks the lock (the byte stays
// true), which is safe, and moving or dropping the lock while locked touches
// nothing but the byte. No operation unwinds.
#[cfg(not(loom))]
unsafe impl lock_api::RawMutex for RawUnfairLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self::new();

    // Unlocking on another thread would be sound for this lock, but the guard
    // stays `!Send` like every strata guard so it is never held across an
    // `.await` by mistake.
    type Guard = lock_api::GuardNoSend;

    #[inline]
    fn lock(&self) -> Self::Guard {
        self.acquire();
        lock_api::GuardNoSend::new()
    }

    #[inline]
    fn try_lock(&self) -> Option<Self::Guard> {
        self.try_acquire().then(lock_api::GuardNoSend::new)
    }

    #[inline]
    unsafe fn unlock(&self, _guard: Self::Guard) {
        // SAFETY: lock_api hands us the guard of a live acquisition, so the
        // lock is held.
        unsafe { self.release() }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        RawUnfairLock::is_locked(self)
    }
}

// Under loom the raw lock is model-checked on its own (see `loom_tests`), and
// the public type sits on parking_lot because lock_api needs a `const` INIT,
// which loom's atomics cannot give.
#[cfg(not(loom))]
type Raw = RawUnfairLock;
#[cfg(loom)]
type Raw = parking_lot::RawMutex;

/// A one-byte lock for short critical sections: the fastest lock in strata
/// when uncontended, with no fairness at all.
///
/// Compared with [`Mutex`](super::Mutex): unlocking is a single store instead
/// of an atomic read-modify-write, so an uncontended lock/unlock costs about
/// half as much. Waiters never sleep: they spin, then yield their time slice
/// until the lock is free, and the thread that just unlocked often wins it
/// back. Use it for a few instructions of work (a counter, a small map
/// update); for anything that can block or take long, or where waiting
/// threads must make progress, use `Mutex`.
///
/// [`with_lock`](Self::with_lock) is the intended way to use it: the closure
/// makes the critical section visibly short.
///
/// ```
/// use std::sync::Arc;
/// use strata::sync::UnfairLock;
///
/// let hits = Arc::new(UnfairLock::new(0u64));
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| {
///             for _ in 0..1000 {
///                 hits.with_lock(|n| *n += 1);
///             }
///         });
///     }
/// });
/// assert_eq!(hits.with_lock(|n| *n), 4000);
/// ```
pub struct UnfairLock<T: ?Sized> {
    class: ClassSlot,
    inner: lock_api::Mutex<Raw, T>,
}

/// Proof that an [`UnfairLock`] is held; `!Send`, unlocks on drop.
///
/// ```
/// let lock = strata::sync::UnfairLock::new(1);
/// let mut guard = lock.lock();
/// *guard += 1;
/// assert_eq!(*guard, 2);
/// ```
#[must_use = "if unused the UnfairLock will immediately unlock"]
#[clippy::has_significant_drop]
pub struct UnfairLockGuard<'a, T: ?Sized> {
    // First, so the lock is released before the class is.
    inner: lock_api::MutexGuard<'a, Raw, T>,
    _held: HeldToken,
    _not_send: PhantomData<lock_api::GuardNoSend>,
}

impl<T> UnfairLock<T> {
    /// A new unlocked lock whose class is the caller's source location.
    ///
    /// ```
    /// use strata::sync::UnfairLock;
    ///
    /// static EVENTS: UnfairLock<u32> = UnfairLock::new(0);
    /// EVENTS.with_lock(|n| *n += 1);
    /// assert_eq!(EVENTS.with_lock(|n| *n), 1);
    /// ```
    #[track_caller]
    #[inline]
    pub const fn new(value: T) -> Self {
        Self {
            class: ClassSlot::site(),
            inner: lock_api::Mutex::new(value),
        }
    }

    /// A new unlocked lock in the class `name`.
    ///
    /// ```
    /// let stats = strata::sync::UnfairLock::named("stats", [0u32; 4]);
    /// stats.with_lock(|s| s[1] += 1);
    /// assert_eq!(stats.with_lock(|s| s[1]), 1);
    /// ```
    #[track_caller]
    #[inline]
    pub const fn named(name: &'static str, value: T) -> Self {
        Self {
            class: ClassSlot::named(name),
            inner: lock_api::Mutex::new(value),
        }
    }

    /// Consumes the lock and returns the data.
    ///
    /// ```
    /// let lock = strata::sync::UnfairLock::new(vec![1]);
    /// assert_eq!(lock.into_inner(), [1]);
    /// ```
    #[inline]
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> UnfairLock<T> {
    /// Runs `f` with the lock held and returns its result.
    ///
    /// The lock is released when `f` returns or unwinds.
    ///
    /// ```
    /// let lock = strata::sync::UnfairLock::new(Vec::new());
    /// let len = lock.with_lock(|v| {
    ///     v.push("a");
    ///     v.len()
    /// });
    /// assert_eq!(len, 1);
    /// ```
    #[track_caller]
    #[inline]
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock())
    }

    /// Runs `f` with the lock held if it is free right now; `None` otherwise.
    ///
    /// ```
    /// let lock = strata::sync::UnfairLock::new(1);
    /// assert_eq!(lock.try_with_lock(|n| *n), Some(1));
    /// let _held = lock.lock();
    /// assert_eq!(lock.try_with_lock(|n| *n), None);
    /// ```
    #[track_caller]
    #[inline]
    pub fn try_with_lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.try_lock().map(|mut guard| f(&mut guard))
    }

    /// Spins (then yields) until the lock is free, then takes it.
    ///
    /// ```
    /// let lock = strata::sync::UnfairLock::new(1);
    /// *lock.lock() += 1;
    /// assert_eq!(*lock.lock(), 2);
    /// ```
    #[track_caller]
    #[inline]
    pub fn lock(&self) -> UnfairLockGuard<'_, T> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Blocking);
        let inner = held.wait(|| self.inner.try_lock(), || self.inner.lock());
        UnfairLockGuard::new(inner, held)
    }

    /// Takes the lock if it is free right now.
    ///
    /// ```
    /// let lock = strata::sync::UnfairLock::new(());
    /// let held = lock.try_lock();
    /// assert!(held.is_some());
    /// assert!(lock.try_lock().is_none());
    /// ```
    #[track_caller]
    #[inline]
    pub fn try_lock(&self) -> Option<UnfairLockGuard<'_, T>> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Try);
        self.inner.try_lock().map(|g| UnfairLockGuard::new(g, held))
    }

    /// Mutable access without locking: `&mut self` already proves exclusivity.
    ///
    /// ```
    /// let mut lock = strata::sync::UnfairLock::new(1);
    /// *lock.get_mut() = 3;
    /// assert_eq!(lock.with_lock(|n| *n), 3);
    /// ```
    #[inline]
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    /// Whether some thread holds the lock; a snapshot.
    ///
    /// ```
    /// let lock = strata::sync::UnfairLock::new(());
    /// let held = lock.lock();
    /// assert!(lock.is_locked());
    /// drop(held);
    /// assert!(!lock.is_locked());
    /// ```
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// The lock class, or `None` when checking is compiled out.
    ///
    /// ```
    /// let lock = strata::sync::UnfairLock::named("stats", ());
    /// if let Some(class) = lock.class() {
    ///     assert_eq!(class.name(), Some("stats"));
    /// }
    /// ```
    #[inline]
    pub fn class(&self) -> Option<ClassKey> {
        self.class.key()
    }
}

impl<T: Default> Default for UnfairLock<T> {
    /// A lock holding `T::default()`, classed at the caller.
    ///
    /// ```
    /// let lock: strata::sync::UnfairLock<u8> = Default::default();
    /// assert_eq!(lock.with_lock(|n| *n), 0);
    /// ```
    #[track_caller]
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> From<T> for UnfairLock<T> {
    /// A lock holding `value`, classed at the caller.
    ///
    /// ```
    /// let lock = strata::sync::UnfairLock::from(2);
    /// assert_eq!(lock.with_lock(|n| *n), 2);
    /// ```
    #[track_caller]
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for UnfairLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("UnfairLock");
        d.field("class", &self.class);
        match self.inner.try_lock() {
            Some(data) => d.field("data", &&*data),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

impl<'a, T: ?Sized> UnfairLockGuard<'a, T> {
    #[inline]
    fn new(inner: lock_api::MutexGuard<'a, Raw, T>, held: HeldToken) -> Self {
        Self {
            inner,
            _held: held,
            _not_send: PhantomData,
        }
    }
}

impl<T: ?Sized> Deref for UnfairLockGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: ?Sized> DerefMut for UnfairLockGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for UnfairLockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for UnfairLockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn one_byte_plus_data() {
        use std::mem::size_of;
        assert_eq!(size_of::<RawUnfairLock>(), 1);
        #[cfg(not(strata_checked))]
        assert_eq!(size_of::<UnfairLock<u8>>(), 2);
    }

    #[test]
    fn guard_is_not_send() {
        trait AmbiguousIfSend<A> {
            fn check() {}
        }
        impl<T: ?Sized> AmbiguousIfSend<()> for T {}
        impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}
        <UnfairLockGuard<'static, u32> as AmbiguousIfSend<_>>::check();
    }

    #[test]
    fn released_on_unwind() {
        let lock = UnfairLock::new(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lock.with_lock(|n| {
                *n = 1;
                panic!("boom");
            })
        }));
        assert!(r.is_err());
        assert!(!lock.is_locked());
        assert_eq!(lock.with_lock(|n| *n), 1);
    }

    #[test]
    fn contended_waiters_get_through() {
        // Enough threads to oversubscribe two cores, so waiters reach the
        // yielding phase.
        let lock = UnfairLock::new(0u64);
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    for _ in 0..2_000 {
                        lock.with_lock(|n| *n += 1);
                    }
                });
            }
        });
        assert_eq!(lock.into_inner(), 12_000);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::RawUnfairLock;
    use crate::loom::cell::UnsafeCell;
    use crate::loom::sync::Arc;

    struct Shared {
        lock: RawUnfairLock,
        counter: UnsafeCell<u32>,
    }

    // SAFETY: `counter` is only touched while `lock` is held.
    unsafe impl Sync for Shared {}

    fn increment(shared: &Shared) {
        shared.lock.acquire();
        // loom's UnsafeCell flags any overlapping access, so a broken lock
        // fails here rather than only in the final count.
        // SAFETY: the lock is held, so no other access to the counter exists.
        shared.counter.with_mut(|n| unsafe { *n += 1 });
        // SAFETY: acquired just above.
        unsafe { shared.lock.release() };
    }

    #[test]
    fn loom_unfair_mutual_exclusion() {
        loom::model(|| {
            let shared = Arc::new(Shared {
                lock: RawUnfairLock::new(),
                counter: UnsafeCell::new(0),
            });
            let other = {
                let shared = Arc::clone(&shared);
                loom::thread::spawn(move || increment(&shared))
            };
            increment(&shared);
            other.join().unwrap();
            // SAFETY: the other thread is joined; nobody else holds the cell.
            let total = shared.counter.with(|n| unsafe { *n });
            assert_eq!(total, 2);
        });
    }

    #[test]
    fn loom_unfair_try_acquire_excludes() {
        loom::model(|| {
            let shared = Arc::new(Shared {
                lock: RawUnfairLock::new(),
                counter: UnsafeCell::new(0),
            });
            let other = {
                let shared = Arc::clone(&shared);
                loom::thread::spawn(move || {
                    if shared.lock.try_acquire() {
                        // SAFETY: held.
                        shared.counter.with_mut(|n| unsafe { *n += 1 });
                        // SAFETY: acquired just above.
                        unsafe { shared.lock.release() };
                        1
                    } else {
                        0
                    }
                })
            };
            increment(&shared);
            let theirs = other.join().unwrap();
            // SAFETY: joined.
            let total = shared.counter.with(|n| unsafe { *n });
            assert_eq!(total, 1 + theirs);
        });
    }
}
