//! L2 — a bounded cache with single-flight loading.
//!
//! [`BoundedCache`] holds at most a given number of entries (or a given total
//! weight, see [`Weigher`]), evicting with quick_cache's S3-FIFO policy, and
//! loads a missing key once however many callers ask for it at the same
//! time: [`get_or_compute`](BoundedCache::get_or_compute) and
//! [`get_or_compute_async`](BoundedCache::get_or_compute_async) run one
//! loader per missing key, with no lock held while it runs; the other
//! callers wait for its value. A loader that fails, panics or is cancelled
//! hands the load to one of the waiters and caches nothing.
//!
//! ```
//! use strata::cache::BoundedCache;
//!
//! let cache = BoundedCache::new(1_000);
//! let len = cache.get_or_compute("hello", || Ok::<_, ()>("hello".len()));
//! assert_eq!(len, Ok(5));
//! assert_eq!(cache.get("hello"), Some(5));
//! ```

mod bounded;
mod counter;
mod weigh;

pub use bounded::{BoundedCache, CacheMetrics};
pub use weigh::{UnitWeigher, Weigher};
