//! L4 — parallel iteration on the runtime.
//!
//! Extension traits give slices (so arrays and `Vec`s) and integer ranges
//! `par_map`, `par_for_each`, `par_filter`, `par_reduce(identity, op)` and
//! `par_chunks(n)`; results always come back in input order.
//!
//! Splitting is adaptive: a worker folds its range block by block and
//! splits the rest in half only when an idle worker has asked for work
//! (lazy binary splitting on top of the scheduler's lazy `join`), so no
//! up-front guess of a chunk size is needed and a loop nobody shares runs
//! at sequential speed. `with_min_len(n)` bounds the smallest piece. The
//! work runs on the current runtime: the worker's own inside a pool, else
//! the entered or global one; a caller outside any pool first works alone
//! for a few microseconds, so tiny inputs never pay for a thread hand-off.
//!
//! ```
//! use strata::par::{ParRange, ParSlice};
//!
//! let words = vec!["apple", "kiwi", "banana", "fig"];
//! assert_eq!(words.par_map(|w| w.len()), vec![5, 4, 6, 3]);
//! assert_eq!(words.par_filter(|w| w.len() > 3), vec!["apple", "kiwi", "banana"]);
//! let sum = (0..1_000_000u64).par_reduce(|| 0, |a, b| a + b);
//! assert_eq!(sum, 499_999_500_000);
//! ```

mod collect;
mod driver;
mod range;
mod slice;

pub use range::{ParRange, ParRangeChunks, ParRangeWith, RangeInteger};
pub use slice::{Par, ParChunks, ParSlice};
