//! Pseudo-locks: classes for things that are waited on like locks but are not
//! strata locks (leases, actor asks, file locks, semaphore waits,
//! `Versioned::write`), so mixed cycles such as lock → ask → lock are caught.

use super::class::{ClassKey, ClassSlot};
#[cfg(strata_checked)]
use super::engine::{self, AcquireOpts, HeldEntry};
use super::held::HeldSet;
use super::report::Access;

/// A lock class for something that is not a strata lock.
///
/// Taking the class with [`enter`](Class::enter) before waiting for the
/// resource, and keeping the guard while the resource is held, puts it in
/// the order graph exactly like a lock. The class is the name given here;
/// its construction site is kept for reports.
///
/// ```
/// use strata::diag::Class;
///
/// let lease = Class::new("lease");
/// let held = lease.enter(); // before waiting for the lease
/// // ... the lease is held here ...
/// drop(held);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Class {
    slot: ClassSlot,
}

/// Marks a [`Class`] held until dropped.
///
/// `Send`: a guard may be dropped on another thread than the one that took
/// it (a lease handed to a worker); the release then reaches the owning
/// thread at its next acquisition.
///
/// ```
/// let ask = strata::diag::Class::new("ask");
/// let guard = ask.enter();
/// drop(guard); // no longer held
/// ```
#[must_use = "the class is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct ClassGuard {
    #[cfg(strata_checked)]
    _entry: HeldEntry,
}

impl Class {
    /// A class called `name`; every `Class` with this name is the same class.
    ///
    /// ```
    /// let semaphore_wait = strata::diag::Class::new("pool permits");
    /// # let _ = semaphore_wait;
    /// ```
    #[track_caller]
    pub const fn new(name: &'static str) -> Self {
        Self {
            slot: ClassSlot::named(name),
        }
    }

    /// The class identity, when checking is compiled in.
    ///
    /// ```
    /// let class = strata::diag::Class::new("files");
    /// assert_eq!(class.key().is_some(), strata::diag::checking_enabled());
    /// ```
    pub fn key(&self) -> Option<ClassKey> {
        self.slot.key()
    }

    /// Takes the class exclusively on this thread, checking the order.
    ///
    /// ```
    /// let class = strata::diag::Class::new("journal");
    /// let _held = class.enter();
    /// ```
    #[track_caller]
    pub fn enter(&self) -> ClassGuard {
        self.enter_with(Access::Exclusive)
    }

    /// Takes the class in `access` mode on this thread, checking the order.
    ///
    /// ```
    /// use strata::diag::{Access, Class};
    ///
    /// let readers = Class::new("snapshot readers");
    /// let _a = readers.enter_with(Access::Shared);
    /// ```
    #[track_caller]
    #[cfg_attr(not(strata_checked), allow(unused_variables))]
    pub fn enter_with(&self, access: Access) -> ClassGuard {
        #[cfg(strata_checked)]
        let site = std::panic::Location::caller();
        ClassGuard {
            #[cfg(strata_checked)]
            _entry: engine::on_acquire(
                self.checked_key(),
                access.into(),
                site,
                AcquireOpts::BLOCKING,
                0,
            ),
        }
    }

    /// Like [`enter`](Class::enter) for an attempt that cannot block (a
    /// `try_acquire`): the order is recorded, never reported.
    ///
    /// ```
    /// let class = strata::diag::Class::new("permits");
    /// let _held = class.try_enter();
    /// ```
    #[track_caller]
    pub fn try_enter(&self) -> ClassGuard {
        #[cfg(strata_checked)]
        let site = std::panic::Location::caller();
        ClassGuard {
            #[cfg(strata_checked)]
            _entry: engine::on_acquire(
                self.checked_key(),
                Access::Exclusive.into(),
                site,
                AcquireOpts::TRY,
                0,
            ),
        }
    }

    /// Takes subclass `subclass` of the class (lockdep's nesting annotation):
    /// a distinct node, so holding subclass 0 and taking 1 is no self-deadlock.
    ///
    /// ```
    /// let node = strata::diag::Class::new("tree node");
    /// let _parent = node.enter();
    /// let _child = node.enter_nested(1);
    /// ```
    #[track_caller]
    #[cfg_attr(not(strata_checked), allow(unused_variables))]
    pub fn enter_nested(&self, subclass: u32) -> ClassGuard {
        #[cfg(strata_checked)]
        let site = std::panic::Location::caller();
        ClassGuard {
            #[cfg(strata_checked)]
            _entry: engine::on_acquire(
                self.checked_key(),
                Access::Exclusive.into(),
                site,
                AcquireOpts::nested(subclass),
                0,
            ),
        }
    }

    /// Takes the class exclusively for the async task whose held locks are
    /// `set`, checking the order against the task's locks.
    ///
    /// ```
    /// use strata::diag::{Class, HeldSet};
    ///
    /// let task = HeldSet::new();
    /// let _held = Class::new("actor ask").enter_in(&task);
    /// ```
    #[track_caller]
    #[cfg_attr(not(strata_checked), allow(unused_variables))]
    pub fn enter_in(&self, set: &HeldSet) -> ClassGuard {
        #[cfg(strata_checked)]
        let site = std::panic::Location::caller();
        ClassGuard {
            #[cfg(strata_checked)]
            _entry: engine::on_acquire_in(
                set,
                self.checked_key(),
                Access::Exclusive.into(),
                site,
                AcquireOpts::BLOCKING,
                0,
            ),
        }
    }

    #[cfg(strata_checked)]
    fn checked_key(&self) -> ClassKey {
        self.slot
            .key()
            .expect("a ClassSlot has a key when checking is compiled in")
    }
}
