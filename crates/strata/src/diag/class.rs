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
    _private: (),
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
    #[track_caller]
    #[inline(always)]
    pub(crate) fn acquire(&self, _kind: AcquireKind, _report: bool) -> HeldToken {
        HeldToken { _private: () }
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
