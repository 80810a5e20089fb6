//! L4 — parallel iteration on the runtime (issue 4).
