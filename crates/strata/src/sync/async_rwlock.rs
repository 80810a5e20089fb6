//! `AsyncRwLock`: a writer-preferring, FIFO, cancel-safe async read-write lock.

use std::cell::UnsafeCell;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use crate::diag::{AcquireKind, ClassKey, ClassSlot, HeldToken, How};
use crate::sync::raw_semaphore::{Mode, RawSemaphore, loom_const_fn};
use crate::sync::timeout::{Deadline, deadline_after};
use crate::sync::{LockTimeout, WouldBlock};

/// Permits of the underlying semaphore: a reader takes one, a writer all.
const MAX_READERS: usize = 1 << 29;

/// An async read-write lock that prefers writers.
///
/// Many readers or one writer. Built on a fair semaphore of
/// [`MAX_READERS`](Self::MAX_READERS) permits: a reader takes one, a writer
/// takes all of them. Because waiters are served first in, first out and a
/// newcomer never overtakes a queued waiter:
///
/// * once a writer waits, new readers queue behind it, while readers already
///   inside finish; the writer is never starved by a stream of readers;
/// * when the writer leaves, all readers queued behind it (up to the next
///   queued writer) get in together; readers are not starved either.
///
/// All waits are cancel-safe (dropping a pending future leaves the lock as if
/// it never ran) and runtime-agnostic.
///
/// **Deadlocks to avoid:** a task that holds a read guard and then awaits
/// `read()` again can wait forever if a writer queued in between (the second
/// read waits behind the writer, the writer waits for the first read); and
/// awaiting `write()` while holding any guard of the same lock always waits
/// forever.
///
/// ```
/// # futures::executor::block_on(async {
/// use strata::sync::AsyncRwLock;
///
/// let config = AsyncRwLock::new(String::from("v1"));
/// {
///     let a = config.read().await;
///     let b = config.read().await;
///     assert_eq!((a.as_str(), b.as_str()), ("v1", "v1"));
/// }
/// config.write().await.push_str("-patched");
/// assert_eq!(*config.read().await, "v1-patched");
/// # });
/// ```
pub struct AsyncRwLock<T: ?Sized> {
    sem: RawSemaphore,
    class: ClassSlot,
    // Not the loom cell: see `AsyncMutex`.
    data: UnsafeCell<T>,
}

// SAFETY: readers on several threads share `&T` at once (needs `T: Sync`)
// and a writer may be on any thread (needs `T: Send`); the semaphore
// enforces many-readers-xor-one-writer, as for `std::sync::RwLock`.
unsafe impl<T: ?Sized + Send + Sync> Sync for AsyncRwLock<T> {}

impl<T> AsyncRwLock<T> {
    loom_const_fn! {
        /// A lock around `value`, whose lock class is the caller's source
        /// location.
        ///
        /// ```
        /// static TABLE: strata::sync::AsyncRwLock<Vec<u32>> = strata::sync::AsyncRwLock::new(Vec::new());
        /// assert!(TABLE.try_read().unwrap().is_empty());
        /// ```
        #[track_caller]
        pub fn new(value: T) -> Self {
            Self {
                sem: RawSemaphore::new(MAX_READERS),
                class: ClassSlot::site(),
                data: UnsafeCell::new(value),
            }
        }
    }

    loom_const_fn! {
        /// A lock around `value` in the lock class `name`.
        ///
        /// ```
        /// let l = strata::sync::AsyncRwLock::named("routes", 0u8);
        /// if let Some(class) = l.class() {
        ///     assert_eq!(class.name(), Some("routes"));
        /// }
        /// ```
        #[track_caller]
        pub fn named(name: &'static str, value: T) -> Self {
            Self {
                sem: RawSemaphore::new(MAX_READERS),
                class: ClassSlot::named(name),
                data: UnsafeCell::new(value),
            }
        }
    }

    /// Consumes the lock and returns the value.
    ///
    /// ```
    /// let l = strata::sync::AsyncRwLock::new(3);
    /// assert_eq!(l.into_inner(), 3);
    /// ```
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> AsyncRwLock<T> {
    /// How many readers can hold the lock at once.
    ///
    /// ```
    /// assert!(strata::sync::AsyncRwLock::<()>::MAX_READERS >= 1 << 20);
    /// ```
    pub const MAX_READERS: usize = MAX_READERS;

    /// The lock class, when order checking is compiled in.
    ///
    /// ```
    /// let l = strata::sync::AsyncRwLock::new(());
    /// assert_eq!(l.class().is_some(), strata::diag::checking_enabled());
    /// ```
    pub fn class(&self) -> Option<ClassKey> {
        self.class.key()
    }

    /// Waits for shared access; queues behind any waiting writer.
    /// Cancel-safe.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let l = strata::sync::AsyncRwLock::new(5);
    /// let (a, b) = (l.read().await, l.read().await);
    /// assert_eq!(*a + *b, 10);
    /// # });
    /// ```
    #[track_caller]
    pub fn read(&self) -> impl Future<Output = AsyncRwLockReadGuard<'_, T>> + '_ {
        let entry = self.class.task_entry(AcquireKind::Shared, How::Blocking);
        self.sem
            .acquire(1, Mode::Unchecked)
            .map(entry, move |outcome, held| match outcome {
                Ok(()) => AsyncRwLockReadGuard {
                    lock: self,
                    _held: held,
                },
                Err(err) => unreachable!("unbounded acquire failed: {err}"),
            })
    }

    /// Waits for exclusive access; from the moment it waits, new readers
    /// queue behind it. Cancel-safe.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let l = strata::sync::AsyncRwLock::new(5);
    /// *l.write().await += 1;
    /// assert_eq!(*l.read().await, 6);
    /// # });
    /// ```
    #[track_caller]
    pub fn write(&self) -> impl Future<Output = AsyncRwLockWriteGuard<'_, T>> + '_ {
        let entry = self.class.task_entry(AcquireKind::Exclusive, How::Blocking);
        self.sem
            .acquire(MAX_READERS, Mode::Whole)
            .map(entry, move |outcome, held| match outcome {
                Ok(()) => AsyncRwLockWriteGuard::new(self, held),
                Err(err) => unreachable!("unbounded acquire failed: {err}"),
            })
    }

    /// Takes shared access if no writer holds or waits for the lock.
    ///
    /// # Errors
    ///
    /// [`WouldBlock`] if a writer holds the lock or anyone is queued.
    ///
    /// ```
    /// let l = strata::sync::AsyncRwLock::new(1);
    /// let r = l.try_read().unwrap();
    /// assert!(l.try_read().is_ok());
    /// assert!(l.try_write().is_err());
    /// # drop(r);
    /// ```
    #[track_caller]
    pub fn try_read(&self) -> Result<AsyncRwLockReadGuard<'_, T>, WouldBlock> {
        let held = self.class.enter(AcquireKind::Shared, How::Try);
        self.sem
            .try_acquire(1, Mode::Unchecked)
            .map_err(|_| WouldBlock)?;
        Ok(AsyncRwLockReadGuard {
            lock: self,
            _held: held,
        })
    }

    /// Takes exclusive access if the lock is entirely free.
    ///
    /// # Errors
    ///
    /// [`WouldBlock`] if anyone holds or waits for the lock.
    ///
    /// ```
    /// let l = strata::sync::AsyncRwLock::new(1);
    /// *l.try_write().unwrap() = 2;
    /// assert_eq!(*l.try_read().unwrap(), 2);
    /// ```
    #[track_caller]
    pub fn try_write(&self) -> Result<AsyncRwLockWriteGuard<'_, T>, WouldBlock> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Try);
        self.sem
            .try_acquire(MAX_READERS, Mode::Whole)
            .map_err(|_| WouldBlock)?;
        Ok(AsyncRwLockWriteGuard::new(self, held))
    }

    /// [`read`](Self::read), giving up after `timeout`. Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`LockTimeout`] if shared access did not come in time.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::time::Duration;
    /// let l = strata::sync::AsyncRwLock::new(0);
    /// let w = l.write().await;
    /// assert!(l.read_timeout(Duration::from_millis(1)).await.is_err());
    /// drop(w);
    /// assert!(l.read_timeout(Duration::from_millis(1)).await.is_ok());
    /// # });
    /// ```
    #[track_caller]
    pub fn read_timeout(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<AsyncRwLockReadGuard<'_, T>, LockTimeout>> + '_ {
        // Timed: it cannot hang, so it records the order but never reports.
        let entry = self.class.task_entry(AcquireKind::Shared, How::Try);
        let acquire = self
            .sem
            .acquire(1, Mode::Unchecked)
            .map(entry, |outcome, held| (outcome, held));
        let deadline = deadline_after(timeout);
        async move {
            match Deadline::new(acquire, deadline).await {
                Some((Ok(()), held)) => Ok(AsyncRwLockReadGuard {
                    lock: self,
                    _held: held,
                }),
                Some((Err(err), _)) => unreachable!("unbounded acquire failed: {err}"),
                None => Err(LockTimeout),
            }
        }
    }

    /// [`write`](Self::write), giving up after `timeout`. Cancel-safe: a
    /// writer that times out stops blocking the readers queued behind it.
    ///
    /// # Errors
    ///
    /// [`LockTimeout`] if exclusive access did not come in time.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::time::Duration;
    /// let l = strata::sync::AsyncRwLock::new(0);
    /// let r = l.read().await;
    /// assert!(l.write_timeout(Duration::from_millis(1)).await.is_err());
    /// drop(r);
    /// assert!(l.write_timeout(Duration::from_millis(1)).await.is_ok());
    /// # });
    /// ```
    #[track_caller]
    pub fn write_timeout(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<AsyncRwLockWriteGuard<'_, T>, LockTimeout>> + '_ {
        // Timed: it cannot hang, so it records the order but never reports.
        let entry = self.class.task_entry(AcquireKind::Exclusive, How::Try);
        let acquire = self
            .sem
            .acquire(MAX_READERS, Mode::Whole)
            .map(entry, |outcome, held| (outcome, held));
        let deadline = deadline_after(timeout);
        async move {
            match Deadline::new(acquire, deadline).await {
                Some((Ok(()), held)) => Ok(AsyncRwLockWriteGuard::new(self, held)),
                Some((Err(err), _)) => unreachable!("unbounded acquire failed: {err}"),
                None => Err(LockTimeout),
            }
        }
    }

    /// Blocks the calling thread for shared access, queueing fairly with
    /// async waiters. Not for use inside async tasks (it blocks the
    /// executor thread).
    ///
    /// ```
    /// let l = strata::sync::AsyncRwLock::new(2);
    /// assert_eq!(*l.read_blocking(), 2);
    /// ```
    #[track_caller]
    pub fn read_blocking(&self) -> AsyncRwLockReadGuard<'_, T> {
        let held = self.class.enter(AcquireKind::Shared, How::Blocking);
        let granted = held.wait(
            || self.sem.try_acquire(1, Mode::Unchecked).ok().map(Ok),
            || self.sem.acquire_blocking(1, Mode::Unchecked, None),
        );
        match granted {
            Ok(()) => AsyncRwLockReadGuard {
                lock: self,
                _held: held,
            },
            Err(err) => unreachable!("unbounded acquire failed: {err}"),
        }
    }

    /// Blocks the calling thread for exclusive access, queueing fairly with
    /// async waiters. Not for use inside async tasks.
    ///
    /// ```
    /// let l = strata::sync::AsyncRwLock::new(2);
    /// *l.write_blocking() = 3;
    /// assert_eq!(*l.read_blocking(), 3);
    /// ```
    #[track_caller]
    pub fn write_blocking(&self) -> AsyncRwLockWriteGuard<'_, T> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Blocking);
        let granted = held.wait(
            || self.sem.try_acquire(MAX_READERS, Mode::Whole).ok().map(Ok),
            || self.sem.acquire_blocking(MAX_READERS, Mode::Whole, None),
        );
        match granted {
            Ok(()) => AsyncRwLockWriteGuard::new(self, held),
            Err(err) => unreachable!("unbounded acquire failed: {err}"),
        }
    }

    /// [`read`](Self::read) on an `Arc`, returning a guard without a
    /// lifetime (to move into a spawned task).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::sync::Arc;
    /// let l = Arc::new(strata::sync::AsyncRwLock::new(1));
    /// let r = l.read_owned().await;
    /// assert_eq!(*r, 1);
    /// # });
    /// ```
    #[track_caller]
    pub fn read_owned(
        self: &Arc<Self>,
    ) -> impl Future<Output = OwnedAsyncRwLockReadGuard<T>> + use<T> {
        let entry = self.class.task_entry(AcquireKind::Shared, How::Blocking);
        let lock = Arc::clone(self);
        async move {
            let (outcome, held) = lock
                .sem
                .acquire(1, Mode::Unchecked)
                .map(entry, |outcome, held| (outcome, held))
                .await;
            match outcome {
                Ok(()) => OwnedAsyncRwLockReadGuard { lock, _held: held },
                Err(err) => unreachable!("unbounded acquire failed: {err}"),
            }
        }
    }

    /// [`write`](Self::write) on an `Arc`, returning a guard without a
    /// lifetime.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::sync::Arc;
    /// let l = Arc::new(strata::sync::AsyncRwLock::new(1));
    /// *l.write_owned().await += 1;
    /// assert_eq!(*l.read().await, 2);
    /// # });
    /// ```
    #[track_caller]
    pub fn write_owned(
        self: &Arc<Self>,
    ) -> impl Future<Output = OwnedAsyncRwLockWriteGuard<T>> + use<T> {
        let entry = self.class.task_entry(AcquireKind::Exclusive, How::Blocking);
        let lock = Arc::clone(self);
        async move {
            let (outcome, held) = lock
                .sem
                .acquire(MAX_READERS, Mode::Whole)
                .map(entry, |outcome, held| (outcome, held))
                .await;
            match outcome {
                Ok(()) => OwnedAsyncRwLockWriteGuard::new(lock, held),
                Err(err) => unreachable!("unbounded acquire failed: {err}"),
            }
        }
    }

    /// [`try_read`](Self::try_read) on an `Arc`.
    ///
    /// # Errors
    ///
    /// [`WouldBlock`] as for `try_read`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let l = Arc::new(strata::sync::AsyncRwLock::new(1));
    /// assert_eq!(*l.try_read_owned().unwrap(), 1);
    /// ```
    #[track_caller]
    pub fn try_read_owned(self: &Arc<Self>) -> Result<OwnedAsyncRwLockReadGuard<T>, WouldBlock> {
        let held = self.class.enter(AcquireKind::Shared, How::Try);
        self.sem
            .try_acquire(1, Mode::Unchecked)
            .map_err(|_| WouldBlock)?;
        Ok(OwnedAsyncRwLockReadGuard {
            lock: Arc::clone(self),
            _held: held,
        })
    }

    /// [`try_write`](Self::try_write) on an `Arc`.
    ///
    /// # Errors
    ///
    /// [`WouldBlock`] as for `try_write`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let l = Arc::new(strata::sync::AsyncRwLock::new(1));
    /// let w = l.try_write_owned().unwrap();
    /// assert!(l.try_read_owned().is_err());
    /// # drop(w);
    /// ```
    #[track_caller]
    pub fn try_write_owned(self: &Arc<Self>) -> Result<OwnedAsyncRwLockWriteGuard<T>, WouldBlock> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Try);
        self.sem
            .try_acquire(MAX_READERS, Mode::Whole)
            .map_err(|_| WouldBlock)?;
        Ok(OwnedAsyncRwLockWriteGuard::new(Arc::clone(self), held))
    }

    /// Mutable access without locking: `&mut self` proves nobody holds it.
    ///
    /// ```
    /// let mut l = strata::sync::AsyncRwLock::new(1);
    /// *l.get_mut() = 2;
    /// assert_eq!(l.into_inner(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: Default> Default for AsyncRwLock<T> {
    #[track_caller]
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> From<T> for AsyncRwLock<T> {
    #[track_caller]
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for AsyncRwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("AsyncRwLock");
        match self.try_read() {
            Ok(guard) => d.field("data", &&*guard),
            Err(_) => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

/// Shared access to the value of an [`AsyncRwLock`]; released when dropped.
///
/// ```
/// # futures::executor::block_on(async {
/// let l = strata::sync::AsyncRwLock::new([1, 2]);
/// let r = l.read().await;
/// assert_eq!(r.len(), 2);
/// # });
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct AsyncRwLockReadGuard<'a, T: ?Sized> {
    lock: &'a AsyncRwLock<T>,
    _held: HeldToken,
}

impl<T: ?Sized> Deref for AsyncRwLockReadGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: a read permit is held, so no writer (which needs every
        // permit) can exist; only shared borrows coexist.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for AsyncRwLockReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.sem.release(1);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for AsyncRwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Exclusive access to the value of an [`AsyncRwLock`]; released when
/// dropped, or turned into a read guard with
/// [`downgrade`](Self::downgrade).
///
/// ```
/// # futures::executor::block_on(async {
/// let l = strata::sync::AsyncRwLock::new(vec![1]);
/// l.write().await.push(2);
/// assert_eq!(*l.read().await, [1, 2]);
/// # });
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct AsyncRwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a AsyncRwLock<T>,
    /// `MAX_READERS`, or 0 once `downgrade` has passed them on.
    permits: usize,
    /// `Some` until `downgrade` hands it to the read guard.
    held: Option<HeldToken>,
}

impl<'a, T: ?Sized> AsyncRwLockWriteGuard<'a, T> {
    fn new(lock: &'a AsyncRwLock<T>, held: HeldToken) -> Self {
        Self {
            lock,
            permits: MAX_READERS,
            held: Some(held),
        }
    }

    /// Turns write access into read access without letting another writer
    /// in between; readers queued behind this writer get in at once.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let l = strata::sync::AsyncRwLock::new(1);
    /// let mut w = l.write().await;
    /// *w = 2;
    /// let r = w.downgrade();
    /// assert_eq!(*r, 2);
    /// assert_eq!(*l.try_read().unwrap(), 2);
    /// # });
    /// ```
    pub fn downgrade(mut self) -> AsyncRwLockReadGuard<'a, T> {
        // Keep one permit for the read guard; hand the rest to the queue.
        self.lock.sem.release(MAX_READERS - 1);
        self.permits = 0;
        match self.held.take() {
            Some(held) => AsyncRwLockReadGuard {
                lock: self.lock,
                _held: held,
            },
            None => unreachable!("a write guard holds its token until downgraded"),
        }
    }
}

impl<T: ?Sized> Deref for AsyncRwLockWriteGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds every permit: no other guard exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for AsyncRwLockWriteGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: every permit is held and the guard is borrowed mutably, so
        // this is the only access while the borrow lives.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for AsyncRwLockWriteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.sem.release(self.permits);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for AsyncRwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// An [`AsyncRwLockReadGuard`] holding its lock through an `Arc`.
///
/// ```
/// # futures::executor::block_on(async {
/// use std::sync::Arc;
/// let l = Arc::new(strata::sync::AsyncRwLock::new(4));
/// let r = l.read_owned().await;
/// assert_eq!(*r, 4);
/// # });
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct OwnedAsyncRwLockReadGuard<T: ?Sized> {
    lock: Arc<AsyncRwLock<T>>,
    _held: HeldToken,
}

impl<T: ?Sized> Deref for OwnedAsyncRwLockReadGuard<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: as for `AsyncRwLockReadGuard`: a read permit is held.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for OwnedAsyncRwLockReadGuard<T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.sem.release(1);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for OwnedAsyncRwLockReadGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// An [`AsyncRwLockWriteGuard`] holding its lock through an `Arc`.
///
/// ```
/// # futures::executor::block_on(async {
/// use std::sync::Arc;
/// let l = Arc::new(strata::sync::AsyncRwLock::new(4));
/// *l.write_owned().await = 5;
/// assert_eq!(*l.read().await, 5);
/// # });
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct OwnedAsyncRwLockWriteGuard<T: ?Sized> {
    lock: Arc<AsyncRwLock<T>>,
    /// `MAX_READERS`, or 0 once `downgrade` has passed them on.
    permits: usize,
    held: Option<HeldToken>,
}

impl<T: ?Sized> OwnedAsyncRwLockWriteGuard<T> {
    fn new(lock: Arc<AsyncRwLock<T>>, held: HeldToken) -> Self {
        Self {
            lock,
            permits: MAX_READERS,
            held: Some(held),
        }
    }

    /// Turns write access into read access atomically; see
    /// [`AsyncRwLockWriteGuard::downgrade`].
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::sync::Arc;
    /// let l = Arc::new(strata::sync::AsyncRwLock::new(1));
    /// let r = l.write_owned().await.downgrade();
    /// assert!(l.try_read().is_ok());
    /// assert_eq!(*r, 1);
    /// # });
    /// ```
    pub fn downgrade(mut self) -> OwnedAsyncRwLockReadGuard<T> {
        self.lock.sem.release(MAX_READERS - 1);
        self.permits = 0;
        match self.held.take() {
            Some(held) => OwnedAsyncRwLockReadGuard {
                lock: Arc::clone(&self.lock),
                _held: held,
            },
            None => unreachable!("a write guard holds its token until downgraded"),
        }
    }
}

impl<T: ?Sized> Deref for OwnedAsyncRwLockWriteGuard<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: as for `AsyncRwLockWriteGuard`: every permit is held.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for OwnedAsyncRwLockWriteGuard<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `AsyncRwLockWriteGuard`: every permit, borrowed mutably.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for OwnedAsyncRwLockWriteGuard<T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.sem.release(self.permits);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for OwnedAsyncRwLockWriteGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
