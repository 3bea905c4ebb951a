//! The registry: every known device, fed with MQTT messages and the time, answering with what
//! changed and what to publish.
//!
//! It is sans-I/O in the manner of `quinn-proto`: the caller subscribes to
//! [`Registry::subscriptions`] (and to [`Registry::dynamic_subscriptions`] whenever
//! [`Change::SubscriptionsChanged`] is reported), passes every PUBLISH it receives to
//! [`Registry::handle_message`], publishes the [`OutgoingMessage`]s that [`Registry::command`],
//! [`Registry::all_off`] and [`Registry::set_meta`] return, and calls [`Registry::tick`] at
//! [`Registry::next_deadline`] so that unconfirmed commands time out. Time is a `u64` of
//! milliseconds from any clock the caller likes (`Date.now()` in the browser, a monotonic
//! instant in the gateway, a counter in tests).
//!
//! ```
//! use switchboard_devices::{Change, DeviceId, Registry, RelayState};
//!
//! let mut reg = Registry::new();
//! reg.handle_message("tele/kitchen/LWT", b"Online", true, 0);
//! reg.handle_message("stat/kitchen/POWER", b"OFF", true, 0);
//! let id = DeviceId::from("tasmota:kitchen");
//! let out = reg.command(&id, 0, true, 1_000)?;
//! assert_eq!(out[0].topic, "cmnd/kitchen/POWER");
//! assert!(!out[0].retain);
//! // Pending until the device confirms.
//! assert!(reg.get(&id).unwrap().relays[0].pending.is_some());
//! let changes = reg.handle_message("stat/kitchen/POWER", b"ON", false, 1_200);
//! assert_eq!(changes, vec![Change::Updated(id.clone())]);
//! assert_eq!(reg.get(&id).unwrap().relays[0].state, RelayState::On);
//! # Ok::<(), switchboard_devices::CommandError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{CommandError, MessageError};
use crate::homeassistant::{self, HaStore, HaSwitch};
use crate::meta::{self, Meta};
use crate::model::{
    Availability, Change, Device, DeviceId, Family, MAX_RELAYS, ManualSwitch, Observation,
    OutgoingMessage, Pending, RelayState,
};
use crate::shelly_gen1::{self, Gen1Message};
use crate::shelly_gen2::{self, Gen2Message};
use crate::zigbee2mqtt::{self, Z2mMessage, Z2mRelay};
use crate::{manual, tasmota};

/// The topic filters a client must subscribe to (none starts with a wildcard that would have to
/// match a `$` topic: a filter beginning with `+` or `#` never matches `$SYS/...`, and nothing
/// here needs to).
///
/// - `homeassistant/#`: discovery configs;
/// - `tele/+/+`, `stat/+/+`: Tasmota (`LWT`, `STATE`, `SENSOR`, `POWER<n>`, `RESULT`);
/// - `shellies/#`: Shelly Gen1;
/// - `+/online`, `+/status/+`, `+/events/rpc`: Shelly Gen2+ with a one-level topic prefix;
/// - `zigbee2mqtt/#`: Zigbee2MQTT (names may contain `/`);
/// - `switchboard/meta/#`: names and rooms set by users.
pub const SUBSCRIPTIONS: &[&str] = &[
    "homeassistant/#",
    "tele/+/+",
    "stat/+/+",
    "shellies/#",
    "+/online",
    "+/status/+",
    "+/events/rpc",
    "zigbee2mqtt/#",
    "switchboard/meta/#",
];

/// Most devices kept.
const MAX_DEVICES: usize = 4096;
/// Most meta records and early availability records kept.
const MAX_PARKED: usize = 4096;

/// Tunables of a [`Registry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryConfig {
    /// How long a command may stay unconfirmed before [`Registry::tick`] reverts it.
    pub command_timeout_ms: u64,
    /// The `src` of Shelly Gen2 RPC requests: the device replies on `<src>/rpc`.
    pub rpc_src: String,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            command_timeout_ms: 5_000,
            rpc_src: "switchboard".to_owned(),
        }
    }
}

/// How to reach a device: the family-specific addressing kept beside the model.
#[derive(Clone, Debug)]
enum Binding {
    HomeAssistant {
        switches: Vec<HaSwitch>,
    },
    Tasmota {
        topic: String,
    },
    ShellyGen1 {
        id: String,
    },
    ShellyGen2 {
        prefix: String,
    },
    Zigbee2Mqtt {
        name: String,
        relays: Vec<Z2mRelay>,
        /// Announced in `bridge/devices` (and so removed when a later list lacks it).
        listed: bool,
    },
    Manual(ManualSwitch),
}

#[derive(Clone, Debug)]
struct Entry {
    device: Device,
    binding: Binding,
    /// The name and room the family gives, shown when the user's meta sets none.
    native_name: String,
    native_room: Option<String>,
    /// Per-channel readings; the device shows their sums.
    power: BTreeMap<u8, f64>,
    energy: BTreeMap<u8, f64>,
}

impl Entry {
    fn new(id: DeviceId, family: Family, name: &str, binding: Binding) -> Self {
        Self {
            device: Device::new(id, family, name.to_owned()),
            binding,
            native_name: name.to_owned(),
            native_room: None,
            power: BTreeMap::new(),
            energy: BTreeMap::new(),
        }
    }

    /// Whether commands to `relay` apply at once instead of waiting for a state message.
    fn optimistic(&self, relay: u8) -> bool {
        match &self.binding {
            Binding::HomeAssistant { switches } => switches
                .get(usize::from(relay))
                .is_none_or(|s| s.optimistic),
            Binding::Manual(sw) => sw.state_topic.is_none(),
            _ => false,
        }
    }

    fn apply_meta(&mut self, meta: Option<&Meta>) -> bool {
        let name = meta
            .and_then(|m| m.name.clone())
            .unwrap_or_else(|| self.native_name.clone());
        let room = meta
            .and_then(|m| m.room.clone())
            .or_else(|| self.native_room.clone());
        set(&mut self.device.name, name) | set(&mut self.device.room, room)
    }

    /// Applies what a message says. Returns whether the device changed.
    fn apply(&mut self, obs: Observation, retained: bool, now_ms: u64) -> bool {
        let d = &mut self.device;
        let mut changed = false;
        if let Some(a) = obs.availability {
            changed |= set(&mut d.online, a);
        }
        for (index, on) in obs.relays {
            if index >= MAX_RELAYS {
                continue;
            }
            changed |= d.ensure_relay(index);
            let relay = &mut d.relays[usize::from(index)];
            changed |= set(&mut relay.state, RelayState::from_bool(on));
            if relay.pending.is_some_and(|p| p.want == on) {
                relay.pending = None;
                changed = true;
            }
        }
        if !obs.power.is_empty() {
            self.power.extend(obs.power);
            let total: f64 = self.power.values().sum();
            changed |= set(&mut d.power_w, Some(total));
            if !retained {
                d.history_mut().push(now_ms, total);
            }
        }
        if !obs.energy_total.is_empty() {
            self.energy.extend(obs.energy_total);
            changed |= set(&mut d.energy_total_kwh, Some(self.energy.values().sum()));
        }
        if let Some(today) = obs.energy_today {
            changed |= set(&mut d.energy_today_kwh, Some(today));
        }
        if !retained {
            changed |= set(&mut d.last_seen_ms, Some(now_ms));
        }
        changed
    }
}

/// Sets `*slot` to `value`; whether it changed.
fn set<T: PartialEq>(slot: &mut T, value: T) -> bool {
    if *slot == value {
        false
    } else {
        *slot = value;
        true
    }
}

/// The changes of one call, without duplicates (`Added` implies `Updated`).
#[derive(Debug, Default)]
struct Changes(Vec<Change>);

impl Changes {
    fn note(&mut self, change: Change) {
        if self.0.contains(&change) {
            return;
        }
        if let Change::Updated(id) = &change
            && self.0.contains(&Change::Added(id.clone()))
        {
            return;
        }
        self.0.push(change);
    }
}

/// Every known device and what is needed to talk to it. See the module docs.
#[derive(Clone, Debug)]
pub struct Registry {
    config: RegistryConfig,
    entries: BTreeMap<DeviceId, Entry>,
    /// Names and rooms from `switchboard/meta`, kept even for devices not (yet) known.
    meta: BTreeMap<DeviceId, Meta>,
    /// Home Assistant discovery entities.
    ha: HaStore,
    /// Availability heard on Shelly and Zigbee2MQTT topics before the device was discovered
    /// (`+/online` matches far more than Shellies, so it does not discover devices itself).
    early_availability: BTreeMap<DeviceId, Availability>,
    /// Request id of the next Shelly Gen2 RPC.
    next_rpc_id: u64,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry with the default configuration (5 s command timeout).
    #[must_use]
    pub fn new() -> Self {
        Self::with_config(RegistryConfig::default())
    }

    /// An empty registry.
    #[must_use]
    pub fn with_config(config: RegistryConfig) -> Self {
        Self {
            config,
            entries: BTreeMap::new(),
            meta: BTreeMap::new(),
            ha: HaStore::default(),
            early_availability: BTreeMap::new(),
            next_rpc_id: 1,
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The fixed topic filters to subscribe to: [`SUBSCRIPTIONS`].
    #[must_use]
    pub fn subscriptions() -> Vec<&'static str> {
        SUBSCRIPTIONS.to_vec()
    }

    /// Device-specific topics to subscribe to as well: Home Assistant state and availability
    /// topics and manual switches' state topics, sorted, leaving out those [`SUBSCRIPTIONS`]
    /// already cover. Reported as changed by [`Change::SubscriptionsChanged`].
    #[must_use]
    pub fn dynamic_subscriptions(&self) -> Vec<String> {
        let manual = self.entries.values().filter_map(|e| match &e.binding {
            Binding::Manual(sw) => sw.state_topic.as_deref(),
            _ => None,
        });
        let topics: BTreeSet<&str> = self.ha.topics().chain(manual).collect();
        topics
            .into_iter()
            // A "topic" with wildcards or control characters in a config is nothing a device
            // can publish on: never let a config turn into a `#` subscription, nor into a
            // SUBSCRIBE the broker refuses.
            .filter(|t| switchboard_mqtt::topic::validate_topic_name(t).is_ok())
            // `$` topics are the server's (and `$share/...` would read as a shared
            // subscription): no device publishes there.
            .filter(|t| !t.starts_with('$'))
            .filter(|t| !SUBSCRIPTIONS.iter().any(|f| topic_matches(f, t)))
            .map(str::to_owned)
            .collect()
    }

    /// All devices, ordered by id.
    pub fn devices(&self) -> impl ExactSizeIterator<Item = &Device> + '_ {
        self.entries.values().map(|e| &e.device)
    }

    /// The device `id`.
    #[must_use]
    pub fn get(&self, id: &DeviceId) -> Option<&Device> {
        self.entries.get(id).map(|e| &e.device)
    }

    /// How many devices are known.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no device is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies one received PUBLISH and reports what changed. A message that cannot be read
    /// changes nothing; use [`Registry::try_handle_message`] to learn why.
    pub fn handle_message(
        &mut self,
        topic: &str,
        payload: &[u8],
        retained: bool,
        now_ms: u64,
    ) -> Vec<Change> {
        self.try_handle_message(topic, payload, retained, now_ms)
            .unwrap_or_default()
    }

    /// [`Registry::handle_message`], reporting unreadable messages.
    ///
    /// `retained` is the PUBLISH's retain flag: retained messages set state (they are the
    /// first paint) but do not count as the device being seen now, nor add a power sample.
    ///
    /// # Errors
    ///
    /// A [`MessageError`] when the topic belongs to a known convention but the payload cannot be
    /// read (and no other part of the message changed anything). Topics of no known convention
    /// are `Ok(vec![])`.
    pub fn try_handle_message(
        &mut self,
        topic: &str,
        payload: &[u8],
        retained: bool,
        now_ms: u64,
    ) -> Result<Vec<Change>, MessageError> {
        let mut changes = Changes::default();
        let mut error = None;
        if topic.starts_with('$') {
            return Ok(Vec::new());
        }
        let mut record = |r: Result<(), MessageError>| {
            if let Err(e) = r {
                error.get_or_insert(e);
            }
        };
        let subscriptions_before = topic
            .starts_with(homeassistant::PREFIX)
            .then(|| self.dynamic_subscriptions());
        if let Some(r) = meta::parse(topic, payload) {
            record(r.map(|(id, meta)| self.apply_meta(id, meta, &mut changes)));
        } else if let Some(r) = self.ha.handle_config(topic, payload) {
            record(r.map(|keys| self.refresh_ha(keys, &mut changes)));
            if Some(self.dynamic_subscriptions()) != subscriptions_before {
                changes.note(Change::SubscriptionsChanged);
            }
        } else {
            // Arbitrary topics (Home Assistant state topics, manual switches) may coincide with
            // a family's topics (Tasmota's own discovery points at `stat/<t>/POWER`): all apply.
            record(self.route_ha(topic, payload, retained, now_ms, &mut changes));
            record(self.route_manual(topic, payload, retained, now_ms, &mut changes));
            if let Some(r) = tasmota::parse(topic, payload) {
                record(r.map(|(t, obs)| self.on_tasmota(&t, obs, retained, now_ms, &mut changes)));
            } else if let Some(r) = shelly_gen1::parse(topic, payload) {
                record(r.map(|m| self.on_gen1(m, retained, now_ms, &mut changes)));
            } else if let Some(r) = zigbee2mqtt::parse(topic, payload) {
                record(r.map(|m| self.on_z2m(m, retained, now_ms, &mut changes)));
            } else if let Some(r) = shelly_gen2::parse(topic, payload) {
                record(r.map(|m| self.on_gen2(m, retained, now_ms, &mut changes)));
            }
        }
        match error {
            Some(e) if changes.0.is_empty() => Err(e),
            _ => Ok(changes.0),
        }
    }

    /// Adds (or replaces) a hand-made switch; its id is [`ManualSwitch::device_id`].
    pub fn add_manual(&mut self, switch: ManualSwitch) -> Vec<Change> {
        let mut changes = Changes::default();
        let before = self.dynamic_subscriptions();
        let id = switch.device_id();
        let name = switch.name.clone();
        let has_state = switch.state_topic.is_some();
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.native_name = name;
            entry.binding = Binding::Manual(switch);
            let mut changed = entry.apply_meta(self.meta.get(&id));
            changed |= set(&mut entry.device.has_state_topic, has_state);
            if changed {
                changes.note(Change::Updated(id));
            }
        } else {
            let mut entry = Entry::new(id.clone(), Family::Manual, &name, Binding::Manual(switch));
            entry.device.ensure_relay(0);
            entry.device.has_state_topic = has_state;
            self.insert(entry, &mut changes);
        }
        if self.dynamic_subscriptions() != before {
            changes.note(Change::SubscriptionsChanged);
        }
        changes.0
    }

    /// Forgets a device (a manual switch the user deletes, a stale device). A device still
    /// announced comes back with its next message.
    pub fn remove(&mut self, id: &DeviceId) -> Vec<Change> {
        let before = self.dynamic_subscriptions();
        let mut changes = Changes::default();
        if self.entries.remove(id).is_some() {
            changes.note(Change::Removed(id.clone()));
        }
        if self.dynamic_subscriptions() != before {
            changes.note(Change::SubscriptionsChanged);
        }
        changes.0
    }

    /// Switches relay `relay` (0-based) of device `id`, returning the messages to publish
    /// (never retained). The relay is marked [`Pending`] until its state topic confirms; a relay
    /// without a state topic takes the new state at once.
    ///
    /// # Errors
    ///
    /// [`CommandError::UnknownDevice`], [`CommandError::UnknownRelay`],
    /// [`CommandError::Offline`] when the device's last will says offline, and
    /// [`CommandError::NotCommandable`] for a Home Assistant entity without a command topic.
    pub fn command(
        &mut self,
        id: &DeviceId,
        relay: u8,
        on: bool,
        now_ms: u64,
    ) -> Result<Vec<OutgoingMessage>, CommandError> {
        let entry = self
            .entries
            .get_mut(id)
            .ok_or_else(|| CommandError::UnknownDevice(id.clone()))?;
        let relay_count = entry.device.relays.len();
        if usize::from(relay) >= relay_count {
            return Err(CommandError::UnknownRelay {
                id: id.clone(),
                relay,
            });
        }
        if entry.device.online == Availability::Offline {
            return Err(CommandError::Offline(id.clone()));
        }
        let message = match &entry.binding {
            Binding::Tasmota { topic } => tasmota::command(topic, relay, relay_count, on),
            Binding::ShellyGen1 { id } => shelly_gen1::command(id, relay, on),
            Binding::ShellyGen2 { prefix } => {
                let rpc_id = self.next_rpc_id;
                self.next_rpc_id += 1;
                shelly_gen2::command(prefix, &self.config.rpc_src, rpc_id, relay, on)
            }
            Binding::Zigbee2Mqtt { name, relays, .. } => {
                let z = relays
                    .get(usize::from(relay))
                    .cloned()
                    .unwrap_or_else(|| Z2mRelay::new("state"));
                zigbee2mqtt::command(name, &z, on)
            }
            Binding::HomeAssistant { switches } => switches
                .get(usize::from(relay))
                .and_then(|s| homeassistant::command(s, on))
                .ok_or_else(|| CommandError::NotCommandable {
                    id: id.clone(),
                    relay,
                })?,
            Binding::Manual(sw) => manual::command(sw, on),
        };
        let optimistic = entry.optimistic(relay);
        let r = &mut entry.device.relays[usize::from(relay)];
        if optimistic {
            r.state = RelayState::from_bool(on);
            r.pending = None;
        } else {
            r.pending = Some(Pending {
                want: on,
                since_ms: now_ms,
            });
        }
        Ok(vec![message])
    }

    /// Switches off every relay not already confirmed off, of every device in `room` (every
    /// device when `None`) that is not offline.
    pub fn all_off(&mut self, room: Option<&str>, now_ms: u64) -> Vec<OutgoingMessage> {
        let targets: Vec<(DeviceId, u8)> = self
            .entries
            .values()
            .map(|e| &e.device)
            .filter(|d| room.is_none() || d.room.as_deref() == room)
            .filter(|d| d.online != Availability::Offline)
            .flat_map(|d| {
                d.relays
                    .iter()
                    .filter(|r| r.state != RelayState::Off || r.pending.is_some_and(|p| p.want))
                    .map(|r| (d.id.clone(), r.index))
            })
            .collect();
        targets
            .into_iter()
            .filter_map(|(id, relay)| self.command(&id, relay, false, now_ms).ok())
            .flatten()
            .collect()
    }

    /// Reverts commands pending for longer than the timeout: the relay keeps its last confirmed
    /// state and a [`Change::CommandTimedOut`] is reported for it.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Change> {
        let timeout = self.config.command_timeout_ms;
        let mut changes = Vec::new();
        for entry in self.entries.values_mut() {
            for relay in &mut entry.device.relays {
                if relay
                    .pending
                    .is_some_and(|p| now_ms.saturating_sub(p.since_ms) >= timeout)
                {
                    relay.pending = None;
                    changes.push(Change::CommandTimedOut {
                        id: entry.device.id.clone(),
                        relay: relay.index,
                    });
                }
            }
        }
        changes
    }

    /// When [`Registry::tick`] next has something to do: the earliest pending command's
    /// deadline.
    #[must_use]
    pub fn next_deadline(&self) -> Option<u64> {
        self.entries
            .values()
            .flat_map(|e| e.device.relays.iter())
            .filter_map(|r| r.pending)
            .map(|p| p.since_ms.saturating_add(self.config.command_timeout_ms))
            .min()
    }

    /// The retained message that stores the user's `name` and `room` for `id` under
    /// `switchboard/meta/<encoded id>` (see [`crate::meta`]); both `None` clears them. The
    /// registry applies it when the broker echoes it back on `switchboard/meta/#`.
    #[must_use]
    pub fn set_meta(
        &self,
        id: &DeviceId,
        name: Option<&str>,
        room: Option<&str>,
    ) -> OutgoingMessage {
        let clean = |s: Option<&str>| {
            s.map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        meta::meta_message(
            id,
            &Meta {
                name: clean(name),
                room: clean(room),
            },
        )
    }

    fn insert(&mut self, mut entry: Entry, changes: &mut Changes) -> bool {
        if self.entries.len() >= MAX_DEVICES {
            return false;
        }
        let id = entry.device.id.clone();
        entry.apply_meta(self.meta.get(&id));
        if let Some(a) = self.early_availability.remove(&id) {
            entry.device.online = a;
        }
        self.entries.insert(id.clone(), entry);
        changes.note(Change::Added(id));
        true
    }

    fn park_availability(&mut self, id: DeviceId, a: Availability) {
        if self.early_availability.len() < MAX_PARKED || self.early_availability.contains_key(&id) {
            self.early_availability.insert(id, a);
        }
    }

    /// Applies `obs` to device `id`, creating it with `make` when unknown.
    fn observe(
        &mut self,
        id: DeviceId,
        obs: Observation,
        retained: bool,
        now_ms: u64,
        changes: &mut Changes,
        make: impl FnOnce(DeviceId) -> Entry,
    ) {
        if !self.entries.contains_key(&id) && !self.insert(make(id.clone()), changes) {
            return;
        }
        let entry = self.entries.get_mut(&id).expect("present or inserted");
        if entry.apply(obs, retained, now_ms) {
            changes.note(Change::Updated(id));
        }
    }

    fn apply_meta(&mut self, id: DeviceId, meta: Option<Meta>, changes: &mut Changes) {
        match meta {
            Some(m) => {
                if self.meta.len() < MAX_PARKED || self.meta.contains_key(&id) {
                    self.meta.insert(id.clone(), m);
                }
            }
            None => {
                self.meta.remove(&id);
            }
        }
        if let Some(entry) = self.entries.get_mut(&id)
            && entry.apply_meta(self.meta.get(&id))
        {
            changes.note(Change::Updated(id));
        }
    }

    fn on_tasmota(
        &mut self,
        topic: &str,
        obs: Observation,
        retained: bool,
        now_ms: u64,
        changes: &mut Changes,
    ) {
        let id = DeviceId::new(Family::Tasmota, topic);
        if obs.is_empty() && !self.entries.contains_key(&id) {
            // A RESULT of some other command, or a SENSOR without ENERGY, of an unknown device.
            return;
        }
        self.observe(id, obs, retained, now_ms, changes, |id| {
            let binding = Binding::Tasmota {
                topic: topic.to_owned(),
            };
            let mut entry = Entry::new(id, Family::Tasmota, topic, binding);
            // A plug has at least one relay; its state arrives with the next STATE at the latest.
            entry.device.ensure_relay(0);
            entry
        });
    }

    fn on_gen1(&mut self, m: Gen1Message, retained: bool, now_ms: u64, changes: &mut Changes) {
        match m {
            Gen1Message::Online { id, up } => {
                let id = DeviceId::new(Family::ShellyGen1, &id);
                self.availability(id, up, retained, now_ms, changes);
            }
            Gen1Message::Relay { id: key, obs } => {
                let id = DeviceId::new(Family::ShellyGen1, &key);
                self.observe(id, obs, retained, now_ms, changes, |id| {
                    Entry::new(
                        id,
                        Family::ShellyGen1,
                        &key,
                        Binding::ShellyGen1 { id: key.clone() },
                    )
                });
            }
        }
    }

    fn on_gen2(&mut self, m: Gen2Message, retained: bool, now_ms: u64, changes: &mut Changes) {
        match m {
            Gen2Message::Online { prefix, up } => {
                let id = DeviceId::new(Family::ShellyGen2, &prefix);
                self.availability(id, up, retained, now_ms, changes);
            }
            Gen2Message::Status { prefix, obs } => {
                let id = DeviceId::new(Family::ShellyGen2, &prefix);
                self.observe(id, obs, retained, now_ms, changes, |id| {
                    let binding = Binding::ShellyGen2 {
                        prefix: prefix.clone(),
                    };
                    Entry::new(id, Family::ShellyGen2, &prefix, binding)
                });
            }
        }
    }

    /// Availability of a device that availability alone does not discover.
    fn availability(
        &mut self,
        id: DeviceId,
        up: bool,
        retained: bool,
        now_ms: u64,
        changes: &mut Changes,
    ) {
        let a = if up {
            Availability::Online
        } else {
            Availability::Offline
        };
        let obs = Observation {
            availability: Some(a),
            ..Observation::default()
        };
        match self.entries.get_mut(&id) {
            Some(entry) => {
                if entry.apply(obs, retained, now_ms) {
                    changes.note(Change::Updated(id));
                }
            }
            None => self.park_availability(id, a),
        }
    }

    fn on_z2m(&mut self, m: Z2mMessage, retained: bool, now_ms: u64, changes: &mut Changes) {
        match m {
            Z2mMessage::Availability { name, up } => {
                let id = DeviceId::new(Family::Zigbee2Mqtt, &name);
                self.availability(id, up, retained, now_ms, changes);
            }
            Z2mMessage::Devices(list) => {
                let names: BTreeSet<&str> = list
                    .iter()
                    .filter(|i| !i.relays.is_empty())
                    .map(|i| i.name.as_str())
                    .collect();
                let gone: Vec<DeviceId> = self
                    .entries
                    .iter()
                    .filter(|(_, e)| {
                        matches!(&e.binding, Binding::Zigbee2Mqtt { name, listed: true, .. }
                            if !names.contains(name.as_str()))
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in gone {
                    self.entries.remove(&id);
                    changes.note(Change::Removed(id));
                }
                for info in list.into_iter().filter(|i| !i.relays.is_empty()) {
                    let id = DeviceId::new(Family::Zigbee2Mqtt, &info.name);
                    let count = u8::try_from(info.relays.len().min(usize::from(MAX_RELAYS)))
                        .unwrap_or(MAX_RELAYS);
                    let binding = Binding::Zigbee2Mqtt {
                        name: info.name.clone(),
                        relays: info.relays.clone(),
                        listed: true,
                    };
                    if !self.entries.contains_key(&id) {
                        let entry =
                            Entry::new(id.clone(), Family::Zigbee2Mqtt, &info.name, binding);
                        if !self.insert(entry, changes) {
                            continue;
                        }
                    } else if let Some(entry) = self.entries.get_mut(&id) {
                        entry.binding = binding;
                    }
                    let entry = self.entries.get_mut(&id).expect("present or inserted");
                    let mut changed = false;
                    if count > 0 {
                        changed |= entry.device.ensure_relay(count - 1);
                    }
                    for (relay, z) in entry.device.relays.iter_mut().zip(&info.relays) {
                        changed |= set(&mut relay.name, z.endpoint.clone());
                    }
                    if changed {
                        changes.note(Change::Updated(id));
                    }
                }
            }
            Z2mMessage::State { name, relays, obs } => {
                let id = DeviceId::new(Family::Zigbee2Mqtt, &name);
                if relays.is_empty() && !self.entries.contains_key(&id) {
                    return;
                }
                if !self.entries.contains_key(&id) {
                    let binding = Binding::Zigbee2Mqtt {
                        name: name.clone(),
                        relays: Vec::new(),
                        listed: false,
                    };
                    let entry = Entry::new(id.clone(), Family::Zigbee2Mqtt, &name, binding);
                    if !self.insert(entry, changes) {
                        return;
                    }
                }
                let entry = self.entries.get_mut(&id).expect("present or inserted");
                let Binding::Zigbee2Mqtt { relays: known, .. } = &mut entry.binding else {
                    return;
                };
                let mut obs = obs;
                let has_endpoints = known.iter().any(Z2mRelay::is_endpoint);
                for (property, on) in relays {
                    if property == "state" && has_endpoints {
                        continue;
                    }
                    let index = match known.iter().position(|r| r.property == property) {
                        Some(i) => i,
                        None if known.len() < usize::from(MAX_RELAYS) => {
                            known.push(Z2mRelay::new(&property));
                            known.len() - 1
                        }
                        None => continue,
                    };
                    let index = u8::try_from(index).expect("bounded by MAX_RELAYS");
                    obs.relays.push((index, on));
                }
                let endpoints: Vec<Option<String>> =
                    known.iter().map(|r| r.endpoint.clone()).collect();
                let mut changed = entry.apply(obs, retained, now_ms);
                for (relay, ep) in entry.device.relays.iter_mut().zip(endpoints) {
                    changed |= set(&mut relay.name, ep);
                }
                if changed {
                    changes.note(Change::Updated(id));
                }
            }
        }
    }

    /// Rebuilds the Home Assistant devices whose entities changed.
    fn refresh_ha(&mut self, keys: BTreeSet<String>, changes: &mut Changes) {
        for key in keys {
            let id = DeviceId::new(Family::HomeAssistant, &key);
            let Some(dev) = self.ha.device(&key).filter(|d| !natively_known(d)) else {
                if self.entries.remove(&id).is_some() {
                    changes.note(Change::Removed(id));
                }
                continue;
            };
            let switches: Vec<HaSwitch> = dev.switches.iter().map(|(_, s)| s.clone()).collect();
            let has_state = switches.iter().all(|s| !s.optimistic);
            if !self.entries.contains_key(&id) {
                let binding = Binding::HomeAssistant {
                    switches: Vec::new(),
                };
                let entry = Entry::new(id.clone(), Family::HomeAssistant, &dev.name, binding);
                if !self.insert(entry, changes) {
                    continue;
                }
            }
            let meta = self.meta.get(&id);
            let entry = self.entries.get_mut(&id).expect("present or inserted");
            entry.native_name = dev.name.clone();
            entry.native_room = dev.room.clone();
            let mut changed = entry.apply_meta(meta);
            changed |= set(&mut entry.device.has_state_topic, has_state);
            let count = dev.switches.len().min(usize::from(MAX_RELAYS));
            if entry.device.relays.len() > count {
                entry.device.relays.truncate(count);
                changed = true;
            }
            if let Some(last) = count.checked_sub(1) {
                changed |= entry
                    .device
                    .ensure_relay(u8::try_from(last).expect("bounded by MAX_RELAYS"));
            }
            for (relay, (name, _)) in entry.device.relays.iter_mut().zip(&dev.switches) {
                changed |= set(&mut relay.name, name.clone());
            }
            entry.binding = Binding::HomeAssistant { switches };
            if changed {
                changes.note(Change::Updated(id));
            }
        }
    }

    fn route_ha(
        &mut self,
        topic: &str,
        payload: &[u8],
        retained: bool,
        now_ms: u64,
        changes: &mut Changes,
    ) -> Result<(), MessageError> {
        let (per_device, error) = self.ha.route(topic, payload);
        for (key, obs) in per_device {
            let id = DeviceId::new(Family::HomeAssistant, &key);
            if let Some(entry) = self.entries.get_mut(&id)
                && entry.apply(obs, retained, now_ms)
            {
                changes.note(Change::Updated(id));
            }
        }
        error.map_or(Ok(()), Err)
    }

    fn route_manual(
        &mut self,
        topic: &str,
        payload: &[u8],
        retained: bool,
        now_ms: u64,
        changes: &mut Changes,
    ) -> Result<(), MessageError> {
        let mut result = Ok(());
        for entry in self.entries.values_mut() {
            let Binding::Manual(sw) = &entry.binding else {
                continue;
            };
            if sw.state_topic.as_deref() != Some(topic) {
                continue;
            }
            match manual::state(sw, topic, payload) {
                Ok(on) => {
                    let obs = Observation {
                        relays: vec![(0, on)],
                        ..Observation::default()
                    };
                    if entry.apply(obs, retained, now_ms) {
                        changes.note(Change::Updated(entry.device.id.clone()));
                    }
                }
                Err(e) => result = Err(e),
            }
        }
        result
    }
}

/// Whether every switch of a Home Assistant device is commanded through a convention this crate
/// reads natively (Tasmota's, Zigbee2MQTT's and Shelly Gen1's own discovery announce their
/// devices to Home Assistant too): the native device is shown and this one is not, so no plug
/// appears twice.
fn natively_known(dev: &homeassistant::HaDevice) -> bool {
    dev.switches.iter().all(|(_, s)| {
        s.command_topic.as_deref().is_some_and(|t| {
            topic_matches("cmnd/+/+", t)
                || topic_matches("zigbee2mqtt/#", t)
                || topic_matches("shellies/#", t)
        })
    })
}

/// Whether MQTT topic filter `filter` matches `topic` (with the rule that a leading wildcard
/// does not match a `$` topic).
#[must_use]
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    switchboard_mqtt::topic::matches(filter, topic)
}
