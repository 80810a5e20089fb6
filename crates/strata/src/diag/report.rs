//! What a violation report holds and how it prints.
//!
//! The text follows Linux lockdep's layout on purpose: people who have read a
//! lockdep splat can read this one, and the "possible unsafe locking
//! scenario" table explains the deadlock without a debugger.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::fmt::{self, Write as _};
use std::panic::Location;
use std::sync::Arc;

use super::class::{AcquireKind, ClassKey};

/// How a lock class is being taken or held.
///
/// The order checker treats modes differently: two `Shared` holders never
/// wait for each other, so a cycle that only passes shared-on-shared points
/// is not a deadlock.
///
/// ```
/// use strata::diag::Access;
///
/// assert!(Access::Exclusive.conflicts_with(Access::Shared));
/// assert!(!Access::Shared.conflicts_with(Access::Shared));
/// assert!(Access::Upgradable.conflicts_with(Access::Upgradable));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// A mutex, a write lock, a permit, a lease.
    Exclusive,
    /// A read lock.
    Shared,
    /// An upgradable read: shares with readers, excludes other upgraders.
    Upgradable,
}

impl Access {
    /// Whether a waiter in mode `self` must wait for a holder in mode `other`.
    ///
    /// ```
    /// use strata::diag::Access;
    ///
    /// assert!(Access::Upgradable.conflicts_with(Access::Exclusive));
    /// assert!(!Access::Upgradable.conflicts_with(Access::Shared));
    /// ```
    pub const fn conflicts_with(self, other: Access) -> bool {
        !matches!(
            (self, other),
            (Access::Shared, Access::Shared)
                | (Access::Shared, Access::Upgradable)
                | (Access::Upgradable, Access::Shared)
        )
    }

    /// The verb lockdep prints for this mode in a scenario table.
    fn verb(self) -> &'static str {
        match self {
            Access::Exclusive => "lock",
            Access::Shared => "rlock",
            Access::Upgradable => "ulock",
        }
    }

    #[cfg_attr(not(strata_checked), allow(dead_code))]
    pub(crate) const fn index(self) -> usize {
        match self {
            Access::Exclusive => 0,
            Access::Shared => 1,
            Access::Upgradable => 2,
        }
    }

    #[cfg_attr(not(strata_checked), allow(dead_code))]
    pub(crate) const ALL: [Access; 3] = [Access::Exclusive, Access::Shared, Access::Upgradable];
}

impl From<AcquireKind> for Access {
    fn from(kind: AcquireKind) -> Self {
        match kind {
            AcquireKind::Exclusive => Access::Exclusive,
            AcquireKind::Shared => Access::Shared,
            AcquireKind::Upgradable => Access::Upgradable,
        }
    }
}

impl From<Access> for AcquireKind {
    fn from(access: Access) -> Self {
        match access {
            Access::Exclusive => AcquireKind::Exclusive,
            Access::Shared => AcquireKind::Shared,
            Access::Upgradable => AcquireKind::Upgradable,
        }
    }
}

/// A node of the order graph: a lock class and its `lock_nested` subclass.
///
/// ```
/// # use std::sync::{Arc, Mutex};
/// # use strata::diag::{self, Class, Handler, Violation};
/// # let seen: Arc<Mutex<Vec<Violation>>> = Arc::default();
/// # let sink = seen.clone();
/// # diag::set_violation_handler(Handler::Callback(Arc::new(move |v| sink.lock().unwrap().push(v.clone()))));
/// # let (a, b) = (Class::new("a"), Class::new("b"));
/// # { let _a = a.enter(); let _b = b.enter(); }
/// # { let _b = b.enter(); let _a = a.enter(); }
/// if let Some(v) = seen.lock().unwrap().first() {
///     let class = v.acquiring().class();
///     assert_eq!(class.name(), Some("a"));
///     assert_eq!(class.subclass(), 0);
///     assert!(class.location().file().ends_with(".rs"));
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClassInfo {
    key: ClassKey,
    subclass: u32,
}

impl ClassInfo {
    #[cfg_attr(not(strata_checked), allow(dead_code))]
    pub(crate) fn new(key: ClassKey, subclass: u32) -> Self {
        Self { key, subclass }
    }

    /// The class identity (name and construction site).
    ///
    /// ```
    /// # use strata::diag::Class;
    /// let class = Class::new("cache");
    /// if let Some(key) = class.key() {
    ///     assert_eq!(key.name(), Some("cache"));
    /// }
    /// ```
    pub fn key(&self) -> ClassKey {
        self.key
    }

    /// The class's name, if it was given one.
    ///
    /// ```
    /// # use strata::diag::Class;
    /// assert_eq!(Class::new("cache").key().map_or(Some("cache"), |k| k.name()), Some("cache"));
    /// ```
    pub fn name(&self) -> Option<&'static str> {
        self.key.name()
    }

    /// Where the first primitive of this class was constructed.
    ///
    /// ```
    /// # use strata::diag::Class;
    /// if let Some(key) = Class::new("cache").key() {
    ///     assert!(key.location().line() > 0);
    /// }
    /// ```
    pub fn location(&self) -> &'static Location<'static> {
        self.key.location()
    }

    /// The `lock_nested` subclass; 0 for ordinary acquisitions.
    ///
    /// ```
    /// # let v: Option<strata::diag::Violation> = None;
    /// if let Some(v) = v {
    ///     assert_eq!(v.acquiring().class().subclass(), 0);
    /// }
    /// ```
    pub fn subclass(&self) -> u32 {
        self.subclass
    }

    /// The short label used in scenario tables and DOT output.
    pub(crate) fn label(&self) -> String {
        let mut s = match self.key.name() {
            Some(name) => name.to_owned(),
            None => {
                let l = self.key.location();
                format!("{}:{}", l.file(), l.line())
            }
        };
        if self.subclass != 0 {
            let _ = write!(s, "/{}", self.subclass);
        }
        s
    }

    /// A spelling that is the same in every run and every build of the same
    /// source, for the cycle id.
    fn stable(&self) -> String {
        let l = self.key.location();
        match self.key.name() {
            Some(name) => format!("name:{name}#{}", self.subclass),
            None => format!(
                "site:{}:{}:{}#{}",
                l.file(),
                l.line(),
                l.column(),
                self.subclass
            ),
        }
    }
}

impl fmt::Display for ClassInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.key.location();
        match self.key.name() {
            Some(name) => write!(f, "{name} ({}:{})", l.file(), l.line())?,
            None => write!(f, "{}:{}", l.file(), l.line())?,
        }
        if self.subclass != 0 {
            write!(f, " subclass {}", self.subclass)?;
        }
        Ok(())
    }
}

/// One acquisition: which class, in which mode, from which source line.
///
/// ```
/// # use std::sync::{Arc, Mutex};
/// # use strata::diag::{self, Class, Handler, Violation};
/// # let seen: Arc<Mutex<Vec<Violation>>> = Arc::default();
/// # let sink = seen.clone();
/// # diag::set_violation_handler(Handler::Callback(Arc::new(move |v| sink.lock().unwrap().push(v.clone()))));
/// # let (a, b) = (Class::new("a"), Class::new("b"));
/// # { let _a = a.enter(); let _b = b.enter(); }
/// # { let _b = b.enter(); let _a = a.enter(); }
/// if let Some(v) = seen.lock().unwrap().first() {
///     let held = &v.held()[0];
///     assert_eq!(held.class().name(), Some("b"));
///     assert_eq!(held.access(), strata::diag::Access::Exclusive);
///     assert!(held.site().file().ends_with(".rs"));
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acquisition {
    class: ClassInfo,
    access: Access,
    site: &'static Location<'static>,
}

impl Acquisition {
    #[cfg_attr(not(strata_checked), allow(dead_code))]
    pub(crate) fn new(class: ClassInfo, access: Access, site: &'static Location<'static>) -> Self {
        Self {
            class,
            access,
            site,
        }
    }

    /// The class acquired.
    ///
    /// ```
    /// for held in strata::diag::held_locks() {
    ///     println!("{}", held.class());
    /// }
    /// ```
    pub fn class(&self) -> ClassInfo {
        self.class
    }

    /// The mode it was acquired in.
    ///
    /// ```
    /// for held in strata::diag::held_locks() {
    ///     println!("{:?}", held.access());
    /// }
    /// ```
    pub fn access(&self) -> Access {
        self.access
    }

    /// The `file:line` of the lock call (`#[track_caller]`).
    ///
    /// ```
    /// for held in strata::diag::held_locks() {
    ///     println!("{}", held.site());
    /// }
    /// ```
    pub fn site(&self) -> &'static Location<'static> {
        self.site
    }
}

impl fmt::Display for Acquisition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.access {
            Access::Exclusive => "",
            Access::Shared => " [read]",
            Access::Upgradable => " [upgradable]",
        };
        write!(f, "{}{mode}, acquired at {}", self.class, self.site)
    }
}

/// One edge of a reported cycle: `from` was held while `to` was taken.
///
/// ```
/// # use std::sync::{Arc, Mutex};
/// # use strata::diag::{self, Class, Handler, Violation};
/// # let seen: Arc<Mutex<Vec<Violation>>> = Arc::default();
/// # let sink = seen.clone();
/// # diag::set_violation_handler(Handler::Callback(Arc::new(move |v| sink.lock().unwrap().push(v.clone()))));
/// # let (a, b) = (Class::new("a"), Class::new("b"));
/// # { let _a = a.enter(); let _b = b.enter(); }
/// # { let _b = b.enter(); let _a = a.enter(); }
/// if let Some(v) = seen.lock().unwrap().first() {
///     for edge in v.edges() {
///         println!("{} -> {} in {}", edge.from().class(), edge.to().class(), edge.context());
///         assert!(edge.backtrace().is_none() || std::env::var_os("RUST_BACKTRACE").is_some());
///     }
/// }
/// ```
#[derive(Clone, Debug)]
pub struct EdgeReport {
    from: Acquisition,
    to: Acquisition,
    context: Arc<str>,
    backtrace: Option<Arc<Backtrace>>,
}

impl EdgeReport {
    #[cfg_attr(not(strata_checked), allow(dead_code))]
    pub(crate) fn new(
        from: Acquisition,
        to: Acquisition,
        context: Arc<str>,
        backtrace: Option<Arc<Backtrace>>,
    ) -> Self {
        let backtrace = backtrace.filter(|b| b.status() == BacktraceStatus::Captured);
        Self {
            from,
            to,
            context,
            backtrace,
        }
    }

    /// The class that was held, and where it had been acquired.
    ///
    /// ```
    /// # let v: Option<strata::diag::Violation> = None;
    /// if let Some(v) = v {
    ///     println!("{}", v.edges()[0].from());
    /// }
    /// ```
    pub fn from(&self) -> &Acquisition {
        &self.from
    }

    /// The class taken while `from` was held, and where.
    ///
    /// ```
    /// # let v: Option<strata::diag::Violation> = None;
    /// if let Some(v) = v {
    ///     println!("{}", v.edges()[0].to());
    /// }
    /// ```
    pub fn to(&self) -> &Acquisition {
        &self.to
    }

    /// The thread name (or task label) that first took this edge.
    ///
    /// ```
    /// # let v: Option<strata::diag::Violation> = None;
    /// if let Some(v) = v {
    ///     println!("{}", v.edges()[0].context());
    /// }
    /// ```
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The stack when the edge was first recorded; only captured when
    /// `RUST_BACKTRACE` (or `RUST_LIB_BACKTRACE`) is set.
    ///
    /// ```
    /// # let v: Option<strata::diag::Violation> = None;
    /// if let Some(bt) = v.as_ref().and_then(|v| v.edges()[0].backtrace()) {
    ///     println!("{bt}");
    /// }
    /// ```
    pub fn backtrace(&self) -> Option<&Backtrace> {
        self.backtrace.as_deref()
    }
}

/// Which rule a [`Violation`] broke.
///
/// ```
/// use strata::diag::ViolationKind;
///
/// assert_ne!(ViolationKind::LockOrder, ViolationKind::SelfDeadlock);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ViolationKind {
    /// Classes taken in an order that closes a cycle with an order seen
    /// before (AB/BA, or longer).
    LockOrder,
    /// A class taken while already held by the same thread or task, without
    /// `lock_two`/`lock_all` or a `lock_nested` subclass.
    SelfDeadlock,
    /// A read of a writer-preferring lock whose class the thread or task
    /// already reads: a writer queued in between blocks the second read.
    RecursiveRead,
    /// Threads or tasks actually blocked in a wait-for cycle (the watchdog).
    Deadlock,
}

/// A lock-order or deadlock report.
///
/// `Display` prints a lockdep-style report: the acquisition that broke the
/// rule, the locks held at that moment, every edge of the cycle with both
/// acquisition sites and the thread that recorded it, and a "possible unsafe
/// locking scenario" table ending in `*** DEADLOCK ***`.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use strata::diag::{self, Class, Handler, Violation, ViolationKind};
///
/// let seen: Arc<Mutex<Vec<Violation>>> = Arc::default();
/// let sink = seen.clone();
/// diag::set_violation_handler(Handler::Callback(Arc::new(move |v| {
///     sink.lock().unwrap().push(v.clone());
/// })));
///
/// let (a, b) = (Class::new("a"), Class::new("b"));
/// {
///     let _a = a.enter();
///     let _b = b.enter();
/// }
/// {
///     let _b = b.enter();
///     let _a = a.enter(); // B then A: inverts the order above
/// }
///
/// let seen = seen.lock().unwrap();
/// if diag::checking_enabled() {
///     let v = &seen[0];
///     assert_eq!(v.kind(), ViolationKind::LockOrder);
///     assert_eq!(v.edges().len(), 2);
///     assert!(v.to_string().contains("*** DEADLOCK ***"));
/// } else {
///     assert!(seen.is_empty());
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Violation {
    kind: ViolationKind,
    cycle_id: String,
    context: Arc<str>,
    acquiring: Acquisition,
    held: Vec<Acquisition>,
    edges: Vec<EdgeReport>,
}

impl Violation {
    /// `edges` go around the cycle starting with the edge that closed it.
    #[cfg_attr(not(strata_checked), allow(dead_code))]
    pub(crate) fn new(
        kind: ViolationKind,
        context: Arc<str>,
        acquiring: Acquisition,
        held: Vec<Acquisition>,
        edges: Vec<EdgeReport>,
    ) -> Self {
        let classes: Vec<ClassInfo> = edges.iter().map(|e| e.from.class).collect();
        Self {
            kind,
            cycle_id: cycle_id(&classes),
            context,
            acquiring,
            held,
            edges,
        }
    }

    /// Which rule was broken.
    ///
    /// ```
    /// # let v: Option<strata::diag::Violation> = None;
    /// if let Some(v) = v {
    ///     println!("{:?}", v.kind());
    /// }
    /// ```
    pub fn kind(&self) -> ViolationKind {
        self.kind
    }

    /// A stable id of the cycle: a hex hash of its sorted classes, the same in
    /// every run, so CI can deduplicate or allow-list reports.
    ///
    /// ```
    /// # let v: Option<strata::diag::Violation> = None;
    /// if let Some(v) = v {
    ///     assert_eq!(v.cycle_id().len(), 16);
    /// }
    /// ```
    pub fn cycle_id(&self) -> &str {
        &self.cycle_id
    }

    /// The thread name or task label that made the violating acquisition.
    ///
    /// ```
    /// # let v: Option<strata::diag::Violation> = None;
    /// if let Some(v) = v {
    ///     println!("{}", v.context());
    /// }
    /// ```
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The acquisition that broke the rule.
    ///
    /// ```
    /// # let v: Option<strata::diag::Violation> = None;
    /// if let Some(v) = v {
    ///     println!("while taking {}", v.acquiring());
    /// }
    /// ```
    pub fn acquiring(&self) -> &Acquisition {
        &self.acquiring
    }

    /// The locks the thread or task held at that moment, oldest first.
    ///
    /// ```
    /// # let v: Option<strata::diag::Violation> = None;
    /// if let Some(v) = v {
    ///     for h in v.held() {
    ///         println!("holding {h}");
    ///     }
    /// }
    /// ```
    pub fn held(&self) -> &[Acquisition] {
        &self.held
    }

    /// The edges of the cycle, starting with the one that closed it.
    ///
    /// ```
    /// # let v: Option<strata::diag::Violation> = None;
    /// if let Some(v) = v {
    ///     assert!(!v.edges().is_empty());
    /// }
    /// ```
    pub fn edges(&self) -> &[EdgeReport] {
        &self.edges
    }

    fn headline(&self) -> &'static str {
        match self.kind {
            ViolationKind::LockOrder => "possible circular locking dependency detected",
            ViolationKind::SelfDeadlock => "possible recursive locking detected",
            ViolationKind::RecursiveRead => {
                "possible recursive read of a writer-preferring lock detected"
            }
            ViolationKind::Deadlock => "deadlock: threads blocked in a wait-for cycle",
        }
    }

    fn write_scenario(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const COL: &str = "                               ";
        let Some(first) = self.edges.first() else {
            return Ok(());
        };
        let (held, want) = (&first.from, &first.to);
        match self.kind {
            ViolationKind::SelfDeadlock => {
                writeln!(f, " Possible unsafe locking scenario:\n")?;
                writeln!(f, "       CPU0")?;
                writeln!(f, "       ----")?;
                writeln!(f, "  {}({});", held.access.verb(), held.class.label())?;
                writeln!(f, "  {}({});", want.access.verb(), want.class.label())?;
                writeln!(f, "\n *** DEADLOCK ***\n")?;
                writeln!(
                    f,
                    " May be due to missing lock nesting notation \
                     (lock_nested, lock_two or lock_all)"
                )
            }
            ViolationKind::RecursiveRead => {
                writeln!(f, " Possible unsafe locking scenario:\n")?;
                writeln!(f, "       CPU0                    CPU1")?;
                writeln!(f, "       ----                    ----")?;
                writeln!(f, "  {}({});", held.access.verb(), held.class.label())?;
                writeln!(f, "{COL}lock({});", held.class.label())?;
                writeln!(f, "  {}({});", want.access.verb(), want.class.label())?;
                writeln!(f, "\n *** DEADLOCK ***\n")?;
                writeln!(
                    f,
                    " The lock prefers writers: the queued writer on CPU1 blocks \
                     CPU0's second read, and waits for its first."
                )
            }
            ViolationKind::LockOrder | ViolationKind::Deadlock => {
                let last = self.edges.last().unwrap_or(first);
                if self.edges.len() > 2 {
                    writeln!(f, " Chain exists of:")?;
                    write!(f, "   {}", first.from.class.label())?;
                    for e in &self.edges {
                        write!(f, " --> {}", e.to.class.label())?;
                    }
                    writeln!(f, "\n")?;
                }
                writeln!(f, " Possible unsafe locking scenario:\n")?;
                writeln!(f, "       CPU0                    CPU1")?;
                writeln!(f, "       ----                    ----")?;
                writeln!(f, "  {}({});", held.access.verb(), held.class.label())?;
                writeln!(
                    f,
                    "{COL}{}({});",
                    last.from.access.verb(),
                    last.from.class.label()
                )?;
                writeln!(
                    f,
                    "{COL}{}({});",
                    last.to.access.verb(),
                    last.to.class.label()
                )?;
                writeln!(f, "  {}({});", want.access.verb(), want.class.label())?;
                writeln!(f, "\n *** DEADLOCK ***")
            }
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = "======================================================";
        writeln!(f, "{rule}")?;
        writeln!(f, "WARNING: {}", self.headline())?;
        writeln!(f, "strata lock checker, cycle id {}", self.cycle_id)?;
        writeln!(f, "------------------------------------------------------")?;
        writeln!(f, "'{}' is trying to acquire:", self.context)?;
        writeln!(f, "  {}", self.acquiring)?;
        if self.held.is_empty() {
            writeln!(f, "\nwhile holding no locks.")?;
        } else {
            writeln!(f, "\nwhile holding:")?;
            for (i, h) in self.held.iter().enumerate() {
                writeln!(f, "  #{i}: {h}")?;
            }
        }
        match self.kind {
            ViolationKind::LockOrder => {
                writeln!(f, "\nwhich closes this cycle of lock-order dependencies:")?
            }
            ViolationKind::Deadlock => writeln!(f, "\nwait-for cycle:")?,
            ViolationKind::SelfDeadlock | ViolationKind::RecursiveRead => {
                writeln!(f, "\nthe class is already held:")?
            }
        }
        for (i, e) in self.edges.iter().enumerate() {
            writeln!(
                f,
                "\n-> #{i}: {} --> {}",
                e.from.class.label(),
                e.to.class.label()
            )?;
            writeln!(f, "       holding {}", e.from)?;
            writeln!(f, "       then    {}", e.to)?;
            writeln!(f, "       in '{}'", e.context)?;
            if let Some(bt) = &e.backtrace {
                writeln!(f, "       first recorded at:\n{bt}")?;
            }
        }
        writeln!(f, "\nother info that might help us debug this:\n")?;
        self.write_scenario(f)?;
        writeln!(f, "{rule}")
    }
}

/// FNV-1a over the sorted stable spellings: std's hashers are randomly keyed
/// per process, which would make the id useless for allow-lists.
fn cycle_id(classes: &[ClassInfo]) -> String {
    let mut names: Vec<String> = classes.iter().map(ClassInfo::stable).collect();
    names.sort();
    names.dedup();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for name in &names {
        for b in name.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[cfg(all(test, strata_checked))]
mod tests {
    use super::*;
    use crate::diag::ClassSlot;

    fn acq(name: &'static str, access: Access) -> Acquisition {
        let key = ClassSlot::named(name).key().unwrap();
        Acquisition::new(ClassInfo::new(key, 0), access, Location::caller())
    }

    #[test]
    fn cycle_id_is_order_independent_and_stable() {
        let a = acq("a", Access::Exclusive).class;
        let b = acq("b", Access::Exclusive).class;
        assert_eq!(cycle_id(&[a, b]), cycle_id(&[b, a]));
        assert_ne!(cycle_id(&[a, b]), cycle_id(&[a]));
        assert_eq!(cycle_id(&[a, b]).len(), 16);
        // Named classes hash their names only: the same id in every run and
        // build, whatever the source layout.
        assert_eq!(cycle_id(&[a, b]), "8e8639ce6e8a058c");
    }

    #[test]
    fn recursive_read_scenario_shows_the_writer() {
        let h = acq("r", Access::Shared);
        let w = acq("r", Access::Shared);
        let v = Violation::new(
            ViolationKind::RecursiveRead,
            "t".into(),
            w,
            vec![h],
            vec![EdgeReport::new(h, w, "t".into(), None)],
        );
        let text = v.to_string();
        assert!(text.contains("rlock(r);"), "{text}");
        assert!(text.contains("lock(r);"), "{text}");
        assert!(text.contains("*** DEADLOCK ***"), "{text}");
    }
}
