//! Blocking in `retry`: per-`TVar` waiter lists.
//!
//! A transaction that retries registers one [`WaitNode`] on the waiter list
//! of every `TVar` it read, then parks (or returns `Pending`). Registration
//! pushes the node first and then, with a CAS on the `TVar`'s lock word, sets
//! its `WAITERS` bit *only if the word still holds the version the
//! transaction read*. A committer locks the word with a CAS before it
//! publishes, so it either sees the bit (and wakes the list) or the waiter's
//! CAS fails (the word is locked or newer) and the waiter re-runs instead of
//! parking. One location, two read-modify-writes: no lost wake-up, and no
//! fence on the commit path of `TVar`s nobody waits on.
//!
//! Only commits to a `TVar` in the read set touch its list, so a transaction
//! blocked on X sleeps through any number of commits to an unrelated Y.

use std::task::Waker;
use std::time::Instant;

use super::clock::{LOCKED, WAITERS, is_locked, version};
use super::stats::{Counter, bump};
use super::tvar::Core;
use crate::loom::sync::atomic::{AtomicBool, Ordering};
use crate::loom::sync::{Arc, Mutex};
use crate::loom::thread::{self, Thread};

/// Whom to wake.
enum Target {
    Thread(Thread),
    Task(Mutex<Option<Waker>>),
}

/// One blocked transaction, shared by the waiter lists of its read set.
pub(crate) struct WaitNode {
    notified: AtomicBool,
    target: Target,
}

impl WaitNode {
    /// A node that unparks the current thread.
    pub(crate) fn for_thread() -> Arc<Self> {
        Arc::new(Self {
            notified: AtomicBool::new(false),
            target: Target::Thread(thread::current()),
        })
    }

    /// A node that wakes a task.
    pub(crate) fn for_task(waker: &Waker) -> Arc<Self> {
        Arc::new(Self {
            notified: AtomicBool::new(false),
            target: Target::Task(Mutex::new(Some(waker.clone()))),
        })
    }

    /// Replaces the waker if the future moved to another task.
    pub(crate) fn update_waker(&self, waker: &Waker) {
        if let Target::Task(w) = &self.target {
            let mut w = w.lock();
            match &*w {
                Some(cur) if cur.will_wake(waker) => {}
                _ => *w = Some(waker.clone()),
            }
        }
    }

    #[inline]
    pub(crate) fn is_notified(&self) -> bool {
        self.notified.load(Ordering::Acquire)
    }

    /// Marks the node woken and wakes its thread or task.
    pub(crate) fn wake(&self) {
        // The store must precede the unpark/wake so the woken side, which
        // checks the flag after waking, cannot miss it.
        self.notified.store(true, Ordering::Release);
        match &self.target {
            Target::Thread(t) => t.unpark(),
            Target::Task(w) => {
                let w = w.lock().take();
                if let Some(w) = w {
                    w.wake();
                }
            }
        }
    }
}

/// Registers `node` on `core`'s list for as long as the lock word still holds
/// `seen` (the version the transaction read). `false`: it already changed (or
/// is being committed), so the caller must not sleep.
pub(crate) fn register(core: &Core, node: &Arc<WaitNode>, seen: u64) -> bool {
    {
        // The read set keeps every read, so a `TVar` read N times comes
        // here N times in a row (or between other `TVar`s' entries, which
        // leave this list alone): push once. The version check below runs
        // every time, so a drained list or a newer version is still seen.
        let mut list = core.waiters.lock();
        if !list.last().is_some_and(|n| Arc::ptr_eq(n, node)) {
            list.push(Arc::clone(node));
        }
    }
    let mut cur = core.lock.load(Ordering::Acquire);
    loop {
        if is_locked(cur) || version(cur) != seen {
            return false;
        }
        if cur & WAITERS != 0 {
            return true;
        }
        match core.lock.compare_exchange_weak(
            cur,
            cur | WAITERS,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

/// Removes `node` from `core`'s list (after a wake-up, a change seen at
/// registration, a timeout or a cancelled future).
pub(crate) fn deregister(core: &Core, node: &Arc<WaitNode>) {
    core.waiters.lock().retain(|n| !Arc::ptr_eq(n, node));
}

/// Takes every waiter of `core`. Called by a committer that holds the lock
/// word and saw `WAITERS` in the word its lock replaced; the caller wakes
/// them once it has unlocked (so the woken do not find the word locked).
pub(crate) fn take_waiters(core: &Core, into: &mut Vec<Arc<WaitNode>>) {
    debug_assert!(core.lock.load(Ordering::Relaxed) & LOCKED != 0);
    into.append(&mut core.waiters.lock());
}

/// Registers on every `(core, version)` of a read set; `false` if one had
/// already changed (every registration made is undone).
///
/// # Safety
///
/// Every pointer is to a live `Core` (the transaction borrows its `TVar`s).
pub(crate) unsafe fn register_all(reads: &[(*const Core, u64)], node: &Arc<WaitNode>) -> bool {
    for (i, &(core, seen)) in reads.iter().enumerate() {
        // SAFETY: per the contract the `TVar`s outlive the transaction.
        let core = unsafe { &*core };
        if !register(core, node, seen) {
            // SAFETY: as above, for the prefix registered so far.
            unsafe { deregister_all(&reads[..=i], node) };
            return false;
        }
    }
    true
}

/// Undoes [`register_all`].
///
/// # Safety
///
/// As for [`register_all`].
pub(crate) unsafe fn deregister_all(reads: &[(*const Core, u64)], node: &Arc<WaitNode>) {
    for &(core, _) in reads {
        // SAFETY: per the contract the `TVar`s outlive the transaction.
        deregister(unsafe { &*core }, node);
    }
}

/// How a blocked wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// A commit touched the read set (or it had already changed).
    Changed,
    /// The deadline passed first.
    TimedOut,
}

/// Parks the thread until a `TVar` of `reads` changes or `deadline` passes.
///
/// # Safety
///
/// As for [`register_all`].
pub(crate) unsafe fn block(reads: &[(*const Core, u64)], deadline: Option<Instant>) -> Woke {
    let node = WaitNode::for_thread();
    // SAFETY: forwarded contract.
    if !unsafe { register_all(reads, &node) } {
        return Woke::Changed;
    }
    bump(Counter::Retries);
    let outcome = loop {
        if node.is_notified() {
            bump(Counter::Wakeups);
            break Woke::Changed;
        }
        match deadline {
            None => thread::park(),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    break Woke::TimedOut;
                }
                thread::park_timeout(d - now);
            }
        }
        if !node.is_notified() && deadline.is_none_or(|d| Instant::now() < d) {
            bump(Counter::Spurious);
        }
    };
    // SAFETY: forwarded contract.
    unsafe { deregister_all(reads, &node) };
    outcome
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::stm::TVar;

    /// A transaction that read one `TVar` many times (the read set keeps
    /// every read) puts its node on that `TVar`'s list once, not once per
    /// read; deregistering leaves nothing behind.
    #[test]
    fn a_re_read_tvar_gets_one_registration() {
        let a = TVar::new(1u64);
        let b = TVar::new(2u64);
        let (ca, cb) = (&a.inner.core, &b.inner.core);
        let seen = |c: &Core| version(c.lock.load(Ordering::Acquire));
        let mut reads = Vec::new();
        for _ in 0..500 {
            reads.push((ca as *const Core, seen(ca)));
            reads.push((cb as *const Core, seen(cb)));
        }
        let node = WaitNode::for_thread();
        // SAFETY: both `TVar`s outlive the registration.
        assert!(unsafe { register_all(&reads, &node) });
        assert_eq!(ca.waiters.lock().len(), 1);
        assert_eq!(cb.waiters.lock().len(), 1);
        // Another transaction's node is its own entry (and one pushed in
        // between costs at most one more copy of ours, which the same wake
        // and the same deregistration handle).
        let other = WaitNode::for_thread();
        assert!(register(ca, &other, seen(ca)));
        // SAFETY: as above.
        assert!(unsafe { register_all(&reads, &node) });
        assert_eq!(ca.waiters.lock().len(), 3);
        // SAFETY: as above.
        unsafe { deregister_all(&reads, &node) };
        assert_eq!(ca.waiters.lock().len(), 1);
        assert!(cb.waiters.lock().is_empty());
        deregister(ca, &other);
        assert!(ca.waiters.lock().is_empty());
    }
}
