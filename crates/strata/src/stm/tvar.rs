//! `TVar<T>`: a transactional variable — a versioned lock word, the value
//! (inline for word types, one heap box per version otherwise), a waiter
//! list for `retry`, and optional validator and watches.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::AtomicU64 as StdAtomicU64;

use super::clock::{self, is_locked};
use super::reclaim::{self, Pin};
use super::wait::WaitNode;
use super::word;
use crate::loom::hint;
use crate::loom::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, Ordering};
use crate::loom::sync::{Arc, Mutex};

pub(crate) use crate::hooks::{HAS_VALIDATOR, HAS_WATCHES};
use crate::hooks::{Hooks, Watch};

/// Ids are for error reports only; they need no modelling under loom.
static NEXT_ID: StdAtomicU64 = StdAtomicU64::new(1);

/// The type-independent head of every `TVar`: what the read set, the
/// commit and `retry` need without knowing `T`. The lock word and the word
/// value come first and share a cache line: a read of a word `TVar` touches
/// one line, and the commit publishes a word with no call through the
/// entry's vtable.
#[repr(C)]
pub(crate) struct Core {
    /// `version << 2 | WAITERS | LOCKED`, see [`clock`].
    pub(crate) lock: AtomicU64,
    /// The value when `word::is_word::<T>()`.
    pub(crate) word: AtomicU64,
    pub(crate) waiters: Mutex<Vec<Arc<WaitNode>>>,
    pub(crate) flags: AtomicU8,
    pub(crate) id: u64,
}

/// `core` must stay the first field: the read and write sets keep
/// `*const Core` and cast it back to `*const Inner<T>`.
#[repr(C)]
pub(crate) struct Inner<T> {
    pub(crate) core: Core,
    /// When `T` is not a word: the current version's box (never null).
    ptr: AtomicPtr<T>,
    hooks: Mutex<Option<std::sync::Arc<Hooks<T>>>>,
    /// `AtomicPtr<T>` is `Send + Sync` for any `T`; the variable owns `T`s.
    _owns: PhantomData<Box<T>>,
}

/// A transactional variable.
///
/// Read and written inside [`atomically`](super::atomically) through a
/// [`Tx`](super::Tx); [`load`](TVar::load) reads it outside one. Cloning a
/// `TVar` clones the handle: both refer to one variable.
///
/// Values of the primitive integer types, `bool`, `char`, `f32` and `f64`
/// are stored inline (no allocation per write); any other `T` is kept in one
/// heap box per committed version, reclaimed with crossbeam-epoch once no
/// reader can still see it.
///
/// ```
/// use strata::stm::{atomically, TVar};
///
/// let a = TVar::new(10);
/// let b = a.clone();
/// atomically(|tx| tx.write(&b, 11)).unwrap();
/// assert_eq!(a.load(), 11);
/// ```
pub struct TVar<T> {
    pub(crate) inner: Arc<Inner<T>>,
}

impl<T> Clone for TVar<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// One consistent observation of a `TVar`.
pub(crate) enum Sample<T> {
    /// The value and the (unlocked) lock word it belongs to.
    Value(T, u64),
    /// The word was locked the whole time we were willing to wait.
    Locked,
}

/// The first lock-word load of a sample (see `clock::now`); under loom the
/// snapshot's fence provides the order and loom's SeqCst is only AcqRel.
#[cfg(not(loom))]
const SNAPSHOT_LOAD: Ordering = Ordering::SeqCst;
#[cfg(loom)]
const SNAPSHOT_LOAD: Ordering = Ordering::Acquire;

/// Spins a reader waits for a committer to unlock before giving up.
const READ_SPINS: u32 = 128;

impl<T: Clone + Send + Sync + 'static> TVar<T> {
    /// A new variable holding `value`.
    ///
    /// ```
    /// let v = strata::stm::TVar::new(String::from("hi"));
    /// assert_eq!(v.load(), "hi");
    /// ```
    pub fn new(value: T) -> Self {
        let (w, p) = if word::is_word::<T>() {
            (word::to_word(&value), std::ptr::null_mut())
        } else {
            (0, Box::into_raw(Box::new(value)))
        };
        Self {
            inner: Arc::new(Inner {
                core: Core {
                    lock: AtomicU64::new(clock::word(0)),
                    word: AtomicU64::new(w),
                    waiters: Mutex::new(Vec::new()),
                    flags: AtomicU8::new(0),
                    id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                },
                ptr: AtomicPtr::new(p),
                hooks: Mutex::new(None),
                _owns: PhantomData,
            }),
        }
    }

    /// The latest committed value of this one variable. No transaction is
    /// started; a commit in progress is waited for (its writes appear all at
    /// once), except where waiting could never end:
    ///
    /// - Inside a transaction's closure, `load` is not part of the
    ///   transaction: it returns the latest committed value, not the
    ///   transaction's own writes (use [`Tx::read`](super::Tx::read) for
    ///   those). This holds in serial mode too, where the transaction keeps
    ///   what it touched locked.
    /// - Inside a [validator](TVar::set_validator), a `TVar` written by the
    ///   same commit loads as the value that commit would store, so a
    ///   validator judges the state the commit produces. Any other `TVar`
    ///   loads as its latest committed value (which is not part of the
    ///   commit and may change right after), read without waiting for other
    ///   commits, which may be waiting for this one.
    /// - Inside a [`commute`](super::Tx::commute) function, a `TVar` of the
    ///   same commit loads as the value before it.
    ///
    /// ```
    /// let v = strata::stm::TVar::new(3u8);
    /// assert_eq!(v.load(), 3);
    /// ```
    pub fn load(&self) -> T {
        let pin = if word::is_word::<T>() {
            None
        } else {
            Some(reclaim::pin())
        };
        if let Sample::Value(v, _) = self.inner.sample(pin.as_ref(), 0) {
            return v;
        }
        // Locked: perhaps by this thread, which would wait for itself.
        if let Some(v) = super::own::load(&self.inner, pin.as_ref()) {
            return v;
        }
        loop {
            match self.inner.sample(pin.as_ref(), READ_SPINS) {
                Sample::Value(v, _) => return v,
                Sample::Locked => crate::loom::thread::yield_now(),
            }
        }
    }

    /// A number identifying this variable (shared by its clones), as reported
    /// by [`StmError::Invalid`](super::StmError::Invalid).
    ///
    /// ```
    /// let v = strata::stm::TVar::new(0);
    /// assert_eq!(v.id(), v.clone().id());
    /// assert_ne!(v.id(), strata::stm::TVar::new(0).id());
    /// ```
    pub fn id(&self) -> u64 {
        self.inner.core.id
    }

    /// Sets the validator: a commit that would store a value for which `f`
    /// returns `false` is rejected as a whole with
    /// [`StmError::Invalid`](super::StmError::Invalid). The current value is
    /// not checked. `f` runs during commit, with the transaction's `TVar`s
    /// locked: keep it pure and quick, and do not start transactions in it.
    ///
    /// `f` may [`load`](TVar::load) other `TVar`s: one written by the same
    /// commit loads as the value the commit would store (all its writes and
    /// commutes applied: `f` judges the state the commit produces); any
    /// other loads as its latest committed value, which is not part of the
    /// commit (to make a commit depend on a `TVar`, read it in the
    /// transaction instead).
    ///
    /// ```
    /// use strata::stm::{atomically, TVar};
    ///
    /// let stock = TVar::new(5i32);
    /// stock.set_validator(|n| *n >= 0);
    /// assert!(atomically(|tx| tx.modify(&stock, |n| n - 10)).is_err());
    /// assert_eq!(stock.load(), 5);
    ///
    /// // A validator that loads another `TVar` of the same commit sees the
    /// // value being committed.
    /// let (limit, used) = (TVar::new(10u32), TVar::new(0u32));
    /// let l = limit.clone();
    /// used.set_validator(move |u| *u <= l.load());
    /// atomically(|tx| {
    ///     tx.write(&limit, 20)?;
    ///     tx.write(&used, 15)
    /// })
    /// .unwrap();
    /// assert!(atomically(|tx| tx.write(&used, 25)).is_err());
    /// ```
    pub fn set_validator(&self, f: impl Fn(&T) -> bool + Send + Sync + 'static) {
        self.edit_hooks(|h| h.validator = Some(std::sync::Arc::new(f)));
    }

    /// Removes the validator.
    ///
    /// ```
    /// let v = strata::stm::TVar::new(1);
    /// v.set_validator(|_| false);
    /// v.clear_validator();
    /// strata::stm::atomically(|tx| tx.write(&v, 2)).unwrap();
    /// ```
    pub fn clear_validator(&self) {
        self.edit_hooks(|h| h.validator = None);
    }

    /// Adds (or replaces) the watch called `key`: after every commit that
    /// writes this variable, `f(old, new)` runs on the committing thread,
    /// outside the transaction and with no lock held. Watches of concurrent
    /// commits may run concurrently. A panicking watch skips none of the
    /// others (of this or another `TVar` the commit wrote): they all run,
    /// then the first panic is re-raised from `atomically`; the commit
    /// stands.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use strata::stm::{atomically, TVar};
    ///
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let v = TVar::new(1);
    /// let l = log.clone();
    /// v.add_watch("log", move |old, new| l.lock().unwrap().push((*old, *new)));
    /// atomically(|tx| tx.write(&v, 2)).unwrap();
    /// assert_eq!(*log.lock().unwrap(), [(1, 2)]);
    /// ```
    pub fn add_watch(&self, key: impl Into<String>, f: impl Fn(&T, &T) + Send + Sync + 'static) {
        let (key, f): (String, Watch<T>) = (key.into(), std::sync::Arc::new(f));
        self.edit_hooks(move |h| h.set_watch(key, f));
    }

    /// Removes the watch called `key`; `false` if there was none.
    ///
    /// ```
    /// let v = strata::stm::TVar::new(1);
    /// v.add_watch("w", |_, _| {});
    /// assert!(v.remove_watch("w"));
    /// assert!(!v.remove_watch("w"));
    /// ```
    pub fn remove_watch(&self, key: &str) -> bool {
        let mut removed = false;
        self.edit_hooks(|h| removed = h.remove_watch(key));
        removed
    }

    fn edit_hooks(&self, edit: impl FnOnce(&mut Hooks<T>)) {
        let mut slot = self.inner.hooks.lock();
        let flags = Hooks::edit(&mut slot, edit);
        self.inner.core.flags.store(flags, Ordering::Release);
    }
}

impl Core {
    /// Reads the word value and the lock word it belongs to, seqlock-style:
    /// the lock word before and after must match (up to `WAITERS`). `None`:
    /// the word stayed locked for `spins` spins.
    #[inline]
    pub(crate) fn sample_word(&self, spins: u32) -> Option<(u64, u64)> {
        let mut waited = 0;
        loop {
            // SeqCst: see `clock::now`.
            let w1 = self.lock.load(SNAPSHOT_LOAD);
            if is_locked(w1) {
                if waited >= spins {
                    return None;
                }
                waited += 1;
                hint::spin_loop();
                continue;
            }
            // Acquire: the second lock-word load cannot move above it.
            let x = self.word.load(Ordering::Acquire);
            let w2 = self.lock.load(Ordering::Relaxed);
            if same(w1, w2) {
                return Some((x, w1));
            }
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Inner<T> {
    /// Reads the value and the lock word it belongs to, seqlock-style (see
    /// [`Core::sample_word`]). Boxed values need `pin` (the box may be
    /// replaced, but not freed, meanwhile).
    #[inline]
    pub(crate) fn sample(&self, pin: Option<&Pin>, spins: u32) -> Sample<T> {
        if word::is_word::<T>() {
            return match self.core.sample_word(spins) {
                Some((x, w)) => Sample::Value(word::from_word(x), w),
                None => Sample::Locked,
            };
        }
        debug_assert!(pin.is_some());
        let mut waited = 0;
        loop {
            // SeqCst: see `clock::now`.
            let w1 = self.core.lock.load(SNAPSHOT_LOAD);
            if is_locked(w1) {
                if waited >= spins {
                    return Sample::Locked;
                }
                waited += 1;
                hint::spin_loop();
                continue;
            }
            let p = self.ptr.load(Ordering::Acquire);
            let w2 = self.core.lock.load(Ordering::Relaxed);
            if same(w1, w2) {
                // SAFETY: `p` was the published box at version `w1`; boxes
                // are immutable once published, and a replaced one is only
                // freed after every thread pinned when it was replaced has
                // unpinned — the caller holds `pin`.
                let v = unsafe { (*p).clone() };
                return Sample::Value(v, w1);
            }
        }
    }

    /// The current value, read by the holder of the lock word.
    ///
    /// # Safety
    ///
    /// The caller holds `core.lock` (its `LOCKED` bit is the caller's).
    #[inline]
    pub(crate) unsafe fn read_locked(&self) -> T {
        if word::is_word::<T>() {
            word::from_word(self.core.word.load(Ordering::Relaxed))
        } else {
            // SAFETY: no one can replace the box while we hold the lock.
            unsafe { (*self.ptr.load(Ordering::Relaxed)).clone() }
        }
    }

    /// The value there now, locked or not: the committed value, or that of
    /// a commit already publishing (it has validated and cannot fail).
    pub(crate) fn read_current(&self, pin: Option<&Pin>) -> T {
        if word::is_word::<T>() {
            word::from_word(self.core.word.load(Ordering::Acquire))
        } else {
            debug_assert!(pin.is_some());
            let p = self.ptr.load(Ordering::Acquire);
            // SAFETY: `p` was a published box; a replaced one is only freed
            // after every thread pinned when it was replaced has unpinned,
            // and the caller holds `pin`.
            unsafe { (*p).clone() }
        }
    }

    /// Publishes a new box and returns the old one (to retire once the
    /// commit has unlocked). The lock holder only.
    #[inline]
    pub(crate) fn store_box(&self, p: *mut T) -> *mut T {
        self.ptr.swap(p, Ordering::AcqRel)
    }

    /// The hooks, when a flag says there are any.
    pub(crate) fn hooks(&self) -> Option<std::sync::Arc<Hooks<T>>> {
        self.hooks.lock().clone()
    }
}

#[inline]
fn same(w1: u64, w2: u64) -> bool {
    (w1 ^ w2) & !clock::WAITERS == 0
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        let p = self.ptr.load(Ordering::Relaxed);
        if !p.is_null() {
            // SAFETY: the last handle is gone, so no transaction can read
            // the box; it came from `Box::into_raw`.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

impl<T: Clone + Send + Sync + fmt::Debug + 'static> fmt::Debug for TVar<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TVar")
            .field("id", &self.id())
            .field("value", &self.load())
            .finish()
    }
}

impl<T: Clone + Send + Sync + Default + 'static> Default for TVar<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}
