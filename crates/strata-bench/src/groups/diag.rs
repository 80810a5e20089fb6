//! `diag`: the cost of lock-order checking in its steady state, against an
//! unchecked parking_lot mutex and tracing-mutex (which also builds a lock
//! graph, by instance).
//!
//! `checked_single` locks, increments and unlocks one mutex;
//! `checked_nested` takes A then B, increments both, and releases both, so
//! every iteration adds (an already known) edge A → B.
//!
//! strata's column needs checking compiled in: a release build runs it only
//! with `--features checked` (`cargo run --release -p strata-bench
//! --features checked -- diag`). Without it the group measures the peers
//! alone and says so, rather than timing unchecked strata under a checked
//! label.

use std::hint::black_box;

use crate::harness::{Case, Group};

/// strata, when checking is compiled into this build.
fn strata_checked() -> bool {
    strata::diag::checking_enabled()
}

fn single(c: &mut Case) {
    if strata_checked() {
        let m = strata::sync::Mutex::named("bench.single", 0u64);
        c.iter("strata", move || *black_box(&m).lock() += 1);
    }
    let m = parking_lot::Mutex::new(0u64);
    c.iter("parking_lot", move || *black_box(&m).lock() += 1);
    let m = tracing_mutex::stdsync::tracing::Mutex::new(0u64);
    c.iter("tracing-mutex", move || *black_box(&m).lock().unwrap() += 1);
}

fn nested(c: &mut Case) {
    if strata_checked() {
        let a = strata::sync::Mutex::named("bench.nested.a", 0u64);
        let b = strata::sync::Mutex::named("bench.nested.b", 0u64);
        c.iter("strata", move || {
            let mut ga = black_box(&a).lock();
            let mut gb = black_box(&b).lock();
            *ga += 1;
            *gb += 1;
        });
    }
    let a = parking_lot::Mutex::new(0u64);
    let b = parking_lot::Mutex::new(0u64);
    c.iter("parking_lot", move || {
        let mut ga = black_box(&a).lock();
        let mut gb = black_box(&b).lock();
        *ga += 1;
        *gb += 1;
    });
    let a = tracing_mutex::stdsync::tracing::Mutex::new(0u64);
    let b = tracing_mutex::stdsync::tracing::Mutex::new(0u64);
    c.iter("tracing-mutex", move || {
        let mut ga = black_box(&a).lock().unwrap();
        let mut gb = black_box(&b).lock().unwrap();
        *ga += 1;
        *gb += 1;
    });
}

/// The `diag` group.
pub fn group() -> Group {
    if !strata_checked() {
        eprintln!(
            "diag: lock-order checking is compiled out of this build, so strata's column is \
             left out; run `cargo run --release -p strata-bench --features checked -- diag`"
        );
    }
    Group::new("diag")
        .case("checked_single", single)
        .case("checked_nested", nested)
}
