//! Type-erased write-set entries and the per-type operations on them.
//!
//! The write set holds entries of many value types in one vector without a
//! box per entry: an entry keeps its value either as a word (word types) or
//! as a raw pointer to a `Box<T>` (or to a pending-commute list), plus a
//! `&'static Ops` — a hand-made vtable of functions monomorphized for `T`.

use std::sync::Arc;

use super::reclaim::Pin;
use super::tvar::{Core, HAS_VALIDATOR, HAS_WATCHES, Inner};
use super::word;
use crate::loom::sync::atomic::Ordering;

/// What an entry's `word`/`ptr` hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// A buffered value: the word, or a `Box<T>` in `ptr`.
    Value,
    /// Pending commutes: a `Box<CommuteList<T>>` in `ptr`, applied at commit.
    Commute,
    /// Committed: the `TVar` owns the value now; the replaced one is in
    /// `old_word`/`old_ptr` for the watches.
    Published,
}

/// Pending `commute` functions, oldest first. `Arc`, not `Box`, so that an
/// `or_else` branch can copy the list before extending it. The lifetime is
/// erased: a list never outlives the transaction whose `'env` bounds it.
pub(crate) type CommuteList<T> = Vec<Arc<dyn Fn(T) -> T>>;

pub(crate) struct WriteEntry {
    pub(crate) core: *const Core,
    pub(crate) word: u64,
    pub(crate) ptr: *mut (),
    /// The lock word the commit's CAS replaced.
    pub(crate) old_lock: u64,
    /// After publishing: the replaced value (for the watches; a replaced
    /// box is retired once the commit has unlocked).
    pub(crate) old_word: u64,
    pub(crate) old_ptr: *mut (),
    pub(crate) ops: &'static Ops,
    /// The `or_else` branch that created the entry or last saved it to the
    /// undo log (0: outside any branch).
    pub(crate) level: u32,
    pub(crate) state: State,
    /// The value type is stored as a word (`Core::word`): the commit
    /// publishes it itself, with no call through `ops`.
    pub(crate) is_word: bool,
}

impl WriteEntry {
    #[inline]
    pub(crate) fn new<T: Clone + Send + Sync + 'static>(
        core: *const Core,
        state: State,
        (word, ptr): (u64, *mut ()),
        level: u32,
    ) -> Self {
        WriteEntry {
            core,
            word,
            ptr,
            old_lock: 0,
            old_word: 0,
            old_ptr: std::ptr::null_mut(),
            ops: &OpsOf::<T>::OPS,
            level,
            state,
            is_word: word::is_word::<T>(),
        }
    }

    /// Under the lock, the entry `Value`: publishes the value and keeps the
    /// replaced one in `old_ptr` (boxes, to retire) or, if `watched`, in
    /// `old_word`.
    ///
    /// # Safety
    ///
    /// The caller holds the lock of the entry's `TVar`.
    #[inline]
    pub(crate) unsafe fn publish(&mut self, watched: bool) {
        debug_assert_eq!(self.state, State::Value);
        if self.is_word {
            // SAFETY: the core outlives the transaction.
            let core = unsafe { &*self.core };
            if watched {
                self.old_word = core.word.load(Ordering::Relaxed);
            }
            // Release: a reader that sees this value sees our lock before it.
            core.word.store(self.word, Ordering::Release);
        } else {
            // SAFETY: forwarded contract.
            unsafe { (self.ops.publish)(self) };
            self.state = State::Published;
        }
    }
}

/// The operations on an entry of one value type.
pub(crate) struct Ops {
    /// Frees what a `(state, word, ptr)` triple owns.
    pub(crate) drop_slot: unsafe fn(State, u64, *mut ()),
    /// Under the lock: applies pending commutes to the current value.
    pub(crate) resolve: unsafe fn(&mut WriteEntry),
    /// The validator's verdict on the buffered value (`true` without one).
    pub(crate) validate: unsafe fn(&WriteEntry) -> bool,
    /// Boxed types, under the lock: publishes the box, keeps the old one.
    pub(crate) publish: unsafe fn(&mut WriteEntry),
    /// Boxed types, after unlock and still pinned: retires the old box.
    pub(crate) retire: unsafe fn(&WriteEntry, &Pin),
    /// After unlock, still pinned: calls the watches with (old, new).
    pub(crate) watch: unsafe fn(&WriteEntry),
}

pub(crate) struct OpsOf<T>(std::marker::PhantomData<T>);

impl<T: Clone + Send + Sync + 'static> OpsOf<T> {
    pub(crate) const OPS: Ops = Ops {
        drop_slot: drop_slot::<T>,
        resolve: resolve::<T>,
        validate: validate::<T>,
        publish: publish::<T>,
        retire: retire::<T>,
        watch: watch::<T>,
    };
}

/// A buffered value as `(word, ptr)`.
#[inline]
pub(crate) fn make_slot<T: 'static>(v: T) -> (u64, *mut ()) {
    if word::is_word::<T>() {
        (word::to_word(&v), std::ptr::null_mut())
    } else {
        (0, Box::into_raw(Box::new(v)).cast())
    }
}

/// A clone of an entry's buffered value.
///
/// # Safety
///
/// `e` is a `State::Value` entry of a `TVar<T>`.
#[inline]
pub(crate) unsafe fn value_of<T: Clone + 'static>(e: &WriteEntry) -> T {
    debug_assert_eq!(e.state, State::Value);
    if word::is_word::<T>() {
        word::from_word(e.word)
    } else {
        // SAFETY: a `Value` entry of a boxed type owns a live `Box<T>`.
        unsafe { (*e.ptr.cast::<T>()).clone() }
    }
}

/// # Safety
///
/// The triple is owned by the caller and of a `TVar<T>`.
unsafe fn drop_slot<T: 'static>(state: State, _word: u64, ptr: *mut ()) {
    match state {
        State::Value => {
            if !word::is_word::<T>() {
                // SAFETY: a boxed `Value` slot owns its `Box<T>`.
                drop(unsafe { Box::from_raw(ptr.cast::<T>()) });
            }
        }
        // SAFETY: a `Commute` slot owns its boxed list.
        State::Commute => drop(unsafe { Box::from_raw(ptr.cast::<CommuteList<T>>()) }),
        State::Published => {}
    }
}

/// # Safety
///
/// `e` is an entry of a `TVar<T>` whose lock the caller holds.
unsafe fn resolve<T: Clone + Send + Sync + 'static>(e: &mut WriteEntry) {
    if e.state != State::Commute {
        return;
    }
    // SAFETY: `core` heads an `Inner<T>` (repr(C)) that outlives the tx.
    let inner = unsafe { &*e.core.cast::<Inner<T>>() };
    // SAFETY: the caller holds the lock.
    let mut x = unsafe { inner.read_locked() };
    {
        // SAFETY: a `Commute` entry's ptr is its live list.
        let list = unsafe { &*e.ptr.cast::<CommuteList<T>>() };
        for f in list {
            x = f(x);
        }
    }
    let (w, p) = make_slot(x);
    // SAFETY: we own the list; it is replaced below.
    unsafe { drop_slot::<T>(State::Commute, e.word, e.ptr) };
    e.state = State::Value;
    e.word = w;
    e.ptr = p;
}

/// # Safety
///
/// `e` is a `State::Value` entry of a `TVar<T>`.
unsafe fn validate<T: Clone + Send + Sync + 'static>(e: &WriteEntry) -> bool {
    // SAFETY: `core` heads a live `Inner<T>`.
    let inner = unsafe { &*e.core.cast::<Inner<T>>() };
    if inner.core.flags.load(Ordering::Acquire) & HAS_VALIDATOR == 0 {
        return true;
    }
    let Some(hooks) = inner.hooks() else {
        return true;
    };
    let Some(valid) = &hooks.validator else {
        return true;
    };
    if word::is_word::<T>() {
        valid(&word::from_word::<T>(e.word))
    } else {
        // SAFETY: a boxed `Value` entry owns a live `Box<T>`.
        valid(unsafe { &*e.ptr.cast::<T>() })
    }
}

/// # Safety
///
/// `e` is a `State::Value` entry of a boxed `TVar<T>` whose lock the caller
/// holds.
unsafe fn publish<T: Clone + Send + Sync + 'static>(e: &mut WriteEntry) {
    // SAFETY: `core` heads a live `Inner<T>`.
    let inner = unsafe { &*e.core.cast::<Inner<T>>() };
    e.old_ptr = inner.store_box(e.ptr.cast::<T>()).cast();
}

/// # Safety
///
/// `e` is a published entry of a boxed `TVar<T>`, its lock released, its
/// old box retired by no one else; `pin` was held since before publishing.
unsafe fn retire<T: Clone + Send + Sync + 'static>(e: &WriteEntry, pin: &Pin) {
    // SAFETY: `old_ptr` was the published box, unlinked by our swap under
    // the lock, and it is retired only here.
    unsafe { pin.retire(e.old_ptr.cast::<T>()) };
}

/// # Safety
///
/// `e` was published by this thread, which is still pinned.
unsafe fn watch<T: Clone + Send + Sync + 'static>(e: &WriteEntry) {
    // SAFETY: `core` heads a live `Inner<T>`.
    let inner = unsafe { &*e.core.cast::<Inner<T>>() };
    if inner.core.flags.load(Ordering::Acquire) & HAS_WATCHES == 0 {
        return;
    }
    let Some(hooks) = inner.hooks() else { return };
    if word::is_word::<T>() {
        let (old, new) = (
            word::from_word::<T>(e.old_word),
            word::from_word::<T>(e.word),
        );
        crate::hooks::call_watches(&hooks.watches, &old, &new);
    } else {
        // SAFETY: both boxes were retired no earlier than our publish, and
        // this thread has stayed pinned since, so neither is freed yet.
        let (old, new) = unsafe { (&*e.old_ptr.cast::<T>(), &*e.ptr.cast::<T>()) };
        crate::hooks::call_watches(&hooks.watches, old, new);
    }
}
