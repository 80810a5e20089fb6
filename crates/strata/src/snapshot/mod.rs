//! L2 — copy-on-write snapshots: `SnapshotCell`, `Versioned` (issue 6).
