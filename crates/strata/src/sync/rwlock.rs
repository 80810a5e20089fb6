//! A blocking reader-writer lock: parking_lot's, plus a lock class.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crate::diag::{AcquireKind, ClassKey, ClassSlot, HeldToken, How};

/// A reader-writer lock: many readers or one writer, no poisoning.
///
/// It is parking_lot's `RwLock` plus a lock class for [`crate::diag`]. The
/// lock is task-fair: a waiting writer blocks new readers, so writers are not
/// starved. One consequence: a thread that takes `read` twice can deadlock if
/// a writer queues in between, so do not read-lock recursively.
///
/// Besides plain reads and writes there is an **upgradable read**: a read
/// that can later become a write without letting another writer in between.
/// Only one upgradable read exists at a time, alongside any number of plain
/// readers.
///
/// ```
/// use strata::sync::RwLock;
///
/// let config = RwLock::new(vec![1, 2, 3]);
/// {
///     let r1 = config.read();
///     // Readers share. (A second blocking `read` on one thread is reported:
///     // it deadlocks as soon as a writer queues between the two.)
///     let r2 = config.try_read().unwrap();
///     assert_eq!(r1.len() + r2.len(), 6);
/// }
/// config.write().push(4);
/// assert_eq!(config.read().len(), 4);
/// ```
pub struct RwLock<T: ?Sized> {
    class: ClassSlot,
    inner: parking_lot::RwLock<T>,
}

/// Shared access to an [`RwLock`]'s data; `!Send`, releases on drop.
///
/// ```
/// let lock = strata::sync::RwLock::new(5);
/// let guard = lock.read();
/// assert_eq!(*guard, 5);
/// ```
#[must_use = "if unused the RwLock will immediately unlock"]
#[clippy::has_significant_drop]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    // First, so the lock is released before the class is.
    inner: parking_lot::RwLockReadGuard<'a, T>,
    // Read only by its Drop (the release hook of issue 3).
    _held: HeldToken,
    _not_send: PhantomData<lock_api::GuardNoSend>,
}

/// Exclusive access to an [`RwLock`]'s data; `!Send`, releases on drop.
///
/// ```
/// let lock = strata::sync::RwLock::new(5);
/// let mut guard = lock.write();
/// *guard += 1;
/// assert_eq!(*guard, 6);
/// ```
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<strata::sync::RwLockWriteGuard<'static, u32>>();
/// ```
#[must_use = "if unused the RwLock will immediately unlock"]
#[clippy::has_significant_drop]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    inner: parking_lot::RwLockWriteGuard<'a, T>,
    held: HeldToken,
    _not_send: PhantomData<lock_api::GuardNoSend>,
}

/// A read of an [`RwLock`] that can be upgraded to a write without another
/// writer getting in between; `!Send`, releases on drop.
///
/// ```
/// use strata::sync::{RwLock, RwLockUpgradableReadGuard};
///
/// let cache = RwLock::new(None::<String>);
/// let read = cache.upgradable_read();
/// if read.is_none() {
///     let mut write = RwLockUpgradableReadGuard::upgrade(read);
///     *write = Some("filled once".into());
/// }
/// assert_eq!(cache.read().as_deref(), Some("filled once"));
/// ```
#[must_use = "if unused the RwLock will immediately unlock"]
#[clippy::has_significant_drop]
pub struct RwLockUpgradableReadGuard<'a, T: ?Sized> {
    inner: parking_lot::RwLockUpgradableReadGuard<'a, T>,
    held: HeldToken,
    _not_send: PhantomData<lock_api::GuardNoSend>,
}

impl<T> RwLock<T> {
    /// A new unlocked lock whose class is the caller's source location.
    ///
    /// ```
    /// use strata::sync::RwLock;
    ///
    /// static SETTINGS: RwLock<u32> = RwLock::new(10);
    /// assert_eq!(*SETTINGS.read(), 10);
    /// ```
    #[track_caller]
    #[inline]
    pub const fn new(value: T) -> Self {
        Self {
            class: ClassSlot::site(),
            inner: parking_lot::RwLock::new(value),
        }
    }

    /// A new unlocked lock in the class `name`.
    ///
    /// ```
    /// let routes = strata::sync::RwLock::named("routes", vec!["/"]);
    /// assert_eq!(routes.read().len(), 1);
    /// ```
    #[track_caller]
    #[inline]
    pub const fn named(name: &'static str, value: T) -> Self {
        Self {
            class: ClassSlot::named(name),
            inner: parking_lot::RwLock::new(value),
        }
    }

    /// Consumes the lock and returns the data.
    ///
    /// ```
    /// let lock = strata::sync::RwLock::new(3);
    /// assert_eq!(lock.into_inner(), 3);
    /// ```
    #[inline]
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Blocks until no writer holds or waits for the lock, then shares it.
    ///
    /// ```
    /// let lock = strata::sync::RwLock::new(1);
    /// let a = lock.read();
    /// let b = lock.try_read().unwrap(); // readers share
    /// assert_eq!(*a + *b, 2);
    /// ```
    #[track_caller]
    #[inline]
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        let held = self.class.enter(AcquireKind::Shared, How::Blocking);
        let inner = held.wait(|| self.inner.try_read(), || self.inner.read());
        RwLockReadGuard::new(inner, held)
    }

    /// Blocks until the lock is free, then takes it exclusively.
    ///
    /// ```
    /// let lock = strata::sync::RwLock::new(1);
    /// *lock.write() = 2;
    /// assert_eq!(*lock.read(), 2);
    /// ```
    #[track_caller]
    #[inline]
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Blocking);
        let inner = held.wait(|| self.inner.try_write(), || self.inner.write());
        RwLockWriteGuard::new(inner, held)
    }

    /// Blocks until no writer or other upgradable reader holds the lock, then
    /// takes an upgradable read.
    ///
    /// ```
    /// use strata::sync::{RwLock, RwLockUpgradableReadGuard};
    ///
    /// let lock = RwLock::new(1);
    /// let up = lock.upgradable_read();
    /// let plain = lock.try_read().unwrap(); // plain readers still get in
    /// assert_eq!(*up, *plain);
    /// drop(plain);
    /// *RwLockUpgradableReadGuard::upgrade(up) += 1;
    /// assert_eq!(*lock.read(), 2);
    /// ```
    #[track_caller]
    #[inline]
    pub fn upgradable_read(&self) -> RwLockUpgradableReadGuard<'_, T> {
        let held = self.class.enter(AcquireKind::Upgradable, How::Blocking);
        let inner = held.wait(
            || self.inner.try_upgradable_read(),
            || self.inner.upgradable_read(),
        );
        RwLockUpgradableReadGuard::new(inner, held)
    }

    /// A read if one can be had without blocking.
    ///
    /// ```
    /// let lock = strata::sync::RwLock::new(1);
    /// let w = lock.write();
    /// assert!(lock.try_read().is_none());
    /// drop(w);
    /// assert!(lock.try_read().is_some());
    /// ```
    #[track_caller]
    #[inline]
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        let held = self.class.enter(AcquireKind::Shared, How::Try);
        self.inner.try_read().map(|g| RwLockReadGuard::new(g, held))
    }

    /// A write if one can be had without blocking.
    ///
    /// ```
    /// let lock = strata::sync::RwLock::new(1);
    /// let r = lock.read();
    /// assert!(lock.try_write().is_none());
    /// drop(r);
    /// assert!(lock.try_write().is_some());
    /// ```
    #[track_caller]
    #[inline]
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Try);
        self.inner
            .try_write()
            .map(|g| RwLockWriteGuard::new(g, held))
    }

    /// An upgradable read if one can be had without blocking.
    ///
    /// ```
    /// let lock = strata::sync::RwLock::new(1);
    /// let first = lock.try_upgradable_read();
    /// assert!(first.is_some());
    /// assert!(lock.try_upgradable_read().is_none()); // only one at a time
    /// ```
    #[track_caller]
    #[inline]
    pub fn try_upgradable_read(&self) -> Option<RwLockUpgradableReadGuard<'_, T>> {
        let held = self.class.enter(AcquireKind::Upgradable, How::Try);
        self.inner
            .try_upgradable_read()
            .map(|g| RwLockUpgradableReadGuard::new(g, held))
    }

    /// Waits at most `timeout` for a read.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lock = strata::sync::RwLock::new(1);
    /// let w = lock.write();
    /// assert!(lock.try_read_for(Duration::from_millis(1)).is_none());
    /// drop(w);
    /// assert!(lock.try_read_for(Duration::from_millis(1)).is_some());
    /// ```
    #[track_caller]
    #[inline]
    pub fn try_read_for(&self, timeout: Duration) -> Option<RwLockReadGuard<'_, T>> {
        let held = self.class.enter(AcquireKind::Shared, How::Try);
        held.wait(
            || self.inner.try_read().map(Some),
            || self.inner.try_read_for(timeout),
        )
        .map(|g| RwLockReadGuard::new(g, held))
    }

    /// Waits until `deadline` at the latest for a read.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let lock = strata::sync::RwLock::new(1);
    /// assert!(lock.try_read_until(Instant::now() + Duration::from_millis(1)).is_some());
    /// ```
    #[track_caller]
    #[inline]
    pub fn try_read_until(&self, deadline: Instant) -> Option<RwLockReadGuard<'_, T>> {
        let held = self.class.enter(AcquireKind::Shared, How::Try);
        held.wait(
            || self.inner.try_read().map(Some),
            || self.inner.try_read_until(deadline),
        )
        .map(|g| RwLockReadGuard::new(g, held))
    }

    /// Waits at most `timeout` for a write.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lock = strata::sync::RwLock::new(1);
    /// let r = lock.read();
    /// assert!(lock.try_write_for(Duration::from_millis(1)).is_none());
    /// drop(r);
    /// assert!(lock.try_write_for(Duration::from_millis(1)).is_some());
    /// ```
    #[track_caller]
    #[inline]
    pub fn try_write_for(&self, timeout: Duration) -> Option<RwLockWriteGuard<'_, T>> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Try);
        held.wait(
            || self.inner.try_write().map(Some),
            || self.inner.try_write_for(timeout),
        )
        .map(|g| RwLockWriteGuard::new(g, held))
    }

    /// Waits until `deadline` at the latest for a write.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let lock = strata::sync::RwLock::new(1);
    /// assert!(lock.try_write_until(Instant::now() + Duration::from_millis(1)).is_some());
    /// ```
    #[track_caller]
    #[inline]
    pub fn try_write_until(&self, deadline: Instant) -> Option<RwLockWriteGuard<'_, T>> {
        let held = self.class.enter(AcquireKind::Exclusive, How::Try);
        held.wait(
            || self.inner.try_write().map(Some),
            || self.inner.try_write_until(deadline),
        )
        .map(|g| RwLockWriteGuard::new(g, held))
    }

    /// Waits at most `timeout` for an upgradable read.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lock = strata::sync::RwLock::new(1);
    /// let up = lock.upgradable_read();
    /// assert!(lock.try_upgradable_read_for(Duration::from_millis(1)).is_none());
    /// drop(up);
    /// assert!(lock.try_upgradable_read_for(Duration::from_millis(1)).is_some());
    /// ```
    #[track_caller]
    #[inline]
    pub fn try_upgradable_read_for(
        &self,
        timeout: Duration,
    ) -> Option<RwLockUpgradableReadGuard<'_, T>> {
        let held = self.class.enter(AcquireKind::Upgradable, How::Try);
        held.wait(
            || self.inner.try_upgradable_read().map(Some),
            || self.inner.try_upgradable_read_for(timeout),
        )
        .map(|g| RwLockUpgradableReadGuard::new(g, held))
    }

    /// Waits until `deadline` at the latest for an upgradable read.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let lock = strata::sync::RwLock::new(1);
    /// let deadline = Instant::now() + Duration::from_millis(1);
    /// assert!(lock.try_upgradable_read_until(deadline).is_some());
    /// ```
    #[track_caller]
    #[inline]
    pub fn try_upgradable_read_until(
        &self,
        deadline: Instant,
    ) -> Option<RwLockUpgradableReadGuard<'_, T>> {
        let held = self.class.enter(AcquireKind::Upgradable, How::Try);
        held.wait(
            || self.inner.try_upgradable_read().map(Some),
            || self.inner.try_upgradable_read_until(deadline),
        )
        .map(|g| RwLockUpgradableReadGuard::new(g, held))
    }

    /// Mutable access without locking: `&mut self` already proves exclusivity.
    ///
    /// ```
    /// let mut lock = strata::sync::RwLock::new(1);
    /// *lock.get_mut() = 2;
    /// assert_eq!(*lock.read(), 2);
    /// ```
    #[inline]
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    /// Whether anyone holds the lock in any mode; a snapshot.
    ///
    /// ```
    /// let lock = strata::sync::RwLock::new(());
    /// let r = lock.read();
    /// assert!(lock.is_locked());
    /// drop(r);
    /// assert!(!lock.is_locked());
    /// ```
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// Whether a writer holds the lock; a snapshot.
    ///
    /// ```
    /// let lock = strata::sync::RwLock::new(());
    /// let r = lock.read();
    /// assert!(!lock.is_locked_exclusive());
    /// drop(r);
    /// let w = lock.write();
    /// assert!(lock.is_locked_exclusive());
    /// ```
    #[inline]
    pub fn is_locked_exclusive(&self) -> bool {
        self.inner.is_locked_exclusive()
    }

    /// The lock class, or `None` when checking is compiled out.
    ///
    /// ```
    /// let lock = strata::sync::RwLock::named("routes", ());
    /// if let Some(class) = lock.class() {
    ///     assert_eq!(class.name(), Some("routes"));
    /// }
    /// ```
    #[inline]
    pub fn class(&self) -> Option<ClassKey> {
        self.class.key()
    }
}

impl<T: Default> Default for RwLock<T> {
    /// A lock holding `T::default()`, classed at the caller.
    ///
    /// ```
    /// let lock: strata::sync::RwLock<u8> = Default::default();
    /// assert_eq!(*lock.read(), 0);
    /// ```
    #[track_caller]
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    /// A lock holding `value`, classed at the caller.
    ///
    /// ```
    /// let lock = strata::sync::RwLock::from("x");
    /// assert_eq!(*lock.read(), "x");
    /// ```
    #[track_caller]
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        d.field("class", &self.class);
        // Never block in Debug: a writer means a placeholder.
        match self.inner.try_read() {
            Some(data) => d.field("data", &&*data),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

impl<'a, T: ?Sized> RwLockReadGuard<'a, T> {
    #[inline]
    fn new(inner: parking_lot::RwLockReadGuard<'a, T>, held: HeldToken) -> Self {
        Self {
            inner,
            _held: held,
            _not_send: PhantomData,
        }
    }
}

impl<'a, T: ?Sized> RwLockWriteGuard<'a, T> {
    #[inline]
    fn new(inner: parking_lot::RwLockWriteGuard<'a, T>, held: HeldToken) -> Self {
        Self {
            inner,
            held,
            _not_send: PhantomData,
        }
    }

    /// Turns the write into a read atomically: no other writer can get in
    /// between, and readers waiting behind this writer are let in.
    ///
    /// ```
    /// use strata::sync::{RwLock, RwLockWriteGuard};
    ///
    /// let lock = RwLock::new(1);
    /// let mut w = lock.write();
    /// *w = 2;
    /// let r = RwLockWriteGuard::downgrade(w);
    /// let other = lock.try_read().unwrap(); // readers get in now
    /// assert_eq!(*r + *other, 4);
    /// ```
    #[inline]
    pub fn downgrade(s: Self) -> RwLockReadGuard<'a, T> {
        let Self {
            inner, mut held, ..
        } = s;
        held.set_kind(AcquireKind::Shared);
        RwLockReadGuard::new(parking_lot::RwLockWriteGuard::downgrade(inner), held)
    }

    /// Turns the write into an upgradable read atomically.
    ///
    /// ```
    /// use strata::sync::{RwLock, RwLockUpgradableReadGuard, RwLockWriteGuard};
    ///
    /// let lock = RwLock::new(1);
    /// let up = RwLockWriteGuard::downgrade_to_upgradable(lock.write());
    /// assert_eq!(*lock.try_read().unwrap(), 1); // plain readers get in
    /// *RwLockUpgradableReadGuard::upgrade(up) = 3;
    /// assert_eq!(*lock.read(), 3);
    /// ```
    #[inline]
    pub fn downgrade_to_upgradable(s: Self) -> RwLockUpgradableReadGuard<'a, T> {
        let Self {
            inner, mut held, ..
        } = s;
        held.set_kind(AcquireKind::Upgradable);
        RwLockUpgradableReadGuard::new(
            parking_lot::RwLockWriteGuard::downgrade_to_upgradable(inner),
            held,
        )
    }
}

impl<'a, T: ?Sized> RwLockUpgradableReadGuard<'a, T> {
    #[inline]
    fn new(inner: parking_lot::RwLockUpgradableReadGuard<'a, T>, held: HeldToken) -> Self {
        Self {
            inner,
            held,
            _not_send: PhantomData,
        }
    }

    /// Blocks until the plain readers have left, then becomes a write.
    ///
    /// No other writer can run between the read and the write, so what was
    /// read is still true.
    ///
    /// ```
    /// use strata::sync::{RwLock, RwLockUpgradableReadGuard};
    ///
    /// let lock = RwLock::new(vec![1]);
    /// let up = lock.upgradable_read();
    /// if up.len() < 2 {
    ///     RwLockUpgradableReadGuard::upgrade(up).push(2);
    /// }
    /// assert_eq!(*lock.read(), [1, 2]);
    /// ```
    #[track_caller]
    #[inline]
    pub fn upgrade(s: Self) -> RwLockWriteGuard<'a, T> {
        // Blocking here waits only for plain readers of this same lock, which
        // the checker already saw when the upgradable read was taken.
        let Self {
            inner, mut held, ..
        } = s;
        held.set_kind(AcquireKind::Exclusive);
        RwLockWriteGuard::new(parking_lot::RwLockUpgradableReadGuard::upgrade(inner), held)
    }

    /// Becomes a write if no plain reader is in; otherwise hands the
    /// upgradable read back.
    ///
    /// ```
    /// use strata::sync::{RwLock, RwLockUpgradableReadGuard};
    ///
    /// let lock = RwLock::new(0);
    /// let up = lock.upgradable_read();
    /// let reader = lock.try_read().unwrap();
    /// let up = RwLockUpgradableReadGuard::try_upgrade(up).unwrap_err(); // a reader is in
    /// drop(reader);
    /// let mut w = RwLockUpgradableReadGuard::try_upgrade(up).ok().unwrap();
    /// *w = 1;
    /// ```
    #[inline]
    pub fn try_upgrade(s: Self) -> Result<RwLockWriteGuard<'a, T>, Self> {
        let Self {
            inner, mut held, ..
        } = s;
        match parking_lot::RwLockUpgradableReadGuard::try_upgrade(inner) {
            Ok(write) => {
                held.set_kind(AcquireKind::Exclusive);
                Ok(RwLockWriteGuard::new(write, held))
            }
            Err(inner) => Err(Self::new(inner, held)),
        }
    }

    /// Waits at most `timeout` for the plain readers to leave; on timeout
    /// hands the upgradable read back.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::sync::{RwLock, RwLockUpgradableReadGuard};
    ///
    /// let lock = RwLock::new(0);
    /// let up = lock.upgradable_read();
    /// let w = RwLockUpgradableReadGuard::try_upgrade_for(up, Duration::from_millis(1));
    /// assert!(w.is_ok()); // nobody else was reading
    /// ```
    #[inline]
    pub fn try_upgrade_for(s: Self, timeout: Duration) -> Result<RwLockWriteGuard<'a, T>, Self> {
        let Self {
            inner, mut held, ..
        } = s;
        match parking_lot::RwLockUpgradableReadGuard::try_upgrade_for(inner, timeout) {
            Ok(write) => {
                held.set_kind(AcquireKind::Exclusive);
                Ok(RwLockWriteGuard::new(write, held))
            }
            Err(inner) => Err(Self::new(inner, held)),
        }
    }

    /// Gives up the right to upgrade, keeping a plain read.
    ///
    /// ```
    /// use strata::sync::{RwLock, RwLockUpgradableReadGuard};
    ///
    /// let lock = RwLock::new(1);
    /// let r = RwLockUpgradableReadGuard::downgrade(lock.upgradable_read());
    /// let other = lock.try_upgradable_read().unwrap(); // the upgrade slot is free again
    /// assert_eq!(*r, *other);
    /// ```
    #[inline]
    pub fn downgrade(s: Self) -> RwLockReadGuard<'a, T> {
        let Self {
            inner, mut held, ..
        } = s;
        held.set_kind(AcquireKind::Shared);
        RwLockReadGuard::new(
            parking_lot::RwLockUpgradableReadGuard::downgrade(inner),
            held,
        )
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: ?Sized> Deref for RwLockUpgradableReadGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.inner
    }
}

macro_rules! fmt_via_deref {
    ($($guard:ident),*) => {$(
        impl<T: ?Sized + fmt::Debug> fmt::Debug for $guard<'_, T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&**self, f)
            }
        }

        impl<T: ?Sized + fmt::Display> fmt::Display for $guard<'_, T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&**self, f)
            }
        }
    )*};
}

fmt_via_deref!(RwLockReadGuard, RwLockWriteGuard, RwLockUpgradableReadGuard);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(strata_checked))]
    fn same_size_as_parking_lot_when_unchecked() {
        use std::mem::size_of;
        assert_eq!(
            size_of::<RwLock<u64>>(),
            size_of::<parking_lot::RwLock<u64>>()
        );
    }

    #[test]
    fn guards_are_not_send() {
        trait AmbiguousIfSend<A> {
            fn check() {}
        }
        impl<T: ?Sized> AmbiguousIfSend<()> for T {}
        impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}
        <RwLockReadGuard<'static, u32> as AmbiguousIfSend<_>>::check();
        <RwLockWriteGuard<'static, u32> as AmbiguousIfSend<_>>::check();
        <RwLockUpgradableReadGuard<'static, u32> as AmbiguousIfSend<_>>::check();
    }

    #[test]
    fn downgrade_chain_keeps_value() {
        let lock = RwLock::new(1);
        let mut w = lock.write();
        *w = 2;
        let up = RwLockWriteGuard::downgrade_to_upgradable(w);
        assert!(lock.try_write().is_none());
        let mut w = RwLockUpgradableReadGuard::upgrade(up);
        *w = 3;
        let r = RwLockWriteGuard::downgrade(w);
        assert_eq!(*r, 3);
        assert!(lock.try_upgradable_read().is_some());
    }

    #[test]
    fn debug_does_not_block_when_write_locked() {
        let lock = RwLock::new(5);
        assert!(format!("{lock:?}").contains('5'));
        let _w = lock.write();
        assert!(format!("{lock:?}").contains("<locked>"));
    }
}
