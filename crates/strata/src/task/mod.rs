//! L4 — structured task scopes, cancellation, joins and futures.
//!
//! * [`scope`]: children that borrow from the caller, all finished before
//!   it returns; the first error cancels the siblings and is returned; a
//!   panic is re-raised after every child stopped. Children get a [`Cx`].
//! * [`scope_async`]: the same rules for `'static` futures spawned on the
//!   runtime; dropping the scope future cancels every child.
//! * [`CancelToken`]: shared, hierarchical, awaitable cancellation.
//! * [`join`], [`join3`], [`join_all`] (the seeds' `plet`), and
//!   [`Scope::future`] → [`Future`] with [`Future::force`] (`future`/`force`).
//!
//! ```
//! use strata::task::{self, TaskError};
//!
//! let words = ["alpha", "beta", "gamma"];
//! let total = task::scope(|s| {
//!     let lens: Vec<_> = words.iter().map(|w| s.future(move |_| w.len())).collect();
//!     s.spawn(|cx| {
//!         cx.check()?;
//!         Ok(())
//!     });
//!     lens.into_iter().map(task::Future::force).sum::<usize>()
//! });
//! assert_eq!(total.unwrap(), 14);
//! # let _: Option<TaskError> = None;
//! ```

mod error;
mod future;
mod join;
mod scope;
mod scope_async;
mod token;

pub use crate::runtime::join;
pub use error::{BoxError, Cancelled, TaskError};
pub use future::Future;
pub use join::{join_all, join3};
pub use scope::{Cx, Scope, scope};
pub use scope_async::{AsyncScope, scope_async};
pub use token::{CancelToken, WaitCancelled};
