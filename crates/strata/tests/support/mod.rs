//! Helpers shared by the integration tests (`mod support;` in each file
//! that needs them).

#![allow(dead_code)] // each test file uses its own subset

use std::sync::{Arc, Mutex, Once};

use strata::diag::{self, Handler, Violation};

static SEEN: Mutex<Vec<Violation>> = Mutex::new(Vec::new());

/// Takes the order-checker reports that mention `prefix`.
///
/// The first call installs a process-wide callback that collects every
/// report. Tests use class names with their own prefix and take only the
/// reports that mention it, so they can run in parallel, on any thread or
/// runtime, without seeing each other's reports.
pub fn take_violations(prefix: &str) -> Vec<Violation> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        diag::set_violation_handler(Handler::Callback(Arc::new(|v| {
            SEEN.lock().unwrap().push(v.clone());
        })));
    });
    let mut seen = SEEN.lock().unwrap();
    let (mine, rest): (Vec<_>, Vec<_>) =
        seen.drain(..).partition(|v| v.to_string().contains(prefix));
    *seen = rest;
    mine
}
