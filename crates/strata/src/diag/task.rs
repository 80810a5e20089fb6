//! Finding the held set of the task that is polling.
//!
//! strata owns no executor, so it cannot ask "which task is this?". What
//! every executor does give a future is its waker, and a task's wakers all
//! share one data pointer (tokio's task header, async-task's raw task,
//! futures' per-thread notifier for `block_on`). So the held set of a task
//! is looked up by its waker's `(data, vtable)` pair.
//!
//! The table holds only weak references: a set lives exactly as long as a
//! guard of the task still holds something (each held entry keeps its set
//! alive). A task holding nothing has no set, so a new task that reuses a
//! finished task's address starts clean. Branches of one task multiplexed
//! on the same waker (`join!`, `select!`) share its set, which is right:
//! they cannot run at the same time, so a lock held by one is held across
//! the other's waits. A waker without a data pointer (the no-op
//! waker) names no task and is not looked up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::task::Waker;

use parking_lot::Mutex;

use super::held::{HeldSet, SetInner};

type Key = (usize, usize);

struct Table {
    sets: HashMap<Key, Weak<SetInner>>,
    /// Size after the last sweep of dead entries; sweep again when doubled.
    swept_at: usize,
}

static TASKS: LazyLock<Mutex<Table>> = LazyLock::new(|| {
    Mutex::new(Table {
        sets: HashMap::new(),
        swept_at: 64,
    })
});

fn key(waker: &Waker) -> Key {
    (
        waker.data() as usize,
        std::ptr::from_ref(waker.vtable()) as usize,
    )
}

/// The held set of the task whose waker is `waker`, created if the task
/// holds nothing yet.
pub(crate) fn set_for(waker: &Waker) -> HeldSet {
    // A waker with no data pointer (`Waker::noop()`, shared by every poller
    // that has no task: tests, hand-rolled polling loops) names no task, so
    // each acquisition made through it is a task of its own. (Comparing with
    // `Waker::noop()` is not enough: its vtable may be duplicated per crate.)
    if waker.data().is_null() {
        return HeldSet::named("untracked poll (no-op waker)");
    }
    let key = key(waker);
    let mut table = TASKS.lock();
    if let Some(inner) = table.sets.get(&key).and_then(Weak::upgrade) {
        return HeldSet { inner };
    }
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let thread = std::thread::current();
    let label = match thread.name() {
        Some(name) => format!("task #{n} (polled on {name})"),
        None => format!("task #{n} (polled on {:?})", thread.id()),
    };
    let set = HeldSet::named(&label);
    table.sets.insert(key, Arc::downgrade(&set.inner));
    if table.sets.len() >= table.swept_at {
        table.sets.retain(|_, w| w.strong_count() > 0);
        table.swept_at = (table.sets.len() * 2).max(64);
    }
    set
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    #[test]
    fn one_set_per_task_while_it_holds_something() {
        let task = Waker::from(Arc::new(Noop));
        let other = Waker::from(Arc::new(Noop));
        let a = set_for(&task);
        // Held by somebody (here: `a`), so the same task finds it again.
        assert!(Arc::ptr_eq(&a.inner, &set_for(&task.clone()).inner));
        assert!(!Arc::ptr_eq(&a.inner, &set_for(&other).inner));
        let label = a.inner.label.clone();
        drop(a);
        // Nothing keeps it alive: the task starts over with a fresh set.
        assert_ne!(set_for(&task).inner.label, label);
    }
}
