//! L2 — `BoundedCache` with single-flight loading (issue 6).
