//! Job slots carved from per-worker chunks, for small heap jobs.
//!
//! A scope child is a boxed closure that one worker allocates and, as
//! often as not, another frees after running it. One `malloc`/`free` pair
//! per spawn across threads is exactly the pattern that makes glibc's
//! arenas slow down (both rayon and a naive strata degraded from ~80 ns to
//! ~400 ns per spawn over a few million spawns). So a worker carves jobs of
//! up to [`SLOT`] bytes out of a [`SLOTS`]-slot chunk by bumping an index
//! (no atomics), and a chunk is freed once all its slots ran and its
//! allocator moved on: one allocation per 32 spawns, and one atomic
//! decrement per job on a line only finishers write.
//!
//! `live` starts at `SLOTS + 1`: one count per slot (handed out or not —
//! the unused tail is released when the allocator moves on) plus the
//! allocator's own. Whoever takes it to zero frees the chunk.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::cell::Cell;
use std::mem::MaybeUninit;
use std::ptr::{self, NonNull};

use crate::loom::sync::atomic::{AtomicUsize, Ordering, fence};

/// Bytes of one slot (a job's header and closure must fit).
pub(crate) const SLOT: usize = 64;
/// Slots per chunk.
pub(crate) const SLOTS: usize = 32;

#[repr(C, align(64))]
struct Slot([MaybeUninit<u8>; SLOT]);

#[repr(C)]
pub(crate) struct Chunk {
    live: AtomicUsize,
    slots: [Slot; SLOTS],
}

impl Chunk {
    /// Releases `n` counts; the last one frees the chunk.
    ///
    /// # Safety
    /// `this` is a live chunk and the caller owns `n` of its counts (and
    /// touches none of its slots afterwards).
    pub(crate) unsafe fn release(this: NonNull<Chunk>, n: usize) {
        // SAFETY: live until the count reaches zero, which only happens
        // below, once.
        let prev = unsafe { this.as_ref() }
            .live
            .fetch_sub(n, Ordering::Release);
        if prev == n {
            // Every other releaser's uses of the chunk happen before this.
            fence(Ordering::Acquire);
            // SAFETY: allocated in `fresh` with this layout; no count left.
            unsafe { dealloc(this.as_ptr().cast(), Layout::new::<Chunk>()) };
        }
    }
}

/// A worker's current chunk and the next free slot in it.
pub(crate) struct SlabCursor {
    chunk: Cell<Option<NonNull<Chunk>>>,
    next: Cell<usize>,
}

impl SlabCursor {
    pub(crate) const fn new() -> Self {
        Self {
            chunk: Cell::new(None),
            next: Cell::new(SLOTS),
        }
    }

    /// A slot of `SLOT` bytes (64-byte aligned) and the chunk to release it
    /// to once its job is done.
    #[inline]
    pub(crate) fn slot(&self) -> (NonNull<u8>, NonNull<Chunk>) {
        let i = self.next.get();
        let chunk = match self.chunk.get() {
            Some(c) if i < SLOTS => c,
            _ => self.fresh(),
        };
        let i = self.next.get();
        self.next.set(i + 1);
        // SAFETY: `i < SLOTS`, inside the chunk; slot `i` was never handed
        // out before (the index only grows).
        let slot = unsafe { ptr::addr_of_mut!((*chunk.as_ptr()).slots[i]) };
        // SAFETY: derived from a non-null chunk pointer.
        (unsafe { NonNull::new_unchecked(slot.cast()) }, chunk)
    }

    #[cold]
    fn fresh(&self) -> NonNull<Chunk> {
        self.retire();
        let layout = Layout::new::<Chunk>();
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc(layout) }.cast::<Chunk>();
        let Some(chunk) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        // SAFETY: freshly allocated, properly aligned for `Chunk`; slots
        // stay uninitialised until handed out.
        unsafe {
            ptr::addr_of_mut!((*chunk.as_ptr()).live).write(AtomicUsize::new(SLOTS + 1));
        }
        self.chunk.set(Some(chunk));
        self.next.set(0);
        chunk
    }

    /// Gives up the current chunk: its unused slots and the allocator's own
    /// count are released.
    pub(crate) fn retire(&self) {
        if let Some(chunk) = self.chunk.take() {
            let unused = SLOTS - self.next.get();
            self.next.set(SLOTS);
            // SAFETY: the cursor owns the allocator count and the counts of
            // the slots it never handed out.
            unsafe { Chunk::release(chunk, unused + 1) };
        }
    }
}

impl Drop for SlabCursor {
    fn drop(&mut self) {
        self.retire();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Slots handed out across several chunks and released from other
    /// threads in any order: every chunk is freed exactly when its last
    /// count goes (a double free or leak shows up under the allocator's
    /// checks and Miri-style reasoning; here: no crash, distinct slots).
    #[test]
    fn slots_are_distinct_and_chunks_released_from_any_thread() {
        let cursor = SlabCursor::new();
        let mut taken = Vec::new();
        for _ in 0..(SLOTS * 3 + 5) {
            let (slot, chunk) = cursor.slot();
            assert_eq!(slot.as_ptr() as usize % SLOT, 0, "64-byte aligned");
            taken.push((slot.as_ptr() as usize, chunk.as_ptr() as usize));
        }
        let mut addrs: Vec<usize> = taken.iter().map(|t| t.0).collect();
        addrs.sort_unstable();
        addrs.dedup();
        assert_eq!(addrs.len(), taken.len(), "no slot handed out twice");
        // Release from two threads, interleaved with the cursor retiring.
        let (a, b): (Vec<_>, Vec<_>) = taken.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let release = |v: Vec<(usize, (usize, usize))>| {
            std::thread::spawn(move || {
                for (_, (_, chunk)) in v.into_iter().rev() {
                    // SAFETY: each slot's count is released once.
                    unsafe { Chunk::release(NonNull::new(chunk as *mut Chunk).unwrap(), 1) };
                }
            })
        };
        let (ta, tb) = (release(a), release(b));
        cursor.retire();
        ta.join().unwrap();
        tb.join().unwrap();
    }
}

#[cfg(all(test, loom))]
mod loom {
    use super::*;
    use crate::loom::thread;

    /// Two finishers and the retiring allocator race on one chunk's count:
    /// exactly one of them frees it, after everyone's last access (loom
    /// checks the ordering; a double free or use-after-free would crash).
    #[test]
    fn loom_chunk_freed_once_after_all_releases() {
        ::loom::model(|| {
            let cursor = SlabCursor::new();
            let (s1, c1) = cursor.slot();
            let (s2, c2) = cursor.slot();
            assert_eq!(c1, c2);
            // Each "job" writes its slot before releasing it.
            let (p1, p2) = (s1.as_ptr() as usize, s2.as_ptr() as usize);
            let chunk = c1.as_ptr() as usize;
            let t = thread::spawn(move || {
                // SAFETY: slot 1 belongs to this job until released.
                unsafe { (p1 as *mut u8).write(1) };
                // SAFETY: this job's one count.
                unsafe { Chunk::release(NonNull::new(chunk as *mut Chunk).unwrap(), 1) };
            });
            // SAFETY: as above, slot 2.
            unsafe { (p2 as *mut u8).write(2) };
            // SAFETY: as above.
            unsafe { Chunk::release(NonNull::new(chunk as *mut Chunk).unwrap(), 1) };
            cursor.retire();
            t.join().unwrap();
        });
    }
}
