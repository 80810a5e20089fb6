//! The sleep/wake protocol of the pool's workers, apart from the queues so
//! that it can be model-checked on its own (crossbeam's deques do not run
//! under loom).
//!
//! A worker that found no work *registers* as a sleeper, issues a SeqCst
//! fence, and re-checks for work (its `ready` closure) before it blocks. A
//! producer publishes its job, issues a SeqCst fence, and only then reads
//! whether anyone sleeps. The two fences are totally ordered, so either the
//! sleeper's re-check sees the job or the producer sees the sleeper and
//! wakes it: a job pushed while the last worker is going to sleep is never
//! stranded (the loom model below checks exactly that). Producers that see
//! nobody asleep pay one fence and one load, never a lock.
//!
//! Every registration ends in exactly one of two ways, decided under the
//! `sleepers` lock: the sleeper withdraws itself (its re-check found work),
//! or one notifier removes it and delivers one wake-up to its slot.
//! Targeted wake-ups (a latch whose owner sleeps) use the per-slot `asleep`
//! flag with the same fence pairing, so setting a latch nobody sleeps on
//! never takes the lock.

use crate::loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use crate::loom::sync::{Condvar, Mutex};

/// Sleep state of a pool of `n` workers.
pub(crate) struct Sleep {
    /// Number of registered sleepers: lets a notifier skip the lock at zero.
    sleeping: AtomicUsize,
    /// Registered sleepers, most recent last (woken LIFO: its cache is warmest).
    sleepers: Mutex<Vec<usize>>,
    slots: Box<[Slot]>,
}

struct Slot {
    /// True from registration until the registration ends (withdrawn or
    /// chosen by a notifier); only changed under the `sleepers` lock.
    asleep: AtomicBool,
    /// A wake-up was delivered and not yet consumed.
    woken: Mutex<bool>,
    cv: Condvar,
}

impl Sleep {
    /// Sleep state for `n` workers.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            sleeping: AtomicUsize::new(0),
            sleepers: Mutex::new(Vec::with_capacity(n)),
            slots: (0..n)
                .map(|_| Slot {
                    asleep: AtomicBool::new(false),
                    woken: Mutex::new(false),
                    cv: Condvar::new(),
                })
                .collect(),
        }
    }

    /// Blocks worker `idx` until a notifier wakes it, unless `ready()`
    /// (evaluated after registering) says there is something to do. Returns
    /// whether it actually blocked (`on_block` runs just before it does).
    /// Wake-ups may be spurious: the caller re-checks its own conditions.
    pub(crate) fn sleep_then(
        &self,
        idx: usize,
        ready: impl FnOnce() -> bool,
        on_block: impl FnOnce(),
    ) -> bool {
        let slot = &self.slots[idx];
        {
            let mut sleepers = self.sleepers.lock();
            sleepers.push(idx);
            slot.asleep.store(true, Ordering::Relaxed);
            self.sleeping.fetch_add(1, Ordering::SeqCst);
        }
        // Pairs with the fence in `notify_*`: after it, either `ready` sees
        // the producer's job or the producer sees this registration.
        fence(Ordering::SeqCst);
        if ready() {
            let mut sleepers = self.sleepers.lock();
            if let Some(pos) = sleepers.iter().position(|&i| i == idx) {
                sleepers.swap_remove(pos);
                slot.asleep.store(false, Ordering::Relaxed);
                self.sleeping.fetch_sub(1, Ordering::Relaxed);
                return false;
            }
            // A notifier chose this worker already; its wake-up is on the
            // way and must be consumed, or it would leak into the next sleep.
        }
        on_block();
        let mut woken = slot.woken.lock();
        while !*woken {
            woken = slot.cv.wait(woken);
        }
        *woken = false;
        true
    }

    /// [`Sleep::sleep_then`] without a callback.
    #[cfg(test)]
    pub(crate) fn sleep(&self, idx: usize, ready: impl FnOnce() -> bool) -> bool {
        self.sleep_then(idx, ready, || {})
    }

    /// Wakes one sleeper, if any, after the caller published new work.
    #[inline]
    pub(crate) fn notify_one(&self) -> bool {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.wake_any()
    }

    #[cold]
    fn wake_any(&self) -> bool {
        let idx = {
            let mut sleepers = self.sleepers.lock();
            let Some(idx) = sleepers.pop() else {
                return false;
            };
            self.slots[idx].asleep.store(false, Ordering::Relaxed);
            self.sleeping.fetch_sub(1, Ordering::Relaxed);
            idx
        };
        self.deliver(idx);
        true
    }

    /// Wakes worker `idx` if it sleeps, after the caller published something
    /// that worker waits for (its latch).
    #[inline]
    pub(crate) fn notify_worker(&self, idx: usize) {
        fence(Ordering::SeqCst);
        // (An index of another pool would be a bug: waiters register only
        // with latches of their own pool.)
        debug_assert!(idx < self.slots.len(), "worker {idx} is not in this pool");
        if !self
            .slots
            .get(idx)
            .is_some_and(|s| s.asleep.load(Ordering::Relaxed))
        {
            return;
        }
        self.wake_worker(idx);
    }

    #[cold]
    fn wake_worker(&self, idx: usize) {
        {
            let mut sleepers = self.sleepers.lock();
            let Some(pos) = sleepers.iter().position(|&i| i == idx) else {
                return;
            };
            sleepers.swap_remove(pos);
            self.slots[idx].asleep.store(false, Ordering::Relaxed);
            self.sleeping.fetch_sub(1, Ordering::Relaxed);
        }
        self.deliver(idx);
    }

    /// Wakes every sleeper (shutdown).
    pub(crate) fn notify_all(&self) {
        fence(Ordering::SeqCst);
        let all: Vec<usize> = {
            let mut sleepers = self.sleepers.lock();
            for &idx in sleepers.iter() {
                self.slots[idx].asleep.store(false, Ordering::Relaxed);
            }
            self.sleeping.fetch_sub(sleepers.len(), Ordering::Relaxed);
            std::mem::take(&mut *sleepers)
        };
        for idx in all {
            self.deliver(idx);
        }
    }

    /// Number of workers registered as sleeping right now.
    pub(crate) fn sleeping(&self) -> usize {
        self.sleeping.load(Ordering::Relaxed)
    }

    fn deliver(&self, idx: usize) {
        let slot = &self.slots[idx];
        let mut woken = slot.woken.lock();
        *woken = true;
        slot.cv.notify_one();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize as StdAtomic;

    #[test]
    fn ready_withdraws_without_blocking() {
        let s = Sleep::new(2);
        assert!(!s.sleep(0, || true));
        assert_eq!(s.sleeping(), 0);
        assert!(!s.notify_one(), "nobody is registered any more");
    }

    #[test]
    fn notify_one_wakes_a_sleeper() {
        let s = Arc::new(Sleep::new(1));
        let work = Arc::new(StdAtomic::new(0));
        let t = {
            let (s, work) = (s.clone(), work.clone());
            std::thread::spawn(move || {
                while work.load(Ordering::Acquire) == 0 {
                    s.sleep(0, || work.load(Ordering::Acquire) != 0);
                }
            })
        };
        work.store(1, Ordering::Release);
        s.notify_one();
        t.join().unwrap();
        assert_eq!(s.sleeping(), 0);
    }

    #[test]
    fn notify_all_wakes_everyone() {
        let s = Arc::new(Sleep::new(3));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ts: Vec<_> = (0..3)
            .map(|i| {
                let (s, stop) = (s.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        s.sleep(i, || stop.load(Ordering::Acquire));
                    }
                })
            })
            .collect();
        stop.store(true, Ordering::Release);
        s.notify_all();
        for t in ts {
            t.join().unwrap();
        }
    }
}

#[cfg(all(test, loom))]
mod loom {
    use super::*;
    use crate::loom::sync::Arc;
    use crate::loom::thread;

    /// The acceptance model: the only worker finds the queue empty and goes
    /// to sleep while a producer pushes a job and notifies. In every
    /// interleaving the worker ends up running the job (a stranded job
    /// would leave the worker blocked forever, which loom reports).
    #[test]
    fn loom_job_pushed_while_last_worker_sleeps_is_run() {
        ::loom::model(|| {
            let sleep = Arc::new(Sleep::new(1));
            // The queue: pushes are Release stores of the back index and
            // emptiness checks Acquire loads, as in crossbeam's deque.
            let queue = Arc::new(AtomicUsize::new(0));
            let worker = {
                let (sleep, queue) = (sleep.clone(), queue.clone());
                thread::spawn(move || {
                    loop {
                        if queue.load(Ordering::Acquire) == 1 {
                            return; // ran the job
                        }
                        sleep.sleep(0, || queue.load(Ordering::Acquire) == 1);
                    }
                })
            };
            queue.store(1, Ordering::Release);
            sleep.notify_one();
            worker.join().unwrap();
        });
    }

    /// Two workers, two jobs, each producer wakes one: nobody is stranded and
    /// both jobs are taken.
    #[test]
    fn loom_two_sleepers_two_jobs() {
        ::loom::model(|| {
            let sleep = Arc::new(Sleep::new(2));
            let queue = Arc::new(AtomicUsize::new(0));
            let workers: Vec<_> = (0..2)
                .map(|i| {
                    let (sleep, queue) = (sleep.clone(), queue.clone());
                    thread::spawn(move || {
                        loop {
                            let n = queue.load(Ordering::Acquire);
                            if n > 0 {
                                if queue
                                    .compare_exchange(n, n - 1, Ordering::AcqRel, Ordering::Acquire)
                                    .is_ok()
                                {
                                    return;
                                }
                                continue;
                            }
                            sleep.sleep(i, || queue.load(Ordering::Acquire) > 0);
                        }
                    })
                })
                .collect();
            for _ in 0..2 {
                queue.fetch_add(1, Ordering::Release);
                sleep.notify_one();
            }
            for w in workers {
                w.join().unwrap();
            }
        });
    }

    /// A targeted wake-up (a latch) set while its owner goes to sleep.
    #[test]
    fn loom_latch_set_while_owner_sleeps_wakes_it() {
        ::loom::model(|| {
            let sleep = Arc::new(Sleep::new(1));
            let latch = Arc::new(AtomicBool::new(false));
            let owner = {
                let (sleep, latch) = (sleep.clone(), latch.clone());
                thread::spawn(move || {
                    while !latch.load(Ordering::Acquire) {
                        sleep.sleep(0, || latch.load(Ordering::Acquire));
                    }
                })
            };
            latch.store(true, Ordering::Release);
            sleep.notify_worker(0);
            owner.join().unwrap();
        });
    }
}
