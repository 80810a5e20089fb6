//! L2/io — leases, FileLock, DualHeader, snapshots, cache (issue 6).

/// Runs this layer's sections.
pub fn run() {}
