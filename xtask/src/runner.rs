//! Runs child processes for xtask: streams their output live while reading the test runners'
//! summary lines, so `cargo xtask test` can end with one total.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Test counts read from runner output.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) passed: u64,
    pub(crate) failed: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
}

/// One command to run.
#[derive(Debug)]
pub(crate) struct Step {
    name: String,
    command: Command,
}

/// The outcome of a finished step.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) success: bool,
    pub(crate) counts: Counts,
    pub(crate) elapsed: Duration,
}

impl Step {
    pub(crate) fn new(name: &str, program: &str) -> Self {
        Self {
            name: name.to_owned(),
            command: Command::new(program),
        }
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    pub(crate) fn current_dir(mut self, dir: &Path) -> Self {
        self.command.current_dir(dir);
        self
    }

    pub(crate) fn env(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.command.env(key, value.into());
        self
    }

    /// Sets PATH to the given directories followed by the inherited PATH.
    pub(crate) fn env_path(mut self, first: Vec<PathBuf>) -> Self {
        let mut dirs = first;
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        if let Ok(joined) = std::env::join_paths(dirs) {
            self.command.env("PATH", joined);
        }
        self
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Runs the step, echoing its output, and returns what happened.
    pub(crate) fn run(mut self) -> Outcome {
        println!("\n==> {}", self.name);
        let started = Instant::now();
        self.command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = match self.command.spawn() {
            Ok(child) => child,
            Err(err) => {
                println!("xtask: cannot start `{}`: {err}", self.name);
                return Outcome {
                    success: false,
                    counts: Counts::default(),
                    elapsed: started.elapsed(),
                };
            }
        };
        // Both pipes feed one transcript; each line is echoed as it arrives.
        let transcript = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let pipes: Vec<Box<dyn std::io::Read + Send>> = vec![
            Box::new(child.stdout.take().expect("piped stdout")),
            Box::new(child.stderr.take().expect("piped stderr")),
        ];
        for (index, pipe) in pipes.into_iter().enumerate() {
            let transcript = Arc::clone(&transcript);
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(std::io::Result::ok) {
                    if index == 0 {
                        println!("{line}");
                    } else {
                        eprintln!("{line}");
                    }
                    let mut text = transcript.lock().expect("transcript lock");
                    text.push_str(&line);
                    text.push('\n');
                }
            }));
        }
        let status = child.wait();
        for reader in readers {
            let _ = reader.join();
        }
        let output = std::mem::take(&mut *transcript.lock().expect("transcript lock"));
        let success = status.map(|s| s.success()).unwrap_or(false);
        Outcome {
            success,
            counts: parse_counts(&output),
            elapsed: started.elapsed(),
        }
    }

    /// Runs the step and turns a failure into an error.
    pub(crate) fn run_checked(self) -> crate::Result {
        let name = self.name.clone();
        if self.run().success {
            Ok(())
        } else {
            Err(format!("`{name}` failed"))
        }
    }
}

/// Reads the summary lines of cargo test, nextest, wasm-bindgen-test, node's test runner and
/// Python's unittest from a transcript.
pub(crate) fn parse_counts(output: &str) -> Counts {
    let mut counts = Counts::default();
    for line in output.lines() {
        let line = line.trim();
        // cargo test / wasm-bindgen-test-runner: "test result: ok. 5 passed; 0 failed; ..."
        if let Some(rest) = line.strip_prefix("test result: ") {
            counts.passed += number_before(rest, " passed");
            counts.failed += number_before(rest, " failed");
        }
        // nextest: "Summary [   1.234s] 12 tests run: 12 passed, 0 skipped" (failures: "N failed")
        else if line.starts_with("Summary [") && line.contains(" tests run: ")
            || line.starts_with("Summary [") && line.contains(" test run: ")
        {
            counts.passed += number_before(line, " passed");
            counts.failed += number_before(line, " failed");
        }
        // node --test (TAP): "# pass 5" / "# fail 0"
        else if let Some(n) = line.strip_prefix("# pass ") {
            counts.passed += n.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(n) = line
            .strip_prefix("# fail ")
            .or_else(|| line.strip_prefix("# cancelled "))
        {
            counts.failed += n.trim().parse::<u64>().unwrap_or(0);
        }
    }
    counts
}

/// The integer right before `marker` in `text` (0 when absent).
fn number_before(text: &str, marker: &str) -> u64 {
    let Some(end) = text.find(marker) else {
        return 0;
    };
    let digits: String = text[..end]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_runner_format() {
        let text = "test result: ok. 5 passed; 1 failed; 0 ignored\n\
                    \x20    Summary [   1.234s] 12 tests run: 11 passed, 1 failed, 0 skipped\n\
                    # pass 3\n# fail 0\n";
        let counts = parse_counts(text);
        assert_eq!(counts.passed, 19);
        assert_eq!(counts.failed, 2);
    }

    #[test]
    fn absent_numbers_are_zero() {
        assert_eq!(number_before("nothing here", " passed"), 0);
    }
}
