//! Type-erased jobs: what the deques hold.
//!
//! A [`JobRef`] is two words, a pointer to the job's state and the function
//! that runs (or cancels) it. Three kinds exist: a [`StackJob`] lives in the
//! stack frame of whoever waits for it (the second half of a `join`, an
//! injected `install`), a [`HeapJob`] is a boxed closure that owns itself (a
//! scope's `spawn`), and spawned futures are `Arc`-counted tasks
//! (`runtime::spawn`).

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;

use super::WorkerThread;
use super::latch::Latch;
use super::slab::{Chunk, SLOT};
use crate::loom::cell::UnsafeCell;

/// What to do with a job taken from a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Run it.
    Run,
    /// The runtime shut down: release it without running (only spawned
    /// futures can still be queued then; they are cancelled).
    Cancel,
}

/// A type-erased pointer to a job plus its entry point.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JobRef {
    data: NonNull<()>,
    entry: unsafe fn(NonNull<()>, Action),
}

// SAFETY: a `JobRef` is only created for jobs whose state may be run on
// another thread (the constructors require `Send` closures and results), and
// it is a plain pointer otherwise.
unsafe impl Send for JobRef {}
// SAFETY: as above; sharing the pointer itself is harmless.
unsafe impl Sync for JobRef {}

impl JobRef {
    /// # Safety
    /// `data` must stay valid until `entry` has been called on it exactly
    /// once, and `entry(data, _)` must be sound to call from any thread.
    pub(crate) unsafe fn new(data: NonNull<()>, entry: unsafe fn(NonNull<()>, Action)) -> Self {
        Self { data, entry }
    }

    /// Runs the job.
    ///
    /// # Safety
    /// Each `JobRef` is executed or cancelled exactly once.
    #[inline]
    pub(crate) unsafe fn execute(self) {
        // SAFETY: forwarded from the caller.
        unsafe { (self.entry)(self.data, Action::Run) }
    }

    /// Releases the job without running it.
    ///
    /// # Safety
    /// Each `JobRef` is executed or cancelled exactly once.
    pub(crate) unsafe fn cancel(self) {
        // SAFETY: forwarded from the caller.
        unsafe { (self.entry)(self.data, Action::Cancel) }
    }

    /// Whether two refs name the same job (by address).
    #[inline]
    pub(crate) fn same(self, other: JobRef) -> bool {
        self.data == other.data
    }
}

/// How a job ended.
pub(crate) enum JobResult<R> {
    /// Not run yet.
    None,
    /// Returned normally.
    Ok(R),
    /// Panicked; the payload is re-raised in the waiter.
    Panic(Box<dyn Any + Send>),
}

/// A job that lives on the stack of the thread that waits for it. The waiter
/// either takes the closure back and runs it itself ([`StackJob::run_inline`],
/// when nobody stole it) or waits for the latch and takes the result.
pub(crate) struct StackJob<L, F, R> {
    latch: L,
    func: UnsafeCell<Option<F>>,
    result: UnsafeCell<JobResult<R>>,
}

impl<L: Latch, F: FnOnce() -> R + Send, R: Send> StackJob<L, F, R> {
    #[inline]
    pub(crate) fn new(func: F, latch: L) -> Self {
        Self {
            latch,
            func: UnsafeCell::new(Some(func)),
            result: UnsafeCell::new(JobResult::None),
        }
    }

    /// The latch set when a thief has finished the job.
    #[inline]
    pub(crate) fn latch(&self) -> &L {
        &self.latch
    }

    /// A ref to hand to a queue.
    ///
    /// # Safety
    /// `self` must not move or be dropped before the job has run and set its
    /// latch, or has been taken back out of every queue.
    #[inline]
    pub(crate) unsafe fn as_job_ref(&self) -> JobRef {
        // SAFETY: the caller keeps `self` in place until the job has run;
        // `execute` is sound from any thread because F and R are Send.
        unsafe { JobRef::new(NonNull::from(self).cast(), Self::entry) }
    }

    unsafe fn entry(data: NonNull<()>, action: Action) {
        // SAFETY: `data` came from `as_job_ref` on a live `StackJob` of this
        // exact type, and the waiter keeps it alive until the latch is set.
        let this = unsafe { data.cast::<Self>().as_ref() };
        // A stack job is never cancelled: its owner waits for it. (None can
        // be queued when the queues are drained at shutdown.)
        let _ = action;
        // SAFETY: this thread took the job from a queue, so it is the only
        // one touching `func` (the waiter no longer can: it gave the job
        // away, and only reads `result` after the latch is set).
        let func = this.func.with_mut(|f| unsafe { (*f).take() });
        let func = func.expect("stack job run twice");
        let result = match panic::catch_unwind(AssertUnwindSafe(func)) {
            Ok(v) => JobResult::Ok(v),
            Err(p) => JobResult::Panic(p),
        };
        // SAFETY: as above, exclusive until the latch is set.
        this.result.with_mut(|r| unsafe { *r = result });
        // SAFETY: `this` is live here; `set` does not touch it after the
        // store that may let the waiter free it.
        unsafe { L::set(&this.latch) };
    }

    /// Runs the closure on the current thread: the job was never handed to
    /// anyone (or was taken back from the queue before anyone stole it).
    #[inline]
    pub(crate) fn run_inline(self) -> R {
        let func = self.func.into_inner().expect("stack job already taken");
        func()
    }

    /// Runs the closure on the current thread without moving the job: it
    /// was promoted, then taken back from the queue before anyone stole it.
    ///
    /// # Safety
    /// The caller holds the only `JobRef` to this job (it popped it back),
    /// so no other thread can run it.
    pub(crate) unsafe fn run_taken_back(&self) -> R {
        // SAFETY: exclusive per the contract.
        let func = self.func.with_mut(|f| unsafe { (*f).take() });
        func.expect("stack job already taken")()
    }

    /// The result after the latch was set, without moving the job. A panic
    /// in the job is re-raised.
    ///
    /// # Safety
    /// The latch is set, so the thief is done with the job.
    pub(crate) unsafe fn take_result(&self) -> R {
        // SAFETY: the setter's last access preceded the latch store.
        let result = self
            .result
            .with_mut(|r| unsafe { std::mem::replace(&mut *r, JobResult::None) });
        match result {
            JobResult::Ok(v) => v,
            JobResult::Panic(p) => panic::resume_unwind(p),
            JobResult::None => unreachable!("stack job latch set without a result"),
        }
    }
}

/// A heap-allocated closure that owns itself; running it frees it. Small
/// ones spawned on a worker live in a slot of that worker's chunk (see
/// [`super::slab`]), others in a `Box`.
pub(crate) struct HeapJob<F> {
    func: F,
}

/// A job in a chunk slot: the closure and the chunk to release the slot to.
#[repr(C)]
struct SlabJob<F> {
    chunk: NonNull<Chunk>,
    func: F,
}

impl<F: FnOnce() + Send> HeapJob<F> {
    /// Stores `func` on the heap and returns its ref. The closure must
    /// catch its own panics: a panic escaping a heap job aborts the
    /// worker's job loop.
    ///
    /// # Safety
    /// Everything `func` borrows must outlive its run (a scope guarantees
    /// this by waiting for all its children).
    #[inline]
    pub(crate) unsafe fn into_job_ref(func: F) -> JobRef {
        if size_of::<SlabJob<F>>() <= SLOT && align_of::<SlabJob<F>>() <= SLOT {
            // SAFETY: a non-null current worker is live for this call.
            if let Some(w) = unsafe { WorkerThread::current().as_ref() } {
                let (slot, chunk) = w.slab().slot();
                let job = slot.cast::<SlabJob<F>>();
                // SAFETY: the slot is `SLOT` bytes, 64-aligned, unused, and
                // owned by this job until `slab_entry` releases it.
                unsafe { job.as_ptr().write(SlabJob { chunk, func }) };
                // SAFETY: `slab_entry` reads the job back exactly once.
                return unsafe { JobRef::new(job.cast(), Self::slab_entry) };
            }
        }
        let boxed = Box::new(HeapJob { func });
        let data = NonNull::from(Box::leak(boxed)).cast();
        // SAFETY: the box is leaked until `entry` reclaims it, exactly once.
        unsafe { JobRef::new(data, Self::entry) }
    }

    unsafe fn entry(data: NonNull<()>, action: Action) {
        // SAFETY: `data` is the leaked box of `into_job_ref`, reclaimed once.
        let job = unsafe { Box::from_raw(data.cast::<Self>().as_ptr()) };
        match action {
            Action::Run => (job.func)(),
            // Dropping it drops whatever the closure owns.
            Action::Cancel => drop(job),
        }
    }

    unsafe fn slab_entry(data: NonNull<()>, action: Action) {
        // SAFETY: `data` is the slot written in `into_job_ref`; this is its
        // one read, which moves the closure out.
        let SlabJob { chunk, func } = unsafe { data.cast::<SlabJob<F>>().as_ptr().read() };
        // SAFETY: the slot's count is this job's; nothing touches it again.
        unsafe { Chunk::release(chunk, 1) };
        match action {
            Action::Run => func(),
            Action::Cancel => drop(func),
        }
    }
}
