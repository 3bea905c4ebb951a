//! The gateway's own view of the devices: a [`Registry`] fed by an in-process subscription to
//! the device topics, so the HTTP API and the schedules can read and switch plugs without a
//! browser or an MQTT connection.
//!
//! It also runs the normalised device channel ([`switchboard_devices::view`]): every change of
//! a device is published as retained JSON on `switchboard/devices/<id>` (kept in memory only:
//! it is derived again from the devices' own retained messages after a restart), and commands
//! on `switchboard/devices/<id>/set` are carried out in the device's own convention. Embedded
//! widgets use it with a token scoped to exactly those two topics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_devices::view::{self, DeviceView, SetAction, SetCommand};
use switchboard_devices::{
    Change, CommandError, Device, DeviceId, Registry, RegistryConfig, RelayState, SUBSCRIPTIONS,
};
use switchboard_mqtt::QoS;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, InternalSubscriber};
use crate::clock::Clock;

/// Shared handle on the registry. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Devices {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    broker: Broker,
    clock: Arc<dyn Clock>,
    /// `parking_lot::Mutex`: held for short sections without `.await`.
    registry: parking_lot::Mutex<Registry>,
    /// Bumped after every change of the registry; waiters (power commands, schedules) watch it.
    version: watch::Sender<u64>,
    /// The payload last published on each device's channel topic, so unchanged views are not
    /// sent again. `parking_lot::Mutex`: held without `.await`, never together with `registry`.
    views: parking_lot::Mutex<HashMap<DeviceId, Bytes>>,
}

/// Why a power command failed.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    /// The registry refused the command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The device did not confirm in time.
    #[error("device {0} did not confirm within {1:?}")]
    Timeout(DeviceId, Duration),
}

impl Devices {
    /// An empty registry whose commands stay pending for `command_timeout`.
    #[must_use]
    pub fn new(broker: Broker, clock: Arc<dyn Clock>, command_timeout: Duration) -> Self {
        let config = RegistryConfig {
            command_timeout_ms: u64::try_from(command_timeout.as_millis()).unwrap_or(u64::MAX),
            ..RegistryConfig::default()
        };
        Self {
            inner: Arc::new(Inner {
                broker,
                clock,
                registry: parking_lot::Mutex::new(Registry::with_config(config)),
                version: watch::Sender::new(0),
                views: parking_lot::Mutex::default(),
            }),
        }
    }

    /// Runs `f` on the registry (no `.await` inside: the lock is held).
    pub fn with_registry<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        f(&self.inner.registry.lock())
    }

    /// Every device, ordered by id.
    #[must_use]
    pub fn list(&self) -> Vec<Device> {
        self.with_registry(|r| r.devices().cloned().collect())
    }

    /// One device.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<Device> {
        self.with_registry(|r| r.get(&DeviceId::from(id)).cloned())
    }

    /// A receiver that sees a new value after every change.
    #[must_use]
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.version.subscribe()
    }

    /// Sends the command switching `relay` of `id` (publishing what the registry asks for).
    ///
    /// # Errors
    /// The registry refused it (unknown device or relay, offline, not commandable).
    pub fn command(&self, id: &DeviceId, relay: u8, on: bool) -> Result<(), CommandError> {
        let now = self.inner.clock.now_ms();
        let out = self.inner.registry.lock().command(id, relay, on, now)?;
        self.bump();
        self.publish_views([id]);
        for m in out {
            let qos = if m.qos == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            };
            self.inner
                .broker
                .publish_internal(m.topic, m.payload, qos, m.retain);
        }
        Ok(())
    }

    /// Switches and waits until the device confirms the new state (or `timeout` passes).
    ///
    /// # Errors
    /// [`PowerError::Command`] when refused, [`PowerError::Timeout`] when not confirmed.
    pub async fn power(
        &self,
        id: &DeviceId,
        relay: u8,
        on: bool,
        timeout: Duration,
    ) -> Result<Device, PowerError> {
        let mut changes = self.changes();
        self.command(id, relay, on)?;
        let confirmed = async {
            loop {
                let done = self.with_registry(|r| {
                    r.get(id).and_then(|d| {
                        let relay = d.relay(relay)?;
                        (relay.pending.is_none()
                            && relay.state == switchboard_devices::RelayState::from_bool(on))
                        .then(|| d.clone())
                    })
                });
                if let Some(device) = done {
                    return Some(device);
                }
                if changes.changed().await.is_err() {
                    return None;
                }
            }
        };
        match tokio::time::timeout(timeout, confirmed).await {
            Ok(Some(device)) => Ok(device),
            _ => Err(PowerError::Timeout(id.clone(), timeout)),
        }
    }

    fn bump(&self) {
        self.inner.version.send_modify(|v| *v += 1);
    }

    /// Publishes the channel view of each of `ids` that changed since it was last published
    /// (an empty retained message for a device that is gone).
    fn publish_views<'a>(&self, ids: impl IntoIterator<Item = &'a DeviceId>) {
        for id in ids {
            let payload =
                self.with_registry(|r| r.get(id).map(|d| Bytes::from(DeviceView::of(d).to_json())));
            let mut views = self.inner.views.lock();
            let changed = match &payload {
                Some(p) => views.insert(id.clone(), p.clone()).as_ref() != Some(p),
                None => views.remove(id).is_some(),
            };
            drop(views);
            if changed {
                self.inner
                    .broker
                    .publish_volatile_retained(view::view_topic(id), payload.unwrap_or_default());
            }
        }
    }

    /// Publishes the views of the devices `changes` name.
    fn publish_changes(&self, changes: &[Change]) {
        self.publish_views(changes.iter().filter_map(|c| match c {
            Change::Added(id)
            | Change::Updated(id)
            | Change::Removed(id)
            | Change::CommandTimedOut { id, .. } => Some(id),
            Change::SubscriptionsChanged => None,
        }));
    }

    /// Carries out a command from the device channel's `…/set` topic.
    ///
    /// # Errors
    /// What was wrong with the topic, the payload or the command, for the log.
    fn handle_set(&self, topic: &str, payload: &[u8]) -> Result<(), String> {
        let Some(id) = view::parse_set_topic(topic) else {
            return Ok(());
        };
        let id = id.map_err(|e| e.to_string())?;
        let cmd = SetCommand::parse(payload).map_err(|e| e.to_string())?;
        let on = match cmd.action {
            SetAction::Set(on) => on,
            SetAction::Toggle => {
                let state = self.with_registry(|r| {
                    r.get(&id)
                        .and_then(|d| d.relay(cmd.relay))
                        .map(|relay| relay.state)
                });
                match state {
                    Some(RelayState::On) => false,
                    Some(RelayState::Off) => true,
                    Some(RelayState::Unknown) => {
                        return Err(format!(
                            "cannot toggle relay {} of {id}: its state is not known yet",
                            cmd.relay
                        ));
                    }
                    // Unknown device or relay: let the registry name it.
                    None => true,
                }
            }
        };
        self.command(&id, cmd.relay, on).map_err(|e| e.to_string())
    }

    fn handle(&self, sub: &InternalSubscriber, topic: &str, payload: &[u8], retained: bool) {
        let now = self.inner.clock.now_ms();
        let (changes, dynamic) = {
            let mut registry = self.inner.registry.lock();
            let changes = registry.handle_message(topic, payload, retained, now);
            let dynamic = changes
                .contains(&Change::SubscriptionsChanged)
                .then(|| registry.dynamic_subscriptions());
            (changes, dynamic)
        };
        for filter in dynamic.unwrap_or_default() {
            sub.add(&filter);
        }
        if !changes.is_empty() {
            self.bump();
            self.publish_changes(&changes);
        }
    }
}

/// Feeds the registry from the device topics until `shutdown`, and reverts unconfirmed
/// commands once a second.
pub async fn run(devices: Devices, shutdown: CancellationToken) {
    let mut sub = devices
        .inner
        .broker
        .subscribe_internal("devices", SUBSCRIPTIONS, 1024);
    let set_filter = format!("{}+/set", view::VIEW_PREFIX);
    let mut commands =
        devices
            .inner
            .broker
            .subscribe_internal("device-channel", &[&set_filter], 256);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            msg = sub.recv() => match msg {
                Some(m) => devices.handle(&sub, &m.msg.topic, &m.msg.payload, m.retained),
                None => return,
            },
            msg = commands.recv() => match msg {
                // Retained commands are ignored: a command acts once, when it is sent.
                Some(m) if !m.retained => {
                    if let Err(err) = devices.handle_set(&m.msg.topic, &m.msg.payload) {
                        tracing::info!(topic = %m.msg.topic, "device channel command ignored: {err}");
                    }
                }
                Some(_) => {}
                None => return,
            },
            _ = tick.tick() => {
                let now = devices.inner.clock.now_ms();
                let changes = devices.inner.registry.lock().tick(now);
                if !changes.is_empty() {
                    devices.bump();
                    devices.publish_changes(&changes);
                }
            }
        }
    }
}
