//! The normalised device model every family is translated into.
//!
//! Family modules ([`crate::tasmota`], [`crate::shelly_gen1`], ...) read MQTT messages and produce
//! an `Observation`; the [`crate::Registry`] applies observations to a [`Device`]. The gateway,
//! the simulator and the dashboard only ever see the types in this module, never a family's wire
//! format.
//!
//! Relay indices are **0-based** everywhere in the model (Shelly `relay/0`, `switch:0`); family
//! modules translate to the family's own numbering (Tasmota `POWER1`, Zigbee2MQTT `state_l1`).

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Most relays kept per device (a guard against `relay/200` garbage; the largest real devices
/// have 32).
pub(crate) const MAX_RELAYS: u8 = 64;

/// A stable device identifier: `<family-prefix>:<family key>`, e.g. `tasmota:kitchen`,
/// `shelly-gen1:shellyplug-s-7AD8E1`, `shelly-gen2:shellyplusplugs-a8032ab12345`,
/// `z2m:living/lamp`, `ha:<device identifier>`, `manual:<id>`.
///
/// The key part may contain any character (Zigbee2MQTT names contain `/`); see
/// [`crate::meta`] for how an id is written into a topic level.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceId(String);

impl DeviceId {
    /// Builds the id of a device of `family` whose family-native key is `key`.
    #[must_use]
    pub fn new(family: Family, key: &str) -> Self {
        Self(format!("{}:{key}", family.id_prefix()))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for DeviceId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for DeviceId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// The convention a device speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Family {
    /// Announced through Home Assistant MQTT discovery (`homeassistant/...`).
    HomeAssistant,
    /// Tasmota firmware (`cmnd/`, `stat/`, `tele/`).
    Tasmota,
    /// Shelly first generation (`shellies/<id>/...`).
    ShellyGen1,
    /// Shelly second generation and later (`<prefix>/rpc`, `<prefix>/status/switch:<n>`).
    ShellyGen2,
    /// A Zigbee device behind Zigbee2MQTT (`zigbee2mqtt/<name>`).
    Zigbee2Mqtt,
    /// A switch the user added by hand ([`ManualSwitch`]).
    Manual,
}

impl Family {
    /// The prefix used in [`DeviceId`]s of this family.
    #[must_use]
    pub fn id_prefix(self) -> &'static str {
        match self {
            Self::HomeAssistant => "ha",
            Self::Tasmota => "tasmota",
            Self::ShellyGen1 => "shelly-gen1",
            Self::ShellyGen2 => "shelly-gen2",
            Self::Zigbee2Mqtt => "z2m",
            Self::Manual => "manual",
        }
    }
}

/// Whether a device is reachable, as told by its retained last will.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Availability {
    /// The device announced itself online.
    Online,
    /// The device's last will (or an explicit message) says it is offline: toggles are disabled.
    Offline,
    /// Nothing heard yet, or the family has no availability topic (manual switches).
    #[default]
    Unknown,
}

/// The confirmed state of one relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RelayState {
    /// Confirmed on.
    On,
    /// Confirmed off.
    Off,
    /// No state heard yet.
    #[default]
    Unknown,
}

impl RelayState {
    /// `On` for `true`, `Off` for `false`.
    #[must_use]
    pub fn from_bool(on: bool) -> Self {
        if on { Self::On } else { Self::Off }
    }
}

/// A command sent to a relay and not yet confirmed by the device's state topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pending {
    /// The state asked for.
    pub want: bool,
    /// When the command was issued (the caller's clock, milliseconds).
    pub since_ms: u64,
}

/// One switchable output of a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    /// 0-based index within the device.
    pub index: u8,
    /// A name the family gave this output, if any (Home Assistant entity name, Zigbee endpoint).
    pub name: Option<String>,
    /// The last confirmed state. A pending command does not change it.
    pub state: RelayState,
    /// A command waiting for confirmation, if any.
    pub pending: Option<Pending>,
}

impl Relay {
    pub(crate) fn new(index: u8) -> Self {
        Self {
            index,
            name: None,
            state: RelayState::Unknown,
            pending: None,
        }
    }
}

/// One power reading kept in a [`PowerHistory`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerSample {
    /// When the reading arrived (the caller's clock, milliseconds).
    pub at_ms: u64,
    /// Active power in watts.
    pub watts: f64,
}

/// The last hour of power readings of one device, bounded for charting.
///
/// A reading closer than [`PowerHistory::MIN_SPACING_MS`] to the newest sample replaces that
/// sample's value (keeping its time), and readings older than [`PowerHistory::WINDOW_MS`] before the newest are dropped, so the ring holds
/// at most [`PowerHistory::CAPACITY`] samples whatever rate a device reports at (a Shelly Gen2
/// publishes on every change, a Tasmota every TelePeriod).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PowerHistory {
    samples: VecDeque<PowerSample>,
}

impl PowerHistory {
    /// How far back the history reaches: one hour.
    pub const WINDOW_MS: u64 = 3_600_000;
    /// The finest spacing kept between two samples.
    pub const MIN_SPACING_MS: u64 = 5_000;
    /// The most samples ever held.
    pub const CAPACITY: usize = (Self::WINDOW_MS / Self::MIN_SPACING_MS) as usize + 1;

    /// Records a reading. A reading older than the newest sample is treated as arriving at the
    /// newest sample's time (clocks passed in by callers may step backwards).
    pub fn push(&mut self, at_ms: u64, watts: f64) {
        if !watts.is_finite() {
            return;
        }
        let at_ms = match self.samples.back() {
            Some(last) if at_ms < last.at_ms => last.at_ms,
            _ => at_ms,
        };
        if let Some(last) = self.samples.back_mut()
            && at_ms - last.at_ms < Self::MIN_SPACING_MS
        {
            // Within the spacing of the newest sample: the sample keeps its time and takes the
            // newer value, so a steady stream still leaves one sample per spacing interval.
            last.watts = watts;
            return;
        }
        self.samples.push_back(PowerSample { at_ms, watts });
        let cutoff = at_ms.saturating_sub(Self::WINDOW_MS);
        while self.samples.front().is_some_and(|s| s.at_ms < cutoff)
            || self.samples.len() > Self::CAPACITY
        {
            self.samples.pop_front();
        }
    }

    /// The samples, oldest first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &PowerSample> + '_ {
        self.samples.iter()
    }

    /// How many samples are held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The newest sample.
    #[must_use]
    pub fn latest(&self) -> Option<PowerSample> {
        self.samples.back().copied()
    }

    /// The highest reading held (the chart's y scale), `None` when empty.
    #[must_use]
    pub fn max_watts(&self) -> Option<f64> {
        self.samples.iter().map(|s| s.watts).reduce(f64::max)
    }
}

/// A smart plug (or any switchable device), whatever convention it speaks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Stable identifier, see [`DeviceId`].
    pub id: DeviceId,
    /// Display name: the user's name from `switchboard/meta` if set, else the family's.
    pub name: String,
    /// Room: the user's room from `switchboard/meta` if set, else the family's (Home Assistant
    /// `suggested_area`), else `None`.
    pub room: Option<String>,
    /// The convention the device speaks.
    pub family: Family,
    /// Reachability from the device's last will.
    pub online: Availability,
    /// Switchable outputs, ordered by index (`relays[i].index == i`).
    pub relays: Vec<Relay>,
    /// Active power in watts (summed over channels), if the device meters power.
    pub power_w: Option<f64>,
    /// Energy used today in kWh, if the device reports it (Tasmota `Today`).
    pub energy_today_kwh: Option<f64>,
    /// Energy counter in kWh (summed over channels), if the device reports it.
    pub energy_total_kwh: Option<f64>,
    /// When the last live (non-retained) message of this device arrived.
    pub last_seen_ms: Option<u64>,
    /// Whether every relay's state is confirmed by a state topic. When `false`, commands to the
    /// unconfirmed relays are applied optimistically instead of being marked pending.
    pub has_state_topic: bool,
    history: PowerHistory,
}

impl Device {
    pub(crate) fn new(id: DeviceId, family: Family, name: String) -> Self {
        Self {
            id,
            name,
            room: None,
            family,
            online: Availability::Unknown,
            relays: Vec::new(),
            power_w: None,
            energy_today_kwh: None,
            energy_total_kwh: None,
            last_seen_ms: None,
            has_state_topic: true,
            history: PowerHistory::default(),
        }
    }

    /// The last hour of power readings, oldest first.
    #[must_use]
    pub fn power_history(&self) -> &PowerHistory {
        &self.history
    }

    pub(crate) fn history_mut(&mut self) -> &mut PowerHistory {
        &mut self.history
    }

    /// The relay with 0-based `index`.
    #[must_use]
    pub fn relay(&self, index: u8) -> Option<&Relay> {
        self.relays.get(usize::from(index))
    }

    /// Whether any relay is confirmed on.
    #[must_use]
    pub fn any_on(&self) -> bool {
        self.relays.iter().any(|r| r.state == RelayState::On)
    }

    /// Makes sure relays `0..=index` exist. Returns whether relays were added.
    pub(crate) fn ensure_relay(&mut self, index: u8) -> bool {
        let before = self.relays.len();
        while self.relays.len() <= usize::from(index) {
            let next = u8::try_from(self.relays.len()).expect("bounded by index: u8");
            self.relays.push(Relay::new(next));
        }
        self.relays.len() != before
    }
}

/// A plain switch the user adds by hand, e.g. an ESP32 whose button publishes `ON`/`OFF` to
/// `room/light` and that listens on `room/light/set`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualSwitch {
    /// The key of the device; its [`DeviceId`] is `manual:<id>`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Where commands are published (never retained).
    pub command_topic: String,
    /// Where the switch reports its state; `None` makes commands optimistic.
    pub state_topic: Option<String>,
    /// Command payload for on.
    pub payload_on: String,
    /// Command payload for off.
    pub payload_off: String,
    /// State payload meaning on (matched case-insensitively; common spellings are accepted too).
    pub state_on: String,
    /// State payload meaning off.
    pub state_off: String,
}

impl ManualSwitch {
    /// A switch speaking `ON`/`OFF` both ways, without a state topic.
    #[must_use]
    pub fn new(id: &str, name: &str, command_topic: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            command_topic: command_topic.to_owned(),
            state_topic: None,
            payload_on: "ON".to_owned(),
            payload_off: "OFF".to_owned(),
            state_on: "ON".to_owned(),
            state_off: "OFF".to_owned(),
        }
    }

    /// The same switch with a state topic.
    #[must_use]
    pub fn with_state_topic(mut self, topic: &str) -> Self {
        self.state_topic = Some(topic.to_owned());
        self
    }

    /// The id of the device this switch becomes.
    #[must_use]
    pub fn device_id(&self) -> DeviceId {
        DeviceId::new(Family::Manual, &self.id)
    }
}

/// A message the caller must publish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingMessage {
    /// Topic to publish on.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Retain flag: always `false` for commands, `true` only for `switchboard/meta`.
    pub retain: bool,
    /// QoS to publish with (0 or 1).
    pub qos: u8,
}

impl OutgoingMessage {
    pub(crate) fn command(topic: String, payload: impl Into<Vec<u8>>, qos: u8) -> Self {
        Self {
            topic,
            payload: payload.into(),
            retain: false,
            qos,
        }
    }

    /// The payload as text (lossy), for logs and tests.
    #[must_use]
    pub fn payload_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.payload)
    }
}

/// What a call to the [`crate::Registry`] changed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    /// A device appeared.
    Added(DeviceId),
    /// A device's state, name, relays or readings changed.
    Updated(DeviceId),
    /// A device went away (deleted discovery config, gone from Zigbee2MQTT, removed by hand).
    Removed(DeviceId),
    /// A pending command was not confirmed in time; the relay shows its last confirmed state.
    CommandTimedOut {
        /// The device.
        id: DeviceId,
        /// 0-based relay index.
        relay: u8,
    },
    /// The set of device-specific topics to subscribe to
    /// ([`crate::Registry::dynamic_subscriptions`]) changed.
    SubscriptionsChanged,
}

/// What one message says about one device, in model terms. Produced by the family modules,
/// applied by the registry.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Observation {
    pub(crate) availability: Option<Availability>,
    /// `(relay index, on)`.
    pub(crate) relays: Vec<(u8, bool)>,
    /// `(channel, watts)`; the device's power is the sum over channels.
    pub(crate) power: Vec<(u8, f64)>,
    /// `(channel, kWh)`; the device's energy total is the sum over channels.
    pub(crate) energy_total: Vec<(u8, f64)>,
    pub(crate) energy_today: Option<f64>,
}

impl Observation {
    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_one_sample_per_spacing() {
        let mut h = PowerHistory::default();
        h.push(0, 10.0);
        h.push(1_000, 20.0);
        h.push(4_999, 30.0);
        assert_eq!(h.len(), 1);
        assert_eq!(
            h.latest(),
            Some(PowerSample {
                at_ms: 0,
                watts: 30.0
            })
        );
        h.push(5_000, 40.0);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn history_drops_old_and_odd_samples() {
        let mut h = PowerHistory::default();
        h.push(0, 1.0);
        h.push(10_000, f64::NAN);
        h.push(10_000, f64::INFINITY);
        assert_eq!(h.len(), 1);
        h.push(PowerHistory::WINDOW_MS + 1, 2.0);
        assert_eq!(h.len(), 1);
        assert_eq!(h.max_watts(), Some(2.0));
        // A clock stepping backwards folds into the newest sample.
        h.push(5, 3.0);
        assert_eq!(h.len(), 1);
        assert_eq!(h.latest().map(|s| s.watts), Some(3.0));
    }

    #[test]
    fn device_ids_and_relays() {
        assert_eq!(
            DeviceId::new(Family::ShellyGen2, "p").as_str(),
            "shelly-gen2:p"
        );
        let mut d = Device::new(DeviceId::from("x:y"), Family::Manual, "Y".into());
        assert!(d.ensure_relay(2));
        assert!(!d.ensure_relay(1));
        assert_eq!(
            d.relays.iter().map(|r| r.index).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert!(d.relay(2).is_some() && d.relay(3).is_none());
        assert!(!d.any_on());
    }
}
