//! Futures on the pool: the raw task state machine and its [`Task`] handle.
//!
//! A task is one `Arc` holding the state word, the future (later its
//! output) and the handle's waker. Its wakers are that `Arc` (`std::task::
//! Wake`), so each task has a distinct waker data pointer — which is also
//! how `diag` keeps a held set per task. A queue entry owns one strong ref.
//!
//! State bits: `SCHEDULED` (a queue entry exists), `RUNNING` (a worker owns
//! the stage and polls), `NOTIFIED` (woken while running: queue it again
//! after this poll), `COMPLETE` (the stage holds the outcome; only the
//! handle touches it now), `CANCELLED` (stop at the next opportunity).
//! Whoever sets `RUNNING` owns the stage until it clears `RUNNING` or sets
//! `COMPLETE`; a cancel that finds the task idle takes `RUNNING` itself and
//! drops the future on the spot.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};

use super::job::{Action, JobRef};
use crate::loom::cell::UnsafeCell;
use crate::loom::sync::Mutex;
use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::task::Cancelled;

const SCHEDULED: usize = 1;
const RUNNING: usize = 2;
const NOTIFIED: usize = 4;
const COMPLETE: usize = 8;
const CANCELLED: usize = 16;

/// Where a woken task goes. The registry implements it; the loom model
/// uses a plain queue.
pub(crate) trait Schedule: Send + Sync + 'static {
    /// Queues `job` (it owns one strong ref of its task).
    fn schedule(&self, job: JobRef);
    /// Queues a task that woke itself during its poll (a yield): it must go
    /// behind the other runnable work.
    fn yield_now(&self, job: JobRef) {
        self.schedule(job);
    }
    /// Called around each poll (the registry marks its worker).
    fn enter_poll(&self) -> bool {
        false
    }
    /// Undoes `enter_poll` with its return value.
    fn leave_poll(&self, _prev: bool) {}
    /// The task finished; `slot` is what `LiveTasks::insert` returned.
    fn finished(&self, _slot: usize) {}
}

enum Stage<F: Future> {
    Running(F),
    Done(Outcome<F::Output>),
    Taken,
}

enum Outcome<T> {
    Ok(T),
    Panicked(Box<dyn Any + Send>),
    Cancelled,
}

pub(crate) struct RawTask<F: Future, S> {
    state: AtomicUsize,
    scheduler: S,
    /// Index in the scheduler's live set (`usize::MAX`: none).
    slot: AtomicUsize,
    stage: UnsafeCell<Stage<F>>,
    join_waker: Mutex<Option<Waker>>,
}

// SAFETY: the stage is only touched by the holder of `RUNNING`, or by the
// handle after `COMPLETE` (see the module docs); F and its output are Send.
unsafe impl<F: Future + Send, S: Send> Send for RawTask<F, S> where F::Output: Send {}
// SAFETY: as above.
unsafe impl<F: Future + Send, S: Sync> Sync for RawTask<F, S> where F::Output: Send {}

impl<F, S> RawTask<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    /// A task in the `SCHEDULED` state and the job that runs it first.
    pub(crate) fn new(fut: F, scheduler: S) -> (Arc<Self>, JobRef) {
        let task = Arc::new(Self {
            state: AtomicUsize::new(SCHEDULED),
            scheduler,
            slot: AtomicUsize::new(usize::MAX),
            stage: UnsafeCell::new(Stage::Running(fut)),
            join_waker: Mutex::new(None),
        });
        let job = Self::job_ref(task.clone());
        (task, job)
    }

    /// Records the task's index in the live set (before it is first queued).
    pub(crate) fn set_slot(&self, slot: usize) {
        self.slot.store(slot, Ordering::Relaxed);
    }

    fn job_ref(task: Arc<Self>) -> JobRef {
        let data = NonNull::new(Arc::into_raw(task).cast_mut()).expect("Arc is non-null");
        // SAFETY: the ref owns one strong count, given back by `entry`.
        unsafe { JobRef::new(data.cast(), Self::entry) }
    }

    unsafe fn entry(data: NonNull<()>, action: Action) {
        // SAFETY: `data` came from `job_ref`; this takes its strong ref back.
        let task = unsafe { Arc::from_raw(data.cast::<Self>().as_ptr()) };
        match action {
            Action::Run => task.run(),
            Action::Cancel => task.cancel_queued(),
        }
    }

    /// Claims the stage from `SCHEDULED`; false if already complete.
    fn claim_scheduled(&self) -> Option<usize> {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            debug_assert!(s & SCHEDULED != 0, "running a task that is not scheduled");
            if s & COMPLETE != 0 {
                return None;
            }
            let next = (s & !SCHEDULED) | RUNNING;
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(next),
                Err(actual) => s = actual,
            }
        }
    }

    fn run(self: Arc<Self>) {
        let Some(state) = self.claim_scheduled() else {
            return;
        };
        if state & CANCELLED != 0 {
            self.complete(None);
            return;
        }
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let prev = self.scheduler.enter_poll();
        // SAFETY: this thread holds `RUNNING`, so it owns the stage; the
        // future is never moved out of it while running (pinned in place).
        let polled = panic::catch_unwind(AssertUnwindSafe(|| {
            self.stage.with_mut(|stage| match unsafe { &mut *stage } {
                Stage::Running(fut) => unsafe { Pin::new_unchecked(fut) }.poll(&mut cx),
                _ => unreachable!("polling a finished task"),
            })
        }));
        self.scheduler.leave_poll(prev);
        match polled {
            Ok(Poll::Ready(v)) => self.complete(Some(Outcome::Ok(v))),
            Err(p) => self.complete(Some(Outcome::Panicked(p))),
            Ok(Poll::Pending) => {
                let mut s = self.state.load(Ordering::Acquire);
                loop {
                    if s & CANCELLED != 0 {
                        self.complete(None);
                        return;
                    }
                    let next = if s & NOTIFIED != 0 {
                        (s & !(NOTIFIED | RUNNING)) | SCHEDULED
                    } else {
                        s & !RUNNING
                    };
                    match self.state.compare_exchange_weak(
                        s,
                        next,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => break,
                        Err(actual) => s = actual,
                    }
                }
                if s & NOTIFIED != 0 {
                    // Woken during its own poll: a yield, so it goes behind
                    // everything else (the global queue), not first again.
                    let job = Self::job_ref(self.clone());
                    self.scheduler.yield_now(job);
                }
            }
        }
    }

    /// The holder of `RUNNING` finishes the task: `None` means cancelled
    /// (the future is dropped here).
    fn complete(&self, outcome: Option<Outcome<F::Output>>) {
        let outcome = outcome.unwrap_or(Outcome::Cancelled);
        // SAFETY: this thread holds `RUNNING`. Dropping the future may
        // panic; that must not take the worker down.
        let dropped = panic::catch_unwind(AssertUnwindSafe(|| {
            self.stage
                .with_mut(|stage| unsafe { *stage = Stage::Taken });
        }));
        let outcome = match (dropped, outcome) {
            (Err(p), Outcome::Cancelled) => Outcome::Panicked(p),
            (_, o) => o,
        };
        // SAFETY: still the owner of the stage until COMPLETE is published.
        self.stage
            .with_mut(|stage| unsafe { *stage = Stage::Done(outcome) });
        // Leave the live set before anyone can see the task complete, so a
        // handle that saw it finish also sees it gone from the metrics.
        let slot = self.slot.load(Ordering::Relaxed);
        if slot != usize::MAX {
            self.scheduler.finished(slot);
        }
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            let next = (s & !(RUNNING | NOTIFIED)) | COMPLETE;
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        let waker = self.join_waker.lock().take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The runtime shut down with this task queued.
    fn cancel_queued(self: Arc<Self>) {
        if self.claim_scheduled().is_some() {
            self.complete(None);
        }
    }

    /// Requests cancellation; drops the future now if the task is idle.
    pub(crate) fn cancel(&self) {
        let prev = self.state.fetch_or(CANCELLED, Ordering::AcqRel);
        if prev & (SCHEDULED | RUNNING | COMPLETE | CANCELLED) != 0 {
            // Queued or running: the worker sees the flag. Complete or
            // already cancelled: nothing to do.
            return;
        }
        let cur = prev | CANCELLED;
        if self
            .state
            .compare_exchange(cur, cur | RUNNING, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.complete(None);
        }
        // Else it was just woken: the worker that runs it sees the flag.
    }

    fn wake_inner(self: &Arc<Self>) {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if s & (COMPLETE | SCHEDULED | NOTIFIED) != 0 {
                return;
            }
            let next = if s & RUNNING != 0 {
                s | NOTIFIED
            } else {
                s | SCHEDULED
            };
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if next & SCHEDULED != 0 {
                        self.scheduler.schedule(Self::job_ref(self.clone()));
                    }
                    return;
                }
                Err(actual) => s = actual,
            }
        }
    }

    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<F::Output, Cancelled>> {
        if self.state.load(Ordering::Acquire) & COMPLETE == 0 {
            let mut slot = self.join_waker.lock();
            // Re-checked under the lock `complete` takes after publishing.
            if self.state.load(Ordering::Acquire) & COMPLETE == 0 {
                match &mut *slot {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    other => *other = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
        }
        // SAFETY: COMPLETE is set, so the runner is done with the stage and
        // only this handle (which `&mut` guards) touches it.
        let stage = self
            .stage
            .with_mut(|stage| unsafe { std::mem::replace(&mut *stage, Stage::Taken) });
        match stage {
            Stage::Done(Outcome::Ok(v)) => Poll::Ready(Ok(v)),
            Stage::Done(Outcome::Cancelled) => Poll::Ready(Err(Cancelled)),
            Stage::Done(Outcome::Panicked(p)) => panic::resume_unwind(p),
            _ => panic!("strata Task polled after it completed"),
        }
    }
}

impl<F, S> Wake for RawTask<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    fn wake(self: Arc<Self>) {
        self.wake_inner();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_inner();
    }
}

/// What the handle and the live set need of a task, without its future type.
pub(crate) trait Joinable<T>: Send + Sync {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<T, Cancelled>>;
    fn cancel(&self);
    fn is_finished(&self) -> bool;
}

impl<F, S> Joinable<F::Output> for RawTask<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<F::Output, Cancelled>> {
        RawTask::poll_join(self, cx)
    }
    fn cancel(&self) {
        RawTask::cancel(self);
    }
    fn is_finished(&self) -> bool {
        self.state.load(Ordering::Acquire) & COMPLETE != 0
    }
}

/// Cancellation without the output type, for the live set.
pub(crate) trait Cancel: Send + Sync {
    fn cancel(&self);
}

impl<F, S> Cancel for RawTask<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    fn cancel(&self) {
        RawTask::cancel(self);
    }
}

/// The spawned tasks of a registry that have not finished, so shutdown can
/// cancel every one of them (drop their futures), queued or not.
pub(crate) struct LiveTasks {
    inner: Mutex<Slab>,
}

struct Slab {
    entries: Vec<Option<Weak<dyn Cancel>>>,
    free: Vec<usize>,
    len: usize,
}

impl LiveTasks {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(Slab {
                entries: Vec::new(),
                free: Vec::new(),
                len: 0,
            }),
        }
    }

    pub(crate) fn insert(&self, task: Weak<dyn Cancel>) -> usize {
        let mut slab = self.inner.lock();
        slab.len += 1;
        if let Some(i) = slab.free.pop() {
            slab.entries[i] = Some(task);
            i
        } else {
            slab.entries.push(Some(task));
            slab.entries.len() - 1
        }
    }

    pub(crate) fn remove(&self, slot: usize) {
        let mut slab = self.inner.lock();
        if slab.entries.get_mut(slot).and_then(Option::take).is_some() {
            slab.free.push(slot);
            slab.len -= 1;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.lock().len
    }

    /// Cancels every live task (outside the lock: completing removes).
    pub(crate) fn cancel_all(&self) {
        let all: Vec<Weak<dyn Cancel>> = {
            let mut slab = self.inner.lock();
            // Taken slots are neither in the free list nor reused, so the
            // cancelled tasks' own `remove` later finds them empty.
            slab.len = 0;
            slab.entries.iter_mut().filter_map(Option::take).collect()
        };
        for t in all {
            if let Some(t) = t.upgrade() {
                t.cancel();
            }
        }
    }
}

/// A handle to a future spawned on a [`Runtime`](super::Runtime).
///
/// `Task<T>` is itself a future: awaiting it gives the task's output, or
/// [`Cancelled`] if it was cancelled first (by [`Task::cancel`] or by the
/// runtime shutting down). A panic in the task is re-raised where the
/// handle is awaited. **Dropping the handle cancels the task** — there is no
/// detach: every task belongs to someone.
///
/// ```
/// use strata::runtime::Runtime;
///
/// let rt = Runtime::builder().threads(2).build().unwrap();
/// let task = rt.spawn(async { 6 * 7 });
/// assert_eq!(rt.block_on(task), Ok(42));
/// ```
#[must_use = "dropping a Task cancels it"]
pub struct Task<T> {
    raw: Arc<dyn Joinable<T>>,
    _marker: PhantomData<T>,
}

impl<T> Task<T> {
    pub(crate) fn from_raw(raw: Arc<dyn Joinable<T>>) -> Self {
        Self {
            raw,
            _marker: PhantomData,
        }
    }

    /// Cancels the task: its future is dropped at once if it is idle, else
    /// right after its current poll, and it is never polled again. Awaiting
    /// the handle afterwards gives `Err(Cancelled)` — unless the task had
    /// already finished, then its output.
    ///
    /// ```
    /// use strata::runtime::Runtime;
    /// use strata::task::Cancelled;
    ///
    /// let rt = Runtime::builder().threads(1).build().unwrap();
    /// let task = rt.spawn(std::future::pending::<()>());
    /// task.cancel();
    /// assert_eq!(rt.block_on(task), Err(Cancelled));
    /// ```
    pub fn cancel(&self) {
        self.raw.cancel();
    }

    /// Whether the task has finished (completed, panicked or cancelled).
    ///
    /// ```
    /// use strata::runtime::Runtime;
    ///
    /// let rt = Runtime::builder().threads(1).build().unwrap();
    /// let task = rt.spawn(async {});
    /// while !task.is_finished() {
    ///     std::thread::yield_now();
    /// }
    /// ```
    pub fn is_finished(&self) -> bool {
        self.raw.is_finished()
    }

    /// Blocks the calling thread until the task finishes and returns its
    /// output (see [`block_on`](super::block_on)).
    ///
    /// ```
    /// use strata::runtime::Runtime;
    ///
    /// let rt = Runtime::builder().threads(1).build().unwrap();
    /// assert_eq!(rt.spawn(async { "done" }).join(), Ok("done"));
    /// ```
    pub fn join(self) -> Result<T, Cancelled> {
        super::block_on(self)
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.raw.poll_join(cx)
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.raw.cancel();
    }
}

impl<T> std::fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("finished", &self.is_finished())
            .finish()
    }
}

#[cfg(all(test, loom))]
mod loom {
    use super::*;
    use crate::loom::sync::Arc as LoomArc;
    use crate::loom::thread;
    use std::sync::atomic::AtomicUsize as StdAtomic;

    /// A scheduler that just queues jobs for the model to run.
    #[derive(Clone)]
    struct Queue(LoomArc<Mutex<Vec<JobRef>>>);

    impl Schedule for Queue {
        fn schedule(&self, job: JobRef) {
            self.0.lock().push(job);
        }
    }

    impl Queue {
        fn run_all(&self) {
            loop {
                let job = self.0.lock().pop();
                match job {
                    // SAFETY: taken from the queue once.
                    Some(j) => unsafe { j.execute() },
                    None => return,
                }
            }
        }
    }

    /// Pending once, then ready; counts drops.
    struct Yield {
        polled: bool,
        waker: LoomArc<Mutex<Option<Waker>>>,
        drops: std::sync::Arc<StdAtomic>,
    }

    impl Future for Yield {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            if self.polled {
                return Poll::Ready(7);
            }
            self.polled = true;
            *self.waker.lock() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    impl Drop for Yield {
        fn drop(&mut self) {
            self.drops
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// A wake racing with the poll that registered the waker, and the
    /// handle racing with both: the future runs to completion exactly once,
    /// is dropped exactly once, and the handle sees the output.
    #[test]
    fn loom_task_wake_during_poll_completes_once() {
        ::loom::model(|| {
            let q = Queue(LoomArc::new(Mutex::new(Vec::new())));
            let slot = LoomArc::new(Mutex::new(None::<Waker>));
            let drops = std::sync::Arc::new(StdAtomic::new(0));
            let fut = Yield {
                polled: false,
                waker: slot.clone(),
                drops: drops.clone(),
            };
            let (raw, job) = RawTask::new(fut, q.clone());
            q.schedule(job);
            let waker_thread = {
                let slot = slot.clone();
                thread::spawn(move || {
                    loop {
                        if let Some(w) = slot.lock().take() {
                            w.wake();
                            return;
                        }
                        thread::yield_now();
                    }
                })
            };
            let runner = {
                let q = q.clone();
                thread::spawn(move || {
                    for _ in 0..3 {
                        q.run_all();
                        thread::yield_now();
                    }
                })
            };
            waker_thread.join().unwrap();
            runner.join().unwrap();
            q.run_all();
            let handle = Task::<u32>::from_raw(raw);
            let waker = Waker::noop();
            let mut cx = Context::from_waker(waker);
            let mut handle = handle;
            assert_eq!(Pin::new(&mut handle).poll(&mut cx), Poll::Ready(Ok(7)));
            assert_eq!(drops.load(std::sync::atomic::Ordering::Relaxed), 1);
        });
    }

    /// Cancel racing with a wake and a run: the future is dropped exactly
    /// once, never polled after the cancel took effect, and the handle
    /// resolves (to the output or to `Cancelled`).
    #[test]
    fn loom_task_cancel_races_run() {
        ::loom::model(|| {
            let q = Queue(LoomArc::new(Mutex::new(Vec::new())));
            let slot = LoomArc::new(Mutex::new(None::<Waker>));
            let drops = std::sync::Arc::new(StdAtomic::new(0));
            let fut = Yield {
                polled: false,
                waker: slot.clone(),
                drops: drops.clone(),
            };
            let (raw, job) = RawTask::new(fut, q.clone());
            q.schedule(job);
            let mut handle = Task::<u32>::from_raw(raw);
            let runner = {
                let (q, slot) = (q.clone(), slot.clone());
                thread::spawn(move || {
                    q.run_all();
                    if let Some(w) = slot.lock().take() {
                        w.wake();
                    }
                    q.run_all();
                })
            };
            handle.cancel();
            runner.join().unwrap();
            q.run_all();
            let waker = Waker::noop();
            let mut cx = Context::from_waker(waker);
            match Pin::new(&mut handle).poll(&mut cx) {
                Poll::Ready(Ok(7)) | Poll::Ready(Err(Cancelled)) => {}
                other => panic!("unexpected {other:?}"),
            }
            assert_eq!(drops.load(std::sync::atomic::Ordering::Relaxed), 1);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Cancel for Flag {
        fn cancel(&self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn live_set_counts_cancels_and_ignores_stale_removes() {
        let live = LiveTasks::new();
        let tasks: Vec<Arc<Flag>> = (0..3)
            .map(|_| Arc::new(Flag(std::sync::atomic::AtomicBool::new(false))))
            .collect();
        let slots: Vec<usize> = tasks
            .iter()
            .map(|t| live.insert(Arc::downgrade(t) as Weak<dyn Cancel>))
            .collect();
        live.remove(slots[1]);
        assert_eq!(live.len(), 2);
        live.cancel_all();
        assert_eq!(live.len(), 0);
        assert!(tasks[0].0.load(std::sync::atomic::Ordering::SeqCst));
        assert!(
            !tasks[1].0.load(std::sync::atomic::Ordering::SeqCst),
            "removed before"
        );
        // The cancelled tasks finishing later must not disturb new entries.
        let newer = Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
        let s = live.insert(Arc::downgrade(&newer) as Weak<dyn Cancel>);
        live.remove(slots[0]);
        live.remove(slots[2]);
        assert_eq!(live.len(), 1);
        live.remove(s);
        assert_eq!(live.len(), 0);
    }
}
