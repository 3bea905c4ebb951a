//! `cargo xtask fuzz [TARGET] [--time SECS | --runs N] [--seed N] [--seeds-only]`: builds the
//! libFuzzer targets of every fuzz crate and runs them, printing per target how many inputs
//! ran, how fast, and whether it crashed.
//!
//! `cargo xtask test` runs the same code, but reproducibly: a fixed number of inputs from a
//! fixed random seed, starting from the committed seeds only, so CI gives the same verdict on
//! the same commit (a time limit would run a different number of inputs on every machine, and
//! a new finding would turn an unrelated change red). Finding new bugs is what the long runs
//! are for; a crash they find becomes a committed seed, which every CI run then replays.
//!
//! The targets are cargo-fuzz style (`libfuzzer-sys`), but built here on the stable toolchain:
//! libFuzzer needs only the coverage instrumentation cargo-fuzz passes through `RUSTFLAGS`
//! (no sanitizer, which would need nightly), in release mode with debug assertions and
//! overflow checks on. All crates share one target directory, `target/fuzz`, so a dependency
//! is built once. Each target starts from its seeds (`<crate>/seeds/<target>/`, kept in git)
//! and grows its corpus in `target/fuzz/corpus/<target>/`; a crashing input is written to
//! `target/fuzz/artifacts/<target>/`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::Result;

/// The fuzz crates, each its own workspace with `[[bin]]` targets.
const CRATES: [&str; 3] = ["mqtt/fuzz", "devices/fuzz", "gateway/fuzz"];

/// What cargo-fuzz passes to rustc (`src/project.rs`), minus the nightly-only sanitizer.
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    -Cllvm-args=-sanitizer-coverage-stack-depth \
    -Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
    --cfg fuzzing -Cdebug-assertions -Coverflow-checks";

/// How long each target runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// Wall-clock seconds (`-max_total_time`).
    Seconds(u64),
    /// Inputs executed (`-runs`).
    Runs(u64),
}

/// One target of one crate.
#[derive(Debug, Clone)]
struct Target {
    krate: &'static str,
    name: String,
}

/// The outcome of running one target.
#[derive(Debug)]
struct Report {
    name: String,
    executions: u64,
    rate: u64,
    seconds: f64,
    /// The crashing input, or the reason the run failed.
    failure: Option<String>,
}

/// `cargo xtask fuzz ARGS`.
pub(crate) fn command(root: &Path, args: &[String]) -> Result {
    let mut only = None;
    let mut limit = Limit::Seconds(60);
    let mut fresh_corpus = false;
    let mut seed = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| -> Result<u64> {
            let text = args.next().ok_or(format!("{flag} needs a number"))?;
            text.parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{flag} needs a positive number, not `{text}`"))
        };
        match arg.as_str() {
            "--time" => limit = Limit::Seconds(value("--time")?),
            "--runs" => limit = Limit::Runs(value("--runs")?),
            "--seed" => seed = Some(value("--seed")?),
            // CI: start from the seeds only, so the step's length does not grow with the corpus.
            "--seeds-only" => fresh_corpus = true,
            flag if flag.starts_with('-') => {
                return Err(format!(
                    "unknown flag `{flag}`: usage: cargo xtask fuzz [TARGET] [--time SECS | --runs N] [--seed N] [--seeds-only]"
                ));
            }
            name if only.is_none() => only = Some(name.to_owned()),
            extra => return Err(format!("one target at most, `{extra}` is a second")),
        }
    }
    run(
        root,
        only.as_deref(),
        Settings {
            limit,
            fresh_corpus,
            seed,
        },
    )
}

/// How each target runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) limit: Limit,
    /// Start from the committed seeds only (a fresh corpus), not the grown one.
    pub(crate) fresh_corpus: bool,
    /// libFuzzer's random seed (`-seed`); `None`: a new one each run.
    pub(crate) seed: Option<u64>,
}

/// Builds every fuzz crate, then runs each target (or only `only`) as `settings` say.
///
/// # Errors
/// When a build fails, a target is unknown, or any target crashed.
pub(crate) fn run(root: &Path, only: Option<&str>, settings: Settings) -> Result {
    let mut targets = Vec::new();
    for krate in CRATES {
        targets.extend(targets_of(root, krate)?);
    }
    if let Some(only) = only {
        targets.retain(|t| t.name == only);
        if targets.is_empty() {
            return Err(format!("no fuzz target `{only}` in {}", CRATES.join(", ")));
        }
    }
    let triple = host_triple()?;
    let out = root.join("target/fuzz");
    let mut built = Vec::new();
    for target in &targets {
        if !built.contains(&target.krate) {
            build(root, target.krate, &triple, &out)?;
            built.push(target.krate);
        }
    }
    let bin_dir = out.join(&triple).join("release");
    let mut reports = Vec::new();
    for target in &targets {
        let report = run_target(root, &bin_dir, &out, target, settings)?;
        println!(
            "[fuzz] {}: {} executions in {:.0} s ({} per second){}",
            report.name,
            report.executions,
            report.seconds,
            report.rate,
            report
                .failure
                .as_deref()
                .map(|f| format!(", CRASHED: {f}"))
                .unwrap_or_default()
        );
        reports.push(report);
    }
    println!("\n==> fuzz targets");
    println!(
        "  {:<18} {:>14} {:>10}  result",
        "target", "executions", "exec/s"
    );
    for r in &reports {
        println!(
            "  {:<18} {:>14} {:>10}  {}",
            r.name,
            r.executions,
            r.rate,
            if r.failure.is_some() { "CRASH" } else { "ok" }
        );
    }
    let crashed: Vec<&str> = reports
        .iter()
        .filter(|r| r.failure.is_some())
        .map(|r| r.name.as_str())
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzz targets crashed: {}", crashed.join(", ")))
    }
}

/// The `[[bin]]` names of a fuzz crate's manifest.
fn targets_of(root: &Path, krate: &'static str) -> Result<Vec<Target>> {
    let manifest = root.join(krate).join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    let mut in_bin = false;
    let mut targets = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin
            && let Some(name) = line
                .strip_prefix("name")
                .map(str::trim_start)
                .and_then(|l| l.strip_prefix('='))
        {
            targets.push(Target {
                krate,
                name: name.trim().trim_matches('"').to_owned(),
            });
        }
    }
    if targets.is_empty() {
        return Err(format!("{} declares no [[bin]] target", manifest.display()));
    }
    Ok(targets)
}

/// The host's target triple. Building with an explicit `--target` keeps `RUSTFLAGS` away from
/// build scripts and proc macros, as cargo-fuzz does.
fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| "rustc -vV names no host".to_owned())
}

fn build(root: &Path, krate: &str, triple: &str, out: &Path) -> Result {
    println!("[fuzz] building {krate}");
    let status = Command::new("cargo")
        .current_dir(root)
        .args(["build", "--release", "--manifest-path"])
        .arg(root.join(krate).join("Cargo.toml"))
        .args(["--target", triple, "--target-dir"])
        .arg(out)
        .args(["--config", "profile.release.debug=\"line-tables-only\""])
        .env("RUSTFLAGS", RUSTFLAGS)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("building the fuzz targets of {krate} failed"))
    }
}

fn run_target(
    root: &Path,
    bin_dir: &Path,
    out: &Path,
    target: &Target,
    settings: Settings,
) -> Result<Report> {
    let Settings {
        limit,
        fresh_corpus,
        seed,
    } = settings;
    let name = &target.name;
    let corpus = if fresh_corpus {
        out.join("ci-corpus").join(name)
    } else {
        out.join("corpus").join(name)
    };
    if fresh_corpus {
        let _ = std::fs::remove_dir_all(&corpus);
    }
    let artifacts = out.join("artifacts").join(name);
    for dir in [&corpus, &artifacts] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut command = Command::new(bin_dir.join(name));
    command
        .arg(match limit {
            Limit::Seconds(s) => format!("-max_total_time={s}"),
            Limit::Runs(n) => format!("-runs={n}"),
        })
        .args(seed.map(|s| format!("-seed={s}")))
        .arg("-print_final_stats=1")
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&corpus);
    let seeds = root.join(target.krate).join("seeds").join(name);
    if seeds.is_dir() {
        command.arg(&seeds);
    }
    let started = Instant::now();
    let output = command
        .output()
        .map_err(|e| format!("cannot run fuzz target {name}: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&output.stderr);
    let (executions, rate) = parse_stats(&log);
    // libFuzzer reports 0 per second for runs shorter than a second.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a rate of executions per second, rounded"
    )]
    let rate = if rate == 0 && seconds > 0.0 {
        (executions as f64 / seconds) as u64
    } else {
        rate
    };
    let failure = if output.status.success() {
        None
    } else {
        // Show what went wrong: the panic and libFuzzer's crash report.
        let report: Vec<&str> = log
            .lines()
            .skip_while(|l| !(l.contains("panicked at") || l.contains("ERROR: libFuzzer")))
            .take(40)
            .collect();
        println!("{}", report.join("\n"));
        Some(
            log.lines()
                .find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim()))
                .map_or_else(|| format!("exit status {}", output.status), str::to_owned),
        )
    };
    Ok(Report {
        name: name.clone(),
        executions,
        rate,
        seconds,
        failure,
    })
}

/// Executions and executions per second from libFuzzer's final statistics
/// (`stat::number_of_executed_units`, `stat::average_exec_per_sec`), else from its last
/// `#N ... exec/s: R` status line.
fn parse_stats(log: &str) -> (u64, u64) {
    let stat = |key: &str| {
        log.lines()
            .rev()
            .filter_map(|l| l.trim().strip_prefix(key))
            .find_map(|v| v.trim_start_matches(':').trim().parse::<u64>().ok())
    };
    let status = log
        .lines()
        .rev()
        .filter(|l| l.starts_with('#'))
        .find_map(|l| {
            let executions = l[1..].split_whitespace().next()?.parse::<u64>().ok()?;
            let rate = l
                .split("exec/s: ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|r| r.parse::<u64>().ok())
                .unwrap_or(0);
            Some((executions, rate))
        })
        .unwrap_or((0, 0));
    (
        stat("stat::number_of_executed_units").unwrap_or(status.0),
        stat("stat::average_exec_per_sec").unwrap_or(status.1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_stats_are_read() {
        let log = "#2\tINITED cov: 10 ft: 10 corp: 1/1b exec/s: 0 rss: 30Mb\n\
                   #381805\tDONE   cov: 1043 ft: 3841 corp: 827/67Kb exec/s: 42422 rss: 30Mb\n\
                   Done 381805 runs in 9 second(s)\n\
                   stat::number_of_executed_units: 381806\n\
                   stat::average_exec_per_sec:     42422\n\
                   stat::new_units_added:          826\n";
        assert_eq!(parse_stats(log), (381_806, 42_422));
    }

    #[test]
    fn status_lines_are_the_fallback() {
        let log = "#1024\tpulse  cov: 5 ft: 5 corp: 1/1b exec/s: 512 rss: 30Mb\n\
                   #4096\tNEW    cov: 6 ft: 6 corp: 2/2b lim: 4 exec/s: 2048 rss: 30Mb L: 1/1 MS: 1 ChangeBit-\n\
                   ==1619== ERROR: libFuzzer: deadly signal\n";
        assert_eq!(parse_stats(log), (4096, 2048));
        assert_eq!(parse_stats("no statistics at all"), (0, 0));
    }

    #[test]
    fn targets_are_read_from_the_manifests() {
        let root = crate::workspace_root();
        let names: Vec<String> = targets_of(&root, "mqtt/fuzz")
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["decode"]);
        let gateway = targets_of(&root, "gateway/fuzz").unwrap();
        assert!(
            gateway.iter().any(|t| t.name == "client_addr"),
            "{gateway:?}"
        );
    }
}
