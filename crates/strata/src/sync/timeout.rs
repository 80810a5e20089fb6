//! A runtime-agnostic deadline for the async `*_timeout` methods.
//!
//! strata's async locks must work under tokio, smol and strata's own
//! executor, so they cannot borrow a runtime's timer. Instead one shared
//! timer thread keeps an ordered map of `(deadline, id) → Waker` and sleeps
//! on a condvar until the earliest deadline. It is started on the first
//! timed wait that actually has to wait (an uncontended `lock_timeout` never
//! touches it) and exits after a second with nothing to time, so idle
//! programs keep no extra thread.
//!
//! This module uses std and parking_lot directly rather than the loom shim:
//! a process-wide thread cannot live inside a loom model, and time is not
//! something loom models anyway.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// How long the timer thread lingers with nothing to do before exiting.
const IDLE_EXIT: Duration = Duration::from_secs(1);

type Key = (Instant, u64);

struct TimerState {
    wakers: BTreeMap<Key, Waker>,
    next_id: u64,
    running: bool,
}

struct Timer {
    state: Mutex<TimerState>,
    changed: Condvar,
}

static TIMER: Timer = Timer {
    state: Mutex::new(TimerState {
        wakers: BTreeMap::new(),
        next_id: 0,
        running: false,
    }),
    changed: Condvar::new(),
};

impl Timer {
    /// Registers `waker` to be woken at `deadline`; returns the entry's key.
    fn register(&'static self, deadline: Instant, waker: &Waker) -> Key {
        let mut state = self.state.lock();
        let key = (deadline, state.next_id);
        state.next_id += 1;
        let earliest = state.wakers.first_key_value().is_none_or(|(k, _)| key < *k);
        state.wakers.insert(key, waker.clone());
        if !state.running {
            let spawned = std::thread::Builder::new()
                .name("strata-timer".into())
                .spawn(move || self.run());
            match spawned {
                Ok(_) => state.running = true,
                Err(_) => {
                    // No thread, no timer: degrade to re-polling rather than
                    // hanging; the future re-registers on every poll.
                    if let Some(waker) = state.wakers.remove(&key) {
                        drop(state);
                        waker.wake();
                    }
                    return key;
                }
            }
        } else if earliest {
            self.changed.notify_one();
        }
        key
    }

    /// Replaces the waker of a live entry if the future moved tasks.
    fn update(&self, key: Key, waker: &Waker) -> bool {
        let mut state = self.state.lock();
        match state.wakers.get_mut(&key) {
            Some(current) => {
                if !current.will_wake(waker) {
                    current.clone_from(waker);
                }
                true
            }
            None => false,
        }
    }

    fn cancel(&self, key: Key) {
        self.state.lock().wakers.remove(&key);
    }

    fn run(&self) {
        let mut due = Vec::new();
        let mut state = self.state.lock();
        loop {
            let now = Instant::now();
            while let Some(entry) = state.wakers.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            if !due.is_empty() {
                drop(state);
                due.drain(..).for_each(Waker::wake);
                state = self.state.lock();
                continue;
            }
            match state.wakers.first_key_value() {
                Some((&(deadline, _), _)) => {
                    self.changed.wait_until(&mut state, deadline);
                }
                None => {
                    let idle = self.changed.wait_for(&mut state, IDLE_EXIT).timed_out();
                    if idle && state.wakers.is_empty() {
                        state.running = false;
                        return;
                    }
                }
            }
        }
    }

    #[cfg(all(test, not(loom)))]
    fn pending(&self) -> usize {
        self.state.lock().wakers.len()
    }
}

/// Resolves at `deadline`; cancelling it (dropping) removes its timer entry.
#[derive(Debug)]
pub(crate) struct Sleep {
    deadline: Instant,
    key: Option<Key>,
}

impl Sleep {
    pub(crate) fn until(deadline: Instant) -> Self {
        Self {
            deadline,
            key: None,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            if let Some(key) = self.key.take() {
                TIMER.cancel(key);
            }
            return Poll::Ready(());
        }
        match self.key {
            Some(key) if TIMER.update(key, cx.waker()) => {}
            // First poll, or the entry fired early (clock granularity) or
            // was dropped because no timer thread could start.
            _ => self.key = Some(TIMER.register(self.deadline, cx.waker())),
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            TIMER.cancel(key);
        }
    }
}

/// A deadline from now, or none if `timeout` is too large to represent (so a
/// huge timeout means "wait forever" instead of a panic).
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Runs `fut` until it finishes or `deadline` passes; `None` on timeout.
///
/// `fut` is polled first on every poll, so a result ready at the deadline
/// still wins, and the timer is only armed once `fut` has returned
/// `Pending`. On timeout `fut` is dropped, which must be cancel-safe.
pub(crate) struct Deadline<F> {
    fut: F,
    deadline: Option<Instant>,
    sleep: Option<Sleep>,
}

impl<F: Future + Unpin> Deadline<F> {
    pub(crate) fn new(fut: F, deadline: Option<Instant>) -> Self {
        Self {
            fut,
            deadline,
            sleep: None,
        }
    }
}

impl<F: Future + Unpin> Future for Deadline<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(out) = Pin::new(&mut this.fut).poll(cx) {
            return Poll::Ready(Some(out));
        }
        let Some(deadline) = this.deadline else {
            return Poll::Pending;
        };
        let sleep = this.sleep.get_or_insert_with(|| Sleep::until(deadline));
        match Pin::new(sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn sleep_fires_and_cancelled_sleeps_leave_no_entries() {
        futures::executor::block_on(Sleep::until(Instant::now() + Duration::from_millis(2)));
        let far = Instant::now() + Duration::from_secs(3600);
        let waker = Waker::noop();
        let mut sleeps: Vec<_> = (0..100).map(|_| Sleep::until(far)).collect();
        for s in &mut sleeps {
            assert!(
                Pin::new(s)
                    .poll(&mut Context::from_waker(waker))
                    .is_pending()
            );
        }
        assert!(TIMER.pending() >= 100);
        drop(sleeps);
        // Other tests may be timing things concurrently; none of ours is left.
        let left = TIMER
            .state
            .lock()
            .wakers
            .keys()
            .filter(|k| k.0 == far)
            .count();
        assert_eq!(left, 0);
    }

    #[test]
    fn deadline_prefers_a_ready_result_and_times_out_otherwise() {
        let past = Some(Instant::now());
        let ready = futures::executor::block_on(Deadline::new(std::future::ready(7), past));
        assert_eq!(ready, Some(7));
        let soon = deadline_after(Duration::from_millis(2));
        let never = futures::executor::block_on(Deadline::new(std::future::pending::<()>(), soon));
        assert_eq!(never, None);
        assert_eq!(deadline_after(Duration::MAX), None);
    }
}
