//! Schedules the gateway runs itself, so they fire with no browser open: switch a device (or
//! every device of a room) on or off at a time of day on chosen weekdays, or switch it off a
//! set time after it was switched on.
//!
//! Schedules are stored as retained JSON messages on `switchboard/schedules/<id>`: the durable
//! store keeps them across restarts, the dashboard can read and edit them over MQTT, and the
//! [`run`] task learns every change (from the HTTP API or from MQTT) through one in-process
//! subscription. The wire format and its checks are shared with the dashboard
//! ([`switchboard_devices::schedule`]). Evaluation is pure ([`Rule::next_fire`], [`TimerState`]) and takes the time
//! from a [`Clock`], so tests run it on virtual time.
//!
//! Times of day are wall-clock times in an IANA time zone with its daylight saving time,
//! `[schedules] time_zone` (default: the system's, UTC when it has none), or in a fixed
//! `[schedules] utc_offset`. A rule fires once a day even on the nights the clocks change:
//! a time the clocks skip fires after the jump (02:30 becomes 03:30), a time they repeat
//! fires at its first occurrence. The gateway publishes the zone's name, retained, on
//! [`TIME_ZONE_TOPIC`] for the dashboard's schedule editor.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Arc;

use serde::Deserialize;
use switchboard_devices::{DeviceId, RelayState};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use switchboard_devices::schedule::{
    Rule, Schedule, TIME_ZONE_TOPIC, TOPIC_PREFIX, TimeOfDay, UtcOffset, Weekday, Zone,
};

use crate::broker::Broker;
pub use crate::clock::{Clock, ManualClock, SystemClock};
use crate::devices::Devices;

/// The `[schedules]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSchedulesConfig")]
pub struct SchedulesConfig {
    /// The IANA time zone that times of day are in, with its daylight saving time
    /// (`"Europe/Berlin"`, `"America/New_York"`, `"UTC"`). Default: the system's.
    pub time_zone: Option<ZoneName>,
    /// A fixed offset from UTC instead (`"+01:00"`, `"-05:30"`, `"Z"`): no daylight saving
    /// time. Not together with `time_zone`.
    pub utc_offset: Option<UtcOffset>,
}

/// The table as written, before the check that only one of its keys is set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
struct RawSchedulesConfig {
    time_zone: Option<ZoneName>,
    utc_offset: Option<UtcOffset>,
}

impl TryFrom<RawSchedulesConfig> for SchedulesConfig {
    type Error = String;

    fn try_from(raw: RawSchedulesConfig) -> Result<Self, String> {
        if raw.time_zone.is_some() && raw.utc_offset.is_some() {
            return Err("set `time_zone` or `utc_offset`, not both".to_owned());
        }
        Ok(Self {
            time_zone: raw.time_zone,
            utc_offset: raw.utc_offset,
        })
    }
}

impl SchedulesConfig {
    /// The zone schedules run in: `time_zone`, else `utc_offset`, else the system's.
    #[must_use]
    pub fn zone(&self) -> TimeZone {
        match (&self.time_zone, self.utc_offset) {
            (Some(name), _) => TimeZone {
                name: name.name.clone(),
                tz: name.tz.clone(),
            },
            (None, Some(offset)) => TimeZone::fixed(offset),
            (None, None) => TimeZone::system(),
        }
    }
}

/// An IANA time zone name, checked against the time zone database when the file is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ZoneName {
    name: String,
    tz: jiff::tz::TimeZone,
}

impl TryFrom<String> for ZoneName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        match jiff::tz::TimeZone::get(&name) {
            Ok(tz) => Ok(Self { name, tz }),
            Err(_) => Err(format!(
                "`{name}` is not a time zone in the IANA database (like \"Europe/Berlin\")"
            )),
        }
    }
}

/// The zone schedules run in: a named IANA zone, or a fixed offset.
#[derive(Debug, Clone)]
pub struct TimeZone {
    name: String,
    tz: jiff::tz::TimeZone,
}

impl TimeZone {
    /// The IANA zone `name`.
    ///
    /// # Errors
    /// When the database has no such zone.
    pub fn named(name: &str) -> Result<Self, String> {
        ZoneName::try_from(name.to_owned()).map(|z| Self {
            name: z.name,
            tz: z.tz,
        })
    }

    /// A fixed offset, named as ISO 8601 writes it (`+01:00`; `UTC` for zero).
    #[must_use]
    pub fn fixed(offset: UtcOffset) -> Self {
        let tz = jiff::tz::Offset::from_seconds(offset.0)
            .map_or(jiff::tz::TimeZone::UTC, jiff::tz::TimeZone::fixed);
        let name = if offset.0 == 0 {
            "UTC".to_owned()
        } else {
            let (sign, secs) = if offset.0 < 0 {
                ('-', -offset.0)
            } else {
                ('+', offset.0)
            };
            format!("{sign}{:02}:{:02}", secs / 3600, secs % 3600 / 60)
        };
        Self { name, tz }
    }

    /// The system's zone (`TZ`, `/etc/localtime`), or UTC when it has none.
    #[must_use]
    pub fn system() -> Self {
        match jiff::tz::TimeZone::try_system() {
            Ok(tz) => Self {
                name: tz.iana_name().unwrap_or("system").to_owned(),
                tz,
            },
            Err(err) => {
                tracing::info!("no system time zone ({err}); schedules run in UTC");
                Self::fixed(UtcOffset(0))
            }
        }
    }

    /// Its name (`Europe/Berlin`, `+01:00`, `UTC`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Zone for TimeZone {
    fn local_ms(&self, utc_ms: i64) -> i64 {
        match jiff::Timestamp::from_millisecond(utc_ms) {
            Ok(ts) => utc_ms + i64::from(self.tz.to_offset(ts).seconds()) * 1000,
            Err(_) => utc_ms,
        }
    }

    fn utc_ms(&self, local_ms: i64) -> i64 {
        let Ok(wall) = jiff::Timestamp::from_millisecond(local_ms) else {
            return local_ms;
        };
        let civil = jiff::tz::TimeZone::UTC.to_datetime(wall);
        self.tz
            .to_ambiguous_timestamp(civil)
            .compatible()
            .map_or(local_ms, jiff::Timestamp::as_millisecond)
    }
}

/// The "off after" timers: when each relay was seen switching on, per schedule.
#[derive(Debug, Default)]
pub struct TimerState {
    /// (schedule id, device, relay) to the time it was first seen on; `None` once fired
    /// (re-armed when the relay is seen off).
    on_since: HashMap<(String, DeviceId, u8), Option<u64>>,
}

impl TimerState {
    /// Updates a timer with the relay's state at `now_ms`; true when it is due to switch the
    /// relay off now (then it is marked fired).
    pub fn observe(
        &mut self,
        key: (String, DeviceId, u8),
        on: bool,
        seconds: u64,
        now_ms: u64,
    ) -> bool {
        if !on {
            self.on_since.remove(&key);
            return false;
        }
        let since = self.on_since.entry(key).or_insert(Some(now_ms));
        match since {
            Some(at) if now_ms >= at.saturating_add(seconds.saturating_mul(1000)) => {
                *since = None;
                true
            }
            _ => false,
        }
    }

    /// The earliest pending deadline.
    #[must_use]
    pub fn next_deadline(&self, schedules: &BTreeMap<String, Schedule>) -> Option<u64> {
        self.on_since
            .iter()
            .filter_map(|((id, _, _), since)| {
                let Rule::OffAfter { seconds } = schedules.get(id)?.rule else {
                    return None;
                };
                since.map(|at| at.saturating_add(seconds.saturating_mul(1000)))
            })
            .min()
    }

    /// Forgets timers of schedules that no longer exist.
    pub fn retain(&mut self, schedules: &BTreeMap<String, Schedule>) {
        self.on_since
            .retain(|(id, _, _), _| schedules.contains_key(id));
    }
}

/// The schedules in force, shared by the HTTP API and the [`run`] task.
#[derive(Debug, Clone)]
pub struct Schedules {
    inner: Arc<SchedulesInner>,
}

#[derive(Debug)]
struct SchedulesInner {
    broker: Broker,
    zone: TimeZone,
    clock: Arc<dyn Clock>,
    /// By id. `parking_lot::Mutex`: held for short sections without `.await`.
    map: parking_lot::Mutex<BTreeMap<String, Schedule>>,
    /// Wakes the runner when a schedule changed.
    changed: Notify,
}

impl Schedules {
    /// An empty set; [`run`] fills it from the retained messages.
    #[must_use]
    pub fn new(broker: Broker, zone: TimeZone, clock: Arc<dyn Clock>) -> Self {
        // Volatile: derived from the configuration again at every start.
        broker.publish_volatile_retained(TIME_ZONE_TOPIC, zone.name().to_owned());
        Self {
            inner: Arc::new(SchedulesInner {
                broker,
                zone,
                clock,
                map: parking_lot::Mutex::default(),
                changed: Notify::new(),
            }),
        }
    }

    /// Every schedule, ordered by id.
    #[must_use]
    pub fn list(&self) -> Vec<Schedule> {
        self.inner.map.lock().values().cloned().collect()
    }

    /// The schedule `id`.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<Schedule> {
        self.inner.map.lock().get(id).cloned()
    }

    /// The next time the schedule fires (At rules), Unix milliseconds.
    #[must_use]
    pub fn next_fire(&self, schedule: &Schedule) -> Option<u64> {
        schedule
            .rule
            .next_fire(self.inner.clock.now_ms(), &self.inner.zone)
    }

    /// Stores (creates or replaces) a valid schedule: retained on its topic, and in force now.
    pub fn put(&self, schedule: Schedule) {
        let payload = serde_json::to_vec(&schedule).unwrap_or_default();
        self.inner.broker.publish_internal(
            format!("{TOPIC_PREFIX}{}", schedule.id),
            payload,
            switchboard_mqtt::QoS::AtLeastOnce,
            true,
        );
        self.inner.map.lock().insert(schedule.id.clone(), schedule);
        self.inner.changed.notify_one();
    }

    /// Deletes a schedule; false when there was none.
    pub fn delete(&self, id: &str) -> bool {
        let existed = self.inner.map.lock().remove(id).is_some();
        if existed {
            self.inner.broker.publish_internal(
                format!("{TOPIC_PREFIX}{id}"),
                Vec::new(),
                switchboard_mqtt::QoS::AtLeastOnce,
                true,
            );
            self.inner.changed.notify_one();
        }
        existed
    }

    /// Applies a retained schedule message (from the API, the dashboard or the store).
    fn apply_message(&self, topic: &str, payload: &[u8]) {
        let Some(id) = topic.strip_prefix(TOPIC_PREFIX) else {
            return;
        };
        if payload.is_empty() {
            self.inner.map.lock().remove(id);
        } else {
            match serde_json::from_slice::<Schedule>(payload) {
                Ok(mut schedule) => {
                    schedule.id = id.to_owned();
                    if let Err(err) = schedule.validate() {
                        tracing::warn!(%topic, "invalid schedule ignored: {err}");
                        return;
                    }
                    self.inner.map.lock().insert(id.to_owned(), schedule);
                }
                Err(err) => {
                    tracing::warn!(%topic, "unreadable schedule ignored: {err}");
                    return;
                }
            }
        }
        self.inner.changed.notify_one();
    }
}

/// The devices and relays a schedule acts on now.
fn targets(schedule: &Schedule, devices: &Devices) -> Vec<(DeviceId, u8, RelayState)> {
    devices.with_registry(|registry| {
        registry
            .devices()
            .filter(|d| match (&schedule.device, &schedule.room) {
                (Some(id), _) => d.id.as_str() == id,
                (None, Some(room)) => d.room.as_deref() == Some(room.as_str()),
                (None, None) => false,
            })
            .filter_map(|d| {
                let relay = d.relay(schedule.relay)?;
                Some((d.id.clone(), relay.index, relay.state))
            })
            .collect()
    })
}

/// Runs the schedules until `shutdown`: keeps them in step with `switchboard/schedules/+`,
/// fires `At` rules when their time passes and "off after" timers when they expire.
pub async fn run(schedules: Schedules, devices: Devices, shutdown: CancellationToken) {
    let inner = &schedules.inner;
    let filter = format!("{TOPIC_PREFIX}+");
    let mut sub = inner
        .broker
        .subscribe_internal("schedules", &[filter.as_str()], 256);
    let mut device_changes = devices.changes();
    let mut timers = TimerState::default();
    let mut last = inner.clock.now_ms();
    loop {
        let now = inner.clock.now_ms();
        let map = inner.map.lock().clone();
        timers.retain(&map);
        for schedule in map.values().filter(|s| s.enabled) {
            match &schedule.rule {
                Rule::At { on, .. } => {
                    if schedule
                        .rule
                        .next_fire(last, &inner.zone)
                        .is_some_and(|at| at <= now)
                    {
                        for (id, relay, _) in targets(schedule, &devices) {
                            tracing::info!(schedule = %schedule.id, device = %id, relay, on, "schedule fired");
                            if let Err(err) = devices.command(&id, relay, *on) {
                                tracing::warn!(schedule = %schedule.id, device = %id, "schedule could not switch: {err}");
                            }
                        }
                    }
                }
                Rule::OffAfter { seconds } => {
                    for (id, relay, state) in targets(schedule, &devices) {
                        let key = (schedule.id.clone(), id.clone(), relay);
                        if timers.observe(key, state == RelayState::On, *seconds, now) {
                            tracing::info!(schedule = %schedule.id, device = %id, relay, "timer expired, switching off");
                            if let Err(err) = devices.command(&id, relay, false) {
                                tracing::warn!(schedule = %schedule.id, device = %id, "timer could not switch off: {err}");
                            }
                        }
                    }
                }
            }
        }
        last = now;
        let next = map
            .values()
            .filter(|s| s.enabled)
            .filter_map(|s| s.rule.next_fire(now, &inner.zone))
            .chain(timers.next_deadline(&map))
            .min()
            .unwrap_or(u64::MAX)
            // Re-evaluate at least every minute (clock jumps, missed wake-ups).
            .min(now.saturating_add(60_000));
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = inner.clock.sleep_until(next) => {}
            () = inner.changed.notified() => {}
            changed = device_changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            msg = sub.recv() => match msg {
                Some(m) => schedules.apply_message(&m.msg.topic, &m.msg.payload),
                None => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 86_400_000;

    /// 2026-11-23 was a Monday; 00:00 UTC that day in Unix milliseconds.
    const MONDAY: u64 = 1_795_392_000_000;
    const HOUR: u64 = 3_600_000;

    fn at(time: &str, days: Vec<Weekday>) -> Rule {
        Rule::At {
            time: TimeOfDay::try_from(time.to_owned()).unwrap(),
            days,
            on: true,
        }
    }

    #[test]
    fn the_epoch_day_is_known() {
        assert_eq!(
            Weekday::of_day((MONDAY / DAY_MS as u64) as i64),
            Weekday::Mon
        );
    }

    #[test]
    fn next_fire_is_today_or_tomorrow() {
        let rule = at("07:30", vec![]);
        let utc = UtcOffset(0);
        let today = MONDAY + 7 * HOUR + HOUR / 2;
        assert_eq!(rule.next_fire(MONDAY, &utc), Some(today));
        // Strictly after: at 07:30 itself the next one is tomorrow.
        assert_eq!(rule.next_fire(today, &utc), Some(today + DAY_MS as u64));
        assert_eq!(rule.next_fire(today - 1, &utc), Some(today));
    }

    #[test]
    fn weekdays_are_respected() {
        let rule = at("08:00", vec![Weekday::Sat, Weekday::Sun]);
        let saturday = MONDAY + 5 * DAY_MS as u64 + 8 * HOUR;
        assert_eq!(rule.next_fire(MONDAY, &UtcOffset(0)), Some(saturday));
        assert_eq!(
            rule.next_fire(saturday, &UtcOffset(0)),
            Some(saturday + DAY_MS as u64)
        );
        // Sunday 08:00 to next Saturday.
        let sunday = saturday + DAY_MS as u64;
        assert_eq!(
            rule.next_fire(sunday, &UtcOffset(0)),
            Some(saturday + 7 * DAY_MS as u64)
        );
    }

    #[test]
    fn the_offset_shifts_local_time() {
        let rule = at("07:00", vec![Weekday::Mon]);
        let plus_one: UtcOffset = "+01:00".parse().unwrap();
        // 07:00 at +01:00 is 06:00 UTC.
        assert_eq!(rule.next_fire(MONDAY, &plus_one), Some(MONDAY + 6 * HOUR));
        let minus: UtcOffset = "-05:30".parse().unwrap();
        assert_eq!(minus.0, -(5 * 3600 + 1800));
        // Monday 07:00 at -05:30 is 12:30 UTC.
        assert_eq!(
            rule.next_fire(MONDAY, &minus),
            Some(MONDAY + 12 * HOUR + HOUR / 2)
        );
        assert!("01:00".parse::<UtcOffset>().is_err());
        assert!("+25:00".parse::<UtcOffset>().is_err());
    }

    fn ts(text: &str) -> u64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
    }

    /// Europe/Berlin in 2027: the clocks go from 02:00 to 03:00 on 28 March (01:00 UTC) and
    /// from 03:00 back to 02:00 on 31 October (01:00 UTC).
    #[test]
    fn daylight_saving_time_keeps_wall_clock_times_and_fires_once_a_day() {
        let berlin = TimeZone::named("Europe/Berlin").unwrap();
        assert_eq!(berlin.name(), "Europe/Berlin");
        // 07:30 stays 07:30 on the wall: 06:30 UTC in winter, 05:30 UTC in summer.
        let morning = at("07:30", vec![]);
        let saturday = ts("2027-03-27T12:00:00Z");
        assert_eq!(
            morning.next_fire(ts("2027-03-27T00:00:00Z"), &berlin),
            Some(ts("2027-03-27T06:30:00Z"))
        );
        assert_eq!(
            morning.next_fire(saturday, &berlin),
            Some(ts("2027-03-28T05:30:00Z"))
        );
        // 02:30 does not exist on 28 March: it fires once, after the jump (03:30 CEST), then
        // at 02:30 CEST the next night.
        let night = at("02:30", vec![]);
        let skipped = night.next_fire(saturday, &berlin).unwrap();
        assert_eq!(skipped, ts("2027-03-28T01:30:00Z"));
        assert_eq!(
            night.next_fire(skipped, &berlin),
            Some(ts("2027-03-29T00:30:00Z"))
        );
        // 02:30 happens twice on 31 October: it fires at the first (CEST) only.
        let first = night
            .next_fire(ts("2027-10-30T12:00:00Z"), &berlin)
            .unwrap();
        assert_eq!(first, ts("2027-10-31T00:30:00Z"));
        assert_eq!(
            night.next_fire(first, &berlin),
            Some(ts("2027-11-01T01:30:00Z"))
        );
        // A weekday rule counts the local day: Sunday 00:30 in Berlin is Saturday in UTC.
        let sunday = at("00:30", vec![Weekday::Sun]);
        assert_eq!(
            sunday.next_fire(saturday, &berlin),
            Some(ts("2027-03-27T23:30:00Z"))
        );
    }

    #[test]
    fn the_time_zone_comes_from_the_table_and_is_checked() {
        let read = |text: &str| crate::config::Config::from_toml(text).map(|c| c.schedules);
        let berlin = read("[schedules]\ntime_zone = \"Europe/Berlin\"\n").unwrap();
        assert_eq!(berlin.zone().name(), "Europe/Berlin");
        let fixed = read("[schedules]\nutc_offset = \"+05:30\"\n").unwrap();
        assert_eq!(fixed.zone().name(), "+05:30");
        assert_eq!(fixed.zone().local_ms(0), 19_800_000);
        let err = read("[schedules]\ntime_zone = \"Mars/Olympus\"\n").unwrap_err();
        assert!(err.to_string().contains("not a time zone"), "{err}");
        let err = read("[schedules]\ntime_zone = \"UTC\"\nutc_offset = \"Z\"\n").unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        let problems = crate::config::check("[schedules]\ntime_zone = \"Europe/Berln\"\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("Europe/Berln"), "{problems:?}");
        // No table: the system's zone (or UTC).
        assert!(!read("").unwrap().zone().name().is_empty());
    }

    #[test]
    fn timers_fire_once_per_switch_on() {
        let mut timers = TimerState::default();
        let key = || {
            (
                "t".to_owned(),
                DeviceId::new(switchboard_devices::Family::Tasmota, "a"),
                0,
            )
        };
        assert!(!timers.observe(key(), true, 60, 1_000));
        assert!(!timers.observe(key(), true, 60, 60_999));
        assert!(timers.observe(key(), true, 60, 61_000));
        // Still on (the command is not confirmed yet): not again.
        assert!(!timers.observe(key(), true, 60, 200_000));
        assert!(!timers.observe(key(), false, 60, 201_000));
        assert!(!timers.observe(key(), true, 60, 300_000));
        assert!(timers.observe(key(), true, 60, 360_000));
    }

    #[test]
    fn schedules_round_trip_as_json() {
        let json = r#"{"id":"wake","device":"tasmota:a","rule":{"kind":"at","time":"07:05","days":["mon","fri"],"on":true}}"#;
        let s: Schedule = serde_json::from_str(json).unwrap();
        assert!(s.enabled);
        s.validate().unwrap();
        let back = serde_json::to_string(&s).unwrap();
        assert!(back.contains("\"time\":\"07:05\""), "{back}");
        assert!(
            serde_json::from_str::<Schedule>(r#"{"rule":{"kind":"at","time":"24:00","on":true}}"#)
                .is_err()
        );
        let both = Schedule {
            room: Some("Kitchen".into()),
            ..s
        };
        assert!(both.validate().is_err());
    }
}
