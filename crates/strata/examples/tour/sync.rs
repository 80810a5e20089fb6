//! L1 — the blocking and async locks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use strata::sync::{
    AcquireError, AsyncMutex, AsyncRwLock, Barrier, Condvar, Mutex, RwLock,
    RwLockUpgradableReadGuard, Semaphore, UnfairLock, lock_two,
};

use crate::section;

/// Runs every L1 section.
pub fn run() {
    blocking_locks();
    ordered_transfers();
    barrier_and_condvar();
    semaphore();
    async_locks();
}

/// L1: the blocking locks, on parking_lot cores.
fn blocking_locks() {
    section("L1 sync: Mutex, RwLock, UnfairLock");
    let counter = Arc::new(Mutex::named("tour.counter", 0u64));
    let threads = 4;
    let per_thread = 50_000;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let counter = Arc::clone(&counter);
            thread::spawn(move || {
                for _ in 0..per_thread {
                    *counter.lock() += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total = *counter.lock();
    assert_eq!(total, threads * per_thread);
    println!("Mutex: {threads} threads x {per_thread} increments = {total} (exact)");

    let config = RwLock::named("tour.config", vec![1, 2, 3]);
    let upgradable = config.upgradable_read();
    let needs_four = !upgradable.contains(&4);
    if needs_four {
        // Upgrading never lets another writer in between the check and the write.
        let mut write = RwLockUpgradableReadGuard::upgrade(upgradable);
        write.push(4);
    }
    println!(
        "RwLock: checked under an upgradable read, then upgraded: {:?}",
        *config.read()
    );

    let hits = UnfairLock::new(0u32);
    for _ in 0..10 {
        hits.with_lock(|h| *h += 1);
    }
    println!(
        "UnfairLock: with_lock ran 10 times -> {}",
        hits.with_lock(|h| *h)
    );
}

/// `lock_two` takes two locks of one class in address order, so transfers in
/// opposite directions cannot deadlock.
fn ordered_transfers() {
    section("L1 sync: lock_two for data-dependent lock order");
    let accounts: Arc<Vec<Mutex<i64>>> = Arc::new(
        (0..4)
            .map(|_| Mutex::named("tour.account", 1_000))
            .collect(),
    );
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let accounts = Arc::clone(&accounts);
            thread::spawn(move || {
                for i in 0..20_000usize {
                    let from = (i + t) % 4;
                    let to = (i * 7 + t + 1) % 4;
                    if from == to {
                        continue;
                    }
                    let (mut a, mut b) =
                        lock_two(&accounts[from], &accounts[to]).expect("distinct accounts");
                    *a -= 1;
                    *b += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total: i64 = accounts.iter().map(|a| *a.lock()).sum();
    assert_eq!(total, 4_000);
    println!("4 threads x 20000 transfers in both directions: total still {total}, no deadlock");
    let same = lock_two(&accounts[0], &accounts[0]);
    println!(
        "lock_two(a, a) is refused with a typed error, not a hang: {}",
        same.unwrap_err()
    );
}

fn barrier_and_condvar() {
    section("L1 sync: Barrier (reusable, one leader per generation) and Condvar");
    let completions = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&completions);
    let barrier = Arc::new(
        Barrier::with_completion(3, move || {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .expect("3 parties"),
    );
    let leaders = Arc::new(AtomicUsize::new(0));
    let generations = 100;
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let leaders = Arc::clone(&leaders);
            thread::spawn(move || {
                for _ in 0..generations {
                    if barrier.wait().is_leader() {
                        leaders.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(completions.load(Ordering::SeqCst), generations);
    assert_eq!(leaders.load(Ordering::SeqCst), generations);
    println!(
        "{generations} generations x 3 threads: completion handler ran {} times, {} leaders",
        completions.load(Ordering::SeqCst),
        leaders.load(Ordering::SeqCst)
    );
    println!("Barrier::new(0) -> {}", Barrier::new(0).unwrap_err());

    let queue = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    let producer = {
        let queue = Arc::clone(&queue);
        thread::spawn(move || {
            for i in 0..1_000 {
                queue.0.lock().push(i);
                queue.1.notify_one();
            }
        })
    };
    let mut received = 0;
    while received < 1_000 {
        let mut items = queue.0.lock();
        queue.1.wait_while(&mut items, |items| items.is_empty());
        received += items.drain(..).count();
    }
    producer.join().unwrap();
    println!("Condvar: a consumer woke for and received all {received} items");
}

fn semaphore() {
    section("L1 sync: Semaphore (blocking and async on one semaphore)");
    let sem = Arc::new(Semaphore::named("tour.io-slots", 2));
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let (sem, inside, most) = (Arc::clone(&sem), Arc::clone(&inside), Arc::clone(&most));
            thread::spawn(move || {
                let work = || {
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(2));
                    inside.fetch_sub(1, Ordering::SeqCst);
                };
                if i % 2 == 0 {
                    let _permit = sem.acquire();
                    work();
                } else {
                    let _permit = futures::executor::block_on(sem.acquire_async());
                    work();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 2);
    println!("6 workers (3 blocking, 3 async) through 2 permits: at most {most} inside at once");
    match sem.acquire_many(3) {
        Err(e @ AcquireError::TooMany { .. }) => {
            println!("acquire_many(3) on 2 permits -> {e} (at once, no hang)")
        }
        other => panic!("expected TooMany, got {other:?}"),
    }
}

fn async_locks() {
    section("L1 sync: AsyncMutex and the writer-preferring AsyncRwLock (no runtime inside)");
    let m = Arc::new(AsyncMutex::named("tour.async-counter", 0u64));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let m = Arc::clone(&m);
            thread::spawn(move || {
                futures::executor::block_on(async {
                    for _ in 0..10_000 {
                        *m.lock().await += 1;
                    }
                })
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total = futures::executor::block_on(async { *m.lock().await });
    assert_eq!(total, 40_000);
    println!("AsyncMutex: 4 executors x 10000 increments = {total}");

    let lock = Arc::new(AsyncRwLock::new(0u32));
    futures::executor::block_on(async {
        let reader = lock.read().await;
        // A writer arrives while a reader is inside: it queues, and from then on
        // new readers queue behind it instead of starving it.
        let writer = Box::pin(lock.write());
        let mut writer = writer;
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(writer.as_mut().poll(&mut cx).is_pending());
        let late_reader = lock.try_read();
        assert!(late_reader.is_err());
        println!(
            "AsyncRwLock: with a writer waiting, a new reader is held back (try_read -> {})",
            late_reader.unwrap_err()
        );
        drop(reader);
        let mut w = writer.await;
        *w += 1;
    });
    println!(
        "AsyncRwLock: the writer got in once the old reader left; value = {}",
        futures::executor::block_on(async { *lock.read().await })
    );
}
