//! `Semaphore`: a FIFO-fair counting semaphore for threads and tasks alike.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::diag::{AcquireKind, ClassKey, ClassSlot, HeldToken, How};
use crate::sync::AcquireError;
use crate::sync::raw_semaphore::{self, Mode, RawSemaphore, loom_const_fn};
use crate::sync::timeout::deadline_after;

/// A counting semaphore: at most [`total_permits`](Self::total_permits)
/// permits are held at once, by threads ([`acquire`](Self::acquire)) and
/// async tasks ([`acquire_async`](Self::acquire_async)) on the same
/// semaphore.
///
/// Waiters are served strictly first in, first out, and a request for many
/// permits is not overtaken by later small ones: released permits are handed
/// to the longest waiter (partially, if it wants more), and a newcomer never
/// takes permits while anyone waits. Permits are RAII: a
/// [`SemaphorePermit`] gives them back when dropped.
///
/// Waiting for a permit counts as taking the semaphore's lock class, so a
/// cycle such as "hold lock A, wait for the semaphore" in one place and
/// "hold a permit, lock A" in another is reported by the order checker.
///
/// **Deadlock to avoid:** waiting for more permits while holding permits of
/// the same semaphore can wait forever (all permits held by waiters). Ask for
/// everything you need in one [`acquire_many`](Self::acquire_many).
///
/// ```
/// use strata::sync::Semaphore;
///
/// let pool = Semaphore::new(2);
/// let a = pool.acquire();
/// let b = pool.acquire();
/// assert!(pool.try_acquire().is_err());
/// drop(a);
/// assert!(pool.try_acquire().is_ok());
/// # drop(b);
/// ```
pub struct Semaphore {
    raw: RawSemaphore,
    class: ClassSlot,
}

impl Semaphore {
    /// The most permits a semaphore can manage; larger counts are capped.
    ///
    /// ```
    /// let sem = strata::sync::Semaphore::new(usize::MAX);
    /// assert_eq!(sem.total_permits(), strata::sync::Semaphore::MAX_PERMITS);
    /// ```
    pub const MAX_PERMITS: usize = raw_semaphore::MAX_PERMITS;

    loom_const_fn! {
        /// A semaphore with `permits` permits, whose lock class is the
        /// caller's source location.
        ///
        /// ```
        /// static CONNECTIONS: strata::sync::Semaphore = strata::sync::Semaphore::new(8);
        /// assert_eq!(CONNECTIONS.available_permits(), 8);
        /// ```
        #[track_caller]
        pub fn new(permits: usize) -> Self {
            Self {
                raw: RawSemaphore::new(permits),
                class: ClassSlot::site(),
            }
        }
    }

    loom_const_fn! {
        /// A semaphore with `permits` permits in the lock class `name`.
        ///
        /// ```
        /// let sem = strata::sync::Semaphore::named("db-connections", 4);
        /// if let Some(class) = sem.class() {
        ///     assert_eq!(class.name(), Some("db-connections"));
        /// }
        /// ```
        #[track_caller]
        pub fn named(name: &'static str, permits: usize) -> Self {
            Self {
                raw: RawSemaphore::new(permits),
                class: ClassSlot::named(name),
            }
        }
    }

    /// The lock class, when order checking is compiled in.
    ///
    /// ```
    /// let sem = strata::sync::Semaphore::new(1);
    /// assert_eq!(sem.class().is_some(), strata::diag::checking_enabled());
    /// ```
    pub fn class(&self) -> Option<ClassKey> {
        self.class.key()
    }

    /// Blocks the thread until one permit is free, and takes it.
    ///
    /// On a semaphore with no permits at all (built with 0, or all
    /// forgotten) this waits for [`add_permits`](Self::add_permits): the
    /// signalling pattern. Do not call it from an async task; use
    /// [`acquire_async`](Self::acquire_async) there.
    ///
    /// ```
    /// let sem = strata::sync::Semaphore::new(1);
    /// let permit = sem.acquire();
    /// assert_eq!(permit.num_permits(), 1);
    /// assert_eq!(sem.available_permits(), 0);
    /// ```
    #[track_caller]
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Ordered);
        let granted = held.wait(
            || self.raw.try_acquire(1, Mode::Unchecked).ok().map(Ok),
            || self.raw.acquire_blocking(1, Mode::Unchecked, None),
        );
        match granted {
            Ok(()) => SemaphorePermit::new(self, 1, held),
            // Without a deadline or a total check the wait only ends granted.
            Err(err) => unreachable!("unbounded acquire failed: {err}"),
        }
    }

    /// Blocks the thread until `n` permits are free, and takes them together.
    ///
    /// # Errors
    ///
    /// [`AcquireError::TooMany`] at once if `n` exceeds
    /// [`total_permits`](Self::total_permits) (the wait could never end), or
    /// later if permits are [forgotten](SemaphorePermit::forget) while it waits
    /// until fewer than `n` remain.
    ///
    /// ```
    /// use strata::sync::{AcquireError, Semaphore};
    /// let sem = Semaphore::new(4);
    /// let three = sem.acquire_many(3).unwrap();
    /// assert_eq!(three.num_permits(), 3);
    /// assert_eq!(
    ///     sem.acquire_many(5).unwrap_err(),
    ///     AcquireError::TooMany { requested: 5, total: 4 }
    /// );
    /// ```
    #[track_caller]
    pub fn acquire_many(&self, n: usize) -> Result<SemaphorePermit<'_>, AcquireError> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Ordered);
        held.wait(
            || self.raw.try_acquire(n, Mode::Checked).ok().map(Ok),
            || self.raw.acquire_blocking(n, Mode::Checked, None),
        )?;
        Ok(SemaphorePermit::new(self, n, held))
    }

    /// Takes one permit if one is free right now.
    ///
    /// # Errors
    ///
    /// [`AcquireError::WouldBlock`] if none is free or others are waiting
    /// (fairness: a `try_` never jumps the queue).
    ///
    /// ```
    /// use strata::sync::{AcquireError, Semaphore};
    /// let sem = Semaphore::new(1);
    /// let permit = sem.try_acquire().unwrap();
    /// assert_eq!(sem.try_acquire().unwrap_err(), AcquireError::WouldBlock);
    /// # drop(permit);
    /// ```
    #[track_caller]
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>, AcquireError> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Try);
        self.raw.try_acquire(1, Mode::Unchecked)?;
        Ok(SemaphorePermit::new(self, 1, held))
    }

    /// Takes `n` permits if they are free right now.
    ///
    /// # Errors
    ///
    /// [`AcquireError::TooMany`] if `n` exceeds the total,
    /// [`AcquireError::WouldBlock`] if they are not free now.
    ///
    /// ```
    /// use strata::sync::{AcquireError, Semaphore};
    /// let sem = Semaphore::new(3);
    /// let two = sem.try_acquire_many(2).unwrap();
    /// assert_eq!(sem.try_acquire_many(2).unwrap_err(), AcquireError::WouldBlock);
    /// # drop(two);
    /// ```
    #[track_caller]
    pub fn try_acquire_many(&self, n: usize) -> Result<SemaphorePermit<'_>, AcquireError> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Try);
        self.raw.try_acquire(n, Mode::Checked)?;
        Ok(SemaphorePermit::new(self, n, held))
    }

    /// Like [`acquire`](Self::acquire), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`] if no permit came in time; the attempt
    /// leaves no trace in the queue.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::sync::{AcquireError, Semaphore};
    /// let sem = Semaphore::new(1);
    /// let _held = sem.acquire();
    /// let r = sem.acquire_timeout(Duration::from_millis(1));
    /// assert_eq!(r.unwrap_err(), AcquireError::Timeout);
    /// ```
    #[track_caller]
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphorePermit<'_>, AcquireError> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Try);
        held.wait(
            || self.raw.try_acquire(1, Mode::Unchecked).ok().map(Ok),
            || {
                self.raw
                    .acquire_blocking(1, Mode::Unchecked, deadline_after(timeout))
            },
        )?;
        Ok(SemaphorePermit::new(self, 1, held))
    }

    /// Like [`acquire_many`](Self::acquire_many), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::TooMany`] as for `acquire_many`,
    /// [`AcquireError::Timeout`] if the permits did not come in time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::sync::Semaphore;
    /// let sem = Semaphore::new(3);
    /// let two = sem.acquire_many_timeout(2, Duration::from_secs(1)).unwrap();
    /// assert!(sem.acquire_many_timeout(2, Duration::from_millis(1)).is_err());
    /// # drop(two);
    /// ```
    #[track_caller]
    pub fn acquire_many_timeout(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<SemaphorePermit<'_>, AcquireError> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Try);
        held.wait(
            || self.raw.try_acquire(n, Mode::Checked).ok().map(Ok),
            || {
                self.raw
                    .acquire_blocking(n, Mode::Checked, deadline_after(timeout))
            },
        )?;
        Ok(SemaphorePermit::new(self, n, held))
    }

    /// Waits asynchronously for one permit. Cancel-safe: dropping the future
    /// before it finishes leaves the semaphore as if it never ran.
    ///
    /// Works under any executor; the uncontended case finishes in the first
    /// poll without allocating or storing the waker.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let sem = strata::sync::Semaphore::new(1);
    /// let permit = sem.acquire_async().await;
    /// assert_eq!(sem.available_permits(), 0);
    /// drop(permit);
    /// assert_eq!(sem.available_permits(), 1);
    /// # });
    /// ```
    #[track_caller]
    pub fn acquire_async(&self) -> impl Future<Output = SemaphorePermit<'_>> + '_ {
        let entry = self.class.task_entry(AcquireKind::Exclusive, How::Ordered);
        self.raw
            .acquire(1, Mode::Unchecked)
            .map(entry, move |outcome, held| match outcome {
                Ok(()) => SemaphorePermit::new(self, 1, held),
                Err(err) => unreachable!("unbounded acquire failed: {err}"),
            })
    }

    /// Waits asynchronously for `n` permits, taken together. Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`AcquireError::TooMany`] as for [`acquire_many`](Self::acquire_many).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let sem = strata::sync::Semaphore::new(3);
    /// let permit = sem.acquire_many_async(3).await.unwrap();
    /// assert_eq!(permit.num_permits(), 3);
    /// assert!(sem.acquire_many_async(4).await.is_err());
    /// # });
    /// ```
    #[track_caller]
    pub fn acquire_many_async(
        &self,
        n: usize,
    ) -> impl Future<Output = Result<SemaphorePermit<'_>, AcquireError>> + '_ {
        let entry = self.class.task_entry(AcquireKind::Exclusive, How::Ordered);
        self.raw
            .acquire(n, Mode::Checked)
            .map(entry, move |outcome, held| {
                outcome.map(|()| SemaphorePermit::new(self, n, held))
            })
    }

    /// Blocks the thread for one permit tied to an `Arc` of the semaphore,
    /// so the permit can outlive the borrow (move it into a thread or task).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(strata::sync::Semaphore::new(1));
    /// let permit = sem.acquire_owned();
    /// std::thread::spawn(move || drop(permit)).join().unwrap();
    /// assert_eq!(sem.available_permits(), 1);
    /// ```
    #[track_caller]
    pub fn acquire_owned(self: &Arc<Self>) -> OwnedSemaphorePermit {
        let held = self.class.enter(AcquireKind::Exclusive, How::Ordered);
        let granted = held.wait(
            || self.raw.try_acquire(1, Mode::Unchecked).ok().map(Ok),
            || self.raw.acquire_blocking(1, Mode::Unchecked, None),
        );
        match granted {
            Ok(()) => OwnedSemaphorePermit::new(Arc::clone(self), 1, held),
            Err(err) => unreachable!("unbounded acquire failed: {err}"),
        }
    }

    /// [`acquire_many`](Self::acquire_many) returning an owned permit.
    ///
    /// # Errors
    ///
    /// As for [`acquire_many`](Self::acquire_many).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(strata::sync::Semaphore::new(2));
    /// let permit = sem.acquire_many_owned(2).unwrap();
    /// assert_eq!(permit.num_permits(), 2);
    /// ```
    #[track_caller]
    pub fn acquire_many_owned(
        self: &Arc<Self>,
        n: usize,
    ) -> Result<OwnedSemaphorePermit, AcquireError> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Ordered);
        held.wait(
            || self.raw.try_acquire(n, Mode::Checked).ok().map(Ok),
            || self.raw.acquire_blocking(n, Mode::Checked, None),
        )?;
        Ok(OwnedSemaphorePermit::new(Arc::clone(self), n, held))
    }

    /// [`try_acquire`](Self::try_acquire) returning an owned permit.
    ///
    /// # Errors
    ///
    /// As for [`try_acquire`](Self::try_acquire).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(strata::sync::Semaphore::new(1));
    /// let permit = sem.try_acquire_owned().unwrap();
    /// assert!(sem.try_acquire_owned().is_err());
    /// # drop(permit);
    /// ```
    #[track_caller]
    pub fn try_acquire_owned(self: &Arc<Self>) -> Result<OwnedSemaphorePermit, AcquireError> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Try);
        self.raw.try_acquire(1, Mode::Unchecked)?;
        Ok(OwnedSemaphorePermit::new(Arc::clone(self), 1, held))
    }

    /// [`acquire_async`](Self::acquire_async) returning an owned permit,
    /// for a permit that moves into a spawned task. Cancel-safe.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::sync::Arc;
    /// let sem = Arc::new(strata::sync::Semaphore::new(1));
    /// let permit = sem.acquire_owned_async().await;
    /// assert_eq!(sem.available_permits(), 0);
    /// drop(permit);
    /// # });
    /// ```
    #[track_caller]
    pub fn acquire_owned_async(
        self: &Arc<Self>,
    ) -> impl Future<Output = OwnedSemaphorePermit> + use<> {
        let entry = self.class.task_entry(AcquireKind::Exclusive, How::Ordered);
        let sem = Arc::clone(self);
        async move {
            let (outcome, held) = sem
                .raw
                .acquire(1, Mode::Unchecked)
                .map(entry, |outcome, held| (outcome, held))
                .await;
            match outcome {
                Ok(()) => OwnedSemaphorePermit::new(sem, 1, held),
                Err(err) => unreachable!("unbounded acquire failed: {err}"),
            }
        }
    }

    /// [`acquire_many_async`](Self::acquire_many_async) returning an owned
    /// permit. Cancel-safe.
    ///
    /// # Errors
    ///
    /// As for [`acquire_many`](Self::acquire_many).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::sync::Arc;
    /// let sem = Arc::new(strata::sync::Semaphore::new(2));
    /// let permit = sem.acquire_many_owned_async(2).await.unwrap();
    /// assert_eq!(permit.num_permits(), 2);
    /// # });
    /// ```
    #[track_caller]
    pub fn acquire_many_owned_async(
        self: &Arc<Self>,
        n: usize,
    ) -> impl Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + use<> {
        let entry = self.class.task_entry(AcquireKind::Exclusive, How::Ordered);
        let sem = Arc::clone(self);
        async move {
            let (outcome, held) = sem
                .raw
                .acquire(n, Mode::Checked)
                .map(entry, |outcome, held| (outcome, held))
                .await;
            outcome?;
            Ok(OwnedSemaphorePermit::new(sem, n, held))
        }
    }

    /// Permits free right now. Zero while anyone waits, since free permits
    /// go to waiters first.
    ///
    /// ```
    /// let sem = strata::sync::Semaphore::new(3);
    /// let _p = sem.acquire();
    /// assert_eq!(sem.available_permits(), 2);
    /// ```
    pub fn available_permits(&self) -> usize {
        self.raw.available_permits()
    }

    /// Permits the semaphore manages, held or free: the initial count plus
    /// [added](Self::add_permits) minus [forgotten](SemaphorePermit::forget).
    ///
    /// ```
    /// let sem = strata::sync::Semaphore::new(3);
    /// sem.acquire().forget();
    /// assert_eq!(sem.total_permits(), 2);
    /// ```
    pub fn total_permits(&self) -> usize {
        self.raw.total_permits()
    }

    /// Adds `n` permits, waking waiters they satisfy. The total is capped at
    /// [`MAX_PERMITS`](Self::MAX_PERMITS); returns how many were added.
    ///
    /// ```
    /// let sem = strata::sync::Semaphore::new(0);
    /// assert_eq!(sem.add_permits(2), 2);
    /// assert_eq!(sem.available_permits(), 2);
    /// ```
    pub fn add_permits(&self, n: usize) -> usize {
        self.raw.add_permits(n)
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("class", &self.class)
            .field("available", &self.available_permits())
            .field("total", &self.total_permits())
            .finish()
    }
}

/// Permits taken from a [`Semaphore`], given back when dropped.
///
/// ```
/// let sem = strata::sync::Semaphore::new(2);
/// {
///     let _permit = sem.acquire_many(2).unwrap();
///     assert_eq!(sem.available_permits(), 0);
/// }
/// assert_eq!(sem.available_permits(), 2);
/// ```
#[must_use = "the permits are given back as soon as the permit is dropped"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
    permits: usize,
    _held: HeldToken,
}

impl<'a> SemaphorePermit<'a> {
    fn new(sem: &'a Semaphore, permits: usize, held: HeldToken) -> Self {
        Self {
            sem,
            permits,
            _held: held,
        }
    }

    /// How many permits this holds.
    ///
    /// ```
    /// let sem = strata::sync::Semaphore::new(3);
    /// assert_eq!(sem.acquire_many(2).unwrap().num_permits(), 2);
    /// ```
    pub fn num_permits(&self) -> usize {
        self.permits
    }

    /// Removes the permits from the semaphore for good instead of giving them
    /// back: [`Semaphore::total_permits`] drops by
    /// [`num_permits`](Self::num_permits). Waiters asking for more than is
    /// left fail with [`AcquireError::TooMany`].
    ///
    /// ```
    /// let sem = strata::sync::Semaphore::new(2);
    /// sem.acquire().forget();
    /// assert_eq!(sem.available_permits(), 1);
    /// assert_eq!(sem.total_permits(), 1);
    /// ```
    pub fn forget(mut self) {
        let n = std::mem::take(&mut self.permits);
        self.sem.raw.forget(n);
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.sem.raw.release(self.permits);
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit")
            .field("permits", &self.permits)
            .finish_non_exhaustive()
    }
}

/// Permits tied to an `Arc<Semaphore>`, so they can move into threads and
/// tasks; given back when dropped.
///
/// ```
/// use std::sync::Arc;
/// let sem = Arc::new(strata::sync::Semaphore::new(1));
/// let permit = sem.acquire_owned();
/// assert_eq!(permit.semaphore().available_permits(), 0);
/// ```
#[must_use = "the permits are given back as soon as the permit is dropped"]
pub struct OwnedSemaphorePermit {
    sem: Arc<Semaphore>,
    permits: usize,
    _held: HeldToken,
}

impl OwnedSemaphorePermit {
    fn new(sem: Arc<Semaphore>, permits: usize, held: HeldToken) -> Self {
        Self {
            sem,
            permits,
            _held: held,
        }
    }

    /// How many permits this holds.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(strata::sync::Semaphore::new(2));
    /// assert_eq!(sem.acquire_many_owned(2).unwrap().num_permits(), 2);
    /// ```
    pub fn num_permits(&self) -> usize {
        self.permits
    }

    /// The semaphore the permits belong to.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(strata::sync::Semaphore::new(1));
    /// let permit = sem.acquire_owned();
    /// assert!(Arc::ptr_eq(permit.semaphore(), &sem));
    /// ```
    pub fn semaphore(&self) -> &Arc<Semaphore> {
        &self.sem
    }

    /// Removes the permits from the semaphore for good; see
    /// [`SemaphorePermit::forget`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(strata::sync::Semaphore::new(2));
    /// sem.acquire_owned().forget();
    /// assert_eq!(sem.total_permits(), 1);
    /// ```
    pub fn forget(mut self) {
        let n = std::mem::take(&mut self.permits);
        self.sem.raw.forget(n);
    }
}

impl Drop for OwnedSemaphorePermit {
    fn drop(&mut self) {
        self.sem.raw.release(self.permits);
    }
}

impl fmt::Debug for OwnedSemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedSemaphorePermit")
            .field("permits", &self.permits)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn permits_are_send_and_sync() {
        assert_send_sync::<Semaphore>();
        assert_send_sync::<SemaphorePermit<'static>>();
        assert_send_sync::<OwnedSemaphorePermit>();
    }

    #[test]
    fn zero_permit_requests_succeed_at_once() {
        let sem = Semaphore::new(0);
        assert_eq!(sem.acquire_many(0).unwrap().num_permits(), 0);
        assert_eq!(sem.try_acquire_many(0).unwrap().num_permits(), 0);
        assert_eq!(sem.try_acquire().unwrap_err(), AcquireError::WouldBlock);
    }

    #[test]
    fn forgotten_permits_shrink_the_total_and_fail_doomed_waiters() {
        let sem = Arc::new(Semaphore::new(2));
        let one = sem.acquire();
        let waiter = {
            let sem = sem.clone();
            std::thread::spawn(move || sem.acquire_many(2).map(|p| p.num_permits()))
        };
        // Whether the waiter is queued yet or not, it cannot end up waiting forever.
        one.forget();
        assert_eq!(
            waiter.join().unwrap(),
            Err(AcquireError::TooMany {
                requested: 2,
                total: 1
            })
        );
        assert_eq!(sem.available_permits(), 1);
    }

    #[test]
    fn owned_permit_moves_between_threads() {
        let sem = Arc::new(Semaphore::new(1));
        let permit = sem.acquire_owned();
        let t = std::thread::spawn(move || permit.num_permits());
        assert_eq!(t.join().unwrap(), 1);
        assert_eq!(sem.available_permits(), 1);
    }
}
