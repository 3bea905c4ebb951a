//! Gateway configuration: a TOML file (`--config`) with command-line overrides.
//!
//! Unknown keys are errors, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::broker::BrokerConfig;
pub use crate::security::{LimitsConfig, SecurityConfig};
pub use crate::web::{HttpConfig, IpNet};

/// Default MQTT over TCP listener.
pub const DEFAULT_MQTT: &str = "0.0.0.0:1883";
/// Default HTTP (dashboard and WebSocket) listener.
pub const DEFAULT_HTTP: &str = "0.0.0.0:8080";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./switchboard-data";

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where durable state lives.
    pub data_dir: PathBuf,
    /// The built dashboard (trunk's `dist/`).
    pub www: PathBuf,
    /// Listening sockets.
    pub listeners: Listeners,
    /// MQTT broker limits and behaviour.
    pub broker: BrokerConfig,
    /// HTTP listener behaviour: MQTT over WebSocket and proxies.
    pub http: HttpConfig,
    /// The `[log]` table: log format and level.
    pub log: crate::observe::LogConfig,
    /// The `[api]` table: the HTTP API under `/api/v1` and its keys.
    pub api: crate::api::ApiConfig,
    /// The `[schedules]` table: the time zone schedules run in.
    pub schedules: crate::schedule::SchedulesConfig,
    /// The `[store]` table: durable sessions and retained messages.
    pub store: crate::broker::StoreConfig,
    /// The `[tls]` table: certificate and key for MQTT over TLS and HTTPS/WSS. Absent: no TLS.
    pub tls: Option<crate::tls::TlsConfig>,
    /// The `[scram]` table: SCRAM-SHA-256 credentials for MQTT 5 enhanced authentication.
    pub scram: crate::scram::ScramConfig,
    /// The `[security]` table: anonymous policy, password and ACL files.
    pub security: SecurityConfig,
    /// The `[limits]` table: abuse limits per address and per connection.
    pub limits: LimitsConfig,
}

/// Listening sockets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    /// MQTT over TCP.
    pub mqtt: Vec<SocketAddr>,
    /// HTTP: dashboard, `/healthz`, MQTT over WebSocket at `/mqtt`. With `[tls]` configured
    /// these listeners serve HTTPS and WSS instead.
    pub http: Vec<SocketAddr>,
    /// MQTT over TLS. Unset: `0.0.0.0:8883` when `[tls]` is configured, none otherwise. Set
    /// without `[tls]`: an error at startup.
    pub mqtts: Option<Vec<SocketAddr>>,
}

impl Default for Listeners {
    fn default() -> Self {
        Self {
            mqtt: vec![DEFAULT_MQTT.parse().expect("valid default address")],
            http: vec![DEFAULT_HTTP.parse().expect("valid default address")],
            mqtts: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            www: default_www(),
            listeners: Listeners::default(),
            broker: BrokerConfig::default(),
            http: HttpConfig::default(),
            log: crate::observe::LogConfig::default(),
            api: crate::api::ApiConfig::default(),
            schedules: crate::schedule::SchedulesConfig::default(),
            store: crate::broker::StoreConfig::default(),
            tls: None,
            scram: crate::scram::ScramConfig::default(),
            security: SecurityConfig::default(),
            limits: LimitsConfig::default(),
        }
    }
}

/// Errors reading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        source: Box<toml::de::Error>,
    },
}

impl Config {
    /// Reads a TOML configuration file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the file cannot be read, [`ConfigError::Parse`] when it is not
    /// valid (unknown keys included).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Parses a TOML document.
    ///
    /// # Errors
    /// The TOML error, naming the line, when the text is invalid.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

/// Prefix of every environment variable the gateway reads.
pub const ENV_PREFIX: &str = "SWITCHBOARD_";

/// Top-level keys that may be overridden by `SWITCHBOARD_<KEY>` (without a `__`): only these,
/// so `SWITCHBOARD_LOG`, `SWITCHBOARD_CONFIG` and the like keep their own meaning.
const ENV_TOP_LEVEL: [&str; 2] = ["data_dir", "www"];

/// One problem found by [`check`]: the 1-based line (0 when unknown) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file, 0 when it cannot be placed.
    pub line: usize,
    /// The problem, naming the table and key.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl Config {
    /// Reads the configuration file at `path` (defaults when `None`), then applies the
    /// environment overrides among `vars` (see [`apply_env`]).
    ///
    /// # Errors
    /// The file cannot be read or is invalid, or an override names an unknown key or has a
    /// value of the wrong type (the message names the variable).
    pub fn load(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                // Validate the file on its own first so its errors name the file and line.
                Self::from_toml(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source: Box::new(source),
                })?;
                text.parse::<toml::Table>()?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, vars).map_err(anyhow::Error::msg)?;
        Ok(toml::Value::Table(table).try_into::<Self>()?)
    }
}

/// Applies `SWITCHBOARD_<TABLE>__<KEY>=value` overrides (also `SWITCHBOARD_<A>__<B>__<KEY>` for
/// nested tables, and `SWITCHBOARD_DATA_DIR` / `SWITCHBOARD_WWW` for the top-level keys) to a
/// parsed document. Names are matched case-insensitively. The value is read as a TOML value
/// when it is one (`60`, `true`, `["a", "b"]`), else as a string, else as a comma-separated
/// list of strings (`127.0.0.1:1883,[::1]:1883`): the first reading the schema accepts wins.
/// Variables without `__` other than the top-level keys are not overrides and are ignored.
///
/// # Errors
/// A message naming the variable: an unknown key, or a value no reading makes valid.
pub fn apply_env(
    table: &mut toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), String> {
    let mut vars: Vec<_> = vars
        .into_iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
            let path: Vec<String> = if rest.contains("__") {
                rest.split("__").map(str::to_owned).collect()
            } else if ENV_TOP_LEVEL.contains(&rest.as_str()) {
                vec![rest]
            } else {
                return None;
            };
            Some((name, path, value))
        })
        .collect();
    vars.sort();
    for (name, path, raw) in vars {
        if path.iter().any(String::is_empty) {
            return Err(format!("{name}: empty table or key name"));
        }
        let mut candidates = Vec::new();
        if let Ok(mut doc) = format!("v = {raw}").parse::<toml::Table>()
            && let Some(v) = doc.remove("v")
        {
            candidates.push(v);
        }
        candidates.push(toml::Value::String(raw.clone()));
        if raw.contains(',') {
            candidates.push(toml::Value::Array(
                raw.split(',')
                    .map(|s| toml::Value::String(s.trim().to_owned()))
                    .collect(),
            ));
        }
        let mut first_error = None;
        let mut chosen = None;
        for value in candidates {
            match probe(&path, value.clone()) {
                Ok(()) => {
                    chosen = Some(value);
                    break;
                }
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        let Some(value) = chosen else {
            let err = first_error.unwrap_or_default();
            return Err(format!("{name}: {err}"));
        };
        set_path(table, &path, value).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// Whether a document holding only `value` at `path` is a valid configuration.
fn probe(path: &[String], value: toml::Value) -> Result<(), String> {
    let mut doc = toml::Table::new();
    set_path(&mut doc, path, value)?;
    toml::Value::Table(doc)
        .try_into::<Config>()
        .map(drop)
        .map_err(|e| e.message().trim().to_owned())
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (key, parents) = path.split_last().ok_or("empty key")?;
    let mut at = table;
    for parent in parents {
        let entry = at
            .entry(parent.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{parent}` is not a table"))?;
    }
    at.insert(key.clone(), value);
    Ok(())
}

/// Checks a configuration document and reports every problem it finds, each with its line:
/// a syntax error (then nothing else can be checked), then every key checked on its own
/// against the schema (unknown tables and keys, wrong types and values), then whatever the
/// whole document still gets wrong. Empty when the document is valid.
#[must_use]
pub fn check(text: &str) -> Vec<Problem> {
    let table = match text.parse::<toml::Table>() {
        Ok(table) => table,
        Err(err) => {
            return vec![Problem {
                line: err.span().map_or(0, |s| line_at(text, s.start)),
                message: err.message().trim().to_owned(),
            }];
        }
    };
    // What the server accepts is valid: `Config::load` validates the file with this same call,
    // so the checker cannot refuse a file that `serve --config` uses.
    if Config::from_toml(text).is_ok() {
        return Vec::new();
    }
    // Each key probed alone misses its siblings, so a "missing field" there is an artifact of
    // the probe; a field really missing is reported by the whole-document check below.
    let probe = |path: &[String], value: toml::Value| match probe(path, value) {
        Err(err) if err.starts_with("missing field") => Ok(()),
        other => other,
    };
    let mut problems = Vec::new();
    for (key, value) in &table {
        match value {
            toml::Value::Table(inner) => {
                let empty = toml::Value::Table(toml::Table::new());
                if let Err(err) = probe(std::slice::from_ref(key), empty) {
                    problems.push(Problem {
                        line: key_line(text, "", key),
                        message: format!("[{key}]: {err}"),
                    });
                    continue;
                }
                for (k, v) in inner {
                    if let Err(err) = probe(&[key.clone(), k.clone()], v.clone()) {
                        problems.push(Problem {
                            line: key_line(text, key, k),
                            message: format!("[{key}] {k}: {err}"),
                        });
                    }
                }
            }
            other => {
                if let Err(err) = probe(std::slice::from_ref(key), other.clone()) {
                    problems.push(Problem {
                        line: key_line(text, "", key),
                        message: format!("{key}: {err}"),
                    });
                }
            }
        }
    }
    if problems.is_empty()
        && let Err(err) = Config::from_toml(text)
    {
        problems.push(Problem {
            line: err.span().map_or(0, |s| line_at(text, s.start)),
            message: err.message().trim().to_owned(),
        });
    }
    problems.sort_by_key(|p| p.line);
    problems
}

/// The 1-based line of byte `offset`.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where `key` is set in table `section` ("" for the top level): the `key = ...`
/// line, else a `[section.key]` header, else the `[section]` header; 0 when not found.
fn key_line(text: &str, section: &str, key: &str) -> usize {
    let unquote = |s: &str| s.trim().trim_matches('"').trim_matches('\'').to_owned();
    let mut current = String::new();
    let mut header_line = 0;
    let mut sub_header_line = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[') {
            let name = name.trim_start_matches('[');
            let name = name.split(']').next().unwrap_or_default();
            current = name.split('.').map(unquote).collect::<Vec<_>>().join(".");
            if current == section && header_line == 0 {
                header_line = i + 1;
            }
            let nested = if section.is_empty() {
                key.to_owned()
            } else {
                format!("{section}.{key}")
            };
            if (current == nested || current.starts_with(&format!("{nested}.")))
                && sub_header_line == 0
            {
                sub_header_line = i + 1;
            }
            continue;
        }
        if current == section
            && let Some((name, _)) = line.split_once('=')
            && unquote(name.split('.').next().unwrap_or_default()) == key
        {
            return i + 1;
        }
    }
    if sub_header_line > 0 {
        sub_header_line
    } else {
        header_line
    }
}

/// The dashboard directory used when none is configured: `./dist` when it exists (running from
/// the workspace root), else the workspace's `dist/` next to this crate.
fn default_www() -> PathBuf {
    let local = PathBuf::from("dist");
    if local.is_dir() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("dist")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config.listeners.mqtt, vec![DEFAULT_MQTT.parse().unwrap()]);
        assert_eq!(config.listeners.http, vec![DEFAULT_HTTP.parse().unwrap()]);
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn listeners_are_read() {
        let config = Config::from_toml(
            "[listeners]\nmqtt = [\"127.0.0.1:0\", \"[::1]:1884\"]\nhttp = [\"127.0.0.1:9000\"]\n",
        )
        .unwrap();
        assert_eq!(config.listeners.mqtt.len(), 2);
        assert_eq!(config.listeners.http[0].port(), 9000);
    }

    #[test]
    fn broker_table_is_read() {
        let config = Config::from_toml(
            "[broker]\ndeny_subscribe = [\"test/nosubscribe\"]\nmax_keepalive = 60\n",
        )
        .unwrap();
        assert_eq!(config.broker.max_keepalive, 60);
        assert_eq!(
            config.broker.deny_subscribe,
            vec!["test/nosubscribe".to_owned()]
        );
        assert_eq!(config.broker.max_packet_size, 1 << 20);
        assert!(Config::from_toml("[broker]\nmax_keepalives = 1\n").is_err());
    }

    #[test]
    fn http_table_is_read() {
        let config = Config::from_toml(
            "[http]\nwebsocket_path = \"/ws\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
        )
        .unwrap();
        assert_eq!(config.http.websocket_path, "/ws");
        let [net, v6] = config.http.trusted_proxies[..] else {
            panic!("two entries")
        };
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(v6.contains("::1".parse().unwrap()));
        assert!(!v6.contains("::2".parse().unwrap()));
        assert_eq!(config.http.max_message_size, 2 << 20);
        assert!(Config::from_toml("[http]\ntrusted_proxies = [\"10.0.0.0/33\"]\n").is_err());
        assert!(Config::from_toml("[http]\ntrusted_proxies = [\"example\"]\n").is_err());
        assert!(
            "0.0.0.0/0"
                .parse::<IpNet>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn unknown_keys_are_errors_with_a_line() {
        let err = Config::from_toml("data_dir = \"x\"\n[listeners]\nmqqt = []\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("mqqt"), "{text}");
        assert!(text.contains("line 3"), "{text}");
    }
}
