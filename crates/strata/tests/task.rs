//! L4 — scopes, cancellation, futures, joins, async scopes.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata::runtime::{Runtime, block_on};
use strata::task::{self, CancelToken, Cancelled, TaskError, scope, scope_async};

fn rt(n: usize) -> Runtime {
    Runtime::builder().threads(n).build().unwrap()
}

fn fib_scope(n: u64) -> u64 {
    if n < 12 {
        return fib_seq(n);
    }
    scope(|s| {
        let a = s.future(|_| fib_scope(n - 1));
        let b = s.future(|_| fib_scope(n - 2));
        a.force() + b.force()
    })
    .unwrap()
}

fn fib_seq(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib_seq(n - 1) + fib_seq(n - 2)
    }
}

#[test]
fn scope_fib_and_borrowed_tree_sums() {
    let rt = rt(2);
    assert_eq!(rt.install(|| fib_scope(22)), fib_seq(22));
    // Children borrow (and mutate disjoint parts of) the caller's data.
    let mut data: Vec<u64> = (0..10_000).collect();
    let sums: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
    rt.install(|| {
        scope(|s| {
            for (i, chunk) in data.chunks_mut(2_500).enumerate() {
                let sums = &sums;
                s.spawn(move |_| {
                    for x in chunk.iter_mut() {
                        *x *= 2;
                    }
                    sums[i].store(chunk.iter().sum(), Ordering::Relaxed);
                    Ok(())
                });
            }
        })
    })
    .unwrap();
    let total: u64 = sums.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    assert_eq!(total, 2 * (0..10_000u64).sum::<u64>());
    assert_eq!(data[9_999], 19_998);
}

#[test]
fn scope_from_outside_any_pool_and_nested() {
    let v = scope(|s| {
        let inner = s.future(|_| scope(|s2| s2.future(|_| 20).force() + 1).unwrap());
        inner.force() * 2
    })
    .unwrap();
    assert_eq!(v, 42);
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("child {0} failed")]
struct ChildFailed(usize);

#[test]
fn first_error_cancels_siblings_that_check_and_is_the_one_returned() {
    let rt = rt(2);
    for _ in 0..20 {
        let started = AtomicUsize::new(0);
        let stopped = AtomicUsize::new(0);
        let err = rt
            .install(|| {
                scope(|s| {
                    for _ in 0..3 {
                        let (started, stopped) = (&started, &stopped);
                        s.spawn(move |cx| {
                            started.fetch_add(1, Ordering::SeqCst);
                            // Runs until cancelled (bounded, so that a broken
                            // cancellation fails the test instead of hanging).
                            let deadline = Instant::now() + Duration::from_secs(10);
                            while Instant::now() < deadline {
                                if let Err(c) = cx.check() {
                                    stopped.fetch_add(1, Ordering::SeqCst);
                                    return Err(c.into());
                                }
                                std::hint::spin_loop();
                            }
                            Ok(())
                        });
                    }
                    let started = &started;
                    s.spawn(move |_| {
                        // Fail only once a sibling is running (the other
                        // worker steals one), so cancelling it is observable.
                        let deadline = Instant::now() + Duration::from_secs(10);
                        while started.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
                            std::thread::yield_now();
                        }
                        Err(TaskError::failed(ChildFailed(7)))
                    });
                })
            })
            .unwrap_err();
        // The failure, not the siblings' `Cancelled`s, is returned.
        assert_eq!(err.downcast_ref::<ChildFailed>(), Some(&ChildFailed(7)));
        // A sibling was running when the error came, and every sibling that
        // started saw the cancellation and stopped (the others were skipped).
        let (started, stopped) = (started.into_inner(), stopped.into_inner());
        assert!(stopped >= 1, "no running sibling was cancelled");
        assert_eq!(
            started, stopped,
            "a started sibling missed the cancellation"
        );
    }
}

#[test]
fn children_not_started_when_cancelled_are_skipped() {
    let rt = rt(1);
    let ran = AtomicUsize::new(0);
    let r = rt.install(|| {
        scope(|s| {
            // On one worker the body runs first: the failing child is
            // queued before the others and, LIFO, runs last... so fail in
            // the body's own token instead and check nobody starts.
            s.token().cancel();
            for _ in 0..10 {
                s.spawn(|_| {
                    ran.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                });
            }
        })
    });
    assert!(matches!(r, Err(TaskError::Cancelled)));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn a_child_panic_is_reraised_only_after_the_siblings_finished() {
    let rt = rt(2);
    for _ in 0..10 {
        let sibling_finished = AtomicBool::new(false);
        let sibling_started = AtomicBool::new(false);
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            rt.install(|| {
                scope(|s| {
                    s.spawn(|cx| {
                        sibling_started.store(true, Ordering::SeqCst);
                        // Runs on after the panic: sees the cancellation,
                        // then takes its time to wind down.
                        while !cx.is_cancelled() {
                            std::hint::spin_loop();
                        }
                        std::thread::sleep(Duration::from_millis(30));
                        sibling_finished.store(true, Ordering::SeqCst);
                        Ok(())
                    });
                    s.spawn(|_| {
                        // (Children not started at cancellation are skipped.)
                        while !sibling_started.load(Ordering::SeqCst) {
                            std::hint::spin_loop();
                        }
                        panic!("child blew up")
                    });
                })
            })
        }));
        let payload = r.unwrap_err();
        assert_eq!(*payload.downcast::<&str>().unwrap(), "child blew up");
        assert!(
            sibling_finished.load(Ordering::SeqCst),
            "the panic escaped before the sibling finished"
        );
    }
}

#[test]
fn forcing_a_panicked_future_reraises_the_childs_panic() {
    let r = panic::catch_unwind(|| {
        scope(|s| {
            let f = s.future(|_| -> u32 { panic!("future failed") });
            f.force()
        })
    });
    assert_eq!(*r.unwrap_err().downcast::<&str>().unwrap(), "future failed");
}

#[test]
fn futures_force_and_await() {
    let v = scope(|s| {
        let a = s.future(|_| 2);
        let b = s.future(|_| 3);
        let c = s.future(|cx| if cx.is_cancelled() { 0 } else { 5 });
        let awaited = block_on(b);
        a.force() * awaited * c.force()
    })
    .unwrap();
    assert_eq!(v, 30);
}

#[test]
fn join3_and_join_all_keep_order() {
    let (a, b, c) = task::join3(|| fib_seq(10), || "x", || vec![1]);
    assert_eq!((a, b, c), (55, "x", vec![1]));
    let out = task::join_all((0..100u64).map(|i| move || i * 3));
    assert_eq!(out, (0..100u64).map(|i| i * 3).collect::<Vec<_>>());
    assert!(task::join_all(Vec::<fn() -> u8>::new()).is_empty());
    assert_eq!(task::join(|| 1, || 2), (1, 2));
}

#[test]
fn cancel_tokens_clone_children_wait_and_await() {
    let root = CancelToken::new();
    let clone = root.clone();
    let child = root.child_token();
    let grandchild = child.child_token();
    let lone = child.child_token();
    lone.cancel();
    assert!(!child.is_cancelled() && !root.is_cancelled());
    assert_eq!(grandchild.check(), Ok(()));
    let waiter = {
        let g = grandchild.clone();
        std::thread::spawn(move || {
            g.wait();
            g.is_cancelled()
        })
    };
    let async_waiter = {
        let c = child.clone();
        strata::runtime::spawn(async move {
            c.cancelled().await;
            7
        })
    };
    std::thread::sleep(Duration::from_millis(5));
    clone.cancel();
    assert!(waiter.join().unwrap());
    assert_eq!(async_waiter.join(), Ok(7));
    assert_eq!(root.check(), Err(Cancelled));
    assert!(
        root.child_token().is_cancelled(),
        "child of a cancelled token"
    );
    // Dropping a pending `cancelled()` future is harmless.
    let t = CancelToken::new();
    drop(t.cancelled());
    t.cancel();
    block_on(t.cancelled());
}

#[test]
fn cancel_token_stress_many_waiters_all_released() {
    let t = CancelToken::new();
    let released = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..16)
        .map(|_| {
            let (t, released) = (t.clone(), released.clone());
            std::thread::spawn(move || {
                t.wait();
                released.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    let ts: Vec<_> = (0..64)
        .map(|_| {
            let (t, released) = (t.clone(), released.clone());
            strata::runtime::spawn(async move {
                t.cancelled().await;
                released.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    t.cancel();
    for h in hs {
        h.join().unwrap();
    }
    for t in ts {
        t.join().unwrap();
    }
    assert_eq!(released.load(Ordering::SeqCst), 80);
}

#[test]
fn scope_async_runs_children_and_returns_the_body_value() {
    let rt = rt(2);
    let hits = Arc::new(AtomicU64::new(0));
    let r = rt.block_on(scope_async(async |s| {
        for i in 0..100u64 {
            let hits = hits.clone();
            s.spawn(async move {
                hits.fetch_add(i, Ordering::Relaxed);
                Ok(())
            });
        }
        "body"
    }));
    assert_eq!(r.unwrap(), "body");
    assert_eq!(hits.load(Ordering::Relaxed), 4950);
}

#[test]
fn scope_async_first_error_cancels_the_others() {
    let rt = rt(2);
    let dropped = Arc::new(AtomicUsize::new(0));
    struct CountDrop(Arc<AtomicUsize>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let r = rt.block_on(scope_async(async |s| {
        for _ in 0..5 {
            let guard = CountDrop(dropped.clone());
            s.spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok(())
            });
        }
        s.spawn(async { Err(TaskError::failed(ChildFailed(1))) });
    }));
    assert_eq!(
        r.unwrap_err().downcast_ref::<ChildFailed>(),
        Some(&ChildFailed(1))
    );
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        5,
        "pending siblings were cancelled"
    );
}

#[test]
fn scope_async_child_panic_is_reraised_after_all_stopped() {
    let rt = rt(2);
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(scope_async(async |s| {
            s.spawn(async { panic!("async child panicked") });
            s.spawn(std::future::pending());
        }))
    }));
    assert_eq!(
        *r.unwrap_err().downcast::<&str>().unwrap(),
        "async child panicked"
    );
}

#[test]
fn dropping_the_scope_future_cancels_every_child() {
    let rt = rt(2);
    let dropped = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    struct CountDrop(Arc<AtomicUsize>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let fut = {
        let (dropped, started) = (dropped.clone(), started.clone());
        scope_async(async move |s| {
            for _ in 0..4 {
                let guard = CountDrop(dropped.clone());
                let started = started.clone();
                s.spawn(async move {
                    let _guard = guard;
                    started.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                    Ok(())
                });
            }
            std::future::pending::<()>().await;
        })
    };
    // Drive it on a task, then cancel that task: the scope future drops.
    let task = rt.spawn(fut);
    while started.load(Ordering::SeqCst) < 4 {
        std::thread::yield_now();
    }
    drop(task);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while dropped.load(Ordering::SeqCst) < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "children not cancelled"
        );
        std::thread::yield_now();
    }
}

#[test]
fn scope_async_works_under_tokio() {
    let trt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let r = trt.block_on(async {
        let h = tokio::spawn(scope_async(async |s| {
            s.spawn(async { Ok(()) });
            1
        }));
        h.await.unwrap()
    });
    assert_eq!(r.unwrap(), 1);
}

#[test]
fn stress_nested_scopes_with_errors() {
    let rt = rt(3);
    for round in 0..30u64 {
        let count = AtomicU64::new(0);
        let r = rt.install(|| {
            scope(|s| {
                for i in 0..8u64 {
                    let count = &count;
                    s.spawn(move |cx| {
                        scope(|inner| {
                            for j in 0..8u64 {
                                inner.spawn(move |_| {
                                    count.fetch_add(1, Ordering::Relaxed);
                                    if round % 3 == 0 && i == 3 && j == 5 {
                                        return Err(TaskError::failed(ChildFailed(j as usize)));
                                    }
                                    Ok(())
                                });
                            }
                        })?;
                        cx.check()?;
                        Ok(())
                    });
                }
            })
        });
        if round % 3 == 0 {
            assert!(r.unwrap_err().downcast_ref::<ChildFailed>().is_some());
        } else {
            r.unwrap();
            assert_eq!(count.load(Ordering::Relaxed), 64);
        }
    }
}

#[test]
fn children_spawn_grandchildren_into_the_same_scope() {
    let count = AtomicUsize::new(0);
    scope(|s| {
        for _ in 0..4 {
            let count = &count;
            s.spawn(move |_| {
                for _ in 0..4 {
                    s.spawn(move |_| {
                        count.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    });
                }
                Ok(())
            });
        }
    })
    .unwrap();
    // The scope waited for the grandchildren too.
    assert_eq!(count.load(Ordering::SeqCst), 16);
}

/// Waits (bounded) until `done()`; false on timeout.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

#[test]
fn a_scope_whose_queued_children_a_self_dropping_runtime_drains_still_returns() {
    // A runtime dropped from inside one of its tasks cannot join its
    // workers; it drains every queue, including the deque of a worker that
    // is inside a scope. The drained children must still count down.
    for with_futures in [false, true] {
        let holder = Arc::new(Mutex::new(Some(rt(2))));
        let ready = Arc::new(AtomicBool::new(false));
        let go = Arc::new(AtomicBool::new(false));
        let dropper_started = Arc::new(AtomicBool::new(false));
        let dropper = {
            let (h, ready, go, started) = (
                holder.clone(),
                ready.clone(),
                go.clone(),
                dropper_started.clone(),
            );
            holder.lock().unwrap().as_ref().unwrap().spawn(async move {
                started.store(true, Ordering::SeqCst);
                while !ready.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
                let rt = h.lock().unwrap().take().unwrap();
                drop(rt);
                go.store(true, Ordering::SeqCst);
            })
        };
        assert!(eventually(|| dropper_started.load(Ordering::SeqCst)));
        let scoped = {
            let (ready, go) = (ready.clone(), go.clone());
            holder.lock().unwrap().as_ref().unwrap().spawn(async move {
                scope(|s| {
                    let (ready, go) = (&ready, &go);
                    // The first child to run holds its worker until the
                    // runtime is gone; the others are still queued then.
                    let child = move || {
                        ready.store(true, Ordering::SeqCst);
                        while !go.load(Ordering::SeqCst) {
                            std::hint::spin_loop();
                        }
                    };
                    if with_futures {
                        let fs: Vec<_> = (0..50)
                            .map(|_| {
                                s.future(move |_| {
                                    child();
                                    1u32
                                })
                            })
                            .collect();
                        fs.into_iter().map(task::Future::force).sum::<u32>()
                    } else {
                        for _ in 0..50 {
                            s.spawn(move |_| {
                                child();
                                Ok(())
                            });
                        }
                        50
                    }
                })
            })
        };
        assert!(
            eventually(|| scoped.is_finished() && dropper.is_finished()),
            "futures={with_futures}: scope finished={} dropper finished={}",
            scoped.is_finished(),
            dropper.is_finished()
        );
        // Children that never ran: the scope reports a cancellation.
        assert!(
            matches!(scoped.join(), Ok(Err(TaskError::Cancelled))),
            "futures={with_futures}"
        );
        assert_eq!(dropper.join(), Ok(()));
    }
}

#[test]
fn forcing_a_future_on_a_worker_of_another_runtime() {
    // The scope's pool and the forcing worker's pool differ, one way and
    // the other way round in size (a worker index of the bigger pool is
    // out of range in the smaller one).
    for (na, nb) in [(2, 1), (1, 3)] {
        let a = Runtime::builder().threads(na).name("a").build().unwrap();
        let b = Runtime::builder().threads(nb).name("b").build().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let v = a.install(|| {
                scope(|s| {
                    let f = s.future(|_| {
                        std::thread::sleep(Duration::from_millis(20));
                        7
                    });
                    b.install(|| f.force())
                })
            });
            let _ = tx.send(v.map_err(|e| e.to_string()));
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok(Ok(7)),
            "a: {na} workers, b: {nb}"
        );
    }
}
