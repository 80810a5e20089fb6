//! Lock classes and the hook every acquisition goes through.

use std::fmt;
use std::panic::Location;

/// The identity of a lock class: a name, or else the construction site.
///
/// Classes, not instances, are what order checking reasons about: two
/// accounts built by the same constructor share one class.
///
/// ```
/// let m = strata::sync::Mutex::named("accounts", 0u32);
/// if let Some(class) = m.class() {
///     assert_eq!(class.name(), Some("accounts"));
/// }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassKey {
    name: Option<&'static str>,
    location: &'static Location<'static>,
}

impl ClassKey {
    /// The name given with `named`, if any.
    pub fn name(&self) -> Option<&'static str> {
        self.name
    }

    /// Where the primitive was constructed.
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

impl fmt::Debug for ClassKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ClassKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name {
            Some(name) => write!(f, "{name} ({})", self.location),
            None => write!(f, "{}", self.location),
        }
    }
}

/// The class a primitive belongs to; zero-sized when checking is off.
#[derive(Clone, Copy)]
pub(crate) struct ClassSlot {
    #[cfg(strata_checked)]
    key: ClassKey,
}

/// How a primitive is being taken; the order checker treats reads specially.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AcquireKind {
    /// Exclusive: a mutex, a write lock, a semaphore permit.
    Exclusive,
    /// Shared: a read lock.
    Shared,
    /// An upgradable read.
    Upgradable,
}

/// Marks a class as held by the current thread or task until dropped;
/// zero-sized when checking is off.
#[must_use]
pub(crate) struct HeldToken {
    #[cfg(strata_checked)]
    entry: Option<super::engine::HeldEntry>,
}

impl HeldToken {
    /// Records a mode change of a held lock (a downgrade, a finished
    /// upgrade); checks nothing, the class is already held.
    #[inline]
    #[cfg_attr(not(strata_checked), allow(unused_variables))]
    pub(crate) fn set_kind(&mut self, kind: AcquireKind) {
        #[cfg(strata_checked)]
        if let Some(entry) = &mut self.entry {
            entry.set_kind(kind);
        }
    }
}

/// How a checked acquisition is made, beyond its [`AcquireKind`].
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum How {
    /// Waits until it gets the lock: reported on a bad order.
    Blocking,
    /// A `try_` or timed acquisition: records the edge, never reports.
    /// A timed wait cannot hang, and backing off on a timeout is the usual
    /// way out of a suspected deadlock, so reporting it would punish the cure.
    Try,
    /// Part of `lock_two` / `lock_all`: same-class instances in address order.
    Ordered,
    /// `lock_nested(subclass)`: a distinct nesting level of the class.
    Nested(u32),
}

impl ClassSlot {
    /// The class of the caller's construction site.
    #[track_caller]
    #[inline]
    pub(crate) const fn site() -> Self {
        Self {
            #[cfg(strata_checked)]
            key: ClassKey {
                name: None,
                location: Location::caller(),
            },
        }
    }

    /// A class with a name (its construction site is kept for reports).
    #[track_caller]
    #[inline]
    #[cfg_attr(not(strata_checked), allow(unused_variables))]
    pub(crate) const fn named(name: &'static str) -> Self {
        Self {
            #[cfg(strata_checked)]
            key: ClassKey {
                name: Some(name),
                location: Location::caller(),
            },
        }
    }

    /// The class, when checking is compiled in.
    #[inline]
    pub(crate) fn key(&self) -> Option<ClassKey> {
        #[cfg(strata_checked)]
        {
            Some(self.key)
        }
        #[cfg(not(strata_checked))]
        {
            None
        }
    }

    /// Records that the caller is about to wait for or take this class.
    ///
    /// The order checker of issue 3 hangs here; `try_` acquisitions pass
    /// `report = false` (they record edges but never report).
    ///
    /// Not yet wired to the checker: the primitives still calling this
    /// (condvar, barrier and semaphore waits, the async locks) need the
    /// task-carried held set first, since an async acquisition starts where
    /// the future is created, not where it is polled.
    #[track_caller]
    #[inline(always)]
    pub(crate) fn acquire(&self, _kind: AcquireKind, _report: bool) -> HeldToken {
        HeldToken {
            #[cfg(strata_checked)]
            entry: None,
        }
    }

    /// Checks the order of taking this class on the current thread, reports
    /// a violation before the caller can block, and marks the class held
    /// until the token drops. Compiles to nothing with checking off.
    #[track_caller]
    #[inline(always)]
    #[cfg_attr(not(strata_checked), allow(unused_variables))]
    pub(crate) fn enter(&self, kind: AcquireKind, how: How) -> HeldToken {
        #[cfg(strata_checked)]
        {
            use super::engine::{AcquireOpts, on_acquire};
            let opts = match how {
                How::Blocking => AcquireOpts::BLOCKING,
                How::Try => AcquireOpts::TRY,
                How::Ordered => AcquireOpts::ORDERED,
                How::Nested(n) => AcquireOpts::nested(n),
            };
            HeldToken {
                entry: Some(on_acquire(self.key, kind, Location::caller(), opts)),
            }
        }
        #[cfg(not(strata_checked))]
        HeldToken {}
    }
}

impl fmt::Debug for ClassSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key() {
            Some(key) => fmt::Debug::fmt(&key, f),
            None => f.write_str("<unchecked>"),
        }
    }
}
