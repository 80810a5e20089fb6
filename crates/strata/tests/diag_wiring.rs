//! The order checker seen through the real locks: each test provokes one
//! rule on a single thread, with no real deadlock, and looks at what was
//! reported. With checking compiled out (release without `checked`) there is
//! nothing to observe, and the tests assert that nothing is reported.

use std::cell::RefCell;
use std::sync::{Arc, Once};

use strata::diag::{self, Handler, ViolationKind};
use strata::sync::{Mutex, RwLock, lock_two};

thread_local! {
    static SEEN: RefCell<Vec<(ViolationKind, String)>> = const { RefCell::new(Vec::new()) };
}

/// Installs (once per process) a handler that files each violation under the
/// thread that hit it, so tests running in parallel do not see each other's.
fn reports() -> Vec<(ViolationKind, String)> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        diag::set_violation_handler(Handler::Callback(Arc::new(|v| {
            SEEN.with(|seen| seen.borrow_mut().push((v.kind(), v.to_string())));
        })));
    });
    SEEN.with(|seen| seen.borrow_mut().drain(..).collect())
}

fn expect(kind: ViolationKind) -> Vec<String> {
    let seen = reports();
    if !diag::checking_enabled() {
        assert!(seen.is_empty());
        return Vec::new();
    }
    assert_eq!(seen.len(), 1, "expected exactly one report, got {seen:?}");
    assert_eq!(seen[0].0, kind);
    vec![seen[0].1.clone()]
}

#[test]
fn ab_ba_between_two_mutex_classes_is_reported_once_without_deadlock() {
    reports();
    let a = Mutex::named("wiring.a", 0);
    let b = Mutex::named("wiring.b", 0);
    {
        let _a = a.lock();
        let _b = b.lock();
    }
    assert!(
        reports().is_empty(),
        "a consistent order is not a violation"
    );
    {
        let _b = b.lock();
        let _a = a.lock(); // the inversion: reported here, on its first run
    }
    let text = expect(ViolationKind::LockOrder);
    if let Some(text) = text.first() {
        assert!(text.contains("wiring.a") && text.contains("wiring.b"));
        assert!(text.contains("DEADLOCK"));
        assert!(
            text.contains("diag_wiring.rs"),
            "acquisition sites are named: {text}"
        );
    }
    // The same inversion again is not reported a second time.
    {
        let _b = b.lock();
        let _a = a.lock();
    }
    assert!(reports().is_empty());
}

#[test]
fn inversions_are_by_class_not_by_instance() {
    reports();
    let make = |name| Mutex::named(name, ());
    let (x1, y1) = (make("wiring.x"), make("wiring.y"));
    let (x2, y2) = (make("wiring.x"), make("wiring.y"));
    {
        let _x = x1.lock();
        let _y = y1.lock();
    }
    {
        let _y = y2.lock();
        let _x = x2.lock();
    }
    expect(ViolationKind::LockOrder);
}

#[test]
fn same_class_nesting_is_reported_unless_ordered_or_nested() {
    reports();
    let accounts: Vec<Mutex<i64>> = (0..3)
        .map(|_| Mutex::named("wiring.account", 100))
        .collect();
    {
        let (mut from, mut to) = lock_two(&accounts[2], &accounts[0]).unwrap();
        *from -= 1;
        *to += 1;
    }
    {
        let _parent = accounts[0].lock();
        let _child = accounts[1].lock_nested(1);
    }
    assert!(
        reports().is_empty(),
        "lock_two and lock_nested are the sanctioned ways"
    );
    {
        let _first = accounts[0].lock();
        let _second = accounts[1].lock();
    }
    expect(ViolationKind::SelfDeadlock);
}

#[test]
fn recursive_read_is_reported_but_readers_on_other_threads_are_not() {
    reports();
    let lock = RwLock::named("wiring.rw", 0);
    {
        let _r = lock.read();
        std::thread::scope(|s| {
            s.spawn(|| *lock.read()).join().unwrap();
        });
    }
    assert!(reports().is_empty());
    {
        let _r1 = lock.read();
        let _r2 = lock.read();
    }
    expect(ViolationKind::RecursiveRead);
}

#[test]
fn try_lock_records_but_never_reports() {
    reports();
    let a = Mutex::named("wiring.try.a", ());
    let b = Mutex::named("wiring.try.b", ());
    {
        let _a = a.lock();
        let _b = b.lock();
    }
    {
        let _b = b.lock();
        assert!(a.try_lock().is_some());
    }
    assert!(reports().is_empty());
}
