//! The error types of [`crate::sync`].

use thiserror::Error;

/// Why a [`Barrier`](super::Barrier) could not be built.
///
/// ```
/// use strata::sync::{Barrier, BarrierError};
/// assert_eq!(Barrier::new(0).unwrap_err(), BarrierError::ZeroParties);
/// ```
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum BarrierError {
    /// A barrier that waits for zero threads would never have a leader.
    #[error("a barrier needs at least one party")]
    ZeroParties,
}

/// Why permits of a [`Semaphore`](super::Semaphore) were not acquired.
///
/// ```
/// use strata::sync::{AcquireError, Semaphore};
/// let sem = Semaphore::new(2);
/// assert_eq!(
///     sem.acquire_many(3).unwrap_err(),
///     AcquireError::TooMany { requested: 3, total: 2 }
/// );
/// ```
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum AcquireError {
    /// More permits were asked for than the semaphore will ever have, so the
    /// wait could never end.
    #[error("requested {requested} permits but the semaphore only has {total}")]
    TooMany {
        /// Permits asked for.
        requested: usize,
        /// Permits the semaphore was built with.
        total: usize,
    },
    /// The deadline passed first.
    #[error("timed out waiting for permits")]
    Timeout,
    /// The permits are taken and the caller asked not to wait.
    #[error("no permits available")]
    WouldBlock,
}

/// A timed lock acquisition gave up.
///
/// ```
/// use std::time::Duration;
/// use strata::sync::{AsyncMutex, LockTimeout};
/// let m = AsyncMutex::new(1);
/// let _held = m.try_lock().unwrap();
/// let r = futures::executor::block_on(m.lock_timeout(Duration::from_millis(1)));
/// assert_eq!(r.unwrap_err(), LockTimeout);
/// ```
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Default)]
#[error("timed out waiting for the lock")]
pub struct LockTimeout;

/// A `try_` acquisition found the lock held.
///
/// ```
/// use strata::sync::{AsyncMutex, WouldBlock};
/// let m = AsyncMutex::new(1);
/// let _held = m.try_lock().unwrap();
/// assert_eq!(m.try_lock().unwrap_err(), WouldBlock);
/// ```
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Default)]
#[error("the lock is held")]
pub struct WouldBlock;
