//! Integration tests of `strata::atom`.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use strata::atom::{Atom, AtomError, WordAtom};
use support::Live;

/// Tests in this file run one at a time: `replaced_values_are_eventually_reclaimed`
/// bounds the garbage alive at once, and a reader of another test preempted
/// while pinned (more likely while a CPU-heavy stress test runs) would hold
/// the epoch back meanwhile.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn swaps_from_many_threads_lose_nothing() {
    let _serial = one_at_a_time();
    let a = Atom::new(0u64);
    let calls = AtomicU64::new(0);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5_000 {
                    a.swap(|x| {
                        calls.fetch_add(1, Ordering::Relaxed);
                        x + 1
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(*a.load(), 20_000);
    // The closure may run more than once per swap, never less.
    assert!(calls.load(Ordering::Relaxed) >= 20_000);
}

/// Readers only ever see values a writer published whole: each value is a
/// vector whose every element equals its length.
#[test]
fn readers_see_only_published_values() {
    let _serial = one_at_a_time();
    let a = Atom::new(vec![0u64; 0]);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..2_000 {
                    a.swap(|v| {
                        let n = (v.len() + 1) % 50;
                        vec![n as u64; n]
                    })
                    .unwrap();
                }
            });
        }
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let v = a.load();
                assert!(v.iter().all(|&x| x == v.len() as u64));
                // The refcount-free read sees whole values too.
                assert!(a.read(|v| v.iter().all(|&x| x == v.len() as u64)));
            }
        });
        thread::sleep(std::time::Duration::from_millis(50));
        stop.store(true, Ordering::Relaxed);
    });
}

#[test]
fn swap_vals_reset_and_identity_compare_and_set() {
    let _serial = one_at_a_time();
    let a = Atom::new(String::from("a"));
    let (old, new) = a.swap_vals(|s| format!("{s}b")).unwrap();
    assert_eq!((old.as_str(), new.as_str()), ("a", "ab"));
    assert!(Arc::ptr_eq(&new, &a.load()));
    let replaced = a.reset("c".into()).unwrap();
    assert_eq!(*replaced, "ab");
    let seen = a.load();
    // An equal value in another Arc is not "the same": identity compare.
    let equal = Arc::new(String::from("c"));
    assert_eq!(
        a.compare_and_set(&equal, "d".into()),
        Err(AtomError::Changed("d".into()))
    );
    assert_eq!(*a.load(), "c");
    assert_eq!(*a.compare_and_set(&seen, "e".into()).unwrap(), "e");
    assert_eq!(
        a.compare_and_set(&seen, "f".into()),
        Err(AtomError::Changed("f".into()))
    );
}

#[test]
fn validator_rejects_and_changes_nothing() {
    let _serial = one_at_a_time();
    let a = Atom::new(5i32);
    a.set_validator(|v| *v >= 0);
    assert_eq!(a.swap(|v| v - 10), Err(AtomError::Invalid(-5)));
    assert_eq!(a.reset(-1), Err(AtomError::Invalid(-1)));
    let seen = a.load();
    assert_eq!(a.compare_and_set(&seen, -2), Err(AtomError::Invalid(-2)));
    assert_eq!(*a.load(), 5);
    assert!(Arc::ptr_eq(&seen, &a.load()));
    assert_eq!(*a.swap(|v| v - 5).unwrap(), 0);
    a.clear_validator();
    assert_eq!(*a.swap(|v| v - 1).unwrap(), -1);
}

#[test]
fn watches_see_every_change_with_old_and_new() {
    let _serial = one_at_a_time();
    let a = Atom::new(0u32);
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    a.add_watch("log", move |old, new| l.lock().unwrap().push((*old, *new)));
    a.swap(|x| x + 1).unwrap();
    a.reset(10).unwrap();
    let seen = a.load();
    a.compare_and_set(&seen, 11).unwrap();
    // Rejected and failed changes notify nobody.
    a.set_validator(|v| *v < 100);
    let _ = a.reset(500);
    let _ = a.compare_and_set(&seen, 12);
    assert_eq!(*log.lock().unwrap(), [(0, 1), (1, 10), (10, 11)]);
    // Replacing a watch keeps one; removing it stops notifications.
    let l = log.clone();
    a.add_watch("log", move |_, new| l.lock().unwrap().push((0, *new * 100)));
    a.reset(1).unwrap();
    assert!(a.remove_watch("log"));
    a.reset(2).unwrap();
    assert_eq!(log.lock().unwrap().last(), Some(&(0, 100)));
    assert_eq!(log.lock().unwrap().len(), 4);
}

#[test]
fn concurrent_watches_see_a_chain_of_changes() {
    let _serial = one_at_a_time();
    let a = Atom::new(0u64);
    watches_see_a_chain(
        |w| a.add_watch("chain", move |old, new| w(*old, *new)),
        || {
            a.swap(|x| x + 1).unwrap();
        },
        1_000,
    );
}

/// Two threads make `per_thread` increments each through `increment`; the
/// watch that `watch` installs must see every change once, and the reported
/// (old, new) pairs must form the chain 0 → 1 → … → N in some order.
fn watches_see_a_chain(
    watch: impl FnOnce(Box<dyn Fn(u64, u64) + Send + Sync>),
    increment: impl Fn() + Sync,
    per_thread: u64,
) {
    let pairs = Arc::new(Mutex::new(Vec::new()));
    let p = pairs.clone();
    watch(Box::new(move |old, new| p.lock().unwrap().push((old, new))));
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..per_thread {
                    increment();
                }
            });
        }
    });
    let mut pairs = pairs.lock().unwrap().clone();
    pairs.sort_unstable();
    assert_eq!(pairs.len() as u64, 2 * per_thread);
    assert!(
        pairs
            .iter()
            .enumerate()
            .all(|(i, &(o, n))| o == i as u64 && n == o + 1)
    );
}

/// A panicking watch skips no other watch: every watch runs, then the first
/// panic is re-raised, and the change stands (`Atom` and `WordAtom`).
#[test]
fn a_panicking_watch_skips_no_other_watch_and_the_change_stands() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    // The panic hook runs while the changing thread is pinned (and takes a
    // while with RUST_BACKTRACE set): keep the reclamation tests apart.
    let _serial = one_at_a_time();

    fn check(add: impl Fn(&'static str, bool, Arc<Mutex<Vec<&'static str>>>), change: impl Fn()) {
        let ran = Arc::new(Mutex::new(Vec::new()));
        add("w1", true, Arc::clone(&ran));
        add("w2", false, Arc::clone(&ran));
        add("w3", true, Arc::clone(&ran));
        let payload = catch_unwind(AssertUnwindSafe(&change)).expect_err("re-raised");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"w1"));
        assert_eq!(*ran.lock().unwrap(), ["w1", "w2", "w3"]);
    }
    let a = Atom::new(0u32);
    check(
        |name, panics, ran| {
            a.add_watch(name, move |_, _| {
                ran.lock().unwrap().push(name);
                if panics {
                    std::panic::panic_any(name);
                }
            })
        },
        || drop(a.swap(|x| x + 1)),
    );
    assert_eq!(*a.load(), 1);
    let w = WordAtom::new(0u32);
    check(
        |name, panics, ran| {
            w.add_watch(name, move |_, _| {
                ran.lock().unwrap().push(name);
                if panics {
                    std::panic::panic_any(name);
                }
            })
        },
        || drop(w.reset(5)),
    );
    assert_eq!(w.load(), 5);
}

/// Every value is dropped exactly once: never twice (no double free
/// through the epoch), and none is leaked once the writers have exited and
/// the atom is gone.
#[test]
fn replaced_values_are_dropped_exactly_once() {
    let _serial = one_at_a_time();
    static DROPPED: Mutex<Option<HashSet<u64>>> = Mutex::new(None);
    #[derive(Debug)]
    struct Tracked(u64);
    impl Drop for Tracked {
        fn drop(&mut self) {
            let mut d = DROPPED.lock().unwrap();
            assert!(
                d.get_or_insert_with(HashSet::new).insert(self.0),
                "double drop"
            );
        }
    }
    let next = AtomicU64::new(1);
    {
        let a = Atom::new(Tracked(0));
        thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..2_000 {
                        a.swap(|_| Tracked(next.fetch_add(1, Ordering::Relaxed)))
                            .unwrap();
                        let _ = a.load();
                    }
                });
            }
        });
    }
    // Values 0..made were created; the writers' leftovers went to the epoch
    // when their threads exited.
    let made = next.load(Ordering::Relaxed);
    let dropped = || DROPPED.lock().unwrap().as_ref().map_or(0, HashSet::len) as u64;
    for _ in 0..100_000 {
        if dropped() == made {
            break;
        }
        crossbeam_epoch::pin().flush();
        thread::yield_now();
    }
    let d = DROPPED.lock().unwrap();
    let d = d.as_ref().expect("values were dropped");
    assert_eq!(d.len() as u64, made, "values leaked");
    assert!((0..made).all(|i| d.contains(&i)));
}

/// Replaced values are reclaimed, not leaked: after the writing thread has
/// exited and the atom is gone, every value is eventually dropped.
#[test]
fn replaced_values_are_eventually_reclaimed() {
    let _serial = one_at_a_time();
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    thread::spawn(|| {
        let a = Atom::new(Live::new(&LIVE));
        let mut most = 0;
        for _ in 0..50_000 {
            a.swap(|_| Live::new(&LIVE)).unwrap();
            most = most.max(LIVE.load(Ordering::SeqCst));
        }
        // While the writer runs, garbage stays bounded (freed as it goes):
        // a few crossbeam bags' worth of 32-value batches, not all 50 000.
        assert!(most < 10_000, "{most} values alive at once");
    })
    .join()
    .unwrap();
    for _ in 0..100_000 {
        if LIVE.load(Ordering::SeqCst) == 0 {
            break;
        }
        crossbeam_epoch::pin().flush();
        thread::yield_now();
    }
    assert_eq!(LIVE.load(Ordering::SeqCst), 0, "values leaked");
}

/// A counted value owning `BYTES` on the heap (its shallow size stays small).
struct Counted<const BYTES: usize> {
    _live: Live,
    _payload: Box<[u8]>,
}

impl<const BYTES: usize> Counted<BYTES> {
    fn new(live: &'static AtomicUsize) -> Self {
        Counted {
            _live: Live::new(live),
            _payload: vec![7u8; BYTES].into_boxed_slice(),
        }
    }
}

/// A thread that stops writing does not keep the values it replaced: after
/// 20 resets of 1 MiB values (fewer than a reclamation batch) and the atom
/// dropped, a few unrelated pins of the same thread let every one of them
/// go — their drops run.
#[test]
fn replaced_values_are_freed_after_the_writer_stops() {
    let _serial = one_at_a_time();
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    let a = Atom::new(Counted::<{ 1 << 20 }>::new(&LIVE));
    for _ in 0..20 {
        assert!(a.reset(Counted::new(&LIVE)).is_ok());
    }
    drop(a);
    let other = Atom::new(0u8);
    // A few hundred pins are enough when no other thread holds the epoch
    // back; the bound only stops a broken build from looping for ever.
    let (start, mut pins) = (std::time::Instant::now(), 0u64);
    while LIVE.load(Ordering::SeqCst) > 0 && start.elapsed() < std::time::Duration::from_secs(20) {
        other.read(|x| assert_eq!(*x, 0));
        pins += 1;
        if pins % 1024 == 0 {
            thread::yield_now();
        }
    }
    assert_eq!(
        LIVE.load(Ordering::SeqCst),
        0,
        "values still alive after {pins} pins"
    );
}

/// Large values do not wait for a batch of 32 to fill: a thread resetting
/// an atom of 100 KB values keeps only a few of them alive at once.
#[test]
fn large_replaced_values_are_freed_as_the_writer_goes() {
    let _serial = one_at_a_time();
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    /// 100 KB inline: the shallow size the reclamation weighs.
    struct Big {
        _live: Live,
        _bytes: [u8; 100_000],
    }
    impl Big {
        fn new() -> Self {
            Big {
                _live: Live::new(&LIVE),
                _bytes: [1; 100_000],
            }
        }
    }
    thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(|| {
            let a = Atom::from_arc(Arc::new(Big::new()));
            let mut most = 0;
            for _ in 0..300 {
                assert!(a.reset(Big::new()).is_ok());
                most = most.max(LIVE.load(Ordering::SeqCst));
            }
            // A batch used to hold up to 32 of them before it could be freed.
            assert!(most < 24, "{most} values of 100 KB alive at once");
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn word_atom_swaps_from_many_threads_lose_nothing() {
    let _serial = one_at_a_time();
    const THREADS: u64 = 4;
    const EACH: u64 = 400_000;
    let a = WordAtom::new(0u64);
    let calls = AtomicU64::new(0);
    let start = std::sync::Barrier::new(THREADS as usize);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                start.wait();
                for _ in 0..EACH {
                    a.swap(|x| {
                        calls.fetch_add(1, Ordering::Relaxed);
                        x + 1
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(a.load(), THREADS * EACH);
    assert!(calls.load(Ordering::Relaxed) >= THREADS * EACH);
}

#[test]
fn word_atom_validator_watches_and_compare_and_set() {
    let _serial = one_at_a_time();
    let a = WordAtom::new(0i32);
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    a.add_watch("log", move |old, new| l.lock().unwrap().push((*old, *new)));
    assert_eq!(a.swap_vals(|x| x + 1), Ok((0, 1)));
    assert_eq!(a.reset(10), Ok(1));
    assert_eq!(a.compare_and_set(10, 11), Ok(11));
    assert_eq!(a.compare_and_set(10, 12), Err(AtomError::Changed(12)));
    // A rejected value comes back; nothing changes, nobody is notified.
    a.set_validator(|v| *v >= 0);
    assert_eq!(a.swap(|x| x - 100), Err(AtomError::Invalid(-89)));
    assert_eq!(a.reset(-1), Err(AtomError::Invalid(-1)));
    assert_eq!(a.compare_and_set(11, -2), Err(AtomError::Invalid(-2)));
    assert_eq!(a.load(), 11);
    assert_eq!(*log.lock().unwrap(), [(0, 1), (1, 10), (10, 11)]);
    a.clear_validator();
    assert!(a.remove_watch("log"));
    assert_eq!(a.reset(-5), Ok(11));
    assert_eq!(log.lock().unwrap().len(), 3);
}

#[test]
fn word_atom_concurrent_watches_see_a_chain() {
    let _serial = one_at_a_time();
    let a = WordAtom::new(0u32);
    watches_see_a_chain(
        |w| a.add_watch("chain", move |old, new| w((*old).into(), (*new).into())),
        || {
            a.swap(|x| x + 1).unwrap();
        },
        2_000,
    );
}

#[test]
fn word_atom_holds_every_word_type() {
    let _serial = one_at_a_time();
    assert!(WordAtom::new(true).swap(|b| !b) == Ok(false));
    assert_eq!(WordAtom::new('x').reset('é'), Ok('x'));
    assert_eq!(WordAtom::new(u8::MAX).swap(|x| x.wrapping_add(1)), Ok(0));
    assert_eq!(WordAtom::new(i64::MIN).load(), i64::MIN);
    assert_eq!(WordAtom::new(usize::MAX).load(), usize::MAX);
    let f = WordAtom::new(1.5f32);
    assert_eq!(f.swap(|x| x * 2.0), Ok(3.0));
    // Floats compare by bits: -0.0 is not 0.0, NaN is itself.
    let z = WordAtom::new(-0.0f64);
    assert_eq!(z.compare_and_set(0.0, 1.0), Err(AtomError::Changed(1.0)));
    let n = WordAtom::new(f64::NAN);
    assert_eq!(n.compare_and_set(f64::NAN, 2.0), Ok(2.0));
    assert_eq!(format!("{:?}", WordAtom::new(7u16)), "WordAtom(7)");
    assert_eq!(WordAtom::<i16>::default().load(), 0);
}
