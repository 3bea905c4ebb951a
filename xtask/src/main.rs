//! `cargo xtask`: Switchboard's build, demo and test automation.
//!
//! - `cargo xtask setup [--demo]`: installs what is missing (idempotent) and says what it does.
//! - `cargo xtask demo [ARGS]`: setup, `trunk build --release`, then `switchboard demo` serving it.
//! - `cargo xtask test`: every check CI runs, ending with the runners' summary lines.
//! - `cargo xtask fuzz [TARGET] [--time SECS | --runs N] [--seed N] [--seeds-only]`: builds and runs the fuzz targets.
//!
//! Everything the project needs on a fresh machine is installed from here, so the README's two
//! commands stay true.

mod fuzz;
mod runner;
mod setup;
mod test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let result = match args.first().map(String::as_str) {
        Some("setup") => {
            let scope = if args.iter().any(|a| a == "--demo") {
                setup::Scope::Demo
            } else {
                setup::Scope::Test
            };
            setup::run(&root, scope)
        }
        Some("demo") => demo(&root, &args[1..]),
        Some("test") => test::run(&root),
        Some("fuzz") => fuzz::command(&root, &args[1..]),
        Some("bench") => bench(&root, &args[1..]),
        Some("dist") => setup::run(&root, setup::Scope::Demo).and_then(|()| build_dist(&root)),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 setup [--demo]  install missing tools (all test tools, or only what the demo needs)\n  \
                 demo [ARGS]     build the dashboard and run `switchboard demo ARGS`\n  \
                 dist            build the dashboard into dist/ (trunk build --release)\n  \
                 bench [ARGS]    run `switchboard bench ARGS` from a release build (see BENCHMARKS.md)\n  \
                 fuzz [TARGET] [--time SECS | --runs N] [--seed N]\n                  \
                 build the fuzz targets and run each (60 s by default), reporting executions\n  \
                 test            run every check (formatting, lints, tests, browser tests, builds)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The error type of every xtask step: a message for a person.
pub(crate) type Result<T = ()> = std::result::Result<T, String>;

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// `trunk build --release` into `dist/`, then the JavaScript client package and its example
/// page into `dist/examples/` (the gateway serves them at `/examples/`).
fn build_dist(root: &Path) -> Result {
    runner::Step::new("trunk build --release", "trunk")
        .args(["build", "--release"])
        .current_dir(root)
        .env_path(setup::tool_path(root))
        .run_checked()?;
    runner::Step::new("build the JavaScript client package", "bash")
        .args(["client-wasm/build.sh"])
        .current_dir(root)
        .env_path(setup::tool_path(root))
        .run_checked()?;
    publish_examples(root)
}

/// Copies `client-wasm/examples/*` and the built `client-wasm/pkg/` into `dist/examples/`, and
/// the client files the embeddable widget loads into `dist/widget/` (trunk already copied
/// `embed.js`); prints the widget's transfer size.
pub(crate) fn publish_examples(root: &Path) -> Result {
    let dist = root.join("dist");
    let target = dist.join("examples");
    let pkg = root.join("client-wasm").join("pkg");
    copy_dir(&root.join("client-wasm").join("examples"), &target)?;
    copy_dir(&pkg, &target.join("pkg"))?;
    println!(
        "[dist] example page and client package copied to {}",
        target.display()
    );
    let widget = dist.join("widget");
    std::fs::create_dir_all(&widget)
        .map_err(|e| format!("cannot create {}: {e}", widget.display()))?;
    let mut total = gzip_size(&dist.join("embed.js"))?;
    for file in [
        "index.js",
        "switchboard_client.js",
        "switchboard_client_bg.wasm",
    ] {
        std::fs::copy(pkg.join(file), widget.join(file))
            .map_err(|e| format!("cannot copy {file} to {}: {e}", widget.display()))?;
        total += gzip_size(&widget.join(file))?;
    }
    println!(
        "[dist] embeddable widget (embed.js + wasm client), transfer size (gzip -9): {total} bytes ({:.1} KB; aim: 90 KB)",
        total as f64 / 1000.0
    );
    Ok(())
}

/// The gzip -9 size of a file.
fn gzip_size(path: &Path) -> Result<u64> {
    let out = std::process::Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run gzip: {e}"))?;
    if !out.status.success() {
        return Err(format!("gzip failed on {}", path.display()));
    }
    Ok(out.stdout.len() as u64)
}

fn copy_dir(from: &Path, to: &Path) -> Result {
    let err =
        |e: std::io::Error| format!("cannot copy {} to {}: {e}", from.display(), to.display());
    std::fs::create_dir_all(to).map_err(err)?;
    for entry in std::fs::read_dir(from).map_err(err)? {
        let entry = entry.map_err(err)?;
        let path = entry.path();
        if entry.file_type().map_err(err)?.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).map_err(err)?;
        }
    }
    Ok(())
}

/// `switchboard bench ARGS` from a release build (the load generator and the Mosquitto
/// comparison; Mosquitto comes from `cargo xtask setup`).
fn bench(root: &Path, args: &[String]) -> Result {
    setup::run(root, setup::Scope::Test)?;
    runner::Step::new("switchboard bench", "cargo")
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "switchboard",
            "--",
            "bench",
        ])
        .args(args)
        .current_dir(root)
        .run_checked()
}

fn demo(root: &Path, args: &[String]) -> Result {
    setup::run(root, setup::Scope::Demo)?;
    build_dist(root)?;
    println!("[demo] starting the gateway with simulated plugs (Ctrl-C to stop)");
    let mut gateway_args = vec![
        "run".to_owned(),
        "--release".to_owned(),
        "--quiet".to_owned(),
        "--package".to_owned(),
        "switchboard".to_owned(),
        "--".to_owned(),
        "demo".to_owned(),
        "--www".to_owned(),
        root.join("dist").display().to_string(),
    ];
    gateway_args.extend(args.iter().cloned());
    runner::Step::new("switchboard demo", "cargo")
        .args(gateway_args)
        .current_dir(root)
        .run_checked()
}
