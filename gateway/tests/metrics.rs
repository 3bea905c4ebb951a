//! Observability and operations: `/metrics` (format, values moving with traffic, agreeing with
//! `$SYS`), WebSocket counters, JSON logs from the real binary, and graceful shutdown within
//! `[broker] shutdown_timeout`.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Client, TIMEOUT, V3_1_1, V5, harness, text};
use switchboard::config::Config;
use switchboard_mqtt::{QoS, ReasonCode};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

async fn http_get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // A 101 keeps the connection open: read what the head needs.
    let _ = tokio::time::timeout(Duration::from_millis(500), stream.read_to_end(&mut raw)).await;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw[9..12].parse().unwrap();
    (status, raw)
}

/// Parses the exposition: `name{labels}` to value; checks every line's shape on the way.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let family = series.split('{').next().unwrap();
        let base = family
            .strip_suffix("_bucket")
            .or_else(|| family.strip_suffix("_sum"))
            .or_else(|| family.strip_suffix("_count"))
            .filter(|b| typed.contains(*b))
            .unwrap_or(family);
        assert!(typed.contains(base), "{family} has a TYPE line");
        out.insert(series.to_owned(), value.parse().unwrap());
    }
    out
}

async fn start(
    sys_interval: u64,
) -> (SocketAddr, SocketAddr, CancellationToken, tempfile::TempDir) {
    start_with(sys_interval, |_| {}).await
}

async fn start_with(
    sys_interval: u64,
    tweak: impl FnOnce(&mut Config),
) -> (SocketAddr, SocketAddr, CancellationToken, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = harness::loopback(dir.path());
    config.broker.sys_interval = sys_interval;
    tweak(&mut config);
    // The tests stop it by cancelling the token.
    let running = harness::Running::start(config, switchboard::RunOptions::default()).await;
    let bound = &running.bound;
    (bound.mqtt[0], bound.http[0], running.shutdown.clone(), dir)
}

/// `[api] metrics_auth = true` puts `/metrics` behind the API key; by default it needs none.
#[tokio::test]
async fn metrics_can_require_the_api_key() {
    let key = "sb_test_metrics_key";
    let keys = vec![switchboard::api::KeyHash::of(key)];
    let guarded = keys.clone();
    let (_, http, shutdown, _dir) = start_with(0, move |c| {
        c.api.keys = guarded;
        c.api.metrics_auth = true;
    })
    .await;
    let (status, _) = http_get(http, "/metrics", "").await;
    assert_eq!(status, 401);
    let (status, _) = http_get(http, "/metrics", "Authorization: Bearer wrong\r\n").await;
    assert_eq!(status, 401);
    let (status, body) = http_get(
        http,
        "/metrics",
        &format!("Authorization: Bearer {key}\r\n"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("switchboard_api_auth_failures_total"),
        "{body}"
    );
    shutdown.cancel();

    let (_, http, shutdown, _dir) = start_with(0, move |c| c.api.keys = keys).await;
    let (status, _) = http_get(http, "/metrics", "").await;
    assert_eq!(status, 200);
    shutdown.cancel();
}

#[tokio::test]
async fn metrics_move_with_traffic_and_agree_with_sys() {
    let (mqtt, http, shutdown, _dir) = start(1).await;
    let (status, before) = http_get(http, "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(
        before.contains("content-type: text/plain; version=0.0.4"),
        "{before}"
    );
    let body = |raw: &str| raw.split_once("\r\n\r\n").unwrap().1.to_owned();
    let m0 = parse(&body(&before));
    assert_eq!(m0["switchboard_messages_received_total{qos=\"0\"}"], 0.0);

    let mut sub = Client::connect(mqtt, V5, "m-sub").await;
    sub.subscribe("m/#", QoS::AtLeastOnce).await;
    let mut publisher = Client::connect(mqtt, V5, "m-pub").await;
    for _ in 0..3 {
        publisher.publish("m/a", "x", QoS::AtMostOnce, false).await;
    }
    for _ in 0..2 {
        publisher.publish("m/b", "y", QoS::AtLeastOnce, false).await;
    }
    publisher
        .publish("m/r", "kept", QoS::AtLeastOnce, true)
        .await;
    for _ in 0..6 {
        sub.recv_and_ack().await;
    }
    let (_, after) = http_get(http, "/metrics", "").await;
    let m = parse(&body(&after));
    assert_eq!(m["switchboard_messages_received_total{qos=\"0\"}"], 3.0);
    assert_eq!(m["switchboard_messages_received_total{qos=\"1\"}"], 3.0);
    assert_eq!(m["switchboard_messages_received_total{qos=\"2\"}"], 0.0);
    assert_eq!(m["switchboard_messages_sent_total{qos=\"0\"}"], 3.0);
    assert_eq!(m["switchboard_messages_sent_total{qos=\"1\"}"], 3.0);
    assert_eq!(m["switchboard_connections{transport=\"tcp\"}"], 2.0);
    assert_eq!(m["switchboard_connections{transport=\"ws\"}"], 0.0);
    assert_eq!(m["switchboard_clients_connected"], 2.0);
    assert!(m["switchboard_retained_messages"] >= 1.0);
    assert!(m["switchboard_received_bytes_total"] > m0["switchboard_received_bytes_total"]);
    assert!(m["switchboard_sent_bytes_total"] > m0["switchboard_sent_bytes_total"]);
    assert!(m.contains_key("switchboard_store_commit_seconds_bucket{le=\"+Inf\"}"));

    // $SYS reads the same counters: wait for its refresh to show 6 received messages.
    let mut watcher = Client::connect(mqtt, V3_1_1, "m-sys").await;
    watcher
        .subscribe("$SYS/broker/messages/received", QoS::AtMostOnce)
        .await;
    loop {
        let p = watcher.recv_publish().await;
        if text(&p) == "6" {
            break;
        }
    }
    let (_, now) = http_get(http, "/metrics", "").await;
    let m = parse(&body(&now));
    let sum: f64 = (0..3)
        .map(|q| m[&format!("switchboard_messages_received_total{{qos=\"{q}\"}}")])
        .sum();
    assert_eq!(sum, 6.0);
    shutdown.cancel();
}

#[tokio::test]
async fn websocket_handshakes_and_rejections_are_counted() {
    let (_, http, shutdown, _dir) = start(0).await;
    let (status, _) = http_get(http, "/mqtt", "").await;
    assert_eq!(status, 426);
    let upgrade = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n";
    let (status, _) = http_get(http, "/mqtt", upgrade).await;
    assert_eq!(status, 101);
    let (_, raw) = http_get(http, "/metrics", "").await;
    let m = parse(raw.split_once("\r\n\r\n").unwrap().1);
    assert_eq!(m["switchboard_websocket_handshakes_total"], 1.0);
    assert_eq!(m["switchboard_websocket_rejections_total"], 1.0);
    shutdown.cancel();
}

/// The real binary with `args`, stderr piped; returns the child and the stderr lines.
fn spawn(
    args: &[&str],
    envs: &[(&str, &str)],
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("SWITCHBOARD_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, lines)
}

fn terminate(child: &tokio::process::Child) {
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

/// Reads JSON log lines until one whose message contains `needle`.
async fn json_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    needle: &str,
) -> serde_json::Value {
    tokio::time::timeout(TIMEOUT, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("log line");
            let value: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if value["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle))
            {
                return value;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with {needle:?}"))
}

#[tokio::test]
async fn json_logs_and_graceful_shutdown_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (mut child, mut lines) = spawn(
        &[
            "serve",
            "--log-format",
            "json",
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--www",
            data,
        ],
        &[],
    );
    let line = json_line(&mut lines, "listening mqtt=").await;
    assert_eq!(line["level"], "INFO");
    assert!(line["timestamp"].is_string());
    let message = line["fields"]["message"].as_str().unwrap();
    let addr: SocketAddr = message
        .trim_start_matches("listening mqtt=")
        .parse()
        .unwrap();

    let mut client = Client::connect(addr, V5, "goodbye").await;
    let started = Instant::now();
    terminate(&child);
    let disconnect = client.closed().await.expect("DISCONNECT");
    assert_eq!(disconnect.code, ReasonCode::ServerShuttingDown);
    let status = tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .expect("exited in time")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn shutdown_abandons_what_is_left_after_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // A power command to a plug that never answers keeps an HTTP request open for a minute;
    // shutdown must not wait for it beyond one second.
    let (mut child, mut lines) = spawn(
        &[
            "serve",
            "--log-format",
            "json",
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--www",
            data,
        ],
        &[
            ("SWITCHBOARD_API__COMMAND_TIMEOUT_MS", "60000"),
            ("SWITCHBOARD_BROKER__SHUTDOWN_TIMEOUT", "1"),
        ],
    );
    let mqtt = json_line(&mut lines, "listening mqtt=").await;
    let mqtt: SocketAddr = mqtt["fields"]["message"].as_str().unwrap()["listening mqtt=".len()..]
        .parse()
        .unwrap();
    let http = json_line(&mut lines, "listening http=").await;
    let http: SocketAddr = http["fields"]["message"].as_str().unwrap()["listening http=".len()..]
        .parse()
        .unwrap();
    let mut plug = Client::connect(mqtt, V5, "deaf").await;
    plug.subscribe("cmnd/deaf/#", QoS::AtMostOnce).await;
    plug.publish("tele/deaf/LWT", "Online", QoS::AtLeastOnce, true)
        .await;
    plug.publish("stat/deaf/POWER", "OFF", QoS::AtLeastOnce, false)
        .await;
    // Send the command once the gateway knows the plug (its 404 turns into a pending request).
    let mut hanging = loop {
        let mut stream = TcpStream::connect(http).await.unwrap();
        let body = r#"{"on":true}"#;
        let req = format!(
            "POST /api/v1/devices/tasmota:deaf/power HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        // The command reaching the plug means the request is now waiting for confirmation.
        if let Ok(p) = tokio::time::timeout(Duration::from_millis(200), plug.recv_publish()).await {
            assert_eq!(&*p.topic, "cmnd/deaf/POWER");
            break stream;
        }
    };
    let started = Instant::now();
    terminate(&child);
    json_line(&mut lines, "abandoning").await;
    let status = tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .expect("exited in time")
        .unwrap();
    assert!(status.success(), "{status}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let mut rest = Vec::new();
    let _ = hanging.read_to_end(&mut rest).await;
}
