//! L0 — the order checker and the watchdog seen through the real
//! primitives. Each rule test provokes one rule with no real deadlock and
//! looks at what was reported; the safe-pattern test runs the patterns that
//! must never be reported. With checking compiled out (release without
//! `checked`) there is nothing to observe, and the tests assert that nothing
//! is reported.
//!
//! Reports go to one process-wide callback; every test uses class names
//! with its own prefix and takes only the reports that mention it, so the
//! tests can run in parallel, on any thread or runtime.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use strata::diag::{self, Violation, ViolationKind};
use strata::sync::{
    AsyncMutex, Barrier, Condvar, Mutex, MutexGuard, RwLock, RwLockUpgradableReadGuard, Semaphore,
    lock_two,
};

fn take(prefix: &str) -> Vec<Violation> {
    support::take_violations(prefix)
}

/// Exactly one report of `kind` for `prefix` (none with checking off);
/// returns its text.
fn expect(prefix: &str, kind: ViolationKind) -> Option<String> {
    let seen = take(prefix);
    if !diag::checking_enabled() {
        assert!(seen.is_empty());
        return None;
    }
    assert_eq!(seen.len(), 1, "expected exactly one report, got {seen:#?}");
    assert_eq!(seen[0].kind(), kind, "{}", seen[0]);
    Some(seen[0].to_string())
}

fn expect_none(prefix: &str) {
    let seen = take(prefix);
    assert!(seen.is_empty(), "unexpected reports: {seen:#?}");
}

#[test]
fn ab_ba_between_two_mutex_classes_is_reported_once_without_deadlock() {
    take("wiring.");
    let a = Mutex::named("wiring.a", 0);
    let b = Mutex::named("wiring.b", 0);
    {
        let _a = a.lock();
        let _b = b.lock();
    }
    expect_none("wiring.a");
    {
        let _b = b.lock();
        let _a = a.lock(); // the inversion: reported here, on its first run
    }
    let text = expect("wiring.a", ViolationKind::LockOrder);
    if let Some(text) = &text {
        assert!(text.contains("wiring.a") && text.contains("wiring.b"));
        assert!(text.contains("DEADLOCK"));
        assert!(
            text.contains("tests/diag.rs"),
            "acquisition sites are named: {text}"
        );
    }
    // The same inversion again is not reported a second time.
    {
        let _b = b.lock();
        let _a = a.lock();
    }
    expect_none("wiring.a");
}

#[test]
fn inversions_are_by_class_not_by_instance() {
    let make = |name| Mutex::named(name, ());
    let (x1, y1) = (make("wiring.x"), make("wiring.y"));
    let (x2, y2) = (make("wiring.x"), make("wiring.y"));
    {
        let _x = x1.lock();
        let _y = y1.lock();
    }
    {
        let _y = y2.lock();
        let _x = x2.lock();
    }
    expect("wiring.x", ViolationKind::LockOrder);
}

#[test]
fn same_class_nesting_is_reported_unless_ordered_or_nested() {
    let accounts: Vec<Mutex<i64>> = (0..3)
        .map(|_| Mutex::named("wiring.account", 100))
        .collect();
    {
        let (mut from, mut to) = lock_two(&accounts[2], &accounts[0]).unwrap();
        *from -= 1;
        *to += 1;
    }
    {
        let _parent = accounts[0].lock();
        let _child = accounts[1].lock_nested(1);
    }
    expect_none("wiring.account"); // lock_two and lock_nested are the sanctioned ways
    {
        let _first = accounts[0].lock();
        let _second = accounts[1].lock();
    }
    expect("wiring.account", ViolationKind::SelfDeadlock);
}

#[test]
fn recursive_read_is_reported_but_readers_on_other_threads_are_not() {
    let lock = RwLock::named("wiring.rw", 0);
    {
        let _r = lock.read();
        std::thread::scope(|s| {
            s.spawn(|| *lock.read()).join().unwrap();
        });
    }
    expect_none("wiring.rw");
    {
        let _r1 = lock.read();
        let _r2 = lock.read();
    }
    expect("wiring.rw", ViolationKind::RecursiveRead);
}

#[test]
fn try_lock_records_but_never_reports() {
    let a = Mutex::named("wiring.try.a", ());
    let b = Mutex::named("wiring.try.b", ());
    {
        let _a = a.lock();
        let _b = b.lock();
    }
    {
        let _b = b.lock();
        assert!(a.try_lock().is_some());
    }
    expect_none("wiring.try.");
}

#[test]
fn a_cycle_of_three_classes_is_reported_when_it_closes() {
    let a = Mutex::named("cycle3.a", ());
    let b = Mutex::named("cycle3.b", ());
    let c = Mutex::named("cycle3.c", ());
    {
        let _a = a.lock();
        let _b = b.lock();
    }
    {
        let _b = b.lock();
        let _c = c.lock();
    }
    expect_none("cycle3.");
    {
        let _c = c.lock();
        let _a = a.lock(); // C → A closes A → B → C → A
    }
    if let Some(text) = expect("cycle3.", ViolationKind::LockOrder) {
        for class in ["cycle3.a", "cycle3.b", "cycle3.c"] {
            assert!(text.contains(class), "{class} missing from {text}");
        }
    }
}

#[test]
fn two_upgradable_readers_on_one_thread_are_reported() {
    let lock = RwLock::named("upgradable.rw", 0);
    {
        let first = lock.upgradable_read();
        std::thread::scope(|s| {
            // Another thread's upgradable read is contention, not a
            // violation; the timed attempt records and never reports.
            s.spawn(|| {
                lock.try_upgradable_read_for(Duration::from_millis(1))
                    .is_none()
            });
        });
        drop(RwLockUpgradableReadGuard::upgrade(first));
    }
    expect_none("upgradable.rw");
    // A second blocking upgradable read on the same thread would wait for
    // the first forever. The rule lives in the checker, so show it through
    // the pseudo-lock API, which takes the class without blocking.
    let class = diag::Class::new("upgradable.pseudo");
    let _first = class.enter_with(diag::Access::Upgradable);
    let _second = class.enter_with(diag::Access::Upgradable);
    expect("upgradable.pseudo", ViolationKind::SelfDeadlock);
}

#[test]
fn read_after_read_cycles_are_not_violations() {
    let a = RwLock::named("readread.a", 0);
    let b = RwLock::named("readread.b", 0);
    {
        let _a = a.read();
        let _b = b.read();
    }
    {
        let _b = b.read();
        let _a = a.read();
    }
    expect_none("readread.");
    // A read of B then a write of A cannot deadlock with those reads
    // either (a reader of B never waits for a reader of B) ...
    {
        let _b = b.read();
        let _a = a.write();
    }
    expect_none("readread.");
    // ... but writing A and then B can: a thread holding B for reading
    // waits for A, while this one, holding A, waits for B.
    {
        let _a = a.write();
        let _b = b.write();
    }
    expect("readread.", ViolationKind::LockOrder);
}

#[test]
fn waiting_on_a_semaphore_counts_as_taking_its_class() {
    let a = Mutex::named("pseudo.sem.lock", ());
    let permits = Semaphore::named("pseudo.sem.permits", 2);
    {
        let _a = a.lock();
        let _p = permits.acquire(); // lock A, then wait on S
    }
    {
        // Two permits of one semaphore held together: legitimate.
        let _p1 = permits.acquire();
        let _p2 = permits.acquire();
    }
    expect_none("pseudo.sem.");
    {
        let _p = permits.acquire();
        let _a = a.lock(); // hold S's permit, then lock A
    }
    if let Some(text) = expect("pseudo.sem.", ViolationKind::LockOrder) {
        assert!(text.contains("pseudo.sem.permits") && text.contains("pseudo.sem.lock"));
    }
}

#[test]
fn waiting_on_a_condvar_while_holding_a_lock_its_notifier_needs_is_reported() {
    let config = Mutex::named("pseudo.cv.config", 0);
    let ready = Mutex::named("pseudo.cv.ready", false);
    let cv = Condvar::named("pseudo.cv.done");
    // A waiter that holds `config` while it waits, woken by a notifier that
    // does not (yet) need it: no deadlock, and nothing to report so far.
    thread::scope(|s| {
        s.spawn(|| {
            let _config = config.lock();
            let mut r = ready.lock();
            cv.wait_while(&mut r, |r| !*r);
        });
        s.spawn(|| {
            // The waiter may not be waiting yet; the flag makes that fine.
            *ready.lock() = true;
            cv.notify_all();
        });
    });
    expect_none("pseudo.cv.");
    // Later a notifier holds `config` when it notifies. Had the waiter been
    // waiting then, neither could ever go on: reported now, on its first
    // occurrence, with nobody waiting.
    {
        let _config = config.lock();
        cv.notify_one();
    }
    if let Some(text) = expect("pseudo.cv.", ViolationKind::LockOrder) {
        assert!(text.contains("pseudo.cv.config") && text.contains("pseudo.cv.done"));
        assert!(!text.contains("pseudo.cv.ready"), "{text}");
    }
}

#[test]
fn waiting_at_a_barrier_records_the_held_classes_before_it() {
    let held = Mutex::named("pseudo.barrier.held", ());
    let barrier = Barrier::named("pseudo.barrier.b", 1).unwrap();
    {
        let _held = held.lock();
        barrier.wait();
    }
    if diag::checking_enabled() {
        let dot = diag::lock_graph_dot();
        let node = |name: &str| {
            let line = dot
                .lines()
                .find(|l| l.contains(&format!("label=\"{name}\\n")))
                .unwrap_or_else(|| panic!("no node {name}:\n{dot}"));
            line.split_whitespace().next().unwrap().to_owned()
        };
        let edge = format!(
            "{} -> {} ",
            node("pseudo.barrier.held"),
            node("pseudo.barrier.b")
        );
        assert!(dot.contains(&edge), "no {edge}in\n{dot}");
    }
    expect_none("pseudo.barrier.");
}

#[test]
fn safe_patterns_are_never_reported() {
    const P: &str = "safe.";
    // 1. A consistent order, many times, on several threads.
    let a = Mutex::named("safe.a", 0);
    let b = Mutex::named("safe.b", 0);
    thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..100 {
                    let _a = a.lock();
                    *b.lock() += 1;
                }
            });
        }
    });
    // 2. Read/read in both orders.
    let r1 = RwLock::named("safe.r1", 0);
    let r2 = RwLock::named("safe.r2", 0);
    {
        let _x = r1.read();
        let _y = r2.read();
    }
    {
        let _y = r2.read();
        let _x = r1.read();
    }
    // 3. An inversion taken only with try_lock.
    {
        let _b = b.lock();
        drop(a.try_lock());
    }
    // 4. lock_two on one class, both argument orders.
    let acct: Vec<Mutex<i64>> = (0..2).map(|_| Mutex::named("safe.account", 10)).collect();
    drop(lock_two(&acct[0], &acct[1]).unwrap());
    drop(lock_two(&acct[1], &acct[0]).unwrap());
    // 5. lock_nested for parent/child of one class.
    {
        let _parent = acct[0].lock();
        let _child = acct[1].lock_nested(1);
    }
    // 6. A condvar wait with its own mutex.
    let ready = Mutex::named("safe.cv.mutex", false);
    let cv = Condvar::named("safe.cv");
    thread::scope(|s| {
        s.spawn(|| {
            *ready.lock() = true;
            cv.notify_all();
        });
        let mut g = ready.lock();
        while !*g {
            cv.wait(&mut g);
        }
    });
    // 7. Two permits of one semaphore.
    let sem = Semaphore::named("safe.sem", 2);
    {
        let _p = sem.acquire();
        let _q = sem.acquire();
    }
    // 8. Sequential, not nested: B then A with B released first.
    {
        drop(b.lock());
        drop(a.lock());
    }
    // 9. MutexGuard::unlocked lets the closure take the same class again.
    {
        let mut g = a.lock();
        MutexGuard::unlocked(&mut g, || *a.lock() += 1);
        *g += 1;
    }
    // 10. A barrier wait while holding nothing, by two threads.
    let barrier = Barrier::named("safe.barrier", 2).unwrap();
    thread::scope(|s| {
        s.spawn(|| barrier.wait());
        barrier.wait();
    });
    // 11. Async: one task at a time takes A then B; another takes B alone.
    let x = AsyncMutex::named("safe.async.x", 0);
    let y = AsyncMutex::named("safe.async.y", 0);
    futures::executor::block_on(async {
        let _x = x.lock().await;
        let _y = y.lock().await;
    });
    futures::executor::block_on(async {
        *y.lock().await += 1;
    });
    // 12. A notify while holding the condvar's own mutex, then a wait: the
    // wait gives that mutex up, so it is not held "while waiting".
    let flag = Mutex::named("safe.cv2.mutex", false);
    let cv2 = Condvar::named("safe.cv2");
    thread::scope(|s| {
        s.spawn(|| {
            let mut f = flag.lock();
            *f = true;
            cv2.notify_all();
        });
        let mut f = flag.lock();
        cv2.wait_while(&mut f, |f| !*f);
    });
    // 13. A downgraded write lock and then a read of another class.
    {
        let w = r1.write();
        let _r = strata::sync::RwLockWriteGuard::downgrade(w);
        let _other = r2.read();
    }
    expect_none(P);
}

#[test]
fn async_inversion_across_tasks_on_a_multi_thread_runtime_is_reported_once() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let a = Arc::new(AsyncMutex::named("tokio.a", 0));
    let b = Arc::new(AsyncMutex::named("tokio.b", 0));
    let (line_a, line_b) = rt.block_on({
        let (a, b) = (a.clone(), b.clone());
        async move {
            tokio::spawn(async move {
                let (mut ga, line_a) = (a.lock().await, line!());
                // Held across .await: the task may resume on another worker.
                tokio::time::sleep(Duration::from_millis(2)).await;
                tokio::task::yield_now().await;
                let (mut gb, line_b) = (b.lock().await, line!());
                *ga += 1;
                *gb += 1;
                (line_a, line_b)
            })
            .await
            .unwrap()
        }
    });
    expect_none("tokio.");
    rt.block_on({
        let (a, b) = (a.clone(), b.clone());
        async move {
            tokio::spawn(async move {
                let mut gb = b.lock().await;
                tokio::task::yield_now().await;
                let mut ga = a.lock().await; // B then A: the inversion
                *ga += 1;
                *gb += 1;
            })
            .await
            .unwrap();
        }
    });
    if let Some(text) = expect("tokio.", ViolationKind::LockOrder) {
        for line in [line_a, line_b] {
            assert!(
                text.contains(&format!("tests/diag.rs:{line}:")),
                "the .await-spanning site on line {line} is named: {text}"
            );
        }
        assert!(text.contains("task #"), "tasks are named: {text}");
    }
}

#[test]
fn watchdog_reports_a_real_deadlock_without_disturbing_the_waiters() {
    let a = Arc::new(Mutex::named("watchdog.a", 0));
    let b = Arc::new(Mutex::named("watchdog.b", 0));
    let give_up = Arc::new(AtomicBool::new(false));
    let both_hold = Arc::new(std::sync::Barrier::new(2));
    let watchdog = diag::watchdog(Duration::from_millis(5));
    // Left holds A and waits for B with timed attempts until told to give
    // up (the side channel); right holds B and waits for A, blocking.
    let left = thread::Builder::new()
        .name("watchdog-left".into())
        .spawn({
            let (a, b, give_up, both_hold) =
                (a.clone(), b.clone(), give_up.clone(), both_hold.clone());
            move || {
                let mut ga = a.lock();
                both_hold.wait();
                loop {
                    if let Some(mut gb) = b.try_lock_for(Duration::from_millis(20)) {
                        *gb += 1;
                        break;
                    }
                    if give_up.load(Ordering::SeqCst) {
                        break;
                    }
                }
                *ga += 1;
            }
        })
        .unwrap();
    let right = thread::Builder::new()
        .name("watchdog-right".into())
        .spawn({
            let (a, b, both_hold) = (a.clone(), b.clone(), both_hold.clone());
            move || {
                let mut gb = b.lock();
                both_hold.wait();
                *a.lock() += 1; // blocks until left gives A up
                *gb += 1;
            }
        })
        .unwrap();
    let mut found: Option<Violation> = None;
    if diag::checking_enabled() {
        let deadline = Instant::now() + Duration::from_secs(20);
        while found.is_none() && Instant::now() < deadline {
            found = take("watchdog.")
                .into_iter()
                .find(|v| v.kind() == ViolationKind::Deadlock);
            thread::sleep(Duration::from_millis(5));
        }
        let v = found.as_ref().expect("the watchdog reported the deadlock");
        let text = v.to_string();
        for name in [
            "watchdog-left",
            "watchdog-right",
            "watchdog.a",
            "watchdog.b",
        ] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
        assert_eq!(v.edges().len(), 2);
    }
    // Nothing was destroyed: both threads are still waiting, and finish
    // once the deadlock is broken from outside.
    assert!(!left.is_finished() && !right.is_finished());
    give_up.store(true, Ordering::SeqCst);
    left.join().unwrap();
    right.join().unwrap();
    assert_eq!(*a.lock(), 2);
    assert_eq!(*b.lock(), 1);
    drop(watchdog);
    take("watchdog.");
}

#[test]
fn metrics_count_acquisitions_contention_and_holders() {
    let m = Arc::new(Mutex::named("metrics.m", 0u64));
    for _ in 0..10 {
        *m.lock() += 1;
    }
    let held = m.lock();
    let waiter = thread::spawn({
        let m = m.clone();
        move || *m.lock() += 1
    });
    thread::sleep(Duration::from_millis(20));
    drop(held);
    waiter.join().unwrap();
    let all = diag::metrics();
    if !diag::checking_enabled() {
        assert!(all.is_empty());
        return;
    }
    let mine = all
        .iter()
        .find(|c| c.class.name() == Some("metrics.m"))
        .expect("the class is listed");
    assert!(mine.acquisitions >= 12, "{mine:?}");
    assert!(mine.contended >= 1, "{mine:?}");
    assert!(mine.max_wait > Duration::ZERO && mine.total_wait >= mine.max_wait);
    assert_eq!(mine.holders, 0);
}

#[test]
fn the_dot_graph_draws_the_violating_edge_in_red() {
    let a = Mutex::named("dot.a", ());
    let b = Mutex::named("dot.b", ());
    {
        let _a = a.lock();
        let _b = b.lock();
    }
    {
        let _b = b.lock();
        let _a = a.lock();
    }
    let dot = diag::lock_graph_dot();
    if diag::checking_enabled() {
        assert!(dot.starts_with("digraph"));
        assert!(dot.contains("dot.a") && dot.contains("dot.b"));
        assert!(dot.contains("color=red"));
    }
    take("dot.");
}

#[test]
fn with_checking_off_a_mutex_is_exactly_a_parking_lot_mutex() {
    if !diag::checking_enabled() {
        assert_eq!(
            size_of::<Mutex<u64>>(),
            size_of::<parking_lot::Mutex<u64>>()
        );
        assert_eq!(
            size_of::<RwLock<u64>>(),
            size_of::<parking_lot::RwLock<u64>>()
        );
    } else {
        assert!(size_of::<Mutex<u64>>() > size_of::<parking_lot::Mutex<u64>>());
    }
}

#[test]
fn watchdog_sees_tasks_deadlocked_on_async_mutexes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let a = Arc::new(AsyncMutex::named("asyncwd.a", 0));
    let b = Arc::new(AsyncMutex::named("asyncwd.b", 0));
    let both_hold = Arc::new(tokio::sync::Barrier::new(2));
    // Both tasks past the barrier: each holds its first lock and goes for
    // the other. Only then may one be cancelled (before that, cancelling
    // one would leave the other at the barrier forever).
    let past_barrier = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (left, right) = rt.block_on(async {
        let left = tokio::spawn({
            let (a, b, both_hold) = (a.clone(), b.clone(), both_hold.clone());
            let past_barrier = past_barrier.clone();
            async move {
                let _ga = a.lock().await;
                both_hold.wait().await;
                past_barrier.fetch_add(1, Ordering::SeqCst);
                *b.lock().await += 1;
            }
        });
        let right = tokio::spawn({
            let (a, b, both_hold) = (a.clone(), b.clone(), both_hold.clone());
            let past_barrier = past_barrier.clone();
            async move {
                let _gb = b.lock().await;
                both_hold.wait().await;
                past_barrier.fetch_add(1, Ordering::SeqCst);
                *a.lock().await += 1;
            }
        });
        (left, right)
    });
    if diag::checking_enabled() {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut found = Vec::new();
        while found.is_empty() && Instant::now() < deadline {
            found = diag::deadlocks()
                .into_iter()
                .filter(|v| v.to_string().contains("asyncwd."))
                .collect();
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(found.len(), 1, "one cycle of two tasks");
        let text = found[0].to_string();
        assert!(text.contains("asyncwd.a") && text.contains("asyncwd.b"));
        assert!(text.contains("task #"), "{text}");
    }
    while past_barrier.load(Ordering::SeqCst) < 2 {
        thread::sleep(Duration::from_millis(1));
    }
    // Cancelling one task drops its guard, and the other finishes.
    left.abort();
    rt.block_on(async {
        assert!(left.await.unwrap_err().is_cancelled());
        right.await.unwrap();
    });
    assert_eq!(rt.block_on(async { *a.lock().await }), 1);
    // The order checker saw the inversion too (its report went to the
    // callback); drop it so other tests do not see it.
    take("asyncwd.");
}
