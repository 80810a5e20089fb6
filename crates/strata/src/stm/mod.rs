//! L2 — software transactional memory: `TVar`, `atomically`, `retry`, `or_else` (issue 5).
