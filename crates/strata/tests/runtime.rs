//! L3 — the work-stealing runtime: join, install, spawn/Task, block_on,
//! shutdown, metrics.

mod support;

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use strata::runtime::{BuildError, Runtime, block_on};
use strata::task::{CancelToken, Cancelled};

fn rt(n: usize) -> Runtime {
    Runtime::builder().threads(n).build().unwrap()
}

fn fib(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let (a, b) = strata::join(|| fib(n - 1), || fib(n - 2));
    a + b
}

fn fib_seq(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib_seq(n - 1) + fib_seq(n - 2)
    }
}

struct Node {
    val: u64,
    left: Option<Box<Node>>,
    right: Option<Box<Node>>,
}

impl Node {
    fn tree(depth: u32, next: &mut u64) -> Option<Box<Node>> {
        if depth == 0 {
            return None;
        }
        *next += 1;
        let val = *next;
        Some(Box::new(Node {
            val,
            left: Node::tree(depth - 1, next),
            right: Node::tree(depth - 1, next),
        }))
    }
}

fn tree_sum(n: &Node) -> u64 {
    let (l, r) = strata::join(
        || n.left.as_deref().map_or(0, tree_sum),
        || n.right.as_deref().map_or(0, tree_sum),
    );
    n.val + l + r
}

#[test]
fn join_fib_matches_sequential_on_1_2_and_4_threads() {
    for threads in [1, 2, 4] {
        let rt = rt(threads);
        for n in [0, 1, 2, 10, 22] {
            assert_eq!(rt.install(|| fib(n)), fib_seq(n), "fib({n}) on {threads}");
        }
    }
}

#[test]
fn join_from_outside_any_pool_uses_the_global_runtime() {
    assert_eq!(fib(20), 6765);
    let (a, b) = strata::join(|| std::thread::current().name().map(String::from), || 2);
    assert!(a.unwrap().starts_with("strata-global-"));
    assert_eq!(b, 2);
}

#[test]
fn join_tree_sum_is_exact() {
    let mut next = 0;
    let root = Node::tree(16, &mut next).unwrap();
    let expect = next * (next + 1) / 2;
    for threads in [1, 2, 3] {
        assert_eq!(rt(threads).install(|| tree_sum(&root)), expect);
    }
}

#[test]
fn deep_join_recursion_does_not_overflow_the_stack() {
    // A degenerate tree (a list) 10 000 levels deep, with a join at every
    // level, on two workers that steal from each other.
    fn depth_sum(d: u64) -> u64 {
        if d == 0 {
            return 0;
        }
        let (a, b) = strata::join(|| depth_sum(d - 1), || d);
        a + b
    }
    let rt = rt(2);
    let d = 10_000u64;
    assert_eq!(rt.install(|| depth_sum(d)), d * (d + 1) / 2);
    // And `join` nested in the *second* closure (what thieves run).
    fn right_deep(d: u64) -> u64 {
        if d == 0 {
            return 0;
        }
        let (a, b) = strata::join(|| d, || right_deep(d - 1));
        a + b
    }
    assert_eq!(rt.install(|| right_deep(d)), d * (d + 1) / 2);
}

/// Runs `f` inside `depth` nested joins, each nested in the half that runs
/// inline, so that at `depth >= 4` the private ring is full and `f`'s own
/// join takes the fast path (no job is even offered).
fn nested<R: Send>(depth: u32, f: &(dyn Fn() -> R + Sync)) -> R {
    if depth == 0 {
        return f();
    }
    strata::join(|| (), || nested(depth - 1, f)).1
}

#[test]
fn a_join_panic_is_raised_after_both_halves_and_the_pool_survives() {
    // On two workers (the other half may be stolen) and on one (it never
    // is), at the top (offered) and deep in a recursion (the fast path).
    for threads in [1, 2] {
        let rt = rt(threads);
        for depth in [0, 6] {
            let other_done = AtomicBool::new(false);
            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                rt.install(|| {
                    nested(depth, &|| {
                        strata::join(
                            || panic!("left failed"),
                            || {
                                std::thread::sleep(Duration::from_millis(5));
                                other_done.store(true, Ordering::SeqCst);
                            },
                        )
                    })
                })
            }));
            assert_eq!(*r.unwrap_err().downcast::<&str>().unwrap(), "left failed");
            assert!(
                other_done.load(Ordering::SeqCst),
                "{threads}t depth {depth}: right half"
            );
            let other_done = AtomicBool::new(false);
            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                rt.install(|| {
                    nested(depth, &|| {
                        strata::join(
                            || {
                                std::thread::sleep(Duration::from_millis(5));
                                other_done.store(true, Ordering::SeqCst);
                            },
                            || -> u32 { panic!("right failed") },
                        )
                    })
                })
            }));
            assert_eq!(*r.unwrap_err().downcast::<&str>().unwrap(), "right failed");
            assert!(
                other_done.load(Ordering::SeqCst),
                "{threads}t depth {depth}: left half"
            );
            // Both panic: one of the two is re-raised, nothing aborts.
            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                rt.install(|| {
                    nested(depth, &|| {
                        strata::join(|| -> u8 { panic!("a") }, || -> u8 { panic!("b") })
                    })
                })
            }));
            let msg = *r.unwrap_err().downcast::<&str>().unwrap();
            assert!(msg == "a" || msg == "b", "{msg}");
        }
        // Still usable, and every worker still alive.
        assert_eq!(rt.install(|| fib(18)), fib_seq(18));
    }
}

#[test]
fn stress_random_trees_on_several_pools() {
    // Irregular recursion: the split point depends on the values.
    fn irregular(lo: u64, hi: u64) -> u64 {
        if hi - lo < 8 {
            return (lo..hi).map(|x| x * x % 7).sum();
        }
        let mid = lo + (hi - lo) * ((lo % 5) + 1) / 7 + 1;
        let (a, b) = strata::join(|| irregular(lo, mid), || irregular(mid, hi));
        a + b
    }
    let expect: u64 = (0..50_000u64).map(|x| x * x % 7).sum();
    for threads in [2, 3] {
        let rt = rt(threads);
        for _ in 0..20 {
            assert_eq!(rt.install(|| irregular(0, 50_000)), expect);
        }
    }
    // Several outside threads entering one pool at once.
    let rt = rt(2);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    assert_eq!(rt.install(|| irregular(0, 50_000)), expect);
                }
            });
        }
    });
}

#[test]
fn install_from_a_worker_of_another_runtime() {
    let a = rt(1);
    let b = Runtime::builder().threads(1).name("other").build().unwrap();
    let name = a.install(|| b.install(|| std::thread::current().name().map(String::from)));
    assert_eq!(name.as_deref(), Some("other-0"));
    // On its own worker, install just runs.
    assert_eq!(a.install(|| a.install(|| fib(10))), 55);
}

#[test]
fn builder_options() {
    assert!(matches!(
        Runtime::builder().threads(0).build(),
        Err(BuildError::ZeroThreads)
    ));
    // A NUL byte in the name is a typed error, not a panic in std's spawn.
    let r = panic::catch_unwind(|| Runtime::builder().threads(2).name("a\0b").build());
    match r {
        Ok(Err(BuildError::InvalidName(name))) => assert_eq!(name, "a\0b"),
        Ok(other) => panic!("expected InvalidName, got {other:?}"),
        Err(_) => panic!("build panicked on a NUL byte in the name"),
    }
    let rt = Runtime::builder()
        .threads(3)
        .name("custom")
        .stack_size(1 << 20)
        .pin_threads(true)
        .build()
        .unwrap();
    assert_eq!(rt.threads(), 3);
    let names = rt.install(|| std::thread::current().name().map(String::from));
    assert!(names.unwrap().starts_with("custom-"));
    // Pinned workers still cooperate.
    assert_eq!(rt.install(|| fib(20)), 6765);
    assert!(Runtime::new().unwrap().threads() >= 1);
}

#[test]
fn spawn_runs_futures_and_task_is_a_future() {
    let rt = rt(2);
    let t = rt.spawn(async { 21 * 2 });
    assert_eq!(rt.block_on(t), Ok(42));
    // Tasks awaiting tasks.
    let v = rt.block_on(async {
        let inner: Vec<_> = (0..10u64)
            .map(|i| strata::runtime::spawn(async move { i }))
            .collect();
        let mut sum = 0;
        for t in inner {
            sum += t.await.unwrap();
        }
        sum
    });
    assert_eq!(v, 45);
    assert_eq!(rt.metrics().tasks_spawned, 11);
}

type Trigger = Arc<Mutex<(bool, Option<Waker>)>>;

/// Completes when `fire` is set; counts polls and drops.
struct Gate {
    fire: Trigger,
    dropped: Arc<AtomicUsize>,
}

impl Gate {
    fn new() -> (Self, Trigger, Arc<AtomicUsize>) {
        let fire = Arc::new(Mutex::new((false, None)));
        let dropped = Arc::new(AtomicUsize::new(0));
        (
            Gate {
                fire: fire.clone(),
                dropped: dropped.clone(),
            },
            fire,
            dropped,
        )
    }
}

impl Future for Gate {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut g = self.fire.lock().unwrap();
        if g.0 {
            Poll::Ready(())
        } else {
            g.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

fn fire(g: &Mutex<(bool, Option<Waker>)>) {
    let w = {
        let mut g = g.lock().unwrap();
        g.0 = true;
        g.1.take()
    };
    if let Some(w) = w {
        w.wake();
    }
}

#[test]
fn dropping_a_task_cancels_it_and_its_side_effect_never_happens() {
    let rt = rt(2);
    let (gate, fire_it, dropped) = Gate::new();
    let effect = Arc::new(AtomicBool::new(false));
    let task = {
        let effect = effect.clone();
        rt.spawn(async move {
            gate.await;
            effect.store(true, Ordering::SeqCst);
        })
    };
    // Let it start and block on the gate.
    while fire_it.lock().unwrap().1.is_none() {
        std::thread::yield_now();
    }
    // The waker is stored inside `poll`, so the task may still be running
    // when the handle is dropped: the worker then drops the future right
    // after that poll. Wait for it (bounded) instead of assuming an order.
    drop(task);
    let deadline = Instant::now() + Duration::from_secs(10);
    while dropped.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the future was never dropped");
        std::thread::yield_now();
    }
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the future was dropped once"
    );
    fire(&fire_it);
    // Give a (wrongly) still-live task every chance to run.
    rt.install(|| fib(15));
    std::thread::sleep(Duration::from_millis(20));
    assert!(!effect.load(Ordering::SeqCst), "the cancelled task ran on");
    // (The task leaves the live set just after its future is dropped.)
    while rt.metrics().live_tasks != 0 {
        assert!(Instant::now() < deadline, "the cancelled task stayed live");
        std::thread::yield_now();
    }
}

#[test]
fn dropping_a_task_that_never_started_cancels_it() {
    // One worker, kept busy, so the spawned task is still queued.
    let rt = rt(1);
    let release = Arc::new(AtomicBool::new(false));
    let blocker = {
        let release = release.clone();
        rt.spawn(async move {
            while !release.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
        })
    };
    let effect = Arc::new(AtomicBool::new(false));
    let t = {
        let effect = effect.clone();
        rt.spawn(async move { effect.store(true, Ordering::SeqCst) })
    };
    drop(t);
    release.store(true, Ordering::SeqCst);
    blocker.join().unwrap();
    rt.install(|| ());
    assert!(!effect.load(Ordering::SeqCst));
}

#[test]
fn cancel_then_await_gives_cancelled_and_panics_are_reraised() {
    let rt = rt(2);
    let t = rt.spawn(std::future::pending::<u8>());
    t.cancel();
    assert_eq!(rt.block_on(t), Err(Cancelled));
    let done = rt.spawn(async { 5 });
    while !done.is_finished() {
        std::thread::yield_now();
    }
    done.cancel(); // too late: the output is kept
    assert_eq!(done.join(), Ok(5));
    let boom = rt.spawn(async { panic!("task exploded") });
    let r = panic::catch_unwind(AssertUnwindSafe(|| boom.join()));
    assert_eq!(*r.unwrap_err().downcast::<&str>().unwrap(), "task exploded");
    // The worker that ran it survived.
    assert_eq!(rt.spawn(async { 1 }).join(), Ok(1));
}

#[test]
fn block_on_parks_until_woken_from_another_thread() {
    let token = CancelToken::new();
    let t2 = token.clone();
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        t2.cancel();
    });
    block_on(token.cancelled());
    assert!(token.is_cancelled());
    h.join().unwrap();
    // Works with strata's async locks too.
    let m = strata::sync::AsyncMutex::new(1);
    assert_eq!(block_on(async { *m.lock().await + 1 }), 2);
}

#[test]
fn woken_tasks_ping_pong_without_losing_wakeups() {
    // Two tasks hand a counter back and forth through strata's async
    // mutex + a turn flag; every hand-off is a cross-task wake.
    let rt = rt(2);
    let state = Arc::new(strata::sync::AsyncMutex::new((0u64, 0usize)));
    let rounds = 2_000u64;
    let tasks: Vec<_> = (0..2usize)
        .map(|me| {
            let state = state.clone();
            rt.spawn(async move {
                loop {
                    let mut g = state.lock().await;
                    if g.0 >= rounds {
                        return;
                    }
                    if g.1 == me {
                        g.0 += 1;
                        g.1 = 1 - me;
                    }
                    drop(g);
                    YieldNow(false).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.join().unwrap();
    }
    assert_eq!(rt.block_on(async { state.lock().await.0 }), rounds);
}

struct YieldNow(bool);
impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[test]
fn stress_many_spawns_all_run_exactly_once() {
    let rt = rt(3);
    let count = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..5_000u64)
        .map(|i| {
            let count = count.clone();
            rt.spawn(async move {
                YieldNow(false).await;
                count.fetch_add(i, Ordering::Relaxed);
                i
            })
        })
        .collect();
    let sum: u64 = tasks.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(sum, 5_000 * 4_999 / 2);
    assert_eq!(count.load(Ordering::Relaxed), sum);
    assert_eq!(rt.metrics().live_tasks, 0);
}

#[test]
fn shutdown_cancels_unfinished_tasks_and_their_handles_resolve() {
    let rt = rt(2);
    let (gate, _fire, dropped) = Gate::new();
    let pending = rt.spawn(gate);
    let queued: Vec<_> = (0..50)
        .map(|_| rt.spawn(std::future::pending::<()>()))
        .collect();
    while rt.metrics().injector_depth > 0 {
        std::thread::yield_now();
    }
    rt.shutdown();
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the future was dropped at shutdown"
    );
    assert_eq!(block_on(pending), Err(Cancelled));
    for t in queued {
        assert_eq!(t.join(), Err(Cancelled));
    }
}

#[test]
fn idle_workers_go_to_sleep() {
    let rt = rt(2);
    rt.install(|| fib(20));
    // Behaviour, not timing: eventually every worker is parked.
    let deadline = Instant::now() + Duration::from_secs(20);
    while rt.metrics().sleeping < 2 {
        assert!(Instant::now() < deadline, "workers never went to sleep");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(rt.metrics().parks >= 1);
}

#[test]
fn metrics_count_steals_and_promotions_under_parallel_joins() {
    let rt = rt(2);
    let mut next = 0;
    let root = Node::tree(18, &mut next).unwrap();
    for _ in 0..5 {
        rt.install(|| tree_sum(&root));
    }
    let m = rt.metrics();
    assert_eq!(m.workers, 2);
    assert_eq!(m.worker_depths.len(), 2);
    assert!(m.tasks_run >= 5);
    // With two workers and 2^18 nodes someone was idle and asked for work.
    assert!(m.promotions >= 1, "{m:?}");
}

fn threads_of_this_process() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn dropping_a_runtime_with_pending_work_neither_hangs_nor_leaks_threads() {
    if support::run_isolated("dropping_a_runtime_with_pending_work_neither_hangs_nor_leaks_threads")
    {
        return;
    }
    let before = threads_of_this_process();
    for _ in 0..3 {
        let rt = rt(3);
        assert_eq!(threads_of_this_process(), before + 3);
        // Pending futures (never woken), queued futures, and CPU work in
        // flight when the runtime is dropped.
        let pending: Vec<_> = (0..100)
            .map(|_| rt.spawn(std::future::pending::<()>()))
            .collect();
        let busy: Vec<_> = (0..20)
            .map(|i| rt.spawn(async move { fib_seq(18 + i % 3) }))
            .collect();
        drop(rt);
        for t in pending {
            assert_eq!(t.join(), Err(Cancelled));
        }
        for t in busy {
            // Finished before the shutdown, or cancelled by it.
            let _ = t.join();
        }
    }
    // Joined threads leave /proc a moment after pthread_join returns.
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads_of_this_process() != before {
        assert!(
            Instant::now() < deadline,
            "threads leaked: {} before, {} after",
            before,
            threads_of_this_process()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn waiting_for_a_task_on_its_own_single_worker_does_not_deadlock() {
    let rt = rt(1);
    // The task is queued on the only worker, which then waits for it: it
    // runs the task itself instead of blocking.
    let v = rt.install(|| {
        let t = strata::runtime::spawn(async { 5 });
        t.join().unwrap() + 1
    });
    assert_eq!(v, 6);
    // The same from inside a task, with a cross-task wake-up in between.
    let token = CancelToken::new();
    let t2 = token.clone();
    let outer = rt.spawn(async move {
        let waiter = strata::runtime::spawn(async move {
            t2.cancelled().await;
            7
        });
        let canceller = strata::runtime::spawn(async move { token.cancel() });
        canceller.join().unwrap();
        waiter.join().unwrap()
    });
    assert_eq!(outer.join(), Ok(7));
}

#[test]
fn a_runtime_dropped_from_inside_its_own_task_shuts_down_cleanly() {
    let holder: Arc<Mutex<Option<Runtime>>> = Arc::new(Mutex::new(Some(rt(2))));
    let pending = holder
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .spawn(std::future::pending::<()>());
    let h = holder.clone();
    let killer = holder.lock().unwrap().as_ref().unwrap().spawn(async move {
        let rt = h.lock().unwrap().take().unwrap();
        drop(rt); // joins the other worker; cannot join this one
        "dropped"
    });
    assert_eq!(killer.join(), Ok("dropped"));
    assert_eq!(pending.join(), Err(Cancelled));
}

#[test]
fn a_yielding_task_does_not_starve_others_on_one_worker() {
    let rt = rt(1);
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = {
        let stop = stop.clone();
        rt.spawn(async move {
            let mut yields = 0u64;
            while !stop.load(Ordering::SeqCst) {
                YieldNow(false).await;
                yields += 1;
            }
            yields
        })
    };
    // Spawned after the spinner started: it must still get a turn.
    let stopper = {
        let stop = stop.clone();
        rt.spawn(async move { stop.store(true, Ordering::SeqCst) })
    };
    stopper.join().unwrap();
    assert!(spinner.join().unwrap() >= 1);
    // Two tasks waking each other (the LIFO slot) do not starve a third.
    let flag = Arc::new(AtomicBool::new(false));
    let ping = Arc::new(strata::sync::AsyncMutex::new(0u64));
    let pair: Vec<_> = (0..2)
        .map(|_| {
            let (flag, ping) = (flag.clone(), ping.clone());
            rt.spawn(async move {
                while !flag.load(Ordering::SeqCst) {
                    *ping.lock().await += 1;
                    YieldNow(false).await;
                }
            })
        })
        .collect();
    let third = {
        let flag = flag.clone();
        rt.spawn(async move { flag.store(true, Ordering::SeqCst) })
    };
    third.join().unwrap();
    for t in pair {
        t.join().unwrap();
    }
}

#[test]
fn injected_work_is_not_starved_by_a_self_refilling_deque() {
    // A task that keeps spawning successors keeps its worker's deque full;
    // work injected from outside must still run.
    let rt = rt(1);
    let stop = Arc::new(AtomicBool::new(false));
    fn chain(stop: Arc<AtomicBool>) -> strata::runtime::Task<()> {
        strata::runtime::spawn(async move {
            if !stop.load(Ordering::SeqCst) {
                // Each link spawns the next before finishing; the handle is
                // kept inside the next link's future chain via a join.
                let next = chain(stop.clone());
                let _ = next.await;
            }
        })
    }
    let head = {
        let stop = stop.clone();
        rt.spawn(async move {
            let _ = chain(stop).await;
        })
    };
    let outside = {
        let stop = stop.clone();
        rt.spawn(async move { stop.store(true, Ordering::SeqCst) })
    };
    outside.join().unwrap();
    head.join().unwrap();
}

#[test]
fn a_runtime_with_endlessly_rescheduling_tasks_still_shuts_down() {
    let rt = rt(2);
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            rt.spawn(async {
                loop {
                    YieldNow(false).await;
                }
            })
        })
        .collect();
    // Let them run a while, then drop the runtime: it must return.
    std::thread::sleep(Duration::from_millis(20));
    drop(rt);
    for t in spinners {
        assert_eq!(t.join(), Err(Cancelled));
    }
}

#[test]
fn dropping_a_runtime_whose_task_blocks_on_a_pending_task_does_not_hang() {
    let rt = rt(1);
    let started = Arc::new(AtomicBool::new(false));
    let outer = {
        let started = started.clone();
        rt.spawn(async move {
            let never = strata::runtime::spawn(std::future::pending::<u8>());
            started.store(true, Ordering::SeqCst);
            // Blocks this (only) worker on a task that never finishes.
            never.join()
        })
    };
    while !started.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    drop(rt);
    // The inner task was cancelled, which let the outer one finish.
    assert!(matches!(outer.join(), Ok(Err(Cancelled)) | Err(Cancelled)));
}

#[test]
fn enter_guards_dropped_out_of_order_leave_the_right_runtime_current() {
    let a = Runtime::builder()
        .threads(1)
        .name("enter-a")
        .build()
        .unwrap();
    let b = Runtime::builder()
        .threads(1)
        .name("enter-b")
        .build()
        .unwrap();
    let current = || {
        strata::runtime::spawn(async { std::thread::current().name().map(String::from) })
            .join()
            .unwrap()
            .unwrap()
    };
    let ga = a.enter();
    let gb = b.enter();
    assert_eq!(current(), "enter-b-0");
    drop(ga); // the outer guard first: `b` stays current
    assert_eq!(current(), "enter-b-0");
    drop(gb);
    assert!(current().starts_with("strata-global-"));
}

/// The CPUs the calling thread may run on.
#[cfg(target_os = "linux")]
fn affinity_of_this_thread() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer and size describe `set`, which outlives the call.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(rc, 0, "sched_getaffinity failed");
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `i` is below CPU_SETSIZE and `set` is initialised.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn pin_threads_pins_worker_i_to_the_ith_allowed_cpu() {
    let allowed = affinity_of_this_thread();
    // Pinning is best effort: where the OS forbids it, there is nothing
    // to check.
    let first = allowed[0];
    let can_pin = std::thread::spawn(move || {
        // SAFETY: as above.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `first` came from the mask, below CPU_SETSIZE.
        unsafe { libc::CPU_SET(first, &mut set) };
        // SAFETY: the pointer and size describe `set`.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
    })
    .join()
    .unwrap();
    if !can_pin {
        eprintln!("skipped: this environment does not allow setting thread affinity");
        return;
    }
    let n = allowed.len().clamp(2, 8);
    let rt = Runtime::builder()
        .threads(n)
        .name("pinned")
        .pin_threads(true)
        .build()
        .unwrap();
    // One child per worker, each held until every worker has reported its
    // own mask (read back from inside a job).
    let seen = Mutex::new(std::collections::HashMap::new());
    rt.install(|| {
        strata::task::scope(|s| {
            for _ in 0..n {
                let seen = &seen;
                s.spawn(move |_| {
                    let name = std::thread::current().name().unwrap().to_string();
                    seen.lock().unwrap().insert(name, affinity_of_this_thread());
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while seen.lock().unwrap().len() < n && Instant::now() < deadline {
                        std::thread::yield_now();
                    }
                    Ok(())
                });
            }
        })
    })
    .unwrap();
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), n, "not every worker ran a child: {seen:?}");
    for i in 0..n {
        assert_eq!(
            seen[&format!("pinned-{i}")],
            vec![allowed[i % allowed.len()]],
            "worker {i}: {seen:?}"
        );
    }
    // Without pinning the workers keep the process's mask.
    let free = Runtime::builder().threads(1).build().unwrap();
    assert_eq!(free.install(affinity_of_this_thread), allowed);
}

/// Waits until every worker sleeps and the park count has settled.
///
/// A worker registers as a sleeper a few instructions before it counts its
/// park, so one snapshot can show it asleep with its park not yet counted:
/// the count must stay the same over several snapshots, all with every
/// worker asleep. (Only a worker descheduled between those two statements
/// for the whole window could fool this; no timing is asserted.)
fn settled_parks(rt: &Runtime) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stable = 0;
    let mut last = None;
    loop {
        let m = rt.metrics();
        if m.sleeping == m.workers && last == Some(m.parks) {
            stable += 1;
            if stable == 4 {
                return m.parks;
            }
        } else {
            stable = 0;
        }
        last = (m.sleeping == m.workers).then_some(m.parks);
        assert!(Instant::now() < deadline, "workers never settled: {m:?}");
        std::thread::sleep(Duration::from_millis(40));
    }
}

#[test]
fn a_task_woken_into_the_lifo_slot_wakes_no_other_worker() {
    let rt = rt(2);
    let (gate, fire_it, _) = Gate::new();
    let waiter = rt.spawn(gate);
    while fire_it.lock().unwrap().1.is_none() {
        std::thread::yield_now();
    }
    let before = settled_parks(&rt);
    // Woken during another task's poll, `waiter` goes to that worker's LIFO
    // slot, which no other worker can take: only the worker woken for the
    // firing task runs (and parks again); the other one sleeps on.
    let firer = {
        let fire_it = fire_it.clone();
        rt.spawn(async move { fire(&fire_it) })
    };
    firer.join().unwrap();
    waiter.join().unwrap();
    let after = settled_parks(&rt);
    assert_eq!(after - before, 1, "a worker was woken for nothing");
}

#[test]
fn try_global_starts_one_global_runtime_however_many_threads_race_for_it() {
    let rts: Vec<usize> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| Runtime::try_global().unwrap() as *const Runtime as usize))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let global = Runtime::global() as *const Runtime as usize;
    assert!(rts.iter().all(|&p| p == global), "{rts:?} vs {global}");
    let name = Runtime::try_global()
        .unwrap()
        .install(|| std::thread::current().name().map(str::to_owned));
    assert!(name.unwrap().starts_with("strata-global-"));
}
