//! `par`: parallel iteration against rayon and a plain sequential loop.
//!
//! One operation is one whole call on the input (a `par_map` of 10M
//! elements, …), started from the bench thread, outside any pool: strata
//! uses its global runtime, rayon its global pool (both sized to the
//! machine). Inputs are built once per case.
//!
//! * `map_10m` — `x * 3 + 1` over 10M `u64`s into a new `Vec`.
//! * `reduce_10m` — wrapping sum of 10M `u64`s.
//! * `filter_10m` — keep the multiples of 3 of 10M `u64`s, in order.
//! * `map_heavy_100k` — ~1 µs of dependent multiply-adds per element,
//!   100k elements.
//! * `map_tiny_1k` — `x + 1` over 1 000 elements: the cost of going
//!   parallel on an input too small to deserve it.
//!
//! Debug builds (the smoke test) use inputs 100× smaller.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use strata::par::ParSlice;

use crate::harness::{Case, Group};

const SCALE: usize = if cfg!(debug_assertions) { 100 } else { 1 };
const BIG: usize = 10_000_000 / SCALE;
const HEAVY: usize = 100_000 / SCALE;
/// Dependent steps of the heavy element (about 1 µs).
const HEAVY_STEPS: u32 = 700;

fn input(n: usize) -> Vec<u64> {
    (0..n as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16)
        .collect()
}

#[inline]
fn cheap(x: &u64) -> u64 {
    x.wrapping_mul(3).wrapping_add(1)
}

#[inline]
fn heavy(x: &u64) -> u64 {
    let mut v = *x;
    for _ in 0..HEAVY_STEPS {
        v = v
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
    }
    v
}

#[inline]
fn keep(x: &u64) -> bool {
    x.is_multiple_of(3)
}

/// Registers strata, rayon and sequential for a map with `f` over `v`.
fn map_case(c: &mut Case, v: Vec<u64>, f: fn(&u64) -> u64) {
    let expect: u64 = v.iter().map(f).fold(0, u64::wrapping_add);
    let len = v.len();
    let check = move |out: &[u64], who: &str| {
        assert_eq!(out.len(), len, "{who}: wrong length");
        assert_eq!(
            out.iter().copied().fold(0, u64::wrapping_add),
            expect,
            "{who}: wrong map"
        );
    };
    let v1 = v.clone();
    c.imp("strata", move |iters| {
        timed(iters, || v1.par_map(f), |out| check(&out, "strata"))
    });
    let v2 = v.clone();
    c.imp("rayon", move |iters| {
        timed(
            iters,
            || v2.par_iter().map(f).collect::<Vec<u64>>(),
            |out| check(&out, "rayon"),
        )
    });
    c.imp("sequential", move |iters| {
        timed(
            iters,
            || v.iter().map(f).collect::<Vec<u64>>(),
            |out| check(&out, "sequential"),
        )
    });
}

/// Times `iters` calls of `op`; checks (untimed) the last result.
fn timed<R>(iters: u64, mut op: impl FnMut() -> R, check: impl Fn(R)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t0 = Instant::now();
        let r = black_box(op());
        total += t0.elapsed();
        check(r);
    }
    total
}

/// The `par` group.
pub fn group() -> Group {
    Group::new("par")
        .case("map_10m", |c| map_case(c, input(BIG), cheap))
        .case("reduce_10m", |c| {
            let v = input(BIG);
            let expect = v.iter().copied().fold(0, u64::wrapping_add);
            let v1 = v.clone();
            c.imp("strata", move |iters| {
                timed(
                    iters,
                    || v1.par_reduce(|| 0, u64::wrapping_add),
                    |s| assert_eq!(s, expect, "strata: wrong sum"),
                )
            });
            let v2 = v.clone();
            c.imp("rayon", move |iters| {
                timed(
                    iters,
                    || v2.par_iter().copied().reduce(|| 0, u64::wrapping_add),
                    |s| assert_eq!(s, expect, "rayon: wrong sum"),
                )
            });
            c.imp("sequential", move |iters| {
                timed(
                    iters,
                    || v.iter().copied().fold(0, u64::wrapping_add),
                    |s| assert_eq!(s, expect, "sequential: wrong sum"),
                )
            });
        })
        .case("filter_10m", |c| {
            let v = input(BIG);
            let expect: Vec<u64> = v.iter().copied().filter(keep).collect();
            let (n, last) = (expect.len(), expect.last().copied());
            let check = move |out: Vec<u64>, who: &str| {
                assert_eq!(
                    (out.len(), out.last().copied()),
                    (n, last),
                    "{who}: wrong filter"
                );
            };
            let v1 = v.clone();
            c.imp("strata", move |iters| {
                timed(iters, || v1.par_filter(keep), |o| check(o, "strata"))
            });
            let v2 = v.clone();
            c.imp("rayon", move |iters| {
                timed(
                    iters,
                    || {
                        v2.par_iter()
                            .filter(|x| keep(x))
                            .copied()
                            .collect::<Vec<u64>>()
                    },
                    |o| check(o, "rayon"),
                )
            });
            c.imp("sequential", move |iters| {
                timed(
                    iters,
                    || v.iter().copied().filter(keep).collect::<Vec<u64>>(),
                    |o| check(o, "sequential"),
                )
            });
        })
        .case("map_heavy_100k", |c| map_case(c, input(HEAVY), heavy))
        .case("map_tiny_1k", |c| map_case(c, input(1_000), cheap))
}
