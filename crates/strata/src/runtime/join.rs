//! `join`: the fork-join primitive.

use super::{WorkerThread, with_current};

/// Runs `a` and `b`, potentially in parallel, and returns both results.
///
/// On a worker thread one closure is offered to the pool while the caller
/// runs the other; if nobody took it, the caller runs it right after (which
/// runs first is unspecified). Until another worker is idle and asks for
/// work, offering is a couple of plain stores: no atomics, no allocation, no
/// fence. Called outside any pool, `join` enters
/// the current runtime (the global one by default) and blocks until both
/// are done.
///
/// If either closure panics, the other one still runs to completion, and
/// then the panic is re-raised (as in rayon); if both panic, one of the
/// two panics is re-raised (which one is unspecified) and the other is
/// dropped.
///
/// ```
/// fn sum(v: &[u64]) -> u64 {
///     if v.len() <= 1024 {
///         return v.iter().sum();
///     }
///     let (l, r) = v.split_at(v.len() / 2);
///     let (a, b) = strata::join(|| sum(l), || sum(r));
///     a + b
/// }
/// let v: Vec<u64> = (1..=100_000).collect();
/// assert_eq!(sum(&v), 5_000_050_000);
/// ```
#[inline]
pub fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    // SAFETY: a non-null current worker is live for this whole call.
    match unsafe { WorkerThread::current().as_ref() } {
        Some(w) => w.join(a, b),
        None => join_cold(a, b),
    }
}

#[cold]
fn join_cold<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    with_current(|reg| reg.in_worker_cold(|| join(a, b)))
}
