//! loom models of the STM's lock-word protocols (run with `--cfg loom`).

use super::{TVar, atomically, retry};
use loom::sync::Arc;
use loom::thread;

/// Two threads transfer between two `TVar`s in opposite directions. Every
/// attempt — including ones that will abort — must see `a + b == 0`
/// (opacity), and both transfers must commit exactly once.
#[test]
fn loom_commit_and_validate_two_tvars() {
    loom::model(|| {
        let a = Arc::new(TVar::new(0i64));
        let b = Arc::new(TVar::new(0i64));
        let transfer = |from: Arc<TVar<i64>>, to: Arc<TVar<i64>>, n: i64| {
            move || {
                atomically(|tx| {
                    let x = tx.read(&from)?;
                    let y = tx.read(&to)?;
                    assert_eq!(x + y, 0, "an attempt saw an inconsistent state");
                    tx.write(&from, x - n)?;
                    tx.write(&to, y + n)
                })
                .unwrap();
            }
        };
        let t = thread::spawn(transfer(a.clone(), b.clone(), 1));
        transfer(b.clone(), a.clone(), 2)();
        t.join().unwrap();
        // +1 then -2 on a, in either order.
        assert_eq!((a.load(), b.load()), (1, -1));
    });
}

/// A read-only audit racing a writer over boxed values sees both old or
/// both new, never a mix.
#[test]
fn loom_read_only_snapshot_of_boxed_values() {
    loom::model(|| {
        let a = Arc::new(TVar::new(String::from("0")));
        let b = Arc::new(TVar::new(String::from("0")));
        let w = {
            let (a, b) = (a.clone(), b.clone());
            thread::spawn(move || {
                atomically(|tx| {
                    tx.write(&a, "1".into())?;
                    tx.write(&b, "1".into())
                })
                .unwrap();
            })
        };
        let (x, y) = atomically(|tx| Ok((tx.read(&a)?, tx.read(&b)?))).unwrap();
        assert_eq!(x, y);
        w.join().unwrap();
        assert_eq!(a.load(), "1");
    });
}

/// A transaction retrying on a flag is woken by the commit that sets it,
/// whichever way registration and commit interleave (loom reports a
/// deadlock if the wake-up is lost).
#[test]
fn loom_retry_wake_is_never_lost() {
    loom::model(|| {
        let flag = Arc::new(TVar::new(false));
        let waiter = {
            let flag = flag.clone();
            thread::spawn(move || {
                atomically(|tx| if tx.read(&flag)? { Ok(()) } else { retry() }).unwrap();
            })
        };
        atomically(|tx| tx.write(&flag, true)).unwrap();
        waiter.join().unwrap();
    });
}

/// Write skew: each transaction reads the variable the other writes. A
/// serializable run ends with exactly one of them set; both set means a
/// commit validated a read whose `TVar` another committer had locked (the
/// owner-pointer check took a foreign lock for its own).
#[test]
fn loom_write_skew_is_prevented() {
    loom::model(|| {
        let x = Arc::new(TVar::new(false));
        let y = Arc::new(TVar::new(false));
        let skew = |read: Arc<TVar<bool>>, write: Arc<TVar<bool>>| {
            move || {
                atomically(|tx| {
                    if !tx.read(&read)? {
                        tx.write(&write, true)?;
                    }
                    Ok(())
                })
                .unwrap();
            }
        };
        let t = thread::spawn(skew(x.clone(), y.clone()));
        skew(y.clone(), x.clone())();
        t.join().unwrap();
        assert!(x.load() ^ y.load(), "both or neither committed");
    });
}

/// Commutes resolved under the commit's locks, with a validator: two
/// concurrent increments both land, and a third that the validator
/// rejects changes nothing.
#[test]
fn loom_commutes_and_validator_under_locks() {
    loom::model(|| {
        let n = Arc::new(TVar::new(0u32));
        n.set_validator(|v| *v <= 2);
        let t = {
            let n = n.clone();
            thread::spawn(move || atomically(|tx| tx.commute(&n, |v| v + 1)).unwrap())
        };
        atomically(|tx| tx.commute(&n, |v| v + 1)).unwrap();
        t.join().unwrap();
        assert_eq!(n.load(), 2);
        let r = atomically(|tx| tx.commute(&n, |v| v + 1));
        assert!(r.is_err());
        assert_eq!(n.load(), 2);
    });
}

/// Two commits whose validators load each other's `TVar`: a validator runs
/// with its commit's lock held, so waiting for the other commit's lock would
/// be a deadlock (loom reports it); it reads the value there instead. Both
/// commits land and each validator saw a committed value.
#[test]
fn loom_crossed_validators_do_not_wait_for_each_other() {
    loom::model(|| {
        let x = Arc::new(TVar::new(0u32));
        let y = Arc::new(TVar::new(0u32));
        let y2 = y.clone();
        x.set_validator(move |v| *v == 1 && y2.load() <= 1);
        let x2 = x.clone();
        y.set_validator(move |v| *v == 1 && x2.load() <= 1);
        let t = {
            let y = y.clone();
            thread::spawn(move || atomically(|tx| tx.write(&y, 1)).unwrap())
        };
        atomically(|tx| tx.write(&x, 1)).unwrap();
        t.join().unwrap();
        assert_eq!((x.load(), y.load()), (1, 1));
        // The validators hold each other's `TVar`: break the cycle.
        x.clear_validator();
        y.clear_validator();
    });
}
