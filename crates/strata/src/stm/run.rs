//! The transaction loop: attempts, contention management, `retry`
//! blocking (parking or awaiting), limits, and the public entry points.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use super::buffers::ReadEntry;
use super::error::{Limits, StmError, TxError};
use super::stats::{Counter, bump};
use super::tx::{CommitError, Invariant, Stm, Tx};
use super::wait::{self, WaitNode, Woke};
use crate::loom::sync::Arc;
use crate::sync::timeout::Sleep;

/// Consecutive conflicts after which a transaction runs in serial mode.
/// Under loom the models never get there; serial mode is covered by tests.
#[cfg(not(loom))]
const SERIAL_AFTER: u32 = 12;
#[cfg(loom)]
const SERIAL_AFTER: u32 = u32::MAX;

/// One serial (irrevocable) transaction at a time; it locks every `TVar` it
/// touches as it goes, so nothing it read can change and its commit cannot
/// fail. Normal transactions never touch this lock.
#[cfg(not(loom))]
static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

#[cfg(not(loom))]
type SerialGuard = parking_lot::MutexGuard<'static, ()>;
/// Under loom serial mode is never entered.
#[cfg(loom)]
struct SerialGuard;

#[inline]
fn serial_lock(on: bool) -> Option<SerialGuard> {
    #[cfg(not(loom))]
    return on.then(|| SERIAL.lock());
    #[cfg(loom)]
    return on.then_some(SerialGuard);
}

/// The first backoff window, and the largest: a transaction that has lost
/// `c` times in a row spins for a random time below
/// `BACKOFF_NS << (c - 1)`, capped at `BACKOFF_MAX_NS`.
///
/// Why this long (about the time of twenty short transactions): when
/// transactions keep colliding on the same `TVar`s, each collision moves
/// their cache lines from core to core (about the cost of a whole
/// transaction). A loser that comes back at once steals the lines from the
/// winner's next transaction and both lose again; one that stays away a
/// microsecond or so lets the winner commit a run of transactions on its
/// own core, and the random draw hands the next run to either. Measured on
/// the all-conflicting 2-thread bank: windows starting at ~10 ns gave
/// ~400 ns per transfer, ~1.3 µs gives ~50–100 ns with fairness ~0.85.
/// Conflicts are rare when transactions touch different `TVar`s, so the
/// long window costs nothing there.
const BACKOFF_NS: u64 = 1_280;
const BACKOFF_MAX_NS: u64 = 10_240;

/// Spins for a random time in a window that doubles with each consecutive
/// conflict (see [`BACKOFF_NS`]), so transactions that keep colliding drift
/// apart. At most ~10 µs; never sleeps.
fn backoff(conflicts: u32) {
    let window = (BACKOFF_NS << conflicts.saturating_sub(1).min(16)).min(BACKOFF_MAX_NS);
    super::backoff::spin_below(window);
}

/// What one attempt led to.
enum Step<R, E> {
    Done(Result<R, StmError<E>>),
    /// Conflict: run again (after backoff).
    Again,
    /// `retry`: block until the read set changes, then run again.
    Block,
}

/// The state of one `atomically` call across its attempts.
struct Driver {
    max_attempts: Option<u32>,
    deadline: Option<Instant>,
    /// `max_attempts` or `deadline` is set.
    limited: bool,
    attempts: u32,
    conflicts: u32,
    serial: bool,
}

impl Driver {
    #[inline]
    fn new(limits: Limits) -> Self {
        Self {
            max_attempts: limits.max_attempts,
            deadline: limits.timeout.map(deadline_after),
            limited: limits.max_attempts.is_some() || limits.timeout.is_some(),
            attempts: 0,
            conflicts: 0,
            serial: false,
        }
    }

    /// The limit this call has run out of, if any.
    #[cold]
    fn exhausted<E>(&self) -> Option<StmError<E>> {
        if self.max_attempts.is_some_and(|m| self.attempts >= m) {
            return Some(StmError::TooManyAttempts {
                attempts: self.attempts,
            });
        }
        if self.attempts > 0 && self.timed_out() {
            return Some(StmError::Timeout);
        }
        None
    }

    fn timed_out(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    #[inline]
    fn attempt<'env, R, E, F>(&mut self, tx: &mut Tx<'env, E>, f: &mut F) -> Step<R, E>
    where
        F: FnMut(&mut Tx<'env, E>) -> Stm<R, E>,
    {
        if self.limited
            && let Some(e) = self.exhausted()
        {
            tx.bump(Counter::Limits);
            return Step::Done(Err(e));
        }
        self.attempts += 1;
        let serial = serial_lock(self.serial);
        tx.begin(self.serial);
        let r = f(tx);
        let step = match r {
            Ok(v) if !tx.is_poisoned() => match tx.commit() {
                Ok(()) => {
                    // Watches run outside the transaction: they may start
                    // transactions of their own, serial ones too.
                    drop(serial);
                    tx.finish();
                    return Step::Done(Ok(v));
                }
                Err(CommitError::Conflict(cause)) => {
                    tx.cause = cause;
                    Step::Again
                }
                Err(CommitError::Invalid(tvar)) => {
                    tx.bump(Counter::Invalid);
                    Step::Done(Err(StmError::Invalid { tvar }))
                }
            },
            Err(TxError::Signal(s)) if s.is_retry() && !tx.is_poisoned() => {
                if tx.read_nothing() {
                    Step::Done(Err(StmError::EmptyRetry))
                } else {
                    tx.prepare_wait();
                    self.conflicts = 0;
                    self.serial = false;
                    Step::Block
                }
            }
            Err(TxError::Abort(e)) if !tx.is_poisoned() => {
                tx.bump(Counter::User);
                Step::Done(Err(StmError::Abort(e)))
            }
            // A conflict (signalled, or swallowed by the closure).
            _ => {
                if !tx.is_poisoned() {
                    tx.cause = Counter::ReadConflict;
                }
                Step::Again
            }
        };
        tx.ended();
        if let Step::Again = step {
            self.conflicted(tx);
        }
        step
    }

    /// Contention management after a conflict: back off, or go serial.
    #[cold]
    fn conflicted<E>(&mut self, tx: &mut Tx<'_, E>) {
        tx.bump(tx.cause);
        self.conflicts += 1;
        if !self.serial && self.conflicts >= SERIAL_AFTER {
            self.serial = true;
            tx.bump(Counter::Serial);
        } else {
            backoff(self.conflicts);
        }
    }
}

#[cold]
fn deadline_after(t: std::time::Duration) -> Instant {
    crate::sync::timeout::deadline_after(t).unwrap_or_else(far_future)
}

fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(60 * 60 * 24 * 365 * 30)
}

// Inlined into the entry points: `Limits::default()` then folds away.
#[inline(always)]
fn run<'env, R, E, F>(limits: Limits, mut f: F) -> Result<R, StmError<E>>
where
    F: FnMut(&mut Tx<'env, E>) -> Stm<R, E>,
{
    let Some(mut tx) = Tx::enter() else {
        return Err(StmError::Nested);
    };
    let mut d = Driver::new(limits);
    loop {
        match d.attempt(&mut tx, &mut f) {
            Step::Done(r) => return r,
            Step::Again => {}
            Step::Block => {
                // SAFETY: the read set's `TVar`s are borrowed for `'env`,
                // which outlives this call.
                if unsafe { wait::block(tx.read_set(), d.deadline) } == Woke::TimedOut {
                    tx.bump(Counter::Limits);
                    return Err(StmError::Timeout);
                }
            }
        }
    }
}

/// Runs `f` as one atomic, isolated transaction and returns its result.
///
/// `f` runs as many times as it takes: a conflict with a concurrent commit
/// re-runs it, [`retry`] blocks the thread until a `TVar` it read changes and
/// then re-runs it. It must therefore have no effects outside the `Tx`
/// (no I/O, no strata lock held across a `retry`: the lock would stay held
/// while the thread sleeps). Errors: [`StmError::Invalid`] if a validator
/// rejects the commit, [`StmError::EmptyRetry`], [`StmError::Nested`].
/// For user errors see [`try_atomically`], for bounds [`atomically_with`].
///
/// A panic in `f` aborts the transaction (nothing is committed), leaves the
/// thread ready for its next transaction, and propagates.
///
/// ```
/// use strata::stm::{atomically, TVar};
///
/// let from = TVar::new(100);
/// let to = TVar::new(0);
/// atomically(|tx| {
///     tx.modify(&from, |b| b - 25)?;
///     tx.modify(&to, |b| b + 25)
/// })
/// .unwrap();
/// assert_eq!(from.load() + to.load(), 100);
/// ```
pub fn atomically<'env, R>(f: impl FnMut(&mut Tx<'env>) -> Stm<R>) -> Result<R, StmError> {
    run(Limits::default(), f)
}

/// [`atomically`] for closures that can fail: `Err(TxError::Abort(e))`
/// (see [`abort`]) aborts the transaction with no effects and is returned as
/// [`StmError::Abort(e)`](StmError::Abort).
///
/// ```
/// use strata::stm::{abort, try_atomically, StmError, TVar};
///
/// let stock = TVar::new(1);
/// let take = |n| {
///     try_atomically(|tx| {
///         let s = tx.read(&stock)?;
///         if s < n {
///             return abort("out of stock");
///         }
///         tx.write(&stock, s - n)?;
///         Ok(s - n)
///     })
/// };
/// assert_eq!(take(1), Ok(0));
/// assert_eq!(take(1), Err(StmError::Abort("out of stock")));
/// ```
pub fn try_atomically<'env, R, E>(
    f: impl FnMut(&mut Tx<'env, E>) -> Stm<R, E>,
) -> Result<R, StmError<E>> {
    run(Limits::default(), f)
}

/// [`try_atomically`] within `limits`: gives up with
/// [`StmError::TooManyAttempts`] or [`StmError::Timeout`] (time blocked in
/// [`retry`] counts) instead of running on.
///
/// ```
/// use std::time::Duration;
/// use strata::stm::{atomically_with, retry, Limits, StmError, TVar, TxError};
///
/// let ready = TVar::new(false);
/// let limits = Limits { timeout: Some(Duration::from_millis(10)), ..Limits::default() };
/// // No user error here: name the error type (`TxError` = no user error).
/// let r = atomically_with(limits, |tx| {
///     if !tx.read(&ready)? {
///         return retry();
///     }
///     Ok::<_, TxError>(())
/// });
/// assert_eq!(r, Err(StmError::Timeout));
/// ```
pub fn atomically_with<'env, R, E>(
    limits: Limits,
    f: impl FnMut(&mut Tx<'env, E>) -> Stm<R, E>,
) -> Result<R, StmError<E>> {
    run(limits, f)
}

/// Blocks the transaction until a `TVar` it has read changes, then runs it
/// again (GHC's `retry`). Return it from the closure: `return retry();`.
///
/// ```
/// use std::thread;
/// use strata::stm::{atomically, retry, TVar};
///
/// let slot = TVar::new(None::<u32>);
/// thread::scope(|s| {
///     s.spawn(|| atomically(|tx| tx.write(&slot, Some(42))).unwrap());
///     let got = atomically(|tx| match tx.read(&slot)? {
///         Some(x) => Ok(x),
///         None => retry(),
///     })
///     .unwrap();
///     assert_eq!(got, 42);
/// });
/// ```
pub fn retry<T, E>() -> Stm<T, E> {
    Err(TxError::Signal(super::error::TxSignal::RETRY))
}

/// `retry()` unless `cond` holds (GHC's `check`).
///
/// ```
/// use strata::stm::{atomically, check, TVar};
///
/// let n = TVar::new(3);
/// atomically(|tx| {
///     let x = tx.read(&n)?;
///     check(x > 0)?;
///     tx.write(&n, x - 1)
/// })
/// .unwrap();
/// assert_eq!(n.load(), 2);
/// ```
pub fn check<E>(cond: bool) -> Stm<(), E> {
    if cond { Ok(()) } else { retry() }
}

/// Aborts the transaction with the user error `e`: nothing is committed and
/// [`try_atomically`] returns [`StmError::Abort(e)`](StmError::Abort).
///
/// ```
/// use strata::stm::{abort, try_atomically, StmError};
///
/// let r: Result<(), _> = try_atomically(|_tx| abort(5));
/// assert_eq!(r, Err(StmError::Abort(5)));
/// ```
pub fn abort<T, E>(e: E) -> Stm<T, E> {
    Err(TxError::Abort(e))
}

/// Composes two transactions: run `a`; if it retries, undo its writes and run
/// `b` (see [`Tx::or_else`]). The result is itself a transaction closure, so
/// it nests: `or_else(a, or_else(b, c))`.
///
/// ```
/// use strata::stm::{atomically, or_else, retry, Stm, TVar, Tx};
///
/// // Transaction pieces that borrow `TVar`s are best written as functions
/// // over `Tx<'a>` (a closure annotated `&mut Tx<'_>` would demand
/// // `'static` `TVar`s).
/// fn pop<'a>(q: &'a TVar<Vec<u8>>) -> impl FnMut(&mut Tx<'a>) -> Stm<u8> {
///     move |tx| {
///         let mut v = tx.read(q)?;
///         match v.pop() {
///             Some(x) => { tx.write(q, v)?; Ok(x) }
///             None => retry(),
///         }
///     }
/// }
/// let q1 = TVar::new(Vec::<u8>::new());
/// let q2 = TVar::new(vec![9u8]);
/// assert_eq!(atomically(or_else(pop(&q1), pop(&q2))).unwrap(), 9);
/// ```
pub fn or_else<'env, R, E>(
    mut a: impl FnMut(&mut Tx<'env, E>) -> Stm<R, E>,
    mut b: impl FnMut(&mut Tx<'env, E>) -> Stm<R, E>,
) -> impl FnMut(&mut Tx<'env, E>) -> Stm<R, E> {
    move |tx| tx.or_else(&mut a, &mut b)
}

/// The future of [`atomically_async`] / [`atomically_async_with`].
///
/// Once it has returned `Ready` (with any result), or a poll of it has
/// panicked, it is finished: polling it again never runs the transaction
/// again and returns `Ready(Err(`[`StmError::PolledAfterCompletion`]`))`
/// (a typed error rather than a panic, and no second commit).
///
/// ```
/// use std::future::Future;
/// use std::pin::Pin;
/// use std::task::{Context, Poll};
/// use strata::stm::{atomically, atomically_async, retry, StmError, TVar};
///
/// let ready = TVar::new(0u32);
/// let mut fut = atomically_async(|tx| match tx.read(&ready)? {
///     0 => retry(),
///     n => Ok(n),
/// });
/// let waker = futures::task::noop_waker();
/// let mut cx = Context::from_waker(&waker);
/// // Blocked in `retry`: registered on `ready`, the task sleeps.
/// assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
/// atomically(|tx| tx.write(&ready, 5)).unwrap();
/// assert_eq!(Pin::new(&mut fut).poll(&mut cx), Poll::Ready(Ok(5)));
/// // Finished: polling again never re-runs the transaction.
/// assert_eq!(
///     Pin::new(&mut fut).poll(&mut cx),
///     Poll::Ready(Err(StmError::PolledAfterCompletion))
/// );
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct Atomically<'env, F, R, E> {
    f: F,
    driver: Driver,
    /// Set while a poll runs and kept once it returns `Ready` (or unwinds).
    done: bool,
    waiting: Option<Waiting>,
    sleep: Option<Sleep>,
    _out: PhantomData<fn() -> (R, E)>,
    _env: PhantomData<Invariant<'env>>,
}

/// A registration on a blocked transaction's read set.
struct Waiting {
    node: Arc<WaitNode>,
    reads: Vec<ReadEntry>,
}

impl Waiting {
    fn cancel(self) {
        // SAFETY: the `TVar`s are borrowed for `'env`, which the future
        // (holding this registration) cannot outlive.
        unsafe { wait::deregister_all(&self.reads, &self.node) };
    }
}

// The closure is only ever called through `&mut`, never pinned.
impl<F, R, E> Unpin for Atomically<'_, F, R, E> {}

// SAFETY: the only non-`Send` fields are the read set's raw pointers, which
// point at `TVar` cores (shared, `Sync` state) borrowed for `'env`; a
// registration may move to another thread with its future.
unsafe impl<F: Send, R, E> Send for Atomically<'_, F, R, E> {}

impl<'env, F, R, E> Future for Atomically<'env, F, R, E>
where
    F: FnMut(&mut Tx<'env, E>) -> Stm<R, E>,
{
    type Output = Result<R, StmError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Err(StmError::PolledAfterCompletion));
        }
        // Cleared only if the poll ends `Pending`, so a panic in the closure
        // (or a validator, or a watch) also finishes the future.
        this.done = true;
        let r = this.poll_attempts(cx);
        if r.is_pending() {
            this.done = false;
        }
        r
    }
}

impl<'env, F, R, E> Atomically<'env, F, R, E>
where
    F: FnMut(&mut Tx<'env, E>) -> Stm<R, E>,
{
    fn poll_attempts(&mut self, cx: &mut Context<'_>) -> Poll<Result<R, StmError<E>>> {
        let this = self;
        if let Some(w) = &this.waiting {
            if !w.node.is_notified() {
                if let Some(deadline) = this.driver.deadline {
                    let sleep = this.sleep.get_or_insert_with(|| Sleep::until(deadline));
                    if Pin::new(sleep).poll(cx).is_ready() {
                        this.waiting.take().expect("waiting").cancel();
                        bump(Counter::Limits);
                        return Poll::Ready(Err(StmError::Timeout));
                    }
                }
                w.node.update_waker(cx.waker());
                // A wake between the check above and the update would have
                // used the old waker: look again.
                if !w.node.is_notified() {
                    return Poll::Pending;
                }
            }
            this.waiting.take().expect("waiting").cancel();
            bump(Counter::Wakeups);
        }
        let Some(mut tx) = Tx::enter() else {
            return Poll::Ready(Err(StmError::Nested));
        };
        loop {
            match this.driver.attempt(&mut tx, &mut this.f) {
                Step::Done(r) => return Poll::Ready(r),
                Step::Again => {}
                Step::Block => {
                    let node = WaitNode::for_task(cx.waker());
                    let reads = tx.read_set().to_vec();
                    // SAFETY: as in `Waiting::cancel`.
                    if unsafe { wait::register_all(&reads, &node) } {
                        bump(Counter::Retries);
                        this.waiting = Some(Waiting { node, reads });
                        if let Some(deadline) = this.driver.deadline {
                            let sleep = this.sleep.get_or_insert_with(|| Sleep::until(deadline));
                            if Pin::new(sleep).poll(cx).is_ready() {
                                this.waiting.take().expect("waiting").cancel();
                                bump(Counter::Limits);
                                return Poll::Ready(Err(StmError::Timeout));
                            }
                        }
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

impl<F, R, E> Drop for Atomically<'_, F, R, E> {
    fn drop(&mut self) {
        if let Some(w) = self.waiting.take() {
            w.cancel();
        }
    }
}

/// [`atomically`] that awaits instead of parking the thread when the
/// transaction retries: the task is woken by the commit that changes its
/// read set (waker-based; works under any executor). Dropping the future
/// cancels the wait. Attempts themselves run synchronously inside `poll`.
///
/// ```
/// use strata::stm::{atomically, atomically_async, retry, TVar};
///
/// let flag = TVar::new(false);
/// std::thread::scope(|s| {
///     s.spawn(|| atomically(|tx| tx.write(&flag, true)).unwrap());
///     futures::executor::block_on(atomically_async(|tx| {
///         if tx.read(&flag)? { Ok(()) } else { retry() }
///     }))
///     .unwrap();
/// });
/// ```
pub fn atomically_async<'env, R, F>(f: F) -> Atomically<'env, F, R, std::convert::Infallible>
where
    F: FnMut(&mut Tx<'env>) -> Stm<R>,
{
    atomically_async_with(Limits::default(), f)
}

/// [`atomically_async`] with user errors and [`Limits`] (as
/// [`atomically_with`]).
///
/// ```
/// use std::time::Duration;
/// use strata::stm::{atomically_async_with, retry, Limits, StmError, TVar, TxError};
///
/// let never = TVar::new(0);
/// let limits = Limits { timeout: Some(Duration::from_millis(5)), ..Limits::default() };
/// let r = futures::executor::block_on(atomically_async_with(limits, |tx| {
///     if tx.read(&never)? == 0 { retry() } else { Ok::<_, TxError>(()) }
/// }));
/// assert_eq!(r, Err(StmError::Timeout));
/// ```
pub fn atomically_async_with<'env, R, E, F>(limits: Limits, f: F) -> Atomically<'env, F, R, E>
where
    F: FnMut(&mut Tx<'env, E>) -> Stm<R, E>,
{
    Atomically {
        f,
        driver: Driver::new(limits),
        done: false,
        waiting: None,
        sleep: None,
        _out: PhantomData,
        _env: PhantomData,
    }
}
