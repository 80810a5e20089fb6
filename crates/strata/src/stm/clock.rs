//! The global version clock and the versioned lock word of a `TVar`.
//!
//! A lock word is `version << 2 | WAITERS | LOCKED`:
//! - `LOCKED`: a committer (or a transaction in serial mode) owns the `TVar`;
//!   readers must not trust its value until the word changes.
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

/// The global version clock. Padded: every writing commit bumps it, and
/// nothing else should share its cache line.
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
#[inline]
pub(crate) fn now() -> u64 {
    CLOCK.load(Ordering::Acquire)
}

/// Advances the clock for a writing commit and returns its write version.
#[inline]
pub(crate) fn tick() -> u64 {
    CLOCK.fetch_add(1, Ordering::AcqRel) + 1
}
