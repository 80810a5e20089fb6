//! `Tx`: one attempt of a transaction — its snapshot, its read and write
//! sets (in per-thread [`Buffers`]), the `or_else` undo log and (in serial
//! mode) the locks it holds.
//!
//! The common case — words read and written outside `or_else`, no hooks,
//! no commutes, not serial — runs on a fast path: an operation checks one
//! byte (`slow`) and one bloom filter bit and then only samples a lock word
//! or pushes an entry; a commit locks, validates, publishes and unlocks in
//! three tight loops and never calls through an entry's vtable. Everything
//! else is flagged in `has` and handled off that path.

use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::Arc;

use super::buffers::{Buffers, ReadEntry, Undo};
use super::clock::{self, LOCKED, WAITERS, is_locked, version};
use super::entry::{CommuteList, State, WriteEntry, make_slot, value_of};
use super::error::{TxError, TxSignal};
use super::own::{self, CommitView};
use super::reclaim::{self, Pin};
use super::stats::Counter;
use super::tvar::{Core, HAS_VALIDATOR, HAS_WATCHES, Inner, Sample, TVar};
use super::wait;
use super::word;
use crate::loom::hint;
use crate::loom::sync::atomic::Ordering;

/// What transactional code returns: a value, or a [`TxError`] (a signal to
/// propagate with `?`, or a user error that aborts).
///
/// Helpers written as `fn(&mut Tx) -> Stm<T>` compose into larger
/// transactions; `E` (default [`Infallible`](std::convert::Infallible)) is
/// the user error type, for [`try_atomically`](super::try_atomically).
///
/// ```
/// use strata::stm::{abort, atomically, try_atomically, Stm, TVar, Tx};
///
/// // The `TVar`s are borrowed for the transaction's `'a`.
/// fn transfer<'a>(
///     tx: &mut Tx<'a, &'static str>,
///     from: &'a TVar<u32>,
///     to: &'a TVar<u32>,
///     n: u32,
/// ) -> Stm<(), &'static str> {
///     let have = tx.read(from)?;
///     if have < n {
///         return abort("insufficient funds");
///     }
///     tx.write(from, have - n)?;
///     tx.modify(to, |x| x + n)
/// }
///
/// fn total<'a>(tx: &mut Tx<'a>, a: &'a TVar<u32>, b: &'a TVar<u32>) -> Stm<u32> {
///     Ok(tx.read(a)? + tx.read(b)?)
/// }
///
/// let (a, b) = (TVar::new(10), TVar::new(0));
/// try_atomically(|tx| transfer(tx, &a, &b, 4)).unwrap();
/// assert!(try_atomically(|tx| transfer(tx, &a, &b, 100)).is_err());
/// assert_eq!(atomically(|tx| total(tx, &a, &b)).unwrap(), 10);
/// assert_eq!((a.load(), b.load()), (6, 4));
/// ```
pub type Stm<T, E = std::convert::Infallible> = Result<T, TxError<E>>;

/// Makes a type invariant in `'env` (a `&mut Tx<'long>` must not pass for a
/// `Tx` of a shorter borrow, nor the reverse).
pub(crate) type Invariant<'env> = fn(&'env ()) -> &'env ();

/// Spins a reader waits on a locked `TVar` before the attempt gives up.
const READ_SPINS: u32 = 128;
/// Spins a committer waits on a locked `TVar` before giving up its locks.
const LOCK_SPINS: u32 = 64;
/// Write-set sizes from which lookups go through a hash index: a linear
/// scan per access would make a transaction writing many `TVar`s quadratic.
const INDEX_AT: usize = 32;

/// `Tx::slow`: operations leave the fast path.
const POISONED: u8 = 1;
const SERIAL: u8 = 2;

/// `Tx::has`: what clearing an attempt or committing it must attend to.
/// Some entry (or undo record) owns a box or a commute list.
const OWNS: u8 = 1;
/// Some write is of a boxed type: the commit pins and retires.
const BOXED: u8 = 2;
/// Some entry holds pending commutes.
const COMMUTES: u8 = 4;
/// The undo log is not empty.
const UNDO: u8 = 8;
/// `Buffers::index` maps every write.
const INDEXED: u8 = 16;
/// Serial mode holds locks (`Buffers::held`).
const HELD: u8 = 32;
/// The commit took waiters to wake (`Buffers::wake`).
const WAKE: u8 = 64;

/// Why a commit failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitError {
    Conflict(Counter),
    Invalid(u64),
}

#[cfg(not(loom))]
thread_local! {
    /// Set while this thread runs a transaction (closure, commit, retry
    /// wait), cleared before watches run. No destructor: always accessible.
    static IN_TX: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

// loom runs model threads on one OS thread: per-thread state must be loom's.
#[cfg(loom)]
loom::thread_local! {
    static IN_TX: std::cell::Cell<bool> = std::cell::Cell::new(false);
}

/// A running transaction, handed to the closure of
/// [`atomically`](super::atomically).
///
/// Reads see one consistent snapshot of every `TVar` (opacity: even an
/// attempt that will be re-run never sees a state no commit produced);
/// writes are buffered and published all at once at commit. `'env` is the
/// lifetime of the `TVar`s the transaction may touch: they must outlive the
/// whole `atomically` call.
///
/// ```
/// use strata::stm::{atomically, TVar};
///
/// let (a, b) = (TVar::new(100), TVar::new(0));
/// atomically(|tx| {
///     let x = tx.read(&a)?;
///     tx.write(&a, x - 30)?;
///     tx.modify(&b, |y| y + 30)
/// })
/// .unwrap();
/// assert_eq!((a.load(), b.load()), (70, 30));
/// ```
///
/// A `TVar` created inside the closure cannot be used by it (it would not
/// outlive the commit):
///
/// ```compile_fail
/// use strata::stm::{atomically, TVar};
/// atomically(|tx| {
///     let local = TVar::new(1);
///     tx.write(&local, 2)
/// });
/// ```
pub struct Tx<'env, E = std::convert::Infallible> {
    pub(crate) rv: u64,
    b: ManuallyDrop<Box<Buffers>>,
    /// Bloom filter of the written cores: most lookups miss at once.
    wbloom: u64,
    /// Bloom filter of the cores held in serial mode.
    held_bloom: u64,
    /// `POISONED | SERIAL`.
    slow: u8,
    /// `OWNS | BOXED | …`.
    has: u8,
    /// The hook flags of the written `TVar`s, read under the commit's locks.
    hooks: u8,
    /// This `Tx` set `IN_TX` and has not cleared it yet.
    entered: bool,
    /// An attempt is running: dropping the `Tx` now is a panic unwinding
    /// out of the closure or the commit.
    running: bool,
    /// The `or_else` branch running now (0: none) and the last id given out.
    branch: u32,
    branches: u32,
    pin: Option<Pin>,
    pub(crate) cause: Counter,
    /// Invariant in `'env`; `!Send` (the buffers and pin are per thread);
    /// `E` is the user error type the closure may abort with.
    _env: PhantomData<Invariant<'env>>,
    _not_send: PhantomData<*mut ()>,
    _err: PhantomData<fn() -> E>,
}

#[inline]
fn bit(core: *const Core) -> u64 {
    1 << ((core as usize >> 6) & 63)
}

/// Finds `core`'s entry in a write set.
#[inline]
fn find(b: &Buffers, bloom: u64, indexed: bool, core: *const Core) -> Option<usize> {
    if bloom & bit(core) == 0 {
        return None;
    }
    if indexed {
        b.index.get(&core).copied()
    } else {
        b.writes.iter().rposition(|e| e.core == core)
    }
}

impl<'env, E> Tx<'env, E> {
    /// A transaction for this thread, `None` if the thread is already in
    /// one (`atomically` inside a transaction).
    #[inline]
    pub(crate) fn enter() -> Option<Self> {
        if IN_TX.with(|f| f.replace(true)) {
            return None;
        }
        Some(Tx {
            rv: 0,
            b: ManuallyDrop::new(Buffers::take()),
            wbloom: 0,
            held_bloom: 0,
            slow: 0,
            has: 0,
            hooks: 0,
            entered: true,
            running: false,
            branch: 0,
            branches: 0,
            pin: None,
            cause: Counter::ReadConflict,
            _env: PhantomData,
            _not_send: PhantomData,
            _err: PhantomData,
        })
    }

    /// Leaves the transaction state early (before watches, which may start
    /// transactions of their own).
    fn exit(&mut self) {
        if self.entered {
            self.entered = false;
            IN_TX.with(|f| f.set(false));
        }
    }

    /// Starts a fresh attempt: empty sets, a new snapshot.
    #[inline]
    pub(crate) fn begin(&mut self, serial: bool) {
        self.clear();
        self.slow = if serial { SERIAL } else { 0 };
        self.running = true;
        self.rv = clock::now();
    }

    /// Drops every buffered value and releases serial-mode locks.
    #[inline]
    fn clear(&mut self) {
        if self.has != 0 {
            self.clear_slow();
        }
        self.b.reads.clear();
        self.b.writes.clear();
        self.wbloom = 0;
        self.branch = 0;
        self.branches = 0;
    }

    #[cold]
    fn clear_slow(&mut self) {
        if self.has & HELD != 0 {
            self.release_held();
        }
        if self.has & WAKE != 0 {
            // Only a commit that went through takes waiters, and it wakes
            // them; should one be left, a spurious wake-up is harmless, a
            // lost one is not.
            for n in self.b.wake.drain(..) {
                n.wake();
            }
        }
        let b = &mut **self.b;
        // Undo records first: they find their value type through the entry.
        while let Some(u) = b.undo.pop() {
            let ops = b.writes[u.idx].ops;
            // SAFETY: the record owns the saved slot.
            unsafe { (ops.drop_slot)(u.state, u.word, u.ptr) };
        }
        if self.has & OWNS != 0 {
            for e in b.writes.drain(..) {
                // SAFETY: the entry owns its slot unless published.
                unsafe { (e.ops.drop_slot)(e.state, e.word, e.ptr) };
            }
        }
        if self.has & INDEXED != 0 {
            b.index.clear();
        }
        self.has = 0;
    }

    /// Serial mode: restores every held lock word (nothing was published).
    fn release_held(&mut self) {
        for (core, old) in self.b.held.drain(..) {
            // SAFETY: held cores belong to `TVar`s borrowed for `'env`.
            unsafe { (*core).lock.store(old, Ordering::Release) };
        }
        self.held_bloom = 0;
        self.has &= !HELD;
    }

    /// Before blocking in `retry`: releases locks and the epoch pin (a
    /// parked thread must not hold back reclamation).
    pub(crate) fn prepare_wait(&mut self) {
        if self.has & HELD != 0 {
            self.release_held();
        }
        self.pin = None;
    }

    /// The attempt is over (it did not commit, or it committed and
    /// [`finish`](Self::finish) is not called).
    #[inline]
    pub(crate) fn ended(&mut self) {
        self.running = false;
    }

    /// The read set (the wait set of a `retry`).
    pub(crate) fn read_set(&self) -> &[ReadEntry] {
        &self.b.reads
    }

    /// Whether the attempt has read nothing (a `retry` could never wake).
    pub(crate) fn read_nothing(&self) -> bool {
        self.b.reads.is_empty()
    }

    /// An operation signalled a conflict: the attempt must not commit.
    #[inline]
    pub(crate) fn is_poisoned(&self) -> bool {
        self.slow & POISONED != 0
    }

    /// Counts `c` for this thread.
    #[inline]
    pub(crate) fn bump(&self, c: Counter) {
        self.b.stats.bump(c);
    }

    #[cold]
    fn conflict<T>(&mut self, cause: Counter) -> Stm<T, E> {
        self.slow |= POISONED;
        self.cause = cause;
        Err(TxError::Signal(TxSignal::CONFLICT))
    }

    #[inline]
    fn find(&self, core: *const Core) -> Option<usize> {
        find(&self.b, self.wbloom, self.has & INDEXED != 0, core)
    }

    /// Reads `tv`: the value this transaction wrote, or the committed value
    /// in its snapshot.
    ///
    /// ```
    /// use strata::stm::{atomically, TVar};
    ///
    /// let v = TVar::new(vec![1, 2]);
    /// let len = atomically(|tx| Ok(tx.read(&v)?.len())).unwrap();
    /// assert_eq!(len, 2);
    /// ```
    #[inline(always)]
    pub fn read<T: Clone + Send + Sync + 'static>(&mut self, tv: &'env TVar<T>) -> Stm<T, E> {
        let inner: &'env Inner<T> = &tv.inner;
        if self.slow != 0 || self.wbloom & bit(&inner.core) != 0 {
            return self.read_slow(inner);
        }
        self.read_shared(inner)
    }

    /// A read off the fast path: poisoned, serial, or maybe of a written
    /// `TVar`.
    #[inline(never)]
    fn read_slow<T: Clone + Send + Sync + 'static>(&mut self, inner: &'env Inner<T>) -> Stm<T, E> {
        if self.slow & POISONED != 0 {
            return Err(TxError::Signal(TxSignal::CONFLICT));
        }
        if let Some(i) = self.find(&inner.core) {
            let e = &self.b.writes[i];
            if e.state == State::Value {
                // SAFETY: a `Value` entry of this `TVar<T>`.
                return Ok(unsafe { value_of::<T>(e) });
            }
            return self.read_commuted(inner, i);
        }
        self.read_committed(inner)
    }

    /// The committed value in the snapshot (serial mode: locked).
    #[inline]
    fn read_committed<T: Clone + Send + Sync + 'static>(
        &mut self,
        inner: &'env Inner<T>,
    ) -> Stm<T, E> {
        if self.slow & SERIAL != 0 {
            return Ok(self.read_serial(inner));
        }
        self.read_shared(inner)
    }

    #[inline(always)]
    fn read_shared<T: Clone + Send + Sync + 'static>(
        &mut self,
        inner: &'env Inner<T>,
    ) -> Stm<T, E> {
        let core = &inner.core as *const Core;
        let (v, w) = if word::is_word::<T>() {
            match inner.core.sample_word(READ_SPINS) {
                Some((x, w)) => (word::from_word::<T>(x), w),
                None => return self.conflict(Counter::ReadConflict),
            }
        } else {
            if self.pin.is_none() {
                self.pin = Some(reclaim::pin());
            }
            match inner.sample(self.pin.as_ref(), READ_SPINS) {
                Sample::Value(v, w) => (v, w),
                Sample::Locked => return self.conflict(Counter::ReadConflict),
            }
        };
        let ver = version(w);
        self.b.reads.push((core, ver));
        if ver > self.rv && !self.extend(ver) {
            return self.conflict(Counter::ReadConflict);
        }
        Ok(v)
    }

    /// Moves the snapshot up to (at least) `seen`, a version just read, if
    /// nothing read so far has changed.
    #[cold]
    fn extend(&mut self, seen: u64) -> bool {
        clock::observe(seen);
        let now = clock::now();
        for &(core, ver) in &self.b.reads {
            // SAFETY: cores in the read set belong to `TVar`s borrowed for `'env`.
            let w = unsafe { (*core).lock.load(Ordering::SeqCst) };
            if is_locked(w) || version(w) != ver {
                return false;
            }
        }
        self.rv = now;
        self.bump(Counter::Extensions);
        true
    }

    /// Serial mode: locks `core` (waiting for a committer to finish) unless
    /// held already.
    fn lock_serial(&mut self, core: *const Core) -> u64 {
        if self.held_bloom & bit(core) != 0
            && let Some(&(_, old)) = self.b.held.iter().find(|(c, _)| *c == core)
        {
            return old;
        }
        // SAFETY: the core belongs to a `TVar` borrowed for `'env`.
        let lock = unsafe { &(*core).lock };
        // This thread's own serial word, so that `TVar::load` can tell it
        // holds the lock.
        let mine = own::serial_word();
        let mut spins = 0u32;
        loop {
            let w = lock.load(Ordering::Relaxed);
            if !is_locked(w)
                && lock
                    .compare_exchange_weak(w, mine, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
            {
                self.b.held.push((core, w));
                self.held_bloom |= bit(core);
                self.has |= HELD;
                return w;
            }
            // Only committers hold locks besides us (one serial transaction
            // at a time), and they hold them briefly and never wait for us
            // (not even a validator's `TVar::load`: see `own`).
            spins += 1;
            if spins < 64 {
                hint::spin_loop();
            } else {
                crate::loom::thread::yield_now();
            }
        }
    }

    fn read_serial<T: Clone + Send + Sync + 'static>(&mut self, inner: &'env Inner<T>) -> T {
        let core = &inner.core as *const Core;
        let old = self.lock_serial(core);
        self.b.reads.push((core, version(old)));
        // SAFETY: we hold the lock word.
        unsafe { inner.read_locked() }
    }

    /// A read of a `TVar` with pending commutes: read it for real and apply
    /// them, making the entry an ordinary write.
    #[cold]
    fn read_commuted<T: Clone + Send + Sync + 'static>(
        &mut self,
        inner: &'env Inner<T>,
        i: usize,
    ) -> Stm<T, E> {
        let mut x = self.read_committed(inner)?;
        {
            // SAFETY: entry `i` is a `Commute` entry of this `TVar<T>`.
            let list = unsafe { &*self.b.writes[i].ptr.cast::<CommuteList<T>>() };
            for f in list {
                x = f(x);
            }
        }
        self.set_value(i, x.clone());
        Ok(x)
    }

    /// Buffers `value` for `tv`; it is published if the transaction commits.
    ///
    /// ```
    /// use strata::stm::{atomically, TVar};
    ///
    /// let v = TVar::new("old".to_string());
    /// atomically(|tx| tx.write(&v, "new".to_string())).unwrap();
    /// assert_eq!(v.load(), "new");
    /// ```
    #[inline(always)]
    pub fn write<T: Clone + Send + Sync + 'static>(
        &mut self,
        tv: &'env TVar<T>,
        value: T,
    ) -> Stm<(), E> {
        let inner: &'env Inner<T> = &tv.inner;
        let core = &inner.core as *const Core;
        if self.slow != 0 || self.wbloom & bit(core) != 0 {
            return self.write_slow(inner, value);
        }
        self.push::<T>(core, State::Value, make_slot(value));
        Ok(())
    }

    /// A write off the fast path: poisoned, serial, or maybe of a written
    /// `TVar`.
    #[inline(never)]
    fn write_slow<T: Clone + Send + Sync + 'static>(
        &mut self,
        inner: &'env Inner<T>,
        value: T,
    ) -> Stm<(), E> {
        if self.slow & POISONED != 0 {
            return Err(TxError::Signal(TxSignal::CONFLICT));
        }
        let core = &inner.core as *const Core;
        if self.slow & SERIAL != 0 {
            self.lock_serial(core);
        }
        match self.find(core) {
            Some(i) => self.set_value(i, value),
            None => self.push::<T>(core, State::Value, make_slot(value)),
        }
        Ok(())
    }

    #[inline(always)]
    fn push<T: Clone + Send + Sync + 'static>(
        &mut self,
        core: *const Core,
        state: State,
        slot: (u64, *mut ()),
    ) {
        if !word::is_word::<T>() {
            self.has |= OWNS | BOXED;
        }
        if state == State::Commute {
            self.has |= OWNS | COMMUTES;
        }
        self.wbloom |= bit(core);
        let b = &mut **self.b;
        b.writes
            .push(WriteEntry::new::<T>(core, state, slot, self.branch));
        if b.writes.len() > INDEX_AT {
            self.indexed_push();
        }
    }

    /// Keeps the index of a large write set up to date after a push.
    #[cold]
    fn indexed_push(&mut self) {
        let b = &mut **self.b;
        if self.has & INDEXED == 0 {
            self.has |= INDEXED;
            b.index.clear();
            b.index
                .extend(b.writes.iter().enumerate().map(|(i, e)| (e.core, i)));
        } else {
            let i = b.writes.len() - 1;
            b.index.insert(b.writes[i].core, i);
        }
    }

    /// Replaces entry `i`'s slot with `value`, saving the old slot first if
    /// the running `or_else` branch may have to roll back to it.
    fn set_value<T: Clone + Send + Sync + 'static>(&mut self, i: usize, value: T) {
        let branch = self.branch;
        let b = &mut **self.b;
        let e = &mut b.writes[i];
        if branch != 0 && e.level != branch {
            b.undo.push(Undo {
                idx: i,
                state: e.state,
                word: e.word,
                ptr: e.ptr,
                level: e.level,
            });
            let (w, p) = make_slot(value);
            e.state = State::Value;
            e.word = w;
            e.ptr = p;
            e.level = branch;
            self.has |= UNDO;
            return;
        }
        match e.state {
            State::Value if word::is_word::<T>() => e.word = word::to_word(&value),
            // SAFETY: a boxed `Value` entry of this `TVar<T>` owns its box.
            State::Value => unsafe { *e.ptr.cast::<T>() = value },
            _ => {
                // SAFETY: the entry owns its (commute) slot; replaced below.
                unsafe { (e.ops.drop_slot)(e.state, e.word, e.ptr) };
                let (w, p) = make_slot(value);
                e.state = State::Value;
                e.word = w;
                e.ptr = p;
            }
        }
    }
    /// `write(tv, f(read(tv)))`.
    ///
    /// ```
    /// use strata::stm::{atomically, TVar};
    ///
    /// let v = TVar::new(1);
    /// atomically(|tx| tx.modify(&v, |x| x * 10)).unwrap();
    /// assert_eq!(v.load(), 10);
    /// ```
    #[inline]
    pub fn modify<T: Clone + Send + Sync + 'static>(
        &mut self,
        tv: &'env TVar<T>,
        f: impl FnOnce(T) -> T,
    ) -> Stm<(), E> {
        let x = self.read(tv)?;
        self.write(tv, f(x))
    }

    /// Writes `value` and returns the value it replaced.
    ///
    /// ```
    /// use strata::stm::{atomically, TVar};
    ///
    /// let v = TVar::new(1);
    /// assert_eq!(atomically(|tx| tx.replace(&v, 2)).unwrap(), 1);
    /// ```
    pub fn replace<T: Clone + Send + Sync + 'static>(
        &mut self,
        tv: &'env TVar<T>,
        value: T,
    ) -> Stm<T, E> {
        let old = self.read(tv)?;
        self.write(tv, value)?;
        Ok(old)
    }

    /// Applies `f` to `tv` at commit time, to whatever value it has then,
    /// without reading it now: concurrent commutes of one `TVar` (counters,
    /// appends) do not conflict with each other. `f` may run more than once
    /// and must be pure. Reading `tv` later in the same transaction applies
    /// the pending functions to a real read.
    ///
    /// ```
    /// use strata::stm::{atomically, TVar};
    ///
    /// let hits = TVar::new(0u64);
    /// atomically(|tx| tx.commute(&hits, |n| n + 1)).unwrap();
    /// assert_eq!(hits.load(), 1);
    /// ```
    pub fn commute<T: Clone + Send + Sync + 'static>(
        &mut self,
        tv: &'env TVar<T>,
        f: impl Fn(T) -> T + 'env,
    ) -> Stm<(), E> {
        if self.slow & POISONED != 0 {
            return Err(TxError::Signal(TxSignal::CONFLICT));
        }
        if self.slow & SERIAL != 0 {
            // Serial mode holds every lock it touches: just modify.
            let x = self.read(tv)?;
            return self.write(tv, f(x));
        }
        let inner: &'env Inner<T> = &tv.inner;
        let core = &inner.core as *const Core;
        let f: Arc<dyn Fn(T) -> T + 'env> = Arc::new(f);
        // SAFETY: only the lifetime is erased; the list lives in this
        // transaction's write set, which never outlives `'env`.
        let f: Arc<dyn Fn(T) -> T> = unsafe { std::mem::transmute(f) };
        match self.find(core) {
            None => {
                let list: CommuteList<T> = vec![f];
                let p = Box::into_raw(Box::new(list)).cast();
                self.push::<T>(core, State::Commute, (0, p));
            }
            Some(i) if self.b.writes[i].state == State::Value => {
                // SAFETY: a `Value` entry of this `TVar<T>`.
                let x = unsafe { value_of::<T>(&self.b.writes[i]) };
                self.set_value(i, f(x));
            }
            Some(i) => {
                let branch = self.branch;
                let b = &mut **self.b;
                let e = &mut b.writes[i];
                if branch != 0 && e.level != branch {
                    // Keep the old list for a rollback; extend a copy.
                    // SAFETY: a `Commute` entry's ptr is its live list.
                    let mut copy = unsafe { (*e.ptr.cast::<CommuteList<T>>()).clone() };
                    copy.push(f);
                    b.undo.push(Undo {
                        idx: i,
                        state: e.state,
                        word: e.word,
                        ptr: e.ptr,
                        level: e.level,
                    });
                    e.ptr = Box::into_raw(Box::new(copy)).cast();
                    e.level = branch;
                    self.has |= UNDO;
                } else {
                    // SAFETY: as above.
                    unsafe { (*e.ptr.cast::<CommuteList<T>>()).push(f) };
                }
            }
        }
        Ok(())
    }

    /// Runs `a`; if it calls [`retry`](super::retry), undoes its writes and
    /// runs `b` instead. If `b` retries too, the transaction blocks until
    /// something either of them read changes. Nests.
    ///
    /// ```
    /// use strata::stm::{atomically, retry, TVar};
    ///
    /// let empty = TVar::new(None::<u32>);
    /// let full = TVar::new(Some(7));
    /// let got = atomically(|tx| {
    ///     tx.or_else(
    ///         |tx| match tx.read(&empty)? { Some(x) => Ok(x), None => retry() },
    ///         |tx| match tx.read(&full)? { Some(x) => Ok(x), None => retry() },
    ///     )
    /// })
    /// .unwrap();
    /// assert_eq!(got, 7);
    /// ```
    pub fn or_else<R>(
        &mut self,
        a: impl FnOnce(&mut Tx<'env, E>) -> Stm<R, E>,
        b: impl FnOnce(&mut Tx<'env, E>) -> Stm<R, E>,
    ) -> Stm<R, E> {
        let (writes, undo) = (self.b.writes.len(), self.b.undo.len());
        let parent = self.branch;
        self.branches += 1;
        self.branch = self.branches;
        let r = a(self);
        self.branch = parent;
        match r {
            Err(TxError::Signal(s)) if s.is_retry() && !self.is_poisoned() => {
                self.rollback(writes, undo);
                b(self)
            }
            r => r,
        }
    }

    /// Undoes every write made since the write set had `writes` entries and
    /// the undo log `undo` records. Reads stay: the choice of the other
    /// branch depends on them.
    fn rollback(&mut self, writes: usize, undo: usize) {
        let b = &mut **self.b;
        while b.undo.len() > undo {
            let u = b.undo.pop().expect("len > undo");
            let e = &mut b.writes[u.idx];
            // SAFETY: the entry owns its current slot, the record the saved one.
            unsafe { (e.ops.drop_slot)(e.state, e.word, e.ptr) };
            e.state = u.state;
            e.word = u.word;
            e.ptr = u.ptr;
            if u.idx < writes {
                e.level = u.level;
            }
            // Otherwise the entry itself goes below and drops the saved slot.
        }
        for e in b.writes.drain(writes..) {
            // SAFETY: the entry owns its slot.
            unsafe { (e.ops.drop_slot)(e.state, e.word, e.ptr) };
        }
        if self.has & INDEXED != 0 {
            let n = b.writes.len();
            b.index.retain(|_, i| *i < n);
        }
    }

    /// Commits the buffered writes. A read-only attempt commits for free:
    /// every read was validated against the snapshot when it was made.
    #[inline]
    pub(crate) fn commit(&mut self) -> Result<(), CommitError> {
        if self.b.writes.is_empty() {
            if self.has & HELD != 0 {
                self.release_held();
            }
            return Ok(());
        }
        if self.has & BOXED != 0 && self.pin.is_none() {
            self.pin = Some(reclaim::pin());
        }
        if self.slow & SERIAL != 0 {
            return self.commit_serial();
        }
        let has = self.has;
        let Buffers {
            reads,
            writes,
            wake,
            ..
        } = &mut **self.b;
        // Lock every written TVar (no waiting on one another: try, spin a
        // little, else give up, so commits cannot deadlock).
        let mut hooks = 0u8;
        let mut replaced = 0u64;
        for (locked, e) in writes.iter_mut().enumerate() {
            if !try_lock(e) {
                unlock(&writes[..locked]);
                return Err(CommitError::Conflict(Counter::LockConflict));
            }
            replaced = replaced.max(version(e.old_lock));
            // SAFETY: the core outlives the transaction.
            hooks |= unsafe { (*e.core).flags.load(Ordering::Acquire) };
        }
        if has & COMMUTES != 0 || hooks & HAS_VALIDATOR != 0 {
            // User code (commute functions, validators) runs under the
            // locks: the guard restores them if it fails or panics.
            let n = writes.len();
            let mut guard = Unlock { writes, n };
            prepare(guard.writes)?;
            guard.n = 0;
        }
        let wv = clock::write_version(replaced);
        if !validate_reads(reads, writes) {
            unlock(writes);
            return Err(CommitError::Conflict(Counter::ValidationConflict));
        }
        let new = clock::word(wv);
        let watched = hooks & HAS_WATCHES != 0;
        let mut woke = false;
        for e in writes.iter_mut() {
            // SAFETY: locked, `Value` after `prepare`.
            unsafe { e.publish(watched) };
            // SAFETY: the core outlives the transaction; we hold its lock.
            let core = unsafe { &*e.core };
            if e.old_lock & WAITERS != 0 {
                wait::take_waiters(core, wake);
                woke = true;
            }
            core.lock.store(new, Ordering::Release);
        }
        self.has &= !OWNS;
        if woke {
            self.has |= WAKE;
        }
        self.hooks = hooks;
        if has & BOXED != 0 {
            self.retire_replaced();
        }
        Ok(())
    }

    /// Serial mode: every `TVar` touched is locked already, so nothing can
    /// have changed and the commit cannot fail (bar a validator).
    fn commit_serial(&mut self) -> Result<(), CommitError> {
        let mut hooks = 0u8;
        for e in self.b.writes.iter() {
            // SAFETY: the core outlives the transaction.
            hooks |= unsafe { (*e.core).flags.load(Ordering::Acquire) };
        }
        if hooks & HAS_VALIDATOR != 0 {
            // Serial mode holds the lock of every entry's TVar; its
            // commutes were applied at once.
            validate_writes(&self.b.writes)?;
        }
        let replaced = self.b.held.iter().map(|&(_, old)| version(old)).max();
        let wv = clock::write_version(replaced.unwrap_or(0));
        for e in self.b.writes.iter_mut() {
            // SAFETY: locked, `Value` (serial commutes apply at once).
            unsafe { e.publish(hooks & HAS_WATCHES != 0) };
        }
        self.has &= !OWNS;
        let new = clock::word(wv);
        let (bloom, indexed) = (self.wbloom, self.has & INDEXED != 0);
        let b = &mut **self.b;
        let mut woke = false;
        for &(core, old) in &b.held {
            // SAFETY: held cores belong to `TVar`s borrowed for `'env`.
            let c = unsafe { &*core };
            if find(b, bloom, indexed, core).is_some() {
                if old & WAITERS != 0 {
                    wait::take_waiters(c, &mut b.wake);
                    woke = true;
                }
                c.lock.store(new, Ordering::Release);
            } else {
                c.lock.store(old, Ordering::Release);
            }
        }
        b.held.clear();
        self.held_bloom = 0;
        self.has &= !HELD;
        if woke {
            self.has |= WAKE;
        }
        self.hooks = hooks;
        if self.has & BOXED != 0 {
            self.retire_replaced();
        }
        Ok(())
    }

    /// After a commit has unlocked: hands the replaced boxes to the epoch.
    /// Not under the locks: freeing old values runs user `Drop` code.
    #[inline(never)]
    fn retire_replaced(&mut self) {
        let pin = self.pin.as_ref().expect("boxed commit is pinned");
        for e in self.b.writes.iter() {
            if !e.is_word {
                // SAFETY: published by this commit, unlocked, pinned since
                // before publishing; each entry is retired once.
                unsafe { (e.ops.retire)(e, pin) };
            }
        }
    }

    /// After a successful commit, with every lock released: counts it,
    /// wakes the transactions blocked on what it wrote, then runs the
    /// watches outside the transaction.
    #[inline]
    pub(crate) fn finish(&mut self) {
        self.running = false;
        let wrote = !self.b.writes.is_empty();
        self.bump(if wrote {
            Counter::Commits
        } else {
            Counter::ReadOnly
        });
        if self.has & WAKE != 0 {
            self.has &= !WAKE;
            for n in self.b.wake.drain(..) {
                n.wake();
            }
        }
        if self.hooks & HAS_WATCHES != 0 {
            self.run_watches();
        }
    }

    /// Every watch of every written `TVar` runs even if one panics; the
    /// first panic is re-raised after the last (the commit stands).
    #[cold]
    fn run_watches(&mut self) {
        // Watches may start transactions of their own.
        self.exit();
        let mut first = crate::hooks::FirstPanic::default();
        for e in self.b.writes.iter() {
            // SAFETY: the core outlives the transaction.
            let flags = unsafe { (*e.core).flags.load(Ordering::Acquire) };
            if flags & HAS_WATCHES != 0 {
                // SAFETY: published by this thread, still pinned.
                first.run(|| unsafe { (e.ops.watch)(e) });
            }
        }
        first.resume();
    }
}

/// Under the commit's locks: applies pending commutes, then runs
/// validators — all commutes first, so that a validator loading another
/// `TVar` of the commit sees its final value.
#[cold]
fn prepare(writes: &mut [WriteEntry]) -> Result<(), CommitError> {
    {
        let _view = CommitView::resolving(writes);
        for e in writes.iter_mut() {
            if e.state == State::Commute {
                // SAFETY: we hold the lock of every entry's TVar.
                unsafe { (e.ops.resolve)(e) };
            }
        }
    }
    validate_writes(writes)
}

/// Under the commit's locks, every entry `Value`: runs the validators.
fn validate_writes(writes: &[WriteEntry]) -> Result<(), CommitError> {
    let _view = CommitView::validating(writes);
    for e in writes {
        // SAFETY: the core outlives the transaction.
        let flags = unsafe { (*e.core).flags.load(Ordering::Acquire) };
        // SAFETY: we hold the lock of every entry's TVar; entries are `Value`.
        if flags & HAS_VALIDATOR != 0 && !unsafe { (e.ops.validate)(e) } {
            // SAFETY: the core outlives the transaction.
            return Err(CommitError::Invalid(unsafe { (*e.core).id }));
        }
    }
    Ok(())
}

/// The entry of `writes` whose commit holds lock word `w` (a locked word
/// holds the address of its owner's entry), if it is one of ours. Another
/// thread's entries live in another live allocation and serial-mode locks
/// hold no address, so a range check tells them apart.
#[inline]
fn owner(writes: &[WriteEntry], w: u64) -> Option<&WriteEntry> {
    let off = ((w & !LOCKED) as usize).wrapping_sub(writes.as_ptr() as usize);
    let i = off / std::mem::size_of::<WriteEntry>();
    if off.is_multiple_of(std::mem::size_of::<WriteEntry>()) && i < writes.len() {
        Some(&writes[i])
    } else {
        None
    }
}

/// Validates the read set at commit, the write set locked.
#[inline]
fn validate_reads(reads: &[ReadEntry], writes: &[WriteEntry]) -> bool {
    reads.iter().all(|&(core, ver)| {
        // SAFETY: cores in the read set belong to `TVar`s borrowed for `'env`.
        let w = unsafe { (*core).lock.load(Ordering::SeqCst) };
        if is_locked(w) {
            // Ours? Then compare with the word our lock replaced.
            owner(writes, w).is_some_and(|e| version(e.old_lock) == ver)
        } else {
            version(w) == ver
        }
    })
}

#[inline]
fn try_lock(e: &mut WriteEntry) -> bool {
    // SAFETY: the core belongs to a `TVar` borrowed for `'env`.
    let lock = unsafe { &(*e.core).lock };
    let mut spins = 0;
    let mut w = lock.load(Ordering::Relaxed);
    loop {
        if is_locked(w) {
            if spins >= LOCK_SPINS {
                return false;
            }
            spins += 1;
            hint::spin_loop();
            w = lock.load(Ordering::Relaxed);
            continue;
        }
        // SeqCst: see `clock::now`. The locked word names its owner.
        let mine = (e as *const WriteEntry as u64) | LOCKED;
        match lock.compare_exchange_weak(w, mine, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) => {
                e.old_lock = w;
                return true;
            }
            Err(now) => w = now,
        }
    }
}

/// Restores the lock words of entries we locked (nothing was published).
#[cold]
fn unlock(locked: &[WriteEntry]) {
    for e in locked {
        // SAFETY: the core outlives the transaction; we locked it.
        unsafe { (*e.core).lock.store(e.old_lock, Ordering::Release) };
    }
}

/// Restores the lock words of the first `n` entries unless disarmed (`n =
/// 0`): a failed or panicking commit leaves every `TVar` as it was.
struct Unlock<'a> {
    writes: &'a mut [WriteEntry],
    n: usize,
}

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        unlock(&self.writes[..self.n]);
    }
}

impl<E> Tx<'_, E> {
    /// Drop, the rare part: a panic unwinding through an attempt, or
    /// entries that own values, locks or waiters.
    #[cold]
    fn drop_slow(&mut self) {
        if self.running {
            // Unwinding out of the closure or the commit.
            self.bump(Counter::Panic);
        }
        // First: should dropping a buffered value panic, the thread must
        // still be able to start its next transaction.
        self.exit();
        self.clear();
    }
}

impl<E> Drop for Tx<'_, E> {
    #[inline(always)]
    fn drop(&mut self) {
        if self.running | (self.has != 0) {
            self.drop_slow();
        }
        // Plain entries stay in the sets: the next attempt's start drops
        // them (no need to clear twice). Unpinning may free old values:
        // their drops run outside the transaction.
        self.exit();
        self.pin = None;
        // SAFETY: `b` is not used after this.
        let b = unsafe { ManuallyDrop::take(&mut self.b) };
        Buffers::give_back(b);
    }
}
