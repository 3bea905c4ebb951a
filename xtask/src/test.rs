//! `cargo xtask test`: every check, in the order a failure is cheapest to see.
//!
//! Every step runs even when an earlier one failed, so one run shows everything that is wrong;
//! the command fails if any step failed. It ends with a table of steps and one total of the
//! tests the runners reported.

use std::path::Path;
use std::time::Duration;

use crate::Result;
use crate::runner::{Counts, Step};
use crate::setup::{self, Scope};

/// The crates that build for the browser.
const WASM_CRATES: [&str; 4] = [
    "switchboard-mqtt",
    "switchboard-devices",
    "switchboard-client",
    "switchboard-www",
];

/// Inputs each fuzz target runs in `cargo xtask test`: a few seconds for the slowest target.
const CI_FUZZ_RUNS: u64 = 20_000;

/// libFuzzer's random seed in `cargo xtask test`: fixed, so CI's verdict is reproducible.
const CI_FUZZ_SEED: u64 = 1;

pub(crate) fn run(root: &Path) -> Result {
    setup::run(root, Scope::Test)?;
    let path = setup::tool_path(root);
    let wasm = "wasm32-unknown-unknown";

    let mut steps = vec![
        Step::new("cargo fmt --check", "cargo").args(["fmt", "--all", "--", "--check"]),
        Step::new("clippy (host)", "cargo").args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
        Step::new("clippy (wasm32)", "cargo")
            .args(["clippy", "--target", wasm])
            .args(WASM_CRATES.iter().flat_map(|c| ["-p", c]))
            .args(["--", "-D", "warnings"]),
        Step::new("build switchboard-mqtt for wasm32", "cargo").args([
            "build",
            "-p",
            "switchboard-mqtt",
            "--target",
            wasm,
        ]),
    ];
    // Every fuzz target, built with coverage instrumentation on stable and run from its
    // committed seeds for a fixed number of inputs from a fixed random seed, so the verdict is
    // the same on every run of a commit (`cargo xtask fuzz`, run by this same binary); a crash
    // fails the step. Longer, exploring runs are `cargo xtask fuzz` by hand.
    let xtask = std::env::current_exe().map_err(|e| format!("cannot find xtask itself: {e}"))?;
    steps.push(
        Step::new(
            &format!("fuzz targets ({CI_FUZZ_RUNS} inputs each, seed {CI_FUZZ_SEED})"),
            &xtask.to_string_lossy(),
        )
        .args([
            "fuzz",
            "--runs",
            &CI_FUZZ_RUNS.to_string(),
            "--seed",
            &CI_FUZZ_SEED.to_string(),
            "--seeds-only",
        ]),
    );
    steps.push(Step::new("tests (nextest)", "cargo").args([
        "nextest",
        "run",
        "--workspace",
        "--no-fail-fast",
    ]));
    steps.push(Step::new("doc tests", "cargo").args(["test", "--workspace", "--doc"]));
    for (package, test) in wasm_test_targets(root) {
        steps.push(
            Step::new(
                &format!("wasm tests in headless Chromium ({package})"),
                "cargo",
            )
            .args(["test", "--target", wasm, "-p", &package, "--test", &test])
            .env("CHROMEDRIVER", "/usr/bin/chromedriver")
            .env(
                "WASM_BINDGEN_TEST_WEBDRIVER_JSON",
                root.join("webdriver.json"),
            )
            .env("WASM_BINDGEN_TEST_TIMEOUT", "120"),
        );
    }
    steps.push(Step::new("trunk build --release", "trunk").args(["build", "--release"]));
    if root.join("client-wasm/build.sh").exists() {
        steps.push(
            Step::new("build the JavaScript client package", "bash").args(["client-wasm/build.sh"]),
        );
    }
    let e2e: Vec<String> = ["client-wasm/tests/e2e", "www/tests/e2e"]
        .into_iter()
        .filter(|dir| root.join(dir).is_dir())
        .map(str::to_owned)
        .collect();
    if !e2e.is_empty() {
        steps.push(Step::new("build the gateway", "cargo").args(["build", "-p", "switchboard"]));
        steps.push(
            Step::new("end-to-end tests in headless Chromium", "node")
                .arg("--test")
                .args(&e2e)
                .env("SWITCHBOARD_BIN", root.join("target/debug/switchboard"))
                .env("SWITCHBOARD_DIST", root.join("dist")),
        );
    }

    let mut results = Vec::new();
    let mut total = Counts::default();
    for step in steps {
        let step = step.current_dir(root).env_path(path.clone());
        let name = step.name().to_owned();
        let outcome = step.run();
        total.add(outcome.counts);
        if outcome.success && name.starts_with("trunk build") {
            print_dist_sizes(root);
        }
        let mut success = outcome.success;
        if success
            && name.starts_with("build the JavaScript client")
            && let Err(err) = crate::publish_examples(root)
        {
            println!("xtask: {err}");
            success = false;
        }
        results.push((name, success, outcome.elapsed));
    }

    println!("\n==> summary");
    for (name, success, elapsed) in &results {
        let mark = if *success { "ok  " } else { "FAIL" };
        println!("  {mark} {name} ({})", seconds(*elapsed));
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, success, _)| !success)
        .map(|(name, _, _)| name.as_str())
        .collect();
    println!(
        "steps: {} passed, {} failed",
        results.len() - failed.len(),
        failed.len()
    );
    println!("tests: {} passed, {} failed", total.passed, total.failed);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed steps: {}", failed.join(", ")))
    }
}

/// `(package, test target)` for every `tests/wasm*.rs` of the browser crates.
fn wasm_test_targets(root: &Path) -> Vec<(String, String)> {
    let dirs = [
        ("switchboard-mqtt", "mqtt"),
        ("switchboard-devices", "devices"),
        ("switchboard-client", "client-wasm"),
        ("switchboard-www", "www"),
    ];
    let mut targets = Vec::new();
    for (package, dir) in dirs {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join("tests")) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("wasm") && n.ends_with(".rs"))
            .map(|n| n.trim_end_matches(".rs").to_owned())
            .collect();
        names.sort();
        targets.extend(names.into_iter().map(|n| (package.to_owned(), n)));
    }
    targets
}

/// Prints the dashboard's transfer size: each file the page loads from dist/, gzipped at level 9.
fn print_dist_sizes(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root.join("dist")) else {
        return;
    };
    let mut total = 0u64;
    let mut parts = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        if !matches!(ext, "wasm" | "js" | "css" | "html") {
            continue;
        }
        // The service worker and the embeddable widget are not part of the page's download.
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if matches!(name, "sw.js" | "embed.js") {
            continue;
        }
        let Ok(output) = std::process::Command::new("gzip")
            .args(["-9", "-c"])
            .arg(&path)
            .output()
        else {
            continue;
        };
        let size = output.stdout.len() as u64;
        total += size;
        parts.push(format!("{ext} {size} B"));
    }
    parts.sort();
    println!(
        "dashboard transfer size (gzip -9): {} = {total} B",
        parts.join(" + ")
    );
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.1}s", elapsed.as_secs_f64())
}
