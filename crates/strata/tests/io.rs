//! io — `FileLock` between real processes and `DualHeader` under crashes.
//!
//! The other processes are this test binary itself, re-run with
//! `--exact io_helper_process` and a role in `STRATA_IO_HELPER`; the helper
//! takes commands on stdin and answers on stdout with lines starting with
//! `@@ ` (anything else is test-harness chatter). Every wait for an answer
//! has a deadline, so a broken lock fails the test instead of hanging it.

#![cfg(target_os = "linux")]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rand::Rng;
use strata::io::{
    DualHeader, FileLock, FileLockError, FileLockGuard, HeaderError, HeaderLayout, LockMode,
    SlotState,
};

const ROLE: &str = "STRATA_IO_HELPER";
const ARG: &str = "STRATA_IO_HELPER_ARG";
/// How long any single answer from a helper may take before the test fails.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- helpers

/// A scratch file for one test, removed when it drops.
fn scratch(name: &str) -> support::Scratch {
    support::Scratch::new(&format!("io-{name}"))
}

/// A helper process and its answers.
struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    answers: Receiver<String>,
}

impl Helper {
    fn spawn(role: &str, arg: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "io_helper_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE, role)
            .env(ARG, arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn helper");
        let stdout = child.stdout.take().unwrap();
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The harness prints "test io_helper_process ... " without
                // a newline, so the first answer shares its line.
                if let Some(at) = line.find("@@ ")
                    && tx.send(line[at + 3..].to_string()).is_err()
                {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            answers,
        }
    }

    fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("helper stdin");
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }

    fn answer(&self) -> String {
        match self.answers.recv_timeout(ANSWER_WITHIN) {
            Ok(a) => a,
            Err(e) => panic!("helper gave no answer within {ANSWER_WITHIN:?}: {e:?}"),
        }
    }

    fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.answer()
    }

    /// An answer that has already arrived, if any.
    fn answered(&self) -> Option<String> {
        self.answers.try_recv().ok()
    }

    /// `SIGKILL`, then reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every answer given before the process ended.
    fn drain(&self) -> Vec<String> {
        let mut all = Vec::new();
        loop {
            match self.answers.recv_timeout(ANSWER_WITHIN) {
                Ok(a) => all.push(a),
                Err(RecvTimeoutError::Disconnected) => return all,
                Err(RecvTimeoutError::Timeout) => panic!("helper output never closed"),
            }
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.kill();
    }
}

fn error_name(e: &FileLockError) -> &'static str {
    match e {
        FileLockError::WouldBlock => "WouldBlock",
        FileLockError::WouldDeadlock => "WouldDeadlock",
        FileLockError::Timeout => "Timeout",
        _ => "Other",
    }
}

fn mode(word: &str) -> LockMode {
    match word {
        "shared" => LockMode::Shared,
        "exclusive" => LockMode::Exclusive,
        other => panic!("unknown mode {other}"),
    }
}

// ---------------------------------------------------------------- the helper process

/// The helper process's entry point; an ordinary run of the suite finds no
/// role and returns at once.
#[test]
fn io_helper_process() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let arg = PathBuf::from(std::env::var_os(ARG).expect("helper argument"));
    match role.as_str() {
        "lock" => lock_role(&arg),
        "header-writer" => header_writer_role(&arg),
        other => panic!("unknown helper role {other}"),
    }
    std::process::exit(0);
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ {line}").unwrap();
    out.flush().unwrap();
}

fn result(r: Result<(), FileLockError>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => format!("err {}", error_name(&e)),
    }
}

/// Holds one `FileLock` on `path` and does what stdin says:
/// `lock MODE`, `try MODE`, `upgrade`, `downgrade`, `unlock`,
/// `cycle N` (upgrade and downgrade N times), `spin` (try both modes in a
/// loop until `stop`, then report successes and attempts).
fn lock_role(path: &Path) {
    let (tx, commands) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lock = FileLock::open(path).unwrap();
    let mut guard: Option<FileLockGuard<'_>> = None;
    while let Ok(command) = commands.recv() {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["lock", m] => {
                guard = None;
                match lock.lock(mode(m)) {
                    Ok(g) => {
                        guard = Some(g);
                        say("ok");
                    }
                    Err(e) => say(&result(Err(e))),
                }
            }
            ["try", m] => {
                guard = None;
                match lock.try_lock(mode(m)) {
                    Ok(g) => {
                        guard = Some(g);
                        say("ok");
                    }
                    Err(e) => say(&result(Err(e))),
                }
            }
            ["upgrade"] => say(&result(guard.as_mut().unwrap().upgrade())),
            ["downgrade"] => say(&result(guard.as_mut().unwrap().downgrade())),
            ["unlock"] => {
                guard = None;
                say("ok");
            }
            ["cycle", n] => {
                let g = guard.as_mut().unwrap();
                let mut r = Ok(());
                for _ in 0..n.parse::<u32>().unwrap() {
                    r = g.upgrade().and_then(|()| g.downgrade());
                    if r.is_err() {
                        break;
                    }
                }
                say(&result(r));
            }
            ["spin"] => {
                guard = None;
                let (mut shared, mut exclusive, mut attempts) = (0u64, 0u64, 0u64);
                loop {
                    if attempts == 100 {
                        // Announced once really spinning, so the caller's
                        // next step overlaps with attempts.
                        say("spinning");
                    }
                    if attempts > 100
                        && let Ok(stop) = commands.try_recv()
                    {
                        assert_eq!(stop, "stop");
                        break;
                    }
                    attempts += 1;
                    if lock.try_lock(LockMode::Shared).is_ok() {
                        shared += 1;
                    }
                    if lock.try_lock(LockMode::Exclusive).is_ok() {
                        exclusive += 1;
                    }
                }
                say(&format!("{shared} {exclusive} {attempts}"));
            }
            other => panic!("unknown command {other:?}"),
        }
    }
}

/// The payload of generation `g`: its length and bytes depend on `g`, so a
/// header mixing two generations is caught by the content check too.
fn payload(g: u64) -> Vec<u8> {
    // Large, so a kill often lands inside the write; cheap to build (a
    // fill), so the writer spends its time writing.
    let len = 200_000 + (g % 97) as usize * 31;
    let mut p = vec![(g as u8).wrapping_mul(31) | 1; len];
    p[..8].copy_from_slice(&g.to_le_bytes());
    p
}

/// Slots of 64 pages, starting mid-page, so each write spans many pages: the kernel acts on a SIGKILL between the pages it copies, so a
/// kill can land inside a write and leave a torn slot (one page-sized slot
/// is copied all or nothing, and could never be torn by a kill).
fn crash_layout() -> HeaderLayout {
    HeaderLayout::new().offset(2048).slot_size(64 * 4096)
}

/// Writes headers in a loop, reporting each generation once `write`
/// (which syncs) has returned.
fn header_writer_role(path: &Path) {
    let mut header = DualHeader::open(path, crash_layout()).unwrap();
    let mut next = match header.read() {
        Ok(h) => h.generation() + 1,
        Err(HeaderError::Empty) => 1,
        Err(e) => panic!("writer found no header to continue from: {e}"),
    };
    loop {
        let written = header.write(&payload(next)).unwrap();
        assert_eq!(written, next);
        say(&written.to_string());
        next += 1;
    }
}

// ---------------------------------------------------------------- FileLock

#[test]
fn shared_holders_coexist_and_exclusive_excludes_across_processes() {
    let path = scratch("coexist");
    let mut a = Helper::spawn("lock", &path);
    let mut b = Helper::spawn("lock", &path);
    assert_eq!(a.ask("lock shared"), "ok");
    assert_eq!(b.ask("lock shared"), "ok");
    let mut mine = FileLock::open(&path).unwrap();
    drop(mine.try_lock(LockMode::Shared).expect("a third reader"));
    assert!(matches!(
        mine.try_lock(LockMode::Exclusive),
        Err(FileLockError::WouldBlock)
    ));
    assert_eq!(a.ask("unlock"), "ok");
    assert_eq!(b.ask("unlock"), "ok");

    assert_eq!(a.ask("lock exclusive"), "ok");
    assert_eq!(b.ask("try shared"), "err WouldBlock");
    assert_eq!(b.ask("try exclusive"), "err WouldBlock");
    assert!(matches!(
        mine.try_lock(LockMode::Shared),
        Err(FileLockError::WouldBlock)
    ));
    assert_eq!(a.ask("unlock"), "ok");
    let w = mine.try_lock(LockMode::Exclusive).expect("free again");
    assert_eq!(b.ask("try shared"), "err WouldBlock");
    drop(w);
    assert_eq!(b.ask("try shared"), "ok");
}

#[test]
fn a_sigkilled_holder_releases_the_lock() {
    let path = scratch("sigkill");
    let mut holder = Helper::spawn("lock", &path);
    assert_eq!(holder.ask("lock exclusive"), "ok");
    let mut mine = FileLock::open(&path).unwrap();
    assert!(matches!(
        mine.try_lock(LockMode::Shared),
        Err(FileLockError::WouldBlock)
    ));
    // A blocked waiter is woken by the holder's death.
    let (tx, granted) = mpsc::channel();
    let waiter_path = path.to_path_buf();
    let waiter = std::thread::spawn(move || {
        let mut lock = FileLock::open(&waiter_path).unwrap();
        let guard = lock.lock(LockMode::Exclusive).map(|g| g.mode());
        tx.send(guard.map_err(|e| e.to_string())).unwrap();
    });
    holder.kill();
    assert_eq!(
        granted.recv_timeout(ANSWER_WITHIN).expect("waiter woken"),
        Ok(LockMode::Exclusive)
    );
    waiter.join().unwrap();
    drop(
        mine.try_lock(LockMode::Exclusive)
            .expect("released by the kill"),
    );
}

/// Probes with a `FileLock` of this process until a shared `try_lock`
/// fails: the upgrader has taken the pending byte.
fn wait_until_readers_are_kept_out(path: &Path) {
    let mut probe = FileLock::open(path).unwrap();
    let give_up = Instant::now() + ANSWER_WITHIN;
    while probe.try_lock(LockMode::Shared).is_ok() {
        assert!(
            Instant::now() < give_up,
            "the upgrade never started waiting"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn during_an_upgrade_a_third_process_never_gets_in() {
    let path = scratch("upgrade");
    let mut upgrader = Helper::spawn("lock", &path);
    let mut reader = Helper::spawn("lock", &path);
    let mut third = Helper::spawn("lock", &path);
    assert_eq!(upgrader.ask("lock shared"), "ok");
    assert_eq!(reader.ask("lock shared"), "ok");

    // The upgrade has to wait for `reader`; from then on `third` is out.
    upgrader.send("upgrade");
    wait_until_readers_are_kept_out(&path);
    assert_eq!(third.ask("spin"), "spinning");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(upgrader.answered(), None, "upgraded past a reader");
    assert_eq!(reader.ask("unlock"), "ok");
    assert_eq!(upgrader.answer(), "ok");
    std::thread::sleep(Duration::from_millis(50));
    let counts = third.ask("stop");
    let [shared, exclusive, attempts]: [u64; 3] = counts
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    assert_eq!((shared, exclusive), (0, 0), "third got in: {counts}");
    assert!(attempts > 0);

    // Downgraded: readers may join, writers still may not.
    assert_eq!(upgrader.ask("downgrade"), "ok");
    assert_eq!(third.ask("try shared"), "ok");
    assert_eq!(third.ask("unlock"), "ok");
    assert_eq!(third.ask("try exclusive"), "err WouldBlock");
}

#[test]
fn upgrade_and_downgrade_cycles_never_open_a_window() {
    let path = scratch("cycles");
    let mut holder = Helper::spawn("lock", &path);
    let mut third = Helper::spawn("lock", &path);
    assert_eq!(holder.ask("lock shared"), "ok");
    assert_eq!(third.ask("spin"), "spinning");
    // With a conversion that unlocks first (flock's), `third` would win
    // the race for the file now and then.
    assert_eq!(holder.ask("cycle 2000"), "ok");
    let counts = third.ask("stop");
    let fields: Vec<u64> = counts.split(' ').map(|n| n.parse().unwrap()).collect();
    assert_eq!(fields[1], 0, "an exclusive lock got in between: {counts}");
    assert!(fields[2] > 0);
}

#[test]
fn two_concurrent_upgraders_one_would_deadlock_and_none_hangs() {
    let path = scratch("deadlock");
    let mut a = Helper::spawn("lock", &path);
    let mut b = Helper::spawn("lock", &path);
    assert_eq!(a.ask("lock shared"), "ok");
    assert_eq!(b.ask("lock shared"), "ok");
    a.send("upgrade");
    b.send("upgrade");
    let give_up = Instant::now() + ANSWER_WITHIN;
    let (loser, winner, answer) = loop {
        if let Some(x) = a.answered() {
            break (&mut a, &mut b, x);
        }
        if let Some(x) = b.answered() {
            break (&mut b, &mut a, x);
        }
        assert!(Instant::now() < give_up, "both upgraders hang");
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(answer, "err WouldDeadlock");
    // The winner waits for the loser's shared lock, which is still held.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(winner.answered(), None);
    assert_eq!(loser.ask("unlock"), "ok");
    assert_eq!(winner.answer(), "ok");
    assert_eq!(loser.ask("try shared"), "err WouldBlock");
}

#[test]
fn two_file_locks_of_one_process_exclude_each_other_across_threads() {
    let path = scratch("threads");
    let inside = std::sync::atomic::AtomicUsize::new(0);
    let total = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut lock = FileLock::open(&path).unwrap();
                for i in 0..200 {
                    let mode = if i % 3 == 0 {
                        LockMode::Exclusive
                    } else {
                        LockMode::Shared
                    };
                    let g = lock.lock(mode).unwrap();
                    let was = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if mode == LockMode::Exclusive {
                        // Non-atomic-style increment: lost if two writers overlap.
                        assert_eq!(was, 0, "a writer shared the file");
                        let t = total.load(std::sync::atomic::Ordering::SeqCst);
                        std::thread::yield_now();
                        total.store(t + 1, std::sync::atomic::Ordering::SeqCst);
                    }
                    inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    drop(g);
                }
            });
        }
    });
    assert_eq!(total.into_inner(), 4 * 67);
}

/// A blocking upgrade that has to wait goes through the diag wait hook like
/// `lock` does: it counts as contention of the lock's class (and so is seen
/// by the watchdog while it waits).
#[test]
fn a_waiting_upgrade_counts_as_contention_of_its_class() {
    const CLASS: &str = "io.upgrade-wait";
    let path = scratch("upgrade-wait");
    let mut other = FileLock::named(CLASS, &path).unwrap();
    let other_reader = other.lock(LockMode::Shared).unwrap();
    std::thread::scope(|s| {
        let upgrader = s.spawn(|| {
            let mut lock = FileLock::named(CLASS, &path).unwrap();
            let mut guard = lock.lock(LockMode::Shared).unwrap();
            guard.upgrade().unwrap();
            assert_eq!(guard.mode(), LockMode::Exclusive);
        });
        // Readers are kept out only once the upgrade really waits.
        wait_until_readers_are_kept_out(&path);
        drop(other_reader);
        upgrader.join().unwrap();
    });
    if !strata::diag::checking_enabled() {
        return;
    }
    let metrics = strata::diag::metrics();
    let class = metrics
        .iter()
        .find(|m| m.class.name() == Some(CLASS))
        .expect("the class is listed");
    assert!(class.contended >= 1, "{class:?}");
    assert_eq!(class.holders, 0, "{class:?}");
}

#[test]
fn timed_locks_time_out_no_earlier_than_asked_and_leave_nothing_held() {
    let path = scratch("timed");
    let mut holder = FileLock::open(&path).unwrap();
    let mut other = FileLock::open(&path).unwrap();
    let r = holder.lock(LockMode::Shared).unwrap();
    let d = Duration::from_millis(40);
    let start = Instant::now();
    assert!(matches!(
        other.lock_timeout(LockMode::Exclusive, d),
        Err(FileLockError::Timeout)
    ));
    assert!(start.elapsed() >= d);
    drop(r);
    let mut w = holder.lock(LockMode::Shared).unwrap();
    // The timed-out writer left no pending byte behind: the upgrade is free.
    w.try_upgrade().unwrap();
    let start = Instant::now();
    assert!(matches!(
        other.lock_timeout(LockMode::Shared, d),
        Err(FileLockError::Timeout)
    ));
    assert!(start.elapsed() >= d);
    w.downgrade().unwrap();
    drop(
        other
            .lock_timeout(LockMode::Shared, d)
            .expect("readers welcome"),
    );
}

// ---------------------------------------------------------------- DualHeader

#[test]
fn header_survives_200_sigkills_of_its_writer() {
    let path = scratch("crash");
    let mut rng = rand::rng();
    let mut durable = 0u64;
    let mut highest_seen = 0u64;
    let mut torn_seen = 0;
    for round in 0..200 {
        let writer = Helper::spawn("header-writer", &path);
        // Let it write at least once, then kill it at a random moment.
        let first: u64 = writer.answer().parse().unwrap();
        // It continued from a header at least as new as the last durable one.
        assert!(
            first > durable,
            "round {round}: wrote {first} after {durable}"
        );
        std::thread::sleep(Duration::from_micros(rng.random_range(0..3000)));
        let mut writer = writer;
        writer.kill();
        let reported = std::iter::once(first.to_string())
            .chain(writer.drain())
            .map(|g| g.parse::<u64>().unwrap())
            .max()
            .unwrap();
        durable = durable.max(reported);
        let header = DualHeader::open(&path, crash_layout())
            .unwrap()
            .read()
            .unwrap_or_else(|e| panic!("round {round}: no header after the kill: {e}"));
        assert!(
            header.generation() >= durable,
            "round {round}: read generation {} but {durable} was durable",
            header.generation()
        );
        assert_eq!(header.payload(), payload(header.generation()));
        highest_seen = highest_seen.max(header.generation());
        torn_seen += usize::from(header.other_torn());
    }
    assert!(highest_seen >= 200);
    // The kills really did land inside writes: the recoveries above were
    // of torn slots, not only of kills between writes.
    eprintln!("{torn_seen} of 200 kills left a torn slot behind");
    assert!(torn_seen > 0, "no kill ever tore a write");
}

#[test]
fn a_first_write_cut_short_is_followed_by_generation_one_in_the_empty_slot() {
    const SLOT: usize = 96;
    let layout = HeaderLayout::new().slot_size(SLOT);
    let path = scratch("first-torn");
    let payload = b"the very first header";
    // What the first write puts into slot A.
    let complete = {
        let mut h = DualHeader::open(&path, layout).unwrap();
        h.write(payload).unwrap();
        bytes(&path)[..28 + payload.len()].to_vec()
    };
    for cut in 1..complete.len() {
        std::fs::write(&path, &complete[..cut]).unwrap();
        let mut h = DualHeader::open(&path, layout).unwrap();
        match h.read() {
            Err(HeaderError::NoValidSlot { a, b }) => {
                assert_eq!((a, b), (SlotState::Torn, SlotState::Empty), "cut {cut}");
            }
            // A prefix of only zero bytes (none here: the magic comes
            // first) would read as empty.
            other => panic!("cut {cut}: {other:?}"),
        }
        assert_eq!(h.write(b"again").unwrap(), 1, "cut {cut}");
        // The torn slot was left as it was; the new header is in B.
        assert_eq!(&bytes(&path)[..cut], &complete[..cut]);
        let got = h.read().unwrap();
        assert_eq!((got.generation(), got.payload()), (1, &b"again"[..]));
        assert!(got.other_torn());
        // And the next write replaces the torn slot with a whole header.
        assert_eq!(h.write(b"third").unwrap(), 2);
        assert_eq!(
            h.read().unwrap().other(),
            SlotState::Valid { generation: 1 }
        );
    }
}

/// The bytes of a whole file.
fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn every_torn_prefix_of_a_slot_write_reads_as_the_previous_header() {
    const OFFSET: u64 = 100;
    const SLOT: usize = 96;
    let layout = HeaderLayout::new().offset(OFFSET).slot_size(SLOT);
    let path = scratch("torn");
    let mut rng = rand::rng();
    let mut header = DualHeader::open(&path, layout).unwrap();
    header.write(b"generation one").unwrap();
    header
        .write(b"the second generation, a bit longer")
        .unwrap();
    // Two more writes: one into each slot, so both directions are torn.
    for (next, payload, slot_at) in [
        (3u64, &b"three"[..], OFFSET as usize),
        (
            4,
            &b"four: the longest payload of them all, nearly full"[..],
            OFFSET as usize + SLOT,
        ),
    ] {
        let before = bytes(&path);
        let previous = header.read().unwrap();
        assert_eq!(previous.generation(), next - 1);
        assert_eq!(header.write(payload).unwrap(), next);
        let after = bytes(&path);
        // What the write put on disk: exactly the framed slot, no padding.
        let written = 28 + payload.len();
        assert_eq!(&after[..slot_at], &before[..slot_at]);
        let new_slot = after[slot_at..slot_at + written].to_vec();

        for cut in 0..written {
            for garbage in [false, true] {
                let mut torn = before.clone();
                torn.resize(torn.len().max(slot_at + SLOT), 0);
                torn[slot_at..slot_at + cut].copy_from_slice(&new_slot[..cut]);
                if garbage {
                    for b in &mut torn[slot_at + cut..slot_at + SLOT] {
                        *b = rng.random();
                    }
                }
                std::fs::write(&path, &torn).unwrap();
                let got = DualHeader::open(&path, layout).unwrap().read().unwrap();
                assert_eq!(
                    (got.generation(), got.payload()),
                    (previous.generation(), previous.payload()),
                    "cut at {cut} of {written}, garbage tail: {garbage}"
                );
                assert!(
                    got.other_torn()
                        || got.other()
                            == SlotState::Valid {
                                generation: next - 2
                            },
                    "cut at {cut}: other slot {:?}",
                    got.other()
                );
                if garbage {
                    assert!(got.other_torn(), "cut at {cut}: garbage not seen as torn");
                }
            }
        }
        // The complete write reads as the new header.
        std::fs::write(&path, &after).unwrap();
        let got = DualHeader::open(&path, layout).unwrap().read().unwrap();
        assert_eq!((got.generation(), got.payload()), (next, payload));
        header = DualHeader::open(&path, layout).unwrap();
    }
}

#[test]
fn a_torn_slot_is_replaced_by_the_next_write_never_repaired() {
    let layout = HeaderLayout::new().slot_size(64);
    let path = scratch("repair");
    let mut header = DualHeader::open(&path, layout).unwrap();
    header.write(b"one").unwrap();
    header.write(b"two").unwrap();
    // Tear slot A (generation 1) in its payload.
    let mut b = bytes(&path);
    b[26] ^= 0xff;
    std::fs::write(&path, &b).unwrap();
    let got = header.read().unwrap();
    assert_eq!((got.generation(), got.other()), (2, SlotState::Torn));
    // Reading changed nothing on disk.
    assert_eq!(bytes(&path), b);
    // The next write goes into the torn slot, as a complete new header.
    assert_eq!(header.write(b"three").unwrap(), 3);
    let got = header.read().unwrap();
    assert_eq!((got.generation(), got.payload()), (3, &b"three"[..]));
    assert_eq!(got.other(), SlotState::Valid { generation: 2 });
}

#[test]
fn both_slots_torn_is_an_error_and_write_refuses_until_reset() {
    let layout = HeaderLayout::new().slot_size(64);
    let path = scratch("bothtorn");
    let mut header = DualHeader::open(&path, layout).unwrap();
    assert!(matches!(header.read(), Err(HeaderError::Empty)));
    header.write(b"one").unwrap();
    header.write(b"two").unwrap();
    let mut b = bytes(&path);
    b[30] ^= 1;
    b[64 + 30] ^= 1;
    std::fs::write(&path, &b).unwrap();
    assert!(matches!(
        header.read(),
        Err(HeaderError::NoValidSlot {
            a: SlotState::Torn,
            b: SlotState::Torn
        })
    ));
    assert!(matches!(
        header.write(b"three"),
        Err(HeaderError::NoValidSlot { .. })
    ));
    assert_eq!(bytes(&path), b, "a refused write wrote nothing");
    header.reset(b"fresh").unwrap();
    let got = header.read().unwrap();
    assert_eq!((got.generation(), got.payload()), (1, &b"fresh"[..]));
    assert_eq!(got.other(), SlotState::Empty);
}

#[test]
fn a_payload_too_large_writes_nothing() {
    let layout = HeaderLayout::new().slot_size(64);
    let path = scratch("toolarge");
    let mut header = DualHeader::open(&path, layout).unwrap();
    header.write(b"fits").unwrap();
    let before = bytes(&path);
    let big = vec![7u8; layout.capacity() + 1];
    assert!(matches!(
        header.write(&big),
        Err(HeaderError::PayloadTooLarge {
            len: 37,
            capacity: 36
        })
    ));
    assert_eq!(bytes(&path), before);
    // Exactly the capacity fits.
    header.write(&big[..layout.capacity()]).unwrap();
    assert_eq!(header.read().unwrap().payload().len(), 36);
}

#[test]
fn writers_and_readers_sharing_a_file_through_file_locks_see_whole_headers() {
    // Two handles per thread (lock + header), as two processes would have.
    let path = scratch("shared-file");
    let layout = crash_layout();
    DualHeader::open(&path, layout)
        .unwrap()
        .write(&payload(1))
        .unwrap();
    std::thread::scope(|s| {
        for writer in 0..2 {
            let path = &path;
            s.spawn(move || {
                let mut lock = FileLock::open(path).unwrap();
                let mut header = DualHeader::open(path, layout).unwrap();
                for i in 0..100 {
                    let _w = lock.lock(LockMode::Exclusive).unwrap();
                    let next = header.read().unwrap().generation() + 1;
                    assert_eq!(header.write(&payload(next)).unwrap(), next, "{writer}/{i}");
                }
            });
        }
        for _ in 0..2 {
            let path = &path;
            s.spawn(move || {
                let mut lock = FileLock::open(path).unwrap();
                let header = DualHeader::open(path, layout).unwrap();
                let mut last = 0;
                for _ in 0..200 {
                    let _r = lock.lock(LockMode::Shared).unwrap();
                    let h = header.read().unwrap();
                    assert_eq!(h.payload(), payload(h.generation()));
                    assert!(h.generation() >= last);
                    last = h.generation();
                }
            });
        }
    });
    let h = DualHeader::open(&path, layout).unwrap().read().unwrap();
    assert_eq!(h.generation(), 201);
}
