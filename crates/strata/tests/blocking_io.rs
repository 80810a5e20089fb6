//! L3 — `BlockingIo`: runs overlap, writes are barriers, FIFO, panics and
//! cancellation.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use strata::runtime::{BlockingIo, BlockingIoError};

fn poll<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}

/// Starts a run that keeps `io`'s one thread busy until the returned sender
/// sends (or drops); returns once the run has started.
fn occupy_the_only_thread(
    io: &BlockingIo,
) -> (
    impl Future<Output = Result<(), BlockingIoError>> + Unpin,
    mpsc::Sender<()>,
) {
    let (unblock, blocked) = mpsc::channel::<()>();
    let (started, is_started) = mpsc::channel::<()>();
    let mut busy = Box::pin(io.run_async(move || {
        started.send(()).unwrap();
        let _ = blocked.recv();
    }));
    assert!(poll(&mut busy).is_pending());
    is_started.recv().unwrap();
    (busy, unblock)
}

/// Counts runs and writes in flight and checks the barrier rule on entry.
#[derive(Default)]
struct Flight {
    runs: AtomicUsize,
    writes: AtomicUsize,
    max_runs: AtomicUsize,
    violations: AtomicUsize,
}

impl Flight {
    fn run(&self) {
        let now = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_runs.fetch_max(now, Ordering::SeqCst);
        if self.writes.load(Ordering::SeqCst) != 0 {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_micros(200));
        if self.writes.load(Ordering::SeqCst) != 0 {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
        self.runs.fetch_sub(1, Ordering::SeqCst);
    }

    fn write(&self) {
        if self.writes.fetch_add(1, Ordering::SeqCst) != 0 || self.runs.load(Ordering::SeqCst) != 0
        {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_micros(200));
        if self.runs.load(Ordering::SeqCst) != 0 {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
        self.writes.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn a_write_never_overlaps_a_run_and_runs_do_overlap() {
    let io = BlockingIo::new(4);
    let flight = Arc::new(Flight::default());
    let writes_done = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for t in 0..4 {
            let (io, flight, writes_done) = (io.clone(), flight.clone(), writes_done.clone());
            s.spawn(move || {
                for i in 0..150 {
                    let f = flight.clone();
                    if (t + i) % 10 == 0 {
                        io.run_write(move || f.write()).unwrap();
                        writes_done.fetch_add(1, Ordering::SeqCst);
                    } else {
                        io.run(move || f.run()).unwrap();
                    }
                }
            });
        }
    });
    assert_eq!(flight.violations.load(Ordering::SeqCst), 0);
    assert_eq!(writes_done.load(Ordering::SeqCst), 60);
    assert!(
        flight.max_runs.load(Ordering::SeqCst) > 1,
        "runs never overlapped"
    );
}

#[test]
fn async_writes_never_overlap_async_runs_under_tokio() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let io = BlockingIo::new(4);
    let flight = Arc::new(Flight::default());
    rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let (io, flight) = (io.clone(), flight.clone());
                tokio::spawn(async move {
                    for i in 0..40 {
                        let f = flight.clone();
                        if (t + i) % 8 == 0 {
                            io.run_write_async(move || f.write()).await.unwrap();
                        } else {
                            io.run_async(move || f.run()).await.unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert_eq!(flight.violations.load(Ordering::SeqCst), 0);
    assert!(flight.max_runs.load(Ordering::SeqCst) > 1);
}

#[test]
fn a_write_waits_for_earlier_runs_and_holds_back_later_calls_in_order() {
    let io = BlockingIo::new(4);
    let log = Arc::new(StdMutex::new(Vec::<&'static str>::new()));
    let (release_run, run_may_finish) = mpsc::channel::<()>();
    let (run_started, is_run_started) = mpsc::channel::<()>();

    // 1. A run that stays in flight until told.
    let l = log.clone();
    let mut long_run = Box::pin(io.run_async(move || {
        l.lock().unwrap().push("run1 start");
        run_started.send(()).unwrap();
        run_may_finish.recv().unwrap();
        l.lock().unwrap().push("run1 end");
    }));
    assert!(poll(&mut long_run).is_pending());
    is_run_started.recv().unwrap();

    // 2. A write: queued behind the run in flight.
    let l = log.clone();
    let mut write = Box::pin(io.run_write_async(move || l.lock().unwrap().push("write")));
    assert!(poll(&mut write).is_pending());

    // 3. Runs and a second write called after it: held back, in order.
    let l = log.clone();
    let mut later_run = Box::pin(io.run_async(move || l.lock().unwrap().push("run2")));
    assert!(poll(&mut later_run).is_pending());
    let l = log.clone();
    let mut later_write = Box::pin(io.run_write_async(move || l.lock().unwrap().push("write2")));
    assert!(poll(&mut later_write).is_pending());
    let l = log.clone();
    let mut last_run = Box::pin(io.run_async(move || l.lock().unwrap().push("run3")));
    assert!(poll(&mut last_run).is_pending());

    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(
        *log.lock().unwrap(),
        ["run1 start"],
        "something overtook the barrier"
    );

    release_run.send(()).unwrap();
    futures::executor::block_on(async {
        long_run.await.unwrap();
        write.await.unwrap();
        later_run.await.unwrap();
        later_write.await.unwrap();
        last_run.await.unwrap();
    });
    assert_eq!(
        *log.lock().unwrap(),
        ["run1 start", "run1 end", "write", "run2", "write2", "run3"]
    );
}

#[test]
fn a_panic_comes_back_to_its_caller_only() {
    let io = BlockingIo::new(2);
    let others = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (io, others) = (io.clone(), others.clone());
            s.spawn(move || {
                for _ in 0..50 {
                    let o = others.clone();
                    assert_eq!(
                        io.run(move || o.fetch_add(1, Ordering::SeqCst) + 1)
                            .map(|_| ())
                            .ok(),
                        Some(())
                    );
                }
            });
        }
        let err = io.run(|| -> u8 { panic!("boom") }).unwrap_err();
        assert!(matches!(err, BlockingIoError::Panicked(_)));
        assert!(err.to_string().contains("boom"));
        let BlockingIoError::Panicked(payload) =
            io.run_write(|| -> u8 { panic!("write boom") }).unwrap_err()
        else {
            panic!("not a panic error");
        };
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"write boom"));
        let err = futures::executor::block_on(io.run_async(|| -> u8 { panic!("async boom") }));
        assert!(matches!(err, Err(BlockingIoError::Panicked(_))));
    });
    assert_eq!(others.load(Ordering::SeqCst), 200);
    // The threads survived and the barrier was released by the panicking jobs.
    assert_eq!(io.run_write(|| 7).unwrap(), 7);
    assert_eq!(io.threads_started(), 2);
}

#[test]
fn a_job_cancelled_before_it_starts_never_runs() {
    let io = BlockingIo::new(1);
    let (busy, unblock) = occupy_the_only_thread(&io);

    // Cancelled while queued for a thread.
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let mut queued = Box::pin(io.run_async(move || r.store(true, Ordering::SeqCst)));
    assert!(poll(&mut queued).is_pending());
    drop(queued);

    // Cancelled while waiting for the barrier (a write behind the busy run).
    let r = ran.clone();
    let mut barred = Box::pin(io.run_write_async(move || r.store(true, Ordering::SeqCst)));
    assert!(poll(&mut barred).is_pending());
    // And one never polled at all.
    let r = ran.clone();
    drop(io.run_async(move || r.store(true, Ordering::SeqCst)));
    drop(barred);

    unblock.send(()).unwrap();
    futures::executor::block_on(busy).unwrap();
    // Everything queued before this write has been dealt with when it runs.
    io.run_write(|| ()).unwrap();
    io.run(|| ()).unwrap();
    assert!(!ran.load(Ordering::SeqCst), "a cancelled job ran");
}

#[test]
fn a_job_abandoned_while_running_still_holds_the_barrier_until_it_ends() {
    let io = BlockingIo::new(2);
    let (finish, may_finish) = mpsc::channel::<()>();
    let (started, is_started) = mpsc::channel::<()>();
    let running = Arc::new(AtomicBool::new(false));
    let r = running.clone();
    let mut abandoned = Box::pin(io.run_async(move || {
        r.store(true, Ordering::SeqCst);
        started.send(()).unwrap();
        may_finish.recv().unwrap();
        r.store(false, Ordering::SeqCst);
    }));
    assert!(poll(&mut abandoned).is_pending());
    is_started.recv().unwrap();
    drop(abandoned); // the caller gives up; the closure is already running
    let r = running.clone();
    // Queued at the barrier before the run may finish: polled once, the
    // write must wait (it would get in now if the abandoned run had given
    // its permit back early).
    let mut write = Box::pin(io.run_write_async(move || r.load(Ordering::SeqCst)));
    assert!(poll(&mut write).is_pending());
    finish.send(()).unwrap();
    assert!(
        !futures::executor::block_on(write).unwrap(),
        "the write overlapped the run"
    );
}

#[test]
fn many_cancellations_leave_the_barrier_whole() {
    let io = BlockingIo::new(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let flight = Arc::new(Flight::default());
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..600u64 {
            let (io, flight) = (io.clone(), flight.clone());
            tasks.push(tokio::spawn(async move {
                let f = flight.clone();
                let job = async {
                    if i % 6 == 0 {
                        io.run_write_async(move || f.write()).await
                    } else {
                        io.run_async(move || f.run()).await
                    }
                };
                let _ = tokio::time::timeout(Duration::from_micros(i % 400), job).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert_eq!(flight.violations.load(Ordering::SeqCst), 0);
    // Every permit came back: a write still gets in (a leak would hang it).
    let (done, is_done) = mpsc::channel();
    std::thread::spawn(move || done.send(io.run_write(|| 5).unwrap()));
    assert_eq!(is_done.recv_timeout(Duration::from_secs(30)), Ok(5));
}

/// Runs `f` on a fresh thread and fails the test (instead of hanging it)
/// if it does not return within 30 s.
fn within_30s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the executor hung")
}

#[test]
fn a_thread_name_with_a_nul_byte_is_an_error_and_loses_no_permit() {
    let io = BlockingIo::builder().name("bad\0name").build();
    within_30s(move || {
        let err = io.run(|| 1).unwrap_err();
        assert!(matches!(err, BlockingIoError::Spawn(_)), "{err}");
        // The failed run gave its permit back: a write (all permits) is
        // not stuck behind it; it fails the same way.
        assert!(matches!(io.run_write(|| 2), Err(BlockingIoError::Spawn(_))));
        assert!(matches!(
            futures::executor::block_on(io.run_async(|| 3)),
            Err(BlockingIoError::Spawn(_))
        ));
    });
}

/// Panics when dropped (unless already panicking).
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a Drop that panics");
        }
    }
}

#[test]
fn a_panicking_drop_of_an_unwanted_result_does_not_kill_the_worker() {
    let io = BlockingIo::new(1);
    let (finish, may_finish) = mpsc::channel::<()>();
    let (started, is_started) = mpsc::channel::<()>();
    let mut abandoned = Box::pin(io.run_async(move || {
        started.send(()).unwrap();
        may_finish.recv().unwrap();
        PanicsOnDrop
    }));
    assert!(poll(&mut abandoned).is_pending());
    is_started.recv().unwrap();
    drop(abandoned); // nobody wants the result: the worker drops it
    finish.send(()).unwrap();
    within_30s(move || {
        assert_eq!(io.run(|| 7).unwrap(), 7);
        assert_eq!(io.threads_started(), 1, "the one worker carried on");
    });
}

#[test]
fn a_panicking_drop_of_a_cancelled_job_does_not_kill_the_worker() {
    let io = BlockingIo::new(1);
    let (busy, unblock) = occupy_the_only_thread(&io);
    // Queued behind the busy job, then cancelled: the worker later finds it
    // cancelled and drops its closure, which panics.
    let guard = PanicsOnDrop;
    let mut queued = Box::pin(io.run_async(move || drop(guard)));
    assert!(poll(&mut queued).is_pending());
    drop(queued);
    unblock.send(()).unwrap();
    futures::executor::block_on(busy).unwrap();
    within_30s(move || {
        assert_eq!(io.run(|| 8).unwrap(), 8);
        assert_eq!(io.threads_started(), 1);
    });
}

#[test]
fn calling_the_executor_from_its_own_job_is_refused_not_hung() {
    let io = BlockingIo::new(2);
    let inner = io.clone();
    within_30s(move || {
        let (write, run, run_async) = io
            .run(move || {
                (
                    inner.run_write(|| ()).unwrap_err(),
                    inner.run(|| ()).unwrap_err(),
                    futures::executor::block_on(inner.run_async(|| ())).unwrap_err(),
                )
            })
            .unwrap();
        for err in [write, run, run_async] {
            assert!(matches!(err, BlockingIoError::Reentrant), "{err}");
        }
        // Another executor may be called from a job.
        let other = BlockingIo::new(1);
        assert_eq!(io.run(move || other.run_write(|| 5).unwrap()).unwrap(), 5);
    });
}
