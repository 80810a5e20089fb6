//! `snapshot`: `SnapshotCell` and `Versioned` reads against arc-swap and a
//! `parking_lot::RwLock<Arc<T>>`, with and without a writer running.
//!
//! * `load`: a short read through a guard (strata `load`, arc-swap `load`,
//!   the lock's read guard), nobody writing.
//! * `load_busy_writer`: the same while another thread stores a fresh value
//!   as fast as it can (on 2 cores: one reading, one writing).
//! * `snapshot_owned`: an owned `Arc` out of the cell (strata `snapshot`,
//!   arc-swap `load_full`, a clone under the read lock).
//! * `versioned_read_during_write`: a read of a copy-on-write value while a
//!   writer keeps cloning it, changing it and publishing the copy (strata
//!   `Versioned::write`; the peers do the same by hand: arc-swap `rcu`, and
//!   clone-outside-then-swap under the lock).
//!
//! Every read checks that the value is whole (its first and last words
//! agree) and the sum of what was read is checked at the end.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::RwLock;
use strata::snapshot::{SnapshotCell, Versioned};

use crate::harness::{Case, Group};

/// The value behind the pointer: whole iff `w[0] == w[7]`.
#[derive(Clone, Debug)]
struct Value {
    w: [u64; 8],
}

impl Value {
    fn new(n: u64) -> Self {
        Value { w: [n; 8] }
    }

    /// One read: the first word, or a huge number if the value is torn.
    #[inline]
    fn read(&self) -> u64 {
        if self.w[0] == self.w[7] {
            self.w[0]
        } else {
            u64::MAX / 4
        }
    }
}

/// The copy-on-write value of `versioned_read_during_write`: 64 words, all
/// equal in a whole value; a write bumps every word.
#[derive(Clone, Debug)]
struct Table {
    w: Vec<u64>,
}

impl Table {
    fn new() -> Self {
        Table { w: vec![1; 64] }
    }

    #[inline]
    fn read(&self) -> u64 {
        let (first, last) = (self.w[0], self.w[63]);
        if first == last { 1 } else { u64::MAX / 4 }
    }

    fn bump(&mut self) {
        for x in &mut self.w {
            *x += 1;
        }
    }
}

/// How the three impls of a case read and write one shared value.
trait Cell: Send + Sync + 'static {
    fn read(&self) -> u64;
    fn read_owned(&self) -> u64;
    fn store(&self, n: u64);
}

impl Cell for SnapshotCell<Value> {
    #[inline]
    fn read(&self) -> u64 {
        self.load().read()
    }
    #[inline]
    fn read_owned(&self) -> u64 {
        self.snapshot().read()
    }
    fn store(&self, n: u64) {
        SnapshotCell::store(self, Value::new(n));
    }
}

impl Cell for ArcSwap<Value> {
    #[inline]
    fn read(&self) -> u64 {
        self.load().read()
    }
    #[inline]
    fn read_owned(&self) -> u64 {
        self.load_full().read()
    }
    fn store(&self, n: u64) {
        ArcSwap::store(self, Arc::new(Value::new(n)));
    }
}

impl Cell for RwLock<Arc<Value>> {
    #[inline]
    fn read(&self) -> u64 {
        self.read().read()
    }
    #[inline]
    fn read_owned(&self) -> u64 {
        let owned = Arc::clone(&self.read());
        owned.read()
    }
    fn store(&self, n: u64) {
        let fresh = Arc::new(Value::new(n));
        // The replaced value is freed outside the lock.
        drop(std::mem::replace(&mut *self.write(), fresh));
    }
}

/// Runs `op` `iters` times on this thread while, if `writer` is set,
/// another thread keeps calling it; returns the reads' time and checks that
/// every read was whole and at least `floor` (values only grow).
fn timed_reads(
    iters: u64,
    floor: u64,
    op: impl Fn() -> u64,
    writer: Option<&(dyn Fn(u64) + Sync)>,
) -> Duration {
    let stop = AtomicBool::new(false);
    let writes = AtomicU64::new(0);
    std::thread::scope(|s| {
        if let Some(write) = writer {
            let (stop, writes) = (&stop, &writes);
            s.spawn(move || {
                let mut n = floor;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    write(n);
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            });
            // Reads start once the writer is running.
            while writes.load(Ordering::Relaxed) == 0 {
                std::hint::spin_loop();
            }
        }
        let start = Instant::now();
        let mut sum = 0u64;
        for _ in 0..iters {
            sum = sum.wrapping_add(black_box(op()));
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        assert!(
            sum >= iters * floor && sum < u64::MAX / 4,
            "a read saw a torn or old value (sum {sum})"
        );
        elapsed
    })
}

/// Registers impl `name` of a cell case: `owned` picks the read, `busy`
/// whether a writer runs.
fn cell_impl<C: Cell>(c: &mut Case, name: &'static str, cell: C, owned: bool, busy: bool) {
    let cell = Arc::new(cell);
    // Values start at 1 and only grow, so every read is at least 1.
    cell.store(1);
    c.imp(name, move |iters| {
        let read = || {
            if owned {
                cell.read_owned()
            } else {
                cell.read()
            }
        };
        let write = |n: u64| cell.store(n);
        let d = timed_reads(
            iters,
            1,
            read,
            busy.then_some(&write as &(dyn Fn(u64) + Sync)),
        );
        cell.store(1);
        d
    });
}

/// Registers the three impls of a cell case.
fn cell_case(c: &mut Case, owned: bool, busy: bool) {
    cell_impl(c, "strata", SnapshotCell::new(Value::new(1)), owned, busy);
    cell_impl(
        c,
        "arc-swap",
        ArcSwap::from_pointee(Value::new(1)),
        owned,
        busy,
    );
    cell_impl(
        c,
        "rwlock_arc",
        RwLock::new(Arc::new(Value::new(1))),
        owned,
        busy,
    );
}

/// The `snapshot` group.
pub fn group() -> Group {
    Group::new("snapshot")
        .case("load", |c| cell_case(c, false, false))
        .case("load_busy_writer", |c| cell_case(c, false, true))
        .case("snapshot_owned", |c| cell_case(c, true, false))
        .case("versioned_read_during_write", |c| {
            let store = Versioned::new(Table::new());
            c.imp("strata", move |iters| {
                let write = |_| {
                    store.update(Table::bump).expect("not re-entrant");
                };
                timed_reads(iters, 1, || store.read(Table::read), Some(&write))
            });
            let cell = ArcSwap::from_pointee(Table::new());
            c.imp("arc-swap", move |iters| {
                let write = |_| {
                    cell.rcu(|t| {
                        let mut next = Table::clone(t);
                        next.bump();
                        next
                    });
                };
                timed_reads(iters, 1, || cell.load().read(), Some(&write))
            });
            let lock = RwLock::new(Arc::new(Table::new()));
            c.imp("rwlock_arc", move |iters| {
                let write = |_| {
                    // Clone outside the write lock, swap under it (one writer).
                    let mut next = Table::clone(&lock.read());
                    next.bump();
                    drop(std::mem::replace(&mut *lock.write(), Arc::new(next)));
                };
                timed_reads(iters, 1, || lock.read().read(), Some(&write))
            });
        })
}
