//! The error type of [`Versioned`](super::Versioned) writes.

use std::convert::Infallible;

use thiserror::Error;

/// Why a [`Versioned`](super::Versioned) write published nothing.
///
/// In every case the store is exactly as it was: no new version, and the
/// readers see what they saw before.
///
/// ```
/// use strata::snapshot::{SnapshotError, Versioned};
///
/// let store = Versioned::new(10u32);
/// let r = store.write(|n| if *n > 5 { Err("too big") } else { Ok(()) });
/// assert_eq!(r, Err(SnapshotError::Aborted("too big")));
/// assert_eq!(store.version(), 0); // nothing was published
/// ```
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotError<E = Infallible> {
    /// The write closure returned this error; its changes were discarded.
    #[error("the write was aborted and nothing was published: {0}")]
    Aborted(E),
    /// The writer slot did not come free within the timeout.
    #[error("timed out waiting for the writer slot")]
    Timeout,
    /// The writer slot is taken and the caller asked not to wait.
    #[error("another write is in progress")]
    Busy,
    /// `write` was called from inside a write closure of the same store on
    /// the same thread; waiting would never end.
    #[error("write called re-entrantly from inside a write of the same store")]
    Reentrant,
}

impl<E> SnapshotError<E> {
    /// The write closure's own error, if that is why the write failed.
    ///
    /// ```
    /// use strata::snapshot::SnapshotError;
    /// assert_eq!(SnapshotError::Aborted(3).aborted(), Some(3));
    /// assert_eq!(SnapshotError::<i32>::Timeout.aborted(), None);
    /// ```
    pub fn aborted(self) -> Option<E> {
        match self {
            SnapshotError::Aborted(e) => Some(e),
            _ => None,
        }
    }
}

impl SnapshotError<Infallible> {
    /// Widens the error of an infallible write (an
    /// [`update`](super::Versioned::update)) to any closure error type.
    ///
    /// ```
    /// use strata::snapshot::SnapshotError;
    /// let e: SnapshotError<String> = SnapshotError::Timeout.widen();
    /// assert_eq!(e, SnapshotError::Timeout);
    /// ```
    pub fn widen<E>(self) -> SnapshotError<E> {
        match self {
            SnapshotError::Aborted(never) => match never {},
            SnapshotError::Timeout => SnapshotError::Timeout,
            SnapshotError::Busy => SnapshotError::Busy,
            SnapshotError::Reentrant => SnapshotError::Reentrant,
        }
    }
}
