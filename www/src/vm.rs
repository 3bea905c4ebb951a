//! View models: what the components render, computed from the state by plain functions.
//!
//! Components receive these small `PartialEq` values as props (so Yew re-renders only the cards
//! that changed) and host unit tests check grouping, search, formatting and the chart geometry
//! without a browser.

use std::collections::BTreeMap;

use switchboard_devices::{Availability, Device, DeviceId, PowerHistory, Registry, RelayState};

use crate::schedule::{self, Received, Rule};
use crate::state::TopicEntry;

/// What one relay's switch shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchState {
    /// Confirmed on.
    On,
    /// Confirmed off.
    Off,
    /// No state heard yet.
    Unknown,
    /// A command is waiting for the device to confirm `want`.
    Pending {
        /// The state asked for.
        want: bool,
    },
}

impl SwitchState {
    /// `data-state` attribute value (tests and CSS read it).
    #[must_use]
    pub fn data(self) -> &'static str {
        match self {
            Self::On => "on",
            Self::Off => "off",
            Self::Unknown => "unknown",
            Self::Pending { want: true } => "pending-on",
            Self::Pending { want: false } => "pending-off",
        }
    }

    /// The word under the switch.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::On => "On",
            Self::Off => "Off",
            Self::Unknown => "Unknown",
            Self::Pending { want: true } => "Turning on…",
            Self::Pending { want: false } => "Turning off…",
        }
    }
}

/// One relay's switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayVm {
    /// 0-based index.
    pub index: u8,
    /// The label of this output on multi-relay devices.
    pub label: Option<String>,
    /// What it shows.
    pub state: SwitchState,
    /// Whether it is confirmed on (`aria-checked`; a pending switch is also `aria-busy`).
    pub on: bool,
}

/// One plug card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardVm {
    /// The device.
    pub id: DeviceId,
    /// Display name.
    pub name: String,
    /// Reachability.
    pub online: Availability,
    /// Switches.
    pub relays: Vec<RelayVm>,
    /// Formatted live power, if metered.
    pub power: Option<String>,
    /// Short family name.
    pub family: &'static str,
}

impl CardVm {
    /// Builds the card of `device`.
    #[must_use]
    pub fn of(device: &Device) -> Self {
        let many = device.relays.len() > 1;
        Self {
            id: device.id.clone(),
            name: device.name.clone(),
            online: device.online,
            relays: device
                .relays
                .iter()
                .map(|r| RelayVm {
                    index: r.index,
                    // A single output needs no label (Home Assistant names it "Relay" or
                    // repeats the device name).
                    label: many.then(|| {
                        r.name
                            .clone()
                            .unwrap_or_else(|| format!("Output {}", r.index + 1))
                    }),
                    state: match (r.pending, r.state) {
                        (Some(p), _) => SwitchState::Pending { want: p.want },
                        (None, RelayState::On) => SwitchState::On,
                        (None, RelayState::Off) => SwitchState::Off,
                        (None, RelayState::Unknown) => SwitchState::Unknown,
                    },
                    on: r.state == RelayState::On,
                })
                .collect(),
            power: device.power_w.map(format_power),
            family: family_label(device),
        }
    }

    /// Whether the card is greyed out.
    #[must_use]
    pub fn offline(&self) -> bool {
        self.online == Availability::Offline
    }
}

/// A room and its cards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomVm {
    /// The room, `None` for devices without one.
    pub room: Option<String>,
    /// Cards sorted by name.
    pub cards: Vec<CardVm>,
    /// Whether "all off" has anything to do.
    pub any_on: bool,
}

impl RoomVm {
    /// The heading.
    #[must_use]
    pub fn title(&self) -> &str {
        self.room.as_deref().unwrap_or("Other")
    }
}

/// The short name of a device's family.
#[must_use]
pub fn family_label(device: &Device) -> &'static str {
    use switchboard_devices::Family;
    match device.family {
        Family::HomeAssistant => "Home Assistant",
        Family::Tasmota => "Tasmota",
        Family::ShellyGen1 => "Shelly",
        Family::ShellyGen2 => "Shelly Plus",
        Family::Zigbee2Mqtt => "Zigbee",
        Family::Manual => "Manual",
    }
}

/// `s` in lower case, for case-insensitive search and sorting.
///
/// In the browser this is JavaScript's `toLowerCase`: the page then ships no Unicode case
/// tables of its own (about 10 KB of wasm); on the host (tests) it is `str::to_lowercase`,
/// which gives the same answers.
#[must_use]
pub fn fold_case(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    #[cfg(target_arch = "wasm32")]
    {
        String::from(js_sys::JsString::from(s).to_lower_case())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        s.to_lowercase()
    }
}

/// Whether `device` matches the search `query` (case-insensitive, on name, room and id).
#[must_use]
pub fn matches(device: &Device, query: &str) -> bool {
    let q = fold_case(query.trim());
    q.is_empty()
        || fold_case(&device.name).contains(&q)
        || device
            .room
            .as_deref()
            .is_some_and(|r| fold_case(r).contains(&q))
        || fold_case(device.id.as_str()).contains(&q)
}

/// The order that sorts `keys`: indices into `keys`, smallest key first.
///
/// Every sort of the dashboard goes through this one function on `(String, usize)` so the wasm
/// carries one instance of the sort code instead of one per element type and comparator.
#[must_use]
pub fn order_by(keys: impl IntoIterator<Item = String>) -> Vec<usize> {
    let mut keyed: Vec<(String, usize)> = keys.into_iter().zip(0..).collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// The grid: devices matching `query` grouped by room, rooms alphabetical (case-insensitive),
/// devices without a room last, cards by name.
#[must_use]
pub fn rooms(registry: &Registry, query: &str) -> Vec<RoomVm> {
    let devices: Vec<&Device> = registry.devices().filter(|d| matches(d, query)).collect();
    // Rooms first (no room last: '1' > '0'), the exact room name keeping rooms that differ only
    // in case apart, then the name and the id; '\0' separates fields and sorts before any text.
    let order = order_by(devices.iter().map(|d| {
        let room = match &d.room {
            Some(r) => format!("0{}\0{r}", fold_case(r)),
            None => "1\0".to_owned(),
        };
        format!("{room}\0{}\0{}", fold_case(&d.name), d.id)
    }));
    let mut rooms: Vec<RoomVm> = Vec::new();
    for d in order.into_iter().map(|i| devices[i]) {
        let on = d.online != Availability::Offline
            && d.relays
                .iter()
                .any(|r| r.state == RelayState::On || r.pending.is_some_and(|p| p.want));
        match rooms.last_mut() {
            Some(last) if last.room == d.room => {
                last.any_on |= on;
                last.cards.push(CardVm::of(d));
            }
            _ => rooms.push(RoomVm {
                room: d.room.clone(),
                cards: vec![CardVm::of(d)],
                any_on: on,
            }),
        }
    }
    rooms
}

/// Every room name in use, sorted, for the "move to room" suggestions.
#[must_use]
pub fn room_names(registry: &Registry) -> Vec<String> {
    let names: Vec<&str> = registry
        .devices()
        .filter_map(|d| d.room.as_deref())
        .collect();
    let mut sorted: Vec<String> = order_by(names.iter().map(|n| format!("{}\0{n}", fold_case(n))))
        .into_iter()
        .map(|i| names[i].to_owned())
        .collect();
    sorted.dedup();
    sorted
}

/// `v` with `decimals` digits after the point (rounded half away from zero), e.g.
/// `fixed(7.46, 1) == "7.5"`. Integer arithmetic: the page ships no float formatting code.
#[must_use]
pub fn fixed(v: f64, decimals: u32) -> String {
    let scale = 10i64.pow(decimals);
    // Saturating cast; readings are far from i64's range.
    let n = (v * scale as f64).round() as i64;
    let sign = if n < 0 { "-" } else { "" };
    let n = n.unsigned_abs();
    let scale = scale.unsigned_abs();
    if decimals == 0 {
        format!("{sign}{n}")
    } else {
        format!(
            "{sign}{}.{:0width$}",
            n / scale,
            n % scale,
            width = decimals as usize
        )
    }
}

/// Power for people: `0 W`, `7.5 W`, `60 W`, `1.25 kW`.
#[must_use]
pub fn format_power(watts: f64) -> String {
    let w = if watts.is_finite() {
        watts.max(0.0)
    } else {
        0.0
    };
    if w >= 1_000.0 {
        format!("{} kW", fixed(w / 1_000.0, 2))
    } else if w >= 10.0 || w == 0.0 {
        format!("{} W", fixed(w, 0))
    } else {
        format!("{} W", fixed(w, 1))
    }
}

/// Energy for people: `0.25 kWh`, `12.3 kWh`, `1,234 kWh` is written `1234 kWh`.
#[must_use]
pub fn format_energy(kwh: f64) -> String {
    let e = if kwh.is_finite() { kwh.max(0.0) } else { 0.0 };
    if e >= 100.0 {
        format!("{} kWh", fixed(e, 0))
    } else if e >= 10.0 {
        format!("{} kWh", fixed(e, 1))
    } else {
        format!("{} kWh", fixed(e, 2))
    }
}

/// Width of the chart's view box.
pub const CHART_W: f64 = 300.0;
/// Height of the chart's view box.
pub const CHART_H: f64 = 100.0;

/// The last hour of power as SVG paths in a [`CHART_W`]×[`CHART_H`] view box.
#[derive(Clone, Debug, PartialEq)]
pub struct ChartVm {
    /// The line (`M x y L x y ...`); empty without samples.
    pub line: String,
    /// The same line closed to the bottom edge, for the fill.
    pub area: String,
    /// The top of the y scale in watts (a round number ≥ the highest reading).
    pub y_max: f64,
    /// How many samples are drawn.
    pub samples: usize,
}

/// A round scale top ≥ `max`: 1, 2, 5 × 10ⁿ (at least 10 W).
#[must_use]
pub fn nice_ceiling(max: f64) -> f64 {
    let max = if max.is_finite() { max.max(10.0) } else { 10.0 };
    let mut mag = 1.0;
    while mag * 10.0 <= max {
        mag *= 10.0;
    }
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * mag)
}

/// The chart of `history` for the hour ending at `now_ms`. Samples are drawn as steps (a
/// reading holds until the next one) and the last one is extended to `now_ms`.
#[must_use]
pub fn chart(history: &PowerHistory, now_ms: u64) -> ChartVm {
    let start = now_ms.saturating_sub(PowerHistory::WINDOW_MS);
    let y_max = nice_ceiling(history.max_watts().unwrap_or(0.0));
    let x = |t: u64| {
        let t = t.clamp(start, now_ms.max(start + 1));
        (t - start) as f64 / PowerHistory::WINDOW_MS as f64 * CHART_W
    };
    let y = |w: f64| CHART_H - (w.max(0.0) / y_max).min(1.0) * CHART_H;
    let mut line = String::new();
    let mut prev_y = None;
    let mut first_x = None;
    for s in history.iter() {
        let (sx, sy) = (x(s.at_ms), y(s.watts));
        match prev_y {
            None => {
                line.push_str(&format!("M{} {}", fixed(sx, 1), fixed(sy, 1)));
                first_x = Some(sx);
            }
            Some(py) => {
                let (sx, py, sy) = (fixed(sx, 1), fixed(py, 1), fixed(sy, 1));
                line.push_str(&format!("L{sx} {py}L{sx} {sy}"));
            }
        }
        prev_y = Some(sy);
    }
    let area = match (prev_y, first_x) {
        (Some(py), Some(fx)) => {
            let end = x(now_ms);
            let (end, py, fx) = (fixed(end, 1), fixed(py, 1), fixed(fx, 1));
            line.push_str(&format!("L{end} {py}"));
            format!("{line}L{end} 100.0L{fx} 100.0Z")
        }
        _ => String::new(),
    };
    ChartVm {
        line,
        area,
        y_max,
        samples: history.len(),
    }
}

/// One row of the raw topic tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRow {
    /// Nesting depth (0 for a first level).
    pub depth: usize,
    /// This level's name.
    pub level: String,
    /// The full topic of this node.
    pub topic: String,
    /// The last message on exactly this topic, if any.
    pub entry: Option<TopicEntry>,
}

/// The topic tree as rows in depth-first order: every level of every topic once, parents before
/// children, only topics containing `query` (case-insensitive) and their parents.
#[must_use]
pub fn topic_rows(topics: &BTreeMap<String, TopicEntry>, query: &str) -> Vec<TopicRow> {
    let q = fold_case(query.trim());
    // `BTreeMap` order groups children under parents except where a sibling level sorts between
    // a parent's name and its `/`: sort by levels instead, i.e. with `/` sorting before any
    // character (topics contain no U+0000).
    let wanted: Vec<&String> = topics
        .keys()
        .filter(|t| q.is_empty() || fold_case(t).contains(&q))
        .collect();
    let order = order_by(wanted.iter().map(|t| t.replace('/', "\0")));
    let mut rows = Vec::new();
    let mut open: Vec<&str> = Vec::new();
    for topic in order.into_iter().map(|i| wanted[i]) {
        let levels: Vec<&str> = topic.split('/').collect();
        let common = open.iter().zip(&levels).take_while(|(a, b)| a == b).count();
        open.truncate(common);
        for (depth, level) in levels.iter().enumerate().skip(common) {
            open.push(level);
            rows.push(TopicRow {
                depth,
                level: (*level).to_owned(),
                topic: open.join("/"),
                entry: None,
            });
        }
        if let Some(row) = rows.iter_mut().rev().find(|r| r.topic == *topic) {
            row.entry = topics.get(topic.as_str()).cloned();
        }
    }
    rows
}

/// One schedule in a device's list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleVm {
    /// The schedule's id.
    pub id: String,
    /// What it does, `On at 07:30 Mon–Fri`; for one the gateway ignores, its reason.
    pub summary: String,
    /// `Whole room: Kitchen` for a schedule of the device's room, `None` for its own.
    pub scope: Option<String>,
    /// The output it switches, on devices with several (or when not the first).
    pub relay: Option<String>,
    /// Whether it fires (a flagged one never does).
    pub enabled: bool,
    /// Set when the gateway ignores it: it can then only be deleted.
    pub invalid: bool,
}

/// The label of output `index` of `device`: its name, else `Output <n>`.
fn relay_label(device: &Device, index: u8) -> String {
    device
        .relay(index)
        .and_then(|r| r.name.clone())
        .unwrap_or_else(|| format!("Output {}", u16::from(index) + 1))
}

/// The schedules acting on `device`: its own first, then its room's; each group by time of
/// day (timers after), then id.
#[must_use]
pub fn device_schedules(
    schedules: &BTreeMap<String, Received>,
    device: &Device,
) -> Vec<ScheduleVm> {
    let room = device.room.as_deref();
    let list: Vec<&Received> = schedules
        .values()
        .filter(|r| r.applies_to(&device.id, room))
        .collect();
    let order = order_by(list.iter().map(|r| {
        let scope = if r.device.is_some() { '0' } else { '1' };
        let when = match r.schedule.as_ref().map(|s| &s.rule) {
            Ok(Rule::At { time, .. }) => format!("0{:04}", time.minutes()),
            Ok(Rule::OffAfter { .. }) => "1".to_owned(),
            Err(_) => "2".to_owned(),
        };
        format!("{scope}\0{when}\0{}", r.id)
    }));
    order
        .into_iter()
        .map(|i| {
            let r = list[i];
            let scope = r
                .device
                .is_none()
                .then(|| format!("Whole room: {}", r.room.as_deref().unwrap_or_default()));
            match &r.schedule {
                Ok(s) => ScheduleVm {
                    id: r.id.clone(),
                    summary: schedule::summary(&s.rule),
                    scope,
                    relay: (device.relays.len() > 1 || s.relay != 0)
                        .then(|| relay_label(device, s.relay)),
                    enabled: s.enabled,
                    invalid: false,
                },
                Err(why) => ScheduleVm {
                    id: r.id.clone(),
                    summary: format!("Ignored by the gateway: {why}"),
                    scope,
                    relay: None,
                    enabled: false,
                    invalid: true,
                },
            }
        })
        .collect()
}

/// The add form's choice of outputs, `(index, label)`: empty for a device with one.
#[must_use]
pub fn relay_choices(device: &Device) -> Vec<(u8, String)> {
    if device.relays.len() < 2 {
        return Vec::new();
    }
    device
        .relays
        .iter()
        .map(|r| (r.index, relay_label(device, r.index)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(messages: &[(&str, &str)]) -> Registry {
        let mut reg = Registry::new();
        for (i, (t, p)) in messages.iter().enumerate() {
            reg.handle_message(t, p.as_bytes(), false, i as u64 * 10_000);
        }
        reg
    }

    #[test]
    fn groups_by_room_and_searches() {
        let reg = registry(&[
            ("stat/kettle/POWER", "ON"),
            ("stat/lamp/POWER", "OFF"),
            ("stat/tv/POWER", "OFF"),
            ("switchboard/meta/tasmota:kettle", r#"{"room":"kitchen"}"#),
            (
                "switchboard/meta/tasmota:lamp",
                r#"{"room":"Bedroom","name":"Bedside"}"#,
            ),
        ]);
        let rooms = rooms(&reg, "");
        let titles: Vec<&str> = rooms.iter().map(RoomVm::title).collect();
        assert_eq!(titles, ["Bedroom", "kitchen", "Other"]);
        assert_eq!(rooms[0].cards[0].name, "Bedside");
        assert!(!rooms[0].any_on);
        assert!(rooms[1].any_on);
        assert_eq!(rooms[1].cards[0].relays[0].state, SwitchState::On);
        assert_eq!(rooms[1].cards[0].relays[0].label, None);

        let found = super::rooms(&reg, "  KITCH ");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].cards.len(), 1);
        assert_eq!(fold_case("KÜCHE"), "küche");
        assert!(
            super::rooms(&reg, "bedside")[0].cards[0]
                .id
                .as_str()
                .ends_with("lamp")
        );
        assert!(super::rooms(&reg, "nothing").is_empty());
        assert_eq!(room_names(&reg), ["Bedroom", "kitchen"]);
    }

    #[test]
    fn card_switch_states() {
        let mut reg = registry(&[
            ("tele/strip/LWT", "Online"),
            ("stat/strip/POWER1", "ON"),
            ("stat/strip/POWER2", "OFF"),
            (
                "tele/strip/SENSOR",
                r#"{"ENERGY":{"Power":1234.5,"Today":0.5,"Total":12}}"#,
            ),
        ]);
        let id = DeviceId::from("tasmota:strip");
        reg.command(&id, 1, true, 100).expect("online");
        let card = CardVm::of(reg.get(&id).unwrap());
        assert_eq!(card.relays.len(), 2);
        assert_eq!(card.relays[0].label.as_deref(), Some("Output 1"));
        assert_eq!(card.relays[0].state, SwitchState::On);
        assert_eq!(card.relays[1].state, SwitchState::Pending { want: true });
        assert_eq!(card.relays[1].state.data(), "pending-on");
        assert!(!card.relays[1].on, "aria-checked stays confirmed");
        assert_eq!(card.power.as_deref(), Some("1.23 kW"));
        assert_eq!(card.family, "Tasmota");
        assert!(!card.offline());
        reg.handle_message("tele/strip/LWT", b"Offline", true, 200);
        assert!(CardVm::of(reg.get(&id).unwrap()).offline());
    }

    #[test]
    fn formats() {
        assert_eq!(format_power(0.0), "0 W");
        assert_eq!(format_power(7.46), "7.5 W");
        assert_eq!(format_power(60.4), "60 W");
        assert_eq!(format_power(1_999.0), "2.00 kW");
        assert_eq!(format_power(f64::NAN), "0 W");
        assert_eq!(format_energy(0.254), "0.25 kWh");
        assert_eq!(format_energy(12.34), "12.3 kWh");
        assert_eq!(format_energy(1_234.4), "1234 kWh");
        assert_eq!(fixed(-0.04, 1), "0.0");
        assert_eq!(fixed(-1.25, 1), "-1.3");
        assert_eq!(fixed(2.5, 0), "3");
        assert_eq!(fixed(0.05, 2), "0.05");
        assert_eq!(nice_ceiling(0.0), 10.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(2_000.0), 2_000.0);
        assert_eq!(nice_ceiling(2_001.0), 5_000.0);
    }

    #[test]
    fn chart_geometry() {
        assert_eq!(chart(&PowerHistory::default(), 0).line, "");
        let mut h = PowerHistory::default();
        let now = 10 * PowerHistory::WINDOW_MS;
        h.push(now - PowerHistory::WINDOW_MS / 2, 50.0);
        h.push(now - PowerHistory::WINDOW_MS / 4, 100.0);
        let c = chart(&h, now);
        assert_eq!(c.y_max, 100.0);
        assert_eq!(c.samples, 2);
        assert_eq!(c.line, "M150.0 50.0L225.0 50.0L225.0 0.0L300.0 0.0");
        assert_eq!(c.area, format!("{}L300.0 100.0L150.0 100.0Z", c.line));
    }

    #[test]
    fn topic_tree_rows() {
        let entry = |p: &str| TopicEntry {
            preview: p.to_owned(),
            len: p.len(),
            retained: false,
            count: 1,
            at_ms: 0,
        };
        let topics: BTreeMap<String, TopicEntry> = [
            ("tele/kettle/LWT", "Online"),
            ("tele/kettle", "x"),
            ("tele-x/a", "1"),
            ("stat/kettle/POWER", "ON"),
        ]
        .into_iter()
        .map(|(t, p)| (t.to_owned(), entry(p)))
        .collect();
        let rows = topic_rows(&topics, "");
        let shape: Vec<(usize, &str, Option<&str>)> = rows
            .iter()
            .map(|r| {
                (
                    r.depth,
                    r.level.as_str(),
                    r.entry.as_ref().map(|e| e.preview.as_str()),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                (0, "stat", None),
                (1, "kettle", None),
                (2, "POWER", Some("ON")),
                (0, "tele", None),
                (1, "kettle", Some("x")),
                (2, "LWT", Some("Online")),
                (0, "tele-x", None),
                (1, "a", Some("1")),
            ]
        );
        let filtered = topic_rows(&topics, "lwt");
        assert_eq!(filtered.len(), 3);
        assert_eq!(filtered[2].topic, "tele/kettle/LWT");
    }

    #[test]
    fn a_device_lists_its_own_and_its_rooms_schedules() {
        let reg = registry(&[
            ("stat/strip/POWER1", "ON"),
            ("stat/strip/POWER2", "OFF"),
            ("switchboard/meta/tasmota:strip", r#"{"room":"Office"}"#),
        ]);
        let strip = reg.get(&DeviceId::from("tasmota:strip")).unwrap();
        let mut schedules = BTreeMap::new();
        for (id, payload) in [
            (
                "late",
                r#"{"device":"tasmota:strip","relay":1,"enabled":false,"rule":{"kind":"at","time":"22:00","on":false}}"#,
            ),
            (
                "early",
                r#"{"device":"tasmota:strip","rule":{"kind":"at","time":"06:30","days":["sat","sun"],"on":true}}"#,
            ),
            (
                "room-timer",
                r#"{"room":"Office","rule":{"kind":"off_after","seconds":3600}}"#,
            ),
            (
                "broken",
                r#"{"device":"tasmota:strip","rule":{"kind":"at"}}"#,
            ),
            (
                "elsewhere",
                r#"{"room":"Kitchen","rule":{"kind":"off_after","seconds":60}}"#,
            ),
            (
                "other",
                r#"{"device":"tasmota:other","rule":{"kind":"off_after","seconds":60}}"#,
            ),
        ] {
            let topic = schedule::topic(id);
            if let Some(schedule::Update::Stored(r)) = schedule::parse(&topic, payload.as_bytes()) {
                schedules.insert(r.id.clone(), r);
            }
        }
        let list = device_schedules(&schedules, strip);
        let ids: Vec<&str> = list.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["early", "late", "broken", "room-timer"]);
        assert_eq!(list[0].summary, "On at 06:30 Sat, Sun");
        assert_eq!(list[0].relay.as_deref(), Some("Output 1"));
        assert!(list[0].enabled && !list[0].invalid);
        assert_eq!(list[1].summary, "Off at 22:00 every day");
        assert_eq!(list[1].relay.as_deref(), Some("Output 2"));
        assert!(!list[1].enabled);
        assert!(list[2].invalid);
        assert!(
            list[2].summary.starts_with("Ignored by the gateway: "),
            "{}",
            list[2].summary
        );
        assert_eq!(list[3].scope.as_deref(), Some("Whole room: Office"));
        assert_eq!(list[3].summary, "Off 1 h after switched on");
        assert_eq!(
            relay_choices(strip),
            [(0, "Output 1".to_owned()), (1, "Output 2".to_owned())]
        );
        let single = registry(&[("stat/kettle/POWER", "ON")]);
        assert!(relay_choices(single.get(&DeviceId::from("tasmota:kettle")).unwrap()).is_empty());
    }
}
