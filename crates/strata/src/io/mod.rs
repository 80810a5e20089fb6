//! io — cross-process `FileLock` and the crash-safe `DualHeader` (issue 6).
