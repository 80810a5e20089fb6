//! Interning of lock classes into dense ids.
//!
//! The order graph wants small integers (vectors indexed by node, cheap
//! hashing of chains), while primitives only carry a [`ClassKey`]. A node is
//! a class plus a `lock_nested` subclass, so `(A, 0)` and `(A, 1)` are
//! different vertices, exactly as in lockdep.
//!
//! Named classes are interned by name alone: two `Mutex::named("accounts", ..)`
//! built at different sites are one class (naming is how a user says "these
//! are the same kind of lock"); the first construction site registered is the
//! one reports show. Unnamed classes are interned by the *value* of their
//! construction site, so the same site seen through two `Location` copies is
//! still one class.
//!
//! The global table is a `parking_lot::RwLock` rather than a `crate::loom`
//! type: it is diagnostic bookkeeping, not an algorithm whose interleavings we
//! model, and loom would otherwise explore every registry access of every
//! model test. The hot path does not touch it: each thread keeps a small
//! direct-mapped cache keyed by the `Location` and name pointers.

use std::collections::HashMap;
use std::panic::Location;
use std::sync::LazyLock;

use parking_lot::RwLock;

use super::class::ClassKey;
use super::metrics::{ClassStats, LocalCell};

/// A dense id for a (class, subclass) node of the order graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ClassId(pub(crate) u32);

impl ClassId {
    #[inline]
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

/// What the registry knows about a node.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NodeInfo {
    pub(crate) key: ClassKey,
    pub(crate) subclass: u32,
    /// Leaked once per node: classes are few and live as long as the process.
    pub(crate) stats: &'static ClassStats,
}

/// How a class is identified for interning (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Ident {
    Named(&'static str),
    Site(&'static str, u32, u32),
}

impl Ident {
    fn of(key: &ClassKey) -> Self {
        match key.name() {
            Some(name) => Ident::Named(name),
            None => {
                let l = key.location();
                Ident::Site(l.file(), l.line(), l.column())
            }
        }
    }
}

#[derive(Default)]
struct Registry {
    ids: HashMap<(Ident, u32), ClassId>,
    nodes: Vec<NodeInfo>,
}

static REGISTRY: LazyLock<RwLock<Registry>> = LazyLock::new(Default::default);

/// Interns `(key, subclass)` through the global table (the slow path).
pub(crate) fn intern(key: ClassKey, subclass: u32) -> ClassId {
    let ident = (Ident::of(&key), subclass);
    if let Some(&id) = REGISTRY.read().ids.get(&ident) {
        return id;
    }
    let mut reg = REGISTRY.write();
    if let Some(&id) = reg.ids.get(&ident) {
        return id;
    }
    let id = ClassId(u32::try_from(reg.nodes.len()).expect("more than u32::MAX lock classes"));
    reg.nodes.push(NodeInfo {
        key,
        subclass,
        stats: Box::leak(Box::default()),
    });
    reg.ids.insert(ident, id);
    id
}

/// The class and subclass of `id`.
pub(crate) fn info(id: ClassId) -> NodeInfo {
    REGISTRY.read().nodes[id.index()]
}

/// Every node with its counters, in registration order.
pub(crate) fn all_stats() -> Vec<(NodeInfo, &'static ClassStats)> {
    REGISTRY
        .read()
        .nodes
        .iter()
        .map(|n| (*n, n.stats))
        .collect()
}

/// Number of nodes ever registered (ids are `0..count`).
#[cfg(test)]
pub(crate) fn count() -> usize {
    REGISTRY.read().nodes.len()
}

const CACHE_SLOTS: usize = 64;

/// A per-thread direct-mapped cache in front of [`intern`].
///
/// Keyed by pointers, not values: a primitive's `ClassKey` always points at
/// the same `'static` `Location` and name, so pointer equality is the cheap
/// exact test and a miss merely falls back to the global table.
pub(crate) struct ClassCache {
    slots: [Slot; CACHE_SLOTS],
}

#[derive(Clone, Copy)]
struct Slot {
    location: usize,
    name: usize,
    name_len: usize,
    subclass: u32,
    id: ClassId,
    stats: Option<&'static ClassStats>,
    cell: Option<&'static LocalCell>,
}

const EMPTY: Slot = Slot {
    location: 0,
    name: 0,
    name_len: 0,
    subclass: 0,
    id: ClassId(0),
    stats: None,
    cell: None,
};

impl ClassCache {
    pub(crate) const fn new() -> Self {
        Self {
            slots: [EMPTY; CACHE_SLOTS],
        }
    }

    /// The id of `(key, subclass)`, from the cache when possible.
    #[cfg(test)]
    pub(crate) fn get(&mut self, key: ClassKey, subclass: u32) -> ClassId {
        self.node(key, subclass, &mut HashMap::new()).0
    }

    /// The node of `(key, subclass)`, its counters, and this thread's
    /// counter cell for it (`cells` holds the thread's cells by node, so a
    /// slot evicted and filled again finds the same cell).
    #[inline]
    pub(crate) fn node(
        &mut self,
        key: ClassKey,
        subclass: u32,
        cells: &mut HashMap<ClassId, &'static LocalCell>,
    ) -> (ClassId, &'static ClassStats, &'static LocalCell) {
        let location = std::ptr::from_ref::<Location<'static>>(key.location()) as usize;
        let (name, name_len) = key
            .name()
            .map_or((0, 0), |n| (n.as_ptr() as usize, n.len()));
        // Locations are at least 4-byte aligned, so drop the always-zero bits
        // before folding in the rest.
        let h = (location >> 3) ^ (name >> 1) ^ (subclass as usize).wrapping_mul(0x9E37_79B9);
        let slot = &mut self.slots[h % CACHE_SLOTS];
        if slot.location == location
            && slot.name == name
            && slot.name_len == name_len
            && slot.subclass == subclass
            && let (Some(stats), Some(cell)) = (slot.stats, slot.cell)
        {
            return (slot.id, stats, cell);
        }
        let id = intern(key, subclass);
        let stats = info(id).stats;
        let cell = *cells.entry(id).or_insert_with(|| stats.checkout_cell());
        *slot = Slot {
            location,
            name,
            name_len,
            subclass,
            id,
            stats: Some(stats),
            cell: Some(cell),
        };
        (id, stats, cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::ClassSlot;

    #[track_caller]
    fn site() -> ClassKey {
        ClassSlot::site().key().unwrap()
    }

    #[test]
    fn sites_and_subclasses_are_distinct_nodes() {
        let a = site();
        let b = site();
        let mut cache = ClassCache::new();
        let ia = cache.get(a, 0);
        assert_eq!(cache.get(a, 0), ia);
        assert_eq!(intern(a, 0), ia);
        assert_ne!(cache.get(b, 0), ia);
        let nested = cache.get(a, 1);
        assert_ne!(nested, ia);
        assert_eq!(info(nested).subclass, 1);
        assert_eq!(info(nested).key, a);
    }

    #[test]
    fn named_classes_merge_across_sites() {
        let x = ClassSlot::named("registry-test-merged").key().unwrap();
        let y = ClassSlot::named("registry-test-merged").key().unwrap();
        assert_ne!(x.location(), y.location());
        let mut cache = ClassCache::new();
        assert_eq!(cache.get(x, 0), cache.get(y, 0));
        assert!(count() > cache.get(x, 0).index());
    }
}
