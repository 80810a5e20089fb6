//! L2 — copy-on-write snapshots and the bounded cache (issue 6).

/// Runs this layer's sections.
pub fn run() {}
