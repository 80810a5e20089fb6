//! L0 — guard rails: lock classes, the order checker, the wait-for watchdog
//! and per-class metrics.
//!
//! Every lock-like primitive carries a class slot: the class it belongs to,
//! either its construction site (`#[track_caller]`) or a name given with
//! `named`. With checking off (release builds without the `checked` feature,
//! or with `unchecked`) the slot and every hook are zero-sized no-ops, so a
//! strata lock has exactly the size and the instructions of its parking_lot
//! core.

mod class;
#[cfg(strata_checked)]
mod engine;
#[cfg(strata_checked)]
mod graph;
mod handler;
mod held;
mod inspect;
mod metrics;
mod pseudo;
#[cfg(strata_checked)]
mod registry;
mod report;
#[cfg(strata_checked)]
mod task;
mod waits;

pub use class::ClassKey;
pub(crate) use class::{AcquireKind, ClassSlot, HeldToken, How, TaskEntry};
pub use handler::{Handler, set_violation_handler};
pub use held::HeldSet;
pub use inspect::{held_locks, lock_graph_dot, reset};
pub use metrics::{ClassMetrics, metrics};
pub use pseudo::{Class, ClassGuard};
pub use report::{Access, Acquisition, ClassInfo, EdgeReport, Violation, ViolationKind};
pub use waits::{WatchdogHandle, deadlocks, watchdog};

/// Whether lock-order checking is compiled into this build.
///
/// On under `debug_assertions` or the `checked` feature; the `unchecked`
/// feature forces it off.
///
/// ```
/// if strata::diag::checking_enabled() {
///     println!("lock-order violations are reported");
/// }
/// ```
pub const fn checking_enabled() -> bool {
    cfg!(strata_checked)
}
