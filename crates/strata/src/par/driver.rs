//! The splitting engine behind every `par_*` method.
//!
//! Work is a range of `len` units and a [`Fold`]: how to start an
//! accumulator for a sub-range, fold a block of units into it sequentially,
//! and combine two adjacent accumulators. On a worker the range is folded
//! block by block (blocks grow from 32 to 512 units); between blocks the
//! worker checks whether an idle worker asked for work, and only then
//! splits the rest in two with `join` (lazy binary splitting, the data-
//! parallel side of the scheduler's lazy promotion). So a loop nobody needs
//! to share runs at sequential speed, and load balances at any granularity.
//! `with_min_len(n)` keeps every piece at least `n` units long: split
//! halves, the prefix a worker folded before splitting, and what a caller
//! outside the pool folds before it hands the rest off.
//!
//! Called from outside a pool, the caller folds a prefix itself and hands
//! the rest to the current runtime once it has spent ~20 µs or the prefix
//! predicts the whole would take over ~40 µs (tiny inputs never pay for a
//! pool round trip; big ones hand off after the first block).

use std::time::{Duration, Instant};

use crate::runtime::{WorkerThread, join, with_current};

/// How a parallel operation folds its units.
pub(crate) trait Fold: Sync {
    type Acc: Send;
    /// An empty accumulator for units starting at `lo` (the sub-range is
    /// `lo..hi`).
    fn start(&self, lo: usize, hi: usize) -> Self::Acc;
    /// Folds units `lo..hi` (sequentially) into `acc`.
    fn fold(&self, acc: &mut Self::Acc, lo: usize, hi: usize);
    /// Combines two accumulators of adjacent ranges, left then right.
    fn combine(&self, left: Self::Acc, right: Self::Acc) -> Self::Acc;
}

const FIRST_BLOCK: usize = 32;
const MAX_BLOCK: usize = 512;
/// Blocks of a caller outside the pool (fewer clock reads).
const SOLO_FIRST_BLOCK: usize = 64;
const SOLO_MAX_BLOCK: usize = 4096;
/// How long a caller outside the pool works alone before sharing.
const SOLO_BUDGET: Duration = Duration::from_micros(20);

/// Folds units `0..len` with `f`, in parallel on the current runtime.
pub(crate) fn drive<F: Fold>(f: &F, len: usize, min_len: usize) -> F::Acc {
    let min_len = min_len.max(1);
    // SAFETY: a non-null current worker is live for this whole call.
    if let Some(w) = unsafe { WorkerThread::current().as_ref() } {
        return fold_range(f, w, 0, len, min_len);
    }
    // Outside the pool: work alone while that is cheap — and stop as soon
    // as the time so far predicts the whole input will not be.
    let started = Instant::now();
    let mut acc = f.start(0, len);
    let mut i = 0;
    // Few clock reads: tiny inputs finish in one or two blocks. Blocks are
    // never below `min_len`, and neither is the rest handed off, so the
    // caller's prefix is a piece of at least `min_len` too.
    let mut block = SOLO_FIRST_BLOCK.max(min_len);
    while i < len {
        let end = i.saturating_add(block).min(len);
        f.fold(&mut acc, i, end);
        i = end;
        if i == len {
            break;
        }
        let spent = started.elapsed();
        let predicted = spent.mul_f64(len as f64 / i as f64);
        if len - i >= min_len && (spent >= SOLO_BUDGET || predicted >= 2 * SOLO_BUDGET) {
            let rest = with_current(|reg| {
                // The injected job wakes one worker, which shares as soon
                // as it starts; waking a second one now overlaps the two
                // wake-ups instead of paying them one after the other.
                if len - i >= 2 * min_len {
                    reg.sleep.notify_one();
                }
                reg.in_worker(|| {
                    // SAFETY: `in_worker` runs this on a worker.
                    let w = unsafe { &*WorkerThread::current() };
                    fold_range(f, w, i, len, min_len)
                })
            });
            return f.combine(acc, rest);
        }
        block = block.saturating_mul(4).min(SOLO_MAX_BLOCK.max(min_len));
    }
    acc
}

fn fold_range<F: Fold>(f: &F, w: &WorkerThread, lo: usize, hi: usize, min_len: usize) -> F::Acc {
    let mut acc = f.start(lo, hi);
    let mut i = lo;
    // The first block is at least `min_len`: what this call folds before
    // it splits is a piece too.
    let mut block = FIRST_BLOCK.max(min_len);
    while i < hi {
        let end = i.saturating_add(block).min(hi);
        f.fold(&mut acc, i, end);
        i = end;
        let rest = hi - i;
        if rest >= 2 * min_len && rest >= 2 && w.work_requested() {
            let mid = i + rest / 2;
            // Each half looks its worker up where it runs (`b` may move).
            let half = |lo, hi| {
                // SAFETY: join runs both halves on workers.
                let w = unsafe { &*WorkerThread::current() };
                fold_range(f, w, lo, hi, min_len)
            };
            let (l, r) = join(|| half(i, mid), || half(mid, hi));
            return f.combine(acc, f.combine(l, r));
        }
        block = block.saturating_mul(2).min(MAX_BLOCK.max(min_len));
    }
    acc
}
