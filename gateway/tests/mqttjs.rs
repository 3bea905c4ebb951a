//! MQTT.js (Node) against the real `switchboard` binary over WebSocket: starts the binary on
//! ephemeral ports, reads the HTTP address it logs, runs `node --test --test-force-exit
//! gateway/tests/node/` (force-exit: a failed test must not hang on an open client) with
//! `SWITCHBOARD_WS_URL`, and then stops the gateway with SIGTERM (which must end it cleanly, open
//! WebSockets included).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

/// Kills the gateway if the test panics before stopping it.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn mqttjs_over_websocket() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        node_ok && workspace.join("node_modules/mqtt/package.json").is_file(),
        "Node.js or node_modules/mqtt is missing: run `cargo xtask setup`"
    );

    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "serve",
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .env("SWITCHBOARD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the switchboard binary");
    let stderr = child.stderr.take().unwrap();
    let mut running = Running(Some(child));

    // Read the log on a thread (it must keep draining the pipe); the address comes back first.
    let (tx, rx) = mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some((_, rest)) = line.split_once("listening http=") {
                let addr = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(addr);
            }
            lines.push(line);
        }
        lines
    });
    let http = rx
        .recv_timeout(TIMEOUT)
        .expect("the gateway logs `listening http=ADDR`");

    let output = Command::new("node")
        .args(["--test", "--test-force-exit", "gateway/tests/node/"])
        .current_dir(&workspace)
        .env("SWITCHBOARD_WS_URL", format!("ws://{http}/mqtt"))
        .output()
        .expect("run node --test");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "MQTT.js tests failed:\n{report}");
    assert!(report.contains("# fail 0"), "{report}");

    // Graceful stop: SIGTERM, then the process must exit 0 on its own.
    let mut child = running.0.take().unwrap();
    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let (done_tx, done_rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = done_tx.send(());
        status
    });
    if done_rx.recv_timeout(TIMEOUT).is_err() {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("the gateway did not stop within {TIMEOUT:?} of SIGTERM");
    }
    let status = waiter.join().unwrap().unwrap();
    let lines = log.join().unwrap();
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        lines.join("\n")
    );
}
