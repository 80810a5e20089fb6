//! L2 — writer leases: policies, fairness, cancellation, holders, foreign
//! leases, the cross-process file lock and the order checker.
//!
//! The cross-process test re-runs this binary with `--exact
//! lease_helper_process` and `STRATA_LEASE_HELPER` set; the helper answers
//! on stdout with lines containing `@@ `.

mod support;

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rand::Rng;
use strata::diag::{self, Violation, ViolationKind};
use strata::lease::{LeaseError, LeaseGate, WriterLease, WriterPolicy};
use strata::sync::Mutex;

/// A boxed `acquire_async` future.
type Acquiring<'g> = Pin<Box<dyn Future<Output = Result<WriterLease, LeaseError>> + Send + 'g>>;

fn poll<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}

/// A scratch file for one test, removed when it drops.
fn scratch(name: &str) -> support::Scratch {
    support::Scratch::new(&format!("lease-{name}"))
}

// ---------------------------------------------------------------- policies

/// `Fail` on `gate`, blocking and async, is `WriterBusy` at once.
fn assert_fail_is_busy(gate: &LeaseGate) {
    assert!(matches!(
        gate.acquire(WriterPolicy::Fail),
        Err(LeaseError::WriterBusy)
    ));
    let mut fut = Box::pin(gate.acquire_async(WriterPolicy::Fail));
    assert!(matches!(
        poll(&mut fut),
        Poll::Ready(Err(LeaseError::WriterBusy))
    ));
}

#[test]
fn fail_returns_writer_busy_at_once() {
    let gate = LeaseGate::new();
    let lease = gate.acquire(WriterPolicy::Fail).unwrap();
    // On this very thread: if `Fail` waited, this would never return.
    assert_fail_is_busy(&gate);
    drop(lease);
    assert!(gate.acquire(WriterPolicy::Fail).is_ok());
}

#[test]
fn fail_does_not_jump_the_queue() {
    let gate = LeaseGate::new();
    let lease = gate.acquire(WriterPolicy::Wait).unwrap();
    let mut queued = Box::pin(gate.acquire_async(WriterPolicy::Wait));
    assert!(poll(&mut queued).is_pending());
    drop(lease);
    // The lease went to the queued waiter, not to a later `Fail`.
    assert!(matches!(
        gate.acquire(WriterPolicy::Fail),
        Err(LeaseError::WriterBusy)
    ));
    let Poll::Ready(Ok(next)) = poll(&mut queued) else {
        panic!("the queued waiter was passed over");
    };
    drop(next);
}

#[test]
fn timeout_returns_writer_timeout_no_earlier_than_d() {
    let gate = LeaseGate::new();
    let _lease = gate.acquire(WriterPolicy::Wait).unwrap();
    let d = Duration::from_millis(40);

    let start = Instant::now();
    let other = gate.clone();
    let r = std::thread::spawn(move || other.acquire(WriterPolicy::Timeout(d)).map(|l| l.id()))
        .join()
        .unwrap();
    assert!(matches!(r, Err(LeaseError::WriterTimeout)));
    assert!(start.elapsed() >= d);

    let start = Instant::now();
    let r = futures::executor::block_on(gate.acquire_async(WriterPolicy::Timeout(d)));
    assert!(matches!(r, Err(LeaseError::WriterTimeout)));
    assert!(start.elapsed() >= d);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    let g = gate.clone();
    let r = rt.block_on(async move {
        g.acquire_async(WriterPolicy::Timeout(d))
            .await
            .map(|l| l.id())
    });
    assert!(matches!(r, Err(LeaseError::WriterTimeout)));
    assert!(start.elapsed() >= d);
    // Nobody was left queued by the timed-out waiters.
    drop(_lease);
    assert!(gate.acquire(WriterPolicy::Fail).is_ok());
}

#[test]
fn timeout_succeeds_when_the_lease_comes_in_time() {
    let gate = LeaseGate::new();
    let lease = gate.acquire(WriterPolicy::Wait).unwrap();
    let other = gate.clone();
    let waiter = std::thread::spawn(move || {
        other
            .acquire(WriterPolicy::Timeout(Duration::from_secs(60)))
            .map(|l| l.id().get())
    });
    std::thread::sleep(Duration::from_millis(10));
    drop(lease);
    assert_eq!(waiter.join().unwrap().unwrap(), 2);
}

#[test]
fn wait_is_fifo_for_blocked_threads() {
    let gate = LeaseGate::new();
    let first = gate.acquire(WriterPolicy::Wait).unwrap();
    let order = Arc::new(StdMutex::new(Vec::new()));
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let (g, order) = (gate.clone(), order.clone());
            let t = std::thread::spawn(move || {
                let policy = if i % 2 == 0 {
                    WriterPolicy::Wait
                } else {
                    WriterPolicy::Timeout(Duration::from_secs(3600))
                };
                let lease = g.acquire(policy).unwrap();
                order.lock().unwrap().push(i);
                drop(lease);
            });
            // Queued before the next one starts: the order is known.
            let deadline = Instant::now() + Duration::from_secs(30);
            while gate.waiting() < i + 1 {
                assert!(Instant::now() < deadline, "thread {i} never queued");
                std::thread::yield_now();
            }
            t
        })
        .collect();
    drop(first);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..6).collect::<Vec<_>>());
    assert_eq!(gate.waiting(), 0);
}

#[test]
fn wait_is_fifo_across_async_and_timed_waiters() {
    let gate = LeaseGate::new();
    let first = gate.acquire(WriterPolicy::Wait).unwrap();
    // Queue 16 waiters in a known order; every fourth has a (long) timeout.
    let mut waiters: Vec<_> = (0..16)
        .map(|i| {
            let policy = if i % 4 == 3 {
                WriterPolicy::Timeout(Duration::from_secs(3600))
            } else {
                WriterPolicy::Wait
            };
            Box::pin(gate.acquire_async(policy))
        })
        .collect();
    for w in &mut waiters {
        assert!(poll(w).is_pending());
    }
    // One in the middle gives up: the order of the rest is unchanged.
    drop(waiters.remove(5));
    drop(first);
    let mut order = Vec::new();
    for (at, w) in waiters.iter_mut().enumerate() {
        // Only the head can be granted; everyone behind it still waits.
        let Poll::Ready(Ok(lease)) = poll(w) else {
            panic!("waiter {at} was not next");
        };
        order.push(lease.id().get());
        drop(lease);
    }
    assert_eq!(order, (2..17).collect::<Vec<_>>());
}

// ---------------------------------------------------------------- cancellation

#[test]
fn ten_thousand_async_acquires_cancelled_at_random_points_leak_nothing() {
    let gate = LeaseGate::new();
    let mut rng = rand::rng();
    let mut held: Option<WriterLease> = None;
    let mut pending: Vec<Acquiring<'_>> = Vec::new();
    let mut granted = 0u32;
    for _ in 0..10_000 {
        let policy = match rng.random_range(0..3) {
            0 => WriterPolicy::Fail,
            1 => WriterPolicy::Wait,
            _ => WriterPolicy::Timeout(Duration::from_micros(rng.random_range(0..200))),
        };
        pending.push(Box::pin(gate.acquire_async(policy)));
        if pending.len() > 8 {
            // Keep the queue short so grants keep happening.
            let at = rng.random_range(0..pending.len());
            drop(pending.swap_remove(at));
        }
        // Random events: poll a random future, drop one (at whatever point it
        // is: never polled, queued, granted but not yet seen), release.
        for _ in 0..rng.random_range(1..4) {
            if pending.is_empty() {
                break;
            }
            let at = rng.random_range(0..pending.len());
            match rng.random_range(0..4) {
                0 | 1 => match poll(&mut pending[at]) {
                    Poll::Ready(Ok(lease)) => {
                        granted += 1;
                        drop(pending.swap_remove(at));
                        assert!(held.is_none(), "two leases at once");
                        if rng.random_bool(0.5) {
                            held = Some(lease);
                        }
                    }
                    Poll::Ready(Err(_)) => drop(pending.swap_remove(at)),
                    Poll::Pending => {}
                },
                2 => drop(pending.swap_remove(at)),
                _ => held = None,
            }
        }
    }
    drop(pending);
    drop(held);
    assert!(
        granted > 1000,
        "the test did not exercise grants: {granted}"
    );
    assert!(gate.holder().is_none());
    let lease = gate
        .acquire(WriterPolicy::Fail)
        .expect("the gate is usable");
    drop(lease);
}

/// Counts a lease holder in `inside` for as long as it lives, and asserts
/// it is the only one.
struct Inside<'a>(&'a AtomicUsize);

impl<'a> Inside<'a> {
    fn enter(inside: &'a AtomicUsize) -> Self {
        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
        Self(inside)
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn ten_thousand_cancelled_tasks_on_tokio_leak_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gate = LeaseGate::new();
    let inside = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..10_000u64 {
            let (gate, inside, done) = (gate.clone(), inside.clone(), done.clone());
            let task = tokio::spawn(async move {
                let policy = if i % 3 == 0 {
                    WriterPolicy::Timeout(Duration::from_micros(i % 500))
                } else {
                    WriterPolicy::Wait
                };
                let wait = tokio::time::timeout(
                    Duration::from_micros(i * 7 % 300),
                    gate.acquire_async(policy),
                );
                if let Ok(Ok(lease)) = wait.await {
                    // Left through a guard: an aborted task may be dropped
                    // at the yield below, lease and all.
                    let _inside = Inside::enter(&inside);
                    if i % 5 == 0 {
                        tokio::task::yield_now().await;
                    }
                    drop(_inside);
                    drop(lease);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
            if i % 7 == 0 {
                task.abort();
            } else {
                tasks.push(task);
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    drop(rt);
    assert!(done.load(Ordering::Relaxed) > 0);
    assert!(gate.holder().is_none());
    assert!(gate.acquire(WriterPolicy::Fail).is_ok());
}

// ---------------------------------------------------------------- holders, release

#[test]
fn holder_reports_id_name_and_age() {
    let gate = LeaseGate::named("lease.holder");
    assert!(gate.holder().is_none());
    let before = Instant::now();
    let lease = gate.acquire_as("compactor", WriterPolicy::Wait).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let h = gate.holder().unwrap();
    assert_eq!((h.id(), h.name()), (lease.id(), Some("compactor")));
    assert_eq!(h.acquired_at(), lease.acquired_at());
    // Lower bounds only (the timestamp has the coarse clock's resolution).
    assert!(h.age() >= Duration::from_millis(25), "{:?}", h.age());
    assert!(lease.acquired_at() + Duration::from_millis(20) >= before);
    // Seen from another thread too, and gone when released there.
    let other = gate.clone();
    let seen = std::thread::spawn(move || other.holder().map(|h| h.id()))
        .join()
        .unwrap();
    assert_eq!(seen, Some(lease.id()));
    std::thread::spawn(move || drop(lease)).join().unwrap();
    assert!(gate.holder().is_none());
}

#[test]
fn a_foreign_lease_is_refused_and_handed_back() {
    let a = LeaseGate::new();
    let b = LeaseGate::new();
    let lease = futures::executor::block_on(a.acquire_async(WriterPolicy::Wait)).unwrap();
    let id = lease.id();
    let err = b.release(lease).unwrap_err();
    assert_eq!(err.to_string(), "the lease belongs to another gate");
    let lease = err.into_lease().expect("handed back");
    // Still held, still a's, and b is untouched.
    assert_eq!(lease.id(), id);
    assert_eq!(a.holder().map(|h| h.id()), Some(id));
    assert!(b.holder().is_none());
    assert!(b.acquire(WriterPolicy::Fail).is_ok());
    a.clone().release(lease).unwrap();
    assert!(a.holder().is_none());
}

#[test]
fn one_writer_at_a_time_under_mixed_threads_and_tasks() {
    let gate = LeaseGate::new();
    let inside = Arc::new(AtomicUsize::new(0));
    // Incremented with a separate load and store: lost if two overlap.
    let counter = Arc::new(AtomicU64::new(0));
    let granted = Arc::new(AtomicU64::new(0));
    let work = |gate: LeaseGate,
                inside: Arc<AtomicUsize>,
                counter: Arc<AtomicU64>,
                granted: Arc<AtomicU64>,
                lease: WriterLease| {
        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two writers");
        let v = counter.load(Ordering::SeqCst);
        std::hint::spin_loop();
        counter.store(v + 1, Ordering::SeqCst);
        inside.fetch_sub(1, Ordering::SeqCst);
        granted.fetch_add(1, Ordering::SeqCst);
        gate.release(lease).unwrap();
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (gate, inside, counter, granted) = (
                gate.clone(),
                inside.clone(),
                counter.clone(),
                granted.clone(),
            );
            s.spawn(move || {
                for i in 0..2_000u64 {
                    let policy = match (t + i) % 3 {
                        0 => WriterPolicy::Fail,
                        1 => WriterPolicy::Wait,
                        _ => WriterPolicy::Timeout(Duration::from_micros(50)),
                    };
                    if let Ok(lease) = gate.acquire(policy) {
                        work(
                            gate.clone(),
                            inside.clone(),
                            counter.clone(),
                            granted.clone(),
                            lease,
                        );
                    }
                }
            });
        }
        rt.block_on(async {
            let tasks: Vec<_> = (0..3u64)
                .map(|t| {
                    let (gate, inside, counter, granted) = (
                        gate.clone(),
                        inside.clone(),
                        counter.clone(),
                        granted.clone(),
                    );
                    tokio::spawn(async move {
                        for i in 0..2_000u64 {
                            let policy = if (t + i) % 2 == 0 {
                                WriterPolicy::Wait
                            } else {
                                WriterPolicy::Timeout(Duration::from_micros(50))
                            };
                            if let Ok(lease) = gate.acquire_async(policy).await {
                                work(
                                    gate.clone(),
                                    inside.clone(),
                                    counter.clone(),
                                    granted.clone(),
                                    lease,
                                );
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
    });
    assert_eq!(
        counter.load(Ordering::SeqCst),
        granted.load(Ordering::SeqCst)
    );
    assert!(granted.load(Ordering::SeqCst) > 0);
    assert!(gate.holder().is_none());
}

// ---------------------------------------------------------------- file-backed gates

#[test]
fn file_backed_gates_admit_one_writer_across_gates() {
    let path = scratch("two-gates");
    let here = LeaseGate::with_file_lock(&path).unwrap();
    let there = LeaseGate::with_file_lock(&path).unwrap();
    assert_eq!(here.file_path(), Some(path.path()));
    let lease = here.acquire(WriterPolicy::Wait).unwrap();
    assert_fail_is_busy(&there);
    let d = Duration::from_millis(30);
    let start = Instant::now();
    assert!(matches!(
        there.acquire(WriterPolicy::Timeout(d)),
        Err(LeaseError::WriterTimeout)
    ));
    assert!(start.elapsed() >= d);
    let start = Instant::now();
    assert!(matches!(
        futures::executor::block_on(there.acquire_async(WriterPolicy::Timeout(d))),
        Err(LeaseError::WriterTimeout)
    ));
    assert!(start.elapsed() >= d);
    // A waiter on the other gate gets the file once it is released.
    let t = there.clone();
    let waiter = std::thread::spawn(move || {
        futures::executor::block_on(t.acquire_async(WriterPolicy::Wait)).map(|l| l.id().get())
    });
    std::thread::sleep(Duration::from_millis(20));
    here.release(lease).unwrap();
    assert!(waiter.join().unwrap().is_ok());
    // An async acquire cancelled half-way through the file (writer bytes
    // taken, readers still in) gives everything back.
    let mut reader = strata::io::FileLock::open(&path).unwrap();
    let mut r = reader.lock(strata::io::LockMode::Shared).unwrap();
    let mut fut = Box::pin(there.acquire_async(WriterPolicy::Wait));
    for _ in 0..3 {
        assert!(poll(&mut fut).is_pending());
    }
    // Meanwhile new readers are kept out: the writer is waiting.
    let mut late = strata::io::FileLock::open(&path).unwrap();
    assert!(late.try_lock(strata::io::LockMode::Shared).is_err());
    drop(fut);
    drop(
        late.try_lock(strata::io::LockMode::Shared)
            .expect("pending byte given back"),
    );
    r.try_upgrade().expect("reserved byte given back");
    drop(r);
    drop(
        there
            .acquire(WriterPolicy::Fail)
            .expect("file and gate both free"),
    );
    drop(
        here.acquire(WriterPolicy::Fail)
            .expect("file and gate both free"),
    );
}

#[test]
fn a_shared_file_lock_elsewhere_keeps_the_file_backed_writer_out() {
    let path = scratch("reader");
    let gate = LeaseGate::with_file_lock(&path).unwrap();
    let mut reader = strata::io::FileLock::open(&path).unwrap();
    let r = reader.lock(strata::io::LockMode::Shared).unwrap();
    assert!(matches!(
        gate.acquire(WriterPolicy::Fail),
        Err(LeaseError::WriterBusy)
    ));
    drop(r);
    let lease = gate.acquire(WriterPolicy::Fail).unwrap();
    assert!(matches!(
        reader.try_lock(strata::io::LockMode::Shared),
        Err(strata::io::FileLockError::WouldBlock)
    ));
    drop(lease);
    drop(reader.try_lock(strata::io::LockMode::Shared).unwrap());
}

const ROLE: &str = "STRATA_LEASE_HELPER";

/// The helper process: takes a file-backed lease, says so, and holds it
/// until stdin closes or says anything.
#[test]
fn lease_helper_process() {
    let Some(path) = std::env::var_os(ROLE) else {
        return;
    };
    let gate = LeaseGate::with_file_lock(PathBuf::from(path)).unwrap();
    let lease = gate.acquire_as("helper", WriterPolicy::Wait).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ held {}", lease.id()).unwrap();
    out.flush().unwrap();
    drop(out);
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    gate.release(lease).unwrap();
    std::process::exit(0);
}

#[test]
fn a_file_backed_lease_excludes_writers_in_other_processes() {
    let path = scratch("process");
    let mut child = support::KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "lease_helper_process", "--nocapture"])
            .env(ROLE, path.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(at) = line.find("@@ ") {
                let _ = tx.send(line[at + 3..].to_string());
            }
        }
    });
    let said = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("helper took the lease");
    assert!(said.starts_with("held"));
    let gate = LeaseGate::with_file_lock(&path).unwrap();
    assert!(matches!(
        gate.acquire(WriterPolicy::Fail),
        Err(LeaseError::WriterBusy)
    ));
    // The helper dies holding the lease: its file lock goes with it.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let lease = gate
        .acquire(WriterPolicy::Timeout(Duration::from_secs(30)))
        .expect("released by the helper's death");
    drop(lease);
}

// ---------------------------------------------------------------- order checking

fn take(prefix: &str) -> Vec<Violation> {
    support::take_violations(prefix)
}

#[test]
fn waiting_for_a_lease_counts_as_taking_its_class() {
    take("lease.order.");
    let index = Mutex::named("lease.order.index", 0u32);
    let gate = LeaseGate::named("lease.order.gate");
    {
        let _i = index.lock();
        let _l = gate.acquire(WriterPolicy::Wait).unwrap(); // index, then lease
    }
    assert!(take("lease.order.").is_empty());
    {
        let _l = gate.acquire(WriterPolicy::Wait).unwrap();
        *index.lock() += 1; // lease, then index: the inversion
    }
    let seen = take("lease.order.");
    if diag::checking_enabled() {
        assert_eq!(seen.len(), 1, "{seen:#?}");
        assert_eq!(seen[0].kind(), ViolationKind::LockOrder);
        let text = seen[0].to_string();
        assert!(text.contains("lease.order.gate") && text.contains("lease.order.index"));
    } else {
        assert!(seen.is_empty());
    }
}

#[test]
fn a_lease_is_held_by_its_thread_until_released_anywhere() {
    let gate = LeaseGate::named("lease.moved.gate");
    let lock = Mutex::named("lease.moved.lock", ());
    let held_here = || {
        diag::held_locks()
            .iter()
            .any(|a| a.to_string().contains("lease.moved.gate"))
    };
    let lease = gate.acquire(WriterPolicy::Wait).unwrap();
    assert_eq!(held_here(), diag::checking_enabled());
    std::thread::spawn(move || drop(lease)).join().unwrap();
    // The release reaches this thread at its next acquisition.
    drop(lock.lock());
    assert!(!held_here());
    assert!(take("lease.moved.").is_empty());
}
