//! L1 — blocking and async locks and their friends.

mod async_mutex;
mod async_rwlock;
mod barrier;
mod condvar;
mod error;
mod mutex;
mod ordered;
mod raw_semaphore;
mod rwlock;
mod semaphore;
pub(crate) mod timeout;
mod unfair;

pub use async_mutex::{AsyncMutex, AsyncMutexGuard, OwnedAsyncMutexGuard};
pub use async_rwlock::{
    AsyncRwLock, AsyncRwLockReadGuard, AsyncRwLockWriteGuard, OwnedAsyncRwLockReadGuard,
    OwnedAsyncRwLockWriteGuard,
};
pub use barrier::{Barrier, BarrierWaitResult};
pub use condvar::{Condvar, WaitTimeoutResult};
pub use error::{AcquireError, BarrierError, LockTimeout, WouldBlock};
pub use mutex::{Mutex, MutexGuard};
pub use ordered::{OrderedLockError, lock_all, lock_all_vec, lock_two};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockUpgradableReadGuard, RwLockWriteGuard};
pub use semaphore::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};
pub use unfair::{UnfairLock, UnfairLockGuard};
