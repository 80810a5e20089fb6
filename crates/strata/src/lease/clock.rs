//! The timestamp of a lease: the coarse monotonic clock.
//!
//! Every lease records when it was granted. `Instant::now()` costs ~19 ns
//! here (a full `rdtsc`-based vDSO read), which alone would eat the whole
//! budget of an uncontended acquire-and-release (the bench goal is 1.2× an
//! uncontended async mutex, ~34 ns). `CLOCK_MONOTONIC_COARSE` is the same
//! clock as `Instant`'s, read from the last timer tick: ~7 ns, with the
//! tick's resolution (1–4 ms). That is plenty for what the timestamp is
//! for — "who has held the writer lease for how long" — and it is
//! documented on [`WriterLease::acquired_at`](super::WriterLease::acquired_at).
//!
//! Timestamps are nanoseconds since a base taken once per process, which
//! maps them back to `Instant`s.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The process-wide base: an `Instant` and the coarse clock read with it.
struct Base {
    instant: Instant,
    coarse: Duration,
}

static BASE: OnceLock<Base> = OnceLock::new();

fn base() -> &'static Base {
    BASE.get_or_init(|| {
        // The pair must be read together: a preemption between the two
        // reads would skew every timestamp of the process. Retry until the
        // coarse clock reads the same on both sides of the `Instant` (a few
        // tries at most: it only moves once per tick).
        let mut before = coarse();
        for _ in 0..100 {
            let instant = Instant::now();
            let after = coarse();
            if after == before {
                return Base {
                    instant,
                    coarse: before,
                };
            }
            before = after;
        }
        Base {
            instant: Instant::now(),
            coarse: before,
        }
    })
}

/// The coarse monotonic clock, since an arbitrary origin.
#[cfg(target_os = "linux")]
fn coarse() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the
    // call; CLOCK_MONOTONIC_COARSE exists on every Linux since 2.6.32, and
    // clock_gettime cannot fail for a valid clock id and pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Elsewhere, the precise clock (correct, just slower).
#[cfg(not(target_os = "linux"))]
fn coarse() -> Duration {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed()
}

/// Now, in nanoseconds since the base (never 0 is not promised; any u64).
#[inline]
pub(crate) fn now_nanos() -> u64 {
    let base = base();
    coarse().saturating_sub(base.coarse).as_nanos() as u64
}

/// The `Instant` of a timestamp from [`now_nanos`].
pub(crate) fn instant(nanos: u64) -> Instant {
    base().instant + Duration::from_nanos(nanos)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Two ticks of the coarsest kernel timer (HZ=100): the most a mapped
    /// timestamp can be off by.
    const SLACK: Duration = Duration::from_millis(20);

    #[test]
    fn timestamps_are_monotonic_and_map_to_instants_within_a_tick() {
        let a = now_nanos();
        std::thread::sleep(Duration::from_millis(30));
        let before = Instant::now();
        let b = now_nanos();
        let after = Instant::now();
        assert!(Duration::from_nanos(b - a) + SLACK >= Duration::from_millis(30));
        let mapped = instant(b);
        assert!(mapped + SLACK >= before, "{mapped:?} vs {before:?}");
        assert!(mapped <= after + SLACK, "{mapped:?} vs {after:?}");
    }
}
