//! L2 — STM and atoms (issue 5).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use strata::atom::{Atom, AtomError, WordAtom};
use strata::stm::{
    Stm, StmError, TVar, Tx, abort, atomically, check, retry, stats, try_atomically,
};

use crate::section;

/// Runs this layer's sections.
pub fn run() {
    bank_with_audit();
    bounded_queue();
    atoms();
}

#[derive(Debug, PartialEq)]
enum Refused {
    Insufficient,
}

/// Moves `amount` from `from` to `to`, or aborts with no effect.
fn transfer<'a>(
    tx: &mut Tx<'a, Refused>,
    from: &'a TVar<u64>,
    to: &'a TVar<u64>,
    amount: u64,
) -> Stm<(), Refused> {
    let have = tx.read(from)?;
    if have < amount {
        return abort(Refused::Insufficient);
    }
    tx.write(from, have - amount)?;
    tx.modify(to, |b| b + amount)
}

/// L2 STM: concurrent transfers while auditors sum every account.
fn bank_with_audit() {
    section("L2 stm: bank transfers with a concurrent audit");
    const ACCOUNTS: usize = 32;
    const START: u64 = 1_000;
    let accounts: Vec<TVar<u64>> = (0..ACCOUNTS).map(|_| TVar::new(START)).collect();
    let total = START * ACCOUNTS as u64;
    let refused = AtomicU64::new(0);
    let audits = AtomicU64::new(0);
    let before = stats();
    thread::scope(|s| {
        let workers: Vec<_> = (0..4u64)
            .map(|t| {
                let (accounts, refused) = (&accounts, &refused);
                s.spawn(move || {
                    let mut x = t + 1;
                    for _ in 0..20_000 {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let a = (x >> 33) as usize % ACCOUNTS;
                        let b = (a + 1 + (x >> 45) as usize % (ACCOUNTS - 1)) % ACCOUNTS;
                        let amount = (x >> 20) % 400;
                        let r =
                            try_atomically(|tx| transfer(tx, &accounts[a], &accounts[b], amount));
                        match r {
                            Ok(()) => {}
                            Err(StmError::Abort(Refused::Insufficient)) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("unexpected {e:?}"),
                        }
                    }
                })
            })
            .collect();
        // This thread audits until the transfers are done.
        while !workers.iter().all(|w| w.is_finished()) || audits.load(Ordering::Relaxed) == 0 {
            {
                let sum = atomically(|tx| {
                    let mut sum = 0;
                    for a in &accounts {
                        sum += tx.read(a)?;
                    }
                    Ok(sum)
                })
                .unwrap();
                assert_eq!(sum, total, "an audit saw a half-done transfer");
                audits.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let after = stats();
    let sum: u64 = accounts.iter().map(TVar::load).sum();
    assert_eq!(sum, total);
    let audits = audits.load(Ordering::Relaxed);
    let refused = refused.load(Ordering::Relaxed);
    assert!(after.commits >= before.commits);
    println!(
        "80000 transfers on 4 threads ({refused} refused for lack of funds, nothing half-done): \
         total still {sum}; {audits} concurrent audits all saw exactly {total}"
    );
    println!(
        "stats: {} commits, {} read-only, {} conflict aborts, {} snapshot extensions, {} serial-mode entries",
        after.commits - before.commits,
        after.read_only_commits - before.read_only_commits,
        after.aborts.conflicts() - before.aborts.conflicts(),
        after.extensions - before.extensions,
        after.serial_entries - before.serial_entries,
    );
}

/// L2 STM: a bounded queue whose push and pop block with `retry`.
fn bounded_queue() {
    section("L2 stm: a bounded queue built on retry");
    const CAP: usize = 4;
    const ITEMS: u64 = 10_000;
    let queue = TVar::new(VecDeque::<u64>::new());
    let push = |x: u64| {
        atomically(|tx| {
            let mut q = tx.read(&queue)?;
            check(q.len() < CAP)?; // full: sleep until a pop changes the queue
            q.push_back(x);
            tx.write(&queue, q)
        })
        .unwrap()
    };
    let pop = || {
        atomically(|tx| {
            let mut q = tx.read(&queue)?;
            let Some(x) = q.pop_front() else {
                return retry(); // empty: sleep until a push
            };
            tx.write(&queue, q)?;
            Ok(x)
        })
        .unwrap()
    };
    let before = stats();
    let (sum, in_order) = thread::scope(|s| {
        let consumer = s.spawn(|| {
            let mut sum = 0;
            let mut in_order = true;
            for expect in 0..ITEMS {
                let x = pop();
                in_order &= x == expect;
                sum += x;
            }
            (sum, in_order)
        });
        for i in 0..ITEMS {
            push(i);
        }
        consumer.join().unwrap()
    });
    let blocked = stats().retries - before.retries;
    assert_eq!(sum, ITEMS * (ITEMS - 1) / 2);
    assert!(in_order);
    assert!(queue.load().is_empty());
    println!(
        "{ITEMS} items through a {CAP}-slot queue: all arrived once, in order; \
         the two sides blocked {blocked} times in retry (parked, no polling)"
    );
}

/// L2 atoms: lock-free swaps of a word (`WordAtom`) and of a structure
/// (`Atom`), a validator and a watch.
fn atoms() {
    section("L2 atom: swap, validator, watch");
    let hits = WordAtom::new(0u64);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    hits.swap(|n| n + 1).unwrap();
                }
            });
        }
    });
    assert_eq!(hits.load(), 40_000);
    println!(
        "4 threads x 10000 WordAtom swaps: {} (none lost, nobody blocked, nothing allocated)",
        hits.load()
    );

    let level = WordAtom::new(50i32);
    level.set_validator(|v| (0..=100).contains(v));
    let changes = Arc::new(AtomicU64::new(0));
    let c = changes.clone();
    level.add_watch("audit", move |_, _| {
        c.fetch_add(1, Ordering::Relaxed);
    });
    level.swap(|v| v + 30).unwrap();
    let rejected = level.swap(|v| v + 30);
    assert_eq!(rejected, Err(AtomError::Invalid(110)));
    assert_eq!(level.load(), 80);
    assert_eq!(changes.load(Ordering::Relaxed), 1);
    println!(
        "validator kept the level in 0..=100: 50 -> 80 accepted, 80 -> 110 rejected \
         (value handed back, atom unchanged); the watch saw 1 change"
    );

    // A structure: readers get a whole `Arc` snapshot, writers replace it.
    let routes = Atom::new(vec!["a"]);
    let before = routes.load();
    thread::scope(|s| {
        for name in ["b", "c"] {
            let routes = &routes;
            s.spawn(move || routes.swap(|r| [r.as_slice(), &[name]].concat()).unwrap());
        }
    });
    let after = routes.load();
    assert_eq!((before.len(), after.len()), (1, 3));
    assert!(after.contains(&"b") && after.contains(&"c"));
    println!(
        "Atom<Vec<_>>: two concurrent appends both kept ({after:?}); \
         the snapshot taken before still reads {before:?}"
    );
}
