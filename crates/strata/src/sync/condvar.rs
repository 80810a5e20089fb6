//! A condition variable for [`Mutex`](super::Mutex): parking_lot's, plus a lock class.

use std::fmt;
use std::panic::Location;
use std::time::{Duration, Instant};

use super::mutex::MutexGuard;
use crate::diag::{AcquireKind, ClassKey, ClassSlot, How};

/// Lets threads sleep until another thread changes the data behind a
/// [`Mutex`](super::Mutex) and says so.
///
/// Waits take the `MutexGuard` by `&mut`: the mutex is released while the
/// thread sleeps and held again when `wait` returns. Wake-ups can be spurious
/// and notifications are not remembered, so always wait for a *condition* on
/// the data — [`wait_while`](Self::wait_while) does the loop for you.
///
/// For the order checker, waiting counts as taking the condvar's class
/// (with the wait's own mutex given up, as it really is), and a notify
/// counts as the class coming before every lock the notifier holds. So a
/// thread that waits while holding some other lock the notifier needs —
/// the notifier can never get it, so the waiter is never woken — is
/// reported the first time both sides have run, even if they never
/// actually met:
///
/// ```no_run
/// use strata::sync::{Condvar, Mutex};
///
/// let (config, ready, done) = (Mutex::new(0), Mutex::new(false), Condvar::new());
/// // Waiter: holds `config` while it waits.
/// let _config = config.lock();
/// let mut r = ready.lock();
/// // Notifier (elsewhere): needs `config` before it can notify.
/// //     let _config = config.lock();
/// //     *ready.lock() = true;
/// //     done.notify_all();   // <- reported: config --> done --> config
/// done.wait_while(&mut r, |r| !*r);
/// ```
///
/// ```
/// use std::collections::VecDeque;
/// use strata::sync::{Condvar, Mutex};
///
/// let queue = Mutex::new(VecDeque::new());
/// let ready = Condvar::new();
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         for job in 0..3 {
///             queue.lock().push_back(job);
///             ready.notify_one();
///         }
///     });
///     let mut got = Vec::new();
///     let mut q = queue.lock();
///     while got.len() < 3 {
///         ready.wait_while(&mut q, |q| q.is_empty());
///         got.extend(q.drain(..));
///     }
///     assert_eq!(got, [0, 1, 2]);
/// });
/// ```
///
/// # Panics
///
/// A condvar may only be used with one mutex at a time: waiting with guards
/// of two different mutexes concurrently panics (parking_lot's rule; it would
/// otherwise lose wake-ups).
pub struct Condvar {
    class: ClassSlot,
    inner: parking_lot::Condvar,
}

/// Whether a timed wait on a [`Condvar`] returned because the time ran out.
///
/// ```
/// use std::time::Duration;
/// use strata::sync::{Condvar, Mutex};
///
/// let (m, cv) = (Mutex::new(()), Condvar::new());
/// let r = cv.wait_timeout(&mut m.lock(), Duration::from_millis(1));
/// assert!(r.timed_out()); // nobody notified
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the wait ended because the timeout elapsed (for the `_while`
    /// forms: and the condition still held).
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::sync::{Condvar, Mutex};
    ///
    /// let (m, cv) = (Mutex::new(true), Condvar::new());
    /// let r = cv.wait_timeout_while(&mut m.lock(), Duration::from_secs(5), |go| !*go);
    /// assert!(!r.timed_out()); // the condition was already false
    /// ```
    #[inline]
    pub fn timed_out(self) -> bool {
        self.0
    }
}

impl Condvar {
    /// A new condvar whose class is the caller's source location.
    ///
    /// ```
    /// use strata::sync::Condvar;
    ///
    /// static WAKE: Condvar = Condvar::new();
    /// assert!(!WAKE.notify_one()); // nobody waiting
    /// ```
    #[track_caller]
    #[inline]
    pub const fn new() -> Self {
        Self {
            class: ClassSlot::site(),
            inner: parking_lot::Condvar::new(),
        }
    }

    /// A new condvar in the class `name`.
    ///
    /// ```
    /// let cv = strata::sync::Condvar::named("work-ready");
    /// assert_eq!(cv.notify_all(), 0);
    /// ```
    #[track_caller]
    #[inline]
    pub const fn named(name: &'static str) -> Self {
        Self {
            class: ClassSlot::named(name),
            inner: parking_lot::Condvar::new(),
        }
    }

    /// Releases the guard's mutex, sleeps until notified (or spuriously
    /// woken), then re-locks it.
    ///
    /// ```
    /// use strata::sync::{Condvar, Mutex};
    ///
    /// let (done, cv) = (Mutex::new(false), Condvar::new());
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         *done.lock() = true;
    ///         cv.notify_all();
    ///     });
    ///     let mut d = done.lock();
    ///     while !*d {
    ///         cv.wait(&mut d);
    ///     }
    /// });
    /// ```
    #[track_caller]
    #[inline]
    pub fn wait<T: ?Sized>(&self, guard: &mut MutexGuard<'_, T>) {
        self.waiting(guard, How::Blocking, |cv, inner| cv.wait(inner));
    }

    /// Waits until `condition` returns false; returns at once if it already
    /// does. The condition is checked with the mutex held.
    ///
    /// ```
    /// use strata::sync::{Condvar, Mutex};
    ///
    /// let (left, cv) = (Mutex::new(3), Condvar::new());
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         for _ in 0..3 {
    ///             *left.lock() -= 1;
    ///             cv.notify_one();
    ///         }
    ///     });
    ///     cv.wait_while(&mut left.lock(), |n| *n > 0);
    /// });
    /// assert_eq!(*left.lock(), 0);
    /// ```
    #[track_caller]
    #[inline]
    pub fn wait_while<T: ?Sized>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        condition: impl FnMut(&mut T) -> bool,
    ) {
        self.waiting(guard, How::Blocking, |cv, inner| {
            cv.wait_while(inner, condition);
        });
    }

    /// Like [`wait`](Self::wait), giving up after `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::sync::{Condvar, Mutex};
    ///
    /// let (m, cv) = (Mutex::new(0), Condvar::new());
    /// let mut g = m.lock();
    /// let r = cv.wait_timeout(&mut g, Duration::from_millis(1));
    /// assert!(r.timed_out());
    /// *g += 1; // the mutex is held again either way
    /// ```
    #[track_caller]
    #[inline]
    pub fn wait_timeout<T: ?Sized>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        timeout: Duration,
    ) -> WaitTimeoutResult {
        self.waiting(guard, How::Try, |cv, inner| {
            WaitTimeoutResult(cv.wait_for(inner, timeout).timed_out())
        })
    }

    /// Like [`wait`](Self::wait), giving up at `deadline`.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use strata::sync::{Condvar, Mutex};
    ///
    /// let (m, cv) = (Mutex::new(()), Condvar::new());
    /// let deadline = Instant::now() + Duration::from_millis(1);
    /// assert!(cv.wait_until(&mut m.lock(), deadline).timed_out());
    /// ```
    #[track_caller]
    #[inline]
    pub fn wait_until<T: ?Sized>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        deadline: Instant,
    ) -> WaitTimeoutResult {
        self.waiting(guard, How::Try, |cv, inner| {
            WaitTimeoutResult(cv.wait_until(inner, deadline).timed_out())
        })
    }

    /// Like [`wait_while`](Self::wait_while), giving up after `timeout`
    /// (the whole wait, not each wake-up). Timed out means the condition
    /// still held at the end.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::sync::{Condvar, Mutex};
    ///
    /// let (ready, cv) = (Mutex::new(false), Condvar::new());
    /// let mut g = ready.lock();
    /// let r = cv.wait_timeout_while(&mut g, Duration::from_millis(1), |r| !*r);
    /// assert!(r.timed_out());
    /// assert!(!*g);
    /// ```
    #[track_caller]
    #[inline]
    pub fn wait_timeout_while<T: ?Sized>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        timeout: Duration,
        condition: impl FnMut(&mut T) -> bool,
    ) -> WaitTimeoutResult {
        self.waiting(guard, How::Try, |cv, inner| {
            WaitTimeoutResult(cv.wait_while_for(inner, condition, timeout).timed_out())
        })
    }

    /// Wakes one waiting thread, if any; returns whether one was woken.
    ///
    /// ```
    /// let cv = strata::sync::Condvar::new();
    /// assert!(!cv.notify_one());
    /// ```
    #[track_caller]
    #[inline]
    pub fn notify_one(&self) -> bool {
        self.class.signal();
        self.inner.notify_one()
    }

    /// Wakes every waiting thread; returns how many were woken.
    ///
    /// ```
    /// let cv = strata::sync::Condvar::new();
    /// assert_eq!(cv.notify_all(), 0);
    /// ```
    #[track_caller]
    #[inline]
    pub fn notify_all(&self) -> usize {
        self.class.signal();
        self.inner.notify_all()
    }

    /// Runs the wait `f` with the guard's mutex given up and the condvar's
    /// class taken, in that order: the mutex is released while the thread
    /// sleeps, so it is not held "while waiting", and the notifier usually
    /// holds it (see [`notify_one`](Self::notify_one)).
    #[track_caller]
    #[inline]
    fn waiting<T: ?Sized, U>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        how: How,
        f: impl FnOnce(&parking_lot::Condvar, &mut parking_lot::MutexGuard<'_, T>) -> U,
    ) -> U {
        let site = Location::caller();
        guard.released_raw(|inner| {
            let _waiting = self.class.enter_at(AcquireKind::Exclusive, how, site);
            f(&self.inner, inner)
        })
    }

    /// The condvar's class, or `None` when checking is compiled out.
    ///
    /// ```
    /// let cv = strata::sync::Condvar::named("ready");
    /// if let Some(class) = cv.class() {
    ///     assert_eq!(class.name(), Some("ready"));
    /// }
    /// ```
    #[inline]
    pub fn class(&self) -> Option<ClassKey> {
        self.class.key()
    }
}

impl Default for Condvar {
    /// A new condvar classed at the caller.
    ///
    /// ```
    /// let cv: strata::sync::Condvar = Default::default();
    /// assert!(!cv.notify_one());
    /// ```
    #[track_caller]
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar")
            .field("class", &self.class)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Mutex;

    #[test]
    fn wait_timeout_while_returns_early_when_condition_turns_false() {
        let (m, cv) = (Mutex::new(0), Condvar::new());
        std::thread::scope(|s| {
            s.spawn(|| {
                *m.lock() = 1;
                cv.notify_all();
            });
            let mut g = m.lock();
            // A generous timeout so only a real bug can time out.
            let r = cv.wait_timeout_while(&mut g, Duration::from_secs(30), |v| *v == 0);
            assert!(!r.timed_out());
            assert_eq!(*g, 1);
        });
    }
}
