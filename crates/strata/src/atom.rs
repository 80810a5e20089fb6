//! L2 — atoms: `Atom<T>`, a lock-free cell with validators and watches (issue 5).
