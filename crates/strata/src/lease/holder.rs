//! Who holds a gate, readable from anywhere without slowing the holder down.
//!
//! The holder's lease id and timestamp are published in two atomics that
//! only the permit holder writes, and read with a seqlock whose sequence is
//! the lease id itself: ids are unique and never reused, so a reader that
//! sees the same id before and after reading the timestamp read that
//! lease's timestamp. Publishing is two plain stores and a release fence
//! (free on x86); no lock and no read-modify-write on the acquire path.
//!
//! Ordering argument, for lease `k` released and `k + 1` granted:
//! `k` stores `id = 0` before giving the permit back (a release), `k + 1`
//! takes the permit (an acquire) and issues a release fence before storing
//! its timestamp. A reader that saw `id == k` and then reads `k + 1`'s
//! timestamp synchronizes with that fence through its own acquire fence,
//! so its second load of `id` cannot return `k` any more (it is ordered
//! after the store of 0): the mixed pair is rejected and re-read.

use crate::loom::sync::atomic::{AtomicU64, Ordering, fence};

/// The published `(lease id, timestamp)` of a gate's current holder.
#[derive(Debug, Default)]
pub(crate) struct HolderCell {
    /// The holder's lease id; 0 while nobody holds the gate.
    id: AtomicU64,
    since: AtomicU64,
}

impl HolderCell {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Announces lease `id` (non-zero), granted at `since`. Only the permit
    /// holder calls this, after taking the permit.
    #[inline]
    pub(crate) fn publish(&self, id: u64, since: u64) {
        debug_assert_ne!(id, 0);
        fence(Ordering::Release);
        self.since.store(since, Ordering::Relaxed);
        self.id.store(id, Ordering::Release);
    }

    /// Withdraws the announcement. Only the permit holder calls this, before
    /// giving the permit back (which orders it before the next publish).
    #[inline]
    pub(crate) fn clear(&self) {
        self.id.store(0, Ordering::Relaxed);
    }

    /// The holder's timestamp, for the holder itself (only it writes it).
    #[inline]
    pub(crate) fn since(&self) -> u64 {
        self.since.load(Ordering::Relaxed)
    }

    /// The current holder's `(id, since)`, or `None`; never a mix of two.
    pub(crate) fn read(&self) -> Option<(u64, u64)> {
        loop {
            let id = self.id.load(Ordering::Acquire);
            if id == 0 {
                return None;
            }
            let since = self.since.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if self.id.load(Ordering::Relaxed) == id {
                return Some((id, since));
            }
            crate::loom::hint::spin_loop();
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::raw_semaphore::{Mode, RawSemaphore};
    use loom::sync::Arc;

    /// Two leases in a row on one permit while another thread reads the
    /// holder: it sees nobody or a consistent `(id, since)`, never lease 1's
    /// id with lease 2's timestamp.
    #[test]
    fn loom_holder_reads_are_never_torn() {
        loom::model(|| {
            let sem = Arc::new(RawSemaphore::new(1));
            let cell = Arc::new(HolderCell::new());
            let writer = {
                let (sem, cell) = (sem.clone(), cell.clone());
                loom::thread::spawn(move || {
                    for id in 1..=2u64 {
                        sem.acquire_blocking(1, Mode::Whole, None).unwrap();
                        cell.publish(id, id * 10);
                        cell.clear();
                        sem.release(1);
                    }
                })
            };
            if let Some((id, since)) = cell.read() {
                assert_eq!(since, id * 10);
            }
            writer.join().unwrap();
            assert_eq!(cell.read(), None);
        });
    }

    /// Permit hand-off between two threads: the reader on the second never
    /// sees the first lease after the permit has passed on.
    #[test]
    fn loom_holder_is_consistent_across_a_hand_off() {
        loom::model(|| {
            let sem = Arc::new(RawSemaphore::new(1));
            let cell = Arc::new(HolderCell::new());
            sem.acquire_blocking(1, Mode::Whole, None).unwrap();
            cell.publish(1, 10);
            let next = {
                let (sem, cell) = (sem.clone(), cell.clone());
                loom::thread::spawn(move || {
                    sem.acquire_blocking(1, Mode::Whole, None).unwrap();
                    // We hold the permit: lease 1 is over.
                    assert_ne!(cell.read().map(|h| h.0), Some(1));
                    cell.publish(2, 20);
                    assert_eq!(cell.read(), Some((2, 20)));
                    cell.clear();
                    sem.release(1);
                })
            };
            if let Some((id, since)) = cell.read() {
                assert_eq!(since, id * 10);
            }
            cell.clear();
            sem.release(1);
            next.join().unwrap();
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn publish_read_clear() {
        let cell = HolderCell::new();
        assert_eq!(cell.read(), None);
        cell.publish(7, 99);
        assert_eq!(cell.read(), Some((7, 99)));
        cell.clear();
        assert_eq!(cell.read(), None);
    }

    #[test]
    fn concurrent_reads_never_mix_two_leases() {
        use std::sync::atomic::AtomicBool;
        let cell = HolderCell::new();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for id in 1..200_000u64 {
                    cell.publish(id, id.wrapping_mul(0x9e37_79b9));
                    cell.clear();
                }
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            let mut seen = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some((id, since)) = cell.read() {
                    assert_eq!(since, id.wrapping_mul(0x9e37_79b9));
                    seen += 1;
                }
            }
            let _ = seen;
        });
    }
}
