//! `CancelToken`: cooperative cancellation, shared, hierarchical, awaitable.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use super::Cancelled;
use crate::loom::sync::Mutex;
use crate::loom::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{RawMode, RawSemaphore};

/// A cancellation flag that many parties share.
///
/// Clones share one flag. [`cancel`](CancelToken::cancel) sets it (once;
/// later calls do nothing) and wakes everyone waiting in
/// [`cancelled`](CancelToken::cancelled) or [`wait`](CancelToken::wait). A
/// [`child_token`](CancelToken::child_token) is cancelled with its parent but
/// can also be cancelled alone. Waiting is built on strata's fair raw
/// semaphore: cancel-safe, no polling.
///
/// ```
/// use strata::task::CancelToken;
///
/// let root = CancelToken::new();
/// let child = root.child_token();
/// let worker = {
///     let child = child.clone();
///     std::thread::spawn(move || {
///         child.wait(); // blocks until cancelled
///         child.is_cancelled()
///     })
/// };
/// root.cancel();
/// assert!(worker.join().unwrap());
/// ```
#[derive(Clone)]
pub struct CancelToken {
    node: Arc<Node>,
}

struct Node {
    cancelled: AtomicBool,
    /// No permits until cancelled, then (practically) unlimited: every
    /// waiter takes one and gives it back.
    sem: RawSemaphore,
    children: Mutex<Vec<Weak<Node>>>,
}

impl Node {
    fn new() -> Self {
        Self {
            cancelled: AtomicBool::new(false),
            sem: RawSemaphore::new(0),
            children: Mutex::new(Vec::new()),
        }
    }

    fn cancel(&self) {
        if self.cancelled.swap(true, Ordering::AcqRel) {
            return;
        }
        self.sem.add_permits(usize::MAX);
        let children = std::mem::take(&mut *self.children.lock());
        for child in children {
            if let Some(child) = child.upgrade() {
                child.cancel();
            }
        }
    }
}

impl CancelToken {
    /// A new, uncancelled token.
    ///
    /// ```
    /// let t = strata::task::CancelToken::new();
    /// assert!(!t.is_cancelled());
    /// ```
    pub fn new() -> Self {
        Self {
            node: Arc::new(Node::new()),
        }
    }

    /// Cancels this token and all its children. Idempotent.
    ///
    /// ```
    /// let t = strata::task::CancelToken::new();
    /// t.cancel();
    /// t.cancel();
    /// assert!(t.is_cancelled());
    /// ```
    pub fn cancel(&self) {
        self.node.cancel();
    }

    /// Whether the token was cancelled.
    ///
    /// ```
    /// let t = strata::task::CancelToken::new();
    /// let t2 = t.clone();
    /// t2.cancel();
    /// assert!(t.is_cancelled());
    /// ```
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.node.cancelled.load(Ordering::Acquire)
    }

    /// `Err(Cancelled)` once cancelled: `token.check()?` in a loop.
    ///
    /// ```
    /// let t = strata::task::CancelToken::new();
    /// assert!(t.check().is_ok());
    /// ```
    #[inline]
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// A token cancelled whenever this one is (now, if it already is), and
    /// which can be cancelled on its own without affecting this one.
    ///
    /// ```
    /// let parent = strata::task::CancelToken::new();
    /// let child = parent.child_token();
    /// child.cancel();
    /// assert!(!parent.is_cancelled());
    /// let child2 = parent.child_token();
    /// parent.cancel();
    /// assert!(child2.is_cancelled());
    /// ```
    pub fn child_token(&self) -> CancelToken {
        let child = CancelToken::new();
        {
            let mut children = self.node.children.lock();
            // Under the lock `cancel` takes after setting the flag: either
            // it sees this child, or this load sees the flag.
            if !self.is_cancelled() {
                if children.len() >= 16 && children.len().is_power_of_two() {
                    children.retain(|c| c.strong_count() > 0);
                }
                children.push(Arc::downgrade(&child.node));
                return child;
            }
        }
        child.cancel();
        child
    }

    /// A future that resolves once the token is cancelled. Dropping it is
    /// always safe (it holds nothing).
    ///
    /// ```
    /// let t = strata::task::CancelToken::new();
    /// let t2 = t.clone();
    /// std::thread::spawn(move || t2.cancel());
    /// strata::runtime::block_on(t.cancelled());
    /// assert!(t.is_cancelled());
    /// ```
    pub fn cancelled(&self) -> WaitCancelled<'_> {
        WaitCancelled {
            token: self,
            acquire: None,
        }
    }

    /// Blocks the calling thread until the token is cancelled.
    ///
    /// ```
    /// let t = strata::task::CancelToken::new();
    /// let t2 = t.clone();
    /// let h = std::thread::spawn(move || t2.cancel());
    /// t.wait();
    /// h.join().unwrap();
    /// assert!(t.is_cancelled());
    /// ```
    pub fn wait(&self) {
        if self.is_cancelled() {
            return;
        }
        if self
            .node
            .sem
            .acquire_blocking(1, RawMode::Unchecked, None)
            .is_ok()
        {
            self.node.sem.release(1);
        }
    }
}

impl Default for CancelToken {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// Future of [`CancelToken::cancelled`].
///
/// ```
/// let t = strata::task::CancelToken::new();
/// t.cancel();
/// strata::runtime::block_on(t.cancelled()); // ready at once
///
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct WaitCancelled<'a> {
    token: &'a CancelToken,
    acquire: Option<crate::sync::RawAcquire<'a>>,
}

impl Future for WaitCancelled<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.acquire.is_none() {
            if this.token.is_cancelled() {
                return Poll::Ready(());
            }
            this.acquire = Some(this.token.node.sem.acquire(1, RawMode::Unchecked));
        }
        let acquire = this.acquire.as_mut().expect("just set");
        match Pin::new(acquire).poll(cx) {
            Poll::Ready(res) => {
                this.acquire = None;
                if res.is_ok() {
                    this.token.node.sem.release(1);
                }
                // Re-polling after Ready stays Ready.
                this.acquire = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl fmt::Debug for WaitCancelled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitCancelled")
            .field("cancelled", &self.token.is_cancelled())
            .finish()
    }
}
