//! The pool's shared state (`Registry`) and each worker's thread-local state
//! (`WorkerThread`): the job loop, stealing, sleeping and `join`.
//!
//! ## Lazy promotion (`join`)
//!
//! A `join(a, b)` on a worker writes a pointer to the half it offers (a
//! [`StackJob`] in its own frame) into a small private ring of plain
//! `Cell`s — no atomics, no fence — runs the other half, and, if the
//! offered one is still private, takes it back and runs it inline. Other
//! workers cannot see the ring. Workers that run out of work count
//! themselves in the registry's `idle` counter while they look for work or
//! sleep. A busy worker reads that counter (one relaxed load of a
//! read-mostly cache line) at every `join`; when someone is idle and the
//! busy worker's deque is empty (nothing it offered is still waiting), it
//! *promotes* its oldest private job — the biggest piece of work it has —
//! into its crossbeam deque and wakes one sleeper. This is the
//! heartbeat-scheduling idea of Spice and chili, driven by demand instead
//! of a timer thread, so an idle pool has no thread that wakes up, and at
//! most one offered job per busy worker waits at a time.
//!
//! Ring positions are absolute counters `head..tail` (`head` counts
//! promotions from the front). A frame at position `p` was promoted iff
//! `head > p` when the inline half returns. With `RING` private jobs
//! already queued a join just runs both halves (the oldest job is the one
//! that would be shared anyway).
//!
//! A promoted job that is still in the deque when its owner comes back is
//! popped and run inline; one that was stolen is waited for with
//! [`WorkerThread::wait_until`], which runs other jobs meanwhile (its own
//! idleness makes the thief share) and sleeps only when there are none.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::CachePadded;

use super::job::{Action, JobRef, StackJob};
use super::latch::{CrossLatch, LockLatch, WorkerLatch, register_waiter};
use super::slab::SlabCursor;
use super::sleep::Sleep;
use super::spawn::LiveTasks;
// The registry is not loom-modelled (crossbeam-deque is not): a std `Arc`.
use crate::loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::Arc;

/// Private jobs a worker keeps before further joins run sequentially (a
/// few suffice: the oldest, shared first, are the biggest; fewer mean
/// fewer joins pay for a push).
const RING: usize = 4;
const MASK: usize = RING - 1;
/// Jobs in a row a worker takes from its LIFO slot before the slot's job
/// goes to the back of the line (tokio's rule against ping-pong starvation).
const LIFO_STREAK: u32 = 3;
/// Every this many `find_work` calls the injector is tried first (tokio
/// uses 61 too: a prime, so it does not beat in step with a workload).
const GLOBAL_EVERY: u32 = 61;
/// Rounds of looking for work before an idle worker sleeps.
const SPIN_ROUNDS: u32 = 64;
/// Of those, the first ones only spin; later ones yield the CPU.
const SPIN_ONLY: u32 = 16;

/// Per-worker state other threads read.
pub(crate) struct WorkerShared {
    stealer: Stealer<JobRef>,
    /// Counters written only by the owner (load + store, no RMW).
    jobs_run: AtomicU64,
    steals: AtomicU64,
    parks: AtomicU64,
    promotions: AtomicU64,
}

impl WorkerShared {
    pub(crate) fn jobs_run(&self) -> u64 {
        self.jobs_run.load(Ordering::Relaxed)
    }
    pub(crate) fn steals(&self) -> u64 {
        self.steals.load(Ordering::Relaxed)
    }
    pub(crate) fn parks(&self) -> u64 {
        self.parks.load(Ordering::Relaxed)
    }
    pub(crate) fn promotions(&self) -> u64 {
        self.promotions.load(Ordering::Relaxed)
    }
    pub(crate) fn queue_depth(&self) -> usize {
        self.stealer.len()
    }
}

#[inline]
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// The state of one pool, shared by its workers, its `Runtime` handle and
/// every task spawned on it.
pub(crate) struct Registry {
    pub(crate) workers: Box<[CachePadded<WorkerShared>]>,
    pub(crate) injector: Injector<JobRef>,
    pub(crate) sleep: Sleep,
    /// Workers looking for work or asleep: busy workers read it at every
    /// join ("does anyone want a job?"); only idle transitions write it.
    idle: CachePadded<AtomicUsize>,
    /// Workers leave their loop (after their current job).
    terminate: AtomicBool,
    /// Set once the workers are gone: queued work is cancelled, not run.
    closed: AtomicBool,
    /// Spawned futures not finished yet, cancelled at shutdown.
    pub(crate) live: LiveTasks,
    pub(crate) spawned: AtomicU64,
}

impl Registry {
    /// A registry for `n` workers plus the deques those workers will own.
    pub(crate) fn new(n: usize) -> (Arc<Self>, Vec<Worker<JobRef>>) {
        let deques: Vec<Worker<JobRef>> = (0..n).map(|_| Worker::new_lifo()).collect();
        let workers = deques
            .iter()
            .map(|d| {
                CachePadded::new(WorkerShared {
                    stealer: d.stealer(),
                    jobs_run: AtomicU64::new(0),
                    steals: AtomicU64::new(0),
                    parks: AtomicU64::new(0),
                    promotions: AtomicU64::new(0),
                })
            })
            .collect();
        let reg = Arc::new(Self {
            workers,
            injector: Injector::new(),
            sleep: Sleep::new(n),
            idle: CachePadded::new(AtomicUsize::new(0)),
            terminate: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            live: LiveTasks::new(),
            spawned: AtomicU64::new(0),
        });
        (reg, deques)
    }

    pub(crate) fn num_workers(&self) -> usize {
        self.workers.len()
    }

    /// Queues a job from outside the pool (or for anyone to take) and wakes
    /// a worker.
    pub(crate) fn inject(&self, job: JobRef) {
        self.injector.push(job);
        self.sleep.notify_one();
        if self.closed.load(Ordering::Relaxed) {
            // Raced with shutdown (the fence in `notify_one` orders the push
            // before this load): nobody will run it, so cancel it here.
            self.drain();
        }
    }

    /// Whether the workers are gone (queued work is cancelled).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether any queue visible to all workers holds a job.
    fn has_shared_work(&self) -> bool {
        !self.injector.is_empty() || self.workers.iter().any(|w| !w.stealer.is_empty())
    }

    /// Tells the workers to stop after their current job and wakes them all.
    pub(crate) fn terminate(&self) {
        self.terminate.store(true, Ordering::SeqCst);
        self.sleep.notify_all();
    }

    /// After the workers exited: cancel everything still queued or alive.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.drain();
        self.live.cancel_all();
        // A task cancelled above may have been queued by its last waker.
        self.drain();
    }

    /// Cancels every queued job (only spawned futures can be queued when
    /// no worker runs).
    fn drain(&self) {
        loop {
            let mut any = false;
            loop {
                match self.injector.steal() {
                    // SAFETY: taken from a queue, so this is its only owner.
                    Steal::Success(job) => unsafe { job.cancel() },
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
                any = true;
            }
            for w in self.workers.iter() {
                loop {
                    match w.stealer.steal() {
                        // SAFETY: as above.
                        Steal::Success(job) => unsafe { job.cancel() },
                        Steal::Retry => continue,
                        Steal::Empty => break,
                    }
                    any = true;
                }
            }
            if !any {
                return;
            }
        }
    }

    /// Runs `f` on a worker of this pool and returns its result, blocking
    /// the calling thread (which is not a worker of this pool).
    #[cold]
    pub(crate) fn in_worker_cold<F, R>(self: &Arc<Self>, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let job = StackJob::new(f, LockLatch::new());
        // SAFETY: `job` lives on this frame until its latch is set below.
        self.inject(unsafe { job.as_job_ref() });
        job.latch().wait();
        // SAFETY: the latch is set.
        unsafe { job.take_result() }
    }

    /// Runs `f` inside this pool: directly when already on one of its
    /// workers, else by injecting it and waiting — a worker of another pool
    /// runs its own pool's jobs meanwhile, any other thread blocks.
    pub(crate) fn in_worker<F, R>(self: &Arc<Self>, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        // SAFETY: a non-null current worker is live for this whole call.
        match unsafe { WorkerThread::current().as_ref() } {
            Some(w) if ptr::eq(&*w.registry, &**self) => f(),
            Some(w) => self.in_worker_cross(w, f),
            None => self.in_worker_cold(f),
        }
    }

    /// `in_worker` from worker `w` of another pool. Blocking `w` would
    /// strand the jobs queued on it, which `f` may need (a scope child whose
    /// future `f` forces): `w` keeps working for its own pool while it waits.
    #[cold]
    fn in_worker_cross<F, R>(self: &Arc<Self>, w: &WorkerThread, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let job = StackJob::new(f, CrossLatch::new(w.registry()));
        // SAFETY: `job` lives on this frame until its latch is set below.
        self.inject(unsafe { job.as_job_ref() });
        w.wait_until(job.latch().worker_latch());
        // SAFETY: the latch is set.
        unsafe { job.take_result() }
    }
}

thread_local! {
    static WORKER: Cell<*const WorkerThread> = const { Cell::new(ptr::null()) };
}

unsafe fn noop_entry(_: std::ptr::NonNull<()>, _: Action) {}

fn noop_job() -> JobRef {
    // SAFETY: the placeholder is never queued or executed.
    unsafe { JobRef::new(std::ptr::NonNull::dangling(), noop_entry) }
}

/// A worker's own state, on its thread's stack for the thread's life.
pub(crate) struct WorkerThread {
    index: usize,
    registry: Arc<Registry>,
    deque: Worker<JobRef>,
    /// The most recently woken task, run next (futures only).
    lifo: Cell<Option<JobRef>>,
    /// Calls of `find_work`, for the periodic look at the global queue.
    tick: Cell<u32>,
    /// Consecutive jobs taken from the LIFO slot.
    lifo_streak: Cell<u32>,
    /// True while polling a spawned future: wakes then go to the LIFO slot.
    in_poll: Cell<bool>,
    head: Cell<usize>,
    tail: Cell<usize>,
    ring: [Cell<JobRef>; RING],
    rng: Cell<u64>,
    /// `&registry.idle`, one load closer for the join fast path.
    idle: *const AtomicUsize,
    /// Where this worker's small heap jobs are carved from.
    slab: SlabCursor,
}

impl WorkerThread {
    /// The worker running on this thread, or null.
    #[inline]
    pub(crate) fn current() -> *const WorkerThread {
        WORKER.with(Cell::get)
    }

    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Whether this worker should share a job: some worker is idle and
    /// nothing this worker offered is still waiting in its deque. One
    /// relaxed load of a read-mostly line in the common case; `par` polls
    /// it between blocks to split lazily.
    #[inline]
    pub(crate) fn work_requested(&self) -> bool {
        self.anyone_idle() && self.deque.is_empty()
    }

    #[inline]
    fn anyone_idle(&self) -> bool {
        // SAFETY: points into `self.registry`, which this struct keeps alive.
        unsafe { &*self.idle }.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn slab(&self) -> &SlabCursor {
        &self.slab
    }

    fn shared(&self) -> &WorkerShared {
        &self.registry.workers[self.index]
    }

    /// The body of a worker thread.
    pub(crate) fn run(registry: Arc<Registry>, index: usize, deque: Worker<JobRef>) {
        let idle: *const AtomicUsize = &*registry.idle;
        let this = WorkerThread {
            slab: SlabCursor::new(),
            idle,
            index,
            registry,
            deque,
            lifo: Cell::new(None),
            lifo_streak: Cell::new(0),
            tick: Cell::new(0),
            in_poll: Cell::new(false),
            head: Cell::new(0),
            tail: Cell::new(0),
            ring: std::array::from_fn(|_| Cell::new(noop_job())),
            rng: Cell::new(
                0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407),
            ),
        };
        WORKER.with(|w| w.set(&this));
        this.main_loop();
        // Whatever was woken into the LIFO slot goes where the shutdown
        // drain (or another worker) finds it.
        if let Some(job) = this.lifo.take() {
            this.registry.inject(job);
        }
        if this.registry.is_closed() {
            // This worker dropped its own runtime (it cannot join itself):
            // what its last job queued after the close is cancelled here.
            this.registry.drain();
        }
        WORKER.with(|w| w.set(ptr::null()));
    }

    fn main_loop(&self) {
        loop {
            // Checked before every job, not only when out of work: a task
            // that keeps rescheduling itself must not keep its runtime from
            // shutting down. (What is left queued is cancelled by the
            // drain; at this level no job of this worker is in progress.)
            if self.registry.terminate.load(Ordering::Relaxed) {
                return;
            }
            if let Some(job) = self.find_work() {
                self.execute(job);
                continue;
            }
            if let Some(job) = self.idle(None) {
                self.execute(job);
            }
        }
    }

    /// Runs a job taken from a queue.
    #[inline]
    pub(crate) fn execute(&self, job: JobRef) {
        bump(&self.shared().jobs_run);
        // SAFETY: every job taken from a queue is executed exactly once.
        unsafe { job.execute() }
    }

    /// Local work first (LIFO slot, own deque), then the others' deques,
    /// then the injector.
    #[inline]
    fn find_work(&self) -> Option<JobRef> {
        if let Some(job) = self.lifo.take() {
            // Two tasks waking each other through the slot would keep it
            // forever: after a few turns in a row it goes to the back.
            let streak = self.lifo_streak.get();
            if streak < LIFO_STREAK {
                self.lifo_streak.set(streak + 1);
                return Some(job);
            }
            self.registry.inject(job);
        }
        self.lifo_streak.set(0);
        // Now and then the global queue first, so work injected from
        // outside is not starved by a deque that keeps refilling itself.
        let tick = self.tick.get().wrapping_add(1);
        self.tick.set(tick);
        if tick.is_multiple_of(GLOBAL_EVERY)
            && let Steal::Success(job) = self.registry.injector.steal()
        {
            return Some(job);
        }
        if let Some(job) = self.deque.pop() {
            return Some(job);
        }
        self.steal()
    }

    fn steal(&self) -> Option<JobRef> {
        let workers = &self.registry.workers;
        let n = workers.len();
        loop {
            let mut retry = false;
            if n > 1 {
                let start = self.next_random() as usize % n;
                for k in 0..n {
                    let i = (start + k) % n;
                    if i == self.index {
                        continue;
                    }
                    match workers[i].stealer.steal() {
                        Steal::Success(job) => {
                            bump(&self.shared().steals);
                            return Some(job);
                        }
                        Steal::Retry => retry = true,
                        Steal::Empty => {}
                    }
                }
            }
            match self.registry.injector.steal_batch_and_pop(&self.deque) {
                Steal::Success(job) => return Some(job),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            if !retry {
                return None;
            }
        }
    }

    fn next_random(&self) -> u64 {
        // xorshift64*: victim choice only.
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Out of work: ask for some, look for a while, then sleep until woken.
    /// With `latch`, returns early once it is set (a waiting owner).
    /// Returns a job if one turned up.
    #[cold]
    fn idle(&self, latch: Option<&dyn Wait>) -> Option<JobRef> {
        // Counted idle (which asks busy workers to share) for the whole call.
        struct Idle<'a>(&'a AtomicUsize);
        impl Drop for Idle<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.registry.idle.fetch_add(1, Ordering::Relaxed);
        let _idle = Idle(&self.registry.idle);
        let done = || {
            latch.is_some_and(|l| l.probe())
                || (latch.is_none() && self.registry.terminate.load(Ordering::Acquire))
        };
        for round in 0..SPIN_ROUNDS {
            if done() {
                return None;
            }
            if let Some(job) = self.find_work() {
                return Some(job);
            }
            if round < SPIN_ONLY {
                for _ in 0..32 {
                    crate::loom::hint::spin_loop();
                }
            } else {
                crate::loom::thread::yield_now();
            }
        }
        if let Some(latch) = latch
            && latch.register(self.index)
        {
            return None;
        }
        self.registry.sleep.sleep_then(
            self.index,
            || done() || self.registry.has_shared_work(),
            || bump(&self.shared().parks),
        );
        None
    }

    /// Runs other jobs until `latch` is set.
    pub(crate) fn wait_until(&self, latch: &WorkerLatch) {
        self.wait_for(latch);
    }

    /// Runs other jobs until `w` is done.
    fn wait_for(&self, latch: &dyn Wait) {
        while !latch.probe() {
            if let Some(job) = self.find_work() {
                self.execute(job);
                continue;
            }
            if let Some(job) = self.idle(Some(latch)) {
                self.execute(job);
            }
        }
    }

    /// Pushes a job on this worker's deque (a scope's spawn, a task).
    #[inline]
    pub(crate) fn push(&self, job: JobRef) {
        self.deque.push(job);
        self.registry.sleep.notify_one();
    }

    /// Schedules a woken task: into the LIFO slot while a task is being
    /// polled here (the waker is likely its successor), else onto the deque.
    ///
    /// Only a job that lands where others can steal it wakes a sleeper
    /// (tokio's rule): the LIFO slot is this worker's alone, so a sleeper
    /// woken for it would find nothing, spin and park again. The trade-off,
    /// shared with tokio: if the current poll runs long, the slot's job waits
    /// for it to end; waking a sleeper never helped with that, since the
    /// slot cannot be stolen. What bounds the wait: the job runs right after
    /// the poll returns (`find_work` looks at the slot first), or earlier if
    /// the poll waits on this worker (`join`, `block_on`, a scope or latch
    /// wait all run `find_work`); a job displaced from the slot goes to the
    /// deque and does wake a sleeper; after `LIFO_STREAK` slot jobs in a row
    /// the slot's job is injected (which wakes one); and a worker that stops
    /// injects it. A poll that never returns starves it, as in tokio.
    pub(crate) fn push_woken(&self, job: JobRef) {
        if self.in_poll.get() {
            if let Some(prev) = self.lifo.replace(Some(job)) {
                self.push(prev);
            }
        } else {
            self.push(job);
        }
    }

    /// Marks the start or end of a future's poll on this worker.
    pub(crate) fn set_in_poll(&self, on: bool) -> bool {
        self.in_poll.replace(on)
    }

    /// Moves the oldest private job to the deque, where others can steal it.
    #[cold]
    #[inline(never)]
    fn promote(&self) {
        let shared = self.shared();
        let head = self.head.get();
        if head < self.tail.get() {
            let job = self.ring[head & MASK].get();
            self.head.set(head + 1);
            self.deque.push(job);
            bump(&shared.promotions);
            self.registry.sleep.notify_one();
        }
    }

    /// `join` on this worker; see the module docs.
    #[inline]
    pub(crate) fn join<A, B, RA, RB>(&self, a: A, b: B) -> (RA, RB)
    where
        A: FnOnce() -> RA + Send,
        B: FnOnce() -> RB + Send,
        RA: Send,
        RB: Send,
    {
        // `b` runs here first and `a` is the half offered to thieves (as in
        // chili): a recursion written `join(|| left, || right)` then walks
        // right-to-left, which is the order in which a depth-first builder
        // allocated its nodes. Which half runs first is unspecified.
        if self.tail.get() - self.head.get() >= RING && !self.anyone_idle() {
            // The common case deep in a recursion: nothing to do but run.
            // (If `b` panics, `a` still runs, from the guard's drop.)
            let a = OtherHalf::new(a);
            let rb = b();
            return (a.run(), rb);
        }
        let (rb, ra) = self.join_offering(b, a);
        (ra, rb)
    }

    /// Runs `first` here, offering `offered` to idle workers meanwhile.
    #[inline(never)]
    fn join_offering<A, B, RA, RB>(&self, first: A, offered: B) -> (RA, RB)
    where
        A: FnOnce() -> RA + Send,
        B: FnOnce() -> RB + Send,
        RA: Send,
        RB: Send,
    {
        let p = self.tail.get();
        if p - self.head.get() >= RING {
            if self.work_requested() {
                self.promote();
            }
            let offered = OtherHalf::new(offered);
            let ra = first();
            return (ra, offered.run());
        }
        let job = StackJob::new(offered, WorkerLatch::new(&self.registry.sleep));
        // SAFETY: `job` stays in this frame until it is run inline, taken
        // back from the deque, or its latch is set (all below, also when
        // `first` panics).
        let job_ref = unsafe { job.as_job_ref() };
        self.ring[p & MASK].set(job_ref);
        self.tail.set(p + 1);
        if self.work_requested() {
            self.promote();
        }
        let ra = match panic::catch_unwind(AssertUnwindSafe(first)) {
            Ok(ra) => ra,
            Err(payload) => {
                self.recover(&job, job_ref, p);
                panic::resume_unwind(payload)
            }
        };
        if self.head.get() <= p {
            // Still private: nobody else can have seen it.
            self.tail.set(p);
            return (ra, job.run_inline());
        }
        self.head.set(p);
        self.tail.set(p);
        (ra, self.reclaim_or_wait(&job, job_ref))
    }

    /// `b` was promoted: take it back from the deque if it is still there,
    /// else wait for the thief.
    fn reclaim_or_wait<F, R>(&self, job: &StackJob<WorkerLatch, F, R>, job_ref: JobRef) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        while !job.latch().probe() {
            match self.deque.pop() {
                // SAFETY: popped back, so this thread holds the only ref.
                Some(j) if j.same(job_ref) => return unsafe { job.run_taken_back() },
                Some(j) => self.execute(j),
                None => break,
            }
        }
        self.wait_until(job.latch());
        // SAFETY: the latch is set.
        unsafe { job.take_result() }
    }

    /// The inline half panicked: the offered half still runs to completion
    /// (here if nobody took it, else its thief is waited for), so that
    /// nobody runs it on a dead frame and its effects are complete when the
    /// panic continues. Its result, or its own panic, is dropped: the first
    /// panic wins.
    #[cold]
    fn recover<F, R>(&self, job: &StackJob<WorkerLatch, F, R>, job_ref: JobRef, p: usize)
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let run_here = || {
            // SAFETY: the job is private or was popped back, so this thread
            // holds its only ref.
            let _ = panic::catch_unwind(AssertUnwindSafe(|| unsafe { job.run_taken_back() }));
        };
        if self.head.get() <= p {
            self.tail.set(p);
            return run_here(); // private: nobody else can have seen it
        }
        self.head.set(p);
        self.tail.set(p);
        while !job.latch().probe() {
            match self.deque.pop() {
                Some(j) if j.same(job_ref) => return run_here(),
                Some(j) => self.execute(j),
                None => break,
            }
        }
        self.wait_until(job.latch());
    }
}

/// The half of a `join` that runs second when nobody can take it: run by
/// [`OtherHalf::run`], or — if the first half unwinds — by the guard's
/// drop, so both halves always run (rayon's rule). Its own panic during
/// that unwinding is caught and dropped: the first panic wins.
struct OtherHalf<F: FnOnce() -> R, R>(Option<F>);

impl<F: FnOnce() -> R, R> OtherHalf<F, R> {
    #[inline(always)]
    fn new(f: F) -> Self {
        Self(Some(f))
    }

    #[inline(always)]
    fn run(mut self) -> R {
        match self.0.take() {
            Some(f) => f(),
            None => unreachable!("join half taken twice"),
        }
    }
}

impl<F: FnOnce() -> R, R> Drop for OtherHalf<F, R> {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            run_other_half(f);
        }
    }
}

#[cold]
#[inline(never)]
fn run_other_half<F: FnOnce() -> R, R>(f: F) {
    let _ = panic::catch_unwind(AssertUnwindSafe(f));
}

impl super::spawn::Schedule for Arc<Registry> {
    fn schedule(&self, job: JobRef) {
        let w = WorkerThread::current();
        // SAFETY: a non-null current worker is live for this whole call.
        if let Some(w) = unsafe { w.as_ref() }
            && ptr::eq(&*w.registry, &**self)
        {
            w.push_woken(job);
        } else {
            self.inject(job);
        }
    }

    fn yield_now(&self, job: JobRef) {
        self.inject(job);
    }

    fn enter_poll(&self) -> bool {
        // SAFETY: as above.
        match unsafe { WorkerThread::current().as_ref() } {
            Some(w) => w.set_in_poll(true),
            None => false,
        }
    }

    fn leave_poll(&self, prev: bool) {
        // SAFETY: as above.
        if let Some(w) = unsafe { WorkerThread::current().as_ref() } {
            w.set_in_poll(prev);
        }
    }

    fn finished(&self, slot: usize) {
        self.live.remove(slot);
    }
}

/// Something a worker can wait for while running other jobs.
pub(crate) trait Wait {
    /// Done?
    fn probe(&self) -> bool;
    /// Records worker `idx` as the one to wake; `true` if already done.
    fn register(&self, idx: usize) -> bool;
}

impl Wait for WorkerLatch {
    fn probe(&self) -> bool {
        WorkerLatch::probe(self)
    }
    fn register(&self, idx: usize) -> bool {
        WorkerLatch::register(self, idx)
    }
}

/// The waker of a future blocked on by a worker: a resettable latch
/// (`SET | (waiter + 1) << 1`) that wakes the worker through the registry
/// it keeps alive (the waker may outlive the wait).
struct WakeFlag {
    state: AtomicUsize,
    registry: Arc<Registry>,
}

impl WakeFlag {
    fn reset(&self) {
        self.state.store(0, Ordering::Relaxed);
    }
}

impl Wait for WakeFlag {
    fn probe(&self) -> bool {
        self.state.load(Ordering::Acquire) & 1 != 0
    }
    fn register(&self, idx: usize) -> bool {
        register_waiter(&self.state, idx)
    }
}

impl std::task::Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let prev = self.state.fetch_or(1, Ordering::AcqRel);
        if prev & 1 == 0 && prev >> 1 != 0 {
            self.registry.sleep.notify_worker((prev >> 1) - 1);
        }
    }
}

impl WorkerThread {
    /// `block_on` on a worker: between polls it runs other jobs (the future
    /// may wait for one of them: a task queued on this very worker), and
    /// sleeps only when there are none.
    pub(crate) fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        let flag = Arc::new(WakeFlag {
            state: AtomicUsize::new(0),
            registry: self.registry.clone(),
        });
        let waker = std::task::Waker::from(flag.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            flag.reset();
            if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            self.wait_for(&*flag);
        }
    }
}
