//! `scope`: structured fork-join with borrowing children, first-error
//! cancellation and panic propagation.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};

use super::future::{ChildDropped, ChildPanicked, Filler, Future, FutureSlot};
use super::{CancelToken, Cancelled, TaskError};
use crate::loom::sync::Mutex;
use crate::runtime::{CountLatch, Registry, WorkerThread, with_current};
use crate::runtime::{HeapJob, JobRef};
use std::sync::Arc;

/// What a child sees of its scope: whether it should stop.
///
/// ```
/// let r = strata::task::scope(|s| {
///     s.spawn(|cx| {
///         for _ in 0..1000 {
///             cx.check()?; // returns TaskError::Cancelled once cancelled
///         }
///         Ok(())
///     });
/// });
/// assert!(r.is_ok());
/// ```
pub struct Cx<'a> {
    token: &'a CancelToken,
}

impl<'a> Cx<'a> {
    pub(crate) fn new(token: &'a CancelToken) -> Self {
        Self { token }
    }

    /// Whether the scope was cancelled (a sibling failed or panicked).
    ///
    /// ```
    /// let r = strata::task::scope(|s| {
    ///     s.token().cancel();
    ///     s.spawn(|cx| { assert!(cx.is_cancelled()); Ok(()) });
    /// });
    /// assert!(r.unwrap_err().is_cancelled());
    /// ```
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// `Err(Cancelled)` once the scope is cancelled; `cx.check()?` in a
    /// child that returns `Result<_, TaskError>`.
    ///
    /// ```
    /// use strata::task::{scope, Cancelled};
    /// scope(|s| {
    ///     s.spawn(|cx| {
    ///         assert_eq!(cx.check(), Ok(()));
    ///         Ok(())
    ///     });
    /// })
    /// .unwrap();
    /// let _ = Cancelled;
    /// ```
    #[inline]
    pub fn check(&self) -> Result<(), Cancelled> {
        self.token.check()
    }

    /// The scope's cancel token (to await it, or hand out child tokens).
    ///
    /// ```
    /// strata::task::scope(|s| {
    ///     s.spawn(|cx| {
    ///         let child = cx.token().child_token();
    ///         assert!(!child.is_cancelled());
    ///         Ok(())
    ///     });
    /// })
    /// .unwrap();
    /// ```
    pub fn token(&self) -> &'a CancelToken {
        self.token
    }
}

impl fmt::Debug for Cx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cx")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// The shared state of one scope, on the stack of `scope`.
pub(crate) struct ScopeState {
    registry: Arc<Registry>,
    latch: CountLatch,
    token: CancelToken,
    error: Mutex<Option<TaskError>>,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl ScopeState {
    fn fail(&self, err: TaskError) {
        {
            let mut slot = self.error.lock();
            if slot.is_none() {
                *slot = Some(err);
            }
        }
        self.token.cancel();
    }

    pub(crate) fn panicked(&self, payload: Box<dyn Any + Send>) {
        // A child that forced a future whose child never ran is cancelled,
        // not failed.
        if payload.is::<ChildDropped>() {
            self.token.cancel();
            return;
        }
        {
            let mut slot = self.panic.lock();
            if slot.is_none() {
                *slot = Some(payload);
            }
        }
        self.token.cancel();
    }

    /// Queues a child job counted by the latch.
    ///
    /// # Safety
    /// `job` must decrement the latch exactly once when it ends (run or
    /// not), and borrow nothing that dies before the scope returns.
    pub(crate) unsafe fn push(&self, job: JobRef) {
        // SAFETY: a non-null current worker is live for this whole call.
        match unsafe { WorkerThread::current().as_ref() } {
            Some(w) if std::ptr::eq(&**w.registry(), &*self.registry) => w.push(job),
            _ => self.registry.inject(job),
        }
    }

    pub(crate) fn increment(&self) {
        self.latch.increment();
    }

    /// # Safety
    /// `this` is valid; each party calls this once.
    pub(crate) unsafe fn decrement(this: *const Self) {
        // SAFETY: forwarded; the latch is the last thing touched.
        unsafe { CountLatch::decrement(&(*this).latch) }
    }
}

/// A pointer that may cross to the worker that runs a child; the scope
/// outlives every child, which is what makes dereferencing it sound.
#[derive(Clone, Copy)]
pub(crate) struct StatePtr(pub(crate) *const ScopeState);
// SAFETY: `ScopeState` is Sync (atomics, locks, an Arc'd registry); the
// pointer is only dereferenced while the scope waits for its children.
unsafe impl Send for StatePtr {}

/// A scope child: its closure and the count it holds on the scope's latch.
///
/// However the child goes away — run, skipped because the scope was
/// cancelled, drained unrun when its runtime shut down, or dropped in any
/// other way — `Drop` counts it down exactly once, and only after the
/// closure and everything it owns are gone (they may borrow from the
/// scope's caller, who may return the moment the count reaches zero). A
/// child dropped without running cancels the scope: it cannot complete.
struct Child<F: FnOnce(&ScopeState)> {
    f: Option<F>,
    state: StatePtr,
}

impl<F: FnOnce(&ScopeState)> Child<F> {
    /// Counts one more child on `state` and wraps `f`.
    fn new(state: &ScopeState, f: F) -> Self {
        state.increment();
        Self {
            f: Some(f),
            state: StatePtr(state),
        }
    }

    fn run(mut self) {
        let f = self.f.take().expect("a scope child runs once");
        // SAFETY: the scope waits for this child's count before its state
        // dies, and the count is only given back when `self` drops below.
        let state = unsafe { &*self.state.0 };
        // `f` catches the user closure's panics; this also catches those of
        // dropping what it owns, which must not escape into the job loop.
        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| f(state))) {
            state.panicked(p);
        }
    }
}

impl<F: FnOnce(&ScopeState)> Drop for Child<F> {
    fn drop(&mut self) {
        // SAFETY: as in `run`: the count is still held.
        let state = unsafe { &*self.state.0 };
        if let Some(f) = self.f.take() {
            state.token.cancel();
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| drop(f))) {
                state.panicked(p);
            }
        }
        // SAFETY: this child's one decrement; nothing touched after.
        unsafe { ScopeState::decrement(self.state.0) }
    }
}

/// A scope in which children that borrow from the caller can be spawned;
/// see [`scope`].
///
/// ```
/// let mut v = vec![0; 4];
/// strata::task::scope(|s| {
///     for (i, x) in v.iter_mut().enumerate() {
///         s.spawn(move |_| { *x = i * i; Ok(()) });
///     }
/// })
/// .unwrap();
/// assert_eq!(v, [0, 1, 4, 9]);
/// ```
pub struct Scope<'scope, 'env: 'scope> {
    state: ScopeState,
    /// Invariant in both lifetimes, as `std::thread::Scope`.
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Spawns a child. It runs on the pool, may borrow anything that
    /// outlives the scope, and gets a [`Cx`] to check for cancellation.
    /// If it returns `Err`, the scope is cancelled and (if it was the first
    /// error) the scope returns it. A child that has not started when the
    /// scope is cancelled does not run.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let total = AtomicU64::new(0);
    /// let parts = [1u64, 2, 3, 4];
    /// strata::task::scope(|s| {
    ///     for p in &parts {
    ///         let total = &total;
    ///         s.spawn(move |_| {
    ///             total.fetch_add(*p, Ordering::Relaxed);
    ///             Ok(())
    ///         });
    ///     }
    /// })
    /// .unwrap();
    /// assert_eq!(total.into_inner(), 10);
    /// ```
    pub fn spawn<F>(&'scope self, f: F)
    where
        F: FnOnce(&Cx<'_>) -> Result<(), TaskError> + Send + 'scope,
    {
        let child = Child::new(&self.state, move |state: &ScopeState| {
            if state.token.is_cancelled() {
                return; // skipped; `f` is dropped before the count is given back
            }
            let cx = Cx::new(&state.token);
            match panic::catch_unwind(AssertUnwindSafe(|| f(&cx))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => state.fail(e),
                Err(p) => state.panicked(p),
            }
        });
        // SAFETY: the child gives its count back exactly once, however it
        // ends (see `Child`), and borrows only 'scope data, which the scope
        // keeps alive until the count is zero.
        unsafe { self.state.push(HeapJob::into_job_ref(move || child.run())) };
    }

    /// Starts `f` on the pool and returns a [`Future`] of its value, to
    /// [`force`](Future::force) (or `.await`) when needed — the seeds'
    /// `future`/`force`. Unlike [`spawn`](Scope::spawn), a future child
    /// always runs (its value is needed); it can still look at `cx`.
    ///
    /// ```
    /// let v = strata::task::scope(|s| {
    ///     let a = s.future(|_| (1..=100u64).sum::<u64>());
    ///     let b = s.future(|_| (101..=200u64).sum::<u64>());
    ///     a.force() + b.force()
    /// })
    /// .unwrap();
    /// assert_eq!(v, 20100);
    /// ```
    pub fn future<T, F>(&'scope self, f: F) -> Future<'scope, T>
    where
        F: FnOnce(&Cx<'_>) -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let slot = Arc::new(FutureSlot::new(&self.state.registry.sleep));
        let filler = Filler::new(slot.clone());
        let child = Child::new(&self.state, move |state: &ScopeState| {
            let cx = Cx::new(&state.token);
            match panic::catch_unwind(AssertUnwindSafe(|| f(&cx))) {
                Ok(v) => filler.fill(Some(v)),
                Err(p) => {
                    state.panicked(p);
                    filler.fill(None);
                }
            }
        });
        // SAFETY: as in `spawn`; a child dropped unrun fills its slot with
        // "dropped" (the `Filler`) before it gives its count back.
        unsafe { self.state.push(HeapJob::into_job_ref(move || child.run())) };
        Future::new(slot)
    }

    /// Whether the scope was cancelled (a child failed or panicked).
    ///
    /// ```
    /// let r = strata::task::scope(|s| {
    ///     assert!(!s.is_cancelled());
    ///     s.token().cancel();
    ///     s.is_cancelled()
    /// });
    /// assert!(r.unwrap_err().is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.state.token.is_cancelled()
    }

    /// The scope's cancel token: cancelling it cancels the scope (children
    /// see it through their `Cx`; the scope then returns
    /// `Err(TaskError::Cancelled)` unless a child failed first).
    ///
    /// ```
    /// use strata::task::{scope, TaskError};
    /// let r = scope(|s| s.token().cancel());
    /// assert!(matches!(r, Err(TaskError::Cancelled)));
    /// ```
    pub fn token(&self) -> &CancelToken {
        &self.state.token
    }
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// Runs `f` with a [`Scope`] in which it can spawn children that borrow
/// from the caller, and waits for all of them before returning.
///
/// * All children finish before `scope` returns, whatever happens.
/// * The first child that returns `Err` cancels the scope: its siblings see
///   it through [`Cx::is_cancelled`] / [`Cx::check`], children not yet
///   started are skipped, and `scope` returns that first error once every
///   child has stopped.
/// * A child panic cancels the scope the same way and is re-raised here
///   after every child has stopped.
/// * Cancelling [`Scope::token`] without an error makes the scope return
///   `Err(TaskError::Cancelled)`.
///
/// The body runs on a worker of the current runtime (entering the global
/// one when called from outside a pool), and while it waits for its
/// children that worker runs them and other jobs.
///
/// ```
/// use strata::task::{self, TaskError};
///
/// let data = vec![1, 2, 3];
/// let err = task::scope(|s| {
///     s.spawn(|_| Err(TaskError::failed("bad input")));
///     s.spawn(|cx| {
///         while !cx.is_cancelled() {
///             std::hint::spin_loop(); // stops once the sibling failed
///         }
///         Err(cx.check().unwrap_err().into())
///     });
///     data.len()
/// })
/// .unwrap_err();
/// assert_eq!(err.to_string(), "task failed: bad input");
/// ```
pub fn scope<'env, F, R>(f: F) -> Result<R, TaskError>
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R + Send,
    R: Send,
{
    with_current(|reg| reg.in_worker(|| scope_on_worker(f)))
}

fn scope_on_worker<'env, F, R>(f: F) -> Result<R, TaskError>
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    // SAFETY: `in_worker` runs this on a worker, live for the whole call.
    let worker = unsafe { &*WorkerThread::current() };
    let registry = worker.registry().clone();
    let scope = Scope {
        state: ScopeState {
            latch: CountLatch::new(&registry.sleep),
            registry,
            token: CancelToken::new(),
            error: Mutex::new(None),
            panic: Mutex::new(None),
        },
        _scope: PhantomData,
        _env: PhantomData,
    };
    let body = panic::catch_unwind(AssertUnwindSafe(|| f(&scope)));
    // The body's own party.
    // SAFETY: `scope` lives until after the wait below.
    unsafe { ScopeState::decrement(&scope.state) };
    worker.wait_until(scope.state.latch.latch());
    let child_panic = scope.state.panic.lock().take();
    match body {
        Err(p) => {
            // A `force` of a panicked future unwinds the body with a marker;
            // the child's own payload is the one to re-raise.
            if (p.is::<ChildPanicked>() || p.is::<ChildDropped>())
                && let Some(cp) = child_panic
            {
                panic::resume_unwind(cp);
            }
            // A `force` of a future whose child never ran (its runtime shut
            // down): the scope was cancelled, not failed.
            if p.is::<ChildDropped>() {
                return Err(scope
                    .state
                    .error
                    .lock()
                    .take()
                    .unwrap_or(TaskError::Cancelled));
            }
            panic::resume_unwind(p)
        }
        Ok(r) => {
            if let Some(cp) = child_panic {
                panic::resume_unwind(cp);
            }
            if let Some(e) = scope.state.error.lock().take() {
                return Err(e);
            }
            if scope.state.token.is_cancelled() {
                return Err(TaskError::Cancelled);
            }
            Ok(r)
        }
    }
}
