//! Home Assistant MQTT discovery: devices announced by retained configs under `homeassistant/`.
//!
//! Config topics:
//! - entity-based `homeassistant/<component>/[<node_id>/]<object_id>/config`;
//! - device-based `homeassistant/device/<id>/config`, whose `cmps` map holds one config per
//!   component (each with `p`, the platform) and whose other top-level options (`~`, `stat_t`,
//!   `avty_t`, `qos`, ...) are shared by all components.
//!
//! Payloads may use the documented abbreviations (`cmd_t`, `stat_t`, `avty_t`, `pl_on`, `uniq_id`,
//! `dev` with `ids`/`sa`/..., `avty` with `t`, ...) and `~`: a topic value starting (or ending)
//! with `~` has it replaced by the `~` option. An empty retained payload deletes the entity (for a
//! device config: all its components; a component reduced to just `p` is deleted too).
//!
//! Entities are grouped into one [`crate::Device`] per `device.identifiers[0]` (else the first
//! `connections` pair, else `unique_id`, else the discovery key): every `switch` (and default-
//! schema `light`) entity is one relay, ordered by discovery key; `sensor` entities with
//! `device_class` `power` (W, kW) or `energy` (kWh, Wh) of the same device supply power and
//! energy (an energy sensor whose name or ids mention "today" is today's energy, "yesterday" is
//! ignored). A device with no switch entity is not shown, nor is one whose switches are all
//! commanded on `cmnd/...`, `zigbee2mqtt/...` or `shellies/...`: those are Tasmota, Zigbee2MQTT
//! and Shelly devices announcing themselves to Home Assistant as well, and are shown once, as
//! their native family.
//!
//! State and availability topics are arbitrary, so the client must subscribe to
//! [`crate::Registry::dynamic_subscriptions`] as configs arrive. Value templates are supported in
//! their common forms (`{{ value }}`, `{{ value_json.a.b }}`, `{{ value_json['a'] }}`, any
//! `| filter` ignored).
//!
//! Written: the entity's `command_topic` with `payload_on` / `payload_off` (default `ON`/`OFF`),
//! at the entity's `qos`, never retained whatever the config's `retain` says.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use switchboard_mqtt::topic::validate_topic_name;

use crate::error::MessageError;
use crate::model::{Availability, Observation, OutgoingMessage};
use crate::parse;

/// The discovery prefix.
pub(crate) const PREFIX: &str = "homeassistant";

/// At most this many entities are kept (a guard against a flood of configs).
const MAX_ENTITIES: usize = 8192;

const ENTITY_ABBREVIATIONS: &[(&str, &str)] = &[
    ("avty", "availability"),
    ("avty_mode", "availability_mode"),
    ("avty_t", "availability_topic"),
    ("avty_tpl", "availability_template"),
    ("cmd_t", "command_topic"),
    ("cmd_tpl", "command_template"),
    ("cmps", "components"),
    ("dev", "device"),
    ("dev_cla", "device_class"),
    ("json_attr_t", "json_attributes_topic"),
    ("o", "origin"),
    ("obj_id", "object_id"),
    ("opt", "optimistic"),
    ("p", "platform"),
    ("pl_avail", "payload_available"),
    ("pl_not_avail", "payload_not_available"),
    ("pl_off", "payload_off"),
    ("pl_on", "payload_on"),
    ("ret", "retain"),
    ("stat_cla", "state_class"),
    ("stat_off", "state_off"),
    ("stat_on", "state_on"),
    ("stat_t", "state_topic"),
    ("stat_val_tpl", "state_value_template"),
    ("uniq_id", "unique_id"),
    ("unit_of_meas", "unit_of_measurement"),
    ("val_tpl", "value_template"),
];

const DEVICE_ABBREVIATIONS: &[(&str, &str)] = &[
    ("cns", "connections"),
    ("cu", "configuration_url"),
    ("hw", "hw_version"),
    ("ids", "identifiers"),
    ("mdl", "model"),
    ("mdl_id", "model_id"),
    ("mf", "manufacturer"),
    ("sa", "suggested_area"),
    ("sn", "serial_number"),
    ("sw", "sw_version"),
];

const AVAILABILITY_ABBREVIATIONS: &[(&str, &str)] = &[
    ("t", "topic"),
    ("pl_avail", "payload_available"),
    ("pl_not_avail", "payload_not_available"),
    ("val_tpl", "value_template"),
];

/// A switch (or light) entity: one relay.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HaSwitch {
    pub(crate) command_topic: Option<String>,
    pub(crate) state_topic: Option<String>,
    pub(crate) payload_on: String,
    pub(crate) payload_off: String,
    state_on: String,
    state_off: String,
    template: Option<String>,
    /// No state topic, or `optimistic: true`: commands apply at once.
    pub(crate) optimistic: bool,
    pub(crate) qos: u8,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum SensorKind {
    Power,
    EnergyTotal,
    EnergyToday,
}

#[derive(Clone, Debug, PartialEq)]
struct HaSensor {
    state_topic: String,
    template: Option<String>,
    kind: SensorKind,
    /// Multiplier into W or kWh.
    factor: f64,
}

#[derive(Clone, Debug, PartialEq)]
enum EntityKind {
    Switch(HaSwitch),
    Sensor(HaSensor),
}

#[derive(Clone, Debug, PartialEq)]
struct AvailTopic {
    topic: String,
    available: String,
    not_available: String,
    template: Option<String>,
    last: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum AvailMode {
    All,
    Any,
    Latest,
}

#[derive(Clone, Debug, PartialEq)]
struct HaEntity {
    device_key: String,
    device_name: Option<String>,
    room: Option<String>,
    name: Option<String>,
    kind: EntityKind,
    availability: Vec<AvailTopic>,
    mode: AvailMode,
    latest: Option<bool>,
}

/// A device assembled from its entities.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HaDevice {
    pub(crate) name: String,
    pub(crate) room: Option<String>,
    /// `(entity name, switch)`, in relay order.
    pub(crate) switches: Vec<(Option<String>, HaSwitch)>,
}

/// All discovered entities, keyed by discovery key (`switch/node/object`,
/// `device/<id>/<object>`).
#[derive(Clone, Debug, Default)]
pub(crate) struct HaStore {
    entities: BTreeMap<String, HaEntity>,
    /// Every state and availability topic of the entities, for a cheap routing test.
    topics: BTreeSet<String>,
}

impl HaStore {
    /// Applies a discovery config. `None` when `topic` is not a discovery config topic, else
    /// the device keys whose entities changed.
    pub(crate) fn handle_config(
        &mut self,
        topic: &str,
        payload: &[u8],
    ) -> Option<Result<BTreeSet<String>, MessageError>> {
        let rest = topic.strip_prefix(PREFIX)?.strip_prefix('/')?;
        let levels: Vec<&str> = rest.split('/').collect();
        let key = match levels.as_slice() {
            [component, object, "config"] => format!("{component}/{object}"),
            [component, node, object, "config"] => format!("{component}/{node}/{object}"),
            _ => return None,
        };
        if levels.iter().any(|l| l.is_empty()) {
            return None;
        }
        let device_based = levels[0] == "device" && levels.len() == 3;
        let result = self.apply_config(topic, &key, device_based, payload);
        self.topics = self
            .entities
            .values()
            .flat_map(|e| {
                let state = match &e.kind {
                    EntityKind::Switch(s) => s.state_topic.clone(),
                    EntityKind::Sensor(s) => Some(s.state_topic.clone()),
                };
                state
                    .into_iter()
                    .chain(e.availability.iter().map(|a| a.topic.clone()))
            })
            .collect();
        Some(result)
    }

    fn apply_config(
        &mut self,
        topic: &str,
        key: &str,
        device_based: bool,
        payload: &[u8],
    ) -> Result<BTreeSet<String>, MessageError> {
        let mut affected = BTreeSet::new();
        if payload.iter().all(u8::is_ascii_whitespace) {
            if device_based {
                let prefix = format!("{key}/");
                self.remove_where(|k| k.starts_with(&prefix), &mut affected);
            } else {
                self.remove_where(|k| k == key, &mut affected);
            }
            return Ok(affected);
        }
        let value = parse::json(topic, payload)?;
        let Value::Object(raw) = value else {
            return Err(invalid(topic, "not a JSON object"));
        };
        let config = expand(raw, ENTITY_ABBREVIATIONS);
        let mut new = Vec::new();
        if device_based {
            let Some(Value::Object(components)) = config.get("components") else {
                return Err(invalid(topic, "device config without cmps"));
            };
            let shared: Map<String, Value> = config
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "components" | "origin"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (object_id, component) in components {
                let Value::Object(component) = component else {
                    continue;
                };
                let mut merged = shared.clone();
                merged.extend(expand(component.clone(), ENTITY_ABBREVIATIONS));
                let Some(platform) = merged.get("platform").and_then(Value::as_str) else {
                    continue;
                };
                let platform = platform.to_owned();
                let ekey = format!("{key}/{object_id}");
                if let Some(entity) = entity(&platform, &ekey, &merged) {
                    new.push((ekey, entity));
                }
            }
            let prefix = format!("{key}/");
            let keep: BTreeSet<&str> = new.iter().map(|(k, _)| k.as_str()).collect();
            self.remove_where(
                |k| k.starts_with(&prefix) && !keep.contains(k),
                &mut affected,
            );
        } else {
            let component = key.split('/').next().unwrap_or_default();
            match entity(component, key, &config) {
                Some(entity) => new.push((key.to_owned(), entity)),
                None => {
                    // Not a plug-related entity (or no longer one): forget any old version.
                    self.remove_where(|k| k == key, &mut affected);
                    if matches!(component, "switch" | "light") {
                        let base = config.get("~").and_then(Value::as_str);
                        let present = |k: &str| config.get(k).and_then(Value::as_str);
                        let topics = [present("command_topic"), present("state_topic")];
                        if topics.iter().all(Option::is_none) {
                            return Err(invalid(
                                topic,
                                "switch without command_topic or state_topic",
                            ));
                        }
                        if topics
                            .iter()
                            .flatten()
                            .all(|t| validate_topic_name(&tilde(t, base)).is_err())
                        {
                            return Err(invalid(
                                topic,
                                "switch whose command_topic and state_topic are not valid topic names",
                            ));
                        }
                    }
                    return Ok(affected);
                }
            }
        }
        for (ekey, entity) in new {
            if !self.entities.contains_key(&ekey) && self.entities.len() >= MAX_ENTITIES {
                continue;
            }
            affected.insert(entity.device_key.clone());
            if let Some(old) = self.entities.insert(ekey, entity) {
                affected.insert(old.device_key);
            }
        }
        Ok(affected)
    }

    fn remove_where(&mut self, pred: impl Fn(&str) -> bool, affected: &mut BTreeSet<String>) {
        self.entities.retain(|k, e| {
            let remove = pred(k);
            if remove {
                affected.insert(e.device_key.clone());
            }
            !remove
        });
    }

    /// The device `device_key` as assembled from its entities; `None` when it has no switch.
    pub(crate) fn device(&self, device_key: &str) -> Option<HaDevice> {
        let mut name = None;
        let mut room = None;
        let mut switches = Vec::new();
        for e in self
            .entities
            .values()
            .filter(|e| e.device_key == device_key)
        {
            name = name.or_else(|| e.device_name.clone());
            room = room.or_else(|| e.room.clone());
            if let EntityKind::Switch(s) = &e.kind {
                switches.push((e.name.clone(), s.clone()));
            }
        }
        if switches.is_empty() {
            return None;
        }
        let name = name
            .or_else(|| switches.iter().find_map(|(n, _)| n.clone()))
            .unwrap_or_else(|| device_key.to_owned());
        Some(HaDevice {
            name,
            room,
            switches,
        })
    }

    /// Whether any entity listens on `topic`.
    pub(crate) fn listens(&self, topic: &str) -> bool {
        self.topics.contains(topic)
    }

    /// The state and availability topics of all entities.
    pub(crate) fn topics(&self) -> impl Iterator<Item = &str> + '_ {
        self.topics.iter().map(String::as_str)
    }

    /// Reads a message on an entity's state or availability topic: what it says about each
    /// device, and the first error met.
    pub(crate) fn route(
        &mut self,
        topic: &str,
        payload: &[u8],
    ) -> (BTreeMap<String, Observation>, Option<MessageError>) {
        let mut out: BTreeMap<String, Observation> = BTreeMap::new();
        let mut error = None;
        if !self.listens(topic) {
            return (out, None);
        }
        let text = match parse::text(topic, payload) {
            Ok(t) => t.to_owned(),
            Err(e) => return (out, Some(e)),
        };
        // Relay indices and sensor channels are positions among the device's entities.
        let mut switch_index: BTreeMap<String, u8> = BTreeMap::new();
        let mut channel: BTreeMap<String, u8> = BTreeMap::new();
        for e in self.entities.values_mut() {
            let index = match &e.kind {
                EntityKind::Switch(_) => bump(&mut switch_index, &e.device_key),
                EntityKind::Sensor(_) => bump(&mut channel, &e.device_key),
            };
            let mut obs = Observation::default();
            match &e.kind {
                EntityKind::Switch(s) if s.state_topic.as_deref() == Some(topic) => {
                    match switch_state(s, &text) {
                        Ok(Some(on)) => obs.relays.push((index, on)),
                        Ok(None) => {}
                        Err(()) => {
                            error.get_or_insert_with(|| parse::invalid(topic, &text));
                        }
                    }
                }
                EntityKind::Sensor(s) if s.state_topic == topic => {
                    let value = match &s.template {
                        Some(t) => parse::apply_template(t, &text),
                        None => Some(text.clone()),
                    };
                    match value.as_deref().and_then(parse::number) {
                        Some(x) => {
                            let x = x * s.factor;
                            match s.kind {
                                SensorKind::Power => obs.power.push((index, x)),
                                SensorKind::EnergyTotal => obs.energy_total.push((index, x)),
                                SensorKind::EnergyToday => obs.energy_today = Some(x),
                            }
                        }
                        None => {
                            error.get_or_insert_with(|| parse::invalid(topic, &text));
                        }
                    }
                }
                _ => {}
            }
            if let Some(up) = e.read_availability(topic, &text) {
                obs.availability = Some(if up {
                    Availability::Online
                } else {
                    Availability::Offline
                });
            }
            if !obs.is_empty() {
                merge(out.entry(e.device_key.clone()).or_default(), obs);
            }
        }
        (out, error)
    }
}

fn bump(counters: &mut BTreeMap<String, u8>, key: &str) -> u8 {
    let c = counters.entry(key.to_owned()).or_insert(0);
    let index = *c;
    *c = c.saturating_add(1);
    index
}

fn merge(into: &mut Observation, obs: Observation) {
    into.availability = obs.availability.or(into.availability);
    into.relays.extend(obs.relays);
    into.power.extend(obs.power);
    into.energy_total.extend(obs.energy_total);
    into.energy_today = obs.energy_today.or(into.energy_today);
}

/// `Ok(None)` for HA's "unknown" payloads (`None`, empty), `Err` for anything unreadable.
fn switch_state(s: &HaSwitch, text: &str) -> Result<Option<bool>, ()> {
    let value = match &s.template {
        Some(t) => parse::apply_template(t, text).ok_or(())?,
        None => text.to_owned(),
    };
    let value = value.trim();
    if value == s.state_on {
        Ok(Some(true))
    } else if value == s.state_off {
        Ok(Some(false))
    } else if value.is_empty() || value == "None" {
        Ok(None)
    } else if value.eq_ignore_ascii_case(&s.state_on) {
        Ok(Some(true))
    } else if value.eq_ignore_ascii_case(&s.state_off) {
        Ok(Some(false))
    } else {
        parse::on_off(value).map(Some).ok_or(())
    }
}

impl HaEntity {
    /// Updates availability from a message on `topic`; the entity's combined availability when
    /// the topic is one of its availability topics.
    fn read_availability(&mut self, topic: &str, text: &str) -> Option<bool> {
        let mut hit = false;
        for a in self.availability.iter_mut().filter(|a| a.topic == topic) {
            let value = match &a.template {
                Some(t) => parse::apply_template(t, text),
                None => Some(text.to_owned()),
            };
            let Some(value) = value else { continue };
            let value = value.trim();
            let up = if value == a.available {
                Some(true)
            } else if value == a.not_available {
                Some(false)
            } else {
                parse::availability(value)
            };
            if let Some(up) = up {
                a.last = Some(up);
                self.latest = Some(up);
                hit = true;
            }
        }
        if !hit {
            return None;
        }
        match self.mode {
            AvailMode::Latest => self.latest,
            AvailMode::All => {
                if self.availability.iter().all(|a| a.last == Some(true)) {
                    Some(true)
                } else if self.availability.iter().any(|a| a.last == Some(false)) {
                    Some(false)
                } else {
                    None
                }
            }
            AvailMode::Any => {
                if self.availability.iter().any(|a| a.last == Some(true)) {
                    Some(true)
                } else if self.availability.iter().all(|a| a.last == Some(false)) {
                    Some(false)
                } else {
                    None
                }
            }
        }
    }
}

fn invalid(topic: &str, reason: &'static str) -> MessageError {
    MessageError::InvalidDiscovery {
        topic: topic.to_owned(),
        reason,
    }
}

/// Replaces abbreviated keys by their full names (a full key present as well wins).
fn expand(map: Map<String, Value>, table: &[(&str, &str)]) -> Map<String, Value> {
    let mut out = Map::new();
    let mut abbreviated = Vec::new();
    for (k, v) in map {
        match table.iter().find(|(short, _)| *short == k) {
            Some((_, long)) => abbreviated.push(((*long).to_owned(), v)),
            None => {
                out.insert(k, v);
            }
        }
    }
    for (k, v) in abbreviated {
        out.entry(k).or_insert(v);
    }
    if let Some(Value::Object(dev)) = out.remove("device") {
        out.insert(
            "device".to_owned(),
            Value::Object(expand(dev, DEVICE_ABBREVIATIONS)),
        );
    }
    out
}

/// Applies the `~` base topic to a topic value.
fn tilde(value: &str, base: Option<&str>) -> String {
    match base {
        Some(base) if value.starts_with('~') => format!("{base}{}", &value[1..]),
        Some(base) if value.ends_with('~') => format!("{}{base}", &value[..value.len() - 1]),
        _ => value.to_owned(),
    }
}

/// Builds an entity from an expanded config; `None` for components that are not plugs' concern.
fn entity(platform: &str, key: &str, config: &Map<String, Value>) -> Option<HaEntity> {
    let base = config.get("~").and_then(Value::as_str);
    let text = |k: &str| config.get(k).and_then(Value::as_str).map(str::to_owned);
    // A topic no client may publish on (empty, a wildcard, a control character) is as good as
    // none: subscribing to it or commanding through it would be refused by the broker.
    let topic = |k: &str| {
        text(k)
            .map(|t| tilde(&t, base))
            .filter(|t| validate_topic_name(t).is_ok())
    };
    let kind = match platform {
        "switch" | "light" => {
            if platform == "light" && text("schema").is_some_and(|s| s != "default" && s != "basic")
            {
                return None;
            }
            let command_topic = topic("command_topic");
            let state_topic = topic("state_topic");
            if command_topic.is_none() && state_topic.is_none() {
                return None;
            }
            let payload_on = scalar(config.get("payload_on")).unwrap_or_else(|| "ON".into());
            let payload_off = scalar(config.get("payload_off")).unwrap_or_else(|| "OFF".into());
            let optimistic = state_topic.is_none()
                || config.get("optimistic").and_then(Value::as_bool) == Some(true);
            EntityKind::Switch(HaSwitch {
                state_on: scalar(config.get("state_on")).unwrap_or_else(|| payload_on.clone()),
                state_off: scalar(config.get("state_off")).unwrap_or_else(|| payload_off.clone()),
                payload_on,
                payload_off,
                command_topic,
                state_topic,
                template: text("value_template").or_else(|| text("state_value_template")),
                optimistic,
                qos: config
                    .get("qos")
                    .and_then(Value::as_u64)
                    .map_or(0, |q| u8::from(q >= 1)),
            })
        }
        "sensor" => {
            let state_topic = topic("state_topic")?;
            let unit = text("unit_of_measurement").unwrap_or_default();
            let class = text("device_class").unwrap_or_default();
            let (kind, factor) = match (class.as_str(), unit.as_str()) {
                ("power", "kW") | ("", "kW") => (SensorKind::Power, 1000.0),
                ("power", _) | ("", "W") => (SensorKind::Power, 1.0),
                ("energy", "Wh") | ("", "Wh") => (SensorKind::EnergyTotal, 0.001),
                ("energy", "MWh") => (SensorKind::EnergyTotal, 1000.0),
                ("energy", _) | ("", "kWh") => (SensorKind::EnergyTotal, 1.0),
                _ => return None,
            };
            let kind = if kind == SensorKind::EnergyTotal {
                let words = [
                    text("name"),
                    text("unique_id"),
                    text("object_id"),
                    text("value_template"),
                    Some(key.to_owned()),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
                .to_ascii_lowercase();
                if words.contains("yesterday") {
                    return None;
                }
                if words.contains("today") {
                    SensorKind::EnergyToday
                } else {
                    SensorKind::EnergyTotal
                }
            } else {
                kind
            };
            EntityKind::Sensor(HaSensor {
                state_topic,
                template: text("value_template"),
                kind,
                factor,
            })
        }
        _ => return None,
    };
    let device = config.get("device").and_then(Value::as_object);
    let device_text = |k: &str| device.and_then(|d| d.get(k)).and_then(Value::as_str);
    let identifier = device.and_then(|d| match d.get("identifiers") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(ids)) => ids.first().and_then(scalar_value),
        _ => None,
    });
    let connection = device
        .and_then(|d| d.get("connections"))
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .and_then(Value::as_array)
        .map(|pair| {
            pair.iter()
                .filter_map(scalar_value)
                .collect::<Vec<_>>()
                .join("_")
        });
    let device_key = identifier
        .or(connection)
        .or_else(|| text("unique_id"))
        .unwrap_or_else(|| key.to_owned());

    let mut availability = Vec::new();
    let default_on = text("payload_available").unwrap_or_else(|| "online".into());
    let default_off = text("payload_not_available").unwrap_or_else(|| "offline".into());
    if let Some(t) = topic("availability_topic") {
        availability.push(AvailTopic {
            topic: t,
            available: default_on.clone(),
            not_available: default_off.clone(),
            template: text("availability_template"),
            last: None,
        });
    }
    if let Some(Value::Array(list)) = config.get("availability") {
        for item in list {
            let Value::Object(item) = item else { continue };
            let item = expand(item.clone(), AVAILABILITY_ABBREVIATIONS);
            let Some(t) = item.get("topic").and_then(Value::as_str) else {
                continue;
            };
            let t = tilde(t, base);
            if validate_topic_name(&t).is_err() {
                continue;
            }
            let get = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_owned);
            availability.push(AvailTopic {
                topic: t,
                available: get("payload_available").unwrap_or_else(|| "online".into()),
                not_available: get("payload_not_available").unwrap_or_else(|| "offline".into()),
                template: get("value_template"),
                last: None,
            });
        }
    }
    let mode = match text("availability_mode").as_deref() {
        Some("all") => AvailMode::All,
        Some("any") => AvailMode::Any,
        _ => AvailMode::Latest,
    };
    Some(HaEntity {
        device_key,
        device_name: device_text("name").map(str::to_owned),
        room: device_text("suggested_area").map(str::to_owned),
        name: text("name"),
        kind,
        availability,
        mode,
        latest: None,
    })
}

/// A string, number or boolean option as text (`pl_on` may be `1` or `true`).
fn scalar(v: Option<&Value>) -> Option<String> {
    v.and_then(scalar_value)
}

fn scalar_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The command for a switch entity, `None` when it has no command topic.
pub(crate) fn command(s: &HaSwitch, on: bool) -> Option<OutgoingMessage> {
    let topic = s.command_topic.clone()?;
    let payload = if on { &s.payload_on } else { &s.payload_off };
    Some(OutgoingMessage::command(
        topic,
        payload.as_bytes().to_vec(),
        s.qos,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_both_ends() {
        assert_eq!(tilde("~/set", Some("a/b")), "a/b/set");
        assert_eq!(tilde("pre/~", Some("a/b")), "pre/a/b");
        assert_eq!(tilde("x/set", Some("a/b")), "x/set");
        assert_eq!(tilde("~/set", None), "~/set");
    }

    #[test]
    fn abbreviations_expand_in_device_block() {
        let v: Value = serde_json::from_str(
            r#"{"cmd_t":"a","dev":{"ids":["x"],"sa":"Kitchen"},"command_topic":"full"}"#,
        )
        .unwrap();
        let Value::Object(m) = v else { unreachable!() };
        let m = expand(m, ENTITY_ABBREVIATIONS);
        assert_eq!(m["command_topic"], "full");
        assert_eq!(m["device"]["identifiers"][0], "x");
        assert_eq!(m["device"]["suggested_area"], "Kitchen");
    }

    #[test]
    fn non_config_topics() {
        let mut store = HaStore::default();
        assert!(
            store
                .handle_config("homeassistant/status", b"online")
                .is_none()
        );
        assert!(
            store
                .handle_config("homeassistant/switch/a/state", b"ON")
                .is_none()
        );
        assert!(
            store
                .handle_config("homeassistant/switch/a/b/c/config", b"{}")
                .is_none()
        );
        assert!(
            store
                .handle_config("homeassistant/switch//config", b"{}")
                .is_none()
        );
    }
}
