//! Per-thread transaction buffers: the read set, the write set, the
//! `or_else` undo log, serial-mode locks, the wake list and the write-set
//! index.
//!
//! They are kept between transactions in a thread-local slot, so a
//! transaction allocates nothing once its thread has run one of its size,
//! starting one costs a pointer swap (no set to construct or tear down),
//! and a push is a plain `Vec` push (no inline/heap discriminant to check
//! on every access). A transaction started while the slot is empty (a
//! transaction in a watch of another one) gets fresh buffers; the spare is
//! dropped when both are handed back.

use std::collections::HashMap;

use super::entry::{State, WriteEntry};
use super::stats;
use super::tvar::Core;
use super::wait::WaitNode;
use crate::loom::sync::Arc;

/// A read: the `TVar` and the version seen.
pub(crate) type ReadEntry = (*const Core, u64);

/// A saved entry state, for rolling back an `or_else` branch.
pub(crate) struct Undo {
    pub(crate) idx: usize,
    pub(crate) state: State,
    pub(crate) word: u64,
    pub(crate) ptr: *mut (),
    pub(crate) level: u32,
}

pub(crate) struct Buffers {
    pub(crate) reads: Vec<ReadEntry>,
    pub(crate) writes: Vec<WriteEntry>,
    pub(crate) undo: Vec<Undo>,
    /// Serial mode: every `TVar` touched is locked; the words replaced.
    pub(crate) held: Vec<(*const Core, u64)>,
    /// Waiters a commit took from the lists of what it wrote.
    pub(crate) wake: Vec<Arc<WaitNode>>,
    /// Large write sets: core → index in `writes`.
    pub(crate) index: HashMap<*const Core, usize>,
    /// This thread's statistics cells.
    pub(crate) stats: stats::Handle,
}

/// Capacities above which buffers are shrunk when handed back, so one huge
/// transaction does not pin its memory for the thread's lifetime.
const KEEP_READS: usize = 1 << 12;
const KEEP_WRITES: usize = 1 << 10;

impl Buffers {
    fn new() -> Box<Self> {
        Box::new(Buffers {
            reads: Vec::with_capacity(16),
            writes: Vec::with_capacity(8),
            undo: Vec::new(),
            held: Vec::new(),
            wake: Vec::new(),
            index: HashMap::new(),
            stats: stats::Handle::current(),
        })
    }

    /// Empty buffers: this thread's cached ones, or new ones.
    #[inline]
    pub(crate) fn take() -> Box<Self> {
        #[cfg(not(loom))]
        if let Ok(Some(b)) = CACHE.try_with(|c| c.take()) {
            return b;
        }
        Self::new()
    }

    /// Hands buffers back for the thread's next transaction. No entry owns
    /// anything any more (the caller has released what they owned); the
    /// read and write sets may still hold plain entries, which the next
    /// attempt's start discards.
    #[inline]
    pub(crate) fn give_back(mut b: Box<Self>) {
        debug_assert!(b.undo.is_empty() && b.held.is_empty() && b.wake.is_empty());
        if b.reads.capacity() > KEEP_READS || b.writes.capacity() > KEEP_WRITES {
            b.shrink();
        }
        #[cfg(not(loom))]
        {
            // A spare (from a nested start) or a torn-down slot: just drop.
            let _spare = CACHE.try_with(|c| c.replace(Some(b)));
        }
        #[cfg(loom)]
        drop(b);
    }

    #[cold]
    fn shrink(&mut self) {
        self.reads.shrink_to(KEEP_READS);
        self.writes.shrink_to(KEEP_WRITES);
        self.undo = Vec::new();
        self.held = Vec::new();
        self.index = HashMap::new();
    }
}

// The slot holds plain data (nothing in it owns a value), so dropping it
// at thread exit runs no user code.
#[cfg(not(loom))]
thread_local! {
    static CACHE: std::cell::Cell<Option<Box<Buffers>>> = const { std::cell::Cell::new(None) };
}
