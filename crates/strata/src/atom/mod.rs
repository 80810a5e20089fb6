//! L2 — atoms: [`Atom<T>`], a lock-free cell of an immutable value with
//! validators and watches (Clojure's atom), and [`WordAtom<T>`], the same
//! for word-sized `Copy` values.
//!
//! `Atom` readers get an `Arc<T>` of the current value; writers replace it
//! with a compare-and-swap loop (`swap(f)` may run `f` more than once).
//! Nothing ever blocks; replaced values are reclaimed through
//! crossbeam-epoch once no reader can still be looking at them.
//!
//! For integers, `bool`, `char` and floats use [`WordAtom`]: the value
//! lives in the atomic word itself, so a change is a single CAS with no
//! allocation and nothing to reclaim (about as fast as a bare
//! `AtomicU64` loop), with the same validators and watches.
//!
//! ```
//! use strata::atom::{Atom, WordAtom};
//!
//! let config = Atom::new(vec!["a", "b"]);
//! let version = WordAtom::new(1u64);
//! config.swap(|c| [c.as_slice(), &["c"]].concat()).unwrap();
//! version.swap(|v| v + 1).unwrap();
//! assert_eq!((config.load().len(), version.load()), (3, 2));
//! ```

mod cell;
mod hooks;
mod word;

use std::fmt;
use std::sync::Arc;

use thiserror::Error;

use cell::RawCell;
use hooks::HookSet;
pub use word::{Word, WordAtom};

/// Why an [`Atom`] was not changed. The value that was not installed is
/// handed back: nothing is lost.
///
/// ```
/// use strata::atom::{Atom, AtomError};
///
/// let a = Atom::new(1);
/// a.set_validator(|v| *v > 0);
/// assert_eq!(a.reset(-5).unwrap_err(), AtomError::Invalid(-5));
/// assert_eq!(*a.load(), 1);
/// ```
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AtomError<T> {
    /// The validator rejected this value; the atom is unchanged.
    #[error("the atom's validator rejected the new value")]
    Invalid(T),
    /// [`Atom::compare_and_set`] found another value than the one expected;
    /// the atom is unchanged.
    #[error("the atom holds a different value than expected")]
    Changed(T),
}

/// After a lost CAS, `swap` waits a random time below this window (doubling
/// up to 8×, so at most ~2.6 µs) before trying again. Two writers that
/// retry at once keep moving the pointer's cache line between their cores
/// and keep losing; a short random wait lets one finish a few swaps on its
/// own core (swap_2w: medians ~90–100 ns instead of swinging between ~90
/// and ~240 ns, p99 ~0.9 µs instead of 2–9 µs).
const SWAP_BACKOFF_NS: u64 = 320;

/// A shared, lock-free cell holding an immutable `T`.
///
/// For integers, `bool`, `char` and floats prefer [`WordAtom`]: same
/// semantics, no allocation per change.
///
/// ```
/// use std::thread;
/// use strata::atom::Atom;
///
/// let hits = Atom::new(0u64);
/// thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| {
///             for _ in 0..100 {
///                 hits.swap(|n| n + 1).unwrap();
///             }
///         });
///     }
/// });
/// assert_eq!(*hits.load(), 400);
/// ```
pub struct Atom<T> {
    cell: RawCell<T>,
    hooks: HookSet<T>,
}

impl<T: Send + Sync + 'static> Atom<T> {
    /// An atom holding `value`.
    ///
    /// ```
    /// let a = strata::atom::Atom::new(vec![1, 2]);
    /// assert_eq!(a.load().len(), 2);
    /// ```
    pub fn new(value: T) -> Self {
        Self::from_arc(Arc::new(value))
    }

    /// An atom holding `value` (no copy).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let v = Arc::new(5);
    /// let a = strata::atom::Atom::from_arc(v.clone());
    /// assert!(Arc::ptr_eq(&a.load(), &v));
    /// ```
    pub fn from_arc(value: Arc<T>) -> Self {
        Self {
            cell: RawCell::new(value),
            hooks: HookSet::new(),
        }
    }

    /// The current value. Never blocks; two loads with no change in between
    /// return the same `Arc`.
    ///
    /// ```
    /// let a = strata::atom::Atom::new("x");
    /// assert_eq!(*a.load(), "x");
    /// ```
    #[inline]
    pub fn load(&self) -> Arc<T> {
        let pin = self.cell.pin();
        let p = self.cell.current(&pin);
        // SAFETY: `p` was loaded under `pin`, still held.
        unsafe { RawCell::share(p) }
    }

    /// Calls `f` with the current value without taking a reference count:
    /// no write to shared memory, so readers on many threads do not contend
    /// (prefer it to [`load`](Atom::load) for short reads). The value stays
    /// alive until `f` returns even if a writer replaces it meanwhile; keep
    /// `f` short, it delays reclamation.
    ///
    /// ```
    /// let a = strata::atom::Atom::new(vec![1, 2, 3]);
    /// assert_eq!(a.read(|v| v.len()), 3);
    /// ```
    #[inline]
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        let pin = self.cell.pin();
        let p = self.cell.current(&pin);
        // SAFETY: `p` was loaded under `pin`, which outlives the call.
        f(unsafe { &*p })
    }

    /// Replaces the value with `f(current)` and returns the new value. A CAS
    /// loop: if another writer got in first, `f` runs again on the newer
    /// value, so it must be pure. A value the validator rejects is returned
    /// as [`AtomError::Invalid`] and nothing changes.
    ///
    /// ```
    /// let a = strata::atom::Atom::new(2);
    /// assert_eq!(*a.swap(|x| x * 21).unwrap(), 42);
    /// ```
    #[inline]
    pub fn swap(&self, f: impl FnMut(&T) -> T) -> Result<Arc<T>, AtomError<T>> {
        self.swap_impl(f, |_, _, new| new)
    }

    /// [`swap`](Atom::swap) returning `(old, new)`: the value `f` was applied
    /// to and the value installed.
    ///
    /// ```
    /// let a = strata::atom::Atom::new(1);
    /// let (old, new) = a.swap_vals(|x| x + 1).unwrap();
    /// assert_eq!((*old, *new), (1, 2));
    /// ```
    pub fn swap_vals(&self, f: impl FnMut(&T) -> T) -> Result<(Arc<T>, Arc<T>), AtomError<T>> {
        // SAFETY: `old` is handed over under the pin it was loaded with.
        self.swap_impl(f, |_, old, new| (unsafe { RawCell::share(old) }, new))
    }

    /// The CAS loop; `done(pin, old, new)` builds the result while the old
    /// value is still pinned.
    #[inline]
    fn swap_impl<R>(
        &self,
        mut f: impl FnMut(&T) -> T,
        done: impl FnOnce(&crate::stm::reclaim::Pin, *const T, Arc<T>) -> R,
    ) -> Result<R, AtomError<T>> {
        let pin = self.cell.pin();
        let mut cur = self.cell.current(&pin);
        let mut spare: Option<Arc<T>> = None;
        let mut fails = 0u32;
        loop {
            // SAFETY: `cur` was loaded under `pin`.
            let next = self.check(f(unsafe { &*cur }))?;
            // Reuse the allocation of a lost attempt.
            let new = match spare.take() {
                Some(mut a) => match Arc::get_mut(&mut a) {
                    Some(slot) => {
                        *slot = next;
                        a
                    }
                    None => Arc::new(next),
                },
                None => Arc::new(next),
            };
            let keep = Arc::clone(&new);
            match self.cell.compare_exchange(cur, new, &pin) {
                Ok(()) => {
                    // SAFETY: `cur` was loaded under `pin`; it is unlinked
                    // but not freed while the pin lives.
                    self.notify(unsafe { &*cur }, &keep);
                    return Ok(done(&pin, cur, keep));
                }
                Err((back, found)) => {
                    drop(keep);
                    spare = Some(back);
                    cur = found;
                    fails += 1;
                    crate::stm::backoff::spin_below(SWAP_BACKOFF_NS << (fails - 1).min(3));
                }
            }
        }
    }

    /// Sets the value to `value` regardless of the current one and returns
    /// the value it replaced.
    ///
    /// ```
    /// let a = strata::atom::Atom::new(1);
    /// assert_eq!(*a.reset(2).unwrap(), 1);
    /// assert_eq!(*a.load(), 2);
    /// ```
    pub fn reset(&self, value: T) -> Result<Arc<T>, AtomError<T>> {
        let value = self.check(value)?;
        let pin = self.cell.pin();
        let mut cur = self.cell.current(&pin);
        let mut new = Arc::new(value);
        loop {
            let keep = Arc::clone(&new);
            match self.cell.compare_exchange(cur, new, &pin) {
                Ok(()) => {
                    // SAFETY: loaded under `pin`, still held.
                    let old = unsafe { RawCell::share(cur) };
                    drop(pin);
                    self.notify(&old, &keep);
                    return Ok(old);
                }
                Err((back, found)) => {
                    drop(keep);
                    new = back;
                    cur = found;
                }
            }
        }
    }

    /// Installs `value` only if the atom still holds `current` (the same
    /// `Arc`, compared by identity, not by value). Returns the new value, or
    /// [`AtomError::Changed`] with `value` if another value is there.
    ///
    /// ```
    /// use strata::atom::{Atom, AtomError};
    ///
    /// let a = Atom::new(1);
    /// let seen = a.load();
    /// assert_eq!(*a.compare_and_set(&seen, 2).unwrap(), 2);
    /// assert_eq!(a.compare_and_set(&seen, 3).unwrap_err(), AtomError::Changed(3));
    /// ```
    pub fn compare_and_set(&self, current: &Arc<T>, value: T) -> Result<Arc<T>, AtomError<T>> {
        let value = self.check(value)?;
        let pin = self.cell.pin();
        let new = Arc::new(value);
        let keep = Arc::clone(&new);
        match self.cell.compare_exchange(Arc::as_ptr(current), new, &pin) {
            Ok(()) => {
                drop(pin);
                self.notify(current, &keep);
                Ok(keep)
            }
            Err((back, _)) => {
                drop(keep);
                match Arc::try_unwrap(back) {
                    Ok(v) => Err(AtomError::Changed(v)),
                    Err(_) => unreachable!("the only other reference was dropped"),
                }
            }
        }
    }

    /// Sets the validator: a value for which `f` returns `false` is never
    /// installed (the change returns [`AtomError::Invalid`]). The current
    /// value is not checked.
    ///
    /// ```
    /// let a = strata::atom::Atom::new(0);
    /// a.set_validator(|v| *v < 10);
    /// assert!(a.swap(|v| v + 100).is_err());
    /// ```
    pub fn set_validator(&self, f: impl Fn(&T) -> bool + Send + Sync + 'static) {
        self.hooks.set_validator(f);
    }

    /// Removes the validator.
    ///
    /// ```
    /// let a = strata::atom::Atom::new(0);
    /// a.set_validator(|_| false);
    /// a.clear_validator();
    /// assert!(a.reset(1).is_ok());
    /// ```
    pub fn clear_validator(&self) {
        self.hooks.clear_validator();
    }

    /// Adds (or replaces) the watch called `key`: after every change,
    /// `f(old, new)` runs on the changing thread. Watches of concurrent
    /// changes may run concurrently and in either order. A panicking watch
    /// skips none of the others: they all run, then the first panic is
    /// re-raised from the call that made the change, which stands.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    ///
    /// let changes = Arc::new(AtomicU32::new(0));
    /// let a = strata::atom::Atom::new(0);
    /// let c = changes.clone();
    /// a.add_watch("count", move |_, _| { c.fetch_add(1, Ordering::Relaxed); });
    /// a.reset(1).unwrap();
    /// assert_eq!(changes.load(Ordering::Relaxed), 1);
    /// ```
    pub fn add_watch(&self, key: impl Into<String>, f: impl Fn(&T, &T) + Send + Sync + 'static) {
        self.hooks.add_watch(key, f);
    }

    /// Removes the watch called `key`; `false` if there was none.
    ///
    /// ```
    /// let a = strata::atom::Atom::new(0);
    /// a.add_watch("w", |_, _| {});
    /// assert!(a.remove_watch("w"));
    /// assert!(!a.remove_watch("w"));
    /// ```
    pub fn remove_watch(&self, key: &str) -> bool {
        self.hooks.remove_watch(key)
    }

    /// Passes `v` through the validator.
    #[inline]
    fn check(&self, v: T) -> Result<T, AtomError<T>> {
        self.hooks.check(v)
    }

    #[inline]
    fn notify(&self, old: &T, new: &T) {
        self.hooks.notify(old, new);
    }
}

impl<T: Send + Sync + fmt::Debug + 'static> fmt::Debug for Atom<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Atom").field(&self.load()).finish()
    }
}

impl<T: Send + Sync + Default + 'static> Default for Atom<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}
