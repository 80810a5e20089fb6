//! Integration tests of `strata::stm`: the acceptance points.
//!
//! Statistics are process-global and other tests run concurrently, so
//! counts that must be exact are measured inside the closures; `stats()` is
//! only checked for lower bounds.

mod support;

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use strata::stm::{
    Limits, Stm, StmError, TVar, Tx, TxError, abort, atomically, atomically_async,
    atomically_async_with, atomically_with, check, or_else, retry, stats, try_atomically,
};

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Runs `f` on a thread of its own and fails the test if it does not return
/// within a generous bound: for code that used to hang, so that a
/// regression fails instead of blocking the suite (not a timing assertion).
fn finishes<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (done, result) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(catch_unwind(AssertUnwindSafe(f)));
    });
    match result.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what}: did not finish (hung)"),
    }
}

// ---------------------------------------------------------------- basics

#[test]
fn read_your_writes_and_read_only() {
    let a = TVar::new(1u64);
    let s = TVar::new(String::from("x"));
    let r = atomically(|tx| {
        tx.write(&a, 5)?;
        tx.modify(&s, |mut v| {
            v.push('y');
            v
        })?;
        Ok((tx.read(&a)?, tx.read(&s)?))
    })
    .unwrap();
    assert_eq!(r, (5, "xy".to_string()));
    assert_eq!((a.load(), s.load()), (5, "xy".into()));
    let ro = atomically(|tx| Ok(tx.read(&a)? + 1)).unwrap();
    assert_eq!(ro, 6);
}

#[test]
fn many_value_types() {
    let f = TVar::new(1.5f64);
    let b = TVar::new(false);
    let i = TVar::new(-3i8);
    let c = TVar::new('a');
    let t = TVar::new((1u32, 2u32));
    atomically(|tx| {
        tx.modify(&f, |x| x * 2.0)?;
        tx.write(&b, true)?;
        tx.modify(&i, |x| x - 1)?;
        tx.write(&c, 'ß')?;
        tx.modify(&t, |(x, y)| (y, x))
    })
    .unwrap();
    assert_eq!(
        (f.load(), b.load(), i.load(), c.load(), t.load()),
        (3.0, true, -4, 'ß', (2, 1))
    );
}

#[test]
fn commute_applies_at_commit_and_reads_see_it() {
    let n = TVar::new(10u64);
    let v = TVar::new(vec![1]);
    let seen = atomically(|tx| {
        tx.commute(&n, |x| x + 1)?;
        tx.commute(&n, |x| x * 2)?;
        tx.commute(&v, |mut x| {
            x.push(2);
            x
        })?;
        Ok(())
    });
    assert!(seen.is_ok());
    assert_eq!(n.load(), 22);
    assert_eq!(v.load(), vec![1, 2]);
    // A read after commute sees the pending functions applied.
    let r = atomically(|tx| {
        tx.commute(&n, |x| x + 1)?;
        let x = tx.read(&n)?;
        tx.commute(&n, |x| x + 100)?;
        Ok(x)
    })
    .unwrap();
    assert_eq!((r, n.load()), (23, 123));
}

#[test]
fn concurrent_commutes_lose_nothing() {
    let n = TVar::new(0u64);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..2000 {
                    atomically(|tx| tx.commute(&n, |x| x + 1)).unwrap();
                }
            });
        }
    });
    assert_eq!(n.load(), 8000);
}

// ------------------------------------------------------------ acceptance

/// 8 threads × 100k transfers with concurrent audits: every audit sees the
/// exact total.
#[test]
fn bank_invariant_with_audits() {
    const ACCOUNTS: usize = 64;
    const THREADS: usize = 8;
    const TRANSFERS: usize = 100_000;
    const START: u64 = 1_000;
    let accounts: Vec<TVar<u64>> = (0..ACCOUNTS).map(|_| TVar::new(START)).collect();
    let total = START * ACCOUNTS as u64;
    let done = AtomicBool::new(false);
    let audits = AtomicU64::new(0);
    thread::scope(|s| {
        let mut transfers = Vec::new();
        for t in 0..THREADS {
            let accounts = &accounts;
            transfers.push(s.spawn(move || {
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1);
                for _ in 0..TRANSFERS {
                    let a = xorshift(&mut rng) as usize % ACCOUNTS;
                    let b = (a + 1 + xorshift(&mut rng) as usize % (ACCOUNTS - 1)) % ACCOUNTS;
                    let amount = xorshift(&mut rng) % 50;
                    atomically(|tx| {
                        let x = tx.read(&accounts[a])?;
                        if x < amount {
                            return Ok(());
                        }
                        let y = tx.read(&accounts[b])?;
                        tx.write(&accounts[a], x - amount)?;
                        tx.write(&accounts[b], y + amount)
                    })
                    .unwrap();
                }
            }));
        }
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) || audits.load(Ordering::Relaxed) == 0 {
                    let sum = atomically(|tx| {
                        let mut sum = 0;
                        for a in &accounts {
                            sum += tx.read(a)?;
                        }
                        Ok(sum)
                    })
                    .unwrap();
                    assert_eq!(sum, total, "an audit saw money created or destroyed");
                    audits.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for t in transfers {
            t.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
    let sum: u64 = accounts.iter().map(TVar::load).sum();
    assert_eq!(sum, total);
    assert!(audits.load(Ordering::Relaxed) > 0);
}

/// Writers keep `a == b` (word values) and `s == t` (boxed values); readers
/// compare them *inside* the closure, in every attempt, including ones that
/// later abort. Opacity: never a difference.
#[test]
fn opacity_probe_counts_no_inconsistent_read() {
    let (a, b) = (TVar::new(0u64), TVar::new(0u64));
    let (s1, s2) = (TVar::new(String::from("0")), TVar::new(String::from("0")));
    let stop = AtomicBool::new(false);
    let inconsistent = AtomicU64::new(0);
    let attempts = AtomicU64::new(0);
    thread::scope(|sc| {
        for w in 0..2u64 {
            let (a, b, s1, s2, stop) = (&a, &b, &s1, &s2, &stop);
            sc.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let v = i * 2 + w;
                    atomically(|tx| {
                        tx.write(a, v)?;
                        tx.write(b, v)?;
                        tx.write(s1, v.to_string())?;
                        tx.write(s2, v.to_string())
                    })
                    .unwrap();
                }
            });
        }
        for _ in 0..2 {
            sc.spawn(|| {
                for _ in 0..3000 {
                    atomically(|tx| {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        let x = tx.read(&a)?;
                        let p = tx.read(&s1)?;
                        thread::yield_now();
                        let y = tx.read(&b)?;
                        let q = tx.read(&s2)?;
                        if x != y || p != q {
                            inconsistent.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(())
                    })
                    .unwrap();
                }
            });
        }
        // Readers first; then stop the writers.
        while attempts.load(Ordering::Relaxed) < 6000 {
            thread::sleep(Duration::from_millis(1));
        }
        thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(inconsistent.load(Ordering::Relaxed), 0);
    assert_eq!(a.load(), b.load());
    assert_eq!(s1.load(), s2.load());
}

/// A bounded queue of `TVar<VecDeque>` with `retry` on full and empty: two
/// producers and two consumers move 100k items, none lost or duplicated.
#[test]
fn retry_producer_consumer_moves_every_item_once() {
    const ITEMS: u64 = 100_000;
    const CAP: usize = 32;
    let q = TVar::new(VecDeque::<u64>::new());
    let seen: Vec<AtomicBool> = (0..ITEMS).map(|_| AtomicBool::new(false)).collect();
    let taken = AtomicU64::new(0);
    thread::scope(|s| {
        for p in 0..2u64 {
            let q = &q;
            s.spawn(move || {
                for i in (p..ITEMS).step_by(2) {
                    atomically(|tx| {
                        let mut v = tx.read(q)?;
                        check(v.len() < CAP)?;
                        v.push_back(i);
                        tx.write(q, v)
                    })
                    .unwrap();
                }
            });
        }
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    if taken.fetch_add(1, Ordering::Relaxed) >= ITEMS {
                        break;
                    }
                    let x = atomically(|tx| {
                        let mut v = tx.read(&q)?;
                        let Some(x) = v.pop_front() else {
                            return retry();
                        };
                        tx.write(&q, v)?;
                        Ok(x)
                    })
                    .unwrap();
                    assert!(!seen[x as usize].swap(true, Ordering::Relaxed), "{x} twice");
                }
            });
        }
    });
    assert!(
        seen.iter().all(|b| b.load(Ordering::Relaxed)),
        "an item was lost"
    );
    assert!(q.load().is_empty());
}

/// A transaction retrying on X stays parked while only Y changes: its
/// closure does not run again until X is written.
#[test]
fn retry_sleeps_through_unrelated_commits() {
    let x = TVar::new(0u64);
    let y = TVar::new(0u64);
    let runs = AtomicU64::new(0);
    let before = stats();
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            atomically(|tx| {
                runs.fetch_add(1, Ordering::SeqCst);
                let v = tx.read(&x)?;
                check(v != 0)?;
                Ok(v)
            })
            .unwrap()
        });
        while runs.load(Ordering::SeqCst) == 0 {
            thread::yield_now();
        }
        thread::sleep(Duration::from_millis(20));
        for i in 0..2_000 {
            atomically(|tx| tx.write(&y, i)).unwrap();
        }
        thread::sleep(Duration::from_millis(20));
        // Parked the whole time: at most one extra run (a commit between
        // its read and its registration).
        let during = runs.load(Ordering::SeqCst);
        assert!(during <= 2, "woken {during} times by unrelated commits");
        atomically(|tx| tx.write(&x, 7)).unwrap();
        assert_eq!(waiter.join().unwrap(), 7);
    });
    assert!(runs.load(Ordering::SeqCst) <= 3);
    let after = stats();
    assert!(after.retries > before.retries);
    assert!(after.wakeups > before.wakeups);
}

/// The wake-ups of a transaction retrying on X while only Y changes, as
/// counted in `stats()` (alone in a child process, so the counts are this
/// test's): it blocks once, no commit wakes it, and the OS wakes it
/// spuriously a handful of times at most; the commit to X wakes it once.
#[test]
fn retry_wakeups_in_stats_stay_few_while_only_unrelated_tvars_change() {
    if support::run_isolated("retry_wakeups_in_stats_stay_few_while_only_unrelated_tvars_change") {
        return;
    }
    let x = TVar::new(0u64);
    let y = TVar::new(0u64);
    let before = stats();
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            atomically(|tx| {
                let v = tx.read(&x)?;
                check(v != 0)?;
                Ok(v)
            })
            .unwrap()
        });
        while stats().retries == before.retries {
            thread::yield_now();
        }
        for i in 0..20_000 {
            atomically(|tx| tx.write(&y, i)).unwrap();
            if i % 1_000 == 0 {
                // Let the waiter's core run, should anything wake it.
                thread::sleep(Duration::from_millis(1));
            }
        }
        let during = stats();
        // Release the waiter before asserting, so a failure fails rather
        // than hangs the scope.
        atomically(|tx| tx.write(&x, 7)).unwrap();
        assert_eq!(waiter.join().unwrap(), 7);
        assert_eq!(during.retries - before.retries, 1, "{during:?}");
        assert_eq!(during.wakeups, before.wakeups, "{during:?}");
        assert!(
            during.spurious_wakeups - before.spurious_wakeups <= 5,
            "{during:?}"
        );
    });
    let after = stats();
    assert_eq!(after.wakeups - before.wakeups, 1, "{after:?}");
    assert_eq!(after.retries - before.retries, 1, "{after:?}");
}

#[test]
fn retry_with_empty_read_set_is_an_error() {
    assert_eq!(
        atomically(|_tx| retry::<(), _>()),
        Err(StmError::EmptyRetry)
    );
}

#[test]
fn retry_wakes_when_any_read_tvar_changes() {
    let vars: Vec<TVar<u32>> = (0..5).map(|_| TVar::new(0)).collect();
    for k in 0..vars.len() {
        thread::scope(|s| {
            let h = s.spawn(|| {
                atomically(|tx| {
                    let mut sum = 0;
                    for v in &vars {
                        sum += tx.read(v)?;
                    }
                    check(sum > k as u32)?;
                    Ok(sum)
                })
                .unwrap()
            });
            thread::sleep(Duration::from_millis(5));
            atomically(|tx| tx.modify(&vars[k], |x| x + 1)).unwrap();
            assert_eq!(h.join().unwrap(), k as u32 + 1);
        });
    }
}

// ------------------------------------------------------------ or_else

fn take<'a>(q: &'a TVar<Vec<u32>>) -> impl FnMut(&mut Tx<'a>) -> Stm<u32> {
    move |tx| {
        let mut v = tx.read(q)?;
        let Some(x) = v.pop() else { return retry() };
        tx.write(q, v)?;
        Ok(x)
    }
}

#[test]
fn or_else_rolls_back_the_first_branch() {
    let touched = TVar::new(0u32);
    let q = TVar::new(vec![5]);
    let r = atomically(|tx| {
        tx.or_else(
            |tx| {
                tx.write(&touched, 99)?; // undone: this branch retries
                retry()
            },
            |tx| {
                assert_eq!(tx.read(&touched)?, 0, "the first branch's write leaked");
                take(&q)(tx)
            },
        )
    })
    .unwrap();
    assert_eq!((r, touched.load(), q.load()), (5, 0, vec![]));
}

#[test]
fn or_else_nested_picks_the_first_that_does_not_retry() {
    let (q1, q2, q3) = (TVar::new(vec![]), TVar::new(vec![]), TVar::new(vec![3, 4]));
    let marks = TVar::new(Vec::<u8>::new());
    fn mark<'a>(marks: &'a TVar<Vec<u8>>, m: u8, tx: &mut Tx<'a>) -> Stm<()> {
        tx.modify(marks, |mut v| {
            v.push(m);
            v
        })
    }
    let r = atomically(|tx| {
        mark(&marks, 0, tx)?;
        or_else(
            |tx| {
                mark(&marks, 1, tx)?;
                take(&q1)(tx)
            },
            or_else(
                |tx| {
                    mark(&marks, 2, tx)?;
                    take(&q2)(tx)
                },
                |tx| {
                    mark(&marks, 3, tx)?;
                    take(&q3)(tx)
                },
            ),
        )(tx)
    })
    .unwrap();
    assert_eq!(r, 4);
    assert_eq!(q3.load(), vec![3]);
    // Branches 1 and 2 were rolled back; the write before or_else stayed.
    assert_eq!(marks.load(), vec![0, 3]);
}

#[test]
fn or_else_inner_rollback_keeps_outer_branch_writes() {
    let v = TVar::new(0u32);
    let r = atomically(|tx| {
        tx.or_else(
            |tx| {
                tx.write(&v, 1)?;
                // Inner or_else: its first branch writes 2 and retries.
                tx.or_else(
                    |tx| {
                        tx.write(&v, 2)?;
                        retry::<(), _>()
                    },
                    |_| Ok(()),
                )?;
                tx.read(&v)
            },
            |_| Ok(100),
        )
    })
    .unwrap();
    assert_eq!((r, v.load()), (1, 1));
    // A second or_else after a successful first one still rolls back.
    atomically(|tx| {
        tx.or_else(|tx| tx.write(&v, 5), |_| Ok(()))?;
        tx.or_else(
            |tx| {
                tx.write(&v, 6)?;
                retry()
            },
            |_| Ok(()),
        )
    })
    .unwrap();
    assert_eq!(v.load(), 5);
}

#[test]
fn or_else_both_retry_blocks_on_the_union() {
    let (q1, q2) = (TVar::new(vec![]), TVar::new(vec![]));
    thread::scope(|s| {
        let h = s.spawn(|| atomically(or_else(take(&q1), take(&q2))).unwrap());
        thread::sleep(Duration::from_millis(10));
        atomically(|tx| tx.write(&q2, vec![8])).unwrap();
        assert_eq!(h.join().unwrap(), 8);
    });
}

// ------------------------------------------------------ errors and panics

#[derive(Debug, PartialEq)]
enum BankError {
    Insufficient { have: u64 },
}

/// The message of an aborted transaction carries the user error's text.
#[test]
fn abort_display_includes_the_user_error() {
    #[derive(Debug)]
    struct Refused(u32);
    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "refused {} units", self.0)
        }
    }
    let v = TVar::new(1u32);
    let e = try_atomically(|tx| {
        tx.write(&v, 2)?;
        abort::<(), _>(Refused(7))
    })
    .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("refused 7 units"), "{text}");
    assert_eq!(
        StmError::Abort("insufficient funds").to_string(),
        "the transaction aborted: insufficient funds"
    );
    let as_error: &dyn std::error::Error = &e;
    assert!(as_error.to_string().contains("refused 7 units"));
    assert_eq!(v.load(), 1);
}

#[test]
fn user_error_aborts_with_no_effects() {
    let a = TVar::new(10u64);
    let b = TVar::new(0u64);
    let r = try_atomically(|tx| {
        tx.write(&b, 1_000)?;
        let have = tx.read(&a)?;
        if have < 50 {
            return abort(BankError::Insufficient { have });
        }
        tx.write(&a, have - 50)?;
        Ok(())
    });
    assert_eq!(
        r,
        Err(StmError::Abort(BankError::Insufficient { have: 10 }))
    );
    assert_eq!((a.load(), b.load()), (10, 0));
}

#[test]
fn panic_aborts_and_the_thread_stays_usable() {
    let panics_before = stats().aborts.panics;
    let a = TVar::new(1u64);
    let s = TVar::new(String::from("keep"));
    let r = catch_unwind(AssertUnwindSafe(|| {
        atomically(|tx| {
            tx.write(&a, 2)?;
            tx.write(&s, "lost".into())?;
            panic!("boom");
            #[allow(unreachable_code)]
            Ok(())
        })
    }));
    assert!(r.is_err());
    assert_eq!((a.load(), s.load()), (1, "keep".into()));
    // The same thread's next transactions work, also nested-check state.
    atomically(|tx| tx.write(&a, 3)).unwrap();
    assert_eq!(a.load(), 3);
    // A panic inside a commute function (run at commit, locks held).
    let r = catch_unwind(AssertUnwindSafe(|| {
        atomically(|tx| {
            tx.write(&s, "x".into())?;
            tx.commute(&a, |_| panic!("in commit"))
        })
    }));
    assert!(r.is_err());
    assert_eq!((a.load(), s.load()), (3, "keep".into()));
    // Both aborted attempts are counted (stats are per thread, summed).
    assert!(stats().aborts.panics >= panics_before + 2);
    atomically(|tx| tx.modify(&a, |x| x + 1)).unwrap();
    assert_eq!(a.load(), 4);
    // Another thread is not blocked by leftover locks.
    thread::scope(|sc| {
        sc.spawn(|| atomically(|tx| tx.modify(&s, |x| x + "!")).unwrap());
    });
    assert_eq!(s.load(), "keep!");
}

#[test]
fn nested_atomically_is_an_error() {
    let a = TVar::new(1);
    let inner = atomically(|tx| {
        tx.read(&a)?;
        Ok(atomically(|tx| tx.read(&a)))
    })
    .unwrap();
    assert_eq!(inner, Err(StmError::Nested));
}

#[test]
fn swallowed_conflicts_never_commit() {
    // A closure that ignores a failed read cannot commit what it computed
    // from the default: the transaction is re-run instead.
    let a = TVar::new(0u64);
    let b = TVar::new(0u64);
    thread::scope(|s| {
        s.spawn(|| {
            for i in 1..2000 {
                atomically(|tx| {
                    tx.write(&a, i)?;
                    tx.write(&b, i)
                })
                .unwrap();
            }
        });
        for _ in 0..2000 {
            atomically(|tx| {
                let x = tx.read(&a).unwrap_or(u64::MAX);
                let y = tx.read(&b).unwrap_or(u64::MAX - 1);
                if x != y {
                    // Only possible after a swallowed conflict; the write
                    // must never be published.
                    let _ = tx.write(&a, 999_999);
                }
                Ok(())
            })
            .unwrap();
        }
    });
    assert_ne!(a.load(), 999_999);
}

// ----------------------------------------------- validators and watches

#[test]
fn validator_rejects_the_whole_commit() {
    let stock = TVar::new(5i64);
    let other = TVar::new(0i64);
    stock.set_validator(|n| *n >= 0);
    let r = atomically(|tx| {
        tx.write(&other, 1)?;
        tx.modify(&stock, |n| n - 10)
    });
    assert_eq!(r, Err(StmError::Invalid { tvar: stock.id() }));
    assert_eq!((stock.load(), other.load()), (5, 0));
    atomically(|tx| tx.modify(&stock, |n| n - 5)).unwrap();
    assert_eq!(stock.load(), 0);
    // Commutes are validated on their final value.
    assert!(atomically(|tx| tx.commute(&stock, |n| n - 1)).is_err());
    assert_eq!(stock.load(), 0);
    // Boxed values too.
    let name = TVar::new(String::from("ok"));
    name.set_validator(|s| !s.is_empty());
    assert!(atomically(|tx| tx.write(&name, String::new())).is_err());
    assert_eq!(name.load(), "ok");
    name.clear_validator();
    atomically(|tx| tx.write(&name, String::new())).unwrap();
    assert_eq!(name.load(), "");
}

/// A validator may load other `TVar`s of the commit it validates (whose
/// locks the commit holds): it sees the values the commit would store,
/// commutes applied, whatever the order of the writes.
#[test]
fn validators_load_the_values_being_committed() {
    finishes("validator loading a TVar of its own commit", || {
        let limit = TVar::new(10u64);
        let used = TVar::new(0u64);
        let l = limit.clone();
        used.set_validator(move |u| *u <= l.load());
        atomically(|tx| {
            tx.write(&limit, 20)?;
            tx.write(&used, 15)
        })
        .unwrap();
        atomically(|tx| {
            tx.write(&used, 18)?;
            tx.write(&limit, 18)
        })
        .unwrap();
        assert_eq!(
            atomically(|tx| {
                tx.write(&used, 17)?;
                tx.write(&limit, 16)
            }),
            Err(StmError::Invalid { tvar: used.id() })
        );
        assert_eq!((limit.load(), used.load()), (18, 18));
        // The commute of `limit` is applied before any validator runs, even
        // though `used` comes first in the write set.
        atomically(|tx| {
            tx.write(&used, 25)?;
            tx.commute(&limit, |l| l + 10)
        })
        .unwrap();
        assert_eq!((limit.load(), used.load()), (28, 25));
        // A `TVar` outside the commit loads as its committed value.
        assert!(atomically(|tx| tx.write(&used, 29)).is_err());
        atomically(|tx| tx.write(&used, 28)).unwrap();

        // Boxed values, and a validator loading its own `TVar`.
        let names = TVar::new(vec![String::from("a")]);
        let count = TVar::new(1usize);
        let (n, c) = (names.clone(), count.clone());
        count.set_validator(move |k| *k == n.load().len() && *k == c.load());
        atomically(|tx| {
            tx.modify(&names, |mut v| {
                v.push("b".into());
                v
            })?;
            tx.modify(&count, |k| k + 1)
        })
        .unwrap();
        assert!(atomically(|tx| tx.write(&count, 5)).is_err());
        assert_eq!((names.load().len(), count.load()), (2, 2));
    });
}

/// Inside a commute function a `TVar` of the same commit loads as the value
/// before the commit; inside a closure `load` ignores the transaction's own
/// writes.
#[test]
fn load_inside_a_transaction_is_the_committed_value() {
    finishes("load inside a commit", || {
        let a = TVar::new(0u64);
        let b = TVar::new(5u64);
        atomically(|tx| {
            tx.write(&b, 100)?;
            assert_eq!(b.load(), 5);
            tx.commute(&a, |x| x + b.load())
        })
        .unwrap();
        assert_eq!((a.load(), b.load()), (5, 100));
    });
}

/// Serial mode keeps every `TVar` it touched locked for the whole attempt;
/// `load` (and `Debug`, which loads) inside it must not wait for the
/// transaction's own lock. It returns the committed value, which nothing
/// can change meanwhile.
#[test]
fn load_and_debug_inside_a_serial_transaction() {
    finishes("load inside a serial transaction", || {
        let a = Arc::new(TVar::new(0u64));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (a, stop) = (a.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    atomically(|tx| tx.modify(&a, |x| x + 1)).unwrap();
                }
            })
        };
        let runs = AtomicU64::new(0);
        let (n, read, loaded, shown) = atomically(|tx| {
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            let x = tx.read(&a)?;
            if n <= 12 {
                // Make this attempt lose: wait for the writer to commit.
                while a.load() == x {
                    thread::yield_now();
                }
            }
            tx.write(&a, 1 << 40)?;
            Ok((n, x, a.load(), format!("{a:?}")))
        })
        .unwrap();
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        // Twelve conflicts, then the serial attempt.
        assert_eq!(n, 13);
        assert_eq!(loaded, read);
        assert!(shown.contains(&format!("value: {read}")), "{shown}");
        assert!(a.load() >= 1 << 40);
    });
}

/// Two commits whose validators load each other's `TVar`s: neither waits
/// for the other's locks while holding its own.
#[test]
fn validators_loading_each_others_tvars_do_not_deadlock() {
    finishes("crossed validators", || {
        let x = Arc::new(TVar::new(0u64));
        let y = Arc::new(TVar::new(0u64));
        let y2 = y.clone();
        x.set_validator(move |v| *v + y2.load() < u64::MAX);
        let x2 = x.clone();
        y.set_validator(move |v| *v + x2.load() < u64::MAX);
        let writers: Vec<_> = [x.clone(), y.clone()]
            .into_iter()
            .map(|v| {
                thread::spawn(move || {
                    for _ in 0..20_000 {
                        atomically(|tx| tx.modify(&v, |n| n + 1)).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!((x.load(), y.load()), (20_000, 20_000));
        // The validators hold each other's `TVar`: break the cycle.
        x.clear_validator();
        y.clear_validator();
    });
}

#[test]
fn watches_run_after_commit_outside_the_transaction() {
    let v = TVar::new(1u32);
    let s = TVar::new(String::from("a"));
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let v2 = v.clone();
    v.add_watch("log", move |old, new| {
        // Outside the transaction: the new value is visible, and starting a
        // transaction is allowed.
        assert_eq!(v2.load(), *new);
        let again = atomically(|tx| tx.read(&v2)).unwrap();
        l.lock().unwrap().push((*old, *new, again));
    });
    let l = log.clone();
    s.add_watch("len", move |old, new| {
        l.lock()
            .unwrap()
            .push((old.len() as u32, new.len() as u32, 0));
    });
    atomically(|tx| tx.write(&v, 2)).unwrap();
    atomically(|tx| {
        tx.modify(&v, |x| x + 1)?;
        tx.write(&s, "abc".into())
    })
    .unwrap();
    // A failed transaction triggers no watch.
    let _ = try_atomically(|tx| {
        tx.write(&v, 100)?;
        abort::<(), _>(())
    });
    assert_eq!(*log.lock().unwrap(), [(1, 2, 2), (2, 3, 3), (1, 3, 0)]);
    assert!(v.remove_watch("log"));
    assert!(!v.remove_watch("log"));
    atomically(|tx| tx.write(&v, 9)).unwrap();
    assert_eq!(log.lock().unwrap().len(), 3);
}

// ----------------------------------------------------------- reclamation

/// Boxed values a commit replaced are not kept by a thread that stops
/// writing: after 20 commits and the `TVar` dropped, a few unrelated pins
/// of the same thread free them all (each version holds a clone of
/// `marker`).
#[test]
fn replaced_boxed_values_are_freed_after_the_writer_stops() {
    let marker = Arc::new(());
    let v = TVar::new((marker.clone(), 0u64));
    for i in 1..=20 {
        atomically(|tx| tx.write(&v, (marker.clone(), i))).unwrap();
    }
    assert_eq!(v.load().1, 20);
    drop(v);
    let other = TVar::new(String::from("unrelated"));
    // A few hundred pins are enough when no other thread holds the epoch
    // back; the bound only stops a broken build from looping for ever.
    let (start, mut pins) = (Instant::now(), 0u64);
    while Arc::strong_count(&marker) > 1 && start.elapsed() < Duration::from_secs(20) {
        assert_eq!(other.load(), "unrelated");
        pins += 1;
        if pins % 1024 == 0 {
            thread::yield_now();
        }
    }
    assert_eq!(
        Arc::strong_count(&marker) - 1,
        0,
        "values alive after {pins} pins"
    );
}

// ---------------------------------------------------------------- limits

#[test]
fn limits_timeout_and_attempts() {
    let never = TVar::new(0u32);
    let t0 = Instant::now();
    let r = atomically_with(
        Limits {
            timeout: Some(Duration::from_millis(30)),
            ..Limits::default()
        },
        |tx| {
            check(tx.read(&never)? > 0)?;
            Ok::<_, TxError>(())
        },
    );
    assert_eq!(r, Err(StmError::Timeout));
    assert!(t0.elapsed() >= Duration::from_millis(30));

    // Every attempt conflicts (a swallowed conflict is still a conflict):
    // attempts run out.
    let a = TVar::new(0u64);
    let runs = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                atomically(|tx| tx.modify(&a, |x| x + 1)).unwrap();
            }
        });
        let r = atomically_with(
            Limits {
                max_attempts: Some(3),
                ..Limits::default()
            },
            |tx| {
                runs.fetch_add(1, Ordering::Relaxed);
                let x = tx.read(&a)?;
                // Wait until the writer has committed past our snapshot.
                while a.load() == x {
                    thread::yield_now();
                }
                tx.write(&a, 0)?;
                Ok::<_, TxError>(())
            },
        );
        stop.store(true, Ordering::Relaxed);
        assert_eq!(r, Err(StmError::TooManyAttempts { attempts: 3 }));
    });
    assert_eq!(runs.load(Ordering::Relaxed), 3);
}

// ------------------------------------------------------- contention

/// A long transaction over many `TVar`s that short writers keep changing
/// still finishes: after a dozen conflicts it runs serially and cannot lose.
#[test]
fn long_transaction_is_not_starved() {
    let vars: Vec<TVar<u64>> = (0..200).map(|_| TVar::new(1)).collect();
    let stop = AtomicBool::new(false);
    let runs = AtomicUsize::new(0);
    let before = stats().serial_entries;
    thread::scope(|s| {
        for w in 0..2 {
            let (vars, stop) = (&vars, &stop);
            s.spawn(move || {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    i = (i + 7) % vars.len();
                    atomically(|tx| {
                        let x = tx.read(&vars[i])?;
                        let j = (i + 1) % vars.len();
                        let y = tx.read(&vars[j])?;
                        tx.write(&vars[i], y)?;
                        tx.write(&vars[j], x)
                    })
                    .unwrap();
                }
            });
        }
        thread::sleep(Duration::from_millis(5));
        let sum = atomically(|tx| {
            runs.fetch_add(1, Ordering::Relaxed);
            let mut sum = 0;
            for v in &vars {
                sum += tx.read(v)?;
                // Slow: every read gives the writers time to commit.
                thread::yield_now();
            }
            Ok(sum)
        })
        .unwrap();
        stop.store(true, Ordering::Relaxed);
        assert_eq!(sum, vars.len() as u64);
    });
    let runs = runs.load(Ordering::Relaxed);
    // 12 conflicts at most, then one serial run that cannot fail.
    assert!(runs <= 13, "{runs} attempts");
    if runs == 13 {
        assert!(stats().serial_entries > before);
    }
}

/// Two threads fighting over two accounts: both make progress.
#[test]
fn all_conflicting_transfers_are_fair_enough() {
    let (a, b) = (TVar::new(1_000_000u64), TVar::new(1_000_000u64));
    let counts: Vec<AtomicU64> = (0..2).map(|_| AtomicU64::new(0)).collect();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        for t in 0..2 {
            let (a, b, counts, stop) = (&a, &b, &counts, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (from, to) = if t == 0 { (a, b) } else { (b, a) };
                    atomically(|tx| {
                        let x = tx.read(from)?;
                        let y = tx.read(to)?;
                        tx.write(from, x - 1)?;
                        tx.write(to, y + 1)
                    })
                    .unwrap();
                    counts[t].fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(a.load() + b.load(), 2_000_000);
    assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) > 0));
}

// ---------------------------------------------------------------- async

/// Takes 100 values out of a one-value slot, each as soon as it is there
/// (`retry` parks the task while the slot is empty).
async fn take_a_hundred(slot: Arc<TVar<Option<u64>>>) -> Vec<u64> {
    let mut got = Vec::new();
    for _ in 0..100 {
        let x = atomically_async(|tx| match tx.read(&*slot)? {
            Some(x) => {
                tx.write(&*slot, None)?;
                Ok(x)
            }
            None => retry(),
        })
        .await
        .unwrap();
        got.push(x);
    }
    got
}

/// Puts 0..100 into the slot, each once it is empty again.
async fn put_a_hundred(slot: Arc<TVar<Option<u64>>>) {
    for i in 0..100u64 {
        atomically_async(|tx| {
            if tx.read(&*slot)?.is_some() {
                return retry();
            }
            tx.write(&*slot, Some(i))
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_retry_under_tokio() {
    let slot = Arc::new(TVar::new(None::<u64>));
    let consumer = tokio::spawn(take_a_hundred(slot.clone()));
    put_a_hundred(slot).await;
    assert_eq!(consumer.await.unwrap(), (0..100).collect::<Vec<_>>());
}

/// The same hand-off on strata's own runtime: the consumer parks as a
/// task (no thread blocked) and each commit of the producer wakes it.
#[test]
fn async_retry_on_strata_runtime() {
    let rt = strata::runtime::Runtime::builder()
        .threads(2)
        .build()
        .unwrap();
    let slot = Arc::new(TVar::new(None::<u64>));
    let consumer = rt.spawn(take_a_hundred(slot.clone()));
    let producer = rt.spawn(put_a_hundred(slot));
    rt.block_on(async {
        producer.await.unwrap();
        assert_eq!(consumer.await.unwrap(), (0..100).collect::<Vec<_>>());
    });
}

#[tokio::test]
async fn async_timeout_and_cancel() {
    let never = TVar::new(0u32);
    let r = atomically_async_with(
        Limits {
            timeout: Some(Duration::from_millis(10)),
            ..Limits::default()
        },
        |tx| {
            check(tx.read(&never)? > 0)?;
            Ok::<_, TxError>(())
        },
    )
    .await;
    assert_eq!(r, Err(StmError::Timeout));
    // A cancelled wait leaves nothing behind: a later commit wakes nobody
    // stale and a new waiter works.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(5),
        atomically_async(|tx| check(tx.read(&never)? > 0)),
    )
    .await;
    assert!(cancelled.is_err());
    atomically(|tx| tx.write(&never, 1)).unwrap();
    atomically_async(|tx| check(tx.read(&never)? > 0))
        .await
        .unwrap();
}

#[test]
fn async_under_futures_executor_with_user_errors() {
    let v = TVar::new(3u32);
    let r = futures::executor::block_on(atomically_async_with(Limits::default(), |tx| {
        if tx.read(&v)? < 10 {
            return abort("small");
        }
        Ok(())
    }));
    assert_eq!(r, Err(StmError::Abort("small")));
}

/// Polling an `Atomically` future again after it returned `Ready` (misuse)
/// never runs the transaction again: the effect is not doubled, and the
/// re-poll gets a typed error instead of a panic, for every way the first
/// poll finished (commit, user abort, timeout).
#[test]
fn polling_a_finished_atomically_again_never_reruns_it() {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let n = TVar::new(0u32);
    let runs = AtomicUsize::new(0);
    let mut fut = atomically_async(|tx| {
        runs.fetch_add(1, Ordering::Relaxed);
        tx.modify(&n, |x| x + 1)?;
        tx.read(&n)
    });
    assert_eq!(Pin::new(&mut fut).poll(&mut cx), Poll::Ready(Ok(1)));
    for _ in 0..3 {
        assert_eq!(
            Pin::new(&mut fut).poll(&mut cx),
            Poll::Ready(Err(StmError::PolledAfterCompletion))
        );
    }
    assert_eq!(n.load(), 1);
    assert_eq!(runs.load(Ordering::Relaxed), 1);

    let mut aborted = atomically_async_with(Limits::default(), |tx| {
        runs.fetch_add(1, Ordering::Relaxed);
        tx.write(&n, 100)?;
        abort("no")
    });
    let r: Poll<Result<(), _>> = Pin::new(&mut aborted).poll(&mut cx);
    assert_eq!(r, Poll::Ready(Err(StmError::Abort("no"))));
    assert_eq!(
        Pin::new(&mut aborted).poll(&mut cx),
        Poll::Ready(Err(StmError::PolledAfterCompletion))
    );
    assert_eq!(runs.load(Ordering::Relaxed), 2);

    let mut timed_out = atomically_async_with(
        Limits {
            timeout: Some(Duration::ZERO),
            ..Limits::default()
        },
        |tx| {
            runs.fetch_add(1, Ordering::Relaxed);
            check(tx.read(&n)? > 5)?;
            Ok::<_, TxError>(())
        },
    );
    let mut first = Pin::new(&mut timed_out).poll(&mut cx);
    while first.is_pending() {
        first = Pin::new(&mut timed_out).poll(&mut cx);
    }
    assert_eq!(first, Poll::Ready(Err(StmError::Timeout)));
    let runs_before = runs.load(Ordering::Relaxed);
    atomically(|tx| tx.write(&n, 10)).unwrap();
    assert_eq!(
        Pin::new(&mut timed_out).poll(&mut cx),
        Poll::Ready(Err(StmError::PolledAfterCompletion))
    );
    assert_eq!(runs.load(Ordering::Relaxed), runs_before);
    assert_eq!(n.load(), 10);
}

/// A panicking watch does not skip the other watches of the commit (of the
/// same `TVar` or another one): every watch runs, then the first panic is
/// re-raised from `atomically`, and the commit stands.
#[test]
fn a_panicking_watch_skips_no_other_watch_and_the_commit_stands() {
    let a = TVar::new(0u32);
    let b = TVar::new(0u32);
    let ran = Arc::new(Mutex::new(Vec::new()));
    let log = |name: &'static str| {
        let ran = Arc::clone(&ran);
        move |_: &u32, _: &u32| ran.lock().unwrap().push(name)
    };
    let a1 = log("a1");
    a.add_watch("a1", move |o, n| {
        a1(o, n);
        panic!("first watch");
    });
    a.add_watch("a2", log("a2"));
    let a3 = log("a3");
    a.add_watch("a3", move |o, n| {
        a3(o, n);
        panic!("second watch");
    });
    b.add_watch("b1", log("b1"));
    let r = catch_unwind(AssertUnwindSafe(|| {
        atomically(|tx| {
            tx.write(&a, 1)?;
            tx.write(&b, 2)
        })
    }));
    let payload = r.expect_err("the watch's panic is re-raised");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"first watch"));
    let mut ran = ran.lock().unwrap().clone();
    ran.sort_unstable();
    assert_eq!(ran, ["a1", "a2", "a3", "b1"]);
    assert_eq!((a.load(), b.load()), (1, 2));
    // The thread is not left inside a transaction.
    assert_eq!(atomically(|tx| tx.read(&a)), Ok(1));
}

/// A transaction writing hundreds of `TVar`s (hash-indexed write set),
/// re-reading them, and rolling back an `or_else` branch that wrote more.
#[test]
fn large_transactions_read_their_writes_and_roll_back() {
    let vars: Vec<TVar<u64>> = (0..600).map(TVar::new).collect();
    let sum = atomically(|tx| {
        for v in &vars[..400] {
            tx.modify(v, |x| x + 1000)?;
        }
        tx.or_else(
            |tx| {
                for v in &vars {
                    tx.modify(v, |x| x + 1)?;
                }
                retry::<(), _>()
            },
            |_| Ok(()),
        )?;
        let mut sum = 0;
        for v in &vars {
            sum += tx.read(v)?;
        }
        Ok(sum)
    })
    .unwrap();
    let expect: u64 = (0..600).sum::<u64>() + 400 * 1000;
    assert_eq!(sum, expect);
    assert_eq!(vars.iter().map(TVar::load).sum::<u64>(), expect);
    assert_eq!(vars[0].load(), 1000);
    assert_eq!(vars[599].load(), 599);
}
