//! L3 — the runtime: the work-stealing pool (issue 4) and the blocking-I/O
//! executor `BlockingIo` (issue 6).
//!
//! A [`Runtime`] is a fixed set of worker threads that run three kinds of
//! work: fork-join halves ([`join`]), futures ([`Runtime::spawn`] →
//! [`Task`]) and, later, actor turns. Each worker has a Chase-Lev deque
//! (crossbeam-deque) others steal from, a LIFO slot for the task it just
//! woke, and there is one global injector for work from outside the pool.
//! Idle workers sleep without spinning; each new job wakes at most one.
//!
//! `join` costs almost nothing when nobody is idle: its second half stays
//! in a private, atomics-free ring and is only *promoted* to the stealable
//! deque when an idle worker has asked for work (heartbeat scheduling à la
//! Spice/chili, driven by requests rather than a timer, so an idle pool
//! burns no CPU at all).
//!
//! ```
//! use strata::runtime::Runtime;
//!
//! fn fib(n: u64) -> u64 {
//!     if n < 2 {
//!         return n;
//!     }
//!     let (a, b) = strata::join(|| fib(n - 1), || fib(n - 2));
//!     a + b
//! }
//!
//! let rt = Runtime::builder().threads(2).name("fib").build().unwrap();
//! assert_eq!(rt.install(|| fib(20)), 6765);
//! let task = rt.spawn(async { fib(10) });
//! assert_eq!(rt.block_on(task), Ok(55));
//! ```

// Issue 6 owns blocking_io.rs and the `pub use` line right below it.
mod blocking_io;
pub use blocking_io::{BlockingIo, BlockingIoBuilder, BlockingIoError};

// Issue 4: the work-stealing pool goes below.
mod block_on;
mod job;
mod join;
mod latch;
mod metrics;
mod pin;
mod registry;
mod slab;
mod sleep;
mod spawn;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use thiserror::Error;

pub use block_on::block_on;
pub use join::join;
pub use metrics::RuntimeMetrics;
pub use spawn::Task;

pub(crate) use job::{HeapJob, JobRef};
pub(crate) use latch::{CountLatch, Latch, WorkerLatch};
pub(crate) use registry::{Registry, WorkerThread};
pub(crate) use sleep::Sleep;

/// Why a runtime could not be built.
///
/// ```
/// use strata::runtime::{BuildError, Runtime};
///
/// let err = Runtime::builder().threads(0).build().unwrap_err();
/// assert!(matches!(err, BuildError::ZeroThreads));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A pool needs at least one worker.
    #[error("a runtime needs at least one worker thread")]
    ZeroThreads,
    /// The thread name given to [`Builder::name`] contains a NUL byte,
    /// which OS thread names cannot hold. The name is given back.
    ///
    /// ```
    /// use strata::runtime::{BuildError, Runtime};
    ///
    /// let err = Runtime::builder().name("a\0b").build().unwrap_err();
    /// assert!(matches!(err, BuildError::InvalidName(ref n) if n == "a\0b"));
    /// ```
    #[error("thread name {0:?} contains a NUL byte")]
    InvalidName(String),
    /// The OS refused to start a worker thread.
    #[error("could not spawn a worker thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Configures and starts a [`Runtime`].
///
/// ```
/// use strata::runtime::Runtime;
///
/// let rt = Runtime::builder()
///     .threads(2)
///     .name("render")
///     .stack_size(4 << 20)
///     .pin_threads(false)
///     .build()
///     .unwrap();
/// assert_eq!(rt.threads(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    threads: Option<usize>,
    name: String,
    stack_size: usize,
    pin_threads: bool,
}

/// Default worker stack: deep recursion through `join` needs more than
/// the 2 MiB Rust gives spawned threads. Only touched pages cost memory.
const DEFAULT_STACK: usize = 16 << 20;

impl Default for Builder {
    fn default() -> Self {
        Self {
            threads: None,
            name: "strata-worker".into(),
            stack_size: DEFAULT_STACK,
            pin_threads: false,
        }
    }
}

impl Builder {
    /// Number of worker threads (default: `available_parallelism()`).
    ///
    /// ```
    /// let rt = strata::runtime::Runtime::builder().threads(3).build().unwrap();
    /// assert_eq!(rt.threads(), 3);
    /// ```
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// Thread name prefix; workers are named `NAME-0`, `NAME-1`, … A name
    /// with a NUL byte makes [`build`](Builder::build) fail with
    /// [`BuildError::InvalidName`].
    ///
    /// ```
    /// let rt = strata::runtime::Runtime::builder().threads(1).name("io").build().unwrap();
    /// let n = rt.install(|| std::thread::current().name().map(String::from));
    /// assert_eq!(n.as_deref(), Some("io-0"));
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Stack size of each worker thread, in bytes (default 16 MiB).
    ///
    /// ```
    /// fn depth(d: u32) -> u32 { if d == 0 { 0 } else { strata::join(|| depth(d - 1), || 1).0 + 1 } }
    /// let rt = strata::runtime::Runtime::builder().threads(1).stack_size(64 << 20).build().unwrap();
    /// assert_eq!(rt.install(|| depth(5_000)), 5_000);
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// Pin worker `i` to the `i`-th CPU this process may use (best effort).
    ///
    /// ```
    /// let rt = strata::runtime::Runtime::builder().threads(2).pin_threads(true).build().unwrap();
    /// assert_eq!(rt.join(|| 1, || 2), (1, 2));
    /// ```
    pub fn pin_threads(mut self, pin: bool) -> Self {
        self.pin_threads = pin;
        self
    }

    /// Starts the workers.
    ///
    /// ```
    /// use strata::runtime::{BuildError, Runtime};
    /// assert!(Runtime::builder().threads(2).build().is_ok());
    /// assert!(matches!(Runtime::builder().threads(0).build(), Err(BuildError::ZeroThreads)));
    /// ```
    pub fn build(self) -> Result<Runtime, BuildError> {
        let n = match self.threads {
            Some(0) => return Err(BuildError::ZeroThreads),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        // std panics on such a name when the thread is spawned.
        if self.name.contains('\0') {
            return Err(BuildError::InvalidName(self.name));
        }
        let (registry, deques) = Registry::new(n);
        let cpus = if self.pin_threads {
            pin::allowed_cpus()
        } else {
            Vec::new()
        };
        let mut handles = Vec::with_capacity(n);
        for (i, deque) in deques.into_iter().enumerate() {
            let reg = registry.clone();
            let cpu = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
            let spawned = std::thread::Builder::new()
                .name(format!("{}-{i}", self.name))
                .stack_size(self.stack_size)
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin::pin_current(cpu);
                    }
                    WorkerThread::run(reg, i, deque);
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    let partial = Runtime {
                        registry,
                        handles: std::sync::Mutex::new(handles),
                    };
                    drop(partial);
                    return Err(BuildError::Spawn(e));
                }
            }
        }
        Ok(Runtime {
            registry,
            handles: std::sync::Mutex::new(handles),
        })
    }
}

/// A work-stealing thread pool.
///
/// Dropping a runtime (or [`shutdown`](Runtime::shutdown)) stops its
/// workers after their current job, joins them, and cancels every spawned
/// task that had not finished (its future is dropped; its [`Task`] handle
/// resolves to `Err(Cancelled)`). Nothing hangs and no thread is left
/// behind. (Dropped from inside one of its own jobs, it cannot wait for
/// its workers; they exit on their own right after their current job.)
///
/// ```
/// use strata::runtime::Runtime;
///
/// let rt = Runtime::builder().threads(2).build().unwrap();
/// let (a, b) = rt.join(|| 1 + 1, || 2 + 2);
/// assert_eq!((a, b), (2, 4));
/// rt.shutdown();
/// ```
pub struct Runtime {
    registry: Arc<Registry>,
    handles: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

static GLOBAL: OnceLock<Runtime> = OnceLock::new();

thread_local! {
    /// Runtimes entered on this (non-worker) thread, innermost last.
    static ENTERED: std::cell::RefCell<Vec<Arc<Registry>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with the registry work started on this thread goes to: the
/// worker's own, else the innermost entered runtime, else the global one.
pub(crate) fn with_current<R>(f: impl FnOnce(&Arc<Registry>) -> R) -> R {
    // SAFETY: a non-null current worker is live for this whole call.
    if let Some(w) = unsafe { WorkerThread::current().as_ref() } {
        return f(w.registry());
    }
    let entered = ENTERED.with(|e| e.borrow().last().cloned());
    match entered {
        // (Closed only if an `EnterGuard` was leaked past its runtime.)
        Some(reg) if !reg.is_closed() => f(&reg),
        _ => f(&Runtime::global().registry),
    }
}

impl Runtime {
    /// A builder with the defaults: `available_parallelism()` workers,
    /// named `strata-worker-N`, 16 MiB stacks, not pinned.
    ///
    /// ```
    /// let rt = strata::runtime::Runtime::builder().build().unwrap();
    /// assert_eq!(rt.threads(), std::thread::available_parallelism().map_or(1, |n| n.get()));
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A runtime with the default configuration.
    ///
    /// ```
    /// let rt = strata::runtime::Runtime::new().unwrap();
    /// assert!(rt.threads() >= 1);
    /// ```
    pub fn new() -> Result<Self, BuildError> {
        Builder::default().build()
    }

    /// The process-wide runtime, started on first use with one worker per
    /// available CPU. `strata::join`, `task::scope` and `par` use it when
    /// called outside any runtime.
    ///
    /// ```
    /// let rt = strata::runtime::Runtime::global();
    /// assert_eq!(rt.install(|| 2 + 2), 4);
    /// ```
    ///
    /// # Panics
    ///
    /// If the global runtime is not started yet and the OS refuses to start
    /// its threads (and so does every `join`, `scope` or `par` call made
    /// outside a runtime in that case). Use [`Runtime::try_global`] to get
    /// the error instead.
    pub fn global() -> &'static Runtime {
        Self::try_global()
            .unwrap_or_else(|e| panic!("strata: cannot start the global runtime: {e}"))
    }

    /// [`Runtime::global`], or why it could not be started. After an
    /// error nothing is kept: the next call (of either) tries again, so a
    /// caller can retry once resources are freed.
    ///
    /// ```
    /// use strata::runtime::Runtime;
    ///
    /// let rt = Runtime::try_global().expect("no threads for the global runtime");
    /// assert_eq!(rt.install(|| 2 + 2), 4);
    /// // Started once: every call returns the same runtime.
    /// assert!(std::ptr::eq(rt, Runtime::global()));
    /// ```
    pub fn try_global() -> Result<&'static Runtime, BuildError> {
        if let Some(rt) = GLOBAL.get() {
            return Ok(rt);
        }
        // `OnceLock::get_or_try_init` is unstable: one starter at a time,
        // so a failed start is not cached and no two pools are built.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = STARTING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(rt) = GLOBAL.get() {
            return Ok(rt);
        }
        let rt = Builder::default().name("strata-global").build()?;
        Ok(GLOBAL.get_or_init(|| rt))
    }

    /// Number of worker threads.
    ///
    /// ```
    /// let rt = strata::runtime::Runtime::builder().threads(2).build().unwrap();
    /// assert_eq!(rt.threads(), 2);
    /// ```
    pub fn threads(&self) -> usize {
        self.registry.num_workers()
    }

    /// Runs `f` on a worker of this runtime and returns its result; the
    /// calling thread blocks meanwhile (a worker of another runtime keeps
    /// running its own pool's jobs while it waits, so work queued on it is
    /// not stranded). Inside `f`, `join`, scopes and `par` use this
    /// runtime. Called from one of its own workers, `f` simply runs.
    ///
    /// ```
    /// let rt = strata::runtime::Runtime::builder().threads(2).build().unwrap();
    /// let name = rt.install(|| std::thread::current().name().map(String::from));
    /// assert!(name.unwrap().starts_with("strata-worker-"));
    /// ```
    pub fn install<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        self.registry.in_worker(f)
    }

    /// [`join`] on this runtime.
    ///
    /// ```
    /// let rt = strata::runtime::Runtime::builder().threads(2).build().unwrap();
    /// assert_eq!(rt.join(|| "a", || "b"), ("a", "b"));
    /// ```
    pub fn join<A, B, RA, RB>(&self, a: A, b: B) -> (RA, RB)
    where
        A: FnOnce() -> RA + Send,
        B: FnOnce() -> RB + Send,
        RA: Send,
        RB: Send,
    {
        self.install(|| join(a, b))
    }

    /// Spawns a future on the pool. The returned [`Task`] is a future of
    /// its output; dropping it cancels the task.
    ///
    /// ```
    /// let rt = strata::runtime::Runtime::builder().threads(2).build().unwrap();
    /// let t = rt.spawn(async { 40 + 2 });
    /// assert_eq!(t.join(), Ok(42));
    /// ```
    pub fn spawn<F>(&self, fut: F) -> Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_on(&self.registry, fut)
    }

    /// Runs `fut` to completion on the calling thread with this runtime
    /// entered (so [`spawn`] inside it goes to this runtime).
    ///
    /// ```
    /// let rt = strata::runtime::Runtime::builder().threads(2).build().unwrap();
    /// let v = rt.block_on(async {
    ///     let t = strata::runtime::spawn(async { 7 });
    ///     t.await.unwrap()
    /// });
    /// assert_eq!(v, 7);
    /// ```
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        let _guard = self.enter();
        block_on(fut)
    }

    /// Makes this runtime the current one on this thread until the guard
    /// is dropped: [`spawn`], [`join`], scopes and `par` called here use it.
    ///
    /// ```
    /// let rt = strata::runtime::Runtime::builder().threads(1).name("mine").build().unwrap();
    /// let _g = rt.enter();
    /// let (n, _) = strata::join(|| std::thread::current().name().map(String::from), || ());
    /// assert_eq!(n.as_deref(), Some("mine-0"));
    /// ```
    pub fn enter(&self) -> EnterGuard<'_> {
        ENTERED.with(|e| e.borrow_mut().push(self.registry.clone()));
        EnterGuard {
            rt: self,
            _not_send: std::marker::PhantomData,
        }
    }

    /// A snapshot of the pool's counters and queue depths.
    ///
    /// ```
    /// let rt = strata::runtime::Runtime::builder().threads(2).build().unwrap();
    /// assert_eq!(rt.metrics().workers, 2);
    /// ```
    pub fn metrics(&self) -> RuntimeMetrics {
        let reg = &self.registry;
        let mut m = RuntimeMetrics {
            workers: reg.num_workers(),
            tasks_spawned: reg
                .spawned
                .load(crate::loom::sync::atomic::Ordering::Relaxed),
            live_tasks: reg.live.len(),
            sleeping: reg.sleep.sleeping(),
            injector_depth: reg.injector.len(),
            ..RuntimeMetrics::default()
        };
        for w in reg.workers.iter() {
            m.tasks_run += w.jobs_run();
            m.steals += w.steals();
            m.parks += w.parks();
            m.promotions += w.promotions();
            m.worker_depths.push(w.queue_depth());
        }
        m
    }

    /// Stops the workers after their current job, joins them, and cancels
    /// every unfinished spawned task. Same as dropping the runtime.
    ///
    /// ```
    /// use strata::task::Cancelled;
    /// let rt = strata::runtime::Runtime::builder().threads(1).build().unwrap();
    /// let stuck = rt.spawn(std::future::pending::<()>());
    /// rt.shutdown();
    /// assert_eq!(stuck.join(), Err(Cancelled));
    /// ```
    pub fn shutdown(self) {
        drop(self);
    }

    fn shutdown_inner(&mut self) {
        self.registry.terminate();
        // Cancel the unfinished tasks before waiting for the workers: one
        // of them may be blocked (`Task::join`) on a task that would
        // otherwise never finish.
        self.registry.live.cancel_all();
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|e| e.into_inner()));
        let me = std::thread::current().id();
        // Dropped from inside one of its own jobs, the runtime cannot join
        // that worker, nor any other (one may be waiting for the very job
        // that is dropping it): they all leave their loops after their
        // current job, and each drains what it queued after the close.
        if !handles.iter().any(|h| h.thread().id() == me) {
            for h in handles {
                let _ = h.join();
            }
        }
        self.registry.close();
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown_inner();
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("threads", &self.threads())
            .finish_non_exhaustive()
    }
}

/// Returned by [`Runtime::enter`]; leaving it restores the previous
/// current runtime.
///
/// ```
/// let rt = strata::runtime::Runtime::builder().threads(1).name("entered").build().unwrap();
/// {
///     let _guard = rt.enter();
///     let t = strata::runtime::spawn(async { std::thread::current().name().map(String::from) });
///     assert_eq!(t.join().unwrap().as_deref(), Some("entered-0"));
/// }
/// ```
///
/// The guard belongs to the thread that entered: it is not `Send`, so it
/// cannot leave another thread's stack of entered runtimes.
///
/// ```compile_fail
/// let rt = strata::runtime::Runtime::builder().threads(1).build().unwrap();
/// let guard = rt.enter();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(guard)); // error: `*const ()` cannot be sent
/// });
/// ```
#[must_use = "the runtime is only current while the guard lives"]
pub struct EnterGuard<'a> {
    rt: &'a Runtime,
    /// `!Send`: the entry lives in this thread's stack.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for EnterGuard<'_> {
    fn drop(&mut self) {
        ENTERED.with(|e| {
            let mut e = e.borrow_mut();
            // Guards dropped out of order remove their own entry, not the
            // innermost one (entries of one runtime are interchangeable).
            if let Some(i) = e.iter().rposition(|r| Arc::ptr_eq(r, &self.rt.registry)) {
                e.remove(i);
            }
        });
    }
}

impl fmt::Debug for EnterGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnterGuard").finish_non_exhaustive()
    }
}

/// Spawns a future on the current runtime: the worker's own when called
/// on a worker (inside a task, a `join`, a scope), else the entered one
/// ([`Runtime::enter`], [`Runtime::block_on`]), else the global runtime.
///
/// ```
/// let t = strata::runtime::spawn(async { "hi" });
/// assert_eq!(t.join(), Ok("hi"));
/// ```
pub fn spawn<F>(fut: F) -> Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    with_current(|reg| spawn_on(reg, fut))
}

pub(crate) fn spawn_on<F>(reg: &Arc<Registry>, fut: F) -> Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (raw, job) = spawn::RawTask::new(fut, reg.clone());
    let weak: std::sync::Weak<dyn spawn::Cancel> = Arc::downgrade(&raw) as _;
    raw.set_slot(reg.live.insert(weak));
    reg.spawned
        .fetch_add(1, crate::loom::sync::atomic::Ordering::Relaxed);
    // SAFETY: a non-null current worker is live for this whole call.
    match unsafe { WorkerThread::current().as_ref() } {
        Some(w) if std::ptr::eq(&**w.registry(), &**reg) => w.push(job),
        _ => reg.inject(job),
    }
    Task::from_raw(raw)
}
