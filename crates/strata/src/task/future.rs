//! `Future<T>`: the value of a scope child, forced when needed.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc as StdArc;
use std::task::{Context, Poll, Waker};

use crate::loom::sync::Mutex;
use crate::runtime::{Latch, WorkerLatch, WorkerThread};

/// Panic payload of a [`Future::force`] whose child panicked: the scope
/// replaces it with the child's own panic when it re-raises.
pub(crate) struct ChildPanicked;

/// Panic payload of a [`Future::force`] whose child was dropped without
/// running (its runtime shut down with the child still queued): the scope
/// turns it into `Err(TaskError::Cancelled)`.
pub(crate) struct ChildDropped;

enum Value<T> {
    Pending,
    Ready(T),
    Panicked,
    Dropped,
    Taken,
}

pub(crate) struct FutureSlot<T> {
    latch: WorkerLatch,
    value: Mutex<Value<T>>,
    waker: Mutex<Option<Waker>>,
}

impl<T> FutureSlot<T> {
    pub(crate) fn new(sleep: &crate::runtime::Sleep) -> Self {
        Self {
            latch: WorkerLatch::new(sleep),
            value: Mutex::new(Value::Pending),
            waker: Mutex::new(None),
        }
    }

    fn fill(&self, v: Value<T>) {
        *self.value.lock() = v;
        // SAFETY: the slot is kept alive by the Arc this caller holds.
        unsafe { WorkerLatch::set(&self.latch) };
        let w = self.waker.lock().take();
        if let Some(w) = w {
            w.wake();
        }
    }

    fn take(&self) -> T {
        match std::mem::replace(&mut *self.value.lock(), Value::Taken) {
            Value::Ready(v) => v,
            Value::Panicked => std::panic::resume_unwind(Box::new(ChildPanicked)),
            Value::Dropped => std::panic::resume_unwind(Box::new(ChildDropped)),
            Value::Pending | Value::Taken => panic!("strata task::Future value taken twice"),
        }
    }
}

/// The child's side of a [`FutureSlot`]: fills it exactly once, with the
/// value, with "panicked", or — if the child is dropped without running —
/// with "dropped", so that a `force` never waits for a child that is gone.
pub(crate) struct Filler<T>(Option<StdArc<FutureSlot<T>>>);

impl<T> Filler<T> {
    pub(crate) fn new(slot: StdArc<FutureSlot<T>>) -> Self {
        Self(Some(slot))
    }

    /// `None`: the child panicked.
    pub(crate) fn fill(mut self, v: Option<T>) {
        if let Some(slot) = self.0.take() {
            slot.fill(v.map_or(Value::Panicked, Value::Ready));
        }
    }
}

impl<T> Drop for Filler<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            slot.fill(Value::Dropped);
        }
    }
}

/// The eventual value of a child started with
/// [`Scope::future`](super::Scope::future).
///
/// [`force`](Future::force) blocks until the value is there (on a worker,
/// running other jobs meanwhile); `.await` waits asynchronously. If the
/// child panicked, forcing re-raises (the scope reports the child's panic).
/// If the child never ran because its runtime shut down, forcing unwinds
/// the scope body and the scope returns `Err(TaskError::Cancelled)`.
/// Dropping it does not stop the child: the scope still waits for it.
///
/// ```
/// let total = strata::task::scope(|s| {
///     let parts: Vec<_> = (0..4u64).map(|i| s.future(move |_| i * 10)).collect();
///     parts.into_iter().map(|f| f.force()).sum::<u64>()
/// })
/// .unwrap();
/// assert_eq!(total, 60);
/// ```
#[must_use = "a future child's value is only useful when forced"]
pub struct Future<'scope, T> {
    slot: StdArc<FutureSlot<T>>,
    _scope: PhantomData<&'scope ()>,
}

impl<'scope, T> Future<'scope, T> {
    pub(crate) fn new(slot: StdArc<FutureSlot<T>>) -> Self {
        Self {
            slot,
            _scope: PhantomData,
        }
    }

    /// Waits for the value and returns it.
    ///
    /// ```
    /// let v = strata::task::scope(|s| s.future(|_| 21).force() * 2).unwrap();
    /// assert_eq!(v, 42);
    /// ```
    pub fn force(self) -> T {
        if !self.slot.latch.probe() {
            // SAFETY: a non-null current worker is live for this call.
            match unsafe { WorkerThread::current().as_ref() } {
                // The latch wakes its waiter by worker index in the scope's
                // pool: only a worker of that pool may register with it.
                Some(w) if self.slot.latch.wakes_in(&w.registry().sleep) => {
                    w.wait_until(&self.slot.latch)
                }
                // Outside any pool, or on a worker of another runtime: wait
                // through the waker (a foreign worker keeps running its own
                // pool's jobs meanwhile).
                _ => return crate::runtime::block_on(self),
            }
        }
        self.slot.take()
    }

    /// Whether the value is ready (forcing will not wait).
    ///
    /// ```
    /// strata::task::scope(|s| {
    ///     let f = s.future(|_| 1);
    ///     let _ = f.is_ready(); // may or may not be done yet
    ///     assert_eq!(f.force(), 1);
    /// })
    /// .unwrap();
    /// ```
    pub fn is_ready(&self) -> bool {
        self.slot.latch.probe()
    }
}

impl<T> std::future::Future for Future<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if !self.slot.latch.probe() {
            *self.slot.waker.lock() = Some(cx.waker().clone());
            // Re-checked after registering: `fill` sets the latch before
            // taking the waker.
            if !self.slot.latch.probe() {
                return Poll::Pending;
            }
        }
        Poll::Ready(self.slot.take())
    }
}

impl<T> fmt::Debug for Future<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Future")
            .field("ready", &self.is_ready())
            .finish()
    }
}
