//! L2 — `BoundedCache`: bounds, single-flight loading, failure hand-off,
//! the async variant under tokio, and metrics.
//!
//! Tests assert behaviour (how many loaders ran, what each caller got,
//! what is cached), never timing. Where a test wants waiters queued behind
//! a loader, the loader waits until the cache has counted every caller's
//! miss; the counts asserted hold whether or not the waiters had queued.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use strata::cache::{BoundedCache, CacheMetrics, UnitWeigher, Weigher};

/// A bound for "this must happen": only a hang reaches it.
const HANG: Duration = Duration::from_secs(60);

/// Waits until `cond` holds (a hang fails the test instead of hanging it).
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + HANG;
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Lets callers that counted their miss reach the wait queue. Correctness
/// never depends on it; it only makes the hand-off path the likely one.
fn settle() {
    thread::sleep(Duration::from_millis(20));
}

// ---------------------------------------------------------------- basics

#[test]
fn get_insert_remove_and_borrowed_lookups() {
    let cache: BoundedCache<String, u32> = BoundedCache::new(16);
    assert!(cache.is_empty());
    cache.insert("a".to_string(), 1);
    cache.insert("b".to_string(), 2);
    assert_eq!(cache.get("a"), Some(1));
    assert_eq!(cache.get("zzz"), None);
    assert!(cache.contains_key("b"));
    assert_eq!(cache.len(), 2);
    cache.insert("a".to_string(), 10);
    assert_eq!(cache.get("a"), Some(10));
    assert_eq!(cache.remove("a"), Some(10));
    assert_eq!(cache.remove("a"), None);
    cache.clear();
    assert!(cache.is_empty() && cache.weight() == 0);
    let m = cache.metrics();
    assert_eq!((m.hits, m.misses), (2, 1), "contains_key counts as neither");
}

#[test]
fn the_entry_bound_holds_under_churn() {
    let cache = BoundedCache::new(100);
    for i in 0..10_000u32 {
        cache.insert(i, i);
        assert!(cache.len() as u64 <= cache.metrics().capacity);
    }
    let m = cache.metrics();
    assert!(m.capacity >= 100 && m.entries > 0 && m.entries as u64 <= m.capacity);
    // Whatever survived is intact.
    for i in 0..10_000u32 {
        if let Some(v) = cache.get(&i) {
            assert_eq!(v, i);
        }
    }
}

#[test]
fn the_weight_bound_holds_and_an_oversized_entry_is_not_admitted() {
    let weigher = |_: &u32, v: &Vec<u8>| v.len() as u64;
    let cache = BoundedCache::with_weigher(1_000, 100, weigher);
    for i in 0..500u32 {
        cache.insert(i, vec![0; (i as usize % 50) + 1]);
        assert!(cache.weight() <= 1_000, "weight {}", cache.weight());
    }
    cache.insert(9_999, vec![0; 5_000]);
    assert_eq!(cache.get(&9_999), None, "heavier than the whole cache");
    assert!(cache.weight() <= 1_000);
    // A weigher is any Clone + Fn(&K, &V) -> u64, or a type of one's own.
    #[derive(Clone)]
    struct ByLen;
    impl Weigher<u8, String> for ByLen {
        fn weigh(&self, _: &u8, v: &String) -> u64 {
            v.len() as u64
        }
    }
    let typed = BoundedCache::with_weigher(64, 8, ByLen);
    typed.insert(1, "four".to_string());
    assert_eq!(typed.weight(), 4);
    assert_eq!(UnitWeigher.weigh(&1u8, &"x"), 1);
}

#[test]
fn a_zero_capacity_cache_caches_nothing_but_still_answers() {
    let cache = BoundedCache::new(0);
    cache.insert(1, 1);
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get_or_compute(&1, || Ok::<_, ()>(5)), Ok(5));
    assert_eq!(cache.get_or_compute(&1, || Ok::<_, ()>(6)), Ok(6));
    assert_eq!(cache.metrics().loads, 2);
}

#[test]
fn a_failed_load_caches_nothing_and_the_next_call_loads() {
    let cache = BoundedCache::new(8);
    assert_eq!(
        cache.get_or_compute(&1, || Err::<u32, _>("down")),
        Err("down")
    );
    assert!(!cache.contains_key(&1));
    assert_eq!(cache.get_or_compute(&1, || Ok::<_, &str>(7)), Ok(7));
    assert_eq!(cache.get_or_insert_with(&1, || 8), 7);
    let m = cache.metrics();
    assert_eq!((m.loads, m.load_failures, m.hits, m.misses), (2, 1, 1, 2));
}

#[test]
fn a_panicking_load_caches_nothing_and_leaves_the_key_loadable() {
    let cache = BoundedCache::new(8);
    let r = catch_unwind(AssertUnwindSafe(|| {
        cache.get_or_compute(&1, || -> Result<u32, ()> { panic!("loader bug") })
    }));
    assert!(r.is_err());
    assert!(!cache.contains_key(&1));
    // A hang here would mean the panicking loader's placeholder leaked.
    assert_eq!(cache.get_or_compute(&1, || Ok::<_, ()>(3)), Ok(3));
    assert_eq!(cache.metrics().load_failures, 1);
}

#[test]
fn a_loader_may_use_other_keys_of_the_same_cache() {
    let cache = BoundedCache::new(8);
    let v = cache.get_or_compute(&2, || {
        let one = cache.get_or_compute(&1, || Ok::<_, ()>(1))?;
        Ok::<_, ()>(one + 1)
    });
    assert_eq!(v, Ok(2));
    assert_eq!((cache.get(&1), cache.get(&2)), (Some(1), Some(2)));
}

// ---------------------------------------------------------------- single flight

#[test]
fn sixty_four_concurrent_callers_run_the_loader_once() {
    const CALLERS: u64 = 64;
    let cache = BoundedCache::new(16);
    let runs = AtomicU64::new(0);
    let barrier = Barrier::new(CALLERS as usize);
    let results: Vec<Result<u64, ()>> = thread::scope(|s| {
        let handles: Vec<_> = (0..CALLERS)
            .map(|id| {
                let (cache, runs, barrier) = (&cache, &runs, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    cache.get_or_compute(&42, || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        // Hold the load until every caller has missed.
                        wait_until("64 misses", || cache.metrics().misses == CALLERS);
                        settle();
                        Ok(1_000 + id)
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the loader ran more than once"
    );
    let first = results[0].unwrap();
    assert!(results.iter().all(|r| *r == Ok(first)), "{results:?}");
    assert_eq!(cache.get(&42), Some(first));
    let m = cache.metrics();
    assert_eq!((m.loads, m.coalesced, m.misses), (1, CALLERS - 1, CALLERS));
}

/// The cache, the failing caller's outcome (None if it panicked) and the
/// waiters' results.
type HandOff = (
    BoundedCache<u32, u64>,
    Option<Result<u64, String>>,
    Vec<Result<u64, String>>,
);

/// Starts one caller whose loader waits for `waiters` more misses and then
/// fails in the way `fail` says, plus `waiters` callers whose loaders
/// succeed with their id.
fn hand_off_scenario(waiters: u64, fail: impl FnOnce() -> Result<u64, String> + Send) -> HandOff {
    let cache = BoundedCache::new(16);
    let loaded_by = AtomicUsize::new(0);
    let (first, rest) = thread::scope(|s| {
        let cache = &cache;
        let first = s.spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                cache.get_or_compute(&7, || {
                    wait_until("the waiters' misses", || {
                        cache.metrics().misses == waiters + 1
                    });
                    settle();
                    fail()
                })
            }))
            .ok()
        });
        wait_until("the first loader started", || cache.metrics().loads == 1);
        let rest: Vec<_> = (0..waiters)
            .map(|id| {
                let loaded_by = &loaded_by;
                s.spawn(move || {
                    cache.get_or_compute(&7, || {
                        loaded_by.fetch_add(1, Ordering::SeqCst);
                        Ok(id)
                    })
                })
            })
            .collect();
        let rest: Vec<_> = rest.into_iter().map(|h| h.join().unwrap()).collect();
        (first.join().unwrap(), rest)
    });
    assert_eq!(
        loaded_by.load(Ordering::SeqCst),
        1,
        "not exactly one next loader"
    );
    (cache, first, rest)
}

fn assert_one_hand_off(cache: &BoundedCache<u32, u64>, rest: &[Result<u64, String>]) {
    let winner = rest[0].clone().expect("a waiter got the value");
    assert!(rest.iter().all(|r| *r == Ok(winner)), "{rest:?}");
    assert_eq!(cache.get(&7), Some(winner));
    let m: CacheMetrics = cache.metrics();
    assert_eq!((m.loads, m.load_failures), (2, 1));
    assert_eq!(m.coalesced, rest.len() as u64 - 1);
}

#[test]
fn after_a_failing_loader_exactly_one_next_waiter_loads() {
    let (cache, first, rest) = hand_off_scenario(8, || Err("backend down".to_string()));
    assert_eq!(first, Some(Err("backend down".to_string())));
    assert_one_hand_off(&cache, &rest);
}

#[test]
fn after_a_panicking_loader_exactly_one_next_waiter_loads() {
    let (cache, first, rest) = hand_off_scenario(8, || panic!("loader bug"));
    assert_eq!(first, None, "the panic reached its caller");
    assert_one_hand_off(&cache, &rest);
}

// ---------------------------------------------------------------- async

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// Waits (asynchronously) until `cond` holds.
async fn wait_until_async(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + HANG;
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[test]
fn async_sixty_four_concurrent_tasks_run_the_loader_once() {
    const CALLERS: u64 = 64;
    let cache = Arc::new(BoundedCache::new(16));
    let runs = Arc::new(AtomicU64::new(0));
    let results = tokio_rt().block_on(async {
        let tasks: Vec<_> = (0..CALLERS)
            .map(|id| {
                let (cache, runs) = (Arc::clone(&cache), Arc::clone(&runs));
                tokio::spawn(async move {
                    let c = Arc::clone(&cache);
                    cache
                        .get_or_compute_async(&1, async move {
                            runs.fetch_add(1, Ordering::SeqCst);
                            wait_until_async("64 misses", || c.metrics().misses == CALLERS).await;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok::<_, ()>(id)
                        })
                        .await
                })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        results
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let first = results[0].unwrap();
    assert!(results.iter().all(|r| *r == Ok(first)));
    let m = cache.metrics();
    assert_eq!((m.loads, m.coalesced), (1, CALLERS - 1));
}

#[test]
fn async_a_cancelled_loader_hands_the_load_to_one_waiter() {
    const WAITERS: u64 = 8;
    let cache = Arc::new(BoundedCache::<u32, u64>::new(16));
    let loaded_by = Arc::new(AtomicUsize::new(0));
    let rest = tokio_rt().block_on(async {
        let first = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .get_or_compute_async(&3, std::future::pending::<Result<u64, ()>>())
                    .await
            })
        };
        wait_until_async("the first loader started", || cache.metrics().loads == 1).await;
        let waiters: Vec<_> = (0..WAITERS)
            .map(|id| {
                let (cache, loaded_by) = (Arc::clone(&cache), Arc::clone(&loaded_by));
                tokio::spawn(async move {
                    cache
                        .get_or_compute_async(&3, async move {
                            loaded_by.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, ()>(id)
                        })
                        .await
                })
            })
            .collect();
        wait_until_async("the waiters' misses", || {
            cache.metrics().misses == WAITERS + 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.abort(); // cancelled mid-load
        assert!(first.await.unwrap_err().is_cancelled());
        let mut rest = Vec::new();
        for w in waiters {
            rest.push(w.await.unwrap());
        }
        rest
    });
    assert_eq!(
        loaded_by.load(Ordering::SeqCst),
        1,
        "not exactly one next loader"
    );
    let winner = rest[0].unwrap();
    assert!(rest.iter().all(|r| *r == Ok(winner)));
    assert_eq!(cache.get(&3), Some(winner));
    let m = cache.metrics();
    assert_eq!((m.loads, m.load_failures, m.coalesced), (2, 1, WAITERS - 1));
}

#[test]
fn async_a_cancelled_waiter_disturbs_nobody() {
    let cache = Arc::new(BoundedCache::<u32, u64>::new(16));
    let release = Arc::new(AtomicBool::new(false));
    tokio_rt().block_on(async {
        let loader = {
            let (cache, release) = (Arc::clone(&cache), Arc::clone(&release));
            tokio::spawn(async move {
                let c = Arc::clone(&cache);
                cache
                    .get_or_compute_async(&5, async move {
                        wait_until_async("release", || release.load(Ordering::SeqCst)).await;
                        drop(c);
                        Ok::<_, ()>(55)
                    })
                    .await
            })
        };
        wait_until_async("the loader started", || cache.metrics().loads == 1).await;
        // Waiters that give up while queued.
        for _ in 0..10 {
            let r = tokio::time::timeout(
                Duration::from_millis(1),
                cache.get_or_compute_async(&5, async { Ok::<_, ()>(0) }),
            )
            .await;
            assert!(r.is_err(), "timed out while queued");
        }
        let patient = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .get_or_compute_async(&5, async { Ok::<_, ()>(0) })
                    .await
            })
        };
        release.store(true, Ordering::SeqCst);
        assert_eq!(loader.await.unwrap(), Ok(55));
        assert_eq!(patient.await.unwrap(), Ok(55));
    });
    assert_eq!(cache.metrics().loads, 1);
}

#[test]
fn sync_and_async_callers_of_one_key_coalesce() {
    let cache = Arc::new(BoundedCache::<u32, u64>::new(16));
    let runs = Arc::new(AtomicU64::new(0));
    let rt = tokio_rt();
    thread::scope(|s| {
        let sync_callers: Vec<_> = (0..4)
            .map(|_| {
                let (cache, runs) = (&cache, &runs);
                s.spawn(move || {
                    cache.get_or_compute(&9, || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        wait_until("8 misses", || cache.metrics().misses == 8);
                        Ok::<_, ()>(9)
                    })
                })
            })
            .collect();
        let async_results = rt.block_on(async {
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let (cache, runs) = (Arc::clone(&cache), Arc::clone(&runs));
                    tokio::spawn(async move {
                        let c = Arc::clone(&cache);
                        cache
                            .get_or_compute_async(&9, async move {
                                runs.fetch_add(1, Ordering::SeqCst);
                                wait_until_async("8 misses", || c.metrics().misses == 8).await;
                                Ok::<_, ()>(9)
                            })
                            .await
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        assert!(async_results.iter().all(|r| *r == Ok(9)));
        for h in sync_callers {
            assert_eq!(h.join().unwrap(), Ok(9));
        }
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------- stress

#[test]
fn stress_every_caller_gets_its_keys_value_and_the_counts_add_up() {
    // 4 threads over 64 keys in a cache of 16: constant eviction, reloads,
    // and one loader in 8 failing. Invariants: a caller only ever gets the
    // key's value, or its own loader's error; every miss ends as a load or
    // a coalesced wait; every call is a hit or a miss.
    const THREADS: u64 = 4;
    const CALLS: u64 = 20_000;
    let cache = BoundedCache::new(16);
    let value_of = |k: u64| k * 1_000 + 7;
    let own_failures = AtomicU64::new(0);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (cache, own_failures) = (&cache, &own_failures);
            s.spawn(move || {
                let mut x = t * 0x9e37_79b9 + 1;
                for call in 0..CALLS {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let key = (x >> 58) % 64;
                    let token = (t << 32) | call;
                    let r = cache.get_or_compute(&key, || {
                        if (x >> 40) % 8 == 0 {
                            Err(token)
                        } else {
                            Ok(value_of(key))
                        }
                    });
                    match r {
                        Ok(v) => assert_eq!(v, value_of(key), "wrong value for {key}"),
                        Err(e) => {
                            assert_eq!(e, token, "got another caller's error");
                            own_failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    let m = cache.metrics();
    assert_eq!(m.hits + m.misses, THREADS * CALLS);
    assert_eq!(m.misses, m.loads + m.coalesced);
    assert_eq!(m.load_failures, own_failures.load(Ordering::Relaxed));
    assert!(m.entries as u64 <= m.capacity);
}
