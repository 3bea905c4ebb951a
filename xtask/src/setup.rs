//! `cargo xtask setup`: installs what the project needs, only what is missing, and says so.
//!
//! Every check is a command that prints a version; every install is the registry's ordinary
//! client (rustup, cargo install, npm ci, apt-get, pip). Running it twice installs nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;
use crate::runner::Step;

/// The trunk release this project builds with (0.22 needs a newer rustc).
pub(crate) const TRUNK_VERSION: &str = "0.21.14";
/// The paho-mqtt release the Python interop tests use.
pub(crate) const PAHO_VERSION: &str = "2.1.0";

/// How much to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// What `cargo xtask demo` needs: the wasm target, trunk, wasm-bindgen, wasm-opt.
    Demo,
    /// Everything `cargo xtask test` needs on top: nextest, Debian packages, Python packages.
    Test,
}

/// Directories to put first on PATH for the tools installed here.
pub(crate) fn tool_path(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.join("node_modules").join(".bin")];
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    } else if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo").join("bin"));
    }
    dirs
}

pub(crate) fn run(root: &Path, scope: Scope) -> Result {
    println!("[setup] checking tools ({scope:?} scope)");
    let path = tool_path(root);
    wasm_target()?;
    rust_components()?;
    cargo_tool(
        &path,
        "trunk",
        &["--version"],
        &format!("trunk {TRUNK_VERSION}"),
        &["install", "trunk", "--version", TRUNK_VERSION, "--locked"],
        "about 12 minutes on 2 cores",
    )?;
    let bindgen = wasm_bindgen_version(root)?;
    // wasm-bindgen-cli's own lock names a crate version the registry may not serve: no --locked.
    cargo_tool(
        &path,
        "wasm-bindgen",
        &["--version"],
        &format!("wasm-bindgen {bindgen}"),
        &["install", "wasm-bindgen-cli", "--version", &bindgen],
        "about 3 minutes",
    )?;
    node_packages(root)?;
    if scope == Scope::Test {
        cargo_tool(
            &path,
            "cargo-nextest",
            &["nextest", "--version"],
            "cargo-nextest",
            &["install", "cargo-nextest", "--locked"],
            "about 4 minutes",
        )?;
        debian_packages()?;
        python_packages()?;
    }
    println!("[setup] all tools present");
    Ok(())
}

fn output_of(program: &str, args: &[&str], path: &[PathBuf]) -> Option<String> {
    let mut command = Command::new(program);
    command.args(args);
    let mut dirs = path.to_vec();
    if let Some(inherited) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&inherited));
    }
    if let Ok(joined) = std::env::join_paths(dirs) {
        command.env("PATH", joined);
    }
    let output = command.output().ok()?;
    output.status.success().then(|| {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        text
    })
}

fn wasm_target() -> Result {
    let installed =
        output_of("rustup", &["target", "list", "--installed"], &[]).unwrap_or_default();
    if installed
        .lines()
        .any(|l| l.trim() == "wasm32-unknown-unknown")
    {
        println!("[setup] rust target wasm32-unknown-unknown: present");
        return Ok(());
    }
    println!("[setup] rust target wasm32-unknown-unknown: installing (rustup)");
    Step::new("rustup target add wasm32-unknown-unknown", "rustup")
        .args(["target", "add", "wasm32-unknown-unknown"])
        .run_checked()
}

fn rust_components() -> Result {
    let fmt = output_of("cargo", &["fmt", "--version"], &[]).is_some();
    let clippy = output_of("cargo", &["clippy", "--version"], &[]).is_some();
    if fmt && clippy {
        println!("[setup] rustfmt and clippy: present");
        return Ok(());
    }
    println!("[setup] rustfmt and clippy: installing (rustup)");
    Step::new("rustup component add rustfmt clippy", "rustup")
        .args(["component", "add", "rustfmt", "clippy"])
        .run_checked()
}

/// Installs a cargo tool unless `program args` prints `expect`.
fn cargo_tool(
    path: &[PathBuf],
    program: &str,
    args: &[&str],
    expect: &str,
    install: &[&str],
    how_long: &str,
) -> Result {
    let program_name = if program == "cargo-nextest" {
        "cargo"
    } else {
        program
    };
    if let Some(version) = output_of(program_name, args, path) {
        if version.contains(expect) {
            println!("[setup] {expect}: present");
            return Ok(());
        }
        println!(
            "[setup] {program}: found `{}`, need `{expect}`",
            version.lines().next().unwrap_or_default().trim()
        );
    }
    println!("[setup] {expect}: installing with cargo ({how_long})");
    Step::new(&format!("cargo {}", install.join(" ")), "cargo")
        .args(install)
        .run_checked()
}

/// The `wasm-bindgen` version Cargo.lock pins: wasm-bindgen-cli must match it exactly.
fn wasm_bindgen_version(root: &Path) -> Result<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock"))
        .map_err(|err| format!("cannot read Cargo.lock: {err}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\""
            && let Some(version) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
        {
            return Ok(version.to_owned());
        }
    }
    Err("Cargo.lock names no wasm-bindgen version".to_owned())
}

fn node_packages(root: &Path) -> Result {
    if output_of("npm", &["--version"], &[]).is_none() {
        apt_install(&["nodejs", "npm"])?;
    }
    let lock = root.join("package-lock.json");
    let installed = root.join("node_modules").join(".package-lock.json");
    let fresh = match (std::fs::metadata(&lock), std::fs::metadata(&installed)) {
        (Ok(lock), Ok(installed)) => match (lock.modified(), installed.modified()) {
            (Ok(lock), Ok(installed)) => installed >= lock,
            _ => false,
        },
        _ => false,
    };
    if fresh && root.join("node_modules/.bin/wasm-opt").exists() {
        println!("[setup] node packages (binaryen, mqtt, playwright-core): present");
        return Ok(());
    }
    println!("[setup] node packages (binaryen, mqtt, playwright-core): installing (npm ci)");
    Step::new("npm ci", "npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(root)
        .run_checked()
}

/// Debian packages the tests use: a reference broker and its clients, a headless browser, and
/// a reverse proxy.
fn debian_packages() -> Result {
    let wanted = [
        ("mosquitto", "/usr/sbin/mosquitto"),
        ("mosquitto-clients", "/usr/bin/mosquitto_sub"),
        ("chromium", "/usr/bin/chromium"),
        ("chromium-driver", "/usr/bin/chromedriver"),
        ("nginx-light", "/usr/sbin/nginx"),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        println!(
            "[setup] Debian packages (mosquitto, mosquitto-clients, chromium, chromium-driver, nginx-light): present"
        );
        return Ok(());
    }
    apt_install(&missing)
}

fn apt_install(packages: &[&str]) -> Result {
    println!(
        "[setup] Debian packages {}: installing (apt-get)",
        packages.join(", ")
    );
    let is_root = output_of("id", &["-u"], &[]).is_some_and(|id| id.trim() == "0");
    let (program, prefix): (&str, Vec<&str>) = if is_root {
        ("apt-get", vec![])
    } else if output_of("sudo", &["-n", "true"], &[]).is_some() {
        ("sudo", vec!["apt-get"])
    } else {
        return Err(format!(
            "Debian packages {} are missing and this user cannot install them: run `sudo apt-get install {}`",
            packages.join(", "),
            packages.join(" ")
        ));
    };
    let mut update = prefix.clone();
    update.extend(["update", "-q"]);
    Step::new("apt-get update", program)
        .args(&update)
        .run_checked()?;
    let mut install = prefix;
    install.extend(["install", "-y", "-q", "--no-install-recommends"]);
    install.extend(packages);
    Step::new("apt-get install", program)
        .args(&install)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run_checked()
}

fn python_packages() -> Result {
    let check = ["-c", "import paho.mqtt; print(paho.mqtt.__version__)"];
    if output_of("python3", &check, &[]).is_some_and(|v| v.trim() == PAHO_VERSION) {
        println!("[setup] python paho-mqtt {PAHO_VERSION}: present");
        return Ok(());
    }
    println!("[setup] python paho-mqtt {PAHO_VERSION}: installing (pip)");
    Step::new("pip install paho-mqtt", "python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("paho-mqtt=={PAHO_VERSION}"),
        ])
        .run_checked()
}
