//! L2 — writer leases: one writer at a time per `LeaseGate` (issue 6).
