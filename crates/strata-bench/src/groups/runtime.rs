//! `runtime`: fork-join and pool entry against rayon, chili and plain
//! sequential code.
//!
//! One operation is one whole computation (a `fib(32)`, a 2^24-node tree
//! sum), except `scope_spawn` (one spawned child) and `wake_latency` (one
//! entry into a pool whose workers are asleep). Each runtime is built once
//! per case with the case's thread count; strata and rayon enter theirs
//! with `install`, chili with a scope of its pool (chili's `thread_count`
//! counts the calling thread, which takes part).
//!
//! Debug builds (the smoke test) use small sizes; the numbers below are the
//! release sizes.
//!
//! * `fib_join_1t` — `fib(32)`, a join at every call, 1 thread: the pure
//!   overhead of `join` (fib(32) makes 3 524 577 joins).
//! * `fib_cutoff_2t` — `fib(34)`, sequential below n ≤ 20, 2 threads.
//! * `tree_sum_1t` / `tree_sum_2t` — sum of a 2^24 − 1 node boxed binary
//!   tree with a join per node (memory-bound pointer chasing).
//! * `scope_spawn` — children spawned into one scope (2 threads), each
//!   adding to a counter; vs `rayon::scope`.
//! * `wake_latency` — an outside thread enters a 2-thread pool whose
//!   workers went to sleep (500 µs of idleness before each entry, untimed)
//!   and runs a trivial join there.

use std::hint::black_box;
use std::num::NonZero;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::harness::Group;

const DEBUG: bool = cfg!(debug_assertions);
const FIB_N: u64 = if DEBUG { 18 } else { 32 };
const FIB_CUTOFF_N: u64 = if DEBUG { 22 } else { 34 };
const CUTOFF: u64 = 20;
const TREE_LAYERS: u32 = if DEBUG { 10 } else { 24 };

fn fib_seq(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib_seq(n - 1) + fib_seq(n - 2)
    }
}

fn fib_strata(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let (a, b) = strata::join(|| fib_strata(n - 1), || fib_strata(n - 2));
    a + b
}

fn fib_rayon(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let (a, b) = rayon::join(|| fib_rayon(n - 1), || fib_rayon(n - 2));
    a + b
}

fn fib_chili(n: u64, s: &mut chili::Scope<'_>) -> u64 {
    if n < 2 {
        return n;
    }
    let (a, b) = s.join(|s| fib_chili(n - 1, s), |s| fib_chili(n - 2, s));
    a + b
}

fn fibc_strata(n: u64) -> u64 {
    if n <= CUTOFF {
        return fib_seq(n);
    }
    let (a, b) = strata::join(|| fibc_strata(n - 1), || fibc_strata(n - 2));
    a + b
}

fn fibc_rayon(n: u64) -> u64 {
    if n <= CUTOFF {
        return fib_seq(n);
    }
    let (a, b) = rayon::join(|| fibc_rayon(n - 1), || fibc_rayon(n - 2));
    a + b
}

fn fibc_chili(n: u64, s: &mut chili::Scope<'_>) -> u64 {
    if n <= CUTOFF {
        return fib_seq(n);
    }
    let (a, b) = s.join(|s| fibc_chili(n - 1, s), |s| fibc_chili(n - 2, s));
    a + b
}

/// A boxed binary tree node, as in chili's own benchmark.
struct Node {
    val: u64,
    left: Option<Box<Node>>,
    right: Option<Box<Node>>,
}

impl Node {
    fn tree(layers: u32) -> Node {
        Node {
            val: 1,
            left: (layers > 1).then(|| Box::new(Node::tree(layers - 1))),
            right: (layers > 1).then(|| Box::new(Node::tree(layers - 1))),
        }
    }
}

/// One tree shared by both tree cases (building it takes a while).
fn tree() -> &'static Node {
    static TREE: OnceLock<Node> = OnceLock::new();
    TREE.get_or_init(|| Node::tree(TREE_LAYERS))
}

const TREE_NODES: u64 = (1 << TREE_LAYERS) - 1;

fn sum_seq(n: &Node) -> u64 {
    n.val + n.left.as_deref().map_or(0, sum_seq) + n.right.as_deref().map_or(0, sum_seq)
}

fn sum_strata(n: &Node) -> u64 {
    let (l, r) = strata::join(
        || n.left.as_deref().map_or(0, sum_strata),
        || n.right.as_deref().map_or(0, sum_strata),
    );
    n.val + l + r
}

fn sum_rayon(n: &Node) -> u64 {
    let (l, r) = rayon::join(
        || n.left.as_deref().map_or(0, sum_rayon),
        || n.right.as_deref().map_or(0, sum_rayon),
    );
    n.val + l + r
}

fn sum_chili(n: &Node, s: &mut chili::Scope<'_>) -> u64 {
    let (l, r) = s.join(
        |s| n.left.as_deref().map_or(0, |n| sum_chili(n, s)),
        |s| n.right.as_deref().map_or(0, |n| sum_chili(n, s)),
    );
    n.val + l + r
}

fn strata_rt(threads: usize) -> strata::runtime::Runtime {
    strata::runtime::Runtime::builder()
        .threads(threads)
        .name("bench-strata")
        .build()
        .expect("strata runtime")
}

fn rayon_pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("rayon pool")
}

fn chili_pool(threads: usize) -> chili::ThreadPool {
    chili::ThreadPool::with_config(chili::Config {
        thread_count: NonZero::new(threads),
        ..chili::Config::default()
    })
}

/// Registers the four impls of a "compute `f` `iters` times" case.
fn compute_case(c: &mut crate::Case, threads: usize, expect: u64, kind: Kind) {
    let rt = strata_rt(threads);
    c.imp("strata", move |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            let v = rt.install(|| kind.strata());
            assert_eq!(v, expect, "strata: wrong result");
        }
        start.elapsed()
    });
    let pool = rayon_pool(threads);
    c.imp("rayon", move |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            let v = pool.install(|| kind.rayon());
            assert_eq!(v, expect, "rayon: wrong result");
        }
        start.elapsed()
    });
    let pool = chili_pool(threads);
    c.imp("chili", move |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            let v = kind.chili(&mut pool.scope());
            assert_eq!(v, expect, "chili: wrong result");
        }
        start.elapsed()
    });
    c.imp("sequential", move |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            assert_eq!(kind.sequential(), expect, "sequential: wrong result");
        }
        start.elapsed()
    });
}

#[derive(Clone, Copy)]
enum Kind {
    Fib,
    FibCutoff,
    Tree,
}

impl Kind {
    fn strata(self) -> u64 {
        match self {
            Kind::Fib => fib_strata(black_box(FIB_N)),
            Kind::FibCutoff => fibc_strata(black_box(FIB_CUTOFF_N)),
            Kind::Tree => sum_strata(black_box(tree())),
        }
    }
    fn rayon(self) -> u64 {
        match self {
            Kind::Fib => fib_rayon(black_box(FIB_N)),
            Kind::FibCutoff => fibc_rayon(black_box(FIB_CUTOFF_N)),
            Kind::Tree => sum_rayon(black_box(tree())),
        }
    }
    fn chili(self, s: &mut chili::Scope<'_>) -> u64 {
        match self {
            Kind::Fib => fib_chili(black_box(FIB_N), s),
            Kind::FibCutoff => fibc_chili(black_box(FIB_CUTOFF_N), s),
            Kind::Tree => sum_chili(black_box(tree()), s),
        }
    }
    fn sequential(self) -> u64 {
        match self {
            Kind::Fib => fib_seq(black_box(FIB_N)),
            Kind::FibCutoff => fib_seq(black_box(FIB_CUTOFF_N)),
            Kind::Tree => sum_seq(black_box(tree())),
        }
    }
}

/// Idleness before each `wake_latency` entry: the workers are asleep.
const IDLE_GAP: Duration = Duration::from_micros(500);

/// Times `iters` entries, each after [`IDLE_GAP`] of (untimed) idleness.
fn timed_entries(iters: u64, mut enter: impl FnMut() -> u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        std::thread::sleep(IDLE_GAP);
        let t0 = Instant::now();
        let v = enter();
        total += t0.elapsed();
        assert_eq!(v, 3, "wrong join result");
    }
    total
}

/// The `runtime` group.
pub fn group() -> Group {
    let fib = fib_seq(FIB_N);
    let fibc = fib_seq(FIB_CUTOFF_N);
    Group::new("runtime")
        .case("fib_join_1t", |c| compute_case(c, 1, fib, Kind::Fib))
        .case("fib_cutoff_2t", |c| {
            compute_case(c, 2, fibc, Kind::FibCutoff)
        })
        .case("tree_sum_1t", |c| {
            compute_case(c, 1, TREE_NODES, Kind::Tree)
        })
        .case("tree_sum_2t", |c| {
            compute_case(c, 2, TREE_NODES, Kind::Tree)
        })
        .case("scope_spawn", |c| {
            let rt = strata_rt(2);
            c.imp("strata", move |iters| {
                let count = AtomicU64::new(0);
                let start = Instant::now();
                rt.install(|| {
                    strata::task::scope(|s| {
                        for _ in 0..iters {
                            let count = &count;
                            s.spawn(move |_| {
                                count.fetch_add(1, Ordering::Relaxed);
                                Ok(())
                            });
                        }
                    })
                })
                .expect("no child fails");
                let d = start.elapsed();
                assert_eq!(count.into_inner(), iters, "strata: lost children");
                d
            });
            let pool = rayon_pool(2);
            c.imp("rayon", move |iters| {
                let count = AtomicU64::new(0);
                let start = Instant::now();
                pool.install(|| {
                    rayon::scope(|s| {
                        for _ in 0..iters {
                            let count = &count;
                            s.spawn(move |_| {
                                count.fetch_add(1, Ordering::Relaxed);
                            });
                        }
                    })
                });
                let d = start.elapsed();
                assert_eq!(count.into_inner(), iters, "rayon: lost children");
                d
            });
        })
        .case("wake_latency", |c| {
            let rt = strata_rt(2);
            c.imp("strata", move |iters| {
                timed_entries(iters, || {
                    let (a, b) = rt.join(|| black_box(1u64), || black_box(2u64));
                    a + b
                })
            });
            let pool = rayon_pool(2);
            c.imp("rayon", move |iters| {
                timed_entries(iters, || {
                    let (a, b) = pool.join(|| black_box(1u64), || black_box(2u64));
                    a + b
                })
            });
            let pool = chili_pool(2);
            c.imp("chili", move |iters| {
                timed_entries(iters, || {
                    let (a, b) = pool.scope().join(|_| black_box(1u64), |_| black_box(2u64));
                    a + b
                })
            });
        })
}
