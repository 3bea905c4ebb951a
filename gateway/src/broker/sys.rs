//! The retained `$SYS/broker/...` topics, refreshed every `sys_interval` seconds from the
//! broker's [`Metrics`](super::Metrics).

use std::time::Duration;

use switchboard_mqtt::QoS;
use tokio_util::sync::CancellationToken;

use super::{Broker, Metrics};

/// Publishes the `$SYS` topics once now, then every interval, until `shutdown`.
pub(super) async fn run(broker: &Broker, shutdown: CancellationToken) {
    let secs = broker.config().sys_interval;
    if secs == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => publish(broker),
        }
    }
}

fn publish(broker: &Broker) {
    let m = broker.metrics();
    let topics: [(&str, String); 10] = [
        (
            "version",
            format!("switchboard {}", env!("CARGO_PKG_VERSION")),
        ),
        ("uptime", format!("{} seconds", broker.uptime().as_secs())),
        (
            "clients/connected",
            Metrics::get(&m.clients_connected).to_string(),
        ),
        ("clients/total", Metrics::get(&m.sessions).to_string()),
        (
            "messages/received",
            Metrics::get(&m.messages_received).to_string(),
        ),
        ("messages/sent", Metrics::get(&m.messages_sent).to_string()),
        (
            "bytes/received",
            Metrics::get(&m.bytes_received).to_string(),
        ),
        ("bytes/sent", Metrics::get(&m.bytes_sent).to_string()),
        (
            "subscriptions/count",
            Metrics::get(&m.subscriptions).to_string(),
        ),
        (
            "retained messages/count",
            Metrics::get(&m.retained).to_string(),
        ),
    ];
    for (name, value) in topics {
        broker.publish_internal(format!("$SYS/broker/{name}"), value, QoS::AtMostOnce, true);
    }
}
