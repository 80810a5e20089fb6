//! A tour of strata, layer by layer. Run it with
//!
//! ```text
//! cargo run --release --example tour --features strata/checked
//! ```
//!
//! (Without the feature it runs too; the lock-order section then only says
//! that checking is compiled out.)
//!
//! Each section exercises one layer and prints what it shows; every claim it
//! prints is checked by an assertion first, so the tour doubles as a smoke
//! test of a fresh build. One file per layer, run bottom-up.

mod diag;
mod runtime;
mod snapshot;
mod stm;
mod storage;
mod sync;

fn main() {
    // When the tour runs itself as the second process of the storage
    // section, it does only that.
    storage::serve_child_if_requested();
    println!(
        "strata tour — lock-order checking compiled in: {}",
        strata::diag::checking_enabled()
    );
    diag::run();
    sync::run();
    stm::run();
    storage::run();
    snapshot::run();
    runtime::run();
    println!("\ntour finished: every layer built so far ran and checked its claims");
}

/// Prints a section heading.
fn section(title: &str) {
    println!("\n== {title}");
}
