//! Interop tests: the real `switchboard` binary against third-party clients, `mosquitto_pub` /
//! `mosquitto_sub` (Debian `mosquitto-clients`) and Eclipse Paho Python (`paho-mqtt`). A
//! missing tool fails the test with a pointer to `cargo xtask setup`: nothing is skipped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The gateway binary, serving on ephemeral ports; killed on drop.
#[derive(Debug)]
struct Gateway {
    _child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn gateway() -> Gateway {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "serve",
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("SWITCHBOARD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn switchboard");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = tokio::time::timeout(TIMEOUT, async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if let Some((_, addr)) = line.split_once("listening mqtt=") {
                return addr
                    .trim()
                    .parse::<SocketAddr>()
                    .expect("address in the log line");
            }
        }
        panic!("switchboard exited before listening");
    })
    .await
    .expect("switchboard listening in time");
    // Keep draining the log so the gateway never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Gateway {
        _child: child,
        addr,
        _dir: dir,
    }
}

/// Fails (does not skip) when an interop client is not installed.
fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    assert!(
        found,
        "`{tool}` is not installed: run `cargo xtask setup` to install the interop clients"
    );
}

fn port_args(addr: SocketAddr) -> [String; 4] {
    [
        "-h".into(),
        addr.ip().to_string(),
        "-p".into(),
        addr.port().to_string(),
    ]
}

/// A running `mosquitto_sub -d`, past its SUBACK.
#[derive(Debug)]
struct Sub {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Sub {
    async fn start(addr: SocketAddr, args: &[&str]) -> Self {
        Self::spawn(addr, args, true).await
    }

    /// Starts `mosquitto_sub`; waits for its SUBACK when `wait_suback`. Its stdout is a pipe,
    /// so `stdbuf -oL` makes it line buffered (the SUBACK debug line shows up at once).
    async fn spawn(addr: SocketAddr, args: &[&str], wait_suback: bool) -> Self {
        require("mosquitto_sub");
        require("stdbuf");
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(port_args(addr))
            .arg("-d")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mosquitto_sub");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        if !wait_suback {
            return Self { child, lines };
        }
        tokio::time::timeout(TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("read") {
                if line.contains("received SUBACK") {
                    return;
                }
            }
            panic!("mosquitto_sub exited before SUBACK");
        })
        .await
        .expect("SUBACK in time");
        Self { child, lines }
    }

    /// The next printed message (debug lines skipped).
    async fn message(&mut self) -> String {
        tokio::time::timeout(TIMEOUT, async {
            while let Some(line) = self.lines.next_line().await.expect("read") {
                if !line.starts_with("Client ") && !line.starts_with("Subscribed (") {
                    return line;
                }
            }
            panic!("mosquitto_sub exited before a message");
        })
        .await
        .expect("message in time")
    }
}

/// Runs a client to completion and asserts it succeeded.
async fn run_tool(tool: &str, addr: SocketAddr, args: &[&str]) {
    require(tool);
    let status = tokio::time::timeout(
        TIMEOUT,
        Command::new(tool)
            .args(port_args(addr))
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .status(),
    )
    .await
    .expect("tool finished in time")
    .expect("tool ran");
    assert!(status.success(), "{tool} {args:?} failed: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// mosquitto clients, 3.1.1 and 5.0: QoS 0, 1 and 2 round trips.
async fn mosquitto_qos_round_trips() {
    let gw = gateway().await;
    for version in ["mqttv311", "mqttv5"] {
        for qos in ["0", "1", "2"] {
            let topic = format!("rt/{version}/{qos}");
            let mut sub = Sub::start(
                gw.addr,
                &["-V", version, "-q", qos, "-t", &topic, "-F", "%t|%q|%p"],
            )
            .await;
            run_tool(
                "mosquitto_pub",
                gw.addr,
                &["-V", version, "-q", qos, "-t", &topic, "-m", "hello"],
            )
            .await;
            assert_eq!(sub.message().await, format!("{topic}|{qos}|hello"));
            drop(sub.child.start_kill());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// mosquitto clients: a retained message reaches a later subscriber with RETAIN set; an empty
/// retained message deletes it.
async fn mosquitto_retained() {
    let gw = gateway().await;
    run_tool(
        "mosquitto_pub",
        gw.addr,
        &["-t", "ret/a", "-m", "kept", "-r", "-q", "1"],
    )
    .await;
    let mut sub = Sub::start(gw.addr, &["-t", "ret/#", "-F", "%t|%r|%p"]).await;
    assert_eq!(sub.message().await, "ret/a|1|kept");
    run_tool("mosquitto_pub", gw.addr, &["-t", "ret/a", "-n", "-r"]).await;
    assert_eq!(
        sub.message().await,
        "ret/a|0|",
        "the deletion is forwarded live"
    );
    run_tool("mosquitto_pub", gw.addr, &["-t", "ret/b", "-m", "b", "-r"]).await;
    let mut later = Sub::start(gw.addr, &["-V", "mqttv5", "-t", "ret/#", "-F", "%t|%r|%p"]).await;
    assert_eq!(later.message().await, "ret/b|1|b", "ret/a was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// mosquitto clients, 3.1.1 and 5.0: a killed client's will is published.
async fn mosquitto_will() {
    let gw = gateway().await;
    for version in ["mqttv311", "mqttv5"] {
        let topic = format!("will/{version}");
        let mut watcher = Sub::start(gw.addr, &["-V", version, "-t", &topic, "-q", "1"]).await;
        let mut dying = Sub::start(
            gw.addr,
            &[
                "-V",
                version,
                "-t",
                "unused",
                "--will-topic",
                &topic,
                "--will-payload",
                "bye",
                "--will-qos",
                "1",
            ],
        )
        .await;
        dying.child.kill().await.expect("kill");
        assert_eq!(watcher.message().await, "bye");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// mosquitto clients, 3.1.1 (clean session 0) and 5.0 (session expiry): a QoS 1 message
/// published while the subscriber is away is delivered when it resumes its session.
async fn mosquitto_persistent_session() {
    let gw = gateway().await;
    for version in ["mqttv311", "mqttv5"] {
        let id = format!("persist-{version}");
        let topic = format!("ps/{version}");
        let mut args = vec!["-V", version, "-c", "-i", &id, "-q", "1", "-t", &topic];
        if version == "mqttv5" {
            args.extend(["-x", "300"]);
        }
        // -E: subscribe, then disconnect once the SUBACK arrived.
        run_tool("mosquitto_sub", gw.addr, &[&args[..], &["-E"]].concat()).await;
        run_tool(
            "mosquitto_pub",
            gw.addr,
            &["-V", version, "-q", "1", "-t", &topic, "-m", "queued"],
        )
        .await;
        // The queued message may arrive before the SUBACK of the renewed subscription.
        let mut sub = Sub::spawn(gw.addr, &[&args[..], &["-C", "1"]].concat(), false).await;
        assert_eq!(sub.message().await, "queued");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// mosquitto clients, 5.0: PUBLISH properties pass through the broker unchanged.
async fn mosquitto_v5_properties() {
    let gw = gateway().await;
    let mut sub = Sub::start(gw.addr, &["-V", "mqttv5", "-t", "props/#", "-F", "%j"]).await;
    run_tool(
        "mosquitto_pub",
        gw.addr,
        &[
            "-V",
            "mqttv5",
            "-t",
            "props/x",
            "-m",
            "hello",
            "-q",
            "1",
            "-D",
            "publish",
            "user-property",
            "room",
            "kitchen",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "response-topic",
            "props/reply",
            "-D",
            "publish",
            "correlation-data",
            "abc",
        ],
    )
    .await;
    let json = sub.message().await;
    for expected in [
        r#""user-properties":{"room":"kitchen"}"#,
        r#""content-type":"text/plain""#,
        r#""response-topic":"props/reply""#,
        r#""correlation-data":"abc""#,
        r#""payload":"hello""#,
    ] {
        assert!(json.contains(expected), "{expected} missing in {json}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// Eclipse Paho Python, 3.1.1 and 5.0: QoS 0/1/2, retained, persistent session, v5 properties
/// (see `tests/interop/paho_roundtrip.py`).
async fn paho_python() {
    require("python3");
    let check = Command::new("python3")
        .args(["-c", "import paho.mqtt"])
        .status()
        .await
        .expect("python3 runs");
    assert!(
        check.success(),
        "the Python package paho-mqtt is not installed: run `cargo xtask setup` (pip install paho-mqtt==2.1.0)"
    );
    let gw = gateway().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/paho_roundtrip.py");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new("python3")
            .arg(&script)
            .arg(gw.addr.ip().to_string())
            .arg(gw.addr.port().to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("paho script finished in time")
    .expect("paho script ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("OK"),
        "paho script failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
