//! Ordered locking: taking several locks without a lock-order deadlock.
//!
//! Two tools, for the two ways an order can be known:
//!
//! - When which lock comes first depends on the data (a transfer from
//!   account `a` to `b` and another from `b` to `a`), no fixed source order
//!   exists. [`lock_two`], [`lock_all`] and [`lock_all_vec`] impose one:
//!   every caller locks in increasing address order, so two callers can
//!   never each hold what the other waits for. The guards come back in the
//!   order the caller passed the locks.
//! - When the order is fixed by design (config before accounts before the
//!   journal), [`lock_levels!`](crate::lock_levels) declares it and
//!   [`OrderedMutex`] enforces it at compile time through [`LockToken`]s.

use thiserror::Error;

use super::mutex::{Mutex, MutexGuard};

mod levels;

pub use levels::{
    Before, Level, LockToken, OrderedMutex, OrderedMutexGuard, RootTokenInUse, Unlocked, rank,
};

/// Why [`lock_two`], [`lock_all`] or [`lock_all_vec`] refused to lock.
///
/// ```
/// use strata::sync::{Mutex, OrderedLockError, lock_two};
///
/// let account = Mutex::new(100);
/// assert_eq!(
///     lock_two(&account, &account).unwrap_err(),
///     OrderedLockError::SameLock
/// );
/// ```
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum OrderedLockError {
    /// The same mutex was passed more than once. Locking it twice would
    /// deadlock the caller on itself, so nothing was locked.
    #[error("the same mutex was passed twice; locking it again would deadlock")]
    SameLock,
}

#[inline]
fn addr<T: ?Sized>(m: &Mutex<T>) -> usize {
    std::ptr::from_ref(m).cast::<()>().addr()
}

/// Sorts `order` (indices into `locks`) into the global lock order and rejects
/// duplicates, which would sort next to each other.
fn global_order<T: ?Sized>(
    locks: &[&Mutex<T>],
    order: &mut [usize],
) -> Result<(), OrderedLockError> {
    order.sort_unstable_by_key(|&i| addr(locks[i]));
    if order
        .windows(2)
        .any(|w| addr(locks[w[0]]) == addr(locks[w[1]]))
    {
        return Err(OrderedLockError::SameLock);
    }
    Ok(())
}

/// Locks two mutexes in the global (address) order and returns the guards in
/// argument order: `(guard of a, guard of b)`.
///
/// Use it whenever two locks of the same kind must be held together and
/// either could come first, as in a transfer between two accounts. Mixing it
/// with plain nested `lock` calls on the same mutexes forfeits the guarantee.
///
/// # Errors
///
/// [`OrderedLockError::SameLock`] if `a` and `b` are the same mutex; nothing
/// is locked then.
///
/// ```
/// use strata::sync::{Mutex, lock_two};
///
/// let alice = Mutex::new(100);
/// let bob = Mutex::new(50);
/// let transfer = |from: &Mutex<i32>, to: &Mutex<i32>, amount| {
///     let (mut from, mut to) = lock_two(from, to)?;
///     *from -= amount;
///     *to += amount;
///     Ok::<_, strata::sync::OrderedLockError>(())
/// };
/// std::thread::scope(|s| {
///     s.spawn(|| transfer(&alice, &bob, 10).unwrap());
///     s.spawn(|| transfer(&bob, &alice, 5).unwrap()); // opposite order: no deadlock
/// });
/// assert_eq!((*alice.lock(), *bob.lock()), (95, 55));
/// ```
#[track_caller]
pub fn lock_two<'a, 'b, T: ?Sized, U: ?Sized>(
    a: &'a Mutex<T>,
    b: &'b Mutex<U>,
) -> Result<(MutexGuard<'a, T>, MutexGuard<'b, U>), OrderedLockError> {
    let (pa, pb) = (addr(a), addr(b));
    if pa == pb {
        return Err(OrderedLockError::SameLock);
    }
    // Marked as ordered: same-class nesting in address order is not a
    // self-deadlock, so the checker does not report it.
    if pa < pb {
        let ga = a.lock_ordered();
        let gb = b.lock_ordered();
        Ok((ga, gb))
    } else {
        let gb = b.lock_ordered();
        let ga = a.lock_ordered();
        Ok((ga, gb))
    }
}

/// Locks `N` mutexes in the global (address) order and returns the guards in
/// the order of `locks`.
///
/// # Errors
///
/// [`OrderedLockError::SameLock`] if a mutex appears twice; nothing is locked
/// then.
///
/// ```
/// use strata::sync::{Mutex, lock_all};
///
/// let shards = [Mutex::new(1), Mutex::new(2), Mutex::new(3)];
/// let [c, a, b] = lock_all([&shards[2], &shards[0], &shards[1]]).unwrap();
/// assert_eq!((*a, *b, *c), (1, 2, 3));
///
/// assert!(lock_all([&shards[0], &shards[1], &shards[0]]).is_err());
/// ```
#[track_caller]
pub fn lock_all<'a, T: ?Sized, const N: usize>(
    locks: [&'a Mutex<T>; N],
) -> Result<[MutexGuard<'a, T>; N], OrderedLockError> {
    let mut order: [usize; N] = std::array::from_fn(|i| i);
    global_order(&locks, &mut order)?;
    let mut guards: [Option<MutexGuard<'a, T>>; N] = std::array::from_fn(|_| None);
    // A plain loop rather than a closure, so `#[track_caller]` carries the
    // caller's location into each `lock`.
    // Marked as ordered: same-class nesting in address order is not a
    // self-deadlock, so the checker does not report it.
    for &i in &order {
        guards[i] = Some(locks[i].lock_ordered());
    }
    Ok(guards.map(|g| g.expect("`order` is a permutation, so every slot was filled")))
}

/// [`lock_all`] for a number of mutexes known only at run time.
///
/// ```
/// use strata::sync::{Mutex, lock_all_vec};
///
/// let accounts: Vec<Mutex<i64>> = (0..5).map(Mutex::new).collect();
/// let picked: Vec<&Mutex<i64>> = [4, 1, 3].iter().map(|&i| &accounts[i]).collect();
/// let guards = lock_all_vec(&picked).unwrap();
/// let values: Vec<i64> = guards.iter().map(|g| **g).collect();
/// assert_eq!(values, [4, 1, 3]);
/// ```
///
/// # Errors
///
/// [`OrderedLockError::SameLock`] if a mutex appears twice; nothing is locked
/// then.
#[track_caller]
pub fn lock_all_vec<'a, T: ?Sized>(
    locks: &[&'a Mutex<T>],
) -> Result<Vec<MutexGuard<'a, T>>, OrderedLockError> {
    let mut order: Vec<usize> = (0..locks.len()).collect();
    global_order(locks, &mut order)?;
    let mut guards: Vec<Option<MutexGuard<'a, T>>> = locks.iter().map(|_| None).collect();
    // Marked as ordered, as in `lock_all`.
    for &i in &order {
        guards[i] = Some(locks[i].lock_ordered());
    }
    Ok(guards
        .into_iter()
        .map(|g| g.expect("`order` is a permutation, so every slot was filled"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_two_returns_guards_in_argument_order() {
        let a = Mutex::new('a');
        let b = Mutex::new('b');
        let (x, y) = lock_two(&a, &b).unwrap();
        assert_eq!((*x, *y), ('a', 'b'));
        drop((x, y));
        let (x, y) = lock_two(&b, &a).unwrap();
        assert_eq!((*x, *y), ('b', 'a'));
    }

    #[test]
    fn same_lock_locks_nothing() {
        let a = Mutex::new(0);
        let b = Mutex::new(1);
        assert_eq!(lock_two(&a, &a).err(), Some(OrderedLockError::SameLock));
        assert_eq!(
            lock_all([&a, &b, &a]).err(),
            Some(OrderedLockError::SameLock)
        );
        assert_eq!(
            lock_all_vec(&[&b, &b]).err(),
            Some(OrderedLockError::SameLock)
        );
        assert!(!a.is_locked());
        assert!(!b.is_locked());
    }

    #[test]
    fn degenerate_sizes() {
        let a = Mutex::new(1);
        let none: [MutexGuard<'_, i32>; 0] = lock_all::<i32, 0>([]).unwrap();
        assert!(none.is_empty());
        let [g] = lock_all([&a]).unwrap();
        assert_eq!(*g, 1);
        drop(g);
        assert!(lock_all_vec::<i32>(&[]).unwrap().is_empty());
    }

    #[test]
    fn mixed_types_in_lock_two() {
        let n = Mutex::new(1u8);
        let s = Mutex::new(String::from("x"));
        let (g1, g2) = lock_two(&s, &n).unwrap();
        assert_eq!((g1.as_str(), *g2), ("x", 1));
    }
}
