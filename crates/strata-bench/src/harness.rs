//! Groups, cases, implementations, and the interleaved measurement loop.

use std::hint::black_box;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One implementation under test: given a number of operations, runs them
/// and returns how long they took (setup excluded, at the impl's discretion).
pub type ImplFn = Box<dyn FnMut(u64) -> Duration>;

/// How much measuring to do.
#[derive(Clone, Debug)]
pub struct Config {
    /// Samples collected per (case, impl).
    pub samples: usize,
    /// Wall time one sample should take; the batch size is calibrated per
    /// (case, impl) to reach it.
    pub sample_target: Duration,
    /// Smoke mode: run every implementation a few operations once, as a
    /// correctness check. Nothing is timed, printed as a table or written.
    pub smoke: bool,
    /// One call of an implementation (one sample, or one calibration or
    /// smoke run) that takes longer than this aborts the process with exit
    /// code 3, naming the group, case and impl: it is a deadlock or a lost
    /// wake-up in the code under test, not a slow sample.
    pub hang_limit: Duration,
}

impl Config {
    /// The full run: 50 samples of ~10 ms each.
    pub fn full() -> Self {
        Config {
            samples: 50,
            sample_target: Duration::from_millis(10),
            smoke: false,
            hang_limit: HANG_LIMIT,
        }
    }

    /// `--quick`: 20 samples of ~5 ms each; keeps a group well under 60 s.
    pub fn quick() -> Self {
        Config {
            samples: 20,
            sample_target: Duration::from_millis(5),
            smoke: false,
            hang_limit: HANG_LIMIT,
        }
    }

    /// Smoke mode (see [`Config::smoke`]).
    pub fn smoke() -> Self {
        Config {
            samples: 1,
            sample_target: Duration::ZERO,
            smoke: true,
            hang_limit: HANG_LIMIT,
        }
    }
}

/// Default [`Config::hang_limit`].
pub const HANG_LIMIT: Duration = Duration::from_secs(60);

/// A named benchmark group: a list of [`Case`]s, each run to completion
/// before the next.
pub struct Group {
    name: &'static str,
    cases: Vec<Case>,
}

impl Group {
    /// An empty group. `name` is the CLI name and the CSV/SVG file stem.
    pub fn new(name: &'static str) -> Self {
        Group {
            name,
            cases: Vec::new(),
        }
    }

    /// Adds a case; `register` adds its implementations with [`Case::imp`] or
    /// [`Case::iter`]. Register `strata` first.
    pub fn case(mut self, name: &'static str, register: impl FnOnce(&mut Case)) -> Self {
        let mut case = Case {
            name,
            impls: Vec::new(),
        };
        register(&mut case);
        assert!(
            !case.impls.is_empty(),
            "case {}/{name} has no implementations",
            self.name
        );
        self.cases.push(case);
        self
    }

    /// The group's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The names of the group's cases, in registration order.
    pub fn case_names(&self) -> Vec<&'static str> {
        self.cases.iter().map(|c| c.name).collect()
    }

    /// Runs every case, interleaving implementations within each case.
    /// `on_case` is called with each case's results as soon as it finishes
    /// (used to stream the table). Returns all results in order.
    pub fn run(
        mut self,
        cfg: &Config,
        mut on_case: impl FnMut(&[Measurement]),
    ) -> Vec<Measurement> {
        let dog = Watchdog::start(cfg.hang_limit);
        let mut all = Vec::new();
        for case in &mut self.cases {
            let results = case.run(cfg, self.name, &dog);
            on_case(&results);
            all.extend(results);
        }
        all
    }
}

/// One scenario measured across several implementations.
pub struct Case {
    name: &'static str,
    impls: Vec<(&'static str, ImplFn)>,
}

impl Case {
    /// Registers an implementation that times itself: `f(iters)` performs
    /// exactly `iters` operations and returns the time they took. Use it when
    /// the implementation needs per-sample setup excluded from timing,
    /// threads (see [`crate::timed_threads`]) or a runtime.
    pub fn imp(
        &mut self,
        name: &'static str,
        f: impl FnMut(u64) -> Duration + 'static,
    ) -> &mut Self {
        assert!(
            self.impls.iter().all(|(n, _)| *n != name),
            "impl {name} registered twice in case {}",
            self.name
        );
        self.impls.push((name, Box::new(f)));
        self
    }

    /// Registers an implementation where one call of `op` is one operation;
    /// the harness times a tight loop of calls (the loop is monomorphized, so
    /// `op` is inlined; its result goes through [`black_box`]).
    pub fn iter<R>(
        &mut self,
        name: &'static str,
        mut op: impl FnMut() -> R + 'static,
    ) -> &mut Self {
        self.imp(name, move |iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(op());
            }
            start.elapsed()
        })
    }

    /// Registers an async implementation where one `op().await` is one
    /// operation, driven by [`crate::block_on_noop`] (a poll loop with a
    /// no-op waker, one future per batch) so executor overhead stays out of
    /// the measurement. Only for operations that complete without waiting
    /// on another task (uncontended cases).
    pub fn iter_async<R>(
        &mut self,
        name: &'static str,
        mut op: impl AsyncFnMut() -> R + 'static,
    ) -> &mut Self {
        self.imp(name, move |iters| {
            crate::block_on_noop(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(op().await);
                }
                start.elapsed()
            })
        })
    }

    fn run(&mut self, cfg: &Config, group: &str, dog: &Watchdog) -> Vec<Measurement> {
        let case = self.name;
        let labels: Vec<String> = self
            .impls
            .iter()
            .map(|(imp, _)| format!("{group}/{case}/{imp}"))
            .collect();
        let names: Vec<&'static str> = self.impls.iter().map(|(imp, _)| *imp).collect();
        // Every call of an impl runs under the watchdog.
        let mut fns: Vec<_> = self
            .impls
            .iter_mut()
            .zip(&labels)
            .map(|((_, f), label)| {
                move |iters: u64| {
                    dog.enter(label);
                    let d = f(iters);
                    dog.leave();
                    d
                }
            })
            .collect();
        if cfg.smoke {
            return fns
                .iter_mut()
                .zip(&names)
                .map(|(f, imp)| {
                    // Odd counts exercise the uneven split across threads.
                    f(1);
                    f(101);
                    Measurement::new(case, imp, vec![0.0])
                })
                .collect();
        }
        let iters: Vec<u64> = fns
            .iter_mut()
            .map(|f| calibrate(f, cfg.sample_target))
            .collect();
        let n = fns.len();
        let mut per_op: Vec<Vec<f64>> = vec![Vec::with_capacity(cfg.samples); n];
        for round in 0..cfg.samples {
            // Rotate who goes first so no impl always follows the same one.
            for k in 0..n {
                let i = (round + k) % n;
                let d = fns[i](iters[i]);
                per_op[i].push(d.as_nanos() as f64 / iters[i] as f64);
            }
        }
        names
            .iter()
            .zip(per_op)
            .map(|(imp, samples)| Measurement::new(case, imp, samples))
            .collect()
    }
}

/// Aborts the process when one call of an implementation runs past the
/// limit: a bench that hangs has found a deadlock or a lost wake-up, and
/// naming the (group, case, impl) beats a silent stall.
struct Watchdog {
    shared: Arc<(Mutex<WatchState>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct WatchState {
    /// The call in progress: its label and start.
    current: Option<(String, Instant)>,
    /// The group is over; the watchdog thread exits.
    done: bool,
}

impl Watchdog {
    fn start(limit: Duration) -> Self {
        let shared = Arc::new((Mutex::new(WatchState::default()), Condvar::new()));
        let watched = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("strata-bench-watchdog".into())
            .spawn(move || {
                let (state, cv) = &*watched;
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                while !st.done {
                    if let Some((label, t0)) = &st.current
                        && t0.elapsed() > limit
                    {
                        eprintln!(
                            "strata-bench: {label}: one call has run for over {} s; \
                             a deadlock or lost wake-up in the code under test? aborting",
                            limit.as_secs()
                        );
                        std::process::exit(3);
                    }
                    let tick = limit.min(Duration::from_secs(1));
                    st = cv
                        .wait_timeout(st, tick)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            })
            .expect("spawn watchdog thread");
        Watchdog {
            shared,
            thread: Some(thread),
        }
    }

    fn enter(&self, label: &str) {
        let mut st = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        st.current = Some((label.to_string(), Instant::now()));
    }

    fn leave(&self) {
        self.shared
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .current = None;
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner()).done = true;
        self.shared.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Finds a batch size for which `f` takes about `target`; doubles as warm-up.
fn calibrate(mut f: impl FnMut(u64) -> Duration, target: Duration) -> u64 {
    let target_ns = target.as_nanos().max(1) as f64;
    let mut iters: u64 = 1;
    loop {
        let ns = f(iters).as_nanos().max(1) as f64;
        if ns >= target_ns * 0.5 || iters >= 1 << 40 {
            // Close enough: scale linearly to the target.
            return ((iters as f64 * target_ns / ns).round() as u64).max(1);
        }
        // Grow fast while far away; then approach with a margin so one more
        // round confirms the estimate (fixed costs make small batches lie).
        let factor = (target_ns / ns).clamp(2.0, 10.0);
        iters = ((iters as f64 * factor).ceil() as u64).max(iters + 1);
    }
}

/// The result of one (case, impl): per-operation times of every sample.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Case name.
    pub case: String,
    /// Implementation name.
    pub imp: String,
    /// Median time per operation, ns.
    pub median_ns: f64,
    /// Fastest sample, ns per operation.
    pub min_ns: f64,
    /// Slowest sample, ns per operation.
    pub max_ns: f64,
    /// Number of samples.
    pub samples: usize,
}

impl Measurement {
    /// Summarizes per-operation sample times (ns).
    pub fn new(case: &str, imp: &str, mut samples: Vec<f64>) -> Self {
        assert!(!samples.is_empty());
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let median = if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2.0
        };
        Measurement {
            case: case.to_string(),
            imp: imp.to_string(),
            median_ns: median,
            min_ns: samples[0],
            max_ns: samples[n - 1],
            samples: n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_and_even() {
        let m = Measurement::new("c", "i", vec![3.0, 1.0, 2.0]);
        assert_eq!(
            (m.median_ns, m.min_ns, m.max_ns, m.samples),
            (2.0, 1.0, 3.0, 3)
        );
        let m = Measurement::new("c", "i", vec![4.0, 1.0, 2.0, 3.0]);
        assert_eq!(m.median_ns, 2.5);
    }

    #[test]
    fn calibrate_reaches_target() {
        // A fake impl costing 1 µs per op plus 50 µs fixed.
        let mut f: ImplFn =
            Box::new(|iters| Duration::from_micros(50) + Duration::from_micros(iters));
        let iters = calibrate(&mut f, Duration::from_millis(10));
        assert!((5_000..=10_000).contains(&iters), "{iters}");
    }

    #[test]
    fn interleaves_and_counts() {
        use std::cell::RefCell;
        use std::rc::Rc;
        let log = Rc::new(RefCell::new(Vec::new()));
        let (a, b) = (log.clone(), log.clone());
        let cfg = Config {
            samples: 3,
            sample_target: Duration::from_micros(200),
            smoke: false,
            hang_limit: HANG_LIMIT,
        };
        let res = Group::new("g")
            .case("c", move |c| {
                c.imp("a", move |n| {
                    a.borrow_mut().push('a');
                    Duration::from_nanos(10 * n)
                });
                c.imp("b", move |n| {
                    b.borrow_mut().push('b');
                    Duration::from_nanos(20 * n)
                });
            })
            .run(&cfg, |_| {});
        assert_eq!(res.len(), 2);
        assert_eq!(res[0].median_ns, 10.0);
        assert_eq!(res[1].median_ns, 20.0);
        let log: String = log.borrow().iter().collect();
        // Calibration first, then rounds a b, b a, a b.
        assert!(log.ends_with("abbaab"), "{log}");
    }
}
