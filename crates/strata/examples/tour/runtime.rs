//! L3/L4 — the work-stealing runtime, scopes and parallel iteration.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use strata::par::{ParRange, ParSlice};
use strata::runtime::Runtime;
use strata::task::{self, TaskError};

use crate::section;

/// Runs this layer's sections.
pub fn run() {
    fork_join();
    failing_scope();
    parallel_iteration();
    tasks();
}

fn fib(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let (a, b) = strata::join(|| fib(n - 1), || fib(n - 2));
    a + b
}

/// L3: join on a two-worker pool.
fn fork_join() {
    section("L3 runtime: work-stealing join");
    let rt = Runtime::builder().threads(2).name("tour").build().unwrap();
    let v = rt.install(|| fib(27));
    assert_eq!(v, 196_418);
    assert_eq!(rt.metrics().workers, 2);
    println!(
        "fib(27) = {v} with a join at each of its 196417 calls, on 2 workers; \
         a join is offered to the other worker only when it is idle"
    );
}

#[derive(Debug, thiserror::Error)]
#[error("shard {0} is corrupt")]
struct Corrupt(usize);

/// L4: a scope whose failing child cancels its siblings.
fn failing_scope() {
    section("L4 task: a failing child cancels its siblings");
    let rt = Runtime::builder().threads(2).build().unwrap();
    let cancelled = AtomicUsize::new(0);
    let started = AtomicUsize::new(0);
    let result = rt.install(|| {
        task::scope(|s| {
            // Three long scans that check for cancellation as they go...
            for _ in 0..3 {
                let (cancelled, started) = (&cancelled, &started);
                s.spawn(move |cx| {
                    started.fetch_add(1, Ordering::SeqCst);
                    for _ in 0..10_000 {
                        if let Err(c) = cx.check() {
                            cancelled.fetch_add(1, Ordering::SeqCst);
                            return Err(c.into());
                        }
                        std::thread::sleep(Duration::from_micros(100));
                    }
                    Ok(())
                });
            }
            // ...and a check that fails once a scan is under way.
            let started = &started;
            s.spawn(move |_| {
                while started.load(Ordering::SeqCst) == 0 {
                    std::thread::yield_now();
                }
                Err(TaskError::failed(Corrupt(2)))
            });
        })
    });
    let err = result.unwrap_err();
    let corrupt = err
        .downcast_ref::<Corrupt>()
        .expect("the first error is returned");
    assert_eq!(corrupt.0, 2);
    let ran = started.load(Ordering::SeqCst);
    let stopped = cancelled.load(Ordering::SeqCst);
    // Every scan that started stopped early; the others never ran.
    assert!(ran >= 1);
    assert_eq!(stopped, ran);
    println!(
        "scope returned the first error ({err}) after all children stopped: \
         {stopped} running scan(s) saw the cancellation, {} never started",
        3 - ran
    );
}

/// L4: par_map and friends.
fn parallel_iteration() {
    section("L4 par: par_map, par_filter, par_reduce");
    let words: Vec<String> = (0..10_000).map(|i| format!("word{i}")).collect();
    let lens = words.par_map(|w| w.len());
    assert_eq!(lens, words.iter().map(|w| w.len()).collect::<Vec<_>>());
    let total: usize = lens.par_reduce(|| 0, |a, b| a + b);
    let sevens = (0..1_000_000u64).par_filter(|x| x % 7 == 0);
    assert_eq!(sevens.len(), 142_858);
    assert!(
        sevens.windows(2).all(|w| w[0] < w[1]),
        "input order is kept"
    );
    println!(
        "par_map over {} words -> {total} characters; par_filter kept {} multiples of 7, in order",
        words.len(),
        sevens.len()
    );
}

/// L3: futures on the pool; dropping a task cancels it.
fn tasks() {
    section("L3 runtime: spawned tasks, cancellation by drop");
    let rt = Runtime::builder().threads(2).build().unwrap();
    let answer = rt.spawn(async { 6 * 7 });
    assert_eq!(rt.block_on(answer), Ok(42));
    let ran = std::sync::Arc::new(AtomicUsize::new(0));
    let never = {
        let ran = ran.clone();
        let token = task::CancelToken::new();
        rt.spawn(async move {
            token.cancelled().await; // never cancelled: waits forever
            ran.fetch_add(1, Ordering::SeqCst);
        })
    };
    drop(never);
    // A task dropped while queued is released when a worker dequeues it.
    while rt.metrics().live_tasks != 0 {
        std::thread::yield_now();
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    println!("a spawned task answered 42; a dropped one was cancelled and its future dropped");
}
