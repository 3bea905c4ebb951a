//! The Switchboard broker-gateway as a library, so integration tests can run it in-process.
//!
//! `main.rs` parses the command line into a [`config::Config`] and calls [`run`]. [`run`] binds
//! every listener first (so a port-0 address is resolved and logged before anything is served),
//! then serves until the shutdown token is cancelled.

pub mod bench;
pub mod broker;
pub mod config;
pub mod http;
pub mod mqtt_client;
pub mod shutdown;
pub mod sim;
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
    /// HTTP (dashboard, `/healthz`, WebSocket) listeners.
    pub http: Vec<SocketAddr>,
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
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let (mqtt, http) = bind(&config).await?;
    let bound = Bound {
        mqtt: mqtt.iter().filter_map(|l| l.local_addr().ok()).collect(),
        http: http.iter().filter_map(|l| l.local_addr().ok()).collect(),
    };
    for addr in &bound.mqtt {
        tracing::info!("listening mqtt={addr}");
    }
    for addr in &bound.http {
        tracing::info!("listening http={addr}");
    }
    on_bound(&bound);

    let tracker = tokio_util::task::TaskTracker::new();
    let broker = broker::Broker::new(config.broker.clone());
    let site = http::Site::new(config.www.clone())
        .with_mqtt(&config.http, std::sync::Arc::new(broker.clone()));
    for listener in http {
        tracker.spawn(http::serve(listener, site.clone(), shutdown.clone()));
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
    tracker.wait().await;
    tracing::info!("stopped");
    Ok(())
}

/// Accepts MQTT over TCP connections until `shutdown`, one task per connection (tracked by
/// `tracker`, holding a connection permit for its lifetime). Accept errors (for example out of
/// file descriptors) back off from 10 ms up to 1 s instead of spinning.
async fn accept_mqtt(
    listener: TcpListener,
    broker: broker::Broker,
    tracker: tokio_util::task::TaskTracker,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let Some(permit) = broker.try_acquire_connection() else {
                    tracing::warn!(%peer, "connection limit reached, closing new connection");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let broker = broker.clone();
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    broker
                        .serve_connection(stream, peer, broker::Transport::Tcp, shutdown)
                        .await;
                    drop(permit);
                });
            }
            Err(err) => {
                tracing::warn!("accept failed: {err}; retrying in {backoff:?}");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
