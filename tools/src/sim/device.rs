//! The sans-I/O simulated device: one MQTT connection's worth of smart plug firmware.
//!
//! A [`SimDevice`] is what one firmware instance would be on the network: a Tasmota plug, a
//! Shelly, a Home Assistant (ESPHome-style) plug, or a Zigbee2MQTT bridge with its Zigbee plugs
//! behind it. It never touches a socket or a clock. The driver ([`super::driver`]) connects with
//! [`SimDevice::client_id`] and [`SimDevice::will`], subscribes to
//! [`SimDevice::subscriptions`], and then feeds it:
//!
//! - [`SimDevice::on_connect`] after every (re)connection: availability, discovery, state;
//! - [`SimDevice::handle_command`] for every message received;
//! - [`SimDevice::tick`] at (or after) [`SimDevice::next_wakeup`]: telemetry, button presses,
//!   faults, delayed confirmations;
//! - [`SimDevice::on_shutdown`] before a clean disconnect.
//!
//! Each returns the [`Outgoing`] actions in order. Time is a [`Duration`] since the simulation
//! started; wall-clock fields (Tasmota's `Time`, "today" energy) add [`Behaviour::epoch_secs`].
//! All randomness comes from the device's own seeded generator, so a seed and the same inputs
//! give the same outputs.

use std::time::Duration;

use switchboard_mqtt::QoS;

use super::appliance::Appliance;
use super::{homeassistant, shelly_gen1, shelly_gen2, tasmota, zigbee2mqtt};

/// One message a simulated device publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMessage {
    /// Topic.
    pub topic: String,
    /// Payload (every family's payloads are text).
    pub payload: String,
    /// QoS to publish with.
    pub qos: QoS,
    /// Retain flag. Never set on commands (devices do not publish commands anyway).
    pub retain: bool,
}

impl SimMessage {
    /// A QoS 0, non-retained message.
    #[must_use]
    pub fn new(topic: impl Into<String>, payload: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            qos: QoS::AtMostOnce,
            retain: false,
        }
    }

    /// The same message, retained at QoS 1 (availability, discovery, retained state).
    #[must_use]
    pub fn retained(mut self) -> Self {
        self.retain = true;
        self.qos = QoS::AtLeastOnce;
        self
    }
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Publish this message.
    Publish(SimMessage),
    /// Fault: drop the connection abruptly (no DISCONNECT, so the broker publishes the will),
    /// stay away until `until`, then reconnect.
    GoOffline {
        /// When to reconnect (simulation time).
        until: Duration,
    },
}

/// The firmware family a device imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Firmware {
    /// Tasmota (`cmnd/`, `stat/`, `tele/`).
    Tasmota,
    /// Shelly Gen1 (Plug S).
    ShellyGen1,
    /// Shelly Gen2+ (Plus Plug S), JSON-RPC.
    ShellyGen2,
    /// A Zigbee2MQTT bridge with Zigbee plugs.
    Zigbee2Mqtt,
    /// An ESPHome-style plug announcing itself with Home Assistant discovery.
    HomeAssistant,
}

impl Firmware {
    /// Every family, in a fixed order.
    pub const ALL: [Self; 5] = [
        Self::Tasmota,
        Self::ShellyGen1,
        Self::ShellyGen2,
        Self::Zigbee2Mqtt,
        Self::HomeAssistant,
    ];
}

/// Timing knobs shared by every device of a simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behaviour {
    /// Telemetry period (Tasmota TelePeriod, Shelly update period, Zigbee reporting).
    pub telemetry_period: Duration,
    /// Mean time between physical button presses per plug (exponentially distributed);
    /// `None` disables them.
    pub button_mean: Option<Duration>,
    /// Mean time between faults per device; `None` disables faults.
    pub fault_mean: Option<Duration>,
    /// Unix time (seconds) at simulation time zero, for wall-clock fields.
    pub epoch_secs: u64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            telemetry_period: Duration::from_secs(10),
            button_mean: Some(Duration::from_secs(20 * 60)),
            fault_mean: None,
            epoch_secs: 1_767_225_600, // 2026-01-01T00:00:00Z
        }
    }
}

/// How to build one plug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlugSpec {
    /// The family's own key: Tasmota topic, Shelly id or prefix, Zigbee2MQTT friendly name,
    /// ESPHome node name.
    pub key: String,
    /// Human name ("Kettle").
    pub name: String,
    /// Room ("Kitchen").
    pub room: String,
    /// What is plugged in.
    pub appliance: Appliance,
}

/// One relay with a meter and an appliance behind it.
#[derive(Debug, Clone)]
pub struct Plug {
    /// How it was built.
    pub spec: PlugSpec,
    /// Relay state.
    pub on: bool,
    /// When the relay last switched on.
    pub on_since: Duration,
    /// The meter's current reading, W.
    pub power: f64,
    /// Energy since midnight (UTC), Wh.
    pub today_wh: f64,
    /// Energy counter, Wh.
    pub total_wh: f64,
    /// Energy at the last telemetry, Wh (Tasmota `Period`).
    pub(super) period_start_wh: f64,
    /// The day `today_wh` counts, in days since the Unix epoch.
    pub(super) day: u64,
    /// When the meter was last advanced.
    pub(super) last: Duration,
    /// Offsets the appliance's cycle.
    pub(super) phase: Duration,
    /// What last switched the relay (Shelly Gen2 `source`): `init`, `button`, `MQTT`.
    pub(super) source: &'static str,
    /// The next physical button press.
    pub(super) next_press: Option<Duration>,
    /// Zigbee plugs: unreachable until then (a fault), shown by the bridge's availability.
    pub(super) offline_until: Option<Duration>,
    /// Zigbee link quality, 0-255.
    pub(super) linkquality: u8,
    /// Fake hardware address (12 upper-case hex digits; Zigbee plugs use 16 for the IEEE).
    pub mac: String,
}

/// A flapping fault in progress: the connection (or, behind a Zigbee2MQTT bridge, one plug)
/// drops several times a few seconds apart.
#[derive(Debug, Clone, Copy)]
struct Flap {
    /// Drops left.
    left: u8,
    /// When the next drop happens (for a connection: set once connected again).
    next: Duration,
    /// The Zigbee plug that flaps.
    plug: usize,
}

/// A simulated firmware instance. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct SimDevice {
    pub(super) firmware: Firmware,
    /// MQTT client id; also the Zigbee2MQTT bridge's id.
    pub(super) client_id: String,
    pub(super) plugs: Vec<Plug>,
    pub(super) behaviour: Behaviour,
    /// Can change at run time (Tasmota `TelePeriod`).
    pub(super) telemetry_period: Duration,
    pub(super) rng: fastrand::Rng,
    next_telemetry: Duration,
    /// Slow-confirmation fault: confirmations are held back until this time passes.
    slow_until: Duration,
    /// Held-back confirmations, in due order.
    delayed: Vec<(Duration, SimMessage)>,
    next_fault: Option<Duration>,
    flap: Option<Flap>,
    /// When the current connection came up (uptime fields).
    pub(super) connected_at: Duration,
}

/// Exponentially distributed delay with the given mean, at least one millisecond.
pub(super) fn exp_delay(rng: &mut fastrand::Rng, mean: Duration) -> Duration {
    let u = rng.f64().max(1e-12);
    let secs = -u.ln() * mean.as_secs_f64();
    Duration::from_secs_f64(secs.clamp(0.001, 1e9))
}

/// A uniformly random duration in `[lo, hi)` seconds.
fn secs_between(rng: &mut fastrand::Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.u64(lo * 1000..hi * 1000))
}

impl SimDevice {
    /// A device of `firmware` with MQTT client id `client_id` and the given plugs (one for every
    /// family but Zigbee2MQTT, whose bridge may carry many), with its own random source from
    /// `seed`.
    ///
    /// # Panics
    /// When `plugs` is empty.
    #[must_use]
    pub fn new(
        firmware: Firmware,
        client_id: impl Into<String>,
        plugs: Vec<PlugSpec>,
        behaviour: Behaviour,
        seed: u64,
    ) -> Self {
        assert!(!plugs.is_empty(), "a simulated device needs a plug");
        let mut rng = fastrand::Rng::with_seed(seed);
        let day = behaviour.epoch_secs / 86_400;
        let plugs = plugs
            .into_iter()
            .map(|spec| {
                let on = spec.appliance.starts_on();
                let total_wh = rng.f64() * 250_000.0;
                let today_wh = rng.f64() * 400.0;
                let mac = if firmware == Firmware::Zigbee2Mqtt {
                    format!("00158D{:010X}", rng.u64(..1 << 40))
                } else {
                    format!("{:012X}", rng.u64(..1 << 48))
                };
                let next_press = behaviour
                    .button_mean
                    .filter(|_| spec.appliance.pressable())
                    .map(|m| exp_delay(&mut rng, m));
                Plug {
                    on,
                    on_since: Duration::ZERO,
                    power: 0.0,
                    today_wh,
                    total_wh,
                    period_start_wh: total_wh,
                    day,
                    last: Duration::ZERO,
                    phase: secs_between(&mut rng, 0, 3000),
                    source: "init",
                    next_press,
                    offline_until: None,
                    linkquality: rng.u8(90..200),
                    mac,
                    spec,
                }
            })
            .collect();
        let next_fault = behaviour.fault_mean.map(|m| exp_delay(&mut rng, m));
        let mut dev = Self {
            firmware,
            client_id: client_id.into(),
            plugs,
            behaviour,
            telemetry_period: behaviour.telemetry_period,
            rng,
            next_telemetry: Duration::ZERO,
            slow_until: Duration::ZERO,
            delayed: Vec::new(),
            next_fault,
            flap: None,
            connected_at: Duration::ZERO,
        };
        for i in 0..dev.plugs.len() {
            dev.sample_power(i, Duration::ZERO);
        }
        dev
    }

    /// The family it imitates.
    #[must_use]
    pub fn firmware(&self) -> Firmware {
        self.firmware
    }

    /// The MQTT client identifier to connect with.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The plugs (one, or a Zigbee2MQTT bridge's many).
    #[must_use]
    pub fn plugs(&self) -> &[Plug] {
        &self.plugs
    }

    /// The MQTT keep alive the real firmware uses, in seconds.
    #[must_use]
    pub fn keep_alive(&self) -> u16 {
        match self.firmware {
            Firmware::Tasmota => 30,
            Firmware::ShellyGen1 | Firmware::ShellyGen2 | Firmware::Zigbee2Mqtt => 60,
            Firmware::HomeAssistant => 15,
        }
    }

    /// The last will: the retained "offline" availability message.
    #[must_use]
    pub fn will(&self) -> SimMessage {
        match self.firmware {
            Firmware::Tasmota => tasmota::availability(self, false),
            Firmware::ShellyGen1 => shelly_gen1::availability(self, false),
            Firmware::ShellyGen2 => shelly_gen2::availability(self, false),
            Firmware::Zigbee2Mqtt => zigbee2mqtt::bridge_state(false),
            Firmware::HomeAssistant => homeassistant::availability(self, false),
        }
    }

    /// Topic filters to subscribe to (QoS 0 or 1, as the firmware does).
    #[must_use]
    pub fn subscriptions(&self) -> Vec<(String, QoS)> {
        match self.firmware {
            Firmware::Tasmota => tasmota::subscriptions(self),
            Firmware::ShellyGen1 => shelly_gen1::subscriptions(self),
            Firmware::ShellyGen2 => shelly_gen2::subscriptions(self),
            Firmware::Zigbee2Mqtt => zigbee2mqtt::subscriptions(),
            Firmware::HomeAssistant => homeassistant::subscriptions(self),
        }
    }

    /// The connection is up: availability online (retained), discovery, current state.
    pub fn on_connect(&mut self, now: Duration) -> Vec<Outgoing> {
        self.advance_all(now);
        self.connected_at = now;
        self.next_telemetry = now + self.telemetry_period;
        if let Some(flap) = &mut self.flap
            && self.firmware != Firmware::Zigbee2Mqtt
        {
            flap.next = now + secs_between(&mut self.rng, 3, 8);
        }
        let msgs = match self.firmware {
            Firmware::Tasmota => tasmota::birth(self, now),
            Firmware::ShellyGen1 => shelly_gen1::birth(self, now),
            Firmware::ShellyGen2 => shelly_gen2::birth(self, now),
            Firmware::Zigbee2Mqtt => zigbee2mqtt::birth(self, now),
            Firmware::HomeAssistant => homeassistant::birth(self, now),
        };
        publish_all(msgs)
    }

    /// Before a clean shutdown: availability offline (retained), as firmware does on restart.
    pub fn on_shutdown(&mut self, now: Duration) -> Vec<Outgoing> {
        self.advance_all(now);
        let mut msgs = Vec::new();
        if self.firmware == Firmware::Zigbee2Mqtt {
            for i in 0..self.plugs.len() {
                msgs.push(zigbee2mqtt::availability(self, i, false));
            }
        }
        msgs.push(self.will());
        publish_all(msgs)
    }

    /// A message arrived on one of the subscriptions.
    pub fn handle_command(&mut self, topic: &str, payload: &[u8], now: Duration) -> Vec<Outgoing> {
        self.advance_all(now);
        let payload = String::from_utf8_lossy(payload);
        let msgs = match self.firmware {
            Firmware::Tasmota => tasmota::command(self, topic, &payload, now),
            Firmware::ShellyGen1 => shelly_gen1::command(self, topic, &payload, now),
            Firmware::ShellyGen2 => shelly_gen2::command(self, topic, &payload, now),
            Firmware::Zigbee2Mqtt => zigbee2mqtt::command(self, topic, &payload, now),
            Firmware::HomeAssistant => homeassistant::command(self, topic, &payload, now),
        };
        self.confirm(msgs, now)
    }

    /// When [`SimDevice::tick`] has something to do next.
    #[must_use]
    pub fn next_wakeup(&self) -> Duration {
        let mut next = self.next_telemetry;
        let mut consider = |t: Option<Duration>| {
            if let Some(t) = t {
                next = next.min(t);
            }
        };
        for p in &self.plugs {
            consider(p.next_press);
            consider(p.offline_until);
        }
        consider(self.next_fault);
        consider(self.flap.map(|f| f.next));
        consider(self.delayed.first().map(|d| d.0));
        next
    }

    /// Time passed: due telemetry, button presses, faults and held-back confirmations.
    pub fn tick(&mut self, now: Duration) -> Vec<Outgoing> {
        self.advance_all(now);
        let mut out = Vec::new();
        while self.delayed.first().is_some_and(|d| d.0 <= now) {
            let (_, msg) = self.delayed.remove(0);
            out.push(Outgoing::Publish(msg));
        }
        for i in 0..self.plugs.len() {
            if self.plugs[i].offline_until.is_some_and(|t| t <= now) {
                self.plugs[i].offline_until = None;
                out.push(Outgoing::Publish(zigbee2mqtt::availability(self, i, true)));
                out.push(Outgoing::Publish(zigbee2mqtt::state(self, i)));
            }
            if self.plugs[i].next_press.is_some_and(|t| t <= now) {
                let mean = self
                    .behaviour
                    .button_mean
                    .unwrap_or(Duration::from_secs(3600));
                self.plugs[i].next_press = Some(now + exp_delay(&mut self.rng, mean));
                if self.plugs[i].offline_until.is_none() {
                    let on = !self.plugs[i].on;
                    self.switch(i, on, "button", now);
                    let msgs = self.state_report(i, now);
                    out.extend(publish_all(msgs));
                }
            }
        }
        if now >= self.next_telemetry {
            self.next_telemetry = now + self.telemetry_period;
            let msgs = match self.firmware {
                Firmware::Tasmota => tasmota::telemetry(self, now),
                Firmware::ShellyGen1 => shelly_gen1::telemetry(self, now),
                Firmware::ShellyGen2 => shelly_gen2::telemetry(self, now),
                Firmware::Zigbee2Mqtt => zigbee2mqtt::telemetry(self, now),
                Firmware::HomeAssistant => homeassistant::telemetry(self, now),
            };
            for p in &mut self.plugs {
                p.period_start_wh = p.total_wh;
            }
            out.extend(publish_all(msgs));
        }
        if let Some(flap) = self.flap
            && flap.next <= now
        {
            let back = now + secs_between(&mut self.rng, 2, 6);
            let left = flap.left.saturating_sub(1);
            if self.firmware == Firmware::Zigbee2Mqtt {
                let next = back + secs_between(&mut self.rng, 3, 8);
                self.flap = (left > 0).then_some(Flap { left, next, ..flap });
                self.plugs[flap.plug].offline_until = Some(back);
                out.push(Outgoing::Publish(zigbee2mqtt::availability(
                    self, flap.plug, false,
                )));
            } else {
                // The next drop is timed from the reconnection ([`SimDevice::on_connect`]).
                self.flap = (left > 0).then_some(Flap {
                    left,
                    next: Duration::MAX,
                    ..flap
                });
                out.push(Outgoing::GoOffline { until: back });
                return out;
            }
        }
        if self.next_fault.is_some_and(|t| t <= now) {
            let mean = self
                .behaviour
                .fault_mean
                .unwrap_or(Duration::from_secs(600));
            self.next_fault = Some(now + exp_delay(&mut self.rng, mean));
            out.extend(self.fault(now));
        }
        out
    }

    /// Starts a random fault, unless one is still going on. A Zigbee2MQTT bridge stays up: its
    /// faults are plugs dropping off the mesh, which the bridge reports as their availability.
    fn fault(&mut self, now: Duration) -> Vec<Outgoing> {
        let kind = self.rng.u8(0..3);
        let plug = self.rng.usize(0..self.plugs.len());
        // Slow confirmations may overlap a drop; two drops at once may not.
        let busy = self.flap.is_some() || self.plugs.iter().any(|p| p.offline_until.is_some());
        if busy {
            return Vec::new();
        }
        match kind {
            0 => {
                // Offline for a while: the broker publishes the will.
                let until = now + secs_between(&mut self.rng, 20, 90);
                if self.firmware == Firmware::Zigbee2Mqtt {
                    self.plugs[plug].offline_until = Some(until);
                    vec![Outgoing::Publish(zigbee2mqtt::availability(
                        self, plug, false,
                    ))]
                } else {
                    vec![Outgoing::GoOffline { until }]
                }
            }
            1 => {
                // Flapping: two to four short drops a few seconds apart, the first one now.
                self.flap = Some(Flap {
                    left: self.rng.u8(2..5),
                    next: now,
                    plug,
                });
                Vec::new()
            }
            _ => {
                // Slow confirmations for a few minutes.
                self.slow_until = now + secs_between(&mut self.rng, 60, 180);
                Vec::new()
            }
        }
    }

    /// Starts the slow-confirmation fault until `until` (tests and demos force it this way).
    pub fn slow_confirmations_until(&mut self, until: Duration) {
        self.slow_until = until;
    }

    /// Confirmations go out now, or later while the slow-confirmation fault is active.
    fn confirm(&mut self, msgs: Vec<SimMessage>, now: Duration) -> Vec<Outgoing> {
        if now >= self.slow_until || msgs.is_empty() {
            return publish_all(msgs);
        }
        let due = now + Duration::from_millis(self.rng.u64(2000..6000));
        for msg in msgs {
            let at = self.delayed.partition_point(|d| d.0 <= due);
            self.delayed.insert(at, (due, msg));
        }
        Vec::new()
    }

    /// What the firmware publishes when relay `i` changed without a command (button).
    fn state_report(&mut self, i: usize, now: Duration) -> Vec<SimMessage> {
        match self.firmware {
            Firmware::Tasmota => tasmota::power_report(self, i),
            Firmware::ShellyGen1 => vec![shelly_gen1::relay_state(self, i)],
            Firmware::ShellyGen2 => shelly_gen2::change_report(self, i, now),
            Firmware::Zigbee2Mqtt => vec![zigbee2mqtt::state(self, i)],
            Firmware::HomeAssistant => homeassistant::state_report(self),
        }
    }

    /// Switches relay `i`, recording what did it.
    pub(super) fn switch(&mut self, i: usize, on: bool, source: &'static str, now: Duration) {
        self.advance(i, now);
        let plug = &mut self.plugs[i];
        if on && !plug.on {
            plug.on_since = now;
        }
        plug.on = on;
        plug.source = source;
        self.sample_power(i, now);
    }

    /// Integrates energy up to `now` with the last reading, then takes a new reading.
    fn advance(&mut self, i: usize, now: Duration) {
        let epoch = self.behaviour.epoch_secs;
        let plug = &mut self.plugs[i];
        if now <= plug.last {
            return;
        }
        let dt_h = (now - plug.last).as_secs_f64() / 3600.0;
        let wh = plug.power * dt_h;
        let day = (epoch + now.as_secs()) / 86_400;
        if day != plug.day {
            plug.day = day;
            plug.today_wh = 0.0;
        }
        plug.today_wh += wh;
        plug.total_wh += wh;
        plug.last = now;
        self.sample_power(i, now);
    }

    fn advance_all(&mut self, now: Duration) {
        for i in 0..self.plugs.len() {
            self.advance(i, now);
        }
    }

    fn sample_power(&mut self, i: usize, now: Duration) {
        let noise = self.rng.f64() * 2.0 - 1.0;
        let plug = &mut self.plugs[i];
        plug.power = if plug.on {
            let on_for = now.saturating_sub(plug.on_since);
            plug.spec.appliance.watts(on_for, plug.phase, noise)
        } else {
            0.0
        };
    }

    /// Mains voltage with a little noise.
    pub(super) fn voltage(&mut self) -> f64 {
        230.0 + (self.rng.f64() * 6.0 - 3.0)
    }

    /// Unix time at `now`.
    pub(super) fn unix(&self, now: Duration) -> u64 {
        self.behaviour.epoch_secs + now.as_secs()
    }

    /// Index of the plug whose family key is `key`.
    pub(super) fn plug_by_key(&self, key: &str) -> Option<usize> {
        self.plugs.iter().position(|p| p.spec.key == key)
    }
}

fn publish_all(msgs: Vec<SimMessage>) -> Vec<Outgoing> {
    msgs.into_iter().map(Outgoing::Publish).collect()
}

/// Rounds to `places` decimals (for JSON numbers as firmware prints them).
pub(super) fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_time_is_utc_civil() {
        use switchboard_devices::civil::iso_seconds as iso_time;
        assert_eq!(iso_time(0), "1970-01-01T00:00:00");
        assert_eq!(iso_time(1_767_225_600), "2026-01-01T00:00:00");
        assert_eq!(iso_time(1_709_208_000 + 3661), "2024-02-29T13:01:01");
    }

    fn kettle(firmware: Firmware, behaviour: Behaviour) -> SimDevice {
        SimDevice::new(
            firmware,
            "tasmota_ABCDEF",
            vec![PlugSpec {
                key: "tasmota_ABCDEF".into(),
                name: "Kettle".into(),
                room: "Kitchen".into(),
                appliance: Appliance::Kettle,
            }],
            behaviour,
            7,
        )
    }

    #[test]
    fn energy_accumulates_while_on_and_today_resets_at_midnight() {
        let behaviour = Behaviour {
            button_mean: None,
            epoch_secs: 86_400 * 20_000 - 60,
            ..Behaviour::default()
        };
        let mut d = kettle(Firmware::Tasmota, behaviour);
        let total0 = d.plugs[0].total_wh;
        d.switch(0, true, "MQTT", Duration::from_secs(1));
        d.advance_all(Duration::from_secs(31));
        let used = d.plugs[0].total_wh - total0;
        assert!((used - 2000.0 * 30.0 / 3600.0).abs() < 1.0, "{used}");
        d.advance_all(Duration::from_secs(61));
        assert!(d.plugs[0].today_wh < 20.0, "today restarted after midnight");
        d.switch(0, false, "MQTT", Duration::from_secs(62));
        assert_eq!(d.plugs[0].power, 0.0);
        let t = d.plugs[0].total_wh;
        d.advance_all(Duration::from_secs(600));
        assert_eq!(d.plugs[0].total_wh, t, "nothing used while off");
    }

    #[test]
    fn same_seed_same_behaviour() {
        let behaviour = Behaviour {
            button_mean: Some(Duration::from_secs(30)),
            fault_mean: Some(Duration::from_secs(60)),
            ..Behaviour::default()
        };
        let run = || {
            let mut d = kettle(Firmware::Tasmota, behaviour);
            let mut log = d.on_connect(Duration::ZERO);
            for _ in 0..50 {
                let t = d.next_wakeup();
                log.extend(d.tick(t));
            }
            log
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.len() > 50);
    }

    #[test]
    fn faults_drop_the_connection_and_come_back() {
        let behaviour = Behaviour {
            button_mean: None,
            fault_mean: Some(Duration::from_secs(30)),
            ..Behaviour::default()
        };
        let mut d = kettle(Firmware::Tasmota, behaviour);
        d.on_connect(Duration::ZERO);
        let (mut drops, mut t) = (0, Duration::ZERO);
        for _ in 0..500 {
            t = t.max(d.next_wakeup());
            for o in d.tick(t) {
                if let Outgoing::GoOffline { until } = o {
                    assert!(until > t);
                    drops += 1;
                    t = until;
                    let birth = d.on_connect(t);
                    assert_eq!(
                        birth[0],
                        Outgoing::Publish(
                            SimMessage::new("tele/tasmota_ABCDEF/LWT", "Online").retained()
                        )
                    );
                }
            }
        }
        assert!(drops >= 5, "{drops} drops");
    }

    #[test]
    fn zigbee_faults_alternate_availability() {
        let behaviour = Behaviour {
            button_mean: None,
            fault_mean: Some(Duration::from_secs(20)),
            ..Behaviour::default()
        };
        let spec = |key: &str| PlugSpec {
            key: key.into(),
            name: key.into(),
            room: "Office".into(),
            appliance: Appliance::Monitor,
        };
        let mut z = SimDevice::new(
            Firmware::Zigbee2Mqtt,
            "zigbee2mqtt_1",
            vec![spec("a"), spec("b")],
            behaviour,
            9,
        );
        z.on_connect(Duration::ZERO);
        let mut last = std::collections::HashMap::new();
        let mut changes = 0;
        for _ in 0..2000 {
            let t = z.next_wakeup();
            for o in z.tick(t) {
                match o {
                    Outgoing::GoOffline { .. } => panic!("the bridge stays connected"),
                    Outgoing::Publish(m) if m.topic.ends_with("/availability") => {
                        assert!(m.retain);
                        let before = last.insert(m.topic.clone(), m.payload.clone());
                        assert_ne!(before.as_ref(), Some(&m.payload), "{} repeated", m.topic);
                        changes += 1;
                    }
                    Outgoing::Publish(_) => {}
                }
            }
        }
        assert!(changes >= 10, "{changes} availability changes");
    }

    #[test]
    fn button_presses_publish_state_without_a_command() {
        let behaviour = Behaviour {
            button_mean: Some(Duration::from_secs(60)),
            ..Behaviour::default()
        };
        let mut d = kettle(Firmware::Tasmota, behaviour);
        d.on_connect(Duration::ZERO);
        let press = d.plugs[0].next_press.expect("a press is scheduled");
        let mut t = Duration::ZERO;
        while t < press {
            t = d.next_wakeup();
            d.tick(t);
        }
        assert!(d.plugs[0].on, "the press switched the kettle on");
        assert_eq!(d.plugs[0].source, "button");
        let mut d = kettle(Firmware::Tasmota, behaviour);
        d.on_connect(Duration::ZERO);
        let out = d.tick(press);
        assert!(out.contains(&Outgoing::Publish(SimMessage::new(
            "stat/tasmota_ABCDEF/POWER",
            "ON"
        ))));
        assert!(out.contains(&Outgoing::Publish(SimMessage::new(
            "stat/tasmota_ABCDEF/RESULT",
            r#"{"POWER":"ON"}"#
        ))));
    }

    #[test]
    fn slow_fault_holds_confirmations_back() {
        let behaviour = Behaviour {
            button_mean: None,
            ..Behaviour::default()
        };
        let mut d = kettle(Firmware::Tasmota, behaviour);
        d.on_connect(Duration::ZERO);
        d.slow_confirmations_until(Duration::from_secs(100));
        let now = Duration::from_secs(5);
        assert!(
            d.handle_command("cmnd/tasmota_ABCDEF/POWER", b"ON", now)
                .is_empty()
        );
        let due = d.next_wakeup();
        assert!(due >= now + Duration::from_secs(2) && due < now + Duration::from_secs(6));
        let out = d.tick(due);
        assert!(out.contains(&Outgoing::Publish(SimMessage::new(
            "stat/tasmota_ABCDEF/POWER",
            "ON"
        ))));
    }
}
