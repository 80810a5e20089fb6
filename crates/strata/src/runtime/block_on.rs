//! `block_on`: drive a future to completion on the calling thread.

use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

/// Wakes the blocked thread: a flag (so a wake before the park is not
/// lost) plus an unpark.
struct ThreadWaker {
    woken: AtomicBool,
    thread: Thread,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::Release) {
            self.thread.unpark();
        }
    }
}

thread_local! {
    /// One waker per thread, reused by every `block_on` on it (nested calls
    /// make their own).
    static CACHED: RefCell<Option<(Arc<ThreadWaker>, Waker)>> = const { RefCell::new(None) };
}

/// Runs `fut` to completion on the calling thread, parking it while the
/// future is pending (no busy polling), and returns its output. On a pool
/// worker it runs other jobs while the future is pending instead (so
/// waiting for a task queued on that same worker cannot deadlock).
///
/// It needs no runtime: strata's own futures (locks, tasks, channels) wake
/// through their wakers, so `block_on` works for any future that does not
/// need a reactor (tokio's I/O and timers need tokio's). A [`Task`](super::Task)
/// spawned on a runtime can be waited for this way from any thread.
///
/// ```
/// use strata::runtime::{block_on, Runtime};
///
/// let rt = Runtime::builder().threads(1).build().unwrap();
/// let task = rt.spawn(async { 1 + 1 });
/// assert_eq!(block_on(async { task.await.unwrap() * 10 }), 20);
/// ```
pub fn block_on<F: Future>(fut: F) -> F::Output {
    // SAFETY: a non-null current worker is live for this whole call.
    if let Some(w) = unsafe { super::WorkerThread::current().as_ref() } {
        return w.block_on(fut);
    }
    let cached = CACHED.with(|c| c.borrow_mut().take());
    let (notify, waker) = cached.unwrap_or_else(|| {
        let notify = Arc::new(ThreadWaker {
            woken: AtomicBool::new(false),
            thread: thread::current(),
        });
        let waker = Waker::from(notify.clone());
        (notify, waker)
    });
    // Restores the cache even if the future panics.
    struct Restore(Option<(Arc<ThreadWaker>, Waker)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let v = self.0.take();
            CACHED.with(|c| *c.borrow_mut() = v);
        }
    }
    let guard = Restore(Some((notify, waker)));
    let (notify, waker) = guard.0.as_ref().expect("just set");
    let mut cx = Context::from_waker(waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        while !notify.woken.swap(false, Ordering::Acquire) {
            thread::park();
        }
    }
}
