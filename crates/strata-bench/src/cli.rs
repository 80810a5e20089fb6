//! The command line shared by the `strata-bench` binary and the `all` bench
//! target.

use std::process::ExitCode;
use std::time::Instant;

use crate::groups;
use crate::harness::Config;
use crate::report;

const USAGE: &str = "\
usage: strata-bench [GROUP...] [--quick] [--smoke] [--list]

Runs the named benchmark groups (none: all groups), strata and its peers
interleaved in one process, and writes target/strata-bench/GROUP.csv,
GROUP.svg and report.md.

  --quick   fewer, shorter samples: a group stays well under 60 s
  --smoke   run every implementation a few operations once (a correctness
            check); times nothing, writes nothing
  --list    list groups and their cases
  -h, --help";

/// Parsed command line.
#[derive(Debug, Default, PartialEq)]
pub struct Args {
    /// Groups to run, in the order given; empty means all.
    pub groups: Vec<String>,
    /// `--quick`.
    pub quick: bool,
    /// `--smoke`.
    pub smoke: bool,
    /// `--list`.
    pub list: bool,
    /// `-h` / `--help`.
    pub help: bool,
}

/// Parses arguments (without the program name). `--bench`, which
/// `cargo bench` passes to harness-less bench targets, is accepted and
/// ignored. Unknown flags and unknown group names are errors.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut out = Args::default();
    for a in args {
        match a.as_str() {
            "--quick" => out.quick = true,
            "--smoke" => out.smoke = true,
            "--list" => out.list = true,
            "-h" | "--help" => out.help = true,
            "--bench" => {}
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            name => {
                if groups::find(name).is_none() {
                    return Err(format!(
                        "unknown group `{name}`; valid groups: {}",
                        groups::names().join(", ")
                    ));
                }
                if !out.groups.iter().any(|g| g == name) {
                    out.groups.push(name.to_string());
                }
            }
        }
    }
    Ok(out)
}

/// Runs the command line; returns the process exit code (2 for usage
/// errors, 1 for I/O errors writing results).
pub fn main(args: impl IntoIterator<Item = String>) -> ExitCode {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("strata-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let selected: Vec<&str> = if args.groups.is_empty() {
        groups::names()
    } else {
        args.groups.iter().map(String::as_str).collect()
    };
    if args.list {
        for name in selected {
            let g = groups::find(name).expect("validated")();
            println!("{name}: {}", g.case_names().join(", "));
        }
        return ExitCode::SUCCESS;
    }
    let cfg = if args.smoke {
        Config::smoke()
    } else if args.quick {
        Config::quick()
    } else {
        Config::full()
    };
    match run(&selected, &cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-bench: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs `groups` (valid names) with `cfg`, printing tables and writing
/// results (unless smoke mode).
pub fn run(names: &[&str], cfg: &Config) -> std::io::Result<()> {
    let dir = report::out_dir();
    for &name in names {
        let build = groups::find(name)
            .unwrap_or_else(|| panic!("unknown group {name}; valid: {:?}", groups::names()));
        let group = build();
        assert_eq!(group.name(), name, "group registered under another name");
        let t0 = Instant::now();
        if cfg.smoke {
            let results = group.run(cfg, |_| {});
            println!("smoke {name}: {} impl runs ok", results.len());
            continue;
        }
        println!("{}", report::table_header(name, cfg.samples));
        let results = group.run(cfg, |case| print!("{}", report::table_rows(case)));
        let csv = report::write_csv(&dir, name, &results)?;
        println!(
            "-- {name} took {:.1} s; wrote {}",
            t0.elapsed().as_secs_f64(),
            csv.display()
        );
    }
    if !cfg.smoke {
        let md = report::regenerate_report(&dir, &groups::names())?;
        println!("report: {}", md.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_groups_and_flags() {
        let a = parse(s(&["locks", "--quick", "async-locks", "locks", "--bench"])).unwrap();
        assert_eq!(a.groups, ["locks", "async-locks"]);
        assert!(a.quick && !a.smoke);
    }

    #[test]
    fn unknown_group_lists_valid_ones() {
        let e = parse(s(&["lockz"])).unwrap_err();
        assert!(
            e.contains("lockz") && e.contains("locks") && e.contains("async-locks"),
            "{e}"
        );
        assert_eq!(main(s(&["lockz"])), ExitCode::from(2));
        assert!(parse(s(&["--fast"])).is_err());
    }
}
