//! L4 — structured task scopes, cancellation, joins and futures (issue 4).
