//! The error types of [`crate::task`].

use thiserror::Error;

/// The work was cancelled before it finished: returned by [`Cx::check`]
/// once the scope is cancelled, and by a [`Task`](crate::runtime::Task)
/// cancelled (or whose runtime shut down) before it completed.
///
/// [`Cx::check`]: super::Cx::check
///
/// ```
/// use strata::task::{CancelToken, Cancelled};
///
/// let token = CancelToken::new();
/// token.cancel();
/// assert_eq!(token.check(), Err(Cancelled));
/// ```
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[error("cancelled")]
pub struct Cancelled;

/// Boxed error of a failed child.
///
/// ```
/// use strata::task::{BoxError, TaskError};
/// let e: BoxError = "bad".into();
/// assert_eq!(TaskError::Failed(e).to_string(), "task failed: bad");
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a scope (or one of its children) did not complete.
///
/// A child returns `Err(TaskError)`; the first such error cancels its
/// siblings and is what the scope returns. `cx.check()?` inside a child
/// turns cancellation into [`TaskError::Cancelled`]; wrap your own errors
/// with [`TaskError::failed`] and get them back with
/// [`TaskError::downcast_ref`].
///
/// ```
/// use strata::task::{self, TaskError};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("disk full")]
/// struct DiskFull;
///
/// let r = task::scope(|s| {
///     s.spawn(|_| Err(TaskError::failed(DiskFull)));
/// });
/// let err = r.unwrap_err();
/// assert!(err.downcast_ref::<DiskFull>().is_some());
/// assert_eq!(err.to_string(), "task failed: disk full");
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The work was cancelled (it stopped because a sibling failed, or its
    /// token was cancelled).
    #[error("cancelled")]
    Cancelled,
    /// The work failed with this error.
    #[error("task failed: {0}")]
    Failed(#[source] BoxError),
}

impl TaskError {
    /// Wraps any error as a failure.
    ///
    /// ```
    /// use strata::task::TaskError;
    /// let e = TaskError::failed(std::io::Error::other("disk"));
    /// assert!(!e.is_cancelled());
    /// ```
    pub fn failed(err: impl Into<BoxError>) -> Self {
        TaskError::Failed(err.into())
    }

    /// Whether this is [`TaskError::Cancelled`].
    ///
    /// ```
    /// use strata::task::{Cancelled, TaskError};
    /// assert!(TaskError::from(Cancelled).is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled)
    }

    /// The failure's error, if it is a `Failed` of type `E`.
    ///
    /// ```
    /// use strata::task::TaskError;
    /// let e = TaskError::failed(std::fmt::Error);
    /// assert!(e.downcast_ref::<std::fmt::Error>().is_some());
    /// assert!(e.downcast_ref::<std::io::Error>().is_none());
    /// ```
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            TaskError::Failed(e) => e.downcast_ref::<E>(),
            TaskError::Cancelled => None,
        }
    }
}

impl From<Cancelled> for TaskError {
    fn from(_: Cancelled) -> Self {
        TaskError::Cancelled
    }
}
