//! io — cross-process file locking and a crash-safe file header.
//!
//! * [`FileLock`]: an advisory read/write lock on a file between processes
//!   (and between threads of one process), with [`upgrade`] and
//!   [`downgrade`] that never let a third party in between, writer
//!   preference, and [`FileLockError::WouldDeadlock`] for two concurrent
//!   upgraders instead of a hang. Linux open-file-description locks.
//! * [`DualHeader`]: an A/B mirrored header in two fixed slots of a file,
//!   each checksummed and carrying a generation: a crash in the middle of a
//!   write leaves the previous header readable.
//!
//! Together they give several processes one file: writers update the header
//! under an exclusive lock, readers read it under a shared one.
//!
//! ```
//! use strata::io::{DualHeader, FileLock, HeaderLayout, LockMode};
//!
//! let path = std::env::temp_dir().join(format!("strata-doc-io-{}", std::process::id()));
//! let mut lock = FileLock::open(&path)?;
//! let mut header = DualHeader::open(&path, HeaderLayout::new())?;
//! {
//!     let _writer = lock.lock(LockMode::Exclusive)?;
//!     header.write(b"root=42")?;
//! }
//! let _reader = lock.lock(LockMode::Shared)?;
//! assert_eq!(header.read()?.payload(), b"root=42");
//! # std::fs::remove_file(&path)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`upgrade`]: FileLockGuard::upgrade
//! [`downgrade`]: FileLockGuard::downgrade

mod dual_header;
mod error;
mod file_lock;
pub(crate) mod ofd;

pub use dual_header::{DualHeader, Header, HeaderLayout, SlotId, SlotState};
pub use error::{FileLockError, HeaderError};
pub(crate) use file_lock::open_raw;
pub use file_lock::{FileLock, FileLockGuard, LockMode};
