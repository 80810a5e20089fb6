//! Held-lock stacks: one per thread for sync guards, and [`HeldSet`], one per
//! task for async guards.

#[cfg(strata_checked)]
use std::panic::Location;
#[cfg(strata_checked)]
use std::sync::Arc;
#[cfg(strata_checked)]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(strata_checked)]
use std::time::Instant;

#[cfg(strata_checked)]
use super::metrics::{ClassStats, LocalCell};
#[cfg(strata_checked)]
use super::registry::ClassId;
use super::report::Acquisition;
#[cfg(strata_checked)]
use super::report::{Access, ClassInfo};

/// One held lock. `hash` covers this entry and every entry below it, so the
/// chain key of a new acquisition is one mix away (see [`chain_key`]).
#[cfg(strata_checked)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Held {
    pub(crate) node: ClassId,
    pub(crate) access: Access,
    pub(crate) site: &'static Location<'static>,
    pub(crate) seq: u64,
    /// The address of the primitive instance (0 for a pseudo-lock class),
    /// so the watchdog can tell who holds what a waiter wants.
    pub(crate) instance: usize,
    pub(crate) stats: &'static ClassStats,
    /// The owning thread's counter cell; `None` in a task's set, whose
    /// entries may be released on any thread.
    cell: Option<&'static LocalCell>,
    /// When the hold started, for the sampled hold times of `metrics()`.
    pub(crate) since: Option<Instant>,
    hash: u64,
}

/// What [`Stack::push`] records besides the class and mode.
#[cfg(strata_checked)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeldMeta {
    pub(crate) site: &'static Location<'static>,
    pub(crate) instance: usize,
    pub(crate) stats: &'static ClassStats,
    pub(crate) cell: Option<&'static LocalCell>,
    pub(crate) since: Option<Instant>,
}

#[cfg(strata_checked)]
impl Held {
    fn released(&self) {
        match self.cell {
            Some(cell) => cell.released(),
            None => self.stats.released_shared(),
        }
        if let Some(since) = self.since {
            self.stats.held_for(since.elapsed());
        }
    }

    pub(crate) fn acquisition(&self) -> Acquisition {
        let info = super::registry::info(self.node);
        Acquisition::new(
            ClassInfo::new(info.key, info.subclass),
            self.access,
            self.site,
        )
    }
}

/// murmur3's 64-bit finalizer: a bijection with full avalanche, so chained
/// prefix hashes do not collapse the way a plain multiply-xor would.
#[cfg(strata_checked)]
#[inline]
pub(crate) fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(strata_checked)]
#[inline]
fn step(prev: u64, node: ClassId, access: Access) -> u64 {
    fmix(prev.rotate_left(23) ^ (u64::from(node.0) << 2 | access.index() as u64) ^ 0x2545_f491)
}

/// The prefix hash of an empty stack.
#[cfg(strata_checked)]
pub(crate) const EMPTY_CHAIN: u64 = 0x9e37_79b9_7f4a_7c15;

/// A stack of held locks that tolerates out-of-order release.
#[cfg(strata_checked)]
#[derive(Debug, Default)]
pub(crate) struct Stack {
    entries: Vec<Held>,
    next_seq: u64,
}

#[cfg(strata_checked)]
impl Stack {
    pub(crate) fn entries(&self) -> &[Held] {
        &self.entries
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn top_hash(&self) -> u64 {
        self.entries.last().map_or(EMPTY_CHAIN, |h| h.hash)
    }

    /// Pushes an entry and returns the sequence number that releases it.
    pub(crate) fn push(&mut self, node: ClassId, access: Access, meta: HeldMeta) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let hash = step(self.top_hash(), node, access);
        match meta.cell {
            Some(cell) => cell.acquired(),
            None => meta.stats.acquired_shared(),
        }
        self.entries.push(Held {
            node,
            access,
            site: meta.site,
            seq,
            instance: meta.instance,
            stats: meta.stats,
            cell: meta.cell,
            since: meta.since,
            hash,
        });
        seq
    }

    /// Removes the entry `seq`; false if it is not here (already removed, or
    /// the stack was cleared by `reset`).
    pub(crate) fn remove(&mut self, seq: u64) -> bool {
        // Guards usually drop in reverse order: the top goes with no search,
        // no move and no rehash (the entries below keep their hashes).
        if self.entries.last().is_some_and(|h| h.seq == seq) {
            if let Some(held) = self.entries.pop() {
                held.released();
            }
            return true;
        }
        let Some(i) = self.entries.iter().rposition(|h| h.seq == seq) else {
            return false;
        };
        let held = self.entries.remove(i);
        held.released();
        self.rehash_from(i);
        true
    }

    /// Changes the mode of a held entry (downgrade, upgrade).
    pub(crate) fn set_access(&mut self, seq: u64, access: Access) {
        if let Some(i) = self.entries.iter().rposition(|h| h.seq == seq) {
            self.entries[i].access = access;
            self.rehash_from(i);
        }
    }

    fn rehash_from(&mut self, i: usize) {
        let mut prev = if i == 0 {
            EMPTY_CHAIN
        } else {
            self.entries[i - 1].hash
        };
        for h in &mut self.entries[i..] {
            h.hash = step(prev, h.node, h.access);
            prev = h.hash;
        }
    }

    pub(crate) fn clear(&mut self) {
        for held in self.entries.drain(..) {
            held.released();
        }
    }

    /// Starts timing the hold of entry `seq` (after a contended wait).
    pub(crate) fn set_since(&mut self, seq: u64, since: Option<Instant>) {
        if let Some(h) = self.entries.iter_mut().rfind(|h| h.seq == seq) {
            h.since = since;
        }
    }

    /// The entry `seq`, if held.
    pub(crate) fn get(&self, seq: u64) -> Option<&Held> {
        self.entries.iter().rfind(|h| h.seq == seq)
    }

    pub(crate) fn acquisitions(&self) -> Vec<Acquisition> {
        self.entries.iter().map(Held::acquisition).collect()
    }
}

/// The key of the validated-chain cache: the held chain (thread stack and
/// task set) plus the new acquisition and the flags that change its checks.
#[cfg(strata_checked)]
#[inline]
pub(crate) fn chain_key(
    thread: u64,
    task: u64,
    node: ClassId,
    access: Access,
    report: bool,
    ordered: bool,
) -> u64 {
    let flags = u64::from(report) | u64::from(ordered) << 1;
    fmix(step(thread ^ task.rotate_left(31), node, access) ^ flags << 60)
}

#[cfg(strata_checked)]
#[derive(Debug)]
pub(crate) struct SetInner {
    pub(crate) label: Arc<str>,
    pub(crate) stack: parking_lot::Mutex<Stack>,
}

/// The locks held by one async task, carried with the task instead of the
/// OS thread.
///
/// An async guard may be held across `.await` and resumed on another worker
/// thread, so a per-thread stack would both miss its edges and blame the
/// wrong thread. A `HeldSet` is a cheap shared handle (clone it into every
/// guard of the task); acquisitions made through it are checked against the
/// set *and* the current thread's sync stack, exactly like sync ones.
/// Zero-sized when checking is off.
///
/// ```
/// use strata::diag::{Class, HeldSet};
///
/// let task = HeldSet::named("task 7");
/// let class = Class::new("store");
/// let guard = class.enter_in(&task);
/// assert_eq!(task.held().len(), usize::from(strata::diag::checking_enabled()));
/// drop(guard);
/// assert!(task.is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct HeldSet {
    #[cfg(strata_checked)]
    pub(crate) inner: Arc<SetInner>,
}

impl HeldSet {
    /// An empty set labelled `task #N` (N unique in the process).
    ///
    /// ```
    /// let set = strata::diag::HeldSet::new();
    /// assert!(set.is_empty());
    /// ```
    pub fn new() -> Self {
        #[cfg(strata_checked)]
        {
            static NEXT: AtomicU64 = AtomicU64::new(1);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            Self::named(&format!("task #{n}"))
        }
        #[cfg(not(strata_checked))]
        Self {}
    }

    /// An empty set whose reports name it `label` (a task name or id).
    ///
    /// ```
    /// let set = strata::diag::HeldSet::named("flusher");
    /// assert!(set.is_empty());
    /// ```
    #[cfg_attr(not(strata_checked), allow(unused_variables))]
    pub fn named(label: &str) -> Self {
        Self {
            #[cfg(strata_checked)]
            inner: Arc::new(SetInner {
                label: label.into(),
                stack: parking_lot::Mutex::new(Stack::default()),
            }),
        }
    }

    /// The locks this task holds, oldest first (empty when checking is off).
    ///
    /// ```
    /// let set = strata::diag::HeldSet::new();
    /// assert!(set.held().is_empty());
    /// ```
    pub fn held(&self) -> Vec<Acquisition> {
        #[cfg(strata_checked)]
        {
            self.inner.stack.lock().acquisitions()
        }
        #[cfg(not(strata_checked))]
        Vec::new()
    }

    /// Whether the task holds nothing.
    ///
    /// ```
    /// assert!(strata::diag::HeldSet::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        #[cfg(strata_checked)]
        {
            self.inner.stack.lock().is_empty()
        }
        #[cfg(not(strata_checked))]
        true
    }
}

impl Default for HeldSet {
    /// Same as [`HeldSet::new`].
    ///
    /// ```
    /// let set: strata::diag::HeldSet = Default::default();
    /// assert!(set.is_empty());
    /// ```
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, strata_checked))]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_release_keeps_hashes_consistent() {
        let stats: &'static ClassStats = Box::leak(Box::default());
        let here = HeldMeta {
            site: Location::caller(),
            instance: 0,
            stats,
            cell: None,
            since: None,
        };
        let mut s = Stack::default();
        let a = s.push(ClassId(1), Access::Exclusive, here);
        let _b = s.push(ClassId(2), Access::Shared, here);
        let c = s.push(ClassId(3), Access::Exclusive, here);
        assert!(s.remove(a));
        assert!(!s.remove(a));
        // Same chain built in order from scratch must hash the same.
        let mut fresh = Stack::default();
        fresh.push(ClassId(2), Access::Shared, here);
        fresh.push(ClassId(3), Access::Exclusive, here);
        assert_eq!(s.top_hash(), fresh.top_hash());
        s.set_access(c, Access::Shared);
        assert_ne!(s.top_hash(), fresh.top_hash());
    }

    #[test]
    fn chain_key_depends_on_flags_and_mode() {
        let base = chain_key(
            EMPTY_CHAIN,
            EMPTY_CHAIN,
            ClassId(4),
            Access::Exclusive,
            true,
            false,
        );
        assert_ne!(
            base,
            chain_key(
                EMPTY_CHAIN,
                EMPTY_CHAIN,
                ClassId(4),
                Access::Exclusive,
                false,
                false
            )
        );
        assert_ne!(
            base,
            chain_key(
                EMPTY_CHAIN,
                EMPTY_CHAIN,
                ClassId(4),
                Access::Shared,
                true,
                false
            )
        );
        assert_ne!(
            base,
            chain_key(
                EMPTY_CHAIN,
                EMPTY_CHAIN,
                ClassId(4),
                Access::Exclusive,
                true,
                true
            )
        );
    }
}
