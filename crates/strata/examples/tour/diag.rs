//! L0 — lock-order checking: an inversion provoked and reported (issue 3).

/// Runs this layer's sections.
pub fn run() {}
