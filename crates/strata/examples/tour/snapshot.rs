//! L2 — copy-on-write snapshots and the bounded cache (issue 6).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use strata::cache::BoundedCache;
use strata::snapshot::{SnapshotCell, SnapshotError, Versioned};

use crate::section;

/// Runs this layer's sections.
pub fn run() {
    versioned_index();
    snapshot_cell();
    cache();
}

/// A `Versioned` index read by many threads while a writer is parked in the
/// middle of a write: readers keep seeing the old version, whole, and never
/// wait; the new version appears all at once when the writer publishes.
fn versioned_index() {
    section("L2 snapshot: a Versioned index read while a write is in progress");
    let index = Arc::new(Versioned::named(
        "tour.index",
        BTreeMap::from([("apple", 1u32), ("fig", 2), ("kiwi", 3)]),
    ));
    index.update(|ix| *ix.get_mut("fig").unwrap() = 20).unwrap();
    let before = index.version();
    assert_eq!(before, 1);

    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let writer = {
        let index = Arc::clone(&index);
        thread::spawn(move || {
            index.write(|ix| {
                ix.insert("pear", 4);
                ix.remove("apple");
                entered_tx.send(()).unwrap();
                // Parked inside `write`: the changes exist only in its copy.
                release_rx.recv().unwrap();
                Ok::<_, ()>(ix.len())
            })
        })
    };
    entered_rx.recv().unwrap();

    let readers = 4;
    let reads_each = 10_000;
    let old_seen = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(readers));
    let handles: Vec<_> = (0..readers)
        .map(|_| {
            let (index, old_seen, start) = (
                Arc::clone(&index),
                Arc::clone(&old_seen),
                Arc::clone(&start),
            );
            thread::spawn(move || {
                start.wait();
                for _ in 0..reads_each {
                    index.read_versioned(|version, ix| {
                        if version == before && ix.contains_key("apple") && !ix.contains_key("pear")
                        {
                            old_seen.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total = readers * reads_each;
    assert_eq!(old_seen.load(Ordering::Relaxed), total);
    assert_eq!(index.metrics().commits, 1);
    println!(
        "writer parked inside write: {readers} threads x {reads_each} reads all completed, \
         every one saw version {before} whole (apple, no pear)"
    );

    release_tx.send(()).unwrap();
    let len = writer.join().unwrap().unwrap();
    let (version, keys) = index.read_versioned(|v, ix| (v, ix.keys().copied().collect::<Vec<_>>()));
    assert_eq!((version, len), (before + 1, 3));
    assert_eq!(keys, ["fig", "kiwi", "pear"]);
    println!("writer released: version {version} appears at once: {keys:?}");

    let rejected = index.write(|ix| {
        ix.clear();
        Err::<(), _>("an index must not be empty")
    });
    assert_eq!(
        rejected,
        Err(SnapshotError::Aborted("an index must not be empty"))
    );
    assert_eq!(index.version(), version);
    assert_eq!(index.read(|ix| ix.len()), 3);
    println!(
        "a write whose closure returns Err publishes nothing: still version {version}, 3 keys"
    );

    let nested = index
        .update(|ix| {
            ix.insert("plum", 5);
            index.update(|_| ()).unwrap_err()
        })
        .unwrap();
    assert_eq!(nested, SnapshotError::Reentrant);
    println!("write inside a write of the same store: {nested} (a typed error, not a hang)");

    let m = index.metrics();
    assert_eq!((m.version, m.commits, m.aborts, m.reentrant), (3, 3, 1, 1));
    println!(
        "metrics: version {}, commits {}, aborts {}, re-entrant refusals {}",
        m.version, m.commits, m.aborts, m.reentrant
    );
}

/// `SnapshotCell`: wait-free loads of a value replaced whole.
fn snapshot_cell() {
    section("L2 snapshot: SnapshotCell (wait-free loads, rcu updates)");
    let config = Arc::new(SnapshotCell::new(vec!["10.0.0.1"]));
    let old = config.snapshot();
    let threads = 4;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let config = Arc::clone(&config);
            thread::spawn(move || {
                for i in 0..100 {
                    // rcu retries on a lost race, so no update is lost.
                    config.rcu(|routes| {
                        let mut next = routes.clone();
                        next.push(if (t + i) % 2 == 0 { "even" } else { "odd" });
                        next
                    });
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let now = config.load().len();
    assert_eq!(now, 1 + threads * 100);
    assert_eq!(old.len(), 1);
    println!(
        "{threads} threads x 100 rcu updates: {now} routes, none lost; an old snapshot still has {} \
         (backend: {})",
        old.len(),
        SnapshotCell::<()>::BACKEND
    );
}

/// `BoundedCache::get_or_compute`: one loader per missing key.
fn cache() {
    section("L2 cache: BoundedCache get_or_compute (single-flight loading)");
    let cache = Arc::new(BoundedCache::new(1_000));
    let loads = Arc::new(AtomicU64::new(0));
    let callers = 16;
    let start = Arc::new(Barrier::new(callers));
    let handles: Vec<_> = (0..callers)
        .map(|_| {
            let (cache, loads, start) =
                (Arc::clone(&cache), Arc::clone(&loads), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                cache.get_or_compute("user:42", || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(50)); // a slow backend
                    Ok::<_, String>(String::from("Ada"))
                })
            })
        })
        .collect();
    let names: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(names.iter().all(|n| n.as_deref() == Ok("Ada")));
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    println!(
        "{callers} threads asked for one missing key at once: the loader ran once, all got \"Ada\""
    );

    let failed = cache.get_or_compute("user:7", || Err::<String, _>("backend down".to_string()));
    assert_eq!(failed, Err("backend down".to_string()));
    assert!(!cache.contains_key("user:7"));
    let retried = cache.get_or_compute("user:7", || Ok::<_, String>("Grace".to_string()));
    assert_eq!(retried.as_deref(), Ok("Grace"));
    println!(
        "a failing loader caches nothing; the next caller loads: {:?}",
        retried.unwrap()
    );

    let m = cache.metrics();
    assert_eq!((m.loads, m.load_failures, m.entries), (3, 1, 2));
    assert_eq!(m.misses, m.loads + m.coalesced);
    println!(
        "metrics: hits {}, misses {}, loads {}, failed loads {}, coalesced waits {}, entries {}",
        m.hits, m.misses, m.loads, m.load_failures, m.coalesced, m.entries
    );
}
