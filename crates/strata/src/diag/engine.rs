//! The order checker: what every acquisition and release goes through.
//!
//! # Cost
//!
//! The steady state (a chain of held classes already validated) is: one
//! thread-local borrow, one relaxed load for cross-thread releases and one
//! for the reset epoch, a direct-mapped class-id lookup, one hash mix and one
//! `HashSet<u64>` probe, then a push. No global lock is taken. On a miss the
//! global validated set is consulted (read lock), and only then the graph
//! (mutex), which also captures a backtrace when `RUST_BACKTRACE` is set.
//!
//! # Failure semantics
//!
//! Reports are handed to the handler after every engine lock and thread-local
//! borrow is released, so a callback may take locks and a panicking handler
//! unwinds through a consistent engine. The violating acquisition is *not*
//! pushed before the handler returns: with [`Handler::Panic`] the panic
//! leaves `lock()` before the primitive takes its lock, so the held stack
//! never names a lock the thread does not hold. The offending edges stay in
//! the graph (flagged, drawn red) and the chain stays cached, so each
//! violation is reported once.
//!
//! The global state uses `parking_lot`/std types rather than the
//! `crate::loom` shim: it is diagnostic bookkeeping, not an algorithm under
//! model checking.
//!
//! [`Handler::Panic`]: super::Handler::Panic

use std::backtrace::Backtrace;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::Location;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::class::{AcquireKind, ClassKey};
use super::graph::{Added, EdgeInfo, Graph, Step};
use super::handler;
use super::held::{EMPTY_CHAIN, Held, HeldMeta, HeldSet, SetInner, Stack, chain_key};
use super::metrics::{ClassStats, LocalCell};
use super::registry::{self, ClassCache, ClassId};
use super::report::{Access, Acquisition, ClassInfo, EdgeReport, Violation, ViolationKind};

/// How an acquisition is made, beyond its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AcquireOpts {
    /// False for `try_` acquisitions: they record edges but never report.
    pub(crate) report: bool,
    /// Part of `lock_two`/`lock_all`: same-class instances taken in address
    /// order, so holding the class already is fine.
    pub(crate) ordered: bool,
    /// `lock_nested(n)`: a distinct node `(class, n)`; 0 is the class itself.
    pub(crate) subclass: u32,
}

impl AcquireOpts {
    /// `lock()`, `read()`, `write()`, waits on pseudo-locks.
    pub(crate) const BLOCKING: Self = Self {
        report: true,
        ordered: false,
        subclass: 0,
    };
    /// `try_lock()` and the timed variants (`try_lock_for`, ...): they cannot
    /// hang, so they record edges but never report.
    pub(crate) const TRY: Self = Self {
        report: false,
        ordered: false,
        subclass: 0,
    };
    /// `lock_two` / `lock_all`.
    pub(crate) const ORDERED: Self = Self {
        report: true,
        ordered: true,
        subclass: 0,
    };
    /// `lock_nested(subclass)`.
    pub(crate) const fn nested(subclass: u32) -> Self {
        Self {
            report: true,
            ordered: false,
            subclass,
        }
    }
}

/// Proof that a class is held; dropping it releases the class.
///
/// May be dropped on another thread than the one that acquired it (a `Send`
/// permit or lease): the release is then queued for the owning thread, which
/// applies it at its next acquisition.
#[must_use = "dropping a HeldEntry releases the class at once"]
#[derive(Debug)]
pub(crate) struct HeldEntry {
    owner: Owner,
    seq: u64,
    stats: Option<&'static ClassStats>,
}

#[derive(Debug)]
enum Owner {
    /// Nothing to release (the thread's state was already destroyed).
    Nobody,
    Thread(u64),
    Task(Arc<SetInner>),
}

impl HeldEntry {
    const NOBODY: Self = Self {
        owner: Owner::Nobody,
        seq: 0,
        stats: None,
    };

    /// Counts a wait of `waited` for this acquisition, and times the hold
    /// that follows (contended holds are always timed, see `metrics`).
    pub(crate) fn waited(&self, waited: Duration) {
        if let Some(stats) = self.stats {
            stats.waited(waited);
        }
        let now = Some(Instant::now());
        self.with_stack(|stack, seq| stack.set_since(seq, now));
    }

    /// Runs `f` on the stack holding this entry, if it is reachable from
    /// here (the owning thread, or any thread for a task's set).
    pub(crate) fn with_stack<R>(&self, f: impl FnOnce(&mut Stack, u64) -> R) -> Option<R> {
        match &self.owner {
            Owner::Nobody => None,
            Owner::Thread(id) => THREAD
                .try_with(|t| match t.try_borrow_mut() {
                    Ok(mut t) if t.id == *id => Some(f(&mut t.stack, self.seq)),
                    _ => None,
                })
                .ok()
                .flatten(),
            Owner::Task(set) => Some(f(&mut set.stack.lock(), self.seq)),
        }
    }

    /// Releases the class for a while (a guard that gives its lock up and
    /// takes it back, as `MutexGuard::unlocked` does); [`Suspended::resume`]
    /// takes it again through the order check.
    pub(crate) fn suspend(self) -> Option<Suspended> {
        let held = self
            .with_stack(|stack, seq| stack.get(seq).copied())
            .flatten()?;
        let info = registry::info(held.node);
        let task = match &self.owner {
            Owner::Task(set) => Some(HeldSet { inner: set.clone() }),
            _ => None,
        };
        drop(self);
        Some(Suspended {
            key: info.key,
            subclass: info.subclass,
            access: held.access,
            site: held.site,
            instance: held.instance,
            task,
        })
    }

    /// Who holds this entry: the thread's name or the task's label.
    pub(crate) fn context(&self) -> Option<Arc<str>> {
        match &self.owner {
            Owner::Nobody => None,
            Owner::Thread(id) => THREAD
                .try_with(|t| match t.try_borrow_mut() {
                    Ok(mut t) if t.id == *id => Some(t.context()),
                    _ => None,
                })
                .ok()
                .flatten(),
            Owner::Task(set) => Some(set.label.clone()),
        }
    }

    /// Records a mode change of the held lock (`downgrade`, an upgrade that
    /// completed). It checks nothing: the thread already holds the class.
    pub(crate) fn set_kind(&mut self, kind: AcquireKind) {
        let access = Access::from(kind);
        match &self.owner {
            Owner::Nobody => {}
            Owner::Thread(id) => {
                let _ = THREAD.try_with(|t| {
                    if let Ok(mut t) = t.try_borrow_mut()
                        && t.id == *id
                    {
                        t.stack.set_access(self.seq, access);
                    }
                });
            }
            Owner::Task(set) => set.stack.lock().set_access(self.seq, access),
        }
    }
}

impl Drop for HeldEntry {
    fn drop(&mut self) {
        match &self.owner {
            Owner::Nobody => {}
            Owner::Task(set) => {
                set.stack.lock().remove(self.seq);
            }
            Owner::Thread(id) => {
                let local = THREAD.try_with(|t| match t.try_borrow_mut() {
                    Ok(mut t) if t.id == *id => {
                        t.stack.remove(self.seq);
                        true
                    }
                    _ => false,
                });
                if local != Ok(true) {
                    queue_remote_release(*id, self.seq);
                }
            }
        }
    }
}

/// A class released by [`HeldEntry::suspend`], to be taken again.
#[derive(Debug)]
pub(crate) struct Suspended {
    key: ClassKey,
    subclass: u32,
    access: Access,
    site: &'static Location<'static>,
    instance: usize,
    task: Option<HeldSet>,
}

impl Suspended {
    /// Takes the class again, checking the order as a fresh blocking
    /// acquisition at the original site.
    pub(crate) fn resume(self) -> HeldEntry {
        let opts = AcquireOpts::nested(self.subclass);
        let kind = AcquireKind::from(self.access);
        match &self.task {
            Some(set) => on_acquire_in(set, self.key, kind, self.site, opts, self.instance),
            None => on_acquire(self.key, kind, self.site, opts, self.instance),
        }
    }
}

/// Releases a held class; the same as dropping the entry.
#[allow(dead_code)] // called by the lock primitives once wired
pub(crate) fn on_release(entry: HeldEntry) {
    drop(entry);
}

/// The validated-chain set is keyed by hashes that are already mixed, so the
/// set must not hash them again.
#[derive(Default)]
struct PassHasher(u64);

impl Hasher for PassHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type KeySet = HashSet<u64, BuildHasherDefault<PassHasher>>;

/// Bounds per-thread memory; a thread that walks more distinct chains than
/// this just revalidates (through the global set) after the clear.
const LOCAL_CACHE_MAX: usize = 1 << 14;

struct ThreadState {
    id: u64,
    stack: Stack,
    classes: ClassCache,
    validated: KeySet,
    epoch: u64,
    name: Option<Arc<str>>,
    misses: u64,
    sampled: u32,
    /// This thread's counter cell per class (see `metrics`).
    cells: HashMap<ClassId, &'static LocalCell>,
}

/// One acquisition in this many has its hold time measured (see `metrics`).
const HOLD_SAMPLE: u32 = 16;

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

impl ThreadState {
    fn new() -> Self {
        let id = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
        PENDING.lock().insert(id, Vec::new());
        Self {
            id,
            stack: Stack::default(),
            classes: ClassCache::new(),
            validated: KeySet::default(),
            epoch: EPOCH.load(Ordering::Relaxed),
            name: None,
            misses: 0,
            sampled: 0,
            cells: HashMap::new(),
        }
    }

    /// Applies releases queued by other threads and forgets caches from
    /// before a `reset`.
    #[inline]
    fn sync(&mut self) {
        if PENDING_COUNT.load(Ordering::Relaxed) != 0 {
            let mine = PENDING
                .lock()
                .get_mut(&self.id)
                .map(std::mem::take)
                .unwrap_or_default();
            PENDING_COUNT.fetch_sub(mine.len(), Ordering::Relaxed);
            for seq in mine {
                self.stack.remove(seq);
            }
        }
        let epoch = EPOCH.load(Ordering::Relaxed);
        if self.epoch != epoch {
            self.epoch = epoch;
            self.validated.clear();
        }
    }

    fn context(&mut self) -> Arc<str> {
        self.name
            .get_or_insert_with(|| {
                let t = std::thread::current();
                match t.name() {
                    Some(name) => name.into(),
                    None => format!("{:?}", t.id()).into(),
                }
            })
            .clone()
    }

    /// The node of a class, its counters and this thread's counter cell.
    #[inline]
    fn resolve(
        &mut self,
        class: ClassKey,
        subclass: u32,
    ) -> (ClassId, &'static ClassStats, &'static LocalCell) {
        self.classes.node(class, subclass, &mut self.cells)
    }

    /// The bookkeeping of a new held entry; one acquisition in
    /// [`HOLD_SAMPLE`] has its hold timed. `cell` is `None` for a task's
    /// entry (counted on the class, since any thread may release it).
    #[inline]
    fn meta(
        &mut self,
        stats: &'static ClassStats,
        cell: Option<&'static LocalCell>,
        site: &'static Location<'static>,
        instance: usize,
    ) -> HeldMeta {
        self.sampled = self.sampled.wrapping_add(1);
        let since = self.sampled.is_multiple_of(HOLD_SAMPLE).then(Instant::now);
        HeldMeta {
            site,
            instance,
            stats,
            cell,
            since,
        }
    }

    fn remember(&mut self, key: u64) {
        if self.validated.len() >= LOCAL_CACHE_MAX {
            self.validated.clear();
        }
        self.validated.insert(key);
    }
}

impl Drop for ThreadState {
    fn drop(&mut self) {
        for (&node, &cell) in &self.cells {
            registry::info(node).stats.return_cell(cell);
        }
        if let Some(left) = PENDING.lock().remove(&self.id) {
            PENDING_COUNT.fetch_sub(left.len(), Ordering::Relaxed);
        }
    }
}

thread_local! {
    static THREAD: RefCell<ThreadState> = RefCell::new(ThreadState::new());
}

/// Releases made on another thread than the acquiring one, per owner thread
/// id. A thread's key exists while the thread does, so releases for threads
/// that already exited are dropped instead of piling up.
static PENDING: LazyLock<Mutex<HashMap<u64, Vec<u64>>>> = LazyLock::new(Default::default);
static PENDING_COUNT: AtomicUsize = AtomicUsize::new(0);

fn queue_remote_release(owner: u64, seq: u64) {
    let mut pending = PENDING.lock();
    if let Some(list) = pending.get_mut(&owner) {
        list.push(seq);
        PENDING_COUNT.fetch_add(1, Ordering::Relaxed);
    }
}

/// Bumped by `reset`; caches filled under an older epoch are stale.
static EPOCH: AtomicU64 = AtomicU64::new(0);
static GRAPH: LazyLock<Mutex<Graph>> = LazyLock::new(Default::default);
/// Chains validated by any thread: a thread's first walk of a chain another
/// thread already checked costs a read lock, not the graph mutex.
static VALIDATED: LazyLock<RwLock<KeySet>> = LazyLock::new(Default::default);

/// Everything the slow path needs, copied out of the thread or task state
/// so no borrow or lock is held while it runs.
struct Miss {
    key: u64,
    epoch: u64,
    node: ClassId,
    access: Access,
    site: &'static Location<'static>,
    opts: AcquireOpts,
    chain: Vec<Held>,
    context: Arc<str>,
}

/// Records that the current thread is about to take (or wait for) `class`,
/// checks the order, reports violations, and returns the entry that marks the
/// class held until dropped.
///
/// Call it *before* blocking on the underlying lock: a violation is reported
/// before the thread can hang, and a panicking handler leaves the lock
/// untaken.
pub(crate) fn on_acquire(
    class: ClassKey,
    kind: AcquireKind,
    site: &'static Location<'static>,
    opts: AcquireOpts,
    instance: usize,
) -> HeldEntry {
    let access = Access::from(kind);
    // The steady state is one borrow of the thread state: a chain already
    // validated is pushed at once.
    let fast = THREAD.try_with(|t| {
        let mut t = t.borrow_mut();
        t.sync();
        let (node, stats, cell) = t.resolve(class, opts.subclass);
        if !t.stack.is_empty() {
            let key = chain_key(
                t.stack.top_hash(),
                EMPTY_CHAIN,
                node,
                access,
                opts.report,
                opts.ordered,
            );
            if !t.validated.contains(&key) {
                t.misses += 1;
                return Err(Miss {
                    key,
                    epoch: t.epoch,
                    node,
                    access,
                    site,
                    opts,
                    chain: t.stack.entries().to_vec(),
                    context: t.context(),
                });
            }
        }
        let meta = t.meta(stats, Some(cell), site, instance);
        let seq = t.stack.push(node, access, meta);
        Ok(HeldEntry {
            owner: Owner::Thread(t.id),
            seq,
            stats: Some(stats),
        })
    });
    match fast {
        Ok(Ok(entry)) => entry,
        Ok(Err(miss)) => on_miss(miss, class, instance),
        // The thread is being torn down: check nothing, hold nothing.
        Err(_) => HeldEntry::NOBODY,
    }
}

/// The slow half of [`on_acquire`]: check the chain, report, then push.
#[cold]
#[inline(never)]
fn on_miss(miss: Miss, class: ClassKey, instance: usize) -> HeldEntry {
    let (node, access, site, subclass) = (miss.node, miss.access, miss.site, miss.opts.subclass);
    settle(miss, check);
    THREAD.with(|t| {
        let mut t = t.borrow_mut();
        let (_, stats, cell) = t.resolve(class, subclass);
        let meta = t.meta(stats, Some(cell), site, instance);
        let seq = t.stack.push(node, access, meta);
        HeldEntry {
            owner: Owner::Thread(t.id),
            seq,
            stats: Some(stats),
        }
    })
}

/// Salts the cache key of a signal, so a notify never hits the entry of an
/// acquisition of the same class under the same chain.
const SIGNAL_SALT: u64 = 0x5167_4e41_4c00_0001;

/// Records that the current thread signals `class` (notifies a condvar)
/// while holding its chain: an edge `class → h` for every held `h`.
///
/// A waiter on `class` is woken only by such a signal, so whoever waits on
/// `class` while holding `h` waits for a thread that first needs `h`:
/// the edges `h → class` (the wait) and `class → h` (the signal) close a
/// cycle, reported like any other on its first occurrence. Cached like an
/// acquisition, so a steady-state notify costs one lookup.
pub(crate) fn on_signal(class: ClassKey, site: &'static Location<'static>) {
    let miss = THREAD.try_with(|t| {
        let mut t = t.borrow_mut();
        t.sync();
        if t.stack.is_empty() {
            return None;
        }
        let (node, _, _) = t.resolve(class, 0);
        let key = chain_key(
            t.stack.top_hash(),
            SIGNAL_SALT,
            node,
            Access::Exclusive,
            true,
            false,
        );
        if t.validated.contains(&key) {
            return None;
        }
        t.misses += 1;
        Some(Miss {
            key,
            epoch: t.epoch,
            node,
            access: Access::Exclusive,
            site,
            opts: AcquireOpts::BLOCKING,
            chain: t.stack.entries().to_vec(),
            context: t.context(),
        })
    });
    if let Ok(Some(miss)) = miss {
        settle(miss, check_signal);
    }
}

/// Runs `check` on a miss, caches the chain as validated for this thread,
/// and hands what was found to the handler, with nothing held.
fn settle(miss: Miss, check: fn(Miss) -> Vec<Violation>) {
    let (key, epoch) = (miss.key, miss.epoch);
    let violations = check(miss);
    let _ = THREAD.try_with(|t| {
        let mut t = t.borrow_mut();
        if t.epoch == epoch {
            t.remember(key);
        }
    });
    for v in &violations {
        handler::dispatch(v);
    }
}

/// [`on_acquire`] for an async guard: the class is held by the task `set`
/// (checked against the set and the current thread's sync stack).
pub(crate) fn on_acquire_in(
    set: &HeldSet,
    class: ClassKey,
    kind: AcquireKind,
    site: &'static Location<'static>,
    opts: AcquireOpts,
    instance: usize,
) -> HeldEntry {
    let access = Access::from(kind);
    let inner = &set.inner;
    let miss = {
        let stack = inner.stack.lock();
        THREAD.try_with(|t| {
            let mut t = t.borrow_mut();
            t.sync();
            let (node, _, _) = t.resolve(class, opts.subclass);
            if t.stack.is_empty() && stack.is_empty() {
                return Err(node);
            }
            let key = chain_key(
                t.stack.top_hash(),
                stack.top_hash(),
                node,
                access,
                opts.report,
                opts.ordered,
            );
            if t.validated.contains(&key) {
                return Err(node);
            }
            t.misses += 1;
            let mut chain = t.stack.entries().to_vec();
            chain.extend_from_slice(stack.entries());
            Ok(Miss {
                key,
                epoch: t.epoch,
                node,
                access,
                site,
                opts,
                chain,
                context: inner.label.clone(),
            })
        })
    };
    let node = match miss {
        Err(_) => registry::intern(class, opts.subclass),
        Ok(Err(node)) => node,
        Ok(Ok(miss)) => {
            let node = miss.node;
            settle(miss, check);
            node
        }
    };
    let stats = registry::info(node).stats;
    let meta = THREAD
        .try_with(|t| t.borrow_mut().meta(stats, None, site, instance))
        .unwrap_or(HeldMeta {
            site,
            instance,
            stats,
            cell: None,
            since: None,
        });
    let seq = inner.stack.lock().push(node, access, meta);
    HeldEntry {
        owner: Owner::Task(inner.clone()),
        seq,
        stats: Some(meta.stats),
    }
}

/// The slow path: consult the global cache, then the graph. Returns the
/// violations to report (the caller dispatches them with nothing held).
fn check(miss: Miss) -> Vec<Violation> {
    if VALIDATED.read().contains(&miss.key) {
        return Vec::new();
    }
    // Captured before taking the graph lock: with RUST_BACKTRACE set this
    // walks the stack, and other threads should not wait for that.
    let backtrace = Arc::new(Backtrace::capture());
    let info = |from_site| EdgeInfo {
        from_site,
        to_site: miss.site,
        context: miss.context.clone(),
        backtrace: Some(backtrace.clone()),
    };
    let mut found: Vec<(ViolationKind, Vec<Step>)> = Vec::new();
    {
        let mut graph = GRAPH.lock();
        if EPOCH.load(Ordering::Relaxed) != miss.epoch {
            // A reset raced with us; let the next acquisition recheck.
            return Vec::new();
        }
        let mut seen_self = false;
        let mut done: Vec<ClassId> = Vec::with_capacity(miss.chain.len());
        for h in &miss.chain {
            if h.node == miss.node {
                if seen_self || !miss.opts.report || miss.opts.ordered {
                    continue;
                }
                seen_self = true;
                let kind = if miss.access.conflicts_with(h.access) {
                    ViolationKind::SelfDeadlock
                } else {
                    ViolationKind::RecursiveRead
                };
                if graph.add_self(miss.node, h.access, miss.access, || info(h.site)) {
                    let step = Step {
                        from: h.node,
                        to: miss.node,
                        held: h.access,
                        want: miss.access,
                        info: info(h.site),
                    };
                    found.push((kind, vec![step]));
                }
                continue;
            }
            if done.contains(&h.node) {
                continue;
            }
            done.push(h.node);
            let added = graph.add(
                h.node,
                miss.node,
                h.access,
                miss.access,
                miss.opts.report,
                || info(h.site),
            );
            if let Added::Cycle(cycle) = added
                && miss.opts.report
            {
                found.push((ViolationKind::LockOrder, cycle));
            }
        }
    }
    VALIDATED.write().insert(miss.key);
    violations_of(found, &miss)
}

/// [`check`] for a signal (see [`on_signal`]): edges from the signalled
/// class to each held one.
fn check_signal(miss: Miss) -> Vec<Violation> {
    if VALIDATED.read().contains(&miss.key) {
        return Vec::new();
    }
    let backtrace = Arc::new(Backtrace::capture());
    let mut found: Vec<(ViolationKind, Vec<Step>)> = Vec::new();
    {
        let mut graph = GRAPH.lock();
        if EPOCH.load(Ordering::Relaxed) != miss.epoch {
            return Vec::new();
        }
        let mut done: Vec<ClassId> = Vec::with_capacity(miss.chain.len());
        for h in &miss.chain {
            if h.node == miss.node || done.contains(&h.node) {
                continue;
            }
            done.push(h.node);
            let info = || EdgeInfo {
                from_site: miss.site,
                to_site: h.site,
                context: miss.context.clone(),
                backtrace: Some(backtrace.clone()),
            };
            if let Added::Cycle(cycle) =
                graph.add(miss.node, h.node, miss.access, h.access, true, info)
            {
                found.push((ViolationKind::LockOrder, cycle));
            }
        }
    }
    VALIDATED.write().insert(miss.key);
    violations_of(found, &miss)
}

/// Turns the cycles found for `miss` into reports.
fn violations_of(found: Vec<(ViolationKind, Vec<Step>)>, miss: &Miss) -> Vec<Violation> {
    if found.is_empty() {
        return Vec::new();
    }
    let held: Vec<Acquisition> = miss.chain.iter().map(Held::acquisition).collect();
    let acquiring = Acquisition::new(class_info(miss.node), miss.access, miss.site);
    found
        .into_iter()
        .map(|(kind, steps)| {
            let edges = steps
                .into_iter()
                .map(|s| {
                    EdgeReport::new(
                        Acquisition::new(class_info(s.from), s.held, s.info.from_site),
                        Acquisition::new(class_info(s.to), s.want, s.info.to_site),
                        s.info.context,
                        s.info.backtrace,
                    )
                })
                .collect();
            Violation::new(kind, miss.context.clone(), acquiring, held.clone(), edges)
        })
        .collect()
}

fn class_info(node: ClassId) -> ClassInfo {
    let info = registry::info(node);
    ClassInfo::new(info.key, info.subclass)
}

/// The calling thread's held locks, oldest first.
pub(crate) fn held_locks() -> Vec<Acquisition> {
    THREAD
        .try_with(|t| {
            let mut t = t.borrow_mut();
            t.sync();
            t.stack.acquisitions()
        })
        .unwrap_or_default()
}

/// Forgets the graph and every validated chain, and the calling thread's
/// held stack; class ids stay (other threads' caches and held entries still
/// name them).
pub(crate) fn reset() {
    {
        let mut graph = GRAPH.lock();
        *graph = Graph::default();
        VALIDATED.write().clear();
        EPOCH.fetch_add(1, Ordering::Relaxed);
    }
    let _ = THREAD.try_with(|t| {
        let mut t = t.borrow_mut();
        t.stack.clear();
        t.sync();
    });
}

/// The graph in Graphviz DOT.
pub(crate) fn lock_graph_dot() -> String {
    // Copy the edges out first: registry lookups must not nest in the graph
    // lock, and the formatting need not hold it.
    let edges: Vec<(ClassId, ClassId, bool, bool, String)> = {
        let graph = GRAPH.lock();
        let mut edges: Vec<_> = graph
            .edges()
            .map(|(&(a, b), e)| {
                let modes: Vec<String> = e
                    .pairs()
                    .map(|(h, w)| format!("{}{}", letter(h), letter(w)))
                    .collect();
                (a, b, e.violating, e.tried_only(), modes.join(","))
            })
            .collect();
        edges.sort_by_key(|&(a, b, ..)| (a, b));
        edges
    };
    let mut nodes: Vec<ClassId> = edges.iter().flat_map(|&(a, b, ..)| [a, b]).collect();
    nodes.sort();
    nodes.dedup();
    let mut out = String::from("digraph strata_locks {\n  rankdir=LR;\n  node [shape=box];\n");
    for n in nodes {
        let class = class_info(n);
        let l = class.location();
        let _ = writeln!(
            out,
            "  n{} [label=\"{}\\n{}:{}\"];",
            n.0,
            escape(&class.label()),
            escape(l.file()),
            l.line()
        );
    }
    for (a, b, violating, tried, modes) in edges {
        let mut attrs = format!("label=\"{modes}\"");
        if violating {
            attrs.push_str(", color=red, fontcolor=red, penwidth=2");
        }
        if tried {
            attrs.push_str(", style=dashed");
        }
        let _ = writeln!(out, "  n{} -> n{} [{attrs}];", a.0, b.0);
    }
    out.push_str("}\n");
    out
}

fn letter(a: Access) -> char {
    match a {
        Access::Exclusive => 'W',
        Access::Shared => 'R',
        Access::Upgradable => 'U',
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// This thread's validated-chain cache misses, for tests.
#[cfg(test)]
pub(crate) fn misses() -> u64 {
    THREAD.with(|t| t.borrow().misses)
}

#[cfg(test)]
pub(crate) fn has_edge(from: ClassId, to: ClassId) -> bool {
    GRAPH.lock().contains(from, to)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::diag::handler::set_thread_handler;
    use crate::diag::{ClassSlot, Handler};

    /// Every test uses its own class names, so tests running in parallel
    /// (including other modules' lock tests) cannot see each other's edges,
    /// and reports go to a per-thread handler, so nothing global changes.
    /// Only the `reset` test clears global state; it takes this for writing.
    static GLOBAL: RwLock<()> = RwLock::new(());

    struct Harness {
        seen: Arc<Mutex<Vec<Violation>>>,
        _global: parking_lot::RwLockReadGuard<'static, ()>,
    }

    impl Harness {
        fn new() -> Self {
            let global = GLOBAL.read();
            let h = Self {
                seen: Arc::default(),
                _global: global,
            };
            h.install();
            h
        }

        /// Routes this thread's reports to the harness.
        fn install(&self) {
            let sink = self.seen.clone();
            set_thread_handler(Some(Handler::Callback(Arc::new(move |v| {
                sink.lock().push(v.clone());
            }))));
        }

        /// Runs `f` on a new thread called `name` that reports to the harness.
        fn spawn<R: Send>(&self, name: &str, f: impl FnOnce() -> R + Send) -> R {
            std::thread::scope(|s| {
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn_scoped(s, || {
                        self.install();
                        f()
                    })
                    .unwrap()
                    .join()
                    .unwrap()
            })
        }

        fn count(&self) -> usize {
            self.seen.lock().len()
        }

        fn take(&self) -> Vec<Violation> {
            std::mem::take(&mut *self.seen.lock())
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            set_thread_handler(None);
        }
    }

    fn edges_among(classes: &[ClassKey]) -> usize {
        let ids: Vec<ClassId> = classes.iter().map(|&k| id(k)).collect();
        ids.iter()
            .flat_map(|&a| ids.iter().map(move |&b| (a, b)))
            .filter(|&(a, b)| has_edge(a, b))
            .count()
    }

    #[track_caller]
    fn class(name: &'static str) -> ClassKey {
        ClassSlot::named(name).key().unwrap()
    }

    #[track_caller]
    fn lock(k: ClassKey) -> HeldEntry {
        on_acquire(
            k,
            AcquireKind::Exclusive,
            Location::caller(),
            AcquireOpts::BLOCKING,
            0,
        )
    }

    #[track_caller]
    fn lock_with(k: ClassKey, kind: AcquireKind, opts: AcquireOpts) -> HeldEntry {
        on_acquire(k, kind, Location::caller(), opts, 0)
    }

    fn id(k: ClassKey) -> ClassId {
        registry::intern(k, 0)
    }

    #[test]
    fn ab_ba_is_reported_exactly_once() {
        let h = Harness::new();
        let (a, b) = (class("abba a"), class("abba b"));
        for _ in 0..3 {
            let _a = lock(a);
            let _b = lock(b);
        }
        assert_eq!(h.count(), 0);
        for _ in 0..3 {
            let _b = lock(b);
            let _a = lock(a);
        }
        // Another thread taking the same inverted order: still the same edge.
        h.spawn("second inverter", || {
            let _b = lock(b);
            let _a = lock(a);
        });
        let seen = h.take();
        assert_eq!(seen.len(), 1, "{seen:#?}");
        let v = &seen[0];
        assert_eq!(v.kind(), ViolationKind::LockOrder);
        assert_eq!(v.edges().len(), 2);
        assert_eq!(v.acquiring().class().name(), Some("abba a"));
        assert_eq!(v.held().len(), 1);
        assert_eq!(v.held()[0].class().name(), Some("abba b"));
        assert_eq!(v.cycle_id().len(), 16);
    }

    #[test]
    fn three_cycle_is_reported_with_every_edge() {
        let h = Harness::new();
        let (a, b, c) = (class("tri a"), class("tri b"), class("tri c"));
        {
            let _a = lock(a);
            let _b = lock(b);
        }
        {
            let _b = lock(b);
            let _c = lock(c);
        }
        assert_eq!(h.count(), 0);
        {
            let _c = lock(c);
            let _a = lock(a);
        }
        let seen = h.take();
        assert_eq!(seen.len(), 1);
        let names: Vec<_> = seen[0]
            .edges()
            .iter()
            .map(|e| {
                (
                    e.from().class().name().unwrap(),
                    e.to().class().name().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [("tri c", "tri a"), ("tri a", "tri b"), ("tri b", "tri c")]
        );
        let text = seen[0].to_string();
        assert!(text.contains("Chain exists of"), "{text}");
        assert!(
            text.contains("tri c --> tri a --> tri b --> tri c"),
            "{text}"
        );
    }

    #[test]
    fn consistent_order_has_no_false_positive_and_a_cached_steady_state() {
        let h = Harness::new();
        let (a, b, c) = (class("order a"), class("order b"), class("order c"));
        let once = || {
            let _a = lock(a);
            let _b = lock(b);
            let _c = lock(c);
        };
        once();
        assert_eq!(edges_among(&[a, b, c]), 3);
        let before = misses();
        for _ in 0..10_000 {
            once();
        }
        assert_eq!(h.count(), 0);
        // The steady state neither adds edges nor leaves the cache.
        assert_eq!(edges_among(&[a, b, c]), 3);
        assert_eq!(misses(), before);
    }

    #[test]
    fn other_threads_reuse_the_global_validated_chains() {
        let h = Harness::new();
        let (a, b) = (class("global a"), class("global b"));
        {
            let _a = lock(a);
            let _b = lock(b);
        }
        h.spawn("reuser", || {
            for _ in 0..100 {
                let _a = lock(a);
                let _b = lock(b);
            }
            // One local miss, answered by the global set.
            assert_eq!(misses(), 1);
        });
        assert_eq!(edges_among(&[a, b]), 1);
        assert_eq!(h.count(), 0);
    }

    #[test]
    fn same_class_nesting_is_a_self_deadlock() {
        let h = Harness::new();
        let acct = class("account");
        {
            let _x = lock(acct);
            let _y = lock(acct);
        }
        let seen = h.take();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].kind(), ViolationKind::SelfDeadlock);
        let text = seen[0].to_string();
        assert!(text.contains("lock(account);\n  lock(account);"), "{text}");
        assert!(text.contains("DEADLOCK"), "{text}");
        // Once per class and mode pair.
        {
            let _x = lock(acct);
            let _y = lock(acct);
        }
        assert_eq!(h.count(), 0);
    }

    #[test]
    fn ordered_and_nested_same_class_are_allowed() {
        let h = Harness::new();
        let (acct, node) = (class("ordered account"), class("tree node"));
        {
            let _x = lock_with(acct, AcquireKind::Exclusive, AcquireOpts::ORDERED);
            let _y = lock_with(acct, AcquireKind::Exclusive, AcquireOpts::ORDERED);
        }
        {
            let _parent = lock(node);
            let _child = lock_with(node, AcquireKind::Exclusive, AcquireOpts::nested(1));
            let _grandchild = lock_with(node, AcquireKind::Exclusive, AcquireOpts::nested(2));
        }
        assert_eq!(h.count(), 0);
        // Subclasses are ordered like any classes: child before parent inverts.
        {
            let _child = lock_with(node, AcquireKind::Exclusive, AcquireOpts::nested(1));
            let _parent = lock(node);
        }
        let seen = h.take();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].kind(), ViolationKind::LockOrder);
        assert_eq!(seen[0].held()[0].class().subclass(), 1);
    }

    #[test]
    fn read_read_cycles_are_fine_but_recursive_reads_are_not() {
        let h = Harness::new();
        let (a, b) = (class("rr a"), class("rr b"));
        let read = |k| lock_with(k, AcquireKind::Shared, AcquireOpts::BLOCKING);
        {
            let _a = read(a);
            let _b = read(b);
        }
        {
            let _b = read(b);
            let _a = read(a);
        }
        assert_eq!(h.count(), 0);
        // A writer on the cycle makes it real.
        {
            let _a = read(a);
            let _b = lock(b);
        }
        {
            let _b = lock(b);
            let _a = lock(a);
        }
        assert_eq!(h.take().len(), 1);

        let r = class("recursive read");
        {
            let _x = read(r);
            let _y = read(r);
        }
        let seen = h.take();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].kind(), ViolationKind::RecursiveRead);
        assert!(seen[0].to_string().contains("rlock(recursive read);"));
    }

    #[test]
    fn two_upgradable_readers_of_one_class_is_a_self_deadlock() {
        let h = Harness::new();
        let u = class("upgradable");
        let up = || lock_with(u, AcquireKind::Upgradable, AcquireOpts::BLOCKING);
        {
            let _x = up();
            let _y = up();
        }
        let seen = h.take();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].kind(), ViolationKind::SelfDeadlock);
    }

    #[test]
    fn try_records_edges_but_never_reports() {
        let h = Harness::new();
        let (a, b, c) = (class("try a"), class("try b"), class("try c"));
        {
            let _a = lock(a);
            let _b = lock_with(b, AcquireKind::Exclusive, AcquireOpts::TRY);
        }
        assert!(has_edge(id(a), id(b)));
        {
            let _b = lock(b);
            let _a = lock(a);
        }
        {
            // An inverted try is not reported either, nor a try of a held class.
            let _a = lock(a);
            let _b = lock_with(b, AcquireKind::Exclusive, AcquireOpts::TRY);
            let _a2 = lock_with(a, AcquireKind::Exclusive, AcquireOpts::TRY);
        }
        assert_eq!(h.count(), 0);
        // Blocking while holding a try-acquired lock is a real edge.
        {
            let _c = lock_with(c, AcquireKind::Exclusive, AcquireOpts::TRY);
            let _a = lock(a);
        }
        {
            let _a = lock(a);
            let _c = lock(c);
        }
        assert_eq!(h.count(), 1);
        let dot = lock_graph_dot();
        let tried = dot
            .lines()
            .find(|l| l.contains(&format!("n{} -> n{} ", id(a).0, id(b).0)))
            .unwrap();
        assert!(tried.contains("style=dashed"), "{dot}");
    }

    #[test]
    fn report_names_both_sites_threads_and_deadlock() {
        let h = Harness::new();
        let (a, b) = (class("site a"), class("site b"));
        {
            let _a = lock(a);
            let _b = lock(b);
        }
        let ab_site = h.spawn("inverter", || {
            let _b = lock(b);
            let _a = lock(a);
            line!()
        });
        let seen = h.take();
        assert_eq!(seen.len(), 1);
        let v = &seen[0];
        assert_eq!(v.context(), "inverter");
        let text = v.to_string();
        let file = file!();
        // Each edge names where both of its classes were acquired.
        for e in v.edges() {
            assert_eq!(e.from().site().file(), file);
            assert_eq!(e.to().site().file(), file);
            let from = format!("{}:{}", file, e.from().site().line());
            let to = format!("{}:{}", file, e.to().site().line());
            assert!(text.contains(&from) && text.contains(&to), "{text}");
        }
        assert_eq!(v.edges()[0].to().site().line(), ab_site - 1);
        // The class construction sites are there too.
        assert!(text.contains(&format!("site a ({}:", file)), "{text}");
        assert!(text.contains("'inverter'"), "{text}");
        assert!(text.contains("CPU0") && text.contains("CPU1"), "{text}");
        assert!(text.contains("*** DEADLOCK ***"), "{text}");
        assert!(format!("{v:?}").contains("LockOrder"));
    }

    #[test]
    fn dot_export_contains_the_edge_and_highlights_the_violation() {
        let h = Harness::new();
        let (a, b) = (class("dot a"), class("dot b"));
        {
            let _a = lock(a);
            let _b = lock(b);
        }
        let (ia, ib) = (id(a), id(b));
        let dot = lock_graph_dot();
        assert!(dot.starts_with("digraph strata_locks {"), "{dot}");
        assert!(dot.contains(&format!("n{} -> n{} ", ia.0, ib.0)), "{dot}");
        assert!(dot.contains("dot a\\n"), "{dot}");
        let line = |from: ClassId, to: ClassId| {
            dot.lines()
                .find(|l| l.contains(&format!("n{} -> n{} ", from.0, to.0)))
                .map(str::to_owned)
        };
        assert!(!line(ia, ib).unwrap().contains("red"), "{dot}");
        {
            let _b = lock(b);
            let _a = lock(a);
        }
        assert_eq!(h.count(), 1);
        let dot = lock_graph_dot();
        let red = dot
            .lines()
            .find(|l| l.contains(&format!("n{} -> n{} ", ib.0, ia.0)))
            .unwrap();
        assert!(red.contains("color=red"), "{dot}");
    }

    #[test]
    fn a_panicking_handler_leaves_the_engine_consistent() {
        let h = Harness::new();
        set_thread_handler(Some(Handler::Panic));
        let (a, b) = (class("panic a"), class("panic b"));
        {
            let _a = lock(a);
            let _b = lock(b);
        }
        let result = std::panic::catch_unwind(|| {
            let _b = lock(b);
            let _a = lock(a); // panics before A is held
            unreachable!();
        });
        let msg = result.unwrap_err();
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(msg.contains("DEADLOCK"), "{msg}");
        assert!(held_locks().is_empty());
        // Reported once: the same inversion now passes.
        {
            let _b = lock(b);
            let _a = lock(a);
            assert_eq!(held_locks().len(), 2);
        }
        assert!(held_locks().is_empty());
        drop(h);
    }

    #[test]
    fn a_callback_may_take_locks_itself() {
        let _h = Harness::new();
        let (a, b, cb) = (class("re a"), class("re b"), class("callback lock"));
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        set_thread_handler(Some(Handler::Callback(Arc::new(move |_| {
            let _g = lock(cb);
            c2.fetch_add(1, Ordering::Relaxed);
        }))));
        {
            let _a = lock(a);
            let _b = lock(b);
        }
        {
            let _b = lock(b);
            let _a = lock(a);
        }
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn out_of_order_and_cross_thread_releases() {
        let h = Harness::new();
        let (a, b, c) = (class("ooo a"), class("ooo b"), class("ooo c"));
        let ea = lock(a);
        let eb = lock(b);
        drop(ea); // A released first; B still held
        let names: Vec<_> = held_locks().iter().map(|l| l.class().name()).collect();
        assert_eq!(names, [Some("ooo b")]);
        // B's entry is released by another thread (a Send permit or lease).
        std::thread::spawn(move || drop(eb)).join().unwrap();
        {
            let _c = lock(c);
            let names: Vec<_> = held_locks().iter().map(|l| l.class().name()).collect();
            assert_eq!(names, [Some("ooo c")]);
        }
        assert!(!has_edge(id(b), id(c)));
        assert_eq!(h.count(), 0);
    }

    #[test]
    fn task_held_sets_follow_the_task_across_threads() {
        let h = Harness::new();
        let (a, b) = (class("task a"), class("task b"));
        let t1 = HeldSet::named("task 1");
        let t2 = HeldSet::named("task 2");
        let take = |set: &HeldSet, k| {
            on_acquire_in(
                set,
                k,
                AcquireKind::Exclusive,
                Location::caller(),
                AcquireOpts::BLOCKING,
                0,
            )
        };
        // Task 1 takes A on one worker, is resumed on another and takes B.
        let ga = h.spawn("worker 1", || take(&t1, a));
        let gb = h.spawn("worker 2", || take(&t1, b));
        assert_eq!(t1.held().len(), 2);
        drop((ga, gb));
        assert!(t1.is_empty());
        assert_eq!(h.count(), 0);
        // Task 2: B then A, again hopping threads.
        let gb = h.spawn("worker 1", || take(&t2, b));
        let ga = h.spawn("worker 2", || take(&t2, a));
        drop((ga, gb));
        let seen = h.take();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].context(), "task 2");
        assert_eq!(seen[0].edges()[1].context(), "task 1");
        // A sync lock held by the polling thread is part of the task's chain.
        let s = class("task sync");
        {
            let _s = lock(s);
            let _ga = take(&t1, a);
        }
        {
            let _ga = take(&t1, a);
            let _s = lock(s); // thread-side acquire does not see the task set
        }
        assert_eq!(h.count(), 0);
        {
            let _ga = take(&t1, a);
            let _s = take(&t1, s);
        }
        assert_eq!(h.count(), 1);
    }

    #[test]
    fn reset_forgets_orders_and_this_threads_held_locks() {
        // Runs alone among this module's tests: it clears global state.
        let global = GLOBAL.write();
        let seen = Arc::new(AtomicUsize::new(0));
        let sink = seen.clone();
        set_thread_handler(Some(Handler::Callback(Arc::new(move |_| {
            sink.fetch_add(1, Ordering::Relaxed);
        }))));
        let (a, b) = (class("reset a"), class("reset b"));
        {
            let _a = lock(a);
            let _b = lock(b);
        }
        let leaked = lock(a);
        reset();
        assert!(held_locks().is_empty());
        assert_eq!(edges_among(&[a, b]), 0);
        {
            let _b = lock(b);
            let _a = lock(a);
        }
        drop(leaked); // released after the reset: ignored
        assert_eq!(seen.load(Ordering::Relaxed), 0);
        assert_eq!(edges_among(&[a, b]), 1);
        set_thread_handler(None);
        drop(global);
    }
}
