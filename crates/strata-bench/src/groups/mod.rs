//! The benchmark groups. One file per group; each exposes
//! `pub fn group() -> Group` and is listed once in [`ALL`].

use crate::harness::Group;

pub mod async_locks;
pub mod atom;
pub mod cache;
pub mod diag;
pub mod lease;
pub mod locks;
pub mod par;
pub mod runtime;
pub mod snapshot;
pub mod stm;

/// Builds a group (its state, thread pools, runtimes).
pub type Builder = fn() -> Group;

/// Every group, in run order: (CLI name, builder). A group is only built
/// (its state, thread pools and runtimes created) when it is selected.
pub const ALL: &[(&str, Builder)] = &[
    ("locks", locks::group),
    ("async-locks", async_locks::group),
    ("diag", diag::group),
    ("runtime", runtime::group),
    ("par", par::group),
    ("stm", stm::group),
    ("atom", atom::group),
    ("lease", lease::group),
    ("snapshot", snapshot::group),
    ("cache", cache::group),
];

/// Says on stderr that `group` is about to time checked locks, when a
/// release build has lock-order checking compiled in (`--features checked`,
/// meant for the `diag` group): its numbers are then not the release cost.
pub(crate) fn warn_if_checked(group: &str) {
    if strata::diag::checking_enabled() && !cfg!(debug_assertions) {
        eprintln!(
            "{group}: lock-order checking is compiled in (--features checked): these are \
             checked-lock timings, not release ones"
        );
    }
}

/// The names of all groups, in run order.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|(n, _)| *n).collect()
}

/// The builder of the group called `name`.
pub fn find(name: &str) -> Option<Builder> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

#[cfg(test)]
mod tests {
    use crate::harness::Config;

    /// Every implementation of every group runs and passes its own
    /// correctness checks (final counts), in a few operations.
    #[test]
    fn smoke_every_group() {
        for (name, build) in super::ALL {
            let g = build();
            assert_eq!(g.name(), *name);
            let n_cases = g.case_names().len();
            let results = g.run(&Config::smoke(), |_| {});
            assert!(results.len() >= n_cases, "{name}");
        }
    }
}
