//! Helpers shared by the integration tests (`mod support;` in each file
//! that needs them).

#![allow(dead_code)] // each test file uses its own subset

use std::sync::{Arc, Mutex, Once};

use strata::diag::{self, Handler, Violation};

static SEEN: Mutex<Vec<Violation>> = Mutex::new(Vec::new());

/// Takes the order-checker reports that mention `prefix`.
///
/// The first call installs a process-wide callback that collects every
/// report. Tests use class names with their own prefix and take only the
/// reports that mention it, so they can run in parallel, on any thread or
/// runtime, without seeing each other's reports.
pub fn take_violations(prefix: &str) -> Vec<Violation> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        diag::set_violation_handler(Handler::Callback(Arc::new(|v| {
            SEEN.lock().unwrap().push(v.clone());
        })));
    });
    let mut seen = SEEN.lock().unwrap();
    let (mine, rest): (Vec<_>, Vec<_>) =
        seen.drain(..).partition(|v| v.to_string().contains(prefix));
    *seen = rest;
    mine
}

/// A scratch file path, unique to this process and call, removed when the
/// guard drops (also when the test fails and unwinds). On tmpfs when the
/// machine has one, for fast `fsync`s.
///
/// The name carries the process id and a random suffix, so two test runs
/// (even in separate PID namespaces sharing `/dev/shm`) never share or
/// delete each other's files.
pub struct Scratch {
    path: std::path::PathBuf,
}

impl Scratch {
    /// A new scratch path named after `what`; the file does not exist yet.
    pub fn new(what: &str) -> Self {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!(
            "strata-test-{what}-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        Self { path }
    }

    /// The path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A child process that is killed and reaped when the guard drops, so a
/// failing test never leaves a helper process behind (holding a lock).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs test `name` of the current test binary alone in a child process,
/// for tests that count something process-wide (threads, STM stats) that
/// other tests running in parallel would disturb. Returns `true` in the
/// parent (the child passed; a failure panics with its output) and `false`
/// in the child, which then runs the body:
///
/// ```ignore
/// if support::run_isolated("my_test") { return; }
/// ```
pub fn run_isolated(name: &str) -> bool {
    const CHILD: &str = "STRATA_ISOLATED_TEST";
    if std::env::var_os(CHILD).is_some() {
        return false;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "isolated {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// One live value of a test's counter: counted when made, uncounted when
/// dropped, so a test can tell how many of its values are still alive (each
/// test its own `static` counter, so parallel tests do not mix).
#[derive(Debug)]
pub struct Live(&'static std::sync::atomic::AtomicUsize);

impl Live {
    pub fn new(counter: &'static std::sync::atomic::AtomicUsize) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Live(counter)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
