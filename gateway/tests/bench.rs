//! Smoke test of `switchboard bench`: the real binary starts `switchboard serve` (itself) on
//! loopback, runs a tiny point-to-point QoS 1 scenario, and prints a table and JSON lines. A
//! functional test: no loss, the JSON parses, the fields are there; no timing is asserted.

use std::process::Command;

use serde_json::Value;

/// Runs `switchboard bench ARGS` and returns its JSON lines.
fn bench(args: &[&str]) -> Vec<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("bench")
        .args(args)
        .env("SWITCHBOARD_LOG", "warn")
        .output()
        .expect("switchboard bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("per_cpu_s"), "no table header:\n{stdout}");
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("each JSON line parses"))
        .collect()
}

fn check_p2p_qos1(transport: &str) {
    let lines = bench(&[
        "--scenario",
        "p2p",
        "--qos",
        "1",
        "--pairs",
        "2",
        "--messages",
        "200",
        "--transport",
        transport,
        "--rounds",
        "1",
    ]);
    let [run, summary] = lines.as_slice() else {
        panic!("expected one run line and one summary line, got {lines:?}");
    };
    assert_eq!(run["kind"], "run");
    assert_eq!(run["broker"], "switchboard");
    assert_eq!(run["transport"], transport);
    assert_eq!(run["sent"], 400);
    assert_eq!(run["expected"], 400);
    assert_eq!(run["delivered"], 400);
    assert_eq!(run["lost"], 0);
    assert!(run["latency_p99_us"].as_f64().unwrap() > 0.0);
    assert!(run["broker_peak_rss_kib"].as_u64().unwrap() > 0);
    assert_eq!(summary["kind"], "summary");
    assert_eq!(summary["brokers"][0]["lost"], 0);
}

#[test]
fn p2p_qos1_over_tcp_loses_nothing() {
    check_p2p_qos1("tcp");
}

#[test]
fn p2p_qos1_over_websocket_loses_nothing() {
    check_p2p_qos1("ws");
}

#[test]
fn invalid_options_are_refused() {
    for (args, complaint) in [
        (&["--payload", "8"][..], "--payload"),
        (&["--connect", "192.0.2.1:1883"], "loopback"),
        (&["--rounds", "0"], "--rounds"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("bench")
            .args(args)
            .output()
            .expect("switchboard bench runs");
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(complaint), "{args:?}: {stderr}");
    }
}

#[test]
fn every_scenario_runs_and_stops_by_itself() {
    for args in [
        &[
            "--scenario",
            "fanout",
            "--subscribers",
            "5",
            "--messages",
            "50",
        ][..],
        &[
            "--scenario",
            "fanin",
            "--qos",
            "2",
            "--pairs",
            "3",
            "--messages",
            "50",
        ],
        &["--scenario", "idle", "--connections", "20"],
        &[
            "--scenario",
            "storm",
            "--connections",
            "20",
            "--concurrency",
            "4",
        ],
        &[
            "--scenario",
            "p2p",
            "--qos",
            "1",
            "--messages",
            "50",
            "--mqtt-version",
            "5",
        ],
    ] {
        let lines = bench(args);
        let run = &lines[0];
        assert_eq!(run["kind"], "run", "{args:?}");
        assert_eq!(run["lost"], 0, "{args:?}: {run}");
        assert!(run["delivered"].as_u64().unwrap() > 0, "{args:?}");
    }
}

/// With Mosquitto installed, `--compare` runs both and prints ratios.
#[test]
fn compare_with_mosquitto() {
    assert!(
        std::path::Path::new("/usr/sbin/mosquitto").exists(),
        "/usr/sbin/mosquitto is missing: run `cargo xtask setup`"
    );
    let lines = bench(&[
        "--qos",
        "1",
        "--pairs",
        "2",
        "--messages",
        "100",
        "--compare",
        "mosquitto",
        "--rounds",
        "2",
    ]);
    assert_eq!(lines.len(), 5, "four runs and a summary: {lines:?}");
    let summary = &lines[4];
    assert_eq!(summary["brokers"][1]["broker"], "mosquitto");
    assert_eq!(summary["brokers"][1]["lost"], 0);
    assert!(summary["ratios"]["per_broker_cpu_s"].is_number());
}
