//! Schedules: the wire format shared by the gateway (which runs them) and the dashboard (which
//! edits them).
//!
//! A schedule is a retained JSON message on `switchboard/schedules/<id>` (an empty payload
//! deletes it): switch a device, or every device of a room, on or off at a time of day on
//! chosen weekdays, or off a set time after it was switched on. The gateway ignores a payload
//! these types cannot read or that [`Schedule::validate`] refuses, and the dashboard publishes
//! nothing that fails the same checks. Times of day are wall-clock times in the gateway's
//! [`Zone`]: an IANA time zone with its daylight saving time (`[schedules] time_zone`), or
//! a fixed [`UtcOffset`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{DeviceId, OutgoingMessage};

const DAY_MS: i64 = 86_400_000;

/// A fixed offset from UTC, in seconds east.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct UtcOffset(pub i32);

impl std::str::FromStr for UtcOffset {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if matches!(text, "Z" | "z" | "UTC" | "") {
            return Ok(Self(0));
        }
        let bad = || format!("`{text}` is not a UTC offset like \"+01:00\" or \"-05:30\"");
        let (sign, rest) = match text.as_bytes().first() {
            Some(b'+') => (1, &text[1..]),
            Some(b'-') => (-1, &text[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = rest.split_once(':').ok_or_else(bad)?;
        let h: i32 = h.parse().map_err(|_| bad())?;
        let m: i32 = m.parse().map_err(|_| bad())?;
        if !(0..=14).contains(&h) || !(0..=59).contains(&m) {
            return Err(bad());
        }
        Ok(Self(sign * (h * 3600 + m * 60)))
    }
}

impl TryFrom<String> for UtcOffset {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

/// How wall-clock time maps to UTC where the schedules run. Local times are milliseconds since
/// 1970-01-01T00:00 on the local clock (as if it were UTC).
pub trait Zone {
    /// The local wall-clock time at the UTC instant `utc_ms`.
    fn local_ms(&self, utc_ms: i64) -> i64;
    /// The UTC instant of the local wall-clock time `local_ms`. A time that occurs twice
    /// (clocks set back) is its earlier occurrence; a time that does not occur (clocks set
    /// forward) is moved forward by the jump, so 02:30 on a night the clocks go from 02:00 to
    /// 03:00 is 03:30 (RFC 5545's rule, and what calendars do).
    fn utc_ms(&self, local_ms: i64) -> i64;
}

impl Zone for UtcOffset {
    fn local_ms(&self, utc_ms: i64) -> i64 {
        utc_ms + i64::from(self.0) * 1000
    }

    fn utc_ms(&self, local_ms: i64) -> i64 {
        local_ms - i64::from(self.0) * 1000
    }
}

/// Topic prefix of schedules (followed by the id).
pub const TOPIC_PREFIX: &str = "switchboard/schedules/";
/// The filter the dashboard subscribes to.
pub const FILTER: &str = "switchboard/schedules/+";
/// Where the gateway publishes (retained) the name of the time zone schedules run in
/// (`Europe/Berlin`, `+01:00`, `UTC`): under `$SYS`, so wildcard subscribers (`#`) do not see it.
pub const TIME_ZONE_TOPIC: &str = "$SYS/broker/time_zone";
/// Longest id the gateway accepts.
pub const MAX_ID_LEN: usize = 64;
/// Longest "off after" delay the add form offers, in minutes (a week).
pub const MAX_OFF_AFTER_MINUTES: u64 = 7 * 24 * 60;

/// A day of the week, written `"mon"` ... `"sun"` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// The weekday of day `n` since 1970-01-01 (a Thursday).
    #[must_use]
    pub fn of_day(n: i64) -> Self {
        const DAYS: [Weekday; 7] = [
            Weekday::Thu,
            Weekday::Fri,
            Weekday::Sat,
            Weekday::Sun,
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
        ];
        DAYS[n.rem_euclid(7) as usize]
    }

    /// Monday to Sunday.
    pub const ALL: [Self; 7] = [
        Self::Mon,
        Self::Tue,
        Self::Wed,
        Self::Thu,
        Self::Fri,
        Self::Sat,
        Self::Sun,
    ];

    /// The three-letter English name, `"Mon"`.
    #[must_use]
    pub fn short(self) -> &'static str {
        match self {
            Self::Mon => "Mon",
            Self::Tue => "Tue",
            Self::Wed => "Wed",
            Self::Thu => "Thu",
            Self::Fri => "Fri",
            Self::Sat => "Sat",
            Self::Sun => "Sun",
        }
    }

    /// The full English name, for accessible labels.
    #[must_use]
    pub fn long(self) -> &'static str {
        match self {
            Self::Mon => "Monday",
            Self::Tue => "Tuesday",
            Self::Wed => "Wednesday",
            Self::Thu => "Thursday",
            Self::Fri => "Friday",
            Self::Sat => "Saturday",
            Self::Sun => "Sunday",
        }
    }

    /// 0 for Monday to 6 for Sunday.
    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A time of day, `"HH:MM"` on the wire, in the gateway's configured UTC offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeOfDay {
    /// Minutes since midnight (below 1440).
    minutes: u16,
}

impl TimeOfDay {
    /// `h:m`, or `None` outside 00:00 to 23:59.
    #[must_use]
    pub fn new(hours: u16, minutes: u16) -> Option<Self> {
        // `then`, not `then_some`: the product must not be computed for hours that overflow it.
        (hours < 24 && minutes < 60).then(|| Self {
            minutes: hours * 60 + minutes,
        })
    }

    /// Reads `"07:30"` with the gateway's rules (each part a number, hours up to 23, minutes up
    /// to 59; the value of an `<input type="time">` is always of this form).
    ///
    /// # Errors
    /// [`Invalid::Time`] for anything else.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let (h, m) = text.split_once(':').ok_or(Invalid::Time)?;
        let h: u16 = h.parse().map_err(|_| Invalid::Time)?;
        let m: u16 = m.parse().map_err(|_| Invalid::Time)?;
        Self::new(h, m).ok_or(Invalid::Time)
    }

    /// Minutes since midnight.
    #[must_use]
    pub fn minutes(self) -> u16 {
        self.minutes
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

impl TryFrom<String> for TimeOfDay {
    type Error = Invalid;

    fn try_from(text: String) -> Result<Self, Invalid> {
        Self::parse(&text)
    }
}

impl From<TimeOfDay> for String {
    fn from(t: TimeOfDay) -> Self {
        t.to_string()
    }
}

/// What a schedule does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Switch on (`on: true`) or off at `time` on `days` (every day when empty).
    At {
        /// Time of day in the gateway's offset.
        time: TimeOfDay,
        /// Days it fires on; empty: every day.
        #[serde(default)]
        days: Vec<Weekday>,
        /// The state to switch to.
        on: bool,
    },
    /// Switch off `seconds` after the relay was seen switching on.
    OffAfter {
        /// Delay in seconds (at least 1).
        seconds: u64,
    },
}

impl Rule {
    /// For an `At` rule: the first instant strictly after `after_ms` (Unix milliseconds) at
    /// which it fires, with times of day on `zone`'s clock; `None` for other rules. It fires
    /// once a day even when the clocks change: a time the clocks skip fires after the jump
    /// (see [`Zone::utc_ms`]), a time they repeat fires at its first occurrence only.
    #[must_use]
    pub fn next_fire(&self, after_ms: u64, zone: &(impl Zone + ?Sized)) -> Option<u64> {
        let Self::At { time, days, .. } = self else {
            return None;
        };
        let after = i64::try_from(after_ms).ok()?;
        let today = zone.local_ms(after).div_euclid(DAY_MS);
        // From yesterday: a zone's jump can put yesterday's local time after `after`.
        (today - 1..=today + 8)
            .filter(|d| days.is_empty() || days.contains(&Weekday::of_day(*d)))
            .map(|d| zone.utc_ms(d * DAY_MS + i64::from(time.minutes()) * 60_000))
            .find(|at| *at > after)
            .map(|at| at.max(0) as u64)
    }
}

/// A schedule, exactly as the gateway reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Identifier: the last level of its topic.
    #[serde(default)]
    pub id: String,
    /// The device it acts on, by id. Exactly one of `device` and `room`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Every device of this room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// 0-based relay of each device.
    #[serde(default)]
    pub relay: u8,
    /// A disabled schedule is kept but never fires.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// When and what.
    pub rule: Rule,
}

fn enabled_default() -> bool {
    true
}

/// Why a schedule (or the add form) cannot be published. The messages are for the person
/// filling the form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// The id is empty, too long, or has characters other than letters, digits, `-`, `_`.
    Id,
    /// Both or neither of `device` and `room`.
    Target,
    /// An "off after" delay of 0.
    ZeroDelay,
    /// The time is not `HH:MM` within a day.
    Time,
    /// The minutes are not a whole number from 1 to [`MAX_OFF_AFTER_MINUTES`].
    Minutes,
}

impl Invalid {
    /// A sentence for the form (fixed text: no formatting code in the page).
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Self::Id => "The id must be 1 to 64 letters, digits, - or _.",
            Self::Target => "A schedule is for one plug or one room.",
            Self::ZeroDelay => "The delay must be at least 1 second.",
            Self::Time => "Choose a time of day, like 07:30.",
            Self::Minutes => "Minutes must be a whole number from 1 to 10080 (a week).",
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Invalid {}

/// Whether `id` is one the gateway accepts: 1 to 64 of `[A-Za-z0-9_-]`.
#[must_use]
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Schedule {
    /// The checks the types cannot make, the same as the gateway's.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !valid_id(&self.id) {
            return Err(Invalid::Id);
        }
        if self.device.is_some() == self.room.is_some() {
            return Err(Invalid::Target);
        }
        if let Rule::OffAfter { seconds: 0 } = self.rule {
            return Err(Invalid::ZeroDelay);
        }
        Ok(())
    }

    /// The retained QoS 1 message that stores this schedule.
    ///
    /// # Errors
    /// What [`Schedule::validate`] finds: an invalid schedule is never published.
    pub fn to_message(&self) -> Result<OutgoingMessage, Invalid> {
        self.validate()?;
        Ok(OutgoingMessage {
            topic: topic(&self.id),
            payload: serde_json::to_vec(self).expect("a schedule serialises"),
            retain: true,
            qos: 1,
        })
    }

    /// Whether it acts on `device` (in `room`, if it has one): named, or by its room.
    #[must_use]
    pub fn applies_to(&self, device: &DeviceId, room: Option<&str>) -> bool {
        targets(self.device.as_deref(), self.room.as_deref(), device, room)
    }
}

/// Whether a schedule naming `s_device` or `s_room` acts on `device` (in `room`, if it has one).
#[must_use]
pub fn targets(
    s_device: Option<&str>,
    s_room: Option<&str>,
    device: &DeviceId,
    room: Option<&str>,
) -> bool {
    match (s_device, s_room) {
        (Some(d), _) => d == device.as_str(),
        (None, Some(r)) => room == Some(r),
        (None, None) => false,
    }
}

/// The topic of schedule `id`.
#[must_use]
pub fn topic(id: &str) -> String {
    format!("{TOPIC_PREFIX}{id}")
}

/// The empty retained QoS 1 message that deletes schedule `id`.
#[must_use]
pub fn delete_message(id: &str) -> OutgoingMessage {
    OutgoingMessage {
        topic: topic(id),
        payload: Vec::new(),
        retain: true,
        qos: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day_out_of_range_are_refused_not_overflowed() {
        // Found by the `schedule` fuzz target: `TimeOfDay::new` computed `hours * 60` before
        // checking the range, which overflows a u16 (a panic with overflow checks) from 1093 h.
        for text in ["1093:00", "65535:59", "24:00", "23:60"] {
            assert_eq!(TimeOfDay::parse(text), Err(Invalid::Time), "{text}");
        }
        assert_eq!(TimeOfDay::new(u16::MAX, 0), None);
        assert_eq!(TimeOfDay::parse("23:59").map(TimeOfDay::minutes), Ok(1439));
    }
}
