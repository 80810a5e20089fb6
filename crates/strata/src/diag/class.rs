//! Lock classes and the hook every acquisition goes through.

use std::fmt;
use std::panic::Location;

/// The identity of a lock class: a name, or else the construction site.
///
/// Classes, not instances, are what order checking reasons about: two
/// accounts built by the same constructor share one class.
///
/// ```
/// let m = strata::sync::Mutex::named("accounts", 0u32);
/// if let Some(class) = m.class() {
///     assert_eq!(class.name(), Some("accounts"));
/// }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassKey {
    name: Option<&'static str>,
    location: &'static Location<'static>,
}

impl ClassKey {
    /// The name given with `named`, if any.
    pub fn name(&self) -> Option<&'static str> {
        self.name
    }

    /// Where the primitive was constructed.
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

impl fmt::Debug for ClassKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ClassKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name {
            Some(name) => write!(f, "{name} ({})", self.location),
            None => write!(f, "{}", self.location),
        }
    }
}

/// The class a primitive belongs to; zero-sized when checking is off.
#[derive(Clone, Copy)]
pub(crate) struct ClassSlot {
    #[cfg(strata_checked)]
    key: ClassKey,
}

/// How a primitive is being taken; the order checker treats reads specially.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AcquireKind {
    /// Exclusive: a mutex, a write lock, a semaphore permit.
    Exclusive,
    /// Shared: a read lock.
    Shared,
    /// An upgradable read.
    Upgradable,
}

/// Marks a class as held by the current thread or task until dropped;
/// zero-sized when checking is off.
#[must_use]
#[derive(Debug)]
pub(crate) struct HeldToken {
    #[cfg(strata_checked)]
    entry: Option<super::engine::HeldEntry>,
}

impl HeldToken {
    /// Records a mode change of a held lock (a downgrade, a finished
    /// upgrade); checks nothing, the class is already held.
    #[inline]
    #[cfg_attr(not(strata_checked), allow(unused_variables))]
    pub(crate) fn set_kind(&mut self, kind: AcquireKind) {
        #[cfg(strata_checked)]
        if let Some(entry) = &mut self.entry {
            entry.set_kind(kind);
        }
    }
}

/// How a checked acquisition is made, beyond its [`AcquireKind`].
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum How {
    /// Waits until it gets the lock: reported on a bad order.
    Blocking,
    /// A `try_` or timed acquisition: records the edge, never reports.
    /// A timed wait cannot hang, and backing off on a timeout is the usual
    /// way out of a suspected deadlock, so reporting it would punish the cure.
    Try,
    /// Part of `lock_two` / `lock_all`: same-class instances in address order.
    Ordered,
    /// `lock_nested(subclass)`: a distinct nesting level of the class.
    Nested(u32),
}

impl ClassSlot {
    /// The class of the caller's construction site.
    #[track_caller]
    #[inline]
    pub(crate) const fn site() -> Self {
        Self {
            #[cfg(strata_checked)]
            key: ClassKey {
                name: None,
                location: Location::caller(),
            },
        }
    }

    /// A class with a name (its construction site is kept for reports).
    #[track_caller]
    #[inline]
    #[cfg_attr(not(strata_checked), allow(unused_variables))]
    pub(crate) const fn named(name: &'static str) -> Self {
        Self {
            #[cfg(strata_checked)]
            key: ClassKey {
                name: Some(name),
                location: Location::caller(),
            },
        }
    }

    /// The class, when checking is compiled in.
    #[inline]
    pub(crate) fn key(&self) -> Option<ClassKey> {
        #[cfg(strata_checked)]
        {
            Some(self.key)
        }
        #[cfg(not(strata_checked))]
        {
            None
        }
    }

    /// Checks the order of taking this class on the current thread, reports
    /// a violation before the caller can block, and marks the class held
    /// until the token drops. Compiles to nothing with checking off.
    #[track_caller]
    #[inline(always)]
    pub(crate) fn enter(&self, kind: AcquireKind, how: How) -> HeldToken {
        self.enter_at(kind, how, Location::caller())
    }

    /// [`enter`](Self::enter) with the acquisition site given: for a call
    /// made from inside a closure, where `#[track_caller]` does not reach.
    #[inline(always)]
    #[cfg_attr(not(strata_checked), allow(unused_variables))]
    pub(crate) fn enter_at(
        &self,
        kind: AcquireKind,
        how: How,
        site: &'static Location<'static>,
    ) -> HeldToken {
        #[cfg(strata_checked)]
        {
            use super::engine::on_acquire;
            HeldToken {
                entry: Some(on_acquire(
                    self.key,
                    kind,
                    site,
                    how.opts(),
                    self.instance(),
                )),
            }
        }
        #[cfg(not(strata_checked))]
        HeldToken {}
    }

    /// Records a signal of this class by the current thread (a condvar
    /// notify): whoever waits on the class while holding a lock the
    /// signaller holds here is reported. Nothing with checking off.
    #[track_caller]
    #[inline(always)]
    pub(crate) fn signal(&self) {
        #[cfg(strata_checked)]
        super::engine::on_signal(self.key, Location::caller());
    }

    /// An async acquisition of this class, to be checked when its future is
    /// first polled (only then is the task known).
    #[track_caller]
    #[inline(always)]
    #[cfg_attr(not(strata_checked), allow(unused_variables))]
    pub(crate) fn task_entry(&self, kind: AcquireKind, how: How) -> TaskEntry {
        TaskEntry {
            #[cfg(strata_checked)]
            state: Box::new(TaskEntryState {
                slot: *self,
                instance: self.instance(),
                kind,
                how,
                site: Location::caller(),
                token: None,
                waiting: None,
            }),
        }
    }

    /// The identity of the primitive instance that embeds this slot, for the
    /// watchdog: the slot's own address (a primitive cannot move while it
    /// is borrowed for an acquisition).
    #[cfg(strata_checked)]
    #[inline(always)]
    fn instance(&self) -> usize {
        std::ptr::from_ref(self).addr()
    }
}

#[cfg(strata_checked)]
impl How {
    fn opts(self) -> super::engine::AcquireOpts {
        use super::engine::AcquireOpts;
        match self {
            How::Blocking => AcquireOpts::BLOCKING,
            How::Try => AcquireOpts::TRY,
            How::Ordered => AcquireOpts::ORDERED,
            How::Nested(n) => AcquireOpts::nested(n),
        }
    }
}

impl HeldToken {
    /// A token that holds nothing (an acquisition that never started).
    #[inline(always)]
    pub(crate) fn none() -> Self {
        Self {
            #[cfg(strata_checked)]
            entry: None,
        }
    }

    /// Takes the primitive: `try_now` first; if that fails the wait is
    /// registered (for the watchdog and the contention metrics) around
    /// `block`. With checking off this is exactly `block()`, so the
    /// primitive keeps its own fast path.
    #[inline(always)]
    #[cfg_attr(not(strata_checked), allow(unused_variables))]
    pub(crate) fn wait<G>(
        &self,
        try_now: impl FnOnce() -> Option<G>,
        block: impl FnOnce() -> G,
    ) -> G {
        #[cfg(strata_checked)]
        {
            if let Some(g) = try_now() {
                return g;
            }
            self.contended(block)
        }
        #[cfg(not(strata_checked))]
        block()
    }

    #[cfg(strata_checked)]
    #[cold]
    #[inline(never)]
    fn contended<G>(&self, block: impl FnOnce() -> G) -> G {
        let Some(entry) = &self.entry else {
            return block();
        };
        let waiting = super::waits::begin(entry);
        let started = std::time::Instant::now();
        let granted = block();
        entry.waited(started.elapsed());
        drop(waiting);
        granted
    }

    /// Stops holding the class while `f` runs, then takes it again through
    /// the order check: for a guard that gives its lock up for a while
    /// (`MutexGuard::unlocked`).
    #[inline(always)]
    pub(crate) fn released<U>(&mut self, f: impl FnOnce() -> U) -> U {
        #[cfg(strata_checked)]
        {
            let suspended = self.entry.take().and_then(|e| e.suspend());
            let out = f();
            self.entry = suspended.map(|s| s.resume());
            out
        }
        #[cfg(not(strata_checked))]
        f()
    }
}

/// An async acquisition waiting for its first poll. The order is checked
/// against the polling task's held set (found through its waker, see
/// `diag::task`) and the class is then held by that task, so a guard held
/// across `.await` and resumed on another worker is still the task's.
/// Zero-sized with checking off.
pub(crate) struct TaskEntry {
    #[cfg(strata_checked)]
    state: Box<TaskEntryState>,
}

#[cfg(strata_checked)]
struct TaskEntryState {
    slot: ClassSlot,
    instance: usize,
    kind: AcquireKind,
    how: How,
    site: &'static Location<'static>,
    token: Option<HeldToken>,
    waiting: Option<(super::waits::Waiting, std::time::Instant)>,
}

impl TaskEntry {
    /// Call at every poll before trying to acquire; checks on the first.
    #[inline(always)]
    #[cfg_attr(not(strata_checked), allow(unused_variables))]
    pub(crate) fn poll(&mut self, cx: &std::task::Context<'_>) {
        #[cfg(strata_checked)]
        if self.state.token.is_none() {
            self.first_poll(cx);
        }
    }

    #[cfg(strata_checked)]
    #[cold]
    fn first_poll(&mut self, cx: &std::task::Context<'_>) {
        let st = &mut *self.state;
        let set = super::task::set_for(cx.waker());
        // One task may multiplex branches on one waker (`join!`, `select!`,
        // a hand-rolled poller): a branch waiting for a class another
        // branch holds is then normal and resolves when that branch goes
        // on. So a task taking a class it already holds is not reported as
        // a self-deadlock (same-class instances count as ordered); edges
        // between different classes are recorded and checked as usual.
        let mut opts = st.how.opts();
        opts.ordered = true;
        let entry =
            super::engine::on_acquire_in(&set, st.slot.key, st.kind, st.site, opts, st.instance);
        st.token = Some(HeldToken { entry: Some(entry) });
    }

    /// Call when the acquisition returned `Pending`: registers the wait.
    #[inline(always)]
    pub(crate) fn pending(&mut self) {
        #[cfg(strata_checked)]
        if self.state.waiting.is_none()
            && let Some(HeldToken { entry: Some(entry) }) = &self.state.token
        {
            self.state.waiting = Some((super::waits::begin(entry), std::time::Instant::now()));
        }
    }

    /// Call when the acquisition completed: the token that holds the class.
    #[inline(always)]
    pub(crate) fn finish(&mut self) -> HeldToken {
        #[cfg(strata_checked)]
        {
            let waited = self.state.waiting.take();
            let token = self.state.token.take().unwrap_or_else(HeldToken::none);
            if let (Some((_, started)), Some(entry)) = (waited, &token.entry) {
                entry.waited(started.elapsed());
            }
            token
        }
        #[cfg(not(strata_checked))]
        HeldToken::none()
    }
}

impl fmt::Debug for ClassSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key() {
            Some(key) => fmt::Debug::fmt(&key, f),
            None => f.write_str("<unchecked>"),
        }
    }
}
