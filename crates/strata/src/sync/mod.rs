//! L1 — blocking and async locks and their friends.
