//! Schedules as the dashboard sees them: the wire format, its validation, the words a person
//! reads ("On at 07:30 Mon–Fri") and the add form's draft.
//!
//! The gateway runs schedules itself (`gateway/src/schedule.rs`); the dashboard only reads and
//! writes the retained JSON messages on `switchboard/schedules/<id>` that the gateway keeps in
//! step with. The gateway ignores (and logs) a payload it cannot read or that fails its checks,
//! so nothing is published that [`Schedule::validate`] refuses: the types and checks here mirror
//! the gateway's (`deny_unknown_fields`, exactly one of `device`/`room`, ids of 1 to 64
//! `[A-Za-z0-9_-]`, `seconds` at least 1). Deleting is an empty retained payload.
//!
//! Everything here is plain Rust, unit-tested on the host; [`crate::state`] keeps the received
//! schedules and queues the publishes, and the components render [`crate::vm::ScheduleVm`]s.

use switchboard_devices::DeviceId;

pub use switchboard_devices::schedule::{
    FILTER, Invalid, MAX_ID_LEN, MAX_OFF_AFTER_MINUTES, Rule, Schedule, TIME_ZONE_TOPIC,
    TOPIC_PREFIX, TimeOfDay, Weekday, delete_message, targets, topic, valid_id,
};

/// A schedule message as received: the schedule, or why the gateway ignores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The id (its topic's last level).
    pub id: String,
    /// The schedule, or why it is ignored.
    pub schedule: Result<Schedule, String>,
    /// The device named in the payload, even when the payload is otherwise unusable.
    pub device: Option<String>,
    /// The room named in the payload, even when the payload is otherwise unusable.
    pub room: Option<String>,
}

impl Received {
    /// Whether it (valid or not) is about `device` in `room`.
    #[must_use]
    pub fn applies_to(&self, device: &DeviceId, room: Option<&str>) -> bool {
        targets(self.device.as_deref(), self.room.as_deref(), device, room)
    }
}

/// What a message on a schedule topic means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// An empty payload: the schedule is gone.
    Deleted(String),
    /// A schedule (possibly one the gateway ignores).
    Stored(Received),
}

/// Reads a message: `None` when `topic` is not a schedule topic. Never fails: a payload the
/// gateway would ignore comes back with the reason, and with the device or room it names when
/// those can be read, so the dashboard can show it flagged (and offer to delete it).
#[must_use]
pub fn parse(topic: &str, payload: &[u8]) -> Option<Update> {
    let id = topic.strip_prefix(TOPIC_PREFIX)?;
    if id.contains('/') {
        return None;
    }
    if payload.is_empty() {
        return Some(Update::Deleted(id.to_owned()));
    }
    let schedule = serde_json::from_slice::<Schedule>(payload)
        .map_err(|e| e.to_string())
        .and_then(|mut s| {
            // The gateway takes the id from the topic, whatever the payload says.
            id.clone_into(&mut s.id);
            s.validate().map(|()| s).map_err(|e| e.message().to_owned())
        });
    let (device, room) = match &schedule {
        Ok(s) => (s.device.clone(), s.room.clone()),
        Err(_) => {
            // `Value` is in the page anyway (the device model reads JSON with it).
            let value = serde_json::from_slice::<serde_json::Value>(payload).ok();
            let field = |name: &str| {
                value
                    .as_ref()
                    .and_then(|v| v.get(name))
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            };
            (field("device"), field("room"))
        }
    };
    Some(Update::Stored(Received {
        id: id.to_owned(),
        schedule,
        device,
        room,
    }))
}

/// `seconds` for people: `45 s`, `30 min`, `1 h 30 min`, `2 h`.
#[must_use]
pub fn duration_text(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let parts: Vec<String> = [(h, "h"), (m, "min"), (s, "s")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}"))
        .collect();
    if parts.is_empty() {
        "0 s".to_owned()
    } else {
        parts.join(" ")
    }
}

/// The days a rule fires on: `every day`, `Mon–Fri`, `Sat, Sun`, `Mon, Wed–Fri`. Runs of three
/// or more days become ranges; order and repeats in the list do not matter.
#[must_use]
pub fn days_text(days: &[Weekday]) -> String {
    let mut set = [false; 7];
    for d in days {
        set[d.index()] = true;
    }
    if set.iter().all(|d| *d) || set.iter().all(|d| !*d) {
        return "every day".to_owned();
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < 7 {
        if !set[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i + 1 < 7 && set[i + 1] {
            i += 1;
        }
        let (a, b) = (Weekday::ALL[start].short(), Weekday::ALL[i].short());
        match i - start {
            0 => parts.push(a.to_owned()),
            1 => {
                parts.push(a.to_owned());
                parts.push(b.to_owned());
            }
            _ => parts.push(format!("{a}–{b}")),
        }
        i += 1;
    }
    parts.join(", ")
}

/// One line for a person: `On at 07:30 Mon–Fri`, `Off at 23:00 every day`,
/// `Off 30 min after switched on`.
#[must_use]
pub fn summary(rule: &Rule) -> String {
    match rule {
        Rule::At { time, days, on } => {
            let verb = if *on { "On" } else { "Off" };
            format!("{verb} at {time} {}", days_text(days))
        }
        Rule::OffAfter { seconds } => {
            format!("Off {} after switched on", duration_text(*seconds))
        }
    }
}

/// A new schedule id for `device`: its key without the family (`tasmota:kitchen_kettle` gives
/// `kitchen_kettle`), other characters than `[A-Za-z0-9_-]` turned into `-`, cut so the whole
/// fits in 64, then `-` and six base-36 characters of `random`: `kitchen_kettle-0k3x9a`.
#[must_use]
pub fn new_id(device: &DeviceId, random: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = random;
    let mut suffix = [b'0'; 6];
    for b in suffix.iter_mut().rev() {
        *b = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    let suffix = std::str::from_utf8(&suffix).expect("ASCII digits");
    let key = device
        .as_str()
        .split_once(':')
        .map_or(device.as_str(), |(_, k)| k);
    let mut short = String::new();
    for c in key.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '-'
        };
        // No runs of `-` where several characters were replaced.
        if !(c == '-' && short.ends_with('-')) {
            short.push(c);
        }
    }
    // ASCII only, so any byte length is a character boundary.
    short.truncate(MAX_ID_LEN - 1 - suffix.len());
    let short = short.trim_matches('-');
    let short = if short.is_empty() { "schedule" } else { short };
    format!("{short}-{suffix}")
}

/// Which kind of rule the add form builds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DraftKind {
    /// At a time of day.
    #[default]
    At,
    /// Off a number of minutes after switched on.
    OffAfter,
}

impl DraftKind {
    /// The `<select>` value (the wire's `kind`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::At => "at",
            Self::OffAfter => "off_after",
        }
    }

    /// Reads [`DraftKind::as_str`]'s output; anything else is [`DraftKind::At`].
    #[must_use]
    pub fn parse(s: &str) -> Self {
        if s == "off_after" {
            Self::OffAfter
        } else {
            Self::At
        }
    }
}

/// The add form's fields as typed, before validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    /// The kind of rule.
    pub kind: DraftKind,
    /// `HH:MM` from the time input.
    pub time: String,
    /// Weekday chips, Monday first; none chosen means every day.
    pub days: [bool; 7],
    /// Switch on (else off) at the time.
    pub on: bool,
    /// Minutes for "off after", as typed.
    pub minutes: String,
    /// The relay.
    pub relay: u8,
}

impl Default for Draft {
    fn default() -> Self {
        Self {
            kind: DraftKind::At,
            time: "07:00".to_owned(),
            days: [false; 7],
            on: true,
            minutes: "30".to_owned(),
            relay: 0,
        }
    }
}

impl Draft {
    /// The chosen days, Monday first (empty: every day; all seven are written as empty too).
    #[must_use]
    pub fn chosen_days(&self) -> Vec<Weekday> {
        if self.days.iter().all(|d| *d) {
            return Vec::new();
        }
        Weekday::ALL
            .into_iter()
            .filter(|d| self.days[d.index()])
            .collect()
    }

    /// The rule the fields describe.
    ///
    /// # Errors
    /// [`Invalid::Time`] or [`Invalid::Minutes`].
    pub fn rule(&self) -> Result<Rule, Invalid> {
        match self.kind {
            DraftKind::At => Ok(Rule::At {
                time: TimeOfDay::parse(self.time.trim())?,
                days: self.chosen_days(),
                on: self.on,
            }),
            DraftKind::OffAfter => {
                let minutes: u64 = self.minutes.trim().parse().map_err(|_| Invalid::Minutes)?;
                if !(1..=MAX_OFF_AFTER_MINUTES).contains(&minutes) {
                    return Err(Invalid::Minutes);
                }
                Ok(Rule::OffAfter {
                    seconds: minutes * 60,
                })
            }
        }
    }

    /// The enabled schedule `id` for `device` that the fields describe, checked as the gateway
    /// checks it.
    ///
    /// # Errors
    /// The first problem found.
    pub fn build(&self, device: &DeviceId, id: String) -> Result<Schedule, Invalid> {
        let schedule = Schedule {
            id,
            device: Some(device.as_str().to_owned()),
            room: None,
            relay: self.relay,
            enabled: true,
            rule: self.rule()?,
        };
        schedule.validate()?;
        Ok(schedule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kettle() -> DeviceId {
        DeviceId::from("tasmota:kitchen_kettle")
    }

    fn at(time: &str, days: &[Weekday], on: bool) -> Rule {
        Rule::At {
            time: TimeOfDay::parse(time).unwrap(),
            days: days.to_vec(),
            on,
        }
    }

    fn stored(topic: &str, payload: &str) -> Received {
        match parse(topic, payload.as_bytes()) {
            Some(Update::Stored(r)) => r,
            other => panic!("expected a stored schedule, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_documented_examples() {
        let r = stored(
            "switchboard/schedules/kettle-off",
            r#"{"id":"kettle-off","device":"tasmota:kitchen_kettle","relay":0,"enabled":true,"rule":{"kind":"at","time":"07:30","days":["mon","tue"],"on":true}}"#,
        );
        let s = r.schedule.unwrap();
        assert_eq!(s.id, "kettle-off");
        assert_eq!(s.device.as_deref(), Some("tasmota:kitchen_kettle"));
        assert_eq!(
            s.rule,
            at("07:30", &[Weekday::Mon, Weekday::Tue], true),
            "time, days and state"
        );
        assert!(s.applies_to(&kettle(), None));
        assert!(!s.applies_to(&DeviceId::from("tasmota:other"), None));

        let r = stored(
            "switchboard/schedules/t1",
            r#"{"id":"t1","room":"Kitchen","relay":0,"enabled":true,"rule":{"kind":"off_after","seconds":1800}}"#,
        );
        let s = r.schedule.unwrap();
        assert_eq!(s.rule, Rule::OffAfter { seconds: 1800 });
        assert!(s.applies_to(&kettle(), Some("Kitchen")));
        assert!(!s.applies_to(&kettle(), Some("Office")));
        assert!(!s.applies_to(&kettle(), None));
    }

    #[test]
    fn defaults_and_the_topic_id_win() {
        // Written by the API without relay, enabled or days; the payload's id is not the topic's.
        let s = stored(
            "switchboard/schedules/real",
            r#"{"id":"other","device":"tasmota:a","rule":{"kind":"at","time":"7:05","on":false}}"#,
        )
        .schedule
        .unwrap();
        assert_eq!(s.id, "real");
        assert_eq!(s.relay, 0);
        assert!(s.enabled);
        assert_eq!(s.rule, at("07:05", &[], false));
    }

    #[test]
    fn malformed_payloads_are_flagged_not_fatal() {
        for (payload, device) in [
            ("not json", None),
            (
                r#"{"device":"tasmota:a","rule":{"kind":"at","time":"24:00","on":true}}"#,
                Some("tasmota:a"),
            ),
            (
                r#"{"device":"tasmota:a","colour":"red","rule":{"kind":"off_after","seconds":5}}"#,
                Some("tasmota:a"),
            ),
            (
                r#"{"device":"tasmota:a","rule":{"kind":"off_after","seconds":0}}"#,
                Some("tasmota:a"),
            ),
            (
                r#"{"device":"tasmota:a","room":"Kitchen","rule":{"kind":"off_after","seconds":5}}"#,
                Some("tasmota:a"),
            ),
            (
                r#"{"device":"tasmota:a","rule":{"kind":"sometimes"}}"#,
                Some("tasmota:a"),
            ),
            (r#"{"rule":{"kind":"off_after","seconds":5}}"#, None),
        ] {
            let r = stored("switchboard/schedules/x", payload);
            assert!(r.schedule.is_err(), "{payload}");
            assert_eq!(r.device.as_deref(), device, "{payload}");
        }
        // An id the gateway refuses, in the topic.
        let r = stored(
            "switchboard/schedules/has space",
            r#"{"device":"tasmota:a","rule":{"kind":"off_after","seconds":5}}"#,
        );
        assert_eq!(r.schedule, Err(Invalid::Id.message().to_owned()));
    }

    #[test]
    fn deletions_and_other_topics() {
        assert_eq!(
            parse("switchboard/schedules/a", b""),
            Some(Update::Deleted("a".into()))
        );
        assert_eq!(parse("switchboard/meta/a", b"{}"), None);
        assert_eq!(parse("switchboard/schedules/a/b", b"{}"), None);
    }

    #[test]
    fn built_messages_round_trip_through_the_parser() {
        let s = Schedule {
            id: "kettle-1".into(),
            device: Some("tasmota:kitchen_kettle".into()),
            room: None,
            relay: 1,
            enabled: false,
            rule: at("06:05", &[Weekday::Sat, Weekday::Sun], false),
        };
        let m = s.to_message().unwrap();
        assert_eq!(m.topic, "switchboard/schedules/kettle-1");
        assert!(m.retain);
        assert_eq!(m.qos, 1);
        let json = m.payload_str();
        assert_eq!(
            json,
            r#"{"id":"kettle-1","device":"tasmota:kitchen_kettle","relay":1,"enabled":false,"rule":{"kind":"at","time":"06:05","days":["sat","sun"],"on":false}}"#
        );
        assert_eq!(stored(&m.topic, &json).schedule, Ok(s.clone()));

        let timer = Schedule {
            rule: Rule::OffAfter { seconds: 600 },
            ..s
        };
        let json = timer.to_message().unwrap().payload_str().into_owned();
        assert!(
            json.ends_with(r#""rule":{"kind":"off_after","seconds":600}}"#),
            "{json}"
        );

        let d = delete_message("kettle-1");
        assert_eq!(
            (d.topic.as_str(), d.payload.is_empty(), d.retain, d.qos),
            ("switchboard/schedules/kettle-1", true, true, 1)
        );
    }

    #[test]
    fn invalid_schedules_are_never_published() {
        let good = Schedule {
            id: "a".into(),
            device: Some("tasmota:a".into()),
            room: None,
            relay: 0,
            enabled: true,
            rule: Rule::OffAfter { seconds: 1 },
        };
        assert!(good.to_message().is_ok());
        let cases = [
            (
                Schedule {
                    id: String::new(),
                    ..good.clone()
                },
                Invalid::Id,
            ),
            (
                Schedule {
                    id: "a".repeat(65),
                    ..good.clone()
                },
                Invalid::Id,
            ),
            (
                Schedule {
                    id: "a.b".into(),
                    ..good.clone()
                },
                Invalid::Id,
            ),
            (
                Schedule {
                    room: Some("Kitchen".into()),
                    ..good.clone()
                },
                Invalid::Target,
            ),
            (
                Schedule {
                    device: None,
                    ..good.clone()
                },
                Invalid::Target,
            ),
            (
                Schedule {
                    rule: Rule::OffAfter { seconds: 0 },
                    ..good.clone()
                },
                Invalid::ZeroDelay,
            ),
        ];
        for (s, why) in cases {
            assert_eq!(s.to_message(), Err(why), "{s:?}");
        }
        assert!(valid_id(&"a".repeat(64)));
        assert!(valid_id("A_z-09"));
    }

    #[test]
    fn times_of_day() {
        assert_eq!(TimeOfDay::parse("07:30").unwrap().to_string(), "07:30");
        assert_eq!(TimeOfDay::parse("0:0").unwrap().to_string(), "00:00");
        assert_eq!(TimeOfDay::parse("23:59").unwrap().minutes(), 1439);
        for bad in ["24:00", "12:60", "", "12", "ab:cd", "12:30:00", "-1:00"] {
            assert_eq!(TimeOfDay::parse(bad), Err(Invalid::Time), "{bad}");
        }
    }

    #[test]
    fn summaries_read_like_sentences() {
        let weekdays = [
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
        ];
        assert_eq!(
            summary(&at("07:30", &weekdays, true)),
            "On at 07:30 Mon–Fri"
        );
        assert_eq!(summary(&at("23:00", &[], false)), "Off at 23:00 every day");
        assert_eq!(
            summary(&Rule::OffAfter { seconds: 1800 }),
            "Off 30 min after switched on"
        );
        assert_eq!(
            summary(&Rule::OffAfter { seconds: 5400 }),
            "Off 1 h 30 min after switched on"
        );
    }

    #[test]
    fn day_lists() {
        use Weekday::*;
        assert_eq!(days_text(&[]), "every day");
        assert_eq!(days_text(&Weekday::ALL), "every day");
        assert_eq!(days_text(&[Sun, Sat]), "Sat, Sun");
        assert_eq!(days_text(&[Mon, Wed, Fri]), "Mon, Wed, Fri");
        assert_eq!(days_text(&[Fri, Wed, Thu, Mon, Wed]), "Mon, Wed–Fri");
        assert_eq!(days_text(&[Mon, Fri, Sat, Sun]), "Mon, Fri–Sun");
        assert_eq!(days_text(&[Tue]), "Tue");
    }

    #[test]
    fn durations() {
        assert_eq!(duration_text(45), "45 s");
        assert_eq!(duration_text(60), "1 min");
        assert_eq!(duration_text(90), "1 min 30 s");
        assert_eq!(duration_text(7200), "2 h");
        assert_eq!(duration_text(3661), "1 h 1 min 1 s");
        assert_eq!(duration_text(0), "0 s");
    }

    #[test]
    fn generated_ids_are_valid_and_short() {
        assert_eq!(new_id(&kettle(), 0), "kitchen_kettle-000000");
        assert_eq!(new_id(&kettle(), 35), "kitchen_kettle-00000z");
        let id = new_id(&kettle(), u32::MAX);
        assert!(valid_id(&id), "{id}");
        assert_ne!(new_id(&kettle(), 1), new_id(&kettle(), 2));
        // Zigbee names with slashes and spaces, non-ASCII, very long keys, empty keys.
        assert_eq!(
            new_id(&DeviceId::from("z2m:kitchen/fridge plug"), 0),
            "kitchen-fridge-plug-000000"
        );
        assert_eq!(new_id(&DeviceId::from("z2m:Küche"), 0), "K-che-000000");
        let long = new_id(
            &DeviceId::from(format!("tasmota:{}", "x".repeat(200)).as_str()),
            7,
        );
        assert_eq!(long.len(), MAX_ID_LEN);
        assert!(valid_id(&long));
        assert_eq!(new_id(&DeviceId::from("z2m:///"), 0), "schedule-000000");
    }

    #[test]
    fn the_form_builds_checked_schedules() {
        let mut d = Draft::default();
        d.days[Weekday::Sat.index()] = true;
        d.days[Weekday::Sun.index()] = true;
        d.time = "08:15".into();
        d.on = false;
        d.relay = 1;
        let s = d.build(&kettle(), "k-1".into()).unwrap();
        assert_eq!(s.device.as_deref(), Some("tasmota:kitchen_kettle"));
        assert_eq!((s.relay, s.enabled), (1, true));
        assert_eq!(s.rule, at("08:15", &[Weekday::Sat, Weekday::Sun], false));
        // Every chip chosen is the same as none.
        d.days = [true; 7];
        assert_eq!(d.chosen_days(), vec![]);

        d.time = String::new();
        assert_eq!(d.build(&kettle(), "k-1".into()), Err(Invalid::Time));

        d.kind = DraftKind::OffAfter;
        d.minutes = " 45 ".into();
        assert_eq!(
            d.build(&kettle(), "k-1".into()).unwrap().rule,
            Rule::OffAfter { seconds: 2700 }
        );
        for bad in ["0", "-5", "1.5", "", "10081", "lots"] {
            d.minutes = bad.into();
            assert_eq!(d.rule(), Err(Invalid::Minutes), "{bad}");
        }
        d.minutes = "10080".into();
        assert!(d.rule().is_ok());
        assert_eq!(d.build(&kettle(), "bad id".into()), Err(Invalid::Id));
        assert_eq!(
            DraftKind::parse(DraftKind::OffAfter.as_str()),
            DraftKind::OffAfter
        );
        assert_eq!(DraftKind::parse("?"), DraftKind::At);
    }
}
