//! `atom`: strata's `Atom` against arc-swap (`rcu`), a `Mutex<Arc<T>>` and,
//! for word values, a raw `AtomicU64` CAS loop.
//!
//! - `swap_1w`, `swap_2w`: 1 or 2 threads replacing a small struct
//!   (`[u64; 4]`, every field incremented) with `swap(f)` / `rcu(f)` /
//!   lock-clone-replace. One operation is one successful swap.
//! - `read_mostly_2t`: 2 threads, 9 reads of the value for every swap
//!   (strata `Atom::read`, arc-swap `load` guard, or the mutex: no `Arc`
//!   clone where the impl can avoid one).
//! - `swap_u64_2w`: 2 writers incrementing a `u64`; `atomic_u64` is the
//!   lower bound a word CAS can reach. strata's impl is `WordAtom<u64>`,
//!   the atom strata offers for word-sized values (same validators and
//!   watches as `Atom`, the value inline in one `AtomicU64`); `Atom<u64>`
//!   would hand out an `Arc<u64>` per change.
//!
//! Every impl checks the final value. For the 2-writer cases every 32nd
//! swap is timed and the p99 of those latencies is printed when the group
//! ends.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::harness::{Case, Group};
use crate::util::timed_threads;

type Val = [u64; 4];

fn bump(v: &Val) -> Val {
    [v[0] + 1, v[1] + 1, v[2] + 1, v[3] + 1]
}

/// A cell of `T` as each impl offers it.
trait Cell<T>: Send + Sync + 'static {
    fn swap_with(&self, f: impl FnMut(&T) -> T);
    fn read(&self) -> T;
    fn put(&self, v: T);
}

impl<T: Copy + Send + Sync + 'static> Cell<T> for strata::atom::Atom<T> {
    #[inline]
    fn swap_with(&self, f: impl FnMut(&T) -> T) {
        if self.swap(f).is_err() {
            unreachable!("no validator");
        }
    }
    #[inline]
    fn read(&self) -> T {
        // The guard-style read (no refcount traffic), as arc-swap's `load`.
        strata::atom::Atom::read(self, |v| *v)
    }
    fn put(&self, v: T) {
        if self.reset(v).is_err() {
            unreachable!("no validator");
        }
    }
}

impl<T: Copy + Send + Sync + 'static> Cell<T> for ArcSwap<T> {
    #[inline]
    fn swap_with(&self, mut f: impl FnMut(&T) -> T) {
        self.rcu(|cur| f(cur));
    }
    #[inline]
    fn read(&self) -> T {
        **self.load()
    }
    fn put(&self, v: T) {
        self.store(Arc::new(v));
    }
}

impl<T: Copy + Send + Sync + 'static> Cell<T> for Mutex<Arc<T>> {
    #[inline]
    fn swap_with(&self, mut f: impl FnMut(&T) -> T) {
        let mut g = self.lock().unwrap();
        *g = Arc::new(f(&g));
    }
    #[inline]
    fn read(&self) -> T {
        let a = Arc::clone(&self.lock().unwrap());
        *a
    }
    fn put(&self, v: T) {
        *self.lock().unwrap() = Arc::new(v);
    }
}

/// strata's atom for word values (swap_u64_2w).
impl Cell<u64> for strata::atom::WordAtom<u64> {
    #[inline]
    fn swap_with(&self, mut f: impl FnMut(&u64) -> u64) {
        if self.swap(|x| f(&x)).is_err() {
            unreachable!("no validator");
        }
    }
    #[inline]
    fn read(&self) -> u64 {
        self.load()
    }
    fn put(&self, v: u64) {
        if self.reset(v).is_err() {
            unreachable!("no validator");
        }
    }
}

/// The raw word CAS loop (swap_u64_2w only).
impl Cell<u64> for AtomicU64 {
    #[inline]
    fn swap_with(&self, mut f: impl FnMut(&u64) -> u64) {
        let mut cur = self.load(Ordering::Relaxed);
        loop {
            match self.compare_exchange_weak(cur, f(&cur), Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }
    #[inline]
    fn read(&self) -> u64 {
        self.load(Ordering::Acquire)
    }
    fn put(&self, v: u64) {
        self.store(v, Ordering::Release);
    }
}

/// Every 32nd swap's latency, for the p99 printed at the end.
struct Latency {
    label: String,
    ns: Mutex<Vec<u32>>,
}

impl Drop for Latency {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut *self.ns.lock().unwrap());
        if v.len() < 1_000 {
            return;
        }
        v.sort_unstable();
        let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
        println!(
            "{:<34} p50 {:>6} ns   p99 {:>6} ns   ({} swaps timed)",
            self.label,
            p(0.50),
            p(0.99),
            v.len()
        );
    }
}

/// What a swap case does to its value: start, step, and how many steps a
/// value is from the start.
#[derive(Clone, Copy)]
struct Counting<T> {
    zero: T,
    step: fn(&T) -> T,
    count: fn(&T) -> u64,
}

/// Swaps on `writers` threads; the final value must be `iters` steps on.
fn swaps<T: Copy + Send + Sync + 'static, C: Cell<T>>(
    c: &mut Case,
    (name, case): (&'static str, &'static str),
    writers: usize,
    cell: C,
    Counting { zero, step, count }: Counting<T>,
) {
    let lat = Arc::new(Latency {
        label: format!("atom/{case} {name}"),
        ns: Mutex::new(Vec::new()),
    });
    let timed = writers > 1;
    c.imp(name, move |iters| {
        cell.put(zero);
        let d = timed_threads(writers, iters, |_, n| {
            let mut local = Vec::new();
            for i in 0..n {
                if timed && i % 32 == 0 {
                    let t = Instant::now();
                    cell.swap_with(step);
                    local.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                } else {
                    cell.swap_with(step);
                }
            }
            if timed {
                lat.ns.lock().unwrap().extend(local);
            }
        });
        assert_eq!(count(&cell.read()), iters, "{name}: lost swaps");
        d
    });
}

/// 2 threads, 9 reads per swap; one operation is a read or a swap.
fn read_mostly<C: Cell<Val>>(c: &mut Case, name: &'static str, cell: C) {
    c.imp(name, move |iters| {
        cell.put([0; 4]);
        let swaps = AtomicU64::new(0);
        let d = timed_threads(2, iters, |t, n| {
            let mut mine = 0;
            for i in 0..n {
                if (i + t as u64).is_multiple_of(10) {
                    cell.swap_with(bump);
                    mine += 1;
                } else {
                    let v = cell.read();
                    black_box(v[0] + v[3]);
                }
            }
            swaps.fetch_add(mine, Ordering::Relaxed);
        });
        let v = cell.read();
        assert_eq!(v[0], swaps.load(Ordering::Relaxed), "{name}: lost swaps");
        assert!(v.iter().all(|&x| x == v[0]), "{name}: torn value");
        d
    });
}

fn val_case(c: &mut Case, case: &'static str, writers: usize) {
    let z = [0u64; 4];
    let k = Counting {
        zero: z,
        step: bump,
        count: |v| v[0],
    };
    swaps(c, ("strata", case), writers, strata::atom::Atom::new(z), k);
    swaps(c, ("arc-swap", case), writers, ArcSwap::from_pointee(z), k);
    swaps(c, ("std_mutex", case), writers, Mutex::new(Arc::new(z)), k);
}

/// The `atom` group.
pub fn group() -> Group {
    let k = Counting {
        zero: 0u64,
        step: |x| x + 1,
        count: |x| *x,
    };
    Group::new("atom")
        .case("swap_1w", |c| val_case(c, "swap_1w", 1))
        .case("swap_2w", |c| val_case(c, "swap_2w", 2))
        .case("read_mostly_2t", |c| {
            read_mostly(c, "strata", strata::atom::Atom::new([0u64; 4]));
            read_mostly(c, "arc-swap", ArcSwap::from_pointee([0u64; 4]));
            read_mostly(c, "std_mutex", Mutex::new(Arc::new([0u64; 4])));
        })
        .case("swap_u64_2w", move |c| {
            let case = "swap_u64_2w";
            swaps(c, ("strata", case), 2, strata::atom::WordAtom::new(0u64), k);
            swaps(c, ("arc-swap", case), 2, ArcSwap::from_pointee(0u64), k);
            swaps(c, ("std_mutex", case), 2, Mutex::new(Arc::new(0u64)), k);
            swaps(c, ("atomic_u64", case), 2, AtomicU64::new(0), k);
        })
}
