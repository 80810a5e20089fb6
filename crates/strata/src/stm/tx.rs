//! `Tx`: one attempt of a transaction — its snapshot, read set, buffered
//! write set, `or_else` undo log and (in serial mode) the locks it holds.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::loom::sync::Arc as ModelArc;

use smallvec::SmallVec;

use super::clock::{self, LOCKED, WAITERS, is_locked, version};
use super::entry::{CommuteList, OpsOf, State, WriteEntry, make_slot, value_of};
use super::error::{TxError, TxSignal};
use super::reclaim::{self, Pin};
use super::stats::Counter;
use super::tvar::{Core, HAS_VALIDATOR, HAS_WATCHES, Inner, Sample, TVar};
use super::wait::{self, WaitNode};
use super::word;
use crate::loom::hint;
use crate::loom::sync::atomic::Ordering;

/// What transactional code returns: a value, or a [`TxError`] (a signal to
/// propagate with `?`, or a user error that aborts).
pub type Stm<T, E = std::convert::Infallible> = Result<T, TxError<E>>;

pub(crate) type ReadEntry = (*const Core, u64);

/// Makes a type invariant in `'env` (a `&mut Tx<'long>` must not pass for a
/// `Tx` of a shorter borrow, nor the reverse).
pub(crate) type Invariant<'env> = fn(&'env ()) -> &'env ();

/// A saved entry state, for rolling back an `or_else` branch.
struct Undo {
    idx: usize,
    state: State,
    word: u64,
    ptr: *mut (),
    level: u32,
}

/// Inline capacities: a transaction touching up to this many `TVar`s
/// allocates nothing for its read and write sets.
type Reads = SmallVec<[ReadEntry; 16]>;
type Writes = SmallVec<[WriteEntry; 8]>;

/// Spins a reader waits on a locked `TVar` before the attempt gives up.
const READ_SPINS: u32 = 128;
/// Spins a committer waits on a locked `TVar` before giving up its locks.
const LOCK_SPINS: u32 = 64;

/// Why a commit failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitError {
    Conflict(Counter),
    Invalid(u64),
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
    pub(crate) reads: Reads,
    writes: Writes,
    undo: Vec<Undo>,
    /// Serial mode: every `TVar` touched is locked; the words replaced.
    held: Vec<(*const Core, u64)>,
    wake: Vec<ModelArc<WaitNode>>,
    lookup: Lookup,
    held_bloom: u64,
    /// The `or_else` branch running now (0: none) and the last id given out.
    branch: u32,
    branches: u32,
    pin: Option<Pin>,
    boxed_writes: bool,
    /// Some entry owns a box or a commute list (dropping the write set has
    /// work to do).
    owns: bool,
    /// An operation signalled a conflict: the attempt must not commit.
    pub(crate) poisoned: bool,
    pub(crate) cause: Counter,
    pub(crate) serial: bool,
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

/// Write-set sizes from which lookups go through a hash index: a linear
/// scan per access would make a transaction writing many `TVar`s quadratic.
const INDEX_AT: usize = 32;

/// Finds a `TVar`'s write entry: a 64-bit bloom filter answers most misses
/// at once; small sets are scanned, large ones indexed.
#[derive(Default)]
struct Lookup {
    bloom: u64,
    index: Option<HashMap<*const Core, usize>>,
}

impl Lookup {
    #[inline]
    fn get(&self, writes: &[WriteEntry], core: *const Core) -> Option<usize> {
        if self.bloom & bit(core) == 0 {
            return None;
        }
        match &self.index {
            Some(ix) => ix.get(&core).copied(),
            None => writes.iter().rposition(|e| e.core == core),
        }
    }

    /// After a push onto `writes`.
    #[inline]
    fn added(&mut self, writes: &[WriteEntry]) {
        let i = writes.len() - 1;
        let core = writes[i].core;
        self.bloom |= bit(core);
        match &mut self.index {
            Some(ix) => {
                ix.insert(core, i);
            }
            None if writes.len() > INDEX_AT => {
                self.index = Some(
                    writes
                        .iter()
                        .enumerate()
                        .map(|(i, e)| (e.core, i))
                        .collect(),
                );
            }
            None => {}
        }
    }

    /// After `writes` was truncated (an `or_else` rollback).
    fn truncated(&mut self, writes: &[WriteEntry]) {
        if let Some(ix) = &mut self.index {
            ix.retain(|_, i| *i < writes.len());
        }
    }

    fn clear(&mut self) {
        self.bloom = 0;
        self.index = None;
    }
}

impl<'env, E> Tx<'env, E> {
    #[inline]
    pub(crate) fn new() -> Self {
        Tx {
            rv: 0,
            reads: SmallVec::new(),
            writes: SmallVec::new(),
            undo: Vec::new(),
            held: Vec::new(),
            wake: Vec::new(),
            lookup: Lookup::default(),
            held_bloom: 0,
            branch: 0,
            branches: 0,
            pin: None,
            boxed_writes: false,
            owns: false,
            poisoned: false,
            cause: Counter::ReadConflict,
            serial: false,
            _env: PhantomData,
            _not_send: PhantomData,
            _err: PhantomData,
        }
    }

    /// Starts a fresh attempt: empty sets, a new snapshot.
    pub(crate) fn begin(&mut self, serial: bool) {
        self.clear();
        self.serial = serial;
        self.rv = clock::now();
    }

    /// Drops every buffered value and releases serial-mode locks.
    #[inline]
    fn clear(&mut self) {
        if !self.held.is_empty() {
            self.release_held();
        }
        self.reads.clear();
        // Undo records first: they find their value type through the entry.
        while let Some(u) = self.undo.pop() {
            let ops = self.writes[u.idx].ops;
            // SAFETY: the record owns the saved slot.
            unsafe { (ops.drop_slot)(u.state, u.word, u.ptr) };
        }
        if self.owns {
            for e in self.writes.drain(..) {
                // SAFETY: the entry owns its slot unless published.
                unsafe { (e.ops.drop_slot)(e.state, e.word, e.ptr) };
            }
            self.owns = false;
        } else {
            self.writes.clear();
        }
        self.lookup.clear();
        self.held_bloom = 0;
        self.branch = 0;
        self.branches = 0;
        self.boxed_writes = false;
        self.poisoned = false;
    }

    /// Serial mode: restores every held lock word (nothing was published).
    fn release_held(&mut self) {
        for (core, old) in self.held.drain(..) {
            // SAFETY: held cores belong to `TVar`s borrowed for `'env`.
            unsafe { (*core).lock.store(old, Ordering::Release) };
        }
    }

    /// Before blocking in `retry`: releases locks and the epoch pin (a
    /// parked thread must not hold back reclamation).
    pub(crate) fn prepare_wait(&mut self) {
        self.release_held();
        self.pin = None;
    }

    /// Whether the attempt buffered any write.
    pub(crate) fn wrote(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Whether the attempt has read nothing (a `retry` could never wake).
    pub(crate) fn read_nothing(&self) -> bool {
        self.reads.is_empty()
    }

    #[cold]
    fn conflict<T>(&mut self, cause: Counter) -> Stm<T, E> {
        self.poisoned = true;
        self.cause = cause;
        Err(TxError::Signal(TxSignal::CONFLICT))
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
    #[inline]
    pub fn read<T: Clone + Send + Sync + 'static>(&mut self, tv: &'env TVar<T>) -> Stm<T, E> {
        if self.poisoned {
            return Err(TxError::Signal(TxSignal::CONFLICT));
        }
        let inner: &'env Inner<T> = &tv.inner;
        let core = &inner.core as *const Core;
        if let Some(i) = self.lookup.get(&self.writes, core) {
            let e = &self.writes[i];
            if e.state == State::Value {
                // SAFETY: a `Value` entry of this `TVar<T>`.
                return Ok(unsafe { value_of::<T>(e) });
            }
            return self.read_commuted(inner, i);
        }
        self.read_shared(inner)
    }

    #[inline]
    fn read_shared<T: Clone + Send + Sync + 'static>(
        &mut self,
        inner: &'env Inner<T>,
    ) -> Stm<T, E> {
        if self.serial {
            return Ok(self.read_serial(inner));
        }
        let core = &inner.core as *const Core;
        if !word::is_word::<T>() && self.pin.is_none() {
            self.pin = Some(reclaim::pin());
        }
        match inner.sample(self.pin.as_ref(), READ_SPINS) {
            Sample::Locked => self.conflict(Counter::ReadConflict),
            Sample::Value(v, w) => {
                let ver = version(w);
                self.reads.push((core, ver));
                if ver > self.rv && !self.extend(ver) {
                    return self.conflict(Counter::ReadConflict);
                }
                Ok(v)
            }
        }
    }

    /// Moves the snapshot up to (at least) `seen`, a version just read, if
    /// nothing read so far has changed.
    #[cold]
    fn extend(&mut self, seen: u64) -> bool {
        clock::observe(seen);
        let now = clock::now();
        for &(core, ver) in &self.reads {
            // SAFETY: cores in the read set belong to `TVar`s borrowed for `'env`.
            let w = unsafe { (*core).lock.load(Ordering::SeqCst) };
            if is_locked(w) || version(w) != ver {
                return false;
            }
        }
        self.rv = now;
        super::stats::bump(Counter::Extensions);
        true
    }

    /// Serial mode: locks `core` (waiting for a committer to finish) unless
    /// held already.
    fn lock_serial(&mut self, core: *const Core) -> u64 {
        if self.held_bloom & bit(core) != 0
            && let Some(&(_, old)) = self.held.iter().find(|(c, _)| *c == core)
        {
            return old;
        }
        // SAFETY: the core belongs to a `TVar` borrowed for `'env`.
        let lock = unsafe { &(*core).lock };
        let mut spins = 0u32;
        loop {
            let w = lock.load(Ordering::Relaxed);
            if !is_locked(w)
                && lock
                    .compare_exchange_weak(w, w | LOCKED, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
            {
                self.held.push((core, w));
                self.held_bloom |= bit(core);
                return w;
            }
            // Only committers hold locks besides us (one serial transaction
            // at a time), and they hold them briefly and never wait for us.
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
        self.reads.push((core, version(old)));
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
        let mut x = self.read_shared(inner)?;
        {
            // SAFETY: entry `i` is a `Commute` entry of this `TVar<T>`.
            let list = unsafe { &*self.writes[i].ptr.cast::<CommuteList<T>>() };
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
    #[inline]
    pub fn write<T: Clone + Send + Sync + 'static>(
        &mut self,
        tv: &'env TVar<T>,
        value: T,
    ) -> Stm<(), E> {
        if self.poisoned {
            return Err(TxError::Signal(TxSignal::CONFLICT));
        }
        let inner: &'env Inner<T> = &tv.inner;
        let core = &inner.core as *const Core;
        if self.serial {
            self.lock_serial(core);
        }
        match self.lookup.get(&self.writes, core) {
            Some(i) => self.set_value(i, value),
            None => self.push(
                core,
                State::Value,
                make_slot(value),
                &OpsOf::<T>::OPS,
                word::is_word::<T>(),
            ),
        }
        Ok(())
    }

    #[inline]
    fn push(
        &mut self,
        core: *const Core,
        state: State,
        (word, ptr): (u64, *mut ()),
        ops: &'static super::entry::Ops,
        is_word: bool,
    ) {
        self.boxed_writes |= !is_word;
        self.owns |= !is_word || state == State::Commute;
        self.writes.push(WriteEntry {
            core,
            ops,
            state,
            word,
            ptr,
            level: self.branch,
            old_lock: 0,
            old_word: 0,
            old_ptr: std::ptr::null_mut(),
        });
        self.lookup.added(&self.writes);
    }

    /// Replaces entry `i`'s slot with `value`, saving the old slot first if
    /// the running `or_else` branch may have to roll back to it.
    fn set_value<T: Clone + Send + Sync + 'static>(&mut self, i: usize, value: T) {
        let branch = self.branch;
        let e = &mut self.writes[i];
        if branch != 0 && e.level != branch {
            self.undo.push(Undo {
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
        if self.poisoned {
            return Err(TxError::Signal(TxSignal::CONFLICT));
        }
        if self.serial {
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
        match self.lookup.get(&self.writes, core) {
            None => {
                let list: CommuteList<T> = vec![f];
                let p = Box::into_raw(Box::new(list)).cast();
                self.push(
                    core,
                    State::Commute,
                    (0, p),
                    &OpsOf::<T>::OPS,
                    word::is_word::<T>(),
                );
            }
            Some(i) if self.writes[i].state == State::Value => {
                // SAFETY: a `Value` entry of this `TVar<T>`.
                let x = unsafe { value_of::<T>(&self.writes[i]) };
                self.set_value(i, f(x));
            }
            Some(i) => {
                let branch = self.branch;
                let e = &mut self.writes[i];
                if branch != 0 && e.level != branch {
                    // Keep the old list for a rollback; extend a copy.
                    // SAFETY: a `Commute` entry's ptr is its live list.
                    let mut copy = unsafe { (*e.ptr.cast::<CommuteList<T>>()).clone() };
                    copy.push(f);
                    self.undo.push(Undo {
                        idx: i,
                        state: e.state,
                        word: e.word,
                        ptr: e.ptr,
                        level: e.level,
                    });
                    e.ptr = Box::into_raw(Box::new(copy)).cast();
                    e.level = branch;
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
        let (writes, undo) = (self.writes.len(), self.undo.len());
        let parent = self.branch;
        self.branches += 1;
        self.branch = self.branches;
        let r = a(self);
        self.branch = parent;
        match r {
            Err(TxError::Signal(s)) if s.is_retry() && !self.poisoned => {
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
        while self.undo.len() > undo {
            let u = self.undo.pop().expect("len > undo");
            let e = &mut self.writes[u.idx];
            // SAFETY: the entry owns its current slot, the record the saved one.
            unsafe { (e.ops.drop_slot)(e.state, e.word, e.ptr) };
            if u.idx < writes {
                e.state = u.state;
                e.word = u.word;
                e.ptr = u.ptr;
                e.level = u.level;
            } else {
                // The entry itself goes below; let it drop the saved slot.
                e.state = u.state;
                e.word = u.word;
                e.ptr = u.ptr;
            }
        }
        for e in self.writes.drain(writes..) {
            // SAFETY: the entry owns its slot.
            unsafe { (e.ops.drop_slot)(e.state, e.word, e.ptr) };
        }
        self.lookup.truncated(&self.writes);
    }

    /// Commits the buffered writes. A read-only attempt commits for free:
    /// every read was validated against the snapshot when it was made.
    pub(crate) fn commit(&mut self) -> Result<(), CommitError> {
        if self.writes.is_empty() {
            self.release_held();
            return Ok(());
        }
        if self.boxed_writes && self.pin.is_none() {
            self.pin = Some(reclaim::pin());
        }
        if self.serial {
            return self.commit_serial();
        }
        let mut locks = Unlock {
            writes: &mut self.writes,
            n: 0,
        };
        // Lock every written TVar (no waiting on one another: try, spin a
        // little, else give up, so commits cannot deadlock).
        while locks.n < locks.writes.len() {
            if !try_lock(&mut locks.writes[locks.n]) {
                return Err(CommitError::Conflict(Counter::LockConflict));
            }
            locks.n += 1;
        }
        for e in locks.writes.iter_mut() {
            if e.state == State::Commute {
                // SAFETY: we hold the lock of every entry's TVar.
                unsafe { (e.ops.resolve)(e) };
            }
            // SAFETY: the core outlives the transaction.
            let flags = unsafe { (*e.core).flags.load(Ordering::Acquire) };
            // SAFETY: entries are `Value` after `resolve`.
            if flags & HAS_VALIDATOR != 0 && !unsafe { (e.ops.validate)(e) } {
                // SAFETY: the core outlives the transaction.
                return Err(CommitError::Invalid(unsafe { (*e.core).id }));
            }
        }
        let replaced = locks.writes.iter().map(|e| version(e.old_lock)).max();
        let wv = clock::write_version(replaced.unwrap_or(0));
        if !validate_reads(&self.reads, locks.writes, &self.lookup) {
            return Err(CommitError::Conflict(Counter::ValidationConflict));
        }
        for e in locks.writes.iter_mut() {
            // SAFETY: locked, `Value`, pinned if boxed.
            unsafe { (e.ops.publish)(e, self.pin.as_ref()) };
        }
        self.owns = false;
        let new = clock::word(wv);
        for e in locks.writes.iter() {
            // SAFETY: the core outlives the transaction; we hold its lock.
            let core = unsafe { &*e.core };
            if e.old_lock & WAITERS != 0 {
                wait::take_waiters(core, &mut self.wake);
            }
            core.lock.store(new, Ordering::Release);
        }
        locks.n = 0;
        Ok(())
    }

    /// Serial mode: every `TVar` touched is locked already, so nothing can
    /// have changed and the commit cannot fail (bar a validator).
    fn commit_serial(&mut self) -> Result<(), CommitError> {
        for e in self.writes.iter_mut() {
            // SAFETY: the core outlives the transaction.
            let flags = unsafe { (*e.core).flags.load(Ordering::Acquire) };
            // SAFETY: serial mode holds the lock of every entry's TVar.
            if flags & HAS_VALIDATOR != 0 && !unsafe { (e.ops.validate)(e) } {
                // SAFETY: the core outlives the transaction.
                return Err(CommitError::Invalid(unsafe { (*e.core).id }));
            }
        }
        let replaced = self.held.iter().map(|&(_, old)| version(old)).max();
        let wv = clock::write_version(replaced.unwrap_or(0));
        for e in self.writes.iter_mut() {
            // SAFETY: locked, `Value` (serial commutes apply at once), pinned.
            unsafe { (e.ops.publish)(e, self.pin.as_ref()) };
        }
        self.owns = false;
        let new = clock::word(wv);
        for (core, old) in self.held.drain(..) {
            // SAFETY: held cores belong to `TVar`s borrowed for `'env`.
            let c = unsafe { &*core };
            if self.lookup.get(&self.writes, core).is_some() {
                if old & WAITERS != 0 {
                    wait::take_waiters(c, &mut self.wake);
                }
                c.lock.store(new, Ordering::Release);
            } else {
                c.lock.store(old, Ordering::Release);
            }
        }
        Ok(())
    }

    /// After a commit, with every lock released and outside the
    /// transaction: wakes the transactions blocked on what it wrote, then
    /// runs the watches.
    pub(crate) fn after_commit(&mut self) {
        for n in self.wake.drain(..) {
            n.wake();
        }
        for e in &self.writes {
            // SAFETY: the core outlives the transaction.
            let flags = unsafe { (*e.core).flags.load(Ordering::Acquire) };
            if flags & HAS_WATCHES != 0 {
                // SAFETY: published by this thread, still pinned.
                unsafe { (e.ops.watch)(e) };
            }
        }
    }
}

/// Validates the read set at commit, the write set locked.
fn validate_reads(reads: &[ReadEntry], writes: &[WriteEntry], lookup: &Lookup) -> bool {
    reads.iter().all(|&(core, ver)| {
        // SAFETY: cores in the read set belong to `TVar`s borrowed for `'env`.
        let w = unsafe { (*core).lock.load(Ordering::SeqCst) };
        if is_locked(w) {
            // Ours? Then compare with the word our lock replaced.
            lookup
                .get(writes, core)
                .is_some_and(|i| version(writes[i].old_lock) == ver)
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
        // SeqCst: see `clock::now`.
        match lock.compare_exchange_weak(w, w | LOCKED, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) => {
                e.old_lock = w;
                return true;
            }
            Err(now) => w = now,
        }
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
        for e in &self.writes[..self.n] {
            // SAFETY: we locked it; nothing was published.
            unsafe { (*e.core).lock.store(e.old_lock, Ordering::Release) };
        }
    }
}

impl<E> Drop for Tx<'_, E> {
    fn drop(&mut self) {
        self.clear();
    }
}
