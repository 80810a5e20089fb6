//! `async-locks`: async mutexes and RW locks against async-lock and tokio.
//!
//! Uncontended cases poll one future per batch with a no-op waker
//! ([`crate::block_on_noop`]), so what is measured is the lock's own
//! `lock().await` / guard drop, not an executor. The contended case runs 4
//! tasks on one 2-worker tokio runtime shared by all impls; each task takes
//! the lock, increments, and every 16th time yields to the scheduler while
//! still holding it, so the other tasks find the lock taken and queue.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::harness::Group;
use crate::util::{block_on_noop, split_iters};

/// Tasks in the contended case.
const TASKS: usize = 4;
/// A task yields while holding the lock once every this many operations.
const YIELD_EVERY: u64 = 16;

/// Spawns [`TASKS`] tasks on `rt`, each running its share of `iters`
/// operations through `op`, and returns the time until all have finished.
/// `op(j)` is the task's `j`-th lock/increment/unlock.
fn run_tasks<L, F, Fut>(rt: &Runtime, iters: u64, lock: &Arc<L>, op: F) -> Duration
where
    L: Send + Sync + 'static,
    F: Fn(Arc<L>, u64) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let lock = Arc::clone(lock);
                let n = split_iters(iters, TASKS, i);
                tokio::spawn(async move {
                    for j in 0..n {
                        op(Arc::clone(&lock), j).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("bench task panicked");
        }
        start.elapsed()
    })
}

/// Registers impl `$name` of the contended case: the async mutex `$new`
/// (any type with `lock().await` returning a `DerefMut<Target = u64>` guard)
/// driven by [`run_tasks`] on runtime `$rt`.
macro_rules! contended {
    ($c:expr, $rt:expr, $name:literal, $new:expr) => {{
        let (rt, m) = (Arc::clone(&$rt), Arc::new($new));
        $c.imp($name, move |iters| {
            *block_on_noop(m.lock()) = 0;
            let d = run_tasks(&rt, iters, &m, |m, j| async move {
                let mut g = m.lock().await;
                *g += 1;
                if j % YIELD_EVERY == 0 {
                    tokio::task::yield_now().await;
                }
            });
            assert_eq!(
                *block_on_noop(m.lock()),
                iters,
                "{}: lost increments",
                $name
            );
            d
        });
    }};
}

/// The `async-locks` group.
pub fn group() -> Group {
    super::warn_if_checked("async-locks");
    Group::new("async-locks")
        .case("mutex_uncontended", |c| {
            let m = strata::sync::AsyncMutex::new(0u64);
            c.iter_async("strata", async move || *black_box(&m).lock().await += 1);
            let m = async_lock::Mutex::new(0u64);
            c.iter_async("async-lock", async move || *black_box(&m).lock().await += 1);
            let m = tokio::sync::Mutex::new(0u64);
            c.iter_async("tokio", async move || *black_box(&m).lock().await += 1);
        })
        .case("rwlock_read_uncontended", |c| {
            let l = strata::sync::AsyncRwLock::new(1u64);
            c.iter_async("strata", async move || *black_box(&l).read().await);
            let l = async_lock::RwLock::new(1u64);
            c.iter_async("async-lock", async move || *black_box(&l).read().await);
            let l = tokio::sync::RwLock::new(1u64);
            c.iter_async("tokio", async move || *black_box(&l).read().await);
        })
        .case("rwlock_write_uncontended", |c| {
            let l = strata::sync::AsyncRwLock::new(0u64);
            c.iter_async("strata", async move || *black_box(&l).write().await += 1);
            let l = async_lock::RwLock::new(0u64);
            c.iter_async("async-lock", async move || {
                *black_box(&l).write().await += 1
            });
            let l = tokio::sync::RwLock::new(0u64);
            c.iter_async("tokio", async move || *black_box(&l).write().await += 1);
        })
        .case("mutex_contended_4tasks", |c| {
            let rt = Arc::new(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .build()
                    .expect("tokio runtime"),
            );

            contended!(c, rt, "strata", strata::sync::AsyncMutex::new(0u64));
            contended!(c, rt, "async-lock", async_lock::Mutex::new(0u64));
            contended!(c, rt, "tokio", tokio::sync::Mutex::new(0u64));
        })
}
