//! Compile-time lock levels: a lock order the type checker enforces.
//!
//! The run-time checker in [`diag`](crate::diag) reports an inversion the
//! first time the bad order *runs*. Levels go one step further for the
//! locks of a subsystem whose order is fixed by design: each
//! [`OrderedMutex`] belongs to a [`Level`], and it can only be locked with a
//! [`LockToken`] of a level strictly before its own. Locking returns a token
//! of the new level, so the order is threaded through the code and a wrong
//! order is a type error:
//!
//! ```compile_fail
//! use strata::sync::ordered::{LockToken, OrderedMutex};
//!
//! strata::lock_levels!(pub Config => pub Journal);
//!
//! let config = OrderedMutex::<Config, _>::new(1);
//! let journal = OrderedMutex::<Journal, _>::new(2);
//! let mut root = LockToken::root().unwrap();
//! let (_j, mut after_journal) = journal.lock(&mut root);
//! // error: `Journal: Before<Config>` is not satisfied
//! let (_c, _) = config.lock(&mut after_journal);
//! ```
//!
//! A level's place is a type-level rank (one step after the level it is
//! declared after), and `A: Before<B>` holds exactly when A's rank is below
//! B's. The order is therefore acyclic by construction: declaring a cycle
//! makes the ranks infinite, and that does not compile.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use thiserror::Error;

use crate::sync::{Mutex, MutexGuard};

/// Type-level ranks: [`R0`](rank::R0) is the rank of [`Unlocked`], and
/// [`Next<R>`](rank::Next) the rank after `R`.
pub mod rank {
    use std::marker::PhantomData;

    /// The lowest rank: the rank of [`Unlocked`](super::Unlocked).
    ///
    /// ```
    /// use strata::sync::ordered::{Level, Unlocked, rank::R0};
    ///
    /// fn rank_of_unlocked() -> <Unlocked as Level>::Rank {
    ///     R0
    /// }
    /// rank_of_unlocked();
    /// ```
    #[derive(Debug, Clone, Copy)]
    pub struct R0;

    /// The rank one step after `R`.
    ///
    /// ```
    /// use strata::sync::ordered::{Level, rank::Next};
    ///
    /// strata::lock_levels!(pub First);
    /// let _: Option<Next<<First as Level>::Rank>> = None;
    /// ```
    #[derive(Debug, Clone, Copy)]
    pub struct Next<R>(PhantomData<R>);

    /// `Self` is a lower rank than `R`.
    ///
    /// Implemented structurally and only here: `R0` is below every `Next`,
    /// and `Next<A>` is below `Next<B>` when `A` is below `B`.
    ///
    /// ```
    /// use strata::sync::ordered::rank::{Below, Next, R0};
    ///
    /// fn below<A: Below<B>, B>() {}
    /// below::<R0, Next<R0>>();
    /// below::<Next<R0>, Next<Next<R0>>>();
    /// ```
    #[diagnostic::on_unimplemented(
        message = "lock order broken: the token's level does not come before the mutex's level",
        label = "a token of this level cannot lock that mutex",
        note = "the `required for `P` to implement `Before<L>`` note names the two levels: lock `L` before `P`, or declare `P => L` with `strata::lock_levels!`"
    )]
    pub trait Below<R> {}

    impl<R> Below<Next<R>> for R0 {}
    impl<A: Below<B>, B> Below<Next<B>> for Next<A> {}
}

/// A lock level: a marker type with a place in the lock order.
///
/// Declare levels with [`lock_levels!`](crate::lock_levels), which gives
/// each its rank. A hand-written impl is possible (say, to put a level after
/// one of another crate); its rank must be `Next<Rank of the level it
/// follows>`.
///
/// ```
/// use strata::sync::ordered::{Level, Unlocked, rank::Next};
///
/// /// Taken first, right after nothing.
/// pub struct Registry;
/// impl Level for Registry {
///     type Rank = Next<<Unlocked as Level>::Rank>;
///     const NAME: &'static str = "Registry";
/// }
/// ```
pub trait Level: 'static {
    /// The level's place in the order (see [`rank`]).
    type Rank;
    /// The name used for the lock class of this level's mutexes, so
    /// run-time reports and metrics show the level.
    const NAME: &'static str;
}

/// `Self` comes strictly before `L` in the lock order: a holder of a
/// `LockToken<Self>` may lock an `OrderedMutex<L, _>`.
///
/// Derived from the ranks for every pair of levels and never implemented by
/// hand, so no impl can contradict another.
///
/// ```
/// use strata::sync::ordered::{Before, Unlocked};
///
/// strata::lock_levels!(pub Outer => pub Inner);
/// fn ordered<A: Before<B>, B: strata::sync::ordered::Level>() {}
/// ordered::<Unlocked, Outer>();
/// ordered::<Outer, Inner>();
/// ordered::<Unlocked, Inner>(); // transitive
/// ```
#[diagnostic::on_unimplemented(
    message = "lock level `{Self}` is not before `{L}`: locking `{L}` here breaks the declared lock order",
    label = "this token's level is `{Self}`, which does not come before `{L}`",
    note = "declare the order with `strata::lock_levels!`, or lock `{L}` before `{Self}`"
)]
pub trait Before<L: Level>: Level {}

impl<A: Level, B: Level> Before<B> for A where A::Rank: rank::Below<B::Rank> {}

/// The level of a thread that holds no ordered lock: before every level.
///
/// ```
/// use strata::sync::ordered::{LockToken, Unlocked};
///
/// let root: LockToken<'static, Unlocked> = LockToken::root().unwrap();
/// # drop(root);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Unlocked;

impl Level for Unlocked {
    type Rank = rank::R0;
    const NAME: &'static str = "Unlocked";
}

/// Declares lock levels in order: `lock_levels!(pub A => pub B => pub C)`
/// defines the unit types `A`, `B`, `C` with `A` right after
/// [`Unlocked`], `B` after `A`, `C` after `B`.
///
/// `lock_levels!(after A: pub D => pub E)` starts a chain after an existing
/// level, so `D` comes after `A` (and is unordered with `B`, which has the
/// same rank: neither may be taken while holding the other).
///
/// ```
/// use strata::sync::ordered::{Before, Level};
///
/// strata::lock_levels!(pub Config => pub Accounts => pub Journal);
/// strata::lock_levels!(after Config: pub Sessions);
///
/// fn before<A: Before<B>, B: Level>() {}
/// before::<Config, Journal>();
/// before::<Config, Sessions>();
/// assert_eq!(<Accounts as Level>::NAME, "Accounts");
/// ```
///
/// Declaring a cycle does not compile:
///
/// ```compile_fail
/// strata::lock_levels!(pub A => pub B => pub A);
/// ```
#[macro_export]
macro_rules! lock_levels {
    (after $prev:ty : $($rest:tt)+) => {
        $crate::__lock_levels_chain!($prev; $($rest)+);
    };
    ($($rest:tt)+) => {
        $crate::__lock_levels_chain!($crate::sync::ordered::Unlocked; $($rest)+);
    };
}

/// The step of [`lock_levels!`]: declares one level after `$prev`, then the
/// rest of the chain after it.
#[doc(hidden)]
#[macro_export]
macro_rules! __lock_levels_chain {
    ($prev:ty; $(#[$meta:meta])* $vis:vis $name:ident $(=> $($rest:tt)+)?) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        $vis struct $name;

        impl $crate::sync::ordered::Level for $name {
            type Rank = $crate::sync::ordered::rank::Next<
                <$prev as $crate::sync::ordered::Level>::Rank,
            >;
            const NAME: &'static str = stringify!($name);
        }

        $($crate::__lock_levels_chain!($name; $($rest)+);)?
    };
}

thread_local! {
    static ROOT_TAKEN: Cell<bool> = const { Cell::new(false) };
}

/// Why [`LockToken::root`] gave no token.
///
/// ```
/// use strata::sync::ordered::{LockToken, RootTokenInUse};
///
/// let root = LockToken::root().unwrap();
/// assert_eq!(LockToken::root().unwrap_err(), RootTokenInUse);
/// drop(root);
/// assert!(LockToken::root().is_ok());
/// ```
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error(
    "this thread already has a root lock token; pass it (or the token of a lock it holds) down instead"
)]
pub struct RootTokenInUse;

/// Proof that the current thread holds no ordered lock of level `L` or
/// later: what an [`OrderedMutex`] of a later level is locked with.
///
/// A thread starts from its one [`root`](LockToken::root) token (level
/// [`Unlocked`]). Locking borrows the token for as long as the guard lives
/// and returns the token of the new level, so a function that needs to lock
/// takes `&mut LockToken<'_, L>` for the latest level its caller may hold.
/// Tokens are zero-sized and `!Send`: they describe one thread's locks.
///
/// ```
/// use strata::sync::ordered::{Before, Level, LockToken, OrderedMutex};
///
/// strata::lock_levels!(pub Accounts => pub Journal);
///
/// struct Bank {
///     balance: OrderedMutex<Accounts, i64>,
///     journal: OrderedMutex<Journal, Vec<String>>,
/// }
///
/// // Callable from any level before Accounts.
/// fn deposit<L: Before<Accounts>>(bank: &Bank, token: &mut LockToken<'_, L>, amount: i64) {
///     let (mut balance, mut after) = bank.balance.lock(token);
///     *balance += amount;
///     let (mut journal, _) = bank.journal.lock(&mut after);
///     journal.push(format!("deposit {amount}"));
/// }
///
/// let bank = Bank {
///     balance: OrderedMutex::new(0),
///     journal: OrderedMutex::new(Vec::new()),
/// };
/// let mut root = LockToken::root().unwrap();
/// deposit(&bank, &mut root, 5);
/// assert_eq!(*bank.balance.lock(&mut root).0, 5);
/// ```
pub struct LockToken<'a, L: Level> {
    is_root: bool,
    _level: PhantomData<TokenMarker<'a, L>>,
}

/// Borrows like `&'a mut`, names the level, and is `!Send`/`!Sync` (a token
/// describes the locks of the thread that holds it).
type TokenMarker<'a, L> = (&'a mut (), fn() -> L, *const ());

impl LockToken<'static, Unlocked> {
    /// The current thread's root token, if it does not have one already.
    ///
    /// One per thread: a second root would let code that holds ordered locks
    /// start over from `Unlocked` and lock an earlier level.
    ///
    /// # Errors
    ///
    /// [`RootTokenInUse`] while this thread's root token is alive.
    ///
    /// ```
    /// use strata::sync::ordered::LockToken;
    ///
    /// let root = LockToken::root().unwrap();
    /// // Another thread has its own.
    /// std::thread::spawn(|| assert!(LockToken::root().is_ok())).join().unwrap();
    /// drop(root);
    /// ```
    pub fn root() -> Result<Self, RootTokenInUse> {
        ROOT_TAKEN.with(|taken| {
            if taken.replace(true) {
                Err(RootTokenInUse)
            } else {
                Ok(Self {
                    is_root: true,
                    _level: PhantomData,
                })
            }
        })
    }
}

impl<L: Level> Drop for LockToken<'_, L> {
    fn drop(&mut self) {
        if self.is_root {
            ROOT_TAKEN.with(|taken| taken.set(false));
        }
    }
}

impl<L: Level> fmt::Debug for LockToken<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockToken<{}>", L::NAME)
    }
}

/// A [`Mutex`] at lock level `L`: locked only with a token of a level before
/// `L`, so the order of its subsystem's locks is checked at compile time.
///
/// Its run-time lock class is the level's name, so the order checker and
/// [`diag::metrics`](crate::diag::metrics) see one class per level.
///
/// ```
/// use strata::sync::ordered::{LockToken, OrderedMutex};
///
/// strata::lock_levels!(pub Cache);
///
/// let cache = OrderedMutex::<Cache, _>::new(vec![1, 2]);
/// let mut root = LockToken::root().unwrap();
/// let (mut entries, _) = cache.lock(&mut root);
/// entries.push(3);
/// assert_eq!(entries.len(), 3);
/// ```
pub struct OrderedMutex<L: Level, T: ?Sized> {
    _level: PhantomData<fn() -> L>,
    inner: Mutex<T>,
}

/// The guard of an [`OrderedMutex`]; unlocks on drop.
///
/// ```
/// use strata::sync::ordered::{LockToken, OrderedMutex};
///
/// strata::lock_levels!(pub Counter);
/// let counter = OrderedMutex::<Counter, _>::new(0);
/// let mut root = LockToken::root().unwrap();
/// let (mut guard, _) = counter.lock(&mut root);
/// *guard += 1;
/// drop(guard);
/// assert_eq!(*counter.lock(&mut root).0, 1);
/// ```
#[must_use = "the mutex unlocks as soon as the guard is dropped"]
pub struct OrderedMutexGuard<'a, T: ?Sized> {
    inner: MutexGuard<'a, T>,
}

impl<L: Level, T> OrderedMutex<L, T> {
    /// A new unlocked mutex at level `L`.
    ///
    /// ```
    /// use strata::sync::ordered::OrderedMutex;
    ///
    /// strata::lock_levels!(pub Settings);
    /// static SETTINGS: OrderedMutex<Settings, u32> = OrderedMutex::new(7);
    /// # let _ = &SETTINGS;
    /// ```
    #[track_caller]
    pub const fn new(value: T) -> Self {
        Self {
            _level: PhantomData,
            inner: Mutex::named(L::NAME, value),
        }
    }

    /// Consumes the mutex and returns the data.
    ///
    /// ```
    /// use strata::sync::ordered::OrderedMutex;
    ///
    /// strata::lock_levels!(pub Files);
    /// assert_eq!(OrderedMutex::<Files, _>::new(3).into_inner(), 3);
    /// ```
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<L: Level, T: ?Sized> OrderedMutex<L, T> {
    /// Locks, given a token of an earlier level; returns the guard and the
    /// token of level `L` for locking later levels while the guard lives.
    ///
    /// ```
    /// use strata::sync::ordered::{LockToken, OrderedMutex};
    ///
    /// strata::lock_levels!(pub Outer => pub Inner);
    /// let outer = OrderedMutex::<Outer, _>::new(1);
    /// let inner = OrderedMutex::<Inner, _>::new(2);
    ///
    /// let mut root = LockToken::root().unwrap();
    /// let (o, mut after_outer) = outer.lock(&mut root);
    /// let (i, _) = inner.lock(&mut after_outer);
    /// assert_eq!(*o + *i, 3);
    /// ```
    #[track_caller]
    pub fn lock<'a, P: Before<L>>(
        &'a self,
        token: &'a mut LockToken<'_, P>,
    ) -> (OrderedMutexGuard<'a, T>, LockToken<'a, L>) {
        let _ = token;
        let guard = OrderedMutexGuard {
            inner: self.inner.lock(),
        };
        (guard, next_token())
    }

    /// Locks if free, without blocking.
    ///
    /// ```
    /// use strata::sync::ordered::{LockToken, OrderedMutex};
    ///
    /// strata::lock_levels!(pub Slot);
    /// let slot = OrderedMutex::<Slot, _>::new(0);
    /// let mut root = LockToken::root().unwrap();
    /// let (guard, _) = slot.try_lock(&mut root).expect("free");
    /// assert_eq!(*guard, 0);
    /// ```
    #[track_caller]
    pub fn try_lock<'a, P: Before<L>>(
        &'a self,
        token: &'a mut LockToken<'_, P>,
    ) -> Option<(OrderedMutexGuard<'a, T>, LockToken<'a, L>)> {
        let _ = token;
        let inner = self.inner.try_lock()?;
        Some((OrderedMutexGuard { inner }, next_token()))
    }

    /// Mutable access through a unique borrow; no locking, no token.
    ///
    /// ```
    /// use strata::sync::ordered::OrderedMutex;
    ///
    /// strata::lock_levels!(pub Local);
    /// let mut local = OrderedMutex::<Local, _>::new(1);
    /// *local.get_mut() = 2;
    /// assert_eq!(local.into_inner(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

fn next_token<'a, L: Level>() -> LockToken<'a, L> {
    LockToken {
        is_root: false,
        _level: PhantomData,
    }
}

impl<L: Level, T: ?Sized + fmt::Debug> fmt::Debug for OrderedMutex<L, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrderedMutex")
            .field("level", &L::NAME)
            .field("inner", &&self.inner)
            .finish()
    }
}

impl<T: ?Sized> Deref for OrderedMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: ?Sized> DerefMut for OrderedMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for OrderedMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::lock_levels!(A => B => C);
    crate::lock_levels!(after A: Side);

    fn before<P: Before<L>, L: Level>() {}

    #[test]
    fn order_is_transitive_from_unlocked() {
        before::<Unlocked, A>();
        before::<Unlocked, C>();
        before::<A, B>();
        before::<A, C>();
        before::<B, C>();
        before::<A, Side>();
    }

    #[test]
    fn locking_down_the_chain_works_and_releases() {
        let a = OrderedMutex::<A, _>::new(1);
        let b = OrderedMutex::<B, _>::new(2);
        let c = OrderedMutex::<C, _>::new(3);
        let mut root = LockToken::root().unwrap();
        {
            // Skipping a level is fine: the order is only "strictly later".
            let (ga, mut ta) = a.lock(&mut root);
            let (gc, _) = c.lock(&mut ta);
            assert_eq!(*ga + *gc, 4);
        }
        let (gb, mut tb) = b.lock(&mut root);
        assert!(a.inner.try_lock().is_some(), "a was released");
        let (mut gc, _) = c.try_lock(&mut tb).unwrap();
        *gc += *gb;
        drop(gc);
        drop(gb);
        assert_eq!(c.into_inner(), 5);
    }

    #[test]
    fn one_root_token_per_thread() {
        let root = LockToken::root().unwrap();
        assert_eq!(LockToken::root().unwrap_err(), RootTokenInUse);
        let m = OrderedMutex::<A, _>::new(0);
        {
            // A derived token is not a root: dropping it frees nothing.
            let mut root = root;
            let (_g, t) = m.lock(&mut root);
            drop(t);
            assert!(LockToken::root().is_err());
        }
        assert!(LockToken::root().is_ok());
    }

    #[test]
    fn the_run_time_class_is_the_level_name() {
        let m = OrderedMutex::<B, _>::new(());
        if let Some(key) = m.inner.class() {
            assert_eq!(key.name(), Some("B"));
        }
        assert_eq!(format!("{:?}", LockToken::<A>::root_like()), "LockToken<A>");
    }

    impl<L: Level> LockToken<'static, L> {
        fn root_like() -> Self {
            next_token()
        }
    }
}
