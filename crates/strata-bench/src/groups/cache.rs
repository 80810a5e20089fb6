//! `cache`: `BoundedCache` against quick_cache (which it is built on) and
//! moka, single-threaded.
//!
//! * `hit`: `get` of keys that are all cached (1,024 keys cycling, in a
//!   cache of 4,096).
//! * `get_or_compute_hit`: the single-flight call on a cached key (strata
//!   `get_or_compute`, quick_cache `get_or_insert_with`, moka `get_with`);
//!   the loader must never run.
//! * `get_or_compute_miss`: the same call on a key never seen before, so the
//!   loader runs and its value is inserted (evicting, once full).
//!
//! Each impl checks the sum of the values it got and how often its loader
//! ran.

use std::hint::black_box;
use std::time::Instant;

use strata::cache::BoundedCache;

use crate::harness::{Case, Group};

const CAPACITY: usize = 4_096;
const HOT_KEYS: u64 = 1_024;

/// The value cached for `key`.
#[inline]
fn value_of(key: u64) -> u64 {
    key * 3 + 1
}

/// One cache under test.
trait Bench: 'static {
    fn get(&self, key: u64) -> Option<u64>;
    fn insert(&self, key: u64, value: u64);
    /// The single-flight call; `load` counts its runs.
    fn get_or_compute(&self, key: u64, load: impl FnOnce() -> u64) -> u64;
}

impl Bench for BoundedCache<u64, u64> {
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        BoundedCache::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        BoundedCache::insert(self, key, value);
    }
    #[inline]
    fn get_or_compute(&self, key: u64, load: impl FnOnce() -> u64) -> u64 {
        match BoundedCache::get_or_compute(self, &key, || Ok::<_, ()>(load())) {
            Ok(v) => v,
            Err(()) => unreachable!(),
        }
    }
}

impl Bench for quick_cache::sync::Cache<u64, u64> {
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        quick_cache::sync::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        quick_cache::sync::Cache::insert(self, key, value);
    }
    #[inline]
    fn get_or_compute(&self, key: u64, load: impl FnOnce() -> u64) -> u64 {
        match self.get_or_insert_with(&key, || Ok::<_, ()>(load())) {
            Ok(v) => v,
            Err(()) => unreachable!(),
        }
    }
}

impl Bench for moka::sync::Cache<u64, u64> {
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        moka::sync::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        moka::sync::Cache::insert(self, key, value);
    }
    #[inline]
    fn get_or_compute(&self, key: u64, load: impl FnOnce() -> u64) -> u64 {
        self.get_with(key, load)
    }
}

/// A cache of [`CAPACITY`] holding the [`HOT_KEYS`].
fn warmed<C: Bench>(cache: C) -> C {
    for k in 0..HOT_KEYS {
        cache.insert(k, value_of(k));
    }
    for k in 0..HOT_KEYS {
        assert_eq!(cache.get(k), Some(value_of(k)), "warm-up lost key {k}");
    }
    cache
}

/// Expected sum of `value_of` over `iters` lookups cycling the hot keys.
fn hot_sum(iters: u64) -> u64 {
    (0..iters)
        .map(|i| value_of(i % HOT_KEYS))
        .fold(0, u64::wrapping_add)
}

fn hit<C: Bench>(c: &mut Case, name: &'static str, cache: C) {
    let cache = warmed(cache);
    c.imp(name, move |iters| {
        let start = Instant::now();
        let mut sum = 0u64;
        for i in 0..iters {
            let v = black_box(&cache).get(black_box(i % HOT_KEYS));
            sum = sum.wrapping_add(v.unwrap_or(0));
        }
        let d = start.elapsed();
        assert_eq!(sum, hot_sum(iters), "{name}: a hot key was missing");
        d
    });
}

fn compute_hit<C: Bench>(c: &mut Case, name: &'static str, cache: C) {
    let cache = warmed(cache);
    c.imp(name, move |iters| {
        let mut loads = 0u64;
        let start = Instant::now();
        let mut sum = 0u64;
        for i in 0..iters {
            let k = black_box(i % HOT_KEYS);
            let v = black_box(&cache).get_or_compute(k, || {
                loads += 1;
                value_of(k)
            });
            sum = sum.wrapping_add(v);
        }
        let d = start.elapsed();
        assert_eq!(loads, 0, "{name}: a loader ran on a hit");
        assert_eq!(sum, hot_sum(iters), "{name}: wrong values");
        d
    });
}

fn compute_miss<C: Bench>(c: &mut Case, name: &'static str, cache: C) {
    // Keys never repeat across samples, so every call misses.
    let mut next_key = 1u64 << 32;
    c.imp(name, move |iters| {
        let mut loads = 0u64;
        let first = next_key;
        let start = Instant::now();
        let mut sum = 0u64;
        for k in first..first + iters {
            let v = black_box(&cache).get_or_compute(black_box(k), || {
                loads += 1;
                value_of(k)
            });
            sum = sum.wrapping_add(v);
        }
        let d = start.elapsed();
        next_key += iters;
        assert_eq!(loads, iters, "{name}: a fresh key did not load");
        let expected = (first..first + iters)
            .map(value_of)
            .fold(0, u64::wrapping_add);
        assert_eq!(sum, expected, "{name}: wrong values");
        d
    });
}

fn strata_cache() -> BoundedCache<u64, u64> {
    BoundedCache::new(CAPACITY)
}

fn quick() -> quick_cache::sync::Cache<u64, u64> {
    quick_cache::sync::Cache::new(CAPACITY)
}

fn moka() -> moka::sync::Cache<u64, u64> {
    moka::sync::Cache::new(CAPACITY as u64)
}

/// The `cache` group.
pub fn group() -> Group {
    Group::new("cache")
        .case("hit", |c| {
            hit(c, "strata", strata_cache());
            hit(c, "quick_cache", quick());
            hit(c, "moka", moka());
        })
        .case("get_or_compute_hit", |c| {
            compute_hit(c, "strata", strata_cache());
            compute_hit(c, "quick_cache", quick());
            compute_hit(c, "moka", moka());
        })
        .case("get_or_compute_miss", |c| {
            compute_miss(c, "strata", strata_cache());
            compute_miss(c, "quick_cache", quick());
            compute_miss(c, "moka", moka());
        })
}
