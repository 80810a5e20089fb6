//! The error types of [`crate::io`].

use std::io;

use thiserror::Error;

/// Why a [`FileLock`](super::FileLock) operation failed.
///
/// ```
/// use strata::io::{FileLock, FileLockError, LockMode};
/// let path = std::env::temp_dir().join(format!("strata-doc-fle-{}", std::process::id()));
/// let mut a = FileLock::open(&path)?;
/// let mut b = FileLock::open(&path)?;
/// let _w = a.lock(LockMode::Exclusive)?;
/// let err = b.try_lock(LockMode::Shared).unwrap_err();
/// assert!(matches!(err, FileLockError::WouldBlock));
/// assert_eq!(err.to_string(), "the file is locked in a conflicting mode");
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FileLockError {
    /// Another holder (or a waiting writer) is in the way and the caller
    /// asked not to wait.
    #[error("the file is locked in a conflicting mode")]
    WouldBlock,
    /// Another holder of the file is upgrading, or a writer is waiting for
    /// this holder's shared lock: upgrading as well would wait forever.
    /// Release the shared lock and retry.
    #[error("another holder is upgrading or waiting to write; this upgrade would deadlock")]
    WouldDeadlock,
    /// The deadline passed first; nothing is left held.
    #[error("timed out waiting for the file lock")]
    Timeout,
    /// This platform has no open-file-description locks (only Linux has).
    #[error("file locks need Linux open-file-description locks, which this platform lacks")]
    Unsupported,
    /// Opening the file or a lock call failed.
    #[error("file lock I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Why a [`DualHeader`](super::DualHeader) operation failed.
///
/// ```
/// use strata::io::{DualHeader, HeaderError, HeaderLayout};
/// let path = std::env::temp_dir().join(format!("strata-doc-he-{}", std::process::id()));
/// let header = DualHeader::open(&path, HeaderLayout::new())?;
/// assert!(matches!(header.read(), Err(HeaderError::Empty)));
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Neither slot was ever written (a new file).
    #[error("no header has been written yet")]
    Empty,
    /// Neither slot holds a valid header, and at least one holds bytes:
    /// a first write cut short (one slot torn, the other empty), or both
    /// torn or corrupt. `read` reports it and rewrites nothing (the bytes
    /// stay for inspection); `write` goes on into an empty slot, and
    /// refuses when both are torn.
    #[error("neither header slot is valid (A: {a}, B: {b})")]
    NoValidSlot {
        /// What slot A holds.
        a: super::SlotState,
        /// What slot B holds.
        b: super::SlotState,
    },
    /// The payload does not fit in a slot; nothing was written.
    #[error("payload of {len} bytes exceeds the slot capacity of {capacity} bytes")]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// The most a slot of this layout holds.
        capacity: usize,
    },
    /// Every generation number has been used; nothing was written.
    #[error("the header generation counter is exhausted")]
    GenerationExhausted,
    /// The layout is unusable (a slot too small for its own framing or
    /// larger than [`HeaderLayout::MAX_SLOT_SIZE`](super::HeaderLayout::MAX_SLOT_SIZE),
    /// or slots past the largest file offset).
    #[error("invalid header layout: {0}")]
    InvalidLayout(&'static str),
    /// Reading, writing or syncing the file failed.
    #[error("header I/O error: {0}")]
    Io(#[from] io::Error),
}
