//! `BoundedCache`: quick_cache's S3-FIFO cache with single-flight loading
//! and cheap metrics.

use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use quick_cache::sync::{Cache, EntryAction, EntryResult, GuardResult};

use super::counter::Counters;
use super::weigh::{Adapter, UnitWeigher, Weigher};

/// quick_cache's handle on a key this caller loads (dropping it unfilled
/// hands the load on).
type Placeholder<'a, K, V, W> = quick_cache::sync::PlaceholderGuard<
    'a,
    K,
    V,
    Adapter<W>,
    quick_cache::DefaultHashBuilder,
    quick_cache::sync::DefaultLifecycle<K, V>,
>;

/// Indexes into [`BoundedCache::counts`].
const HITS: usize = 0;
const MISSES: usize = 1;
const LOADS: usize = 2;
const LOAD_FAILURES: usize = 3;
const COALESCED: usize = 4;

/// A concurrent cache of bounded size that loads each missing key once.
///
/// Bounded by entry count ([`new`](Self::new)) or by total weight
/// ([`with_weigher`](Self::with_weigher)); when full, entries are evicted by
/// quick_cache's S3-FIFO policy (recently inserted entries that were never
/// read again go first, frequently read ones stay). Values are cloned out on
/// every read: cache an `Arc` when values are large.
///
/// [`get_or_compute`](Self::get_or_compute) and
/// [`get_or_compute_async`](Self::get_or_compute_async) are single-flight:
/// among concurrent callers for one missing key, exactly one runs its loader
/// — with no lock held, so a slow loader blocks nobody but the callers of
/// that key — and the others wait for its value. A loader that returns
/// `Err`, panics or (async) is cancelled caches nothing and hands the load
/// to one of the waiters, which runs its own loader.
///
/// A loader must not ask the same cache for the same key (it would wait for
/// itself, like a re-entrant `OnceLock` initialisation); other keys are
/// fine.
///
/// Metrics ([`metrics`](Self::metrics)) cost a hit one relaxed store to a
/// counter the calling thread has to itself (no shared write, no locked
/// instruction).
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use strata::cache::BoundedCache;
///
/// let cache = BoundedCache::new(100);
/// let loads = AtomicUsize::new(0);
/// std::thread::scope(|s| {
///     for _ in 0..8 {
///         s.spawn(|| {
///             let v = cache.get_or_compute(&7, || {
///                 loads.fetch_add(1, Ordering::SeqCst);
///                 Ok::<_, ()>("seven")
///             });
///             assert_eq!(v, Ok("seven"));
///         });
///     }
/// });
/// assert_eq!(loads.load(Ordering::SeqCst), 1);
/// ```
pub struct BoundedCache<K, V, W = UnitWeigher> {
    inner: Cache<K, V, Adapter<W>>,
    /// Hits, misses, loads, failures, coalesced waits: one cache line per
    /// thread, so counting costs the hit path no shared write.
    counts: Counters<5>,
}

/// What [`BoundedCache::metrics`] reports. Counts are since construction.
///
/// Every miss of a `get_or_compute` call ends as a load or as a coalesced
/// wait, so with only `get_or_compute` traffic
/// `misses == loads + coalesced`.
///
/// ```
/// let cache = strata::cache::BoundedCache::new(10);
/// cache.get_or_compute(&1, || Ok::<_, ()>(1)).unwrap();
/// cache.get_or_compute(&1, || Ok::<_, ()>(1)).unwrap();
/// let m = cache.metrics();
/// assert_eq!((m.hits, m.misses, m.loads, m.entries), (1, 1, 1, 1));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheMetrics {
    /// Lookups that found a value.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// Loaders run (including failed ones).
    pub loads: u64,
    /// Loaders that returned `Err`, panicked or were cancelled.
    pub load_failures: u64,
    /// Misses answered by another caller's load of the same key.
    pub coalesced: u64,
    /// Entries cached now.
    pub entries: usize,
    /// Their total weight now.
    pub weight: u64,
    /// The weight (or entry count) the cache is bounded by.
    pub capacity: u64,
}

impl<K: Eq + Hash, V: Clone> BoundedCache<K, V> {
    /// A cache of at most about `max_entries` entries.
    ///
    /// The bound is split across internal shards, so a shard may evict a
    /// little before the whole cache is full.
    ///
    /// ```
    /// let cache = strata::cache::BoundedCache::new(2);
    /// cache.insert("a", 1);
    /// assert_eq!(cache.get("a"), Some(1));
    /// assert_eq!(cache.metrics().capacity, 2);
    /// ```
    pub fn new(max_entries: usize) -> Self {
        Self::with_weigher(max_entries as u64, max_entries, UnitWeigher)
    }
}

impl<K: Eq + Hash, V: Clone, W: Weigher<K, V>> BoundedCache<K, V, W> {
    /// A cache of at most `max_weight` total weight as measured by
    /// `weigher`; `estimated_entries` (about `max_weight` over the typical
    /// weight) sizes its tables.
    ///
    /// An entry heavier than a shard's share of `max_weight` is never
    /// admitted: inserting it leaves the cache as if it had been evicted at
    /// once.
    ///
    /// ```
    /// use strata::cache::BoundedCache;
    /// let cache = BoundedCache::with_weigher(100, 10, |_k: &&str, v: &String| v.len() as u64);
    /// cache.insert("k", "v".repeat(30));
    /// assert_eq!(cache.weight(), 30);
    /// ```
    pub fn with_weigher(max_weight: u64, estimated_entries: usize, weigher: W) -> Self {
        Self {
            inner: Cache::with_weighter(estimated_entries, max_weight, Adapter(weigher)),
            counts: Counters::new(),
        }
    }

    /// The value cached for `key`, if any (a clone).
    ///
    /// ```
    /// let cache = strata::cache::BoundedCache::new(8);
    /// cache.insert(String::from("k"), 1);
    /// assert_eq!(cache.get("k"), Some(1)); // look up a String key by &str
    /// assert_eq!(cache.get("other"), None);
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let found = self.inner.get(key);
        self.counts
            .incr(if found.is_some() { HITS } else { MISSES });
        found
    }

    /// Whether `key` is cached (counts as neither hit nor miss).
    ///
    /// ```
    /// let cache = strata::cache::BoundedCache::new(8);
    /// cache.insert(1, ());
    /// assert!(cache.contains_key(&1) && !cache.contains_key(&2));
    /// ```
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.contains_key(key)
    }

    /// Caches `value` for `key`, replacing any previous value. A load of
    /// `key` in progress then finds its result not cached (this value wins).
    ///
    /// ```
    /// let cache = strata::cache::BoundedCache::new(8);
    /// cache.insert(1, "one");
    /// cache.insert(1, "uno");
    /// assert_eq!(cache.get(&1), Some("uno"));
    /// ```
    pub fn insert(&self, key: K, value: V) {
        self.inner.insert(key, value);
    }

    /// Removes `key`, returning its value if it was cached.
    ///
    /// ```
    /// let cache = strata::cache::BoundedCache::new(8);
    /// cache.insert(1, "one");
    /// assert_eq!(cache.remove(&1), Some("one"));
    /// assert_eq!(cache.remove(&1), None);
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.remove(key).map(|(_, v)| v)
    }

    /// Removes every entry.
    ///
    /// ```
    /// let cache = strata::cache::BoundedCache::new(8);
    /// cache.insert(1, 1);
    /// cache.clear();
    /// assert!(cache.is_empty());
    /// ```
    pub fn clear(&self) {
        self.inner.clear();
    }

    /// Entries cached now.
    ///
    /// ```
    /// let cache = strata::cache::BoundedCache::new(8);
    /// cache.insert(1, 1);
    /// assert_eq!(cache.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether nothing is cached.
    ///
    /// ```
    /// assert!(strata::cache::BoundedCache::<u8, u8>::new(8).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Total weight of the cached entries (their count, without a weigher).
    ///
    /// ```
    /// let cache = strata::cache::BoundedCache::new(8);
    /// cache.insert(1, 1);
    /// cache.insert(2, 2);
    /// assert_eq!(cache.weight(), 2);
    /// ```
    pub fn weight(&self) -> u64 {
        self.inner.weight()
    }

    /// Hit, miss and load counters and the current size (see
    /// [`CacheMetrics`]).
    ///
    /// ```
    /// let cache = strata::cache::BoundedCache::<u8, u8>::new(8);
    /// assert_eq!(cache.get(&1), None);
    /// assert_eq!(cache.metrics().misses, 1);
    /// ```
    pub fn metrics(&self) -> CacheMetrics {
        let get = |c| self.counts.get(c);
        CacheMetrics {
            hits: get(HITS),
            misses: get(MISSES),
            loads: get(LOADS),
            load_failures: get(LOAD_FAILURES),
            coalesced: get(COALESCED),
            entries: self.inner.len(),
            weight: self.inner.weight(),
            capacity: self.inner.capacity(),
        }
    }

    /// The value for `key`: the cached one, or the one `load` computes —
    /// once, however many threads ask at the same time.
    ///
    /// On a miss, if no other caller is loading `key`, `load` runs (with no
    /// lock held) and an `Ok` value is cached and returned; otherwise this
    /// call waits for the other caller's value. If that other loader fails,
    /// panics or is cancelled, one waiter becomes the loader and runs its
    /// own `load`.
    ///
    /// # Errors
    ///
    /// `load`'s error, when this call's `load` ran and failed. Nothing is
    /// cached then, and the next waiter (if any) loads.
    ///
    /// # Panics
    ///
    /// A panic in `load` propagates, after the load is handed on.
    ///
    /// ```
    /// let cache = strata::cache::BoundedCache::new(8);
    /// assert_eq!(cache.get_or_compute(&1, || Err::<u32, _>("db down")), Err("db down"));
    /// assert_eq!(cache.get(&1), None); // the failure cached nothing
    /// assert_eq!(cache.get_or_compute(&1, || Ok::<_, &str>(10)), Ok(10));
    /// assert_eq!(cache.get_or_compute(&1, || Ok::<_, &str>(99)), Ok(10)); // cached
    /// ```
    #[inline]
    pub fn get_or_compute<Q, E>(&self, key: &Q, load: impl FnOnce() -> Result<V, E>) -> Result<V, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        // The hit path is exactly `get`: one read-locked lookup.
        if let Some(v) = self.inner.get(key) {
            self.counts.incr(HITS);
            return Ok(v);
        }
        self.missed(key, load)
    }

    /// The miss path of [`get_or_compute`](Self::get_or_compute), out of
    /// line so that the hit path stays small enough to inline.
    #[inline(never)]
    fn missed<Q, E>(&self, key: &Q, load: impl FnOnce() -> Result<V, E>) -> Result<V, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.counts.incr(MISSES);
        // One write-locked pass (as quick_cache's own `get_or_insert_with`
        // after its read pass): a value cached meanwhile, or our own
        // placeholder, or — zero timeout — word that another caller is
        // loading, and only then do we queue behind it.
        match self.inner.entry(key, Some(Duration::ZERO), |_, v| {
            EntryAction::Retain(v.clone())
        }) {
            EntryResult::Retained(v) => {
                self.counts.incr(COALESCED);
                Ok(v)
            }
            EntryResult::Vacant(guard) => self.load(guard, load),
            EntryResult::Timeout => self.join(key, load),
            EntryResult::Removed(..) | EntryResult::Replaced(..) => {
                unreachable!("the entry callback only retains")
            }
        }
    }

    /// Runs `load` as the key's one loader and caches an `Ok` value.
    fn load<E>(
        &self,
        guard: Placeholder<'_, K, V, W>,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        let attempt = LoadAttempt::start(self);
        // On `Err` or a panic, dropping `guard` hands the load to a waiter.
        let value = load()?;
        attempt.succeeded();
        // Err only if the key was removed or overwritten while we loaded:
        // that value wins, and ours still answers this call.
        let _ = guard.insert(value.clone());
        Ok(value)
    }

    /// Waits for the caller loading `key`; becomes the loader if it fails.
    #[cold]
    fn join<Q, E>(&self, key: &Q, load: impl FnOnce() -> Result<V, E>) -> Result<V, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        match self.inner.get_value_or_guard(key, None) {
            GuardResult::Value(v) => {
                self.counts.incr(COALESCED);
                Ok(v)
            }
            GuardResult::Guard(guard) => self.load(guard, load),
            // Only a `Some` timeout times out.
            GuardResult::Timeout => unreachable!("an untimed cache wait timed out"),
        }
    }

    /// An infallible [`get_or_compute`](Self::get_or_compute).
    ///
    /// ```
    /// let cache = strata::cache::BoundedCache::new(8);
    /// assert_eq!(cache.get_or_insert_with("k", || 3), 3);
    /// assert_eq!(cache.get_or_insert_with("k", || 4), 3);
    /// ```
    pub fn get_or_insert_with<Q>(&self, key: &Q, load: impl FnOnce() -> V) -> V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        match self.get_or_compute(key, || Ok::<_, std::convert::Infallible>(load())) {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// [`get_or_compute`](Self::get_or_compute) for async loaders: on a
    /// miss, either awaits `load` (this call is the loader) or waits, without
    /// blocking the thread, for the caller that is. `load` is not polled at
    /// all unless this call becomes the loader.
    ///
    /// Cancel-safe: dropping this future while it waits leaves the other
    /// callers as they were; dropping it while its `load` runs cancels the
    /// load, caches nothing and hands the load to a waiter. Works under any
    /// executor, and sync and async callers of one key coalesce.
    ///
    /// # Errors
    ///
    /// `load`'s error, when this call's `load` ran and failed.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let cache = strata::cache::BoundedCache::new(8);
    /// let v = cache.get_or_compute_async(&1, async { Ok::<_, ()>("one") }).await;
    /// assert_eq!(v, Ok("one"));
    /// let v = cache.get_or_compute_async(&1, async { Ok::<_, ()>("uno") }).await;
    /// assert_eq!(v, Ok("one"));
    /// # });
    /// ```
    pub async fn get_or_compute_async<Q, E>(
        &self,
        key: &Q,
        load: impl Future<Output = Result<V, E>>,
    ) -> Result<V, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(v) = self.inner.get(key) {
            self.counts.incr(HITS);
            return Ok(v);
        }
        self.counts.incr(MISSES);
        // One write-locked pass, then (if another caller is loading) a
        // cancel-safe wait for its value or for the load to be handed on.
        match self
            .inner
            .entry_async(key, |_, v| EntryAction::Retain(v.clone()))
            .await
        {
            EntryResult::Retained(v) => {
                self.counts.incr(COALESCED);
                Ok(v)
            }
            EntryResult::Vacant(guard) => {
                let attempt = LoadAttempt::start(self);
                let value = load.await?;
                attempt.succeeded();
                let _ = guard.insert(value.clone());
                Ok(value)
            }
            EntryResult::Removed(..) | EntryResult::Replaced(..) | EntryResult::Timeout => {
                unreachable!("the entry callback only retains, and an async entry never times out")
            }
        }
    }
}

/// Counts a load, and a failure unless [`succeeded`](Self::succeeded) is
/// called — so an `Err`, a panic and a cancelled future all count.
struct LoadAttempt<'a> {
    counts: &'a Counters<5>,
    succeeded: bool,
}

impl<'a> LoadAttempt<'a> {
    fn start<K, V, W>(cache: &'a BoundedCache<K, V, W>) -> Self {
        cache.counts.incr(LOADS);
        Self {
            counts: &cache.counts,
            succeeded: false,
        }
    }

    fn succeeded(mut self) {
        self.succeeded = true;
    }
}

impl Drop for LoadAttempt<'_> {
    fn drop(&mut self) {
        if !self.succeeded {
            self.counts.incr(LOAD_FAILURES);
        }
    }
}

impl<K: Eq + Hash, V: Clone, W: Weigher<K, V>> fmt::Debug for BoundedCache<K, V, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedCache")
            .field("entries", &self.inner.len())
            .field("capacity", &self.inner.capacity())
            .field("hits", &self.counts.get(HITS))
            .field("misses", &self.counts.get(MISSES))
            .finish_non_exhaustive()
    }
}
