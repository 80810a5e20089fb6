//! `cargo bench -p strata-bench [-- GROUP...]`: the same harness as the
//! `strata-bench` binary.
//!
//! `cargo bench` passes `--bench`; without it (e.g. `cargo test --benches`)
//! the target ignores its arguments and runs in smoke mode: every implementation a few operations, as
//! a quick correctness check that times and writes nothing.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--bench") {
        strata_bench::cli::main(args)
    } else {
        // Test mode: libtest-style arguments (filters, --nocapture) mean
        // nothing here; check every group.
        strata_bench::cli::main(["--smoke".to_string()])
    }
}
