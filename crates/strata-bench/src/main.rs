//! `cargo run --release -p strata-bench -- [GROUP...] [--quick]`: see the
//! library docs of `strata_bench` and `--help`.

fn main() -> std::process::ExitCode {
    strata_bench::cli::main(std::env::args().skip(1))
}
