//! # strata — one layered concurrency model
//!
//! strata gives a Rust program that mixes CPU-parallel work, long-lived
//! subsystems, shared state and files one coherent set of primitives, layered
//! so that each layer only builds on the ones below it:
//!
//! | layer | module | what |
//! |---|---|---|
//! | L0 | [`diag`] | lock classes, order checking, wait-for watchdog, metrics |
//! | L1 | [`sync`] | `Mutex`, `RwLock`, `UnfairLock`, `Condvar`, `Barrier`, `Semaphore`, `AsyncMutex`, `AsyncRwLock`, ordered locking |
//! | L2 | [`lease`], [`atom`], [`stm`], [`snapshot`], [`cache`] | writer leases, `Atom` and `WordAtom`, software transactional memory, `SnapshotCell` / `Versioned` copy-on-write, `BoundedCache` with single-flight loading; channels *(coming)* |
//! | L3 | [`runtime`] | the work-stealing pool, `join`, `spawn` / `block_on`, `BlockingIo` |
//! | L4 | [`task`], [`par`] | structured scopes, cancellation, joins and futures; parallel iteration |
//! | L5 | actors, pipelines | *(coming)* |
//! | io | [`io`] | `FileLock` (cross-process, atomic upgrade), the crash-safe `DualHeader` |
//!
//! Guard rails are on in debug builds and under the `checked` feature and
//! compile to nothing otherwise: see [`diag::checking_enabled`].
//!
//! ```
//! use strata::sync::Mutex;
//!
//! let counter = Mutex::new(0);
//! *counter.lock() += 1;
//! assert_eq!(*counter.lock(), 1);
//! ```

#![warn(missing_docs)]

pub mod atom;
pub mod cache;
pub mod diag;
pub(crate) mod hooks;
pub mod io;
pub mod lease;
pub(crate) mod loom;
pub mod par;
pub mod runtime;
pub mod snapshot;
pub mod stm;
pub mod sync;
pub mod task;

pub use runtime::join;
