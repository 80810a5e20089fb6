//! The error type of [`crate::lease`].

use thiserror::Error;

use super::WriterLease;
use crate::io::FileLockError;

/// Why a writer lease was not acquired or released.
///
/// ```
/// use strata::lease::{LeaseError, LeaseGate, WriterPolicy};
/// let gate = LeaseGate::new();
/// let _lease = gate.acquire(WriterPolicy::Wait)?;
/// let err = gate.acquire(WriterPolicy::Fail).unwrap_err();
/// assert!(matches!(err, LeaseError::WriterBusy));
/// assert_eq!(err.to_string(), "another writer holds the lease");
/// # Ok::<(), LeaseError>(())
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// Another writer holds (or waits for) the lease, and the policy was
    /// [`Fail`](super::WriterPolicy::Fail).
    #[error("another writer holds the lease")]
    WriterBusy,
    /// The lease did not come within the
    /// [`Timeout`](super::WriterPolicy::Timeout).
    #[error("timed out waiting for the writer lease")]
    WriterTimeout,
    /// [`LeaseGate::release`](super::LeaseGate::release) was given a lease
    /// of another gate. Here it is back, untouched and still held.
    #[error("the lease belongs to another gate")]
    ForeignLease(WriterLease),
    /// The gate's cross-process file lock failed.
    #[error("the writer lease's file lock failed: {0}")]
    FileLock(#[source] FileLockError),
}

impl LeaseError {
    /// The lease handed back by a refused
    /// [`release`](super::LeaseGate::release), if this is that error.
    ///
    /// ```
    /// use strata::lease::{LeaseGate, WriterPolicy};
    /// let (a, b) = (LeaseGate::new(), LeaseGate::new());
    /// let lease = a.acquire(WriterPolicy::Wait)?;
    /// let back = b.release(lease).unwrap_err().into_lease().expect("handed back");
    /// assert!(a.owns(&back));
    /// # Ok::<(), strata::lease::LeaseError>(())
    /// ```
    pub fn into_lease(self) -> Option<WriterLease> {
        match self {
            LeaseError::ForeignLease(lease) => Some(lease),
            _ => None,
        }
    }
}
