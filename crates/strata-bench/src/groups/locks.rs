//! `locks`: blocking locks, uncontended and contended, against parking_lot,
//! std and spin.
//!
//! One operation is lock, increment a `u64`, unlock (`rwlock_read_*`: read
//! lock, read the value, unlock). Contended cases run T threads released
//! together, each doing its share of the batch; time per operation is wall
//! time over all operations of all threads, and the final count is checked.
//! On a 2-core machine the 4- and 8-thread cases oversubscribe on purpose.

use std::hint::black_box;

use crate::harness::{Case, Group};
use crate::util::timed_threads;

/// A `u64` behind a lock: the operation every case measures.
trait Counter: Sync + 'static {
    /// Lock, increment, unlock.
    fn incr(&self);
    /// Current value.
    fn get(&self) -> u64;
    /// Overwrite the value (reset between samples).
    fn set(&self, v: u64);
}

impl Counter for strata::sync::Mutex<u64> {
    #[inline]
    fn incr(&self) {
        *self.lock() += 1;
    }
    fn get(&self) -> u64 {
        *self.lock()
    }
    fn set(&self, v: u64) {
        *self.lock() = v;
    }
}

impl Counter for parking_lot::Mutex<u64> {
    #[inline]
    fn incr(&self) {
        *self.lock() += 1;
    }
    fn get(&self) -> u64 {
        *self.lock()
    }
    fn set(&self, v: u64) {
        *self.lock() = v;
    }
}

impl Counter for std::sync::Mutex<u64> {
    #[inline]
    fn incr(&self) {
        *self.lock().unwrap() += 1;
    }
    fn get(&self) -> u64 {
        *self.lock().unwrap()
    }
    fn set(&self, v: u64) {
        *self.lock().unwrap() = v;
    }
}

impl Counter for spin::Mutex<u64> {
    #[inline]
    fn incr(&self) {
        *self.lock() += 1;
    }
    fn get(&self) -> u64 {
        *self.lock()
    }
    fn set(&self, v: u64) {
        *self.lock() = v;
    }
}

/// Registers an uncontended lock/increment/unlock loop on `m`.
fn uncontended<M: Counter>(c: &mut Case, name: &'static str, m: M) {
    c.iter(name, move || black_box(&m).incr());
}

/// Registers `threads` threads hammering `m` with lock/increment/unlock.
fn contended<M: Counter>(c: &mut Case, name: &'static str, threads: usize, m: M) {
    c.imp(name, move |iters| {
        m.set(0);
        let d = timed_threads(threads, iters, |_, n| {
            for _ in 0..n {
                black_box(&m).incr();
            }
        });
        assert_eq!(m.get(), iters, "{name}: lost increments");
        d
    });
}

/// Registers the four mutexes of a contended case.
fn contended_case(c: &mut Case, threads: usize) {
    contended(c, "strata", threads, strata::sync::Mutex::new(0u64));
    contended(c, "parking_lot", threads, parking_lot::Mutex::new(0u64));
    contended(c, "std", threads, std::sync::Mutex::new(0u64));
    contended(c, "spin", threads, spin::Mutex::new(0u64));
}

/// The `locks` group.
pub fn group() -> Group {
    super::warn_if_checked("locks");
    Group::new("locks")
        .case("mutex_uncontended", |c| {
            uncontended(c, "strata", strata::sync::Mutex::new(0u64));
            uncontended(c, "parking_lot", parking_lot::Mutex::new(0u64));
            uncontended(c, "std", std::sync::Mutex::new(0u64));
            uncontended(c, "spin", spin::Mutex::new(0u64));
        })
        .case("rwlock_read_uncontended", |c| {
            let l = strata::sync::RwLock::new(1u64);
            c.iter("strata", move || *black_box(&l).read());
            let l = parking_lot::RwLock::new(1u64);
            c.iter("parking_lot", move || *black_box(&l).read());
            let l = std::sync::RwLock::new(1u64);
            c.iter("std", move || *black_box(&l).read().unwrap());
            let l = spin::RwLock::new(1u64);
            c.iter("spin", move || *black_box(&l).read());
        })
        .case("rwlock_write_uncontended", |c| {
            let l = strata::sync::RwLock::new(0u64);
            c.iter("strata", move || *black_box(&l).write() += 1);
            let l = parking_lot::RwLock::new(0u64);
            c.iter("parking_lot", move || *black_box(&l).write() += 1);
            let l = std::sync::RwLock::new(0u64);
            c.iter("std", move || *black_box(&l).write().unwrap() += 1);
            let l = spin::RwLock::new(0u64);
            c.iter("spin", move || *black_box(&l).write() += 1);
        })
        .case("unfair_uncontended", |c| {
            // strata's smallest lock against the peers' mutexes.
            let l = strata::sync::UnfairLock::new(0u64);
            c.iter("strata", move || black_box(&l).with_lock(|v| *v += 1));
            uncontended(c, "parking_lot", parking_lot::Mutex::new(0u64));
            uncontended(c, "std", std::sync::Mutex::new(0u64));
            uncontended(c, "spin", spin::Mutex::new(0u64));
        })
        .case("mutex_contended_2t", |c| contended_case(c, 2))
        .case("mutex_contended_4t", |c| contended_case(c, 4))
        .case("mutex_contended_8t", |c| contended_case(c, 8))
}
