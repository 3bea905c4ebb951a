//! The Switchboard broker-gateway as a library, so integration tests can run it in-process.
//!
//! `main.rs` parses the command line into a [`config::Config`] and calls [`run`]. [`run`] binds
//! every listener first (so a port-0 address is resolved and logged before anything is served),
//! then serves until the shutdown token is cancelled.

pub mod api;
pub mod broker;
pub mod cert;
pub mod cli;
pub mod clock;
pub mod config;
mod cross_site;
pub mod devices;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod listen;
pub mod observe;
pub mod prompt;
pub mod schedule;
pub mod scram;
pub mod security;
pub mod shutdown;
pub mod tls;
pub mod web;
pub mod ws;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Addresses the gateway actually bound, in the order of the configuration.
#[derive(Debug, Clone, Default)]
pub struct Bound {
    /// MQTT over TCP listeners.
    pub mqtt: Vec<SocketAddr>,
    /// HTTP (dashboard, `/healthz`, WebSocket) listeners; HTTPS when `[tls]` is configured.
    pub http: Vec<SocketAddr>,
    /// MQTT over TLS listeners.
    pub mqtts: Vec<SocketAddr>,
}

/// Binds every configured listener.
///
/// # Errors
/// Fails with the address in the message when a listener cannot be bound.
pub async fn bind(config: &Config) -> anyhow::Result<(Vec<TcpListener>, Vec<TcpListener>)> {
    let mut mqtt = Vec::new();
    for addr in &config.listeners.mqtt {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind MQTT listener on {addr}"))?;
        mqtt.push(listener);
    }
    let mut http = Vec::new();
    for addr in &config.listeners.http {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind HTTP listener on {addr}"))?;
        http.push(listener);
    }
    Ok((mqtt, http))
}

/// Runs the gateway until `shutdown` is cancelled.
///
/// `on_bound` is called once every listener is bound, with the real addresses.
///
/// # Errors
/// Fails when a listener cannot be bound or the data directory cannot be created.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    on_bound: impl FnOnce(&Bound),
) -> anyhow::Result<()> {
    run_with(config, RunOptions::default(), shutdown, on_bound).await
}

/// What tests may replace in a running gateway.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The clock schedules and the device model read (default: the system clock).
    pub clock: Option<std::sync::Arc<dyn schedule::Clock>>,
}

/// [`run`] with [`RunOptions`].
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    config: Config,
    options: RunOptions,
    shutdown: CancellationToken,
    on_bound: impl FnOnce(&Bound),
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    // The store is read back before any listener exists, so restored sessions are routable
    // before the first PUBLISH is accepted.
    let store = open_store(&config)?;
    // Users, ACLs and tokens: a bad file fails the start (a SIGHUP reload keeps the old rules).
    // The device channel's state topics are the gateway's own (it derives them from the
    // devices): a client publishing there could show a plug as switched when it is not.
    let security = std::sync::Arc::new(
        security::Security::new(
            config.security.clone(),
            config.limits.clone(),
            config.broker.deny_subscribe.clone(),
            Some(&config.data_dir),
        )?
        .reserve([
            switchboard_devices::view::VIEW_FILTER.to_owned(),
            // The broker's own topics (statistics, the schedules' time zone).
            "$SYS/#".to_owned(),
        ]),
    );
    // Installed before anything is bound or announced, so a SIGHUP right after start reloads
    // instead of taking the default action (terminating the process).
    let hangup = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?
    };
    // TLS certificate and SCRAM credentials: a bad file fails the start, before anything is
    // bound (a SIGHUP reload keeps the old ones).
    let tls = config.tls.as_ref().map(tls::Tls::load).transpose()?;
    let scram_file = config.scram.file.clone();
    let scram = scram_file
        .as_deref()
        .map(scram::Credentials::load)
        .transpose()?;
    let (mqtt, http) = bind(&config).await?;
    let mqtts = bind_mqtts(&config).await?;
    let bound = Bound {
        mqtt: mqtt.iter().filter_map(|l| l.local_addr().ok()).collect(),
        http: http.iter().filter_map(|l| l.local_addr().ok()).collect(),
        mqtts: mqtts.iter().filter_map(|l| l.local_addr().ok()).collect(),
    };
    for addr in &bound.mqtts {
        tracing::info!("listening mqtts={addr}");
    }
    for addr in &bound.mqtt {
        tracing::info!("listening mqtt={addr}");
    }
    for addr in &bound.http {
        tracing::info!("listening http={addr}");
    }
    on_bound(&bound);

    let tracker = tokio_util::task::TaskTracker::new();
    let broker = broker::Broker::with_security(
        config.broker.clone(),
        std::sync::Arc::clone(&store),
        security,
    );
    let site = http::Site::new(config.www.clone())
        .with_mqtt(&config.http, std::sync::Arc::new(broker.clone()));
    let clock = options
        .clock
        .unwrap_or_else(|| std::sync::Arc::new(schedule::SystemClock));
    let devices = devices::Devices::new(
        broker.clone(),
        std::sync::Arc::clone(&clock),
        Duration::from_millis(config.api.command_timeout_ms),
    );
    let zone = config.schedules.zone();
    tracing::info!(time_zone = zone.name(), "schedules run in {}", zone.name());
    let schedules = schedule::Schedules::new(broker.clone(), zone, clock);
    let site = site.with_api(api::Api::new(
        broker.clone(),
        devices.clone(),
        schedules.clone(),
        &config.api,
        &config.http,
    ));
    tracker.spawn(devices::run(devices.clone(), shutdown.clone()));
    tracker.spawn(schedule::run(schedules, devices, shutdown.clone()));
    if let Some(credentials) = scram {
        tracing::info!(users = credentials.len(), "SCRAM-SHA-256 enabled");
        broker.set_scram_credentials(Some(std::sync::Arc::new(credentials)));
    }
    reload_on_sighup(
        hangup,
        tls.clone(),
        broker.clone(),
        scram_file,
        &tracker,
        shutdown.clone(),
    );
    for listener in http {
        tracker.spawn(http::serve_tls(
            listener,
            site.clone(),
            tls.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(tls) = &tls {
        for listener in mqtts {
            tracker.spawn(tls::serve_mqtts(
                listener,
                std::sync::Arc::clone(tls),
                broker.clone(),
                tracker.clone(),
                shutdown.clone(),
            ));
        }
    }
    for listener in mqtt {
        tracker.spawn(accept_mqtt(
            listener,
            broker.clone(),
            tracker.clone(),
            shutdown.clone(),
        ));
    }
    {
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move { broker.run_sys(shutdown).await });
    }
    tracker.close();
    shutdown.cancelled().await;
    let deadline = Duration::from_secs(config.broker.shutdown_timeout);
    if tokio::time::timeout(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "shutdown: tasks still running after {deadline:?} ([broker] shutdown_timeout); \
             abandoning them"
        );
    }
    // Commits what is pending and releases the file (timers may still hold the broker).
    store.close();
    tracing::info!("stopped");
    Ok(())
}

/// Binds the MQTT over TLS listeners: `[listeners] mqtts`, by default `0.0.0.0:8883` when
/// `[tls]` is configured.
///
/// # Errors
/// `mqtts` listeners without `[tls]`, or a listener that cannot be bound.
async fn bind_mqtts(config: &Config) -> anyhow::Result<Vec<TcpListener>> {
    let addrs = match (&config.listeners.mqtts, &config.tls) {
        (Some(addrs), Some(_)) => addrs.clone(),
        (None, Some(_)) => vec![tls::DEFAULT_MQTTS.parse().expect("valid default address")],
        (Some(addrs), None) if !addrs.is_empty() => {
            anyhow::bail!("[listeners] mqtts needs a [tls] table with cert and key")
        }
        (_, None) => Vec::new(),
    };
    let mut listeners = Vec::new();
    for addr in addrs {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind MQTT over TLS listener on {addr}"))?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// On every SIGHUP until `shutdown`: reloads the security rules (password, ACL and revocation
/// files; open connections whose login the new rules reject are cut), the TLS certificate and
/// key, and the SCRAM credential file. A failed reload keeps what is in force and logs why.
fn reload_on_sighup(
    mut hangup: tokio::signal::unix::Signal,
    tls: Option<std::sync::Arc<tls::Tls>>,
    broker: broker::Broker,
    scram_file: Option<std::path::PathBuf>,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: CancellationToken,
) {
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                got = hangup.recv() => if got.is_none() { return },
            }
            // File reads and parsing off the reactor.
            let rules = broker.clone();
            let _ = tokio::task::spawn_blocking(move || rules.reload_security()).await;
            if let Some(tls) = &tls
                && let Err(err) = tls.reload()
            {
                tracing::error!(
                    "SIGHUP: TLS reload failed, keeping the previous certificate: {err:#}"
                );
            }
            if let Some(path) = &scram_file {
                match scram::Credentials::load(path) {
                    Ok(credentials) => {
                        tracing::info!(users = credentials.len(), "SCRAM credentials reloaded");
                        broker.set_scram_credentials(Some(std::sync::Arc::new(credentials)));
                    }
                    Err(err) => {
                        tracing::error!("SIGHUP: {err:#}; keeping the previous SCRAM credentials")
                    }
                }
            }
        }
    });
}

/// The configured store: redb under the data directory, or memory for `durability = "none"`.
fn open_store(config: &Config) -> anyhow::Result<std::sync::Arc<dyn broker::Store>> {
    if config.store.durability == broker::DurabilityMode::None {
        return Ok(std::sync::Arc::new(broker::MemoryStore));
    }
    let path = config
        .store
        .path
        .clone()
        .unwrap_or_else(|| config.data_dir.join("switchboard.redb"));
    Ok(std::sync::Arc::new(broker::RedbStore::open(
        &path,
        &config.store,
    )?))
}

/// Accepts MQTT over TCP connections until `shutdown`, one task per connection (tracked by
/// `tracker`, holding a connection permit for its lifetime).
async fn accept_mqtt(
    listener: TcpListener,
    broker: broker::Broker,
    tracker: tokio_util::task::TaskTracker,
    shutdown: CancellationToken,
) {
    listen::accept_until(&listener, "mqtt", &shutdown, |stream, peer| {
        let Some(permit) = broker.try_acquire_connection() else {
            tracing::warn!(%peer, "connection limit reached, closing new connection");
            return;
        };
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            broker
                .serve_connection(stream, peer, broker::Transport::Tcp, shutdown)
                .await;
            drop(permit);
        });
    })
    .await;
}
