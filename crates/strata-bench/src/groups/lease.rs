//! `lease`: writer leases against an uncontended async-lock `Mutex`, the
//! peer a lease replaces when all that is needed is "one writer".
//!
//! `acquire_release` awaits `acquire_async(WriterPolicy::Wait)` and drops
//! the lease, against `async_lock::Mutex::lock().await` and a guard drop,
//! both polled with a no-op waker ([`crate::block_on_noop`]) so no executor
//! is measured. `fail_when_held` is the refusal path: a second writer under
//! `WriterPolicy::Fail` while the lease is held, against `try_lock` on a
//! held mutex.

use std::hint::black_box;
use std::time::Instant;

use strata::lease::{LeaseError, LeaseGate, WriterPolicy};

use crate::harness::Group;
use crate::util::block_on_noop;

/// The `lease` group.
pub fn group() -> Group {
    Group::new("lease")
        .case("acquire_release", |c| {
            let gate = LeaseGate::named("bench.lease");
            c.imp("strata", move |iters| {
                let before = gate.acquire(WriterPolicy::Fail).expect("free").id();
                let d = block_on_noop(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        // Like the peer's guard, the lease is used only by
                        // being dropped (no `black_box` round trip through
                        // memory; its release is a side effect anyway).
                        let lease = black_box(&gate).acquire_async(WriterPolicy::Wait).await;
                        drop(lease.expect("uncontended"));
                    }
                    start.elapsed()
                });
                let after = gate.acquire(WriterPolicy::Fail).expect("free").id();
                assert_eq!(after.get() - before.get(), iters + 1, "strata: lost leases");
                d
            });
            let m = async_lock::Mutex::new(0u64);
            c.imp("async-lock", move |iters| {
                *m.try_lock().expect("free") = 0;
                let d = block_on_noop(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        *black_box(&m).lock().await += 1;
                    }
                    start.elapsed()
                });
                assert_eq!(
                    *m.try_lock().expect("free"),
                    iters,
                    "async-lock: lost locks"
                );
                d
            });
        })
        .case("fail_when_held", |c| {
            let gate = LeaseGate::named("bench.lease.held");
            c.imp("strata", move |iters| {
                let _held = gate.acquire(WriterPolicy::Fail).expect("free");
                let mut refused = 0u64;
                let start = Instant::now();
                for _ in 0..iters {
                    match black_box(&gate).acquire(WriterPolicy::Fail) {
                        Err(LeaseError::WriterBusy) => refused += 1,
                        other => panic!("strata: a held lease was granted: {other:?}"),
                    }
                }
                let d = start.elapsed();
                assert_eq!(refused, iters);
                d
            });
            let m = async_lock::Mutex::new(0u64);
            c.imp("async-lock", move |iters| {
                let _held = m.try_lock().expect("free");
                let mut refused = 0u64;
                let start = Instant::now();
                for _ in 0..iters {
                    if black_box(&m).try_lock().is_none() {
                        refused += 1;
                    }
                }
                let d = start.elapsed();
                assert_eq!(refused, iters, "async-lock: a held mutex was granted");
                d
            });
        })
}
