//! `scope_async`: structured concurrency for `'static` futures.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::{CancelToken, TaskError};
use crate::loom::sync::Mutex;
use crate::runtime::{Registry, Task, spawn_on, with_current};
use std::sync::Arc;

/// Polls the inner future, turning a panic into `Err(payload)`.
struct CatchUnwind<F>(F);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of the only field; it is never moved.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        match panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

struct State {
    pending: usize,
    waker: Option<Waker>,
    error: Option<TaskError>,
    panic: Option<Box<dyn Any + Send>>,
    /// Handles of the children (to cancel them), finished ones pruned on
    /// `spawn` once the list reaches `prune_at`.
    tasks: Vec<Task<()>>,
    prune_at: usize,
}

/// Smallest `prune_at`: below it pruning is not worth a pass.
const PRUNE_MIN: usize = 16;

struct Inner {
    token: CancelToken,
    state: Mutex<State>,
}

impl Inner {
    /// A child ended: `None` means it was cancelled (dropped).
    fn child_done(&self, res: Option<Result<Result<(), TaskError>, Box<dyn Any + Send>>>) {
        let (waker, cancel) = {
            let mut st = self.state.lock();
            let cancel = match res {
                Some(Ok(Err(e))) => {
                    if st.error.is_none() {
                        st.error = Some(e);
                    }
                    true
                }
                Some(Err(p)) => {
                    if st.panic.is_none() {
                        st.panic = Some(p);
                    }
                    true
                }
                Some(Ok(Ok(()))) | None => false,
            };
            st.pending -= 1;
            let waker = if st.pending == 0 {
                st.waker.take()
            } else {
                None
            };
            (waker, cancel)
        };
        if cancel {
            self.cancel_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Cancels the token and every child task (outside the state lock: a
    /// cancelled child reports back through `child_done`).
    fn cancel_all(&self) {
        self.token.cancel();
        let tasks = std::mem::take(&mut self.state.lock().tasks);
        for t in &tasks {
            t.cancel();
        }
    }
}

/// Reports a child's end even when its task is cancelled (the wrapper
/// future is dropped then, and this guard with it).
struct ChildGuard {
    inner: Option<Arc<Inner>>,
}

impl ChildGuard {
    fn finish(&mut self, res: Result<Result<(), TaskError>, Box<dyn Any + Send>>) {
        if let Some(inner) = self.inner.take() {
            inner.child_done(Some(res));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.child_done(None);
        }
    }
}

/// The handle a [`scope_async`] body spawns its children with.
///
/// ```
/// use strata::task::scope_async;
/// let r = strata::runtime::block_on(scope_async(async |s| {
///     s.spawn(async { Ok(()) });
///     s.is_cancelled()
/// }));
/// assert_eq!(r.unwrap(), false);
/// ```
pub struct AsyncScope {
    inner: Arc<Inner>,
    registry: Arc<Registry>,
}

impl AsyncScope {
    /// Spawns a `'static` child future on the runtime. If it returns `Err`
    /// (the first error) or panics, every other child is cancelled: their
    /// futures are dropped at their next `.await`, and the scope's token
    /// is cancelled for children that check it. A child spawned after the
    /// scope was cancelled is dropped without running.
    ///
    /// ```
    /// use strata::task::{scope_async, TaskError};
    ///
    /// let r = strata::runtime::block_on(scope_async(async |s| {
    ///     s.spawn(async { Ok(()) });
    ///     s.spawn(async { Err(TaskError::failed("boom")) });
    /// }));
    /// assert_eq!(r.unwrap_err().to_string(), "task failed: boom");
    /// ```
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        if self.inner.token.is_cancelled() {
            return;
        }
        self.inner.state.lock().pending += 1;
        let mut guard = ChildGuard {
            inner: Some(self.inner.clone()),
        };
        let child = async move {
            let res = CatchUnwind(fut).await;
            guard.finish(res);
        };
        let task = spawn_on(&self.registry, child);
        let mut st = self.inner.state.lock();
        if self.inner.token.is_cancelled() {
            drop(st);
            task.cancel();
            return;
        }
        st.tasks.push(task);
        if st.tasks.len() >= st.prune_at {
            // A long-lived scope (an accept loop) must not keep one handle
            // per child it ever ran: drop the finished ones. Doubling the
            // threshold keeps this O(1) amortized per spawn and the list
            // below twice the peak number of running children (+16).
            let (done, live): (Vec<_>, Vec<_>) = std::mem::take(&mut st.tasks)
                .into_iter()
                .partition(Task::is_finished);
            st.prune_at = (2 * live.len()).max(PRUNE_MIN);
            st.tasks = live;
            drop(st);
            drop(done); // finished: dropping a handle does nothing more
        }
    }

    /// The scope's cancel token (cancelled when a child fails or panics, or
    /// when the scope future is dropped). Cancelling it cancels the scope.
    ///
    /// ```
    /// use strata::task::{scope_async, TaskError};
    /// let r = strata::runtime::block_on(scope_async(async |s| s.token().cancel()));
    /// assert!(matches!(r, Err(TaskError::Cancelled)));
    /// ```
    pub fn token(&self) -> &CancelToken {
        &self.inner.token
    }

    /// Whether the scope was cancelled.
    ///
    /// ```
    /// use strata::task::{scope_async, TaskError};
    /// let r = strata::runtime::block_on(scope_async(async |s| {
    ///     s.spawn(async { Err(TaskError::failed("no")) });
    ///     s.token().cancelled().await;
    ///     s.is_cancelled()
    /// }));
    /// assert!(r.is_err());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.inner.token.is_cancelled()
    }
}

impl fmt::Debug for AsyncScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncScope")
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// Waits until no child is pending.
struct AllDone<'a>(&'a Inner);

impl Future for AllDone<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.0.state.lock();
        if st.pending == 0 {
            return Poll::Ready(());
        }
        match &mut st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            other => *other = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// Cancels every child if the scope future is dropped before it finished.
struct CancelOnDrop<'a>(&'a Inner, bool);

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.cancel_all();
        }
    }
}

/// Runs the async body `f` with an [`AsyncScope`] to spawn `'static`
/// children on the current runtime, and completes once the body and every
/// child have finished. The rules are those of [`scope`](super::scope): the
/// first child error cancels the others and is returned; a child panic is
/// re-raised after every child stopped; cancelling the scope's token makes
/// it return `Err(TaskError::Cancelled)`. **Dropping the scope future
/// cancels every child.**
///
/// The body is an async closure (`async |s| { .. }`). It works under any
/// executor; the children run on the strata runtime current where the
/// scope is created.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use strata::task::scope_async;
///
/// let hits = Arc::new(AtomicU32::new(0));
/// let r = strata::runtime::block_on(scope_async(async |s| {
///     for _ in 0..8 {
///         let hits = hits.clone();
///         s.spawn(async move {
///             hits.fetch_add(1, Ordering::Relaxed);
///             Ok(())
///         });
///     }
///     "spawned"
/// }));
/// assert_eq!(r.unwrap(), "spawned");
/// assert_eq!(hits.load(Ordering::Relaxed), 8);
/// ```
pub async fn scope_async<F, R>(f: F) -> Result<R, TaskError>
where
    F: AsyncFnOnce(&AsyncScope) -> R,
{
    let scope = AsyncScope {
        inner: Arc::new(Inner {
            token: CancelToken::new(),
            state: Mutex::new(State {
                pending: 0,
                waker: None,
                error: None,
                panic: None,
                tasks: Vec::new(),
                prune_at: PRUNE_MIN,
            }),
        }),
        registry: with_current(|reg| reg.clone()),
    };
    let mut armed = CancelOnDrop(&scope.inner, true);
    let body = CatchUnwind(f(&scope)).await;
    if body.is_err() {
        scope.inner.cancel_all();
    }
    AllDone(&scope.inner).await;
    armed.1 = false;
    drop(armed);
    let (child_panic, error) = {
        let mut st = scope.inner.state.lock();
        st.tasks.clear();
        (st.panic.take(), st.error.take())
    };
    if let Some(p) = child_panic {
        panic::resume_unwind(p);
    }
    let r = match body {
        Ok(r) => r,
        Err(p) => panic::resume_unwind(p),
    };
    if let Some(e) = error {
        return Err(e);
    }
    if scope.inner.token.is_cancelled() {
        return Err(TaskError::Cancelled);
    }
    Ok(r)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::runtime::Runtime;

    #[test]
    fn a_long_lived_scope_keeps_only_a_bounded_number_of_child_handles() {
        let rt = Runtime::builder().threads(2).build().unwrap();
        let (max_kept, ran) = rt
            .block_on(scope_async(async |s| {
                let mut max_kept = 0;
                let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                // One child at a time, as an accept loop would over its life.
                for _ in 0..5_000 {
                    let done = CancelToken::new();
                    let (d, ran) = (done.clone(), ran.clone());
                    s.spawn(async move {
                        ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        d.cancel();
                        Ok(())
                    });
                    done.cancelled().await;
                    max_kept = max_kept.max(s.inner.state.lock().tasks.len());
                }
                (max_kept, ran)
            }))
            .unwrap();
        assert_eq!(ran.load(std::sync::atomic::Ordering::Relaxed), 5_000);
        assert!(max_kept <= 2 * PRUNE_MIN, "kept {max_kept} handles");
    }
}
