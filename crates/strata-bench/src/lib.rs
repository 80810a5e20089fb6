//! # strata-bench — strata against its peers, side by side
//!
//! Every *group* (`locks`, `async-locks`, …) measures strata and the best
//! peer crates in **one process**, interleaved round by round (A B C, B C A,
//! C A B, …) so that clock, thermal and scheduler drift hit every
//! implementation alike. See the "Performance contract" and "The bench
//! harness" sections of the project's SPEC.
//!
//! ```text
//! cargo run --release -p strata-bench -- [GROUP...] [--quick]
//! cargo bench -p strata-bench [-- GROUP...]
//! ```
//!
//! Each run of a group writes `target/strata-bench/GROUP.csv` (header
//! `case,impl,median_ns,min_ns,max_ns,samples`, times per operation), prints a
//! table with strata/peer ratios, and regenerates
//! `target/strata-bench/report.md` plus one `GROUP.svg` chart per group from
//! every `GROUP.csv` present.
//!
//! ## Adding a group
//!
//! 1. Write `src/groups/NAME.rs` with `pub fn group() -> Group` (see
//!    [`groups::locks`] for a blocking example and [`groups::async_locks`] for
//!    an async one).
//! 2. Add `pub mod NAME;` and one `("NAME", NAME::group)` line to
//!    [`groups::ALL`].
//!
//! A group is a list of cases; a case is a list of implementations. The first
//! implementation of a case should be `strata`: ratios are strata's median
//! over each peer's.
//!
//! ```no_run
//! use std::hint::black_box;
//! use strata_bench::{Group, timed_threads};
//!
//! fn group() -> Group {
//!     Group::new("example")
//!         // `iter`: the harness times a loop of the closure, one call = one op.
//!         .case("mutex_uncontended", |c| {
//!             let m = parking_lot::Mutex::new(0u64);
//!             c.iter("parking_lot", move || *black_box(&m).lock() += 1);
//!             let m = std::sync::Mutex::new(0u64);
//!             c.iter("std", move || *black_box(&m).lock().unwrap() += 1);
//!         })
//!         // `imp`: the closure gets `iters` and returns the time those
//!         // operations took, so it controls setup, threads and runtimes.
//!         .case("mutex_contended_2t", |c| {
//!             let m = parking_lot::Mutex::new(0u64);
//!             c.imp("parking_lot", move |iters| {
//!                 *m.lock() = 0;
//!                 let d = timed_threads(2, iters, |_, n| {
//!                     for _ in 0..n {
//!                         *m.lock() += 1;
//!                     }
//!                 });
//!                 assert_eq!(*m.lock(), iters);
//!                 d
//!             });
//!         })
//! }
//! ```

pub mod cli;
pub mod groups;
pub mod harness;
pub mod report;
pub mod util;

pub use harness::{Case, Config, Group, Measurement};
pub use util::{block_on_noop, split_iters, timed_threads};
