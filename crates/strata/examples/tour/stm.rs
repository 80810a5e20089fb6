//! L2 — STM and atoms (issue 5).

/// Runs this layer's sections.
pub fn run() {}
