//! `stm`: bank transfers (2 reads + 2 writes per transaction) on strata's
//! STM against fast-stm, stm, one global std / parking_lot mutex over all
//! accounts, and per-account locks taken in id order.
//!
//! - `bank_1024_1t`, `bank_1024_2t`: 1024 accounts, random pairs, 1 or 2
//!   threads (few conflicts).
//! - `bank_2_2t`: 2 accounts, 2 threads: every transaction conflicts. The
//!   threads draw work from one shared budget in chunks, so a thread that
//!   keeps losing does fewer; fairness (min/max commits per thread, over all
//!   samples) is printed when the group ends.
//! - `bank_work_2t`: 1024 accounts, 2 threads, ~1 µs of computation inside
//!   each transaction (under the lock for the lock-based impls), between
//!   the reads and the writes.
//!
//! Every impl checks after each sample that no money was created or lost.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use crate::harness::{Case, Group};
use crate::util::timed_threads;

const START: u64 = 1 << 40;

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Two distinct account indexes.
#[inline]
fn pair(rng: &mut u64, n: usize) -> (usize, usize) {
    let r = xorshift(rng);
    let a = (r as usize) % n;
    let b = (a + 1 + ((r >> 32) as usize) % (n - 1)) % n;
    (a, b)
}

/// About `units` × a few ns of dependent arithmetic the compiler cannot
/// remove.
#[inline]
fn work(units: u32, seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..units {
        x = black_box(x.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (x >> 29));
    }
    x
}

/// Units of [`work`] that take about 1 µs on this machine.
fn units_per_us() -> u32 {
    let probe = 200_000u32;
    let t = Instant::now();
    black_box(work(probe, 7));
    let ns = t.elapsed().as_nanos().max(1) as f64;
    ((probe as f64 * 1000.0 / ns) as u32).max(1)
}

/// One bank implementation.
trait Bank: Send + Sync + 'static {
    /// Moves 1 from `a` to `b`; `units` of work inside the transaction.
    fn transfer(&self, a: usize, b: usize, units: u32);
    /// The sum of all balances.
    fn total(&self) -> u64;
    fn len(&self) -> usize;
}

struct StrataBank(Vec<strata::stm::TVar<u64>>);

impl Bank for StrataBank {
    #[inline]
    fn transfer(&self, a: usize, b: usize, units: u32) {
        let (from, to) = (&self.0[a], &self.0[b]);
        strata::stm::atomically(|tx| {
            let x = tx.read(from)?;
            let y = tx.read(to)?;
            if units > 0 {
                black_box(work(units, x ^ y));
            }
            tx.write(from, x - 1)?;
            tx.write(to, y + 1)
        })
        .expect("no validators");
    }
    fn total(&self) -> u64 {
        self.0.iter().map(|v| v.load()).sum()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// A bank on one of the `stm` crates (fast-stm is a fork of stm with the
/// same API).
macro_rules! stm_crate_bank {
    ($bank:ident, $krate:ident) => {
        struct $bank(Vec<$krate::TVar<u64>>);

        impl Bank for $bank {
            #[inline]
            fn transfer(&self, a: usize, b: usize, units: u32) {
                let (from, to) = (&self.0[a], &self.0[b]);
                $krate::atomically(|tx| {
                    let x = from.read(tx)?;
                    let y = to.read(tx)?;
                    if units > 0 {
                        black_box(work(units, x ^ y));
                    }
                    from.write(tx, x - 1)?;
                    to.write(tx, y + 1)
                });
            }
            fn total(&self) -> u64 {
                self.0.iter().map(|v| v.read_atomic()).sum()
            }
            fn len(&self) -> usize {
                self.0.len()
            }
        }
    };
}

stm_crate_bank!(FastStmBank, fast_stm);
stm_crate_bank!(StmBank, stm);

/// What every lock-based bank does under its lock(s): the work on the two
/// balances, if any, then the move of 1. Returns the new balances.
#[inline]
fn moved(from: u64, to: u64, units: u32) -> (u64, u64) {
    if units > 0 {
        black_box(work(units, from ^ to));
    }
    (from - 1, to + 1)
}

struct StdMutexBank(std::sync::Mutex<Vec<u64>>, usize);

impl Bank for StdMutexBank {
    #[inline]
    fn transfer(&self, a: usize, b: usize, units: u32) {
        let mut v = self.0.lock().unwrap();
        (v[a], v[b]) = moved(v[a], v[b], units);
    }
    fn total(&self) -> u64 {
        self.0.lock().unwrap().iter().sum()
    }
    fn len(&self) -> usize {
        self.1
    }
}

struct PlMutexBank(parking_lot::Mutex<Vec<u64>>, usize);

impl Bank for PlMutexBank {
    #[inline]
    fn transfer(&self, a: usize, b: usize, units: u32) {
        let mut v = self.0.lock();
        (v[a], v[b]) = moved(v[a], v[b], units);
    }
    fn total(&self) -> u64 {
        self.0.lock().iter().sum()
    }
    fn len(&self) -> usize {
        self.1
    }
}

/// One parking_lot mutex per account, the lower id locked first.
struct AccountLocksBank(Vec<parking_lot::Mutex<u64>>);

impl Bank for AccountLocksBank {
    #[inline]
    fn transfer(&self, a: usize, b: usize, units: u32) {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let mut l = self.0[lo].lock();
        let mut h = self.0[hi].lock();
        let (x, y) = if a < b {
            (&mut *l, &mut *h)
        } else {
            (&mut *h, &mut *l)
        };
        (*x, *y) = moved(*x, *y, units);
    }
    fn total(&self) -> u64 {
        self.0.iter().map(|m| *m.lock()).sum()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Every impl of one case, over `n` accounts.
fn banks(n: usize) -> Vec<(&'static str, Arc<dyn BankDyn>)> {
    vec![
        (
            "strata",
            Arc::new(StrataBank(
                (0..n).map(|_| strata::stm::TVar::new(START)).collect(),
            )),
        ),
        (
            "fast-stm",
            Arc::new(FastStmBank(
                (0..n).map(|_| fast_stm::TVar::new(START)).collect(),
            )),
        ),
        (
            "stm",
            Arc::new(StmBank((0..n).map(|_| stm::TVar::new(START)).collect())),
        ),
        (
            "std_mutex",
            Arc::new(StdMutexBank(std::sync::Mutex::new(vec![START; n]), n)),
        ),
        (
            "parking_lot_mutex",
            Arc::new(PlMutexBank(parking_lot::Mutex::new(vec![START; n]), n)),
        ),
        (
            "account_locks",
            Arc::new(AccountLocksBank(
                (0..n).map(|_| parking_lot::Mutex::new(START)).collect(),
            )),
        ),
    ]
}

/// Object-safe face of [`Bank`] (the loops stay monomorphic inside).
trait BankDyn: Send + Sync {
    /// `n` random transfers; `seed` picks the pairs.
    fn run(&self, n: u64, seed: u64, units: u32);
    /// One transfer from `a` to `b`.
    fn one(&self, a: usize, b: usize);
    fn total(&self) -> u64;
    fn len(&self) -> usize;
}

impl<B: Bank> BankDyn for B {
    fn run(&self, n: u64, seed: u64, units: u32) {
        let mut rng = seed | 1;
        let len = Bank::len(self);
        for _ in 0..n {
            let (a, b) = pair(&mut rng, len);
            self.transfer(a, b, units);
        }
    }
    fn one(&self, a: usize, b: usize) {
        self.transfer(a, b, 0);
    }
    fn total(&self) -> u64 {
        Bank::total(self)
    }
    fn len(&self) -> usize {
        Bank::len(self)
    }
}

fn check(name: &str, bank: &dyn BankDyn) {
    assert_eq!(
        bank.total(),
        START * bank.len() as u64,
        "{name}: money created or destroyed"
    );
}

/// Registers every impl on `threads` threads, `units` of work per transfer.
fn case(c: &mut Case, accounts: usize, threads: usize, units: u32) {
    for (name, bank) in banks(accounts) {
        let mut round = 0u64;
        c.imp(name, move |iters| {
            round += 1;
            let d = if threads == 1 {
                let t = Instant::now();
                bank.run(iters, 0x2545_F491_4F6C_DD1D ^ round, units);
                t.elapsed()
            } else {
                timed_threads(threads, iters, |i, n| {
                    bank.run(n, ((i as u64 + 1) * 0x9E37_79B9) ^ round, units)
                })
            };
            check(name, &*bank);
            d
        });
    }
}

/// Work drawn from a shared budget in chunks of this many transfers.
const CHUNK: u64 = 32;

/// Min/max commits per thread over every sample of one impl; printed when
/// the case is dropped (the group has finished).
struct Fairness {
    name: &'static str,
    per_thread: [AtomicU64; 2],
}

impl Drop for Fairness {
    fn drop(&mut self) {
        let a = self.per_thread[0].load(Ordering::Relaxed);
        let b = self.per_thread[1].load(Ordering::Relaxed);
        if a + b > 10_000 {
            println!(
                "stm/bank_2_2t fairness {:<18} {:.2} (commits per thread {a} / {b})",
                self.name,
                a.min(b) as f64 / a.max(b) as f64
            );
        }
    }
}

fn contended_case(c: &mut Case) {
    for (name, bank) in banks(2) {
        let fair = Arc::new(Fairness {
            name,
            per_thread: [AtomicU64::new(0), AtomicU64::new(0)],
        });
        c.imp(name, move |iters| {
            let budget = AtomicI64::new(iters as i64);
            let d = timed_threads(2, 2, |i, _| {
                let (a, b) = if i == 0 { (0, 1) } else { (1, 0) };
                let mut done = 0;
                loop {
                    let left = budget.fetch_sub(CHUNK as i64, Ordering::Relaxed);
                    if left <= 0 {
                        break;
                    }
                    let n = (left as u64).min(CHUNK);
                    for _ in 0..n {
                        bank.one(a, b);
                    }
                    done += n;
                }
                fair.per_thread[i].fetch_add(done, Ordering::Relaxed);
            });
            check(name, &*bank);
            d
        });
    }
}

/// The `stm` group.
pub fn group() -> Group {
    let units = units_per_us();
    Group::new("stm")
        .case("bank_1024_1t", |c| case(c, 1024, 1, 0))
        .case("bank_1024_2t", |c| case(c, 1024, 2, 0))
        .case("bank_2_2t", contended_case)
        .case("bank_work_2t", move |c| case(c, 1024, 2, units))
}
