//! What the calling thread's own transaction has locked, for
//! [`TVar::load`](super::TVar::load).
//!
//! `load` waits for a locked `TVar` to be unlocked. That wait would never
//! end if the lock is the caller's own: a serial-mode transaction holds
//! every `TVar` it touched for the whole attempt (its closure may call
//! `load`, or format a `TVar` with `{:?}`), and a commit holds its write set
//! while validators and commute functions run (a validator may `load`
//! another `TVar` of the same commit). Waiting for another thread's lock
//! while holding locks of one's own is no better: two commits whose
//! validators load each other's `TVar`s would wait for each other forever.
//!
//! So a thread can tell its own locks apart:
//! - a serial transaction's lock word is this thread's [`serial_word`]
//!   (an id, not a shared constant);
//! - while a commit runs user code, [`CommitView`] records where its write
//!   set lives; a committer's lock word is the address of its entry.

use std::cell::Cell;
use std::sync::atomic::AtomicU64 as StdAtomicU64;

use super::clock::{LOCKED, SERIAL_LOCKED, is_locked};
use super::entry::{WriteEntry, value_of};
use super::reclaim::Pin;
use super::tvar::{Core, Inner};
use crate::loom::sync::atomic::Ordering;

/// Serial lock words are `id << 3 | SERIAL_LOCKED`: `2 mod 8`, so never an
/// entry address `| LOCKED` (entries are 8-aligned). Ids are unique per
/// thread; they need no modelling under loom.
static NEXT_SERIAL_ID: StdAtomicU64 = StdAtomicU64::new(1);

/// Where the running commit's write set lives while its user code runs.
#[derive(Clone, Copy)]
struct View {
    start: *const WriteEntry,
    len: usize,
    /// The entries may be read through `start` (a shared borrow of the write
    /// set is live); `false` while commutes are resolved in place.
    readable: bool,
}

#[cfg(not(loom))]
thread_local! {
    static SERIAL_WORD: Cell<u64> = const { Cell::new(0) };
    static VIEW: Cell<Option<View>> = const { Cell::new(None) };
}

// loom runs model threads on one OS thread: per-thread state must be loom's.
#[cfg(loom)]
loom::thread_local! {
    static SERIAL_WORD: Cell<u64> = Cell::new(0);
    static VIEW: Cell<Option<View>> = Cell::new(None);
}

/// The lock word this thread's serial transactions lock `TVar`s with.
pub(crate) fn serial_word() -> u64 {
    SERIAL_WORD.with(|w| {
        if w.get() == 0 {
            let id = NEXT_SERIAL_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            w.set(id << 3 | SERIAL_LOCKED);
        }
        w.get()
    })
}

/// Marks the running commit's user code (commute functions, validators):
/// while the guard lives, [`load`] knows the commit's locks. Restores the
/// previous state when dropped (also when the user code panics).
pub(crate) struct CommitView {
    prev: Option<View>,
}

impl CommitView {
    /// While commute functions run and entries change in place: the write
    /// set's address range only (nothing is read through it).
    pub(crate) fn resolving(writes: &mut [WriteEntry]) -> Self {
        Self::set(View {
            start: writes.as_ptr(),
            len: writes.len(),
            readable: false,
        })
    }

    /// While validators run: `writes` stays borrowed (shared) for as long as
    /// the guard lives, so its entries may be read.
    pub(crate) fn validating(writes: &[WriteEntry]) -> Self {
        Self::set(View {
            start: writes.as_ptr(),
            len: writes.len(),
            readable: true,
        })
    }

    fn set(v: View) -> Self {
        Self {
            prev: VIEW.with(|c| c.replace(Some(v))),
        }
    }
}

impl Drop for CommitView {
    fn drop(&mut self) {
        VIEW.with(|c| c.set(self.prev));
    }
}

impl View {
    /// Whether lock word `w` is the owner pointer of one of the entries.
    fn owns(&self, w: u64) -> bool {
        let size = std::mem::size_of::<WriteEntry>();
        let off = ((w & !LOCKED) as usize).wrapping_sub(self.start as usize);
        off.is_multiple_of(size) && off / size < self.len
    }

    /// The entry for `core`, if the commit writes it.
    ///
    /// # Safety
    ///
    /// `self.readable`, and the guard that set the view is alive.
    unsafe fn entry(&self, core: *const Core) -> Option<&WriteEntry> {
        // SAFETY: per the contract, a shared borrow of these `len` entries
        // is live.
        let writes = unsafe { std::slice::from_raw_parts(self.start, self.len) };
        writes.iter().find(|e| e.core == core)
    }
}

/// `TVar::load` found `inner` locked. If this thread holds the lock, or
/// holds locks of its own (a commit running validators), waiting could
/// never end: returns the value to use instead. `None`: another thread's
/// lock, and this thread holds none; wait for it.
///
/// - A `TVar` the running commit writes, loaded by a validator: the value
///   the commit would store (validators judge the state the commit
///   produces, all its commutes applied).
/// - A `TVar` this thread holds otherwise (a serial transaction's closure,
///   a commute function of the running commit): the committed value the
///   lock protects (`load` is not part of the transaction).
/// - Another thread's lock while this thread's commit holds locks: the
///   value there now, without waiting: the committed value, or that of a
///   commit that is already publishing (validated; it cannot fail).
#[cold]
pub(crate) fn load<T: Clone + Send + Sync + 'static>(
    inner: &Inner<T>,
    pin: Option<&Pin>,
) -> Option<T> {
    let w = inner.core.lock.load(Ordering::Acquire);
    if !is_locked(w) {
        // Unlocked meanwhile: the caller samples again.
        return None;
    }
    let mine_serial = w == serial_word();
    let Some(view) = VIEW.with(Cell::get) else {
        // SAFETY: this thread's serial transaction holds the lock.
        return mine_serial.then(|| unsafe { inner.read_locked() });
    };
    if view.readable {
        // SAFETY: a readable view is only set while its write set is
        // borrowed, and it is reset before that borrow ends.
        if let Some(e) = unsafe { view.entry(&inner.core) } {
            // SAFETY: validators run on `Value` entries; `e` is one of
            // this `TVar<T>`.
            return Some(unsafe { value_of::<T>(e) });
        }
    }
    if mine_serial || view.owns(w) {
        // SAFETY: this thread holds the lock.
        return Some(unsafe { inner.read_locked() });
    }
    Some(inner.read_current(pin))
}
