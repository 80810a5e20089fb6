//! The raw fair counting semaphore under `Semaphore`, `AsyncMutex` and
//! `AsyncRwLock`.
//!
//! Two halves, as in tokio's `batch_semaphore`:
//!
//! * an atomic word `state = available << 1 | QUEUED`. While nobody waits,
//!   acquire is one compare-and-swap on it and release one `fetch_add`: no
//!   queue lock, no allocation, no stored waker. A whole-semaphore request
//!   ([`Mode::Whole`]: a mutex, a writer) even skips the load before its CAS.
//!   [`Acquire::map`] turns the result into a guard without an `async`
//!   block, whose extra state machine cost a third of the uncontended time.
//! * a FIFO queue of waiters behind a mutex, touched only on contention.
//!
//! The rule that makes it fair: **`QUEUED` is set exactly while the queue is
//! non-empty, and then nobody takes permits from the atomic.** A waiter that
//! enqueues first drains whatever the atomic has (as a partial assignment)
//! and sets the flag. A release is one `fetch_add`; if the flag was set, the
//! releaser then takes the queue lock and *sweeps* whatever permits sit in
//! the atomic (its own, or other in-flight releasers') into the queue, which
//! hands permits to the head waiter — partially, if the head wants more than is
//! released, so a big request (a writer's `MAX_READERS`) is not starved by
//! later small ones — and only once the queue is empty does the leftover go
//! back to the atomic. A fast-path acquire that sees `QUEUED` never takes
//! permits, so nothing barges past a queued waiter; this is what makes
//! `AsyncRwLock` writer-preferring.
//!
//! The queue is a doubly linked list threaded through a slab (`Vec<Node>` plus
//! a free list) and addressed by index: O(1) unlink for cancellation without
//! `unsafe`, and no allocation per waiter once the slab has grown. A slot
//! belongs to its waiter from enqueue until the waiter itself frees it after
//! seeing the outcome (`Granted` / `Failed`) or on cancellation, so an index
//! can never be reused under a waiter's feet.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::diag::{HeldToken, TaskEntry};
use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::loom::sync::{Mutex, MutexGuard};
use crate::loom::thread::{self, Thread};
use crate::sync::AcquireError;

/// Declares a `const fn` normally and a plain `fn` under loom, whose atomics
/// and mutexes cannot be built in const context.
macro_rules! loom_const_fn {
    ($(#[$meta:meta])* $vis:vis fn $($rest:tt)*) => {
        #[cfg(not(loom))]
        $(#[$meta])* $vis const fn $($rest)*
        #[cfg(loom)]
        $(#[$meta])* $vis fn $($rest)*
    };
}
pub(crate) use loom_const_fn;

/// Set in `state` while the waiter queue is non-empty.
const QUEUED: usize = 1;
/// Permits are stored shifted left by one to make room for `QUEUED`.
const SHIFT: u32 = 1;
/// "No node" in the slab-linked list.
const NIL: usize = usize::MAX;
/// How many wake-ups a release collects before it drops the queue lock to
/// deliver them; bounds the stack buffer while keeping wakers out of the lock.
const WAKE_BATCH: usize = 16;
/// A slab this large with nobody in it is given back to the allocator.
const SHRINK_ABOVE: usize = 64;

/// How an acquisition relates to the semaphore's total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Wait even for more than the total: permits may be added later.
    Unchecked,
    /// Fail with `TooMany` if more than the total is asked for (now, or
    /// after permits are forgotten), instead of waiting forever.
    Checked,
    /// The request is the whole semaphore (a mutex, a writer). The fast
    /// path then guesses "all free" and skips the load before its CAS.
    Whole,
}

impl Mode {
    fn check_total(self) -> bool {
        self == Mode::Checked
    }
}

/// The most permits a semaphore can hold: room for the flag bit and for
/// transient sums without overflow.
pub(crate) const MAX_PERMITS: usize = usize::MAX >> 3;

/// How a queued waiter is told that its outcome is settled.
enum Notify {
    Waker(Waker),
    Thread(Thread),
}

impl Notify {
    fn notify(self) {
        match self {
            Notify::Waker(waker) => waker.wake(),
            Notify::Thread(thread) => thread.unpark(),
        }
    }
}

/// What a slab slot holds.
enum Slot {
    /// On the free list.
    Free,
    /// Linked into the wait queue.
    Waiting {
        needed: usize,
        /// Permits already handed over; only the head can have a non-zero value.
        assigned: usize,
        /// Whether this waiter fails if the total drops below `needed`.
        check_total: bool,
        notify: Notify,
    },
    /// Unlinked; the waiter owns `needed` permits and must free the slot.
    Granted,
    /// Unlinked; the wait can never succeed. The waiter must free the slot.
    Failed(AcquireError),
}

struct Node {
    prev: usize,
    /// Next in the wait queue, or next free slot while `Free`.
    next: usize,
    slot: Slot,
}

/// The slab-linked FIFO of waiters.
struct Queue {
    nodes: Vec<Node>,
    head: usize,
    tail: usize,
    free: usize,
    /// Slots not on the free list (waiting, or settled but not yet freed).
    occupied: usize,
}

impl Queue {
    loom_const_fn! {
        fn new() -> Self {
            Self {
                nodes: Vec::new(),
                head: NIL,
                tail: NIL,
                free: NIL,
                occupied: 0,
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.head == NIL
    }

    /// Appends a waiter at the tail and returns its slot index.
    fn push_back(&mut self, slot: Slot) -> usize {
        let node = Node {
            prev: self.tail,
            next: NIL,
            slot,
        };
        let idx = if self.free == NIL {
            self.nodes.push(node);
            self.nodes.len() - 1
        } else {
            let idx = self.free;
            self.free = self.nodes[idx].next;
            self.nodes[idx] = node;
            idx
        };
        if self.tail == NIL {
            self.head = idx;
        } else {
            self.nodes[self.tail].next = idx;
        }
        self.tail = idx;
        self.occupied += 1;
        idx
    }

    /// Takes a `Waiting` node out of the list; the slot stays occupied.
    fn unlink(&mut self, idx: usize) {
        let (prev, next) = (self.nodes[idx].prev, self.nodes[idx].next);
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next].prev = prev;
        }
        self.nodes[idx].prev = NIL;
        self.nodes[idx].next = NIL;
    }

    /// Returns an unlinked slot to the free list.
    fn free(&mut self, idx: usize) {
        self.nodes[idx].slot = Slot::Free;
        self.nodes[idx].next = self.free;
        self.free = idx;
        self.occupied -= 1;
        if self.occupied == 0 && self.nodes.len() > SHRINK_ABOVE {
            // A burst of waiters is over: do not keep its slab forever.
            self.nodes = Vec::new();
            self.free = NIL;
        }
    }

    fn slot_mut(&mut self, idx: usize) -> &mut Slot {
        &mut self.nodes[idx].slot
    }

    /// Waiters linked into the queue (a walk: for introspection only).
    fn len(&self) -> usize {
        let mut n = 0;
        let mut at = self.head;
        while at != NIL {
            n += 1;
            at = self.nodes[at].next;
        }
        n
    }
}

/// Wake-ups collected under the queue lock and delivered after it, so a
/// waker that runs code (or a woken thread) never contends on the lock we hold.
struct WakeList {
    items: [Option<Notify>; WAKE_BATCH],
    len: usize,
}

impl WakeList {
    fn new() -> Self {
        Self {
            items: [const { None }; WAKE_BATCH],
            len: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.len == WAKE_BATCH
    }

    fn push(&mut self, notify: Notify) {
        debug_assert!(!self.is_full());
        self.items[self.len] = Some(notify);
        self.len += 1;
    }

    fn wake_all(&mut self) {
        for item in &mut self.items[..self.len] {
            if let Some(notify) = item.take() {
                notify.notify();
            }
        }
        self.len = 0;
    }
}

/// A FIFO-fair counting semaphore whose waiters are futures or threads.
pub(crate) struct RawSemaphore {
    /// `available << 1 | QUEUED`; see the module docs for the invariant.
    state: AtomicUsize,
    /// Permits the semaphore manages: initial + added − forgotten.
    total: AtomicUsize,
    queue: Mutex<Queue>,
}

impl RawSemaphore {
    loom_const_fn! {
        /// A semaphore with `permits` available (capped at [`MAX_PERMITS`]).
        pub(crate) fn new(permits: usize) -> Self {
            let permits = if permits > MAX_PERMITS { MAX_PERMITS } else { permits };
            Self {
                state: AtomicUsize::new(permits << SHIFT),
                total: AtomicUsize::new(permits),
                queue: Mutex::new(Queue::new()),
            }
        }
    }

    /// Permits that an acquire could take right now without waiting.
    pub(crate) fn available_permits(&self) -> usize {
        let state = self.state.load(Ordering::Acquire);
        // While queued, permits in the atomic are in flight to the queue.
        if state & QUEUED != 0 {
            0
        } else {
            state >> SHIFT
        }
    }

    /// Acquires queued right now (threads and futures).
    pub(crate) fn waiters(&self) -> usize {
        self.queue.lock().len()
    }

    /// Permits the semaphore manages, held or not.
    pub(crate) fn total_permits(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// The uncontended path: one CAS, and only while no one is queued.
    #[inline]
    fn try_acquire_fast(&self, n: usize, mode: Mode) -> bool {
        let mut state = if mode == Mode::Whole {
            // Uncontended, a whole-semaphore request finds exactly `n` free;
            // a wrong guess costs a failed CAS, which returns the real state.
            n << SHIFT
        } else {
            self.state.load(Ordering::Relaxed)
        };
        loop {
            if state & QUEUED != 0 || (state >> SHIFT) < n {
                return false;
            }
            match self.state.compare_exchange_weak(
                state,
                state - (n << SHIFT),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => state = actual,
            }
        }
    }

    /// Takes `n` permits if that needs no waiting.
    ///
    /// With [`Mode::Checked`], a request that can never be met fails with
    /// `TooMany` rather than `WouldBlock`.
    #[inline]
    pub(crate) fn try_acquire(&self, n: usize, mode: Mode) -> Result<(), AcquireError> {
        if n == 0 || self.try_acquire_fast(n, mode) {
            return Ok(());
        }
        let total = self.total_permits();
        if mode.check_total() && n > total {
            return Err(AcquireError::TooMany {
                requested: n,
                total,
            });
        }
        Err(AcquireError::WouldBlock)
    }

    /// The contended path, under the queue lock: take the permits if they
    /// are there now, else enqueue with whatever the atomic has (draining it
    /// and setting `QUEUED`). `Ok(None)` means acquired, `Ok(Some(idx))`
    /// means queued in slot `idx`.
    fn acquire_or_enqueue(
        &self,
        queue: &mut Queue,
        needed: usize,
        check_total: bool,
        notify: impl FnOnce() -> Notify,
    ) -> Result<Option<usize>, AcquireError> {
        if check_total {
            let total = self.total_permits();
            if needed > total {
                return Err(AcquireError::TooMany {
                    requested: needed,
                    total,
                });
            }
        }
        let mut state = self.state.load(Ordering::Acquire);
        let assigned = loop {
            if state & QUEUED != 0 {
                // Others wait already: queue behind them. Permits in the
                // atomic now are in flight; their releaser will sweep them.
                break 0;
            }
            let available = state >> SHIFT;
            let (next, outcome) = if available >= needed {
                (state - (needed << SHIFT), None)
            } else {
                (QUEUED, Some(available))
            };
            match self
                .state
                .compare_exchange(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => match outcome {
                    None => return Ok(None),
                    Some(available) => break available,
                },
                Err(actual) => state = actual,
            }
        };
        debug_assert!(assigned < needed);
        let idx = queue.push_back(Slot::Waiting {
            needed,
            assigned,
            check_total,
            notify: notify(),
        });
        Ok(Some(idx))
    }

    /// Gives `n` permits back: one `fetch_add`, plus a sweep into the queue
    /// if anyone was waiting.
    #[inline]
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        // Cannot overflow: permits in the atomic never exceed the total.
        let prev = self.state.fetch_add(n << SHIFT, Ordering::Release);
        if prev & QUEUED != 0 {
            self.release_slow();
        }
    }

    /// The releaser saw waiters: move whatever sits in the atomic (this
    /// release, perhaps others in flight) to the queue. If another sweep or
    /// an emptied queue got there first, there is nothing left to do.
    #[cold]
    fn release_slow(&self) {
        let queue = self.queue.lock();
        let swept = self.sweep();
        let mut wakes = WakeList::new();
        self.release_locked(queue, swept, &mut wakes);
    }

    /// Under the queue lock: takes the permits parked in the atomic while
    /// `QUEUED` is set. Returns how many.
    fn sweep(&self) -> usize {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & QUEUED == 0 || state >> SHIFT == 0 {
                return 0;
            }
            match self.state.compare_exchange_weak(
                state,
                QUEUED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return state >> SHIFT,
                Err(actual) => state = actual,
            }
        }
    }

    /// Hands `n` permits to the waiters at the head, in FIFO order; the
    /// leftover goes to the atomic once the queue is empty (which also
    /// clears `QUEUED`). Consumes the lock and delivers all wake-ups in
    /// `wakes` after releasing it.
    ///
    /// Called with `n == 0` after a waiter leaves the queue, to restore the
    /// flag invariant.
    fn release_locked<'a>(
        &'a self,
        mut queue: MutexGuard<'a, Queue>,
        mut n: usize,
        wakes: &mut WakeList,
    ) {
        loop {
            while n > 0 && !queue.is_empty() && !wakes.is_full() {
                let head = queue.head;
                let Slot::Waiting {
                    needed, assigned, ..
                } = queue.slot_mut(head)
                else {
                    debug_assert!(false, "a queued slot is not waiting");
                    break;
                };
                let take = n.min(*needed - *assigned);
                *assigned += take;
                n -= take;
                if *assigned < *needed {
                    // The head keeps its partial share; everyone else waits behind it.
                    break;
                }
                queue.unlink(head);
                if let Slot::Waiting { notify, .. } =
                    std::mem::replace(queue.slot_mut(head), Slot::Granted)
                {
                    wakes.push(notify);
                }
            }
            if queue.is_empty() {
                self.store_leftover(n);
                n = 0;
            }
            if n > 0 && wakes.is_full() {
                // More waiters may be satisfied: deliver this batch outside
                // the lock, then continue with the permits still in hand.
                drop(queue);
                wakes.wake_all();
                queue = self.queue.lock();
                continue;
            }
            break;
        }
        drop(queue);
        wakes.wake_all();
    }

    /// With the queue lock held and the queue empty: clear `QUEUED` and add
    /// `n` to the atomic.
    fn store_leftover(&self, n: usize) {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let next = ((state >> SHIFT) + n) << SHIFT;
            if next == state {
                return;
            }
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
    }

    /// Waiter `idx` (which wanted `needed`) gives up: unlink it and return
    /// whatever it holds, re-running the hand-off so no wake-up is lost.
    fn cancel_locked<'a>(&'a self, mut queue: MutexGuard<'a, Queue>, idx: usize, needed: usize) {
        let give_back = match std::mem::replace(queue.slot_mut(idx), Slot::Free) {
            Slot::Waiting { assigned, .. } => {
                queue.unlink(idx);
                assigned
            }
            // Granted between the last poll and now: the permits are ours to return.
            Slot::Granted => needed,
            Slot::Failed(_) | Slot::Free => 0,
        };
        queue.free(idx);
        let mut wakes = WakeList::new();
        self.release_locked(queue, give_back, &mut wakes);
    }

    /// The outcome of queued waiter `idx`, freeing its slot once settled.
    fn poll_slot(queue: &mut Queue, idx: usize) -> Option<Result<(), AcquireError>> {
        let outcome = match queue.slot_mut(idx) {
            Slot::Waiting { .. } => return None,
            Slot::Granted => Ok(()),
            Slot::Failed(err) => Err(*err),
            Slot::Free => {
                debug_assert!(false, "a waiter's slot was freed under it");
                Err(AcquireError::WouldBlock)
            }
        };
        queue.free(idx);
        Some(outcome)
    }

    /// Adds `n` permits to the total (capped at [`MAX_PERMITS`]) and makes
    /// them available; returns how many were added.
    pub(crate) fn add_permits(&self, n: usize) -> usize {
        let mut total = self.total.load(Ordering::Relaxed);
        let added = loop {
            let added = n.min(MAX_PERMITS - total);
            match self.total.compare_exchange_weak(
                total,
                total + added,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break added,
                Err(actual) => total = actual,
            }
        };
        self.release(added);
        added
    }

    /// `n` held permits leave the semaphore for good. Waiters that checked
    /// the total and now want more than is left fail with `TooMany` instead
    /// of waiting forever.
    pub(crate) fn forget(&self, n: usize) {
        if n == 0 {
            return;
        }
        // Under the lock, so an enqueue either sees the new total or is seen
        // by the scan below.
        let mut queue = self.queue.lock();
        let total = self.total.fetch_sub(n, Ordering::AcqRel) - n;
        let mut wakes = WakeList::new();
        let mut give_back = 0;
        let mut at = queue.head;
        while at != NIL {
            let next = queue.nodes[at].next;
            if let Slot::Waiting {
                needed,
                check_total: true,
                ..
            } = *queue.slot_mut(at)
                && needed > total
            {
                queue.unlink(at);
                let failed = Slot::Failed(AcquireError::TooMany {
                    requested: needed,
                    total,
                });
                if let Slot::Waiting {
                    assigned, notify, ..
                } = std::mem::replace(queue.slot_mut(at), failed)
                {
                    give_back += assigned;
                    if wakes.is_full() {
                        // Rare (many doomed waiters): wake those inline.
                        notify.notify();
                    } else {
                        wakes.push(notify);
                    }
                }
            }
            at = next;
        }
        self.release_locked(queue, give_back, &mut wakes);
    }

    /// Waits on the calling thread for `n` permits, until `deadline` if any.
    pub(crate) fn acquire_blocking(
        &self,
        n: usize,
        mode: Mode,
        deadline: Option<Instant>,
    ) -> Result<(), AcquireError> {
        if n == 0 || self.try_acquire_fast(n, mode) {
            return Ok(());
        }
        let mut queue = self.queue.lock();
        let Some(idx) = self.acquire_or_enqueue(&mut queue, n, mode.check_total(), || {
            Notify::Thread(thread::current())
        })?
        else {
            return Ok(());
        };
        drop(queue);
        loop {
            match deadline {
                None => thread::park(),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    thread::park_timeout(deadline - now);
                }
            }
            // Wake-ups may be spurious: the slot is the truth.
            if let Some(outcome) = Self::poll_slot(&mut self.queue.lock(), idx) {
                return outcome;
            }
        }
        let mut queue = self.queue.lock();
        if let Some(outcome) = Self::poll_slot(&mut queue, idx) {
            return outcome;
        }
        self.cancel_locked(queue, idx, n);
        Err(AcquireError::Timeout)
    }

    /// A future that resolves once `n` permits are held by its caller.
    /// Dropping it before then gives back anything assigned to it.
    pub(crate) fn acquire(&self, n: usize, mode: Mode) -> Acquire<'_> {
        Acquire {
            sem: self,
            needed: n,
            mode,
            state: AcquireState::Idle,
        }
    }

    #[cfg(all(test, not(loom)))]
    fn queue_len(&self) -> usize {
        self.queue.lock().len()
    }
}

impl fmt::Debug for RawSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSemaphore")
            .field("available", &self.available_permits())
            .field("total", &self.total_permits())
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AcquireState {
    /// Not polled yet.
    Idle,
    /// Waiting in slot `idx`.
    Queued(usize),
    /// Resolved; the caller owns the outcome.
    Done,
}

/// Future of [`RawSemaphore::acquire`]. `Unpin`: it holds only a reference
/// and a slot index, never a self-reference.
#[must_use = "futures do nothing unless polled"]
pub(crate) struct Acquire<'a> {
    sem: &'a RawSemaphore,
    needed: usize,
    mode: Mode,
    state: AcquireState,
}

impl Future for Acquire<'_> {
    type Output = Result<(), AcquireError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match this.state {
            AcquireState::Idle => {
                if this.needed == 0 || this.sem.try_acquire_fast(this.needed, this.mode) {
                    this.state = AcquireState::Done;
                    return Poll::Ready(Ok(()));
                }
                this.poll_enqueue(cx)
            }
            AcquireState::Queued(idx) => this.poll_queued(idx, cx),
            // Re-polling a finished future must never grant a second time.
            AcquireState::Done => Poll::Pending,
        }
    }
}

impl<'a> Acquire<'a> {
    /// Maps the outcome to `f(outcome, held)` (the guard), without an
    /// `async` block's extra state machine on the fast path. `entry` is the
    /// lock class's async acquisition: checked at the first poll against
    /// the polling task, registered as a wait while pending.
    #[inline]
    pub(crate) fn map<F, R>(self, entry: TaskEntry, f: F) -> MapAcquire<'a, F>
    where
        F: FnOnce(Result<(), AcquireError>, HeldToken) -> R,
    {
        MapAcquire {
            acquire: self,
            entry,
            f: Some(f),
        }
    }
}

/// Future of [`Acquire::map`].
#[must_use = "futures do nothing unless polled"]
pub(crate) struct MapAcquire<'a, F> {
    acquire: Acquire<'a>,
    entry: TaskEntry,
    f: Option<F>,
}

// `F` is only ever moved out by value, never pinned.
impl<F> Unpin for MapAcquire<'_, F> {}

impl<F, R> Future for MapAcquire<'_, F>
where
    F: FnOnce(Result<(), AcquireError>, HeldToken) -> R,
{
    type Output = R;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        let this = &mut *self;
        this.entry.poll(cx);
        match Pin::new(&mut this.acquire).poll(cx) {
            Poll::Ready(outcome) => match this.f.take() {
                Some(f) => Poll::Ready(f(outcome, this.entry.finish())),
                // Polled after completion: never grant twice.
                None => Poll::Pending,
            },
            Poll::Pending => {
                this.entry.pending();
                Poll::Pending
            }
        }
    }
}

impl Acquire<'_> {
    #[cold]
    fn poll_enqueue(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AcquireError>> {
        let mut queue = self.sem.queue.lock();
        match self
            .sem
            .acquire_or_enqueue(&mut queue, self.needed, self.mode.check_total(), || {
                Notify::Waker(cx.waker().clone())
            }) {
            Ok(Some(idx)) => {
                self.state = AcquireState::Queued(idx);
                Poll::Pending
            }
            Ok(None) => {
                self.state = AcquireState::Done;
                Poll::Ready(Ok(()))
            }
            Err(err) => {
                self.state = AcquireState::Done;
                Poll::Ready(Err(err))
            }
        }
    }

    #[cold]
    fn cancel(&mut self, idx: usize) {
        self.sem
            .cancel_locked(self.sem.queue.lock(), idx, self.needed);
    }

    fn poll_queued(&mut self, idx: usize, cx: &mut Context<'_>) -> Poll<Result<(), AcquireError>> {
        let mut queue = self.sem.queue.lock();
        if let Some(outcome) = RawSemaphore::poll_slot(&mut queue, idx) {
            self.state = AcquireState::Done;
            return Poll::Ready(outcome);
        }
        if let Slot::Waiting {
            notify: Notify::Waker(waker),
            ..
        } = queue.slot_mut(idx)
            && !waker.will_wake(cx.waker())
        {
            // The future moved to another task: wake that one instead.
            waker.clone_from(cx.waker());
        }
        Poll::Pending
    }
}

impl Drop for Acquire<'_> {
    // Inline so the finished fast path pays one branch, not a call.
    #[inline]
    fn drop(&mut self) {
        if let AcquireState::Queued(idx) = self.state {
            self.cancel(idx);
        }
    }
}

impl fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("needed", &self.needed)
            .field("state", &self.state)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;
    use std::task::Wake;
    use std::time::Duration;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct CountingWaker(StdAtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker::default());
        (counter.clone(), Waker::from(counter))
    }

    fn poll(fut: &mut Acquire<'_>, waker: &Waker) -> Poll<Result<(), AcquireError>> {
        Pin::new(fut).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn fast_path_takes_and_returns_without_queueing() {
        let sem = RawSemaphore::new(3);
        assert!(sem.try_acquire(2, Mode::Checked).is_ok());
        assert_eq!(sem.available_permits(), 1);
        assert_eq!(
            sem.try_acquire(2, Mode::Checked),
            Err(AcquireError::WouldBlock)
        );
        assert_eq!(
            sem.try_acquire(4, Mode::Checked),
            Err(AcquireError::TooMany {
                requested: 4,
                total: 3
            })
        );
        sem.release(2);
        assert_eq!(sem.available_permits(), 3);
        assert_eq!(sem.queue_len(), 0);
    }

    #[test]
    fn queued_waiter_blocks_fast_path_barging() {
        let sem = RawSemaphore::new(2);
        sem.try_acquire(2, Mode::Checked).unwrap();
        let (_, waker) = counting();
        let mut big = sem.acquire(2, Mode::Checked);
        assert!(poll(&mut big, &waker).is_pending());
        sem.release(1);
        // One permit is free in total, but it is assigned to the head waiter,
        // so a small request must not take it.
        assert_eq!(sem.available_permits(), 0);
        assert_eq!(
            sem.try_acquire(1, Mode::Checked),
            Err(AcquireError::WouldBlock)
        );
        sem.release(1);
        assert!(poll(&mut big, &waker).is_ready());
        assert_eq!(sem.queue_len(), 0);
        sem.release(2);
        assert_eq!(sem.available_permits(), 2);
    }

    #[test]
    fn release_hands_off_in_fifo_order_and_wakes() {
        let sem = RawSemaphore::new(1);
        sem.try_acquire(1, Mode::Checked).unwrap();
        let wakers: Vec<_> = (0..3).map(|_| counting()).collect();
        let mut futs: Vec<_> = (0..3).map(|_| sem.acquire(1, Mode::Checked)).collect();
        for (fut, (_, waker)) in futs.iter_mut().zip(&wakers) {
            assert!(poll(fut, waker).is_pending());
        }
        for i in 0..3 {
            sem.release(1);
            assert_eq!(wakers[i].0.0.load(std::sync::atomic::Ordering::SeqCst), 1);
            // Later waiters are neither woken nor granted.
            for j in i + 1..3 {
                assert_eq!(wakers[j].0.0.load(std::sync::atomic::Ordering::SeqCst), 0);
                assert!(poll(&mut futs[j], &wakers[j].1).is_pending());
            }
            assert!(poll(&mut futs[i], &wakers[i].1).is_ready());
        }
        sem.release(1);
        assert_eq!(sem.available_permits(), 1);
    }

    #[test]
    fn cancelled_head_passes_partial_permits_on() {
        let sem = RawSemaphore::new(3);
        sem.try_acquire(3, Mode::Checked).unwrap();
        let (_, w) = counting();
        let mut big = sem.acquire(3, Mode::Checked);
        let mut small = sem.acquire(1, Mode::Checked);
        assert!(poll(&mut big, &w).is_pending());
        assert!(poll(&mut small, &w).is_pending());
        sem.release(2); // both go to `big`, partially
        assert!(poll(&mut small, &w).is_pending());
        drop(big);
        // `big`'s two assigned permits reach `small`, the rest the atomic.
        assert!(poll(&mut small, &w).is_ready());
        assert_eq!(sem.available_permits(), 1);
        sem.release(1);
        sem.release(1);
        assert_eq!(sem.available_permits(), 3);
        assert_eq!(sem.queue_len(), 0);
    }

    #[test]
    fn dropping_a_granted_but_unobserved_future_returns_its_permits() {
        let sem = RawSemaphore::new(1);
        sem.try_acquire(1, Mode::Checked).unwrap();
        let (_, w) = counting();
        let mut fut = sem.acquire(1, Mode::Checked);
        assert!(poll(&mut fut, &w).is_pending());
        sem.release(1);
        drop(fut);
        assert_eq!(sem.available_permits(), 1);
    }

    #[test]
    fn forget_fails_waiters_that_can_no_longer_succeed() {
        let sem = RawSemaphore::new(2);
        sem.try_acquire(2, Mode::Checked).unwrap();
        let (_, w) = counting();
        let mut two = sem.acquire(2, Mode::Checked);
        let mut one = sem.acquire(1, Mode::Checked);
        assert!(poll(&mut two, &w).is_pending());
        assert!(poll(&mut one, &w).is_pending());
        sem.forget(1);
        assert_eq!(
            poll(&mut two, &w),
            Poll::Ready(Err(AcquireError::TooMany {
                requested: 2,
                total: 1
            }))
        );
        sem.release(1);
        assert!(poll(&mut one, &w).is_ready());
        sem.release(1);
        assert_eq!(sem.available_permits(), 1);
        assert_eq!(sem.total_permits(), 1);
    }

    #[test]
    fn blocking_waiter_is_unparked_by_release() {
        let sem = Arc::new(RawSemaphore::new(1));
        sem.try_acquire(1, Mode::Checked).unwrap();
        let t = {
            let sem = sem.clone();
            std::thread::spawn(move || sem.acquire_blocking(1, Mode::Checked, None))
        };
        while sem.queue_len() == 0 {
            std::thread::yield_now();
        }
        sem.release(1);
        assert_eq!(t.join().unwrap(), Ok(()));
        assert_eq!(sem.available_permits(), 0);
        sem.release(1);
        assert_eq!(sem.available_permits(), 1);
    }

    #[test]
    fn blocking_timeout_leaves_no_waiter_behind() {
        let sem = RawSemaphore::new(1);
        sem.try_acquire(1, Mode::Checked).unwrap();
        let deadline = Instant::now() + Duration::from_millis(5);
        assert_eq!(
            sem.acquire_blocking(1, Mode::Checked, Some(deadline)),
            Err(AcquireError::Timeout)
        );
        assert_eq!(sem.queue_len(), 0);
        sem.release(1);
        assert_eq!(sem.available_permits(), 1);
    }

    #[test]
    fn many_waiters_are_woken_across_wake_batches() {
        let sem = RawSemaphore::new(0);
        let wakers: Vec<_> = (0..SHRINK_ABOVE + WAKE_BATCH + 1)
            .map(|_| counting())
            .collect();
        let mut futs: Vec<_> = wakers
            .iter()
            .map(|_| sem.acquire(1, Mode::Unchecked))
            .collect();
        for (fut, (_, w)) in futs.iter_mut().zip(&wakers) {
            assert!(poll(fut, w).is_pending());
        }
        assert_eq!(sem.add_permits(futs.len() + 2), futs.len() + 2);
        for (fut, (count, w)) in futs.iter_mut().zip(&wakers) {
            assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
            assert!(poll(fut, w).is_ready());
        }
        assert_eq!(sem.available_permits(), 2);
        // The burst's slab was given back.
        assert_eq!(sem.queue.lock().nodes.len(), 0);
    }

    #[test]
    fn add_permits_saturates_at_max() {
        let sem = RawSemaphore::new(usize::MAX);
        assert_eq!(sem.total_permits(), MAX_PERMITS);
        assert_eq!(sem.add_permits(10), 0);
        assert_eq!(sem.available_permits(), MAX_PERMITS);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize as LoomUsize;

    #[test]
    fn loom_mutual_exclusion_and_permits_restored() {
        loom::model(|| {
            let sem = Arc::new(RawSemaphore::new(1));
            let inside = Arc::new(LoomUsize::new(0));
            let worker = |sem: Arc<RawSemaphore>, inside: Arc<LoomUsize>| {
                move || {
                    sem.acquire_blocking(1, Mode::Checked, None).unwrap();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    sem.release(1);
                }
            };
            let t = loom::thread::spawn(worker(sem.clone(), inside.clone()));
            worker(sem.clone(), inside.clone())();
            t.join().unwrap();
            assert_eq!(sem.available_permits(), 1);
        });
    }

    #[test]
    fn loom_cancel_races_release_without_losing_permits() {
        loom::model(|| {
            let sem = Arc::new(RawSemaphore::new(1));
            sem.try_acquire(1, Mode::Checked).unwrap();
            let releaser = {
                let sem = sem.clone();
                loom::thread::spawn(move || sem.release(1))
            };
            {
                let waker = std::task::Waker::noop();
                let mut fut = sem.acquire(1, Mode::Checked);
                if Pin::new(&mut fut)
                    .poll(&mut Context::from_waker(waker))
                    .is_ready()
                {
                    // Got it on the first poll: the raw permit is ours to give back.
                    sem.release(1);
                }
                // Otherwise dropped while queued, concurrently with the release
                // (before it, after it, or while it hands the permit over).
            }
            releaser.join().unwrap();
            assert_eq!(sem.available_permits(), 1);
            assert!(sem.try_acquire(1, Mode::Checked).is_ok());
        });
    }

    #[test]
    fn loom_hand_off_to_queued_waiter_is_never_lost() {
        loom::model(|| {
            let sem = Arc::new(RawSemaphore::new(1));
            sem.try_acquire(1, Mode::Checked).unwrap();
            let releaser = {
                let sem = sem.clone();
                loom::thread::spawn(move || sem.release(1))
            };
            // Blocks until woken: loom reports a deadlock if the wake-up is lost.
            loom::future::block_on(sem.acquire(1, Mode::Checked)).unwrap();
            releaser.join().unwrap();
            assert_eq!(sem.available_permits(), 0);
            sem.release(1);
            assert_eq!(sem.available_permits(), 1);
        });
    }

    #[test]
    fn loom_concurrent_releases_fill_a_multi_permit_waiter() {
        // Two releases race each other and the waiter's enqueue: one may
        // sweep the other's in-flight permit; the partial hand-off must
        // still complete the request.
        loom::model(|| {
            let sem = Arc::new(RawSemaphore::new(2));
            sem.try_acquire(2, Mode::Checked).unwrap();
            let releasers: Vec<_> = (0..2)
                .map(|_| {
                    let sem = sem.clone();
                    loom::thread::spawn(move || sem.release(1))
                })
                .collect();
            loom::future::block_on(sem.acquire(2, Mode::Checked)).unwrap();
            for r in releasers {
                r.join().unwrap();
            }
            assert_eq!(sem.available_permits(), 0);
            sem.release(2);
            assert_eq!(sem.available_permits(), 2);
        });
    }

    #[test]
    fn loom_cancelled_head_does_not_strand_the_next_waiter() {
        // The head waiter is dropped while a release is in flight; the
        // waiter behind it (a blocking thread) must still get the permit.
        loom::model(|| {
            let sem = Arc::new(RawSemaphore::new(1));
            sem.try_acquire(1, Mode::Checked).unwrap();
            let mut head = sem.acquire(1, Mode::Checked);
            let waker = std::task::Waker::noop();
            assert!(
                Pin::new(&mut head)
                    .poll(&mut Context::from_waker(waker))
                    .is_pending()
            );
            let next = {
                let sem = sem.clone();
                loom::thread::spawn(move || {
                    sem.acquire_blocking(1, Mode::Checked, None).unwrap();
                    sem.release(1);
                })
            };
            let releaser = {
                let sem = sem.clone();
                loom::thread::spawn(move || sem.release(1))
            };
            drop(head);
            releaser.join().unwrap();
            next.join().unwrap();
            assert_eq!(sem.available_permits(), 1);
        });
    }

    #[test]
    fn loom_blocking_waiter_and_async_waiter_both_served() {
        loom::model(|| {
            let sem = Arc::new(RawSemaphore::new(1));
            let t = {
                let sem = sem.clone();
                loom::thread::spawn(move || {
                    sem.acquire_blocking(1, Mode::Checked, None).unwrap();
                    sem.release(1);
                })
            };
            loom::future::block_on(sem.acquire(1, Mode::Checked)).unwrap();
            sem.release(1);
            t.join().unwrap();
            assert_eq!(sem.available_permits(), 1);
        });
    }
}
