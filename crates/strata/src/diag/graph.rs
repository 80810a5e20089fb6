//! The global class graph and its incremental cycle check.
//!
//! # Model
//!
//! An edge `A → B` means "some thread or task held A while taking B". Each
//! edge remembers which (held mode of A, requested mode of B) pairs were seen;
//! a thread waiting for a lock in mode `m` is blocked by a holder in mode `h`
//! only if `m` conflicts with `h` ([`Access::conflicts_with`]). A cycle is a
//! possible deadlock only if, at *every* class on it, the mode in which the
//! cycle's next thread waits conflicts with the mode in which the previous
//! thread holds it. This is lockdep's "strong path" rule with strata's read
//! locks treated as recursive across threads, and gives:
//!
//! - read→read cycles (`A(r)→B(r)`, `B(r)→A(r)`) are fine, and so is any
//!   cycle broken at one point where a reader waits on a reader;
//! - a write anywhere that meets a holder on the cycle makes it a violation.
//!
//! The one case this deliberately lets through is the cross-thread
//! read-read cycle of *writer-preferring* locks, which deadlocks only if two
//! further writers queue up at the right moment; SPEC asks for read→read
//! cycles not to be reported. The same-thread case — reading a class already
//! read — is caught separately (`RecursiveRead`) because it needs just one
//! writer.
//!
//! Edges recorded by `try_` acquisitions are kept (for the DOT export) but do
//! not take part in cycles: a thread that only *tries* cannot block, so a
//! cycle through such an edge cannot deadlock.
//!
//! # Algorithm
//!
//! Pearce–Kelly dynamic topological order over the blocking edges that do not
//! close a cycle: a new edge `x → y` with `ord(x) < ord(y)` costs O(1), which
//! is the common case; otherwise a forward search from `y` bounded by
//! `ord(x)` either finds `x` (a cycle) or yields the nodes to reorder. Edges
//! that close a cycle (allowed read-read cycles, or reported violations) are
//! kept aside as back edges; while any exist, new edges also get the
//! mode-aware search (a breadth-first search over (class, wait mode) states,
//! so the shortest violating cycle is reported). New edges only appear on a
//! validated-chain cache miss, so none of this is on the steady-state path.

use std::backtrace::Backtrace;
use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::Location;
use std::sync::Arc;

use super::registry::ClassId;
use super::report::Access;

/// What was known when an edge (with one mode pair) was first recorded.
#[derive(Clone, Debug)]
pub(crate) struct EdgeInfo {
    pub(crate) from_site: &'static Location<'static>,
    pub(crate) to_site: &'static Location<'static>,
    pub(crate) context: Arc<str>,
    pub(crate) backtrace: Option<Arc<Backtrace>>,
}

#[inline]
const fn pair(held: Access, want: Access) -> u16 {
    1 << (held.index() * 3 + want.index())
}

#[derive(Debug)]
pub(crate) struct Edge {
    /// Mode pairs seen from blocking acquisitions.
    strong: u16,
    /// Mode pairs seen only from `try_` acquisitions.
    tried: u16,
    /// First record per mode pair; blocking records replace try records.
    infos: Vec<(u16, bool, EdgeInfo)>,
    /// In the successor lists used by the mode-aware search.
    linked: bool,
    /// Part of the Pearce–Kelly order (false: a back edge).
    ordered: bool,
    /// Closed a reported cycle; drawn red.
    pub(crate) violating: bool,
}

impl Edge {
    fn info(&self, held: Access, want: Access) -> Option<&EdgeInfo> {
        let bit = pair(held, want);
        let mut fallback = None;
        for (b, strong, info) in &self.infos {
            if *b == bit && *strong {
                return Some(info);
            }
            if *b == bit {
                fallback = Some(info);
            }
        }
        fallback.or_else(|| self.infos.first().map(|(_, _, i)| i))
    }

    /// Whether only `try_` acquisitions ever took this edge.
    pub(crate) fn tried_only(&self) -> bool {
        self.strong == 0
    }

    /// The mode pairs seen, as `(held, wanted)`.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (Access, Access)> + '_ {
        let all = self.strong | self.tried;
        Access::ALL.into_iter().flat_map(move |h| {
            Access::ALL
                .into_iter()
                .filter(move |&w| all & pair(h, w) != 0)
                .map(move |w| (h, w))
        })
    }
}

/// One step of a cycle, with the modes that make it blocking.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub(crate) from: ClassId,
    pub(crate) to: ClassId,
    pub(crate) held: Access,
    pub(crate) want: Access,
    pub(crate) info: EdgeInfo,
}

/// What adding one edge found.
#[derive(Debug)]
pub(crate) enum Added {
    /// The edge and mode pair were already known: nothing changed.
    Known,
    /// Recorded; no violating cycle goes through it.
    Recorded,
    /// Recorded, and it closes this violating cycle (edge order: the new
    /// edge first, then around the cycle back to its source).
    Cycle(Vec<Step>),
}

#[derive(Debug, Default)]
pub(crate) struct Graph {
    edges: HashMap<(ClassId, ClassId), Edge>,
    /// Blocking successors (all of them, back edges included).
    succ: Vec<Vec<ClassId>>,
    /// Pearce–Kelly order: `ord[n]` is n's position; a permutation of 0..len.
    ord: Vec<u32>,
    order_out: Vec<Vec<ClassId>>,
    order_in: Vec<Vec<ClassId>>,
    back_edges: usize,
}

impl Graph {
    fn ensure(&mut self, node: ClassId) {
        let need = node.index() + 1;
        while self.ord.len() < need {
            // Appending at the end of the order is valid: the node has no edges.
            self.ord.push(self.ord.len() as u32);
            self.succ.push(Vec::new());
            self.order_out.push(Vec::new());
            self.order_in.push(Vec::new());
        }
    }

    pub(crate) fn edges(&self) -> impl Iterator<Item = (&(ClassId, ClassId), &Edge)> {
        self.edges.iter()
    }

    /// Whether an edge `from → to` is known (blocking or tried).
    #[cfg(test)]
    pub(crate) fn contains(&self, from: ClassId, to: ClassId) -> bool {
        self.edges.contains_key(&(from, to))
    }

    /// Records that `from` was held in mode `held` while `to` was taken in
    /// mode `want`; `strong` is false for `try_` acquisitions.
    ///
    /// `info` is called only when something new is recorded.
    pub(crate) fn add(
        &mut self,
        from: ClassId,
        to: ClassId,
        held: Access,
        want: Access,
        strong: bool,
        info: impl FnOnce() -> EdgeInfo,
    ) -> Added {
        debug_assert_ne!(from, to, "self edges are the caller's business");
        self.ensure(from.max(to));
        let bit = pair(held, want);
        let edge = self.edges.entry((from, to)).or_insert_with(|| Edge {
            strong: 0,
            tried: 0,
            infos: Vec::new(),
            linked: false,
            ordered: false,
            violating: false,
        });
        if !strong {
            if (edge.strong | edge.tried) & bit != 0 {
                return Added::Known;
            }
            edge.tried |= bit;
            edge.infos.push((bit, false, info()));
            return Added::Recorded;
        }
        if edge.strong & bit != 0 {
            return Added::Known;
        }
        edge.strong |= bit;
        edge.tried &= !bit;
        edge.infos.retain(|(b, _, _)| *b != bit);
        edge.infos.push((bit, true, info()));
        if !edge.linked {
            edge.linked = true;
            self.succ[from.index()].push(to);
            if self.pk_insert(from, to) {
                self.edge_mut(from, to).ordered = true;
            } else {
                self.back_edges += 1;
            }
        }
        let ordered = self.edges[&(from, to)].ordered;
        // With no back edge the order graph is the whole blocking graph, and
        // an edge in a topological order cannot be on a cycle.
        if ordered && self.back_edges == 0 {
            return Added::Recorded;
        }
        match self.find_cycle(from, to, held, want) {
            Some(cycle) => {
                self.edge_mut(from, to).violating = true;
                Added::Cycle(cycle)
            }
            None => Added::Recorded,
        }
    }

    /// Records a same-class acquisition as a self loop (outside the order,
    /// for DOT and so it is reported once); returns whether it was new.
    pub(crate) fn add_self(
        &mut self,
        node: ClassId,
        held: Access,
        want: Access,
        info: impl FnOnce() -> EdgeInfo,
    ) -> bool {
        self.ensure(node);
        let bit = pair(held, want);
        let edge = self.edges.entry((node, node)).or_insert_with(|| Edge {
            strong: 0,
            tried: 0,
            infos: Vec::new(),
            linked: false,
            ordered: false,
            violating: true,
        });
        if edge.strong & bit != 0 {
            return false;
        }
        edge.strong |= bit;
        edge.infos.push((bit, true, info()));
        true
    }

    fn edge_mut(&mut self, from: ClassId, to: ClassId) -> &mut Edge {
        self.edges.get_mut(&(from, to)).expect("edge just inserted")
    }

    /// Pearce–Kelly insertion of `x → y` into the order; false (and no
    /// change) if the edge would close a cycle of order edges.
    fn pk_insert(&mut self, x: ClassId, y: ClassId) -> bool {
        let (lb, ub) = (self.ord[y.index()], self.ord[x.index()]);
        if lb > ub {
            self.order_out[x.index()].push(y);
            self.order_in[y.index()].push(x);
            return true;
        }
        // Forward from y, only through nodes not after x.
        let mut forward = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![y];
        while let Some(n) = stack.pop() {
            if n == x {
                return false;
            }
            if !seen.insert(n) {
                continue;
            }
            forward.push(n);
            for &w in &self.order_out[n.index()] {
                if self.ord[w.index()] <= ub && !seen.contains(&w) {
                    stack.push(w);
                }
            }
        }
        // Backward from x, only through nodes not before y.
        let mut backward = Vec::new();
        let mut stack = vec![x];
        while let Some(n) = stack.pop() {
            if !seen.insert(n) {
                continue;
            }
            backward.push(n);
            for &w in &self.order_in[n.index()] {
                if self.ord[w.index()] >= lb && !seen.contains(&w) {
                    stack.push(w);
                }
            }
        }
        // Everything that reaches x goes before everything y reaches, reusing
        // the same set of positions.
        backward.sort_by_key(|n| self.ord[n.index()]);
        forward.sort_by_key(|n| self.ord[n.index()]);
        let mut slots: Vec<u32> = backward
            .iter()
            .chain(&forward)
            .map(|n| self.ord[n.index()])
            .collect();
        slots.sort_unstable();
        for (n, slot) in backward.iter().chain(&forward).zip(slots) {
            self.ord[n.index()] = slot;
        }
        self.order_out[x.index()].push(y);
        self.order_in[y.index()].push(x);
        true
    }

    /// Breadth-first search over (class, mode it is waited for in) for a
    /// blocking path `to ⇝ from` that, with the new edge, forms a cycle in
    /// which every class's waiter conflicts with its holder.
    fn find_cycle(
        &self,
        from: ClassId,
        to: ClassId,
        held: Access,
        want: Access,
    ) -> Option<Vec<Step>> {
        type State = (ClassId, Access);
        let start: State = (to, want);
        let mut parent: HashMap<State, (State, Access, Access)> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        parent.insert(start, (start, want, want));
        let mut found: Option<(State, Access, Access)> = None;
        'search: while let Some(state @ (n, waited)) = queue.pop_front() {
            for &z in &self.succ[n.index()] {
                let edge = &self.edges[&(n, z)];
                for h in Access::ALL {
                    if !waited.conflicts_with(h) {
                        continue;
                    }
                    for w in Access::ALL {
                        if edge.strong & pair(h, w) == 0 {
                            continue;
                        }
                        if z == from && w.conflicts_with(held) {
                            found = Some((state, h, w));
                            break 'search;
                        }
                        let next = (z, w);
                        if let std::collections::hash_map::Entry::Vacant(e) = parent.entry(next) {
                            e.insert((state, h, w));
                            queue.push_back(next);
                        }
                    }
                }
            }
        }
        let (mut state, h, w) = found?;
        let step = |a: ClassId, b: ClassId, h: Access, w: Access| Step {
            from: a,
            to: b,
            held: h,
            want: w,
            info: self.edges[&(a, b)]
                .info(h, w)
                .expect("a linked edge has a record")
                .clone(),
        };
        // Walk back from the last hop (state.0 → from) to the start.
        let mut path = vec![step(state.0, from, h, w)];
        while state != start {
            let (prev, ph, pw) = parent[&state];
            path.push(step(prev.0, state.0, ph, pw));
            state = prev;
        }
        let mut cycle = vec![step(from, to, held, want)];
        cycle.extend(path.into_iter().rev());
        Some(cycle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: Access = Access::Exclusive;
    const S: Access = Access::Shared;

    fn info() -> EdgeInfo {
        EdgeInfo {
            from_site: Location::caller(),
            to_site: Location::caller(),
            context: "test".into(),
            backtrace: None,
        }
    }

    /// Adds a blocking edge; returns the cycle it closes, if any.
    fn add(g: &mut Graph, a: u32, b: u32, h: Access, w: Access) -> Option<Vec<(u32, u32)>> {
        match g.add(ClassId(a), ClassId(b), h, w, true, info) {
            Added::Cycle(c) => Some(c.iter().map(|s| (s.from.0, s.to.0)).collect()),
            Added::Known | Added::Recorded => None,
        }
    }

    fn is_known(g: &mut Graph, a: u32, b: u32) -> bool {
        matches!(
            g.add(ClassId(a), ClassId(b), E, E, true, info),
            Added::Known
        )
    }

    fn is_topological(g: &Graph) -> bool {
        g.edges
            .iter()
            .filter(|(_, e)| e.ordered)
            .all(|((a, b), _)| g.ord[a.index()] < g.ord[b.index()])
    }

    #[test]
    fn two_cycle_and_its_path() {
        let mut g = Graph::default();
        assert_eq!(add(&mut g, 0, 1, E, E), None);
        assert!(is_known(&mut g, 0, 1));
        assert_eq!(add(&mut g, 1, 0, E, E), Some(vec![(1, 0), (0, 1)]));
        assert!(g.edges[&(ClassId(1), ClassId(0))].violating);
        assert!(!g.edges[&(ClassId(0), ClassId(1))].violating);
    }

    #[test]
    fn long_cycle_after_reordering() {
        let mut g = Graph::default();
        // Insert against the initial order so Pearce–Kelly has to reorder.
        for (a, b) in [(4, 3), (3, 2), (2, 1), (1, 0)] {
            assert_eq!(add(&mut g, a, b, E, E), None);
            assert!(is_topological(&g));
        }
        assert_eq!(
            add(&mut g, 0, 4, E, E),
            Some(vec![(0, 4), (4, 3), (3, 2), (2, 1), (1, 0)])
        );
    }

    #[test]
    fn read_read_cycles_are_not_violations_but_writes_on_them_are() {
        let mut g = Graph::default();
        assert_eq!(add(&mut g, 0, 1, S, S), None);
        assert_eq!(add(&mut g, 1, 0, S, S), None);
        // A reader waiting on a reader breaks the cycle at that class.
        assert_eq!(add(&mut g, 1, 0, S, E), None);
        // Now both classes are waited for exclusively against a reader.
        assert_eq!(add(&mut g, 0, 1, S, E), Some(vec![(0, 1), (1, 0)]));
    }

    #[test]
    fn tried_edges_never_close_cycles() {
        let mut g = Graph::default();
        let tried = g.add(ClassId(0), ClassId(1), E, E, false, info);
        assert!(matches!(tried, Added::Recorded));
        assert!(g.edges[&(ClassId(0), ClassId(1))].tried_only());
        assert_eq!(add(&mut g, 1, 0, E, E), None);
        // Taking the same edge blocking later does close the cycle.
        assert_eq!(add(&mut g, 0, 1, E, E), Some(vec![(0, 1), (1, 0)]));
    }

    #[test]
    fn random_dags_keep_a_topological_order() {
        // Edges only from lower to higher id never form a cycle, whatever
        // order they are inserted in.
        let mut g = Graph::default();
        let mut x: u64 = 0x1234_5678;
        for _ in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = (x % 60) as u32;
            let b = ((x >> 20) % 60) as u32;
            if a < b {
                assert_eq!(add(&mut g, b, a, E, E), None);
                assert!(is_topological(&g));
            }
        }
        assert_eq!(g.back_edges, 0);
    }
}
