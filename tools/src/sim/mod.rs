//! Simulated smart plugs: `switchboard sim` and the household of `switchboard demo`.
//!
//! The device logic is sans-I/O ([`SimDevice`]: messages and the current time in, messages to
//! publish out), one module per firmware family imitating what the real firmware publishes
//! (see `DEVICES.md`): [`tasmota`], [`shelly_gen1`], [`shelly_gen2`], [`zigbee2mqtt`] and
//! [`homeassistant`] (ESPHome-style discovery). [`appliance`] models what is plugged in,
//! [`household`] builds deterministic fleets, [`driver`] runs them over
//! [`crate::mqtt_client`] connections against any broker, and [`banner`] prints the demo's
//! URLs and QR code.

pub mod appliance;
pub mod banner;
pub mod device;
pub mod driver;
pub mod homeassistant;
pub mod household;
pub mod shelly_gen1;
pub mod shelly_gen2;
pub mod tasmota;
pub mod zigbee2mqtt;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

pub use appliance::Appliance;
pub use device::{Behaviour, Firmware, Outgoing, Plug, PlugSpec, SimDevice, SimMessage};
pub use driver::{BrokerOptions, run, spawn};
pub use household::{Profile, SimConfig, device_id, fleet, household_meta};

use crate::mqtt_client::{Client, ClientOptions};

/// Unix time now, for [`Behaviour::epoch_secs`] in real runs.
#[must_use]
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Publishes `messages` from a short-lived client (retrying the connection until `shutdown`),
/// waiting for each QoS 1 acknowledgement, then disconnects.
///
/// # Errors
/// A publication was refused; connection failures are retried instead.
pub async fn publish_once(
    broker: &BrokerOptions,
    client_id: &str,
    messages: Vec<SimMessage>,
    shutdown: &CancellationToken,
) -> Result<(), crate::mqtt_client::Error> {
    let mut options = ClientOptions::new(broker.addr.clone(), client_id)
        .with_credentials(broker.username.clone(), broker.password.clone());
    options.reconnect = None;
    let mut delay = Duration::from_millis(100);
    let (client, _events) = loop {
        match Client::connect(options.clone()).await {
            Ok(c) => break c,
            Err(err) => {
                tracing::debug!("{client_id}: cannot connect yet: {err}");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    };
    for m in messages {
        client
            .publish(m.topic, m.payload, m.qos, m.retain)
            .await?
            .completed()
            .await?;
    }
    client.disconnect().await;
    Ok(())
}

/// Starts the demo household against a gateway listening on `mqtt` (MQTT over TCP) and `http`
/// (the dashboard), and prints the banner. Called from `switchboard demo` once the gateway has
/// bound its listeners; the devices connect to the first MQTT listener over loopback and stop
/// (saying "offline") when `shutdown` is cancelled.
pub fn start_demo(
    http: &[SocketAddr],
    mqtt: &[SocketAddr],
    plugs: usize,
    shutdown: &CancellationToken,
) {
    let lan = banner::lan_addresses();
    println!("{}", banner::banner(http, mqtt, &lan, plugs));
    let Some(mqtt) = mqtt.first() else {
        tracing::warn!("demo: no MQTT listener, the simulated household cannot connect");
        return;
    };
    let ip = match mqtt.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let broker = BrokerOptions {
        addr: SocketAddr::new(ip, mqtt.port()).to_string(),
        username: None,
        password: None,
    };
    let config = SimConfig {
        count: plugs,
        profile: Profile::Mixed,
        seed: 1,
        behaviour: Behaviour {
            epoch_secs: unix_now(),
            ..Behaviour::default()
        },
    };
    let devices = fleet(&config);
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let meta = household_meta(&devices);
        if let Err(err) = publish_once(&broker, "switchboard-demo-setup", meta, &shutdown).await {
            tracing::warn!("demo: cannot name the household's plugs: {err}");
        }
        tracing::info!(plugs, broker = %broker.addr, "demo household connecting");
        run(devices, &broker, shutdown).await;
    });
}

#[cfg(test)]
mod tests {
    use switchboard_devices::{Availability, Registry, RelayState, topic_matches};

    use super::*;

    fn feed(reg: &mut Registry, out: Vec<Outgoing>, now: Duration) -> Vec<SimMessage> {
        let mut sent = Vec::new();
        for o in out {
            if let Outgoing::Publish(m) = o {
                let ms = now.as_millis() as u64;
                reg.handle_message(&m.topic, m.payload.as_bytes(), m.retain, ms);
                sent.push(m);
            }
        }
        sent
    }

    /// The controller-side device model reads every family the simulator speaks, and a command
    /// the model writes is confirmed by the simulated device.
    #[test]
    fn the_device_model_understands_every_family() {
        let config = SimConfig {
            behaviour: Behaviour {
                button_mean: None,
                ..Behaviour::default()
            },
            ..SimConfig::default()
        };
        let mut devices = fleet(&config);
        let mut reg = Registry::new();
        let t0 = Duration::from_secs(1);
        let meta: Vec<_> = household_meta(&devices)
            .into_iter()
            .map(Outgoing::Publish)
            .collect();
        feed(&mut reg, meta, t0);
        for d in &mut devices {
            let out = d.on_connect(t0);
            feed(&mut reg, out, t0);
        }
        // The dashboard subscribes to Home Assistant availability and state topics once it has
        // read the configs, and the broker then sends their retained messages: replay them.
        let retained: Vec<_> = devices
            .iter()
            .flat_map(|d| d.clone().on_connect(t0))
            .filter(|o| matches!(o, Outgoing::Publish(m) if m.retain))
            .collect();
        feed(&mut reg, retained, t0);
        let t1 = Duration::from_secs(11);
        for d in &mut devices {
            let out = d.tick(t1);
            feed(&mut reg, out, t1);
        }
        assert_eq!(reg.len(), 12);
        let mut t = t1;
        for d in &mut devices {
            for i in 0..d.plugs().len() {
                let id = device_id(d, i);
                let plug = d.plugs()[i].clone();
                let seen = reg.get(&id).unwrap_or_else(|| panic!("{id} unknown"));
                assert_eq!(seen.online, Availability::Online, "{id}");
                assert_eq!(seen.name, plug.spec.name, "{id}");
                assert_eq!(seen.room.as_deref(), Some(plug.spec.room.as_str()), "{id}");
                assert_eq!(seen.relays[0].state, RelayState::from_bool(plug.on), "{id}");
                assert!(seen.power_w.is_some(), "{id} meters power");
                assert!(seen.energy_total_kwh.is_some(), "{id} counts energy");
                // Switch it the other way through the model, as the dashboard would.
                t += Duration::from_secs(1);
                let want = !plug.on;
                let commands = reg
                    .command(&id, 0, want, t.as_millis() as u64)
                    .unwrap_or_else(|e| panic!("{id}: {e}"));
                for c in commands {
                    assert!(!c.retain, "never retain a command");
                    assert!(
                        d.subscriptions()
                            .iter()
                            .any(|(f, _)| topic_matches(f, &c.topic)),
                        "{id}: {} reaches the device",
                        c.topic
                    );
                    let out = d.handle_command(&c.topic, &c.payload, t);
                    feed(&mut reg, out, t);
                }
                let seen = reg.get(&id).unwrap();
                assert_eq!(seen.relays[0].state, RelayState::from_bool(want), "{id}");
                assert_eq!(seen.relays[0].pending, None, "{id} confirmed");
            }
        }
    }
}
