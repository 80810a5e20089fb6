//! How much of a [`BoundedCache`](super::BoundedCache)'s capacity an entry
//! takes.

/// Weighs cache entries, for a cache bounded by total weight (bytes, say)
/// instead of by entry count.
///
/// Any `Fn(&K, &V) -> u64 + Clone` is a weigher. The weight of an entry
/// must not change while it is cached, and computing it should be cheap (it
/// runs on insertion and eviction). An entry of weight 0 is never evicted;
/// only [`remove`](super::BoundedCache::remove) or an overwrite take it out.
///
/// ```
/// use strata::cache::BoundedCache;
///
/// // At most about 1 KiB of values.
/// let cache = BoundedCache::with_weigher(1024, 64, |_k: &u32, v: &Vec<u8>| v.len() as u64);
/// cache.insert(1, vec![0; 100]);
/// assert_eq!(cache.weight(), 100);
/// ```
pub trait Weigher<K, V>: Clone {
    /// The weight of the entry `key` → `value`.
    fn weigh(&self, key: &K, value: &V) -> u64;
}

impl<K, V, F> Weigher<K, V> for F
where
    F: Fn(&K, &V) -> u64 + Clone,
{
    #[inline]
    fn weigh(&self, key: &K, value: &V) -> u64 {
        self(key, value)
    }
}

/// The weigher of a cache bounded by entry count: every entry weighs 1.
///
/// ```
/// use strata::cache::{UnitWeigher, Weigher};
/// assert_eq!(UnitWeigher.weigh(&"key", &"value"), 1);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct UnitWeigher;

impl<K, V> Weigher<K, V> for UnitWeigher {
    #[inline]
    fn weigh(&self, _key: &K, _value: &V) -> u64 {
        1
    }
}

/// Presents a [`Weigher`] to quick_cache, keeping its trait out of strata's API.
#[derive(Clone, Debug)]
pub(crate) struct Adapter<W>(pub(crate) W);

impl<K, V, W: Weigher<K, V>> quick_cache::Weighter<K, V> for Adapter<W> {
    #[inline]
    fn weight(&self, key: &K, value: &V) -> u64 {
        self.0.weigh(key, value)
    }
}
