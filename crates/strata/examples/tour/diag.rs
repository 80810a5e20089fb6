//! L0 — lock-order checking: an inversion provoked on one thread, with no
//! real deadlock, and reported with both acquisition sites and the graph.

use std::sync::{Arc, Mutex as StdMutex};

use strata::diag::{self, Handler, Violation, ViolationKind};
use strata::sync::Mutex;

use crate::section;

/// Runs this layer's sections.
pub fn run() {
    section("L0 diag: a lock-order inversion caught on its first run");
    if !diag::checking_enabled() {
        println!(
            "checking is compiled out of this build; run the tour as the README says \
             (--features strata/checked) to see the report"
        );
        return;
    }
    // Collect reports instead of panicking (the default in debug builds).
    let seen: Arc<StdMutex<Vec<Violation>>> = Arc::default();
    let sink = Arc::clone(&seen);
    diag::set_violation_handler(Handler::Callback(Arc::new(move |v| {
        sink.lock().unwrap().push(v.clone());
    })));

    let accounts = Mutex::named("tour.accounts", 100);
    let journal = Mutex::named("tour.journal", Vec::<String>::new());
    {
        // The usual order: accounts, then the journal.
        let balance = accounts.lock();
        journal.lock().push(format!("balance {}", *balance));
    }
    {
        // A later code path takes them the other way round. Run alone it
        // cannot hang, yet next to the first it can deadlock: reported now.
        let mut journal = journal.lock();
        let balance = accounts.lock();
        journal.push(format!("audit {}", *balance));
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), 1, "the inversion is reported exactly once");
    let report = &seen[0];
    assert_eq!(report.kind(), ViolationKind::LockOrder);
    assert_eq!(report.edges().len(), 2);
    let text = report.to_string();
    assert!(text.contains("tour.accounts") && text.contains("tour.journal"));
    assert!(text.contains("DEADLOCK"));
    println!("{text}");

    let dot = diag::lock_graph_dot();
    assert!(
        dot.contains("color=red"),
        "the violating edge is highlighted"
    );
    println!("the lock graph in Graphviz DOT (the violating edge in red):\n{dot}");

    let metrics = diag::metrics();
    let accounts = metrics
        .iter()
        .find(|m| m.class.name() == Some("tour.accounts"))
        .expect("the class has counters");
    assert_eq!(accounts.acquisitions, 2);
    assert_eq!(accounts.holders, 0);
    println!(
        "metrics: tour.accounts taken {} times, {} contended, {} holders now",
        accounts.acquisitions, accounts.contended, accounts.holders
    );
    // Later sections run under the default handler again.
    diag::set_violation_handler(Handler::default());
}
