//! L2 — snapshots: `SnapshotCell` and the copy-on-write `Versioned` store.
//!
//! The same file runs against both storage backends:
//!
//! ```text
//! cargo test -p strata --test snapshot
//! cargo test -p strata --test snapshot --features snapshot-rwlock
//! ```
//!
//! Tests assert behaviour (what readers saw, counts, what is still usable),
//! never timing; the one time bound is the "no earlier than d" of a timeout.

mod support;

use std::convert::Infallible;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex as StdMutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use strata::diag::{self, Violation, ViolationKind};
use strata::snapshot::{SnapshotCell, SnapshotError, SnapshotGuard, Versioned};
use strata::sync::Mutex;

/// A bound for "this must finish" waits: only a hang reaches it.
const HANG: Duration = Duration::from_secs(60);

/// A writer parked inside `store.update` on a thread of scope `s` while the
/// test looks at the store; its update applies `apply` once released.
/// Dropping the handle releases it too, so a failed assertion frees the
/// writer instead of hanging the scope.
struct ParkedWriter {
    release: mpsc::Sender<()>,
}

impl ParkedWriter {
    fn park<'scope, T: Clone + Send + Sync>(
        s: &'scope thread::Scope<'scope, '_>,
        store: &'scope Versioned<T>,
        apply: impl FnOnce(&mut T) + Send + 'scope,
    ) -> Self {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release, parked) = mpsc::channel::<()>();
        s.spawn(move || {
            store
                .update(|value| {
                    entered_tx.send(()).unwrap();
                    let _ = parked.recv(); // released, or the handle dropped
                    apply(value);
                })
                .unwrap();
        });
        entered_rx.recv_timeout(HANG).unwrap();
        Self { release }
    }

    fn release(self) {
        let _ = self.release.send(());
    }
}

// ---------------------------------------------------------------- SnapshotCell

#[test]
fn backend_matches_the_feature() {
    let expected = if cfg!(feature = "snapshot-rwlock") {
        "rwlock"
    } else {
        "arc-swap"
    };
    assert_eq!(SnapshotCell::<u8>::BACKEND, expected);
}

#[test]
fn an_old_guard_keeps_its_value_while_new_loads_see_the_store() {
    let cell = SnapshotCell::new(vec![1, 2]);
    let old = cell.load();
    let owned = cell.snapshot();
    cell.store(vec![3]);
    assert_eq!(*old, vec![1, 2]);
    assert_eq!(*owned, vec![1, 2]);
    assert_eq!(*cell.load(), vec![3]);
    assert!(!SnapshotGuard::ptr_eq(&old, &cell.snapshot()));
    let previous = cell.swap(vec![4]);
    assert_eq!(*previous, vec![3]);
    assert_eq!(*cell.into_inner(), vec![4]);
}

#[test]
fn a_thread_holding_a_guard_can_still_store() {
    // The lock backend must not hold its lock for the guard's lifetime.
    let cell = SnapshotCell::new(1);
    let guard = cell.load();
    cell.store(2);
    cell.rcu(|n| n + 1);
    assert_eq!((*guard, *cell.load()), (1, 3));
}

#[test]
fn rcu_closure_may_read_the_cell_itself() {
    let cell = SnapshotCell::new(10);
    let prev = cell.rcu(|n| n + *cell.load());
    assert_eq!((*prev, *cell.load()), (10, 20));
}

/// Counts live instances, so a leak or a double drop shows.
struct Tracked(Arc<AtomicUsize>);

impl Tracked {
    fn new(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Tracked(Arc::clone(live))
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn replaced_values_are_freed_once_their_last_reader_is_done() {
    let live = Arc::new(AtomicUsize::new(0));
    let cell = SnapshotCell::new(Tracked::new(&live));
    let guard = cell.load();
    cell.store(Tracked::new(&live));
    assert_eq!(
        live.load(Ordering::SeqCst),
        2,
        "the guard pins the old value"
    );
    drop(guard);
    assert_eq!(live.load(Ordering::SeqCst), 1, "freed with its last reader");
    let snap = cell.snapshot();
    for _ in 0..100 {
        cell.store(Tracked::new(&live));
    }
    assert_eq!(live.load(Ordering::SeqCst), 2);
    drop(snap);
    drop(cell);
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[test]
fn rcu_from_many_threads_loses_no_update() {
    let cell = SnapshotCell::new(0u64);
    let (threads, per_thread) = (4, 2_000);
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per_thread {
                    cell.rcu(|n| n + 1);
                }
            });
        }
    });
    assert_eq!(*cell.load(), threads * per_thread);
}

/// A value whose two halves must always agree: `sum` is the checksum of `seq`.
#[derive(Clone, Debug)]
struct Checked {
    seq: u64,
    items: Vec<u64>,
    sum: u64,
}

impl Checked {
    fn new(seq: u64) -> Self {
        let items: Vec<u64> = (0..8)
            .map(|i| seq.wrapping_mul(31).wrapping_add(i))
            .collect();
        let sum = checksum(&items);
        Checked { seq, items, sum }
    }

    fn is_whole(&self) -> bool {
        checksum(&self.items) == self.sum
    }
}

fn checksum(items: &[u64]) -> u64 {
    items.iter().fold(0xcbf2_9ce4_8422_2325, |h, x| {
        (h ^ x).wrapping_mul(0x100_0000_01b3)
    })
}

#[test]
fn stress_readers_see_whole_values_in_order_while_writers_store() {
    let cell = SnapshotCell::new(Checked::new(0));
    let stop = AtomicBool::new(false);
    let (writers, per_writer) = (2u64, 2_000u64);
    let loads = AtomicU64::new(0);
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) {
                    let v = cell.load();
                    assert!(v.is_whole(), "torn value {v:?}");
                    assert!(v.seq >= last, "went back from {last} to {}", v.seq);
                    last = v.seq;
                    let owned = cell.snapshot();
                    assert!(owned.is_whole() && owned.seq >= last);
                    loads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..per_writer {
                        cell.rcu(|v| Checked::new(v.seq + 1));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let last = cell.load();
    assert!(last.is_whole());
    assert_eq!(last.seq, writers * per_writer, "rcu lost an update");
    assert!(loads.load(Ordering::Relaxed) > 0);
}

// ---------------------------------------------------------------- Versioned basics

#[test]
fn a_failed_write_publishes_nothing() {
    let store = Versioned::new(vec![1, 2, 3]);
    let before = store.snapshot();
    let r = store.write(|v| {
        v.clear();
        v.push(99);
        Err::<(), _>("validation failed")
    });
    assert_eq!(r, Err(SnapshotError::Aborted("validation failed")));
    assert_eq!(store.version(), 0);
    assert_eq!(store.read(|v| v.clone()), vec![1, 2, 3]);
    assert_eq!(store.snapshot().version(), before.version());
    let m = store.metrics();
    assert_eq!((m.commits, m.aborts, m.version), (0, 1, 0));

    assert_eq!(store.update(|v| v.push(4)), Ok(()));
    assert_eq!(store.read_versioned(|ver, v| (ver, v.len())), (1, 4));
}

#[test]
fn a_panicking_write_publishes_nothing_and_frees_the_writer_slot() {
    let store = Versioned::new(0u32);
    let r = catch_unwind(AssertUnwindSafe(|| {
        store.update(|n| {
            *n = 7;
            panic!("writer bug");
        })
    }));
    assert!(r.is_err());
    assert_eq!((store.version(), store.read(|n| *n)), (0, 0));
    assert_eq!(store.metrics().panics, 1);
    // The slot is free again (a hang here would mean a leaked permit) and
    // the re-entrancy mark was cleared (else this would be Reentrant).
    assert_eq!(store.try_write(|n| Ok::<_, ()>(*n + 1)), Ok(1));
    assert_eq!(store.update(|n| *n = 5), Ok(()));
    assert_eq!((store.version(), store.read(|n| *n)), (2, 5));
}

#[test]
fn version_counts_published_writes_only() {
    let store = Versioned::new(0u64);
    for i in 1..=10u64 {
        store.update(|n| *n += 1).unwrap();
        let _ = store.write(|_| Err::<(), _>(()));
        assert_eq!(store.version(), i);
        assert_eq!(store.read(|n| *n), i);
    }
    let m = store.metrics();
    assert_eq!((m.commits, m.aborts, m.version), (10, 10, 10));
}

#[test]
fn a_reentrant_write_is_refused_not_hung() {
    let store = Versioned::new(0u32);
    let outer = store.write(|n| {
        *n = 1;
        let inner: Vec<SnapshotError<()>> = vec![
            store.write(|_| Ok::<_, ()>(())).unwrap_err(),
            store
                .write_timeout(Duration::from_secs(3600), |_| Ok::<_, ()>(()))
                .unwrap_err(),
            store.try_write(|_| Ok::<_, ()>(())).unwrap_err(),
            store.update(|_| ()).unwrap_err().widen(),
            futures::executor::block_on(store.write_async(|_| Ok::<_, ()>(()))).unwrap_err(),
        ];
        // A read inside a write sees the last committed version, not the copy.
        assert_eq!(store.read(|n| *n), 0);
        Ok::<_, ()>(inner)
    });
    let inner = outer.expect("the outer write still commits");
    assert!(
        inner.iter().all(|e| *e == SnapshotError::Reentrant),
        "{inner:?}"
    );
    assert_eq!((store.version(), store.read(|n| *n)), (1, 1));
    assert_eq!(store.metrics().reentrant, 5);
}

#[test]
fn writes_to_another_store_inside_a_write_are_fine() {
    let a = Versioned::new(1);
    let b = Versioned::new(2);
    let r = a.write(|x| {
        b.update(|y| *y += *x).map_err(|_| ())?;
        *x += 10;
        Ok::<_, ()>(())
    });
    assert_eq!(r, Ok(()));
    assert_eq!((a.read(|x| *x), b.read(|y| *y)), (11, 3));
}

#[test]
fn write_timeout_gives_up_no_earlier_than_the_timeout_and_try_write_is_busy() {
    let store = Versioned::new(0u32);
    thread::scope(|s| {
        let writer = ParkedWriter::park(s, &store, |n| *n = 1);
        let timeout = Duration::from_millis(50);
        let ran = AtomicBool::new(false);
        let start = Instant::now();
        let r = store.write_timeout(timeout, |_| {
            ran.store(true, Ordering::SeqCst);
            Ok::<_, ()>(())
        });
        assert_eq!(r, Err(SnapshotError::Timeout));
        assert!(start.elapsed() >= timeout, "gave up early");
        assert_eq!(
            store.try_write(|_| {
                ran.store(true, Ordering::SeqCst);
                Ok::<_, ()>(())
            }),
            Err(SnapshotError::Busy)
        );
        assert!(!ran.load(Ordering::SeqCst), "a refused write must not run");
        writer.release();
    });
    let m = store.metrics();
    assert_eq!((m.timeouts, m.busy, m.commits, m.waiting), (1, 1, 1, 0));
    assert_eq!(store.version(), 1);
}

// ---------------------------------------------------------------- Versioned acceptance

/// An index whose version, length and checksum must always agree: version
/// `v` holds `v` entries and their checksum.
#[derive(Clone, Debug)]
struct Index {
    entries: Vec<u64>,
    sum: u64,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            entries: Vec::new(),
            sum: checksum(&[]),
        }
    }
}

impl Index {
    /// Appends in two steps, so a half-applied write would be visible as a
    /// checksum mismatch.
    fn append(&mut self, x: u64) {
        self.entries.push(x);
        self.sum = checksum(&self.entries);
    }

    fn agrees_with(&self, version: u64) -> bool {
        self.entries.len() as u64 == version && checksum(&self.entries) == self.sum
    }
}

#[test]
fn ten_thousand_reads_complete_while_a_writer_is_parked_inside_write() {
    let store = Arc::new(Versioned::named("snap.parked", Index::default()));
    store.update(|ix| ix.append(1)).unwrap();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let writer = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            store.write(|ix| {
                ix.append(2);
                entered_tx.send(()).unwrap();
                // Parked inside write, its change applied to the copy only.
                release_rx.recv().unwrap();
                Ok::<_, ()>(())
            })
        })
    };
    entered_rx.recv_timeout(HANG).unwrap();
    // The reads run on their own thread so that a read blocked by the
    // parked writer fails this test instead of hanging it.
    let (done_tx, done_rx) = mpsc::channel();
    let reader = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            for _ in 0..10_000 {
                store.read_versioned(|version, ix| {
                    assert_eq!(version, 1, "saw the unpublished write");
                    assert!(ix.agrees_with(version), "{ix:?} at {version}");
                });
            }
            done_tx.send(()).unwrap();
        })
    };
    done_rx
        .recv_timeout(HANG)
        .expect("10,000 reads did not complete while a writer was parked");
    reader.join().unwrap();
    assert_eq!(
        store.metrics().commits,
        1,
        "the parked write is not published"
    );
    release_tx.send(()).unwrap();
    assert_eq!(writer.join().unwrap(), Ok(()));
    assert_eq!(
        store.read_versioned(|v, ix| (v, ix.entries.clone())),
        (2, vec![1, 2])
    );
}

#[test]
fn stress_readers_only_ever_see_committed_versions() {
    let store = Versioned::new(Index::default());
    let stop = AtomicBool::new(false);
    let (writers, per_writer) = (3u64, 3_000u64);
    let committed = AtomicU64::new(0);
    let aborted = AtomicU64::new(0);
    let panicked = AtomicU64::new(0);
    let reads = AtomicU64::new(0);
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) {
                    store.read_versioned(|version, ix| {
                        assert!(ix.agrees_with(version), "{ix:?} at version {version}");
                        assert!(version >= last, "version went back {last} -> {version}");
                        assert!(!ix.entries.contains(&u64::MAX), "a failed write leaked");
                        last = version;
                    });
                    let snap = store.snapshot();
                    assert!(snap.agrees_with(snap.version()));
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (store, committed, aborted, panicked) =
                    (&store, &committed, &aborted, &panicked);
                s.spawn(move || {
                    for i in 0..per_writer {
                        match (w + i) % 5 {
                            // Fails after changing the copy: nothing may show.
                            0 if i % 40 != 0 => {
                                let r = store.write(|ix| {
                                    ix.append(u64::MAX);
                                    Err::<(), _>("rejected")
                                });
                                assert_eq!(r, Err(SnapshotError::Aborted("rejected")));
                                aborted.fetch_add(1, Ordering::Relaxed);
                            }
                            // Panics after changing the copy: nothing may show
                            // (rarely: each panic prints a message).
                            0 => {
                                let r = catch_unwind(AssertUnwindSafe(|| {
                                    store.update(|ix| {
                                        ix.append(u64::MAX);
                                        panic!("boom");
                                    })
                                }));
                                assert!(r.is_err());
                                panicked.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                store.update(|ix| ix.append(w * 1_000_000 + i)).unwrap();
                                committed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let ok = committed.load(Ordering::Relaxed);
    assert_eq!(store.version(), ok);
    assert!(store.read_versioned(|v, ix| ix.agrees_with(v)));
    let m = store.metrics();
    assert_eq!(
        (m.commits, m.aborts, m.panics, m.waiting),
        (
            ok,
            aborted.load(Ordering::Relaxed),
            panicked.load(Ordering::Relaxed),
            0
        )
    );
    assert!(reads.load(Ordering::Relaxed) > 0);
}

#[test]
fn stress_money_is_conserved_across_concurrent_transfers() {
    const ACCOUNTS: usize = 16;
    const TOTAL: i64 = 16 * 100;
    let bank = Versioned::new(vec![100i64; ACCOUNTS]);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                bank.read(|a| assert_eq!(a.iter().sum::<i64>(), TOTAL));
            }
        });
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let bank = &bank;
                s.spawn(move || {
                    let mut x = t + 1;
                    for _ in 0..2_000 {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let (from, to) =
                            ((x >> 33) as usize % ACCOUNTS, (x >> 40) as usize % ACCOUNTS);
                        let amount = (x >> 50) as i64 % 150;
                        // Overdrafts are refused after the debit: nothing may show.
                        let _ = bank.write(|a| {
                            a[from] -= amount;
                            if a[from] < 0 {
                                return Err("overdrawn");
                            }
                            a[to] += amount;
                            Ok(())
                        });
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    bank.read(|a| {
        assert_eq!(a.iter().sum::<i64>(), TOTAL);
        assert!(a.iter().all(|&b| b >= 0));
    });
    let m = bank.metrics();
    assert_eq!(m.commits + m.aborts, 8_000);
    assert_eq!(m.version, m.commits);
}

// ---------------------------------------------------------------- async writers

fn incr(n: &mut u64) -> Result<(), ()> {
    *n += 1;
    Ok(())
}

/// Polls `fut` once with a no-op waker.
fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn writers_are_served_first_in_first_out() {
    let store = Versioned::new(Vec::<u32>::new());
    let order = StdMutex::new(Vec::new());
    let held = store.snapshot(); // unrelated to the writer slot: just a reader
    let mut blocker = Box::pin(store.write_async(|v| {
        v.push(0);
        Ok::<_, Infallible>(())
    }));
    // The first writer gets the slot at once.
    assert!(poll_once(&mut blocker).is_ready());
    thread::scope(|s| {
        // Hold the slot with a writer parked on another thread.
        let writer = ParkedWriter::park(s, &store, |v| v.push(1));
        let store = &store;
        // Queue writers 2, 3, 4 in that order: each enqueues on its first poll.
        let mut queued: Vec<_> = (2..=4u32)
            .map(|id| {
                let order = &order;
                Box::pin(store.write_async(move |v| {
                    order.lock().unwrap().push(id);
                    v.push(id);
                    Ok::<_, Infallible>(())
                }))
            })
            .collect();
        for w in &mut queued {
            assert!(poll_once(w).is_pending());
        }
        assert_eq!(store.metrics().waiting, 3);
        writer.release();
        // Poll the latest first: only the head of the queue may proceed.
        let mut done = [false; 3];
        let deadline = Instant::now() + HANG;
        while done.iter().any(|d| !d) {
            assert!(Instant::now() < deadline, "queued writers never finished");
            for (i, w) in queued.iter_mut().enumerate().rev() {
                if !done[i] && poll_once(w).is_ready() {
                    done[i] = true;
                }
            }
            thread::yield_now();
        }
    });
    assert_eq!(*order.lock().unwrap(), vec![2, 3, 4]);
    assert_eq!(store.read(|v| v.clone()), vec![0, 1, 2, 3, 4]);
    assert_eq!(held.version(), 0);
}

#[test]
fn dropping_a_waiting_async_writer_leaks_nothing_and_runs_nothing() {
    let store = Versioned::new(0u32);
    let ran = AtomicUsize::new(0);
    thread::scope(|s| {
        let writer = ParkedWriter::park(s, &store, |n| *n += 1);
        for _ in 0..100 {
            let mut w = Box::pin(store.write_async(|n| {
                ran.fetch_add(1, Ordering::SeqCst);
                *n += 100;
                Ok::<_, ()>(())
            }));
            assert!(poll_once(&mut w).is_pending());
            drop(w); // cancelled while queued
        }
        writer.release();
    });
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(
        store.try_write(|n| Ok::<_, ()>(*n)),
        Ok(1),
        "the slot is free"
    );
    assert_eq!(store.version(), 2);
}

#[test]
fn an_async_writer_resumed_on_another_thread_does_not_make_its_first_thread_reentrant() {
    // The writer waits on this thread and runs its closure on another one:
    // while it does, this thread is a plain outside writer (Busy), not a
    // re-entrant one.
    let store = Versioned::new(0u32);
    let (inside_tx, inside_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    thread::scope(|s| {
        let writer = ParkedWriter::park(s, &store, |n| *n += 1);
        // Owned by this closure, so a failed assertion below drops it and
        // frees the writer instead of hanging the scope.
        let go_tx = go_tx;
        let mut w = Box::pin(store.write_async(move |n| {
            inside_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            *n += 10;
            Ok::<_, ()>(())
        }));
        assert!(poll_once(&mut w).is_pending()); // queued from this thread
        let runner = s.spawn(move || {
            let deadline = Instant::now() + HANG;
            loop {
                if let Poll::Ready(r) = poll_once(&mut w) {
                    return r;
                }
                assert!(Instant::now() < deadline, "the queued writer never ran");
                thread::yield_now();
            }
        });
        writer.release();
        inside_rx.recv_timeout(HANG).unwrap();
        assert_eq!(
            store.try_write(|_| Ok::<_, ()>(())),
            Err(SnapshotError::Busy)
        );
        go_tx.send(()).unwrap();
        assert_eq!(runner.join().unwrap(), Ok(()));
    });
    assert_eq!((store.version(), store.read(|n| *n)), (2, 11));
    assert_eq!(store.metrics().reentrant, 0);
}

#[test]
fn async_writers_under_tokio_count_exactly_and_survive_cancellation() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let store = Arc::new(Versioned::new(0u64));
    rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for i in 0..200u64 {
                        if (t + i) % 7 == 0 {
                            // A write cancelled at a random point: either it
                            // ran whole or not at all.
                            let _ = tokio::time::timeout(
                                Duration::from_micros(1),
                                store.write_async(incr),
                            )
                            .await;
                        } else {
                            store.write_async(incr).await.unwrap();
                        }
                        if i % 16 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let m = store.metrics();
    assert_eq!(
        store.read(|n| *n),
        m.commits,
        "every published write counted once"
    );
    assert_eq!(m.version, m.commits);
    assert_eq!(m.waiting, 0);
    assert!(m.commits >= 8 * 200 - 8 * 200 / 7 - 8);
    assert_eq!(store.try_write(|_| Ok::<_, ()>(())), Ok(()));
}

// ---------------------------------------------------------------- diag

fn take(prefix: &str) -> Vec<Violation> {
    support::take_violations(prefix)
}

/// Runs `first` then `second` and expects exactly one lock-order report
/// naming both classes of `prefix` (none with checking off).
fn expect_cycle(prefix: &str, first: impl FnOnce(), second: impl FnOnce()) {
    take(prefix);
    first();
    assert!(take(prefix).is_empty(), "one order alone is no cycle");
    second();
    let seen = take(prefix);
    if diag::checking_enabled() {
        assert_eq!(seen.len(), 1, "{seen:#?}");
        assert_eq!(seen[0].kind(), ViolationKind::LockOrder);
        let text = seen[0].to_string();
        assert!(text.contains(&format!("{prefix}store")), "{text}");
        assert!(text.contains(&format!("{prefix}lock")), "{text}");
    } else {
        assert!(seen.is_empty());
    }
}

#[test]
fn lock_then_write_then_lock_is_a_reported_cycle_closed_at_the_lock() {
    let m = Mutex::named("snapcycle1.lock", ());
    let store = Versioned::named("snapcycle1.store", 0u32);
    expect_cycle(
        "snapcycle1.",
        || {
            let _m = m.lock();
            store.update(|n| *n += 1).unwrap(); // lock, then write
        },
        || {
            store
                .update(|n| {
                    let _m = m.lock(); // inside the write, lock: closes the cycle
                    *n += 1;
                })
                .unwrap();
        },
    );
    assert_eq!(store.version(), 2);
}

#[test]
fn write_then_lock_then_write_is_a_reported_cycle_closed_at_the_write() {
    let m = Mutex::named("snapcycle2.lock", ());
    let store = Versioned::named("snapcycle2.store", 0u32);
    expect_cycle(
        "snapcycle2.",
        || {
            store
                .update(|n| {
                    let _m = m.lock(); // inside the write, lock
                    *n += 1;
                })
                .unwrap();
        },
        || {
            let _m = m.lock();
            store.update(|n| *n += 1).unwrap(); // lock, then write: closes it
        },
    );
    assert_eq!(store.version(), 2);
}

#[test]
fn readers_take_no_lock_class() {
    take("snapread.");
    let m = Mutex::named("snapread.lock", ());
    let store = Versioned::named("snapread.store", 0u32);
    {
        let _m = m.lock();
        store.read(|_| ());
    }
    store.read(|_| {
        let _m = m.lock();
    });
    assert!(take("snapread.").is_empty());
}

#[test]
fn barrier_released_readers_agree_with_one_version_each() {
    // Many readers released at once against a writer publishing in a loop:
    // each read pins one version and sees exactly its contents.
    let store = Versioned::new(Index::default());
    let barrier = Barrier::new(3);
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..2_000 {
                    store.read_versioned(|v, ix| assert!(ix.agrees_with(v)));
                }
            });
        }
        barrier.wait();
        for i in 0..200 {
            store.update(|ix| ix.append(i)).unwrap();
        }
    });
    assert_eq!(store.version(), 200);
}
