//! L2/io — leases, FileLock, DualHeader, BlockingIo (issue 6).

/// Runs this layer's sections.
pub fn run() {}
