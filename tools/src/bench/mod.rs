//! `switchboard bench`: a load generator on the shared codec, and a side-by-side comparison with
//! Mosquitto.
//!
//! [`run`] raises the open-file limit, then for each round starts every broker under test as a
//! child process on loopback ([`proc::BrokerProcess`]: Switchboard from `--switchboard-bin`,
//! Mosquitto with a generated configuration), runs the scenario against it ([`load`]), stops it,
//! and prints one table row and one JSON line per run. With `--compare` the brokers alternate
//! (the order flips every round) and a summary of medians with Switchboard / other ratios
//! closes the output. Everything is bounded: connection and message counts come from the command
//! line, and every phase has a time limit.
//!
//! ```text
//! switchboard bench --scenario p2p --qos 1 --pairs 10 --compare mosquitto --rounds 3
//! ```

mod conn;
mod hist;
mod load;
mod proc;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;
use switchboard_mqtt::{ProtocolVersion, QoS};
use tokio_util::sync::CancellationToken;

pub use self::hist::Histogram;
pub use self::proc::{BrokerOptions, BrokerProcess, ProcStats, mosquitto_config, raise_fd_limit};

use self::conn::Endpoint;
use self::load::{Flow, Measurement};

/// Most rounds accepted (the run stays bounded in time).
const MAX_ROUNDS: usize = 20;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// N publishers, each to its own subscriber.
    P2p,
    /// One publisher, N subscribers on its topic.
    Fanout,
    /// N publishers into one shared subscription group of M subscribers.
    Fanin,
    /// Many idle connections: broker memory per connection.
    Idle,
    /// Connect and disconnect as fast as possible: connections per second.
    Storm,
}

/// The byte transport of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// MQTT over TCP.
    Tcp,
    /// MQTT over WebSocket (subprotocol `mqtt`, binary frames).
    Ws,
}

/// A broker the benchmark can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrokerKind {
    /// `switchboard serve`.
    Switchboard,
    /// Eclipse Mosquitto.
    Mosquitto,
}

impl fmt::Display for BrokerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Switchboard => "switchboard",
            Self::Mosquitto => "mosquitto",
        })
    }
}

/// Switchboard's `[store] durability` when `--persistence` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Acknowledge at once, commit every `batch_interval_ms`.
    Batch,
    /// Acknowledge after the commit's fsync.
    Fsync,
}

impl Durability {
    /// The value in Switchboard's configuration.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Batch => "batch",
            Self::Fsync => "fsync",
        }
    }
}

/// MQTT protocol version of the load generator's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MqttVersion {
    /// MQTT 3.1.1.
    #[value(name = "3.1.1")]
    V311,
    /// MQTT 5.0.
    #[value(name = "5")]
    V5,
}

impl MqttVersion {
    const fn protocol(self) -> ProtocolVersion {
        match self {
            Self::V311 => ProtocolVersion::V3_1_1,
            Self::V5 => ProtocolVersion::V5,
        }
    }

    const fn name(self) -> &'static str {
        match self {
            Self::V311 => "3.1.1",
            Self::V5 => "5",
        }
    }
}

/// `switchboard bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Scenario::P2p)]
    pub scenario: Scenario,
    /// QoS of publications and subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Publisher/subscriber pairs (p2p), or publishers (fanin).
    #[arg(long, default_value_t = 10)]
    pub pairs: usize,
    /// Subscribers (fanout: default 500; fanin: the shared group's size, default 4).
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// Connections (idle and storm: default 10000).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Connections being set up at once (idle, storm).
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    /// Payload bytes (at least 16: send time, publisher, sequence number).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Messages per publisher, at most.
    #[arg(long, default_value_t = 10_000_000)]
    pub messages: u64,
    /// Seconds of publishing, at most.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Publications per second over all publishers (0: as fast as the window allows).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Messages each publisher keeps in flight, at most (unacknowledged, and undelivered).
    #[arg(long, default_value_t = 100)]
    pub inflight: u64,
    /// PUBLISHes a publisher encodes into one write, at most. The default, one write per message,
    /// is what rumqttc does by default (the issue's reference figures); more lets a broker that
    /// reads in bulk show it.
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    /// MQTT over TCP or WebSocket.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,
    /// MQTT protocol version.
    #[arg(long = "mqtt-version", value_enum, default_value = "3.1.1")]
    pub mqtt_version: MqttVersion,
    /// Connect with clean start off and (v5) a one-hour session expiry.
    #[arg(long)]
    pub persistent_session: bool,
    /// Turn the broker's persistence on: Mosquitto `persistence true`, Switchboard `[store]
    /// durability` set to this (`batch`, the default, is the closest to Mosquitto's periodic
    /// saving). Without it: Mosquitto `persistence false`, Switchboard `durability = "none"`.
    #[arg(
        long,
        value_enum,
        num_args = 0..=1,
        default_missing_value = "batch",
        value_name = "DURABILITY"
    )]
    pub persistence: Option<Durability>,
    /// The broker to measure.
    #[arg(long, value_enum, default_value_t = BrokerKind::Switchboard)]
    pub broker: BrokerKind,
    /// Also measure this broker, alternating with `--broker`, and print ratios.
    #[arg(long, value_enum)]
    pub compare: Option<BrokerKind>,
    /// Rounds per broker (default 3 with --compare, else 1).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// The `switchboard` executable to start (default: this one).
    #[arg(long, value_name = "PATH")]
    pub switchboard_bin: Option<PathBuf>,
    /// Measure a broker already running at this MQTT over TCP address (loopback only) instead of
    /// starting one; `--broker` then only names it. Not with `--compare`.
    #[arg(long, value_name = "ADDR")]
    pub connect: Option<SocketAddr>,
    /// With `--connect`: the broker's HTTP address for MQTT over WebSocket (`ws://ADDR/mqtt`).
    #[arg(long, value_name = "ADDR", requires = "connect")]
    pub connect_ws: Option<SocketAddr>,
    /// With `--connect`: the broker's process id, for its CPU and memory figures (without it they
    /// are reported as 0).
    #[arg(long, value_name = "PID", requires = "connect")]
    pub broker_pid: Option<u32>,
    /// Add `set_tcp_nodelay true` to Mosquitto's configuration (off by default: the reference
    /// configuration leaves Nagle's algorithm on in Mosquitto).
    #[arg(long)]
    pub mosquitto_nodelay: bool,
    /// The `mosquitto` executable to start.
    #[arg(long, value_name = "PATH", default_value = "/usr/sbin/mosquitto")]
    pub mosquitto_bin: PathBuf,
}

/// The result of one run against one broker, as printed (the JSON line is this, serialized).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `"run"` (the summary line has `"summary"`).
    pub kind: &'static str,
    /// The broker measured.
    pub broker: BrokerKind,
    /// Round number, from 1.
    pub round: usize,
    /// Scenario.
    pub scenario: Scenario,
    /// Transport.
    pub transport: Transport,
    /// QoS.
    pub qos: u8,
    /// MQTT version.
    pub mqtt_version: &'static str,
    /// Payload bytes.
    pub payload: usize,
    /// PUBLISHes per write, at most.
    pub batch: u64,
    /// Publishers (message scenarios).
    pub publishers: usize,
    /// Subscribers (message scenarios).
    pub subscribers: usize,
    /// Connections (idle and storm).
    pub connections: usize,
    /// Clean start off.
    pub persistent_session: bool,
    /// Broker persistence (`null`: off).
    pub persistence: Option<Durability>,
    /// Publications sent.
    pub sent: u64,
    /// Deliveries expected (connection scenarios: connections tried).
    pub expected: u64,
    /// Deliveries received (connection scenarios: connections made).
    pub delivered: u64,
    /// `expected - delivered`, never negative.
    pub lost: u64,
    /// Lost as a percentage of expected.
    pub loss_pct: f64,
    /// The measurement window, seconds.
    pub window_s: f64,
    /// Deliveries (storm and idle: connections) per second of the window.
    pub rate_per_s: f64,
    /// Deliveries (connections) per broker CPU-second.
    pub per_broker_cpu_s: f64,
    /// Latency median, microseconds (publish to delivery; storm: CONNECT to CONNACK).
    pub latency_p50_us: f64,
    /// Latency 99th percentile, microseconds.
    pub latency_p99_us: f64,
    /// Latency maximum, microseconds.
    pub latency_max_us: f64,
    /// Broker CPU seconds (utime + stime) over the window.
    pub broker_cpu_s: f64,
    /// Load generator CPU seconds over the window.
    pub client_cpu_s: f64,
    /// Broker peak RSS (`VmHWM`), KiB.
    pub broker_peak_rss_kib: u64,
    /// Broker RSS growth per connection, bytes (idle scenario).
    pub rss_per_conn_b: Option<f64>,
}

/// Medians of one broker's rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Medians {
    /// The broker.
    pub broker: BrokerKind,
    /// Rounds that completed.
    pub rounds: usize,
    /// Deliveries (connections) per second.
    pub rate_per_s: f64,
    /// Deliveries (connections) per broker CPU-second.
    pub per_broker_cpu_s: f64,
    /// Latency median, microseconds.
    pub latency_p50_us: f64,
    /// Latency 99th percentile, microseconds.
    pub latency_p99_us: f64,
    /// Latency maximum, microseconds.
    pub latency_max_us: f64,
    /// Broker peak RSS, KiB.
    pub broker_peak_rss_kib: f64,
    /// Broker RSS per idle connection, bytes.
    pub rss_per_conn_b: Option<f64>,
    /// Lost deliveries over all rounds.
    pub lost: u64,
}

/// Switchboard (or `--broker`) divided by the compared broker.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// Deliveries per broker CPU-second (higher is better).
    pub per_broker_cpu_s: f64,
    /// Deliveries per second (higher is better).
    pub rate_per_s: f64,
    /// Median latency (lower is better).
    pub latency_p50: f64,
    /// 99th percentile latency (lower is better).
    pub latency_p99: f64,
    /// RSS per idle connection (lower is better).
    pub rss_per_conn: Option<f64>,
}

/// The comparison line printed after every round.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Always `"summary"`.
    pub kind: &'static str,
    /// Scenario.
    pub scenario: Scenario,
    /// Transport.
    pub transport: Transport,
    /// QoS.
    pub qos: u8,
    /// Medians per broker, `--broker` first.
    pub brokers: Vec<Medians>,
    /// First broker / second broker.
    pub ratios: Option<Ratios>,
}

/// Runs `switchboard bench` until done or until `shutdown`.
///
/// # Errors
/// On invalid options, when a broker cannot be started, or when a run fails.
pub async fn run(args: BenchArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    tokio::select! {
        () = shutdown.cancelled() => bail!("interrupted"),
        result = run_all(&args) => result.map(|_| ()),
    }
}

/// Runs every round of every broker, printing as it goes; returns the per-run reports and the
/// summary.
///
/// # Errors
/// On invalid options, when a broker cannot be started, or when a run fails.
pub async fn run_all(args: &BenchArgs) -> anyhow::Result<(Vec<Report>, Summary)> {
    validate(args)?;
    let limit = raise_fd_limit()?;
    // A storm holds only `concurrency` connections at a time.
    let open = match args.scenario {
        Scenario::Storm => args.concurrency.min(connections(args)),
        _ => connections(args),
    };
    let needed = open as u64 + 64;
    if limit < needed {
        bail!("the open-file limit is {limit}, this scenario needs about {needed}");
    }
    let options = BrokerOptions {
        switchboard_bin: match &args.switchboard_bin {
            Some(path) => path.clone(),
            None => std::env::current_exe().context("cannot find the current executable")?,
        },
        mosquitto_bin: args.mosquitto_bin.clone(),
        persistence: args.persistence,
        mosquitto_nodelay: args.mosquitto_nodelay,
    };
    let mut brokers = vec![args.broker];
    if let Some(other) = args.compare {
        if other == args.broker {
            bail!("--compare names the same broker as --broker");
        }
        brokers.push(other);
    }
    let rounds = args
        .rounds
        .unwrap_or(if args.compare.is_some() { 3 } else { 1 });
    print_header();
    let mut reports = Vec::new();
    for round in 1..=rounds {
        let mut order = brokers.clone();
        if round % 2 == 0 {
            order.reverse();
        }
        for kind in order {
            eprintln!("bench: round {round}/{rounds}: {kind}");
            let report = run_one(args, &options, kind, round).await?;
            print_row(&report);
            println!("{}", serde_json::to_string(&report)?);
            reports.push(report);
        }
    }
    let summary = summarize(args, &brokers, &reports);
    print_summary(&summary);
    println!("{}", serde_json::to_string(&summary)?);
    Ok((reports, summary))
}

fn validate(args: &BenchArgs) -> anyhow::Result<()> {
    if args.payload < load::HEADER {
        bail!("--payload must be at least {} bytes", load::HEADER);
    }
    if args.payload > 1 << 20 {
        bail!("--payload must be at most 1 MiB");
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        bail!("--duration must be between 0 and 3600 seconds");
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!("--rate must be 0 or positive");
    }
    if !(1..=30_000).contains(&args.inflight) {
        bail!("--inflight must be between 1 and 30000");
    }
    if !(1..=1024).contains(&args.batch) {
        bail!("--batch must be between 1 and 1024");
    }
    if args.rounds.is_some_and(|r| r == 0 || r > MAX_ROUNDS) {
        bail!("--rounds must be between 1 and {MAX_ROUNDS}");
    }
    if args.pairs == 0 || args.subscribers == Some(0) || args.connections == Some(0) {
        bail!("--pairs, --subscribers and --connections must be positive");
    }
    if connections(args) > 100_000 {
        bail!("at most 100000 connections");
    }
    if let Some(addr) = args.connect {
        // The scenarios flood whatever they reach: keep them on this machine.
        if !addr.ip().is_loopback() || args.connect_ws.is_some_and(|a| !a.ip().is_loopback()) {
            bail!("--connect and --connect-ws must be loopback addresses");
        }
        if args.compare.is_some() {
            bail!("--compare starts both brokers itself; it does not go with --connect");
        }
        if args.transport == Transport::Ws && args.connect_ws.is_none() {
            bail!("--transport ws with --connect needs --connect-ws");
        }
    }
    Ok(())
}

fn subscribers(args: &BenchArgs) -> usize {
    match args.scenario {
        Scenario::P2p => args.pairs,
        Scenario::Fanout => args.subscribers.unwrap_or(500),
        Scenario::Fanin => args.subscribers.unwrap_or(4),
        Scenario::Idle | Scenario::Storm => 0,
    }
}

fn publishers(args: &BenchArgs) -> usize {
    match args.scenario {
        Scenario::P2p | Scenario::Fanin => args.pairs,
        Scenario::Fanout => 1,
        Scenario::Idle | Scenario::Storm => 0,
    }
}

fn connections(args: &BenchArgs) -> usize {
    match args.scenario {
        Scenario::Idle => args.connections.unwrap_or(10_000),
        Scenario::Storm => args.connections.unwrap_or(10_000),
        _ => publishers(args) + subscribers(args),
    }
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn flow(args: &BenchArgs) -> Flow {
    let (pub_topics, sub_filters, fanout) = match args.scenario {
        Scenario::Fanout => {
            let n = subscribers(args);
            (
                vec!["bench/fanout".to_owned()],
                vec!["bench/fanout".to_owned(); n],
                n as u64,
            )
        }
        Scenario::Fanin => (
            (0..args.pairs)
                .map(|i| format!("bench/fanin/{i}"))
                .collect(),
            vec!["$share/bench/bench/fanin/+".to_owned(); subscribers(args)],
            1,
        ),
        _ => {
            let topics: Vec<String> = (0..args.pairs).map(|i| format!("bench/p2p/{i}")).collect();
            (topics.clone(), topics, 1)
        }
    };
    Flow {
        pub_topics,
        sub_filters,
        fanout,
        qos: qos(args.qos),
        payload: args.payload,
        messages: args.messages,
        duration: Duration::from_secs_f64(args.duration),
        rate: args.rate,
        window: args.inflight,
        batch: args.batch,
    }
}

/// Starts `kind`, runs the scenario once, stops the broker.
async fn run_one(
    args: &BenchArgs,
    options: &BrokerOptions,
    kind: BrokerKind,
    round: usize,
) -> anyhow::Result<Report> {
    let (broker, mqtt, ws, pid) = match args.connect {
        Some(mqtt) => (None, mqtt, args.connect_ws.unwrap_or(mqtt), args.broker_pid),
        None => {
            let opts = options.clone();
            let broker =
                tokio::task::spawn_blocking(move || BrokerProcess::start(kind, &opts)).await??;
            let (mqtt, ws, pid) = (broker.mqtt, broker.ws, broker.pid());
            (Some(broker), mqtt, ws, Some(pid))
        }
    };
    let endpoint = Endpoint {
        mqtt,
        ws,
        transport: args.transport,
        version: args.mqtt_version.protocol(),
        persistent_session: args.persistent_session,
    };
    let m = match args.scenario {
        Scenario::Idle => load::run_idle(&endpoint, pid, connections(args), args.concurrency).await,
        Scenario::Storm => {
            load::run_storm(&endpoint, pid, connections(args), args.concurrency).await
        }
        _ => load::run_flow(&endpoint, pid, flow(args)).await,
    }
    .with_context(|| format!("{kind}, round {round}"))?;
    drop(broker);
    Ok(report(args, kind, round, &m))
}

fn report(args: &BenchArgs, broker: BrokerKind, round: usize, m: &Measurement) -> Report {
    let us = |ns: u64| ns as f64 / 1e3;
    let lost = m.expected.saturating_sub(m.delivered);
    let idle = args.scenario == Scenario::Idle;
    Report {
        kind: "run",
        broker,
        round,
        scenario: args.scenario,
        transport: args.transport,
        qos: args.qos,
        mqtt_version: args.mqtt_version.name(),
        payload: args.payload,
        batch: args.batch,
        publishers: publishers(args),
        subscribers: subscribers(args),
        connections: connections(args),
        persistent_session: args.persistent_session,
        persistence: args.persistence,
        sent: m.sent,
        expected: m.expected,
        delivered: m.delivered,
        lost,
        loss_pct: if m.expected == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / m.expected as f64
        },
        window_s: m.window_s,
        rate_per_s: ratio(m.delivered as f64, m.window_s),
        per_broker_cpu_s: ratio(m.delivered as f64, m.broker_cpu_s),
        latency_p50_us: us(m.latency.quantile(0.5)),
        latency_p99_us: us(m.latency.quantile(0.99)),
        latency_max_us: us(m.latency.max()),
        broker_cpu_s: m.broker_cpu_s,
        client_cpu_s: m.client_cpu_s,
        broker_peak_rss_kib: m.broker_hwm / 1024,
        rss_per_conn_b: idle.then(|| {
            (m.broker_rss_after as f64 - m.broker_rss_before as f64) / m.delivered.max(1) as f64
        }),
    }
}

/// `a / b`, 0 when `b` is not positive.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        f64::midpoint(values[mid - 1], values[mid])
    }
}

fn summarize(args: &BenchArgs, brokers: &[BrokerKind], reports: &[Report]) -> Summary {
    let medians: Vec<Medians> = brokers
        .iter()
        .map(|&broker| {
            let runs: Vec<&Report> = reports.iter().filter(|r| r.broker == broker).collect();
            let of = |f: fn(&Report) -> f64| median(runs.iter().map(|r| f(r)).collect());
            Medians {
                broker,
                rounds: runs.len(),
                rate_per_s: of(|r| r.rate_per_s),
                per_broker_cpu_s: of(|r| r.per_broker_cpu_s),
                latency_p50_us: of(|r| r.latency_p50_us),
                latency_p99_us: of(|r| r.latency_p99_us),
                latency_max_us: of(|r| r.latency_max_us),
                broker_peak_rss_kib: of(|r| r.broker_peak_rss_kib as f64),
                rss_per_conn_b: (args.scenario == Scenario::Idle)
                    .then(|| of(|r| r.rss_per_conn_b.unwrap_or(0.0))),
                lost: runs.iter().map(|r| r.lost).sum(),
            }
        })
        .collect();
    let ratios = match medians.as_slice() {
        [a, b] => Some(Ratios {
            per_broker_cpu_s: ratio(a.per_broker_cpu_s, b.per_broker_cpu_s),
            rate_per_s: ratio(a.rate_per_s, b.rate_per_s),
            latency_p50: ratio(a.latency_p50_us, b.latency_p50_us),
            latency_p99: ratio(a.latency_p99_us, b.latency_p99_us),
            rss_per_conn: a
                .rss_per_conn_b
                .zip(b.rss_per_conn_b)
                .map(|(a, b)| ratio(a, b)),
        }),
        _ => None,
    };
    Summary {
        kind: "summary",
        scenario: args.scenario,
        transport: args.transport,
        qos: args.qos,
        brokers: medians,
        ratios,
    }
}

fn print_header() {
    println!(
        "{:<12} {:>5} {:>10} {:>10} {:>8} {:>12} {:>12} {:>9} {:>9} {:>9} {:>7} {:>9} {:>9}",
        "broker",
        "round",
        "delivered",
        "lost",
        "window_s",
        "rate/s",
        "per_cpu_s",
        "p50_us",
        "p99_us",
        "max_us",
        "cpu_s",
        "peak_KiB",
        "B/conn"
    );
}

fn print_row(r: &Report) {
    println!(
        "{:<12} {:>5} {:>10} {:>10} {:>8.2} {:>12.0} {:>12.0} {:>9.1} {:>9.1} {:>9.1} {:>7.2} {:>9} {:>9}",
        r.broker.to_string(),
        r.round,
        r.delivered,
        r.lost,
        r.window_s,
        r.rate_per_s,
        r.per_broker_cpu_s,
        r.latency_p50_us,
        r.latency_p99_us,
        r.latency_max_us,
        r.broker_cpu_s,
        r.broker_peak_rss_kib,
        r.rss_per_conn_b
            .map_or_else(|| "-".to_owned(), |b| format!("{b:.0}")),
    );
}

fn print_summary(s: &Summary) {
    println!("median of rounds:");
    for m in &s.brokers {
        println!(
            "{:<12} {:>5} {:>10} {:>10} {:>8} {:>12.0} {:>12.0} {:>9.1} {:>9.1} {:>9.1} {:>7} {:>9.0} {:>9}",
            m.broker.to_string(),
            m.rounds,
            "",
            m.lost,
            "",
            m.rate_per_s,
            m.per_broker_cpu_s,
            m.latency_p50_us,
            m.latency_p99_us,
            m.latency_max_us,
            "",
            m.broker_peak_rss_kib,
            m.rss_per_conn_b
                .map_or_else(|| "-".to_owned(), |b| format!("{b:.0}")),
        );
    }
    if let (Some(r), [a, b]) = (&s.ratios, s.brokers.as_slice()) {
        println!(
            "ratio {} / {}: per broker CPU-s {:.2}x, rate {:.2}x, p50 latency {:.2}x, p99 latency {:.2}x{}",
            a.broker,
            b.broker,
            r.per_broker_cpu_s,
            r.rate_per_s,
            r.latency_p50,
            r.latency_p99,
            r.rss_per_conn.map_or_else(String::new, |x| format!(
                ", RSS per idle connection {x:.2}x"
            )),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }

    #[test]
    fn ratio_of_zero_is_zero() {
        assert_eq!(ratio(1.0, 0.0), 0.0);
        assert_eq!(ratio(3.0, 2.0), 1.5);
    }
}
