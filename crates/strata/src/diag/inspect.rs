//! Looking at (and, for tests, clearing) the checker's state.

#[cfg(strata_checked)]
use super::engine;
use super::report::Acquisition;

/// The lock-order graph in Graphviz DOT: one box per class (name and
/// construction `file:line`), one arrow per "held while taking" edge,
/// labelled with the modes seen (`W` write, `R` read, `U` upgradable).
/// Edges that closed a reported cycle are red; edges only ever taken by
/// `try_` acquisitions are dashed. An empty graph when checking is off.
///
/// ```
/// use strata::diag::{self, Class};
///
/// let (a, b) = (Class::new("dot a"), Class::new("dot b"));
/// {
///     let _a = a.enter();
///     let _b = b.enter();
/// }
/// let dot = diag::lock_graph_dot();
/// assert!(dot.starts_with("digraph"));
/// if diag::checking_enabled() {
///     assert!(dot.contains("dot a") && dot.contains("->"));
/// }
/// ```
pub fn lock_graph_dot() -> String {
    #[cfg(strata_checked)]
    {
        engine::lock_graph_dot()
    }
    #[cfg(not(strata_checked))]
    String::from("digraph strata_locks {\n}\n")
}

/// Forgets every recorded order and validated chain, and the calling
/// thread's held locks: for tests that provoke violations on purpose.
///
/// Other threads' held locks are kept (their guards are still alive).
/// A no-op when checking is off.
///
/// ```
/// use strata::diag;
///
/// diag::reset();
/// assert_eq!(diag::lock_graph_dot().matches("->").count(), 0);
/// ```
pub fn reset() {
    #[cfg(strata_checked)]
    engine::reset();
}

/// The locks the calling thread holds, oldest first (always empty when
/// checking is off).
///
/// ```
/// use strata::diag::{self, Class};
///
/// let class = Class::new("held example");
/// let _g = class.enter();
/// let held = diag::held_locks();
/// if diag::checking_enabled() {
///     assert_eq!(held.last().unwrap().class().name(), Some("held example"));
/// } else {
///     assert!(held.is_empty());
/// }
/// ```
pub fn held_locks() -> Vec<Acquisition> {
    #[cfg(strata_checked)]
    {
        engine::held_locks()
    }
    #[cfg(not(strata_checked))]
    Vec::new()
}
