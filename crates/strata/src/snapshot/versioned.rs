//! `Versioned`: the copy-on-write store — readers never wait, writers are
//! serialized first in, first out, and a failed write publishes nothing.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::SnapshotError;
use super::raw::{RawCell, RawGuard};
use crate::loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use crate::sync::{AcquireError, Semaphore, SemaphorePermit};

/// One committed version: what readers see, whole.
struct Entry<T> {
    version: u64,
    value: T,
}

/// A copy-on-write store: many readers that never wait, and writers that
/// each see the latest committed value, build the next one, and publish it
/// atomically — or publish nothing.
///
/// * [`read`](Self::read) runs a closure on the current committed version.
///   It never waits, not even for a writer in the middle of a long write,
///   and it writes no counter shared with other readers.
/// * [`write`](Self::write) clones the current version, runs the closure on
///   the copy, and publishes the copy as the next version only if the
///   closure returns `Ok`. On `Err`, or if the closure panics, the copy is
///   discarded and readers never saw any of it.
/// * Writers are serialized and served first in, first out (on strata's
///   fair [`Semaphore`]), blocking ([`write`](Self::write),
///   [`write_timeout`](Self::write_timeout), [`try_write`](Self::try_write))
///   or async ([`write_async`](Self::write_async)). The write closure itself
///   is synchronous, so the writer slot is never held across an `.await`.
/// * [`version`](Self::version) counts published versions from 0 (the
///   initial value) and only grows.
///
/// A `write` called from inside a write closure of the same store on the
/// same thread returns [`SnapshotError::Reentrant`] instead of waiting for
/// itself forever. Waiting for and holding the writer slot counts as taking
/// the store's lock class (its construction site, or the name given to
/// [`named`](Self::named)), so the order checker catches cycles such as
/// "lock A, then write" in one place and "inside a write, lock A" in another.
///
/// Cloning is the cost of a write: for large values use a type with
/// structural sharing (`Arc`s inside, or a persistent collection) so that
/// `clone` is cheap.
///
/// ```
/// use strata::snapshot::Versioned;
///
/// let index = Versioned::new(vec![("apple", 1)]);
/// index.write(|entries| {
///     entries.push(("pear", 2));
///     Ok::<_, ()>(())
/// })?;
/// assert_eq!(index.read(|entries| entries.len()), 2);
/// assert_eq!(index.version(), 1);
/// # Ok::<_, strata::snapshot::SnapshotError<()>>(())
/// ```
pub struct Versioned<T> {
    /// The only field readers touch, alone on its cache line: the writer's
    /// bookkeeping below (permit word, re-entrancy mark, counters) changes
    /// several times per write and must not evict the readers' line.
    current: CachePadded<RawCell<Entry<T>>>,
    /// One permit: the FIFO writer queue, and the lock class.
    writer: Semaphore,
    /// [`thread_token`] of the thread running a write closure, 0 if none.
    /// Written only by the permit holder, so a thread that reads its own
    /// token here is inside its own write (a re-entrant call).
    writing: AtomicUsize,
    stats: Stats,
}

/// Write-path counters; the read path touches none of them.
#[derive(Default)]
struct Stats {
    commits: AtomicU64,
    aborts: AtomicU64,
    panics: AtomicU64,
    timeouts: AtomicU64,
    busy: AtomicU64,
    reentrant: AtomicU64,
    contended: AtomicU64,
    waiting: AtomicU64,
    wait_ns: AtomicU64,
}

impl Stats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What [`Versioned::metrics`] reports. All counts are since construction.
///
/// ```
/// let store = strata::snapshot::Versioned::new(0u8);
/// store.update(|v| *v += 1).unwrap();
/// let m = store.metrics();
/// assert_eq!((m.version, m.commits, m.aborts), (1, 1, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VersionedMetrics {
    /// The current version.
    pub version: u64,
    /// Writes that published a version.
    pub commits: u64,
    /// Writes whose closure returned `Err` (nothing published).
    pub aborts: u64,
    /// Writes whose closure (or the clone) panicked (nothing published).
    pub panics: u64,
    /// Writes that gave up waiting for the writer slot.
    pub timeouts: u64,
    /// `try_write` calls that found the writer slot taken.
    pub busy: u64,
    /// Re-entrant writes refused.
    pub reentrant: u64,
    /// Writes that had to wait for another writer.
    pub contended: u64,
    /// Writers waiting for the slot right now.
    pub waiting: u64,
    /// Total time writers spent waiting for the slot.
    pub wait_time: Duration,
}

impl<T> Versioned<T> {
    /// A store whose version 0 is `value`, in the lock class of the
    /// caller's source location.
    ///
    /// ```
    /// let store = strata::snapshot::Versioned::new(String::from("v0"));
    /// assert_eq!(store.version(), 0);
    /// ```
    #[track_caller]
    pub fn new(value: T) -> Self {
        Self::with_writer(value, Semaphore::new(1))
    }

    /// A store whose version 0 is `value`, in the lock class `name`.
    ///
    /// ```
    /// let store = strata::snapshot::Versioned::named("search index", 0u32);
    /// if let Some(class) = store.class() {
    ///     assert_eq!(class.name(), Some("search index"));
    /// }
    /// ```
    #[track_caller]
    pub fn named(name: &'static str, value: T) -> Self {
        Self::with_writer(value, Semaphore::named(name, 1))
    }

    fn with_writer(value: T, writer: Semaphore) -> Self {
        Self {
            current: CachePadded::new(RawCell::new(Arc::new(Entry { version: 0, value }))),
            writer,
            writing: AtomicUsize::new(0),
            stats: Stats::default(),
        }
    }

    /// The lock class of the writer slot, when order checking is compiled in.
    ///
    /// ```
    /// let store = strata::snapshot::Versioned::new(1);
    /// assert_eq!(store.class().is_some(), strata::diag::checking_enabled());
    /// ```
    pub fn class(&self) -> Option<crate::diag::ClassKey> {
        self.writer.class()
    }

    #[inline]
    fn load(&self) -> RawGuard<Entry<T>> {
        self.current.load()
    }

    /// Runs `f` on the current committed version and returns its result.
    ///
    /// Never waits: a writer in the middle of a write does not hold readers
    /// up, and readers see the last version published before they started,
    /// unchanged for as long as `f` runs. Keep `f` short (it pins the
    /// version it reads); for a long or async read take a
    /// [`snapshot`](Self::snapshot).
    ///
    /// ```
    /// let store = strata::snapshot::Versioned::new(vec![3, 4]);
    /// assert_eq!(store.read(|v| v.iter().sum::<i32>()), 7);
    /// ```
    #[inline]
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&RawCell::guard_arc(&self.load()).value)
    }

    /// Like [`read`](Self::read), also passing the version number of the
    /// value `f` sees (the two always belong together).
    ///
    /// ```
    /// let store = strata::snapshot::Versioned::new(0u64);
    /// store.update(|n| *n = 42).unwrap();
    /// assert_eq!(store.read_versioned(|version, n| (version, *n)), (1, 42));
    /// ```
    #[inline]
    pub fn read_versioned<R>(&self, f: impl FnOnce(u64, &T) -> R) -> R {
        let guard = self.load();
        let entry = RawCell::guard_arc(&guard);
        f(entry.version, &entry.value)
    }

    /// The current committed version as an owned handle: keep it, send it
    /// to another thread, hold it across `.await`. Costs one reference-count
    /// increment (a shared counter, which [`read`](Self::read) avoids).
    ///
    /// ```
    /// let store = strata::snapshot::Versioned::new(1);
    /// let before = store.snapshot();
    /// store.update(|n| *n = 2).unwrap();
    /// assert_eq!((before.version(), *before), (0, 1));
    /// assert_eq!(*store.snapshot(), 2);
    /// ```
    pub fn snapshot(&self) -> Committed<T> {
        Committed(RawCell::guard_into_arc(self.load()))
    }

    /// The version readers see now: 0 for the initial value, one more for
    /// each published write. Never decreases.
    ///
    /// ```
    /// let store = strata::snapshot::Versioned::new(());
    /// store.update(|_| ()).unwrap();
    /// store.update(|_| ()).unwrap();
    /// assert_eq!(store.version(), 2);
    /// ```
    #[inline]
    pub fn version(&self) -> u64 {
        RawCell::guard_arc(&self.load()).version
    }

    /// Counters of the write path (see [`VersionedMetrics`]).
    ///
    /// ```
    /// let store = strata::snapshot::Versioned::new(0);
    /// let _ = store.write(|_| Err::<(), _>("no"));
    /// assert_eq!(store.metrics().aborts, 1);
    /// ```
    pub fn metrics(&self) -> VersionedMetrics {
        let s = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        VersionedMetrics {
            version: self.version(),
            commits: get(&s.commits),
            aborts: get(&s.aborts),
            panics: get(&s.panics),
            timeouts: get(&s.timeouts),
            busy: get(&s.busy),
            reentrant: get(&s.reentrant),
            contended: get(&s.contended),
            waiting: get(&s.waiting),
            wait_time: Duration::from_nanos(get(&s.wait_ns)),
        }
    }

    /// Refuses a write started from inside a write of this store on this
    /// thread.
    fn enter_check<E>(&self) -> Result<(), SnapshotError<E>> {
        // Relaxed suffices: only this thread ever stores its token here, and
        // it clears it before it lets go of the writer slot (program order).
        if self.writing.load(Ordering::Relaxed) == thread_token() {
            Stats::bump(&self.stats.reentrant);
            return Err(SnapshotError::Reentrant);
        }
        Ok(())
    }

    /// Called before waiting for the writer slot: if it is taken, counts a
    /// contended write and a waiter, and starts the wait clock. (The check
    /// races with the holder leaving; that only blurs a metric.) The wait
    /// is accounted for when the clock is dropped, so a cancelled async
    /// wait is too.
    fn start_wait(&self) -> WaitClock<'_, T> {
        let since = if self.writer.available_permits() != 0 {
            None
        } else {
            Stats::bump(&self.stats.contended);
            self.stats.waiting.fetch_add(1, Ordering::Relaxed);
            Some(Instant::now())
        };
        WaitClock { store: self, since }
    }
}

/// A writer's wait for the slot, accounted for when dropped.
struct WaitClock<'a, T> {
    store: &'a Versioned<T>,
    since: Option<Instant>,
}

impl<T> Drop for WaitClock<'_, T> {
    fn drop(&mut self) {
        if let Some(since) = self.since {
            let stats = &self.store.stats;
            let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
            stats.wait_ns.fetch_add(ns, Ordering::Relaxed);
            stats.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl<T: Clone> Versioned<T> {
    /// Builds the next version: waits (first in, first out) for the writer
    /// slot, clones the current version, runs `f` on the copy, and publishes
    /// it as version + 1 if `f` returns `Ok`. Returns what `f` returned.
    ///
    /// Readers are never held up: until the publish they see the previous
    /// version, after it the new one, never a half-applied change.
    ///
    /// # Errors
    ///
    /// * [`SnapshotError::Aborted`] with `f`'s error: nothing published.
    /// * [`SnapshotError::Reentrant`] if called from inside a write closure
    ///   of this store on the same thread (it would wait for itself).
    ///
    /// # Panics
    ///
    /// A panic in `f` (or in `T::clone`) propagates after the copy is
    /// discarded and the writer slot released: nothing is published and the
    /// next writer proceeds.
    ///
    /// ```
    /// use strata::snapshot::{SnapshotError, Versioned};
    ///
    /// let balance = Versioned::new(100i64);
    /// let withdraw = |amount: i64| {
    ///     balance.write(|b| {
    ///         *b -= amount;
    ///         if *b < 0 { Err("overdrawn") } else { Ok(*b) }
    ///     })
    /// };
    /// assert_eq!(withdraw(30), Ok(70));
    /// assert_eq!(withdraw(500), Err(SnapshotError::Aborted("overdrawn")));
    /// assert_eq!(balance.read(|b| *b), 70); // the failed write left no trace
    /// ```
    #[track_caller]
    pub fn write<R, E>(
        &self,
        f: impl FnOnce(&mut T) -> Result<R, E>,
    ) -> Result<R, SnapshotError<E>> {
        self.enter_check()?;
        // A blocking acquire even when the slot looks free: it is what
        // reports a lock-order cycle that closes here (a `try_` would only
        // record it).
        let clock = self.start_wait();
        let permit = self.writer.acquire();
        drop(clock);
        self.commit(permit, f)
    }

    /// An infallible [`write`](Self::write): `f` changes the copy in place
    /// and it is always published (unless `f` panics).
    ///
    /// # Errors
    ///
    /// Only [`SnapshotError::Reentrant`].
    ///
    /// ```
    /// let hits = strata::snapshot::Versioned::new(0u32);
    /// let now = hits.update(|n| {
    ///     *n += 1;
    ///     *n
    /// });
    /// assert_eq!(now, Ok(1));
    /// ```
    #[track_caller]
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R, SnapshotError> {
        self.write(|value| Ok(f(value)))
    }

    /// Like [`write`](Self::write), waiting at most `timeout` for the writer
    /// slot (the closure itself is not timed).
    ///
    /// # Errors
    ///
    /// [`SnapshotError::Timeout`] if another writer kept the slot for the
    /// whole timeout (`f` did not run), and the errors of `write`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::snapshot::{SnapshotError, Versioned};
    ///
    /// let store = Versioned::new(0);
    /// store
    ///     .update(|_| {
    ///         std::thread::scope(|s| {
    ///             // Another thread finds the writer slot taken.
    ///             let other = s.spawn(|| {
    ///                 store.write_timeout(Duration::from_millis(5), |n| Ok::<_, ()>(*n += 1))
    ///             });
    ///             assert_eq!(other.join().unwrap(), Err(SnapshotError::Timeout));
    ///         })
    ///     })
    ///     .unwrap();
    /// ```
    #[track_caller]
    pub fn write_timeout<R, E>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&mut T) -> Result<R, E>,
    ) -> Result<R, SnapshotError<E>> {
        self.enter_check()?;
        let clock = self.start_wait();
        let outcome = self.writer.acquire_timeout(timeout);
        drop(clock);
        let permit = match outcome {
            Ok(permit) => permit,
            Err(AcquireError::Timeout) => {
                Stats::bump(&self.stats.timeouts);
                return Err(SnapshotError::Timeout);
            }
            // One permit, asked for one: the only failure is the timeout.
            Err(err) => unreachable!("writer slot acquire failed: {err}"),
        };
        self.commit(permit, f)
    }

    /// Like [`write`](Self::write) if the writer slot is free right now.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::Busy`] if another write is in progress or queued
    /// (`f` did not run), and the errors of `write`.
    ///
    /// ```
    /// use strata::snapshot::{SnapshotError, Versioned};
    /// let store = Versioned::new(1);
    /// assert_eq!(store.try_write(|n| Ok::<_, ()>(*n + 1)), Ok(2));
    /// ```
    #[track_caller]
    pub fn try_write<R, E>(
        &self,
        f: impl FnOnce(&mut T) -> Result<R, E>,
    ) -> Result<R, SnapshotError<E>> {
        self.enter_check()?;
        match self.writer.try_acquire() {
            Ok(permit) => self.commit(permit, f),
            Err(_) => {
                Stats::bump(&self.stats.busy);
                Err(SnapshotError::Busy)
            }
        }
    }

    /// [`write`](Self::write) for async code: waits for the writer slot
    /// without blocking the thread (first in, first out with blocking
    /// writers), then runs `f` synchronously and publishes on `Ok`.
    ///
    /// Cancel-safe: dropping the future while it waits leaves the queue as
    /// if it never ran, and `f` does not run. Works under any executor.
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let store = strata::snapshot::Versioned::new(vec![1]);
    /// let len = store.write_async(|v| {
    ///     v.push(2);
    ///     Ok::<_, ()>(v.len())
    /// }).await;
    /// assert_eq!(len, Ok(2));
    /// # });
    /// ```
    #[track_caller]
    pub fn write_async<'a, R, E, F>(
        &'a self,
        f: F,
    ) -> impl Future<Output = Result<R, SnapshotError<E>>> + 'a
    where
        F: FnOnce(&mut T) -> Result<R, E> + 'a,
        R: 'a,
        E: 'a,
    {
        // Built here, not in the async block, so the acquisition is
        // attributed to the caller's source location.
        let acquire = self.writer.acquire_async();
        async move {
            self.enter_check()?;
            let clock = self.start_wait();
            let permit = acquire.await;
            drop(clock);
            self.commit(permit, f)
        }
    }

    /// The write itself, with the writer slot held: clone, apply, publish.
    fn commit<R, E>(
        &self,
        permit: SemaphorePermit<'_>,
        f: impl FnOnce(&mut T) -> Result<R, E>,
    ) -> Result<R, SnapshotError<E>> {
        // The token of the thread that runs `f` now: an async writer may
        // have waited for the slot on another thread than this one.
        let mut mark = WritingMark::enter(self, thread_token());
        let (version, mut next) = {
            let guard = self.load();
            let entry = RawCell::guard_arc(&guard);
            (entry.version, entry.value.clone())
        };
        let outcome = f(&mut next);
        mark.finished = true;
        let replaced = match outcome {
            Ok(r) => {
                let entry = Entry {
                    version: version + 1,
                    value: next,
                };
                let old = self.current.swap(Arc::new(entry));
                Stats::bump(&self.stats.commits);
                Ok((r, old))
            }
            Err(e) => {
                Stats::bump(&self.stats.aborts);
                drop(next);
                Err(SnapshotError::Aborted(e))
            }
        };
        drop(mark);
        drop(permit);
        // The replaced version (maybe its last reference, maybe a big value)
        // is freed after the next writer was let in.
        replaced.map(|(r, _old)| r)
    }
}

/// Marks the current thread as inside a write closure of one store, and
/// counts a panic if the closure never finished.
struct WritingMark<'a, T> {
    store: &'a Versioned<T>,
    finished: bool,
}

impl<'a, T> WritingMark<'a, T> {
    fn enter(store: &'a Versioned<T>, me: usize) -> Self {
        store.writing.store(me, Ordering::Relaxed);
        Self {
            store,
            finished: false,
        }
    }
}

impl<T> Drop for WritingMark<'_, T> {
    fn drop(&mut self) {
        if !self.finished {
            Stats::bump(&self.store.stats.panics);
        }
        self.store.writing.store(0, Ordering::Relaxed);
    }
}

/// A number unique to the calling thread among live threads (the address of
/// a thread-local), never 0.
#[inline]
fn thread_token() -> usize {
    #[cfg(not(loom))]
    std::thread_local!(static TOKEN: u8 = const { 0 });
    #[cfg(loom)]
    loom::thread_local!(static TOKEN: u8 = 0);
    TOKEN.with(|t| std::ptr::from_ref(t) as usize)
}

impl<T: Default> Default for Versioned<T> {
    /// A store whose version 0 is `T::default()`.
    #[track_caller]
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: fmt::Debug> fmt::Debug for Versioned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.read_versioned(|version, value| {
            f.debug_struct("Versioned")
                .field("version", &version)
                .field("value", value)
                .finish_non_exhaustive()
        })
    }
}

/// An owned handle on one committed version of a [`Versioned`] store, from
/// [`Versioned::snapshot`]. Derefs to the value; cloning it is cheap.
///
/// ```
/// let store = strata::snapshot::Versioned::new(String::from("a"));
/// let snap = store.snapshot();
/// assert_eq!((snap.version(), snap.as_str()), (0, "a"));
/// ```
pub struct Committed<T>(Arc<Entry<T>>);

impl<T> Committed<T> {
    /// The version number of this value.
    ///
    /// ```
    /// let store = strata::snapshot::Versioned::new(0);
    /// assert_eq!(store.snapshot().version(), 0);
    /// ```
    pub fn version(&self) -> u64 {
        self.0.version
    }
}

impl<T> Clone for Committed<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Deref for Committed<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Committed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Committed")
            .field("version", &self.0.version)
            .field("value", &self.0.value)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn thread_tokens_are_stable_per_thread_and_distinct_across_threads() {
        let here = thread_token();
        assert_ne!(here, 0);
        assert_eq!(here, thread_token());
        let there = std::thread::spawn(thread_token).join().unwrap();
        // Both threads are not alive at once here, but this one still is.
        assert_ne!(here, there);
    }

    #[test]
    fn the_writing_mark_is_cleared_after_every_outcome() {
        let store = Versioned::new(0);
        store.update(|_| ()).unwrap();
        assert_eq!(store.writing.load(Ordering::Relaxed), 0);
        let _ = store.write(|_| Err::<(), _>(()));
        assert_eq!(store.writing.load(Ordering::Relaxed), 0);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store.update(|_| panic!("x"))
        }));
        assert_eq!(store.writing.load(Ordering::Relaxed), 0);
        assert_eq!(store.writer.available_permits(), 1);
    }

    #[test]
    fn a_wait_is_counted_only_when_the_slot_is_taken() {
        let store = Versioned::new(0);
        drop(store.start_wait());
        assert_eq!(store.metrics().contended, 0);
        let permit = store.writer.try_acquire().unwrap();
        let clock = store.start_wait();
        assert_eq!(store.metrics().waiting, 1);
        drop(clock);
        drop(permit);
        let m = store.metrics();
        assert_eq!((m.contended, m.waiting), (1, 0));
    }

    #[test]
    fn debug_shows_version_and_value() {
        let store = Versioned::new(5);
        store.update(|n| *n = 6).unwrap();
        assert_eq!(
            format!("{store:?}"),
            "Versioned { version: 1, value: 6, .. }"
        );
        assert_eq!(
            format!("{:?}", store.snapshot()),
            "Committed { version: 1, value: 6 }"
        );
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    #[test]
    fn loom_two_writers_and_a_reader_see_only_committed_versions() {
        loom::model(|| {
            let store = Arc::new(Versioned::new((0u64, 0u64)));
            let writers: Vec<_> = (0..2)
                .map(|_| {
                    let store = store.clone();
                    thread::spawn(move || {
                        store
                            .update(|(a, b)| {
                                *a += 1;
                                *b += 1;
                            })
                            .unwrap();
                    })
                })
                .collect();
            // Two reads racing both writers: each sees one whole committed
            // version, and the second never an older one.
            let first = store.read_versioned(|version, (a, b)| {
                assert_eq!((*a, *b), (version, version));
                version
            });
            let second = store.read_versioned(|version, (a, b)| {
                assert_eq!((*a, *b), (version, version));
                version
            });
            assert!(second >= first);
            for w in writers {
                w.join().unwrap();
            }
            assert_eq!(store.read_versioned(|v, ab| (v, *ab)), (2, (2, 2)));
        });
    }

    #[test]
    fn loom_a_failed_write_racing_a_reader_is_never_seen() {
        loom::model(|| {
            let store = Arc::new(Versioned::new(0u32));
            let writer = {
                let store = store.clone();
                thread::spawn(move || {
                    let r = store.write(|n| {
                        *n = 99;
                        Err::<(), _>(())
                    });
                    assert_eq!(r, Err(SnapshotError::Aborted(())));
                    store.update(|n| *n = 1).unwrap();
                })
            };
            store.read_versioned(|version, n| {
                assert_ne!(*n, 99);
                assert_eq!(u64::from(*n), version);
            });
            writer.join().unwrap();
            assert_eq!(store.read_versioned(|v, n| (v, *n)), (1, 1));
        });
    }

    #[test]
    fn loom_only_the_writing_thread_is_refused_as_reentrant() {
        loom::model(|| {
            let store = Arc::new(Versioned::new(0u32));
            let other = {
                let store = store.clone();
                // A plain concurrent writer: it waits its turn, never refused.
                thread::spawn(move || store.update(|n| *n += 1).unwrap())
            };
            let inner = store
                .update(|n| {
                    *n += 1;
                    store.update(|_| ()).unwrap_err()
                })
                .unwrap();
            assert_eq!(inner, SnapshotError::Reentrant);
            other.join().unwrap();
            assert_eq!(store.read(|n| *n), 2);
            assert_eq!(store.metrics().reentrant, 1);
        });
    }
}
