//! Observability: structured logs (text or JSON, `[log]` and `--log-format`) and the Prometheus
//! exposition of the broker's [`Metrics`] at `/metrics`.
//!
//! The `$SYS/broker/...` topics ([`crate::broker`]'s `sys` module) and `/metrics` read the same
//! counters, so the two never disagree.

use std::fmt::Write as _;

use serde::Deserialize;

use crate::broker::{Broker, COMMIT_BUCKETS, Metrics, Transport};

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (ANSI colours when stderr is a terminal).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`).
    Json,
}

/// The `[log]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`; `--log-format` overrides it.
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `switchboard=debug,hyper=warn`. The `SWITCHBOARD_LOG`
    /// environment variable, when set, overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// Installs the global `tracing` subscriber writing to stderr.
///
/// # Errors
/// The level is not a valid filter, or a subscriber is already installed.
pub fn init_logging(config: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("SWITCHBOARD_LOG") {
        Ok(level) => tracing_subscriber::EnvFilter::try_new(level)?,
        Err(_) => tracing_subscriber::EnvFilter::try_new(&config.level)
            .map_err(|e| anyhow::anyhow!("[log] level `{}`: {e}", config.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

/// The Prometheus content type of [`render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every broker metric in the Prometheus text exposition format 0.0.4.
#[must_use]
pub fn render(broker: &Broker) -> String {
    let m = broker.metrics();
    let get = Metrics::value;
    let mut out = String::with_capacity(4096);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: u64| vec![(String::new(), v as f64)];
    let by_qos = |counters: &[std::sync::atomic::AtomicU64; 3]| {
        (0..3)
            .map(|q| (format!("{{qos=\"{q}\"}}"), get(&counters[q]) as f64))
            .collect::<Vec<_>>()
    };
    family(
        "switchboard_uptime_seconds",
        "gauge",
        "Seconds since the broker started.",
        &[(String::new(), broker.uptime().as_secs_f64())],
    );
    let transports = broker.connections_by_transport();
    family(
        "switchboard_connections",
        "gauge",
        "Connected MQTT clients by transport.",
        &Transport::ALL
            .iter()
            .zip(transports)
            .map(|(t, n)| (format!("{{transport=\"{}\"}}", t.name()), n as f64))
            .collect::<Vec<_>>(),
    );
    family(
        "switchboard_clients_connected",
        "gauge",
        "Connections with a session attached (all transports).",
        &one(get(&m.clients_connected)),
    );
    family(
        "switchboard_sessions",
        "gauge",
        "Sessions, connected or not.",
        &one(get(&m.sessions)),
    );
    family(
        "switchboard_subscriptions",
        "gauge",
        "Subscriptions in the index.",
        &one(get(&m.subscriptions)),
    );
    family(
        "switchboard_retained_messages",
        "gauge",
        "Retained messages.",
        &one(get(&m.retained)),
    );
    family(
        "switchboard_messages_received_total",
        "counter",
        "PUBLISH packets received from clients, by QoS.",
        &by_qos(&m.messages_received_by_qos),
    );
    family(
        "switchboard_messages_sent_total",
        "counter",
        "PUBLISH packets sent to clients, by QoS.",
        &by_qos(&m.messages_sent_by_qos),
    );
    family(
        "switchboard_received_bytes_total",
        "counter",
        "Bytes read from client connections.",
        &one(get(&m.bytes_received)),
    );
    family(
        "switchboard_sent_bytes_total",
        "counter",
        "Bytes written to client connections.",
        &one(get(&m.bytes_sent)),
    );
    family(
        "switchboard_messages_dropped_total",
        "counter",
        "Messages dropped: full queues, QoS 0 to offline sessions, too large, expired.",
        &one(get(&m.messages_dropped)),
    );
    family(
        "switchboard_store_rejected_total",
        "counter",
        "QoS 1/2 publications refused because the store reached [store] max_bytes.",
        &one(get(&m.store_rejected)),
    );
    family(
        "switchboard_websocket_handshakes_total",
        "counter",
        "WebSocket upgrades accepted.",
        &one(get(&m.ws_handshakes)),
    );
    family(
        "switchboard_websocket_rejections_total",
        "counter",
        "WebSocket upgrade requests refused.",
        &one(get(&m.ws_rejections)),
    );
    family(
        "switchboard_auth_failures_total",
        "counter",
        "MQTT authentication failures.",
        &one(get(&m.auth_failures)),
    );
    family(
        "switchboard_api_auth_failures_total",
        "counter",
        "HTTP API requests refused for a missing or invalid API key.",
        &one(get(&m.api_auth_failures)),
    );
    let (cumulative, count, sum) = m.store_commit.snapshot();
    let mut samples: Vec<(String, f64)> = COMMIT_BUCKETS
        .iter()
        .map(|le| le.to_string())
        .chain(std::iter::once("+Inf".to_owned()))
        .zip(&cumulative)
        .map(|(le, n)| (format!("_bucket{{le=\"{le}\"}}"), *n as f64))
        .collect();
    samples.push(("_sum".to_owned(), sum));
    samples.push(("_count".to_owned(), count as f64));
    family(
        "switchboard_store_commit_seconds",
        "histogram",
        "Latency of durable store commits.",
        &samples,
    );
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::broker::BrokerConfig;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let broker = Broker::new(BrokerConfig::default());
        let m = broker.metrics();
        m.observe_commit(Duration::from_micros(50));
        m.observe_commit(Duration::from_millis(3));
        m.observe_commit(Duration::from_secs(5));
        let text = render(&broker);
        assert!(text.contains("switchboard_store_commit_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(text.contains("switchboard_store_commit_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("switchboard_store_commit_seconds_bucket{le=\"1\"} 2\n"));
        assert!(text.contains("switchboard_store_commit_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("switchboard_store_commit_seconds_count 3\n"));
        assert!(text.contains("# TYPE switchboard_store_commit_seconds histogram\n"));
    }

    #[test]
    fn every_sample_line_is_well_formed() {
        let broker = Broker::new(BrokerConfig::default());
        for line in render(&broker).lines() {
            if line.starts_with('#') {
                assert!(
                    line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                    "{line}"
                );
                continue;
            }
            let (name, value) = line.rsplit_once(' ').expect("name and value");
            assert!(name.starts_with("switchboard_"), "{line}");
            value.parse::<f64>().expect("numeric value");
        }
    }
}
