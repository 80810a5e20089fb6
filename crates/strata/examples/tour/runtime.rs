//! L3/L4 — the work-stealing runtime, scopes and parallel iteration (issue 4).

/// Runs this layer's sections.
pub fn run() {}
