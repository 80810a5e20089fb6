// A blocking `MutexGuard` held across `.await` makes the future `!Send`, so
// it cannot be spawned on a multi-threaded runtime.

fn spawn<F: std::future::Future + Send>(_: F) {}

fn main() {
    let m = strata::sync::Mutex::new(0);
    spawn(async {
        let guard = m.lock();
        std::future::ready(()).await;
        drop(guard);
    });
}
