//! L4 — parallel iteration: every `par_*` equals its sequential result.

mod support;

use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use proptest::prelude::*;
use strata::par::{ParRange, ParSlice};
use strata::runtime::Runtime;
use support::Live;

fn pool() -> &'static Runtime {
    static RT: std::sync::OnceLock<Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        Runtime::builder()
            .threads(3)
            .name("par-test")
            .build()
            .unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn slice_ops_equal_sequential(v in prop::collection::vec(any::<u32>(), 0..5_000), min in 1usize..300) {
        let f = |x: &u32| x.wrapping_mul(2654435761) >> 3;
        let keep = |x: &u32| x.is_multiple_of(3);
        // Outside any pool (caller works alone first, then hands off)...
        prop_assert_eq!(v.par_map(f), v.iter().map(f).collect::<Vec<_>>());
        prop_assert_eq!(v.par_filter(keep), v.iter().copied().filter(keep).collect::<Vec<_>>());
        let sum = |a: u64, b: u64| a.wrapping_add(b);
        let w: Vec<u64> = v.iter().map(|&x| u64::from(x)).collect();
        prop_assert_eq!(w.par_reduce(|| 0, sum), w.iter().copied().fold(0, sum));
        // ...and inside one, with a minimum piece length.
        let (m, fl, r) = pool().install(|| (
            v.with_min_len(min).par_map(f),
            v.with_min_len(min).par_filter(keep),
            w.with_min_len(min).par_reduce(|| 0, sum),
        ));
        prop_assert_eq!(m, v.iter().map(f).collect::<Vec<_>>());
        prop_assert_eq!(fl, v.iter().copied().filter(keep).collect::<Vec<_>>());
        prop_assert_eq!(r, w.iter().copied().fold(0, sum));
    }

    #[test]
    fn non_commutative_reduce_keeps_order(v in prop::collection::vec("[a-c]{0,3}", 0..400)) {
        // String concatenation is associative but not commutative.
        let par = pool().install(|| v.par_reduce(String::new, |a, b| a + &b));
        prop_assert_eq!(par, v.concat());
    }

    #[test]
    fn chunks_and_for_each_equal_sequential(v in prop::collection::vec(any::<u16>(), 0..3_000), size in 1usize..200) {
        let par = pool().install(|| v.par_chunks(size).par_map(|c| c.iter().map(|&x| u64::from(x)).sum::<u64>()));
        let seq: Vec<u64> = v.chunks(size).map(|c| c.iter().map(|&x| u64::from(x)).sum()).collect();
        prop_assert_eq!(par, seq);
        let total = AtomicU64::new(0);
        v.par_for_each(|&x| { total.fetch_add(u64::from(x), Ordering::Relaxed); });
        prop_assert_eq!(total.load(Ordering::Relaxed), v.iter().map(|&x| u64::from(x)).sum::<u64>());
        let chunks_seen = AtomicUsize::new(0);
        v.par_chunks(size).par_for_each(|c| { chunks_seen.fetch_add(c.len(), Ordering::Relaxed); });
        prop_assert_eq!(chunks_seen.load(Ordering::Relaxed), v.len());
    }

    #[test]
    fn range_ops_equal_sequential(start in -5_000i64..5_000, len in 0i64..6_000, size in 1usize..500) {
        let r = start..start + len;
        prop_assert_eq!(r.par_map(|i| i * 3), r.clone().map(|i| i * 3).collect::<Vec<_>>());
        prop_assert_eq!(r.par_filter(|i| i % 7 == 1), r.clone().filter(|i| i % 7 == 1).collect::<Vec<_>>());
        prop_assert_eq!(r.par_reduce(|| 0, |a, b| a + b), r.clone().sum::<i64>());
        let sums = pool().install(|| r.par_chunks(size).par_map(|c| c.sum::<i64>()));
        let expect: Vec<i64> = (0..(len as usize).div_ceil(size))
            .map(|c| {
                let lo = start + (c * size) as i64;
                (lo..(lo + size as i64).min(start + len)).sum()
            })
            .collect();
        prop_assert_eq!(sums, expect);
        let count = AtomicUsize::new(0);
        r.par_for_each(|_| { count.fetch_add(1, Ordering::Relaxed); });
        prop_assert_eq!(count.load(Ordering::Relaxed), len as usize);
    }
}

#[test]
fn big_inputs_split_and_match() {
    let v: Vec<u64> = (0..2_000_000).collect();
    let m = v.par_map(|x| x ^ 0x5555);
    assert!(m.iter().zip(&v).all(|(a, b)| *a == b ^ 0x5555));
    assert_eq!(v.par_reduce(|| 0, |a, b| a + b), 1_999_999_000_000);
    let f = v.par_filter(|x| x % 1000 == 0);
    assert_eq!(f.len(), 2_000);
    assert_eq!(f[1], 1000);
    assert_eq!(
        (0..2_000_000u32).par_filter(|x| x % 2 == 0).len(),
        1_000_000
    );
}

#[test]
fn work_is_spread_over_workers() {
    let rt = Runtime::builder()
        .threads(2)
        .name("spread")
        .build()
        .unwrap();
    let seen = Mutex::new(std::collections::HashSet::new());
    rt.install(|| {
        (0..200u32).par_for_each(|_| {
            std::thread::sleep(std::time::Duration::from_millis(1));
            seen.lock()
                .unwrap()
                .insert(std::thread::current().name().map(String::from));
        })
    });
    assert_eq!(seen.lock().unwrap().len(), 2, "both workers took part");
}

#[test]
fn a_panic_in_map_propagates_and_drops_what_was_written() {
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    let v: Vec<u32> = (0..100_000).collect();
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        pool().install(|| {
            v.par_map(|&x| {
                if x == 77_777 {
                    panic!("element failed");
                }
                Live::new(&LIVE)
            })
        })
    }));
    assert_eq!(
        *r.unwrap_err().downcast::<&str>().unwrap(),
        "element failed"
    );
    assert_eq!(
        LIVE.load(Ordering::SeqCst),
        0,
        "written elements were leaked"
    );
    // The pool still works.
    assert_eq!(pool().install(|| v.par_map(|x| x + 1))[0], 1);
}

#[test]
fn empty_inputs() {
    let v: Vec<u8> = Vec::new();
    assert!(v.par_map(|x| *x).is_empty());
    assert!(v.par_filter(|_| true).is_empty());
    assert_eq!(v.par_reduce(|| 9, |a, b| a + b), 9);
    assert!(v.par_chunks(3).par_map(|c| c.len()).is_empty());
    assert!((5..5u8).par_map(|x| x).is_empty());
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 9..3i32;
    assert!(reversed.par_map(|x| x).is_empty());
}

#[test]
fn a_zero_chunk_size_is_treated_as_one_and_does_not_panic() {
    let v = [1, 2, 3];
    assert_eq!(
        v.par_chunks(0).par_map(|c| c.to_vec()),
        vec![vec![1], vec![2], vec![3]]
    );
    assert_eq!(v.par().par_chunks(0).par_map(|c| c.len()), vec![1; 3]);
    assert_eq!((0..3u8).par_chunks(0).par_map(|r| r.start), vec![0, 1, 2]);
    assert!(
        Vec::<u8>::new()
            .par_chunks(0)
            .par_map(|c| c.len())
            .is_empty()
    );
}

#[test]
fn huge_chunk_sizes_do_not_overflow() {
    // The end of the last chunk saturates instead of wrapping (or
    // panicking on overflow in debug builds).
    let n = usize::MAX;
    assert_eq!(
        (0..n).par_chunks(n - 1).par_map(|r| (r.start, r.end)),
        vec![(0, n - 1), (n - 1, n)]
    );
    // A slice of zero-sized values can be that long too.
    let zsts = vec![(); n];
    assert_eq!(zsts.par_chunks(n - 1).par_map(|c| c.len()), vec![n - 1, 1]);
}

/// A small id per thread, to see which thread processed which unit.
fn thread_tag() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TAG: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TAG.with(|t| *t)
}

/// Lengths of the maximal runs of consecutive units done by one thread.
/// Each run is a union of whole pieces, so with pieces of at least `n`
/// units every run is at least `n` long.
fn runs(tags: &[AtomicU64]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tags.len() {
        let t = tags[i].load(Ordering::Relaxed);
        let start = i;
        while i < tags.len() && tags[i].load(Ordering::Relaxed) == t {
            i += 1;
        }
        out.push(i - start);
    }
    out
}

fn busy(units: u32) {
    let mut x = 0u64;
    for k in 0..units * 50 {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(u64::from(k)));
    }
}

#[test]
fn with_min_len_bounds_the_size_of_every_piece() {
    let len = 30_000usize;
    let mut splits = 0;
    for &min in &[700usize, 1_000, 2_900] {
        for inside in [true, false] {
            let tags: Vec<AtomicU64> = (0..len).map(|_| AtomicU64::new(0)).collect();
            let v: Vec<u32> = (0..len as u32).collect();
            let work = || {
                // Ranges and slices share the driver; check both.
                (0..len / 2).with_min_len(min).par_for_each(|i| {
                    tags[i].store(thread_tag(), Ordering::Relaxed);
                    busy(1);
                });
                v[len / 2..].with_min_len(min).par_map(|&i| {
                    tags[i as usize].store(thread_tag(), Ordering::Relaxed);
                    busy(1);
                });
            };
            if inside {
                pool().install(work);
            } else {
                work(); // the caller works alone first, then hands off
            }
            let (first, second) = tags.split_at(len / 2);
            for half in [first, second] {
                let r = runs(half);
                splits += r.len() - 1;
                assert!(
                    r.iter().all(|&n| n >= min),
                    "min_len {min}, inside a pool: {inside}: runs {r:?}"
                );
            }
        }
    }
    assert!(splits > 0, "nothing was split: the test saw no pieces");
}
