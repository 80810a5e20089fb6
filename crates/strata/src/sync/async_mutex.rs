//! `AsyncMutex`: a FIFO-fair, cancel-safe, runtime-agnostic async mutex.

use std::cell::UnsafeCell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use crate::diag::{AcquireKind, ClassKey, ClassSlot, HeldToken, How};
use crate::sync::raw_semaphore::{Mode, RawSemaphore, loom_const_fn};
use crate::sync::timeout::{Deadline, deadline_after};
use crate::sync::{LockTimeout, WouldBlock};

/// An async mutex: a semaphore with one permit around a value.
///
/// * **Fair:** waiters get the lock in the order they started waiting; a new
///   `lock()` never overtakes a queued one.
/// * **Cancel-safe:** dropping a pending `lock()` future (in a `select!`, a
///   timeout, an aborted task) leaves the mutex as if it never ran.
/// * **Runtime-agnostic:** built on wakers only; works under tokio, smol,
///   `futures::executor` and strata's own executor.
/// * **Cheap when uncontended:** `lock().await` is one compare-and-swap in
///   the first poll, with no allocation and no stored waker.
///
/// Unlike the blocking [`Mutex`](super::Mutex), its guards are `Send` (when
/// `T: Send`) and may be held across `.await`: that is what this lock is for.
/// Prefer the blocking mutex for short critical sections with no `.await`.
///
/// **Deadlock to avoid:** awaiting `lock()` on a mutex the same task already
/// holds waits forever (the mutex is not reentrant); so does locking two
/// async mutexes in opposite orders in two tasks.
///
/// ```
/// # futures::executor::block_on(async {
/// use strata::sync::AsyncMutex;
///
/// let m = AsyncMutex::new(vec![1]);
/// m.lock().await.push(2);
/// assert_eq!(*m.lock().await, [1, 2]);
/// # });
/// ```
pub struct AsyncMutex<T: ?Sized> {
    sem: RawSemaphore,
    class: ClassSlot,
    // Not the loom cell: the value is not what loom models (the semaphore
    // is), and guards hand out `&T` for their whole lifetime.
    data: UnsafeCell<T>,
}

// SAFETY: the mutex hands out access to `T` to one holder at a time (the
// single semaphore permit), possibly on another thread, so `T: Send` is what
// sharing the mutex needs — exactly as for `std::sync::Mutex`.
unsafe impl<T: ?Sized + Send> Sync for AsyncMutex<T> {}

impl<T> AsyncMutex<T> {
    loom_const_fn! {
        /// A mutex around `value`, whose lock class is the caller's source
        /// location.
        ///
        /// ```
        /// static HITS: strata::sync::AsyncMutex<u64> = strata::sync::AsyncMutex::new(0);
        /// assert_eq!(*HITS.try_lock().unwrap(), 0);
        /// ```
        #[track_caller]
        pub fn new(value: T) -> Self {
            Self {
                sem: RawSemaphore::new(1),
                class: ClassSlot::site(),
                data: UnsafeCell::new(value),
            }
        }
    }

    loom_const_fn! {
        /// A mutex around `value` in the lock class `name`.
        ///
        /// ```
        /// let m = strata::sync::AsyncMutex::named("sessions", 0u32);
        /// if let Some(class) = m.class() {
        ///     assert_eq!(class.name(), Some("sessions"));
        /// }
        /// ```
        #[track_caller]
        pub fn named(name: &'static str, value: T) -> Self {
            Self {
                sem: RawSemaphore::new(1),
                class: ClassSlot::named(name),
                data: UnsafeCell::new(value),
            }
        }
    }

    /// Consumes the mutex and returns the value; no locking needed.
    ///
    /// ```
    /// let m = strata::sync::AsyncMutex::new(5);
    /// assert_eq!(m.into_inner(), 5);
    /// ```
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> AsyncMutex<T> {
    /// The lock class, when order checking is compiled in.
    ///
    /// ```
    /// let m = strata::sync::AsyncMutex::new(());
    /// assert_eq!(m.class().is_some(), strata::diag::checking_enabled());
    /// ```
    pub fn class(&self) -> Option<ClassKey> {
        self.class.key()
    }

    /// Waits for the lock, first come first served. Cancel-safe.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let m = strata::sync::AsyncMutex::new(1);
    /// *m.lock().await += 1;
    /// assert_eq!(*m.lock().await, 2);
    /// # });
    /// ```
    #[track_caller]
    pub fn lock(&self) -> impl Future<Output = AsyncMutexGuard<'_, T>> + '_ {
        let entry = self.class.task_entry(AcquireKind::Exclusive, How::Blocking);
        self.sem
            .acquire(1, Mode::Whole)
            .map(entry, move |outcome, held| match outcome {
                Ok(()) => AsyncMutexGuard::new(self, held),
                Err(err) => unreachable!("unbounded acquire failed: {err}"),
            })
    }

    /// Takes the lock if it is free and nobody is queued for it.
    ///
    /// # Errors
    ///
    /// [`WouldBlock`] if the lock is held or contended.
    ///
    /// ```
    /// use strata::sync::{AsyncMutex, WouldBlock};
    /// let m = AsyncMutex::new(0);
    /// let guard = m.try_lock().unwrap();
    /// assert_eq!(m.try_lock().unwrap_err(), WouldBlock);
    /// # drop(guard);
    /// ```
    #[track_caller]
    pub fn try_lock(&self) -> Result<AsyncMutexGuard<'_, T>, WouldBlock> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Try);
        self.sem
            .try_acquire(1, Mode::Whole)
            .map_err(|_| WouldBlock)?;
        Ok(AsyncMutexGuard::new(self, held))
    }

    /// Waits for the lock at most `timeout`. Cancel-safe; a timed-out
    /// attempt leaves nothing queued. The timer is runtime-agnostic and only
    /// armed if the lock is not free at once.
    ///
    /// # Errors
    ///
    /// [`LockTimeout`] if the lock did not come in time.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::time::Duration;
    /// use strata::sync::{AsyncMutex, LockTimeout};
    /// let m = AsyncMutex::new(0);
    /// let held = m.lock().await;
    /// assert_eq!(m.lock_timeout(Duration::from_millis(1)).await.unwrap_err(), LockTimeout);
    /// drop(held);
    /// assert!(m.lock_timeout(Duration::from_millis(1)).await.is_ok());
    /// # });
    /// ```
    #[track_caller]
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<AsyncMutexGuard<'_, T>, LockTimeout>> + '_ {
        // Timed: it cannot hang, so it records the order but never reports.
        let entry = self.class.task_entry(AcquireKind::Exclusive, How::Try);
        let acquire = self
            .sem
            .acquire(1, Mode::Whole)
            .map(entry, |outcome, held| (outcome, held));
        let deadline = deadline_after(timeout);
        async move {
            match Deadline::new(acquire, deadline).await {
                Some((Ok(()), held)) => Ok(AsyncMutexGuard::new(self, held)),
                Some((Err(err), _)) => unreachable!("unbounded acquire failed: {err}"),
                None => Err(LockTimeout),
            }
        }
    }

    /// Blocks the calling thread until the lock is free: for synchronous code
    /// sharing state with async tasks. The waiter queues fairly with the
    /// async ones.
    ///
    /// Do not call it from inside an async task: it blocks the executor
    /// thread, and if the holder needs that thread to finish, never returns.
    ///
    /// ```
    /// let m = strata::sync::AsyncMutex::new(0);
    /// *m.lock_blocking() += 1;
    /// assert_eq!(*m.lock_blocking(), 1);
    /// ```
    #[track_caller]
    pub fn lock_blocking(&self) -> AsyncMutexGuard<'_, T> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Blocking);
        let granted = held.wait(
            || self.sem.try_acquire(1, Mode::Whole).ok().map(Ok),
            || self.sem.acquire_blocking(1, Mode::Whole, None),
        );
        match granted {
            Ok(()) => AsyncMutexGuard::new(self, held),
            Err(err) => unreachable!("unbounded acquire failed: {err}"),
        }
    }

    /// [`lock`](Self::lock) on an `Arc`, returning a guard that owns a
    /// reference to the mutex, so it can move into a spawned task.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::sync::Arc;
    /// let m = Arc::new(strata::sync::AsyncMutex::new(0));
    /// let mut guard = m.lock_owned().await;
    /// *guard += 1;
    /// drop(guard);
    /// assert_eq!(*m.lock().await, 1);
    /// # });
    /// ```
    #[track_caller]
    pub fn lock_owned(self: &Arc<Self>) -> impl Future<Output = OwnedAsyncMutexGuard<T>> + use<T> {
        let entry = self.class.task_entry(AcquireKind::Exclusive, How::Blocking);
        let lock = Arc::clone(self);
        async move {
            let (outcome, held) = lock
                .sem
                .acquire(1, Mode::Whole)
                .map(entry, |outcome, held| (outcome, held))
                .await;
            match outcome {
                Ok(()) => OwnedAsyncMutexGuard::new(lock, held),
                Err(err) => unreachable!("unbounded acquire failed: {err}"),
            }
        }
    }

    /// [`try_lock`](Self::try_lock) on an `Arc`, returning an owned guard.
    ///
    /// # Errors
    ///
    /// [`WouldBlock`] if the lock is held or contended.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let m = Arc::new(strata::sync::AsyncMutex::new(0));
    /// let guard = m.try_lock_owned().unwrap();
    /// assert!(m.try_lock_owned().is_err());
    /// # drop(guard);
    /// ```
    #[track_caller]
    pub fn try_lock_owned(self: &Arc<Self>) -> Result<OwnedAsyncMutexGuard<T>, WouldBlock> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Try);
        self.sem
            .try_acquire(1, Mode::Whole)
            .map_err(|_| WouldBlock)?;
        Ok(OwnedAsyncMutexGuard::new(Arc::clone(self), held))
    }

    /// Mutable access without locking: `&mut self` proves nobody else holds
    /// the mutex.
    ///
    /// ```
    /// let mut m = strata::sync::AsyncMutex::new(1);
    /// *m.get_mut() = 2;
    /// assert_eq!(m.into_inner(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Called by the guards when they are done with the value.
    #[inline]
    fn unlock(&self) {
        self.sem.release(1);
    }
}

impl<T: Default> Default for AsyncMutex<T> {
    #[track_caller]
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> From<T> for AsyncMutex<T> {
    #[track_caller]
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for AsyncMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("AsyncMutex");
        match self.try_lock() {
            Ok(guard) => d.field("data", &&*guard),
            Err(_) => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

/// Exclusive access to the value of an [`AsyncMutex`]; unlocks when dropped.
///
/// `Send` when `T: Send`, so it may be held across `.await` in a spawned
/// task.
///
/// ```
/// # futures::executor::block_on(async {
/// let m = strata::sync::AsyncMutex::new(String::from("a"));
/// let mut guard = m.lock().await;
/// guard.push('b');
/// assert_eq!(&*guard, "ab");
/// # });
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct AsyncMutexGuard<'a, T: ?Sized> {
    lock: &'a AsyncMutex<T>,
    _held: HeldToken,
    // Sync only if `T: Sync` (a shared guard gives out `&T`); `Send` then
    // follows from `&AsyncMutex<T>`, i.e. `T: Send`.
    _marker: PhantomData<T>,
}

impl<'a, T: ?Sized> AsyncMutexGuard<'a, T> {
    fn new(lock: &'a AsyncMutex<T>, held: HeldToken) -> Self {
        Self {
            lock,
            _held: held,
            _marker: PhantomData,
        }
    }

    /// The mutex this guard locks.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let m = strata::sync::AsyncMutex::new(0);
    /// let guard = m.lock().await;
    /// assert!(std::ptr::eq(guard.mutex(), &m));
    /// # });
    /// ```
    pub fn mutex(&self) -> &'a AsyncMutex<T> {
        self.lock
    }
}

impl<T: ?Sized> Deref for AsyncMutexGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the mutex's only permit, so no `&mut T`
        // exists elsewhere while this borrow (tied to the guard) lives.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for AsyncMutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the only permit and is borrowed mutably,
        // so this is the only access to the value while the borrow lives.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for AsyncMutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for AsyncMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for AsyncMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

/// An [`AsyncMutexGuard`] that keeps its mutex alive through an `Arc`, so it
/// has no lifetime and can move into spawned tasks.
///
/// ```
/// # futures::executor::block_on(async {
/// use std::sync::Arc;
/// let m = Arc::new(strata::sync::AsyncMutex::new(1));
/// let guard = m.lock_owned().await;
/// assert_eq!(*guard, 1);
/// # });
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct OwnedAsyncMutexGuard<T: ?Sized> {
    lock: Arc<AsyncMutex<T>>,
    _held: HeldToken,
    _marker: PhantomData<T>,
}

impl<T: ?Sized> OwnedAsyncMutexGuard<T> {
    fn new(lock: Arc<AsyncMutex<T>>, held: HeldToken) -> Self {
        Self {
            lock,
            _held: held,
            _marker: PhantomData,
        }
    }

    /// The mutex this guard locks.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let m = Arc::new(strata::sync::AsyncMutex::new(0));
    /// let guard = m.try_lock_owned().unwrap();
    /// assert!(Arc::ptr_eq(guard.mutex(), &m));
    /// ```
    pub fn mutex(&self) -> &Arc<AsyncMutex<T>> {
        &self.lock
    }
}

impl<T: ?Sized> Deref for OwnedAsyncMutexGuard<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: as for `AsyncMutexGuard`: this guard holds the only permit.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for OwnedAsyncMutexGuard<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `AsyncMutexGuard`: the only permit, borrowed mutably.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for OwnedAsyncMutexGuard<T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for OwnedAsyncMutexGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for OwnedAsyncMutexGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}

    #[test]
    fn guards_are_send_when_t_is() {
        assert_send::<AsyncMutexGuard<'static, Vec<u8>>>();
        assert_sync::<AsyncMutexGuard<'static, Vec<u8>>>();
        assert_send::<OwnedAsyncMutexGuard<Vec<u8>>>();
        assert_sync::<AsyncMutex<std::cell::Cell<u8>>>();
        assert_send::<AsyncMutexGuard<'static, std::cell::Cell<u8>>>();
    }

    #[test]
    fn unsized_values_work() {
        let m: Box<AsyncMutex<[u8]>> = Box::new(AsyncMutex::new([1, 2, 3]));
        m.try_lock().unwrap()[0] = 9;
        assert_eq!(&*m.lock_blocking(), &[9, 2, 3]);
    }

    #[test]
    fn uncontended_lock_is_ready_on_first_poll() {
        let m = AsyncMutex::new(0);
        let mut fut = pin!(m.lock());
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(guard) = fut.as_mut().poll(&mut cx) else {
            panic!("uncontended lock must not wait");
        };
        drop(guard);
        assert_eq!(m.sem.available_permits(), 1);
    }

    #[test]
    fn debug_shows_locked_state() {
        let m = AsyncMutex::new(3);
        assert!(format!("{m:?}").contains('3'));
        let _g = m.try_lock().unwrap();
        assert!(format!("{m:?}").contains("<locked>"));
    }

    #[test]
    fn blocking_and_async_waiters_share_one_queue() {
        let m = Arc::new(AsyncMutex::new(0u32));
        let held = m.try_lock_owned().unwrap();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || *m.lock_blocking() += 1)
            })
            .collect();
        drop(held);
        futures::executor::block_on(async {
            *m.lock().await += 1;
        });
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*m.lock_blocking(), 3);
    }
}
