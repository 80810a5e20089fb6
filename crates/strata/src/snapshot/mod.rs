//! L2 — snapshots: values that readers load without waiting while writers
//! replace them whole.
//!
//! * [`SnapshotCell`] — one shared value behind an atomically swapped
//!   pointer (arc-swap; an `RwLock<Arc<T>>` under the `snapshot-rwlock`
//!   feature): wait-free [`load`](SnapshotCell::load) for short reads,
//!   [`snapshot`](SnapshotCell::snapshot) for owned ones, `store`, `swap`,
//!   `rcu`.
//! * [`Versioned`] — the copy-on-write store on top of it: reads never wait
//!   and see one committed version; writes are serialized first in, first
//!   out, build the next version on a clone and publish it only on `Ok`.
//!
//! ```
//! use strata::snapshot::{SnapshotCell, Versioned};
//!
//! let config = SnapshotCell::new("v1");
//! config.store("v2");
//! assert_eq!(*config.load(), "v2");
//!
//! let index = Versioned::new(vec![1, 2]);
//! index.update(|v| v.push(3)).unwrap();
//! assert_eq!(index.read(|v| v.len()), 3);
//! ```

mod cell;
mod error;
mod raw;
mod versioned;

pub use cell::{SnapshotCell, SnapshotGuard};
pub use error::SnapshotError;
pub use versioned::{Committed, Versioned, VersionedMetrics};
