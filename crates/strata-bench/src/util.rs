//! Helpers shared by groups: splitting work across threads, timing threads
//! started together, and a minimal executor for uncontended async cases.

use std::future::Future;
use std::pin::pin;
use std::sync::Barrier;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The share of `total` operations that worker `i` of `parts` performs; the
/// shares add up to exactly `total` (the first `total % parts` get one more).
pub fn split_iters(total: u64, parts: usize, i: usize) -> u64 {
    let parts = parts as u64;
    let i = i as u64;
    total / parts + u64::from(i < total % parts)
}

/// Runs `work(i, n)` on `threads` scoped threads, worker `i` doing
/// `n = split_iters(iters, threads, i)` operations, all released together by
/// a [`Barrier`], and returns the wall time from the first worker starting
/// its work to the last one finishing. Thread spawn and exit are not timed.
///
/// The workers take the timestamps themselves: on an oversubscribed machine
/// the spawning thread may not run again until the workers are done, so it
/// cannot be the one holding the stopwatch.
///
/// `work` may borrow from the caller (scoped threads), so shared state needs
/// no `Arc`.
pub fn timed_threads(threads: usize, iters: u64, work: impl Fn(usize, u64) + Sync) -> Duration {
    assert!(threads > 0);
    let start = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (start, work) = (&start, &work);
                s.spawn(move || {
                    let n = split_iters(iters, threads, i);
                    start.wait();
                    let t0 = Instant::now();
                    work(i, n);
                    (t0, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench worker panicked"))
            .collect()
    });
    let first = spans.iter().map(|s| s.0).min().expect("threads > 0");
    let last = spans.iter().map(|s| s.1).max().expect("threads > 0");
    last - first
}

/// Drives `fut` to completion on the current thread by polling it with a
/// no-op waker, spinning while it is pending.
///
/// Meant for futures that are ready at once (uncontended locks): it costs one
/// `poll` per future and nothing else. A future that waits on another thread
/// still completes (busy polling), one that waits on a timer or a reactor
/// never does.
pub fn block_on_noop<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn split_adds_up() {
        for total in [0, 1, 7, 100, 101] {
            for parts in 1..9 {
                let sum: u64 = (0..parts).map(|i| split_iters(total, parts, i)).sum();
                assert_eq!(sum, total);
            }
        }
    }

    #[test]
    fn timed_threads_runs_every_op() {
        let count = AtomicU64::new(0);
        timed_threads(3, 1000, |_, n| {
            count.fetch_add(n, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 1000);
    }

    #[test]
    fn block_on_noop_ready() {
        assert_eq!(block_on_noop(async { 7 }), 7);
    }
}
