//! L1 blocking primitives: behaviour and stress tests with invariants.
//!
//! Every stress test checks an invariant that a broken primitive would
//! violate (a lost update, a torn read, a second leader); none asserts timing.
//! Sizes are chosen to finish in a few seconds in debug builds on two cores.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use strata::sync::{
    Barrier, BarrierError, Condvar, Mutex, MutexGuard, OrderedLockError, RwLock,
    RwLockUpgradableReadGuard, RwLockWriteGuard, UnfairLock, lock_all, lock_all_vec, lock_two,
};

/// Runs `f` on its own thread and fails the test instead of hanging forever
/// if it never finishes (a deadlock). The bound is far above any healthy run.
fn must_finish<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let out = f();
        let _ = tx.send(());
        out
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(()) => worker.join().unwrap(),
        // The sender was dropped without sending: `f` panicked; surface it.
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no progress, likely deadlocked"),
    }
}

/// A tiny deterministic PRNG so runs are reproducible per seed.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

// ---------------------------------------------------------------- Mutex ----

#[test]
fn mutex_counter_is_exact_under_contention() {
    const THREADS: usize = 4;
    const INCREMENTS: u64 = 20_000;
    let counter = Mutex::new(0u64);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..INCREMENTS {
                    let mut g = counter.lock();
                    // Read and write separately so a second holder would
                    // lose updates rather than be masked by one instruction.
                    let seen = black_box(*g);
                    *g = seen + 1;
                }
            });
        }
    });
    assert_eq!(counter.into_inner(), THREADS as u64 * INCREMENTS);
}

#[test]
fn mutex_try_lock_fails_while_held_elsewhere() {
    let m = Arc::new(Mutex::new(0));
    let (locked_tx, locked_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = {
        let m = Arc::clone(&m);
        thread::spawn(move || {
            let mut g = m.lock();
            *g = 1;
            locked_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        })
    };
    locked_rx.recv().unwrap();
    assert!(m.is_locked());
    assert!(m.try_lock().is_none());
    assert!(m.try_lock_for(Duration::from_millis(5)).is_none());
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(*m.try_lock_for(Duration::from_secs(30)).unwrap(), 1);
}

#[test]
fn mutex_is_not_poisoned_by_a_panicking_holder() {
    let m = Arc::new(Mutex::new(vec![1]));
    let m2 = Arc::clone(&m);
    let r = thread::spawn(move || {
        let mut g = m2.lock();
        g.push(2);
        panic!("holder dies with the lock held");
    })
    .join();
    assert!(r.is_err());
    assert!(!m.is_locked());
    assert_eq!(*m.lock(), [1, 2]);
}

#[test]
fn mutex_guard_unlocked_lets_others_in() {
    let m = Mutex::new(0);
    let mut g = m.lock();
    *g = 1;
    let other = MutexGuard::unlocked(&mut g, || {
        thread::scope(|s| {
            s.spawn(|| {
                let mut g = m.lock();
                *g += 10;
                *g
            })
            .join()
            .unwrap()
        })
    });
    assert_eq!(other, 11);
    assert_eq!(*g, 11);
}

#[test]
fn mutex_static_and_classes() {
    static GLOBAL: Mutex<u32> = Mutex::named("global", 0);
    *GLOBAL.lock() += 1;
    assert_eq!(*GLOBAL.lock(), 1);

    let by_site = Mutex::new(());
    assert_eq!(GLOBAL.class().is_some(), strata::diag::checking_enabled());
    if let (Some(named), Some(site)) = (GLOBAL.class(), by_site.class()) {
        assert_eq!(named.name(), Some("global"));
        assert_eq!(site.name(), None);
        assert_eq!(site.location().file(), file!());
        assert_ne!(named, site);
    }
}

// ----------------------------------------------------------- UnfairLock ----

#[test]
fn unfair_counter_is_exact_under_contention() {
    const THREADS: usize = 4;
    const INCREMENTS: u64 = 20_000;
    let counter = UnfairLock::new(0u64);
    thread::scope(|s| {
        for t in 0..THREADS {
            let counter = &counter;
            s.spawn(move || {
                for i in 0..INCREMENTS {
                    // Exercise both entry points.
                    if (i + t as u64).is_multiple_of(2) {
                        counter.with_lock(|n| {
                            let seen = black_box(*n);
                            *n = seen + 1;
                        });
                    } else {
                        let mut g = counter.lock();
                        let seen = black_box(*g);
                        *g = seen + 1;
                    }
                }
            });
        }
    });
    assert_eq!(counter.into_inner(), THREADS as u64 * INCREMENTS);
}

#[test]
fn unfair_try_with_lock_respects_holder() {
    let lock = UnfairLock::new(5);
    let g = lock.lock();
    thread::scope(|s| {
        assert_eq!(s.spawn(|| lock.try_with_lock(|n| *n)).join().unwrap(), None);
    });
    drop(g);
    assert_eq!(lock.try_with_lock(|n| *n), Some(5));
}

// --------------------------------------------------------------- RwLock ----

struct Pair {
    a: u64,
    b: u64,
    history: Vec<u64>,
}

impl Pair {
    fn assert_consistent(&self) {
        assert_eq!(self.a, self.b, "reader saw a half-done update");
        assert_eq!(self.history.len() as u64, self.a, "history out of step");
        if let Some(&last) = self.history.last() {
            assert_eq!(last, self.a);
        }
    }
}

#[test]
fn rwlock_readers_never_see_a_half_done_write() {
    const WRITERS: u64 = 2;
    const WRITES: u64 = 1_500;
    const READERS: usize = 3;
    let lock = RwLock::new(Pair {
        a: 0,
        b: 0,
        history: Vec::new(),
    });
    let writers_done = AtomicUsize::new(0);
    let reads = AtomicU64::new(0);
    thread::scope(|s| {
        for _ in 0..WRITERS {
            s.spawn(|| {
                for _ in 0..WRITES {
                    let mut w = lock.write();
                    // Two steps with a pause between: a reader let in early
                    // would see a != b.
                    w.a += 1;
                    thread::yield_now();
                    let a = w.a;
                    w.history.push(a);
                    w.b += 1;
                }
                writers_done.fetch_add(1, Ordering::Release);
            });
        }
        for _ in 0..READERS {
            s.spawn(|| {
                while writers_done.load(Ordering::Acquire) < WRITERS as usize {
                    match lock.try_read() {
                        Some(r) => r.assert_consistent(),
                        None => lock.read().assert_consistent(),
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let end = lock.into_inner();
    end.assert_consistent();
    assert_eq!(end.a, WRITERS * WRITES);
    assert!(reads.load(Ordering::Relaxed) > 0);
}

#[test]
fn rwlock_upgrade_sees_no_write_in_between() {
    const UPGRADERS: u64 = 3;
    const ROUNDS: u64 = 600;
    let lock = RwLock::new(Pair {
        a: 0,
        b: 0,
        history: Vec::new(),
    });
    let stop_readers = AtomicBool::new(false);
    thread::scope(|s| {
        let upgraders: Vec<_> = (0..UPGRADERS)
            .map(|t| {
                let lock = &lock;
                s.spawn(move || {
                    for round in 0..ROUNDS {
                        let up = lock.upgradable_read();
                        up.assert_consistent();
                        let seen = up.a;
                        let mut w = match (round + t) % 3 {
                            0 => RwLockUpgradableReadGuard::upgrade(up),
                            1 => match RwLockUpgradableReadGuard::try_upgrade(up) {
                                Ok(w) => w,
                                Err(up) => RwLockUpgradableReadGuard::upgrade(up),
                            },
                            _ => match RwLockUpgradableReadGuard::try_upgrade_for(
                                up,
                                Duration::from_micros(50),
                            ) {
                                Ok(w) => w,
                                Err(up) => RwLockUpgradableReadGuard::upgrade(up),
                            },
                        };
                        // The upgradable read excluded every other writer and
                        // upgrader, so what it read is still the state.
                        assert_eq!(w.a, seen, "a write slipped in during the upgrade");
                        w.a += 1;
                        thread::yield_now();
                        let a = w.a;
                        w.history.push(a);
                        w.b += 1;
                        if round.is_multiple_of(2) {
                            let r = RwLockWriteGuard::downgrade(w);
                            assert_eq!(r.a, seen + 1);
                            r.assert_consistent();
                        } else {
                            let up = RwLockWriteGuard::downgrade_to_upgradable(w);
                            assert_eq!(up.a, seen + 1);
                            let r = RwLockUpgradableReadGuard::downgrade(up);
                            r.assert_consistent();
                        }
                    }
                })
            })
            .collect();
        for _ in 0..2 {
            s.spawn(|| {
                while !stop_readers.load(Ordering::Acquire) {
                    lock.read().assert_consistent();
                }
            });
        }
        for u in upgraders {
            u.join().unwrap();
        }
        stop_readers.store(true, Ordering::Release);
    });
    let end = lock.into_inner();
    end.assert_consistent();
    assert_eq!(end.a, UPGRADERS * ROUNDS);
}

#[test]
fn rwlock_modes_exclude_each_other() {
    let lock = RwLock::new(0);
    {
        let _r = lock.read();
        assert!(lock.try_read().is_some());
        assert!(lock.try_upgradable_read().is_some());
        assert!(lock.try_write().is_none());
        assert!(lock.try_write_for(Duration::from_millis(1)).is_none());
    }
    {
        let _u = lock.upgradable_read();
        assert!(lock.try_read().is_some());
        assert!(lock.try_upgradable_read().is_none());
        assert!(
            lock.try_upgradable_read_for(Duration::from_millis(1))
                .is_none()
        );
        assert!(lock.try_write().is_none());
    }
    {
        let _w = lock.write();
        assert!(lock.is_locked_exclusive());
        assert!(lock.try_read().is_none());
        assert!(lock.try_read_for(Duration::from_millis(1)).is_none());
        assert!(lock.try_upgradable_read().is_none());
    }
    assert!(!lock.is_locked());
}

// -------------------------------------------------------------- Condvar ----

#[test]
fn condvar_producer_consumer_moves_every_item_once() {
    const PRODUCERS: u64 = 2;
    const ITEMS: u64 = 2_000;
    const CAPACITY: usize = 8;

    struct Queue {
        items: VecDeque<u64>,
        producers_left: u64,
    }
    let queue = Mutex::new(Queue {
        items: VecDeque::new(),
        producers_left: PRODUCERS,
    });
    let not_empty = Condvar::named("not-empty");
    let not_full = Condvar::named("not-full");

    let consumed: Vec<Vec<u64>> = thread::scope(|s| {
        for p in 0..PRODUCERS {
            let (queue, not_empty, not_full) = (&queue, &not_empty, &not_full);
            s.spawn(move || {
                for i in 0..ITEMS {
                    let mut q = queue.lock();
                    not_full.wait_while(&mut q, |q| q.items.len() >= CAPACITY);
                    q.items.push_back(p * ITEMS + i);
                    drop(q);
                    not_empty.notify_one();
                }
                queue.lock().producers_left -= 1;
                // Consumers may be asleep waiting for items that will never
                // come: wake them all to see that production is over.
                not_empty.notify_all();
            });
        }
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut got = Vec::new();
                    let mut q = queue.lock();
                    loop {
                        not_empty
                            .wait_while(&mut q, |q| q.items.is_empty() && q.producers_left > 0);
                        match q.items.pop_front() {
                            Some(item) => {
                                got.push(item);
                                not_full.notify_one();
                            }
                            None => return got,
                        }
                    }
                })
            })
            .collect();
        consumers.into_iter().map(|c| c.join().unwrap()).collect()
    });

    let mut all: Vec<u64> = consumed.into_iter().flatten().collect();
    all.sort_unstable();
    let expected: Vec<u64> = (0..PRODUCERS * ITEMS).collect();
    assert_eq!(all, expected, "items lost or duplicated");
}

#[test]
fn condvar_wait_timeout_reports_timeouts_and_keeps_the_lock() {
    let m = Mutex::new(0);
    let cv = Condvar::new();
    let mut g = m.lock();
    assert!(
        cv.wait_timeout(&mut g, Duration::from_millis(2))
            .timed_out()
    );
    assert!(
        cv.wait_timeout_while(&mut g, Duration::from_millis(2), |v| *v == 0)
            .timed_out()
    );
    // Still held after a timed-out wait.
    assert!(m.try_lock().is_none());
    *g = 1;
    assert!(
        !cv.wait_timeout_while(&mut g, Duration::from_millis(2), |v| *v == 0)
            .timed_out()
    );
}

#[test]
fn condvar_notify_all_wakes_every_waiter() {
    const WAITERS: usize = 4;
    let state = Mutex::new((0usize, false)); // (waiting, go)
    let cv = Condvar::new();
    let arrived = Condvar::new();
    thread::scope(|s| {
        for _ in 0..WAITERS {
            s.spawn(|| {
                let mut g = state.lock();
                g.0 += 1;
                arrived.notify_one();
                cv.wait_while(&mut g, |(_, go)| !*go);
            });
        }
        let mut g = state.lock();
        arrived.wait_while(&mut g, |(waiting, _)| *waiting < WAITERS);
        g.1 = true;
        drop(g);
        cv.notify_all();
    });
    // Reaching here means every waiter returned.
}

// -------------------------------------------------------------- Barrier ----

#[test]
fn barrier_handler_runs_once_per_generation_with_one_leader() {
    const THREADS: usize = 4;
    const GENERATIONS: usize = 1_000;
    let arrivals: Arc<Vec<AtomicUsize>> =
        Arc::new((0..GENERATIONS).map(|_| AtomicUsize::new(0)).collect());
    let leaders: Vec<AtomicUsize> = (0..GENERATIONS).map(|_| AtomicUsize::new(0)).collect();
    let handler_runs = Arc::new(AtomicUsize::new(0));
    let barrier = {
        let arrivals = Arc::clone(&arrivals);
        let handler_runs = Arc::clone(&handler_runs);
        Barrier::with_completion(THREADS, move || {
            let g = handler_runs.fetch_add(1, Ordering::Relaxed);
            assert_eq!(
                arrivals[g].load(Ordering::Relaxed),
                THREADS,
                "handler ran before every party arrived"
            );
        })
        .unwrap()
    };
    assert_eq!(barrier.parties(), THREADS);

    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for (g, leader_count) in leaders.iter().enumerate() {
                    arrivals[g].fetch_add(1, Ordering::Relaxed);
                    let r = barrier.wait();
                    assert_eq!(r.generation(), g as u64);
                    assert_eq!(
                        arrivals[g].load(Ordering::Relaxed),
                        THREADS,
                        "released before every party arrived"
                    );
                    if r.is_leader() {
                        leader_count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });

    assert_eq!(handler_runs.load(Ordering::Relaxed), GENERATIONS);
    for (g, l) in leaders.iter().enumerate() {
        assert_eq!(
            l.load(Ordering::Relaxed),
            1,
            "generation {g} had {l:?} leaders"
        );
    }
}

#[test]
fn barrier_rejects_zero_parties() {
    assert_eq!(Barrier::new(0).unwrap_err(), BarrierError::ZeroParties);
    assert_eq!(
        Barrier::named("x", 0).unwrap_err(),
        BarrierError::ZeroParties
    );
    assert_eq!(
        Barrier::with_completion(0, || {}).unwrap_err(),
        BarrierError::ZeroParties
    );
}

// ---------------------------------------------------------- lock_two/all ----

#[test]
fn lock_two_transfers_conserve_money_and_never_deadlock() {
    const ACCOUNTS: usize = 8;
    const START: i64 = 1_000;
    const THREADS: u64 = 4;
    const TRANSFERS: usize = 3_000;
    let accounts: Arc<Vec<Mutex<i64>>> = Arc::new(
        (0..ACCOUNTS)
            .map(|_| Mutex::named("account", START))
            .collect(),
    );
    let accounts2 = Arc::clone(&accounts);
    let audits = must_finish("lock_two transfers", move || {
        let accounts = &accounts2;
        let done = AtomicBool::new(false);
        thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    s.spawn(move || {
                        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                        for _ in 0..TRANSFERS {
                            let from = rng.below(ACCOUNTS as u64) as usize;
                            let to = rng.below(ACCOUNTS as u64) as usize;
                            let amount = rng.below(50) as i64;
                            match lock_two(&accounts[from], &accounts[to]) {
                                Ok((mut a, mut b)) => {
                                    *a -= amount;
                                    *b += amount;
                                }
                                Err(OrderedLockError::SameLock) => assert_eq!(from, to),
                            }
                        }
                    })
                })
                .collect();
            // An auditor takes every account at once, mid-flight: the total
            // must be exact at every instant, not only at the end.
            let auditor = s.spawn(|| {
                let mut audits = 0;
                while !done.load(Ordering::Acquire) {
                    let all: Vec<&Mutex<i64>> = accounts.iter().rev().collect();
                    let guards = lock_all_vec(&all).unwrap();
                    let total: i64 = guards.iter().map(|g| **g).sum();
                    assert_eq!(total, START * ACCOUNTS as i64);
                    audits += 1;
                }
                audits
            });
            for w in workers {
                w.join().unwrap();
            }
            done.store(true, Ordering::Release);
            auditor.join().unwrap()
        })
    });
    assert!(audits > 0);
    let total: i64 = accounts.iter().map(|a| *a.lock()).sum();
    assert_eq!(total, START * ACCOUNTS as i64);
}

#[test]
fn lock_all_in_any_order_never_deadlocks() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 1_500;
    let shards: Arc<[Mutex<u64>; 4]> = Arc::new(std::array::from_fn(|_| Mutex::new(0)));
    let shards2 = Arc::clone(&shards);
    must_finish("lock_all", move || {
        let shards = &shards2;
        thread::scope(|s| {
            for t in 0..THREADS {
                s.spawn(move || {
                    for round in 0..ROUNDS {
                        // Each thread names the shards in its own rotation.
                        let k = (t + round) % 4;
                        let picked = [&shards[k], &shards[(k + 1) % 4], &shards[(k + 2) % 4]];
                        let mut guards = lock_all(picked).unwrap();
                        for g in &mut guards {
                            **g += 1;
                        }
                    }
                });
            }
        });
    });
    let total: u64 = shards.iter().map(|m| *m.lock()).sum();
    assert_eq!(total, (THREADS * ROUNDS * 3) as u64);
}

#[test]
fn ordered_locking_rejects_duplicates_without_locking() {
    let a = Mutex::new(1);
    let b = Mutex::new(2);
    assert_eq!(lock_two(&a, &a).err(), Some(OrderedLockError::SameLock));
    assert_eq!(
        lock_all([&b, &a, &b]).err(),
        Some(OrderedLockError::SameLock)
    );
    assert_eq!(
        lock_all_vec(&[&a, &b, &a]).err(),
        Some(OrderedLockError::SameLock)
    );
    assert!(!a.is_locked() && !b.is_locked());
    let [gb, ga] = lock_all([&b, &a]).unwrap();
    assert_eq!((*ga, *gb), (1, 2));
}
