//! `BlockingIo`: a bounded thread set for blocking file work, with barrier
//! writes.
//!
//! Two parts, each doing one thing:
//!
//! * **The barrier** is strata's FIFO semaphore with `2^29` permits, exactly
//!   the writer-preferring `AsyncRwLock` discipline: a `run` takes one
//!   permit, a `run_write` takes all of them. Because the semaphore serves
//!   waiters first in, first out and nobody overtakes a queued waiter, a
//!   write waits for the runs already admitted, holds back every call made
//!   after it, runs alone, and then lets the runs queued behind it in
//!   together. Permits are taken by the *caller* before the job is handed
//!   to a thread, so a job waiting for the barrier occupies no thread, and
//!   an async caller that gives up while waiting simply leaves the queue.
//! * **The pool** is a plain bounded thread set: a job queue under a mutex,
//!   workers started on demand up to the bound and parked on a condvar when
//!   idle. It knows nothing about reads and writes.
//!
//! A job's permits go back when the job has finished running (or, for a job
//! cancelled before it started, when it is cancelled), so a write never
//! starts while a run's closure is still executing, even one whose caller
//! stopped waiting for it.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use thiserror::Error;

use crate::loom::sync::Mutex;
use crate::loom::thread::{self, Thread};
use crate::sync::raw_semaphore::{Mode, RawSemaphore};

/// Permits of the barrier: a run takes one, a write all.
const ALL: usize = 1 << 29;

/// Why a [`BlockingIo`] job did not produce its value.
///
/// ```
/// use strata::runtime::{BlockingIo, BlockingIoError};
/// let io = BlockingIo::new(1);
/// let err = io.run(|| -> u32 { panic!("disk on fire") }).unwrap_err();
/// assert!(matches!(err, BlockingIoError::Panicked(_)));
/// assert_eq!(err.to_string(), "the blocking job panicked: disk on fire");
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BlockingIoError {
    /// The closure panicked; the payload is here (for
    /// `std::panic::resume_unwind`). Only this caller sees it: the thread
    /// and every other job carry on.
    #[error("the blocking job panicked: {}", panic_message(.0.as_ref()))]
    Panicked(Box<dyn Any + Send + 'static>),
    /// No worker thread was running and none could be started (the
    /// system refused a thread, or the builder's name holds a NUL byte).
    #[error("could not start a blocking-I/O thread: {0}")]
    Spawn(#[source] io::Error),
    /// Called from inside a job of the same executor. A `run_write` there
    /// would wait for the very job that waits for it, and a `run` can do
    /// the same behind a queued write; the call is refused instead of
    /// hanging, and nothing was run.
    #[error("a blocking-I/O job called its own executor; that waits for itself")]
    Reentrant,
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string payload)"
    }
}

/// An executor for blocking I/O with its own bounded set of threads, and
/// barrier writes.
///
/// * [`run`](Self::run) runs a closure on one of the threads, concurrently
///   with other runs (reads, `pread`s, checksums of immutable files).
/// * [`run_write`](Self::run_write) is a barrier: it waits until the runs
///   already started have finished, keeps the runs (and writes) called
///   after it waiting, runs its closure alone, and then lets them go, in
///   the order they were called (a header update, a `rename`, an `fsync`
///   that must not overlap readers).
///
/// Both have a blocking form and an async form ([`run_async`](Self::run_async),
/// [`run_write_async`](Self::run_write_async)) that works under any
/// executor, so async code never blocks its own threads on the disk. A
/// panic in a closure comes back as [`BlockingIoError::Panicked`] to that
/// caller only. Dropping an async call before its job started means the job
/// never runs; once started it runs to completion (its result is dropped).
///
/// Threads are started on demand, up to the bound given to
/// [`new`](Self::new), and stop when the last handle is dropped (the drop
/// waits for them). The handle is cheap to clone; clones share the threads
/// and the barrier. It does not need strata's work-stealing runtime.
///
/// An async call holds a handle until it finishes or is dropped. If that is
/// the last handle while the job of an abandoned call still runs, that drop
/// waits for the job on the executor thread: keep a handle alive outside the
/// async code (say, in the struct that owns the files) when jobs can be long.
///
/// **Deadlocks it refuses:** calling `run_write` from inside a job of the
/// same executor would wait for that job to finish, which it never does; a
/// `run` from inside a job can do the same when a write is queued in
/// between. Both return [`BlockingIoError::Reentrant`] instead. (Two
/// executors whose jobs wait on each other can still deadlock.)
///
/// ```
/// use strata::runtime::BlockingIo;
///
/// let io = BlockingIo::new(4);
/// let len = io.run(|| std::fs::metadata("/").map(|m| m.is_dir()))?;
/// assert!(len?);
/// let written = io.run_write(|| 42)?; // alone: no run overlaps it
/// assert_eq!(written, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct BlockingIo {
    inner: Arc<Inner>,
}

/// Owned by the handles (and their futures) only, so dropping the last
/// handle stops the pool; jobs hold just the barrier.
struct Inner {
    barrier: Arc<RawSemaphore>,
    pool: Arc<Pool>,
}

/// How a [`BlockingIo`] is built.
///
/// ```
/// let io = strata::runtime::BlockingIo::builder().threads(2).name("wal-io").build();
/// assert_eq!(io.max_threads(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct BlockingIoBuilder {
    threads: usize,
    name: String,
}

impl BlockingIoBuilder {
    /// The most threads the executor starts (at least 1; default 4).
    ///
    /// ```
    /// let io = strata::runtime::BlockingIo::builder().threads(0).build();
    /// assert_eq!(io.max_threads(), 1); // 0 would never run anything
    /// ```
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The name prefix of the threads (default `strata-blocking-io`); each
    /// thread is `{name}-{n}`.
    ///
    /// ```
    /// let io = strata::runtime::BlockingIo::builder().name("pager").build();
    /// let name = io.run(|| std::thread::current().name().map(String::from))?;
    /// assert_eq!(name.as_deref(), Some("pager-0"));
    /// # Ok::<(), strata::runtime::BlockingIoError>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The executor. No thread starts before the first job.
    ///
    /// ```
    /// let io = strata::runtime::BlockingIo::builder().build();
    /// assert_eq!(io.max_threads(), 4);
    /// ```
    pub fn build(self) -> BlockingIo {
        BlockingIo {
            inner: Arc::new(Inner {
                barrier: Arc::new(RawSemaphore::new(ALL)),
                pool: Arc::new(Pool::new(self.threads, self.name)),
            }),
        }
    }
}

impl Default for BlockingIoBuilder {
    fn default() -> Self {
        Self {
            threads: 4,
            name: String::from("strata-blocking-io"),
        }
    }
}

impl BlockingIo {
    /// An executor of at most `threads` threads (at least 1).
    ///
    /// ```
    /// let io = strata::runtime::BlockingIo::new(8);
    /// assert_eq!(io.max_threads(), 8);
    /// ```
    pub fn new(threads: usize) -> Self {
        Self::builder().threads(threads).build()
    }

    /// A builder, for the thread count and name.
    ///
    /// ```
    /// let io = strata::runtime::BlockingIo::builder().threads(3).build();
    /// assert_eq!(io.max_threads(), 3);
    /// ```
    pub fn builder() -> BlockingIoBuilder {
        BlockingIoBuilder::default()
    }

    /// The most threads this executor starts.
    ///
    /// ```
    /// assert_eq!(strata::runtime::BlockingIo::new(2).max_threads(), 2);
    /// ```
    pub fn max_threads(&self) -> usize {
        self.inner.pool.max_threads
    }

    /// The threads started so far (they stay until the executor drops).
    ///
    /// ```
    /// let io = strata::runtime::BlockingIo::new(2);
    /// assert_eq!(io.threads_started(), 0);
    /// io.run(|| ())?;
    /// assert_eq!(io.threads_started(), 1);
    /// # Ok::<(), strata::runtime::BlockingIoError>(())
    /// ```
    pub fn threads_started(&self) -> usize {
        self.inner.pool.state.lock().threads
    }

    /// Runs `f` on one of the executor's threads, concurrently with other
    /// runs, and blocks this thread until it returns. Waits first if a
    /// write is running or queued.
    ///
    /// # Errors
    ///
    /// [`BlockingIoError::Panicked`] if `f` panicked;
    /// [`BlockingIoError::Spawn`] if no thread could be started.
    ///
    /// ```
    /// let io = strata::runtime::BlockingIo::new(2);
    /// let sum = io.run(|| (1..=10).sum::<u32>())?;
    /// assert_eq!(sum, 55);
    /// # Ok::<(), strata::runtime::BlockingIoError>(())
    /// ```
    pub fn run<T, F>(&self, f: F) -> Result<T, BlockingIoError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.run_blocking(Access::Run, f)
    }

    /// Runs `f` alone on one of the executor's threads — after every
    /// earlier run has finished, before any later call starts — and blocks
    /// this thread until it returns.
    ///
    /// # Errors
    ///
    /// As for [`run`](Self::run).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// let io = strata::runtime::BlockingIo::new(2);
    /// let generation = Arc::new(AtomicU32::new(0));
    /// let g = generation.clone();
    /// io.run_write(move || g.fetch_add(1, Ordering::SeqCst))?;
    /// assert_eq!(generation.load(Ordering::SeqCst), 1);
    /// # Ok::<(), strata::runtime::BlockingIoError>(())
    /// ```
    pub fn run_write<T, F>(&self, f: F) -> Result<T, BlockingIoError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.run_blocking(Access::Write, f)
    }

    /// [`run`](Self::run) as a future, for async code: neither waiting for
    /// the barrier nor waiting for `f` blocks the caller's executor.
    /// Dropping the future before `f` started means `f` never runs.
    ///
    /// # Errors
    ///
    /// As for [`run`](Self::run).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let io = strata::runtime::BlockingIo::new(2);
    /// let n = io.run_async(|| 6 * 7).await?;
    /// assert_eq!(n, 42);
    /// # Ok::<(), strata::runtime::BlockingIoError>(())
    /// # }).unwrap();
    /// ```
    pub fn run_async<T, F>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<T, BlockingIoError>> + Send + 'static
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.run_future(Access::Run, f)
    }

    /// [`run_write`](Self::run_write) as a future. Dropping it before `f`
    /// started means `f` never runs (and, if it was still waiting for the
    /// barrier, the runs behind it go ahead).
    ///
    /// # Errors
    ///
    /// As for [`run`](Self::run).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let io = strata::runtime::BlockingIo::new(2);
    /// let done = io.run_write_async(|| "synced").await?;
    /// assert_eq!(done, "synced");
    /// # Ok::<(), strata::runtime::BlockingIoError>(())
    /// # }).unwrap();
    /// ```
    pub fn run_write_async<T, F>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<T, BlockingIoError>> + Send + 'static
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.run_future(Access::Write, f)
    }

    fn run_blocking<T, F>(&self, access: Access, f: F) -> Result<T, BlockingIoError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.refuse_reentry()?;
        let (n, mode) = access.permits();
        // Unbounded and unchecked: the wait only ends granted.
        let _ = self.inner.barrier.acquire_blocking(n, mode, None);
        let job = JobState::new(Some(Notify::Thread(thread::current())));
        self.submit(access, f, &job)?;
        job.wait_blocking()
    }

    fn run_future<T, F>(
        &self,
        access: Access,
        f: F,
    ) -> impl Future<Output = Result<T, BlockingIoError>> + Send + 'static
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let io = self.clone();
        async move {
            io.refuse_reentry()?;
            let (n, mode) = access.permits();
            // Cancel-safe: dropped here, the request just leaves the queue.
            let _ = io.inner.barrier.acquire(n, mode).await;
            let job = JobState::new(None);
            io.submit(access, f, &job)?;
            let wait = JobWait {
                job,
                barrier: Arc::clone(&io.inner.barrier),
                permits: n,
            };
            wait.await
        }
    }

    /// `Reentrant` on one of this executor's own threads.
    fn refuse_reentry(&self) -> Result<(), BlockingIoError> {
        if self.inner.pool.is_current() {
            Err(BlockingIoError::Reentrant)
        } else {
            Ok(())
        }
    }

    /// Hands `f` to the pool; the permits for `access` are held. On
    /// failure (an error, or a panic on the way) they are given back.
    fn submit<T, F>(
        &self,
        access: Access,
        f: F,
        job: &Arc<JobState<T>>,
    ) -> Result<(), BlockingIoError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (n, _) = access.permits();
        let barrier = Arc::clone(&self.inner.barrier);
        let state = Arc::clone(job);
        let task: Task = Box::new(move || {
            if !state.start() {
                // Cancelled before it started; the canceller gave the
                // permits back.
                return;
            }
            let outcome = catch_unwind(AssertUnwindSafe(f)).map_err(BlockingIoError::Panicked);
            // Permits first: once the caller sees the result, the barrier
            // already knows this job is over.
            barrier.release(n);
            state.finish(outcome);
        });
        // Gives the permits back unless the pool took the task, so no
        // unwind between here and there can strand them.
        let unsubmitted = PermitsBack {
            barrier: &self.inner.barrier,
            permits: n,
        };
        self.inner
            .pool
            .submit(task)
            .map_err(BlockingIoError::Spawn)?;
        std::mem::forget(unsubmitted);
        Ok(())
    }
}

/// Releases permits on drop: held while a job is being handed over.
struct PermitsBack<'a> {
    barrier: &'a RawSemaphore,
    permits: usize,
}

impl Drop for PermitsBack<'_> {
    fn drop(&mut self) {
        self.barrier.release(self.permits);
    }
}

impl Default for BlockingIo {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl fmt::Debug for BlockingIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingIo")
            .field("max_threads", &self.max_threads())
            .field("threads_started", &self.threads_started())
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.pool.shut_down();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Run,
    Write,
}

impl Access {
    fn permits(self) -> (usize, Mode) {
        match self {
            Access::Run => (1, Mode::Unchecked),
            Access::Write => (ALL, Mode::Whole),
        }
    }
}

/// How a waiting caller is told its job is done.
enum Notify {
    Waker(Waker),
    Thread(Thread),
}

impl Notify {
    fn notify(self) {
        match self {
            Notify::Waker(w) => w.wake(),
            Notify::Thread(t) => t.unpark(),
        }
    }
}

/// Where a job is, and who waits for it.
enum Stage<T> {
    /// In the pool's queue; may still be cancelled.
    Queued(Option<Notify>),
    /// A thread claimed it; it will finish.
    Running(Option<Notify>),
    Done(Result<T, BlockingIoError>),
    /// Cancelled before it started, or its result was taken.
    Over,
}

/// The handshake between a caller and the thread running its job.
struct JobState<T> {
    stage: Mutex<Stage<T>>,
}

impl<T> JobState<T> {
    fn new(waiter: Option<Notify>) -> Arc<Self> {
        Arc::new(Self {
            stage: Mutex::new(Stage::Queued(waiter)),
        })
    }

    /// The thread claims the job; `false` if it was cancelled.
    fn start(&self) -> bool {
        let mut stage = self.stage.lock();
        match std::mem::replace(&mut *stage, Stage::Over) {
            Stage::Queued(waiter) => {
                *stage = Stage::Running(waiter);
                true
            }
            other => {
                *stage = other;
                false
            }
        }
    }

    fn finish(&self, outcome: Result<T, BlockingIoError>) {
        let mut unwanted = None;
        let waiter = {
            let mut stage = self.stage.lock();
            match std::mem::replace(&mut *stage, Stage::Over) {
                Stage::Running(waiter) => {
                    *stage = Stage::Done(outcome);
                    waiter
                }
                // Nobody waits any more (the future was dropped).
                _ => {
                    unwanted = Some(outcome);
                    None
                }
            }
        };
        if let Some(waiter) = waiter {
            waiter.notify();
        }
        // Dropped with no lock held: its `Drop` may do anything, panic
        // included (the worker survives that, see `Pool::work_loop`).
        drop(unwanted);
    }

    /// The caller gives up; `true` if the job had not started (it never
    /// will, and the caller must give its permits back).
    fn cancel(&self) -> bool {
        let mut stage = self.stage.lock();
        match &mut *stage {
            Stage::Queued(_) => {
                *stage = Stage::Over;
                true
            }
            Stage::Running(waiter) => {
                *waiter = None;
                false
            }
            Stage::Done(_) | Stage::Over => {
                *stage = Stage::Over;
                false
            }
        }
    }

    fn poll_done(&self, cx: &Context<'_>) -> Poll<Result<T, BlockingIoError>> {
        let mut stage = self.stage.lock();
        match &mut *stage {
            Stage::Queued(waiter) | Stage::Running(waiter) => {
                match waiter {
                    Some(Notify::Waker(w)) if w.will_wake(cx.waker()) => {}
                    _ => *waiter = Some(Notify::Waker(cx.waker().clone())),
                }
                Poll::Pending
            }
            Stage::Done(_) => match std::mem::replace(&mut *stage, Stage::Over) {
                Stage::Done(outcome) => Poll::Ready(outcome),
                _ => unreachable!("matched Done"),
            },
            // Only reachable if polled after completion.
            Stage::Over => Poll::Pending,
        }
    }

    fn wait_blocking(&self) -> Result<T, BlockingIoError> {
        loop {
            {
                let mut stage = self.stage.lock();
                if let Stage::Done(_) = &*stage
                    && let Stage::Done(outcome) = std::mem::replace(&mut *stage, Stage::Over)
                {
                    return outcome;
                }
            }
            // Spurious wake-ups just re-check.
            thread::park();
        }
    }
}

/// Waits for a submitted job; dropping it cancels a job that has not
/// started and gives its permits back.
struct JobWait<T> {
    job: Arc<JobState<T>>,
    barrier: Arc<RawSemaphore>,
    permits: usize,
}

impl<T> Future for JobWait<T> {
    type Output = Result<T, BlockingIoError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.job.poll_done(cx)
    }
}

impl<T> Drop for JobWait<T> {
    fn drop(&mut self) {
        if self.job.cancel() {
            self.barrier.release(self.permits);
        }
    }
}

type Task = Box<dyn FnOnce() + Send + 'static>;

std::thread_local! {
    /// The address of the pool whose worker this thread is (0: none), so a
    /// job calling back into its own executor is refused, not hung.
    static CURRENT_POOL: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The bounded thread set. Plain std threads and parking_lot, not the loom
/// shim: long-lived threads cannot live inside a loom model (the job
/// handshake above is what the model checks).
struct Pool {
    state: parking_lot::Mutex<PoolState>,
    work: parking_lot::Condvar,
    max_threads: usize,
    name: String,
}

struct PoolState {
    queue: VecDeque<Task>,
    /// Workers parked waiting for work.
    idle: usize,
    threads: usize,
    shutdown: bool,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    fn new(max_threads: usize, name: String) -> Self {
        Self {
            state: parking_lot::Mutex::new(PoolState {
                queue: VecDeque::new(),
                idle: 0,
                threads: 0,
                shutdown: false,
                handles: Vec::new(),
            }),
            work: parking_lot::Condvar::new(),
            max_threads,
            name,
        }
    }

    /// Queues `task`, waking an idle worker or starting a new one. Fails
    /// only if no worker exists and none can be started (the task is
    /// dropped unrun).
    fn submit(self: &Arc<Self>, task: Task) -> io::Result<()> {
        let mut state = self.state.lock();
        state.queue.push_back(task);
        // Every queued task needs a worker: an idle one, or a new one.
        if state.idle >= state.queue.len() {
            drop(state);
            self.work.notify_one();
            return Ok(());
        }
        if state.threads < self.max_threads {
            let pool = Arc::clone(self);
            let spawned = if self.name.contains('\0') {
                // std would panic on such a name; refuse it as a spawn error.
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the thread name contains a NUL byte",
                ))
            } else {
                std::thread::Builder::new()
                    .name(format!("{}-{}", self.name, state.threads))
                    .spawn(move || pool.work_loop())
            };
            match spawned {
                Ok(handle) => {
                    state.threads += 1;
                    state.handles.push(handle);
                }
                Err(err) if state.threads == 0 => {
                    state.queue.pop_back();
                    return Err(err);
                }
                // The running workers will get to it.
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// Whether the calling thread is one of this pool's workers.
    fn is_current(&self) -> bool {
        CURRENT_POOL.with(|p| p.get() == std::ptr::from_ref(self).addr())
    }

    fn work_loop(&self) {
        CURRENT_POOL.with(|p| p.set(std::ptr::from_ref(self).addr()));
        let mut state = self.state.lock();
        loop {
            if let Some(task) = state.queue.pop_front() {
                drop(state);
                // A job's own panic is caught inside `task`; what can still
                // unwind here is a `Drop` (of a result nobody waits for, or
                // of a cancelled job's closure). The worker must outlive it,
                // or the pool would count a thread that no longer runs.
                let _ = catch_unwind(AssertUnwindSafe(task));
                state = self.state.lock();
                continue;
            }
            if state.shutdown {
                return;
            }
            state.idle += 1;
            self.work.wait(&mut state);
            state.idle -= 1;
        }
    }

    /// Stops the workers once the queue is empty, and waits for them
    /// (unless called on one of them, which then exits by itself).
    fn shut_down(&self) {
        let handles = {
            let mut state = self.state.lock();
            state.shutdown = true;
            std::mem::take(&mut state.handles)
        };
        self.work.notify_all();
        let me = std::thread::current().id();
        for handle in handles {
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn handle_is_send_and_sync() {
        assert_send_sync::<BlockingIo>();
    }

    #[test]
    fn threads_start_on_demand_up_to_the_bound() {
        let io = BlockingIo::new(2);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                io.run_async(move || {
                    let _ = rx.lock().unwrap().recv();
                })
            })
            .map(|f| std::thread::spawn(move || futures::executor::block_on(f)))
            .collect();
        // Two running, one queued for want of a third thread.
        loop {
            let state = io.inner.pool.state.lock();
            if state.queue.len() + state.threads >= 3 {
                break;
            }
            drop(state);
            std::thread::yield_now();
        }
        assert_eq!(io.threads_started(), 2);
        for _ in 0..3 {
            tx.send(()).unwrap();
        }
        for w in waiting {
            w.join().unwrap().unwrap();
        }
        assert_eq!(io.threads_started(), 2);
    }

    #[test]
    fn dropping_the_last_handle_stops_the_threads() {
        let io = BlockingIo::new(3);
        let alive = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let alive = alive.clone();
            io.run(move || {
                alive.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        let pool = Arc::clone(&io.inner.pool);
        drop(io);
        assert!(pool.state.lock().shutdown);
        assert!(pool.state.lock().handles.is_empty());
    }

    #[test]
    fn a_job_holding_the_last_handle_can_drop_it() {
        let io = BlockingIo::new(1);
        let pool = Arc::clone(&io.inner.pool);
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (started, is_started) = std::sync::mpsc::channel::<()>();
        let io2 = io.clone();
        let mut fut = Box::pin(io.run_async(move || {
            started.send(()).unwrap();
            wait.recv().unwrap();
            // The last handle dies here, on the executor's own thread.
            drop(io2);
        }));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        is_started.recv().unwrap();
        drop(fut); // the job runs on, its result unwanted
        drop(io);
        go.send(()).unwrap();
        // The worker shuts the pool down without joining itself, and exits.
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        while Arc::strong_count(&pool) > 1 {
            assert!(std::time::Instant::now() < give_up, "worker never exited");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(pool.state.lock().shutdown);
    }

    #[test]
    fn panic_messages_are_extracted() {
        assert_eq!(panic_message(&"static"), "static");
        assert_eq!(panic_message(&String::from("owned")), "owned");
        assert_eq!(panic_message(&5u8), "(non-string payload)");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// A cancel racing the thread that starts the job: exactly one of them
    /// wins, so the job runs at most once and the permit comes back exactly
    /// once.
    #[test]
    fn loom_cancel_and_start_race_gives_the_permit_back_once() {
        loom::model(|| {
            let barrier = Arc::new(RawSemaphore::new(1));
            barrier.try_acquire(1, Mode::Whole).unwrap();
            let job: Arc<JobState<()>> = JobState::new(None);
            let ran = Arc::new(crate::loom::sync::atomic::AtomicUsize::new(0));
            let worker = {
                let (job, barrier, ran) = (job.clone(), barrier.clone(), ran.clone());
                loom::thread::spawn(move || {
                    if job.start() {
                        ran.fetch_add(1, crate::loom::sync::atomic::Ordering::SeqCst);
                        barrier.release(1);
                        job.finish(Ok(()));
                    }
                })
            };
            if job.cancel() {
                barrier.release(1);
            }
            worker.join().unwrap();
            assert!(ran.load(crate::loom::sync::atomic::Ordering::SeqCst) <= 1);
            assert_eq!(barrier.available_permits(), 1);
        });
    }
}
