//! A reusable barrier with generations and an optional completion handler.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use super::BarrierError;
use crate::diag::{AcquireKind, ClassKey, ClassSlot, How};
use crate::loom::sync::{Condvar, Mutex};

type Completion = Box<dyn Fn() + Send + Sync>;

/// Makes a fixed number of threads wait for each other, round after round.
///
/// Each round is a **generation**: the first `parties - 1` callers of
/// [`wait`](Self::wait) block; the last one to arrive is the generation's
/// **leader**. The leader runs the completion handler (if any) while everyone
/// else is still held, then releases them all, and the barrier is ready for
/// the next generation at once.
///
/// For the order checker, waiting counts as taking the barrier's class: a
/// thread that waits while holding a lock another party needs before it can
/// arrive is a deadlock, and is reported like one.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use strata::sync::Barrier;
///
/// let rounds = AtomicUsize::new(0);
/// let barrier = Barrier::new(3).unwrap();
/// std::thread::scope(|s| {
///     for _ in 0..3 {
///         s.spawn(|| {
///             for round in 0..2 {
///                 let r = barrier.wait();
///                 assert_eq!(r.generation(), round);
///                 if r.is_leader() {
///                     rounds.fetch_add(1, Ordering::Relaxed);
///                 }
///             }
///         });
///     }
/// });
/// assert_eq!(rounds.into_inner(), 2); // one leader per generation
/// ```
pub struct Barrier {
    class: ClassSlot,
    parties: usize,
    state: Mutex<State>,
    all_arrived: Condvar,
    completion: Option<Completion>,
}

struct State {
    arrived: usize,
    generation: u64,
}

/// What [`Barrier::wait`] tells the caller about the generation it was part of.
///
/// ```
/// let barrier = strata::sync::Barrier::new(1).unwrap();
/// let r = barrier.wait();
/// assert!(r.is_leader()); // a single party is always last to arrive
/// assert_eq!(r.generation(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult {
    leader: bool,
    generation: u64,
}

impl BarrierWaitResult {
    /// True for exactly one thread per generation: the last to arrive, the one
    /// that ran the completion handler.
    ///
    /// ```
    /// let barrier = strata::sync::Barrier::new(1).unwrap();
    /// assert!(barrier.wait().is_leader());
    /// ```
    #[inline]
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// Which generation this wait belonged to, counting from 0.
    ///
    /// ```
    /// let barrier = strata::sync::Barrier::new(1).unwrap();
    /// assert_eq!(barrier.wait().generation(), 0);
    /// assert_eq!(barrier.wait().generation(), 1);
    /// ```
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl Barrier {
    /// A barrier for `parties` threads, classed at the caller.
    ///
    /// # Errors
    ///
    /// [`BarrierError::ZeroParties`] if `parties` is 0: no generation could
    /// ever complete.
    ///
    /// ```
    /// use strata::sync::{Barrier, BarrierError};
    ///
    /// assert_eq!(Barrier::new(2).unwrap().parties(), 2);
    /// assert_eq!(Barrier::new(0).unwrap_err(), BarrierError::ZeroParties);
    /// ```
    #[track_caller]
    pub fn new(parties: usize) -> Result<Self, BarrierError> {
        Self::build(ClassSlot::site(), parties, None)
    }

    /// A barrier for `parties` threads in the class `name`.
    ///
    /// # Errors
    ///
    /// [`BarrierError::ZeroParties`] if `parties` is 0.
    ///
    /// ```
    /// let frame = strata::sync::Barrier::named("frame", 4).unwrap();
    /// assert_eq!(frame.parties(), 4);
    /// ```
    #[track_caller]
    pub fn named(name: &'static str, parties: usize) -> Result<Self, BarrierError> {
        Self::build(ClassSlot::named(name), parties, None)
    }

    /// A barrier for `parties` threads that runs `on_complete` once per
    /// generation, on the leader's thread, before anyone is released.
    ///
    /// The handler runs while the barrier is closed to this generation, so it
    /// sees every party's work and no party has started the next round. It
    /// must not wait on this same barrier (that would deadlock). If it panics,
    /// the other parties are still released and the panic continues in the
    /// leader's `wait`.
    ///
    /// # Errors
    ///
    /// [`BarrierError::ZeroParties`] if `parties` is 0.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use strata::sync::Barrier;
    ///
    /// let ticks = Arc::new(AtomicU64::new(0));
    /// let barrier = {
    ///     let ticks = Arc::clone(&ticks);
    ///     Barrier::with_completion(2, move || {
    ///         ticks.fetch_add(1, Ordering::Relaxed);
    ///     })
    ///     .unwrap()
    /// };
    /// std::thread::scope(|s| {
    ///     s.spawn(|| barrier.wait());
    ///     barrier.wait();
    /// });
    /// assert_eq!(ticks.load(Ordering::Relaxed), 1);
    /// ```
    #[track_caller]
    pub fn with_completion(
        parties: usize,
        on_complete: impl Fn() + Send + Sync + 'static,
    ) -> Result<Self, BarrierError> {
        Self::build(ClassSlot::site(), parties, Some(Box::new(on_complete)))
    }

    /// [`with_completion`](Self::with_completion) in the class `name`.
    ///
    /// # Errors
    ///
    /// [`BarrierError::ZeroParties`] if `parties` is 0.
    ///
    /// ```
    /// let b = strata::sync::Barrier::named_with_completion("tick", 1, || {}).unwrap();
    /// assert!(b.wait().is_leader());
    /// ```
    #[track_caller]
    pub fn named_with_completion(
        name: &'static str,
        parties: usize,
        on_complete: impl Fn() + Send + Sync + 'static,
    ) -> Result<Self, BarrierError> {
        Self::build(ClassSlot::named(name), parties, Some(Box::new(on_complete)))
    }

    fn build(
        class: ClassSlot,
        parties: usize,
        completion: Option<Completion>,
    ) -> Result<Self, BarrierError> {
        if parties == 0 {
            return Err(BarrierError::ZeroParties);
        }
        Ok(Self {
            class,
            parties,
            state: Mutex::new(State {
                arrived: 0,
                generation: 0,
            }),
            all_arrived: Condvar::new(),
            completion,
        })
    }

    /// Blocks until all parties of the current generation have called `wait`.
    ///
    /// ```
    /// use strata::sync::Barrier;
    ///
    /// let barrier = Barrier::new(2).unwrap();
    /// let leaders = std::thread::scope(|s| {
    ///     let other = s.spawn(|| barrier.wait().is_leader());
    ///     let mine = barrier.wait().is_leader();
    ///     [mine, other.join().unwrap()]
    /// });
    /// assert_eq!(leaders.iter().filter(|&&l| l).count(), 1);
    /// ```
    #[track_caller]
    pub fn wait(&self) -> BarrierWaitResult {
        let _waiting = self.class.enter(AcquireKind::Exclusive, How::Blocking);
        let mut state = self.state.lock();
        let generation = state.generation;
        state.arrived += 1;
        if state.arrived < self.parties {
            // The generation number, not `arrived`, is the release signal:
            // `arrived` is reset for the next round before we wake, and
            // wake-ups may be spurious.
            while state.generation == generation {
                state = self.all_arrived.wait(state);
            }
            return BarrierWaitResult {
                leader: false,
                generation,
            };
        }

        // The handler runs with the state lock held, so no party (not even an
        // early one from the next round) can slip past this generation
        // before it is done. A panicking handler must not strand the others.
        let outcome = self
            .completion
            .as_deref()
            .map(|on_complete| catch_unwind(AssertUnwindSafe(on_complete)));
        state.arrived = 0;
        state.generation += 1;
        drop(state);
        self.all_arrived.notify_all();
        if let Some(Err(panic)) = outcome {
            resume_unwind(panic);
        }
        BarrierWaitResult {
            leader: true,
            generation,
        }
    }

    /// How many threads each generation waits for.
    ///
    /// ```
    /// assert_eq!(strata::sync::Barrier::new(5).unwrap().parties(), 5);
    /// ```
    #[inline]
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// The barrier's class, or `None` when checking is compiled out.
    ///
    /// ```
    /// let b = strata::sync::Barrier::named("frame", 2).unwrap();
    /// if let Some(class) = b.class() {
    ///     assert_eq!(class.name(), Some("frame"));
    /// }
    /// ```
    #[inline]
    pub fn class(&self) -> Option<ClassKey> {
        self.class.key()
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("class", &self.class)
            .field("parties", &self.parties)
            .field("has_completion", &self.completion.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn single_party_leads_every_generation() {
        let runs = Arc::new(AtomicUsize::new(0));
        let b = {
            let runs = Arc::clone(&runs);
            Barrier::with_completion(1, move || {
                runs.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap()
        };
        for g in 0..3 {
            let r = b.wait();
            assert!(r.is_leader());
            assert_eq!(r.generation(), g);
        }
        assert_eq!(runs.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn panicking_handler_releases_the_others() {
        let b = Barrier::with_completion(2, || panic!("handler failed")).unwrap();
        std::thread::scope(|s| {
            let follower = s.spawn(|| b.wait());
            let leader = s.spawn(|| b.wait());
            let results = [follower.join(), leader.join()];
            // Exactly one thread (the leader) sees the panic; the other is
            // released normally.
            assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
            let ok = results.into_iter().find_map(Result::ok).unwrap();
            assert!(!ok.is_leader());
            assert_eq!(ok.generation(), 0);
        });
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::Barrier;
    use crate::loom::sync::Arc;
    use crate::loom::sync::atomic::{AtomicUsize, Ordering};

    const GENERATIONS: usize = 2;

    #[test]
    fn loom_barrier_two_threads_two_generations() {
        loom::model(|| {
            // arrivals[g]: parties that reached generation g's `wait`.
            let arrivals = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
            let handler_runs = Arc::new(AtomicUsize::new(0));
            let barrier = {
                let arrivals = Arc::clone(&arrivals);
                let handler_runs = Arc::clone(&handler_runs);
                Arc::new(
                    Barrier::with_completion(2, move || {
                        let g = handler_runs.fetch_add(1, Ordering::Relaxed);
                        // Runs once everyone of generation g is in.
                        assert_eq!(arrivals[g].load(Ordering::Relaxed), 2);
                    })
                    .unwrap(),
                )
            };

            let party = {
                let barrier = Arc::clone(&barrier);
                let arrivals = Arc::clone(&arrivals);
                move || {
                    let mut leads = [false; GENERATIONS];
                    for (g, lead) in leads.iter_mut().enumerate() {
                        arrivals[g].fetch_add(1, Ordering::Relaxed);
                        let r = barrier.wait();
                        assert_eq!(r.generation(), g as u64);
                        // Nobody leaves generation g before all arrived.
                        assert_eq!(arrivals[g].load(Ordering::Relaxed), 2);
                        *lead = r.is_leader();
                    }
                    leads
                }
            };
            let other = loom::thread::spawn(party.clone());
            let mine = party();
            let theirs = other.join().unwrap();

            for g in 0..GENERATIONS {
                assert!(mine[g] ^ theirs[g], "exactly one leader in generation {g}");
            }
            assert_eq!(handler_runs.load(Ordering::Relaxed), GENERATIONS);
        });
    }
}
