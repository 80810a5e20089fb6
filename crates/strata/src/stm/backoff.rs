//! Randomized spinning for contention management, shared by the STM's
//! conflict backoff and `Atom`'s CAS loop.
//!
//! Windows are given in nanoseconds: a `spin_loop` hint (`pause`) costs
//! anything from one cycle to ~140 cycles depending on the CPU, so its cost
//! is measured once and windows are converted to hints with it. The draw
//! is a per-thread xorshift: cheap, and different on every thread, so two
//! colliding threads do not keep choosing the same wait.

use std::cell::Cell;

#[cfg(not(loom))]
thread_local! {
    /// xorshift state (0: not seeded yet).
    static RNG: Cell<u64> = const { Cell::new(0) };
}

// loom runs model threads on one OS thread: per-thread state must be loom's.
#[cfg(loom)]
loom::thread_local! {
    static RNG: Cell<u64> = Cell::new(0);
}

/// Picoseconds one `spin_loop` hint takes on this machine (0: not measured
/// yet).
#[cfg(not(loom))]
static PAUSE_PS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Measures `PAUSE_PS` (the fastest of a few short runs, so a preemption
/// does not inflate it).
#[cfg(not(loom))]
#[cold]
fn calibrate_pause() -> u64 {
    const N: u32 = 64;
    let mut best = u64::MAX;
    for _ in 0..4 {
        let t = std::time::Instant::now();
        for _ in 0..N {
            std::hint::spin_loop();
        }
        best = best.min(t.elapsed().as_nanos() as u64 * 1000 / u64::from(N));
    }
    let ps = best.clamp(100, 1_000_000);
    PAUSE_PS.store(ps, std::sync::atomic::Ordering::Relaxed);
    ps
}

/// A pseudo-random number, different on every thread.
fn random() -> u64 {
    RNG.with(|c| {
        let mut x = c.get();
        if x == 0 {
            x = (c as *const _ as u64) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.set(x);
        x
    })
}

/// Spins for a random time below `window_ns` nanoseconds (never sleeps).
#[cold]
pub(crate) fn spin_below(window_ns: u64) {
    // loom needs determinism (and a yield to let the other thread on).
    #[cfg(loom)]
    {
        let _ = (window_ns, random);
        crate::loom::hint::spin_loop();
    }
    #[cfg(not(loom))]
    {
        let ps = match PAUSE_PS.load(std::sync::atomic::Ordering::Relaxed) {
            0 => calibrate_pause(),
            ps => ps,
        };
        for _ in 0..(random() % window_ns.max(1)) * 1000 / ps {
            std::hint::spin_loop();
        }
    }
}
