//! `BlockingIo`: a bounded thread set for blocking file work, with barrier writes (issue 6).
