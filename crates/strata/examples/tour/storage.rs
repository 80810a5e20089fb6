//! L2/io — writer leases, `FileLock` + `DualHeader` shared by two
//! processes, and `BlockingIo` (issue 6).
//!
//! The second process is this very executable, started again with
//! `STRATA_TOUR_STORAGE_CHILD` naming the shared directory. It answers on
//! stdout with lines containing `@@ ` (the rest is its own tour output,
//! which the parent ignores). Every wait for it has a deadline and it is
//! killed if the tour fails, so the tour cannot hang on it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use strata::io::{DualHeader, FileLock, HeaderLayout, LockMode};
use strata::lease::{LeaseError, LeaseGate, WriterPolicy};
use strata::runtime::BlockingIo;

use crate::section;

/// Set (to the shared directory) in the second process.
const CHILD: &str = "STRATA_TOUR_STORAGE_CHILD";
/// Headers the second process writes.
const CHILD_WRITES: u64 = 100;
/// How long the parent waits for any answer of the child.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// Runs this layer's sections (or, in the second process, its part).
pub fn run() {
    serve_child_if_requested();
    lease_refused_under_fail();
    two_processes_share_a_file();
    blocking_io_barrier();
}

/// In the second process: do its part and exit. Called first thing by
/// [`run`]; calling it at the top of `main` too spares the child the
/// sections before this one.
pub fn serve_child_if_requested() {
    if let Some(dir) = std::env::var_os(CHILD) {
        child(Path::new(&dir));
        std::process::exit(0);
    }
}

fn layout() -> HeaderLayout {
    HeaderLayout::new()
        .slot_size(256)
        .magic(u64::from_le_bytes(*b"TOURIDX1"))
}

/// What generation `g` of the tour's index header says.
fn payload(g: u64) -> Vec<u8> {
    format!("generation {g}: index root at page {}", g * 7).into_bytes()
}

/// L2: a lease refused under `Fail`, timed out under `Timeout`, and who
/// holds it.
fn lease_refused_under_fail() {
    section("L2 lease: one writer per gate");
    let gate = LeaseGate::named("tour.index-writer");
    let lease = gate.acquire_as("compactor", WriterPolicy::Wait).unwrap();

    let refused = gate.acquire(WriterPolicy::Fail);
    assert!(matches!(refused, Err(LeaseError::WriterBusy)));
    let holder = gate.holder().expect("held");
    assert_eq!(
        (holder.id(), holder.name()),
        (lease.id(), Some("compactor"))
    );
    println!(
        "a second writer under Fail: \"{}\" ({} is held by {:?})",
        refused.unwrap_err(),
        holder.id(),
        holder.name().unwrap_or("?")
    );

    let d = Duration::from_millis(20);
    let start = Instant::now();
    let timed = gate.acquire(WriterPolicy::Timeout(d));
    let waited = start.elapsed();
    assert!(matches!(timed, Err(LeaseError::WriterTimeout)) && waited >= d);
    println!(
        "under Timeout({d:?}): \"{}\" after {waited:.0?} (never earlier)",
        timed.unwrap_err()
    );

    let other = LeaseGate::named("tour.other-gate");
    let Err(LeaseError::ForeignLease(lease)) = other.release(lease) else {
        panic!("another gate accepted the lease");
    };
    assert_eq!(gate.holder().map(|h| h.id()), Some(lease.id()));
    println!("released through another gate: refused, and the lease handed back still held");
    gate.release(lease).unwrap();
    assert!(gate.holder().is_none());
    let next = gate.acquire(WriterPolicy::Fail).unwrap();
    println!("released: the next writer gets {} at once", next.id());
}

/// The second process, seen from the first.
struct Peer {
    child: Child,
    answers: Receiver<String>,
}

impl Peer {
    fn spawn(dir: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("the tour's own path"))
            .env(CHILD, dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the second process");
        let stdout = child.stdout.take().expect("piped");
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find("@@ ")
                    && tx.send(line[at + 3..].to_string()).is_err()
                {
                    break;
                }
            }
        });
        Self { child, answers }
    }

    fn expect(&self, prefix: &str) -> String {
        let answer = self
            .answers
            .recv_timeout(ANSWER_WITHIN)
            .unwrap_or_else(|e| panic!("the second process did not say {prefix:?}: {e}"));
        assert!(
            answer.starts_with(prefix),
            "expected {prefix:?}, got {answer:?}"
        );
        answer
    }

    fn tell(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("piped");
        writeln!(stdin, "{line}").expect("the second process is alive");
        stdin.flush().expect("the second process is alive");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Normally it has exited already; if the tour failed, do not leave it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// io: a writer process and a reader process on one file.
fn two_processes_share_a_file() {
    section("io: two processes share one file through FileLock + DualHeader");
    let dir = Scratch(std::env::temp_dir().join(format!("strata-tour-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let data = dir.0.join("index.db");

    let mut lock = FileLock::named("tour.index-file", &data).unwrap();
    let mut header = DualHeader::open(&data, layout()).unwrap();
    {
        let _w = lock.lock(LockMode::Exclusive).unwrap();
        assert_eq!(header.write(&payload(1)).unwrap(), 1);
    }

    let mut peer = Peer::spawn(&dir.0);
    let said = peer.expect("leased");
    let here = LeaseGate::with_file_lock(dir.0.join("writer.lease")).unwrap();
    assert!(matches!(
        here.acquire(WriterPolicy::Fail),
        Err(LeaseError::WriterBusy)
    ));
    println!(
        "process {} holds the cross-process writer lease ({said}); this one is refused under Fail",
        peer.child.id()
    );

    peer.tell("go");
    // Read under shared locks while the other process writes under
    // exclusive ones: every header read is whole, generations only grow.
    let (mut reads, mut last, mut distinct) = (0u64, 0u64, 0u64);
    let done = loop {
        if let Ok(answer) = peer.answers.try_recv() {
            break answer;
        }
        let _r = lock.lock(LockMode::Shared).unwrap();
        let h = header.read().unwrap();
        assert_eq!(
            h.payload(),
            payload(h.generation()),
            "a torn header was read"
        );
        assert!(h.generation() >= last);
        if h.generation() > last {
            distinct += 1;
        }
        last = h.generation();
        reads += 1;
    };
    assert!(done.starts_with("done"), "{done}");
    let status = peer.child.wait().unwrap();
    assert!(status.success());
    let final_generation = 1 + CHILD_WRITES;
    let h = header.read().unwrap();
    assert_eq!(h.generation(), final_generation);
    println!(
        "the other process wrote {CHILD_WRITES} headers; this one read {reads} times \
         ({distinct} generations seen), never a torn one; now at generation {}",
        h.generation()
    );

    // Its lease died with it; and an upgrade here never lets anyone in between.
    let lease = here.acquire(WriterPolicy::Fail).unwrap();
    let mut guard = lock.lock(LockMode::Shared).unwrap();
    guard.upgrade().unwrap();
    let g = header.write(&payload(final_generation + 1)).unwrap();
    guard.downgrade().unwrap();
    assert_eq!(header.read().unwrap().payload(), payload(g));
    drop(guard);
    drop(lease);
    println!(
        "this process took the writer lease, upgraded its shared lock in place, wrote generation {g}, \
         downgraded: \"{}\"",
        String::from_utf8_lossy(&payload(g))
    );
}

/// The second process: takes the cross-process writer lease, waits for
/// "go", writes its headers under exclusive locks, and reports.
fn child(dir: &Path) {
    let say = |line: &str| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "@@ {line}");
        let _ = out.flush();
    };
    let gate = LeaseGate::with_file_lock(dir.join("writer.lease")).unwrap();
    let lease = gate
        .acquire_as("tour writer process", WriterPolicy::Timeout(ANSWER_WITHIN))
        .unwrap();
    say(&format!("leased as {}", lease.id()));
    let mut go = String::new();
    std::io::stdin().lock().read_line(&mut go).unwrap();
    assert_eq!(go.trim(), "go");
    let data = dir.join("index.db");
    let mut lock = FileLock::open(&data).unwrap();
    let mut header = DualHeader::open(&data, layout()).unwrap();
    let mut g = 0;
    for _ in 0..CHILD_WRITES {
        let _w = lock.lock(LockMode::Exclusive).unwrap();
        let next = header.read().unwrap().generation() + 1;
        g = header.write(&payload(next)).unwrap();
        assert_eq!(g, next);
    }
    gate.release(lease).unwrap();
    say(&format!("done {g}"));
}

/// L3: `BlockingIo`, reads side by side and a write alone.
fn blocking_io_barrier() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    section("L3 runtime: BlockingIo, concurrent runs and barrier writes");
    let io = BlockingIo::builder().threads(4).name("tour-io").build();
    let (now, most, overlapped) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let reads: Vec<_> = (0..8)
        .map(|_| {
            let (now, most) = (now.clone(), most.clone());
            io.run_async(move || {
                let inside = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(inside, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                now.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    let (n, o) = (now.clone(), overlapped.clone());
    let write = io.run_write_async(move || o.store(n.load(Ordering::SeqCst), Ordering::SeqCst));
    // All eight reads are submitted before the write, which waits for them.
    let (reads, write) = futures::executor::block_on(async {
        futures::join!(futures::future::join_all(reads), write)
    });
    assert!(reads.iter().all(Result::is_ok) && write.is_ok());
    let most = most.load(Ordering::SeqCst);
    assert!((1..=4).contains(&most));
    assert_eq!(overlapped.load(Ordering::SeqCst), 0);
    // The job's panic is the point here: keep its message off the terminal.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let err = io.run(|| -> u32 { panic!("a failing read") }).unwrap_err();
    std::panic::set_hook(hook);
    assert!(err.to_string().contains("a failing read"));
    assert_eq!(io.run(|| 42).unwrap(), 42);
    println!(
        "8 reads on {} threads (up to {most} at once), then a write that ran with 0 reads in flight; \
         a panicking job came back as \"{err}\" and the threads carried on",
        io.max_threads()
    );
}
