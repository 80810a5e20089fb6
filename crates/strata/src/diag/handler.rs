//! What happens when a rule is broken.

use std::fmt;
use std::sync::Arc;

use super::report::Violation;

/// What the checker does with a [`Violation`].
///
/// The default is [`Handler::Panic`] in debug builds (so tests fail on the
/// first bad order) and [`Handler::Log`] in release builds with the `checked`
/// feature (so production keeps running and the report lands in the logs).
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use strata::diag::{self, Handler};
///
/// static REPORTS: AtomicUsize = AtomicUsize::new(0);
/// diag::set_violation_handler(Handler::Callback(Arc::new(|_| {
///     REPORTS.fetch_add(1, Ordering::Relaxed);
/// })));
/// diag::set_violation_handler(Handler::Log);
/// ```
#[derive(Clone)]
pub enum Handler {
    /// Panic in the acquiring thread, before the lock is taken.
    Panic,
    /// Log the report (a `tracing` error event with the `tracing` feature,
    /// stderr otherwise) and let the acquisition proceed.
    Log,
    /// Call the function and let the acquisition proceed. The callback runs
    /// with no checker-internal lock held, so it may itself take locks.
    Callback(Arc<dyn Fn(&Violation) + Send + Sync>),
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Handler::Panic => f.write_str("Panic"),
            Handler::Log => f.write_str("Log"),
            Handler::Callback(_) => f.write_str("Callback(..)"),
        }
    }
}

impl Default for Handler {
    /// `Panic` under `debug_assertions`, `Log` otherwise.
    ///
    /// ```
    /// use strata::diag::Handler;
    ///
    /// // Which one depends on how strata itself was compiled.
    /// assert!(matches!(Handler::default(), Handler::Panic | Handler::Log));
    /// ```
    fn default() -> Self {
        if cfg!(debug_assertions) {
            Handler::Panic
        } else {
            Handler::Log
        }
    }
}

#[cfg(strata_checked)]
static HANDLER: parking_lot::RwLock<Option<Handler>> = parking_lot::RwLock::new(None);

/// Chooses what happens on a lock-order violation, process-wide.
///
/// A no-op when checking is compiled out (nothing is ever reported then).
///
/// ```
/// use strata::diag::{self, Handler};
///
/// diag::set_violation_handler(Handler::Log);
/// ```
pub fn set_violation_handler(handler: Handler) {
    #[cfg(strata_checked)]
    {
        *HANDLER.write() = Some(handler);
    }
    #[cfg(not(strata_checked))]
    drop(handler);
}

/// Hands `violation` to the installed handler.
///
/// Callers must hold no engine lock and no borrow of thread-local engine
/// state: the handler may panic (unwinding through the caller) or take
/// strata locks (re-entering the engine).
#[cfg(strata_checked)]
pub(crate) fn dispatch(violation: &Violation) {
    // Clone out so the handler runs without HANDLER read-locked: a callback
    // that installs another handler would otherwise deadlock on itself.
    #[cfg(test)]
    let handler = TEST_HANDLER.with(|h| h.borrow().clone());
    #[cfg(not(test))]
    let handler = None;
    let handler = handler
        .or_else(|| HANDLER.read().clone())
        .unwrap_or_default();
    match handler {
        // A second panic while unwinding aborts the process and loses the
        // original panic's message; fall back to logging then.
        Handler::Panic if !std::thread::panicking() => panic!("{violation}"),
        Handler::Panic | Handler::Log => log(violation),
        Handler::Callback(f) => f(violation),
    }
}

/// Writes a report: a `tracing` error event under the `tracing` feature
/// (target `strata::diag`, with the kind and cycle id as fields), stderr
/// otherwise.
#[cfg(strata_checked)]
fn log(violation: &Violation) {
    #[cfg(feature = "tracing")]
    tracing::error!(
        target: "strata::diag",
        kind = ?violation.kind(),
        cycle_id = violation.cycle_id(),
        "{violation}"
    );
    #[cfg(not(feature = "tracing"))]
    eprintln!("{violation}");
}

#[cfg(all(test, strata_checked))]
thread_local! {
    /// Per-thread override for the crate's unit tests, which share one
    /// process: a test that provokes violations must not change what other
    /// tests running in parallel see.
    static TEST_HANDLER: std::cell::RefCell<Option<Handler>> = const { std::cell::RefCell::new(None) };
}

/// Installs (or with `None` removes) this thread's test handler.
#[cfg(all(test, strata_checked))]
pub(crate) fn set_thread_handler(handler: Option<Handler>) {
    TEST_HANDLER.with(|h| *h.borrow_mut() = handler);
}
