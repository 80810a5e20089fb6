//! The global version clock and the versioned lock word of a `TVar`.
//!
//! An unlocked lock word is `version << 2 | WAITERS`; a locked one has
//! `LOCKED` set and holds no version:
//! - `LOCKED`: a committer (or a transaction in serial mode) owns the `TVar`;
//!   readers must not trust its value until the word changes. A committer's
//!   word is the address of its write-set entry for the `TVar` `| LOCKED`
//!   (TL2's owner pointer: commit validation recognises its own locks with
//!   a range check instead of a search), a serial transaction's word is
//!   its thread's serial word (`id << 3 | SERIAL_LOCKED`, see `own`); both
//!   keep the word they replaced.
//! - `WAITERS`: some transaction blocked in `retry` is registered on the
//!   `TVar`'s waiter list. It is set with a CAS by the waiter *only while the
//!   word still holds the version it read*, and a committer learns of it
//!   from the value its locking CAS replaced. Both sides touching one
//!   location is what makes wake-ups impossible to lose, with no fence on
//!   the commit path.
//! - the version: the clock value of the commit that wrote the current
//!   value.

#[cfg(loom)]
use crate::loom::sync::atomic::AtomicU64;
use crate::loom::sync::atomic::Ordering;

pub(crate) const LOCKED: u64 = 1;
pub(crate) const WAITERS: u64 = 2;
/// The low bits of the word of a `TVar` locked by a serial-mode
/// transaction (no entry address `| LOCKED` is 3 mod 8); the bits above
/// name the thread.
pub(crate) const SERIAL_LOCKED: u64 = LOCKED | WAITERS;
const SHIFT: u32 = 2;

/// The version stored in lock word `w`.
#[inline]
pub(crate) const fn version(w: u64) -> u64 {
    w >> SHIFT
}

/// The unlocked lock word for `version`, without waiters.
#[inline]
pub(crate) const fn word(version: u64) -> u64 {
    version << SHIFT
}

#[inline]
pub(crate) const fn is_locked(w: u64) -> bool {
    w & LOCKED != 0
}

/// The global version clock. Padded: it is read by every transaction and
/// written when a reader meets a newer version; nothing else should share
/// its cache line.
#[cfg(not(loom))]
static CLOCK: crossbeam_utils::CachePadded<std::sync::atomic::AtomicU64> =
    crossbeam_utils::CachePadded::new(std::sync::atomic::AtomicU64::new(0));

// loom atomics cannot live in a `static`; each model gets its own clock,
// created lazily on the model's thread.
#[cfg(loom)]
loom::lazy_static! {
    static ref CLOCK: AtomicU64 = AtomicU64::new(0);
}

/// The current clock: a transaction's read version.
///
/// Ordering: a commit locks its write set and *then* reads the clock; a
/// transaction reads the clock and *then* the lock words. With the locks'
/// CAS, these loads and `observe`'s bump all sequentially consistent, a
/// commit whose version is `<= rv` has its locks visible to every later
/// read of the snapshot `rv` (on x86 these orderings cost nothing extra).
/// loom treats SeqCst accesses as AcqRel, so under loom the same argument is
/// made with SeqCst fences (which loom does model).
#[inline]
pub(crate) fn now() -> u64 {
    #[cfg(not(loom))]
    {
        CLOCK.load(Ordering::SeqCst)
    }
    #[cfg(loom)]
    {
        let c = CLOCK.load(Ordering::Acquire);
        crate::loom::sync::atomic::fence(Ordering::SeqCst);
        c
    }
}

/// The version a commit publishes with, called once its write set is
/// locked: above the clock (so it is newer than every running snapshot that
/// could miss it) and above every version it replaces (so a `TVar`'s version
/// changes on every commit, which validation relies on).
///
/// The clock itself is not written: commits do not contend on it. A reader
/// that meets a version above its snapshot advances it ([`observe`]).
#[inline]
pub(crate) fn write_version(max_replaced: u64) -> u64 {
    #[cfg(loom)]
    crate::loom::sync::atomic::fence(Ordering::SeqCst);
    CLOCK.load(Ordering::SeqCst).max(max_replaced) + 1
}

/// Makes the clock at least `v` (a version some reader has seen).
#[inline]
pub(crate) fn observe(v: u64) {
    if CLOCK.load(Ordering::Relaxed) < v {
        CLOCK.fetch_max(v, Ordering::SeqCst);
    }
}
