//! The tokio driver: runs each [`SimDevice`] over its own [`Client`] connection.
//!
//! One task per device. It connects with the device's client id, keep alive and last will,
//! subscribes, publishes what [`SimDevice::on_connect`] returns, then loops: a received message
//! goes to [`SimDevice::handle_command`], the device's wake-up time to [`SimDevice::tick`], a
//! reconnection (made by the client) to [`SimDevice::on_connect`] again. A
//! [`Outgoing::GoOffline`] fault aborts the connection without DISCONNECT so the broker
//! publishes the will, waits, and connects anew. On shutdown each device publishes its
//! "offline" availability and disconnects cleanly.
//!
//! Simulation time is `tokio::time::Instant` since the driver started, so tests running under
//! tokio's paused clock get virtual time for free.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::device::{Outgoing, SimDevice, SimMessage};
use crate::mqtt_client::{Client, ClientOptions, Event, Reconnect, Will};

/// Where the simulated devices connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerOptions {
    /// `host:port`.
    pub addr: String,
    /// User name for every device.
    pub username: Option<String>,
    /// Password for every device.
    pub password: Option<String>,
}

impl BrokerOptions {
    /// Parses `mqtt://HOST:PORT`, `tcp://HOST:PORT` or `HOST[:PORT]` (port 1883 by default).
    ///
    /// # Errors
    /// A scheme other than `mqtt`/`tcp` (TLS is not supported by the simulator), or an empty
    /// host.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = match url.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => rest,
            Some((scheme, _)) => {
                return Err(format!("unsupported scheme {scheme}:// (use mqtt://)"));
            }
            None => url,
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.starts_with(':') {
            return Err(format!("no host in {url:?}"));
        }
        // `host:port`, `[v6]:port`, or a host without port.
        let has_port = match rest.rfind(':') {
            Some(i) => {
                rest.starts_with('[') == rest[..i].ends_with(']') && !rest[i + 1..].is_empty()
            }
            None => false,
        };
        let addr = if has_port {
            rest.to_owned()
        } else {
            format!("{rest}:1883")
        };
        Ok(Self {
            addr,
            username: None,
            password: None,
        })
    }
}

/// Spawns one task per device on `tracker`; they stop (publishing "offline" first) when
/// `shutdown` is cancelled. Returns at once.
pub fn spawn(
    devices: Vec<SimDevice>,
    broker: &BrokerOptions,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let broker = Arc::new(broker.clone());
    let origin = Instant::now();
    for device in devices {
        tracker.spawn(run_device(device, broker.clone(), origin, shutdown.clone()));
    }
}

/// Runs `devices` until `shutdown` is cancelled and every device has said goodbye.
pub async fn run(devices: Vec<SimDevice>, broker: &BrokerOptions, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    spawn(devices, broker, &tracker, &shutdown);
    tracker.close();
    tracker.wait().await;
}

/// Publishes one message; failures (QoS 0 while disconnected) only matter to the log.
async fn publish(client: &Client, m: SimMessage) {
    if let Err(err) = client.publish(m.topic, m.payload, m.qos, m.retain).await {
        tracing::debug!("simulated publish failed: {err}");
    }
}

/// What the device loop asks of the connection loop.
enum Next {
    /// Reconnect at once (the client stopped).
    Reconnect,
    /// Stay away until this simulation time, then reconnect.
    OfflineUntil(Duration),
    /// Shut down.
    Stop,
}

async fn run_device(
    mut device: SimDevice,
    broker: Arc<BrokerOptions>,
    origin: Instant,
    shutdown: CancellationToken,
) {
    let now = || origin.elapsed();
    let will = device.will();
    let mut options = ClientOptions::new(broker.addr.clone(), device.client_id())
        .with_credentials(broker.username.clone(), broker.password.clone())
        .with_will(Will {
            topic: will.topic,
            payload: will.payload.into(),
            qos: will.qos,
            retain: will.retain,
        });
    options.keep_alive = device.keep_alive();
    options.reconnect = Some(Reconnect {
        min_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(15),
    });
    let filters = device.subscriptions();
    let mut backoff = Duration::from_millis(250);
    loop {
        let connected = tokio::select! {
            () = shutdown.cancelled() => return,
            c = Client::connect(options.clone()) => c,
        };
        let (client, mut events) = match connected {
            Ok(c) => c,
            Err(err) => {
                tracing::debug!(
                    client = device.client_id(),
                    "simulated device cannot connect: {err}"
                );
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(15));
                continue;
            }
        };
        backoff = Duration::from_millis(250);
        let refs: Vec<(&str, _)> = filters.iter().map(|(f, q)| (f.as_str(), *q)).collect();
        if let Err(err) = client.subscribe(&refs).await {
            tracing::debug!(client = device.client_id(), "subscribe failed: {err}");
            client.abort().await;
            continue;
        }
        // The first event is this connection's `Connected`: it makes the device announce
        // itself, now that its subscriptions are in place.
        let mut next = None;
        let mut announced = false;
        while next.is_none() {
            let wake = origin + device.next_wakeup();
            next = tokio::select! {
                () = shutdown.cancelled() => Some(Next::Stop),
                event = events.recv() => match event {
                    None => Some(Next::Reconnect),
                    Some(Event::Message(m)) => {
                        let out = device.handle_command(&m.topic, &m.payload, now());
                        apply(&client, out).await
                    }
                    // This connection, or a reconnection made by the client: announce.
                    Some(Event::Connected { .. }) => {
                        announced = true;
                        apply(&client, device.on_connect(now())).await
                    }
                    Some(Event::Disconnected { .. }) => None,
                },
                () = tokio::time::sleep_until(wake), if announced => {
                    apply(&client, device.tick(now())).await
                }
            };
        }
        match next {
            Some(Next::Stop) | None => {
                let goodbye = device.on_shutdown(now());
                // Wait (briefly) for the retained "offline" to be acknowledged.
                let mut pending = Vec::new();
                for o in goodbye {
                    if let Outgoing::Publish(m) = o
                        && let Ok(p) = client.publish(m.topic, m.payload, m.qos, m.retain).await
                    {
                        pending.push(p);
                    }
                }
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    for p in pending {
                        let _ = p.completed().await;
                    }
                })
                .await;
                client.disconnect().await;
                return;
            }
            Some(Next::Reconnect) => {}
            Some(Next::OfflineUntil(until)) => {
                client.abort().await;
                drop(events);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep_until(origin + until) => {}
                }
            }
        }
    }
}

/// Publishes the device's output in order; a fault ends the batch.
async fn apply(client: &Client, out: Vec<Outgoing>) -> Option<Next> {
    for o in out {
        match o {
            Outgoing::Publish(m) => publish(client, m).await,
            Outgoing::GoOffline { until } => return Some(Next::OfflineUntil(until)),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let p = |s: &str| BrokerOptions::parse(s).map(|b| b.addr);
        assert_eq!(p("mqtt://127.0.0.1:1884"), Ok("127.0.0.1:1884".into()));
        assert_eq!(p("mqtt://broker.lan"), Ok("broker.lan:1883".into()));
        assert_eq!(p("localhost:1999"), Ok("localhost:1999".into()));
        assert_eq!(p("tcp://[::1]:1883/"), Ok("[::1]:1883".into()));
        assert_eq!(p("mqtt://[::1]"), Ok("[::1]:1883".into()));
        assert!(p("mqtts://x").is_err());
        assert!(p("mqtt://").is_err());
    }
}
