//! The error and signal types of [`crate::stm`].

use std::convert::Infallible;
use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// Why a transactional operation stopped the current attempt.
///
/// Every operation of a [`Tx`](super::Tx) returns [`Stm`](super::Stm): an
/// `Err(TxError::Signal(_))` means the attempt has to be re-run (it lost a
/// race) or has to block ([`retry`](super::retry)). Propagate it with `?`;
/// it cannot be constructed outside strata. Swallowing it is harmless but
/// pointless: the transaction remembers a conflict and re-runs instead of
/// committing.
///
/// ```
/// use strata::stm::{atomically, TVar};
///
/// let v = TVar::new(1);
/// let doubled = atomically(|tx| Ok(tx.read(&v)? * 2)).unwrap();
/// assert_eq!(doubled, 2);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TxSignal(pub(crate) SignalKind);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignalKind {
    /// Another transaction committed something this attempt depends on.
    Conflict,
    /// The transaction called `retry`: block until its read set changes.
    Retry,
}

impl TxSignal {
    pub(crate) const CONFLICT: TxSignal = TxSignal(SignalKind::Conflict);
    pub(crate) const RETRY: TxSignal = TxSignal(SignalKind::Retry);

    /// Whether this is a [`retry`](super::retry) (the transaction blocks
    /// until a `TVar` it read changes) rather than a conflict (it re-runs at
    /// once).
    ///
    /// ```
    /// use strata::stm::{retry, TxError};
    ///
    /// let r: Result<(), TxError> = retry();
    /// assert!(matches!(r, Err(TxError::Signal(s)) if s.is_retry()));
    /// ```
    pub fn is_retry(&self) -> bool {
        self.0 == SignalKind::Retry
    }
}

impl fmt::Debug for TxSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SignalKind::Conflict => f.write_str("TxSignal(Conflict)"),
            SignalKind::Retry => f.write_str("TxSignal(Retry)"),
        }
    }
}

impl fmt::Display for TxSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SignalKind::Conflict => f.write_str("the transaction conflicted and must re-run"),
            SignalKind::Retry => f.write_str("the transaction retries"),
        }
    }
}

impl std::error::Error for TxSignal {}

/// The error side of [`Stm`](super::Stm): a [`TxSignal`] from an operation
/// (propagated with `?`), or a user error `E` that aborts the transaction
/// with no effects ([`abort`](super::abort), or `?` on a `Result<_, E>`).
/// `E` is the `Tx`'s error type: [`Infallible`] under
/// [`atomically`](super::atomically), chosen by the closure under
/// [`try_atomically`](super::try_atomically).
///
/// ```
/// use strata::stm::{abort, try_atomically, StmError, TVar, TxError};
///
/// let balance = TVar::new(5);
/// let r = try_atomically(|tx| {
///     let b = tx.read(&balance)?;
///     if b < 10 {
///         return abort("insufficient funds");
///     }
///     tx.write(&balance, b - 10)?;
///     Ok(())
/// });
/// assert_eq!(r, Err(StmError::Abort("insufficient funds")));
/// assert_eq!(balance.load(), 5);
/// # let _: Option<TxError<&str>> = None;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxError<E = Infallible> {
    /// The attempt must re-run or block; strata handles it.
    Signal(TxSignal),
    /// A user error: the transaction aborts and `atomically` returns it.
    Abort(E),
}

/// `?` on a `Result<_, E>` inside a transaction whose error type is `E`
/// aborts it with that error.
impl<E> From<E> for TxError<E> {
    #[inline]
    fn from(e: E) -> Self {
        TxError::Abort(e)
    }
}

impl<E: fmt::Display> fmt::Display for TxError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Signal(s) => s.fmt(f),
            TxError::Abort(e) => write!(f, "transaction aborted: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for TxError<E> {}

/// Why a transaction did not commit.
///
/// It is `Display` (and `std::error::Error`) when `E` is `Display`: the
/// message of [`StmError::Abort`] includes the user error's.
///
/// ```
/// use strata::stm::{atomically, StmError, TVar};
///
/// let v = TVar::new(1u32);
/// v.set_validator(|x| *x < 10);
/// let r = atomically(|tx| tx.write(&v, 99));
/// assert_eq!(r, Err(StmError::Invalid { tvar: v.id() }));
/// assert_eq!(v.load(), 1);
/// let e: StmError<&str> = StmError::Abort("insufficient funds");
/// assert_eq!(e.to_string(), "the transaction aborted: insufficient funds");
/// ```
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StmError<E = Infallible> {
    /// The closure returned a user error ([`TxError::Abort`]); nothing was
    /// committed.
    #[error("the transaction aborted: {0}")]
    Abort(E),
    /// A validator of the `TVar` with this [`id`](super::TVar::id) rejected
    /// the value the transaction would have committed; nothing was committed.
    #[error("a validator of TVar {tvar} rejected the transaction's value")]
    Invalid {
        /// The rejecting `TVar`'s id.
        tvar: u64,
    },
    /// [`Limits::max_attempts`] attempts ran without committing.
    #[error("the transaction did not commit in {attempts} attempts")]
    TooManyAttempts {
        /// Attempts made.
        attempts: u32,
    },
    /// [`Limits::timeout`] passed without a commit (conflicts or a `retry`
    /// that was never woken).
    #[error("the transaction did not commit before its timeout")]
    Timeout,
    /// The transaction called [`retry`](super::retry) having read no `TVar`:
    /// nothing could ever wake it.
    #[error("retry with an empty read set would block forever")]
    EmptyRetry,
    /// `atomically` was called inside a transaction (or a validator) on the
    /// same thread; compose with the outer `Tx` instead.
    #[error("atomically called inside a transaction")]
    Nested,
    /// An [`Atomically`](super::Atomically) future was polled again after it
    /// had returned `Ready` (a caller's mistake). The transaction is not run
    /// again: whatever the first result was stands, once.
    #[error("an atomically_async future was polled after it completed")]
    PolledAfterCompletion,
}

/// Bounds on one `atomically_with` call: the attempts it may make and the
/// time it may take, including time blocked in [`retry`](super::retry).
/// `None` means unbounded; the default bounds nothing.
///
/// ```
/// use std::time::Duration;
/// use strata::stm::Limits;
///
/// let l = Limits { max_attempts: Some(100), timeout: Some(Duration::from_millis(50)) };
/// assert_eq!(Limits::default().max_attempts, None);
/// # let _ = l;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// At most this many runs of the closure (a conflict or a wake-up from
    /// `retry` starts a new one); then [`StmError::TooManyAttempts`].
    pub max_attempts: Option<u32>,
    /// At most this long in total; then [`StmError::Timeout`].
    pub timeout: Option<Duration>,
}
