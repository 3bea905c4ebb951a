//! Configuration: the TOML file, environment overrides, `switchboard check-config` and the
//! sample `switchboard.example.toml`.

use std::process::Command;

use switchboard::config::{Config, check};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn sample() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../switchboard.example.toml");
    std::fs::read_to_string(path).expect("switchboard.example.toml exists")
}

#[test]
fn the_sample_configuration_parses_and_checks_clean() {
    let text = sample();
    let config = Config::from_toml(&text).unwrap_or_else(|e| panic!("sample: {e}"));
    assert_eq!(config.broker.shutdown_timeout, 10);
    assert_eq!(config.api.command_timeout_ms, 5_000);
    assert_eq!(check(&text), vec![]);
}

/// The commented-out examples (`# key = value`, `# [table]`) are valid too once uncommented.
#[test]
fn the_sample_commented_examples_parse() {
    let uncommented: String = sample()
        .lines()
        .map(|line| {
            let rest = line.strip_prefix("# ").unwrap_or(line);
            let is_key = rest.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            });
            let is_table = rest.starts_with('[') && rest.ends_with(']') && !rest.contains(' ');
            if line.starts_with("# ") && (is_key || is_table) {
                format!("{rest}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert!(uncommented.contains("\n[tls]\n"), "{uncommented}");
    let config = Config::from_toml(&uncommented).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.tls.is_some());
    assert!(config.listeners.mqtts.is_some());
    assert!(config.security.acl_file.is_some());
}

#[test]
fn new_tables_are_read() {
    let config = Config::from_toml(
        "[log]\nformat = \"json\"\nlevel = \"debug\"\n\
         [api]\nkeys = [\"0000000000000000000000000000000000000000000000000000000000000000\"]\n\
         command_timeout_ms = 250\n\
         [schedules]\nutc_offset = \"+01:00\"\n\
         [broker]\nshutdown_timeout = 3\n",
    )
    .unwrap();
    assert_eq!(config.log.format, switchboard::observe::LogFormat::Json);
    assert_eq!(config.log.level, "debug");
    assert_eq!(config.api.keys.len(), 1);
    assert_eq!(config.api.command_timeout_ms, 250);
    assert_eq!(config.schedules.utc_offset.map(|o| o.0), Some(3600));
    assert_eq!(config.broker.shutdown_timeout, 3);
    assert!(Config::from_toml("[api]\nkeys = [\"nothex\"]\n").is_err());
    assert!(Config::from_toml("[schedules]\nutc_offset = \"1h\"\n").is_err());
    assert!(Config::from_toml("[log]\nformat = \"xml\"\n").is_err());
}

#[test]
fn environment_overrides_apply_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[broker]\nmax_keepalive = 30\nsys_interval = 5\n").unwrap();
    let config = Config::load(
        Some(&file),
        env(&[
            ("SWITCHBOARD_BROKER__MAX_KEEPALIVE", "60"),
            ("SWITCHBOARD_LISTENERS__MQTT", "127.0.0.1:1883,[::1]:1883"),
            ("SWITCHBOARD_HTTP__WEBSOCKET_PATH", "/ws"),
            ("SWITCHBOARD_BROKER__DENY_SUBSCRIBE", "[\"a/#\", \"b\"]"),
            ("SWITCHBOARD_LOG__FORMAT", "json"),
            ("SWITCHBOARD_DATA_DIR", "/tmp/sb"),
            // Not overrides: other variables of the same prefix keep their own meaning.
            ("SWITCHBOARD_LOG", "debug"),
            ("SWITCHBOARD_CONFIG", "/elsewhere.toml"),
            ("PATH", "/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(config.broker.max_keepalive, 60);
    assert_eq!(config.broker.sys_interval, 5, "the file's other keys stay");
    assert_eq!(
        config.listeners.mqtt,
        vec![
            "127.0.0.1:1883".parse().unwrap(),
            "[::1]:1883".parse().unwrap()
        ]
    );
    assert_eq!(config.http.websocket_path, "/ws");
    assert_eq!(config.broker.deny_subscribe, ["a/#", "b"]);
    assert_eq!(config.log.format, switchboard::observe::LogFormat::Json);
    assert_eq!(config.data_dir, std::path::PathBuf::from("/tmp/sb"));
}

#[test]
fn unknown_or_invalid_overrides_name_the_variable() {
    let err = Config::load(None, env(&[("SWITCHBOARD_BROKER__MAX_KEEPALIVES", "1")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("SWITCHBOARD_BROKER__MAX_KEEPALIVES"), "{err}");
    assert!(err.contains("max_keepalives"), "{err}");
    let err = Config::load(None, env(&[("SWITCHBOARD_NOPE__X", "1")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("SWITCHBOARD_NOPE__X"), "{err}");
    let err = Config::load(None, env(&[("SWITCHBOARD_BROKER__MAX_KEEPALIVE", "many")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("SWITCHBOARD_BROKER__MAX_KEEPALIVE"), "{err}");
}

const BROKEN: &str = "\
data_dir = \"/tmp/x\"
colour = \"blue\"

[broker]
max_keepalive = \"sixty\"
max_inflight = 10
unknown_key = 1

[nonsense]
a = 1

[log]
format = \"xml\"
";

#[test]
fn check_reports_every_problem_with_its_line() {
    let problems = check(BROKEN);
    let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, [2, 5, 7, 9, 13], "{problems:#?}");
    assert!(
        problems[1].message.contains("max_keepalive"),
        "{problems:#?}"
    );
    assert!(problems[2].message.contains("unknown_key"), "{problems:#?}");
    assert!(problems[3].message.contains("nonsense"), "{problems:#?}");
    let syntax = check("[broker\nx = 1\n");
    assert_eq!(syntax.len(), 1);
    assert_eq!(syntax[0].line, 1);
    assert!(check("[broker]\nmax_keepalive = 60\n").is_empty());
}

/// The checker and the server read a file through one path: a `[tls]` table with client
/// certificates that `Config::from_toml` (what `serve --config` validates with) accepts is
/// `ok`, and a `[tls]` table really missing `cert` is reported with the table's line.
#[test]
fn check_accepts_what_the_server_accepts() {
    let tls = "[tls]\ncert = \"s.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\n\
               client_cert_required = true\n";
    assert!(switchboard::config::Config::from_toml(tls).is_ok());
    assert_eq!(check(tls), vec![]);
    let missing = check("[broker]\nmax_keepalive = 60\n\n[tls]\nkey = \"k.pem\"\n");
    assert_eq!(missing.len(), 1, "{missing:#?}");
    assert!(
        missing[0].message.contains("missing field `cert`"),
        "{missing:#?}"
    );
}

#[test]
fn check_config_command_exits_1_with_all_errors_and_0_when_ok() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, BROKEN).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "line 2:",
        "line 5:",
        "line 7:",
        "line 9:",
        "line 13:",
        "5 problem(s)",
    ] {
        assert!(stderr.contains(needle), "{needle} in {stderr}");
    }
    let good = dir.path().join("good.toml");
    std::fs::write(&good, sample()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
fn api_key_create_prints_a_key_and_its_hash() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["api-key", "create"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let key = stdout
        .split_whitespace()
        .find(|w| w.starts_with("sb_"))
        .expect("a key");
    let hash = switchboard::api::KeyHash::of(key).to_hex();
    assert!(stdout.contains(&format!("keys = [\"{hash}\"]")), "{stdout}");
}
