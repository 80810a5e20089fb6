//! L3 — the runtime: the work-stealing pool (issue 4) and the blocking-I/O
//! executor `BlockingIo` (issue 6).

// Issue 6 owns blocking_io.rs and the `pub use` line right below it.
mod blocking_io;
pub use blocking_io::{BlockingIo, BlockingIoBuilder, BlockingIoError};

// Issue 4: the work-stealing pool goes below.
