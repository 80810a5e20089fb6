//! Integration tests for the async side of L1: `Semaphore`, `AsyncMutex`,
//! `AsyncRwLock`.
//!
//! Every async scenario is written once, against the small [`Rt`]
//! abstraction, and run under both tokio's multi-thread runtime and a
//! two-thread smol executor. Tests assert behaviour (counts, orders, what is
//! still usable afterwards), never timing.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::sync::{AcquireError, AsyncMutex, AsyncRwLock, LockTimeout, Semaphore, WouldBlock};

// ---------------------------------------------------------------- harness

/// Which runtime a scenario runs on; the scenario only needs `spawn`.
#[derive(Clone, Copy, Debug)]
enum Rt {
    Tokio,
    Smol,
}

/// A spawned task's output, whichever runtime spawned it.
struct Task<T>(Pin<Box<dyn Future<Output = T> + Send>>);

impl<T> Future for Task<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.0.as_mut().poll(cx)
    }
}

static SMOL: LazyLock<&'static smol::Executor<'static>> = LazyLock::new(|| {
    let ex: &'static smol::Executor<'static> = Box::leak(Box::new(smol::Executor::new()));
    for _ in 0..2 {
        std::thread::spawn(move || smol::block_on(ex.run(smol::future::pending::<()>())));
    }
    ex
});

impl Rt {
    fn spawn<F>(self, fut: F) -> Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Rt::Tokio => {
                let handle = tokio::spawn(fut);
                Task(Box::pin(
                    async move { handle.await.expect("task panicked") },
                ))
            }
            Rt::Smol => Task(Box::pin(SMOL.spawn(fut))),
        }
    }
}

/// Runs `scenario` to completion under tokio (2 workers), then under smol.
fn on_both<S, F>(scenario: S)
where
    S: Fn(Rt) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    tokio_rt.block_on(scenario(Rt::Tokio));
    drop(tokio_rt);
    smol::block_on(SMOL.run(scenario(Rt::Smol)));
}

/// Gives other tasks a turn; runtime-agnostic.
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// Polls `fut` once with a no-op waker.
fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// Runs `f` on a thread and fails (instead of hanging) if it does not
/// return within a generous bound: for "returns at once" properties.
fn returns_without_waiting<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the call waited instead of returning")
}

// -------------------------------------------------------------- semaphore

#[test]
fn semaphore_never_has_more_holders_than_permits_threads_and_tasks_mixed() {
    on_both(|rt| async move {
        const PERMITS: usize = 3;
        let sem = Arc::new(Semaphore::new(PERMITS));
        let holders = Arc::new(AtomicUsize::new(0));
        let entries = Arc::new(AtomicUsize::new(0));
        let enter = |holders: &AtomicUsize, entries: &AtomicUsize, k: usize| {
            let now = holders.fetch_add(k, Ordering::SeqCst) + k;
            assert!(now <= PERMITS, "{now} holders of {PERMITS} permits");
            entries.fetch_add(1, Ordering::Relaxed);
        };

        let threads: Vec<_> = (0..2)
            .map(|t| {
                let (sem, holders, entries) = (sem.clone(), holders.clone(), entries.clone());
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let k = if (i + t) % 3 == 0 { 2 } else { 1 };
                        let permit = sem.acquire_many(k).unwrap();
                        enter(&holders, &entries, k);
                        std::thread::yield_now();
                        holders.fetch_sub(k, Ordering::SeqCst);
                        drop(permit);
                    }
                })
            })
            .collect();
        let tasks: Vec<_> = (0..6)
            .map(|t| {
                let (sem, holders, entries) = (sem.clone(), holders.clone(), entries.clone());
                rt.spawn(async move {
                    for i in 0..200 {
                        let k = if (i + t) % 4 == 0 { 2 } else { 1 };
                        let permit = if k == 1 {
                            sem.acquire_async().await
                        } else {
                            sem.acquire_many_async(k).await.unwrap()
                        };
                        enter(&holders, &entries, k);
                        yield_now().await;
                        holders.fetch_sub(k, Ordering::SeqCst);
                        drop(permit);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(entries.load(Ordering::SeqCst), 8 * 200);
        assert_eq!(sem.available_permits(), PERMITS);
        assert_eq!(sem.total_permits(), PERMITS);
    });
}

#[test]
fn acquire_many_beyond_total_returns_too_many_at_once() {
    let too_many = AcquireError::TooMany {
        requested: 5,
        total: 4,
    };
    let sem = Arc::new(Semaphore::new(4));
    // Hold some permits too: the error must not depend on what is free.
    let _held = sem.acquire();
    let s = sem.clone();
    assert_eq!(
        returns_without_waiting(move || s.acquire_many(5).map(|_| ())),
        Err(too_many)
    );
    let s = sem.clone();
    assert_eq!(
        returns_without_waiting(move || s
            .acquire_many_timeout(5, Duration::from_secs(3600))
            .map(|_| ())),
        Err(too_many)
    );
    assert_eq!(sem.try_acquire_many(5).unwrap_err(), too_many);
    let s = sem.clone();
    assert_eq!(
        returns_without_waiting(move || {
            futures::executor::block_on(s.acquire_many_async(5)).map(|_| ())
        }),
        Err(too_many)
    );
    let s = sem.clone();
    assert_eq!(
        returns_without_waiting(move || {
            futures::executor::block_on(s.acquire_many_owned_async(5)).map(|_| ())
        }),
        Err(too_many)
    );
    assert_eq!(sem.available_permits(), 3);
}

#[test]
fn semaphore_timeouts_and_try_report_typed_errors() {
    let sem = Semaphore::new(1);
    let held = sem.acquire();
    assert_eq!(
        sem.acquire_timeout(Duration::from_millis(5)).unwrap_err(),
        AcquireError::Timeout
    );
    assert_eq!(sem.try_acquire().unwrap_err(), AcquireError::WouldBlock);
    drop(held);
    assert_eq!(sem.acquire_timeout(Duration::MAX).unwrap().num_permits(), 1);
    assert_eq!(sem.available_permits(), 1);
}

#[test]
fn big_request_is_not_starved_by_later_small_ones() {
    on_both(|rt| async move {
        let sem = Arc::new(Semaphore::new(4));
        let first = sem.acquire_many(3).unwrap();
        let big = {
            let sem = sem.clone();
            rt.spawn(async move { sem.acquire_many_owned_async(4).await.unwrap() })
        };
        // Wait until the big request is queued: it drained the free permit.
        let mut turns = 0;
        while sem.available_permits() != 0 {
            turns += 1;
            assert!(turns < 1_000_000, "the big request never queued");
            yield_now().await;
        }
        // A small request now must queue behind it, not take permits.
        assert_eq!(sem.try_acquire().unwrap_err(), AcquireError::WouldBlock);
        let mut small = pin!(sem.acquire_async());
        assert!(poll_once(small.as_mut()).is_pending());
        drop(first);
        let big = big.await;
        assert_eq!(big.num_permits(), 4);
        assert!(poll_once(small.as_mut()).is_pending());
        drop(big);
        let small = small.await;
        assert_eq!(sem.available_permits(), 3);
        drop(small);
    });
}

#[test]
fn add_permits_wakes_a_signal_waiter() {
    on_both(|rt| async move {
        let sem = Arc::new(Semaphore::new(0));
        let waiter = {
            let sem = sem.clone();
            rt.spawn(async move { sem.acquire_owned_async().await.num_permits() })
        };
        yield_now().await;
        assert_eq!(sem.add_permits(1), 1);
        assert_eq!(waiter.await, 1);
        assert_eq!(sem.available_permits(), 1);
    });
}

// ------------------------------------------------------------- async mutex

#[test]
fn async_mutex_tasks_times_increments_give_the_exact_count() {
    on_both(|rt| async move {
        const TASKS: usize = 8;
        const INCREMENTS: usize = 500;
        let m = Arc::new(AsyncMutex::new(0usize));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let m = m.clone();
                rt.spawn(async move {
                    for i in 0..INCREMENTS {
                        let mut guard = m.lock().await;
                        let seen = *guard;
                        if i % 16 == 0 {
                            // Held across an await: any overlap loses an update.
                            yield_now().await;
                        }
                        *guard = seen + 1;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        assert_eq!(*m.lock().await, TASKS * INCREMENTS);
    });
}

#[test]
fn async_mutex_waiters_get_the_lock_in_fifo_order() {
    on_both(|_rt| async move {
        let m = AsyncMutex::new(());
        let order = std::sync::Mutex::new(Vec::new());
        let held = m.lock().await;
        let mut waiters: Vec<_> = (0..5)
            .map(|i| {
                let (m, order) = (&m, &order);
                Box::pin(async move {
                    let _guard = m.lock().await;
                    order.lock().unwrap().push(i);
                })
            })
            .collect();
        // Queue them in order 0..5.
        for w in &mut waiters {
            assert!(poll_once(w.as_mut()).is_pending());
        }
        drop(held);
        // Drive them in reverse: the order must come from the queue, not the polling.
        waiters.reverse();
        futures::future::join_all(waiters).await;
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
    });
}

#[test]
fn async_mutex_guard_moves_into_spawned_tasks_and_lock_timeout_works() {
    on_both(|rt| async move {
        let m = Arc::new(AsyncMutex::new(Vec::new()));
        let guard = m.lock_owned().await;
        assert_eq!(
            m.lock_timeout(Duration::from_millis(2)).await.unwrap_err(),
            LockTimeout
        );
        assert_eq!(m.try_lock().unwrap_err(), WouldBlock);
        let task = rt.spawn(async move {
            let mut guard = guard;
            yield_now().await;
            guard.push(1);
        });
        // Waits for the guard held by the task; no deadline to miss.
        let mut waiting = pin!(m.lock_timeout(Duration::from_secs(3600)));
        // Usually queues; may already win if the task released first.
        let early = poll_once(waiting.as_mut());
        task.await;
        let mut got = match early {
            Poll::Ready(got) => got,
            Poll::Pending => waiting.await,
        }
        .expect("released long before the deadline");
        got.push(2);
        drop(got);
        assert_eq!(*m.lock().await, [1, 2]);
    });
}

#[test]
fn async_mutex_is_shared_fairly_with_blocking_threads() {
    on_both(|rt| async move {
        let m = Arc::new(AsyncMutex::new(0usize));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..300 {
                        *m.lock_blocking() += 1;
                    }
                })
            })
            .collect();
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                rt.spawn(async move {
                    for _ in 0..300 {
                        *m.lock().await += 1;
                        yield_now().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(*m.lock().await, 1200);
    });
}

// ---------------------------------------------------------- async rwlock

#[test]
fn waiting_writer_gets_in_within_a_bounded_number_of_reader_turns() {
    on_both(|rt| async move {
        const READERS: usize = 4;
        // Without writer preference the writer would wait for all of these.
        const MAX_TURNS: usize = 20_000;
        let lock = Arc::new(AsyncRwLock::new(0u64));
        let reads = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let (lock, reads, stop) = (lock.clone(), reads.clone(), stop.clone());
                rt.spawn(async move {
                    for _ in 0..MAX_TURNS {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let guard = lock.read().await;
                        reads.fetch_add(1, Ordering::SeqCst);
                        // Hold across awaits so readers overlap continuously.
                        yield_now().await;
                        yield_now().await;
                        drop(guard);
                    }
                })
            })
            .collect();
        while reads.load(Ordering::SeqCst) < 50 {
            yield_now().await;
        }
        // The deadline only turns a starved writer into a failure, not a hang.
        let mut write = pin!(lock.write_timeout(Duration::from_secs(60)));
        // Count from the moment the writer is queued (its first poll), so an
        // OS preemption before that cannot inflate the count.
        let first = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
        let before = reads.load(Ordering::SeqCst);
        let mut guard = match first {
            Poll::Ready(guard) => guard,
            Poll::Pending => write.await,
        }
        .expect("the writer starved");
        let turns = reads.load(Ordering::SeqCst) - before;
        *guard += 1;
        stop.store(true, Ordering::SeqCst);
        drop(guard);
        for reader in readers {
            reader.await;
        }
        // Once the writer is queued, new readers queue behind it: only the
        // readers already inside may still count their entry.
        assert!(
            turns <= READERS,
            "writer waited through {turns} reader turns"
        );
        assert_eq!(*lock.read().await, 1);
    });
}

#[test]
fn readers_queued_behind_a_writer_all_get_in_after_it() {
    on_both(|_rt| async move {
        let lock = AsyncRwLock::new(0);
        let first = lock.read().await;
        let mut writer = pin!(lock.write());
        assert!(poll_once(writer.as_mut()).is_pending());
        // The waiting writer blocks new readers...
        assert!(lock.try_read().is_err());
        let mut readers: Vec<_> = (0..3).map(|_| Box::pin(lock.read())).collect();
        for r in &mut readers {
            assert!(poll_once(r.as_mut()).is_pending());
        }
        // ...while the reader already inside finishes.
        drop(first);
        let mut w = match poll_once(writer.as_mut()) {
            Poll::Ready(w) => w,
            Poll::Pending => panic!("writer not admitted after the last reader left"),
        };
        *w = 7;
        for r in &mut readers {
            assert!(poll_once(r.as_mut()).is_pending());
        }
        drop(w);
        // All three readers get in together.
        let mut guards = Vec::new();
        for r in &mut readers {
            match poll_once(r.as_mut()) {
                Poll::Ready(g) => guards.push(g),
                Poll::Pending => panic!("a reader queued behind the writer was left waiting"),
            }
        }
        assert!(guards.iter().all(|g| **g == 7));
        assert!(lock.try_write().is_err());
        drop(guards);
        assert!(lock.try_write().is_ok());
    });
}

#[test]
fn downgrade_lets_queued_readers_in_but_not_writers() {
    on_both(|_rt| async move {
        let lock = AsyncRwLock::new(1);
        let mut w = lock.write().await;
        let mut reader = pin!(lock.read());
        assert!(poll_once(reader.as_mut()).is_pending());
        *w = 2;
        let r = w.downgrade();
        let Poll::Ready(r2) = poll_once(reader.as_mut()) else {
            panic!("downgrade did not admit the queued reader");
        };
        assert_eq!((*r, *r2), (2, 2));
        assert!(lock.try_write().is_err());
        drop((r, r2));
        assert!(lock.try_write().is_ok());
    });
}

#[test]
fn rwlock_timeouts_and_owned_guards() {
    on_both(|rt| async move {
        let lock = Arc::new(AsyncRwLock::new(0));
        let r = lock.read_owned().await;
        assert!(lock.write_timeout(Duration::from_millis(2)).await.is_err());
        // The timed-out writer left no trace: readers still get in.
        assert!(lock.try_read().is_ok());
        let task = rt.spawn(async move {
            yield_now().await;
            drop(r);
        });
        let mut w = lock
            .write_timeout(Duration::from_secs(3600))
            .await
            .expect("the reader leaves long before the deadline");
        *w += 1;
        task.await;
        drop(w);
        let w = lock.write_owned().await;
        assert!(lock.read_timeout(Duration::from_millis(2)).await.is_err());
        drop(w.downgrade());
        assert_eq!(*lock.read_timeout(Duration::from_secs(1)).await.unwrap(), 1);
    });
}

// --------------------------------------------------------- cancel safety

/// Anything held: a guard or a permit of any of the primitives.
trait Held {}
impl<T: ?Sized> Held for T {}

type Pending<'a> = Pin<Box<dyn Future<Output = Box<dyn Held + 'a>> + 'a>>;

/// Creates, polls and drops acquisition futures at random, interleaved with
/// releases, until `cancellations` pending futures have been dropped.
fn churn<'a>(seed: u64, cancellations: usize, mut make: impl FnMut(&mut StdRng) -> Pending<'a>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pending: Vec<Pending<'a>> = Vec::new();
    let mut held: Vec<Box<dyn Held + 'a>> = Vec::new();
    let mut cancelled = 0;
    let poll =
        |fut: &mut Pending<'a>, held: &mut Vec<Box<dyn Held + 'a>>| match poll_once(fut.as_mut()) {
            Poll::Ready(guard) => {
                held.push(guard);
                true
            }
            Poll::Pending => false,
        };
    while cancelled < cancellations {
        match rng.random_range(0..10) {
            0..=3 => {
                let mut fut = make(&mut rng);
                let mut done = false;
                for _ in 0..rng.random_range(1..=3) {
                    if poll(&mut fut, &mut held) {
                        done = true;
                        break;
                    }
                }
                if !done {
                    pending.push(fut);
                }
            }
            4 if !pending.is_empty() => {
                let i = rng.random_range(0..pending.len());
                if poll(&mut pending[i], &mut held) {
                    drop(pending.swap_remove(i));
                }
            }
            5..=7 if !pending.is_empty() => {
                let i = rng.random_range(0..pending.len());
                drop(pending.swap_remove(i));
                cancelled += 1;
            }
            _ if !held.is_empty() => {
                let i = rng.random_range(0..held.len());
                drop(held.swap_remove(i));
            }
            _ => {}
        }
    }
    // Drop in random order, mixing releases and cancellations.
    while !pending.is_empty() || !held.is_empty() {
        if !pending.is_empty() && (held.is_empty() || rng.random_bool(0.5)) {
            let i = rng.random_range(0..pending.len());
            let mut fut = pending.swap_remove(i);
            if rng.random_bool(0.3) {
                poll(&mut fut, &mut held);
            }
        } else {
            let i = rng.random_range(0..held.len());
            drop(held.swap_remove(i));
        }
    }
}

const CANCELLATIONS: usize = 10_000;

#[test]
fn cancelled_mutex_locks_leave_the_mutex_usable() {
    let m = AsyncMutex::new(0u8);
    churn(1, CANCELLATIONS, |_| {
        let m = &m;
        Box::pin(async move { Box::new(m.lock().await) as Box<dyn Held> })
    });
    assert!(m.try_lock().is_ok());
    futures::executor::block_on(async {
        *m.lock().await += 1;
        assert!(m.lock_timeout(Duration::from_secs(1)).await.is_ok());
    });
}

#[test]
fn cancelled_semaphore_acquires_leave_all_permits() {
    let sem = Semaphore::new(4);
    churn(2, CANCELLATIONS, |rng| {
        let sem = &sem;
        let n = rng.random_range(1..=4);
        Box::pin(async move {
            if n == 1 {
                Box::new(sem.acquire_async().await) as Box<dyn Held>
            } else {
                Box::new(sem.acquire_many_async(n).await.unwrap()) as Box<dyn Held>
            }
        })
    });
    assert_eq!(sem.available_permits(), sem.total_permits());
    assert_eq!(sem.total_permits(), 4);
    assert_eq!(sem.try_acquire_many(4).unwrap().num_permits(), 4);
}

#[test]
fn cancelled_rwlock_reads_and_writes_leave_the_lock_usable() {
    let lock = AsyncRwLock::new(0u8);
    churn(3, CANCELLATIONS, |rng| {
        let lock = &lock;
        let write = rng.random_bool(0.3);
        Box::pin(async move {
            if write {
                Box::new(lock.write().await) as Box<dyn Held>
            } else {
                Box::new(lock.read().await) as Box<dyn Held>
            }
        })
    });
    assert!(lock.try_write().is_ok());
    let (a, b) = (lock.try_read().unwrap(), lock.try_read().unwrap());
    drop((a, b));
    assert!(lock.try_write().is_ok());
}

/// Polls `fut` at most `budget` times, then gives up (drops it): a
/// runtime-agnostic, timing-free way to cancel at a random point.
async fn within_polls<F: Future>(budget: usize, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut left = budget;
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending if left == 0 => Poll::Ready(None),
        Poll::Pending => {
            left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

#[test]
fn concurrent_cancellation_under_real_runtimes_loses_nothing() {
    on_both(|rt| async move {
        let m = Arc::new(AsyncMutex::new(0usize));
        let lock = Arc::new(AsyncRwLock::new(()));
        let sem = Arc::new(Semaphore::new(3));
        let tasks: Vec<_> = (0..6u64)
            .map(|t| {
                let (m, lock, sem) = (m.clone(), lock.clone(), sem.clone());
                rt.spawn(async move {
                    let mut rng = StdRng::seed_from_u64(t);
                    for _ in 0..300 {
                        let budget = rng.random_range(0..4);
                        if let Some(mut g) = within_polls(budget, m.lock()).await {
                            *g += 1;
                        }
                        if rng.random_bool(0.5) {
                            let _ = within_polls(budget, lock.write()).await;
                        } else if let Some(r) = within_polls(budget, lock.read()).await {
                            yield_now().await;
                            drop(r);
                        }
                        let n = rng.random_range(1..=3);
                        if let Some(p) = within_polls(budget, sem.acquire_many_async(n)).await {
                            yield_now().await;
                            drop(p.unwrap());
                        }
                        let micros = rng.random_range(0..50);
                        let _ = m.lock_timeout(Duration::from_micros(micros)).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        assert!(m.try_lock().is_ok());
        assert!(lock.try_write().is_ok());
        assert_eq!(sem.available_permits(), 3);
    });
}
