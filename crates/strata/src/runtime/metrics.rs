//! `Runtime::metrics()`: a snapshot of the pool's counters.

/// Counters of one runtime, as returned by
/// [`Runtime::metrics`](super::Runtime::metrics).
///
/// Counters are cumulative since the runtime started; depths are the queue
/// lengths at the moment of the snapshot. Reading them costs relaxed loads;
/// the workers update them with plain stores (each counter has one writer).
///
/// ```
/// use strata::runtime::Runtime;
///
/// let rt = Runtime::builder().threads(2).build().unwrap();
/// rt.spawn(async {}).join().unwrap();
/// let m = rt.metrics();
/// assert_eq!(m.workers, 2);
/// assert_eq!(m.tasks_spawned, 1);
/// assert!(m.tasks_run >= 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RuntimeMetrics {
    /// Worker threads of the pool.
    pub workers: usize,
    /// Jobs the workers took from a queue and ran (future polls, stolen or
    /// promoted `join` halves, scope children, injected calls).
    pub tasks_run: u64,
    /// Futures spawned with `spawn`.
    pub tasks_spawned: u64,
    /// Spawned futures that have not finished yet.
    pub live_tasks: usize,
    /// Jobs taken from another worker's deque.
    pub steals: u64,
    /// Times a worker went to sleep (blocked) for lack of work.
    pub parks: u64,
    /// `join` halves a busy worker shared because an idle one asked.
    pub promotions: u64,
    /// Workers asleep right now.
    pub sleeping: usize,
    /// Jobs in the global injector queue.
    pub injector_depth: usize,
    /// Jobs in each worker's deque.
    pub worker_depths: Vec<usize>,
}
