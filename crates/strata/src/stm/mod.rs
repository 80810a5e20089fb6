//! L2 — software transactional memory: [`TVar`], [`atomically`], [`retry`],
//! [`or_else`], [`atomically_async`].
//!
//! GHC's STM semantics on an object-based TL2 engine:
//!
//! - every [`TVar`] has one versioned lock word; one global version clock
//!   orders commits;
//! - a transaction takes a snapshot of the clock, buffers its writes, and
//!   checks **every read** against the snapshot, so it never observes a state
//!   no commit produced — not even in an attempt that will be re-run
//!   (opacity). A read that finds a newer version first tries to move the
//!   snapshot forward (if nothing read so far changed) before giving up;
//! - commit try-locks the written `TVar`s (no waiting on one another, so no
//!   deadlock), takes a version above the clock and above every version it
//!   replaces (the clock itself is advanced lazily, by readers that meet a
//!   newer version, so commits do not contend on it), re-validates the reads
//!   and publishes; a read-only transaction commits with no lock and no write
//!   to shared memory;
//! - [`retry`] blocks until a `TVar` the transaction read changes (per-`TVar`
//!   waiter lists; nothing else wakes it); [`atomically_async`] awaits
//!   instead;
//! - contention: a conflicting transaction spins for a random time in a
//!   window that doubles with each conflict (about 1 µs at first, at most
//!   about 10 µs; no sleep), so colliding transactions take turns in runs
//!   instead of stealing each other's cache lines; after 12 conflicts in a row it
//!   runs in serial mode, locking what it touches as it goes, so it cannot
//!   lose again — long transactions are not starved;
//! - a user error ([`try_atomically`], [`abort`]) or a panic aborts with no
//!   effect; [`atomically_with`] bounds attempts and time;
//! - validators ([`TVar::set_validator`]) can reject a commit; watches
//!   ([`TVar::add_watch`]) run after it; [`stats`] counts it all.
//!
//! # Transactions and locks
//!
//! A transaction is not a lock and has no lock class. But its closure may
//! run many times and, on [`retry`], sleep: never hold a strata lock (or any
//! lock) across the closure boundary or acquire one inside it that another
//! thread needs in order to commit what this one waits for — a retrying
//! transaction parked with a lock held is a deadlock the order checker
//! cannot see. Taking and releasing a lock entirely within one attempt is
//! allowed but defeats the purpose; keep closures pure.
//!
//! ```
//! use strata::stm::{atomically, retry, TVar};
//!
//! let account = TVar::new(0u64);
//! std::thread::scope(|s| {
//!     // Blocks until there is money, then takes 30.
//!     let spender = s.spawn(|| {
//!         atomically(|tx| {
//!             let b = tx.read(&account)?;
//!             if b < 30 {
//!                 return retry();
//!             }
//!             tx.write(&account, b - 30)
//!         })
//!     });
//!     atomically(|tx| tx.modify(&account, |b| b + 50)).unwrap();
//!     spender.join().unwrap().unwrap();
//! });
//! assert_eq!(account.load(), 20);
//! ```

pub(crate) mod backoff;
mod buffers;
mod clock;
mod entry;
mod error;
#[cfg(all(test, loom))]
mod loom_models;
mod own;
pub(crate) mod reclaim;
mod run;
mod stats;
mod tvar;
mod tx;
mod wait;
pub(crate) mod word;

pub use error::{Limits, StmError, TxError, TxSignal};
pub use run::{
    Atomically, abort, atomically, atomically_async, atomically_async_with, atomically_with, check,
    or_else, retry, try_atomically,
};
pub use stats::{AbortStats, StmStats, reset_stats, stats};
pub use tvar::TVar;
pub use tx::{Stm, Tx};
